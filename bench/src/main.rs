//! `bench-hello`: a bare Poem server, the ceiling `scripts/bench.sh` measures the api against.
//!
//! It has no middleware, no state and no logging on purpose: measured in the same session as
//! the api, it shows how much of the api's cost is Poem and the machine itself and how much is
//! ours. Listens on `BENCH_HELLO_ADDR` (default `127.0.0.1:8090`); `GET /` answers `ok`.
//!
//! With `BENCH_HELLO_REDIS_URL` set it is also the ceiling of the live streams: one Redis
//! subscription to `<BENCH_HELLO_PREFIX>prices` fanned out through a broadcast channel to
//! every `GET /sse` client, each payload sent as it came (no authentication, no filtering,
//! no per-client queue).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use poem::listener::TcpListener;
use poem::web::Data;
use poem::web::sse::{Event, SSE};
use poem::{EndpointExt, Route, Server, get, handler};
use tokio::sync::broadcast;

const DEFAULT_ADDR: &str = "127.0.0.1:8090";

#[handler]
fn hello() -> &'static str {
    "ok"
}

#[handler]
fn sse(ticks: Data<&broadcast::Sender<Arc<str>>>) -> SSE {
    let events = futures_util::stream::unfold(ticks.subscribe(), |mut ticks| async move {
        loop {
            match ticks.recv().await {
                Ok(payload) => return Some((Event::message(&*payload), ticks)),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    SSE::new(events).keep_alive(Duration::from_secs(15))
}

/// Forwards every message on `channel` to `ticks`.
async fn relay(url: String, channel: String, ticks: broadcast::Sender<Arc<str>>) {
    let subscribed = async {
        let mut pubsub = redis::Client::open(url)?.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let payload: String = message.get_payload()?;
            let _ = ticks.send(payload.into());
        }
        Ok::<(), redis::RedisError>(())
    };
    if let Err(err) = subscribed.await {
        eprintln!("bench-hello: Redis subscription failed: {err}");
    }
}

// The same runtime flavour as the api (multi-thread, one worker per core), so the ceiling
// compares like with like.
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("BENCH_HELLO_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.to_owned());
    let (ticks, _) = broadcast::channel::<Arc<str>>(1024);
    if let Ok(url) = std::env::var("BENCH_HELLO_REDIS_URL") {
        let prefix = std::env::var("BENCH_HELLO_PREFIX").unwrap_or_default();
        tokio::spawn(relay(url, format!("{prefix}prices"), ticks.clone()));
    }
    let app = Route::new()
        .at("/", get(hello))
        .at("/sse", get(sse))
        .data(ticks);
    Server::new(TcpListener::bind(addr)).run(app).await
}
