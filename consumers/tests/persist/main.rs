//! The persist group against PostgreSQL and SQLite. Each test is written once
//! and runs on both backends (`postgres::name`, `sqlite::name`), each time on
//! fresh databases of its own: a new PostgreSQL database (dropped afterwards)
//! or a new SQLite file. Expected values are read off the fixture files in
//! `shared/data/opendota`.
//!
//! PostgreSQL comes from `$SCOUTSTREAM_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); that role must be allowed to
//! create databases.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::{Arc, Mutex};

use consumers::persist::{PersistEvent, Store};
use producers::ingest::{ingest_file, shared_data_dir, IngestedEvent};
use schemas::MatchCompleted;
use testkit::postgres::{create_database, drop_database};
use testkit::{on_both_backends, run_cleaned};

mod handler;
mod hero_pool_recount;
mod idempotency;
mod rows;
mod scout;
mod single_backend;
mod tables;

use handler::*;
use hero_pool_recount::*;
use idempotency::*;
use rows::*;
use scout::*;

// ---------------------------------------------------------------------------
// Fresh databases per test, on both backends.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    Sqlite,
}

/// Hands a test fresh, empty stores of one backend; removes them afterwards.
#[derive(Clone)]
struct Env {
    kind: Kind,
    inner: Arc<EnvInner>,
}

struct EnvInner {
    dir: tempfile::TempDir,
    /// Each store with the PostgreSQL database to drop after it.
    stores: Mutex<Vec<(Store, Option<String>)>>,
}

impl Env {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            inner: Arc::new(EnvInner {
                dir: tempfile::tempdir().unwrap(),
                stores: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A new empty database, migrated, through [`Store::connect`].
    async fn store(&self) -> Store {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (url, database) = match self.kind {
            Kind::Postgres => {
                let name = format!("sstest_{id}");
                (create_database(&name).await, Some(name))
            }
            Kind::Sqlite => {
                let path = self.inner.dir.path().join(format!("{id}.db"));
                (format!("sqlite://{}", path.display()), None)
            }
        };
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(
            store.backend(),
            match self.kind {
                Kind::Postgres => "postgres",
                Kind::Sqlite => "sqlite",
            }
        );
        let mut stores = self.inner.stores.lock().unwrap();
        stores.push((store.clone(), database));
        store
    }

    async fn cleanup(&self) {
        let stores: Vec<_> = self.inner.stores.lock().unwrap().drain(..).collect();
        for (store, database) in stores {
            store.close().await;
            if let Some(name) = database {
                drop_database(&name).await;
            }
        }
    }
}

/// Runs `test` with fresh stores of `kind`, removing them even when it panics.
async fn run<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let env = Env::new(kind);
    run_cleaned(test(env.clone()), env.cleanup()).await;
}

on_both_backends!(
    pro_match_rows_match_the_fixture,
    deleting_a_match_deletes_its_rows,
    public_match_rows_match_the_fixture,
    game_coordinator_reveals_anonymous_players,
    anonymous_marker_never_creates_players,
    corrected_slots_leave_the_old_hero_pool,
    a_version_without_players_keeps_the_counted_slots,
    replays_and_reordering_leave_identical_tables,
    loadgen_replay_keeps_counts_and_hero_pool,
    concurrent_writers_agree_on_hero_pool,
    hero_pool_deltas_equal_a_recount_under_random_writes,
    older_profile_never_overwrites_newer,
    player_report_matches_the_fixtures,
    team_report_matches_the_fixtures,
    team_name_follows_the_newest_match,
    handler_persists_slices_and_rejects_bad_deliveries,
    handler_reports_an_unreachable_store_as_retriable,
);

// ---------------------------------------------------------------------------
// Fixtures.

/// When the rank record was observed; the Steam summary is a second newer.
const RANK_OBSERVED_AT_MS: i64 = 1_700_000_000_000;
const SUMMARY_OBSERVED_AT_MS: i64 = RANK_OBSERVED_AT_MS + 1_000;

const PUBLIC_MATCH: i64 = 1_781_962_623;
const PRO_MATCH: i64 = 3_254_426_673;
const PLANET_ODD: i64 = 4_251_435;
const NEWBEE: i64 = 1_375_614;
const CHERNO_BILLY: i64 = 120_269_134;

fn fixture(name: &str) -> Vec<PersistEvent> {
    let observed_at_ms = if name == "summaries_api.json" {
        SUMMARY_OBSERVED_AT_MS
    } else {
        RANK_OBSERVED_AT_MS
    };
    let path = shared_data_dir().join("opendota").join(name);
    ingest_file(&path, observed_at_ms)
        .unwrap()
        .into_iter()
        .map(|event| match event {
            IngestedEvent::Match(m) => PersistEvent::Match(m),
            IngestedEvent::Player(p) => PersistEvent::Profile(p),
            IngestedEvent::Job(j) => panic!("{name} holds a job request: {j:?}"),
        })
        .collect()
}

fn fixture_match(name: &str) -> MatchCompleted {
    match fixture(name).as_slice() {
        [PersistEvent::Match(m)] => m.clone(),
        other => panic!("{name}: expected one match, got {other:?}"),
    }
}

/// Every fixture event: two Steam API matches, the game coordinator's view
/// of the first, a rank record and a Steam summary.
fn all_fixtures() -> Vec<PersistEvent> {
    [
        "details_api.json",
        "details_api_pro.json",
        "retriever_match.json",
        "retriever_player.json",
        "summaries_api.json",
    ]
    .into_iter()
    .flat_map(fixture)
    .collect()
}
