//! `scoutstream bench`: the whole pipeline (enrich, cache, persist) on one
//! backend with N generated matches, beside raw baselines measured in the same
//! run: a raw librdkafka produce of the same records (Kafka), a raw read of the
//! same topic and a raw COPY of the same player rows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use consumers::persist::{copy_player_rows_raw, player_rows, Store};
use pipeline::bus::Bus;
use pipeline::config::Backend;
use producers::loadgen::generate_matches;
use producers::publish::EventPublisher;
use schemas::{topics, Encoding};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppConfig, GroupName};
use crate::groups;

const CHUNK: usize = 250;

pub struct BenchReport {
    pub backend: Backend,
    /// The groups that ran (`groups.enabled`).
    pub groups: Vec<GroupName>,
    pub matches: usize,
    pub events_per_s: f64,
    /// Our publish rate, measured while the groups were consuming.
    pub publish_per_s: f64,
    /// Our bus publishing the same records alone, right before the raw producer.
    pub publish_alone_per_s: Option<f64>,
    pub player_rows_per_s: f64,
    pub cpu_s_per_1000_events: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub peak_rss_mib: f64,
    pub raw_consume_per_s: Option<f64>,
    pub raw_produce_per_s: Option<f64>,
    pub raw_copy_rows_per_s: Option<f64>,
    pub samples: Vec<Sample>,
}

/// Runs the bench on `config`'s bus and database with unique topics and groups.
pub async fn run(mut config: AppConfig, matches: usize) -> anyhow::Result<BenchReport> {
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

    let stop = CancellationToken::new();
    let resources = groups::Resources::default();
    let specs = groups::build(&config, bus.clone(), &resources).await?;
    // With `[schema_registry]` set: Confluent framing with its ids, resolved by the groups.
    let writer = resources.writer(&config).await?;
    let watched: Vec<(String, Vec<String>)> = specs
        .iter()
        .map(|s| (s.id.clone(), s.topics.clone()))
        .collect();
    let running = tokio::spawn(app::run_groups(
        bus.clone(),
        config.runner.clone(),
        specs,
        app::Watch::default(),
        stop.clone(),
    ));

    let (cpu_before, started) = (pipeline::baseline::process_cpu_seconds(), Instant::now());
    let published = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn(sample(
        store.clone(),
        first_id,
        published.clone(),
        stop.clone(),
    ));
    let publish_started = Instant::now();
    let published_at = publish(bus.as_ref(), writer, &generated, &published).await?;
    let publish_per_s = matches as f64 / publish_started.elapsed().as_secs_f64();
    wait_until_caught_up(bus.as_ref(), &watched).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = pipeline::baseline::process_cpu_seconds() - cpu_before;
    stop.cancel();
    running.await??;
    let samples = sampler.await?;

    let latencies = persisted_latencies_ms(&store, &published_at).await?;
    let rows = player_rows(&generated);
    let raw_copy_rows_per_s = raw_copy(&store, &rows).await?;
    let raw_consume_per_s = raw_consume(&config, matches).await?;
    let (publish_alone_per_s, raw_produce_per_s) =
        match produce_alone(bus.as_ref(), &config, &generated).await? {
            Some((ours, raw)) => (Some(ours), Some(raw)),
            None => (None, None),
        };
    Ok(BenchReport {
        backend: config.bus.backend,
        groups: config.groups.enabled.clone(),
        matches,
        events_per_s: matches as f64 / elapsed,
        publish_per_s,
        publish_alone_per_s,
        player_rows_per_s: rows.len() as f64 / elapsed,
        cpu_s_per_1000_events: cpu * 1000.0 / matches as f64,
        latency_p50_ms: percentile(&latencies, 0.50),
        latency_p99_ms: percentile(&latencies, 0.99),
        peak_rss_mib: pipeline::baseline::peak_rss_kib() / 1024.0,
        raw_consume_per_s,
        raw_produce_per_s,
        raw_copy_rows_per_s,
        samples,
    })
}

/// One point of the throughput and lag plot.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub seconds: f64,
    pub handled_per_s: f64,
    pub lag: u64,
}

const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Counts persisted matches every [`SAMPLE_EVERY`] (a cheap query, unlike a
/// broker lag read): the change is the throughput, published minus persisted
/// is the lag of the whole pipeline.
async fn sample(
    store: Store,
    first_id: i64,
    published: Arc<AtomicU64>,
    stop: CancellationToken,
) -> Vec<Sample> {
    let started = Instant::now();
    let (mut samples, mut last_handled, mut last_at) = (Vec::new(), 0u64, 0.0);
    while !stop.is_cancelled() {
        if let Some(handled) = persisted_matches(&store, first_id).await {
            let seconds = started.elapsed().as_secs_f64();
            let lag = published.load(Ordering::Relaxed).saturating_sub(handled);
            let rate = handled.saturating_sub(last_handled) as f64 / (seconds - last_at).max(1e-3);
            samples.push(Sample {
                seconds,
                handled_per_s: rate,
                lag,
            });
            (last_handled, last_at) = (handled, seconds);
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    samples
}

async fn persisted_matches(store: &Store, first_id: i64) -> Option<u64> {
    let query = "SELECT count(*) FROM matches WHERE match_id >= $1";
    let count: i64 = match store {
        Store::Postgres(pool) => sqlx::query_scalar(query)
            .bind(first_id)
            .fetch_one(pool)
            .await
            .ok()?,
        Store::Sqlite(pool) => sqlx::query_scalar(query)
            .bind(first_id)
            .fetch_one(pool)
            .await
            .ok()?,
    };
    u64::try_from(count).ok()
}

/// A line chart of throughput (left axis) and lag (right axis) over time, as SVG.
pub fn plot_svg(samples: &[Sample], title: &str) -> String {
    let (width, height, margin) = (800.0, 400.0, 60.0);
    let max_t = samples.iter().map(|s| s.seconds).fold(1.0, f64::max);
    let max_rate = samples.iter().map(|s| s.handled_per_s).fold(1.0, f64::max);
    let max_lag = samples.iter().map(|s| s.lag as f64).fold(1.0, f64::max);
    let x = |t: f64| margin + t / max_t * (width - 2.0 * margin);
    let y = |v: f64, max: f64| height - margin - v / max * (height - 2.0 * margin);
    let line = |f: &dyn Fn(&Sample) -> (f64, f64)| -> String {
        samples
            .iter()
            .map(|s| {
                let (px, py) = f(s);
                format!("{px:.1},{py:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rate = line(&|s| (x(s.seconds), y(s.handled_per_s, max_rate)));
    let lag = line(&|s| (x(s.seconds), y(s.lag as f64, max_lag)));
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{margin}" y="25" font-size="14">{title}</text>
<line x1="{margin}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/>
<line x1="{margin}" y1="{margin}" x2="{margin}" y2="{b}" stroke="black"/>
<line x1="{r}" y1="{margin}" x2="{r}" y2="{b}" stroke="black"/>
<text x="{margin}" y="{below}">0 s</text><text x="{r}" y="{below}" text-anchor="end">{max_t:.1} s</text>
<text x="5" y="{margin}" fill="#1f77b4">{max_rate:.0}/s</text>
<text x="{rr}" y="{margin}" fill="#d62728">{max_lag:.0}</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{rate}"/>
<polyline fill="none" stroke="#d62728" stroke-width="2" points="{lag}"/>
<text x="{legend}" y="45" fill="#1f77b4">matches persisted per second</text>
<text x="{legend}" y="60" fill="#d62728">lag: published, not yet persisted</text>
</svg>
"##,
        b = height - margin,
        r = width - margin,
        below = height - margin + 18.0,
        rr = width - margin + 5.0,
        legend = width / 2.0,
    )
}

/// Publishes in chunks and notes when each match was durable on the bus.
async fn publish(
    bus: &dyn Bus,
    (codec, encoding): (schemas::Codec, Encoding),
    matches: &[schemas::MatchCompleted],
    published: &AtomicU64,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let publisher = EventPublisher::new(bus.publisher().await?, encoding).with_codec(codec);
    let mut published_at = Vec::with_capacity(matches.len());
    for chunk in matches.chunks(CHUNK) {
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
            behind += bus
                .lag(group, topics_in)
                .await?
                .iter()
                .map(|l| l.messages)
                .sum::<u64>();
        }
        if behind == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publish-to-persisted time per match: the row's insert time minus the time its
/// chunk was durable on the bus (PostgreSQL only: SQLite keeps whole seconds).
async fn persisted_latencies_ms(
    store: &Store,
    published_at: &[(i64, i64)],
) -> anyhow::Result<Vec<f64>> {
    let Store::Postgres(pool) = store else {
        return Ok(Vec::new());
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
    let mut latencies: Vec<f64> = published_at
        .iter()
        .filter_map(|(id, at)| persisted.get(id).map(|p| (p - *at as f64).max(0.0)))
        .collect();
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

async fn raw_copy(
    store: &Store,
    rows: &[consumers::persist::PlayerMatchRow],
) -> anyhow::Result<Option<f64>> {
    let Store::Postgres(pool) = store else {
        return Ok(None);
    };
    let started = Instant::now();
    copy_player_rows_raw(pool, rows).await?;
    Ok(Some(rows.len() as f64 / started.elapsed().as_secs_f64()))
}

async fn raw_consume(config: &AppConfig, events: usize) -> anyhow::Result<Option<f64>> {
    let topic = format!("{}{}", config.bus.topic_prefix, topics::MATCHES);
    let timeout = Duration::from_secs(300);
    Ok(match config.bus.backend {
        Backend::Memory => None,
        Backend::Kafka => {
            let (brokers, partitions) = (config.bus.kafka.brokers.clone(), config.bus.partitions);
            let prefetch_kbytes = config.bus.kafka.max_prefetch_kbytes;
            Some(
                tokio::task::spawn_blocking(move || {
                    pipeline::baseline::raw_kafka_consume(
                        &brokers,
                        &topic,
                        partitions,
                        events,
                        prefetch_kbytes,
                        timeout,
                    )
                })
                .await??
                .per_second,
            )
        }
        Backend::RedisStreams => {
            let streams: Vec<String> = (0..config.bus.partitions)
                .map(|p| format!("{}{topic}:{p}", config.bus.redis.key_prefix))
                .collect();
            Some(
                pipeline::baseline::raw_redis_consume(
                    &config.bus.redis.url,
                    &streams,
                    events,
                    timeout,
                )
                .await?,
            )
        }
    })
}

/// Once the groups have stopped: the same encoded, keyed records published by
/// our bus and then by a bare librdkafka producer, each to a topic of its own.
/// Returns (ours, raw) records per second.
async fn produce_alone(
    bus: &dyn Bus,
    config: &AppConfig,
    matches: &[schemas::MatchCompleted],
) -> anyhow::Result<Option<(f64, f64)>> {
    if config.bus.backend != Backend::Kafka {
        return Ok(None);
    }
    let codec = schemas::Codec::default();
    let records = matches
        .iter()
        .map(|m| {
            let payload = codec.encode(m, Encoding::SingleObject)?;
            Ok(pipeline::bus::Record::new(
                topics::match_key(m.match_id),
                payload,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    bus.ensure_topic("ours-produce", config.bus.partitions)
        .await?;
    let publisher = bus.publisher().await?;
    let started = Instant::now();
    for chunk in records.chunks(CHUNK) {
        publisher.publish_batch("ours-produce", chunk).await?;
    }
    let ours = records.len() as f64 / started.elapsed().as_secs_f64();
    bus.ensure_topic("raw-produce", config.bus.partitions)
        .await?;
    let topic = format!("{}raw-produce", config.bus.topic_prefix);
    let brokers = &config.bus.kafka.brokers;
    let raw = pipeline::baseline::raw_kafka_produce(brokers, &topic, &records, CHUNK).await?;
    Ok(Some((ours, raw)))
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(index).copied()
}

impl BenchReport {
    pub fn render(&self) -> String {
        let opt =
            |v: Option<f64>, unit: &str| v.map_or("n/a".to_string(), |v| format!("{v:.0}{unit}"));
        let ratio = |ours: f64, raw: Option<f64>| {
            raw.map_or("n/a".to_string(), |raw| format!("{:.2}", ours / raw))
        };
        let mut out = format!(
            "bench: {} generated matches (10 players each) on {:?}, groups {}\n",
            self.matches,
            self.backend,
            self.groups
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join("+")
        );
        out.push_str(&format!(
            "  publish (beside the groups) {:>10.0} events/s\n",
            self.publish_per_s
        ));
        out.push_str(&format!("  publish (alone)   {:>10} events/s   raw produce of the same records {:>8}   ratio {}\n", opt(self.publish_alone_per_s, ""), opt(self.raw_produce_per_s, "/s"), self.publish_alone_per_s.map_or("n/a".into(), |ours| ratio(ours, self.raw_produce_per_s))));
        out.push_str(&format!("  end to end        {:>10.0} events/s   raw consume of the same topic {:>10}   ratio {}\n", self.events_per_s, opt(self.raw_consume_per_s, "/s"), ratio(self.events_per_s, self.raw_consume_per_s)));
        out.push_str(&format!("  player rows       {:>10.0} rows/s     raw COPY of the same rows     {:>10}   ratio {}\n", self.player_rows_per_s, opt(self.raw_copy_rows_per_s, "/s"), ratio(self.player_rows_per_s, self.raw_copy_rows_per_s)));
        out.push_str(&format!(
            "  CPU               {:>10.3} s per 1000 events\n",
            self.cpu_s_per_1000_events
        ));
        out.push_str(&format!(
            "  publish→persisted p50 {} p99 {}\n",
            opt(self.latency_p50_ms, " ms"),
            opt(self.latency_p99_ms, " ms")
        ));
        out.push_str(&format!(
            "  peak RSS          {:>10.1} MiB\n",
            self.peak_rss_mib
        ));
        out
    }
}
