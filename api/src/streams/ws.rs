//! `/api/v1/ws`: the three streams over one WebSocket, chosen by the client's messages.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use governor::{Quota, RateLimiter};
use poem::web::websocket::{CloseCode, Message, WebSocket, WebSocketConfig, WebSocketStream};
use poem::{FromRequest, Request};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::client::{CloseReason, Frame, Frames, Gone, Outbox, StreamKind};
use super::events::UserEvents;
use super::hub::{PriceTick, Signal};
use super::portfolio::PortfolioFeed;
use super::prices::PriceFilter;
use super::session::{EndWatch, Slot};
use super::{MAX_STREAM_COINS, tickets};
use crate::app::AppState;
use crate::auth::extract::{StreamSession, bearer_token};
use crate::error::ApiError;
use crate::market::{parse_coin_id, parse_vs_currency};

/// Most portfolios one connection may watch.
pub const MAX_WS_PORTFOLIOS: usize = 20;

/// Largest message a client may send.
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;

/// Refused messages in a row (over the rate) after which the client is disconnected.
const MAX_REFUSED_IN_A_ROW: u32 = 50;

/// The caller of `/ws`: a bearer token, else a ticket.
pub async fn authenticate(
    state: &AppState,
    req: &Request,
    ticket: Option<&str>,
) -> Result<StreamSession, ApiError> {
    if let Some(token) = bearer_token(req) {
        return StreamSession::from_token(&state.accounts(), token).await;
    }
    let Some(ticket) = ticket else {
        return Err(ApiError::Unauthorized(
            "send Authorization: Bearer <access_token>, or ?ticket= from POST /api/v1/stream/ws-ticket"
                .into(),
        ));
    };
    let session = tickets::redeem(&state.redis, ticket)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the ticket is unknown, used or expired".into()))?;
    if !session.still_valid(&state.db).await? {
        return Err(ApiError::Unauthorized(
            "the account no longer exists, is disabled, or its sessions ended".into(),
        ));
    }
    Ok(session)
}

/// The upgrade, or 400 when the request is not a WebSocket handshake.
pub async fn upgrade(req: &Request) -> Result<WebSocket, ApiError> {
    let upgrade = WebSocket::from_request_without_body(req)
        .await
        .map_err(|_| {
            ApiError::BadRequest(
                "a WebSocket handshake is required (Connection: Upgrade, Upgrade: websocket, \
             Sec-WebSocket-Version: 13, Sec-WebSocket-Key)"
                    .into(),
            )
        })?;
    Ok(upgrade.config(
        WebSocketConfig::default()
            .max_message_size(Some(MAX_CLIENT_MESSAGE))
            .max_frame_size(Some(MAX_CLIENT_MESSAGE)),
    ))
}

/// A client message.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Subscribe(Selection),
    Unsubscribe(Selection),
    Ping,
}

/// What to (un)subscribe.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Selection {
    #[serde(default)]
    coins: Vec<String>,
    #[serde(default)]
    vs_currency: Option<String>,
    #[serde(default)]
    portfolios: Vec<Uuid>,
}

/// What one connection watches.
struct Subscriptions {
    prices: PriceFilter,
    portfolios: HashMap<Uuid, PortfolioFeed>,
}

impl Subscriptions {
    fn reply(&self, kind: &str) -> Frame {
        let mut coins: Vec<&String> = self.prices.coins.iter().collect();
        coins.sort();
        let mut portfolios: Vec<&Uuid> = self.portfolios.keys().collect();
        portfolios.sort();
        Frame {
            event: kind.to_owned(),
            id: None,
            data: json!({
                "type": kind,
                "coins": coins,
                "vs_currency": self.prices.vs_currency,
                "portfolios": portfolios,
            })
            .to_string()
            .into(),
        }
    }
}

fn error_frame(code: &str, message: impl Into<String>) -> Frame {
    Frame {
        event: "error".into(),
        id: None,
        data: json!({ "type": "error", "code": code, "message": message.into() })
            .to_string()
            .into(),
    }
}

/// Runs one connection until either side ends it.
pub async fn serve(
    state: Arc<AppState>,
    session: StreamSession,
    last_event_id: Option<String>,
    socket: WebSocketStream,
    _slot: Slot,
) {
    let config = &state.config.streams;
    let (outbox, frames) = Outbox::new(StreamKind::WebSocket, config.client_buffer as usize);
    let close_code = Arc::new(Mutex::new(CloseCode::Normal));
    let (sink, mut incoming) = socket.split();
    let writer = tokio::spawn(write(sink, frames, config.keep_alive, close_code.clone()));

    let per_second = NonZeroU32::new(config.ws_messages_per_second).unwrap_or(NonZeroU32::MIN);
    let limiter = RateLimiter::direct(
        Quota::per_second(per_second)
            .allow_burst(per_second.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN))),
    );
    let mut refused_in_a_row = 0;
    let mut end = EndWatch::of(&state, session);
    let mut ticks = state.hub.prices();
    let (mut events, first) = UserEvents::open(
        &state.hub,
        state.redis.clone(),
        session.user_id,
        last_event_id.as_deref(),
    )
    .await;
    let mut subscriptions = Subscriptions {
        prices: PriceFilter {
            coins: HashSet::new(),
            vs_currency: "usd".into(),
        },
        portfolios: HashMap::new(),
    };

    let outcome: Result<(), Ending> = async {
        for frame in first {
            outbox.push(frame)?;
        }
        loop {
            tokio::select! {
                reason = end.ended() => return Err(Ending::Close(reason)),
                () = outbox.disconnected() => return Err(Ending::Gone(Gone::Disconnected)),
                message = incoming.next() => {
                    let text = match message {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                            return Err(Ending::Gone(Gone::Disconnected));
                        }
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            outbox.push(error_frame("invalid_message", "messages are JSON text"))?;
                            continue;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    };
                    if limiter.check().is_err() {
                        refused_in_a_row += 1;
                        if refused_in_a_row >= MAX_REFUSED_IN_A_ROW {
                            return Err(Ending::Abuse);
                        }
                        outbox.push(error_frame(
                            "rate_limited",
                            format!("at most {} messages per second", config.ws_messages_per_second),
                        ))?;
                        continue;
                    }
                    refused_in_a_row = 0;
                    for frame in Box::pin(handle(&state, session.user_id, &mut subscriptions, &text)).await {
                        outbox.push(frame)?;
                    }
                }
                frames = events.next() => {
                    let Some(frames) = frames else { return Ok(()) };
                    for frame in frames {
                        outbox.push(frame)?;
                    }
                }
                signal = ticks.recv() => match signal {
                    Ok(Signal::Message(tick)) => {
                        for frame in Box::pin(on_tick(&state, &mut subscriptions, &tick)).await {
                            outbox.push(frame)?;
                        }
                    }
                    Ok(Signal::Missed) | Err(RecvError::Lagged(_)) => {
                        if !subscriptions.prices.coins.is_empty() || !subscriptions.portfolios.is_empty() {
                            outbox.push(Frame::resync("price ticks may have been missed"))?;
                        }
                    }
                    Err(RecvError::Closed) => return Ok(()),
                },
            }
        }
    }
    .await;

    match outcome {
        Ok(()) => {}
        Err(Ending::Gone(Gone::Disconnected)) => {}
        Err(Ending::Gone(Gone::TooSlow)) => {
            set(&close_code, CloseCode::Again);
            outbox.close(CloseReason::SlowConsumer).await;
        }
        Err(Ending::Close(reason)) => {
            set(
                &close_code,
                match reason {
                    CloseReason::ShuttingDown => CloseCode::Restart,
                    _ => CloseCode::Policy,
                },
            );
            outbox.close(reason).await;
        }
        Err(Ending::Abuse) => set(&close_code, CloseCode::Policy),
    }
    let _ = writer.await;
}

enum Ending {
    Gone(Gone),
    Close(CloseReason),
    Abuse,
}

impl From<Gone> for Ending {
    fn from(gone: Gone) -> Self {
        Self::Gone(gone)
    }
}

fn set(code: &Mutex<CloseCode>, value: CloseCode) {
    *code.lock().expect("close code lock") = value;
}

/// Writes frames to the socket (pinging while idle); closes it when the frames end.
async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocketStream, Message>,
    mut frames: Frames,
    keep_alive: Duration,
    close_code: Arc<Mutex<CloseCode>>,
) {
    loop {
        let sent = tokio::select! {
            frame = frames.next() => match frame {
                Some(frame) => sink.send(Message::Text(frame.data.to_string())).await,
                None => break,
            },
            () = tokio::time::sleep(keep_alive) => sink.send(Message::Ping(Vec::new())).await,
        };
        if sent.is_err() {
            return;
        }
    }
    let code = *close_code.lock().expect("close code lock");
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        sink.send(Message::Close(Some((code, String::new())))),
    )
    .await;
}

/// Answers one client message.
async fn handle(
    state: &AppState,
    user: Uuid,
    subscriptions: &mut Subscriptions,
    text: &str,
) -> Vec<Frame> {
    let message = match serde_json::from_str::<ClientMessage>(text) {
        Ok(message) => message,
        Err(err) => {
            return vec![error_frame(
                "invalid_message",
                format!(
                    "expected {{\"type\": \"subscribe\"|\"unsubscribe\"|\"ping\", ...}}: {err}"
                ),
            )];
        }
    };
    match message {
        ClientMessage::Ping => vec![subscriptions.reply("pong")],
        ClientMessage::Unsubscribe(selection) => {
            for coin in &selection.coins {
                subscriptions.prices.coins.remove(coin);
            }
            for id in &selection.portfolios {
                subscriptions.portfolios.remove(id);
            }
            vec![subscriptions.reply("unsubscribed")]
        }
        ClientMessage::Subscribe(selection) => {
            subscribe(state, user, subscriptions, selection).await
        }
    }
}

async fn subscribe(
    state: &AppState,
    user: Uuid,
    subscriptions: &mut Subscriptions,
    selection: Selection,
) -> Vec<Frame> {
    let mut coins = Vec::with_capacity(selection.coins.len());
    for coin in &selection.coins {
        match parse_coin_id("coins", coin) {
            Ok(coin) => coins.push(coin),
            Err(err) => return vec![error_frame("invalid_message", describe(&err))],
        }
    }
    let vs_currency = match selection.vs_currency.as_deref() {
        None => subscriptions.prices.vs_currency.clone(),
        Some(raw) => match parse_vs_currency(Some(raw)) {
            Ok(vs) if state.prices.provider().accepts_currency(&vs) => vs,
            Ok(vs) => {
                return vec![error_frame(
                    "invalid_message",
                    format!("vs_currency: {vs:?} is not supported by the price provider"),
                )];
            }
            Err(err) => return vec![error_frame("invalid_message", describe(&err))],
        },
    };
    let all_coins: HashSet<String> = subscriptions
        .prices
        .coins
        .iter()
        .cloned()
        .chain(coins)
        .collect();
    let new_portfolios: Vec<Uuid> = selection
        .portfolios
        .iter()
        .copied()
        .filter(|id| !subscriptions.portfolios.contains_key(id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if all_coins.len() > MAX_STREAM_COINS
        || subscriptions.portfolios.len() + new_portfolios.len() > MAX_WS_PORTFOLIOS
    {
        return vec![error_frame(
            "too_many_subscriptions",
            format!(
                "at most {MAX_STREAM_COINS} coins and {MAX_WS_PORTFOLIOS} portfolios per connection"
            ),
        )];
    }
    let mut frames = Vec::new();
    let mut opened = Vec::new();
    for id in new_portfolios {
        match PortfolioFeed::open(state, user, id).await {
            Ok(Some((feed, valuation))) => {
                opened.push(feed);
                frames.push(valuation);
            }
            Ok(None) => {
                return vec![error_frame(
                    "not_found",
                    format!("portfolio {id} not found"),
                )];
            }
            Err(err) => return vec![error_frame("unavailable", describe(&err))],
        }
    }
    subscriptions.prices.coins = all_coins;
    subscriptions.prices.vs_currency = vs_currency;
    for feed in opened {
        subscriptions.portfolios.insert(feed.id, feed);
    }
    frames.insert(0, subscriptions.reply("subscribed"));
    frames
}

fn describe(err: &ApiError) -> String {
    match err {
        ApiError::Validation(fields) => fields
            .iter()
            .map(|field| format!("{}: {}", field.field, field.message))
            .collect::<Vec<_>>()
            .join("; "),
        ApiError::Internal(_) => "internal error".into(),
        other => other.to_string(),
    }
}

/// What a price tick sends on this connection: its subscribed quotes, and the valuations of
/// the subscribed portfolios it touches.
async fn on_tick(
    state: &AppState,
    subscriptions: &mut Subscriptions,
    tick: &PriceTick,
) -> Vec<Frame> {
    let mut frames = Vec::new();
    if !subscriptions.prices.coins.is_empty() {
        let selected: Vec<u32> = subscriptions.prices.selected(tick).collect();
        if !selected.is_empty() {
            frames.push(tick.frame(&selected));
        }
    }
    let mut gone = Vec::new();
    for feed in subscriptions.portfolios.values_mut() {
        if !feed.touched_by(tick) {
            continue;
        }
        match feed.value(state).await {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => gone.push(feed.id),
            Err(err) => {
                tracing::warn!(error = %err, portfolio = %feed.id, "portfolio not revalued")
            }
        }
    }
    for id in gone {
        subscriptions.portfolios.remove(&id);
        frames.push(error_frame(
            "not_found",
            format!("portfolio {id} was deleted"),
        ));
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_are_read_strictly() {
        assert_eq!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"ping"}"#).expect("test value"),
            ClientMessage::Ping
        );
        let subscribe: ClientMessage =
            serde_json::from_str(r#"{"type":"subscribe","coins":["bitcoin"]}"#)
                .expect("test value");
        assert_eq!(
            subscribe,
            ClientMessage::Subscribe(Selection {
                coins: vec!["bitcoin".into()],
                ..Selection::default()
            })
        );
        for bad in [
            r#"{"type":"subscribe","coins":["bitcoin"],"extra":1}"#,
            r#"{"type":"dance"}"#,
            r#"{"coins":[]}"#,
            r#"{"type":"subscribe","portfolios":["not-a-uuid"]}"#,
            "[]",
            "",
        ] {
            assert!(serde_json::from_str::<ClientMessage>(bad).is_err(), "{bad}");
        }
    }
}
