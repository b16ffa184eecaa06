//! A Server-Sent Events client for tests: reads a `text/event-stream` response event by event.

use std::time::Duration;

use serde_json::Value;

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The event's name (`event:`); `message` when it has none.
    pub event: String,
    /// Its id (`id:`), when it has one.
    pub id: Option<String>,
    /// Its data, read as JSON.
    pub data: Value,
}

/// An open event stream.
#[derive(Debug)]
pub struct SseStream {
    response: reqwest::Response,
    buffer: String,
    ended: bool,
}

impl SseStream {
    /// `GET url` with `token` (and `Last-Event-ID` when given). A response other than 200 comes
    /// back as the error, for the test to look at.
    pub async fn open(
        client: &reqwest::Client,
        url: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> Result<Self, reqwest::Response> {
        let mut request = client.get(url).bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("open the event stream");
        if response.status() != 200 {
            return Err(response);
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "content type {content_type}"
        );
        Ok(Self {
            response,
            buffer: String::new(),
            ended: false,
        })
    }

    /// The next event, or `None` when the server ended the stream; panics after `deadline`.
    pub async fn next(&mut self, deadline: Duration) -> Option<SseEvent> {
        tokio::time::timeout(deadline, self.read_event())
            .await
            .unwrap_or_else(|_| panic!("no event within {deadline:?}"))
    }

    /// The next event named `event`, skipping others; panics after `deadline` or at the end.
    pub async fn next_named(&mut self, event: &str, deadline: Duration) -> SseEvent {
        let start = tokio::time::Instant::now();
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            match self.next(left).await {
                Some(found) if found.event == event => return found,
                Some(_) => {}
                None => panic!("the stream ended before a {event:?} event"),
            }
        }
    }

    async fn read_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Some(event);
                }
                continue; // a comment (keep-alive)
            }
            if self.ended {
                return None;
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) | Err(_) => self.ended = true,
            }
        }
    }
}

fn parse(block: &str) -> Option<SseEvent> {
    let mut event = None;
    let mut id = None;
    let mut data = String::new();
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            event = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim_start());
        }
    }
    if data.is_empty() && event.is_none() {
        return None;
    }
    Some(SseEvent {
        event: event.unwrap_or_else(|| "message".into()),
        id,
        data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
    })
}
