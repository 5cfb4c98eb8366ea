//! The Redis side of the cache: every operation bounded by one timeout, keys
//! prefixed, failures sorted into "Redis is away" and "Redis said no".

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, RedisResult, Script};
use tokio::sync::OnceCell;

use super::newer::{NewerWrite, VersionAt};
use super::write::CacheWrite;

/// Compare-and-set, atomic on the server. KEYS[1] is written when ARGV[2]
/// is newer than the version stored there, and then KEYS[2..] are deleted.
/// ARGV: value, version, TTL in ms, JSON field of the version ('' when the
/// value is the version). Returns 1 when written, 0 when kept.
const SET_IF_NEWER: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local stored
  if ARGV[4] == '' then
    stored = tonumber(current)
  else
    local ok, doc = pcall(cjson.decode, current)
    if ok and type(doc) == 'table' then stored = tonumber(doc[ARGV[4]]) end
  end
  if stored and stored >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
";

/// Why a Redis operation did not succeed.
#[derive(Debug)]
pub(crate) enum RedisFailure {
    /// Unreachable, timed out, loading, read-only...: use memory for a while.
    Unavailable(String),
    /// Redis answered this operation with an error; Redis itself is fine.
    Rejected(RedisError),
}

impl From<RedisError> for RedisFailure {
    fn from(err: RedisError) -> Self {
        let away = err.is_io_error()
            || pipeline::bus::redis_is_busy(&err)
            || err.kind() == ErrorKind::AuthenticationFailed;
        if away {
            RedisFailure::Unavailable(err.to_string())
        } else {
            RedisFailure::Rejected(err)
        }
    }
}

pub(crate) struct RedisStore {
    client: Client,
    manager_config: ConnectionManagerConfig,
    /// Created on first success: Redis may be down when the cache starts.
    manager: OnceCell<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    set_if_newer: Script,
}

impl RedisStore {
    pub(crate) fn new(client: Client, prefix: &str, timeout: Duration) -> Self {
        // One connection attempt per reconnect: the cache's own retry interval
        // paces the attempts while Redis is away.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_number_of_retries(0);
        Self {
            client,
            manager_config,
            manager: OnceCell::new(),
            prefix: prefix.to_string(),
            timeout,
            set_if_newer: Script::new(SET_IF_NEWER),
        }
    }

    pub(crate) fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub(crate) async fn ping(&self) -> Result<(), RedisFailure> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<String>, RedisFailure> {
        self.query(redis::cmd("GET").arg(self.full_key(key))).await
    }

    pub(crate) async fn set(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), RedisFailure> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.full_key(key))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms(ttl));
        self.query(&cmd).await
    }

    pub(crate) async fn delete<S: AsRef<str>>(&self, keys: &[S]) -> Result<(), RedisFailure> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("DEL");
        for key in keys {
            cmd.arg(self.full_key(key.as_ref()));
        }
        self.query::<i64>(&cmd).await.map(drop)
    }

    /// `MGET`: one value (or none) per key, in order.
    pub(crate) async fn get_many<S: AsRef<str>>(
        &self,
        keys: &[S],
    ) -> Result<Vec<Option<String>>, RedisFailure> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.full_key(key.as_ref()));
        }
        self.query(&cmd).await
    }

    pub(crate) async fn set_if_newer(&self, write: &NewerWrite<'_>) -> Result<bool, RedisFailure> {
        let mut invocation = self.set_if_newer.prepare_invoke();
        invocation.key(self.full_key(write.key));
        for key in write.invalidate {
            invocation.key(self.full_key(key));
        }
        invocation
            .arg(write.value)
            .arg(write.version)
            .arg(ttl_ms(write.ttl))
            .arg(version_field(write));
        let written: i64 = self
            .run(|mut conn| {
                let invocation = &invocation;
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(written == 1)
    }

    /// Every write in order, in one pipelined round trip. A Redis that lost
    /// its scripts (a restart) answers `NOSCRIPT`: the script is loaded and
    /// the whole pipeline sent again, which is safe as every write is idempotent.
    pub(crate) async fn write_all(&self, writes: &[CacheWrite]) -> Result<(), RedisFailure> {
        let pipeline = self.pipeline_of(writes);
        self.run(|mut conn| {
            let pipeline = &pipeline;
            let script = &self.set_if_newer;
            async move {
                match pipeline.query_async::<()>(&mut conn).await {
                    Err(err) if err.kind() == ErrorKind::NoScriptError => {
                        script.prepare_invoke().load_async(&mut conn).await?;
                        pipeline.query_async(&mut conn).await
                    }
                    other => other,
                }
            }
        })
        .await
    }

    fn pipeline_of(&self, writes: &[CacheWrite]) -> Pipeline {
        let mut pipeline = redis::pipe();
        for write in writes {
            let cmd = match write {
                CacheWrite::Set { key, value, ttl } => {
                    let mut cmd = redis::cmd("SET");
                    cmd.arg(self.full_key(key))
                        .arg(value)
                        .arg("PX")
                        .arg(ttl_ms(*ttl));
                    cmd
                }
                CacheWrite::Delete { keys } if keys.is_empty() => continue,
                CacheWrite::Delete { keys } => {
                    let mut cmd = redis::cmd("DEL");
                    for key in keys {
                        cmd.arg(self.full_key(key));
                    }
                    cmd
                }
                CacheWrite::SetIfNewer { .. } => {
                    let Some(newer) = write.as_newer() else {
                        unreachable!("a SetIfNewer is a NewerWrite")
                    };
                    self.evalsha_set_if_newer(&newer)
                }
            };
            pipeline.add_command(cmd).ignore();
        }
        pipeline
    }

    /// What `set_if_newer` sends, as a command a pipeline can carry.
    fn evalsha_set_if_newer(&self, write: &NewerWrite<'_>) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.set_if_newer.get_hash())
            .arg(1 + write.invalidate.len())
            .arg(self.full_key(write.key));
        for key in write.invalidate {
            cmd.arg(self.full_key(key));
        }
        cmd.arg(write.value)
            .arg(write.version)
            .arg(ttl_ms(write.ttl))
            .arg(version_field(write));
        cmd
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisFailure> {
        self.run(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Runs `command`, within the timeout, connecting first if needed.
    async fn run<T, F, Fut>(&self, command: F) -> Result<T, RedisFailure>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempt = async {
            let conn = self.connection().await?;
            match command(conn.clone()).await {
                // An I/O error makes the manager reconnect; a second try reaches
                // a restarted server at once instead of one retry interval later.
                // Every cache command is idempotent, so trying twice is safe.
                Err(err) if err.is_io_error() => command(conn).await,
                other => other,
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result.map_err(RedisFailure::from),
            Err(_elapsed) => Err(RedisFailure::Unavailable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    async fn connection(&self) -> RedisResult<ConnectionManager> {
        self.manager
            .get_or_try_init(|| {
                ConnectionManager::new_with_config(self.client.clone(), self.manager_config.clone())
            })
            .await
            .cloned()
    }
}

/// ARGV[4] of [`SET_IF_NEWER`]: '' when the value is the version.
fn version_field<'a>(write: &NewerWrite<'a>) -> &'a str {
    match write.version_at {
        VersionAt::Value => "",
        VersionAt::Field(field) => field,
    }
}

/// Redis rejects a zero TTL; the shortest it takes is 1 ms.
fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
