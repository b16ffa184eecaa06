//! The caller's portfolios, their transactions and valuation: `/api/v1/portfolios`.
//!
//! Every route answers 404 for a portfolio that is not the caller's (or is deleted), whatever
//! the method. Every write under a portfolio locks its row first (see [`store::lock`]), so
//! writes to one portfolio run one at a time and each check sees the state it protects.
//!
//! - [`routes`]: the handlers, one file per resource (portfolios, transactions, valuation);
//! - [`validate`]: parsing of their input; [`model`]: the shapes they show;
//! - [`ledger`]: the over-sell rules; [`valuation`]: cost basis and valuing; [`prices`]: the
//!   prices a valuation uses; [`amount`]: exact decimals as JSON strings;
//! - [`store`]: the queries; [`idempotency`]: `Idempotency-Key` on creates;
//! - [`files`]: import uploads and export downloads over HTTP (the jobs that read and write
//!   them are the worker's, on `common::portfolios`).

pub mod amount;
pub mod files;
pub mod ledger;
pub mod model;
pub mod performance;
pub mod prices;
mod routes;
pub mod store;
pub mod validate;
pub mod valuation;

pub use self::files::is_import_path;
pub use self::routes::{
    PortfolioFilesApi, PortfoliosApi, TransactionsApi, ValuationApi, current_valuation,
};
pub use self::validate::NAME_PATTERN;
