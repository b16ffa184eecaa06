//! What ends a stream besides its client: the account changing under it, or the process
//! stopping; and how many streams one user may hold open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::client::CloseReason;
use super::hub::{AccountChanged, Hub, stopping};
use crate::app::AppState;
use crate::auth::extract::StreamSession;

/// Watches for the reasons a stream must end on the server's side.
#[derive(Debug)]
pub struct EndWatch {
    session: StreamSession,
    db: PgPool,
    accounts: broadcast::Receiver<AccountChanged>,
    shutdown: watch::Receiver<bool>,
    check_pending: bool,
    checks: Arc<tokio::sync::Semaphore>,
    deadline: tokio::time::Instant,
}

impl EndWatch {
    /// Watches `session` through `hub`, for at most `max_life` (and never past the token's
    /// expiry).
    pub fn new(hub: &Hub, db: PgPool, session: StreamSession, max_life: Duration) -> Self {
        let token_left = u64::try_from(session.expires_at - chrono::Utc::now().timestamp())
            .map_or(Duration::ZERO, Duration::from_secs);
        Self {
            deadline: tokio::time::Instant::now() + max_life.min(token_left),
            checks: hub.session_checks(),
            session,
            db,
            accounts: hub.accounts(),
            shutdown: hub.shutdown(),
            check_pending: false,
        }
    }

    /// Watches `session` with the process's hub and settings.
    pub fn of(state: &AppState, session: StreamSession) -> Self {
        Self::new(
            &state.hub,
            state.db.clone(),
            session,
            state.config.streams.max_duration,
        )
    }

    /// Resolves when the stream must end, with why. Cancel-safe: a check interrupted by
    /// another branch of a `select!` is made again on the next call.
    pub async fn ended(&mut self) -> CloseReason {
        loop {
            if self.check_pending {
                // Boxed: rare, and large next to the rest of a stream's state.
                let checks = self.checks.clone();
                let check = async {
                    let _permit = checks.acquire().await;
                    self.session.still_valid(&self.db).await
                };
                match Box::pin(check).await {
                    Ok(true) => self.check_pending = false,
                    Ok(false) => return CloseReason::SessionEnded,
                    Err(err) => {
                        // Postgres is unreachable: keep the stream, ask again on the next change.
                        tracing::warn!(error = %err, "stream session check failed");
                        self.check_pending = false;
                    }
                }
            }
            tokio::select! {
                notice = self.accounts.recv() => match notice {
                    Ok(changed) if changed.concerns(self.session.user_id) => self.check_pending = true,
                    Ok(_) => {}
                    // Missed notices may have concerned this account.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.check_pending = true,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                },
                () = stopping(&mut self.shutdown) => return CloseReason::ShuttingDown,
                () = tokio::time::sleep_until(self.deadline) => return CloseReason::Expired,
            }
        }
    }
}

/// Open streams per user on this process.
#[derive(Debug, Clone, Default)]
pub struct StreamSlots {
    open: Arc<Mutex<HashMap<Uuid, u32>>>,
}

/// One open stream of a user; gives its slot back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: StreamSlots,
    user: Uuid,
}

impl StreamSlots {
    /// A slot for one more stream of `user`, unless `max` are open.
    pub fn take(&self, user: Uuid, max: u32) -> Option<Slot> {
        let mut open = self.open.lock().expect("slots lock");
        let count = open.entry(user).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self.clone(),
            user,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().expect("slots lock");
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_max_slots_and_gets_them_back() {
        let slots = StreamSlots::default();
        let user = Uuid::now_v7();
        let first = slots.take(user, 2).expect("test value");
        let _second = slots.take(user, 2).expect("test value");
        assert!(slots.take(user, 2).is_none());
        assert!(slots.take(Uuid::now_v7(), 2).is_some());
        drop(first);
        assert!(slots.take(user, 2).is_some());
    }
}
