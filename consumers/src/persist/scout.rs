//! The scout read model: what a scout wants to know about a player or a team,
//! read from the persisted tables.

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};
use sqlx::{Decode, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use super::PersistError;

/// Matches listed under "recent".
pub const RECENT_MATCHES: i64 = 10;
/// Heroes listed under a team's most picked and most banned.
pub const TOP_HEROES: i64 = 10;

/// A player as a scout sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerReport {
    pub account_id: i64,
    /// Steam persona name, else the newest in-game name of their matches.
    pub persona_name: Option<String>,
    pub rank_tier: Option<i32>,
    pub leaderboard_rank: Option<i32>,
    pub country: Option<String>,
    pub avatar_url: Option<String>,
    pub profile_url: Option<String>,
    pub games: i64,
    pub wins: i64,
    /// `None` before the first persisted match.
    pub averages: Option<Averages>,
    /// Most played first (then most won, then hero id).
    pub hero_pool: Vec<HeroPoolEntry>,
    /// Newest first, at most [`RECENT_MATCHES`].
    pub recent_matches: Vec<PlayerMatchSummary>,
}

/// Per-game averages over all persisted matches of a player.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Averages {
    pub kills: f64,
    pub deaths: f64,
    pub assists: f64,
    /// (kills + assists) / max(deaths, 1) over the totals: a career ratio,
    /// which one stomp cannot skew the way a mean of per-game ratios can.
    pub kda: f64,
    pub gold_per_min: f64,
    pub xp_per_min: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeroPoolEntry {
    pub hero_id: i32,
    pub games: i64,
    pub wins: i64,
    /// wins / games, 0 to 1.
    pub win_rate: f64,
    /// Unix seconds.
    pub last_played: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow)]
pub struct PlayerMatchSummary {
    pub match_id: i64,
    /// Unix seconds.
    pub start_time: i64,
    pub hero_id: i32,
    pub kills: i32,
    pub deaths: i32,
    pub assists: i32,
    pub won: bool,
}

/// A team as a scout sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamReport {
    pub team_id: i64,
    pub name: Option<String>,
    pub games: i64,
    pub wins: i64,
    /// Newest first, at most [`RECENT_MATCHES`].
    pub recent_matches: Vec<TeamMatchSummary>,
    /// Heroes the team's players played, most often first.
    pub most_picked: Vec<HeroCount>,
    /// Heroes the team banned (captains mode), most often first.
    pub most_banned: Vec<HeroCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamMatchSummary {
    pub match_id: i64,
    /// Unix seconds.
    pub start_time: i64,
    pub is_radiant: bool,
    pub opponent_id: Option<i64>,
    /// The opponent's name in that match.
    pub opponent_name: Option<String>,
    pub score: Option<i32>,
    pub opponent_score: Option<i32>,
    pub won: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow)]
pub struct HeroCount {
    pub hero_id: i32,
    pub count: i64,
    /// Matches won with the hero (for bans: matches won after banning it).
    pub wins: i64,
}

#[derive(FromRow)]
pub(crate) struct ProfileRecord {
    persona_name: Option<String>,
    rank_tier: Option<i32>,
    leaderboard_rank: Option<i32>,
    country: Option<String>,
    avatar_url: Option<String>,
    profile_url: Option<String>,
}

#[derive(FromRow)]
pub(crate) struct Totals {
    games: i64,
    wins: i64,
    kills: i64,
    deaths: i64,
    assists: i64,
    gold_per_min: i64,
    xp_per_min: i64,
}

#[derive(FromRow)]
pub(crate) struct HeroPoolRecord {
    hero_id: i32,
    games: i64,
    wins: i64,
    last_played: i64,
}

#[derive(FromRow)]
pub(crate) struct TeamRecord {
    name: Option<String>,
    games: i64,
    wins: i64,
}

#[derive(FromRow)]
pub(crate) struct TeamMatchRecord {
    match_id: i64,
    start_time: i64,
    radiant_win: bool,
    radiant_team_id: Option<i64>,
    radiant_team_name: Option<String>,
    dire_team_id: Option<i64>,
    dire_team_name: Option<String>,
    radiant_score: Option<i32>,
    dire_score: Option<i32>,
}

const PROFILE: &str = "\
    SELECT persona_name, rank_tier, leaderboard_rank, country, avatar_url, profile_url \
    FROM players WHERE account_id = $1";

const TOTALS: &str = "\
    SELECT COUNT(*) AS games, \
           COALESCE(SUM(CASE WHEN won THEN 1 ELSE 0 END), 0) AS wins, \
           COALESCE(SUM(kills), 0) AS kills, \
           COALESCE(SUM(deaths), 0) AS deaths, \
           COALESCE(SUM(assists), 0) AS assists, \
           COALESCE(SUM(gold_per_min), 0) AS gold_per_min, \
           COALESCE(SUM(xp_per_min), 0) AS xp_per_min \
    FROM player_matches WHERE account_id = $1";

const HERO_POOL: &str = "\
    SELECT hero_id, games, wins, last_played FROM hero_pool \
    WHERE account_id = $1 ORDER BY games DESC, wins DESC, hero_id";

const PLAYER_RECENT: &str = "\
    SELECT match_id, start_time, hero_id, kills, deaths, assists, won \
    FROM player_matches WHERE account_id = $1 \
    ORDER BY start_time DESC, match_id DESC LIMIT $2";

const IN_GAME_NAME: &str = "\
    SELECT persona_name FROM player_matches \
    WHERE account_id = $1 AND persona_name IS NOT NULL \
    ORDER BY start_time DESC, match_id DESC LIMIT 1";

const TEAM: &str = "\
    SELECT t.name, \
           (SELECT COUNT(*) FROM matches m \
            WHERE m.radiant_team_id = t.team_id OR m.dire_team_id = t.team_id) AS games, \
           (SELECT COUNT(*) FROM matches m \
            WHERE (m.radiant_team_id = t.team_id AND m.radiant_win) \
               OR (m.dire_team_id = t.team_id AND NOT m.radiant_win)) AS wins \
    FROM teams t WHERE t.team_id = $1";

const TEAM_RECENT: &str = "\
    SELECT match_id, start_time, radiant_win, radiant_team_id, radiant_team_name, \
           dire_team_id, dire_team_name, radiant_score, dire_score \
    FROM matches WHERE radiant_team_id = $1 OR dire_team_id = $1 \
    ORDER BY start_time DESC, match_id DESC LIMIT $2";

/// The team's side of each match: its players' heroes.
const TEAM_PICKS: &str = "\
    SELECT pm.hero_id, COUNT(*) AS count, SUM(CASE WHEN pm.won THEN 1 ELSE 0 END) AS wins \
    FROM matches m JOIN player_matches pm ON pm.match_id = m.match_id \
    WHERE (m.radiant_team_id = $1 AND pm.is_radiant) \
       OR (m.dire_team_id = $1 AND NOT pm.is_radiant) \
    GROUP BY pm.hero_id ORDER BY count DESC, wins DESC, pm.hero_id LIMIT $2";

/// Bans the team made (`picks_bans.team` is the side that banned).
const TEAM_BANS: &str = "\
    SELECT pb.hero_id, COUNT(*) AS count, \
           SUM(CASE WHEN (pb.team = 0) = m.radiant_win THEN 1 ELSE 0 END) AS wins \
    FROM matches m JOIN picks_bans pb ON pb.match_id = m.match_id \
    WHERE NOT pb.is_pick \
      AND ((m.radiant_team_id = $1 AND pb.team = 0) OR (m.dire_team_id = $1 AND pb.team = 1)) \
    GROUP BY pb.hero_id ORDER BY count DESC, wins DESC, pb.hero_id LIMIT $2";

/// Read queries for one backend; the bounds say what the shared SQL binds and reads.
pub(crate) struct Reader<DB>(PhantomData<DB>);

impl<DB> Reader<DB>
where
    DB: sqlx::Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> ProfileRecord: FromRow<'r, DB::Row>,
    for<'r> Totals: FromRow<'r, DB::Row>,
    for<'r> HeroPoolRecord: FromRow<'r, DB::Row>,
    for<'r> PlayerMatchSummary: FromRow<'r, DB::Row>,
    for<'r> TeamRecord: FromRow<'r, DB::Row>,
    for<'r> TeamMatchRecord: FromRow<'r, DB::Row>,
    for<'r> HeroCount: FromRow<'r, DB::Row>,
{
    pub async fn player_report(
        pool: &Pool<DB>,
        account_id: i64,
    ) -> Result<Option<PlayerReport>, PersistError> {
        let profile: Option<ProfileRecord> = sqlx::query_as(PROFILE)
            .bind(account_id)
            .fetch_optional(pool)
            .await
            .map_err(PersistError::database("player report"))?;
        let totals: Totals = sqlx::query_as(TOTALS)
            .bind(account_id)
            .fetch_one(pool)
            .await
            .map_err(PersistError::database("player report"))?;
        if profile.is_none() && totals.games == 0 {
            return Ok(None);
        }
        let hero_pool: Vec<HeroPoolRecord> = sqlx::query_as(HERO_POOL)
            .bind(account_id)
            .fetch_all(pool)
            .await
            .map_err(PersistError::database("player report"))?;
        let recent_matches: Vec<PlayerMatchSummary> = sqlx::query_as(PLAYER_RECENT)
            .bind(account_id)
            .bind(RECENT_MATCHES)
            .fetch_all(pool)
            .await
            .map_err(PersistError::database("player report"))?;
        let profile_name = profile.as_ref().and_then(|p| p.persona_name.clone());
        let persona_name = match profile_name {
            Some(name) => Some(name),
            None => Self::in_game_name(pool, account_id).await?,
        };
        Ok(Some(player_report(
            account_id,
            persona_name,
            profile,
            &totals,
            hero_pool,
            recent_matches,
        )))
    }

    async fn in_game_name(
        pool: &Pool<DB>,
        account_id: i64,
    ) -> Result<Option<String>, PersistError> {
        let row: Option<(String,)> = sqlx::query_as(IN_GAME_NAME)
            .bind(account_id)
            .fetch_optional(pool)
            .await
            .map_err(PersistError::database("player report"))?;
        Ok(row.map(|(name,)| name))
    }

    pub async fn team_report(
        pool: &Pool<DB>,
        team_id: i64,
    ) -> Result<Option<TeamReport>, PersistError> {
        let team: Option<TeamRecord> = sqlx::query_as(TEAM)
            .bind(team_id)
            .fetch_optional(pool)
            .await
            .map_err(PersistError::database("team report"))?;
        let Some(team) = team else {
            return Ok(None);
        };
        let recent: Vec<TeamMatchRecord> = sqlx::query_as(TEAM_RECENT)
            .bind(team_id)
            .bind(RECENT_MATCHES)
            .fetch_all(pool)
            .await
            .map_err(PersistError::database("team report"))?;
        let most_picked = Self::hero_counts(pool, TEAM_PICKS, team_id).await?;
        let most_banned = Self::hero_counts(pool, TEAM_BANS, team_id).await?;
        Ok(Some(TeamReport {
            team_id,
            name: team.name,
            games: team.games,
            wins: team.wins,
            recent_matches: recent.iter().map(|m| team_match(team_id, m)).collect(),
            most_picked,
            most_banned,
        }))
    }

    async fn hero_counts(
        pool: &Pool<DB>,
        query: &'static str,
        team_id: i64,
    ) -> Result<Vec<HeroCount>, PersistError> {
        sqlx::query_as(query)
            .bind(team_id)
            .bind(TOP_HEROES)
            .fetch_all(pool)
            .await
            .map_err(PersistError::database("team report"))
    }
}

fn player_report(
    account_id: i64,
    persona_name: Option<String>,
    profile: Option<ProfileRecord>,
    totals: &Totals,
    hero_pool: Vec<HeroPoolRecord>,
    recent_matches: Vec<PlayerMatchSummary>,
) -> PlayerReport {
    let profile = profile.unwrap_or(ProfileRecord {
        persona_name: None,
        rank_tier: None,
        leaderboard_rank: None,
        country: None,
        avatar_url: None,
        profile_url: None,
    });
    PlayerReport {
        account_id,
        persona_name,
        rank_tier: profile.rank_tier,
        leaderboard_rank: profile.leaderboard_rank,
        country: profile.country,
        avatar_url: profile.avatar_url,
        profile_url: profile.profile_url,
        games: totals.games,
        wins: totals.wins,
        averages: averages(totals),
        hero_pool: hero_pool.into_iter().map(hero_pool_entry).collect(),
        recent_matches,
    }
}

fn averages(t: &Totals) -> Option<Averages> {
    if t.games == 0 {
        return None;
    }
    let per_game = |total: i64| total as f64 / t.games as f64;
    Some(Averages {
        kills: per_game(t.kills),
        deaths: per_game(t.deaths),
        assists: per_game(t.assists),
        kda: (t.kills + t.assists) as f64 / t.deaths.max(1) as f64,
        gold_per_min: per_game(t.gold_per_min),
        xp_per_min: per_game(t.xp_per_min),
    })
}

fn hero_pool_entry(r: HeroPoolRecord) -> HeroPoolEntry {
    HeroPoolEntry {
        hero_id: r.hero_id,
        games: r.games,
        wins: r.wins,
        win_rate: if r.games > 0 {
            r.wins as f64 / r.games as f64
        } else {
            0.0
        },
        last_played: r.last_played,
    }
}

/// One match seen from `team_id`'s side.
fn team_match(team_id: i64, m: &TeamMatchRecord) -> TeamMatchSummary {
    let is_radiant = m.radiant_team_id == Some(team_id);
    let (opponent_id, opponent_name, score, opponent_score) = if is_radiant {
        (
            m.dire_team_id,
            &m.dire_team_name,
            m.radiant_score,
            m.dire_score,
        )
    } else {
        (
            m.radiant_team_id,
            &m.radiant_team_name,
            m.dire_score,
            m.radiant_score,
        )
    };
    TeamMatchSummary {
        match_id: m.match_id,
        start_time: m.start_time,
        is_radiant,
        opponent_id,
        opponent_name: opponent_name.clone(),
        score,
        opponent_score,
        won: is_radiant == m.radiant_win,
    }
}
