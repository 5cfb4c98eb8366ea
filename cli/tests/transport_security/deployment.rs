//! A whole deployment over TLS everywhere, its secrets in files and never in its logs.

use crate::common::tls::*;
use crate::common::*;
use crate::succeeded;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pipeline::redis_tls::RedisTls;
use sqlx::PgPool;

/// A deployment's config: every secret in a file of its own, as a
/// Kubernetes Secret mounts them.
struct SecureConfig {
    dir: tempfile::TempDir,
}

impl SecureConfig {
    fn write(
        ca: &TestCa,
        kafka: &SecureKafka,
        redis: &TlsRedis,
        postgres: &TlsPostgres,
        kafka_password: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret = |name: &str, value: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("{value}\n")).unwrap();
            path.display().to_string()
        };
        let ca_path = ca.ca_path();
        let identity = ca.client("scoutstream");
        let config = format!(
            r#"
[bus]
backend = "kafka"
[bus.kafka]
brokers = "127.0.0.1:{sasl_port}"
session_timeout_secs = 6
[bus.kafka.client]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "{KAFKA_USER}"
"sasl.password_file" = "{kafka_password}"
"ssl.ca.location" = "{ca}"
[database]
url_file = "{app_url}"
migrate_url_file = "{owner_url}"
migrate_on_start = false
app_role = "{APP_ROLE}"
[cache]
redis_url_file = "{cache_url}"
[jobs]
redis_url_file = "{jobs_url}"
[redis_tls]
ca_file = "{ca}"
cert_file = "{client_cert}"
key_file = "{client_key}"
"#,
            sasl_port = kafka.sasl_port,
            kafka_password = secret("kafka-password", kafka_password),
            ca = ca_path.display(),
            app_url = secret("app-url", &postgres.url(APP_ROLE, "127.0.0.1", &ca_path)),
            owner_url = secret(
                "owner-url",
                &postgres.url(OWNER_ROLE, "127.0.0.1", &ca_path)
            ),
            cache_url = secret("cache-url", &redis.url("scoutstream-cache", "127.0.0.1")),
            jobs_url = secret("jobs-url", &redis.url("scoutstream-jobs", "127.0.0.1")),
            client_cert = identity.cert.display(),
            client_key = identity.key.display(),
        );
        std::fs::write(dir.path().join("scoutstream.toml"), config).unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, deployment: &Deployment, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_scoutstream"));
        command
            .args(args)
            .arg("--config")
            .arg(self.path().join("scoutstream.toml"))
            .env("SCOUTSTREAM__BUS__TOPIC_PREFIX", &deployment.topic_prefix)
            .env("SCOUTSTREAM__GROUPS__ID_PREFIX", &deployment.group_prefix)
            .env(
                "SCOUTSTREAM__OBSERVE__BIND",
                format!("127.0.0.1:{}", deployment.observe_port),
            )
            .env("SCOUTSTREAM__RUNNER__BATCH_SIZE", "200")
            // Every log line the binary can write is searched for the secrets.
            .env("RUST_LOG", "trace");
        command
    }
}

fn assert_no_secret(text: &str) {
    let secrets = [
        KAFKA_PASSWORD.to_string(),
        TlsRedis::password("scoutstream-cache"),
        TlsRedis::password("scoutstream-jobs"),
        TlsPostgres::password(APP_ROLE),
        TlsPostgres::password(OWNER_ROLE),
    ];
    for secret in secrets {
        assert!(!text.contains(&secret), "a secret leaked into the output");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_runs_end_to_end_over_tls_everywhere() {
    let ca = TestCa::new("scoutstream test CA");
    let kafka = SecureKafka::start(&ca);
    let redis = TlsRedis::start(&ca);
    let postgres = TlsPostgres::start(&ca);
    let deployment = Deployment::new("kafka").await;
    let config = SecureConfig::write(&ca, &kafka, &redis, &postgres, KAFKA_PASSWORD);

    let mut seen = succeeded(
        config.command(&deployment, &["migrate"]).output().unwrap(),
        "migrate",
    );
    let mut produce = vec!["produce", "--generate", "200", "--seed", "11"];
    let fixtures = fixture_paths();
    produce.extend(fixtures.iter().map(String::as_str));
    seen += &succeeded(
        config.command(&deployment, &produce).output().unwrap(),
        "produce",
    );

    // Into files: at TRACE a pipe no one reads until the end would fill and stall it.
    let run_log = config.path().join("run.log");
    let log_file = std::fs::File::create(&run_log).unwrap();
    let run = config
        .command(&deployment, &["run", "--groups", "persist,cache"])
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap();
    let pool = PgPool::connect(&postgres.url(APP_ROLE, "127.0.0.1", &ca.ca_path()))
        .await
        .unwrap();
    wait_for_count(&pool, "SELECT count(*) FROM matches", 202).await;
    check_fixture_rows(&pool).await;

    let identity = ca.client("test-reader");
    let tls = RedisTls {
        ca: ca.ca_pem(),
        cert: identity.cert_pem.clone(),
        key: identity.key_pem.clone(),
    };
    let client =
        pipeline::redis_tls::client(&redis.url("scoutstream-cache", "127.0.0.1"), &tls).unwrap();
    let mut cache = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut cached: Option<String> = None;
    while cached.is_none() && tokio::time::Instant::now() < deadline {
        cached = redis::cmd("GET")
            .arg("scoutstream:cache:match:3254426673")
            .query_async(&mut cache)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        cached
            .expect("the pro match is cached")
            .contains("3254426673"),
        "the cache group wrote through TLS as its ACL user"
    );
    stop(run);
    let run_output = std::fs::read_to_string(&run_log).unwrap();
    assert!(run_output.contains("TRACE"), "the run logged at TRACE");
    seen += &run_output;
    assert_no_secret(&seen);

    let wrong = SecureConfig::write(&ca, &kafka, &redis, &postgres, "wrong-canary-9d1e");
    let output = wrong.command(&deployment, &["lag"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a wrong password stops the command"
    );
    assert!(
        stderr.contains("refused this client") && stderr.contains("SCRAM-SHA-512"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-canary-9d1e"), "{stderr}");
    deployment.drop_database().await;
}
