//! The baselines scoutstream's benchmarks print beside their own figures,
//! measured in the same run: the plain clients doing the same work with no
//! scoutstream layer. Benchmark code lives here, outside the libraries
//! (`pipeline`, `consumers`) the product runs on.
//!
//! - [`kafka`]: a bare librdkafka produce and read of a topic.
//! - [`redis`]: a bare XREADGROUP/XACK read of the streams.
//! - [`postgres`]: a raw `COPY` of player rows into a scratch table.
//! - [`process`]: this process's CPU seconds and peak RSS.
//!
//! `benches/bus.rs` (`cargo bench -p baselines --bench bus`) runs the bus
//! backends under the runner beside the raw reads.

pub mod kafka;
pub mod postgres;
pub mod process;
pub mod redis;

pub use kafka::{raw_kafka_consume, raw_kafka_produce};
pub use postgres::{copy_player_rows_in_place, copy_player_rows_raw, COPY_SCRATCH_TABLE};
pub use process::{peak_rss_kib, process_cpu_seconds};
pub use redis::raw_redis_consume;

/// How fast a consumer read, and the CPU this process spent per record doing it.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeRate {
    pub per_second: f64,
    pub cpu_us_per_event: f64,
}
