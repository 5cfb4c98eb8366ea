//! What a runner is configured with, and the backoff its retries (and the
//! jobs group's) wait by.

use std::time::Duration;

use rand::Rng;

/// [`RunnerConfig::max_attempts`] without a limit.
pub const UNLIMITED_ATTEMPTS: u32 = u32::MAX;

/// Deliveries per batch unless a group or the configuration says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 500;

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub group: String,
    pub batch_size: usize,
    pub batch_wait: Duration,
    /// Attempts per delivery for retriable errors, the first one included;
    /// then the delivery is dead-lettered. [`UNLIMITED_ATTEMPTS`] (the default)
    /// retries until it succeeds: a retriable error is a server away (the
    /// database restarting, the broker failing over), and dead-lettering good
    /// events through an outage would leave them out of the store.
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Partitions of one batch handled at the same time.
    pub partition_concurrency: usize,
    pub dead_letter_topic: String,
}

impl RunnerConfig {
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            batch_size: DEFAULT_BATCH_SIZE,
            batch_wait: Duration::from_millis(200),
            max_attempts: UNLIMITED_ATTEMPTS,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            partition_concurrency: 8,
            dead_letter_topic: schemas::topics::DEAD_LETTERS.into(),
        }
    }

    /// The wait before retry `attempt` ([`jittered_backoff`]).
    pub fn backoff(&self, attempt: u32) -> Duration {
        jittered_backoff(self.backoff_initial, self.backoff_max, attempt)
    }
}

/// Exponential backoff from `initial`, doubling per attempt up to `max`, with
/// jitter (half to full), so retrying workers spread out instead of hitting a
/// recovering server together. A function of the attempt number, not a
/// stateful iterator, because job attempts are counted in the database.
pub fn jittered_backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let cap = exp.min(max).as_millis().max(1) as u64;
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}
