//! A small client of an OpenDota-compatible API: `GET {base}/players/{id}`
//! and `GET {base}/matches/{id}`.

use pipeline::bus::now_ms;
use producers::ingest::IngestedEvent;
use reqwest::StatusCode;
use schemas::{MatchCompleted, PlayerProfile};
use serde::Deserialize;

use super::config::{JobsConfig, OPENDOTA};
use super::JobError;

/// OpenDota's `/players/{account_id}` answer, the fields a scout keeps.
#[derive(Debug, Deserialize)]
struct PlayerResponse {
    #[serde(default)]
    profile: Option<ProfileResponse>,
    #[serde(default)]
    rank_tier: Option<i32>,
    #[serde(default)]
    leaderboard_rank: Option<i32>,
}

#[derive(Debug, Deserialize)]
struct ProfileResponse {
    account_id: i64,
    #[serde(default)]
    personaname: Option<String>,
    #[serde(default)]
    avatarfull: Option<String>,
    #[serde(default)]
    profileurl: Option<String>,
    #[serde(default)]
    loccountrycode: Option<String>,
}

#[derive(Clone)]
pub struct OpenDotaClient {
    http: reqwest::Client,
    base_url: String,
}

impl OpenDotaClient {
    pub fn new(config: &JobsConfig) -> Result<Self, JobError> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout())
            .build()
            .map_err(|err| JobError::Invalid(format!("http client: {err}")))?;
        Ok(Self {
            http,
            base_url: config.opendota_base_url.trim_end_matches('/').to_string(),
        })
    }

    /// The player's profile as a [`PlayerProfile`] observed now.
    pub async fn fetch_player(&self, account_id: i64) -> Result<PlayerProfile, JobError> {
        let url = format!("{}/players/{account_id}", self.base_url);
        let body: PlayerResponse = self
            .get_json(&url, || format!("opendota player {account_id}"))
            .await?;
        to_profile(account_id, body)
    }

    /// The match, read by the same ingest as match files (OpenDota answers
    /// with a bare match object, the shape of Steam's match details), with
    /// source `opendota`.
    pub async fn fetch_match(&self, match_id: i64) -> Result<MatchCompleted, JobError> {
        let url = format!("{}/matches/{match_id}", self.base_url);
        let body: serde_json::Value = self
            .get_json(&url, || format!("opendota match {match_id}"))
            .await?;
        let events = producers::ingest::parse_record(&body, now_ms())
            .map_err(|err| upstream(format!("GET {url}: {err}"), false))?;
        let found = events.into_iter().find_map(|event| match event {
            IngestedEvent::Match(found) if found.match_id == match_id => Some(found),
            _ => None,
        });
        let mut found = found.ok_or_else(|| {
            upstream(
                format!("GET {url}: no match {match_id} in the answer"),
                false,
            )
        })?;
        found.source = "opendota".to_string();
        Ok(found)
    }

    /// GETs `url` and reads its JSON body; 404 is `NotFound(what())`, 429 and
    /// 5xx are retriable.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: impl FnOnce() -> String,
    ) -> Result<T, JobError> {
        let response = self.http.get(url).send().await.map_err(|err| {
            upstream(
                format!("GET {url}: {err}"),
                // Connect errors and timeouts pass; a malformed URL will not.
                !err.is_builder(),
            )
        })?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(JobError::NotFound(what()));
        }
        if !status.is_success() {
            let retriable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            return Err(upstream(format!("GET {url}: HTTP {status}"), retriable));
        }
        response
            .json()
            .await
            .map_err(|err| upstream(format!("GET {url}: bad body: {err}"), err.is_timeout()))
    }
}

fn upstream(message: String, retriable: bool) -> JobError {
    JobError::Upstream {
        service: OPENDOTA,
        message,
        retriable,
    }
}

fn to_profile(account_id: i64, body: PlayerResponse) -> Result<PlayerProfile, JobError> {
    // OpenDota answers unknown accounts with `"profile": null`.
    let Some(profile) = body.profile else {
        return Err(JobError::NotFound(format!("opendota player {account_id}")));
    };
    if profile.account_id != account_id {
        return Err(upstream(
            format!("asked for {account_id}, got {}", profile.account_id),
            false,
        ));
    }
    Ok(PlayerProfile {
        account_id,
        persona_name: profile.personaname,
        rank_tier: body.rank_tier,
        leaderboard_rank: body.leaderboard_rank,
        country: profile.loccountrycode,
        last_seen: None,
        avatar_url: profile.avatarfull,
        profile_url: profile.profileurl,
        observed_at_ms: now_ms(),
        source: "opendota".to_string(),
    })
}
