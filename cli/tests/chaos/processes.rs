//! The groups as separate `scoutstream run` processes on the chaos servers:
//! up to three persist members (the rebalance storm and the kills come and
//! go among them), one enrich and one cache process. Each logs to a file of
//! its own (a pipe nobody reads would stall it) and its peak RSS is sampled.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use testkit::process::peak_rss_kib;

pub const PERSIST_SLOTS: usize = 3;

/// How every process reaches the chaos servers.
#[derive(Clone)]
pub struct Env {
    pub engine: crate::Engine,
    pub brokers: String,
    pub database_url: String,
    pub redis_url: String,
    pub partitions: u32,
    pub logs: PathBuf,
}

impl Env {
    fn command(&self, groups: &str, name: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_scoutstream"));
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SCOUTSTREAM__")) {
            command.env_remove(key);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{name}.log")))
            .unwrap();
        match self.engine {
            crate::Engine::Kafka => command
                .env("SCOUTSTREAM__BUS__BACKEND", "kafka")
                .env("SCOUTSTREAM__BUS__KAFKA__BROKERS", &self.brokers),
            // A killed member's partitions wait out its lease (`claim_idle`):
            // shorter than the default 30 s, as the Kafka session is 10 s.
            crate::Engine::RedisStreams => command
                .env("SCOUTSTREAM__BUS__BACKEND", "redis-streams")
                .env("SCOUTSTREAM__BUS__REDIS__URL", &self.redis_url)
                .env("SCOUTSTREAM__BUS__REDIS__SESSION_TIMEOUT_SECS", "6")
                .env("SCOUTSTREAM__BUS__REDIS__CLAIM_IDLE_SECS", "10"),
        };
        command
            .args(["run", "--groups", groups])
            .env("SCOUTSTREAM__BUS__PARTITIONS", self.partitions.to_string())
            .env("SCOUTSTREAM__GROUPS__ID_PREFIX", "chaos")
            .env("SCOUTSTREAM__DATABASE__URL", &self.database_url)
            .env("SCOUTSTREAM__CACHE__REDIS_URL", &self.redis_url)
            .env("SCOUTSTREAM__JOBS__REDIS_URL", &self.redis_url)
            // Port 0: nothing here scrapes these processes, and a port picked
            // ahead (`free_port`) can be taken by any outgoing connection
            // before the child binds it (an enrich process once died so).
            .env("SCOUTSTREAM__OBSERVE__BIND", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        command
    }
}

/// Every process of the run, by role, with the peak RSS each role reached.
pub struct Fleet {
    env: Env,
    persist: Vec<Option<Child>>,
    others: Vec<(&'static str, Child)>,
    pub peak_rss_kib: BTreeMap<&'static str, u64>,
    pub persist_starts: usize,
    pub persist_kills: usize,
    /// Processes that exited without being told to, as `role: status`; each
    /// was started again, as its Deployment would be.
    pub exits: Vec<String>,
}

impl Fleet {
    pub fn start(env: Env) -> Self {
        let mut fleet = Self {
            persist: (0..PERSIST_SLOTS).map(|_| None).collect(),
            others: Vec::new(),
            peak_rss_kib: BTreeMap::new(),
            persist_starts: 0,
            persist_kills: 0,
            exits: Vec::new(),
            env,
        };
        for slot in 0..PERSIST_SLOTS {
            fleet.join(slot);
        }
        for (role, groups) in [("enrich", "enrich"), ("cache", "cache")] {
            let child = fleet.env.command(groups, role).spawn().unwrap();
            fleet.others.push((role, child));
        }
        fleet
    }

    pub fn join(&mut self, slot: usize) {
        if self.persist[slot].is_none() {
            let name = format!("persist-{slot}");
            self.persist[slot] = Some(self.env.command("persist", &name).spawn().unwrap());
            self.persist_starts += 1;
        }
    }

    /// Takes a member out of the fleet to leave: [`terminate`] it (outside
    /// any lock: it drains and commits first, which takes seconds).
    pub fn leaving(&mut self, slot: usize) -> Option<Child> {
        self.persist[slot].take()
    }

    /// SIGKILL one live member (the first from `from`); keeps one alive by
    /// starting another at once when it was the last.
    pub fn kill_one(&mut self, from: usize) -> Option<usize> {
        let slot = (0..PERSIST_SLOTS)
            .map(|i| (from + i) % PERSIST_SLOTS)
            .find(|slot| self.persist[*slot].is_some())?;
        let mut child = self.persist[slot].take().unwrap();
        self.sample_one("persist", &child);
        child.kill().unwrap();
        child.wait().unwrap();
        self.persist_kills += 1;
        if self.persist.iter().all(Option::is_none) {
            self.join((slot + 1) % PERSIST_SLOTS);
        }
        Some(slot)
    }

    /// Starts again every process that exited on its own (a start-up while
    /// Redis restarts fails with "broken pipe", as it would in a pod), and
    /// records it: a supervisor restarts it there too.
    pub fn restart_exited(&mut self) {
        for slot in 0..PERSIST_SLOTS {
            let exited = self.persist[slot]
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.exits.push(format!("persist-{slot}: {status}"));
                self.persist[slot] = None;
                self.join(slot);
            }
        }
        for (role, child) in &mut self.others {
            if let Some(status) = child.try_wait().ok().flatten() {
                self.exits.push(format!("{role}: {status}"));
                *child = self.env.command(role, role).spawn().unwrap();
            }
        }
    }

    pub fn live_persist(&self) -> usize {
        self.persist.iter().filter(|c| c.is_some()).count()
    }

    pub fn fill_persist(&mut self) {
        for slot in 0..PERSIST_SLOTS {
            self.join(slot);
        }
    }

    /// Peak RSS so far of every live process, by role.
    pub fn sample_rss(&mut self) {
        let persist: Vec<u64> = self
            .persist
            .iter()
            .flatten()
            .filter_map(peak_rss_kib)
            .collect();
        for rss in persist {
            self.record("persist", rss);
        }
        let others: Vec<(&'static str, u64)> = self
            .others
            .iter()
            .filter_map(|(role, child)| peak_rss_kib(child).map(|rss| (*role, rss)))
            .collect();
        for (role, rss) in others {
            self.record(role, rss);
        }
    }

    fn sample_one(&mut self, role: &'static str, child: &Child) {
        if let Some(rss) = peak_rss_kib(child) {
            self.record(role, rss);
        }
    }

    fn record(&mut self, role: &'static str, rss: u64) {
        let peak = self.peak_rss_kib.entry(role).or_default();
        *peak = (*peak).max(rss);
    }

    /// SIGTERM to everyone; each must drain and exit 0.
    pub fn stop_all(mut self) -> Vec<String> {
        self.sample_rss();
        let mut failures = Vec::new();
        let persist: Vec<Child> = self.persist.iter_mut().filter_map(Option::take).collect();
        let others = std::mem::take(&mut self.others);
        for (role, child) in persist.into_iter().map(|c| ("persist", c)).chain(others) {
            if !terminate(child) {
                failures.push(format!("a {role} process did not exit cleanly on SIGTERM"));
            }
        }
        failures
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in self.persist.iter_mut().flatten() {
            let _ = child.kill();
        }
        for (_, child) in &mut self.others {
            let _ = child.kill();
        }
    }
}

/// SIGTERM and wait; true on a clean exit.
pub fn terminate(mut child: Child) -> bool {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().map(|status| status.success()).unwrap_or(false)
}
