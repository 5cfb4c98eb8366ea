//! The main job on the embedded default: ingest real data, publish it on the
//! in-memory bus, run the consumer groups until they have caught up, report.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pipeline::bus::memory::MemoryBus;
use pipeline::bus::Bus;
use pipeline::runner::{RunStats, Runner, RunnerConfig};
use producers::ingest::{ingest_dir, ingest_file, IngestedEvent};
use producers::publish::{EventPublisher, PublishCounts};
use schemas::{topics, Encoding};
use tokio_util::sync::CancellationToken;

use crate::validate::ValidateHandler;

pub struct EmbeddedOptions {
    /// Folders whose recognised files are ingested.
    pub data_dirs: Vec<PathBuf>,
    /// Single files (JSON documents or JSON lines) to ingest too.
    pub files: Vec<PathBuf>,
    pub partitions: u32,
}

#[derive(Debug, Default)]
pub struct EmbeddedReport {
    pub files_ingested: Vec<(PathBuf, usize)>,
    pub files_skipped: Vec<(PathBuf, String)>,
    pub published: PublishCounts,
    pub validated_matches: u64,
    pub validated_players: u64,
    pub validate_stats: RunStats,
}

const VALIDATE_GROUP: &str = "validate";

pub async fn run(
    options: EmbeddedOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<EmbeddedReport> {
    let mut report = EmbeddedReport::default();
    let events = ingest(&options, &mut report)?;
    let bus = MemoryBus::new(options.partitions);
    let publisher = EventPublisher::new(bus.publisher().await?, Encoding::SingleObject);
    report.published = publisher.publish_ingested(&events).await?;

    let validate = Arc::new(ValidateHandler::default());
    let topics_in = vec![topics::MATCHES.to_string(), topics::PLAYERS.to_string()];
    let subscription = bus.subscribe(VALIDATE_GROUP, &topics_in).await?;
    let runner = Runner::new(
        RunnerConfig::new(VALIDATE_GROUP),
        validate.clone(),
        bus.publisher().await?,
    );
    let groups_done = shutdown.child_token();
    let stop = groups_done.clone();
    let task = tokio::spawn(async move { runner.run(subscription, stop).await });

    wait_until_caught_up(&bus, VALIDATE_GROUP, &topics_in, &shutdown).await;
    groups_done.cancel();
    report.validate_stats = task.await??;
    report.validated_matches = validate.matches.load(Ordering::Relaxed);
    report.validated_players = validate.players.load(Ordering::Relaxed);
    Ok(report)
}

fn ingest(
    options: &EmbeddedOptions,
    report: &mut EmbeddedReport,
) -> anyhow::Result<Vec<IngestedEvent>> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let mut events = Vec::new();
    for dir in &options.data_dirs {
        let ingested = ingest_dir(dir, now_ms)?;
        for file in ingested.files {
            report.files_ingested.push((file.path, file.events.len()));
            events.extend(file.events);
        }
        for skipped in ingested.skipped {
            report
                .files_skipped
                .push((skipped.path, skipped.reason.to_string()));
        }
    }
    for path in &options.files {
        let file_events = ingest_file(path, now_ms)?;
        report
            .files_ingested
            .push((path.clone(), file_events.len()));
        events.extend(file_events);
    }
    Ok(events)
}

async fn wait_until_caught_up(
    bus: &MemoryBus,
    group: &str,
    topics_in: &[String],
    shutdown: &CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let caught_up = bus.lag(group, topics_in).await.is_ok_and(|lags| lags.iter().all(|l| l.messages == 0));
        if caught_up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl EmbeddedReport {
    /// What the run did, for a person reading the terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (path, events) in &self.files_ingested {
            out.push_str(&format!(
                "ingested {:>4} events from {}\n",
                events,
                path.display()
            ));
        }
        for (path, reason) in &self.files_skipped {
            out.push_str(&format!("skipped  {}: {reason}\n", path.display()));
        }
        out.push_str(&format!(
            "published {} matches to `{}` and {} player profiles to `{}`\n",
            self.published.matches,
            topics::MATCHES,
            self.published.players,
            topics::PLAYERS
        ));
        out.push_str(&format!(
            "group `{VALIDATE_GROUP}`: decoded {} matches and {} profiles, {} dead-lettered to `{}`\n",
            self.validated_matches, self.validated_players, self.validate_stats.dead_lettered, topics::DEAD_LETTERS
        ));
        out
    }
}
