//! `scoutstream bench`: the whole pipeline (enrich, cache, persist) on one
//! backend with N generated matches, beside baselines measured in the same run
//! ([`baselines`]: a raw librdkafka produce of the same records on Kafka, a raw
//! read of the same topic, raw COPYs of the same player rows into an empty
//! table and into `player_matches` as it stands; [`peer`]: the persist job as a
//! Python script). [`persisted`] counts the run's matches in the database
//! without slowing the writes it times; [`quiet`] starts each measurement
//! once autovacuum is done.
//!
//! Two modes: live (publish while the groups consume; publish→persisted
//! latency) and backlog (publish everything, then time the groups draining
//! it, as when replaying history).

mod baselines;
mod peer;
mod persisted;
mod plot;
mod prefill;
mod quiet;
mod report;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use consumers::persist::{player_rows, Store};
use hdrhistogram::Histogram;
use pipeline::bus::Bus;
use pipeline::config::Backend;
use producers::loadgen::generate_matches;
use producers::publish::EventPublisher;
use schemas::Encoding;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppConfig, GroupName};
use crate::groups;
use persisted::PersistedCounter;

pub use peer::PeerReport;
pub use plot::plot_svg;

const CHUNK: usize = 250;

/// `scoutstream bench`'s command line.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Generated matches to push through.
    #[arg(long, default_value_t = 5000)]
    pub matches: usize,
    /// Publish all matches first, then time the groups draining them
    /// (replaying history) instead of publishing while they consume.
    #[arg(long)]
    pub backlog: bool,
    /// Also run the peer baseline (the persist job as a Python script) on the
    /// same events with this Python, e.g. "$(scripts/python-env.sh)".
    #[arg(long, value_name = "PYTHON")]
    pub peer: Option<PathBuf>,
    /// Player rows of history (a tenth as many matches) PostgreSQL generates
    /// before the run, naming the run's accounts: the cost on a full database.
    #[arg(long, default_value_t = 0, value_name = "PLAYER_ROWS")]
    pub prefill: u64,
    /// Publish at this many events per second, whether or not the groups keep
    /// up (open loop), for latency at a given load. Live runs only.
    #[arg(long, value_name = "EVENTS_PER_S")]
    pub rate: Option<u32>,
    /// Where to write the SVG plot of throughput and lag over time.
    #[arg(long, default_value = "bench.svg")]
    pub plot: PathBuf,
}

/// Runs `scoutstream bench` and prints its report.
pub async fn command(args: BenchArgs) -> anyhow::Result<()> {
    let config = AppConfig::load(args.config.as_deref())?;
    let options = BenchOptions {
        matches: args.matches,
        backlog: args.backlog,
        peer_python: args.peer,
        prefill_player_rows: args.prefill,
        rate: args.rate,
    };
    let report = run(config, options).await?;
    print!("{}", report.render());
    let title = format!(
        "scoutstream bench: {} matches on {:?}",
        args.matches, report.backend
    );
    std::fs::write(&args.plot, plot_svg(&report.samples, &title))?;
    println!("  plot              {}", args.plot.display());
    Ok(())
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    pub matches: usize,
    /// Publish everything before the groups start, then time the drain.
    pub backlog: bool,
    /// A Python with fastavro, psycopg2 and redis-py or confluent-kafka
    /// (`scripts/python-env.sh` makes one): runs the peer baseline.
    pub peer_python: Option<PathBuf>,
    /// Player rows of history to add to PostgreSQL before the run.
    pub prefill_player_rows: u64,
    /// Live mode: publish at this many events per second (open loop)
    /// instead of as fast as the bus takes them.
    pub rate: Option<u32>,
}

pub struct BenchReport {
    pub backend: Backend,
    /// The groups that ran (`groups.enabled`).
    pub groups: Vec<GroupName>,
    pub matches: usize,
    pub backlog: bool,
    /// `player_matches` rows in the database when the groups started.
    pub history_player_rows: Option<i64>,
    pub events_per_s: f64,
    /// Our publish rate: beside the groups (live) or before them (backlog).
    pub publish_per_s: f64,
    /// Our bus publishing the same records alone, right before the raw producer.
    pub publish_alone_per_s: Option<f64>,
    /// Player rows over the time until the last of the run's matches was in the database.
    pub player_rows_per_s: f64,
    /// CPU of this process (groups, and the publisher when live) while the groups ran.
    pub cpu_s_per_1000_events: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub peak_rss_mib: f64,
    pub raw_consume_per_s: Option<f64>,
    pub raw_produce_per_s: Option<f64>,
    /// Raw COPY of the same rows into an empty scratch table.
    pub raw_copy_rows_per_s: Option<f64>,
    /// Raw COPY of the same rows into `player_matches` with its history, rolled back.
    pub raw_copy_in_place_rows_per_s: Option<f64>,
    pub peer: Option<PeerReport>,
    pub samples: Vec<Sample>,
}

/// Runs the bench on `config`'s bus and database with unique topics and groups.
pub async fn run(mut config: AppConfig, options: BenchOptions) -> anyhow::Result<BenchReport> {
    let matches = options.matches;
    if options.peer_python.is_some() {
        peer::check(&config)?;
    }
    anyhow::ensure!(
        !(options.backlog && options.rate.is_some()),
        "--rate paces a live run; a backlog is published as fast as the bus takes it"
    );
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    config.bus.topic_prefix = format!("bench-{run_id}.");
    config.bus.redis.key_prefix = format!("bench-{run_id}:");
    config.groups.id_prefix = format!("bench-{run_id}");
    config.cache.key_prefix = format!("bench-{run_id}:cache:");
    let bus = config.bus.connect().await?;
    app::ensure_topics(bus.as_ref(), &config).await?;
    let store = Store::connect(&config.database.url)
        .await
        .context("opening the database")?;
    // Match ids of this run alone, so a database used before cannot blur the figures.
    let first_id = pipeline::bus::now_ms() * 1_000;
    let mut generated = generate_matches(matches, 42);
    for (i, m) in generated.iter_mut().enumerate() {
        m.match_id = first_id + i as i64;
    }
    let history_player_rows = history(&store, &generated, options.prefill_player_rows).await?;
    quiet::wait_for_autovacuum(&store, "the groups").await;

    let stop = CancellationToken::new();
    let resources = groups::Resources::default();
    let specs = groups::build(&config, bus.clone(), &resources).await?;
    // With `[schema_registry]` set: Confluent framing with its ids, resolved by the groups.
    let writer = resources.writer(&config).await?;
    let watched: Vec<(String, Vec<String>)> = specs
        .iter()
        .map(|s| (s.id.clone(), s.topics.clone()))
        .collect();
    let published = Arc::new(AtomicU64::new(0));
    let backlog = if options.backlog {
        let publish_started = Instant::now();
        let at = publish(bus.as_ref(), writer.clone(), &generated, &published, None).await?;
        Some((at, publish_started.elapsed()))
    } else {
        None
    };

    let (cpu_before, started) = (::baselines::process_cpu_seconds(), Instant::now());
    let running = tokio::spawn(app::run_groups(
        bus.clone(),
        config.runner.clone(),
        specs,
        app::Watch::default(),
        stop.clone(),
    ));
    let sampler = tokio::spawn(sample(
        store.clone(),
        PersistedCounter::new(first_id, matches),
        published.clone(),
        stop.clone(),
    ));
    let (published_at, publish_elapsed) = match backlog {
        Some(published) => published,
        None => {
            let publish_started = Instant::now();
            let at = publish(bus.as_ref(), writer, &generated, &published, options.rate).await?;
            (at, publish_started.elapsed())
        }
    };
    wait_until_caught_up(bus.as_ref(), &watched).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = ::baselines::process_cpu_seconds() - cpu_before;
    stop.cancel();
    running.await??;
    let samples = sampler.await?;

    // A backlog's publish→persisted time is its queueing, not the pipeline's latency.
    // Nor is the wait for the groups to join: count from the first match in
    // the database on (a Kafka group takes a second or more to form).
    let latencies = match samples.iter().find(|s| s.persisted > 0) {
        Some(first) if !options.backlog => {
            let running_since = first.at_ms;
            let steady: Vec<(i64, i64)> = published_at
                .iter()
                .filter(|(_, at)| *at >= running_since)
                .copied()
                .collect();
            persisted_latencies(&store, &steady).await?
        }
        _ => None,
    };
    let peer = match &options.peer_python {
        Some(python) => Some(peer::run(python, &config, matches).await?),
        None => None,
    };
    let rows = player_rows(&generated);
    // Persisted rows over the time until the last match was in the database:
    // the bus's view (`elapsed`) also waits for the ack to reach the broker
    // (Kafka commits stored offsets every second) and for the lag read.
    let persisted_in = samples
        .iter()
        .find(|s| s.persisted >= matches as u64)
        .map_or(elapsed, |s| s.seconds);
    quiet::wait_for_autovacuum(&store, "the raw COPY").await;
    let raw_copy = baselines::raw_copy(&store, &rows).await?;
    let raw_consume_per_s = baselines::raw_consume(&config, matches).await?;
    let (publish_alone_per_s, raw_produce_per_s) =
        match baselines::produce_alone(bus.as_ref(), &config, &generated).await? {
            Some((ours, raw)) => (Some(ours), Some(raw)),
            None => (None, None),
        };
    Ok(BenchReport {
        backend: config.bus.backend,
        groups: config.groups.enabled.clone(),
        matches,
        backlog: options.backlog,
        history_player_rows,
        events_per_s: matches as f64 / elapsed,
        publish_per_s: matches as f64 / publish_elapsed.as_secs_f64(),
        publish_alone_per_s,
        player_rows_per_s: rows.len() as f64 / persisted_in,
        cpu_s_per_1000_events: cpu * 1000.0 / matches as f64,
        latency_p50_ms: latencies.as_ref().map(|h| quantile_ms(h, 0.50)),
        latency_p99_ms: latencies.as_ref().map(|h| quantile_ms(h, 0.99)),
        peak_rss_mib: ::baselines::peak_rss_kib() / 1024.0,
        raw_consume_per_s,
        raw_produce_per_s,
        raw_copy_rows_per_s: raw_copy.map(|(empty, _)| empty),
        raw_copy_in_place_rows_per_s: raw_copy.map(|(_, in_place)| in_place),
        peer,
        samples,
    })
}

/// Prefills PostgreSQL when asked; returns how many player rows it holds.
async fn history(
    store: &Store,
    generated: &[schemas::MatchCompleted],
    prefill_player_rows: u64,
) -> anyhow::Result<Option<i64>> {
    let Store::Postgres(pool) = store else {
        anyhow::ensure!(prefill_player_rows == 0, "--prefill needs PostgreSQL");
        return Ok(None);
    };
    if prefill_player_rows > 0 {
        let mut accounts: Vec<i64> = generated
            .iter()
            .flat_map(|m| m.players.iter().filter_map(|p| p.account_id))
            .filter(|id| *id != schemas::ANONYMOUS_ACCOUNT_ID)
            .collect();
        accounts.sort_unstable();
        accounts.dedup();
        let took = prefill::prefill(pool, prefill_player_rows, &accounts).await?;
        eprintln!(
            "prefill: {prefill_player_rows} player rows in {:.0} s",
            took.as_secs_f64()
        );
    }
    let rows = sqlx::query_scalar("SELECT count(*) FROM player_matches")
        .fetch_one(pool)
        .await?;
    Ok(Some(rows))
}

/// One point of the throughput and lag plot.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub seconds: f64,
    /// Matches of the run in the database.
    pub persisted: u64,
    /// When the sample was taken, in unix milliseconds.
    pub at_ms: i64,
    pub handled_per_s: f64,
    pub lag: u64,
}

const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Counts persisted matches every [`SAMPLE_EVERY`] (a cheap query, unlike a
/// broker lag read): the change is the throughput, published minus persisted
/// is the lag of the whole pipeline.
async fn sample(
    store: Store,
    mut persisted: PersistedCounter,
    published: Arc<AtomicU64>,
    stop: CancellationToken,
) -> Vec<Sample> {
    let started = Instant::now();
    let (mut samples, mut last_handled, mut last_at) = (Vec::new(), 0u64, 0.0);
    while !stop.is_cancelled() {
        if let Some(handled) = persisted.count(&store).await {
            let seconds = started.elapsed().as_secs_f64();
            let lag = published.load(Ordering::Relaxed).saturating_sub(handled);
            let rate = handled.saturating_sub(last_handled) as f64 / (seconds - last_at).max(1e-3);
            samples.push(Sample {
                seconds,
                persisted: handled,
                at_ms: pipeline::bus::now_ms(),
                handled_per_s: rate,
                lag,
            });
            (last_handled, last_at) = (handled, seconds);
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    samples
}

/// Publishes in chunks and notes when each match was durable on the bus.
/// With a `rate` (events per second), open loop: chunk `i` goes out at its
/// scheduled time whether or not the groups keep up, twenty chunks a second.
async fn publish(
    bus: &dyn Bus,
    (codec, encoding): (schemas::Codec, Encoding),
    matches: &[schemas::MatchCompleted],
    published: &AtomicU64,
    rate: Option<u32>,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let publisher = EventPublisher::new(bus.publisher().await?, encoding).with_codec(codec);
    let mut published_at = Vec::with_capacity(matches.len());
    let chunk_len = rate.map_or(CHUNK, |rate| (rate as usize / 20).clamp(1, CHUNK));
    let started = tokio::time::Instant::now();
    for (i, chunk) in matches.chunks(chunk_len).enumerate() {
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64((i * chunk_len) as f64 / f64::from(rate.max(1)));
            tokio::time::sleep_until(started + due).await;
        }
        publisher.publish_matches(chunk).await?;
        let now = pipeline::bus::now_ms();
        published_at.extend(chunk.iter().map(|m| (m.match_id, now)));
        published.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    Ok(published_at)
}

async fn wait_until_caught_up(
    bus: &dyn Bus,
    groups: &[(String, Vec<String>)],
) -> anyhow::Result<()> {
    loop {
        let mut behind = 0;
        for (group, topics_in) in groups {
            match bus.lag(group, topics_in).await {
                Ok(lags) => behind += lags.iter().map(|l| l.messages).sum::<u64>(),
                // A new Kafka cluster's group coordinator answers NotCoordinator
                // while it loads its offsets topic: ask again.
                Err(err) if err.is_retriable() => {
                    tracing::debug!(group, error = %err, "lag read failed; retrying");
                    behind += 1;
                }
                Err(err) => return Err(err.into()),
            }
        }
        if behind == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publish-to-persisted times in microseconds, one per match: the row's insert
/// time minus the time its chunk was durable on the bus. None without any, or
/// on SQLite (it keeps whole seconds).
async fn persisted_latencies(
    store: &Store,
    published_at: &[(i64, i64)],
) -> anyhow::Result<Option<Histogram<u64>>> {
    let Store::Postgres(pool) = store else {
        return Ok(None);
    };
    let ids: Vec<i64> = published_at.iter().map(|(id, _)| *id).collect();
    let rows = sqlx::query("SELECT match_id, (extract(epoch FROM updated_at) * 1000)::float8 FROM matches WHERE match_id = ANY($1)")
        .bind(&ids)
        .fetch_all(pool)
        .await?;
    let persisted: std::collections::HashMap<i64, f64> = rows
        .iter()
        .map(|r| (r.get::<i64, _>(0), r.get::<f64, _>(1)))
        .collect();
    // Three significant digits: 1 µs steps below 2 ms, 1 ms steps near 2 s.
    let mut histogram = Histogram::<u64>::new(3)?;
    for (id, at) in published_at {
        if let Some(persisted_ms) = persisted.get(id) {
            histogram.record(((persisted_ms - *at as f64).max(0.0) * 1000.0) as u64)?;
        }
    }
    Ok((!histogram.is_empty()).then_some(histogram))
}

fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}
