//! Servers with TLS and authentication on, each of the test's own, and the
//! certificates they present, made per test by a throwaway authority.
//!
//! Every server certificate names 127.0.0.1 only, so reaching the same
//! server as `localhost` is "a certificate for another host".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use super::free_port;

/// A certificate authority that lives as long as the test.
pub struct TestCa {
    dir: tempfile::TempDir,
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, as PEM text and as files.
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let ca = Self {
            dir: tempfile::tempdir().unwrap(),
            cert,
            key,
        };
        std::fs::write(ca.ca_path(), ca.ca_pem()).unwrap();
        ca
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    pub fn ca_pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `hosts` (names or IP addresses).
    pub fn server(&self, name: &str, hosts: &[&str]) -> Identity {
        self.issue(name, hosts, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose subject is `name`.
    pub fn client(&self, name: &str) -> Identity {
        self.issue(name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, name: &str, hosts: &[&str], usage: ExtendedKeyUsagePurpose) -> Identity {
        let key = KeyPair::generate().unwrap();
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let mut params = CertificateParams::new(hosts).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let identity = Identity {
            cert: self.dir().join(format!("{name}.crt")),
            key: self.dir().join(format!("{name}.key")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&identity.cert, &identity.cert_pem).unwrap();
        write_private(&identity.key, &identity.key_pem);
        identity
    }
}

fn write_private(path: &Path, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------- Kafka

pub const KAFKA_USER: &str = "scout";
pub const KAFKA_PASSWORD: &str = "kafka-canary-7f3a9c";

/// An Apache Kafka node with three client listeners: PLAINTEXT on loopback
/// (the start script's readiness probe), SASL_SSL with SCRAM-SHA-512, and
/// SSL that requires a client certificate.
pub struct SecureKafka {
    state_dir: tempfile::TempDir,
    port: u16,
    controller_port: u16,
    pub sasl_port: u16,
    pub mtls_port: u16,
}

impl SecureKafka {
    pub fn start(ca: &TestCa) -> Self {
        let broker = Self {
            state_dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            controller_port: free_port(),
            sasl_port: free_port(),
            mtls_port: free_port(),
        };
        let server = ca.server("kafka-broker", &["127.0.0.1"]);
        // A PEM keystore is the key followed by its certificate chain.
        let keystore = broker.state_dir.path().join("keystore.pem");
        write_private(&keystore, &format!("{}{}", server.key_pem, server.cert_pem));
        let extra = broker.state_dir.path().join("security.properties");
        std::fs::write(&extra, broker.properties(&keystore, &ca.ca_path())).unwrap();
        let status = broker
            .script("start")
            .env("SCOUTSTREAM_KAFKA_EXTRA_PROPERTIES", &extra)
            .env(
                "SCOUTSTREAM_KAFKA_ADD_SCRAM",
                format!("SCRAM-SHA-512=[name={KAFKA_USER},password={KAFKA_PASSWORD}]"),
            )
            .status()
            .unwrap();
        assert!(status.success(), "the secure broker did not start");
        broker
    }

    fn properties(&self, keystore: &Path, ca: &Path) -> String {
        let (plain, controller, sasl, mtls) = (
            self.port,
            self.controller_port,
            self.sasl_port,
            self.mtls_port,
        );
        format!(
            "\n# security.properties of the test\n\
             listeners=PLAINTEXT://127.0.0.1:{plain},CONTROLLER://127.0.0.1:{controller},SASL_SSL://:{sasl},SSL://:{mtls}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{sasl},SSL://127.0.0.1:{mtls}\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL\n\
             sasl.enabled.mechanisms=SCRAM-SHA-512\n\
             listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             listener.name.ssl.ssl.client.auth=required\n\
             ssl.keystore.type=PEM\n\
             ssl.keystore.location={}\n\
             ssl.truststore.type=PEM\n\
             ssl.truststore.location={}\n",
            keystore.display(),
            ca.display()
        )
    }

    fn script(&self, action: &str) -> Command {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
        let mut command = Command::new("bash");
        command
            .arg(script)
            .arg(action)
            .env("SCOUTSTREAM_KAFKA_STATE_DIR", self.state_dir.path())
            .env("SCOUTSTREAM_KAFKA_PORT", self.port.to_string())
            .env(
                "SCOUTSTREAM_KAFKA_CONTROLLER_PORT",
                self.controller_port.to_string(),
            )
            .env("SCOUTSTREAM_KAFKA_HEAP", "512m")
            .env(
                "SCOUTSTREAM_KAFKA_OWNER_PID",
                std::process::id().to_string(),
            );
        command
    }

    /// librdkafka properties for SASL_SSL as `user`/`password`, reaching the
    /// broker as `host`.
    pub fn sasl_client(
        &self,
        ca: &TestCa,
        host: &str,
        password: &str,
    ) -> (String, BTreeMap<String, String>) {
        let properties = [
            ("security.protocol", "SASL_SSL".to_string()),
            ("sasl.mechanism", "SCRAM-SHA-512".to_string()),
            ("sasl.username", KAFKA_USER.to_string()),
            ("sasl.password", password.to_string()),
            ("ssl.ca.location", ca.ca_path().display().to_string()),
        ];
        (
            format!("{host}:{}", self.sasl_port),
            properties
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// librdkafka properties for mutual TLS, with `client` when given.
    pub fn mtls_client(
        &self,
        ca: &TestCa,
        client: Option<&Identity>,
    ) -> (String, BTreeMap<String, String>) {
        let mut properties = BTreeMap::from([
            ("security.protocol".to_string(), "SSL".to_string()),
            (
                "ssl.ca.location".to_string(),
                ca.ca_path().display().to_string(),
            ),
        ]);
        if let Some(client) = client {
            properties.insert(
                "ssl.certificate.location".into(),
                client.cert.display().to_string(),
            );
            properties.insert("ssl.key.location".into(), client.key.display().to_string());
        }
        (format!("127.0.0.1:{}", self.mtls_port), properties)
    }
}

impl Drop for SecureKafka {
    fn drop(&mut self) {
        let _ = self.script("kill").stderr(Stdio::null()).status();
    }
}

// ---------------------------------------------------------------- Redis

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

// ---------------------------------------------------------------- PostgreSQL

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
