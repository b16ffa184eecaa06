//! One Redis subscription per API process, fanned out in-process to its stream clients.
//!
//! The hub owns a single pub/sub connection. It is always subscribed to `prices` and to
//! `user-changes` (account changes), and to `user:{id}` for exactly the users with an open
//! stream on this process: the first stream of a user subscribes, the last one to close
//! unsubscribes. Each channel becomes a `tokio::sync::broadcast` whose messages are shared
//! (`Arc`), parsed once, however many clients read them. When the connection drops the hub
//! reconnects by itself, subscribes again to everything its clients need, and sends
//! [`Signal::Missed`] on every channel, since events published meanwhile never reached it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::events::{PRICES_CHANNEL, Published, StreamId};
use common::redis::Redis;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use uuid::Uuid;

use super::client::Frame;
use crate::users::cache::{CHANGES_CHANNEL, UserCache};

/// What arrives on a channel.
#[derive(Debug)]
pub enum Signal<T> {
    /// A message.
    Message(Arc<T>),
    /// The hub's subscription was lost and is back: messages may have been missed.
    Missed,
}

impl<T> Clone for Signal<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Message(message) => Self::Message(message.clone()),
            Self::Missed => Self::Missed,
        }
    }
}

/// Resolves once `shutdown` says stop (never, if its sender is gone).
pub async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A user's event, as published by the worker.
#[derive(Debug)]
pub struct UserEvent {
    /// Its position in the user's history.
    pub stream_id: Option<StreamId>,
    /// Its type (`job`, `notification`).
    pub kind: String,
    /// The payload as published (`{type, id, at, data, stream_id}`), sent to clients as it is.
    pub json: Arc<str>,
}

/// A price tick, as published by the worker after a refresh or a bulk fetch.
#[derive(Debug, Deserialize)]
pub struct PriceTick {
    /// The tick's event id.
    pub id: Uuid,
    /// When it was published.
    pub at: chrono::DateTime<chrono::Utc>,
    /// The quotes.
    pub data: TickData,
    /// The `prices` frames built from this tick, by selection of quotes: clients that want
    /// the same coins share one (most clients of a tick want the same few coins).
    #[serde(skip)]
    frames: Mutex<HashMap<Vec<u32>, Arc<str>>>,
}

impl PriceTick {
    /// The `prices` frame of the quotes at `selected` (indices into `data.quotes`), built
    /// once per tick and selection.
    pub fn frame(&self, selected: &[u32]) -> Frame {
        let mut frames = self.frames.lock().expect("tick frames lock");
        let data = if let Some(data) = frames.get(selected) {
            data.clone()
        } else {
            let quotes: Vec<&TickQuote> = selected
                .iter()
                .filter_map(|&index| self.data.quotes.get(index as usize))
                .collect();
            let data: Arc<str> = serde_json::json!({
                "type": "prices",
                "id": self.id,
                "at": self.at,
                "data": {
                    "vs_currency": self.data.vs_currency,
                    "source": self.data.source,
                    "quotes": quotes,
                },
            })
            .to_string()
            .into();
            frames.insert(selected.to_vec(), data.clone());
            data
        };
        Frame {
            event: "prices".into(),
            id: None,
            data,
        }
    }
}

/// The quotes of a tick.
#[derive(Debug, Clone, Deserialize)]
pub struct TickData {
    /// The currency of every price in the tick.
    pub vs_currency: String,
    /// Where the quotes came from (`coingecko`, `simulated`).
    pub source: String,
    /// One quote per coin.
    pub quotes: Vec<TickQuote>,
}

/// One coin's quote in a tick.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct TickQuote {
    /// The coin.
    pub coin_id: String,
    /// Its price, an exact decimal string.
    pub price: String,
    /// Its change over 24 hours in percent, when known.
    pub change_24h_pct: Option<String>,
    /// When the source quoted it.
    pub quoted_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// An account changed (disabled, deleted, demoted, sessions ended...): its streams must check
/// whether they may go on. `None`: any account may have changed (the hub missed messages).
#[derive(Debug, Clone, Copy)]
pub struct AccountChanged(pub Option<Uuid>);

impl AccountChanged {
    /// Whether streams of `user` must check their account.
    pub fn concerns(self, user: Uuid) -> bool {
        self.0.is_none_or(|changed| changed == user)
    }
}

enum Command {
    Subscribe(Uuid),
    Unsubscribe(Uuid),
}

struct Topic {
    sender: broadcast::Sender<Signal<UserEvent>>,
    subscribed: watch::Sender<bool>,
}

struct Inner {
    redis: Redis,
    users: UserCache,
    capacity: usize,
    prices: broadcast::Sender<Signal<PriceTick>>,
    accounts: broadcast::Sender<AccountChanged>,
    topics: Mutex<HashMap<Uuid, Topic>>,
    commands: mpsc::UnboundedSender<Command>,
    shutdown: watch::Sender<bool>,
    session_checks: Arc<Semaphore>,
}

/// Account checks streams may run against Postgres at once: after the hub reconnects, every
/// stream checks its account, and thousands of them must not hit the database together.
const CONCURRENT_SESSION_CHECKS: usize = 8;

/// The process's fan-out point; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

/// A user's events for one stream; unsubscribes the process when the user's last stream ends.
#[derive(Debug)]
pub struct UserFeed {
    hub: Hub,
    user: Uuid,
    receiver: broadcast::Receiver<Signal<UserEvent>>,
}

impl UserFeed {
    /// The next event (or a gap: `Missed`, or this receiver fell behind).
    pub async fn recv(&mut self) -> Result<Signal<UserEvent>, broadcast::error::RecvError> {
        self.receiver.recv().await
    }
}

impl Drop for UserFeed {
    fn drop(&mut self) {
        let mut topics = self.hub.inner.topics.lock().expect("topics lock");
        // This feed's receiver still counts here; it is the last one when the count is 1.
        if let Some(topic) = topics.get(&self.user)
            && topic.sender.receiver_count() <= 1
        {
            topics.remove(&self.user);
            let _ = self
                .hub
                .inner
                .commands
                .send(Command::Unsubscribe(self.user));
        }
    }
}

impl Hub {
    /// Starts the hub's connection task; it runs until [`Hub::shut_down`] or the runtime ends.
    /// `capacity` bounds each channel's backlog (per channel, shared by all its readers).
    pub fn start(redis: Redis, users: UserCache, capacity: usize) -> Self {
        super::client::register_metrics();
        let (commands, receiver) = mpsc::unbounded_channel();
        let hub = Self {
            inner: Arc::new(Inner {
                redis,
                users,
                capacity: capacity.max(1),
                prices: broadcast::channel(capacity.max(1)).0,
                accounts: broadcast::channel(64).0,
                topics: Mutex::default(),
                commands,
                shutdown: watch::channel(false).0,
                session_checks: Arc::new(Semaphore::new(CONCURRENT_SESSION_CHECKS)),
            }),
        };
        tokio::spawn(run(hub.inner.clone(), receiver));
        hub
    }

    /// Price ticks from now on.
    pub fn prices(&self) -> broadcast::Receiver<Signal<PriceTick>> {
        self.inner.prices.subscribe()
    }

    /// Account changes from now on.
    pub fn accounts(&self) -> broadcast::Receiver<AccountChanged> {
        self.inner.accounts.subscribe()
    }

    /// Permits for streams' account checks against Postgres.
    pub fn session_checks(&self) -> Arc<Semaphore> {
        self.inner.session_checks.clone()
    }

    /// Resolves when the process is shutting down.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Ends every stream (the process is stopping).
    pub fn shut_down(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// `user`'s events from now on. Waits (at most `wait`) until this process is subscribed to
    /// the user's channel, so that a history read after this call overlaps the live events.
    pub async fn user_events(&self, user: Uuid, wait: Duration) -> UserFeed {
        let (receiver, mut subscribed) = {
            let mut topics = self.inner.topics.lock().expect("topics lock");
            let topic = topics.entry(user).or_insert_with(|| {
                let _ = self.inner.commands.send(Command::Subscribe(user));
                Topic {
                    sender: broadcast::channel(self.inner.capacity).0,
                    subscribed: watch::channel(false).0,
                }
            });
            (topic.sender.subscribe(), topic.subscribed.subscribe())
        };
        let _ = tokio::time::timeout(wait, subscribed.wait_for(|done| *done)).await;
        UserFeed {
            hub: self.clone(),
            user,
            receiver,
        }
    }
}

const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);

async fn run(inner: Arc<Inner>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut retry = RETRY_FIRST;
    loop {
        let mut ready = false;
        let served = tokio::select! {
            served = serve(&inner, &mut commands, &mut ready) => served,
            () = stopping(&mut shutdown) => return,
        };
        if ready {
            retry = RETRY_FIRST;
        }
        match served {
            Ok(()) => return,
            Err(err) => tracing::warn!(error = %err, "stream subscription lost; reconnecting"),
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            () = stopping(&mut shutdown) => return,
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

async fn serve(
    inner: &Inner,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    ready: &mut bool,
) -> Result<(), redis::RedisError> {
    let redis = &inner.redis;
    let (mut sink, mut messages) = redis.pubsub().await?.split();
    bounded(sink.subscribe(redis.key(CHANGES_CHANNEL))).await?;
    bounded(sink.subscribe(redis.key(PRICES_CHANNEL))).await?;
    let users: Vec<Uuid> = inner
        .topics
        .lock()
        .expect("topics lock")
        .keys()
        .copied()
        .collect();
    for user in &users {
        bounded(sink.subscribe(user_channel(redis, *user))).await?;
        mark_subscribed(inner, *user);
    }
    // Whatever was published while no subscription was open was missed (at start-up nobody
    // listens yet, and these go nowhere).
    *ready = true;
    inner.users.forget_all();
    let _ = inner.prices.send(Signal::Missed);
    let _ = inner.accounts.send(AccountChanged(None));
    for topic in inner.topics.lock().expect("topics lock").values() {
        let _ = topic.sender.send(Signal::Missed);
    }
    tracing::info!(users = users.len(), "stream subscription ready");
    let prefix = redis.key_prefix().to_owned();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return Ok(()),
                Some(Command::Subscribe(user)) => {
                    bounded(sink.subscribe(user_channel(redis, user))).await?;
                    mark_subscribed(inner, user);
                }
                Some(Command::Unsubscribe(user)) => {
                    // Unless a new stream of the user arrived since: its Subscribe is queued.
                    if !inner.topics.lock().expect("topics lock").contains_key(&user) {
                        bounded(sink.unsubscribe(user_channel(redis, user))).await?;
                    }
                }
            },
            message = messages.next() => match message {
                Some(message) => dispatch(inner, &prefix, &message),
                None => return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "the subscription connection closed",
                ))),
            },
        }
    }
}

fn user_channel(redis: &Redis, user: Uuid) -> String {
    redis.key(&common::events::user_channel(user))
}

fn mark_subscribed(inner: &Inner, user: Uuid) {
    if let Some(topic) = inner.topics.lock().expect("topics lock").get(&user) {
        topic.subscribed.send_replace(true);
    }
}

fn dispatch(inner: &Inner, prefix: &str, message: &redis::Msg) {
    let Some(channel) = message.get_channel_name().strip_prefix(prefix) else {
        return;
    };
    let Ok(payload) = message.get_payload::<String>() else {
        tracing::warn!(channel, "stream message is not text");
        return;
    };
    if channel == CHANGES_CHANNEL {
        match payload.trim().parse::<Uuid>() {
            Ok(user) => {
                inner.users.forget(user);
                let _ = inner.accounts.send(AccountChanged(Some(user)));
            }
            Err(_) => tracing::warn!(%payload, "unreadable account-change message"),
        }
    } else if channel == PRICES_CHANNEL {
        match serde_json::from_str::<PriceTick>(&payload) {
            Ok(tick) => {
                let _ = inner.prices.send(Signal::Message(Arc::new(tick)));
            }
            Err(err) => tracing::warn!(error = %err, "unreadable price tick"),
        }
    } else if let Some(user) = channel
        .strip_prefix("user:")
        .and_then(|id| id.parse::<Uuid>().ok())
    {
        let published = match serde_json::from_str::<Published>(&payload) {
            Ok(published) => published,
            Err(err) => return tracing::warn!(error = %err, "unreadable user event"),
        };
        let event = Arc::new(UserEvent {
            stream_id: published.stream_id,
            kind: published.event.kind,
            json: payload.into(),
        });
        if let Some(topic) = inner.topics.lock().expect("topics lock").get(&user) {
            let _ = topic.sender.send(Signal::Message(event));
        }
    }
}

/// `command` within a few seconds: a connection that stops answering is a lost one.
async fn bounded(
    command: impl Future<Output = Result<(), redis::RedisError>>,
) -> Result<(), redis::RedisError> {
    match tokio::time::timeout(Duration::from_secs(5), command).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "the subscription connection stopped answering",
        ))),
    }
}
