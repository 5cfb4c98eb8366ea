//! An Apache Kafka node of the test's own, through `scripts/kafka.sh`: its
//! own ports and state dir, so that killing it cannot disturb tests running
//! beside it, and tied to the test process (`SCOUTSTREAM_KAFKA_OWNER_PID`) so
//! that it dies with it even when the test is killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ports::restartable_port;

/// A KRaft node (broker and controller) with a PLAINTEXT listener on
/// loopback, killed (SIGKILL) on drop whatever the outcome.
pub struct PrivateBroker {
    state_dir: tempfile::TempDir,
    port: u16,
    controller_port: u16,
    quiet_drop: bool,
}

impl PrivateBroker {
    /// Ports and a state dir, not started yet: a test that adds listeners
    /// writes its files into [`Self::state_dir`] and runs
    /// [`Self::script`]`("start")` with its own settings.
    pub fn unstarted() -> Self {
        Self {
            state_dir: tempfile::tempdir().expect("a temporary state dir"),
            // Killed and restarted on the same ports: see `restartable_port`.
            port: restartable_port(),
            controller_port: restartable_port(),
            quiet_drop: false,
        }
    }

    /// Started; returns once it serves metadata.
    pub fn start() -> Self {
        let broker = Self::unstarted();
        broker.restart();
        broker
    }

    /// On drop, ignore a failing kill and keep the script's lines out of the
    /// test's output (by default a failing kill fails the test).
    pub fn quiet_on_drop(mut self) -> Self {
        self.quiet_drop = true;
        self
    }

    /// The plain listener, as clients' bootstrap servers.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn controller_port(&self) -> u16 {
        self.controller_port
    }

    /// Data, `server.properties` and `server.log` live here.
    pub fn state_dir(&self) -> &Path {
        self.state_dir.path()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&self) {
        self.run("kill");
    }

    /// Starts (again, on the same data); returns once it serves metadata.
    pub fn restart(&self) {
        self.run("start");
    }

    /// `scripts/kafka.sh action` aimed at this node, to be run by the caller.
    pub fn script(&self, action: &str) -> Command {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
        let mut command = Command::new("bash");
        command
            .arg(script)
            .arg(action)
            .env("SCOUTSTREAM_KAFKA_STATE_DIR", self.state_dir.path())
            .env("SCOUTSTREAM_KAFKA_PORT", self.port.to_string())
            .env(
                "SCOUTSTREAM_KAFKA_CONTROLLER_PORT",
                self.controller_port.to_string(),
            )
            .env("SCOUTSTREAM_KAFKA_HEAP", "512m")
            .env(
                "SCOUTSTREAM_KAFKA_OWNER_PID",
                std::process::id().to_string(),
            );
        command
    }

    fn run(&self, action: &str) {
        let status = self
            .script(action)
            .status()
            .expect("bash runs scripts/kafka.sh");
        assert!(status.success(), "scripts/kafka.sh {action} failed");
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if self.quiet_drop {
            let _ = self.script("kill").stderr(Stdio::null()).status();
        } else {
            self.kill();
        }
    }
}
