//! A short-lived, per-process cache of user records for authenticated reads.
//!
//! Every authenticated request loads its user so that a deleted or disabled account is refused
//! before its access token expires. Going to Postgres for that on every request caps the API at
//! the database's point-lookup rate; this cache serves repeated requests from memory for at
//! most `USER_CACHE_TTL`. A change to an account (disable, delete, demote, password change,
//! logout-all) invalidates the entry in this process at once and is published on Redis
//! (channel `user-changes`), where every API process's stream hub (`streams::hub`) drops its
//! copy within milliseconds and closes the account's streams if it may no longer use them.
//! When Redis is unreachable the TTL is the bound; a hub that reconnects drops the whole
//! cache, since it may have missed changes meanwhile. Role checks for admin
//! routes bypass the cache and always read the database.

use std::sync::Arc;
use std::time::Duration;

use common::redis::Redis;
use moka::sync::Cache;
use uuid::Uuid;

use super::model::UserRow;

/// Upper bound on cached users per process (a few hundred bytes each).
const MAX_ENTRIES: u64 = 100_000;

/// The Redis channel (under the key prefix) that carries the ids of changed accounts.
pub(crate) const CHANGES_CHANNEL: &str = "user-changes";

/// Recently loaded users by id.
#[derive(Clone)]
pub struct UserCache {
    entries: Option<Cache<Uuid, Arc<UserRow>>>,
    redis: Option<Redis>,
}

impl std::fmt::Debug for UserCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCache")
            .field("enabled", &self.entries.is_some())
            .finish_non_exhaustive()
    }
}

impl UserCache {
    /// A cache whose entries live for `ttl` (a zero `ttl` caches nothing), sharing changes with
    /// the other processes through `redis` when given.
    pub fn new(ttl: Duration, redis: Option<Redis>) -> Self {
        let entries = (!ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(ttl)
                .build()
        });
        Self { entries, redis }
    }

    /// The cached record, if fresh.
    pub fn get(&self, id: Uuid) -> Option<Arc<UserRow>> {
        self.entries.as_ref()?.get(&id)
    }

    /// Remembers a record just read from the database.
    pub fn insert(&self, user: Arc<UserRow>) {
        if let Some(entries) = &self.entries {
            entries.insert(user.id, user);
        }
    }

    /// Forgets a user after any change to their account, here and (through Redis) in every
    /// other API process. Call it after the change is committed.
    pub fn invalidate(&self, id: Uuid) {
        self.forget(id);
        if let Some(redis) = self.redis.clone() {
            tokio::spawn(async move {
                let published = async {
                    let mut conn = redis.conn().await?;
                    redis::cmd("PUBLISH")
                        .arg(redis.key(CHANGES_CHANNEL))
                        .arg(id.to_string())
                        .query_async::<()>(&mut conn)
                        .await
                };
                if let Err(err) = published.await {
                    tracing::warn!(error = %err, user_id = %id,
                        "account change not published; other processes see it within USER_CACHE_TTL");
                }
            });
        }
    }

    /// Forgets one user (another process changed the account).
    pub(crate) fn forget(&self, id: Uuid) {
        if let Some(entries) = &self.entries {
            entries.invalidate(&id);
        }
    }

    /// Forgets every user (changes may have been missed).
    pub(crate) fn forget_all(&self) {
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
        }
    }
}
