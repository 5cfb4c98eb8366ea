//! A bare XREADGROUP/XACK loop doing what our Redis Streams bus does.

use std::time::{Duration, Instant};

use pipeline::bus::BusError;

/// Reads every entry of `streams` with XREADGROUP (a fresh group) and XACKs it;
/// returns entries per second.
pub async fn raw_redis_consume(
    url: &str,
    streams: &[String],
    events: usize,
    timeout: Duration,
) -> Result<f64, BusError> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let group = format!("raw-baseline-{}", uuid::Uuid::new_v4().simple());
    for stream in streams {
        let () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(&group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await?;
    }
    let started = Instant::now();
    let mut got = 0;
    while got < events && started.elapsed() < timeout {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(&group)
            .arg("raw")
            .arg("COUNT")
            .arg(1000)
            .arg("STREAMS")
            .arg(streams);
        for _ in streams {
            read.arg(">");
        }
        let reply: Option<redis::streams::StreamReadReply> = read.query_async(&mut conn).await?;
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let ids: Vec<&str> = key.ids.iter().map(|i| i.id.as_str()).collect();
            got += ids.len();
            if !ids.is_empty() {
                let _: i64 = redis::cmd("XACK")
                    .arg(&key.key)
                    .arg(&group)
                    .arg(&ids)
                    .query_async(&mut conn)
                    .await?;
            }
        }
    }
    for stream in streams {
        let _: i64 = redis::cmd("XGROUP")
            .arg("DESTROY")
            .arg(stream)
            .arg(&group)
            .query_async(&mut conn)
            .await?;
    }
    Ok(got as f64 / started.elapsed().as_secs_f64())
}
