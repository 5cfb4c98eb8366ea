//! Distributed rate limiting: GCRA in one Lua script on Redis, shared by every
//! worker, with a per-process fallback at a fraction of the limit while Redis
//! is away. A limited call waits; it never fails.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pipeline::internal_events::InternalEvent;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::config::{JobsConfig, RateLimit};
use super::events::{
    RateLimitWaited, RateLimiterFallbackActivated, RateLimiterFallbackDeactivated,
};

/// GCRA: `KEYS[1]` holds the theoretical arrival time (TAT, microseconds of
/// the Redis clock, so workers' clocks never matter). `ARGV[1]` is the
/// emission interval and `ARGV[2]` the burst tolerance, both microseconds.
/// Returns `{0, now}` when granted, `{wait, now}` otherwise. Atomic: Redis runs
/// a script alone. Numbers stay below 2^53, exact in Lua's doubles.
const GCRA_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return {allow_at - now, now}
end
local new_tat = tat + interval
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return {0, now}
"#;

/// Outcome of one [`RateLimiter::try_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go: granted at `at_us` (unix microseconds; the Redis clock when shared).
    Granted { at_us: i64, shared: bool },
    /// Try again after this long.
    Wait(Duration),
}

/// A granted call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    pub at_us: i64,
    /// False when the per-process fallback granted it.
    pub shared: bool,
    pub waited: Duration,
}

/// Cheap to clone: clones share the connection and the fallback state.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    limits: BTreeMap<String, RateLimit>,
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    /// Created on first success (Redis may be down at start-up); it
    /// reconnects by itself after a failure, as the cache's does.
    manager: tokio::sync::OnceCell<ConnectionManager>,
    script: redis::Script,
    key_prefix: String,
    timeout: Duration,
    retry_interval: Duration,
    fraction: f64,
    /// While `Some`, the fallback serves until that instant.
    fallback_until: Mutex<Option<Instant>>,
    /// Per-service TAT of the fallback, unix microseconds.
    local_tat: Mutex<HashMap<String, i64>>,
}

impl RateLimiter {
    /// Builds the limiter; Redis is reached lazily, so Redis being down is not
    /// an error (the fallback serves). Only a bad URL is.
    pub fn new(config: &JobsConfig) -> Result<Self, redis::RedisError> {
        let client = pipeline::redis_tls::client(&config.redis_url, &config.redis_tls)?;
        let fraction = config.rate_limit_fallback_fraction.clamp(0.01, 1.0);
        // One connection attempt per reconnect: the fallback's retry interval
        // paces the attempts while Redis is away.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(config.redis_timeout())
            .set_response_timeout(config.redis_timeout())
            .set_number_of_retries(0);
        Ok(Self {
            inner: Arc::new(Inner {
                limits: config.rate_limits.clone(),
                client,
                manager_config,
                manager: tokio::sync::OnceCell::new(),
                script: redis::Script::new(GCRA_LUA),
                key_prefix: config.key_prefix.clone(),
                timeout: config.redis_timeout(),
                retry_interval: config.redis_retry_interval(),
                fraction,
                fallback_until: Mutex::new(None),
                local_tat: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The limit of `service`, if it has one.
    pub fn limit(&self, service: &str) -> Option<RateLimit> {
        self.inner.limits.get(service).copied()
    }

    /// True while Redis is considered away and the per-process limit applies.
    pub fn is_on_fallback(&self) -> bool {
        self.fallback_until()
            .is_some_and(|until| Instant::now() < until)
    }

    /// Waits until `service` may be called. Services without a limit pass.
    /// A call that had to wait is logged and counted once.
    pub async fn acquire(&self, service: &str) -> Permit {
        let started = Instant::now();
        let mut slept = false;
        loop {
            match self.try_acquire(service).await {
                Decision::Granted { at_us, shared } => {
                    let waited = started.elapsed();
                    if slept {
                        RateLimitWaited { service, waited }.emit();
                    }
                    return Permit {
                        at_us,
                        shared,
                        waited,
                    };
                }
                Decision::Wait(wait) => {
                    slept = true;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One try: shared through Redis unless on the fallback.
    pub async fn try_acquire(&self, service: &str) -> Decision {
        let Some(limit) = self.limit(service) else {
            return Decision::Granted {
                at_us: now_us(),
                shared: false,
            };
        };
        if !self.is_on_fallback() {
            match self.try_shared(service, &limit).await {
                Ok(decision) => {
                    self.redis_answered();
                    return decision;
                }
                Err(error) => self.redis_failed(&error),
            }
        }
        self.try_local(service, &limit.scaled(self.inner.fraction))
    }

    async fn try_shared(&self, service: &str, limit: &RateLimit) -> Result<Decision, String> {
        let mut connection = self.connection().await?;
        let interval = limit.emission_interval_us();
        let tolerance = interval.saturating_mul(u64::from(limit.burst.max(1) - 1));
        let key = format!("{}ratelimit:{service}", self.inner.key_prefix);
        let mut invocation = self.inner.script.key(key);
        invocation.arg(interval).arg(tolerance);
        let call = invocation.invoke_async::<(i64, i64)>(&mut connection);
        let outcome = tokio::time::timeout(self.inner.timeout, call).await;
        // Not retried here: a grant moves the shared TAT, so a second try
        // could take two. The manager reconnects for the next call.
        let (wait_us, now) = match outcome {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => return Err(err.to_string()),
            Err(_) => return Err("timed out".to_string()),
        };
        Ok(decision(wait_us, now, true))
    }

    /// GCRA in process memory: the same algorithm, this process alone.
    fn try_local(&self, service: &str, limit: &RateLimit) -> Decision {
        let now = now_us();
        let interval = limit.emission_interval_us() as i64;
        let mut tats = lock(&self.inner.local_tat);
        let tat = tats.get(service).copied().unwrap_or(0).max(now);
        if now < tat {
            return Decision::Wait(Duration::from_micros((tat - now) as u64));
        }
        tats.insert(service.to_string(), tat + interval);
        Decision::Granted {
            at_us: now,
            shared: false,
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        let connect = self.inner.manager.get_or_try_init(|| {
            ConnectionManager::new_with_config(
                self.inner.client.clone(),
                self.inner.manager_config.clone(),
            )
        });
        match tokio::time::timeout(self.inner.timeout, connect).await {
            Ok(Ok(manager)) => Ok(manager.clone()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err("connect timed out".to_string()),
        }
    }

    fn fallback_until(&self) -> Option<Instant> {
        *lock(&self.inner.fallback_until)
    }

    fn redis_answered(&self) {
        if lock(&self.inner.fallback_until).take().is_some() {
            RateLimiterFallbackDeactivated.emit();
        }
    }

    fn redis_failed(&self, error: &str) {
        let was_active = {
            let mut until = lock(&self.inner.fallback_until);
            let was = until.is_some();
            *until = Some(Instant::now() + self.inner.retry_interval);
            was
        };
        if !was_active {
            RateLimiterFallbackActivated {
                error,
                fraction: self.inner.fraction,
                retry_in: self.inner.retry_interval,
            }
            .emit();
        }
    }
}

fn decision(wait_us: i64, now_us: i64, shared: bool) -> Decision {
    if wait_us <= 0 {
        Decision::Granted {
            at_us: now_us,
            shared,
        }
    } else {
        Decision::Wait(Duration::from_micros(wait_us as u64))
    }
}

/// A poisoned lock still holds valid data here (plain numbers).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
