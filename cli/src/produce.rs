//! `scoutstream produce`: publish real-data files or generated matches.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use pipeline::bus::Bus;
use producers::ingest::{ingest_file, IngestedEvent};
use producers::loadgen::generate_matches;
use producers::publish::{EventPublisher, PublishCounts};
use schemas::registry::{register_writers, RegistryClient, RegistryConfig};
use schemas::{topics, Codec, Encoding};

pub struct ProduceOptions {
    pub files: Vec<PathBuf>,
    /// Generated matches to publish besides the files.
    pub generate: usize,
    pub seed: u64,
    pub json: bool,
    /// With a registry: Confluent-framed Avro with the registry's ids.
    pub registry: RegistryConfig,
    /// The bus's topic prefix, which subjects carry too (`<prefix><topic>-value`).
    pub topic_prefix: String,
}

pub struct ProduceReport {
    pub counts: PublishCounts,
    pub seconds: f64,
}

impl ProduceReport {
    pub fn render(&self) -> String {
        let events = self.counts.matches + self.counts.players + self.counts.jobs;
        let jobs = match self.counts.jobs {
            0 => String::new(),
            n => format!(" and {n} job requests"),
        };
        format!(
            "published {} matches and {} player profiles{jobs} in {:.2}s ({:.0} events/s)\n",
            self.counts.matches,
            self.counts.players,
            self.seconds,
            events as f64 / self.seconds.max(1e-9)
        )
    }
}

/// A progress bar on stderr while publishing, drawn only when stderr is a
/// terminal (logs and pipes stay clean).
fn progress_bar(total: usize) -> anyhow::Result<ProgressBar> {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} events, {rate}/s")?
            .with_key(
                "rate",
                |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{:.0}", state.per_sec());
                },
            )
            .progress_chars("## "),
    );
    Ok(bar)
}

pub async fn run(bus: &dyn Bus, options: ProduceOptions) -> anyhow::Result<ProduceReport> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let mut events = Vec::new();
    for path in &options.files {
        events.extend(
            ingest_file(path, now_ms).with_context(|| format!("reading {}", path.display()))?,
        );
    }
    events.extend(
        generate_matches(options.generate, options.seed)
            .into_iter()
            .map(IngestedEvent::Match),
    );
    let codec = Codec::default();
    let encoding = if options.json {
        Encoding::Json
    } else if options.registry.is_enabled() {
        let client = RegistryClient::new(&options.registry)?;
        let topics = [topics::MATCHES, topics::PLAYERS, topics::JOBS];
        register_writers(&client, &codec, &options.topic_prefix, &topics)
            .await
            .context("registering the schemas with the schema registry")?;
        Encoding::Registered
    } else {
        Encoding::SingleObject
    };
    let publisher = EventPublisher::new(bus.publisher().await?, encoding).with_codec(codec);
    let started = Instant::now();
    let mut counts = PublishCounts::default();
    let bar = progress_bar(events.len())?;
    // Chunks bound the memory of one publish and show progress on big loads.
    for chunk in events.chunks(1000) {
        let published = publisher.publish_ingested(chunk).await?;
        counts.matches += published.matches;
        counts.players += published.players;
        counts.jobs += published.jobs;
        bar.inc((published.matches + published.players + published.jobs) as u64);
    }
    // The report that follows says it all.
    bar.finish_and_clear();
    Ok(ProduceReport {
        counts,
        seconds: started.elapsed().as_secs_f64(),
    })
}
