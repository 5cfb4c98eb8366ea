//! The pipeline under observation: runners with a trickle of traffic and lag reporters.

use std::sync::Arc;
use std::time::Duration;

use pipeline::bus::{Publisher, Record};
use pipeline::observe::{self, Readiness};
use pipeline::runner::{RunStats, Runner, RunnerConfig, RunnerError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::{bus, numbered_records, unique, Backend, Recorder, PARTITIONS};

pub(crate) struct Group {
    pub(crate) name: String,
    shutdown: CancellationToken,
    runner: JoinHandle<Result<RunStats, RunnerError>>,
    feeder: JoinHandle<()>,
    reporter: JoinHandle<()>,
}

/// A runner over a fresh topic with a backlog and a trickle of new events (one in
/// eight of them garbage), and a lag reporter for its group.
pub(crate) async fn start_group(backend: Backend, readiness: &Readiness) -> Group {
    let bus = bus(backend).await;
    let (topic, dlq, name) = (unique("observe"), unique("observe-dlq"), unique("observed"));
    bus.ensure_topic(&topic, PARTITIONS).await.unwrap();
    bus.ensure_topic(&dlq, 1).await.unwrap();
    let publisher = bus.publisher().await.unwrap();
    let mut backlog = numbered_records(40, 8);
    backlog.push(Record::new("key-0", b"\x00garbage".to_vec()));
    publisher.publish_batch(&topic, &backlog).await.unwrap();

    let recorder = Arc::new(Recorder::slow(Duration::from_millis(5)));
    recorder.flaky.lock().unwrap().insert(3, 2);
    let config = RunnerConfig {
        batch_size: 20,
        batch_wait: Duration::from_millis(100),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        dead_letter_topic: dlq,
        ..RunnerConfig::new(name.clone())
    };
    let runner = Runner::new(config, recorder, publisher.clone()).with_readiness(readiness.clone());
    let subscription = bus
        .subscribe(&name, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let runner = tokio::spawn(async move { runner.run(subscription, token).await });
    let feeder = tokio::spawn(feed(publisher, topic.clone(), shutdown.clone()));
    let reporter = observe::spawn_lag_reporter(
        bus,
        name.clone(),
        vec![topic],
        Duration::from_secs(1),
        shutdown.clone(),
    );
    Group {
        name,
        shutdown,
        runner,
        feeder,
        reporter,
    }
}

/// Publishes a record every 250 ms, bounded in count, until shutdown.
async fn feed(publisher: Arc<dyn Publisher>, topic: String, stop: CancellationToken) {
    for i in 1000..1600usize {
        let record = if i % 8 == 0 {
            Record::new(format!("key-{}", i % 8), b"not a numbered record".to_vec())
        } else {
            Record::new(format!("key-{}", i % 8), format!("n:{i}:0"))
        };
        if let Err(err) = publisher.publish_batch(&topic, &[record]).await {
            tracing::warn!(error = %err, "feeder publish failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

impl Group {
    pub(crate) async fn stop(self) -> RunStats {
        self.shutdown.cancel();
        self.feeder.await.unwrap();
        self.reporter.await.unwrap();
        self.runner.await.unwrap().unwrap()
    }
}
