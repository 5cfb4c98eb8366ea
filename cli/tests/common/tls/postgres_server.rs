//! The TLS-only PostgreSQL cluster of a test, with its owner and app roles.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::super::free_port;
use super::{write_private, TestCa};

pub const DB_NAME: &str = "scout";
pub const OWNER_ROLE: &str = "scoutstream_owner";
pub const APP_ROLE: &str = "scoutstream_app";

/// A PostgreSQL cluster of the test's own: TLS only (`hostssl` with
/// scram-sha-256 passwords), a database owned by [`OWNER_ROLE`], and an
/// [`APP_ROLE`] that starts with no rights in it.
pub struct TlsPostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl TlsPostgres {
    pub fn start(ca: &TestCa) -> Self {
        let cluster = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            bin: postgres_bin(),
        };
        let server = ca.server("postgres", &["127.0.0.1"]);
        let (cert, key) = (cluster.path("server.crt"), cluster.path("server.key"));
        std::fs::write(&cert, &server.cert_pem).unwrap();
        write_private(&key, &server.key_pem);
        std::fs::copy(ca.ca_path(), cluster.path("ca.pem")).unwrap();
        give_to_postgres(cluster.dir.path());
        cluster.as_postgres(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        std::fs::write(
            cluster.path("data/pg_hba.conf"),
            "local all postgres trust\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostssl all all ::1/128 scram-sha-256\n",
        )
        .unwrap();
        give_to_postgres(cluster.dir.path());
        let options = format!(
            "-p {} -c listen_addresses='127.0.0.1,::1' -c unix_socket_directories={} \
             -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off",
            cluster.port,
            cluster.dir.path().display(),
            cert.display(),
            key.display()
        );
        let log = cluster.path("postgres.log").display().to_string();
        cluster.as_postgres(
            "pg_ctl",
            &[
                "-D",
                &cluster.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        cluster.psql(&format!(
            "CREATE ROLE {OWNER_ROLE} LOGIN PASSWORD '{}'; \
             CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{}';",
            Self::password(OWNER_ROLE),
            Self::password(APP_ROLE)
        ));
        cluster.psql(&format!("CREATE DATABASE {DB_NAME} OWNER {OWNER_ROLE}"));
        cluster
    }

    pub fn password(role: &str) -> String {
        format!("{role}-canary-c0d4")
    }

    /// `verify-full` URL of `role`, reaching the server as `host`, trusting `ca`.
    pub fn url(&self, role: &str, host: &str, ca: &Path) -> String {
        format!(
            "postgres://{role}:{}@{host}:{}/{DB_NAME}?sslmode=verify-full&sslrootcert={}",
            Self::password(role),
            self.port,
            ca.display()
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn data(&self) -> String {
        self.path("data").display().to_string()
    }

    fn psql(&self, sql: &str) {
        let socket = self.dir.path().display().to_string();
        let port = self.port.to_string();
        self.as_postgres(
            "psql",
            &[
                "-h",
                &socket,
                "-p",
                &port,
                "-U",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        );
    }

    /// PostgreSQL refuses to run as root: as root, its tools run as `postgres`.
    fn tool(&self, tool: &str) -> Command {
        let tool = self.bin.join(tool);
        if !is_root() {
            return Command::new(tool);
        }
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(tool);
        command
    }

    fn as_postgres(&self, tool: &str, args: &[&str]) {
        let output = self.tool(tool).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .tool("pg_ctl")
            .args(["-D", data.as_str(), "-m", "immediate", "stop"])
            .output();
    }
}

fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL from Debian's packages (scripts/services.sh installs it)")
        .map(|entry| entry.unwrap().path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("an initdb under /usr/lib/postgresql")
}

fn is_root() -> bool {
    let output = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

fn give_to_postgres(dir: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
}
