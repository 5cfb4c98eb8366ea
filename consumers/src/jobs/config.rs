//! Settings of the jobs group: attempts, backoff, delays, upstreams, rate
//! limits, the Redis the limiter uses and the API token.

use std::collections::BTreeMap;
use std::time::Duration;

use schemas::JobType;
use serde::Deserialize;

/// Attempts per job type, the first one included.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaxAttempts {
    pub scout_report_player: u32,
    pub scout_report_team: u32,
    pub refresh_player: u32,
    pub recompute_hero_pool: u32,
    pub parse_match: u32,
}

impl Default for MaxAttempts {
    fn default() -> Self {
        Self {
            scout_report_player: 3,
            scout_report_team: 3,
            // An upstream may be down for minutes: more attempts, longer backoff.
            refresh_player: 6,
            recompute_hero_pool: 3,
            parse_match: 3,
        }
    }
}

impl MaxAttempts {
    pub fn of(&self, job_type: JobType) -> u32 {
        match job_type {
            JobType::ScoutReportPlayer => self.scout_report_player,
            JobType::ScoutReportTeam => self.scout_report_team,
            JobType::RefreshPlayer => self.refresh_player,
            JobType::RecomputeHeroPool => self.recompute_hero_pool,
            JobType::ParseMatch => self.parse_match,
        }
        .max(1)
    }
}

/// `limit` calls per `period_ms`, at most `burst` of them back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub limit: u32,
    pub period_ms: u64,
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

impl RateLimit {
    pub fn per_second(limit: u32) -> Self {
        Self {
            limit,
            period_ms: 1_000,
            burst: 1,
        }
    }

    pub fn per_minute(limit: u32) -> Self {
        Self {
            limit,
            period_ms: 60_000,
            burst: 1,
        }
    }

    /// Time between two calls at the steady rate, in microseconds.
    pub fn emission_interval_us(&self) -> u64 {
        (self.period_ms.saturating_mul(1_000) / u64::from(self.limit.max(1))).max(1)
    }

    /// The same limit scaled by `fraction` (the per-process fallback's share).
    pub fn scaled(&self, fraction: f64) -> Self {
        let limit = (f64::from(self.limit) * fraction).floor().max(1.0) as u32;
        Self {
            limit,
            period_ms: self.period_ms,
            burst: 1,
        }
    }
}

/// The service name of OpenDota in [`JobsConfig::rate_limits`].
pub const OPENDOTA: &str = "opendota";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    pub max_attempts: MaxAttempts,
    /// First retry delay; doubles per attempt up to `backoff_max_ms`, with jitter.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Jobs one process runs at once.
    pub workers: usize,
    /// Most jobs claimed (and finished) in one transaction.
    pub claim_batch: usize,
    /// How long a claimed job is leased; renewed every third of it while it
    /// runs. A job whose worker died runs again once its lease runs out.
    pub lease_ms: u64,
    /// How often the pool looks for due jobs and expired leases when idle
    /// (jobs recorded in the same process wake it at once).
    pub poll_interval_ms: u64,
    /// At shutdown, how long running jobs may finish before they are stopped
    /// and released (due again at once, that attempt not counted).
    pub shutdown_grace_ms: u64,
    /// OpenDota-compatible API root, e.g. `https://api.opendota.com/api`.
    pub opendota_base_url: String,
    pub http_timeout_ms: u64,
    /// Per external service, shared by every worker through Redis.
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// Share of a limit one process may use while Redis is away: other
    /// workers may be on their fallback too, so never the whole limit.
    pub rate_limit_fallback_fraction: f64,
    pub redis_url: String,
    /// From the process-wide `[redis_tls]` section, not from `[jobs]`.
    #[serde(skip)]
    pub redis_tls: pipeline::redis_tls::RedisTls,
    /// Put before the limiter's Redis keys.
    pub key_prefix: String,
    /// Longest one limiter call to Redis may take before the fallback serves.
    pub redis_timeout_ms: u64,
    /// How often Redis is tried again while the limiter is on its fallback.
    pub redis_retry_interval_ms: u64,
    /// Lifetime of the `job:{id}` mirror in Redis.
    pub mirror_ttl_secs: u64,
    /// When set, the HTTP API wants `Authorization: Bearer <token>`; this
    /// token may do everything.
    pub api_token: Option<String>,
    /// Further tokens, each limited to its scopes.
    pub api_tokens: Vec<ApiToken>,
    /// Reads of the API (`GET`, the status stream aside) answer 503 past this.
    /// Writes are not cut short: an enqueue stopped between recording and
    /// publishing would leave a job no one announces.
    pub api_read_timeout_ms: u64,
}

/// A bearer token of the HTTP API and what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who holds it, for logs (never the token itself).
    pub name: String,
    pub token: String,
    pub scopes: Vec<ApiScope>,
    /// Requests it may make (shared by every process through Redis); over
    /// it the API answers 429 with `Retry-After`.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

impl ApiToken {
    /// Its service name in the rate limiter.
    pub fn limiter_service(&self) -> String {
        format!("api-token:{}", self.name)
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiScope {
    /// `GET`: job views, lists and status streams, scout reports.
    Read,
    /// Everything else: enqueue, cancel and retry jobs.
    Enqueue,
}

impl JobsConfig {
    /// The token that may do everything. Empty counts as unset, as compose's
    /// `${VAR:-}` gives when the variable is missing.
    pub fn full_access_token(&self) -> Option<&str> {
        self.api_token.as_deref().filter(|t| !t.trim().is_empty())
    }

    /// `rate_limits` plus one entry per rate-limited API token, for the
    /// API's [`super::RateLimiter`].
    pub fn with_api_token_limits(&self) -> JobsConfig {
        let mut config = self.clone();
        for token in &self.api_tokens {
            if let Some(limit) = token.rate_limit {
                config.rate_limits.insert(token.limiter_service(), limit);
            }
        }
        config
    }

    /// Whether the API wants a bearer token at all.
    pub fn api_wants_token(&self) -> bool {
        self.full_access_token().is_some() || !self.api_tokens.is_empty()
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        let mut rate_limits = BTreeMap::new();
        rate_limits.insert(OPENDOTA.to_string(), RateLimit::per_minute(60));
        Self {
            max_attempts: MaxAttempts::default(),
            backoff_initial_ms: 1_000,
            backoff_max_ms: 60_000,
            workers: 16,
            claim_batch: 100,
            lease_ms: 30_000,
            poll_interval_ms: 250,
            shutdown_grace_ms: 10_000,
            opendota_base_url: "https://api.opendota.com/api".to_string(),
            http_timeout_ms: 10_000,
            rate_limits,
            rate_limit_fallback_fraction: 0.5,
            redis_url: crate::cache::DEFAULT_REDIS_URL.to_string(),
            redis_tls: pipeline::redis_tls::RedisTls::default(),
            key_prefix: "scoutstream:jobs:".to_string(),
            redis_timeout_ms: 500,
            redis_retry_interval_ms: 5_000,
            mirror_ttl_secs: 24 * 60 * 60,
            api_token: None,
            api_tokens: Vec::new(),
            api_read_timeout_ms: 10_000,
        }
    }
}

impl JobsConfig {
    /// The wait before retry `attempt` of a job, as the runner's retries wait.
    pub fn backoff(&self, attempt: u32) -> Duration {
        pipeline::runner::jittered_backoff(
            Duration::from_millis(self.backoff_initial_ms),
            Duration::from_millis(self.backoff_max_ms),
            attempt,
        )
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// The worker pool's settings; the error names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("jobs.workers", self.workers as u64),
            ("jobs.claim_batch", self.claim_batch as u64),
            ("jobs.poll_interval_ms", self.poll_interval_ms),
            ("jobs.api_read_timeout_ms", self.api_read_timeout_ms),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err((field, "must be at least 1".into()));
            }
        }
        self.validate_api_tokens()?;
        if self.lease_ms < 1_000 {
            return Err((
                "jobs.lease_ms",
                format!(
                    "{} is too short: renewals run every third of it; use 1000 or more",
                    self.lease_ms
                ),
            ));
        }
        Ok(())
    }

    fn validate_api_tokens(&self) -> Result<(), (&'static str, String)> {
        let mut seen = std::collections::HashSet::new();
        for token in &self.api_tokens {
            let name = &token.name;
            if token.token.trim().is_empty() {
                return Err(("jobs.api_tokens", format!("token `{name}` is empty")));
            }
            if token.scopes.is_empty() {
                return Err(("jobs.api_tokens", format!("token `{name}` has no scopes")));
            }
            let full = self.full_access_token();
            if !seen.insert(token.token.as_str()) || full == Some(token.token.as_str()) {
                return Err(("jobs.api_tokens", format!("token `{name}` is given twice")));
            }
        }
        Ok(())
    }

    pub fn api_read_timeout(&self) -> Duration {
        Duration::from_millis(self.api_read_timeout_ms)
    }

    pub fn http_timeout(&self) -> Duration {
        Duration::from_millis(self.http_timeout_ms)
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    pub fn redis_retry_interval(&self) -> Duration {
        Duration::from_millis(self.redis_retry_interval_ms)
    }

    pub fn mirror_ttl(&self) -> Duration {
        Duration::from_secs(self.mirror_ttl_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let config = JobsConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            ..JobsConfig::default()
        };
        for _ in 0..100 {
            let first = config.backoff(1).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let third = config.backoff(3).as_millis();
            assert!((200..=400).contains(&third), "{third}");
            let late = config.backoff(30).as_millis();
            assert!((500..=1_000).contains(&late), "{late}");
        }
    }

    #[test]
    fn fallback_limit_is_a_fraction_but_never_zero() {
        let limit = RateLimit::per_minute(60);
        assert_eq!(limit.emission_interval_us(), 1_000_000);
        assert_eq!(limit.scaled(0.5).limit, 30);
        assert_eq!(RateLimit::per_second(1).scaled(0.1).limit, 1);
    }

    #[test]
    fn config_reads_from_toml_shaped_json() {
        let config: JobsConfig = serde_json::from_value(serde_json::json!({
            "max_attempts": {"refresh_player": 9},
            "rate_limits": {"opendota": {"limit": 60, "period_ms": 60000}}
        }))
        .expect("valid config");
        assert_eq!(config.max_attempts.of(JobType::RefreshPlayer), 9);
        assert_eq!(config.max_attempts.of(JobType::ScoutReportTeam), 3);
        assert_eq!(config.rate_limits[OPENDOTA], RateLimit::per_minute(60));
    }
}
