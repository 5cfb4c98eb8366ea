//! What the same work costs without scoutstream, measured in the same run: a raw
//! COPY of the player rows, a raw read of the topic and a raw librdkafka produce.

use std::time::{Duration, Instant};

use ::baselines::{copy_player_rows_in_place, copy_player_rows_raw};
use consumers::persist::Store;
use pipeline::bus::Bus;
use pipeline::config::Backend;
use schemas::{topics, Encoding};

use super::CHUNK;
use crate::app::AppConfig;

/// Raw COPYs of the same rows, in rows per second: into an empty scratch
/// table, then into `player_matches` as it stands, rolled back (the work the
/// rows cost in a table of this history). None but on PostgreSQL.
pub(super) async fn raw_copy(
    store: &Store,
    rows: &[consumers::persist::PlayerMatchRow],
) -> anyhow::Result<Option<(f64, f64)>> {
    let Store::Postgres(pool) = store else {
        return Ok(None);
    };
    let started = Instant::now();
    copy_player_rows_raw(pool, rows).await?;
    let empty = rows.len() as f64 / started.elapsed().as_secs_f64();
    let (_, took) = copy_player_rows_in_place(pool, rows).await?;
    let in_place = rows.len() as f64 / took.as_secs_f64();
    Ok(Some((empty, in_place)))
}

pub(super) async fn raw_consume(config: &AppConfig, events: usize) -> anyhow::Result<Option<f64>> {
    let topic = format!("{}{}", config.bus.topic_prefix, topics::MATCHES);
    let timeout = Duration::from_secs(300);
    Ok(match config.bus.backend {
        Backend::Memory => None,
        Backend::Kafka => {
            let (brokers, partitions) = (config.bus.kafka.brokers.clone(), config.bus.partitions);
            let prefetch_kbytes = config.bus.kafka.max_prefetch_kbytes;
            Some(
                tokio::task::spawn_blocking(move || {
                    ::baselines::raw_kafka_consume(
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
                ::baselines::raw_redis_consume(&config.bus.redis.url, &streams, events, timeout)
                    .await?,
            )
        }
    })
}

/// Once the groups have stopped: the same encoded, keyed records published by
/// our bus and then by a bare librdkafka producer, each to a topic of its own.
/// Returns (ours, raw) records per second.
pub(super) async fn produce_alone(
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
    let raw = ::baselines::raw_kafka_produce(brokers, &topic, &records, CHUNK).await?;
    Ok(Some((ours, raw)))
}
