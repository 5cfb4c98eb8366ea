//! PostgreSQL's set-based upsert of the hero-pool deltas: one statement whose
//! parameters are column arrays, `INSERT … SELECT FROM UNNEST(…) ON CONFLICT`.
//! Its text never changes, so it is parsed and planned once per connection;
//! multi-row `VALUES` carry a bind per cell and a new text per row count.
//! (`player_matches` rows go through a staging table: see [`super::staged`].)

use std::sync::LazyLock;

use sqlx::{Postgres, Transaction};

use super::hero_pool::PoolDelta;
use super::sql::{Upsert, HERO_POOL_DELTAS};

/// `upsert` with its rows read from one array per column.
fn unnest_statement(upsert: &Upsert, array_types: &[&str]) -> String {
    let arrays: Vec<String> = array_types
        .iter()
        .enumerate()
        .map(|(i, ty)| format!("${}::{ty}", i + 1))
        .collect();
    format!(
        "{}SELECT * FROM UNNEST({}){}",
        upsert.insert_prefix(),
        arrays.join(", "),
        upsert.on_conflict
    )
}

static POOL_DELTAS: LazyLock<String> = LazyLock::new(|| {
    unnest_statement(
        &HERO_POOL_DELTAS,
        &["bigint[]", "integer[]", "bigint[]", "bigint[]", "bigint[]"],
    )
});

/// Adds `deltas` (sorted by key) to the hero pools.
pub(crate) async fn upsert_pool_deltas(
    tx: &mut Transaction<'static, Postgres>,
    deltas: &[PoolDelta],
) -> Result<(), sqlx::Error> {
    let column = |f: fn(&PoolDelta) -> i64| deltas.iter().map(f).collect::<Vec<i64>>();
    sqlx::query(&POOL_DELTAS)
        .bind(column(|d| d.account_id))
        .bind(deltas.iter().map(|d| d.hero_id).collect::<Vec<i32>>())
        .bind(column(|d| d.games))
        .bind(column(|d| d.wins))
        .bind(column(|d| d.last_played))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_array_per_column_in_column_order() {
        assert!(POOL_DELTAS.contains("UNNEST($1::bigint[], $2::integer[], $3::bigint[]"));
        assert!(POOL_DELTAS.ends_with(&HERO_POOL_DELTAS.on_conflict));
    }
}
