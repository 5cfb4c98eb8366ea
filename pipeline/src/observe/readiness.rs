//! What `/readyz` answers: named checks that the parts of a process flip.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// The bus's servers answer ([`crate::observe::health`] asks every few seconds).
pub const BUS: &str = "bus";
/// The database the process opened answers (asked like the bus).
pub const STORES: &str = "stores";

/// The check a [`crate::runner::Runner`] keeps: ready while it polls successfully.
pub fn runner_check(group: &str) -> String {
    format!("runner:{group}")
}

/// Shared, cheaply cloned set of named checks. The process is ready when at least
/// one check is registered and all are ready; a fresh check is not ready, so
/// registering the expected ones up front ([`Readiness::with_checks`]) keeps
/// `/readyz` at 503 until each part has reported in.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<String, bool>>>,
}

/// The state of every check, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadinessReport {
    pub ready: bool,
    /// Checks not ready yet, by name.
    pub not_ready: Vec<String>,
    pub checks: BTreeMap<String, bool>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `names` as not ready.
    pub fn with_checks<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let readiness = Self::new();
        for name in names {
            readiness.register(name);
        }
        readiness
    }

    /// Adds a not-ready check; keeps the state of one that already exists.
    pub fn register(&self, name: impl Into<String>) {
        self.lock().entry(name.into()).or_insert(false);
    }

    /// Sets a check, registering it if needed.
    pub fn set(&self, name: &str, ready: bool) {
        self.lock().insert(name.to_string(), ready);
    }

    pub fn is_ready(&self) -> bool {
        self.report().ready
    }

    pub fn report(&self) -> ReadinessReport {
        let checks = self.lock().clone();
        let not_ready: Vec<String> = checks
            .iter()
            .filter(|(_, ready)| !**ready)
            .map(|(name, _)| name.clone())
            .collect();
        ReadinessReport {
            ready: !checks.is_empty() && not_ready.is_empty(),
            not_ready,
            checks,
        }
    }

    // A panic elsewhere while holding the lock leaves plain booleans: still usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        self.checks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_registered_check_is() {
        let readiness = Readiness::with_checks([BUS, STORES]);
        assert_eq!(readiness.report().not_ready, vec!["bus", "stores"]);
        readiness.set(BUS, true);
        readiness.set(STORES, true);
        assert!(readiness.is_ready());
        readiness.register(BUS);
        assert!(readiness.is_ready(), "registering again keeps the state");
        readiness.set(&runner_check("enrich"), false);
        assert_eq!(readiness.report().not_ready, vec!["runner:enrich"]);
    }

    #[test]
    fn nothing_registered_is_not_ready() {
        assert!(!Readiness::new().is_ready());
    }
}
