//! Cross-cutting HTTP machinery: middleware, request bodies, pagination, OpenAPI tags.

pub mod body_limit;
pub mod conditional;
pub mod http_metrics;
pub mod idempotency;
pub mod json_body;
pub mod openapi_doc;
pub mod pagination;
pub mod param_messages;
pub mod pattern_words;
pub mod rate_limit;
pub mod request_context;
pub mod route_templates;
pub mod schema_check;

/// Operation groups in the OpenAPI document.
#[derive(Debug, poem_openapi::Tags)]
pub enum ApiTags {
    /// Registration, login and token lifecycle.
    Auth,
    /// The caller's own account.
    Users,
    /// User and cache administration (role `admin`).
    Admin,
    /// Prices, popular coins, price history and bulk fetches.
    Market,
    /// The caller's background jobs.
    Jobs,
    /// The caller's portfolios, their transactions and valuation.
    Portfolios,
    /// Price alerts.
    Alerts,
    /// In-app notifications and notification preferences.
    Notifications,
    /// Live prices, events and valuations (Server-Sent Events and WebSocket).
    Streams,
    /// Liveness, readiness and metrics.
    Operations,
}

/// The fixed instant used in OpenAPI examples, so the document is the same on every build.
pub fn example_time() -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 21, 9, 30, 0)
        .single()
        .unwrap_or_default()
}
