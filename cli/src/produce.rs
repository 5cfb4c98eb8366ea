//! `scoutstream produce`: publish real-data files or generated matches.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
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

/// A one-line progress bar on stderr, redrawn in place.
fn progress(done: usize, total: usize, seconds: f64) {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    eprint!(
        "\r[{}{}] {done}/{total} events, {:.0}/s",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled),
        done as f64 / seconds.max(1e-9)
    );
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
    // Chunks bound the memory of one publish and show progress on big loads.
    for chunk in events.chunks(1000) {
        let published = publisher.publish_ingested(chunk).await?;
        counts.matches += published.matches;
        counts.players += published.players;
        counts.jobs += published.jobs;
        progress(
            counts.matches + counts.players + counts.jobs,
            events.len(),
            started.elapsed().as_secs_f64(),
        );
    }
    if !events.is_empty() {
        eprintln!();
    }
    Ok(ProduceReport {
        counts,
        seconds: started.elapsed().as_secs_f64(),
    })
}
