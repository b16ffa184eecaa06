//! A reliable job queue on Redis, behind apalis 1.0's backend traits.
//!
//! Producers push jobs with [`RedisQueue::push`] (or apalis's `TaskSink` on a
//! [`RedisBackend`]); workers consume them with apalis's `WorkerBuilder` and `Monitor` over a
//! [`RedisBackend`]. Why not apalis-redis is in `docs/decisions/0001-own-redis-queue-backend.md`;
//! how this one is laid out in Redis, in `docs/ARCHITECTURE.md`. In short, per queue:
//!
//! - `ready` (list): runnable job ids, oldest at the right;
//! - `delayed` (sorted set, by due time): delayed pushes and retries in backoff, promoted to
//!   `ready` in bounded chunks;
//! - `proc:{worker}` (list): the jobs a worker holds, filled atomically from `ready`;
//! - `leases` (sorted set, by deadline): one lease per worker, renewed by a heartbeat task; a
//!   reaper gives the jobs of expired workers back to `ready`;
//! - `args`, `max`, `attempts`, `state`, `ready_at`, `error` (hashes keyed by job id): the
//!   jobs' fields, one hash per field, so a batch of jobs is read or written with one command
//!   per field rather than several per job;
//! - `finished` (sorted set, by finish time): done jobs, whose data is dropped after
//!   `finished_ttl`;
//! - `dead` (sorted set): dead-lettered ids, bounded in age and count.
//!
//! Attempts are counted when a job starts, so a run lost with its process counts, and a job
//! that keeps killing its worker ends dead instead of looping. Delivery is at least once: a
//! job's own record (for Coinpulse, the Postgres `jobs` row) makes a repeat harmless.

mod backend;
mod client;
mod config;
mod error;
mod layer;

pub use backend::{DeadLetter, DeadLetterHook, Delivery, FailureHook, RedisBackend};
pub use client::{NewJob, QueueStats, RedisQueue};
pub use config::{Backoff, QueueConfig};
pub use error::QueueError;
pub use layer::{AckLayer, AckService, AttemptsExhausted};
