//! The handlers, one file per resource, and what they share.

mod files;
mod performance;
mod portfolios;
mod transactions;
mod valuation;

use poem_openapi::ApiResponse;
use uuid::Uuid;

pub use self::files::PortfolioFilesApi;
pub use self::portfolios::PortfoliosApi;
pub use self::transactions::TransactionsApi;
pub use self::valuation::{ValuationApi, current_valuation};
use crate::error::ApiError;
use crate::platform::idempotency::replayed_header as replayed;

/// The `Location` of a portfolio.
fn location(id: Uuid) -> String {
    format!("/api/v1/portfolios/{id}")
}

/// The 404 of a portfolio that is not the caller's, deleted, or not there at all.
fn not_found() -> ApiError {
    ApiError::not_found("portfolio")
}

#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}
