//! The raw COPY baseline loads exactly the rows persist stores, value for
//! value, so the benchmark compares like with like. PostgreSQL only.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use baselines::{copy_player_rows_in_place, copy_player_rows_raw, COPY_SCRATCH_TABLE};
use consumers::persist::{player_rows, PlayerMatchRow, Store};
use producers::loadgen::generate_matches;
use sqlx::{PgPool, Row};

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Every player column as text, in key order: equal lists are equal tables.
async fn text_rows(pool: &PgPool, table: &str) -> Vec<Vec<Option<String>>> {
    let casts: Vec<String> = PlayerMatchRow::COLUMNS
        .iter()
        .map(|c| format!("CAST({c} AS TEXT)"))
        .collect();
    let sql = format!(
        "SELECT {} FROM {table} ORDER BY match_id, player_slot",
        casts.join(", ")
    );
    sqlx::query(&sql)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.try_get::<Option<String>, _>(i).unwrap())
                .collect()
        })
        .collect()
}

/// A fresh database from `#[sqlx::test]` (dropped when the test passes, swept
/// by the next run when it fails), migrated the way the product does.
#[sqlx::test(migrations = false)]
async fn copy_loads_player_rows_raw(pool: PgPool) {
    let store = Store::Postgres(pool.clone());
    store.migrate().await.unwrap();
    let pool = &pool;
    let mut matches = generate_matches(2_000, 5);
    // Text COPY gives tab, newline and backslash meaning: names must survive them.
    matches[0].players[0].persona_name = Some("tab\there\\ and\nnewline".into());
    let rows = player_rows(&matches);
    assert_eq!(rows.len(), 20_000);

    let started = Instant::now();
    let loaded = copy_player_rows_raw(pool, &rows).await.unwrap();
    let copy_time = started.elapsed();
    assert_eq!(loaded, 20_000);
    assert_eq!(count(pool, COPY_SCRATCH_TABLE).await, 20_000);

    // Same rows as the upsert path would store, value for value.
    let started = Instant::now();
    store.write_matches(&matches).await.unwrap();
    let upsert_time = started.elapsed();
    let from_copy = text_rows(pool, COPY_SCRATCH_TABLE).await;
    let from_upsert = text_rows(pool, "player_matches").await;
    assert_eq!(from_copy.len(), 20_000);
    assert!(from_copy == from_upsert, "COPY and upsert rows differ");

    // Loading again replaces the scratch contents.
    let loaded = copy_player_rows_raw(pool, &rows[..100]).await.unwrap();
    assert_eq!(loaded, 100);
    assert_eq!(count(pool, COPY_SCRATCH_TABLE).await, 100);
    eprintln!(
        "[postgres] 20,000 player rows: raw COPY {copy_time:?}; \
         batched upsert of their 2,000 matches (with hero pool) {upsert_time:?}"
    );
}

/// The in-place baseline loads every row into `player_matches` beside the rows
/// persist wrote (same keys, so they must move) and leaves nothing behind.
#[sqlx::test(migrations = false)]
async fn copy_in_place_loads_beside_persisted_rows_and_leaves_the_table_as_it_was(pool: PgPool) {
    let store = Store::Postgres(pool.clone());
    store.migrate().await.unwrap();
    let matches = generate_matches(500, 6);
    store.write_matches(&matches).await.unwrap();
    let before = text_rows(&pool, "player_matches").await;
    assert_eq!(before.len(), 5_000);

    let rows = player_rows(&matches);
    let (loaded, _) = copy_player_rows_in_place(&pool, &rows).await.unwrap();
    assert_eq!(loaded, 5_000);
    assert!(
        text_rows(&pool, "player_matches").await == before,
        "the load was not rolled back"
    );
    // pgstattuple reads the pages themselves: the statistics views lag.
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        .execute(&pool)
        .await
        .unwrap();
    let dead: i64 =
        sqlx::query_scalar("SELECT dead_tuple_count FROM pgstattuple('player_matches')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(dead, 0, "the rolled-back rows were not vacuumed away");
    assert_eq!(copy_player_rows_in_place(&pool, &[]).await.unwrap().0, 0);
}
