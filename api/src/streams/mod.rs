//! Live streams: `/api/v1/stream/*` (Server-Sent Events) and `/api/v1/ws` (WebSocket).
//!
//! Workers publish on Redis; each API process holds one subscription ([`hub`]) and fans out to
//! its clients. Every client gets a task that turns what the hub broadcasts into its frames,
//! and a bounded queue to the connection ([`client`]): a client that does not keep up is
//! dropped, never buffered without bound. A stream ends when its client leaves, when its
//! account is disabled or its sessions are ended ([`session`]), and when the process stops.

pub mod client;
pub mod docs;
pub mod events;
pub mod history;
pub mod hub;
pub mod portfolio;
pub mod prices;
pub mod session;
pub mod tickets;
pub mod ws;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use poem::Request;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use uuid::Uuid;

use self::client::{CloseReason, Frame, Outbox, StreamKind};
use self::docs::{EventStream, PortfolioStreamEvent, PriceStreamEvent, Upgrade, UserStreamEvent};
use self::events::UserEvents;
use self::hub::{Signal, TickQuote};
use self::portfolio::PortfolioFeed;
use self::prices::{PriceFilter, Throttle};
use self::session::{EndWatch, Slot};
use crate::app::AppState;
use crate::auth::extract::{ActiveUser, StreamSession};
use crate::error::{ApiError, ApiResult, status};
use crate::market::parse_vs_currency;
use crate::platform::ApiTags;

/// Most coins one price stream may ask for.
pub const MAX_STREAM_COINS: usize = 50;

/// The `coins` of a price stream: 1 to 50 coin ids ([`crate::market::COIN_ID_PATTERN`]),
/// comma-separated, nothing else.
pub const COINS_PATTERN: &str = r"^[a-z0-9_.-]{1,100}(,[a-z0-9_.-]{1,100}){0,49}$";

/// What [`COINS_PATTERN`] means.
pub const COINS_MESSAGE: &str = "must list 1 to 50 coin ids (lower-case letters, digits, '-', '_', \
     '.'), separated by commas alone";

static COINS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(COINS_PATTERN).expect("the coins pattern compiles")
});

/// Stream endpoints.
#[derive(Debug)]
pub struct StreamsApi {
    /// Shared by reference with every stream's task: cloning the state itself for each of
    /// thousands of clients would copy its Redis settings and queue tables each time.
    state: Arc<AppState>,
}

impl StreamsApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        Self {
            state: Arc::new(state),
        }
    }

    fn slot(&self, user: Uuid) -> Result<Slot, ApiError> {
        let max = self.state.config.streams.max_per_user;
        self.state
            .stream_slots
            .take(user, max)
            .ok_or_else(|| ApiError::RateLimited {
                retry_after_secs: 5,
            })
    }

    fn outbox(&self, kind: StreamKind) -> (Outbox, client::Frames) {
        Outbox::new(kind, self.state.config.streams.client_buffer as usize)
    }

    fn keep_alive(&self) -> Duration {
        self.state.config.streams.keep_alive
    }
}

/// A single-use ticket for opening `/api/v1/ws` from a browser.
#[derive(Debug, Object)]
pub struct WsTicket {
    /// Pass as `/api/v1/ws?ticket=...` within `expires_in` seconds; it works once.
    pub ticket: String,
    /// Seconds until the ticket expires.
    pub expires_in: u64,
}

/// The coins of a price stream, from `coins=a,b,c`.
fn parse_coins(raw: &str) -> Result<HashSet<String>, ApiError> {
    if !COINS.is_match(raw) {
        return Err(ApiError::invalid("coins", COINS_MESSAGE));
    }
    Ok(raw.split(',').map(str::to_owned).collect())
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Streams")]
impl StreamsApi {
    /// Live prices (Server-Sent Events): an update with the listed coins' latest quotes first,
    /// then one whenever new quotes arrive, at most every `interval` seconds (quotes that
    /// arrive in between are merged: the newest per coin). After `max_updates` updates the
    /// stream sends `closed` and ends. `resync` means ticks may have been missed (reload
    /// prices). Keep-alive comments flow while idle.
    #[oai(path = "/stream/prices", method = "get")]
    async fn prices(
        &self,
        caller: ActiveUser,
        req: &Request,
        /// Coin ids, comma-separated (1 to 50), e.g. `bitcoin,ethereum`.
        #[oai(validator(pattern = r"^[a-z0-9_.-]{1,100}(,[a-z0-9_.-]{1,100}){0,49}$"))]
        coins: Query<String>,
        /// Currency code, default `usd` (any case).
        #[oai(validator(pattern = r"^[A-Za-z]{2,10}$"))]
        vs_currency: Query<Option<String>>,
        /// Least seconds between two updates (0: every tick; default 1, at most 3600).
        #[oai(validator(minimum(value = "0"), maximum(value = "3600")))]
        interval: Query<Option<u32>>,
        /// End the stream after this many updates (1 to 1,000,000; default: never).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        max_updates: Query<Option<u32>>,
    ) -> ApiResult<
        EventStream<PriceStreamEvent>,
        { status::AUTHED | status::VALIDATION | status::RATE_LIMITED },
    > {
        let coins = parse_coins(&coins.0)?;
        let vs_currency = parse_vs_currency(vs_currency.0.as_deref())?;
        if !self.state.prices.provider().accepts_currency(&vs_currency) {
            return Err(ApiError::invalid(
                "vs_currency",
                format!("{vs_currency:?} is not supported by the price provider"),
            )
            .into());
        }
        let session = StreamSession::of_request(req)?;
        let slot = self.slot(caller.0.id)?;
        let filter = PriceFilter { coins, vs_currency };
        let interval = Duration::from_secs(u64::from(interval.0.unwrap_or(1)));
        let (outbox, frames) = self.outbox(StreamKind::Prices);
        // Subscribed before the response starts: a tick published once the client has the
        // headers reaches it.
        let ticks = self.state.hub.prices();
        tokio::spawn(price_stream(
            self.state.clone(),
            ticks,
            session,
            filter,
            Throttle::new(interval, max_updates.0, Instant::now()),
            outbox,
            slot,
        ));
        Ok(EventStream::new(client::sse(frames, self.keep_alive())))
    }

    /// The caller's events (Server-Sent Events): `notification` when a notification is
    /// created, `job` when one of the caller's jobs changes status. Each carries an `id`; a
    /// client that reconnects with `Last-Event-ID` first gets what it missed, or `resync` when
    /// that is older than the history kept (then reload notifications and jobs).
    #[oai(path = "/stream/events", method = "get")]
    async fn events(
        &self,
        caller: ActiveUser,
        req: &Request,
        /// The `id` of the last event received, to resume after it.
        #[oai(name = "Last-Event-ID", validator(max_length = 64))]
        last_event_id: Header<Option<String>>,
    ) -> ApiResult<
        EventStream<UserStreamEvent>,
        { status::AUTHED | status::VALIDATION | status::RATE_LIMITED },
    > {
        let session = StreamSession::of_request(req)?;
        let slot = self.slot(caller.0.id)?;
        let (outbox, frames) = self.outbox(StreamKind::Events);
        let (events, first) = UserEvents::open(
            &self.state.hub,
            self.state.redis.clone(),
            caller.0.id,
            last_event_id.0.as_deref(),
        )
        .await;
        tokio::spawn(event_stream(
            self.state.clone(),
            session,
            events,
            first,
            outbox,
            slot,
        ));
        Ok(EventStream::new(client::sse(frames, self.keep_alive())))
    }

    /// One of the caller's portfolios valued live (Server-Sent Events): its valuation now,
    /// then again after each price tick that touches its coins. Another user's portfolio
    /// answers 404 before any stream opens; a deleted portfolio ends the stream (`closed`).
    #[oai(path = "/stream/portfolios/:id", method = "get")]
    async fn portfolio(
        &self,
        caller: ActiveUser,
        req: &Request,
        /// The portfolio's id.
        id: Path<Uuid>,
    ) -> ApiResult<
        EventStream<PortfolioStreamEvent>,
        { status::AUTHED | status::VALIDATION | status::NOT_FOUND | status::RATE_LIMITED },
    > {
        let session = StreamSession::of_request(req)?;
        let slot = self.slot(caller.0.id)?;
        let ticks = self.state.hub.prices();
        let (feed, first) = PortfolioFeed::open(&self.state, caller.0.id, id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("portfolio"))?;
        let (outbox, frames) = self.outbox(StreamKind::Portfolio);
        outbox
            .push(first)
            .map_err(|_| ApiError::Unavailable("the stream could not start".into()))?;
        tokio::spawn(portfolio_stream(
            self.state.clone(),
            ticks,
            session,
            feed,
            outbox,
            slot,
        ));
        Ok(EventStream::new(client::sse(frames, self.keep_alive())))
    }

    /// A single-use ticket for `/api/v1/ws`, for clients that cannot send `Authorization`
    /// on a WebSocket (browsers). It expires after `expires_in` seconds.
    #[oai(path = "/stream/ws-ticket", method = "post")]
    async fn ws_ticket(
        &self,
        _caller: ActiveUser,
        req: &Request,
    ) -> ApiResult<Json<WsTicket>, { status::AUTHED | status::UNAVAILABLE }> {
        let session = StreamSession::of_request(req)?;
        let ttl = self.state.config.streams.ws_ticket_ttl;
        let ticket = tickets::issue(&self.state.redis, session, ttl).await?;
        Ok(Json(WsTicket {
            ticket,
            expires_in: ttl.as_secs().max(1),
        }))
    }

    /// Everything live over one WebSocket. Authenticate with `Authorization: Bearer` or with
    /// `?ticket=` from `POST /stream/ws-ticket`. The caller's events (as on `/stream/events`)
    /// flow from the start; `last_event_id` resumes them. Send JSON messages:
    /// `{"type":"subscribe","coins":["bitcoin"],"vs_currency":"usd","portfolios":["<id>"]}`,
    /// `{"type":"unsubscribe", ...same fields}`, `{"type":"ping"}` (answered `pong`). Every
    /// message is answered (`subscribed`, `unsubscribed`, `pong`) or refused with `error`
    /// (the connection stays open); more than `WS_MESSAGES_PER_SECOND` messages get `error`
    /// `rate_limited`, and a client that keeps on is disconnected (close code 1008).
    #[oai(path = "/ws", method = "get")]
    async fn ws(
        &self,
        req: &Request,
        /// A ticket from `POST /stream/ws-ticket` (instead of `Authorization`).
        #[oai(validator(max_length = 100))]
        ticket: Query<Option<String>>,
        /// The `id` of the last event received, to resume after it.
        #[oai(validator(max_length = 64))]
        last_event_id: Query<Option<String>>,
    ) -> ApiResult<
        Upgrade,
        {
            status::BAD_REQUEST
                | status::UNAUTHORIZED
                | status::VALIDATION
                | status::RATE_LIMITED
                | status::UNAVAILABLE
        },
    > {
        let session = ws::authenticate(&self.state, req, ticket.0.as_deref()).await?;
        let slot = self.slot(session.user_id)?;
        let upgrade = ws::upgrade(req).await?;
        let state = self.state.clone();
        let last_event_id = last_event_id.0;
        Ok(Upgrade::new(upgrade.on_upgrade(move |socket| {
            ws::serve(state, session, last_event_id, socket, slot)
        })))
    }
}

/// Feeds a price stream until it ends.
async fn price_stream(
    state: Arc<AppState>,
    mut ticks: tokio::sync::broadcast::Receiver<Signal<hub::PriceTick>>,
    session: StreamSession,
    filter: PriceFilter,
    mut throttle: Throttle,
    outbox: Outbox,
    _slot: Slot,
) {
    let mut end = EndWatch::of(&state, session);
    let coins: Vec<String> = filter.coins.iter().cloned().collect();
    // Boxed here and below: a rare, large future kept out of the state every client's task
    // carries for its whole life.
    if let Ok(stored) = Box::pin(state.prices.stored(&coins, &filter.vs_currency)).await {
        let source = stored
            .values()
            .next()
            .map(|p| p.source.clone())
            .unwrap_or_default();
        throttle.add_quotes(
            stored.into_values().map(|price| TickQuote {
                coin_id: price.coin_id,
                price: price.price.normalize().to_string(),
                change_24h_pct: price.change_24h_pct.map(|pct| pct.normalize().to_string()),
                quoted_at: Some(price.last_updated),
            }),
            &source,
        );
    }
    loop {
        if let Some(frame) = throttle.take(&filter.vs_currency, Instant::now())
            && let Err(gone) = outbox.push(frame)
        {
            return outbox.end(gone).await;
        }
        if throttle.finished() {
            return outbox.close(CloseReason::Done).await;
        }
        let due = throttle.due_at();
        tokio::select! {
            reason = end.ended() => return outbox.close(reason).await,
            () = outbox.disconnected() => return,
            () = sleep_until(due) => {}
            signal = ticks.recv() => match signal {
                Ok(Signal::Message(tick)) => throttle.add(&filter, &tick),
                Ok(Signal::Missed) | Err(RecvError::Lagged(_)) => {
                    if let Err(gone) = outbox.push(Frame::resync("price ticks may have been missed")) {
                        return outbox.end(gone).await;
                    }
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Feeds an event stream until it ends.
async fn event_stream(
    state: Arc<AppState>,
    session: StreamSession,
    mut events: UserEvents,
    first: Vec<Frame>,
    outbox: Outbox,
    _slot: Slot,
) {
    let mut end = EndWatch::of(&state, session);
    for frame in first {
        if let Err(gone) = outbox.push(frame) {
            return outbox.end(gone).await;
        }
    }
    loop {
        tokio::select! {
            reason = end.ended() => return outbox.close(reason).await,
            () = outbox.disconnected() => return,
            frames = events.next() => {
                let Some(frames) = frames else { return };
                for frame in frames {
                    if let Err(gone) = outbox.push(frame) {
                        return outbox.end(gone).await;
                    }
                }
            }
        }
    }
}

/// Feeds a portfolio stream until it ends.
async fn portfolio_stream(
    state: Arc<AppState>,
    mut ticks: tokio::sync::broadcast::Receiver<Signal<hub::PriceTick>>,
    session: StreamSession,
    mut feed: PortfolioFeed,
    outbox: Outbox,
    _slot: Slot,
) {
    let mut end = EndWatch::of(&state, session);
    loop {
        let revalue = tokio::select! {
            reason = end.ended() => return outbox.close(reason).await,
            () = outbox.disconnected() => return,
            signal = ticks.recv() => match signal {
                Ok(Signal::Message(tick)) => feed.touched_by(&tick),
                Ok(Signal::Missed) | Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            },
        };
        if !revalue {
            continue;
        }
        match Box::pin(feed.value(&state)).await {
            Ok(Some(frame)) => {
                if let Err(gone) = outbox.push(frame) {
                    return outbox.end(gone).await;
                }
            }
            Ok(None) => return outbox.close(CloseReason::Gone).await,
            Err(err) => {
                tracing::warn!(error = %err, portfolio = %feed.id, "portfolio not revalued")
            }
        }
    }
}
