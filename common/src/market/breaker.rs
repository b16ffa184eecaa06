//! A circuit breaker for the price provider: after `failures` failed calls in a row it opens and
//! calls fail at once (spending no budget, holding no request) for `cooldown`; then one probe
//! call is let through (half-open): its success closes the breaker, its failure opens it again.
//! One breaker per process and provider: each process learns of the outage by itself, within
//! `failures` calls. `upstream_breaker_state{provider}` is 0 closed, 1 half-open, 2 open.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calls pass; `failures` in a row so far.
    Closed { failures: u32 },
    /// Calls fail at once until `until`.
    Open { until: Instant },
    /// One probe is out since `since`; others fail at once. A probe that never reports (its
    /// caller gave up) is replaced after a cooldown.
    HalfOpen { since: Instant },
}

/// The breaker refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// How long until a call may go through (as a probe).
    pub retry_in: Duration,
}

/// A circuit breaker. Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct Breaker {
    provider: &'static str,
    failures: u32,
    cooldown: Duration,
    state: Arc<Mutex<State>>,
}

impl Breaker {
    /// A closed breaker for `provider` that opens after `failures` (at least 1) failed calls in
    /// a row and stays open for `cooldown`.
    pub fn new(provider: &'static str, failures: u32, cooldown: Duration) -> Self {
        let breaker = Self {
            provider,
            failures: failures.max(1),
            cooldown,
            state: Arc::new(Mutex::new(State::Closed { failures: 0 })),
        };
        breaker.export(State::Closed { failures: 0 });
        breaker
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is one assignment: a poisoned lock still holds a valid state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn export(&self, state: State) {
        let value = match state {
            State::Closed { .. } => 0.0,
            State::HalfOpen { .. } => 1.0,
            State::Open { .. } => 2.0,
        };
        metrics::gauge!("upstream_breaker_state", "provider" => self.provider).set(value);
    }

    fn set(&self, state: &mut State, next: State) {
        let was_closed = matches!(*state, State::Closed { .. });
        *state = next;
        self.export(next);
        match next {
            State::Open { .. } if was_closed => tracing::warn!(
                provider = self.provider,
                cooldown_ms = self.cooldown.as_millis() as u64,
                "price provider keeps failing; breaker open, calls fail fast"
            ),
            State::Closed { .. } if !was_closed => {
                tracing::info!(
                    provider = self.provider,
                    "price provider recovered; breaker closed"
                )
            }
            _ => {}
        }
    }

    /// Whether a call may go out now.
    pub fn admit(&self) -> Result<(), Refused> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Result<(), Refused> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now < until => Err(Refused {
                retry_in: until - now,
            }),
            State::HalfOpen { since } if now < since + self.cooldown => Err(Refused {
                retry_in: since + self.cooldown - now,
            }),
            State::Open { .. } | State::HalfOpen { .. } => {
                self.set(&mut state, State::HalfOpen { since: now });
                Ok(())
            }
        }
    }

    /// The call got an answer the provider meant (a success, or a refusal of the request).
    pub fn succeeded(&self) {
        let mut state = self.lock();
        if *state != (State::Closed { failures: 0 }) {
            self.set(&mut state, State::Closed { failures: 0 });
        }
    }

    /// The call failed in a way that says the provider is in trouble (unreachable, 5xx, 429).
    pub fn failed(&self) {
        self.failed_at(Instant::now());
    }

    fn failed_at(&self, now: Instant) {
        let mut state = self.lock();
        let next = match *state {
            State::Closed { failures } if failures + 1 < self.failures => State::Closed {
                failures: failures + 1,
            },
            _ => State::Open {
                until: now + self.cooldown,
            },
        };
        self.set(&mut state, next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_millis(40);

    #[test]
    fn opens_after_the_threshold_probes_after_the_cooldown_and_closes_on_success() {
        let breaker = Breaker::new("test", 3, COOLDOWN);
        let start = Instant::now();
        breaker.failed_at(start);
        breaker.failed_at(start);
        assert_eq!(
            breaker.admit_at(start),
            Ok(()),
            "two failures keep it closed"
        );
        breaker.succeeded();
        breaker.failed_at(start);
        breaker.failed_at(start);
        assert_eq!(
            breaker.admit_at(start),
            Ok(()),
            "a success resets the count"
        );
        breaker.failed_at(start);
        let refused = breaker
            .admit_at(start)
            .expect_err("open after three in a row");
        assert_eq!(refused.retry_in, COOLDOWN);

        let later = start + COOLDOWN;
        assert_eq!(
            breaker.admit_at(later),
            Ok(()),
            "one probe after the cooldown"
        );
        assert!(breaker.admit_at(later).is_err(), "only one probe at a time");
        breaker.failed_at(later);
        assert!(
            breaker.admit_at(later + COOLDOWN / 2).is_err(),
            "a failed probe opens it again"
        );

        let after = later + COOLDOWN;
        assert_eq!(breaker.admit_at(after), Ok(()));
        breaker.succeeded();
        assert_eq!(breaker.admit_at(after), Ok(()));
        assert_eq!(breaker.admit_at(after), Ok(()), "closed: every call passes");
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_after_a_cooldown() {
        let breaker = Breaker::new("test", 1, COOLDOWN);
        let start = Instant::now();
        breaker.failed_at(start);
        let probing = start + COOLDOWN;
        assert_eq!(
            breaker.admit_at(probing),
            Ok(()),
            "the probe (its caller then gives up)"
        );
        let refused = breaker.admit_at(probing).expect_err("the probe is out");
        assert_eq!(refused.retry_in, COOLDOWN);
        assert_eq!(breaker.admit_at(probing + COOLDOWN), Ok(()), "a new probe");
    }
}
