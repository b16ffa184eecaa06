//! A portfolio's performance over time: `/api/v1/portfolios/{id}/performance` (the handler is
//! on `ValuationApi`; this module gathers its inputs and shapes its answer). The arithmetic is
//! in [`crate::portfolios::performance`].

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use common::market::history::{self, HistoryError};
use poem_openapi::{Enum, Object};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;
use crate::market::{parse_coin_id, price_error};
use crate::portfolios::amount::Dec;
use crate::portfolios::performance::{self, Flow, Inputs, Performance};
use crate::portfolios::store;
use crate::portfolios::valuation::Side;

/// The most points one answer holds (a day interval covers about 2.7 years).
pub const MAX_POINTS: i64 = 1_000;

/// How far apart the points are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum Interval {
    /// Every midnight (UTC).
    Day,
    /// Every hour (UTC).
    Hour,
}

impl Interval {
    fn step(self) -> TimeDelta {
        match self {
            Self::Day => TimeDelta::days(1),
            Self::Hour => TimeDelta::hours(1),
        }
    }
}

/// A portfolio's value and returns over a range.
#[derive(Debug, Object)]
pub struct PortfolioPerformance {
    /// The portfolio.
    pub portfolio_id: Uuid,
    /// Currency of every amount.
    pub base_currency: String,
    /// First point.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub from: DateTime<Utc>,
    /// Last point.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub to: DateTime<Utc>,
    /// Spacing of the points (the last point is `to` itself).
    pub interval: Interval,
    /// The benchmark coin, if one was asked for.
    pub benchmark: Option<String>,
    /// The range as a whole.
    pub summary: PerformanceSummary,
    /// Per coin held or traded by the end of the range, by coin id.
    pub holdings: Vec<HoldingPerformance>,
    /// One per instant, oldest first.
    pub points: Vec<PerformancePoint>,
}

/// Figures at one instant.
#[derive(Debug, Object)]
pub struct PerformancePoint {
    /// The instant.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub at: DateTime<Utc>,
    /// Σ quantity × price (8 places); `null` when a held coin has no stored price within one
    /// interval before `at` (listed in `missing_prices`).
    pub value: Option<Dec>,
    /// Money put in minus money taken out up to `at` (fees counted).
    pub net_contributions: Dec,
    /// Time-weighted return since the first point, in percent; `null` with `value`.
    pub cumulative_return_pct: Option<Dec>,
    /// The benchmark's price return since the first point, in percent.
    pub benchmark_return_pct: Option<Dec>,
    /// Held coins without a price at this instant.
    pub missing_prices: Vec<String>,
}

/// The range as a whole.
#[derive(Debug, Object)]
pub struct PerformanceSummary {
    /// Value at the first point.
    pub start_value: Option<Dec>,
    /// Value at the last point.
    pub end_value: Option<Dec>,
    /// Net contributions within the range (after the first point).
    pub net_contributions: Dec,
    /// Absolute P&L: end value − start value − net contributions within the range.
    pub pnl: Option<Dec>,
    /// Time-weighted return over the range (cash flows neutralised), in percent.
    pub time_weighted_return_pct: Option<Dec>,
    /// Money-weighted return (XIRR, annualised over 365-day years), in percent; `null` when
    /// it has no solution.
    pub money_weighted_return_pct: Option<Dec>,
    /// The benchmark's price return over the range, in percent.
    pub benchmark_return_pct: Option<Dec>,
    /// Whether every point has a value.
    pub complete: bool,
}

/// One holding's share of the range.
#[derive(Debug, Object)]
pub struct HoldingPerformance {
    /// The coin.
    pub coin_id: String,
    /// Its value at the first point.
    pub start_value: Option<Dec>,
    /// Its value at the last point.
    pub end_value: Option<Dec>,
    /// Its net contributions within the range.
    pub net_contributions: Dec,
    /// End value − start value − net contributions.
    pub pnl: Option<Dec>,
    /// P&L over the portfolio's capital at work (start value plus the range's inflows), in
    /// percent: the holdings' contributions sum to the portfolio's simple return.
    pub contribution_pct: Option<Dec>,
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct Request {
    /// First instant.
    pub from: Option<DateTime<Utc>>,
    /// Last instant.
    pub to: Option<DateTime<Utc>>,
    /// Spacing.
    pub interval: Interval,
    /// Benchmark coin id, raw.
    pub benchmark: Option<String>,
}

/// `user`'s portfolio `id` over the range, or `None` when it is not theirs.
pub async fn performance(
    state: &AppState,
    user: Uuid,
    id: Uuid,
    request: Request,
) -> Result<Option<PortfolioPerformance>, ApiError> {
    let benchmark = request
        .benchmark
        .as_deref()
        .map(|raw| parse_coin_id("benchmark", raw))
        .transpose()?;
    let Some(portfolio) = store::find(&state.db, user, id).await? else {
        return Ok(None);
    };
    let vs = portfolio.base_currency.clone();
    let held = store::coins_and_first_execution(&state.db, portfolio.id).await?;
    let now = Utc::now();
    let to = request.to.unwrap_or(now).min(now);
    let from = request
        .from
        .or(held.first_executed_at)
        .unwrap_or_else(|| to.checked_sub_signed(TimeDelta::days(30)).unwrap_or(to));
    if from >= to {
        return Err(ApiError::invalid(
            "from",
            "must be before `to` (and before now)",
        ));
    }
    let step = request.interval.step();
    let points = grid(from, to, step);
    if points.len() as i64 > MAX_POINTS {
        return Err(ApiError::invalid(
            "from",
            format!(
                "the range holds more than {MAX_POINTS} points at this interval; \
                 narrow it or use interval=day"
            ),
        ));
    }
    if let Some(coin) = &benchmark {
        // Validates the coin (and its currency) and makes sure it is in the catalogue.
        if state
            .prices
            .latest(coin, &vs)
            .await
            .map_err(price_error)?
            .is_none()
        {
            return Err(ApiError::invalid(
                "benchmark",
                "is not a coin the price provider knows",
            ));
        }
    }

    let mut coins: BTreeSet<String> = held.coins.into_iter().collect();
    coins.extend(benchmark.iter().cloned());
    let coins: Vec<String> = coins.into_iter().collect();
    // The ledger and the prices are independent reads: on two connections at once.
    let (rows, mut prices) = tokio::try_join!(
        store::transactions_in_time_order(&state.db, portfolio.id),
        prices_at(state, &coins, &vs, &points, step),
    )?;
    // A transaction of a new coin recorded between the two reads: its prices too.
    let late: BTreeSet<String> = rows
        .iter()
        .filter(|row| !prices.contains_key(&row.coin_id))
        .map(|row| row.coin_id.clone())
        .collect();
    if !late.is_empty() {
        let late: Vec<String> = late.into_iter().collect();
        prices.extend(prices_at(state, &late, &vs, &points, step).await?);
    }
    // Fill each coin's history where a point lacks a price, once (see `market::history`).
    let gaps: Vec<String> = prices
        .iter()
        .filter(|(_, series)| series.iter().any(Option::is_none))
        .map(|(coin, _)| coin.clone())
        .collect();
    if !gaps.is_empty() {
        let provider = state.prices.provider();
        for coin in &gaps {
            let filled =
                history::series(&state.db, provider, coin, &vs, before(from, step), to, now).await;
            match filled {
                Ok(_) | Err(HistoryError::Provider(_)) => {}
                Err(HistoryError::Database(err)) => return Err(err.into()),
            }
        }
        prices.extend(prices_at(state, &gaps, &vs, &points, step).await?);
    }

    let mut flows = Vec::with_capacity(rows.len());
    for row in rows {
        flows.push(
            flow(state, &vs, row)
                .await?
                .ok_or_else(|| too_large(performance::Overflow))?,
        );
    }
    let benchmark_prices = benchmark
        .as_ref()
        .and_then(|coin| prices.get(coin).cloned());
    let inputs = Inputs {
        points,
        flows,
        prices,
        benchmark: benchmark_prices,
    };
    let computed = performance::compute(&inputs).map_err(too_large)?;
    Ok(Some(present(
        portfolio.id,
        vs,
        from,
        to,
        request.interval,
        benchmark,
        computed,
    )))
}

/// `at − step`, or `at` at the very start of time (never a panic on hostile input).
fn before(at: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    at.checked_sub_signed(step).unwrap_or(at)
}

/// Every `step` boundary after `from` up to `to`, with `from` first and `to` last.
fn grid(from: DateTime<Utc>, to: DateTime<Utc>, step: TimeDelta) -> Vec<DateTime<Utc>> {
    let step_secs = step.num_seconds();
    let secs = from.timestamp();
    let first = secs - secs.rem_euclid(step_secs) + step_secs;
    let mut points = vec![from];
    let mut at = Utc.timestamp_opt(first, 0).single().unwrap_or(from);
    while at < to && (points.len() as i64) <= MAX_POINTS {
        points.push(at);
        at += step;
    }
    points.push(to);
    points
}

/// Each coin's latest stored price at or before each point, at most `step` older. Daily
/// points on midnight read the daily closes (one range per coin); any other point probes the
/// history (one index lookup per coin and point).
async fn prices_at(
    state: &AppState,
    coins: &[String],
    vs: &str,
    points: &[DateTime<Utc>],
    step: TimeDelta,
) -> Result<BTreeMap<String, Vec<Option<Decimal>>>, ApiError> {
    let mut prices: BTreeMap<String, Vec<Option<Decimal>>> = coins
        .iter()
        .map(|coin| (coin.clone(), vec![None; points.len()]))
        .collect();
    let on_midnight = |at: &DateTime<Utc>| at.timestamp().rem_euclid(86_400) == 0;
    let daily = step == TimeDelta::days(1);
    let (by_day, probed): (Vec<usize>, Vec<usize>) =
        (0..points.len()).partition(|&index| daily && on_midnight(&points[index]));
    if let (Some(&first), Some(&last)) = (by_day.first(), by_day.last()) {
        let closes = store::daily_prices(&state.db, coins, vs, points[first], points[last]).await?;
        for (coin, days, day_prices) in closes {
            let Some(series) = prices.get_mut(&coin) else {
                continue;
            };
            // Both sorted: one merge walk.
            let mut next = days.iter().zip(day_prices).peekable();
            for &index in &by_day {
                while next.next_if(|(day, _)| **day < points[index]).is_some() {}
                if let Some((_, price)) = next.next_if(|(day, _)| **day == points[index]) {
                    series[index] = Some(price);
                }
            }
        }
    }
    if !probed.is_empty() {
        let instants: Vec<DateTime<Utc>> = probed.iter().map(|&index| points[index]).collect();
        let rows =
            store::prices_at(&state.db, coins, vs, &instants, step.num_seconds() as f64).await?;
        for (coin, position, price) in rows {
            let index = usize::try_from(position).ok().and_then(|p| probed.get(p));
            if let (Some(series), Some(&index)) = (prices.get_mut(&coin), index) {
                series[index] = price;
            }
        }
    }
    Ok(prices)
}

/// Amounts beyond exact arithmetic (only absurd ones): a 422, never a panic.
fn too_large(err: performance::Overflow) -> ApiError {
    ApiError::invalid("portfolio", err.to_string())
}

/// A transaction as a cash flow (`None` on overflow). Transfers move coins valued at their own
/// price when they have one, else at the market price stored for their instant (a day at most
/// before it).
async fn flow(
    state: &AppState,
    vs: &str,
    row: store::TimedTransaction,
) -> Result<Option<Flow>, ApiError> {
    let side = row.side;
    let price = if matches!(side, Side::TransferIn | Side::TransferOut) && row.price.is_zero() {
        store::price_before(&state.db, &row.coin_id, vs, row.executed_at)
            .await?
            .unwrap_or_default()
    } else {
        row.price
    };
    let Some(gross) = row.quantity.checked_mul(price) else {
        return Ok(None);
    };
    let (quantity, cash) = match side {
        Side::Buy | Side::TransferIn => (row.quantity, gross.checked_add(row.fee)),
        Side::Sell => (-row.quantity, row.fee.checked_sub(gross)),
        Side::TransferOut => (-row.quantity, row.fee.checked_sub(gross)),
    };
    Ok(cash.map(|cash| Flow {
        at: row.executed_at,
        coin_id: row.coin_id,
        quantity,
        cash,
    }))
}

fn present(
    portfolio_id: Uuid,
    base_currency: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    interval: Interval,
    benchmark: Option<String>,
    computed: Performance,
) -> PortfolioPerformance {
    let dec = |value: Option<Decimal>| value.map(Dec);
    PortfolioPerformance {
        portfolio_id,
        base_currency,
        from,
        to,
        interval,
        benchmark,
        summary: PerformanceSummary {
            start_value: dec(computed.summary.start_value),
            end_value: dec(computed.summary.end_value),
            net_contributions: Dec(computed.summary.net_contributions),
            pnl: dec(computed.summary.pnl),
            time_weighted_return_pct: dec(computed.summary.time_weighted_return_pct),
            money_weighted_return_pct: dec(computed.summary.money_weighted_return_pct),
            benchmark_return_pct: dec(computed.summary.benchmark_return_pct),
            complete: computed.summary.complete,
        },
        holdings: computed
            .holdings
            .into_iter()
            .map(|holding| HoldingPerformance {
                coin_id: holding.coin_id,
                start_value: dec(holding.start_value),
                end_value: dec(holding.end_value),
                net_contributions: Dec(holding.net_contributions),
                pnl: dec(holding.pnl),
                contribution_pct: dec(holding.contribution_pct),
            })
            .collect(),
        points: computed
            .points
            .into_iter()
            .map(|point| PerformancePoint {
                at: point.at,
                value: dec(point.value),
                net_contributions: Dec(point.net_contributions),
                cumulative_return_pct: dec(point.cumulative_return_pct),
                benchmark_return_pct: dec(point.benchmark_return_pct),
                missing_prices: point.missing_prices,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("time")
    }

    #[test]
    fn a_grid_runs_from_from_through_each_boundary_to_to() {
        let points = grid(
            at("2025-01-01T12:00:00Z"),
            at("2025-01-04T06:00:00Z"),
            TimeDelta::days(1),
        );
        assert_eq!(
            points,
            vec![
                at("2025-01-01T12:00:00Z"),
                at("2025-01-02T00:00:00Z"),
                at("2025-01-03T00:00:00Z"),
                at("2025-01-04T00:00:00Z"),
                at("2025-01-04T06:00:00Z"),
            ]
        );
        let aligned = grid(
            at("2025-01-01T00:00:00Z"),
            at("2025-01-03T00:00:00Z"),
            TimeDelta::days(1),
        );
        assert_eq!(aligned.len(), 3, "{aligned:?}");
    }
}
