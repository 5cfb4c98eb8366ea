//! What the chaos run measured, printed as the table `docs/RELIABILITY.md`
//! keeps: per fault, the time until persist's lag was next 0;
//! the longest any event waited on its partition; peak RSS per
//! process role; and the checker's counts.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::check::Findings;
use crate::workload::Published;
use crate::{Engine, Fault};

/// Persist's lag on each `matches` partition at one moment: messages, and
/// the age in seconds of the oldest event not yet acknowledged.
pub struct LagSample {
    pub at: Duration,
    pub per_partition: BTreeMap<i32, (u64, f64)>,
}

impl LagSample {
    fn total(&self) -> u64 {
        self.per_partition
            .values()
            .map(|(messages, _)| messages)
            .sum()
    }
}

#[derive(Default)]
pub struct Timeline {
    pub faults: Vec<(Fault, Duration, Duration)>,
    pub lag: Vec<LagSample>,
}

impl Timeline {
    /// Seconds from the end of a fault until persist's lag was next 0 (every
    /// published event acknowledged); `None` if not before publishing ended.
    fn back_to_zero(&self, to: Duration) -> Option<f64> {
        self.lag
            .iter()
            .find(|s| s.at >= to && s.total() == 0)
            .map(|s| (s.at.saturating_sub(to)).as_secs_f64())
    }

    /// The longest any event waited on its partition: the largest age of a
    /// partition's oldest unacknowledged event seen, and that partition.
    fn longest_stall(&self) -> (f64, i32) {
        self.lag
            .iter()
            .flat_map(|s| s.per_partition.iter())
            .map(|(partition, (_, seconds))| (*seconds, *partition))
            .fold(
                (0.0, -1),
                |worst, seen| if seen.0 > worst.0 { seen } else { worst },
            )
    }
}

pub struct Summary<'a> {
    pub engine: Engine,
    pub matches: usize,
    pub published: &'a Published,
    pub findings: &'a Findings,
    pub timeline: &'a Timeline,
    pub drained: Duration,
    pub total: Duration,
    pub persist_starts: usize,
    pub persist_kills: usize,
    pub exits: &'a [String],
    pub peak_rss_kib: &'a BTreeMap<&'static str, u64>,
}

pub fn print(s: &Summary<'_>) {
    let f = s.findings;
    eprintln!(
        "\nchaos report ({:?}: {} matches, {} events published, {} poison, {} chunks sent again)",
        s.engine,
        s.matches,
        s.published.events,
        s.published.poison.len(),
        s.published.resent_chunks
    );
    eprintln!("| fault | from (s) | to (s) | persist lag back to 0 after (s) |");
    eprintln!("|---|---|---|---|");
    for (fault, from, to) in &s.timeline.faults {
        let recovery = s
            .timeline
            .back_to_zero(*to)
            .map_or("after publishing ended".to_string(), |r| format!("{r:.0}"));
        eprintln!(
            "| {fault:?} | {:.1} | {:.1} | {recovery} |",
            from.as_secs_f64(),
            to.as_secs_f64()
        );
    }
    let (stall, partition) = s.timeline.longest_stall();
    let rss: Vec<String> = s
        .peak_rss_kib
        .iter()
        .map(|(role, kib)| format!("{role} {} MiB", kib / 1024))
        .collect();
    eprintln!("| measure | value |");
    eprintln!("|---|---|");
    for (measure, value) in [
        ("matches missing from the database", f.missing.to_string()),
        (
            "matches applied more often than published",
            f.applied_twice.to_string(),
        ),
        (
            "matches keeping an older version",
            f.order_violations.to_string(),
        ),
        (
            "persist dead letters (poison events)",
            format!("{} ({})", f.dead_letters, s.published.poison.len()),
        ),
        (
            "dead letters written again after a kill",
            f.dead_letters_redelivered.to_string(),
        ),
        (
            "hero-pool rows differing from a recount",
            f.hero_pool_mismatches.to_string(),
        ),
        (
            "persist processes started / SIGKILLed",
            format!("{} / {}", s.persist_starts, s.persist_kills),
        ),
        (
            "exits on their own (each started again)",
            if s.exits.is_empty() {
                "0".to_string()
            } else {
                format!("{} ({})", s.exits.len(), s.exits.join("; "))
            },
        ),
        (
            "longest wait of an event on its partition",
            format!("{stall:.0} s (partition {partition})"),
        ),
        (
            "drain after the last fault and event",
            format!("{:.0} s", s.drained.as_secs_f64()),
        ),
        ("whole run", format!("{:.0} s", s.total.as_secs_f64())),
        ("peak RSS", rss.join(", ")),
    ] {
        eprintln!("| {measure} | {value} |");
    }
}
