//! What a price stream sends: the quotes of its coins in its currency, at most once per
//! interval (newer quotes replace older unsent ones of the same coin), up to a number of
//! updates.

use std::collections::{BTreeMap, HashSet};

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
        let currency = tick.data.vs_currency == self.vs_currency;
        tick.data.quotes.iter().filter(move |quote| {
            currency && (self.coins.is_empty() || self.coins.contains(&quote.coin_id))
        })
    }
}

/// Quotes waiting for the next allowed update.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    next_at: Instant,
    pending: BTreeMap<String, TickQuote>,
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
            pending: BTreeMap::new(),
            source: String::new(),
            sent: 0,
            max_updates,
        }
    }

    /// Adds the wanted quotes of `tick`.
    pub fn add(&mut self, filter: &PriceFilter, tick: &PriceTick) {
        for quote in filter.select(tick) {
            self.pending.insert(quote.coin_id.clone(), quote.clone());
        }
        if !self.pending.is_empty() {
            self.source.clone_from(&tick.data.source);
        }
    }

    /// Adds quotes read from storage (the snapshot a stream starts with).
    pub fn add_quotes(&mut self, quotes: impl IntoIterator<Item = TickQuote>, source: &str) {
        for quote in quotes {
            self.pending.insert(quote.coin_id.clone(), quote);
        }
        source.clone_into(&mut self.source);
    }

    /// When an update is due (`None`: nothing waits).
    pub fn due_at(&self) -> Option<Instant> {
        (!self.pending.is_empty()).then_some(self.next_at)
    }

    /// The update to send now, if one is due.
    pub fn take(&mut self, vs_currency: &str, now: Instant) -> Option<Frame> {
        if self.pending.is_empty() || now < self.next_at || self.finished() {
            return None;
        }
        let quotes: Vec<TickQuote> = std::mem::take(&mut self.pending).into_values().collect();
        self.sent += 1;
        self.next_at = now + self.interval;
        Some(Frame::new(
            "prices",
            json!({ "vs_currency": vs_currency, "source": self.source, "quotes": quotes }),
        ))
    }

    /// Whether every update asked for was sent.
    pub fn finished(&self) -> bool {
        self.max_updates.is_some_and(|max| self.sent >= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(vs: &str, quotes: &[(&str, &str)]) -> PriceTick {
        serde_json::from_value(json!({
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
        .expect("test value")
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
