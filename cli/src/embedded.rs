//! The main job on the embedded default: ingest real data, publish it on the
//! in-memory bus, run every consumer group in this process until all have
//! caught up, and report what happened.

use std::path::PathBuf;
use std::time::Duration;

use pipeline::bus::Bus;
use pipeline::runner::RunStats;
use producers::ingest::{ingest_dir, ingest_file, IngestedEvent};
use producers::loadgen::generate_matches;
use producers::publish::{EventPublisher, PublishCounts};
use schemas::{topics, Encoding};
use tokio_util::sync::CancellationToken;

use consumers::persist::PlayerReport;
use consumers::scout::ScoutService;
use schemas::reference::Reference;

use crate::app::{self, AppConfig, GroupName};
use crate::groups;

pub struct EmbeddedOptions {
    /// Folders whose recognised files are ingested.
    pub data_dirs: Vec<PathBuf>,
    /// Single files (JSON documents or JSON lines) to ingest too.
    pub files: Vec<PathBuf>,
    pub database_url: String,
    /// Generated matches to publish besides the real data.
    pub generate: usize,
}

#[derive(Debug, Default)]
pub struct EmbeddedReport {
    pub files_ingested: Vec<(PathBuf, usize)>,
    pub files_skipped: Vec<(PathBuf, String)>,
    pub generated: usize,
    pub published: PublishCounts,
    pub groups: Vec<(GroupName, RunStats)>,
    /// Scout views of the players and teams the data named, read back as users do.
    pub scout_lines: Vec<String>,
}

const GENERATOR_SEED: u64 = 7;

pub async fn run(
    options: EmbeddedOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<EmbeddedReport> {
    // The embedded default is the in-memory bus whatever the environment says;
    // other settings (cache, runner, jobs) still take SCOUTSTREAM__ overrides.
    let mut config = AppConfig::load(None)?;
    config.bus = pipeline::config::BusConfig::default();
    config.database.url = options.database_url.clone();
    config.validate()?;
    let mut report = EmbeddedReport::default();
    let events = ingest(&options, &mut report)?;

    let bus = config.bus.connect().await?;
    app::ensure_topics(bus.as_ref(), &config).await?;
    let resources = groups::Resources::default();
    let specs = groups::build(&config, bus.clone(), &resources).await?;
    let watched: Vec<(String, Vec<String>)> = specs
        .iter()
        .map(|s| (s.id.clone(), s.topics.clone()))
        .collect();
    let groups_done = shutdown.child_token();
    let running = tokio::spawn(app::run_groups(
        bus.clone(),
        config.runner.clone(),
        specs,
        app::Watch::default(),
        groups_done.clone(),
    ));

    let publisher = EventPublisher::new(bus.publisher().await?, Encoding::SingleObject);
    report.published = publisher.publish_ingested(&events).await?;
    wait_until_caught_up(bus.as_ref(), &watched, &shutdown).await;
    groups_done.cancel();
    report.groups = running.await??;
    report.scout_lines = scout_views(&config, &resources, &events).await?;
    Ok(report)
}

/// Reads the scout reports of every profiled player and every team, through
/// the same read model (cache first, database second) the product serves.
async fn scout_views(
    config: &AppConfig,
    resources: &groups::Resources,
    events: &[IngestedEvent],
) -> anyhow::Result<Vec<String>> {
    let store = resources.store(config).await?;
    let scout = ScoutService::new(store, resources.cache(config).await?);
    let mut lines = Vec::new();
    let mut accounts: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            IngestedEvent::Player(p) => Some(p.account_id),
            IngestedEvent::Match(_) | IngestedEvent::Job(_) => None,
        })
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    for account in accounts {
        if let Some((report, _)) = scout.player_report(account).await? {
            lines.push(describe_player(&report));
        }
    }
    let mut teams: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            IngestedEvent::Match(m) => Some([m.radiant_team.as_ref(), m.dire_team.as_ref()]),
            IngestedEvent::Player(_) | IngestedEvent::Job(_) => None,
        })
        .flatten()
        .flatten()
        .map(|t| t.team_id)
        .collect();
    teams.sort_unstable();
    teams.dedup();
    for team in teams {
        if let Some((report, _)) = scout.team_report(team).await? {
            let top: Vec<String> = report
                .most_picked
                .iter()
                .take(3)
                .map(|h| hero_name(h.hero_id))
                .collect();
            lines.push(format!(
                "team {} ({}): {} games, {} wins; most picked: {}",
                report.team_id,
                report.name.as_deref().unwrap_or("?"),
                report.games,
                report.wins,
                top.join(", ")
            ));
        }
    }
    Ok(lines)
}

fn hero_name(hero_id: i32) -> String {
    Reference::get()
        .hero(hero_id)
        .map_or_else(|| format!("hero {hero_id}"), |h| h.localized_name.clone())
}

fn describe_player(report: &PlayerReport) -> String {
    let pool: Vec<String> = report
        .hero_pool
        .iter()
        .take(3)
        .map(|h| format!("{} {}/{}", hero_name(h.hero_id), h.wins, h.games))
        .collect();
    let averages = report
        .averages
        .as_ref()
        .map_or("no games".to_string(), |a| {
            format!(
                "KDA {:.2}, GPM {:.0}, XPM {:.0}",
                a.kda, a.gold_per_min, a.xp_per_min
            )
        });
    format!(
        "player {} ({}): rank tier {}, {} games, {} wins, {averages}; heroes: {}",
        report.account_id,
        report.persona_name.as_deref().unwrap_or("?"),
        report.rank_tier.map_or("?".to_string(), |r| r.to_string()),
        report.games,
        report.wins,
        pool.join(", ")
    )
}

fn ingest(
    options: &EmbeddedOptions,
    report: &mut EmbeddedReport,
) -> anyhow::Result<Vec<IngestedEvent>> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let mut events = Vec::new();
    for dir in &options.data_dirs {
        let ingested = ingest_dir(dir, now_ms)?;
        for file in ingested.files {
            // Parse requests would call OpenDota: the embedded demo runs offline.
            let (jobs, data): (Vec<IngestedEvent>, Vec<IngestedEvent>) = file
                .events
                .into_iter()
                .partition(|e| matches!(e, IngestedEvent::Job(_)));
            if !jobs.is_empty() {
                report.files_skipped.push((
                    file.path,
                    format!(
                        "{} OpenDota parse request(s), not run here: the embedded demo does \
                         not call OpenDota (`scoutstream produce` publishes them to `jobs`)",
                        jobs.len()
                    ),
                ));
                continue;
            }
            report.files_ingested.push((file.path, data.len()));
            events.extend(data);
        }
        for skipped in ingested.skipped {
            report
                .files_skipped
                .push((skipped.path, skipped.reason.to_string()));
        }
    }
    for path in &options.files {
        let file_events = ingest_file(path, now_ms)?;
        report
            .files_ingested
            .push((path.clone(), file_events.len()));
        events.extend(file_events);
    }
    report.generated = options.generate;
    let generated = generate_matches(options.generate, GENERATOR_SEED);
    events.extend(generated.into_iter().map(IngestedEvent::Match));
    Ok(events)
}

/// Waits until every group has acknowledged everything on its topics.
async fn wait_until_caught_up(
    bus: &dyn Bus,
    groups: &[(String, Vec<String>)],
    shutdown: &CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let mut caught_up = true;
        for (group, topics_in) in groups {
            let lags = bus.lag(group, topics_in).await;
            caught_up &= lags.is_ok_and(|lags| lags.iter().all(|l| l.messages == 0));
        }
        if caught_up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl EmbeddedReport {
    /// What the run did, for a person reading the terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (path, events) in &self.files_ingested {
            out.push_str(&format!(
                "ingested {events:>4} events from {}\n",
                path.display()
            ));
        }
        for (path, reason) in &self.files_skipped {
            out.push_str(&format!("skipped  {}: {reason}\n", path.display()));
        }
        if self.generated > 0 {
            out.push_str(&format!("generated {} matches\n", self.generated));
        }
        out.push_str(&format!(
            "published {} matches to `{}` and {} player profiles to `{}`\n",
            self.published.matches,
            topics::MATCHES,
            self.published.players,
            topics::PLAYERS
        ));
        for (name, stats) in &self.groups {
            out.push_str(&format!(
                "group {:<8} handled {:>5}, dead-lettered {} (to `{}`), retries {}\n",
                name.as_str(),
                stats.handled,
                stats.dead_lettered,
                topics::DEAD_LETTERS,
                stats.retries
            ));
        }
        for line in &self.scout_lines {
            out.push_str(&format!("scout: {line}\n"));
        }
        out
    }
}
