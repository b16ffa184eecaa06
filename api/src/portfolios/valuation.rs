//! Pure portfolio arithmetic: replaying a coin's ledger into a position (average cost or
//! FIFO) and valuing positions at market prices. No I/O, so every rule is unit-tested here
//! against hand-computed figures. The over-sell rules are in [`super::ledger`].
//!
//! The rules, as the OpenAPI document states them:
//! - `buy` adds `quantity` at a cost of `quantity × price + fee`.
//! - `sell` removes `quantity`; its proceeds are `quantity × price − fee`, and realised P&L is
//!   the proceeds minus the cost basis the sold units carried (their average cost, or the
//!   oldest lots first under FIFO).
//! - `transfer_in` adds `quantity` at a cost of `quantity × price + fee`, with `price` 0 unless
//!   given: coins received are at zero cost basis unless the caller says what they cost.
//! - `transfer_out` removes `quantity` and the cost basis it carried, with no proceeds and no
//!   realised P&L; its `fee` (if any) is a realised loss.
//!
//! Arithmetic is exact (rust_decimal, 28 significant digits) and checked: an overflow is an
//! error, never a panic. Rounding happens once, when figures are presented.

use std::collections::{HashMap, VecDeque};

use rust_decimal::Decimal;

use super::amount::Dec;
use super::model::{Holding, ValuationTotals};

/// Decimal places of money figures (cost basis, value, P&L, totals).
pub const MONEY_PLACES: u32 = 8;
/// Decimal places of per-unit figures (`avg_cost`).
pub const UNIT_PLACES: u32 = 18;
/// Decimal places of percentages.
pub const PCT_PLACES: u32 = 4;

pub use common::portfolios::Side;

/// How the cost of units sold is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Every unit carries the holding's average cost.
    Average,
    /// Units leave in the order they arrived.
    Fifo,
}

/// One transaction of a coin's ledger, in ledger order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub side: Side,
    pub quantity: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
}

impl From<&common::portfolios::rules::ValidTransaction> for Entry {
    fn from(valid: &common::portfolios::rules::ValidTransaction) -> Self {
        Self {
            side: valid.side,
            quantity: valid.quantity,
            price: valid.price,
            fee: valid.fee,
        }
    }
}

/// A coin's holding after replaying its ledger, unrounded.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Position {
    pub quantity: Decimal,
    pub cost_basis: Decimal,
    pub realized_pnl: Decimal,
}

/// Why a ledger cannot be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Entry `index` takes out more than the holding had just before it.
    #[error("entry {index} takes out more than the holding")]
    Shortfall {
        /// The offending entry's position in the ledger.
        index: usize,
    },
    /// A figure does not fit in a decimal.
    #[error("an amount is too large to compute exactly")]
    Overflow,
}

fn checked(value: Option<Decimal>) -> Result<Decimal, LedgerError> {
    value.ok_or(LedgerError::Overflow)
}

/// The cost an inflow adds: `quantity × price + fee`.
fn inflow_cost(entry: &Entry) -> Result<Decimal, LedgerError> {
    checked(
        entry
            .quantity
            .checked_mul(entry.price)
            .and_then(|gross| gross.checked_add(entry.fee)),
    )
}

/// Replays a coin's ledger (oldest first) into its position.
pub fn replay<'a>(
    method: Method,
    entries: impl IntoIterator<Item = &'a Entry>,
) -> Result<Position, LedgerError> {
    // FIFO lots: (quantity left, cost left). Average cost needs only the totals.
    let mut lots: VecDeque<(Decimal, Decimal)> = VecDeque::new();
    let mut position = Position::default();
    for (index, entry) in entries.into_iter().enumerate() {
        if entry.side.is_inflow() {
            let cost = inflow_cost(entry)?;
            position.quantity = checked(position.quantity.checked_add(entry.quantity))?;
            position.cost_basis = checked(position.cost_basis.checked_add(cost))?;
            if method == Method::Fifo {
                lots.push_back((entry.quantity, cost));
            }
            continue;
        }
        if entry.quantity > position.quantity {
            return Err(LedgerError::Shortfall { index });
        }
        let cost_out = match method {
            Method::Average => average_cost_out(&position, entry.quantity)?,
            Method::Fifo => fifo_cost_out(&mut lots, entry.quantity)?,
        };
        position.quantity -= entry.quantity;
        position.cost_basis = if position.quantity.is_zero() {
            // Whatever rounding the divisions left behind leaves with the last unit.
            Decimal::ZERO
        } else {
            position.cost_basis - cost_out
        };
        let realized = match entry.side {
            Side::Sell => {
                let proceeds = checked(entry.quantity.checked_mul(entry.price))? - entry.fee;
                checked(proceeds.checked_sub(cost_out))?
            }
            _ => -entry.fee,
        };
        position.realized_pnl = checked(position.realized_pnl.checked_add(realized))?;
    }
    Ok(position)
}

/// The cost `quantity` units carry at the holding's average cost.
fn average_cost_out(position: &Position, quantity: Decimal) -> Result<Decimal, LedgerError> {
    if quantity == position.quantity {
        return Ok(position.cost_basis);
    }
    // Multiply before dividing: exact whenever the result is representable.
    checked(
        position
            .cost_basis
            .checked_mul(quantity)
            .and_then(|scaled| scaled.checked_div(position.quantity)),
    )
}

/// Takes `quantity` units from the oldest lots; returns the cost they carried.
fn fifo_cost_out(
    lots: &mut VecDeque<(Decimal, Decimal)>,
    mut quantity: Decimal,
) -> Result<Decimal, LedgerError> {
    let mut cost_out = Decimal::ZERO;
    while quantity > Decimal::ZERO {
        let Some((lot_quantity, lot_cost)) = lots.front_mut() else {
            return Err(LedgerError::Overflow);
        };
        if *lot_quantity <= quantity {
            quantity -= *lot_quantity;
            cost_out = checked(cost_out.checked_add(*lot_cost))?;
            lots.pop_front();
        } else {
            let part = checked(
                lot_cost
                    .checked_mul(quantity)
                    .and_then(|scaled| scaled.checked_div(*lot_quantity)),
            )?;
            *lot_quantity -= quantity;
            *lot_cost -= part;
            cost_out = checked(cost_out.checked_add(part))?;
            quantity = Decimal::ZERO;
        }
    }
    Ok(cost_out)
}

/// A coin's market price in the portfolio's base currency.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketPrice {
    pub price: Decimal,
    pub change_24h_pct: Option<Decimal>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// The whole portfolio: its holdings and their totals, in the API's own shapes.
#[derive(Debug, Clone)]
pub struct PortfolioValue {
    /// Largest value first; holdings without a price last; then by coin id.
    pub holdings: Vec<Holding>,
    /// The totals, summed from the holdings' rounded figures.
    pub totals: ValuationTotals,
}

fn money(value: Decimal) -> Dec {
    Dec::rounded(value, MONEY_PLACES)
}

/// `part / whole × 100`, rounded; `None` when `whole` is zero.
fn percent(part: Decimal, whole: Decimal) -> Result<Option<Dec>, LedgerError> {
    if whole.is_zero() {
        return Ok(None);
    }
    let ratio = checked(
        part.checked_mul(Decimal::ONE_HUNDRED)
            .and_then(|scaled| scaled.checked_div(whole)),
    )?;
    Ok(Some(Dec::rounded(ratio, PCT_PLACES)))
}

/// Values positions at `prices`.
///
/// Each holding is rounded once (money to 8 places, `avg_cost` to 18, percentages to 4, half
/// away from zero); P&L and totals are computed from the rounded figures, so the document
/// adds up exactly as shown. Allocation is each priced holding's share of the total value;
/// the largest absorbs the rounding so that the shares sum to exactly 100.
pub fn value_positions(
    positions: Vec<(String, Position)>,
    prices: &HashMap<String, MarketPrice>,
) -> Result<PortfolioValue, LedgerError> {
    let mut holdings = Vec::with_capacity(positions.len());
    let mut total_value = Decimal::ZERO;
    let mut total_cost = Decimal::ZERO;
    let mut priced_cost = Decimal::ZERO;
    let mut realized = Decimal::ZERO;
    let mut missing_prices = Vec::new();
    for (coin_id, position) in positions {
        let cost_basis = money(position.cost_basis);
        let realized_pnl = money(position.realized_pnl);
        let open = !position.quantity.is_zero();
        let avg_cost = if open {
            Some(Dec::rounded(
                checked(position.cost_basis.checked_div(position.quantity))?,
                UNIT_PLACES,
            ))
        } else {
            None
        };
        let market = prices.get(&coin_id);
        let value = match market {
            Some(market) => Some(money(checked(position.quantity.checked_mul(market.price))?)),
            None if !open => Some(Dec::ZERO),
            None => None,
        };
        let unrealized_pnl = value.map(|value| Dec(value.0 - cost_basis.0));
        let unrealized_pnl_pct = match unrealized_pnl {
            Some(pnl) => percent(pnl.0, cost_basis.0)?,
            None => None,
        };
        if let Some(value) = value {
            total_value = checked(total_value.checked_add(value.0))?;
            priced_cost = checked(priced_cost.checked_add(cost_basis.0))?;
        } else {
            missing_prices.push(coin_id.clone());
        }
        total_cost = checked(total_cost.checked_add(cost_basis.0))?;
        realized = checked(realized.checked_add(realized_pnl.0))?;
        holdings.push(Holding {
            coin_id,
            quantity: Dec(position.quantity),
            avg_cost,
            cost_basis,
            price: market.map(|m| Dec(m.price)),
            value,
            unrealized_pnl,
            unrealized_pnl_pct,
            realized_pnl,
            change_24h_pct: market
                .and_then(|m| m.change_24h_pct)
                .map(|pct| Dec::rounded(pct, PCT_PLACES)),
            allocation_pct: None,
            price_updated_at: market.map(|m| m.updated_at),
            price_missing: market.is_none(),
        });
    }
    allocate(&mut holdings, total_value)?;
    holdings.sort_by(|a, b| {
        b.value
            .is_some()
            .cmp(&a.value.is_some())
            .then_with(|| b.value.cmp(&a.value))
            .then_with(|| a.coin_id.cmp(&b.coin_id))
    });
    let unrealized = total_value - priced_cost;
    Ok(PortfolioValue {
        holdings,
        totals: ValuationTotals {
            total_value: Dec(total_value),
            total_cost: Dec(total_cost),
            unrealized_pnl: Dec(unrealized),
            unrealized_pnl_pct: percent(unrealized, priced_cost)?,
            realized_pnl: Dec(realized),
            partial: !missing_prices.is_empty(),
            missing_prices,
        },
    })
}

/// Sets `allocation_pct` on priced holdings so that the shares sum to exactly 100 (when
/// there is any value at all; otherwise every share is 0).
fn allocate(holdings: &mut [Holding], total_value: Decimal) -> Result<(), LedgerError> {
    let mut sum = Decimal::ZERO;
    let mut largest: Option<(usize, Dec)> = None;
    for (index, holding) in holdings.iter_mut().enumerate() {
        let Some(value) = holding.value else { continue };
        let share = percent(value.0, total_value)?.unwrap_or(Dec::ZERO);
        sum += share.0;
        holding.allocation_pct = Some(share);
        if largest.is_none_or(|(_, best)| value > best) {
            largest = Some((index, value));
        }
    }
    if let Some((index, _)) = largest
        && !total_value.is_zero()
        && let Some(share) = holdings[index].allocation_pct.as_mut()
    {
        share.0 += Decimal::ONE_HUNDRED - sum;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn d(text: &str) -> Decimal {
        super::super::amount::parse(text).expect(text)
    }

    fn entry(side: Side, quantity: &str, price: &str, fee: &str) -> Entry {
        Entry {
            side,
            quantity: d(quantity),
            price: d(price),
            fee: d(fee),
        }
    }

    /// Two buys with fees, a partial sell with a fee, a zero-cost transfer in, and a transfer
    /// out with a network fee.
    fn bitcoin_ledger() -> Vec<Entry> {
        vec![
            entry(Side::Buy, "2", "100", "2"),
            entry(Side::Buy, "1", "130", "1"),
            entry(Side::Sell, "1.5", "150", "1.5"),
            entry(Side::TransferIn, "0.5", "0", "0"),
            entry(Side::TransferOut, "0.25", "0", "0.1"),
        ]
    }

    fn position(quantity: &str, cost_basis: &str, realized_pnl: &str) -> Position {
        Position {
            quantity: d(quantity),
            cost_basis: d(cost_basis),
            realized_pnl: d(realized_pnl),
        }
    }

    #[test]
    fn average_cost_by_hand() {
        // cost 202, then 333 for 3 (avg 111); selling 1.5 takes 166.5 and brings
        // 225 − 1.5 = 223.5, so realised 57; the transfer in adds 0.5 at no cost (avg 83.25);
        // the transfer out takes 0.25 × 83.25 = 20.8125 and its fee 0.1 is a realised loss.
        let got = replay(Method::Average, &bitcoin_ledger()).expect("replays");
        assert_eq!(got, position("1.75", "145.6875", "56.9"));
    }

    #[test]
    fn fifo_by_hand() {
        // Lots (2 for 202), (1 for 131). Selling 1.5 takes 1.5 of the first lot, costing
        // 151.5: realised 223.5 − 151.5 = 72. Lots (0.5 for 50.5), (1 for 131), then the
        // transfer in (0.5 for 0). The transfer out takes 0.25 of the first lot (25.25).
        let got = replay(Method::Fifo, &bitcoin_ledger()).expect("replays");
        assert_eq!(got, position("1.75", "156.25", "71.9"));
    }

    #[test]
    fn fifo_sells_across_lots() {
        let ledger = [
            entry(Side::Buy, "1", "10", "0"),
            entry(Side::Buy, "1", "20", "0"),
            entry(Side::Buy, "1", "30", "0"),
            entry(Side::Sell, "2.5", "40", "0"),
        ];
        // Out: 10 + 20 + half of 30 = 45; proceeds 100.
        let fifo = replay(Method::Fifo, &ledger).expect("replays");
        assert_eq!(fifo, position("0.5", "15", "55"));
        // Average 20: out 50, left 10.
        let average = replay(Method::Average, &ledger).expect("replays");
        assert_eq!(average, position("0.5", "10", "50"));
    }

    #[test]
    fn selling_everything_leaves_no_cost_behind() {
        let ledger = [
            entry(Side::Buy, "3", "1", "0"),
            entry(Side::Buy, "3", "2", "0.01"),
            entry(Side::Sell, "1", "3", "0"),
            entry(Side::Sell, "5", "3", "0"),
        ];
        for method in [Method::Average, Method::Fifo] {
            let got = replay(method, &ledger).expect("replays");
            assert_eq!(got.quantity, Decimal::ZERO);
            assert_eq!(got.cost_basis, Decimal::ZERO, "{method:?}");
            // Proceeds 18 − cost 9.01, whichever units went first.
            assert_eq!(got.realized_pnl, d("8.99"), "{method:?}");
        }
    }

    #[test]
    fn extreme_precision_is_kept() {
        let ledger = [entry(
            Side::Buy,
            "0.000000000000000001",
            "123456789012.123456789",
            "0",
        )];
        let got = replay(Method::Average, &ledger).expect("replays");
        let exact: Decimal = "0.000000123456789012123456789".parse().expect("decimal");
        assert_eq!(got.cost_basis, exact);
    }

    #[test]
    fn replaying_an_over_sold_ledger_names_the_entry() {
        let ledger = [
            entry(Side::Buy, "1", "10", "0"),
            entry(Side::Sell, "0.4", "10", "0"),
            entry(Side::TransferOut, "0.6", "0", "0"),
            entry(Side::Sell, "0.000000000000000001", "10", "0"),
        ];
        assert_eq!(
            replay(Method::Fifo, &ledger),
            Err(LedgerError::Shortfall { index: 3 })
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let ledger = [
            entry(Side::Buy, "9999999999999999999999999999", "10", "0"),
            entry(Side::Buy, "1", "1", "0"),
        ];
        assert_eq!(replay(Method::Average, &ledger), Err(LedgerError::Overflow));
    }

    fn at() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 21, 9, 30, 0)
            .single()
            .expect("valid")
    }

    fn price(price: &str, change: Option<&str>) -> MarketPrice {
        MarketPrice {
            price: d(price),
            change_24h_pct: change.map(d),
            updated_at: at(),
        }
    }

    fn positions(method: Method) -> Vec<(String, Position)> {
        let closed = [
            entry(Side::Buy, "1", "10", "0"),
            entry(Side::Sell, "1", "12", "0"),
        ];
        vec![
            (
                "bitcoin".into(),
                replay(method, &bitcoin_ledger()).expect("replays"),
            ),
            (
                "closed-coin".into(),
                replay(method, &closed).expect("replays"),
            ),
            (
                "ethereum".into(),
                replay(method, &[entry(Side::Buy, "10", "10", "0")]).expect("replays"),
            ),
            (
                "unpriced-coin".into(),
                replay(method, &[entry(Side::Buy, "1", "7", "0")]).expect("replays"),
            ),
        ]
    }

    fn market() -> HashMap<String, MarketPrice> {
        HashMap::from([
            ("bitcoin".into(), price("160", Some("2.123456"))),
            ("ethereum".into(), price("5", None)),
        ])
    }

    fn s(value: Option<Dec>) -> Option<String> {
        value.map(|v| v.to_string())
    }

    #[test]
    fn valuation_average_by_hand() {
        let got = value_positions(positions(Method::Average), &market()).expect("values");
        let order: Vec<&str> = got.holdings.iter().map(|h| h.coin_id.as_str()).collect();
        assert_eq!(
            order,
            ["bitcoin", "ethereum", "closed-coin", "unpriced-coin"]
        );
        let btc = &got.holdings[0];
        assert_eq!(btc.quantity.to_string(), "1.75");
        assert_eq!(s(btc.avg_cost).as_deref(), Some("83.25"));
        assert_eq!(btc.cost_basis.to_string(), "145.6875");
        assert_eq!(s(btc.value).as_deref(), Some("280"));
        assert_eq!(s(btc.unrealized_pnl).as_deref(), Some("134.3125"));
        // 134.3125 / 145.6875 = 92.1921921…
        assert_eq!(s(btc.unrealized_pnl_pct).as_deref(), Some("92.1922"));
        assert_eq!(btc.realized_pnl.to_string(), "56.9");
        assert_eq!(s(btc.change_24h_pct).as_deref(), Some("2.1235"));
        // 280 / 330 = 84.848484…
        assert_eq!(s(btc.allocation_pct).as_deref(), Some("84.8485"));
        assert!(!btc.price_missing);

        let eth = &got.holdings[1];
        assert_eq!(s(eth.unrealized_pnl).as_deref(), Some("-50"));
        assert_eq!(s(eth.unrealized_pnl_pct).as_deref(), Some("-50"));
        assert_eq!(s(eth.allocation_pct).as_deref(), Some("15.1515"));

        let closed = &got.holdings[2];
        assert_eq!(closed.quantity.to_string(), "0");
        assert_eq!(closed.avg_cost, None);
        assert_eq!(closed.realized_pnl.to_string(), "2");
        assert_eq!(s(closed.value).as_deref(), Some("0"));

        let unpriced = &got.holdings[3];
        assert!(unpriced.price_missing);
        assert_eq!(unpriced.price, None);
        assert_eq!(unpriced.value, None);
        assert_eq!(unpriced.allocation_pct, None);
        assert_eq!(unpriced.cost_basis.to_string(), "7");

        assert_eq!(got.totals.total_value.to_string(), "330");
        assert_eq!(got.totals.total_cost.to_string(), "252.6875");
        // Over the priced holdings only: 330 − 245.6875.
        assert_eq!(got.totals.unrealized_pnl.to_string(), "84.3125");
        assert_eq!(s(got.totals.unrealized_pnl_pct).as_deref(), Some("34.317"));
        assert_eq!(got.totals.realized_pnl.to_string(), "58.9");
        assert!(got.totals.partial);
        assert_eq!(got.totals.missing_prices, ["unpriced-coin"]);
        let allocated: Decimal = got
            .holdings
            .iter()
            .filter_map(|h| h.allocation_pct)
            .map(|p| p.0)
            .sum();
        assert_eq!(allocated, Decimal::ONE_HUNDRED);
    }

    #[test]
    fn valuation_fifo_by_hand() {
        let got = value_positions(positions(Method::Fifo), &market()).expect("values");
        let btc = &got.holdings[0];
        assert_eq!(btc.cost_basis.to_string(), "156.25");
        // 156.25 / 1.75 = 89.285714285714285714|2857…
        assert_eq!(s(btc.avg_cost).as_deref(), Some("89.285714285714285714"));
        assert_eq!(s(btc.unrealized_pnl).as_deref(), Some("123.75"));
        assert_eq!(s(btc.unrealized_pnl_pct).as_deref(), Some("79.2"));
        assert_eq!(btc.realized_pnl.to_string(), "71.9");
        assert_eq!(got.totals.total_cost.to_string(), "263.25");
        assert_eq!(got.totals.unrealized_pnl.to_string(), "73.75");
        // 73.75 / 256.25 = 28.78048…
        assert_eq!(s(got.totals.unrealized_pnl_pct).as_deref(), Some("28.7805"));
        assert_eq!(got.totals.realized_pnl.to_string(), "73.9");
    }

    #[test]
    fn allocation_rounding_goes_to_the_largest_holding() {
        let one = |coin: &str| (coin.to_owned(), position("1", "1", "0"));
        let prices = HashMap::from([
            ("a".into(), price("1", None)),
            ("b".into(), price("1", None)),
            ("c".into(), price("1.00000001", None)),
        ]);
        let got = value_positions(vec![one("a"), one("b"), one("c")], &prices).expect("values");
        let shares: Vec<String> = got
            .holdings
            .iter()
            .map(|h| s(h.allocation_pct).unwrap_or_default())
            .collect();
        // Each is 33.3333 after rounding; the largest (c) takes the missing 0.0001.
        assert_eq!(shares, ["33.3334", "33.3333", "33.3333"]);
        assert_eq!(got.holdings[0].coin_id, "c");
    }

    #[test]
    fn a_portfolio_with_nothing_priced_has_no_allocation() {
        let got = value_positions(vec![("x".into(), position("1", "5", "0"))], &HashMap::new())
            .expect("values");
        assert!(got.totals.partial);
        assert_eq!(got.totals.total_value, Dec::ZERO);
        assert_eq!(got.totals.unrealized_pnl_pct, None);
        assert_eq!(got.holdings[0].allocation_pct, None);
    }

    #[test]
    fn zero_cost_holdings_have_no_pnl_percentage() {
        let prices = HashMap::from([("gift".into(), price("3", None))]);
        let ledger = [entry(Side::TransferIn, "2", "0", "0")];
        let got = value_positions(
            vec![(
                "gift".into(),
                replay(Method::Average, &ledger).expect("replays"),
            )],
            &prices,
        )
        .expect("values");
        let gift = &got.holdings[0];
        assert_eq!(s(gift.avg_cost).as_deref(), Some("0"));
        assert_eq!(s(gift.unrealized_pnl).as_deref(), Some("6"));
        assert_eq!(gift.unrealized_pnl_pct, None);
        assert_eq!(s(gift.allocation_pct).as_deref(), Some("100"));
    }
}
