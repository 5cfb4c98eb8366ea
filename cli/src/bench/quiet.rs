//! Measurements start on a database no autovacuum is working on: a vacuum of
//! the last run's rows (or of a baseline's) beside a measurement swung
//! figures by a fifth. Deployments vacuum too, so a vacuum that outlasts the
//! wait is reported, not stopped.

use std::time::{Duration, Instant};

use consumers::persist::Store;

/// Long enough for the vacuum of a run's own tables; the one of a table of
/// tens of millions of rows can take longer, and is then reported.
const AUTOVACUUM_WAIT: Duration = Duration::from_secs(90);

const AUTOVACUUMS: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE backend_type = 'autovacuum worker' AND datname = current_database()";

/// Waits until no autovacuum works on the bench's database, for at most
/// [`AUTOVACUUM_WAIT`]; says so on stderr when `before` starts beside one.
pub(super) async fn wait_for_autovacuum(store: &Store, before: &str) {
    let Store::Postgres(pool) = store else {
        return;
    };
    let started = Instant::now();
    loop {
        let running: i64 = match sqlx::query_scalar(AUTOVACUUMS).fetch_one(pool).await {
            Ok(running) => running,
            Err(err) => {
                eprintln!("bench: could not read autovacuum activity: {err}");
                return;
            }
        };
        if running == 0 {
            return;
        }
        if started.elapsed() >= AUTOVACUUM_WAIT {
            eprintln!(
                "bench: {running} autovacuum worker(s) still running after {} s; {before} start beside them",
                AUTOVACUUM_WAIT.as_secs()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
