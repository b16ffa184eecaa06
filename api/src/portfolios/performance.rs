//! Pure performance arithmetic: a portfolio's value, net contributions and returns at a series
//! of instants, from its cash flows and the stored prices at those instants. No I/O, so every
//! rule is unit-tested here against hand-computed figures.
//!
//! The rules, as the OpenAPI document states them:
//! - A transaction is a cash flow into the portfolio: a `buy` brings `quantity × price + fee`,
//!   a `sell` takes out `quantity × price − fee`; a transfer moves `quantity` coins valued at
//!   the market price at its instant (its own price when it has one), and its fee is money in.
//!   `net_contributions` at an instant is the sum of the flows up to and including it.
//! - The value at a point is Σ quantity × price, each price the latest stored one at or before
//!   the point and at most one interval older. A held coin without such a price makes the
//!   point's value unknown: it is listed in `missing_prices`, never invented.
//! - Time-weighted return chains the sub-period returns between consecutive points with a
//!   known value: `r = (V_end − F) / V_start − 1`, flows `F` counted at the end of their
//!   sub-period; a sub-period that starts with nothing held adds nothing. Cash flows are thereby
//!   neutralised: the figure compares with a benchmark's price return.
//! - Money-weighted return is the annualised internal rate of return (XIRR, 365-day years) of
//!   `−V_start` at the start, `−F` at each flow and `+V_end` at the end; `null` when it has no
//!   solution.
//! - P&L over the range is `V_end − V_start − flows in the range`, per holding as well; a
//!   holding's `contribution_pct` is its P&L over the capital at work (`V_start` plus the
//!   inflows of the range), so the holdings' contributions sum to the portfolio's simple return.
//!
//! Money is exact and rounded once when presented (8 places), percentages to 4, half away from
//! zero; the time-weighted growth factor is kept to 18 places between sub-periods. XIRR is
//! found numerically (bisection in `f64`) and rounded to 4 places.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::amount::ROUNDING;
use super::valuation::{MONEY_PLACES, PCT_PLACES};

/// Places the time-weighted growth factor keeps between sub-periods.
const GROWTH_PLACES: u32 = 18;

/// A change to one holding and the money it brought in (`cash` > 0) or took out (< 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// When.
    pub at: DateTime<Utc>,
    /// Which coin.
    pub coin_id: String,
    /// Units added (> 0) or removed (< 0).
    pub quantity: Decimal,
    /// Money into the portfolio (> 0) or out of it (< 0).
    pub cash: Decimal,
}

/// What the arithmetic needs.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The instants, oldest first.
    pub points: Vec<DateTime<Utc>>,
    /// Every flow of the portfolio, oldest first (also those before the first point).
    pub flows: Vec<Flow>,
    /// Per coin, its price at each point (`None`: no stored price near enough).
    pub prices: BTreeMap<String, Vec<Option<Decimal>>>,
    /// The benchmark coin's price at each point, if one was asked for.
    pub benchmark: Option<Vec<Option<Decimal>>>,
}

/// The figures at one point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// When.
    pub at: DateTime<Utc>,
    /// Σ quantity × price, rounded; `None` when a held coin has no price.
    pub value: Option<Decimal>,
    /// Σ flows up to and including `at`, rounded.
    pub net_contributions: Decimal,
    /// Time-weighted return from the first point, in percent; `None` when `value` is.
    pub cumulative_return_pct: Option<Decimal>,
    /// The benchmark's price return from the first point, in percent.
    pub benchmark_return_pct: Option<Decimal>,
    /// Held coins without a price here, sorted.
    pub missing_prices: Vec<String>,
}

/// One holding's share of the range.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldingPerformance {
    /// The coin.
    pub coin_id: String,
    /// Value at the first point (`None`: unknown).
    pub start_value: Option<Decimal>,
    /// Value at the last point (`None`: unknown).
    pub end_value: Option<Decimal>,
    /// Flows of the range (after the first point, up to the last).
    pub net_contributions: Decimal,
    /// `end − start − flows`.
    pub pnl: Option<Decimal>,
    /// `pnl` over the portfolio's capital at work, in percent.
    pub contribution_pct: Option<Decimal>,
}

/// The range as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Value at the first point.
    pub start_value: Option<Decimal>,
    /// Value at the last point.
    pub end_value: Option<Decimal>,
    /// Flows of the range.
    pub net_contributions: Decimal,
    /// `end − start − flows`.
    pub pnl: Option<Decimal>,
    /// Time-weighted return over the range, in percent (over the known points).
    pub time_weighted_return_pct: Option<Decimal>,
    /// Annualised money-weighted return (XIRR), in percent.
    pub money_weighted_return_pct: Option<Decimal>,
    /// The benchmark's price return over the range, in percent.
    pub benchmark_return_pct: Option<Decimal>,
    /// Whether every point has a value.
    pub complete: bool,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Performance {
    /// One per input point.
    pub points: Vec<Point>,
    /// Per coin held or traded up to the last point, by coin id.
    pub holdings: Vec<HoldingPerformance>,
    /// The range.
    pub summary: Summary,
}

/// Exact arithmetic ran out of digits (absurd amounts); never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the performance figures are too large to compute exactly")]
pub struct Overflow;

fn money(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(MONEY_PLACES, ROUNDING)
}

fn pct(fraction: Decimal) -> Result<Decimal, Overflow> {
    Ok(fraction
        .checked_mul(Decimal::ONE_HUNDRED)
        .ok_or(Overflow)?
        .round_dp_with_strategy(PCT_PLACES, ROUNDING))
}

/// Computes the series; `inputs.points` must not be empty.
pub fn compute(inputs: &Inputs) -> Result<Performance, Overflow> {
    let n = inputs.points.len();
    let mut held: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut contributions = Decimal::ZERO;
    let mut next_flow = 0;
    // Per point: value (exact), the flows since the previous point (portfolio and per coin).
    let mut values: Vec<Option<Decimal>> = Vec::with_capacity(n);
    let mut flows_into: Vec<Decimal> = Vec::with_capacity(n);
    let mut coin_flows_in_range: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut coin_start: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut points = Vec::with_capacity(n);

    for (index, &at) in inputs.points.iter().enumerate() {
        let mut since_previous = Decimal::ZERO;
        while let Some(flow) = inputs.flows.get(next_flow).filter(|flow| flow.at <= at) {
            let quantity = held.entry(flow.coin_id.as_str()).or_default();
            *quantity = quantity.checked_add(flow.quantity).ok_or(Overflow)?;
            contributions = contributions.checked_add(flow.cash).ok_or(Overflow)?;
            if index > 0 {
                since_previous = since_previous.checked_add(flow.cash).ok_or(Overflow)?;
                let coin = coin_flows_in_range
                    .entry(flow.coin_id.as_str())
                    .or_default();
                *coin = coin.checked_add(flow.cash).ok_or(Overflow)?;
            }
            next_flow += 1;
        }
        if index == 0 {
            coin_start = held.clone();
        }
        let mut value = Some(Decimal::ZERO);
        let mut missing = Vec::new();
        for (coin, quantity) in &held {
            if quantity.is_zero() {
                continue;
            }
            match price_at(inputs, coin, index) {
                Some(price) => {
                    value = value
                        .map(|sum| {
                            quantity
                                .checked_mul(price)
                                .and_then(|worth| sum.checked_add(worth))
                                .ok_or(Overflow)
                        })
                        .transpose()?;
                }
                None => {
                    value = None;
                    missing.push((*coin).to_owned());
                }
            }
        }
        values.push(value);
        flows_into.push(since_previous);
        points.push(Point {
            at,
            value: value.map(money),
            net_contributions: money(contributions),
            cumulative_return_pct: None,
            benchmark_return_pct: None,
            missing_prices: missing,
        });
    }

    // Time-weighted: chain over the points with a known value.
    let mut growth = Decimal::ONE;
    let mut last_known: Option<Decimal> = None;
    let mut pending = Decimal::ZERO;
    for (index, point) in points.iter_mut().enumerate() {
        pending = pending.checked_add(flows_into[index]).ok_or(Overflow)?;
        let Some(value) = values[index] else {
            continue;
        };
        if let Some(start) = last_known.filter(|start| !start.is_zero()) {
            let factor = value
                .checked_sub(pending)
                .and_then(|end| end.checked_div(start))
                .ok_or(Overflow)?;
            growth = growth
                .checked_mul(factor)
                .ok_or(Overflow)?
                .round_dp_with_strategy(GROWTH_PLACES, ROUNDING);
        }
        point.cumulative_return_pct = Some(pct(growth - Decimal::ONE)?);
        last_known = Some(value);
        pending = Decimal::ZERO;
    }

    if let Some(benchmark) = &inputs.benchmark {
        let base = benchmark
            .first()
            .copied()
            .flatten()
            .filter(|p| !p.is_zero());
        for (point, price) in points.iter_mut().zip(benchmark) {
            point.benchmark_return_pct = match (base, price) {
                (Some(base), Some(price)) => {
                    Some(pct(price.checked_div(base).ok_or(Overflow)? - Decimal::ONE)?)
                }
                _ => None,
            };
        }
    }

    let start_value = values.first().copied().flatten();
    let end_value = values.last().copied().flatten();
    let range_flows = sum(flows_into.iter().skip(1).copied())?;
    let pnl = start_value
        .zip(end_value)
        .map(|(start, end)| gain(start, end, range_flows))
        .transpose()?;
    let inflows = sum(inputs
        .flows
        .iter()
        .filter(|flow| flow.cash > Decimal::ZERO)
        .filter(|flow| flow.at > inputs.points[0] && flow.at <= inputs.points[n - 1])
        .map(|flow| flow.cash))?;
    let capital = start_value
        .map(|start| start.checked_add(inflows).ok_or(Overflow))
        .transpose()?
        .filter(|capital| !capital.is_zero());

    let mut holdings = Vec::new();
    for (coin, end_quantity) in &held {
        let value_of = |quantity: Decimal, index: usize| -> Option<Decimal> {
            if quantity.is_zero() {
                Some(Decimal::ZERO)
            } else {
                price_at(inputs, coin, index).and_then(|price| quantity.checked_mul(price))
            }
        };
        let start = value_of(coin_start.get(coin).copied().unwrap_or_default(), 0);
        let end = value_of(*end_quantity, n - 1);
        let flows = coin_flows_in_range.get(coin).copied().unwrap_or_default();
        let coin_pnl = start
            .zip(end)
            .map(|(start, end)| gain(start, end, flows))
            .transpose()?;
        let contribution = match (coin_pnl, capital) {
            (Some(pnl), Some(capital)) => Some(pct(pnl.checked_div(capital).ok_or(Overflow)?)?),
            _ => None,
        };
        holdings.push(HoldingPerformance {
            coin_id: (*coin).to_owned(),
            start_value: start.map(money),
            end_value: end.map(money),
            net_contributions: money(flows),
            pnl: coin_pnl.map(money),
            contribution_pct: contribution,
        });
    }

    let mwr = match (start_value, end_value) {
        (Some(start), Some(end)) => {
            let origin = inputs.points[0];
            let mut cash_flows = vec![(0.0, -to_f64(start))];
            for flow in inputs
                .flows
                .iter()
                .filter(|flow| flow.at > origin && flow.at <= inputs.points[n - 1])
            {
                cash_flows.push((years(origin, flow.at), -to_f64(flow.cash)));
            }
            cash_flows.push((years(origin, inputs.points[n - 1]), to_f64(end)));
            xirr(&cash_flows).and_then(|rate| Decimal::from_f64_retain(rate * 100.0))
        }
        _ => None,
    }
    .map(|rate| rate.round_dp_with_strategy(PCT_PLACES, ROUNDING));

    let last_known_return = points.iter().rev().find_map(|p| p.cumulative_return_pct);
    let summary = Summary {
        start_value: start_value.map(money),
        end_value: end_value.map(money),
        net_contributions: money(range_flows),
        pnl: pnl.map(money),
        time_weighted_return_pct: last_known_return,
        money_weighted_return_pct: mwr,
        benchmark_return_pct: points.last().and_then(|p| p.benchmark_return_pct),
        complete: values.iter().all(Option::is_some),
    };
    Ok(Performance {
        points,
        holdings,
        summary,
    })
}

/// `end − start − flows`, checked.
fn gain(start: Decimal, end: Decimal, flows: Decimal) -> Result<Decimal, Overflow> {
    end.checked_sub(start)
        .and_then(|change| change.checked_sub(flows))
        .ok_or(Overflow)
}

fn sum(mut values: impl Iterator<Item = Decimal>) -> Result<Decimal, Overflow> {
    values.try_fold(Decimal::ZERO, |total, value| {
        total.checked_add(value).ok_or(Overflow)
    })
}

fn price_at(inputs: &Inputs, coin: &str, index: usize) -> Option<Decimal> {
    inputs
        .prices
        .get(coin)
        .and_then(|prices| prices.get(index).copied().flatten())
}

fn to_f64(value: Decimal) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    value.to_f64().unwrap_or(0.0)
}

fn years(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_seconds() as f64 / (365.0 * 86_400.0)
}

/// The rate `r` > −1 with Σ amount × (1 + r)^(−years) = 0; `None` when the flows do not
/// change sign over the search interval (no solution, or nothing invested).
///
/// Solved in `u = ln(1 + r)`, where the present value Σ amount × e^(−years·u) is smooth and
/// monotone for the usual flows: Newton steps, kept inside a bracket that bisection narrows
/// whenever a step would leave it. A handful of passes over the flows instead of the hundred a
/// bisection over rates up to 10^18 needs (each pass is one `exp` per flow).
fn xirr(flows: &[(f64, f64)]) -> Option<f64> {
    let value_and_slope = |u: f64| -> (f64, f64) {
        flows
            .iter()
            .fold((0.0, 0.0), |(value, slope), (years, amount)| {
                let term = amount * (-years * u).exp();
                (value + term, slope - years * term)
            })
    };
    if flows.iter().all(|(_, amount)| *amount == 0.0) {
        return None;
    }
    // Rates from −99.9999999 % up to 10^18 (annualising a few days' gain gives huge rates).
    let (mut low, mut high) = ((1.0e-9_f64).ln(), (1.0e18_f64).ln_1p());
    let (mut value_low, _) = value_and_slope(low);
    let (value_high, _) = value_and_slope(high);
    if !value_low.is_finite()
        || !value_high.is_finite()
        || value_low.signum() == value_high.signum()
    {
        return None;
    }
    let mut u = low + (high - low) / 2.0;
    for _ in 0..200 {
        let (value, slope) = value_and_slope(u);
        if value == 0.0 || !value.is_finite() {
            break;
        }
        if value.signum() == value_low.signum() {
            low = u;
            value_low = value;
        } else {
            high = u;
        }
        let newton = u - value / slope;
        let next = if newton.is_finite() && newton > low && newton < high {
            newton
        } else {
            low + (high - low) / 2.0
        };
        let converged = (next - u).abs() <= 1e-15 * (1.0 + u.abs());
        u = next;
        if converged || high - low <= 1e-15 * (1.0 + u.abs()) {
            break;
        }
    }
    Some(u.exp_m1())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32) -> DateTime<Utc> {
        format!("2025-01-{day:02}T00:00:00Z").parse().expect("time")
    }

    fn dec(text: &str) -> Decimal {
        text.parse().expect("decimal")
    }

    fn flow(day: u32, coin: &str, quantity: &str, cash: &str) -> Flow {
        Flow {
            at: at(day),
            coin_id: coin.into(),
            quantity: dec(quantity),
            cash: dec(cash),
        }
    }

    fn prices(list: &[Option<&str>]) -> Vec<Option<Decimal>> {
        list.iter().map(|p| p.map(dec)).collect()
    }

    /// Two deposits, a partial sell with a fee, and a coin with a gap in its history:
    /// figures computed by hand below.
    fn fixture() -> Inputs {
        Inputs {
            points: (1..=5).map(at).collect(),
            flows: vec![
                // Day 1: buy 1 A at 100, fee 1 → 101 in.
                flow(1, "a", "1", "101"),
                // Day 3: buy 2 B at 10 → 20 in.
                flow(3, "b", "2", "20"),
                // Day 4: sell 0.5 A at 130, fee 1 → 64 out.
                flow(4, "a", "-0.5", "-64"),
            ],
            prices: BTreeMap::from([
                (
                    "a".to_owned(),
                    prices(&[
                        Some("100"),
                        Some("110"),
                        Some("120"),
                        Some("130"),
                        Some("150"),
                    ]),
                ),
                (
                    "b".to_owned(),
                    prices(&[Some("10"), None, Some("10"), Some("12"), Some("11")]),
                ),
            ]),
            benchmark: Some(prices(&[
                Some("50"),
                Some("55"),
                None,
                Some("60"),
                Some("75"),
            ])),
        }
    }

    #[test]
    fn the_fixture_matches_the_hand_computed_figures() {
        let result = compute(&fixture()).expect("computes");
        let values: Vec<Option<Decimal>> = result.points.iter().map(|p| p.value).collect();
        // Day 1: 1 × 100. Day 2: 1 × 110 (B not held yet, its gap does not matter).
        // Day 3: 120 + 2 × 10 = 140. Day 4: 0.5 × 130 + 2 × 12 = 89. Day 5: 75 + 22 = 97.
        assert_eq!(
            values,
            vec![
                Some(dec("100")),
                Some(dec("110")),
                Some(dec("140")),
                Some(dec("89")),
                Some(dec("97"))
            ]
        );
        let contributions: Vec<Decimal> =
            result.points.iter().map(|p| p.net_contributions).collect();
        assert_eq!(
            contributions,
            vec![dec("101"), dec("101"), dec("121"), dec("57"), dec("57")]
        );

        // TWR: 110/100 · (140 − 20)/110 · (89 + 64)/140 · 97/89
        //     = 1.1 · 1.090909… · 1.092857… · 1.089887… = 1.429309… → 42.9310 %.
        let expected_growth = dec("1.1")
            * (dec("120") / dec("110"))
            * (dec("153") / dec("140"))
            * (dec("97") / dec("89"));
        let expected = ((expected_growth - Decimal::ONE) * Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(4, ROUNDING);
        assert_eq!(result.summary.time_weighted_return_pct, Some(expected));
        assert_eq!(expected, dec("42.9310"));

        // P&L: 97 − 100 − (20 − 64) = 41; per holding A: 75 − 100 − (−64) = 39,
        // B: 22 − 0 − 20 = 2; capital at work 100 + 20 = 120 → 32.5 % and 1.6667 %.
        assert_eq!(result.summary.pnl, Some(dec("41")));
        assert_eq!(result.summary.net_contributions, dec("-44"));
        let a = &result.holdings[0];
        assert_eq!((a.coin_id.as_str(), a.pnl), ("a", Some(dec("39"))));
        assert_eq!(a.contribution_pct, Some(dec("32.5")));
        let b = &result.holdings[1];
        assert_eq!(
            (b.pnl, b.contribution_pct),
            (Some(dec("2")), Some(dec("1.6667")))
        );

        // Benchmark: 75 / 50 − 1 = 50 %; the gap on day 3 is marked, not filled.
        assert_eq!(result.summary.benchmark_return_pct, Some(dec("50")));
        assert_eq!(result.points[2].benchmark_return_pct, None);
        assert!(result.summary.complete);
    }

    /// Plain bisection on the rate itself, as slow as it is plain.
    fn xirr_by_bisection(flows: &[(f64, f64)]) -> f64 {
        let npv = |rate: f64| -> f64 {
            flows
                .iter()
                .map(|(years, amount)| amount / (1.0 + rate).powf(*years))
                .sum()
        };
        let (mut low, mut high) = (-0.999_999_999_f64, 1.0e18_f64);
        let sign_low = npv(low).signum();
        for _ in 0..400 {
            let mid = low + (high - low) / 2.0;
            if npv(mid).signum() == sign_low {
                low = mid;
            } else {
                high = mid;
            }
        }
        low
    }

    #[test]
    fn the_solver_agrees_with_plain_bisection_on_many_flows() {
        // A large first deposit, 2,000 deposits and withdrawals at odd hours over most of a
        // year, then what is left: a loss, a gain and a huge short-term gain.
        for final_value in [5_000.0, 50_000.0, 5.0e9] {
            let mut flows: Vec<(f64, f64)> = vec![(0.0, -20_000.0)];
            flows.extend((1..2_000).map(|i| {
                let years = f64::from(i) * 0.0004 + 0.000_01 * f64::from(i % 7);
                let amount = if i % 3 == 2 {
                    -40.0
                } else {
                    25.0 + f64::from(i % 11)
                };
                (years, -amount)
            }));
            flows.push((0.81, final_value));
            let fast = xirr(&flows).expect("a solution");
            let plain = xirr_by_bisection(&flows);
            assert!(
                ((fast - plain) / plain.abs().max(1.0)).abs() < 1e-9,
                "{final_value}: {fast} vs {plain}"
            );
        }
    }

    #[test]
    fn the_money_weighted_return_matches_a_reference_solved_in_the_test() {
        // A year: 1,000 in on Jan 1, 500 more on Jul 1, worth 1,800 a year later.
        let day = |text: &str| -> DateTime<Utc> { text.parse().expect("time") };
        let (start, middle, end) = (
            day("2025-01-01T00:00:00Z"),
            day("2025-07-01T00:00:00Z"),
            day("2026-01-01T00:00:00Z"),
        );
        let inputs = Inputs {
            points: vec![start, middle, end],
            flows: vec![
                Flow {
                    at: start,
                    coin_id: "a".into(),
                    quantity: dec("10"),
                    cash: dec("1000"),
                },
                Flow {
                    at: middle,
                    coin_id: "a".into(),
                    quantity: dec("5"),
                    cash: dec("500"),
                },
            ],
            prices: BTreeMap::from([(
                "a".to_owned(),
                prices(&[Some("100"), Some("100"), Some("120")]),
            )]),
            benchmark: None,
        };
        let result = compute(&inputs).expect("computes");
        let reported = to_f64(
            result
                .summary
                .money_weighted_return_pct
                .expect("a solution"),
        );
        // The reference: Newton's method on the same equation, as a spreadsheet's XIRR does.
        let t = 181.0 / 365.0;
        let npv = |r: f64| -1000.0 - 500.0 * (1.0 + r).powf(-t) + 1800.0 / (1.0 + r);
        let slope = |r: f64| 500.0 * t * (1.0 + r).powf(-t - 1.0) - 1800.0 / (1.0 + r).powi(2);
        let mut rate = 0.1;
        for _ in 0..50 {
            rate -= npv(rate) / slope(rate);
        }
        assert!(
            (reported - rate * 100.0).abs() < 1e-3,
            "{reported} vs {}",
            rate * 100.0
        );
        // TWR over the same year: 20 % (the July deposit is neutralised).
        assert_eq!(result.summary.time_weighted_return_pct, Some(dec("20")));

        // A few days' gain annualises to a very large rate, still found.
        let short = compute(&fixture()).expect("computes");
        assert!(short.summary.money_weighted_return_pct.expect("found") > dec("1000000"));
    }

    #[test]
    fn a_held_coin_without_a_price_makes_the_point_unknown_not_invented() {
        let mut inputs = fixture();
        inputs.flows.insert(0, flow(1, "b", "1", "10"));
        let result = compute(&inputs).expect("computes");
        let day2 = &result.points[1];
        assert_eq!(day2.value, None);
        assert_eq!(day2.missing_prices, vec!["b".to_owned()]);
        assert_eq!(day2.cumulative_return_pct, None);
        assert!(!result.summary.complete);
        // The chain continues over the known points: day 1 → day 3 is one sub-period.
        assert!(result.points[2].cumulative_return_pct.is_some());
    }

    #[test]
    fn a_period_starting_empty_adds_nothing_and_nothing_invested_has_no_xirr() {
        let inputs = Inputs {
            points: (1..=3).map(at).collect(),
            flows: vec![flow(2, "a", "1", "100")],
            prices: BTreeMap::from([(
                "a".to_owned(),
                prices(&[Some("100"), Some("100"), Some("120")]),
            )]),
            benchmark: None,
        };
        let result = compute(&inputs).expect("computes");
        let returns: Vec<Option<Decimal>> = result
            .points
            .iter()
            .map(|p| p.cumulative_return_pct)
            .collect();
        assert_eq!(
            returns,
            vec![Some(dec("0")), Some(dec("0")), Some(dec("20"))]
        );
        assert_eq!(result.summary.pnl, Some(dec("20")));

        let empty = Inputs {
            points: vec![at(1), at(2)],
            ..Inputs::default()
        };
        let result = compute(&empty).expect("computes");
        assert_eq!(result.summary.money_weighted_return_pct, None);
        assert_eq!(result.summary.pnl, Some(Decimal::ZERO));
    }

    #[test]
    fn absurd_amounts_are_an_error_not_a_panic() {
        let inputs = Inputs {
            points: vec![at(1), at(2)],
            flows: vec![flow(1, "a", "79228162514264337593543950335", "1")],
            prices: BTreeMap::from([(
                "a".to_owned(),
                prices(&[Some("79228162514264337593543950335"), Some("2")]),
            )]),
            benchmark: None,
        };
        assert_eq!(compute(&inputs), Err(Overflow));
    }
}
