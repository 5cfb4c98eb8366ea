//! The TLS-only redis-server of a test, with the deployment's ACL users.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::super::free_port;
use super::{wait_for_port, TestCa};

/// A redis-server that speaks only TLS, wants a client certificate from the
/// test's CA, and knows only the users of `deploy/redis/users.conf`, each with
/// the password [`TlsRedis::password`].
pub struct TlsRedis {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    pub fn start(ca: &TestCa) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = ca.server("redis", &["127.0.0.1"]);
        let port = free_port();
        let users = dir.path().join("users.conf");
        std::fs::write(&users, with_passwords(&deployed_users())).unwrap();
        let config = dir.path().join("redis.conf");
        std::fs::write(
            &config,
            format!(
                "port 0\ntls-port {port}\nbind 127.0.0.1 ::1\n\
                 tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients yes\nsave \"\"\nappendonly no\n\
                 include {}\n",
                server.cert.display(),
                server.key.display(),
                ca.ca_path().display(),
                users.display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        wait_for_port(port, "the TLS redis-server");
        Self {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn password(user: &str) -> String {
        format!("{user}-canary-51e2")
    }

    /// `rediss://` URL of `user` reaching the server as `host`.
    pub fn url(&self, user: &str, host: &str) -> String {
        format!(
            "rediss://{user}:{}@{host}:{}",
            Self::password(user),
            self.port
        )
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn deployed_users() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/redis/users.conf");
    std::fs::read_to_string(path).unwrap()
}

/// The deployment's user lines, each given its test password.
fn with_passwords(users: &str) -> String {
    users
        .lines()
        .map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["user", name, "on", ..] => format!("{line} >{}\n", TlsRedis::password(name)),
                _ => format!("{line}\n"),
            },
        )
        .collect()
}
