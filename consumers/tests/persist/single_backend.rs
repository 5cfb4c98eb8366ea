//! Backend-independent and PostgreSQL-only tests.

use std::time::Instant;

use baselines::{copy_player_rows_raw, COPY_SCRATCH_TABLE};
use consumers::persist::{player_rows, PersistError, Store};
use producers::loadgen::generate_matches;

use super::*;
use crate::tables::*;

// ---------------------------------------------------------------------------
// Backend-independent and PostgreSQL-only.

#[tokio::test]
async fn connect_rejects_unknown_schemes() {
    let err = Store::connect("mysql://root:secret@localhost/db")
        .await
        .unwrap_err();
    assert!(matches!(err, PersistError::UnsupportedUrl(_)), "{err}");
    assert!(!err.is_retriable());
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn sqlite_in_memory_keeps_its_data() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store.write(&all_fixtures()).await.unwrap();
    // The pool must hand back the one connection that holds the database.
    for _ in 0..3 {
        assert_eq!(count(&store, "player_matches").await, 20);
    }
    let report = store.player_report(CHERNO_BILLY).await.unwrap().unwrap();
    assert_eq!(report.rank_tier, Some(80));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_loads_player_rows_raw() {
    run(Kind::Postgres, copy_loads_player_rows).await;
}

async fn copy_loads_player_rows(env: Env) {
    let store = env.store().await;
    let Store::Postgres(pool) = &store else {
        unreachable!("a PostgreSQL env");
    };
    let mut matches = generate_matches(2_000, 5);
    // Text COPY gives tab, newline and backslash meaning: names must survive them.
    matches[0].players[0].persona_name = Some("tab\there\\ and\nnewline".into());
    let rows = player_rows(&matches);
    assert_eq!(rows.len(), 20_000);

    let started = Instant::now();
    let loaded = copy_player_rows_raw(pool, &rows).await.unwrap();
    let copy_time = started.elapsed();
    assert_eq!(loaded, 20_000);
    assert_eq!(count(&store, COPY_SCRATCH_TABLE).await, 20_000);

    // Same rows as the upsert path would store, value for value.
    let started = Instant::now();
    store.write_matches(&matches).await.unwrap();
    let upsert_time = started.elapsed();
    let (_, columns, key) = DUMPED_TABLES[1];
    let from_copy = text_rows(&store, &text_select(COPY_SCRATCH_TABLE, columns, key)).await;
    let from_upsert = text_rows(&store, &text_select("player_matches", columns, key)).await;
    assert_eq!(from_copy.len(), 20_000);
    assert!(from_copy == from_upsert, "COPY and upsert rows differ");

    // Loading again replaces the scratch contents.
    let loaded = copy_player_rows_raw(pool, &rows[..100]).await.unwrap();
    assert_eq!(loaded, 100);
    assert_eq!(count(&store, COPY_SCRATCH_TABLE).await, 100);
    eprintln!(
        "[postgres] 20,000 player rows: raw COPY {copy_time:?}; \
         batched upsert of their 2,000 matches (with hero pool) {upsert_time:?}"
    );
}
