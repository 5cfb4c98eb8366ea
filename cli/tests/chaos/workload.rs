//! What the chaos run publishes, and what it expects of it: generated
//! matches (1% of them published twice, a later version with a longer
//! duration that must win), and 1% poison events of five kinds that must each
//! become one dead letter of persist with the right reason.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline::bus::{Publisher, Record};
use producers::loadgen::generate_matches;
use schemas::{topics, Codec, Encoding, MatchCompleted};

/// Valid matches get ids from here on, poison matches from [`POISON_IDS`].
const VALID_IDS: i64 = 9_000_000_000;
const POISON_IDS: i64 = 9_900_000_000;
const CHUNK: usize = 500;

/// The five kinds of poison, and the `error_kind` persist must give each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Poison {
    BadAvro,
    Truncated,
    NulInName,
    DuplicateSlot,
    WrongType,
}

impl Poison {
    const ALL: [Poison; 5] = [
        Poison::BadAvro,
        Poison::Truncated,
        Poison::NulInName,
        Poison::DuplicateSlot,
        Poison::WrongType,
    ];

    pub fn expected_error_kind(self) -> &'static str {
        match self {
            Poison::BadAvro | Poison::Truncated | Poison::WrongType => "decode",
            // Validation catches both before the database sees them.
            Poison::NulInName | Poison::DuplicateSlot => "invalid",
        }
    }
}

/// What was published, for the checker.
#[derive(Default)]
pub struct Published {
    /// Valid match id → (versions published, duration of the last one).
    pub matches: BTreeMap<i64, (u32, i32)>,
    /// Poison event key → its kind.
    pub poison: BTreeMap<String, Poison>,
    pub player_rows: i64,
    pub events: usize,
    /// Chunks sent again after a failed publish: some of their events may be
    /// on the bus twice, which the checker then counts there.
    pub resent_chunks: usize,
}

/// Publishes `count` matches (plus the second versions and the poison) at an
/// even pace over `over`.
pub async fn publish(publisher: Arc<dyn Publisher>, count: usize, over: Duration) -> Published {
    let codec = Codec::default();
    let mut published = Published::default();
    let chunks = count.div_ceil(CHUNK);
    let started = Instant::now();
    let mut held_back: Vec<MatchCompleted> = Vec::new();
    for chunk in 0..chunks {
        let size = CHUNK.min(count - chunk * CHUNK);
        let mut matches = generate_matches(size, 1_000 + chunk as u64);
        for (i, m) in matches.iter_mut().enumerate() {
            m.match_id = VALID_IDS + (chunk * CHUNK + i) as i64;
        }
        let mut records = Vec::with_capacity(size + size / 50 + 2);
        // Last chunk's second versions go out first: later than their first.
        for m in held_back.drain(..) {
            records.push(record(&codec, &m));
            published
                .matches
                .entry(m.match_id)
                .and_modify(|e| *e = (e.0 + 1, m.duration_secs));
        }
        for (i, m) in matches.iter().enumerate() {
            records.push(record(&codec, m));
            published.matches.insert(m.match_id, (1, m.duration_secs));
            published.player_rows += m.players.len() as i64;
            let n = chunk * CHUNK + i;
            if n % 100 == 50 {
                let mut later = m.clone();
                later.duration_secs += 60;
                held_back.push(later);
            }
            if n % 100 == 99 {
                let kind = Poison::ALL[(n / 100) % Poison::ALL.len()];
                let key = format!("poison-{n}");
                records.push(Record::new(key.clone(), poison_payload(&codec, kind, m, n)));
                published.poison.insert(key, kind);
            }
        }
        published.resent_chunks += publish_chunk(publisher.as_ref(), &records).await;
        published.events += records.len();
        let due = over.mul_f64((chunk + 1) as f64 / chunks as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    let rest: Vec<Record> = held_back.iter().map(|m| record(&codec, m)).collect();
    for m in held_back {
        published
            .matches
            .entry(m.match_id)
            .and_modify(|e| *e = (e.0 + 1, m.duration_secs));
    }
    published.resent_chunks += publish_chunk(publisher.as_ref(), &rest).await;
    published.events += rest.len();
    published
}

/// Publishes `records`, again after a failure until it goes through (as a
/// producer would); returns how many times it sent them again. librdkafka
/// rides out a broker restart by itself (`message.timeout.ms`); Redis Streams'
/// publisher fails while Redis is down, and a batch cut off half way may
/// put some events on the bus twice.
async fn publish_chunk(publisher: &dyn Publisher, records: &[Record]) -> usize {
    const GIVE_UP: Duration = Duration::from_secs(300);
    if records.is_empty() {
        return 0;
    }
    let started = Instant::now();
    let mut resent = 0;
    while let Err(err) = publisher.publish_batch(topics::MATCHES, records).await {
        assert!(
            started.elapsed() < GIVE_UP,
            "publishing did not get through in {GIVE_UP:?}: {err}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        resent += 1;
    }
    resent
}

fn record(codec: &Codec, m: &MatchCompleted) -> Record {
    let payload = codec.encode(m, Encoding::SingleObject).unwrap();
    Record::new(topics::match_key(m.match_id), payload)
}

fn poison_payload(codec: &Codec, kind: Poison, template: &MatchCompleted, n: usize) -> Vec<u8> {
    let mut m = template.clone();
    m.match_id = POISON_IDS + n as i64;
    match kind {
        // The single-object marker, then bytes no schema reads.
        Poison::BadAvro => [&[0xC3, 0x01][..], &[0xFF; 40]].concat(),
        Poison::Truncated => {
            let whole = codec.encode(&m, Encoding::SingleObject).unwrap();
            whole[..whole.len() / 2].to_vec()
        }
        Poison::NulInName => {
            m.players[0].persona_name = Some("nul\0name".into());
            codec.encode(&m, Encoding::SingleObject).unwrap()
        }
        Poison::DuplicateSlot => {
            m.players[1].player_slot = m.players[0].player_slot;
            codec.encode(&m, Encoding::SingleObject).unwrap()
        }
        Poison::WrongType => {
            let mut json: serde_json::Value = serde_json::to_value(&m).unwrap();
            json["match_id"] = serde_json::Value::String("not a number".into());
            serde_json::to_vec(&json).unwrap()
        }
    }
}

/// Poison match ids, which must never reach the tables.
pub const POISON_ID_RANGE: (i64, i64) = (POISON_IDS, POISON_IDS + 100_000_000);
