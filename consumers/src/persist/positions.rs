//! Exactly-once application. Each write records, in its own transaction, how
//! far its consumer group has applied each partition (`persist_positions`),
//! and leaves out events at or below that position: they are in the tables
//! already. So a crash between the database commit and the bus commit, or a
//! partition's old owner still writing after a rebalance, applies nothing twice.
//!
//! The position rows of a write are locked first, in key order: two writers
//! of one partition take turns, and the second sees what the first applied.
//! A position only moves forward, to the last event of the partition that
//! was written; events the handler rejected before the write (undecodable,
//! invalid) are rejected again when redelivered, so stepping over them loses
//! nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use pipeline::bus::Position;
use sqlx::{Encode, QueryBuilder, Transaction, Type};

use super::backend::Backend;
use super::PersistError;

/// A position as the table orders it: a Kafka offset is `(offset, 0)`, a
/// Redis Streams id `ms-seq` is `(ms, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Applied {
    pub hi: i64,
    pub lo: i64,
}

impl Applied {
    /// Below every real position: a partition nothing was applied from.
    pub const NOTHING: Applied = Applied { hi: -1, lo: -1 };

    pub fn of(position: &Position) -> Result<Self, PersistError> {
        match position {
            Position::Offset(offset) => Ok(Self { hi: *offset, lo: 0 }),
            Position::StreamId(id) => {
                let parse = || -> Option<Self> {
                    let (ms, seq) = id.split_once('-')?;
                    Some(Self {
                        hi: ms.parse().ok()?,
                        lo: seq.parse().ok()?,
                    })
                };
                parse().ok_or_else(|| {
                    PersistError::Invalid(format!("stream id `{id}` is not `ms-seq` in 63 bits"))
                })
            }
        }
    }
}

/// Where an event was read: its group's partition and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub topic: Arc<str>,
    pub partition: i32,
    pub position: Applied,
}

type PartitionKey = (Arc<str>, i32);

/// Locks the position rows of `partitions` (creating missing ones) in key
/// order and returns what each has applied.
pub(crate) async fn claim<DB>(
    tx: &mut Transaction<'static, DB>,
    group: &str,
    partitions: &[PartitionKey],
) -> Result<BTreeMap<PartitionKey, Applied>, PersistError>
where
    DB: Backend,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
{
    let mut applied = BTreeMap::new();
    if partitions.is_empty() {
        return Ok(applied);
    }
    let mut qb = insert_positions(group, partitions.iter().map(|key| (key, Applied::NOTHING)));
    // A no-op update: it locks an existing row, and RETURNING reads it.
    qb.push(
        " ON CONFLICT (group_id, topic, partition) DO UPDATE SET group_id = excluded.group_id \
         RETURNING topic, partition, applied_hi, applied_lo",
    );
    for (topic, partition, hi, lo) in DB::fetch_positions(tx, qb)
        .await
        .map_err(PersistError::database("claim positions"))?
    {
        applied.insert((Arc::from(topic), partition), Applied { hi, lo });
    }
    Ok(applied)
}

/// `INSERT INTO persist_positions … VALUES` of `group`'s `rows`; the caller
/// pushes what to do on conflict.
fn insert_positions<'a, DB>(
    group: &str,
    rows: impl IntoIterator<Item = (&'a PartitionKey, Applied)>,
) -> QueryBuilder<'static, DB>
where
    DB: Backend,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::<'static, DB>::new(
        "INSERT INTO persist_positions (group_id, topic, partition, applied_hi, applied_lo) ",
    );
    qb.push_values(rows, |mut row, ((topic, partition), at)| {
        row.push_bind(group.to_string())
            .push_bind(topic.to_string())
            .push_bind(*partition)
            .push_bind(at.hi)
            .push_bind(at.lo);
    });
    qb
}

/// Moves the claimed positions of `group` forward to `reached`.
pub(crate) async fn advance<DB>(
    tx: &mut Transaction<'static, DB>,
    group: &str,
    reached: &BTreeMap<PartitionKey, Applied>,
) -> Result<(), PersistError>
where
    DB: Backend,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
{
    if reached.is_empty() {
        return Ok(());
    }
    let mut qb = insert_positions(group, reached.iter().map(|(key, at)| (key, *at)));
    qb.push(
        " ON CONFLICT (group_id, topic, partition) DO UPDATE SET \
         applied_hi = excluded.applied_hi, applied_lo = excluded.applied_lo, \
         updated_at = CURRENT_TIMESTAMP",
    );
    DB::execute(tx, qb)
        .await
        .map_err(PersistError::database("advance positions"))
}

/// Sets `group`'s position on one partition, e.g. after its bus position was
/// moved for a replay: what is above it is applied again.
pub(crate) async fn set<DB>(
    pool: &sqlx::Pool<DB>,
    group: &str,
    partition: PartitionKey,
    applied: Applied,
) -> Result<(), PersistError>
where
    DB: Backend,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
{
    let mut tx = DB::begin_write(pool)
        .await
        .map_err(PersistError::database("begin"))?;
    advance(&mut tx, group, &BTreeMap::from([(partition, applied)])).await?;
    tx.commit().await.map_err(PersistError::database("commit"))
}

/// The partitions of `sources`, each once, in key order (the lock order).
pub(crate) fn partitions_of<'a>(sources: impl Iterator<Item = &'a Source>) -> Vec<PartitionKey> {
    let mut keys: Vec<PartitionKey> = sources.map(|s| (s.topic.clone(), s.partition)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_stream_ids_order_as_their_bus_orders_them() {
        let offset = |o| Applied::of(&Position::Offset(o)).expect("an offset");
        let id = |s: &str| Applied::of(&Position::StreamId(s.into())).expect("a stream id");
        assert!(Applied::NOTHING < offset(0));
        assert!(offset(9) < offset(10));
        assert!(Applied::NOTHING < id("0-1"));
        assert!(id("1700000000000-9") < id("1700000000000-10"));
        assert!(id("1700000000000-99") < id("1700000000001-0"));
        assert!(Applied::of(&Position::StreamId("nonsense".into())).is_err());
        assert!(Applied::of(&Position::StreamId("1-18446744073709551615".into())).is_err());
    }
}
