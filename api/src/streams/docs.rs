//! How the streams appear in the OpenAPI document: the responses (an event stream, a
//! WebSocket upgrade) and the shape of every event, by endpoint. The frames themselves are
//! written as JSON by the stream tasks; these types describe them (`type` is both the JSON
//! member and the SSE event name).

use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use poem::IntoResponse;
use poem_openapi::registry::{
    MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};
use poem_openapi::types::{Any, Type};
use poem_openapi::{ApiResponse, Object, Union};
use uuid::Uuid;

use crate::portfolios::model::Valuation;

/// The events of one stream: their SSE names and the schema of their `data`.
pub trait StreamEvents: Type {
    /// The SSE event names (the `type` of the data documents).
    const NAMES: &'static [&'static str];
    /// What `data` holds, in words.
    const DATA: &'static str;
}

/// A `text/event-stream` response whose events' `data` are `E` documents.
pub struct EventStream<E> {
    response: poem::Response,
    shape: PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for EventStream<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl<E> EventStream<E> {
    /// Wraps an SSE response.
    pub fn new(response: poem::Response) -> Self {
        Self {
            response,
            shape: PhantomData,
        }
    }
}

impl<E: StreamEvents> ApiResponse for EventStream<E> {
    /// One event, as OpenAPI 3.2's `itemSchema` describes `text/event-stream` (and as
    /// schemathesis reads `schema` in 3.0): `event`, `id` and `data`, a JSON document whose
    /// schema is `E` (3.0 cannot attach a schema to a string's content, so it is named).
    fn meta() -> MetaResponses {
        let event = MetaSchema {
            description: Some("The event's name: the `type` of its data."),
            enum_items: E::NAMES
                .iter()
                .map(|name| serde_json::json!(name))
                .collect(),
            ..MetaSchema::new("string")
        };
        let id = MetaSchema {
            description: Some(
                "Position in the caller's event history, on events that have one: send it \
                 back as `Last-Event-ID` to resume after it.",
            ),
            ..MetaSchema::new("string")
        };
        let data = MetaSchema {
            description: Some(E::DATA),
            ..MetaSchema::new("string")
        };
        MetaResponses {
            responses: vec![MetaResponse {
                description: "Server-Sent Events, one JSON document per event, until the \
                              server ends the stream (with `closed`) or the client leaves; \
                              comments keep an idle connection alive.",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: "text/event-stream",
                    schema: MetaSchemaRef::Inline(Box::new(MetaSchema {
                        required: vec!["event", "data"],
                        properties: vec![
                            ("event", MetaSchemaRef::Inline(Box::new(event))),
                            ("id", MetaSchemaRef::Inline(Box::new(id))),
                            ("data", MetaSchemaRef::Inline(Box::new(data))),
                        ],
                        ..MetaSchema::new("object")
                    })),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        E::register(registry);
    }
}

impl<E: Send> IntoResponse for EventStream<E> {
    fn into_response(self) -> poem::Response {
        self.response
    }
}

/// A WebSocket upgrade.
#[derive(Debug)]
pub struct Upgrade(poem::Response);

impl Upgrade {
    /// Wraps the upgrade response.
    pub fn new(upgrade: impl IntoResponse) -> Self {
        Self(upgrade.into_response())
    }
}

impl ApiResponse for Upgrade {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "Switching Protocols: the connection is a WebSocket carrying JSON \
                              text messages (`WsMessage` from the server).",
                status: Some(101),
                status_range: None,
                content: vec![],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        WsMessage::register(registry);
    }
}

impl IntoResponse for Upgrade {
    fn into_response(self) -> poem::Response {
        self.0
    }
}

/// One coin's latest quote.
#[derive(Debug, Object)]
pub struct StreamQuote {
    /// The coin.
    pub coin_id: String,
    /// Price per unit, an exact decimal.
    pub price: String,
    /// Change over 24 hours in percent, when known.
    pub change_24h_pct: Option<String>,
    /// When the source quoted it.
    #[oai(serialize_with = "common::wire::optional_timestamp")]
    pub quoted_at: Option<DateTime<Utc>>,
}

/// The quotes of a price update.
#[derive(Debug, Object)]
pub struct PriceUpdateData {
    /// The currency of every price.
    pub vs_currency: String,
    /// Where the quotes came from (`simulated`, `coingecko`).
    pub source: String,
    /// The stream's coins that have new quotes, by coin id.
    pub quotes: Vec<StreamQuote>,
}

/// `prices`: new quotes.
#[derive(Debug, Object)]
pub struct PriceUpdate {
    /// Event id.
    pub id: Uuid,
    /// When it was sent.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub at: DateTime<Utc>,
    /// The quotes.
    pub data: PriceUpdateData,
}

/// What a `job` event says.
#[derive(Debug, Object)]
pub struct JobChange {
    /// The job.
    pub id: Uuid,
    /// Its kind, e.g. `bulk_fetch`.
    pub kind: String,
    /// Its status now: `running`, `succeeded`, `failed` (will be retried), `dead`, ...
    pub status: String,
    /// Attempts so far.
    pub attempts: u32,
}

/// `job`: one of the caller's jobs changed status.
#[derive(Debug, Object)]
pub struct JobEvent {
    /// Event id.
    pub id: Uuid,
    /// When it happened.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub at: DateTime<Utc>,
    /// Position in the caller's event history (also the SSE `id`, for `Last-Event-ID`).
    pub stream_id: String,
    /// The job's new state.
    pub data: JobChange,
}

/// What a `notification` event says.
#[derive(Debug, Object)]
pub struct NotificationCreated {
    /// The notification (as at `GET /notifications`).
    pub id: Uuid,
    /// `price_alerts`, `account` or `jobs`.
    pub category: String,
    /// What happened: `price_alert`, `job_finished`, ...
    pub kind: String,
    /// One line.
    pub title: String,
    /// The details in words.
    pub body: String,
    /// The details as data.
    pub data: Any<serde_json::Value>,
}

/// `notification`: a notification was created for the caller.
#[derive(Debug, Object)]
pub struct NotificationEvent {
    /// Event id (also the notification's id).
    pub id: Uuid,
    /// When it happened.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub at: DateTime<Utc>,
    /// Position in the caller's event history (also the SSE `id`, for `Last-Event-ID`).
    pub stream_id: String,
    /// The notification.
    pub data: NotificationCreated,
}

/// `valuation`: the portfolio valued now.
#[derive(Debug, Object)]
pub struct ValuationUpdate {
    /// Event id.
    pub id: Uuid,
    /// When it was sent.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub at: DateTime<Utc>,
    /// The valuation, as at `GET /portfolios/{id}/valuation`.
    pub data: Valuation,
}

/// Why.
#[derive(Debug, Object)]
pub struct ResyncReason {
    /// In words.
    pub reason: String,
}

/// `resync`: events may have been missed; reload what the stream shows.
#[derive(Debug, Object)]
pub struct ResyncEvent {
    /// Event id.
    pub id: Uuid,
    /// When it was sent.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub at: DateTime<Utc>,
    /// Why.
    pub data: ResyncReason,
}

/// Why a stream was closed.
#[derive(Debug, Object)]
pub struct ClosedReason {
    /// `slow_consumer`, `session_ended`, `shutting_down`, `done`, `gone` or `expired`.
    pub reason: String,
    /// In words.
    pub message: String,
}

/// `closed`: the server ends the stream (the last event).
#[derive(Debug, Object)]
pub struct ClosedEvent {
    /// Event id.
    pub id: Uuid,
    /// When it was sent.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub at: DateTime<Utc>,
    /// Why.
    pub data: ClosedReason,
}

/// An event of `/stream/prices`.
#[derive(Debug, Union)]
#[oai(discriminator_name = "type")]
pub enum PriceStreamEvent {
    /// New quotes.
    #[oai(mapping = "prices")]
    Prices(PriceUpdate),
    /// Ticks may have been missed.
    #[oai(mapping = "resync")]
    Resync(ResyncEvent),
    /// The end.
    #[oai(mapping = "closed")]
    Closed(ClosedEvent),
}

impl StreamEvents for PriceStreamEvent {
    const NAMES: &'static [&'static str] = &["prices", "resync", "closed"];
    const DATA: &'static str = "A `PriceStreamEvent` JSON document.";
}

/// An event of `/stream/events`.
#[derive(Debug, Union)]
#[oai(discriminator_name = "type")]
pub enum UserStreamEvent {
    /// A job changed status.
    #[oai(mapping = "job")]
    Job(JobEvent),
    /// A notification was created.
    #[oai(mapping = "notification")]
    Notification(NotificationEvent),
    /// Events may have been missed.
    #[oai(mapping = "resync")]
    Resync(ResyncEvent),
    /// The end.
    #[oai(mapping = "closed")]
    Closed(ClosedEvent),
}

impl StreamEvents for UserStreamEvent {
    const NAMES: &'static [&'static str] = &["job", "notification", "resync", "closed"];
    const DATA: &'static str = "A `UserStreamEvent` JSON document.";
}

/// An event of `/stream/portfolios/{id}`.
#[derive(Debug, Union)]
#[oai(discriminator_name = "type")]
pub enum PortfolioStreamEvent {
    /// The valuation now.
    #[oai(mapping = "valuation")]
    Valuation(ValuationUpdate),
    /// Ticks may have been missed (a fresh valuation follows).
    #[oai(mapping = "resync")]
    Resync(ResyncEvent),
    /// The end.
    #[oai(mapping = "closed")]
    Closed(ClosedEvent),
}

impl StreamEvents for PortfolioStreamEvent {
    const NAMES: &'static [&'static str] = &["valuation", "resync", "closed"];
    const DATA: &'static str = "A `PortfolioStreamEvent` JSON document.";
}

/// `pong`, `subscribed`, `unsubscribed`: the answer to a client's message.
#[derive(Debug, Object)]
pub struct WsReply {
    /// The price coins subscribed now.
    pub coins: Vec<String>,
    /// Their currency.
    pub vs_currency: String,
    /// The portfolios subscribed now.
    pub portfolios: Vec<Uuid>,
}

/// `error`: a client message was refused (the connection stays open).
#[derive(Debug, Object)]
pub struct WsError {
    /// `invalid_message`, `rate_limited`, `not_found`, `too_many_subscriptions`.
    pub code: String,
    /// In words.
    pub message: String,
}

/// A message from the server on `/ws`: the events of the three SSE streams, plus answers.
#[derive(Debug, Union)]
#[oai(discriminator_name = "type")]
pub enum WsMessage {
    /// New quotes of subscribed coins.
    #[oai(mapping = "prices")]
    Prices(PriceUpdate),
    /// A job changed status.
    #[oai(mapping = "job")]
    Job(JobEvent),
    /// A notification was created.
    #[oai(mapping = "notification")]
    Notification(NotificationEvent),
    /// A subscribed portfolio's valuation.
    #[oai(mapping = "valuation")]
    Valuation(ValuationUpdate),
    /// Events may have been missed.
    #[oai(mapping = "resync")]
    Resync(ResyncEvent),
    /// The server ends the connection.
    #[oai(mapping = "closed")]
    Closed(ClosedEvent),
    /// The answer to `subscribe`.
    #[oai(mapping = "subscribed")]
    Subscribed(WsReply),
    /// The answer to `unsubscribe`.
    #[oai(mapping = "unsubscribed")]
    Unsubscribed(WsReply),
    /// The answer to `ping`.
    #[oai(mapping = "pong")]
    Pong(WsReply),
    /// A refused message.
    #[oai(mapping = "error")]
    Error(WsError),
}
