//! The fake OpenDota: a local axum server the tests tell to fail or hang.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// What the fake OpenDota does with the next requests.
#[derive(Clone, Default)]
pub(crate) struct Upstream {
    pub(crate) hits: Arc<AtomicU32>,
    /// Answer 500 to this many requests first.
    pub(crate) fail_first: Arc<AtomicU32>,
    /// When not 0, answer every request with this status.
    pub(crate) always: Arc<AtomicU16>,
    /// Hang the next request (a worker killed mid-call).
    pub(crate) hang_next: Arc<AtomicBool>,
    /// Set when a hung request is dropped (its caller went away).
    pub(crate) hang_dropped: Arc<AtomicBool>,
    /// Requests per account id.
    pub(crate) per_account: Arc<std::sync::Mutex<HashMap<i64, u32>>>,
}

impl Upstream {
    pub(crate) fn hits(&self) -> u32 {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn player_route(State(up): State<Upstream>, Path(id): Path<i64>) -> Response {
    up.hits.fetch_add(1, Ordering::SeqCst);
    *up.per_account.lock().unwrap().entry(id).or_default() += 1;
    if up.hang_next.swap(false, Ordering::SeqCst) {
        /// Marks the hung request dropped when its future is.
        struct OnDrop(Arc<AtomicBool>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _dropped = OnDrop(up.hang_dropped.clone());
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    let always = up.always.load(Ordering::SeqCst);
    if always != 0 {
        return StatusCode::from_u16(always).unwrap().into_response();
    }
    let failing = up
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    Json(json!({
        "profile": {
            "account_id": id,
            "personaname": format!("player {id}"),
            "avatarfull": "https://avatars.example/full.jpg",
            "profileurl": format!("https://steamcommunity.com/profiles/{id}/"),
            "loccountrycode": "SE",
            "plus": true
        },
        "rank_tier": 75,
        "leaderboard_rank": 1234,
        "competitive_rank": null
    }))
    .into_response()
}

/// Serves `router` on 127.0.0.1:0; returns its base URL.
pub(crate) async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

/// OpenDota's `/matches/{id}`: the match of `details_api.json` (a bare match
/// object, as OpenDota answers), 404 for any other id.
async fn match_route(State(up): State<Upstream>, Path(id): Path<i64>) -> Response {
    up.hits.fetch_add(1, Ordering::SeqCst);
    let path = producers::ingest::shared_data_dir().join("opendota/details_api.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let found = &file["result"];
    if found["match_id"].as_i64() != Some(id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    Json(found.clone()).into_response()
}

pub(crate) async fn start_upstream() -> (Upstream, String) {
    let upstream = Upstream::default();
    let router = Router::new()
        .route("/api/players/{id}", get(player_route))
        .route("/api/matches/{id}", get(match_route))
        .with_state(upstream.clone());
    let base = format!("{}/api", serve(router).await);
    (upstream, base)
}
