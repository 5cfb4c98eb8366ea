//! The harness of the binary's tests: an isolated deployment (its own topics,
//! groups, database and cache keys) driven through the real `scoutstream` binary.
#![allow(dead_code, clippy::unwrap_used)]

pub mod tls;

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool, Row};
pub use testkit::free_port;

pub const FIXTURES: [&str; 5] = [
    "details_api.json",
    "details_api_pro.json",
    "retriever_match.json",
    "retriever_player.json",
    "summaries_api.json",
];
pub const WAIT: Duration = Duration::from_secs(180);

pub fn unique(name: &str) -> String {
    format!("{name}{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

pub fn fixture_paths() -> Vec<String> {
    let dir = producers::ingest::shared_data_dir().join("opendota");
    FIXTURES
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect()
}

pub fn database_admin_url() -> String {
    std::env::var("SCOUTSTREAM_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The Confluent-compatible API of the registry `scripts/registry.sh` runs.
pub fn schema_registry_url() -> String {
    std::env::var("SCOUTSTREAM_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

pub fn redis_url() -> String {
    std::env::var("SCOUTSTREAM_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// One isolated deployment: its own topics, group ids, database and cache keys.
pub struct Deployment {
    pub backend: &'static str,
    pub topic_prefix: String,
    pub group_prefix: String,
    pub database: String,
    pub database_url: String,
    pub cache_prefix: String,
    pub cache_redis_url: String,
    pub observe_port: u16,
    /// `schema_registry.url` of every command, when set.
    pub schema_registry: Option<String>,
}

impl Deployment {
    pub async fn new(backend: &'static str) -> Self {
        let database = unique("sse2e_");
        let mut admin = PgConnection::connect(&database_admin_url()).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let base = database_admin_url();
        let database_url = format!("{}/{database}", base.rsplit_once('/').unwrap().0);
        Self {
            backend,
            topic_prefix: format!("{}.", unique("e2e")),
            group_prefix: unique("g"),
            database,
            database_url,
            cache_prefix: format!("{}:", unique("sse2e-cache")),
            cache_redis_url: redis_url(),
            observe_port: free_port(),
            schema_registry: None,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_scoutstream"));
        command
            .args(args)
            .env("SCOUTSTREAM__BUS__BACKEND", self.backend)
            .env("SCOUTSTREAM__BUS__TOPIC_PREFIX", &self.topic_prefix)
            .env(
                "SCOUTSTREAM__BUS__REDIS__KEY_PREFIX",
                format!("{}streams:", self.topic_prefix),
            )
            .env("SCOUTSTREAM__BUS__REDIS__URL", redis_url())
            .env("SCOUTSTREAM__BUS__REDIS__SESSION_TIMEOUT_SECS", "3")
            .env("SCOUTSTREAM__BUS__REDIS__CLAIM_IDLE_SECS", "2")
            .env(
                "SCOUTSTREAM__BUS__KAFKA__BROKERS",
                std::env::var("SCOUTSTREAM_KAFKA_BROKERS")
                    .unwrap_or_else(|_| "127.0.0.1:9092".into()),
            )
            .env("SCOUTSTREAM__BUS__KAFKA__SESSION_TIMEOUT_SECS", "6")
            .env("SCOUTSTREAM__GROUPS__ID_PREFIX", &self.group_prefix)
            .env("SCOUTSTREAM__DATABASE__URL", &self.database_url)
            .env("SCOUTSTREAM__CACHE__KEY_PREFIX", &self.cache_prefix)
            .env("SCOUTSTREAM__CACHE__REDIS_URL", &self.cache_redis_url)
            .env("SCOUTSTREAM__CACHE__REDIS_RETRY_INTERVAL_MS", "500")
            .env("SCOUTSTREAM__RUNNER__BATCH_SIZE", "200")
            .env(
                "SCOUTSTREAM__OBSERVE__BIND",
                format!("127.0.0.1:{}", self.observe_port),
            )
            .env("SCOUTSTREAM__GROUPS__LAG_REPORT_INTERVAL_SECS", "1")
            .env("RUST_LOG", "warn");
        if let Some(url) = &self.schema_registry {
            command.env("SCOUTSTREAM__SCHEMA_REGISTRY__URL", url);
        }
        command
    }

    pub fn produce(&self, files: &[String], generate: usize, seed: u64) -> Output {
        let generate = generate.to_string();
        let seed = seed.to_string();
        let mut args = vec!["produce", "--generate", &generate, "--seed", &seed];
        args.extend(files.iter().map(String::as_str));
        let output = self.command(&args).output().unwrap();
        assert!(
            output.status.success(),
            "produce failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    pub fn start(&self, groups: &str) -> Child {
        self.command(&["run", "--groups", groups])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.database_url).await.unwrap()
    }

    pub async fn drop_database(self) {
        let mut admin = PgConnection::connect(&database_admin_url()).await.unwrap();
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.database
        ))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

/// Every row of every table, without write timestamps, in a stable order.
pub async fn dump(pool: &PgPool) -> Vec<String> {
    let queries = [
        "SELECT row_to_json(t)::text FROM (SELECT match_id, match_seq_num, start_time, duration_secs, radiant_win, game_mode, lobby_type, league_id, cluster, radiant_team_id, radiant_team_name, dire_team_id, dire_team_name, radiant_score, dire_score, source, source_rank FROM matches ORDER BY match_id) t",
        "SELECT row_to_json(t)::text FROM (SELECT * FROM player_matches ORDER BY match_id, player_slot) t",
        "SELECT row_to_json(t)::text FROM (SELECT * FROM picks_bans ORDER BY match_id, ord) t",
        "SELECT row_to_json(t)::text FROM (SELECT account_id, persona_name, rank_tier, leaderboard_rank, country, last_seen, avatar_url, profile_url, observed_at_ms FROM players ORDER BY account_id) t",
        "SELECT row_to_json(t)::text FROM (SELECT * FROM hero_pool ORDER BY account_id, hero_id) t",
    ];
    let mut rows = Vec::new();
    for query in queries {
        for row in sqlx::query(query).fetch_all(pool).await.unwrap() {
            rows.push(row.get::<String, _>(0));
        }
    }
    rows
}

/// The values the real fixtures must leave in PostgreSQL, checked one by one.
pub async fn check_fixture_rows(pool: &PgPool) {
    // details_api_pro.json: Planet Odd (radiant) lost 15-23 to Newbee, 20 picks/bans.
    let pro = sqlx::query("SELECT radiant_team_id, radiant_team_name, dire_team_id, dire_team_name, radiant_score, dire_score, radiant_win, duration_secs FROM matches WHERE match_id = 3254426673")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(pro.get::<Option<i64>, _>(0), Some(4_251_435));
    assert_eq!(
        pro.get::<Option<String>, _>(1).as_deref(),
        Some("Planet Odd")
    );
    assert_eq!(pro.get::<Option<i64>, _>(2), Some(1_375_614));
    assert_eq!(pro.get::<Option<String>, _>(3).as_deref(), Some("Newbee"));
    assert_eq!(
        (pro.get::<Option<i32>, _>(4), pro.get::<Option<i32>, _>(5)),
        (Some(15), Some(23))
    );
    assert!(!pro.get::<bool, _>(6));
    assert_eq!(pro.get::<i32, _>(7), 1888);
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM picks_bans WHERE match_id = 3254426673"
        )
        .await,
        20
    );
    // details_api.json slot 0: account 120269134 on Tusk (100), 8/6/11, 443 GPM.
    let slot0 = sqlx::query("SELECT account_id, hero_id, kills, deaths, assists, gold_per_min, won FROM player_matches WHERE match_id = 1781962623 AND player_slot = 0")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(slot0.get::<Option<i64>, _>(0), Some(120_269_134));
    assert_eq!(
        (
            slot0.get::<i32, _>(1),
            slot0.get::<i32, _>(2),
            slot0.get::<i32, _>(3),
            slot0.get::<i32, _>(4)
        ),
        (100, 8, 6, 11)
    );
    assert_eq!(slot0.get::<i32, _>(5), 443);
    assert!(slot0.get::<bool, _>(6));
    // Steam hides slot 1's account; the game coordinator record of the same match reveals it.
    let slot1 = sqlx::query("SELECT account_id, net_worth FROM player_matches WHERE match_id = 1781962623 AND player_slot = 1").fetch_one(pool).await.unwrap();
    assert_eq!(slot1.get::<Option<i64>, _>(0), Some(109_378_329));
    assert_eq!(slot1.get::<Option<i64>, _>(1), Some(32_064));
    // Rank record and Steam summary merged into one player.
    let player = sqlx::query("SELECT persona_name, rank_tier, leaderboard_rank FROM players WHERE account_id = 120269134").fetch_one(pool).await.unwrap();
    assert_eq!(
        player.get::<Option<String>, _>(0).as_deref(),
        Some("Cherno Billy")
    );
    assert_eq!(player.get::<Option<i32>, _>(1), Some(80));
    assert_eq!(player.get::<Option<i32>, _>(2), Some(1476));
}

/// A plain HTTP/1.0 GET, enough for the metrics and health endpoints.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http(port, "GET", path, None)
}

pub fn http(port: u16, method: &str, path: &str, json: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let body = json.unwrap_or("");
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// SIGTERM, then the run must drain, commit and exit 0; returns its stdout and stderr.
pub fn stop(child: Child) -> (String, String) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let output = child.wait_with_output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    );
    assert!(output.status.success(), "run did not exit cleanly: {err}");
    (out, err)
}

pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    // Before the first run migrates, the tables do not exist yet: count nothing.
    sqlx::query(sql)
        .fetch_one(pool)
        .await
        .map(|r| r.get::<i64, _>(0))
        .unwrap_or(0)
}

pub async fn wait_for_count(pool: &PgPool, sql: &str, expected: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = 0;
    while tokio::time::Instant::now() < deadline {
        seen = count(pool, sql).await;
        if seen >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(seen, expected, "{sql}");
}

pub async fn wait_for_at_least(pool: &PgPool, sql: &str, expected: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while count(pool, sql).await < expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        count(pool, sql).await >= expected,
        "{sql} never reached {expected}"
    );
}

pub async fn deployment_bus(deployment: &Deployment) -> std::sync::Arc<dyn pipeline::bus::Bus> {
    let mut config = pipeline::config::BusConfig {
        backend: if deployment.backend == "kafka" {
            pipeline::config::Backend::Kafka
        } else {
            pipeline::config::Backend::RedisStreams
        },
        topic_prefix: deployment.topic_prefix.clone(),
        ..pipeline::config::BusConfig::default()
    };
    config.redis.key_prefix = format!("{}streams:", deployment.topic_prefix);
    config.connect().await.unwrap()
}

pub async fn persist_lag(deployment: &Deployment, group_prefix: &str) -> u64 {
    group_lag(deployment, &format!("{group_prefix}-persist")).await
}

/// Messages of `matches` and `players` that `group` has not committed yet.
pub async fn group_lag(deployment: &Deployment, group: &str) -> u64 {
    let bus = deployment_bus(deployment).await;
    let topics = ["matches".to_string(), "players".to_string()];
    bus.lag(group, &topics)
        .await
        .unwrap()
        .iter()
        .map(|l| l.messages)
        .sum()
}

pub async fn wait_for_zero_lag(deployment: &Deployment, group_prefix: &str) {
    wait_for_group(deployment, &format!("{group_prefix}-persist")).await;
}

/// Waits until `group` has committed everything on `matches` and `players`.
pub async fn wait_for_group(deployment: &Deployment, group: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if group_lag(deployment, group).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("group {group} did not catch up");
}

/// A redis-server of the test's own, on a free port, that the test can kill.
pub struct PrivateRedis {
    pub port: u16,
    child: Child,
}

impl PrivateRedis {
    pub fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let redis = Self { port, child };
        // Ready when it answers, not after a guess.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while redis.ping().is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on {port} never answered"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn ping(&self) -> redis::RedisResult<String> {
        let client = redis::Client::open(self.url())?;
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(1))?;
        redis::cmd("PING").query(&mut connection)
    }

    /// Keys under `prefix` this server holds now.
    pub fn count_keys(&self, prefix: &str) -> usize {
        let client = redis::Client::open(self.url()).unwrap();
        let mut connection = client.get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query(&mut connection)
            .unwrap();
        keys.len()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

pub fn run_ok(deployment: &Deployment, args: &[&str]) -> String {
    let output = deployment
        .command(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// Runs the persist group until it has caught up, then stops it; returns its report.
pub async fn persist_until_caught_up(deployment: &Deployment) -> String {
    let run = deployment.start("persist");
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_for_zero_lag(deployment, &deployment.group_prefix).await;
    stop(run).0
}

/// Games in all hero pools, and player rows with a known account: equal when
/// every known game is counted exactly once.
pub async fn hero_pool_games_and_known_rows(pool: &PgPool) -> (i64, i64) {
    let games = count(
        pool,
        "SELECT COALESCE(sum(games), 0)::bigint FROM hero_pool",
    )
    .await;
    let known = count(
        pool,
        "SELECT count(*) FROM player_matches WHERE account_id IS NOT NULL",
    )
    .await;
    (games, known)
}
