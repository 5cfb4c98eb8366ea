//! Handler outcomes: whole batches, dead letters, commits only after success, retries.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use pipeline::bus::Record;
use schemas::codec::Codec;
use schemas::DeadLetter;

use crate::common::{eventually, numbered_records, parse_number, unique, Backend, Call, Recorder};
use crate::{config, drain, start, stop, topic_with, WAIT};

/// A handler that takes whole batches gets several partitions in one call,
/// each in order, and its failures are retried partition by partition.
pub async fn whole_batches_keep_order_and_retry_per_partition(backend: Backend) {
    let topic = topic_with(backend, &numbered_records(400, 24)).await;
    let recorder = Arc::new(Recorder {
        whole_batches: true,
        ..Recorder::default()
    });
    recorder.flaky.lock().unwrap().extend([(7, 1), (8, 2)]);
    let group = unique("g");
    let running = start(&topic, &group, recorder.clone(), config(&topic, &group)).await;
    assert!(eventually(WAIT, || recorder.distinct().len() == 400).await);
    let stats = stop(running).await;
    assert_eq!(stats.retries, 3);
    assert_eq!(stats.dead_lettered, 0);
    let calls = recorder.calls.lock().unwrap().clone();
    let partitions_of = |call: &[(i32, Option<usize>)]| -> BTreeSet<i32> {
        call.iter().map(|(partition, _)| *partition).collect()
    };
    assert!(
        calls.iter().any(|call| partitions_of(call).len() > 1),
        "no call held more than one partition"
    );
    // Record 8 is tried three times: once with its batch, then twice alone or
    // with the other failures of its partition, never with other partitions.
    let with_8: Vec<&Call> = calls
        .iter()
        .filter(|call| call.iter().any(|(_, n)| *n == Some(8)))
        .collect();
    assert_eq!(with_8.len(), 3);
    for retry in &with_8[1..] {
        assert_eq!(
            partitions_of(retry).len(),
            1,
            "a retry spanned partitions: {retry:?}"
        );
        assert!(
            retry.iter().all(|(_, n)| matches!(n, Some(7 | 8))),
            "{retry:?}"
        );
    }
    let mut per_key: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    for delivery in recorder.seen.lock().unwrap().iter() {
        let (n, seq) = parse_number(&delivery.payload).unwrap();
        // The retried records come back after their successors: skip them.
        if n != 7 && n != 8 {
            per_key
                .entry(delivery.key.as_deref().unwrap().to_vec())
                .or_default()
                .push(seq);
        }
    }
    for (key, seqs) in per_key {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(
            seqs,
            sorted,
            "key {:?} out of order",
            String::from_utf8_lossy(&key)
        );
    }
}

pub async fn dead_letters_garbage_without_blocking(backend: Backend) {
    let mut records = numbered_records(60, 3);
    let garbage = [
        b"\x00\xff garbage".to_vec(),
        Vec::new(),
        b"{\"not\": \"numbered\"}".to_vec(),
    ];
    for (i, bytes) in garbage.iter().enumerate() {
        // Poison in the middle of each key's run: what follows must still be handled.
        records.insert(10 + i * 20, Record::new(format!("key-{i}"), bytes.clone()));
    }
    let topic = topic_with(backend, &records).await;
    let recorder = Arc::new(Recorder::default());
    let group = unique("g");
    let running = start(&topic, &group, recorder.clone(), config(&topic, &group)).await;
    assert!(eventually(WAIT, || recorder.distinct().len() == 60).await);
    let stats = stop(running).await;
    assert_eq!(stats.dead_lettered, 3);
    let letters = drain(
        &topic,
        &unique("dlq-reader"),
        &topic.dead_letters,
        Duration::from_secs(3),
    )
    .await;
    let codec = Codec::default();
    let mut decoded: Vec<DeadLetter> = letters
        .iter()
        .map(|d| codec.decode::<DeadLetter>(&d.payload).unwrap())
        .collect();
    decoded.sort_by(|a, b| a.original.cmp(&b.original));
    let mut expected = garbage.to_vec();
    expected.sort();
    assert_eq!(
        decoded
            .iter()
            .map(|l| l.original.clone())
            .collect::<Vec<_>>(),
        expected
    );
    for letter in &decoded {
        assert_eq!(letter.topic, topic.name);
        assert_eq!(letter.consumer_group, group);
        assert_eq!(letter.error_kind, "decode");
        assert_eq!(letter.attempts, 1);
        assert!(letter.offset.is_some() || letter.stream_id.is_some());
    }
}

pub async fn commits_only_after_success(backend: Backend) {
    let topic = topic_with(backend, &numbered_records(40, 4)).await;
    let group = unique("g");
    // Every record fails retriably for longer than the run lasts: nothing may be acked.
    let failing = Arc::new(Recorder::default());
    failing
        .flaky
        .lock()
        .unwrap()
        .extend((0..40).map(|n| (n, u32::MAX)));
    let mut patient = config(&topic, &group);
    patient.max_attempts = u32::MAX;
    let running = start(&topic, &group, failing.clone(), patient).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = stop(running).await;
    assert!(stats.retries > 0, "the handler was tried");
    assert_eq!(stats.handled, 0);
    // A second member of the group gets every record again, then handles them.
    let recorder = Arc::new(Recorder::default());
    let running = start(&topic, &group, recorder.clone(), config(&topic, &group)).await;
    assert!(
        eventually(WAIT, || recorder.distinct().len() == 40).await,
        "got {} again",
        recorder.distinct().len()
    );
    stop(running).await;
    // Those were acked: a third member finds nothing left.
    let left = drain(&topic, &group, &topic.name, Duration::from_secs(4)).await;
    assert!(
        left.is_empty(),
        "{} records were redelivered after a successful ack",
        left.len()
    );
}

pub async fn retries_then_succeeds(backend: Backend) {
    let topic = topic_with(backend, &numbered_records(20, 2)).await;
    let recorder = Arc::new(Recorder::default());
    recorder.flaky.lock().unwrap().insert(5, 2);
    let group = unique("g");
    let running = start(&topic, &group, recorder.clone(), config(&topic, &group)).await;
    assert!(eventually(WAIT, || recorder.distinct().len() == 20).await);
    let stats = stop(running).await;
    assert_eq!(stats.retries, 2);
    assert_eq!(stats.dead_lettered, 0);
}
