//! Integration tests of the API, in process, against real Postgres and Redis.
//!
//! One test binary (with modules) rather than one per file: it links the crate once.

mod accounts;
mod admin;
mod alerts;
mod auth;
mod binary;
mod clients;
mod conditional;
mod helpers;
mod housekeeping;
mod jobs;
mod market;
mod notifications;
mod openapi;
mod performance;
mod platform;
mod portfolios;
mod security;
mod streams;
mod tokens;
mod users;
