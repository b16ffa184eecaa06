//! One client's outgoing side: a bounded queue of frames between the task that produces them
//! and the connection that writes them.
//!
//! A client that reads too slowly fills its queue; the producer then drops it instead of
//! buffering without bound: the queued frames are discarded, and the next thing the client
//! reads is a `closed` frame saying why, then the end of the stream. The whole cost of a slow
//! client is its queue.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, oneshot};
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
    /// Every kind.
    pub const ALL: [Self; 4] = [Self::Prices, Self::Events, Self::Portfolio, Self::WebSocket];

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

/// Exports every stream series at zero, so that dashboards and alert rules see them before
/// the first client.
pub fn register_metrics() {
    for kind in StreamKind::ALL {
        metrics::gauge!("stream_clients", "kind" => kind.as_str()).increment(0.0);
        metrics::counter!("stream_messages_dropped_total", "kind" => kind.as_str()).increment(0);
    }
    for outcome in ["replayed", "resync", "unavailable"] {
        metrics::counter!("stream_resumes_total", "outcome" => outcome).increment(0);
    }
}

/// One message to a client: an SSE event (or a WebSocket text message of `data`).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The event's type (SSE `event:`).
    pub event: String,
    /// Its position in the user's history (SSE `id:`), for user events.
    pub id: Option<String>,
    /// The JSON document (SSE `data:`), shared by every client it goes to.
    pub data: Arc<str>,
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
            .to_string()
            .into(),
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
    /// The token that opened the stream expired, or the stream reached `STREAM_MAX_DURATION`.
    Expired,
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
            Self::Expired => "expired",
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
            Self::Expired => {
                "the stream reached its longest life or its token expired; reconnect with a \
                 fresh token (and Last-Event-ID)"
            }
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
    last: oneshot::Sender<Frame>,
    _counted: Counted,
}

/// The reading side: the frames to write, in order, unless a last frame overtakes them.
#[derive(Debug)]
pub struct Frames {
    queue: mpsc::Receiver<Frame>,
    last: Option<oneshot::Receiver<Frame>>,
    overtaken: bool,
}

impl Frames {
    /// The next frame to write; `None` once the stream is over.
    pub async fn next(&mut self) -> Option<Frame> {
        if let Some(last) = self.last.as_mut() {
            tokio::select! {
                biased;
                last = last => {
                    self.last = None;
                    if let Ok(frame) = last {
                        // It overtakes whatever is queued, and ends the stream.
                        self.queue.close();
                        self.overtaken = true;
                        return Some(frame);
                    }
                }
                frame = self.queue.recv() => return frame,
            }
        }
        if self.overtaken {
            return None;
        }
        self.queue.recv().await
    }
}

/// How long a `closed` frame may wait for room in a slow client's queue.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

impl Outbox {
    /// A queue of `capacity` frames and its reading side.
    pub fn new(kind: StreamKind, capacity: usize) -> (Self, Frames) {
        let (sender, queue) = mpsc::channel(capacity.max(2));
        let (last, last_receiver) = oneshot::channel();
        let frames = Frames {
            queue,
            last: Some(last_receiver),
            overtaken: false,
        };
        let outbox = Self {
            kind,
            sender,
            last,
            _counted: Counted::new(kind),
        };
        (outbox, frames)
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

    /// Ends the stream with a `closed` frame: after the queued frames, unless the client is
    /// too slow (or makes no room within a second), in which case it overtakes them.
    pub async fn close(self, reason: CloseReason) {
        let Self {
            kind, sender, last, ..
        } = self;
        let frame = Frame::closed(reason);
        let frame = if reason == CloseReason::SlowConsumer {
            tracing::info!(kind = kind.as_str(), "slow stream client dropped");
            frame
        } else {
            match tokio::time::timeout(CLOSE_WAIT, sender.send(frame.clone())).await {
                Ok(_) => return,
                Err(_) => frame,
            }
        };
        let _ = last.send(frame);
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

/// Counts a client in `stream_clients{kind}` while it lives.
#[derive(Debug)]
struct Counted(StreamKind);

impl Counted {
    fn new(kind: StreamKind) -> Self {
        metrics::gauge!("stream_clients", "kind" => kind.as_str()).increment(1.0);
        Self(kind)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("stream_clients", "kind" => self.0.as_str()).decrement(1.0);
    }
}

/// An SSE body reading `frames` (with keep-alive comments while idle).
pub fn sse(frames: Frames, keep_alive: Duration) -> poem::Response {
    use poem::IntoResponse;
    use poem::http::HeaderValue;
    use poem::web::sse::{Event, SSE};
    let events = futures_util::stream::unfold(frames, |mut frames| async move {
        let frame = frames.next().await?;
        let mut event = Event::message(&*frame.data).event_type(frame.event);
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn drain(mut frames: Frames) -> Vec<String> {
        let mut events = Vec::new();
        while let Some(frame) = frames.next().await {
            events.push(frame.event);
        }
        events
    }

    #[tokio::test]
    async fn a_normal_close_comes_after_the_queued_frames() {
        let (outbox, frames) = Outbox::new(StreamKind::Prices, 4);
        outbox.push(Frame::resync("a")).expect("room");
        outbox.push(Frame::resync("b")).expect("room");
        outbox.close(CloseReason::Done).await;
        assert_eq!(drain(frames).await, ["resync", "resync", "closed"]);
    }

    #[tokio::test]
    async fn a_slow_client_reads_the_close_first_and_nothing_queued_after_it() {
        let (outbox, frames) = Outbox::new(StreamKind::Prices, 2);
        outbox.push(Frame::resync("a")).expect("room");
        outbox.push(Frame::resync("b")).expect("room");
        assert_eq!(outbox.push(Frame::resync("c")), Err(Gone::TooSlow));
        outbox.end(Gone::TooSlow).await;
        assert_eq!(drain(frames).await, ["closed"]);
    }

    #[tokio::test]
    async fn a_stream_that_just_stops_delivers_what_was_queued() {
        let (outbox, frames) = Outbox::new(StreamKind::Events, 2);
        outbox.push(Frame::resync("a")).expect("room");
        drop(outbox);
        assert_eq!(drain(frames).await, ["resync"]);
    }
}
