//! The embedded default: the real data end to end with no servers at all.

use crate::common::*;

use std::path::PathBuf;
use std::process::Command;

use consumers::persist::Store;

#[test]
fn embedded_default_runs_the_real_data_with_no_servers() {
    let dir = std::env::temp_dir().join(unique("ss-embedded-"));
    std::fs::create_dir_all(&dir).unwrap();
    let database = format!("sqlite://{}?mode=rwc", dir.join("scout.db").display());
    // No Redis for the cache either: it must run on its in-process fallback.
    let embedded = || {
        Command::new(env!("CARGO_BIN_EXE_scoutstream"))
            .args(["embedded", "--generate", "2000", "--database", &database])
            .env(
                "SCOUTSTREAM__CACHE__REDIS_URL",
                format!("redis://127.0.0.1:{}", free_port()),
            )
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let output = embedded();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("published 2003 matches to `matches` and 2 player profiles"),
        "{stdout}"
    );
    for group in ["cache   ", "enrich  ", "persist "] {
        assert!(stdout.contains(&format!("group {group}")), "{stdout}");
    }
    assert!(
        stdout.contains("group persist  handled  2005, dead-lettered 0"),
        "{stdout}"
    );
    assert!(stdout.contains("player 120269134 (Cherno Billy): rank tier 80, 1 games, 1 wins, KDA 3.17, GPM 443, XPM 527; heroes: Tusk 1/1"), "{stdout}");
    assert!(
        stdout.contains("team 1375614 (Newbee): 1 games, 1 wins"),
        "{stdout}"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let matches_in = |database: &str| {
        runtime.block_on(async {
            let Store::Sqlite(pool) = Store::connect(database).await.unwrap() else {
                unreachable!()
            };
            let count: i64 = sqlx::query_scalar("SELECT count(*) FROM matches")
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            count
        })
    };
    let after_the_first_run = matches_in(&database);
    runtime.block_on(async {
        let store = Store::connect(&database).await.unwrap();
        let report = store.player_report(109_378_329).await.unwrap().unwrap();
        // retriever_match.json slot 1: Alchemist (73), 6/6/5, 944 GPM; radiant won.
        assert_eq!((report.games, report.wins), (1, 1));
        assert_eq!(report.recent_matches[0].hero_id, 73);
        assert_eq!(report.averages.unwrap().gold_per_min, 944.0);
        // The generated matches go; a second run publishes them again.
        let Store::Sqlite(pool) = &store else {
            unreachable!()
        };
        sqlx::query("DELETE FROM matches WHERE source = 'loadgen'")
            .execute(pool)
            .await
            .unwrap();
        store.close().await;
    });
    assert_eq!(matches_in(&database), after_the_first_run - 2000);
    // The in-memory bus numbers the second run's events from 0 again: the
    // positions the first run left in the database must not hide them.
    let again = embedded();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        matches_in(&database),
        after_the_first_run,
        "the second run's matches are stored"
    );
    std::fs::remove_dir_all(PathBuf::from(&dir)).ok();
}
