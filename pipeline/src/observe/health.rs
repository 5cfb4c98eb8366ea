//! Keeps `/readyz` true to the servers a process depends on: every few
//! seconds each [`HealthCheck`] is asked again and its readiness check
//! follows the answer, so a pod whose database or broker went away leaves
//! its Service until they are back.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::internal_events::{DependencyHealthChanged, InternalEvent};
use crate::observe::readiness::{self, Readiness};

/// How often the dependencies are asked when nothing else is configured.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(5);

/// One server the process depends on.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// The readiness check it keeps (e.g. [`readiness::BUS`]).
    fn name(&self) -> &str;

    /// `Err` says why it does not answer.
    async fn check(&self) -> Result<(), String>;
}

/// The bus's servers ([`Bus::check_health`]).
pub struct BusHealth(pub Arc<dyn Bus>);

#[async_trait]
impl HealthCheck for BusHealth {
    fn name(&self) -> &str {
        readiness::BUS
    }

    async fn check(&self) -> Result<(), String> {
        self.0.check_health().await.map_err(|err| err.to_string())
    }
}

/// Registers every check (not ready until its first answer), then asks them
/// all every `every` until `shutdown`.
pub fn spawn_health_checks(
    readiness: Readiness,
    checks: Vec<Box<dyn HealthCheck>>,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    for check in &checks {
        readiness.register(check.name());
    }
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            for check in &checks {
                ask(&readiness, check.as_ref()).await;
            }
        }
    })
}

async fn ask(readiness: &Readiness, check: &dyn HealthCheck) {
    let answer = check.check().await;
    let was_ready = readiness.report().checks.get(check.name()).copied();
    if was_ready != Some(answer.is_ok()) {
        DependencyHealthChanged {
            dependency: check.name(),
            error: answer.as_ref().err().map(String::as_str),
        }
        .emit();
    }
    readiness.set(check.name(), answer.is_ok());
}
