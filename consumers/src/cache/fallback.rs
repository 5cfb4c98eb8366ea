//! Whether the cache is on Redis or on its in-process fallback, and when to
//! try Redis again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// On Redis.
    Redis,
    /// On the fallback, and this operation tries Redis again.
    Probe,
    /// On the fallback: memory only, no Redis call.
    Memory,
}

/// Where one operation goes, and the mode it was routed in: an answer that
/// arrives after the mode changed says nothing about Redis now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    pub(crate) route: Route,
    epoch: u64,
}

#[derive(Default)]
struct Mode {
    /// When the fallback began; `None` while on Redis.
    since: Option<Instant>,
    retry_at: Option<Instant>,
    /// Bumped at each switch.
    epoch: u64,
}

pub(crate) struct Fallback {
    retry_interval: Duration,
    active: AtomicBool,
    mode: Mutex<Mode>,
}

impl Fallback {
    pub(crate) fn new(retry_interval: Duration) -> Self {
        Self {
            retry_interval,
            active: AtomicBool::new(false),
            mode: Mutex::new(Mode::default()),
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub(crate) fn retry_interval(&self) -> Duration {
        self.retry_interval
    }

    pub(crate) fn route(&self) -> Ticket {
        let mut mode = self.lock();
        let epoch = mode.epoch;
        let route = match (mode.since, mode.retry_at) {
            (None, _) => Route::Redis,
            (Some(_), Some(at)) if Instant::now() < at => Route::Memory,
            (Some(_), _) => {
                // One caller probes; the others stay on memory until it is done.
                mode.retry_at = Some(Instant::now() + self.retry_interval);
                Route::Probe
            }
        };
        Ticket { route, epoch }
    }

    /// Redis answered. A probe's answer ends the fallback: returns how long
    /// the fallback lasted when it did.
    pub(crate) fn answered(&self, ticket: Ticket) -> Option<Duration> {
        if ticket.route != Route::Probe {
            return None;
        }
        let mut mode = self.lock();
        if mode.epoch != ticket.epoch {
            return None;
        }
        let since = mode.since.take()?;
        mode.retry_at = None;
        mode.epoch += 1;
        self.active.store(false, Ordering::Release);
        Some(since.elapsed())
    }

    /// Redis did not answer. Returns true when this starts a fallback.
    pub(crate) fn unavailable(&self, ticket: Ticket) -> bool {
        let mut mode = self.lock();
        if mode.epoch != ticket.epoch {
            return false;
        }
        let now = Instant::now();
        mode.retry_at = Some(now + self.retry_interval);
        if mode.since.is_some() {
            return false;
        }
        mode.since = Some(now);
        mode.epoch += 1;
        self.active.store(true, Ordering::Release);
        true
    }

    fn lock(&self) -> MutexGuard<'_, Mode> {
        // The guarded state stays consistent at every step: a panic elsewhere
        // while holding it leaves nothing half done.
        self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_probe_per_interval_and_a_probe_answer_ends_the_fallback() {
        let fallback = Fallback::new(Duration::from_millis(30));
        let first = fallback.route();
        assert_eq!(first.route, Route::Redis);
        assert!(fallback.unavailable(first));
        assert!(
            !fallback.unavailable(first),
            "the same outage activates once"
        );
        assert!(fallback.is_active());
        assert_eq!(fallback.route().route, Route::Memory);

        std::thread::sleep(Duration::from_millis(40));
        let probe = fallback.route();
        assert_eq!(probe.route, Route::Probe);
        assert_eq!(
            fallback.route().route,
            Route::Memory,
            "others wait for the probe"
        );
        assert!(fallback.answered(probe).is_some());
        assert!(!fallback.is_active());
        assert_eq!(fallback.route().route, Route::Redis);
    }

    #[test]
    fn late_answers_from_an_older_mode_are_ignored() {
        let fallback = Fallback::new(Duration::from_millis(1));
        let before = fallback.route();
        let in_flight = fallback.route();
        assert!(fallback.unavailable(before));
        std::thread::sleep(Duration::from_millis(5));
        let probe = fallback.route();
        assert!(fallback.answered(probe).is_some());
        assert!(
            !fallback.unavailable(in_flight),
            "a failure routed before the outage must not start a new one"
        );
        assert!(!fallback.is_active());
    }
}
