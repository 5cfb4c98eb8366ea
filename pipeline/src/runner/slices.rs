//! A batch cut into one slice per topic-partition, each in delivery order.

use crate::bus::Delivery;

/// Splits a batch into one slice per topic-partition, in order. Deliveries
/// come in runs of one partition; when no partition has two runs, the runs are
/// cut off the batch whole (one copy each, none for the first).
pub(super) fn into_partition_slices(mut batch: Vec<Delivery>) -> Vec<Vec<Delivery>> {
    let starts = run_starts(&batch);
    let distinct = starts.iter().enumerate().all(|(i, &a)| {
        starts[..i]
            .iter()
            .all(|&b| !same_partition(&batch[a], &batch[b]))
    });
    if !distinct {
        return regroup(batch);
    }
    let mut slices: Vec<Vec<Delivery>> = starts
        .iter()
        .skip(1)
        .rev()
        .map(|&start| batch.split_off(start))
        .collect();
    slices.push(batch);
    slices.reverse();
    slices
}

fn same_partition(a: &Delivery, b: &Delivery) -> bool {
    a.partition == b.partition && a.topic == b.topic
}

/// Where each run of one topic-partition begins.
fn run_starts(batch: &[Delivery]) -> Vec<usize> {
    let mut starts = Vec::new();
    for (i, delivery) in batch.iter().enumerate() {
        if i == 0 || !same_partition(&batch[i - 1], delivery) {
            starts.push(i);
        }
    }
    starts
}

/// The general case: a partition's runs are interleaved with others'.
fn regroup(batch: Vec<Delivery>) -> Vec<Vec<Delivery>> {
    let mut slices: Vec<Vec<Delivery>> = Vec::new();
    for delivery in batch {
        match slices.iter_mut().find(|s| same_partition(&s[0], &delivery)) {
            Some(slice) => slice.push(delivery),
            None => slices.push(vec![delivery]),
        }
    }
    slices
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Position;

    fn delivery(topic: &str, partition: i32, offset: i64) -> Delivery {
        Delivery {
            topic: topic.into(),
            partition,
            position: Position::Offset(offset),
            key: None,
            payload: Default::default(),
            timestamp_ms: None,
        }
    }

    fn shape(slices: &[Vec<Delivery>]) -> Vec<Vec<(String, i32, i64)>> {
        slices
            .iter()
            .map(|slice| {
                slice
                    .iter()
                    .map(|d| (d.topic.to_string(), d.partition, d.offset().unwrap_or(-1)))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn runs_of_distinct_partitions_become_slices_in_order() {
        let batch = vec![
            delivery("m", 1, 10),
            delivery("m", 1, 11),
            delivery("m", 0, 5),
            delivery("p", 1, 7),
            delivery("p", 1, 8),
        ];
        let slices = into_partition_slices(batch);
        assert_eq!(
            shape(&slices),
            vec![
                vec![("m".into(), 1, 10), ("m".into(), 1, 11)],
                vec![("m".into(), 0, 5)],
                vec![("p".into(), 1, 7), ("p".into(), 1, 8)],
            ]
        );
    }

    #[test]
    fn interleaved_runs_of_one_partition_join_one_slice_in_order() {
        let batch = vec![
            delivery("m", 0, 1),
            delivery("m", 1, 1),
            delivery("m", 0, 2),
            delivery("m", 1, 2),
            delivery("m", 0, 3),
        ];
        let slices = into_partition_slices(batch);
        assert_eq!(
            shape(&slices),
            vec![
                vec![("m".into(), 0, 1), ("m".into(), 0, 2), ("m".into(), 0, 3)],
                vec![("m".into(), 1, 1), ("m".into(), 1, 2)],
            ]
        );
    }

    #[test]
    fn one_partition_is_one_slice() {
        let slices = into_partition_slices(vec![delivery("m", 3, 1), delivery("m", 3, 2)]);
        assert_eq!(
            shape(&slices),
            vec![vec![("m".into(), 3, 1), ("m".into(), 3, 2)]]
        );
    }
}
