//! Per-test PostgreSQL databases on the shared server, created through an
//! admin connection and dropped afterwards, so tests never see each other's
//! rows.

use sqlx::{Connection, PgConnection};

/// The variable the tests (and `consumers::persist`) read the server from.
pub const DATABASE_URL_ENV: &str = "SCOUTSTREAM_DATABASE_URL";
/// Used when [`DATABASE_URL_ENV`] is not set: the server `scripts/services.sh` runs.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The server to create databases on; its role must be allowed to.
pub fn admin_url() -> String {
    std::env::var(DATABASE_URL_ENV).unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_string())
}

/// `url` with its database (the path) replaced by `name`; the query stays.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}

/// Runs one statement on a connection of its own to [`admin_url`]:
/// `CREATE DATABASE` cannot run inside a pool's transaction.
pub async fn admin_execute(statement: &str) {
    let url = admin_url();
    let mut admin = PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    sqlx::query(statement)
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    admin
        .close()
        .await
        .unwrap_or_else(|e| panic!("closing {url}: {e}"));
}

/// Creates the empty database `name`; returns its URL.
pub async fn create_database(name: &str) -> String {
    admin_execute(&format!("CREATE DATABASE {name}")).await;
    with_database(&admin_url(), name)
}

/// Drops `name`, closing whatever connections a failed test left open.
pub async fn drop_database(name: &str) {
    admin_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}
