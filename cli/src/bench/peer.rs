//! The peer baseline: `producers/peer/persist_peer.py`, the persist job as a user
//! would write it in Python (redis-py or confluent-kafka, fastavro, psycopg2
//! `execute_values` upserts), run on the same topic as the groups in the same
//! bench, with a consumer group and tables of its own.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use pipeline::config::Backend;
use schemas::topics;
use serde::Deserialize;

use crate::app::AppConfig;

const SCRIPT: &str = include_str!("../../../producers/peer/persist_peer.py");

/// What the script reports on its last line.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PeerReport {
    pub events: u64,
    pub player_rows: u64,
    pub seconds: f64,
    pub cpu_s: f64,
    pub peak_rss_kib: f64,
}

impl PeerReport {
    pub fn rows_per_s(&self) -> f64 {
        self.player_rows as f64 / self.seconds
    }
}

/// Fails when the peer cannot run on `config`: checked before the bench starts.
pub fn check(config: &AppConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.database.url.starts_with("postgres"),
        "the peer baseline writes to PostgreSQL; `database.url` is {}",
        config.database.url
    );
    anyhow::ensure!(
        config.bus.backend != Backend::Memory,
        "the peer baseline reads Kafka or Redis Streams; `bus.backend` is memory"
    );
    Ok(())
}

/// Runs the script with `python` until it has stored `events` matches.
pub async fn run(python: &Path, config: &AppConfig, events: usize) -> anyhow::Result<PeerReport> {
    check(config)?;
    let dir = std::env::temp_dir().join(format!(
        "scoutstream-peer-{}",
        config.groups.id_prefix.replace(['/', '.'], "-")
    ));
    std::fs::create_dir_all(&dir)?;
    let (script, schema) = (dir.join("persist_peer.py"), dir.join("MatchCompleted.avsc"));
    std::fs::write(&script, SCRIPT)?;
    std::fs::write(&schema, schemas::avro::MATCH_COMPLETED_AVSC)?;

    let mut command = tokio::process::Command::new(python);
    command
        .arg(&script)
        .arg("--schema")
        .arg(&schema)
        .args(["--events", &events.to_string()])
        .args(["--dsn", &config.database.url])
        .args(["--group", &format!("{}-peer", config.groups.id_prefix)])
        // Confluent framing when the registry is in use: magic byte and a 4-byte id.
        .args([
            "--header",
            if config.schema_registry.is_enabled() {
                "5"
            } else {
                "10"
            },
        ]);
    let topic = format!("{}{}", config.bus.topic_prefix, topics::MATCHES);
    match config.bus.backend {
        Backend::RedisStreams => command
            .args(["--backend", "redis-streams"])
            .args(["--redis-url", &config.bus.redis.url])
            .args([
                "--streams",
                &format!("{}{topic}", config.bus.redis.key_prefix),
            ])
            .args(["--partitions", &config.bus.partitions.to_string()]),
        Backend::Kafka => command
            .args(["--backend", "kafka"])
            .args(["--brokers", &config.bus.kafka.brokers])
            .args(["--topic", &topic]),
        Backend::Memory => anyhow::bail!("the peer baseline reads Kafka or Redis Streams"),
    };
    let output = command
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "the peer baseline failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("reading the peer's report `{last}`"))
}
