//! Hero pools kept by deltas instead of recounts.
//!
//! A hero pool row counts the `player_matches` rows of one (account, hero).
//! A write reads the counted slots of its matches before and after its
//! upserts; the difference, aggregated per (account, hero), is what the pool
//! must gain or lose. A replay changes no slot and so moves nothing; a slot a
//! better source corrects leaves its old (account, hero) and joins the new
//! one. The cost is that of the batch, not of the accounts' history.

use std::collections::{BTreeMap, HashMap};

use super::rows::PlayerMatchRow;

/// A `player_matches` row as the hero pool counts it (named accounts only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CountedSlot {
    pub match_id: i64,
    pub player_slot: i32,
    pub account_id: i64,
    pub hero_id: i32,
    pub won: bool,
    pub start_time: i64,
}

/// The slots of `rows` a hero pool counts: those of named accounts, as the
/// read of `sql::COUNTED_SLOTS_HEAD` gives them.
pub(crate) fn counted(rows: &[PlayerMatchRow]) -> Vec<CountedSlot> {
    rows.iter()
        .filter_map(|row| {
            Some(CountedSlot {
                match_id: row.match_id,
                player_slot: row.player_slot,
                account_id: row.account_id?,
                hero_id: row.hero_id,
                won: row.won,
                start_time: row.start_time,
            })
        })
        .collect()
}

/// What one (account, hero) gains (or loses, when negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolDelta {
    pub account_id: i64,
    pub hero_id: i32,
    pub games: i64,
    pub wins: i64,
    /// Newest start time among the slots added; 0 when none was.
    pub last_played: i64,
    /// A slot left: the stored `last_played` may have been that slot's.
    pub lost_slot: bool,
}

/// The deltas that take the pools from counting `before` to counting `after`,
/// in (account, hero) order so concurrent writers lock pool rows in one order.
pub(crate) fn deltas(before: &[CountedSlot], after: &[CountedSlot]) -> Vec<PoolDelta> {
    let key = |s: &CountedSlot| (s.match_id, s.player_slot);
    let old: HashMap<(i64, i32), &CountedSlot> = before.iter().map(|s| (key(s), s)).collect();
    let new: HashMap<(i64, i32), &CountedSlot> = after.iter().map(|s| (key(s), s)).collect();
    let mut pools: BTreeMap<(i64, i32), PoolDelta> = BTreeMap::new();
    for (k, was) in &old {
        if new.get(k) != Some(was) {
            let pool = pool_of(&mut pools, was);
            pool.games -= 1;
            pool.wins -= i64::from(was.won);
            pool.lost_slot = true;
        }
    }
    for (k, is) in &new {
        if old.get(k) != Some(is) {
            let pool = pool_of(&mut pools, is);
            pool.games += 1;
            pool.wins += i64::from(is.won);
            pool.last_played = pool.last_played.max(is.start_time);
        }
    }
    pools.into_values().collect()
}

fn pool_of<'a>(
    pools: &'a mut BTreeMap<(i64, i32), PoolDelta>,
    slot: &CountedSlot,
) -> &'a mut PoolDelta {
    pools
        .entry((slot.account_id, slot.hero_id))
        .or_insert(PoolDelta {
            account_id: slot.account_id,
            hero_id: slot.hero_id,
            games: 0,
            wins: 0,
            last_played: 0,
            lost_slot: false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(match_id: i64, player_slot: i32, account_id: i64, hero_id: i32) -> CountedSlot {
        CountedSlot {
            match_id,
            player_slot,
            account_id,
            hero_id,
            won: player_slot < 128,
            start_time: match_id * 10,
        }
    }

    #[test]
    fn rows_of_anonymous_players_are_not_counted() {
        let row = |player_slot, account_id| PlayerMatchRow {
            match_id: 5,
            player_slot,
            account_id,
            hero_id: 3,
            won: true,
            start_time: 50,
            ..PlayerMatchRow::default()
        };
        let rows = [row(0, Some(7)), row(1, None), row(128, Some(8))];
        let got = counted(&rows);
        assert_eq!(
            got.iter()
                .map(|s| (s.player_slot, s.account_id))
                .collect::<Vec<_>>(),
            vec![(0, 7), (128, 8)]
        );
        assert_eq!(
            (got[0].hero_id, got[0].won, got[0].start_time),
            (3, true, 50)
        );
    }

    #[test]
    fn a_replay_moves_nothing() {
        let slots = [slot(1, 0, 7, 10), slot(1, 128, 8, 11)];
        assert!(deltas(&slots, &slots).is_empty());
    }

    #[test]
    fn new_slots_add_games_wins_and_last_played() {
        let after = [slot(1, 0, 7, 10), slot(2, 0, 7, 10), slot(2, 128, 8, 11)];
        let got = deltas(&[], &after);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].account_id, got[0].hero_id, got[0].games, got[0].wins),
            (7, 10, 2, 2)
        );
        assert_eq!((got[0].last_played, got[0].lost_slot), (20, false));
        assert_eq!((got[1].games, got[1].wins), (1, 0));
    }

    #[test]
    fn a_corrected_slot_leaves_the_old_pool_and_joins_the_new() {
        let before = [slot(1, 0, 7, 10)];
        let after = [slot(1, 0, 9, 10)];
        let got = deltas(&before, &after);
        assert_eq!(
            got.iter()
                .map(|d| (d.account_id, d.games, d.wins, d.lost_slot))
                .collect::<Vec<_>>(),
            vec![(7, -1, -1, true), (9, 1, 1, false)]
        );
    }
}
