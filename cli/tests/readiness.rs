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
