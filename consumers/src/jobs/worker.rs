//! The worker pool: runs jobs from the database under leases.
//!
//! One loop per process claims due jobs in batches (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL), runs up to `workers` of them at once on their own
//! tasks, and records how each attempt ended in batches too. While jobs run,
//! their leases are renewed every third of `lease_ms`; a job whose renewal
//! finds it gone (taken back after a stall) is stopped. Any pool takes back
//! jobs whose lease ran out: their worker died, so that attempt counts.
//! Retries and delayed jobs are rows with a later `run_at_ms`: nobody sleeps.
//! Every transaction is followed by the status events and Redis mirror
//! writes of the jobs it changed, and the dead letters of jobs that died.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pipeline::internal_events::InternalEvent;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::config::JobsConfig;
use super::events::{JobLeaseLost, JobPoolStepFailed, JobsReleased, JobsTakenBack};
use super::executor::JobExecutor;
use super::lease::{self, Finish};
use super::model::JobRecord;
use super::tracker::JobTracker;
use super::JobError;
use pipeline::bus::now_ms;

/// What one pool did, for its caller and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub claimed: u64,
    pub succeeded: u64,
    pub retried: u64,
    pub dead: u64,
    /// Jobs of dead workers this pool took back.
    pub taken_back: u64,
    /// Jobs this pool stopped at shutdown and handed back.
    pub released: u64,
    /// Attempts whose result was dropped: the lease was gone by then.
    pub lost: u64,
}

/// How an attempt ended, before it is recorded.
struct Attempt {
    job: JobRecord,
    result: Result<(), JobError>,
}

/// Runs jobs from the database until shut down.
pub struct WorkerPool {
    tracker: JobTracker,
    executor: Arc<dyn JobExecutor>,
    config: JobsConfig,
    owner: String,
}

impl WorkerPool {
    /// `group` names the pool in the dead letters it writes (the jobs
    /// group's id). The owner id is unique per pool.
    pub fn new(
        tracker: JobTracker,
        executor: Arc<dyn JobExecutor>,
        config: JobsConfig,
        group: impl Into<String>,
    ) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        let owner = format!(
            "{host}-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Self {
            tracker: tracker.with_group(group),
            executor,
            config,
            owner,
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims and runs jobs until `shutdown`; then lets running jobs finish
    /// for `shutdown_grace_ms` and releases the rest.
    pub async fn run(self, shutdown: CancellationToken) -> PoolStats {
        let mut state = Running::default();
        let mut poll = interval(self.config.poll_interval());
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut renew = interval(self.config.lease() / 3);
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let recorded = self.tracker.recorded();
        let mut look = true;
        loop {
            if look && !shutdown.is_cancelled() {
                look = self.claim_and_start(&mut state).await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(joined) = state.tasks.join_next(), if !state.tasks.is_empty() => {
                    let mut ended = Vec::new();
                    ended.extend(joined.ok());
                    while let Some(joined) = state.tasks.try_join_next() {
                        ended.extend(joined.ok());
                    }
                    self.record_attempts(&mut state, ended).await;
                    look = true;
                }
                _ = renew.tick() => self.renew(&mut state).await,
                _ = poll.tick() => {
                    self.take_back_expired(&mut state).await;
                    // What a stopped process (or a failed relay) left behind.
                    self.flush().await;
                    look = true;
                }
                _ = recorded.notified() => look = true,
            }
        }
        self.drain(&mut state).await;
        state.stats
    }

    /// Claims as many due jobs as there are free workers and starts them.
    /// True when the claim came back full (more may be due).
    async fn claim_and_start(&self, state: &mut Running) -> bool {
        let free = self.config.workers.saturating_sub(state.tasks.len());
        let limit = free.min(self.config.claim_batch);
        if limit == 0 {
            return false;
        }
        let claimed = match lease::claim(
            self.tracker.store(),
            &self.owner,
            now_ms(),
            self.config.lease_ms as i64,
            limit as i64,
        )
        .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                JobPoolStepFailed {
                    step: "claim",
                    error: &err,
                }
                .emit();
                return false;
            }
        };
        state.stats.claimed += claimed.len() as u64;
        let full = claimed.len() == limit;
        // Their `running` rows go out with the next relay (after the first
        // attempt ends, or on the next poll): one relay per batch, not two.
        for job in claimed {
            let executor = self.executor.clone();
            let job_id = job.job_id.clone();
            let handle = state.tasks.spawn(async move {
                let result = match job.job_type() {
                    Some(job_type) => executor.execute(job_type, &job).await,
                    None => Err(JobError::Invalid(format!(
                        "unknown job type `{}`",
                        job.job_type
                    ))),
                };
                Attempt { job, result }
            });
            state.leases.insert(job_id, handle);
        }
        full
    }

    /// Records how attempts ended, in one transaction, then relays them.
    async fn record_attempts(&self, state: &mut Running, ended: Vec<Attempt>) {
        if ended.is_empty() {
            return;
        }
        let now = now_ms();
        let mut finishes = Vec::with_capacity(ended.len());
        for Attempt { job, result } in ended {
            state.leases.remove(&job.job_id);
            finishes.push(self.finish_of(&job, &result, now));
        }
        let Some(finished) = self.finish_with_retries(&finishes, now).await else {
            return;
        };
        state.stats.lost += (finishes.len() - finished.len()) as u64;
        for missing in finishes
            .iter()
            .filter(|f| !finished.iter().any(|j| j.job_id == f.job_id))
        {
            JobLeaseLost {
                job_id: &missing.job_id,
                owner: &self.owner,
            }
            .emit();
        }
        for job in &finished {
            match job.status.as_str() {
                "succeeded" => state.stats.succeeded += 1,
                "retry_scheduled" => state.stats.retried += 1,
                _ => state.stats.dead += 1,
            }
        }
        self.flush().await;
    }

    /// The row change an attempt's result makes: done, again later, or dead.
    fn finish_of(&self, job: &JobRecord, result: &Result<(), JobError>, now: i64) -> Finish {
        let (status, run_at_ms) = match result {
            Ok(()) => ("succeeded", job.run_at_ms),
            Err(err) if err.is_retriable() && job.attempts < job.max_attempts => {
                let backoff = self.config.backoff(job.attempts as u32);
                ("retry_scheduled", now + backoff.as_millis() as i64)
            }
            Err(_) => ("dead", job.run_at_ms),
        };
        Finish {
            job_id: job.job_id.clone(),
            attempt: job.attempts,
            status,
            run_at_ms,
            error: result.as_ref().err().map(ToString::to_string),
            error_kind: result.as_ref().err().map(JobError::kind),
        }
    }

    /// A failed write is tried again a few times: the attempts ran, and
    /// dropping their results would run them again once the leases expire.
    async fn finish_with_retries(&self, finishes: &[Finish], now: i64) -> Option<Vec<JobRecord>> {
        let mut delay = Duration::from_millis(100);
        for tries_left in (0..5).rev() {
            match lease::finish(self.tracker.store(), &self.owner, finishes, now).await {
                Ok(finished) => return Some(finished),
                Err(err) => {
                    JobPoolStepFailed {
                        step: "finish",
                        error: &err,
                    }
                    .emit();
                    if tries_left == 0 || !err.is_retriable() {
                        return None;
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        None
    }

    /// Extends the leases of running jobs; stops those no longer held.
    async fn renew(&self, state: &mut Running) {
        if state.leases.is_empty() {
            return;
        }
        let held = match lease::renew(
            self.tracker.store(),
            &self.owner,
            now_ms(),
            self.config.lease_ms as i64,
        )
        .await
        {
            Ok(held) => held,
            Err(err) => {
                JobPoolStepFailed {
                    step: "renew",
                    error: &err,
                }
                .emit();
                return;
            }
        };
        let gone: Vec<String> = state
            .leases
            .keys()
            .filter(|id| !held.contains(id))
            .cloned()
            .collect();
        for job_id in gone {
            if let Some(handle) = state.leases.remove(&job_id) {
                handle.abort();
                state.stats.lost += 1;
                JobLeaseLost {
                    job_id: &job_id,
                    owner: &self.owner,
                }
                .emit();
            }
        }
    }

    /// Takes back jobs whose worker's lease ran out.
    async fn take_back_expired(&self, state: &mut Running) {
        let taken = match lease::take_back_expired(
            self.tracker.store(),
            now_ms(),
            self.config.claim_batch as i64,
        )
        .await
        {
            Ok(taken) => taken,
            Err(err) => {
                JobPoolStepFailed {
                    step: "take back",
                    error: &err,
                }
                .emit();
                return;
            }
        };
        if taken.is_empty() {
            return;
        }
        state.stats.taken_back += taken.len() as u64;
        JobsTakenBack { count: taken.len() }.emit();
        state.stats.dead += taken.iter().filter(|job| job.status == "dead").count() as u64;
        self.flush().await;
    }

    /// Lets running jobs finish within the grace period, then stops and
    /// releases the rest.
    async fn drain(&self, state: &mut Running) {
        let deadline = Instant::now() + self.config.shutdown_grace();
        let mut renew = interval(self.config.lease() / 3);
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while !state.tasks.is_empty() {
            tokio::select! {
                Some(joined) = state.tasks.join_next() => {
                    let ended: Vec<Attempt> = joined.ok().into_iter().collect();
                    self.record_attempts(state, ended).await;
                }
                _ = renew.tick() => self.renew(state).await,
                _ = sleep_until(deadline) => break,
            }
        }
        let stopped: Vec<String> = state.leases.keys().cloned().collect();
        state.tasks.abort_all();
        while state.tasks.join_next().await.is_some() {}
        match lease::release(self.tracker.store(), &self.owner, &stopped, now_ms()).await {
            Ok(released) => {
                state.stats.released += released.len() as u64;
                JobsReleased {
                    count: released.len(),
                }
                .emit();
                self.flush().await;
            }
            Err(err) => JobPoolStepFailed {
                step: "release",
                error: &err,
            }
            .emit(),
        }
    }

    /// Relays the outbox (status events, dead letters, mirror). The rows are
    /// committed: a failed relay leaves them to the next one.
    async fn flush(&self) {
        if let Err(err) = self.tracker.flush().await {
            JobPoolStepFailed {
                step: "relay the outbox",
                error: &err,
            }
            .emit();
        }
    }
}

/// The pool's jobs in flight and its counters.
#[derive(Default)]
struct Running {
    tasks: JoinSet<Attempt>,
    /// Running jobs by id, to stop one whose lease is gone.
    leases: HashMap<String, AbortHandle>,
    stats: PoolStats,
}
