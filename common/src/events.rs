//! Events the worker publishes on Redis pub/sub for the API processes to fan out.
//!
//! Channels: `prices` (price ticks) and `user:{user_id}` (job status changes, notifications),
//! both under the deployment's key prefix. Payload: JSON `{type, id, at, data}`; a user's
//! event also carries `stream_id`, its position in that user's event history.
//!
//! The history is a Redis stream per user (`user-events:{user_id}`), capped by length and age
//! ([`HistoryConfig`]). Each entry records the id of the entry written before it (`prev`), so a
//! reader resuming after entry `L` knows it has everything when the first entry after `L` names
//! `L` as its predecessor, and knows it missed something otherwise, whatever was trimmed.
//! Appending and publishing happen in one script: the live order is the history's order.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use group_commit::{BatchError, Batcher, Limits};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::config::parse_duration;
use crate::redis::Redis;

/// The channel of price ticks.
pub const PRICES_CHANNEL: &str = "prices";

/// The channel of one user's events.
pub fn user_channel(user_id: Uuid) -> String {
    format!("user:{user_id}")
}

/// The key (under the prefix) of one user's event history.
pub fn history_key(user_id: Uuid) -> String {
    format!("user-events:{user_id}")
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened, e.g. `prices` or `job`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Unique id (UUIDv7), so receivers can drop duplicates.
    pub id: Uuid,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The details.
    pub data: Value,
}

impl Event {
    /// A new event of `kind` happening now.
    pub fn new(kind: impl Into<String>, data: Value) -> Self {
        Self {
            kind: kind.into(),
            id: Uuid::now_v7(),
            at: Utc::now(),
            data,
        }
    }
}

/// An event as it travels on a channel: the event, plus its position in the user's history
/// for user events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The event.
    #[serde(flatten)]
    pub event: Event,
    /// Where the event stands in its user's history (absent on `prices`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<StreamId>,
}

/// A Redis stream entry id (`<milliseconds>-<sequence>`), ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds since the epoch (Redis's clock when the entry was added).
    pub ms: u64,
    /// Position among the entries of that millisecond.
    pub seq: u64,
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A string that is not a stream entry id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an event id")]
pub struct NotAStreamId;

impl FromStr for StreamId {
    type Err = NotAStreamId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (ms, seq) = text.split_once('-').ok_or(NotAStreamId)?;
        let digits = |part: &str| {
            if part.is_empty() || part.len() > 20 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(NotAStreamId);
            }
            part.parse::<u64>().map_err(|_| NotAStreamId)
        };
        Ok(Self {
            ms: digits(ms)?,
            seq: digits(seq)?,
        })
    }
}

impl Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How much of each user's event history is kept for clients that reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct HistoryConfig {
    /// Events kept per user for resuming streams (`Last-Event-ID`); older ones are trimmed.
    #[arg(
        long = "event-history-length",
        env = "EVENT_HISTORY_LENGTH",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub max_len: u64,

    /// Longest an event is kept in a user's history.
    #[arg(long = "event-history-age", env = "EVENT_HISTORY_AGE", default_value = "24h", value_parser = parse_duration)]
    pub max_age: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            max_len: 1000,
            max_age: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// Appends to users' histories and publishes each event on its user's channel, atomically per
/// event, so that the live order equals the history's order and every live event has its
/// history id. Several events per call: the worker's events of one moment share a script call.
/// KEYS: the history stream of each event; ARGV: max length, max age (ms), then per event its
/// channel and its JSON (an object). Returns each event's history id, in order.
const APPEND_AND_PUBLISH: &str = r#"
local max_len, max_age = ARGV[1], tonumber(ARGV[2])
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - max_age
local ids, newest = {}, {}
for i, stream in ipairs(KEYS) do
  local channel, event = ARGV[2 * i + 1], ARGV[2 * i + 2]
  -- The newest entry's id is the stream's last id: entries are never deleted one by one, and
  -- trimming always keeps the entry just added. A stream met earlier in this call has its
  -- newest id at hand.
  local prev = newest[stream]
  if not prev then
    local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
    prev = last[1] and last[1][1] or ''
  end
  local id = redis.call('XADD', stream, 'MAXLEN', max_len, '*', 'prev', prev, 'event', event)
  redis.call('PUBLISH', channel, '{"stream_id":"' .. id .. '",' .. string.sub(event, 2))
  ids[i] = id
  newest[stream] = id
end
for stream in pairs(newest) do
  if oldest > 0 then redis.call('XTRIM', stream, 'MINID', oldest) end
  redis.call('PEXPIRE', stream, max_age)
end
return ids
"#;

/// User events submitted while a script call is in flight go together in the next one (up to
/// 256). One call at a time, so events reach Redis in the order they were submitted even when
/// their submitter does not wait between them (a job's `running` event and its first progress).
const APPEND_LIMITS: Limits = Limits {
    max_batch: 256,
    in_flight: 1,
};

/// One user event on its way: its history stream, its channel, its JSON.
type Append = (String, String, String);

/// Publishes events: price ticks to every subscriber, user events through the user's history.
/// Events are notifications, not records: a failure is the caller's to log, never a reason to
/// retry a job.
#[derive(Clone)]
pub struct Publisher {
    redis: Redis,
    history: HistoryConfig,
    /// Started on first use, on the runtime that publishes.
    appends: Arc<OnceLock<Batcher<Append, String, redis::RedisError>>>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher on `redis` keeping user histories as `history` says.
    pub fn new(redis: Redis, history: HistoryConfig) -> Self {
        Self {
            redis,
            history,
            appends: Arc::default(),
        }
    }

    /// Publishes a price tick to every subscriber of `prices`.
    pub async fn prices(&self, event: &Event) -> Result<(), redis::RedisError> {
        let payload = encode(event)?;
        let mut conn = self.redis.conn().await?;
        redis::cmd("PUBLISH")
            .arg(self.redis.key(PRICES_CHANNEL))
            .arg(payload)
            .query_async::<()>(&mut conn)
            .await
    }

    /// Appends `event` to the user's history and publishes it on the user's channel; returns
    /// its history id.
    pub async fn to_user(
        &self,
        user_id: Uuid,
        event: &Event,
    ) -> Result<StreamId, redis::RedisError> {
        let append = (
            self.redis.key(&history_key(user_id)),
            self.redis.key(&user_channel(user_id)),
            encode(event)?,
        );
        let id = self
            .appends
            .get_or_init(|| self.spawn_appends())
            .submit(append)
            .await
            .map_err(|err| match err {
                BatchError::Failed(err) => redis::RedisError::from((
                    err.kind(),
                    "publishing user events failed",
                    err.to_string(),
                )),
                BatchError::Stopped => redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "the event publisher has stopped",
                )),
            })?;
        id.parse().map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Parse, "XADD answered no entry id"))
        })
    }

    fn spawn_appends(&self) -> Batcher<Append, String, redis::RedisError> {
        let redis = self.redis.clone();
        let script = Arc::new(redis::Script::new(APPEND_AND_PUBLISH));
        let max_len = self.history.max_len;
        let max_age_ms = u64::try_from(self.history.max_age.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Batcher::spawn(APPEND_LIMITS, move |appends: Vec<Append>| {
            let redis = redis.clone();
            let script = script.clone();
            async move {
                let mut invocation = script.prepare_invoke();
                invocation.arg(max_len).arg(max_age_ms);
                for (stream, channel, event) in &appends {
                    invocation.key(stream).arg(channel).arg(event);
                }
                let mut conn = redis.conn().await?;
                invocation.invoke_async::<Vec<String>>(&mut conn).await
            }
        })
    }
}

fn encode(event: &Event) -> Result<String, redis::RedisError> {
    serde_json::to_string(event).map_err(|err| {
        redis::RedisError::from((redis::ErrorKind::Client, "event encoding", err.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_parse_print_and_order_as_redis_does() {
        let a: StreamId = "1700000000000-0".parse().expect("test value");
        let b: StreamId = "1700000000000-10".parse().expect("test value");
        let c: StreamId = "1700000000001-0".parse().expect("test value");
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-10");
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1",
            "a-1",
            "1-1-1",
            "+1-1",
            "99999999999999999999999-0",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_published_user_event_reads_back_with_its_history_id() {
        let event = Event::new("job", serde_json::json!({"id": 1}));
        let spliced = format!(
            "{{\"stream_id\":\"5-1\",{}",
            &serde_json::to_string(&event).expect("test value")[1..]
        );
        let read: Published = serde_json::from_str(&spliced).expect("test value");
        assert_eq!(read.event, event);
        assert_eq!(read.stream_id, Some(StreamId { ms: 5, seq: 1 }));
    }
}
