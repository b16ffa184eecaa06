//! The offline price provider: deterministic, plausible prices for the built-in coins.
//!
//! A price is a pure function of (coin, time): the coin's reference price moved by a few
//! slow waves (weekly, daily, hourly) whose phases come from the coin id, plus a per-minute
//! jitter from a hash. Every process, test and restart sees the same price for the same
//! minute, so results are reproducible, yet series look like a market.

use std::f64::consts::TAU;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;

use super::coins::{self, BuiltinCoin};
use super::{CoinInfo, MarketBatch, PricePoint, ProviderError, Quote};

/// Stablecoins barely move.
const STABLE: &[&str] = &["tether", "usd-coin", "dai", "frax", "true-usd"];

/// Simulated prices for the built-in coins, in USD and the currencies of [`RATES`].
#[derive(Debug, Clone, Default)]
pub struct SimulatedProvider;

/// The fixed exchange rates the simulated provider converts USD prices with: units of each
/// currency per US dollar (late-2026 ballpark figures, documented in the README, never
/// updated, so a test can compute any price it expects).
pub const RATES: &[(&str, f64)] = &[
    ("usd", 1.0),
    ("eur", 0.92),
    ("gbp", 0.79),
    ("jpy", 150.0),
    ("chf", 0.88),
    ("cad", 1.36),
    ("aud", 1.52),
    ("cny", 7.2),
    ("inr", 83.0),
    ("krw", 1_350.0),
    ("brl", 5.0),
    ("sgd", 1.34),
];

impl SimulatedProvider {
    /// The currencies this provider quotes in: those of [`RATES`], in that order.
    pub const CURRENCIES: &'static [&'static str] = &[
        "usd", "eur", "gbp", "jpy", "chf", "cad", "aud", "cny", "inr", "krw", "brl", "sgd",
    ];

    /// Quotes `ids` at time `at`; unknown ids are listed as missing.
    pub fn markets_at(
        &self,
        ids: &[String],
        vs: &str,
        at: DateTime<Utc>,
    ) -> Result<MarketBatch, ProviderError> {
        let rate = rate(vs)?;
        let mut batch = MarketBatch::default();
        for id in ids {
            match coins::find(id) {
                Some(coin) => batch.quotes.push(quote(coin, at, rate)),
                None => batch.missing.push(id.clone()),
            }
        }
        Ok(batch)
    }

    /// The `limit` coins with the largest market capitalisation at `at`.
    pub fn top_at(
        &self,
        limit: usize,
        vs: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<Quote>, ProviderError> {
        let rate = rate(vs)?;
        let mut quotes: Vec<Quote> = coins::COINS
            .iter()
            .map(|coin| quote(coin, at, rate))
            .collect();
        quotes.sort_by_key(|quote| std::cmp::Reverse(quote.market_cap));
        quotes.truncate(limit);
        for (rank, quote) in quotes.iter_mut().enumerate() {
            quote.market_cap_rank = u32::try_from(rank + 1).ok();
        }
        Ok(quotes)
    }

    /// Prices of `id` between `from` and `to`: hourly up to 90 days, daily beyond (as
    /// CoinGecko answers), each on the hour or at midnight UTC.
    pub fn history(
        &self,
        id: &str,
        vs: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<PricePoint>, ProviderError> {
        let rate = rate(vs)?;
        let coin = coins::find(id).ok_or_else(|| ProviderError::UnknownCoin(id.to_owned()))?;
        let step_secs = if to - from > Duration::days(90) {
            86_400
        } else {
            3_600
        };
        let step = Duration::seconds(step_secs);
        let mut at = Utc
            .timestamp_opt(from.timestamp() - from.timestamp().rem_euclid(step_secs), 0)
            .single()
            .unwrap_or(from);
        if at < from {
            at += step;
        }
        let mut points = Vec::new();
        while at <= to && points.len() < 10_000 {
            points.push(PricePoint {
                at,
                price: to_decimal(price_usd(coin, at.timestamp()) * rate),
            });
            at += step;
        }
        Ok(points)
    }

    /// Every coin this provider knows, largest reference market capitalisation first.
    pub fn coins(&self) -> Vec<CoinInfo> {
        let mut by_cap: Vec<&BuiltinCoin> = coins::COINS.iter().collect();
        by_cap
            .sort_by(|a, b| (b.reference_usd * b.supply).total_cmp(&(a.reference_usd * a.supply)));
        by_cap
            .into_iter()
            .zip(1..)
            .map(|(coin, rank)| CoinInfo {
                id: coin.id.to_owned(),
                symbol: coin.symbol.to_owned(),
                name: coin.name.to_owned(),
                market_cap_rank: Some(rank),
            })
            .collect()
    }
}

/// Units of `vs` per US dollar.
fn rate(vs: &str) -> Result<f64, ProviderError> {
    RATES
        .iter()
        .find(|(code, _)| *code == vs)
        .map(|(_, rate)| *rate)
        .ok_or_else(|| ProviderError::UnsupportedCurrency(vs.to_owned()))
}

fn quote(coin: &BuiltinCoin, at: DateTime<Utc>, rate: f64) -> Quote {
    let now = at.timestamp();
    let price = price_usd(coin, now) * rate;
    let day_ago = price_usd(coin, now - 86_400) * rate;
    // Volume: a steady share of market cap that breathes with the daily wave.
    let volume = price * coin.supply * 0.03 * (1.0 + 0.5 * wave(coin, now, 86_400.0, 7));
    let minute = now - now.rem_euclid(60);
    Quote {
        id: coin.id.to_owned(),
        symbol: coin.symbol.to_owned(),
        name: coin.name.to_owned(),
        price: to_decimal(price),
        market_cap: Some(to_decimal(price * coin.supply).round_dp(2)),
        market_cap_rank: None,
        volume_24h: Some(to_decimal(volume).round_dp(2)),
        change_24h_pct: Some(to_decimal((price / day_ago - 1.0) * 100.0).round_dp(4)),
        last_updated: Utc.timestamp_opt(minute, 0).single().unwrap_or(at),
    }
}

/// The simulated USD price of `coin` at Unix second `t` (constant within a minute).
pub fn price_usd(coin: &BuiltinCoin, t: i64) -> f64 {
    let minute = t - t.rem_euclid(60);
    let scale = if STABLE.contains(&coin.id) {
        0.002
    } else {
        1.0
    };
    let log_move = scale
        * (0.10 * wave(coin, minute, 7.0 * 86_400.0, 1)
            + 0.04 * wave(coin, minute, 86_400.0, 2)
            + 0.012 * wave(coin, minute, 3_600.0, 3)
            + 0.003 * noise(coin.id, minute));
    coin.reference_usd * log_move.exp()
}

fn wave(coin: &BuiltinCoin, t: i64, period_secs: f64, salt: u64) -> f64 {
    let phase = (hash(coin.id, salt) % 10_000) as f64 / 10_000.0 * TAU;
    (TAU * t as f64 / period_secs + phase).sin()
}

/// A value in [-1, 1] that depends only on (id, minute).
fn noise(id: &str, minute: i64) -> f64 {
    let bits = hash(id, minute as u64 ^ 0x9e37_79b9_7f4a_7c15);
    (bits % 20_001) as f64 / 10_000.0 - 1.0
}

/// FNV-1a over the id and a salt: stable across processes and Rust versions.
fn hash(id: &str, salt: u64) -> u64 {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes().chain(salt.to_le_bytes()) {
        state ^= u64::from(byte);
        state = state.wrapping_mul(0x0100_0000_01b3);
    }
    state
}

/// Ten significant digits: enough for sub-cent coins, no binary noise in the stored decimal.
fn to_decimal(value: f64) -> Decimal {
    Decimal::from_f64_retain(value)
        .and_then(|d| d.round_sf(10))
        .unwrap_or_default()
        .normalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().expect("valid time")
    }

    #[test]
    fn prices_are_deterministic_and_move_over_time() {
        let provider = SimulatedProvider;
        let ids = vec!["bitcoin".to_owned()];
        let a = provider
            .markets_at(&ids, "usd", at(1_795_000_000))
            .expect("quotes");
        let b = provider
            .markets_at(&ids, "usd", at(1_795_000_010))
            .expect("quotes");
        assert_eq!(
            a.quotes[0].price, b.quotes[0].price,
            "same minute, same price"
        );
        let later = provider
            .markets_at(&ids, "usd", at(1_795_003_600))
            .expect("quotes");
        assert_ne!(a.quotes[0].price, later.quotes[0].price);
        let price = a.quotes[0].price;
        assert!(
            price > Decimal::from(40_000) && price < Decimal::from(100_000),
            "{price}"
        );
    }

    #[test]
    fn unknown_coins_and_currencies_are_reported() {
        let provider = SimulatedProvider;
        let ids = vec!["bitcoin".to_owned(), "not-a-coin".to_owned()];
        let batch = provider
            .markets_at(&ids, "usd", at(1_795_000_000))
            .expect("quotes");
        assert_eq!(batch.quotes.len(), 1);
        assert_eq!(batch.missing, vec!["not-a-coin".to_owned()]);
        assert!(matches!(
            provider.markets_at(&ids, "xyz", at(0)),
            Err(ProviderError::UnsupportedCurrency(_))
        ));
    }

    #[test]
    fn every_advertised_currency_is_quoted_at_its_fixed_rate() {
        let codes: Vec<&str> = RATES.iter().map(|(code, _)| *code).collect();
        assert_eq!(codes, SimulatedProvider::CURRENCIES);
        let ids = vec!["bitcoin".to_owned()];
        let when = at(1_795_000_000);
        let usd = SimulatedProvider
            .markets_at(&ids, "usd", when)
            .expect("usd");
        for (code, rate) in RATES {
            let quoted = SimulatedProvider
                .markets_at(&ids, code, when)
                .unwrap_or_else(|err| panic!("{code}: {err}"));
            let expected =
                to_decimal(price_usd(coins::find("bitcoin").expect("btc"), 1_795_000_000) * rate);
            assert_eq!(quoted.quotes[0].price, expected, "{code}");
            let history = SimulatedProvider
                .history("bitcoin", code, when, when + Duration::hours(2))
                .unwrap_or_else(|err| panic!("{code}: {err}"));
            assert_eq!(history.len(), 2, "{code}");
        }
        let eur = SimulatedProvider
            .markets_at(&ids, "eur", when)
            .expect("eur");
        assert!(eur.quotes[0].price < usd.quotes[0].price);
    }

    #[test]
    fn stablecoins_stay_near_one_dollar() {
        let provider = SimulatedProvider;
        for hour in 0..200 {
            let batch = provider
                .markets_at(
                    &["tether".to_owned()],
                    "usd",
                    at(1_795_000_000 + hour * 3_600),
                )
                .expect("quotes");
            let price = batch.quotes[0].price;
            assert!(
                price > Decimal::new(99, 2) && price < Decimal::new(101, 2),
                "{price}"
            );
        }
    }

    #[test]
    fn top_is_ranked_by_market_cap() {
        let top = SimulatedProvider
            .top_at(10, "usd", at(1_795_000_000))
            .expect("top");
        assert_eq!(top.len(), 10);
        assert_eq!(top[0].id, "bitcoin");
        assert_eq!(top[0].market_cap_rank, Some(1));
        assert!(top.windows(2).all(|w| w[0].market_cap >= w[1].market_cap));
    }

    #[test]
    fn history_is_hourly_and_bounded() {
        let points = SimulatedProvider
            .history(
                "ethereum",
                "usd",
                at(1_795_000_100),
                at(1_795_000_100 + 86_400),
            )
            .expect("history");
        assert_eq!(points.len(), 24);
        assert!(
            points
                .windows(2)
                .all(|w| (w[1].at - w[0].at).num_seconds() == 3_600)
        );
        assert!(points[0].at >= at(1_795_000_100));
    }

    #[test]
    fn long_history_is_daily_at_midnight() {
        let from = at(1_795_000_100);
        let points = SimulatedProvider
            .history("bitcoin", "eur", from, from + Duration::days(200))
            .expect("history");
        assert_eq!(points.len(), 200);
        assert!(points.iter().all(|p| p.at.timestamp() % 86_400 == 0));
    }
}
