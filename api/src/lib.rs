//! The Coinpulse HTTP API.
//!
//! Features live in their own modules (`auth`, `users`, `admin`, `health`, `portfolios`, …), each owning its
//! routes, queries and types; `platform` holds the cross-cutting middleware and `app` wires it
//! all together from configuration.

pub mod admin;
pub mod alerts;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod health;
pub mod housekeeping;
pub mod jobs;
pub mod market;
pub mod notifications;
pub mod platform;
pub mod portfolios;
pub mod streams;
pub mod users;

pub use app::{AppState, build_app};
