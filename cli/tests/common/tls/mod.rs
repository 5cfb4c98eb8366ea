//! Servers with TLS and authentication on, each of the test's own, and the
//! certificates they present, made per test by a throwaway authority.
//!
//! Every server certificate names 127.0.0.1 only, so reaching the same
//! server as `localhost` is "a certificate for another host".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use testkit::kafka::PrivateBroker;

use super::free_port;

mod postgres_server;
mod redis_server;

// Not every test target that includes `common` uses these servers.
#[allow(unused_imports)]
pub use postgres_server::*;
#[allow(unused_imports)]
pub use redis_server::*;

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
    /// Killed on drop quietly, never failing the test from there.
    broker: PrivateBroker,
    pub sasl_port: u16,
    pub mtls_port: u16,
}

impl SecureKafka {
    pub fn start(ca: &TestCa) -> Self {
        let kafka = Self {
            broker: PrivateBroker::unstarted().quiet_on_drop(),
            sasl_port: free_port(),
            mtls_port: free_port(),
        };
        let server = ca.server("kafka-broker", &["127.0.0.1"]);
        // A PEM keystore is the key followed by its certificate chain.
        let keystore = kafka.broker.state_dir().join("keystore.pem");
        write_private(&keystore, &format!("{}{}", server.key_pem, server.cert_pem));
        let extra = kafka.broker.state_dir().join("security.properties");
        std::fs::write(&extra, kafka.properties(&keystore, &ca.ca_path())).unwrap();
        let status = kafka
            .broker
            .script("start")
            .env("SCOUTSTREAM_KAFKA_EXTRA_PROPERTIES", &extra)
            .env(
                "SCOUTSTREAM_KAFKA_ADD_SCRAM",
                format!("SCRAM-SHA-512=[name={KAFKA_USER},password={KAFKA_PASSWORD}]"),
            )
            .status()
            .unwrap();
        assert!(status.success(), "the secure broker did not start");
        kafka
    }

    fn properties(&self, keystore: &Path, ca: &Path) -> String {
        let (plain, controller, sasl, mtls) = (
            self.broker.port(),
            self.broker.controller_port(),
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
