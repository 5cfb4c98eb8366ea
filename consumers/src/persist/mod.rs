//! The persist consumer group: writes [`MatchCompleted`] (`matches`) and
//! [`PlayerProfile`] (`players`) into PostgreSQL or SQLite, and serves the
//! scout read model ([`scout`]) from the same tables.
//!
//! - [`Store`]: the database, either backend; runs the migrations in
//!   `consumers/migrations/{postgres,sqlite}` when it connects.
//! - [`PersistHandler`]: the group's [`pipeline::runner::Handler`].
//! - [`scout`]: player and team reports.
//! - [`events`]: what the group logs.
//!
//! # Tables
//!
//! `matches` (key `match_id`), `player_matches` (`match_id, player_slot`;
//! `account_id` NULL for anonymous players), `picks_bans` (`match_id, ord`),
//! `teams` (`team_id`), `players` (`account_id`) and `hero_pool`
//! (`account_id, hero_id`), derived from `player_matches`. A team's matches
//! are read from `matches` by `radiant_team_id` / `dire_team_id`.
//!
//! # Writes
//!
//! One transaction per batch (a handler call: the runner hands the persist
//! handler a whole batch, every partition's deliveries), multi-row upserts
//! chunked under the backend's bind limit. Exactly once per consumer group
//! ([`Store::write_sourced`], see `positions.rs`): the group's position in each
//! partition is written in the same transaction, and events at or below it
//! are left out, so a crash between the database commit and the bus commit
//! applies nothing twice. Writing is also idempotent: the same event
//! again, or a whole topic replayed, leaves the same rows, because every
//! column is merged by a rule that only depends on the versions seen, not on
//! how often or (for distinct sources and times) in which order:
//!
//! - **Matches** (`matches`, `player_matches`, `picks_bans`): one match may
//!   come from several sources. Each source has a rank ([`source_rank`]:
//!   `game_coordinator` 3 > `steam_api` 2 > `json` 1 > anything else 0).
//!   Per column, a value from a source of higher or equal rank replaces the
//!   stored one; a value from a lower-ranked source only fills a NULL; and
//!   NULL never replaces a known value (COALESCE). So the Steam API's
//!   anonymous slot takes the account id and net worth the game coordinator
//!   reveals, and keeps the hero damage only the Steam API has, whichever
//!   arrives first. `league_id` 0 is stored as NULL (the coordinator sends 0
//!   for league matches), empty item lists as NULL. Equal ranks: the later
//!   delivery wins.
//! - **Players**: a profile observed at the same time or later than the
//!   stored one (`observed_at_ms`) overwrites the fields it carries; an older
//!   one only fills fields that are NULL. `observed_at_ms` keeps the newest.
//! - **Teams**: the name from the newest match (`start_time`) wins; an older
//!   match only fills a missing name.
//! - **Hero pool**: moved by deltas in the same transaction (see
//!   [`hero_pool`]): the slots of the batch's matches are read before and
//!   after the upserts, and only what changed adds or removes a game, so a
//!   replay moves nothing and a corrected slot leaves its old account. The
//!   cost is the batch's, not the accounts' history. On PostgreSQL, writers
//!   of the same match (a partition's old and new owner) are serialised by
//!   per-match advisory locks; nothing else waits. The pools always equal a
//!   recount of `player_matches` (a property test checks it); the repair job
//!   recounts under a table lock that holds deltas off.
//!
//! Anonymous players (no account id, or Steam's 4294967295) never create
//! `players` or `hero_pool` rows. `updated_at` columns record when a row was
//! last written and are the one thing a replay changes.

pub mod events;
pub mod scout;

mod backend;
mod error;
mod handler;
mod hero_pool;
mod positions;
mod row_def;
mod rows;
mod sql;
mod staged;
mod unnest;
mod write;

use std::str::FromStr;
use std::time::{Duration, Instant};

use pipeline::internal_events::InternalEvent;
use schemas::{MatchCompleted, PlayerProfile};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};

pub use error::PersistError;
pub use handler::PersistHandler;
pub use positions::{Applied, Source};
pub use rows::{player_rows, source_rank, PlayerMatchRow};
pub use scout::{PlayerReport, TeamReport};

use backend::Backend;
use events::{BatchPersisted, PersistFailed, StoreOpened};
use rows::BatchRows;
use scout::Reader;
use write::Writer;

/// Environment variable with the database URL the binaries and tests use.
pub const DATABASE_URL_ENV: &str = "SCOUTSTREAM_DATABASE_URL";
/// Used when [`DATABASE_URL_ENV`] is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");

const POSTGRES_MAX_CONNECTIONS: u32 = 8;
/// Readers beside the one writer SQLite allows.
const SQLITE_MAX_CONNECTIONS: u32 = 4;
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An event the persist group stores: what `matches` and `players` carry.
pub use schemas::ScoutEvent as PersistEvent;

/// Rejects what can never be stored (e.g. a slot taken twice, a NUL in a
/// name), so it fails alone instead of failing its batch.
pub fn validate(event: &PersistEvent) -> Result<(), PersistError> {
    match event {
        PersistEvent::Match(m) => rows::validate_match(m),
        PersistEvent::Profile(p) => rows::validate_profile(p),
    }
}

/// What one write stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteSummary {
    pub matches: usize,
    pub player_rows: usize,
    pub profiles: usize,
    /// Accounts whose hero pool changed.
    pub accounts_recomputed: usize,
    /// Events left out because their group had applied them before
    /// ([`Store::write_sourced`]).
    pub already_applied: usize,
}

/// How long [`Store::check_health`] waits for the database.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The persist group's database.
#[derive(Debug, Clone)]
pub enum Store {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Store {
    /// Connects by URL scheme (`postgres://`, `postgresql://` or `sqlite:`)
    /// and migrates the schema.
    pub async fn connect(url: &str) -> Result<Self, PersistError> {
        let store = Self::open(url).await?;
        store.migrate().await?;
        StoreOpened {
            backend: store.backend(),
        }
        .emit();
        Ok(store)
    }

    /// Connects without touching the schema: for a role that may only read
    /// and write rows, once `scoutstream migrate` has run.
    pub async fn open(url: &str) -> Result<Self, PersistError> {
        Ok(match scheme(url) {
            "postgres" | "postgresql" => Store::Postgres(
                PgPoolOptions::new()
                    .max_connections(POSTGRES_MAX_CONNECTIONS)
                    .connect(url)
                    .await
                    .map_err(PersistError::database("connect"))?,
            ),
            "sqlite" => Store::Sqlite(open_sqlite(url).await?),
            other => return Err(PersistError::UnsupportedUrl(other.to_string())),
        })
    }

    /// Lets `role` read and write the rows of every table (and use their
    /// sequences), and nothing else: no DDL, no TRUNCATE, no ownership.
    /// PostgreSQL only; `role` must be a plain identifier and must exist.
    pub async fn grant_rows_to(&self, role: &str) -> Result<(), PersistError> {
        let Store::Postgres(pool) = self else {
            return Err(PersistError::UnsupportedUrl(
                "sqlite (roles are a PostgreSQL feature)".into(),
            ));
        };
        let statements = [
            format!("GRANT USAGE ON SCHEMA public TO {role}"),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
            ),
            format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"),
            // Applied migrations are the owner's to record.
            format!("REVOKE INSERT, UPDATE, DELETE ON _sqlx_migrations FROM {role}"),
        ];
        let mut tx = pool
            .begin()
            .await
            .map_err(PersistError::database("grant"))?;
        for statement in &statements {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(PersistError::database("grant"))?;
        }
        tx.commit().await.map_err(PersistError::database("grant"))
    }

    /// [`Store::connect`] to `$SCOUTSTREAM_DATABASE_URL`, or the default.
    pub async fn connect_from_env() -> Result<Self, PersistError> {
        let url = std::env::var(DATABASE_URL_ENV).unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
        Self::connect(&url).await
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Postgres(_) => Postgres::NAME,
            Store::Sqlite(_) => Sqlite::NAME,
        }
    }

    /// Whether the database answers a query now; `/readyz` asks every few seconds.
    pub async fn check_health(&self) -> Result<(), PersistError> {
        let query = async {
            match self {
                Store::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
                Store::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            }
        };
        match tokio::time::timeout(HEALTH_TIMEOUT, query).await {
            Ok(answered) => answered.map_err(PersistError::database("health check")),
            Err(_) => Err(PersistError::database("health check")(
                sqlx::Error::PoolTimedOut,
            )),
        }
    }

    /// Brings the schema up to date; safe to run again and from several processes.
    pub async fn migrate(&self) -> Result<(), PersistError> {
        let result = match self {
            Store::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
            Store::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
        };
        result.map_err(|source| PersistError::Migrate {
            backend: self.backend(),
            source,
        })
    }

    /// Writes the events in one transaction. Fails as a whole: invalid events
    /// ([`validate`]) fail it before anything is written.
    pub async fn write(&self, events: &[PersistEvent]) -> Result<WriteSummary, PersistError> {
        for event in events {
            validate(event)?;
        }
        self.write_rows(batch_rows(events), events.len()).await
    }

    /// [`Store::write`] for a consumer group: `sources[i]` is where `group`
    /// read `events[i]`. Events at or below what the group has applied from
    /// their partition are left out, and the group's positions move in the
    /// same transaction, so each event is applied exactly once.
    pub async fn write_sourced(
        &self,
        group: &str,
        events: &[PersistEvent],
        sources: &[Source],
    ) -> Result<WriteSummary, PersistError> {
        if events.len() != sources.len() {
            return Err(PersistError::Invalid(format!(
                "{} events with {} sources",
                events.len(),
                sources.len()
            )));
        }
        for event in events {
            validate(event)?;
        }
        let started = Instant::now();
        let written = match self {
            Store::Postgres(pool) => {
                Writer::<Postgres>::write_sourced(pool, group, events, sources).await
            }
            Store::Sqlite(pool) => {
                Writer::<Sqlite>::write_sourced(pool, group, events, sources).await
            }
        };
        let (rows, already_applied, accounts) = self.failed_or(written, events.len())?;
        Ok(self.persisted(&rows, accounts, already_applied, started))
    }

    /// [`Store::write`] of matches alone.
    pub async fn write_matches(
        &self,
        matches: &[MatchCompleted],
    ) -> Result<WriteSummary, PersistError> {
        for m in matches {
            rows::validate_match(m)?;
        }
        self.write_rows(BatchRows::new(matches, []), matches.len())
            .await
    }

    /// [`Store::write`] of profiles alone.
    pub async fn write_profiles(
        &self,
        profiles: &[PlayerProfile],
    ) -> Result<WriteSummary, PersistError> {
        for p in profiles {
            rows::validate_profile(p)?;
        }
        self.write_rows(BatchRows::new([], profiles), profiles.len())
            .await
    }

    async fn write_rows(
        &self,
        rows: BatchRows,
        events: usize,
    ) -> Result<WriteSummary, PersistError> {
        let started = Instant::now();
        let written = match self {
            Store::Postgres(pool) => Writer::<Postgres>::write(pool, &rows).await,
            Store::Sqlite(pool) => Writer::<Sqlite>::write(pool, &rows).await,
        };
        let accounts = self.failed_or(written, events)?;
        Ok(self.persisted(&rows, accounts, 0, started))
    }

    /// `written`, after reporting it when it failed.
    fn failed_or<T>(
        &self,
        written: Result<T, PersistError>,
        events: usize,
    ) -> Result<T, PersistError> {
        written.inspect_err(|error| {
            PersistFailed {
                backend: self.backend(),
                events,
                error,
            }
            .emit()
        })
    }

    /// Reports a committed write.
    fn persisted(
        &self,
        rows: &BatchRows,
        accounts_recomputed: usize,
        already_applied: usize,
        started: Instant,
    ) -> WriteSummary {
        let summary = WriteSummary {
            matches: rows.match_count(),
            player_rows: rows.player_row_count(),
            profiles: rows.profile_count(),
            accounts_recomputed,
            already_applied,
        };
        BatchPersisted {
            backend: self.backend(),
            matches: summary.matches,
            player_rows: summary.player_rows,
            profiles: summary.profiles,
            accounts_recomputed,
            already_applied,
            elapsed: started.elapsed(),
        }
        .emit();
        summary
    }

    /// Sets what `group` has applied from one partition, so a replay of the
    /// bus applies again what comes after `applied` (see [`Store::write_sourced`]).
    pub async fn set_position(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        applied: Applied,
    ) -> Result<(), PersistError> {
        let key = (std::sync::Arc::from(topic), partition);
        match self {
            Store::Postgres(pool) => positions::set(pool, group, key, applied).await,
            Store::Sqlite(pool) => positions::set(pool, group, key, applied).await,
        }
    }

    /// Forgets what `group` has applied, so every event it reads is applied:
    /// for a bus whose log does not outlive the process (the in-memory bus
    /// numbers every run's events from offset 0 again).
    pub async fn forget_positions(&self, group: &str) -> Result<(), PersistError> {
        let statement = "DELETE FROM persist_positions WHERE group_id = $1";
        let deleted = match self {
            Store::Postgres(pool) => sqlx::query(statement)
                .bind(group)
                .execute(pool)
                .await
                .map(|_| ()),
            Store::Sqlite(pool) => sqlx::query(statement)
                .bind(group)
                .execute(pool)
                .await
                .map(|_| ()),
        };
        deleted.map_err(PersistError::database("forget positions"))
    }

    /// Recounts the hero pools of `accounts` from their stored player matches.
    pub async fn recompute_hero_pools(&self, accounts: &[i64]) -> Result<(), PersistError> {
        match self {
            Store::Postgres(pool) => Writer::<Postgres>::recompute_accounts(pool, accounts).await,
            Store::Sqlite(pool) => Writer::<Sqlite>::recompute_accounts(pool, accounts).await,
        }
    }

    /// The scout's view of a player; `None` when nothing is known about them.
    pub async fn player_report(
        &self,
        account_id: i64,
    ) -> Result<Option<PlayerReport>, PersistError> {
        match self {
            Store::Postgres(pool) => Reader::<Postgres>::player_report(pool, account_id).await,
            Store::Sqlite(pool) => Reader::<Sqlite>::player_report(pool, account_id).await,
        }
    }

    /// The scout's view of a team; `None` when no match of it is stored.
    pub async fn team_report(&self, team_id: i64) -> Result<Option<TeamReport>, PersistError> {
        match self {
            Store::Postgres(pool) => Reader::<Postgres>::team_report(pool, team_id).await,
            Store::Sqlite(pool) => Reader::<Sqlite>::team_report(pool, team_id).await,
        }
    }

    /// Waits for the connections to close.
    pub async fn close(&self) {
        match self {
            Store::Postgres(pool) => pool.close().await,
            Store::Sqlite(pool) => pool.close().await,
        }
    }
}

/// The rows of `events`, each table's rows merged by key in Rust first.
fn batch_rows<'a>(events: impl IntoIterator<Item = &'a PersistEvent>) -> BatchRows {
    let (mut matches, mut profiles) = (Vec::new(), Vec::new());
    for event in events {
        match event {
            PersistEvent::Match(m) => matches.push(m),
            PersistEvent::Profile(p) => profiles.push(p),
        }
    }
    BatchRows::new(matches, profiles)
}

/// The part of a URL before its first `:`.
fn scheme(url: &str) -> &str {
    url.split_once(':').map_or("", |(scheme, _)| scheme)
}

/// A file database gets WAL (readers beside the writer); an in-memory one
/// lives in its one connection, so the pool keeps exactly that connection.
async fn open_sqlite(url: &str) -> Result<SqlitePool, PersistError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(PersistError::database("parse sqlite url"))?
        .create_if_missing(true)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let pool = if in_memory {
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
    } else {
        SqlitePoolOptions::new()
            .max_connections(SQLITE_MAX_CONNECTIONS)
            .connect_with(options.journal_mode(SqliteJournalMode::Wal))
            .await
    };
    pool.map_err(PersistError::database("connect"))
}
