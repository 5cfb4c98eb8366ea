//! Every connection encrypted and authenticated: Apache Kafka over SASL_SSL
//! (SCRAM-SHA-512) and mutual TLS, Redis over TLS with an ACL user per client,
//! PostgreSQL with `sslmode=verify-full` and a role that may only read and
//! write rows. Each server is the test's own, with certificates made here;
//! wrong passwords, certificates for another host and missing rights are refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::tls::*;
use common::*;
use consumers::cache::{Cache, CacheConfig, CacheWrite, Layer, VersionAt};
use consumers::jobs::{Decision, JobsConfig, RateLimit, RateLimiter};
use pipeline::bus::kafka::{KafkaBus, KafkaConfig};
use pipeline::bus::redis_streams::{RedisStreamsBus, RedisStreamsConfig};
use pipeline::bus::{Bus, Record};
use pipeline::redis_tls::RedisTls;
use sqlx::PgPool;

fn kafka_bus(brokers: String, client: BTreeMap<String, String>) -> KafkaBus {
    KafkaBus::new(KafkaConfig {
        brokers,
        client_overrides: client,
        session_timeout: Duration::from_secs(6),
        ..KafkaConfig::default()
    })
    .unwrap()
}

/// Publishes 50 records and reads every one back as a new group.
async fn roundtrip(bus: &dyn Bus, topic: &str) {
    bus.ensure_topic(topic, 2).await.unwrap();
    let records: Vec<Record> = (0..50)
        .map(|i| Record::new(format!("key-{i}"), format!("payload-{i}")))
        .collect();
    let publisher = bus.publisher().await.unwrap();
    publisher.publish_batch(topic, &records).await.unwrap();
    let mut subscription = bus
        .subscribe(&unique("tls-group"), &[topic.to_string()])
        .await
        .unwrap();
    let wanted: BTreeSet<Vec<u8>> = records.iter().map(|r| r.payload.clone()).collect();
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while seen.len() < wanted.len() && tokio::time::Instant::now() < deadline {
        for delivery in subscription
            .poll(100, Duration::from_secs(1))
            .await
            .unwrap()
        {
            seen.insert(delivery.payload.to_vec());
        }
    }
    assert_eq!(seen, wanted, "{} read back what it published", bus.name());
}

async fn refusal(bus: KafkaBus) -> String {
    let err = bus
        .check_access()
        .await
        .expect_err("the broker should refuse this client")
        .to_string();
    println!("refused: {err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_serves_sasl_ssl_and_mutual_tls_and_refuses_wrong_credentials() {
    let ca = TestCa::new("scoutstream test CA");
    let kafka = SecureKafka::start(&ca);

    let (brokers, client) = kafka.sasl_client(&ca, "127.0.0.1", KAFKA_PASSWORD);
    let bus = kafka_bus(brokers, client);
    bus.check_access().await.unwrap();
    roundtrip(&bus, &unique("tls-sasl")).await;

    let certificate = ca.client("scoutstream-persist");
    let (brokers, client) = kafka.mtls_client(&ca, Some(&certificate));
    let bus = kafka_bus(brokers, client);
    bus.check_access().await.unwrap();
    roundtrip(&bus, &unique("tls-mtls")).await;

    let (brokers, client) = kafka.sasl_client(&ca, "127.0.0.1", "not-the-password");
    let err = refusal(kafka_bus(brokers, client)).await;
    assert!(
        err.contains("refused this client") && err.contains("SCRAM-SHA-512"),
        "a wrong password is named as such: {err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");

    let (brokers, client) = kafka.sasl_client(&ca, "localhost", KAFKA_PASSWORD);
    let err = refusal(kafka_bus(brokers, client)).await;
    assert!(
        err.contains("refused this client") && err.contains("certificate"),
        "a certificate for another host is refused: {err}"
    );

    let stranger = TestCa::new("an authority the broker's certificate is not from");
    let (brokers, client) = kafka.sasl_client(&stranger, "127.0.0.1", KAFKA_PASSWORD);
    let err = refusal(kafka_bus(brokers, client)).await;
    assert!(err.contains("certificate"), "{err}");

    let (brokers, client) = kafka.mtls_client(&ca, None);
    let err = refusal(kafka_bus(brokers, client)).await;
    assert!(
        err.contains("refused this client"),
        "mutual TLS without a client certificate is refused: {err}"
    );
}

fn error_of(result: redis::RedisResult<redis::Value>) -> String {
    result.expect_err("redis should refuse this").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_serves_each_client_over_tls_with_only_its_acl_rights() {
    let ca = TestCa::new("scoutstream test CA");
    let redis = TlsRedis::start(&ca);
    let identity = ca.client("scoutstream-cache");
    let tls = RedisTls {
        ca: ca.ca_pem(),
        cert: identity.cert_pem.clone(),
        key: identity.key_pem.clone(),
    };

    let cache = Cache::connect(CacheConfig {
        redis_url: redis.url("scoutstream-cache", "127.0.0.1"),
        redis_tls: tls.clone(),
        ..CacheConfig::default()
    })
    .await
    .unwrap();
    assert!(!cache.is_on_fallback(), "the cache reached Redis");
    assert_eq!(
        cache
            .set("match:1", "{\"match_id\":1}", Duration::from_secs(60))
            .await,
        Layer::Redis
    );
    assert_eq!(
        cache.get("match:1").await.as_deref(),
        Some("{\"match_id\":1}")
    );
    // The cache group's batch path: one pipeline (SET, EVALSHA after SCRIPT
    // LOAD on this new server, DEL), then MGET. A refused pipeline lands in
    // memory (Layer::Memory); a refused MGET reads memory, which holds none.
    let batch = [
        CacheWrite::Set {
            key: "match:2".into(),
            value: "{\"match_id\":2}".into(),
            ttl: Duration::from_secs(60),
        },
        CacheWrite::SetIfNewer {
            key: "player:7:latest_match".into(),
            value: "100".into(),
            version: 100,
            version_at: VersionAt::Value,
            ttl: Duration::from_secs(60),
            invalidate: vec!["scout:player:7".into()],
        },
        CacheWrite::Delete {
            keys: vec!["match:3".into()],
        },
    ];
    assert_eq!(cache.write_all(&batch).await, Layer::Redis);
    assert_eq!(
        cache.get_many(&["match:2", "player:7:latest_match"]).await,
        [Some("{\"match_id\":2}".into()), Some("100".into())]
    );
    assert_eq!(cache.counters().redis_errors(), 0);

    let mut jobs = JobsConfig {
        redis_url: redis.url("scoutstream-jobs", "127.0.0.1"),
        redis_tls: tls.clone(),
        ..JobsConfig::default()
    };
    jobs.rate_limits
        .insert("tls-test".into(), RateLimit::per_second(10));
    let limiter = RateLimiter::new(&jobs).unwrap();
    let decision = limiter.try_acquire("tls-test").await;
    assert!(
        matches!(decision, Decision::Granted { shared: true, .. }),
        "the limiter decided in Redis: {decision:?}"
    );

    let bus = RedisStreamsBus::connect(RedisStreamsConfig {
        url: redis.url("scoutstream-bus", "127.0.0.1"),
        tls: tls.clone(),
        session_timeout: Duration::from_secs(3),
        claim_idle: Duration::from_secs(2),
        ..RedisStreamsConfig::default()
    })
    .await
    .unwrap();
    roundtrip(&bus, "tls-topic").await;

    let client =
        pipeline::redis_tls::client(&redis.url("scoutstream-cache", "127.0.0.1"), &tls).unwrap();
    let mut cache_user = client.get_multiplexed_async_connection().await.unwrap();
    let outside_its_rights = [
        redis::cmd("FLUSHALL"),
        redis::cmd("KEYS").arg("*").clone(),
        redis::cmd("CONFIG").arg("GET").arg("*").clone(),
        redis::cmd("XADD")
            .arg("scoutstream:cache:stream")
            .arg("*")
            .arg("a")
            .arg("b")
            .clone(),
        redis::cmd("GET")
            .arg("scoutstream:jobs:ratelimit:tls-test")
            .clone(),
    ];
    for command in outside_its_rights {
        let err = error_of(command.query_async(&mut cache_user).await);
        assert!(err.contains("NOPERM"), "{err}");
    }

    let wrong_password = format!("rediss://scoutstream-cache:wrong@127.0.0.1:{}", redis.port);
    let err = pipeline::redis_tls::client(&wrong_password, &tls)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect_err("a wrong password is refused")
        .to_string();
    assert!(err.contains("AuthenticationFailed"), "{err}");

    let no_user = format!("rediss://127.0.0.1:{}", redis.port);
    let mut default_user = pipeline::redis_tls::client(&no_user, &tls)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let err = error_of(redis::cmd("PING").query_async(&mut default_user).await);
    assert!(err.contains("NOAUTH"), "the default user is off: {err}");

    let without_certificate = RedisTls {
        ca: ca.ca_pem(),
        ..RedisTls::default()
    };
    let refused = pipeline::redis_tls::client(
        &redis.url("scoutstream-cache", "127.0.0.1"),
        &without_certificate,
    )
    .unwrap()
    .get_multiplexed_async_connection()
    .await;
    assert!(
        refused.is_err(),
        "a client without a certificate is refused"
    );

    let other_host = redis.url("scoutstream-cache", "localhost");
    let err = pipeline::redis_tls::client(&other_host, &tls)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect_err("a certificate for another host is refused")
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let plaintext = format!("redis://scoutstream-cache:x@127.0.0.1:{}", redis.port);
    let plain = tokio::time::timeout(
        Duration::from_secs(10),
        redis::Client::open(plaintext)
            .unwrap()
            .get_multiplexed_async_connection(),
    )
    .await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "a plaintext connection to the TLS port is refused"
    );
}

async fn refused_sql(pool: &PgPool, sql: &str) -> String {
    sqlx::query(sql)
        .execute(pool)
        .await
        .expect_err(sql)
        .to_string()
}

async fn connect_error(url: &str) -> String {
    PgPool::connect(url)
        .await
        .expect_err("the connection should be refused")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_is_verified_and_the_groups_role_only_reads_and_writes_rows() {
    let ca = TestCa::new("scoutstream test CA");
    let postgres = TlsPostgres::start(&ca);
    let owner = postgres.url(OWNER_ROLE, "127.0.0.1", &ca.ca_path());
    let app = postgres.url(APP_ROLE, "127.0.0.1", &ca.ca_path());

    let output = Command::new(env!("CARGO_BIN_EXE_scoutstream"))
        .arg("migrate")
        .env("SCOUTSTREAM__DATABASE__URL", &app)
        .env("SCOUTSTREAM__DATABASE__MIGRATE_URL", &owner)
        .env("SCOUTSTREAM__DATABASE__APP_ROLE", APP_ROLE)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = succeeded(output, "migrate");
    assert!(
        stdout.contains("role scoutstream_app may read and write rows"),
        "{stdout}"
    );

    let pool = PgPool::connect(&app).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(tables > 3, "the owner created the tables: {tables}");
    let (reads_and_writes, truncates): (bool, bool) = sqlx::query_as(
        "SELECT bool_and(has_table_privilege(t, 'SELECT, INSERT, UPDATE, DELETE')), \
                bool_or(has_table_privilege(t, 'TRUNCATE')) \
         FROM unnest(ARRAY['matches', 'player_matches', 'players']) AS t",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        reads_and_writes && !truncates,
        "rows only: {reads_and_writes} {truncates}"
    );
    for (sql, refusal) in [
        ("CREATE TABLE intruder (id int)", "permission denied"),
        ("DROP TABLE matches", "must be owner"),
        (
            "ALTER TABLE matches ADD COLUMN intruder int",
            "must be owner",
        ),
        ("TRUNCATE matches", "permission denied"),
        ("DELETE FROM _sqlx_migrations", "permission denied"),
    ] {
        let err = refused_sql(&pool, sql).await;
        assert!(err.contains(refusal), "{sql}: {err}");
    }

    let err = connect_error(&postgres.url(APP_ROLE, "localhost", &ca.ca_path())).await;
    assert!(
        err.to_lowercase().contains("certificate"),
        "a certificate for another host is refused: {err}"
    );
    let stranger = TestCa::new("an authority the server's certificate is not from");
    let err = connect_error(&postgres.url(APP_ROLE, "127.0.0.1", &stranger.ca_path())).await;
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let plaintext = app.replace("sslmode=verify-full", "sslmode=disable");
    let err = connect_error(&plaintext).await;
    assert!(
        err.contains("no pg_hba.conf entry"),
        "plaintext is refused: {err}"
    );
}

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

fn succeeded(output: Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed: {text}");
    text
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
