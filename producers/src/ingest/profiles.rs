//! Player profiles: Steam player summaries and rank records.

use schemas::{PlayerProfile, ANONYMOUS_ACCOUNT_ID};

use super::fields::Obj;
use super::IngestError;

type Result<T> = std::result::Result<T, IngestError>;

pub(crate) const SUMMARIES_SOURCE: &str = "steam_summaries";
pub(crate) const RANK_SOURCE: &str = "rank";

/// 64-bit Steam id of account 0: individual accounts are this plus their 32-bit account id.
const STEAM_ID64_BASE: i64 = 76_561_197_960_265_728;

/// Each player of a GetPlayerSummaries `response` object.
pub(crate) fn summaries(response: &Obj<'_>, observed_at_ms: i64) -> Result<Vec<PlayerProfile>> {
    response
        .objects("players")?
        .iter()
        .map(|p| summary(p, observed_at_ms))
        .collect()
}

fn summary(p: &Obj<'_>, observed_at_ms: i64) -> Result<PlayerProfile> {
    Ok(PlayerProfile {
        account_id: account_id_of_steam_id(p)?,
        persona_name: p.opt_string("personaname")?,
        rank_tier: None,
        leaderboard_rank: None,
        country: p.opt_string("loccountrycode")?,
        last_seen: p.opt_int("lastlogoff")?,
        avatar_url: p.opt_string("avatarfull")?,
        profile_url: p.opt_string("profileurl")?,
        observed_at_ms,
        source: SUMMARIES_SOURCE.to_string(),
    })
}

fn account_id_of_steam_id(p: &Obj<'_>) -> Result<i64> {
    let steam_id = p.int("steamid")?;
    steam_id
        .checked_sub(STEAM_ID64_BASE)
        .filter(|id| (0..ANONYMOUS_ACCOUNT_ID).contains(id))
        .ok_or_else(|| {
            p.error(
                "steamid",
                format!("{steam_id} is not the Steam id of an individual account"),
            )
        })
}

/// A rank record (`account_id`, `rank_tier`, `leaderboard_rank`).
pub(crate) fn rank(r: &Obj<'_>, observed_at_ms: i64) -> Result<PlayerProfile> {
    let account_id = r
        .account_id("account_id")?
        .ok_or_else(|| r.error("account_id", "an anonymous account has no rank profile"))?;
    Ok(PlayerProfile {
        account_id,
        persona_name: None,
        rank_tier: r.opt_int32("rank_tier")?,
        leaderboard_rank: r.opt_int32("leaderboard_rank")?,
        country: None,
        last_seen: None,
        avatar_url: None,
        profile_url: None,
        observed_at_ms,
        source: RANK_SOURCE.to_string(),
    })
}
