//! PostgreSQL with `sslmode=verify-full`: the groups' role reads and writes rows, nothing more.

use crate::common::tls::*;
use crate::succeeded;

use std::process::Command;

use sqlx::PgPool;

async fn refused_sql(pool: &PgPool, sql: &str) -> String {
    sqlx::query(sql)
        .execute(pool)
        .await
        .expect_err(sql)
        .to_string()
}

async fn connect_error(url: &str) -> String {
    PgPool::connect(url)
        .await
        .expect_err("the connection should be refused")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_is_verified_and_the_groups_role_only_reads_and_writes_rows() {
    let ca = TestCa::new("scoutstream test CA");
    let postgres = TlsPostgres::start(&ca);
    let owner = postgres.url(OWNER_ROLE, "127.0.0.1", &ca.ca_path());
    let app = postgres.url(APP_ROLE, "127.0.0.1", &ca.ca_path());

    let output = Command::new(env!("CARGO_BIN_EXE_scoutstream"))
        .arg("migrate")
        .env("SCOUTSTREAM__DATABASE__URL", &app)
        .env("SCOUTSTREAM__DATABASE__MIGRATE_URL", &owner)
        .env("SCOUTSTREAM__DATABASE__APP_ROLE", APP_ROLE)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = succeeded(output, "migrate");
    assert!(
        stdout.contains("role scoutstream_app may read and write rows"),
        "{stdout}"
    );

    let pool = PgPool::connect(&app).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(tables > 3, "the owner created the tables: {tables}");
    let (reads_and_writes, truncates): (bool, bool) = sqlx::query_as(
        "SELECT bool_and(has_table_privilege(t, 'SELECT, INSERT, UPDATE, DELETE')), \
                bool_or(has_table_privilege(t, 'TRUNCATE')) \
         FROM unnest(ARRAY['matches', 'player_matches', 'players']) AS t",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        reads_and_writes && !truncates,
        "rows only: {reads_and_writes} {truncates}"
    );
    for (sql, refusal) in [
        ("CREATE TABLE intruder (id int)", "permission denied"),
        ("DROP TABLE matches", "must be owner"),
        (
            "ALTER TABLE matches ADD COLUMN intruder int",
            "must be owner",
        ),
        ("TRUNCATE matches", "permission denied"),
        ("DELETE FROM _sqlx_migrations", "permission denied"),
    ] {
        let err = refused_sql(&pool, sql).await;
        assert!(err.contains(refusal), "{sql}: {err}");
    }

    let err = connect_error(&postgres.url(APP_ROLE, "localhost", &ca.ca_path())).await;
    assert!(
        err.to_lowercase().contains("certificate"),
        "a certificate for another host is refused: {err}"
    );
    let stranger = TestCa::new("an authority the server's certificate is not from");
    let err = connect_error(&postgres.url(APP_ROLE, "127.0.0.1", &stranger.ca_path())).await;
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let plaintext = app.replace("sslmode=verify-full", "sslmode=disable");
    let err = connect_error(&plaintext).await;
    assert!(
        err.contains("no pg_hba.conf entry"),
        "plaintext is refused: {err}"
    );
}
