//! Operator commands: move a group's position (`replay`) and work the
//! dead-letter topic (`dlq list|inspect|replay`).

use std::time::{Duration, Instant};

use anyhow::Context;
use consumers::persist::{Applied, Store};
use pipeline::bus::{Bus, Delivery, Record, ResetPosition, ResetTo};
use schemas::{topics, Codec, DeadLetter, MatchCompleted, PlayerProfile};

/// How long a read of the dead-letter topic waits for more before it is done.
const QUIET: Duration = Duration::from_secs(2);

/// Parses `earliest`, `latest`, a unix time in milliseconds, or a time ago:
/// `-` and a duration as humantime reads it (`-30m`, `-2h`, `-1d`, `-1h30m`).
pub fn parse_reset_to(text: &str, now_ms: i64) -> anyhow::Result<ResetTo> {
    Ok(match text {
        "earliest" => ResetTo::Earliest,
        "latest" => ResetTo::Latest,
        ago if ago.starts_with('-') => {
            let ago = humantime::parse_duration(&ago[1..]).with_context(|| {
                format!("`{text}`: expected a time ago such as -30m, -2h or -1d")
            })?;
            ResetTo::Timestamp(now_ms - i64::try_from(ago.as_millis())?)
        }
        ms => ResetTo::Timestamp(ms.parse().with_context(|| {
            format!("`{text}` is not earliest, latest, unix milliseconds or a time ago like -2h")
        })?),
    })
}

pub async fn replay(
    bus: &dyn Bus,
    group: &str,
    topics_in: &[String],
    to: ResetTo,
) -> anyhow::Result<Vec<ResetPosition>> {
    bus.reset_group(group, topics_in, to)
        .await
        .with_context(|| format!("resetting group `{group}` (are its members stopped?)"))
}

/// Persist leaves out what its database says it applied: after its bus
/// positions were moved for a replay, moves those too.
pub async fn move_persist_positions(
    database_url: &str,
    group: &str,
    moved: &[ResetPosition],
) -> anyhow::Result<()> {
    let store = Store::open(database_url).await?;
    for moved in moved {
        if let Some(applied) = applied_before(moved) {
            store
                .set_position(group, &moved.topic, moved.partition, applied)
                .await?;
        }
    }
    store.close().await;
    Ok(())
}

/// What the persist group has applied once its bus position is `moved`:
/// everything before it, so a replay applies the rest again. `None` for Redis
/// Streams' `$` (the end of the stream): the stored position stays.
pub fn applied_before(moved: &ResetPosition) -> Option<Applied> {
    if let Ok(next_offset) = moved.position.parse::<i64>() {
        return Some(Applied {
            hi: next_offset - 1,
            lo: 0,
        });
    }
    // A Redis Streams last-delivered id: entries after it come again.
    let (ms, seq) = moved.position.split_once('-')?;
    Some(Applied {
        hi: ms.parse().ok()?,
        lo: seq.parse::<u64>().ok()?.min(i64::MAX as u64) as i64,
    })
}

/// A dead letter as read from the topic.
pub struct Letter {
    pub delivery: Delivery,
    pub letter: Option<DeadLetter>,
}

/// Every dead letter on the topic, read with a throwaway group that commits
/// nothing a later read would miss.
pub async fn read_all(bus: &dyn Bus, dead_letter_topic: &str) -> anyhow::Result<Vec<Letter>> {
    let group = format!("scoutstream-dlq-reader-{}", uuid::Uuid::new_v4().simple());
    read_group(bus, &group, dead_letter_topic, true).await
}

async fn read_group(
    bus: &dyn Bus,
    group: &str,
    topic: &str,
    ack: bool,
) -> anyhow::Result<Vec<Letter>> {
    let mut subscription = bus.subscribe(group, &[topic.to_string()]).await?;
    let mut letters = read_until_quiet(subscription.as_mut(), ack).await?;
    subscription.close().await?;
    // Partitions arrive in any order: number the letters the same way in every
    // command, so `dlq inspect N` shows the N of `dlq list`.
    letters.sort_by_key(|l| {
        let d = &l.delivery;
        (d.partition, d.offset(), d.timestamp_ms)
    });
    Ok(letters)
}

async fn read_until_quiet(
    subscription: &mut dyn pipeline::bus::Subscription,
    ack: bool,
) -> anyhow::Result<Vec<Letter>> {
    let codec = Codec::default();
    let mut letters = Vec::new();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < QUIET {
        let batch = subscription.poll(500, Duration::from_millis(250)).await?;
        if batch.is_empty() {
            continue;
        }
        quiet_since = Instant::now();
        if ack {
            subscription.ack(&batch).await?;
        }
        letters.extend(batch.into_iter().map(|delivery| Letter {
            letter: codec.decode(&delivery.payload).ok(),
            delivery,
        }));
    }
    Ok(letters)
}

pub fn render_list(letters: &[Letter]) -> String {
    let mut out = format!(
        "{:>4}  {:<10} {:<12} {:<28} {:>8}  error\n",
        "#", "topic", "kind", "source position", "attempts"
    );
    for (index, letter) in letters.iter().enumerate() {
        match &letter.letter {
            Some(l) => out.push_str(&format!(
                "{index:>4}  {:<10} {:<12} {:<28} {:>8}  {}\n",
                l.topic,
                l.error_kind,
                source_position(l),
                l.attempts,
                one_line(&l.error_message)
            )),
            None => out.push_str(&format!(
                "{index:>4}  (not a DeadLetter record: {} bytes)\n",
                letter.delivery.payload.len()
            )),
        }
    }
    out.push_str(&format!("{} dead letters\n", letters.len()));
    out
}

fn source_position(letter: &DeadLetter) -> String {
    match (&letter.offset, &letter.stream_id) {
        (Some(offset), _) => format!("p{} @{offset}", letter.partition.unwrap_or(-1)),
        (None, Some(id)) => format!("p{} {id}", letter.partition.unwrap_or(-1)),
        (None, None) => "?".into(),
    }
}

fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > 80 {
        format!("{}…", line.chars().take(79).collect::<String>())
    } else {
        line.to_string()
    }
}

/// Everything about one dead letter, with its original event decoded by
/// `codec` when it can be.
pub fn render_inspect(letter: &Letter, codec: &Codec) -> String {
    let Some(l) = &letter.letter else {
        return format!(
            "not a DeadLetter record ({} bytes)\n",
            letter.delivery.payload.len()
        );
    };
    let original = match l.topic.as_str() {
        topics::MATCHES => codec
            .decode::<MatchCompleted>(&l.original)
            .ok()
            .and_then(|e| serde_json::to_string_pretty(&e).ok()),
        topics::PLAYERS => codec
            .decode::<PlayerProfile>(&l.original)
            .ok()
            .and_then(|e| serde_json::to_string_pretty(&e).ok()),
        _ => None,
    };
    let original = original
        .unwrap_or_else(|| format!("(undecodable) {}", String::from_utf8_lossy(&l.original)));
    format!(
        "topic:          {}\nposition:       {}\nconsumer group: {}\nerror kind:     {}\nerror:          {}\nattempts:       {}\nfirst seen ms:  {}\nkey:            {}\noriginal ({} bytes):\n{original}\n",
        l.topic,
        source_position(l),
        l.consumer_group,
        l.error_kind,
        l.error_message,
        l.attempts,
        l.first_seen_ms,
        l.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default(),
        l.original.len(),
    )
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct DlqReplayOutcome {
    pub replayed: usize,
    pub passed_over: usize,
}

/// Re-publishes the original bytes of dead letters (of `kind`, if given) to
/// their topic with their key. A replay group remembers how far it got, so a
/// second run replays only letters that arrived since; letters of other kinds
/// are passed over for good by this group.
pub async fn replay_dead_letters(
    bus: &dyn Bus,
    dead_letter_topic: &str,
    replay_group: &str,
    kind: Option<&str>,
) -> anyhow::Result<DlqReplayOutcome> {
    let publisher = bus.publisher().await?;
    let mut subscription = bus
        .subscribe(replay_group, &[dead_letter_topic.to_string()])
        .await?;
    let letters = read_until_quiet(subscription.as_mut(), false).await?;
    let mut outcome = DlqReplayOutcome::default();
    let mut done = Vec::new();
    for letter in letters {
        match letter
            .letter
            .as_ref()
            .filter(|l| kind.is_none_or(|k| k == l.error_kind))
        {
            Some(l) => {
                let record = Record::new(l.key.clone().unwrap_or_default(), l.original.clone());
                publisher
                    .publish_batch(&l.topic, &[record])
                    .await
                    .with_context(|| format!("re-publishing to `{}`", l.topic))?;
                tracing::info!(topic = %l.topic, kind = %l.error_kind, "dead letter replayed");
                outcome.replayed += 1;
            }
            None => outcome.passed_over += 1,
        }
        done.push(letter.delivery);
    }
    // Only now, with every replayed record durable, does the group move past them.
    subscription.ack(&done).await?;
    subscription.close().await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(position: &str) -> ResetPosition {
        ResetPosition {
            topic: topics::MATCHES.into(),
            partition: 0,
            position: position.into(),
        }
    }

    #[test]
    fn a_replay_leaves_applied_only_what_is_before_the_new_bus_position() {
        let applied = |position| applied_before(&moved(position));
        // Kafka and in-memory: the next offset.
        assert_eq!(applied("0"), Some(Applied { hi: -1, lo: 0 }));
        assert_eq!(applied("42"), Some(Applied { hi: 41, lo: 0 }));
        // Redis Streams: the last delivered id (a time reset uses seq u64::MAX).
        assert_eq!(
            applied("1700000000000-3"),
            Some(Applied {
                hi: 1_700_000_000_000,
                lo: 3
            })
        );
        assert_eq!(
            applied("1699999999999-18446744073709551615"),
            Some(Applied {
                hi: 1_699_999_999_999,
                lo: i64::MAX
            })
        );
        assert_eq!(applied("$"), None);
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn reset_targets_read_names_times_and_times_ago() {
        let now = 10_000_000_000;
        assert!(matches!(
            parse_reset_to("earliest", now).unwrap(),
            ResetTo::Earliest
        ));
        assert!(matches!(
            parse_reset_to("latest", now).unwrap(),
            ResetTo::Latest
        ));
        let at = |text| match parse_reset_to(text, now).unwrap() {
            ResetTo::Timestamp(ms) => ms,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(at("1700000000000"), 1_700_000_000_000);
        assert_eq!(at("-30m"), now - 30 * 60_000);
        assert_eq!(at("-2h"), now - 2 * 3_600_000);
        assert_eq!(at("-1d"), now - 86_400_000);
        assert_eq!(at("-1h30m"), now - 90 * 60_000);
        for bad in ["-2x", "-", "yesterday"] {
            let error = parse_reset_to(bad, now).unwrap_err().to_string();
            assert!(error.contains(bad), "{error}");
        }
    }
}
