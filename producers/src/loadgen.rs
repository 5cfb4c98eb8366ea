//! Synthetic matches for load tests and demos: deterministic for a seed, shaped
//! like real ranked matches (valid hero and item ids, ten players, some anonymous,
//! a bounded player base so the same accounts recur across matches).
//!
//! Same seed, same matches, as long as `Cargo.lock` pins the same `rand` (StdRng's
//! algorithm may change between rand releases).

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::seq::index;
use rand::{Rng, SeedableRng};

use schemas::reference::Reference;
use schemas::{MatchCompleted, PlayerPerformance};

/// How many distinct accounts the generated players come from.
pub const ACCOUNT_POOL_SIZE: usize = 1_000;
/// `source` of generated matches, so they can never pass for real data.
pub const LOADGEN_SOURCE: &str = "loadgen";

const PLAYERS_PER_TEAM: usize = 5;
/// Share of players hiding their account, roughly as in public matchmaking.
const ANONYMOUS_SHARE: f64 = 0.15;
const FIRST_MATCH_ID: i64 = 8_000_000_000;
const FIRST_MATCH_SEQ_NUM: i64 = 6_700_000_000;
/// 2025-01-01T00:00:00Z.
const FIRST_START_TIME: i64 = 1_735_689_600;
const GAME_MODE_ALL_PICK: i32 = 1;
const GAME_MODE_ALL_DRAFT: i32 = 22;
const GAME_MODE_TURBO: i32 = 23;
const LOBBY_NORMAL: i32 = 0;
const LOBBY_RANKED: i32 = 7;
const DIRE_FIRST_SLOT: i32 = 128;

/// `n` matches with strictly increasing match ids and non-decreasing start times.
pub fn generate_matches(n: usize, seed: u64) -> Vec<MatchCompleted> {
    let mut rng = StdRng::seed_from_u64(seed);
    let pools = Pools::new(&mut rng);
    let mut clock = Clock::default();
    (0..n)
        .map(|_| {
            clock.advance(&mut rng);
            generate_match(&mut rng, &pools, &clock)
        })
        .collect()
}

/// Ids to draw from, all in ascending order so draws depend on the seed alone.
struct Pools {
    heroes: Vec<i32>,
    items: Vec<i32>,
    clusters: Vec<i32>,
    accounts: Vec<i64>,
}

impl Pools {
    fn new(rng: &mut StdRng) -> Self {
        let reference = Reference::get();
        Self {
            heroes: reference.heroes().map(|h| h.id).collect(),
            // Recipes and id 0 (`ability_base`) never sit in an inventory.
            items: reference
                .items()
                .filter(|(id, name)| *id != 0 && !name.starts_with("recipe_"))
                .map(|(id, _)| id)
                .collect(),
            clusters: reference.clusters().collect(),
            accounts: account_pool(rng),
        }
    }
}

fn account_pool(rng: &mut StdRng) -> Vec<i64> {
    let mut accounts = BTreeSet::new();
    while accounts.len() < ACCOUNT_POOL_SIZE {
        accounts.insert(rng.random_range(10_000_000..=400_000_000_i64));
    }
    accounts.into_iter().collect()
}

/// Matches arrive in id order, a few seconds apart, as on a busy server.
struct Clock {
    match_id: i64,
    match_seq_num: i64,
    start_time: i64,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            match_id: FIRST_MATCH_ID,
            match_seq_num: FIRST_MATCH_SEQ_NUM,
            start_time: FIRST_START_TIME,
        }
    }
}

impl Clock {
    fn advance(&mut self, rng: &mut StdRng) {
        self.match_id += rng.random_range(1..=5_000);
        self.match_seq_num += rng.random_range(1..=5_000);
        self.start_time += rng.random_range(0..=90);
    }
}

fn generate_match(rng: &mut StdRng, pools: &Pools, clock: &Clock) -> MatchCompleted {
    let duration_secs = rng.random_range(900..=4_200);
    let radiant_win = rng.random_bool(0.5);
    let (game_mode, lobby_type) = mode_and_lobby(rng);
    let heroes = index::sample(rng, pools.heroes.len(), 2 * PLAYERS_PER_TEAM);
    let accounts = index::sample(rng, pools.accounts.len(), 2 * PLAYERS_PER_TEAM);
    let players: Vec<PlayerPerformance> = (0..)
        .zip(heroes.iter().zip(accounts.iter()))
        .map(|(seat, (hero, account))| {
            let slot = slot_of(seat);
            let won = radiant_win == (slot < DIRE_FIRST_SLOT);
            let account_id = (!rng.random_bool(ANONYMOUS_SHARE)).then(|| pools.accounts[account]);
            let seed = PlayerSeed {
                slot,
                hero_id: pools.heroes[hero],
                account_id,
                won,
                duration_secs,
            };
            generate_player(rng, pools, &seed)
        })
        .collect();
    MatchCompleted {
        match_id: clock.match_id,
        match_seq_num: Some(clock.match_seq_num),
        start_time: clock.start_time,
        duration_secs,
        radiant_win,
        game_mode,
        lobby_type,
        league_id: 0,
        cluster: pools.clusters[rng.random_range(0..pools.clusters.len())],
        radiant_team: None,
        dire_team: None,
        radiant_score: Some(team_kills(&players, true)),
        dire_score: Some(team_kills(&players, false)),
        picks_bans: Vec::new(),
        players,
        source: LOADGEN_SOURCE.to_string(),
    }
}

/// Mostly ranked All Draft, some unranked Turbo and All Pick.
fn mode_and_lobby(rng: &mut StdRng) -> (i32, i32) {
    match rng.random_range(0..100) {
        0..70 => (GAME_MODE_ALL_DRAFT, LOBBY_RANKED),
        70..85 => (GAME_MODE_TURBO, LOBBY_NORMAL),
        _ => (GAME_MODE_ALL_PICK, LOBBY_NORMAL),
    }
}

/// Seats 0-4 are radiant slots 0-4, seats 5-9 dire slots 128-132.
fn slot_of(seat: i32) -> i32 {
    let team_size = PLAYERS_PER_TEAM as i32;
    if seat < team_size {
        seat
    } else {
        DIRE_FIRST_SLOT + seat - team_size
    }
}

fn team_kills(players: &[PlayerPerformance], radiant: bool) -> i32 {
    players
        .iter()
        .filter(|p| p.is_radiant() == radiant)
        .map(|p| p.kills)
        .sum()
}

/// What a player's stats depend on.
struct PlayerSeed {
    slot: i32,
    hero_id: i32,
    account_id: Option<i64>,
    won: bool,
    duration_secs: i32,
}

// A stat new in the schema stays empty here until it is given a distribution.
#[allow(clippy::needless_update)]
fn generate_player(rng: &mut StdRng, pools: &Pools, seed: &PlayerSeed) -> PlayerPerformance {
    let minutes = seed.duration_secs / 60;
    // Winners farm and fight better: shift their ranges up.
    let edge = if seed.won { 100 } else { 0 };
    let gold_per_min = rng.random_range(250 + edge..=650 + edge);
    let net_worth = i64::from(gold_per_min * minutes) + 600;
    let gold = rng.random_range(0..=net_worth.min(4_000));
    PlayerPerformance {
        account_id: seed.account_id,
        player_slot: seed.slot,
        hero_id: seed.hero_id,
        kills: rng.random_range(0..=12 + edge / 20),
        deaths: rng.random_range(0..=14 - edge / 20),
        assists: rng.random_range(0..=20 + edge / 20),
        last_hits: rng.random_range(minutes..=minutes * 9),
        denies: rng.random_range(0..=25),
        gold_per_min,
        xp_per_min: rng.random_range(300 + edge..=750 + edge),
        level: (6 + minutes / 3 + rng.random_range(-3..=3)).clamp(1, 30),
        hero_damage: Some(rng.random_range(1_500..=45_000)),
        tower_damage: Some(rng.random_range(0..=12_000)),
        hero_healing: Some(if rng.random_bool(0.3) {
            rng.random_range(500..=9_000)
        } else {
            0
        }),
        gold: Some(gold),
        gold_spent: Some(net_worth - gold),
        net_worth: Some(net_worth),
        leaver_status: Some(0),
        items: slots(rng, pools, 6, 0.85),
        backpack: slots(rng, pools, 3, 0.3),
        persona_name: None,
        ..PlayerPerformance::default()
    }
}

/// `count` inventory slots, each holding an item with probability `filled` (else 0).
fn slots(rng: &mut StdRng, pools: &Pools, count: usize, filled: f64) -> Vec<i32> {
    (0..count)
        .map(|_| {
            if rng.random_bool(filled) {
                pools.items[rng.random_range(0..pools.items.len())]
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    #[test]
    fn same_seed_same_matches() {
        assert_eq!(generate_matches(50, 7), generate_matches(50, 7));
        assert_ne!(generate_matches(50, 7), generate_matches(50, 8));
        assert!(generate_matches(0, 7).is_empty());
    }

    #[test]
    fn matches_look_real() {
        let reference = Reference::get();
        let matches = generate_matches(2_000, 42);
        assert_eq!(matches.len(), 2_000);
        assert!(matches.windows(2).all(|w| w[0].match_id < w[1].match_id));
        assert!(matches
            .windows(2)
            .all(|w| w[0].start_time <= w[1].start_time));
        for m in &matches {
            assert_eq!(m.source, LOADGEN_SOURCE);
            assert!((900..=4_200).contains(&m.duration_secs));
            assert!(reference.game_mode(m.game_mode).is_some());
            assert!(reference.lobby_type(m.lobby_type).is_some());
            assert!(reference.region_of_cluster(m.cluster).is_some());
            let slots: Vec<i32> = m.players.iter().map(|p| p.player_slot).collect();
            assert_eq!(slots, [0, 1, 2, 3, 4, 128, 129, 130, 131, 132]);
            let heroes: HashSet<i32> = m.players.iter().map(|p| p.hero_id).collect();
            assert_eq!(heroes.len(), 10, "a hero plays once per match");
            assert!(heroes.iter().all(|h| reference.hero(*h).is_some()));
            let named: Vec<i64> = m.players.iter().filter_map(|p| p.account_id).collect();
            let distinct: HashSet<&i64> = named.iter().collect();
            assert_eq!(
                distinct.len(),
                named.len(),
                "an account plays once per match"
            );
            assert_eq!(m.radiant_score, Some(team_kills(&m.players, true)));
            for p in &m.players {
                assert_eq!(p.items.len(), 6);
                assert_eq!(p.backpack.len(), 3);
                let inventory = p.items.iter().chain(&p.backpack);
                assert!(inventory
                    .clone()
                    .all(|i| *i == 0 || reference.item_name(*i).is_some()));
                assert!((250..=750).contains(&p.gold_per_min));
                assert!((1..=30).contains(&p.level));
                assert_eq!(
                    p.gold.unwrap() + p.gold_spent.unwrap(),
                    p.net_worth.unwrap()
                );
            }
        }
    }

    #[test]
    fn players_recur_and_some_hide() {
        let matches = generate_matches(2_000, 42);
        let players: Vec<&PlayerPerformance> = matches.iter().flat_map(|m| &m.players).collect();
        let anonymous = players.iter().filter(|p| p.account_id.is_none()).count();
        let share = anonymous as f64 / players.len() as f64;
        assert!((0.10..0.20).contains(&share), "anonymous share {share}");

        let mut games_per_account: HashMap<i64, usize> = HashMap::new();
        for id in players.iter().filter_map(|p| p.account_id) {
            *games_per_account.entry(id).or_default() += 1;
        }
        // 17,000 named seats over 1,000 accounts: every account shows up, ~17 times each.
        assert!(games_per_account.len() <= ACCOUNT_POOL_SIZE);
        assert!(games_per_account.len() > 990, "{}", games_per_account.len());
        assert!(games_per_account.values().all(|games| *games >= 2));
    }
}
