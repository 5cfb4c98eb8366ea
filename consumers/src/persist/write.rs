//! The write path: a batch in one transaction, multi-row upserts chunked
//! under the bind limit, and the hero pool moved by the batch's deltas
//! (see [`super::hero_pool`]).

use std::collections::BTreeSet;
use std::marker::PhantomData;

use sqlx::query_builder::Separated;
use sqlx::types::Json;
use sqlx::{Encode, Pool, QueryBuilder, Transaction, Type};

use super::backend::{Backend, PlayerRowsWritten};
use super::hero_pool::{self, CountedSlot, PoolDelta};
use super::positions::{self, Applied, Source};
use super::rows::{BatchRows, MatchRow, PickBanRow, PlayerMatchRow, ProfileRow, TeamRow};
use super::sql::{self, Upsert};
use super::{PersistError, PersistEvent};

/// Binds one row's values, in the order of its [`Upsert::columns`].
type Bind<DB, R> = for<'qb, 'args> fn(&mut Separated<'qb, 'args, DB, &'static str>, &R);

/// Write functions for one backend. The bounds say what the shared SQL binds
/// and reads; both backends meet them.
pub(crate) struct Writer<DB>(PhantomData<DB>);

impl<DB> Writer<DB>
where
    DB: Backend,
    for<'q> i16: Encode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Json<Vec<i32>>: Encode<'q, DB> + Type<DB>,
    // Each backend encodes NULL its own way: Option is not covered by the above.
    for<'q> Option<i32>: Encode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'q> Option<Json<Vec<i32>>>: Encode<'q, DB>,
{
    /// Writes the batch in one transaction. Returns how many accounts' hero
    /// pools changed.
    pub async fn write(pool: &Pool<DB>, rows: &BatchRows) -> Result<usize, PersistError> {
        let mut tx = DB::begin_write(pool)
            .await
            .map_err(PersistError::database("begin"))?;
        let changed = Self::write_in(&mut tx, rows).await?;
        tx.commit()
            .await
            .map_err(PersistError::database("commit"))?;
        Ok(changed)
    }

    /// Writes the events (read from `sources`, one each) that `group` has not
    /// applied yet, and moves its positions, in one transaction (see
    /// [`positions`]). Returns the rows written, how many events were left
    /// out as applied before, and how many accounts' hero pools changed.
    pub async fn write_sourced(
        pool: &Pool<DB>,
        group: &str,
        events: &[PersistEvent],
        sources: &[Source],
    ) -> Result<(BatchRows, usize, usize), PersistError> {
        let mut tx = DB::begin_write(pool)
            .await
            .map_err(PersistError::database("begin"))?;
        let claimed =
            positions::claim(&mut tx, group, &positions::partitions_of(sources.iter())).await?;
        let mut reached = claimed.clone();
        let mut fresh = Vec::with_capacity(events.len());
        for (event, source) in events.iter().zip(sources) {
            let key = (source.topic.clone(), source.partition);
            let applied = claimed.get(&key).copied().unwrap_or(Applied::NOTHING);
            if source.position > applied {
                fresh.push(event);
                let at = reached.entry(key).or_insert(applied);
                *at = (*at).max(source.position);
            }
        }
        let rows = super::batch_rows(fresh.iter().copied());
        let changed = Self::write_in(&mut tx, &rows).await?;
        reached.retain(|key, at| claimed.get(key) != Some(at));
        positions::advance(&mut tx, group, &reached).await?;
        tx.commit()
            .await
            .map_err(PersistError::database("commit"))?;
        Ok((rows, events.len() - fresh.len(), changed))
    }

    /// The body of a write, in `tx`.
    async fn write_in(
        tx: &mut Transaction<'static, DB>,
        rows: &BatchRows,
    ) -> Result<usize, PersistError> {
        DB::lock_matches(tx, &rows.match_ids)
            .await
            .map_err(PersistError::database("lock matches"))?;
        let before = Self::counted_slots(tx, &rows.match_ids).await?;
        let mut written = Vec::with_capacity(rows.match_rounds.len());
        for round in &rows.match_rounds {
            DB::upsert_matches(tx, &round.matches).await?;
            written.push(DB::upsert_player_matches(tx, &round.players).await?);
            Self::upsert(tx, &sql::PICKS_BANS, &round.picks_bans, Self::bind_pick_ban).await?;
        }
        for round in &rows.team_rounds {
            Self::upsert(tx, &sql::TEAMS, round, Self::bind_team).await?;
        }
        let after = match (written.as_slice(), rows.match_rounds.as_slice()) {
            // Replaying history: no slot of the batch's matches was counted
            // before (so one without player rows here has none to keep), and
            // those with player rows hold exactly the ones written.
            ([PlayerRowsWritten::OnlyThese], [round]) if before.is_empty() => {
                hero_pool::counted(&round.players)
            }
            _ => Self::counted_slots(tx, &rows.match_ids).await?,
        };
        let changed = Self::apply_hero_pool_deltas(tx, &hero_pool::deltas(&before, &after)).await?;
        for round in &rows.profile_rounds {
            Self::upsert(tx, &sql::PLAYERS, round, Self::bind_profile).await?;
        }
        Ok(changed)
    }

    /// The slots of `match_ids` a hero pool counts, as `tx` sees them now.
    async fn counted_slots(
        tx: &mut Transaction<'static, DB>,
        match_ids: &[i64],
    ) -> Result<Vec<CountedSlot>, PersistError> {
        if match_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = QueryBuilder::<'static, DB>::new(sql::COUNTED_SLOTS_HEAD);
        DB::push_one_of(&mut qb, "match_id", match_ids);
        DB::fetch_slots(tx, qb)
            .await
            .map_err(PersistError::database("read counted slots"))
    }

    /// Moves the hero pools by `deltas`: rows whose last game left go, and
    /// where a slot left, `last_played` is read again from its account's
    /// rows (rare: a corrected slot). Returns how many accounts changed.
    async fn apply_hero_pool_deltas(
        tx: &mut Transaction<'static, DB>,
        deltas: &[PoolDelta],
    ) -> Result<usize, PersistError> {
        if deltas.is_empty() {
            return Ok(0);
        }
        DB::upsert_pool_deltas(tx, deltas).await?;
        let accounts_of = |pick: &dyn Fn(&PoolDelta) -> bool| -> Vec<i64> {
            let set: BTreeSet<i64> = deltas
                .iter()
                .filter(|d| pick(d))
                .map(|d| d.account_id)
                .collect();
            set.into_iter().collect()
        };
        let losing = accounts_of(&|d| d.lost_slot);
        if !losing.is_empty() {
            let mut emptied = QueryBuilder::<'static, DB>::new(sql::HERO_POOL_EMPTIED_HEAD);
            DB::push_one_of(&mut emptied, "account_id", &losing);
            DB::execute(tx, emptied)
                .await
                .map_err(PersistError::database("hero_pool emptied rows"))?;
            let mut last_played = QueryBuilder::<'static, DB>::new(sql::HERO_POOL_LAST_PLAYED_HEAD);
            DB::push_one_of(&mut last_played, "account_id", &losing);
            DB::execute(tx, last_played)
                .await
                .map_err(PersistError::database("hero_pool last_played"))?;
        }
        Ok(accounts_of(&|_| true).len())
    }

    /// Upserts `rows` in as few statements as the bind limit allows.
    pub(crate) async fn upsert<R>(
        tx: &mut Transaction<'static, DB>,
        upsert: &Upsert,
        rows: &[R],
        bind: Bind<DB, R>,
    ) -> Result<(), PersistError> {
        let per_statement = (DB::MAX_BINDS / upsert.columns.len()).max(1);
        for chunk in rows.chunks(per_statement) {
            let mut qb = QueryBuilder::<'static, DB>::new(upsert.insert_prefix());
            qb.push_values(chunk, |mut values, row| bind(&mut values, row));
            qb.push(&upsert.on_conflict);
            DB::execute(tx, qb)
                .await
                .map_err(PersistError::database(upsert.table))?;
        }
        Ok(())
    }

    /// Recounts the hero pools of `accounts` from `player_matches` (the
    /// `recompute_hero_pool` repair job), holding writers' deltas off meanwhile.
    pub async fn recompute_accounts(pool: &Pool<DB>, accounts: &[i64]) -> Result<(), PersistError> {
        let mut tx = DB::begin_write(pool)
            .await
            .map_err(PersistError::database("begin"))?;
        DB::lock_hero_pool(&mut tx)
            .await
            .map_err(PersistError::database("lock hero_pool"))?;
        Self::recompute_hero_pool(&mut tx, accounts).await?;
        tx.commit().await.map_err(PersistError::database("commit"))
    }

    /// Recounts `hero_pool` of `accounts` from `player_matches`, so the
    /// aggregate is a function of the rows and cannot drift under redelivery.
    async fn recompute_hero_pool(
        tx: &mut Transaction<'static, DB>,
        accounts: &[i64],
    ) -> Result<(), PersistError> {
        if accounts.is_empty() {
            return Ok(());
        }
        let mut recompute = QueryBuilder::<'static, DB>::new(sql::HERO_POOL_RECOMPUTE_HEAD);
        DB::push_one_of(&mut recompute, "account_id", accounts);
        recompute.push(sql::HERO_POOL_RECOMPUTE_TAIL);
        DB::execute(tx, recompute)
            .await
            .map_err(PersistError::database("hero_pool"))?;

        let mut stale = QueryBuilder::<'static, DB>::new(sql::HERO_POOL_STALE_HEAD);
        DB::push_one_of(&mut stale, "account_id", accounts);
        DB::execute(tx, stale)
            .await
            .map_err(PersistError::database("hero_pool stale rows"))?;
        Ok(())
    }

    pub(crate) fn bind_pool_delta(b: &mut Separated<'_, '_, DB, &'static str>, d: &PoolDelta) {
        b.push_bind(d.account_id)
            .push_bind(d.hero_id)
            .push_bind(d.games)
            .push_bind(d.wins)
            .push_bind(d.last_played);
    }

    pub(crate) fn bind_match(b: &mut Separated<'_, '_, DB, &'static str>, r: &MatchRow) {
        r.bind_values(b);
    }

    pub(crate) fn bind_player(b: &mut Separated<'_, '_, DB, &'static str>, r: &PlayerMatchRow) {
        r.bind_values(b);
    }

    fn bind_pick_ban(b: &mut Separated<'_, '_, DB, &'static str>, r: &PickBanRow) {
        b.push_bind(r.match_id)
            .push_bind(r.ord)
            .push_bind(r.is_pick)
            .push_bind(r.hero_id)
            .push_bind(r.team)
            .push_bind(r.source_rank);
    }

    fn bind_team(b: &mut Separated<'_, '_, DB, &'static str>, r: &TeamRow) {
        b.push_bind(r.team_id)
            .push_bind(r.name.clone())
            .push_bind(r.last_match_time);
    }

    fn bind_profile(b: &mut Separated<'_, '_, DB, &'static str>, r: &ProfileRow) {
        b.push_bind(r.account_id)
            .push_bind(r.persona_name.clone())
            .push_bind(r.rank_tier)
            .push_bind(r.leaderboard_rank)
            .push_bind(r.country.clone())
            .push_bind(r.last_seen)
            .push_bind(r.avatar_url.clone())
            .push_bind(r.profile_url.clone())
            .push_bind(r.observed_at_ms);
    }
}
