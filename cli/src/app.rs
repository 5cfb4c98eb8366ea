//! The configured application: which bus, which stores, which consumer groups.
//!
//! One binary runs any subset of the groups; each group is a [`Runner`] over
//! its topics with its handler. Deployments run one group per process (so
//! each scales on its own lag); the embedded default runs them all at once.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use consumers::cache::CacheHandler;
use consumers::enrich::EnrichHandler;
use consumers::jobs::JobsHandler;
use consumers::persist::PersistHandler;
use pipeline::bus::{Bus, Subscription};
use pipeline::config::{Backend, BusConfig, ConfigError, RunnerSection};
use pipeline::observe::readiness::runner_check;
use pipeline::observe::{self, ObserveConfig, Readiness};
use pipeline::runner::{EventHandler, Handler, RunStats, Runner, RunnerError, DEFAULT_BATCH_SIZE};
use pipeline::schema_registry::ResolveSchemas;
use schemas::registry::SchemaResolver;
use schemas::{topics, GroupEvents};
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Persist's batch size on Kafka when `[runner] batch_size` is unset (see
/// [`AppConfig::default_batch_size`]; README, Benchmarks).
pub const PERSIST_BATCH_SIZE_ON_KAFKA: usize = 2_500;

/// Persist's members on Kafka and Redis Streams when `[groups] members` is
/// unset (see [`AppConfig::group_members`]; README, Benchmarks).
pub const PERSIST_MEMBERS: u64 = 2;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    pub bus: BusConfig,
    pub runner: RunnerSection,
    pub database: DatabaseSection,
    pub cache: consumers::cache::CacheConfig,
    pub groups: GroupsSection,
    /// Where `/metrics`, `/healthz`, `/readyz` and the jobs API listen.
    pub observe: ObserveConfig,
    pub jobs: consumers::jobs::JobsConfig,
    /// A Confluent-compatible schema registry; off while `url` is empty.
    pub schema_registry: schemas::registry::RegistryConfig,
    /// Trust and client certificate of every `rediss://` URL (bus, cache, limiter).
    pub redis_tls: pipeline::redis_tls::RedisTls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSection {
    /// `postgres://…` for deployments, `sqlite://…` for the embedded default.
    /// TLS is set in the URL: `?sslmode=verify-full&sslrootcert=/path/ca.pem`.
    pub url: String,
    /// Where `scoutstream migrate` connects: a role that owns the schema, so
    /// the one in `url` needs no rights to change it. Empty: `url`.
    pub migrate_url: String,
    /// Whether `run` brings the schema up to date at start. Turn it off when
    /// `url`'s role may not change the schema (`scoutstream migrate` does it).
    pub migrate_on_start: bool,
    /// PostgreSQL role `scoutstream migrate` grants what the groups need:
    /// reading and writing rows, nothing else. Empty: no grants.
    pub app_role: String,
    /// Transactions each persist member runs at once on PostgreSQL, each
    /// over its own share of a batch's partitions. SQLite writes one at a
    /// time. Unset: 1; on Kafka and Redis Streams persist runs two members
    /// instead (`[groups] members`), whose transactions do not start and end
    /// together as one member's writers do.
    pub writers: Option<u64>,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        Self {
            url: "sqlite://scoutstream.db?mode=rwc".into(),
            migrate_url: String::new(),
            migrate_on_start: true,
            app_role: String::new(),
            writers: None,
        }
    }
}

impl DatabaseSection {
    /// The URL migrations run with.
    pub fn migrations_url(&self) -> &str {
        if self.migrate_url.is_empty() {
            &self.url
        } else {
            &self.migrate_url
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupsSection {
    /// Groups this process runs.
    pub enabled: Vec<GroupName>,
    /// Prefix of the consumer group ids, e.g. `scoutstream-persist`.
    pub id_prefix: String,
    /// How often each group's lag is read from the bus into the lag gauges.
    pub lag_report_interval_secs: u64,
    /// Whether this process serves the jobs and scout-report API beside
    /// `/metrics`. Unset: the processes that run the jobs group serve it, so
    /// enrich and cache pods need neither the database nor an API token.
    pub serve_api: Option<bool>,
    /// Members of each group this process runs: each is its own consumer
    /// in the group with its own runner, so the group's partitions are
    /// shared among them as among processes, and one member's batch is
    /// written while another decodes its next. Unset: see
    /// [`AppConfig::group_members`].
    pub members: Option<u64>,
}

impl Default for GroupsSection {
    fn default() -> Self {
        Self {
            enabled: GroupName::ALL.to_vec(),
            id_prefix: "scoutstream".into(),
            lag_report_interval_secs: 5,
            serve_api: None,
            members: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GroupName {
    Enrich,
    Cache,
    Persist,
    Jobs,
}

impl GroupName {
    pub const ALL: [GroupName; 4] = [
        GroupName::Enrich,
        GroupName::Cache,
        GroupName::Persist,
        GroupName::Jobs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupName::Enrich => "enrich",
            GroupName::Cache => "cache",
            GroupName::Persist => "persist",
            GroupName::Jobs => "jobs",
        }
    }

    /// Topics the group consumes: what its handler's events declare.
    pub fn topics(self) -> Vec<String> {
        let of = |names: &[&str]| names.iter().map(|t| t.to_string()).collect();
        match self {
            GroupName::Enrich => of(<EnrichHandler as EventHandler>::Events::TOPICS),
            GroupName::Cache => of(<CacheHandler as EventHandler>::Events::TOPICS),
            GroupName::Persist => of(<PersistHandler as EventHandler>::Events::TOPICS),
            GroupName::Jobs => of(<JobsHandler as EventHandler>::Events::TOPICS),
        }
    }
}

impl AppConfig {
    /// Reads the file (if any) and `SCOUTSTREAM__` overrides, then validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let config: AppConfig = pipeline::config::load(path, std::env::vars())?;
        config.validate()?;
        Ok(config.with_shared_sections())
    }

    /// Hands the process-wide sections to the parts that use them.
    fn with_shared_sections(mut self) -> Self {
        self.bus.redis.tls = self.redis_tls.clone();
        self.cache.redis_tls = self.redis_tls.clone();
        self.jobs.redis_tls = self.redis_tls.clone();
        self
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.bus.validate()?;
        self.runner.validate()?;
        database_url("database.url", &self.database.url)?;
        if !self.database.migrate_url.is_empty() {
            database_url("database.migrate_url", &self.database.migrate_url)?;
        }
        if !is_sql_identifier(&self.database.app_role) {
            return Err(ConfigError::invalid(
                "database.app_role",
                "a role name is lower-case letters, digits and `_`, not starting with a digit",
            ));
        }
        if let Some(writers) = self.database.writers {
            pipeline::config::positive("database.writers", writers)?;
        }
        if let Some(members) = self.groups.members {
            pipeline::config::positive("groups.members", members)?;
        }
        pipeline::config::redis_tls("redis_tls", &self.redis_tls)?;
        self.cache
            .validate()
            .map_err(|e| ConfigError::invalid("cache", e.to_string()))?;
        self.jobs
            .validate()
            .map_err(|(field, problem)| ConfigError::invalid(field, problem))?;
        self.schema_registry
            .validate()
            .map_err(|(field, problem)| ConfigError::invalid(field, problem))?;
        pipeline::config::positive(
            "groups.lag_report_interval_secs",
            self.groups.lag_report_interval_secs,
        )?;
        if self.groups.enabled.is_empty() {
            return Err(ConfigError::invalid(
                "groups.enabled",
                "name at least one group",
            ));
        }
        Ok(())
    }

    /// [`DatabaseSection::writers`], or its default: one per member.
    pub fn persist_writers(&self) -> usize {
        let writers = self.database.writers.unwrap_or(1);
        usize::try_from(writers).unwrap_or(usize::MAX)
    }

    /// Members of group `name` in this process ([`GroupsSection::members`]).
    /// Unset: one, except persist on Kafka and Redis Streams, where
    /// PostgreSQL would idle while one member acks, polls and decodes between
    /// its batches; with two, one member's batch is written while the
    /// other's is prepared.
    pub fn group_members(&self, name: GroupName) -> usize {
        let default = match (name, self.bus.backend) {
            (GroupName::Persist, Backend::Kafka | Backend::RedisStreams) => PERSIST_MEMBERS,
            _ => 1,
        };
        let members = self.groups.members.unwrap_or(default);
        usize::try_from(members).unwrap_or(usize::MAX)
    }

    /// Deliveries per batch of group `name` when `[runner] batch_size` is
    /// unset: larger for persist on Kafka, whose batches hold a slice of many
    /// partitions, so each transaction (and each of its writers) gets enough
    /// rows to be worth its fixed costs.
    pub fn default_batch_size(&self, name: GroupName) -> usize {
        match (name, self.bus.backend) {
            (GroupName::Persist, Backend::Kafka) => PERSIST_BATCH_SIZE_ON_KAFKA,
            _ => DEFAULT_BATCH_SIZE,
        }
    }

    /// Whether `run` serves the jobs API ([`GroupsSection::serve_api`]).
    pub fn serves_api(&self) -> bool {
        self.groups
            .serve_api
            .unwrap_or_else(|| self.groups.enabled.contains(&GroupName::Jobs))
    }

    /// For processes that serve the jobs API (`run`): on an address other
    /// than loopback it must want a token, or anyone who reaches the port
    /// could enqueue jobs and read reports.
    pub fn validate_api_exposure(&self) -> Result<(), ConfigError> {
        let bind = &self.observe.bind;
        if !self.serves_api() || self.jobs.api_wants_token() || is_loopback(bind) {
            return Ok(());
        }
        Err(ConfigError::invalid(
            "jobs.api_token",
            format!(
                "unset (and no jobs.api_tokens) while observe.bind `{bind}` is not a loopback \
                 address: the jobs API would be open to the network. Set a token (e.g. \
                 SCOUTSTREAM__JOBS__API_TOKEN) or bind 127.0.0.1"
            ),
        ))
    }

    pub fn group_id(&self, group: GroupName) -> String {
        format!("{}-{}", self.groups.id_prefix, group.as_str())
    }
}

fn database_url(field: &str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("postgres://")
        || url.starts_with("postgresql://")
        || url.starts_with("sqlite:")
    {
        return Ok(());
    }
    let shown = pipeline::config::redact_url(url);
    Err(ConfigError::invalid(
        field,
        format!("`{shown}` is neither postgres:// nor sqlite:"),
    ))
}

/// Empty, or a name that needs no quoting in SQL (it is spliced into GRANTs).
fn is_sql_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        None => true,
        Some(first) => {
            (first.is_ascii_lowercase() || first == '_')
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }
    }
}

/// `127.0.0.1:9464`, `[::1]:9464` or `localhost:9464`.
fn is_loopback(bind: &str) -> bool {
    match bind.parse::<std::net::SocketAddr>() {
        Ok(address) => address.ip().is_loopback(),
        Err(_) => bind
            .rsplit_once(':')
            .is_some_and(|(host, _)| host == "localhost"),
    }
}

/// Every topic the pipeline uses, created up front with the configured partitions.
pub async fn ensure_topics(bus: &dyn Bus, config: &AppConfig) -> anyhow::Result<()> {
    for topic in [
        topics::MATCHES,
        topics::PLAYERS,
        topics::MATCHES_ENRICHED,
        topics::JOBS,
        topics::JOB_STATUS,
        topics::DEAD_LETTERS,
    ] {
        bus.ensure_topic(topic, config.bus.partitions)
            .await
            .with_context(|| format!("creating topic `{topic}`"))?;
    }
    Ok(())
}

/// A group ready to run: its id, topics and handler.
pub struct GroupSpec {
    pub name: GroupName,
    pub id: String,
    pub topics: Vec<String>,
    /// Its batch size unless `[runner] batch_size` sets one for every group.
    pub default_batch_size: usize,
    /// Consumers of the group this process runs, one runner each, all
    /// sharing `handler`.
    pub members: usize,
    pub handler: Arc<dyn Handler>,
    /// What runs beside the runner: the jobs group's worker pool.
    pub pool: Option<consumers::jobs::WorkerPool>,
    /// With a schema registry: fetches unknown writer schemas into the
    /// codec the handler decodes with, before each slice.
    pub resolver: Option<Arc<SchemaResolver>>,
}

/// Serves `/metrics`, `/healthz`, `/readyz` and `api` until `shutdown`; the
/// returned readiness is what `/readyz` reports.
pub async fn start_observability(
    config: &ObserveConfig,
    api: axum::Router,
    shutdown: CancellationToken,
) -> anyhow::Result<Readiness> {
    let handle = observe::install_recorder();
    let readiness = Readiness::new();
    let listener = observe::bind(config).await?;
    let app = observe::router(handle, readiness.clone()).merge(api);
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(err) = served.await {
            tracing::error!(error = %err, "metrics, health and API endpoints stopped");
        }
    });
    Ok(readiness)
}

/// How the groups are watched while they run.
#[derive(Clone, Default)]
pub struct Watch {
    /// Each runner reports into it (`/readyz`).
    pub readiness: Option<Readiness>,
    /// Lag gauges are refreshed this often; `None` turns the reporter off.
    pub lag_every: Option<std::time::Duration>,
}

/// Runs the groups until `shutdown`; each drains and commits before returning.
///
/// A group that fails stops the others (the process restarts as a whole), but
/// only through `shutdown`: each of them finishes the batch in hand, commits
/// it and leaves its group before the first error is returned.
pub async fn run_groups(
    bus: Arc<dyn Bus>,
    runner: RunnerSection,
    groups: Vec<GroupSpec>,
    watch: Watch,
    shutdown: CancellationToken,
) -> anyhow::Result<Vec<(GroupName, RunStats)>> {
    let dead_letters = bus.publisher().await?;
    let joined = join_all(bus.as_ref(), groups).await?;
    let mut tasks = JoinSet::new();
    let mut pools = JoinSet::new();
    for (mut group, subscriptions) in joined {
        if let Some(pool) = group.pool.take() {
            pools.spawn(pool.run(shutdown.clone()));
        }
        if let Some(every) = watch.lag_every {
            observe::spawn_lag_reporter(
                bus.clone(),
                group.id.clone(),
                group.topics.clone(),
                every,
                shutdown.clone(),
            );
        }
        let handler = with_resolver(&group, &shutdown);
        let several = subscriptions.len() > 1;
        for (member, subscription) in subscriptions.into_iter().enumerate() {
            let mut runner = Runner::new(
                runner.for_group(&group.id, group.default_batch_size),
                handler.clone(),
                dead_letters.clone(),
            );
            if let Some(readiness) = &watch.readiness {
                runner = if several {
                    let check = format!("{}#{member}", runner_check(&group.id));
                    runner.with_readiness_as(readiness.clone(), check)
                } else {
                    runner.with_readiness(readiness.clone())
                };
            }
            let (name, stop) = (group.name, shutdown.clone());
            tasks.spawn(async move { (name, runner.run(subscription, stop).await) });
        }
    }
    let outcome = join_runners(&mut tasks, &shutdown).await;
    // The runners are done (shutdown): the pools finish or release their jobs.
    shutdown.cancel();
    while pools.join_next().await.is_some() {}
    Ok(per_group(outcome?))
}

/// One line of stats per group: its members' added up.
fn per_group(members: Vec<(GroupName, RunStats)>) -> Vec<(GroupName, RunStats)> {
    let mut groups: Vec<(GroupName, RunStats)> = Vec::new();
    for (name, run) in members {
        match groups.iter_mut().find(|(group, _)| *group == name) {
            Some((_, total)) => {
                total.handled += run.handled;
                total.dead_lettered += run.dead_lettered;
                total.retries += run.retries;
                total.batches += run.batches;
            }
            None => groups.push((name, run)),
        }
    }
    groups.sort_by_key(|(name, _)| name.as_str());
    groups
}

/// Every group's members, or none: members that joined before one failed to
/// leave again, having consumed nothing.
async fn join_all(
    bus: &dyn Bus,
    groups: Vec<GroupSpec>,
) -> anyhow::Result<Vec<(GroupSpec, Vec<Box<dyn Subscription>>)>> {
    let mut joined: Vec<(GroupSpec, Vec<Box<dyn Subscription>>)> = Vec::with_capacity(groups.len());
    for group in groups {
        let mut members = Vec::with_capacity(group.members);
        for _ in 0..group.members.max(1) {
            match bus.subscribe(&group.id, &group.topics).await {
                Ok(subscription) => members.push(subscription),
                Err(err) => {
                    let left = joined.into_iter().flat_map(|(_, members)| members);
                    for member in left.chain(members) {
                        let _ = member.close().await;
                    }
                    return Err(err).with_context(|| format!("joining group `{}`", group.id));
                }
            }
        }
        joined.push((group, members));
    }
    Ok(joined)
}

fn with_resolver(group: &GroupSpec, shutdown: &CancellationToken) -> Arc<dyn Handler> {
    match &group.resolver {
        Some(resolver) => Arc::new(ResolveSchemas::new(
            group.handler.clone(),
            resolver.clone(),
            group.id.clone(),
            shutdown.clone(),
        )),
        None => group.handler.clone(),
    }
}

/// Waits for every runner. The first failure cancels `shutdown` so the
/// others drain; it is returned once they have.
async fn join_runners(
    tasks: &mut JoinSet<(GroupName, Result<RunStats, RunnerError>)>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<(GroupName, RunStats)>> {
    let mut stats = Vec::new();
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let failure = match joined {
            Ok((name, Ok(run))) => {
                stats.push((name, run));
                continue;
            }
            Ok((name, Err(err))) => {
                anyhow::Error::new(err).context(format!("group `{}` stopped", name.as_str()))
            }
            Err(panicked) => anyhow::Error::new(panicked).context("a group's runner panicked"),
        };
        tracing::error!(error = %format!("{failure:#}"), "stopping the other groups");
        shutdown.cancel();
        first_error.get_or_insert(failure);
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(stats),
    }
}
