//! Request coalescing: concurrent lookups that miss the cache for the same coin (and currency)
//! share one provider call instead of each making their own. The first lookup for a coin starts
//! the call on a task of its own (so it completes, and stores its quotes, even if that lookup is
//! abandoned); later ones for the same coin wait for its result.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::store::LatestPrice;
use crate::market::ProviderError;

/// What a shared provider call produced.
#[derive(Debug, Clone)]
pub(crate) enum Landed {
    /// The quotes it got (stored and cached), by coin.
    Prices(Arc<HashMap<String, LatestPrice>>),
    /// It failed or was too slow: why.
    Unavailable(String),
    /// The provider refused the request itself.
    Refused(ProviderError),
}

/// A call in flight: its id (so only it removes its entries) and where its result appears.
#[derive(Debug, Clone)]
struct Flight {
    id: u64,
    landed: watch::Receiver<Option<Landed>>,
}

/// The calls in flight, by (currency, coin). Cheap to clone; clones share them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flights {
    by_coin: Arc<Mutex<HashMap<(String, String), Flight>>>,
    next_id: Arc<AtomicU64>,
    waiting: Arc<AtomicUsize>,
}

/// A new call this lookup must start: its coins, and where to put the result.
pub(crate) struct Departure {
    pub coins: Vec<String>,
    id: u64,
    landed: watch::Sender<Option<Landed>>,
}

/// The calls one lookup waits for: each with the coins it wants from it.
pub(crate) type Boarding = Vec<(Vec<String>, watch::Receiver<Option<Landed>>)>;

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Flight>> {
        // Each update is a single insert or remove: a poisoned map is still consistent.
        self.by_coin
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins the calls in flight for `coins` and registers a new one for the rest (the
    /// caller makes it, then [`Flights::land`]s it). Each wanted coin is in exactly one place.
    pub fn board(&self, coins: &[String], vs: &str) -> (Boarding, Option<Departure>) {
        let mut by_flight: HashMap<u64, (Vec<String>, watch::Receiver<Option<Landed>>)> =
            HashMap::new();
        let mut own = Vec::new();
        let mut map = self.lock();
        for coin in coins {
            match map.get(&(vs.to_owned(), coin.clone())) {
                Some(flight) => by_flight
                    .entry(flight.id)
                    .or_insert_with(|| (Vec::new(), flight.landed.clone()))
                    .0
                    .push(coin.clone()),
                None => own.push(coin.clone()),
            }
        }
        if !by_flight.is_empty() {
            metrics::counter!("price_lookups_coalesced_total").increment(by_flight.len() as u64);
        }
        let mut boarding: Boarding = by_flight.into_values().collect();
        let departure = (!own.is_empty()).then(|| {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (landed, receiver) = watch::channel(None);
            for coin in &own {
                map.insert(
                    (vs.to_owned(), coin.clone()),
                    Flight {
                        id,
                        landed: receiver.clone(),
                    },
                );
            }
            boarding.push((own.clone(), receiver));
            Departure {
                coins: own,
                id,
                landed,
            }
        });
        (boarding, departure)
    }

    /// Publishes a call's result and removes its entries (later lookups read the cache).
    pub fn land(&self, departure: Departure, vs: &str, landed: Landed) {
        {
            let mut map = self.lock();
            for coin in &departure.coins {
                let key = (vs.to_owned(), coin.clone());
                if map
                    .get(&key)
                    .is_some_and(|flight| flight.id == departure.id)
                {
                    map.remove(&key);
                }
            }
        }
        let _ = departure.landed.send(Some(landed));
    }

    /// Waits for a call's result. A call whose task died without one reads as unavailable.
    pub async fn wait(&self, mut landed: watch::Receiver<Option<Landed>>) -> Landed {
        /// Counts a waiting lookup until it stops waiting, abandoned or not.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        landed
            .wait_for(Option::is_some)
            .await
            .map(|landed| landed.clone().expect("waited for Some"))
            .unwrap_or_else(|_| Landed::Unavailable("the price lookup was interrupted".into()))
    }

    /// How many lookups are waiting for a provider call right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}
