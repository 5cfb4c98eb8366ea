//! Backend-independent and PostgreSQL-only tests.

use consumers::persist::{PersistError, Store};

use super::*;
use crate::tables::*;

// ---------------------------------------------------------------------------
// Backend-independent and PostgreSQL-only.

#[tokio::test]
async fn connect_rejects_unknown_schemes() {
    let err = Store::connect("mysql://root:secret@localhost/db")
        .await
        .unwrap_err();
    assert!(matches!(err, PersistError::UnsupportedUrl(_)), "{err}");
    assert!(!err.is_retriable());
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn sqlite_in_memory_keeps_its_data() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store.write(&all_fixtures()).await.unwrap();
    // The pool must hand back the one connection that holds the database.
    for _ in 0..3 {
        assert_eq!(count(&store, "player_matches").await, 20);
    }
    let report = store.player_report(CHERNO_BILLY).await.unwrap().unwrap();
    assert_eq!(report.rank_tier, Some(80));
}
