//! How many of the run's matches are in the database, counted without
//! rescanning the ones already seen there. A plain `count(*)` over the run's
//! ids visits every row's heap tuple (the visibility map of fresh pages is
//! not set): 67 ms at 200,000 matches, four times a second, on the database
//! the groups are writing to, so the bench slowed what it measured.

use consumers::persist::Store;

/// Ids are counted in slices of this many; a slice found complete is never
/// counted again.
const SLICE: i64 = 1_000;

const COUNT_BY_SLICE: &str = "SELECT (match_id - $1) / $2, count(*) FROM matches \
     WHERE match_id >= $1 AND match_id < $3 GROUP BY 1 ORDER BY 1";

/// Counts the matches with ids in `first_id..first_id + matches`.
pub(super) struct PersistedCounter {
    /// Every id below it (from `first_id` on) is in the database.
    frontier: i64,
    first_id: i64,
    end: i64,
}

impl PersistedCounter {
    pub fn new(first_id: i64, matches: usize) -> Self {
        Self {
            frontier: first_id,
            first_id,
            end: first_id + matches as i64,
        }
    }

    /// The run's matches in the database now; `None` when the query failed.
    pub async fn count(&mut self, store: &Store) -> Option<u64> {
        let slices = self.count_slices(store).await?;
        let above: i64 = slices.iter().map(|(_, n)| n).sum();
        let below = self.frontier - self.first_id;
        self.advance(&slices);
        u64::try_from(below + above).ok()
    }

    /// `(slice from the frontier, matches in it)`, in slice order.
    async fn count_slices(&self, store: &Store) -> Option<Vec<(i64, i64)>> {
        match store {
            Store::Postgres(pool) => sqlx::query_as(COUNT_BY_SLICE)
                .bind(self.frontier)
                .bind(SLICE)
                .bind(self.end)
                .fetch_all(pool)
                .await
                .ok(),
            Store::Sqlite(pool) => sqlx::query_as(COUNT_BY_SLICE)
                .bind(self.frontier)
                .bind(SLICE)
                .bind(self.end)
                .fetch_all(pool)
                .await
                .ok(),
        }
    }

    /// Moves the frontier past the complete slices right above it.
    fn advance(&mut self, slices: &[(i64, i64)]) {
        let base = self.frontier;
        for (k, &(slice, matches)) in (0_i64..).zip(slices) {
            let start = base + k * SLICE;
            let len = SLICE.min(self.end - start);
            if slice != k || matches < len {
                break;
            }
            self.frontier = start + len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("db").display());
        let store = Store::connect(&url).await.expect("open");
        store.migrate().await.expect("migrate");
        (store, dir)
    }

    async fn insert(store: &Store, ids: impl IntoIterator<Item = i64>) {
        let Store::Sqlite(pool) = store else {
            unreachable!("a SQLite store")
        };
        for id in ids {
            sqlx::query(
                "INSERT INTO matches (match_id, start_time, duration_secs, radiant_win, \
                 game_mode, lobby_type, cluster, source, source_rank) \
                 VALUES (?, 0, 0, 1, 0, 0, 0, 'test', 0)",
            )
            .bind(id)
            .execute(pool)
            .await
            .expect("insert");
        }
    }

    /// Matches land out of order, as partitions drain at their own pace; the
    /// count is exact at every step and the frontier only passes full slices.
    #[tokio::test]
    async fn counts_exactly_while_the_frontier_passes_only_complete_slices() {
        let (store, _dir) = store().await;
        let first = 5_000_000;
        let mut counter = PersistedCounter::new(first, 2_500);
        assert_eq!(counter.count(&store).await, Some(0));

        insert(&store, (first..first + 1_000).filter(|id| id % 2 == 0)).await;
        insert(&store, first + 1_000..first + 2_000).await;
        insert(&store, [first + 2_499, first + 2_500, first - 1]).await;
        assert_eq!(counter.count(&store).await, Some(500 + 1_000 + 1));
        assert_eq!(counter.frontier, first, "slice 0 is half full");

        insert(&store, (first..first + 1_000).filter(|id| id % 2 == 1)).await;
        assert_eq!(counter.count(&store).await, Some(2_001));
        assert_eq!(counter.frontier, first + 2_000, "slices 0 and 1 are full");

        insert(&store, first + 2_000..first + 2_499).await;
        assert_eq!(counter.count(&store).await, Some(2_500));
        assert_eq!(
            counter.frontier,
            first + 2_500,
            "the short last slice is full"
        );
        assert_eq!(counter.count(&store).await, Some(2_500));
    }
}
