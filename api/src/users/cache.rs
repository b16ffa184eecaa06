//! A short-lived, per-process cache of user records for authenticated reads.
//!
//! Every authenticated request loads its user so that a deleted or disabled account is refused
//! before its access token expires. Going to Postgres for that on every request caps the API at
//! the database's point-lookup rate; this cache serves repeated requests from memory for at
//! most `USER_CACHE_TTL`. Writes made through this process invalidate the entry immediately;
//! another API process may serve the old record until the TTL runs out. Role checks for admin
//! routes bypass the cache and always read the database.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use uuid::Uuid;

use super::model::UserRow;

/// Upper bound on cached users per process (a few hundred bytes each).
const MAX_ENTRIES: u64 = 100_000;

/// Recently loaded users by id.
#[derive(Clone)]
pub struct UserCache {
    entries: Option<Cache<Uuid, Arc<UserRow>>>,
}

impl std::fmt::Debug for UserCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCache")
            .field("enabled", &self.entries.is_some())
            .finish_non_exhaustive()
    }
}

impl UserCache {
    /// A cache whose entries live for `ttl`; a zero `ttl` caches nothing.
    pub fn new(ttl: Duration) -> Self {
        let entries = (!ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(ttl)
                .build()
        });
        Self { entries }
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

    /// Forgets a user after any change to their record.
    pub fn invalidate(&self, id: Uuid) {
        if let Some(entries) = &self.entries {
            entries.invalidate(&id);
        }
    }
}
