//! The migrations agree with the one definition of the `player_matches` row
//! (`PlayerMatchRow`'s `table_row!`): every column the row writes exists with
//! its type, and every other column of the table fills itself. A column added
//! to the row but not to a migration (or the reverse) fails here, on
//! PostgreSQL and on SQLite, before any write does.
#![allow(clippy::unwrap_used)]

use consumers::persist::{PlayerMatchRow, Store, DATABASE_URL_ENV, DEFAULT_DATABASE_URL};
use sqlx::{Connection, PgConnection, Row};

/// A column as the migrated database has it.
#[derive(Debug)]
struct Column {
    name: String,
    sql_type: String,
    /// Not null and no default: every insert must give it.
    required: bool,
}

fn admin_url() -> String {
    std::env::var(DATABASE_URL_ENV).unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_string())
}

async fn admin_execute(sql: &str) {
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::query(sql).execute(&mut admin).await.unwrap();
}

/// SQLite has no JSON or boolean storage class; STRICT tables store them as
/// TEXT and INTEGER.
fn sqlite_type(postgres_type: &str) -> &'static str {
    match postgres_type {
        "jsonb" | "text" => "TEXT",
        "bigint" | "integer" | "smallint" | "boolean" => "INTEGER",
        other => panic!("no SQLite storage class known for {other}"),
    }
}

fn check(backend: &str, columns: &[Column], expected_type: impl Fn(&str) -> String) {
    for (name, sql_type) in PlayerMatchRow::COLUMNS
        .iter()
        .zip(PlayerMatchRow::SQL_TYPES)
    {
        let column = columns
            .iter()
            .find(|c| c.name == *name)
            .unwrap_or_else(|| panic!("{backend}: player_matches has no column {name}"));
        assert_eq!(
            column.sql_type,
            expected_type(sql_type),
            "{backend}: type of player_matches.{name}"
        );
    }
    for column in columns {
        assert!(
            PlayerMatchRow::COLUMNS.contains(&column.name.as_str()) || !column.required,
            "{backend}: player_matches.{} must be given by every insert, but the row does not write it",
            column.name
        );
    }
}

#[tokio::test]
async fn postgres_migrations_match_the_player_row() {
    let database = format!("ssrows_{}", uuid::Uuid::new_v4().simple());
    admin_execute(&format!("CREATE DATABASE {database}")).await;
    let url = format!("{}/{database}", admin_url().rsplit_once('/').unwrap().0);
    let store = Store::connect(&url).await.unwrap();
    let Store::Postgres(pool) = &store else {
        unreachable!("a postgres:// URL opens PostgreSQL")
    };
    let columns: Vec<Column> = sqlx::query(
        "SELECT column_name, data_type, is_nullable = 'NO' AND column_default IS NULL AS required \
         FROM information_schema.columns WHERE table_name = 'player_matches'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|row| Column {
        name: row.get(0),
        sql_type: row.get(1),
        required: row.get(2),
    })
    .collect();
    store.close().await;
    admin_execute(&format!("DROP DATABASE {database} WITH (FORCE)")).await;
    check("postgres", &columns, |ty| ty.to_string());
}

#[tokio::test]
async fn sqlite_migrations_match_the_player_row() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rows.db").display());
    let store = Store::connect(&url).await.unwrap();
    let Store::Sqlite(pool) = &store else {
        unreachable!("a sqlite: URL opens SQLite")
    };
    let columns: Vec<Column> = sqlx::query(
        "SELECT name, type, \"notnull\" = 1 AND dflt_value IS NULL \
         FROM pragma_table_info('player_matches')",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|row| Column {
        name: row.get(0),
        sql_type: row.get(1),
        required: row.get(2),
    })
    .collect();
    store.close().await;
    check("sqlite", &columns, |ty| sqlite_type(ty).to_string());
}
