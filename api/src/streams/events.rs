//! A user's events (notifications, job changes) for one stream: live from the hub, replayed
//! from the history after a reconnect (`Last-Event-ID`) or after the hub missed messages, and
//! `resync` when the history cannot fill the gap.

use std::time::Duration;

use common::events::StreamId;
use common::redis::Redis;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::client::Frame;
use super::history::{self, Resumed};
use super::hub::{Hub, Signal, UserFeed};

/// One stream's view of its user's events.
#[derive(Debug)]
pub struct UserEvents {
    feed: UserFeed,
    redis: Redis,
    user: Uuid,
    /// The last event sent (history id), to resume from and to drop live duplicates.
    cursor: Option<StreamId>,
    /// A gap was seen and not yet filled (kept across a cancelled `next`).
    gap: bool,
}

impl UserEvents {
    /// Subscribes to `user`'s events; with `last_event_id`, first finds what the client missed.
    pub async fn open(
        hub: &Hub,
        redis: Redis,
        user: Uuid,
        last_event_id: Option<&str>,
    ) -> (Self, Vec<Frame>) {
        let feed = hub.user_events(user, Duration::from_secs(2)).await;
        let mut events = Self {
            feed,
            redis,
            user,
            cursor: None,
            gap: false,
        };
        let first = match last_event_id.map(str::trim).filter(|id| !id.is_empty()) {
            None => Vec::new(),
            Some(raw) => match raw.parse::<StreamId>() {
                Ok(after) => {
                    events.cursor = Some(after);
                    events.fill_gap().await
                }
                Err(_) => {
                    count_resume("resync");
                    vec![Frame::resync(
                        "Last-Event-ID is not an event id of this stream",
                    )]
                }
            },
        };
        (events, first)
    }

    /// The next frames to send; `None` when the hub is gone.
    pub async fn next(&mut self) -> Option<Vec<Frame>> {
        loop {
            if self.gap {
                return Some(self.fill_gap().await);
            }
            match self.feed.recv().await {
                Ok(Signal::Message(event)) => {
                    if let (Some(cursor), Some(id)) = (self.cursor, event.stream_id)
                        && id <= cursor
                    {
                        continue; // already sent from the history
                    }
                    if event.stream_id.is_some() {
                        self.cursor = event.stream_id;
                    }
                    return Some(vec![Frame {
                        event: event.kind.clone(),
                        id: event.stream_id.map(|id| id.to_string()),
                        data: event.json.clone(),
                    }]);
                }
                Ok(Signal::Missed) | Err(RecvError::Lagged(_)) => self.gap = true,
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// What the history holds after the cursor, or `resync`.
    async fn fill_gap(&mut self) -> Vec<Frame> {
        self.gap = true;
        let Some(after) = self.cursor else {
            self.gap = false;
            count_resume("resync");
            return vec![Frame::resync("events may have been missed")];
        };
        let frames = match Box::pin(history::since(&self.redis, self.user, after)).await {
            Ok(Resumed::Complete(found)) => {
                count_resume("replayed");
                if let Some((last, _)) = found.last() {
                    self.cursor = Some(*last);
                }
                found.into_iter().map(|(_, frame)| frame).collect()
            }
            Ok(Resumed::Gap) => {
                count_resume("resync");
                self.cursor = None;
                vec![Frame::resync(
                    "the missed events are older than the history kept",
                )]
            }
            Err(err) => {
                tracing::warn!(error = %err, "event history unreadable");
                count_resume("unavailable");
                self.cursor = None;
                vec![Frame::resync("the event history is unavailable")]
            }
        };
        self.gap = false;
        frames
    }
}

fn count_resume(outcome: &'static str) {
    metrics::counter!("stream_resumes_total", "outcome" => outcome).increment(1);
}
