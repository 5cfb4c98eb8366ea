//! `scoutstream schemas check|register`: the schemas this build carries
//! against the earlier versions kept in the repo and those in the registry.

use std::sync::Arc;

use anyhow::Context;
use schemas::registry::compat::{backward_compatible, check_offline};
use schemas::registry::{value_subject, RegistryClient, SchemaResolver, TOPIC_SCHEMAS};
use schemas::Codec;

use crate::app::AppConfig;

/// Compatibility rule `register` sets on each subject, so the registry too
/// refuses a version that cannot read the data before it.
pub const COMPATIBILITY: &str = "BACKWARD";

/// One line of `schemas check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    pub file: &'static str,
    pub against: String,
    pub verdict: Result<(), String>,
}

#[derive(Debug, Default)]
pub struct CheckReport {
    pub lines: Vec<CheckLine>,
}

impl CheckReport {
    pub fn failures(&self) -> usize {
        self.lines.iter().filter(|l| l.verdict.is_err()).count()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match &line.verdict {
                Ok(()) => out += &format!("ok    {} reads {}\n", line.file, line.against),
                Err(why) => {
                    out += &format!("FAIL  {} cannot read {}: {why}\n", line.file, line.against)
                }
            }
        }
        out += &format!(
            "{} checks, {} incompatible\n",
            self.lines.len(),
            self.failures()
        );
        out
    }
}

/// Offline: each current schema against the versions under `schemas/avro/v1/`.
/// With a registry (and not `offline`): also against the latest version of
/// each topic's subject, checked here and by the registry's own rule.
pub async fn check(config: &AppConfig, offline: bool) -> anyhow::Result<CheckReport> {
    let mut report = CheckReport::default();
    for check in check_offline() {
        report.lines.push(CheckLine {
            file: check.file,
            against: check.against,
            verdict: check.verdict,
        });
    }
    if offline || !config.schema_registry.is_enabled() {
        return Ok(report);
    }
    let client = RegistryClient::new(&config.schema_registry)?;
    for entry in &TOPIC_SCHEMAS {
        let subject = value_subject(&format!("{}{}", config.bus.topic_prefix, entry.topic));
        let latest = client
            .latest(&subject)
            .await
            .with_context(|| format!("reading subject `{subject}`"))?;
        let Some(latest) = latest else { continue };
        let mut verdict = backward_compatible(entry.current, &latest.schema);
        if verdict.is_ok() {
            let answer = client
                .check_compatibility(&subject, entry.current)
                .await
                .with_context(|| format!("asking the registry about `{subject}`"))?;
            if let Some(answer) = answer.filter(|a| !a.is_compatible) {
                verdict = Err(format!(
                    "the registry says no: {}",
                    answer.messages.join("; ")
                ));
            }
        }
        report.lines.push(CheckLine {
            file: entry.file,
            against: format!("{subject} version {} (id {})", latest.version, latest.id),
            verdict,
        });
    }
    Ok(report)
}

/// Registers every current schema under its topic's subject and sets the
/// subject's rule to [`COMPATIBILITY`]. Returns `(subject, id)` pairs.
pub async fn register(config: &AppConfig) -> anyhow::Result<Vec<(String, u32)>> {
    anyhow::ensure!(
        config.schema_registry.is_enabled(),
        "no schema registry configured: set `schema_registry.url`"
    );
    let client = RegistryClient::new(&config.schema_registry)?;
    let mut registered = Vec::new();
    for entry in &TOPIC_SCHEMAS {
        let subject = value_subject(&format!("{}{}", config.bus.topic_prefix, entry.topic));
        let id = client
            .register(&subject, entry.current)
            .await
            .with_context(|| format!("registering {} under `{subject}`", entry.file))?;
        client
            .set_compatibility(&subject, COMPATIBILITY)
            .await
            .with_context(|| format!("setting {COMPATIBILITY} on `{subject}`"))?;
        registered.push((subject, id));
    }
    Ok(registered)
}

/// A codec that decodes `payloads`: with a registry, their Confluent ids are
/// looked up first. A registry that cannot be asked only leaves them
/// undecodable (operator commands show what they can).
pub async fn codec_for(config: &AppConfig, payloads: &[&[u8]]) -> anyhow::Result<Codec> {
    if !config.schema_registry.is_enabled() {
        return Ok(Codec::default());
    }
    let client = RegistryClient::new(&config.schema_registry)?;
    let resolver = SchemaResolver::new(Arc::new(client), Codec::default());
    if let Err(err) = resolver.resolve(payloads.iter().copied()).await {
        tracing::warn!(error = %err, "schema registry unavailable; Confluent-framed events stay undecoded");
    }
    Ok(resolver.codec().clone())
}
