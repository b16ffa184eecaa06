//! One client's outgoing side: a bounded queue of frames between the task that produces them
//! and the connection that writes them.
//!
//! A client that reads too slowly fills its queue; the producer then drops it (a `closed`
//! frame saying why, when one more fits in time, then the end of the stream) instead of
//! buffering without bound. The whole cost of a slow client is its queue.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Which endpoint a client is connected to (the `kind` label of the stream metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `GET /stream/prices`.
    Prices,
    /// `GET /stream/events`.
    Events,
    /// `GET /stream/portfolios/{id}`.
    Portfolio,
    /// `GET /ws`.
    WebSocket,
}

impl StreamKind {
    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Prices => "prices",
            Self::Events => "events",
            Self::Portfolio => "portfolio",
            Self::WebSocket => "ws",
        }
    }
}

/// One message to a client: an SSE event (or a WebSocket text message of `data`).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The event's type (SSE `event:`).
    pub event: String,
    /// Its position in the user's history (SSE `id:`), for user events.
    pub id: Option<String>,
    /// The JSON document (SSE `data:`).
    pub data: String,
}

impl Frame {
    /// A frame of `event` whose data is `{type, id, at, data}` with a fresh id.
    pub fn new(event: &str, data: serde_json::Value) -> Self {
        Self {
            event: event.to_owned(),
            id: None,
            data: json!({
                "type": event,
                "id": Uuid::now_v7(),
                "at": chrono::Utc::now(),
                "data": data,
            })
            .to_string(),
        }
    }

    /// `resync`: the client may have missed events and should reload what it shows.
    pub fn resync(reason: &str) -> Self {
        Self::new("resync", json!({ "reason": reason }))
    }

    /// `closed`: the server ends the stream; `reason` says why.
    pub fn closed(reason: CloseReason) -> Self {
        Self::new(
            "closed",
            json!({ "reason": reason.as_str(), "message": reason.message() }),
        )
    }
}

/// Why the server ended a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client did not read fast enough.
    SlowConsumer,
    /// The account was disabled or deleted, or its sessions were ended.
    SessionEnded,
    /// The process is stopping; reconnect (to another process).
    ShuttingDown,
    /// The stream delivered what was asked (`max_updates`).
    Done,
    /// The portfolio was deleted.
    Gone,
}

impl CloseReason {
    /// The machine-readable reason.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SlowConsumer => "slow_consumer",
            Self::SessionEnded => "session_ended",
            Self::ShuttingDown => "shutting_down",
            Self::Done => "done",
            Self::Gone => "gone",
        }
    }

    /// The reason in words.
    pub const fn message(self) -> &'static str {
        match self {
            Self::SlowConsumer => "the client read too slowly and fell too far behind; reconnect",
            Self::SessionEnded => "the account was disabled or its sessions ended; log in again",
            Self::ShuttingDown => "the server is restarting; reconnect",
            Self::Done => "every update asked for was sent",
            Self::Gone => "the portfolio no longer exists",
        }
    }
}

/// Why a frame could not be queued: the stream must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// The client disconnected.
    Disconnected,
    /// The client's queue is full.
    TooSlow,
}

/// The producing side of a client's queue. Counts the client in `stream_clients{kind}` while
/// it lives.
#[derive(Debug)]
pub struct Outbox {
    kind: StreamKind,
    sender: mpsc::Sender<Frame>,
}

/// How long a `closed` frame may wait for room in a slow client's queue.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

impl Outbox {
    /// A queue of `capacity` frames and its reading side.
    pub fn new(kind: StreamKind, capacity: usize) -> (Self, mpsc::Receiver<Frame>) {
        let (sender, receiver) = mpsc::channel(capacity.max(2));
        metrics::gauge!("stream_clients", "kind" => kind.as_str()).increment(1.0);
        (Self { kind, sender }, receiver)
    }

    /// Which endpoint this client is on.
    pub fn kind(&self) -> StreamKind {
        self.kind
    }

    /// Queues `frame` without waiting. A full queue means the client is too slow: the caller
    /// ends the stream with [`Outbox::close`].
    pub fn push(&self, frame: Frame) -> Result<(), Gone> {
        match self.sender.try_send(frame) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Gone::Disconnected),
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("stream_messages_dropped_total", "kind" => self.kind.as_str())
                    .increment(1);
                Err(Gone::TooSlow)
            }
        }
    }

    /// Ends the stream after a `closed` frame (if it fits within a second: a slow client may
    /// never make room).
    pub async fn close(self, reason: CloseReason) {
        if reason == CloseReason::SlowConsumer {
            tracing::info!(kind = self.kind.as_str(), "slow stream client dropped");
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, self.sender.send(Frame::closed(reason))).await;
    }

    /// Ends the stream for `gone`: a `closed` frame for a slow client, nothing for one that left.
    pub async fn end(self, gone: Gone) {
        if gone == Gone::TooSlow {
            self.close(CloseReason::SlowConsumer).await;
        }
    }

    /// Resolves when the client has disconnected.
    pub async fn disconnected(&self) {
        self.sender.closed().await;
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        metrics::gauge!("stream_clients", "kind" => self.kind.as_str()).decrement(1.0);
    }
}

/// An SSE body reading `frames` (with keep-alive comments while idle).
pub fn sse(frames: mpsc::Receiver<Frame>, keep_alive: Duration) -> poem::Response {
    use poem::IntoResponse;
    use poem::http::HeaderValue;
    use poem::web::sse::{Event, SSE};
    let events = futures_util::stream::unfold(frames, |mut frames| async move {
        let frame = frames.recv().await?;
        let mut event = Event::message(frame.data).event_type(frame.event);
        if let Some(id) = frame.id {
            event = event.id(id);
        }
        Some((event, frames))
    });
    let mut response = SSE::new(events).keep_alive(keep_alive).into_response();
    let headers = response.headers_mut();
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    // Proxies such as nginx would otherwise buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
