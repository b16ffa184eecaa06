//! Resuming a user's event stream from their history in Redis (`Last-Event-ID`).
//!
//! The worker appends every user event to a capped Redis stream, each entry naming the entry
//! before it (`common::events`). Resuming after entry `L` reads the entries after `L`: when the
//! first of them names `L` as its predecessor (or there are none and `L` is the newest), the
//! client missed exactly those; otherwise entries were trimmed (by length or age) or lost with
//! Redis, and the client is told to resync.

use common::events::{StreamId, history_key};
use common::redis::Redis;
use uuid::Uuid;

use super::client::Frame;

/// Entries read per round trip.
const PAGE: usize = 500;

/// What a resume found.
#[derive(Debug, PartialEq)]
pub enum Resumed {
    /// Everything after the client's last event, oldest first (possibly nothing).
    Complete(Vec<(StreamId, Frame)>),
    /// Events after the client's last one are no longer in the history.
    Gap,
}

/// The history entries of `user` after `after`.
pub async fn since(
    redis: &Redis,
    user: Uuid,
    after: StreamId,
) -> Result<Resumed, redis::RedisError> {
    let key = redis.key(&history_key(user));
    let mut conn = redis.conn().await?;
    let mut found = Vec::new();
    let mut from = after;
    loop {
        let page: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(&key)
            .arg(format!("({from}"))
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut conn)
            .await?;
        let full = page.len() == PAGE;
        for (id, fields) in page {
            let Ok(id) = id.parse::<StreamId>() else {
                continue;
            };
            let (prev, event) = entry_fields(&fields);
            // Only the first entry after `after` tells whether anything between was trimmed.
            if from == after && prev != Some(after.to_string().as_str()) {
                return Ok(Resumed::Gap);
            }
            if let Some(frame) = event.and_then(|event| frame(id, event)) {
                found.push((id, frame));
            }
            from = id;
        }
        if !full {
            break;
        }
    }
    if from != after {
        return Ok(Resumed::Complete(found));
    }
    // Nothing after `after`: complete only if `after` is the newest entry ever written.
    let info: Result<Vec<redis::Value>, _> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(&key)
        .query_async(&mut conn)
        .await;
    let Ok(info) = info else {
        // No history at all (expired, or lost with Redis).
        return Ok(Resumed::Gap);
    };
    let newest = info
        .chunks(2)
        .find(|pair| matches!(&pair[0], redis::Value::BulkString(name) if name == b"last-generated-id"))
        .and_then(|pair| redis::from_redis_value::<String>(pair[1].clone()).ok())
        .and_then(|id| id.parse::<StreamId>().ok());
    Ok(if newest == Some(after) {
        Resumed::Complete(Vec::new())
    } else {
        Resumed::Gap
    })
}

fn entry_fields(fields: &[String]) -> (Option<&str>, Option<&str>) {
    let mut prev = None;
    let mut event = None;
    for pair in fields.chunks(2) {
        if let [name, value] = pair {
            match name.as_str() {
                "prev" => prev = Some(value.as_str()),
                "event" => event = Some(value.as_str()),
                _ => {}
            }
        }
    }
    (prev, event)
}

/// The frame of a history entry: the event as published live, with its `stream_id`.
fn frame(id: StreamId, event: &str) -> Option<Frame> {
    let kind = serde_json::from_str::<serde_json::Value>(event)
        .ok()?
        .get("type")?
        .as_str()?
        .to_owned();
    let rest = event.strip_prefix('{')?;
    Some(Frame {
        event: kind,
        id: Some(id.to_string()),
        data: format!("{{\"stream_id\":\"{id}\",{rest}").into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_entry_becomes_the_frame_a_live_client_would_have_got() {
        let id = StreamId { ms: 7, seq: 2 };
        let frame = frame(id, r#"{"type":"job","id":"x","at":"t","data":{}}"#).expect("test value");
        assert_eq!(frame.event, "job");
        assert_eq!(frame.id.as_deref(), Some("7-2"));
        assert_eq!(
            &*frame.data,
            r#"{"stream_id":"7-2","type":"job","id":"x","at":"t","data":{}}"#
        );
        assert!(super::frame(id, "not json").is_none());
    }
}
