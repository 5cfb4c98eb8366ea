//! What the chaos run must show once the faults are over and every group has
//! caught up: nothing missing, nothing applied twice, the later version of
//! each match kept, one dead letter per poison event with its reason and
//! none for a good event, and hero pools equal to a full recount.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use pipeline::bus::{Bus, Delivery};
use schemas::{topics, Codec, DeadLetter};
use sqlx::{PgPool, Row};

use crate::workload::{Published, POISON_ID_RANGE};

pub const PERSIST_GROUP: &str = "chaos-persist";

/// Counts each write of a `matches` row: an insert or an update.
pub const WRITE_COUNTER: &str = "
    CREATE TABLE chaos_match_writes (match_id bigint PRIMARY KEY, writes integer NOT NULL);
    CREATE FUNCTION chaos_count_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO chaos_match_writes VALUES (NEW.match_id, 1)
      ON CONFLICT (match_id) DO UPDATE SET writes = chaos_match_writes.writes + 1;
      RETURN NEW;
    END $$;
    CREATE TRIGGER chaos_count_write AFTER INSERT OR UPDATE ON matches
    FOR EACH ROW EXECUTE FUNCTION chaos_count_write();";

/// The checker's findings; `failures` empty means the run passed.
#[derive(Default)]
pub struct Findings {
    pub failures: Vec<String>,
    pub missing: usize,
    pub applied_twice: usize,
    pub order_violations: usize,
    pub dead_letters: usize,
    pub dead_letters_redelivered: usize,
    pub hero_pool_mismatches: i64,
}

impl Findings {
    fn expect(&mut self, ok: bool, failure: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(failure());
        }
    }
}

pub async fn check(pool: &PgPool, bus: &Arc<dyn Bus>, published: &Published) -> Findings {
    let mut findings = Findings::default();
    let on_the_bus = if published.resent_chunks > 0 {
        Some(versions_on_the_bus(bus).await)
    } else {
        None
    };
    rows(pool, published, on_the_bus.as_ref(), &mut findings).await;
    dead_letters(bus, published, &mut findings).await;
    hero_pools(pool, &mut findings).await;
    findings
}

/// How many times each match id is on the `matches` topic: after a resent
/// chunk, the versions the group was given to apply.
async fn versions_on_the_bus(bus: &Arc<dyn Bus>) -> BTreeMap<i64, u32> {
    let mut versions: BTreeMap<i64, u32> = BTreeMap::new();
    for delivery in read_to_the_end(bus, topics::MATCHES).await {
        let id = delivery.key.as_deref().and_then(|key| {
            let key = std::str::from_utf8(key).ok()?;
            key.parse::<i64>().ok()
        });
        if let Some(id) = id {
            *versions.entry(id).or_default() += 1;
        }
    }
    versions
}

async fn rows(
    pool: &PgPool,
    published: &Published,
    on_the_bus: Option<&BTreeMap<i64, u32>>,
    findings: &mut Findings,
) {
    let stored: BTreeMap<i64, (i32, i32)> = sqlx::query(
        "SELECT m.match_id, m.duration_secs, coalesce(w.writes, 0) \
         FROM matches m LEFT JOIN chaos_match_writes w USING (match_id)",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get::<i64, _>(0), (row.get(1), row.get(2))))
    .collect();
    let mut lost_by_the_bus = 0;
    for (id, (versions, last_duration)) in &published.matches {
        let mut versions = *versions;
        if let Some(on_the_bus) = on_the_bus {
            let there = on_the_bus.get(id).copied().unwrap_or(0);
            lost_by_the_bus += usize::from(there < versions);
            versions = versions.max(there);
        }
        match stored.get(id) {
            None => findings.missing += 1,
            Some((duration, writes)) => {
                if *writes > versions as i32 {
                    findings.applied_twice += 1;
                }
                if duration != last_duration {
                    findings.order_violations += 1;
                }
            }
        }
    }
    let poison_stored = stored
        .keys()
        .filter(|id| (POISON_ID_RANGE.0..POISON_ID_RANGE.1).contains(*id))
        .count();
    let player_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM player_matches")
        .fetch_one(pool)
        .await
        .unwrap();
    let (missing, twice, order) = (
        findings.missing,
        findings.applied_twice,
        findings.order_violations,
    );
    findings.expect(lost_by_the_bus == 0, || {
        format!("{lost_by_the_bus} matches published but no longer on the bus")
    });
    findings.expect(missing == 0, || {
        format!("{missing} matches missing from the database")
    });
    findings.expect(twice == 0, || {
        format!("{twice} matches applied more often than published")
    });
    findings.expect(order == 0, || {
        format!("{order} matches kept an older version")
    });
    findings.expect(poison_stored == 0, || {
        format!("{poison_stored} poison matches were stored")
    });
    findings.expect(player_rows == published.player_rows, || {
        format!(
            "{player_rows} player rows, {} published",
            published.player_rows
        )
    });
}

/// Persist's dead letters: exactly the poison keys, each with its reason. A
/// poison event redelivered after a kill may be dead-lettered again (at least
/// once); those copies are counted, not failed.
async fn dead_letters(bus: &Arc<dyn Bus>, published: &Published, findings: &mut Findings) {
    let letters = read_dead_letters(bus).await;
    let mut seen: BTreeMap<String, Vec<DeadLetter>> = BTreeMap::new();
    for letter in letters
        .into_iter()
        .filter(|l| l.consumer_group == PERSIST_GROUP)
    {
        let key = String::from_utf8_lossy(letter.key.as_deref().unwrap_or_default()).to_string();
        seen.entry(key).or_default().push(letter);
    }
    findings.dead_letters = seen.len();
    findings.dead_letters_redelivered = seen.values().map(|l| l.len() - 1).sum();
    let expected: BTreeSet<&String> = published.poison.keys().collect();
    let got: BTreeSet<&String> = seen.keys().collect();
    let good_dead: Vec<&&String> = got.difference(&expected).collect();
    let poison_alive: Vec<&&String> = expected.difference(&got).collect();
    findings.expect(good_dead.is_empty(), || {
        format!(
            "{} good events dead-lettered, e.g. {:?}",
            good_dead.len(),
            good_dead.first()
        )
    });
    findings.expect(poison_alive.is_empty(), || {
        format!(
            "{} poison events without a dead letter, e.g. {:?}",
            poison_alive.len(),
            poison_alive.first()
        )
    });
    for (key, kind) in &published.poison {
        let Some(letters) = seen.get(key) else {
            continue;
        };
        let wrong = letters
            .iter()
            .find(|l| l.error_kind != kind.expected_error_kind());
        findings.expect(wrong.is_none(), || {
            let l = wrong.unwrap();
            format!(
                "{key} ({kind:?}) dead-lettered as {}: {}",
                l.error_kind, l.error_message
            )
        });
    }
}

/// Everything on the dead-letter topic, read by a group of the checker's own.
async fn read_dead_letters(bus: &Arc<dyn Bus>) -> Vec<DeadLetter> {
    let codec = Codec::default();
    read_to_the_end(bus, topics::DEAD_LETTERS)
        .await
        .iter()
        .map(|d| codec.decode::<DeadLetter>(&d.payload).unwrap())
        .collect()
}

/// Every record of `topic`, read by a group of the checker's own.
async fn read_to_the_end(bus: &Arc<dyn Bus>, topic: &str) -> Vec<Delivery> {
    let group = format!("chaos-checker-{topic}");
    let mut member = bus.subscribe(&group, &[topic.to_string()]).await.unwrap();
    let mut records = Vec::new();
    let mut quiet = 0;
    // Quiet for 5 s after partitions are owned: the topic is read to its end.
    while quiet < 10 {
        let batch = member.poll(1000, Duration::from_millis(500)).await.unwrap();
        if batch.is_empty() && !member.assignment().is_empty() {
            quiet += 1;
        } else if !batch.is_empty() {
            quiet = 0;
        }
        records.extend(batch);
    }
    member.close().await.unwrap();
    records
}

/// Every hero-pool row equals a recount of the player rows it summarises.
async fn hero_pools(pool: &PgPool, findings: &mut Findings) {
    let mismatches: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ( \
           SELECT account_id, hero_id, count(*) AS games, \
                  sum(CASE WHEN won THEN 1 ELSE 0 END) AS wins \
           FROM player_matches WHERE account_id IS NOT NULL GROUP BY 1, 2) r \
         FULL JOIN hero_pool h USING (account_id, hero_id) \
         WHERE coalesce(h.games, 0) <> coalesce(r.games, 0) \
            OR coalesce(h.wins, 0) <> coalesce(r.wins, 0)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    findings.hero_pool_mismatches = mismatches;
    findings.expect(mismatches == 0, || {
        format!("{mismatches} hero-pool rows differ from a full recount")
    });
}
