//! Ingest of real Dota 2 records into typed events.
//!
//! Record kinds, recognised by shape:
//!
//! - Steam GetMatchDetails, `{"result": {...}}` or a bare object with `match_id` and
//!   `players`: a [`MatchCompleted`] with source `steam_api`.
//! - Game coordinator match, `{"match": {...}}` or a bare match with `starttime` or
//!   `match_outcome`: a [`MatchCompleted`] with source `game_coordinator`.
//! - Steam player summaries, `{"response": {"players": [...]}}`: one [`PlayerProfile`]
//!   per player, source `steam_summaries`.
//! - Rank record, `{account_id, rank_tier, leaderboard_rank}`: a [`PlayerProfile`],
//!   source `rank`.
//! - OpenDota job record, `{match_id, pgroup, ...}` (a request to parse a match): a
//!   [`JobRequested`] of type `ParseMatch` for that match, job id
//!   `parse_match-{match_id}` and idempotency key `parse_match:{match_id}`, so
//!   the same request ingested twice is one job.
//!
//! A file may hold one JSON document or many records (JSON lines); see [`ingest_file`].
//! A record may carry `observed_at_ms` at its top level; otherwise profiles get the
//! ingest time the caller passes, so results never depend on a hidden clock.

mod error;
mod fields;
mod files;
mod matches;
mod profiles;

use serde_json::Value;

use schemas::{JobRequested, JobType, MatchCompleted, PlayerProfile};

pub use error::{IngestError, Location};
pub use files::{
    ingest_dir, ingest_file, shared_data_dir, DirIngest, IngestedFile, SkipReason, SkippedFile,
};

use fields::{kind_of, Obj};

/// An event made from one record.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestedEvent {
    Match(MatchCompleted),
    Player(PlayerProfile),
    Job(JobRequested),
}

/// The record kinds this module knows, each holding the object to parse.
enum Record<'a> {
    SteamMatch(Obj<'a>),
    GcMatch(Obj<'a>),
    Summaries(Obj<'a>),
    Rank(Obj<'a>),
    ParseRequest(Obj<'a>),
}

/// Turns one JSON record into events. `observed_at_ms` (unix milliseconds) stamps
/// profiles unless the record carries its own `observed_at_ms`.
pub fn parse_record(value: &Value, observed_at_ms: i64) -> Result<Vec<IngestedEvent>, IngestError> {
    let Some(map) = value.as_object() else {
        return Err(IngestError::Unrecognised(format!(
            "expected a JSON object, found {}",
            kind_of(value)
        )));
    };
    let root = Obj::root(map);
    let observed_at_ms = root.opt_int("observed_at_ms")?.unwrap_or(observed_at_ms);
    let events = match detect(&root)? {
        Record::SteamMatch(m) => vec![IngestedEvent::Match(matches::steam_match(&m)?)],
        Record::GcMatch(m) => vec![IngestedEvent::Match(matches::gc_match(&m)?)],
        Record::Summaries(response) => profiles::summaries(&response, observed_at_ms)?
            .into_iter()
            .map(IngestedEvent::Player)
            .collect(),
        Record::Rank(r) => vec![IngestedEvent::Player(profiles::rank(&r, observed_at_ms)?)],
        Record::ParseRequest(r) => vec![IngestedEvent::Job(parse_request(&r, observed_at_ms)?)],
    };
    Ok(events)
}

fn detect<'a>(root: &Obj<'a>) -> Result<Record<'a>, IngestError> {
    // The game coordinator wraps its match as `{"result": <status code>, "match": {...}}`,
    // so `match` must be looked at before `result`.
    if let Some(m) = root.opt_child("match") {
        return Ok(Record::GcMatch(m));
    }
    if let Some(result) = root.opt_child("result") {
        return steam_result(result);
    }
    if let Some(response) = root.opt_child("response") {
        return Ok(Record::Summaries(response));
    }
    if root.has("match_id") && root.has("pgroup") {
        return Ok(Record::ParseRequest(root.clone()));
    }
    if root.has("match_id") && root.has("players") {
        let from_gc = root.has("starttime") || root.has("match_outcome");
        return Ok(if from_gc {
            Record::GcMatch(root.clone())
        } else {
            Record::SteamMatch(root.clone())
        });
    }
    if root.has("account_id") && (root.has("rank_tier") || root.has("leaderboard_rank")) {
        return Ok(Record::Rank(root.clone()));
    }
    Err(IngestError::Unrecognised(describe_unknown(root)))
}

/// Steam reports failures inside `result` (`{"result": {"error": "Match ID not found"}}`).
fn steam_result(result: Obj<'_>) -> Result<Record<'_>, IngestError> {
    match result.opt_str("error") {
        Ok(Some(message)) => Err(IngestError::Unrecognised(format!(
            "Steam API error response: {message}"
        ))),
        _ => Ok(Record::SteamMatch(result)),
    }
}

/// An OpenDota parse request: the match to fetch, as a `ParseMatch` job.
fn parse_request(record: &Obj<'_>, observed_at_ms: i64) -> Result<JobRequested, IngestError> {
    let match_id = record.int("match_id")?;
    if match_id <= 0 {
        return Err(IngestError::Unrecognised(format!(
            "OpenDota job record with match_id {match_id}: not a match"
        )));
    }
    Ok(JobRequested {
        job_id: format!("parse_match-{match_id}"),
        job_type: JobType::ParseMatch,
        subject_id: match_id,
        idempotency_key: Some(format!("parse_match:{match_id}")),
        run_at_ms: None,
        requested_at_ms: observed_at_ms,
        max_attempts: None,
    })
}

fn describe_unknown(root: &Obj<'_>) -> String {
    let keys: Vec<&str> = root.keys().take(8).collect();
    format!(
        "no match or player record shape; top-level keys: {}",
        keys.join(", ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn non_objects_are_unrecognised() {
        let err = parse_record(&json!([1, 2]), 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unrecognised record: expected a JSON object, found an array"
        );
        assert!(!err.is_retriable());
    }

    #[test]
    fn job_records_are_parse_requests() {
        let job = json!({"match_id": 0, "pgroup": {}, "radiant_win": true});
        let err = parse_record(&job, 0).unwrap_err();
        assert!(err.to_string().contains("OpenDota job record"), "{err}");
        let job = json!({"match_id": 42, "pgroup": {}});
        let events: [IngestedEvent; 1] = parse_record(&job, 7).unwrap().try_into().unwrap();
        let [IngestedEvent::Job(request)] = events else {
            panic!("one job")
        };
        assert_eq!(request.job_type, JobType::ParseMatch);
        assert_eq!((request.subject_id, request.requested_at_ms), (42, 7));
    }

    #[test]
    fn steam_error_responses_are_reported() {
        let err = parse_record(&json!({"result": {"error": "Match ID not found"}}), 0).unwrap_err();
        assert!(err.to_string().contains("Match ID not found"), "{err}");
    }

    #[test]
    fn record_time_wins_over_ingest_time() {
        let rank = json!({"account_id": 5, "rank_tier": 42, "observed_at_ms": 1_000});
        let events = parse_record(&rank, 9_999).unwrap();
        let [IngestedEvent::Player(profile)] = events.as_slice() else {
            panic!("expected one profile, got {events:?}");
        };
        assert_eq!(profile.observed_at_ms, 1_000);

        let rank = json!({"account_id": 5, "rank_tier": 42});
        let events = parse_record(&rank, 9_999).unwrap();
        let [IngestedEvent::Player(profile)] = events.as_slice() else {
            panic!("expected one profile, got {events:?}");
        };
        assert_eq!(profile.observed_at_ms, 9_999);
    }

    #[test]
    fn anonymous_rank_records_are_rejected() {
        let err = parse_record(&json!({"account_id": null, "rank_tier": 42}), 0);
        // `null` reads as absent, so this is not even a rank record shape.
        assert!(err.is_err());
        let err = parse_record(
            &json!({"account_id": 4_294_967_295_i64, "rank_tier": 42}),
            0,
        )
        .unwrap_err();
        assert!(err.to_string().contains("anonymous"), "{err}");
    }

    fn bare_match(time_key: &str) -> Value {
        let player = json!({"account_id": null, "player_slot": 0, "hero_id": 1, "kills": 1,
            "deaths": 2, "assists": 3, "last_hits": 4, "denies": 5, "gold_per_min": 6,
            "xp_per_min": 7, "level": 8, "item_0": 1, "item_1": 2, "item_2": 3, "item_3": 4,
            "item_4": 5, "item_5": 6});
        let mut record = json!({"match_id": 9, "duration": 60, "radiant_win": true,
            "game_mode": 22, "lobby_type": 7, "cluster": 132, "players": [player]});
        record[time_key] = json!(1_000);
        record
    }

    fn source_of(record: &Value) -> String {
        match parse_record(record, 0).unwrap().as_slice() {
            [IngestedEvent::Match(m)] => m.source.clone(),
            other => panic!("expected one match, got {other:?}"),
        }
    }

    #[test]
    fn bare_matches_are_told_apart_by_their_time_field() {
        assert_eq!(source_of(&bare_match("start_time")), "steam_api");
        assert_eq!(source_of(&bare_match("starttime")), "game_coordinator");
        let wrapped = json!({"result": bare_match("start_time")});
        assert_eq!(source_of(&wrapped), "steam_api");
    }

    #[test]
    fn unscored_gc_matches_are_rejected() {
        let record = json!({"match": {"match_id": "1", "starttime": 1, "duration": 1,
            "match_outcome": "k_EMatchOutcome_NotScored_Leaver", "players": []}});
        let err = parse_record(&record, 0).unwrap_err();
        assert!(
            err.to_string().starts_with("field `match.match_outcome`"),
            "{err}"
        );
    }
}
