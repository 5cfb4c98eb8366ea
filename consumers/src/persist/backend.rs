//! What differs between PostgreSQL and SQLite on the write path; the SQL
//! itself is shared (see [`super::sql`]).

use std::future::Future;

use sqlx::database::HasStatementCache;
use sqlx::{Pool, Postgres, QueryBuilder, Sqlite, Transaction};

use super::hero_pool::{CountedSlot, PoolDelta};
use super::rows::{MatchRow, PlayerMatchRow};
use super::sql::{HERO_POOL_DELTAS, MATCHES, PLAYER_MATCHES};
use super::write::Writer;
use super::PersistError;
use super::{staged, unnest};

/// A database the store writes to.
pub(crate) trait Backend: sqlx::Database + HasStatementCache {
    const NAME: &'static str;
    /// Bind parameters one statement may carry.
    const MAX_BINDS: usize;

    /// Pushes "`column` is one of `ids`" with a single bind, whatever the count.
    fn push_one_of(qb: &mut QueryBuilder<'_, Self>, column: &str, ids: &[i64]);

    /// Starts a transaction that is going to write.
    fn begin_write(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send + '_;

    /// Runs a statement in `tx`. Here rather than in the shared code: only a
    /// concrete backend lets the arguments' lifetime shrink to the borrow
    /// `build()` takes (SQLite's arguments may borrow).
    fn execute<'a>(
        tx: &'a mut Transaction<'static, Self>,
        qb: QueryBuilder<'static, Self>,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'a;

    /// Upserts `matches` rows (each key once, sorted by key) the fastest way
    /// this backend knows.
    fn upsert_matches<'a>(
        tx: &'a mut Transaction<'static, Self>,
        rows: &'a [MatchRow],
    ) -> impl Future<Output = Result<(), PersistError>> + Send + 'a;

    /// Upserts `player_matches` rows (each key once, sorted by key) the
    /// fastest way this backend knows.
    fn upsert_player_matches<'a>(
        tx: &'a mut Transaction<'static, Self>,
        rows: &'a [PlayerMatchRow],
    ) -> impl Future<Output = Result<PlayerRowsWritten, PersistError>> + Send + 'a;

    /// Adds hero-pool deltas (sorted by key) the fastest way this backend knows.
    fn upsert_pool_deltas<'a>(
        tx: &'a mut Transaction<'static, Self>,
        deltas: &'a [PoolDelta],
    ) -> impl Future<Output = Result<(), PersistError>> + Send + 'a;

    /// Runs a query of [`CountedSlot`] columns in `tx`.
    fn fetch_slots<'a>(
        tx: &'a mut Transaction<'static, Self>,
        qb: QueryBuilder<'static, Self>,
    ) -> impl Future<Output = Result<Vec<CountedSlot>, sqlx::Error>> + Send + 'a;

    /// Runs a query of `(topic, partition, applied_hi, applied_lo)` in `tx`.
    fn fetch_positions<'a>(
        tx: &'a mut Transaction<'static, Self>,
        qb: QueryBuilder<'static, Self>,
    ) -> impl Future<Output = Result<Vec<PositionColumns>, sqlx::Error>> + Send + 'a;

    /// Serialises writers of the same matches (a partition's old and new owner
    /// during a rebalance), so each reads the slots the other committed before
    /// it computes its hero-pool deltas. Writers of different matches never wait.
    fn lock_matches<'c>(
        tx: &'c mut Transaction<'static, Self>,
        match_ids: &'c [i64],
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c;

    /// Holds off every writer's hero-pool deltas until `tx` ends, for a full
    /// recount that must not race them.
    fn lock_hero_pool<'c>(
        tx: &'c mut Transaction<'static, Self>,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c;
}

/// What an upsert of `player_matches` rows left in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlayerRowsWritten {
    /// The rows' matches had no row before; now they have exactly these.
    OnlyThese,
    /// Rows were merged with rows already there (or the backend cannot tell).
    Merged,
}

/// Advisory lock class of match writers (`'mtch'`), so the locks cannot
/// collide with other users of advisory locks.
const MATCH_LOCK_CLASS: i32 = 0x6d74_6368;

type SlotColumns = (i64, i32, i64, i32, bool, i64);
pub(crate) type PositionColumns = (String, i32, i64, i64);

fn counted_slot(
    (match_id, player_slot, account_id, hero_id, won, start_time): SlotColumns,
) -> CountedSlot {
    CountedSlot {
        match_id,
        player_slot,
        account_id,
        hero_id,
        won,
        start_time,
    }
}

impl Backend for Postgres {
    const NAME: &'static str = "postgres";
    const MAX_BINDS: usize = u16::MAX as usize;

    fn push_one_of(qb: &mut QueryBuilder<'_, Self>, column: &str, ids: &[i64]) {
        qb.push(column)
            .push(" = ANY(")
            .push_bind(ids.to_vec())
            .push(")");
    }

    fn begin_write(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send + '_ {
        pool.begin()
    }

    async fn execute(
        tx: &mut Transaction<'static, Self>,
        mut qb: QueryBuilder<'static, Self>,
    ) -> Result<(), sqlx::Error> {
        // Statement texts vary with the row count: not worth caching.
        qb.build().persistent(false).execute(&mut **tx).await?;
        Ok(())
    }

    async fn upsert_matches(
        tx: &mut Transaction<'static, Self>,
        rows: &[MatchRow],
    ) -> Result<(), PersistError> {
        let known: Vec<MatchRow> = staged::copy_new_matches(tx, rows)
            .await
            .map_err(PersistError::database(MATCHES.table))?
            .into_iter()
            .cloned()
            .collect();
        Writer::<Self>::upsert(tx, &MATCHES, &known, Writer::<Self>::bind_match).await
    }

    async fn upsert_player_matches(
        tx: &mut Transaction<'static, Self>,
        rows: &[PlayerMatchRow],
    ) -> Result<PlayerRowsWritten, PersistError> {
        staged::upsert_player_matches(tx, rows)
            .await
            .map_err(PersistError::database(PLAYER_MATCHES.table))
    }

    async fn upsert_pool_deltas(
        tx: &mut Transaction<'static, Self>,
        deltas: &[PoolDelta],
    ) -> Result<(), PersistError> {
        unnest::upsert_pool_deltas(tx, deltas)
            .await
            .map_err(PersistError::database(HERO_POOL_DELTAS.table))
    }

    async fn fetch_slots(
        tx: &mut Transaction<'static, Self>,
        mut qb: QueryBuilder<'static, Self>,
    ) -> Result<Vec<CountedSlot>, sqlx::Error> {
        let rows: Vec<SlotColumns> = qb
            .build_query_as()
            .persistent(false)
            .fetch_all(&mut **tx)
            .await?;
        Ok(rows.into_iter().map(counted_slot).collect())
    }

    async fn fetch_positions(
        tx: &mut Transaction<'static, Self>,
        mut qb: QueryBuilder<'static, Self>,
    ) -> Result<Vec<PositionColumns>, sqlx::Error> {
        qb.build_query_as()
            .persistent(false)
            .fetch_all(&mut **tx)
            .await
    }

    async fn lock_matches(
        tx: &mut Transaction<'static, Self>,
        match_ids: &[i64],
    ) -> Result<(), sqlx::Error> {
        // Keys fold match ids into 31 bits: a shared key only serialises more.
        // Sorted, so two transactions always take their locks in one order.
        let mut keys: Vec<i32> = match_ids
            .iter()
            .map(|id| (id & 0x7fff_ffff) as i32)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(());
        }
        sqlx::query("SELECT pg_advisory_xact_lock($1, k) FROM UNNEST($2::int4[]) AS t(k)")
            .bind(MATCH_LOCK_CLASS)
            .bind(keys)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn lock_hero_pool(tx: &mut Transaction<'static, Self>) -> Result<(), sqlx::Error> {
        // Conflicts with the row-exclusive lock every delta takes, not with reads.
        sqlx::query("LOCK TABLE hero_pool IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

impl Backend for Sqlite {
    const NAME: &'static str = "sqlite";
    /// SQLITE_MAX_VARIABLE_NUMBER of SQLite 3.32 and later.
    const MAX_BINDS: usize = 32_766;

    fn push_one_of(qb: &mut QueryBuilder<'_, Self>, column: &str, ids: &[i64]) {
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        qb.push(column)
            .push(" IN (SELECT value FROM json_each(")
            .push_bind(format!("[{}]", list.join(",")))
            .push("))");
    }

    /// `BEGIN IMMEDIATE` takes the write lock up front: a deferred transaction
    /// that reads first may find it cannot upgrade (`SQLITE_BUSY_SNAPSHOT`).
    fn begin_write(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send + '_ {
        pool.begin_with("BEGIN IMMEDIATE")
    }

    async fn execute(
        tx: &mut Transaction<'static, Self>,
        mut qb: QueryBuilder<'static, Self>,
    ) -> Result<(), sqlx::Error> {
        // Statement texts vary with the row count: not worth caching.
        qb.build().persistent(false).execute(&mut **tx).await?;
        Ok(())
    }

    async fn fetch_slots(
        tx: &mut Transaction<'static, Self>,
        mut qb: QueryBuilder<'static, Self>,
    ) -> Result<Vec<CountedSlot>, sqlx::Error> {
        let rows: Vec<SlotColumns> = qb
            .build_query_as()
            .persistent(false)
            .fetch_all(&mut **tx)
            .await?;
        Ok(rows.into_iter().map(counted_slot).collect())
    }

    async fn upsert_matches(
        tx: &mut Transaction<'static, Self>,
        rows: &[MatchRow],
    ) -> Result<(), PersistError> {
        Writer::<Self>::upsert(tx, &MATCHES, rows, Writer::<Self>::bind_match).await
    }

    async fn upsert_player_matches(
        tx: &mut Transaction<'static, Self>,
        rows: &[PlayerMatchRow],
    ) -> Result<PlayerRowsWritten, PersistError> {
        Writer::<Self>::upsert(tx, &PLAYER_MATCHES, rows, Writer::<Self>::bind_player).await?;
        Ok(PlayerRowsWritten::Merged)
    }

    async fn upsert_pool_deltas(
        tx: &mut Transaction<'static, Self>,
        deltas: &[PoolDelta],
    ) -> Result<(), PersistError> {
        Writer::<Self>::upsert(
            tx,
            &HERO_POOL_DELTAS,
            deltas,
            Writer::<Self>::bind_pool_delta,
        )
        .await
    }

    /// SQLite has one writer at a time: `BEGIN IMMEDIATE` already serialises.
    async fn fetch_positions(
        tx: &mut Transaction<'static, Self>,
        mut qb: QueryBuilder<'static, Self>,
    ) -> Result<Vec<PositionColumns>, sqlx::Error> {
        qb.build_query_as()
            .persistent(false)
            .fetch_all(&mut **tx)
            .await
    }

    async fn lock_matches(
        _tx: &mut Transaction<'static, Self>,
        _match_ids: &[i64],
    ) -> Result<(), sqlx::Error> {
        Ok(())
    }

    async fn lock_hero_pool(_tx: &mut Transaction<'static, Self>) -> Result<(), sqlx::Error> {
        Ok(())
    }
}
