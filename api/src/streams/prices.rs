//! What a price stream sends: the quotes of its coins in its currency, at most once per
//! interval (newer quotes replace older unsent ones of the same coin), up to a number of
//! updates.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::json;
use tokio::time::{Duration, Instant};

use super::client::Frame;
use super::hub::{PriceTick, TickQuote};

/// Which quotes a client wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceFilter {
    /// The coins (none: every coin in the ticks).
    pub coins: HashSet<String>,
    /// The currency.
    pub vs_currency: String,
}

impl PriceFilter {
    /// The quotes of `tick` this filter wants.
    pub fn select<'a>(&'a self, tick: &'a PriceTick) -> impl Iterator<Item = &'a TickQuote> + 'a {
        self.selected(tick)
            .filter_map(|index| tick.data.quotes.get(index as usize))
    }

    /// The positions in `tick` of the quotes this filter wants.
    pub fn selected<'a>(&'a self, tick: &'a PriceTick) -> impl Iterator<Item = u32> + 'a {
        let currency = tick.data.vs_currency == self.vs_currency;
        tick.data
            .quotes
            .iter()
            .zip(0u32..)
            .filter(move |(quote, _)| {
                currency && (self.coins.is_empty() || self.coins.contains(&quote.coin_id))
            })
            .map(|(_, index)| index)
    }
}

/// What waits for the next update.
#[derive(Debug)]
enum Pending {
    Nothing,
    /// Quotes of one tick: its frame is shared with the other clients that want them.
    Tick {
        tick: Arc<PriceTick>,
        selected: Vec<u32>,
    },
    /// Quotes merged from several ticks (or read from storage), newest per coin.
    Merged(BTreeMap<String, TickQuote>),
}

/// Quotes waiting for the next allowed update.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    next_at: Instant,
    pending: Pending,
    source: String,
    sent: u32,
    max_updates: Option<u32>,
}

impl Throttle {
    /// Updates at most every `interval`, at most `max_updates` of them.
    pub fn new(interval: Duration, max_updates: Option<u32>, now: Instant) -> Self {
        Self {
            interval,
            next_at: now,
            pending: Pending::Nothing,
            source: String::new(),
            sent: 0,
            max_updates,
        }
    }

    /// Adds the wanted quotes of `tick`.
    pub fn add(&mut self, filter: &PriceFilter, tick: &Arc<PriceTick>) {
        let selected: Vec<u32> = filter.selected(tick).collect();
        if selected.is_empty() {
            return;
        }
        self.pending = match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::Nothing => Pending::Tick {
                tick: tick.clone(),
                selected,
            },
            earlier => {
                let mut merged = earlier.into_quotes();
                for quote in filter.select(tick) {
                    merged.insert(quote.coin_id.clone(), quote.clone());
                }
                Pending::Merged(merged)
            }
        };
        self.source.clone_from(&tick.data.source);
    }

    /// Adds quotes read from storage (the snapshot a stream starts with).
    pub fn add_quotes(&mut self, quotes: impl IntoIterator<Item = TickQuote>, source: &str) {
        let mut merged = std::mem::replace(&mut self.pending, Pending::Nothing).into_quotes();
        for quote in quotes {
            merged.insert(quote.coin_id.clone(), quote);
        }
        if !merged.is_empty() {
            self.pending = Pending::Merged(merged);
            source.clone_into(&mut self.source);
        }
    }

    /// When an update is due (`None`: nothing waits).
    pub fn due_at(&self) -> Option<Instant> {
        (!matches!(self.pending, Pending::Nothing)).then_some(self.next_at)
    }

    /// The update to send now, if one is due.
    pub fn take(&mut self, vs_currency: &str, now: Instant) -> Option<Frame> {
        if matches!(self.pending, Pending::Nothing) || now < self.next_at || self.finished() {
            return None;
        }
        let frame = match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::Nothing => return None,
            Pending::Tick { tick, selected } => tick.frame(&selected),
            Pending::Merged(quotes) => {
                let quotes: Vec<TickQuote> = quotes.into_values().collect();
                Frame::new(
                    "prices",
                    json!({ "vs_currency": vs_currency, "source": self.source, "quotes": quotes }),
                )
            }
        };
        self.sent += 1;
        self.next_at = now + self.interval;
        Some(frame)
    }

    /// Whether every update asked for was sent.
    pub fn finished(&self) -> bool {
        self.max_updates.is_some_and(|max| self.sent >= max)
    }
}

impl Pending {
    fn into_quotes(self) -> BTreeMap<String, TickQuote> {
        match self {
            Self::Nothing => BTreeMap::new(),
            Self::Merged(quotes) => quotes,
            Self::Tick { tick, selected } => selected
                .iter()
                .filter_map(|&index| tick.data.quotes.get(index as usize))
                .map(|quote| (quote.coin_id.clone(), quote.clone()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(vs: &str, quotes: &[(&str, &str)]) -> Arc<PriceTick> {
        let tick: PriceTick = serde_json::from_value(json!({
            "id": uuid::Uuid::now_v7(),
            "at": "2026-12-04T00:00:00Z",
            "data": {
                "vs_currency": vs,
                "source": "simulated",
                "quotes": quotes.iter().map(|(coin, price)| json!({
                    "coin_id": coin, "price": price, "change_24h_pct": null, "quoted_at": null
                })).collect::<Vec<_>>(),
            }
        }))
        .expect("test value");
        Arc::new(tick)
    }

    fn filter(coins: &[&str]) -> PriceFilter {
        PriceFilter {
            coins: coins.iter().map(|c| (*c).to_owned()).collect(),
            vs_currency: "usd".into(),
        }
    }

    #[test]
    fn only_the_wanted_coins_in_the_wanted_currency_are_sent() {
        let wanted = filter(&["bitcoin"]);
        let mut throttle = Throttle::new(Duration::ZERO, None, Instant::now());
        throttle.add(&wanted, &tick("eur", &[("bitcoin", "1")]));
        assert_eq!(throttle.due_at(), None);
        throttle.add(
            &wanted,
            &tick("usd", &[("bitcoin", "2"), ("ethereum", "3")]),
        );
        let frame = throttle.take("usd", Instant::now()).expect("test value");
        let data: serde_json::Value = serde_json::from_str(&frame.data).expect("test value");
        assert_eq!(data["type"], "prices");
        assert_eq!(
            data["data"]["quotes"].as_array().expect("test value").len(),
            1
        );
        assert_eq!(data["data"]["quotes"][0]["price"], "2");
    }

    #[test]
    fn ticks_within_the_interval_are_merged_into_the_next_update() {
        let wanted = filter(&[]);
        let start = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(5), Some(2), start);
        throttle.add(&wanted, &tick("usd", &[("bitcoin", "1")]));
        assert!(throttle.take("usd", start).is_some());
        throttle.add(
            &wanted,
            &tick("usd", &[("bitcoin", "2"), ("ethereum", "7")]),
        );
        throttle.add(&wanted, &tick("usd", &[("bitcoin", "3")]));
        assert_eq!(throttle.due_at(), Some(start + Duration::from_secs(5)));
        assert!(
            throttle
                .take("usd", start + Duration::from_secs(4))
                .is_none()
        );
        let frame = throttle
            .take("usd", start + Duration::from_secs(5))
            .expect("test value");
        let data: serde_json::Value = serde_json::from_str(&frame.data).expect("test value");
        let quotes = data["data"]["quotes"].as_array().expect("test value");
        assert_eq!(quotes.len(), 2);
        assert_eq!(quotes[0]["coin_id"], "bitcoin");
        assert_eq!(quotes[0]["price"], "3");
        assert!(throttle.finished());
    }
}
