//! `/readyz` follows the servers a `run` process depends on, while it runs:
//! the database going away takes the process out of its Service, and its
//! return brings it back, with no restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{database_admin_url, http_get, stop, Deployment};
use sqlx::{Connection, PgConnection};

/// Waits until `/readyz` answers `status` with a body that passes `body_ok`.
async fn wait_for_readyz(port: u16, status: u16, body_ok: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (answered, body) = http_get(port, "/readyz");
        if answered == status && body_ok(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never answered {status} as wanted; last {answered}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn allow_connections(database: &str, allowed: bool) {
    let mut admin = PgConnection::connect(&database_admin_url()).await.unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE {database} WITH ALLOW_CONNECTIONS {allowed}"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    if !allowed {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(database)
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn readyz_follows_the_database_going_away_and_coming_back() {
    let deployment = Deployment::new("kafka").await;
    let port = deployment.observe_port;
    let run = deployment.start("persist");
    let ready = wait_for_readyz(port, 200, |body| body.contains("\"stores\":true")).await;
    assert!(ready.contains("\"bus\":true"), "{ready}");

    allow_connections(&deployment.database, false).await;
    let away = wait_for_readyz(port, 503, |body| body.contains("\"stores\":false")).await;
    assert!(
        away.contains("\"bus\":true"),
        "only the database is away: {away}"
    );

    allow_connections(&deployment.database, true).await;
    wait_for_readyz(port, 200, |body| body.contains("\"stores\":true")).await;
    stop(run);
    deployment.drop_database().await;
}

/// The database refusing connections for longer than a few retries is an
/// outage to wait out, not a reason to dead-letter good events: every match
/// published during it is persisted once the database is back, and the run
/// dead-letters nothing.
#[tokio::test]
async fn persist_waits_out_a_database_outage_without_dead_letters() {
    let deployment = Deployment::new("kafka").await;
    // Every retry logs a warning: to a file, since a pipe nobody reads would
    // fill and stall the process.
    let log = tempfile::NamedTempFile::new().unwrap();
    let run = deployment
        .command(&["run", "--groups", "persist"])
        .stdout(std::process::Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let port = deployment.observe_port;
    wait_for_readyz(port, 200, |body| body.contains("\"stores\":true")).await;

    allow_connections(&deployment.database, false).await;
    deployment.produce(&[], 300, 7);
    // Longer than the retries of the old attempt budget (five attempts from 100 ms).
    tokio::time::sleep(Duration::from_secs(8)).await;
    allow_connections(&deployment.database, true).await;

    let pool = deployment.pool().await;
    common::wait_for_count(&pool, "SELECT count(*) FROM matches", 300).await;
    common::wait_for_zero_lag(&deployment, &deployment.group_prefix).await;
    let (report, _) = stop(run);
    assert!(
        report.contains("dead-lettered 0"),
        "good events were dead-lettered during the outage: {report}"
    );
    pool.close().await;
    deployment.drop_database().await;
}
