//! The over-sell rules on one coin's ledger: no `sell` or `transfer_out` may take out more than
//! the holding just before it, whether the ledger changes by a new transaction (placed at its
//! `executed_at`, after every transaction executed at or before then) or by a deletion.
//!
//! Only quantities matter, so the rules hold for both cost-basis methods. No I/O: the
//! handlers read the ledger under the portfolio's lock and ask these functions.

use chrono::{DateTime, Utc};
use common::portfolios::rules;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::amount::Dec;
use super::valuation::{Entry, LedgerError, Side};

/// A transaction of a coin's ledger, with what a refusal names.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub id: Uuid,
    pub executed_at: DateTime<Utc>,
    pub entry: Entry,
}

/// Where the holding first goes negative, if it does: the entry's index and the holding just
/// before it.
pub fn first_shortfall<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
) -> Result<Option<(usize, Decimal)>, LedgerError> {
    rules::first_shortfall(
        entries
            .into_iter()
            .map(|entry| (entry.side, entry.quantity)),
    )
    .map_err(|_| LedgerError::Overflow)
}

/// A `sell` or `transfer_out` already in the ledger, as a refusal names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outflow {
    pub id: Uuid,
    pub side: Side,
    pub quantity: Decimal,
    pub executed_at: DateTime<Utc>,
}

impl Outflow {
    fn of(row: &LedgerRow) -> Self {
        Self {
            id: row.id,
            side: row.entry.side,
            quantity: row.entry.quantity,
            executed_at: row.executed_at,
        }
    }
}

impl std::fmt::Display for Outflow {
    /// E.g. `the sell of 0.6 at 2025-01-20T12:00:00Z`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = match self.side {
            Side::Sell => "sell",
            _ => "transfer out",
        };
        write!(
            f,
            "the {side} of {} at {}",
            Dec(self.quantity),
            common::wire::timestamp_text(&self.executed_at)
        )
    }
}

/// Why a new transaction is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertRefusal {
    /// It takes out more than the holding at its own time, `held`.
    ExceedsHolding { held: Decimal },
    /// A later outflow would then take out more than the holding just before it, `held`.
    LeavesShort { later: Outflow, held: Decimal },
    /// The holding would no longer fit a decimal.
    Overflow,
}

/// Why deleting a transaction is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteRefusal {
    /// A later outflow would then take out more than the holding just before it, `held`.
    LeavesShort { later: Outflow, held: Decimal },
    /// The holding does not fit a decimal (the ledger was stored unchecked).
    Overflow,
}

/// Checks that `new`, executed at `at`, may join `ledger` (in ledger order): placed after
/// every transaction executed at or before `at`, neither it nor a later one may take out
/// more than is held.
pub fn check_insert(
    ledger: &[LedgerRow],
    new: &Entry,
    at: DateTime<Utc>,
) -> Result<(), InsertRefusal> {
    let place = ledger.partition_point(|row| row.executed_at <= at);
    let entries = ledger[..place]
        .iter()
        .map(|row| &row.entry)
        .chain(std::iter::once(new))
        .chain(ledger[place..].iter().map(|row| &row.entry));
    match first_shortfall(entries).map_err(|_| InsertRefusal::Overflow)? {
        None => Ok(()),
        Some((index, held)) if index == place => Err(InsertRefusal::ExceedsHolding { held }),
        Some((index, held)) => {
            // Past the new entry, ledger indices are one less. (Before it, the ledger was
            // short already, which these rules never let happen; name the row all the same.)
            let row = if index < place {
                &ledger[index]
            } else {
                &ledger[index - 1]
            };
            Err(InsertRefusal::LeavesShort {
                later: Outflow::of(row),
                held,
            })
        }
    }
}

/// Checks that transaction `id` may leave `ledger` (in ledger order): no later outflow may be
/// left taking out more than is held.
pub fn check_delete(ledger: &[LedgerRow], id: Uuid) -> Result<(), DeleteRefusal> {
    let remaining: Vec<&LedgerRow> = ledger.iter().filter(|row| row.id != id).collect();
    match first_shortfall(remaining.iter().map(|row| &row.entry))
        .map_err(|_| DeleteRefusal::Overflow)?
    {
        None => Ok(()),
        Some((index, held)) => Err(DeleteRefusal::LeavesShort {
            later: Outflow::of(remaining[index]),
            held,
        }),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn d(text: &str) -> Decimal {
        super::super::amount::parse(text).expect(text)
    }

    fn day(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, day, 12, 0, 0)
            .single()
            .expect("valid")
    }

    fn entry(side: Side, quantity: &str) -> Entry {
        Entry {
            side,
            quantity: d(quantity),
            price: d("10"),
            fee: Decimal::ZERO,
        }
    }

    /// A ledger row with a recognisable id: `n` as a UUID.
    fn row(n: u128, side: Side, quantity: &str, on: u32) -> LedgerRow {
        LedgerRow {
            id: Uuid::from_u128(n),
            executed_at: day(on),
            entry: entry(side, quantity),
        }
    }

    fn outflow(row: &LedgerRow) -> Outflow {
        Outflow::of(row)
    }

    /// Buy 1 on the 10th, sell 0.6 on the 20th.
    fn bought_then_sold() -> Vec<LedgerRow> {
        vec![row(1, Side::Buy, "1", 10), row(2, Side::Sell, "0.6", 20)]
    }

    #[test]
    fn shortfalls_are_found_where_they_happen() {
        let ledger = [
            entry(Side::Buy, "1"),
            entry(Side::Sell, "0.4"),
            entry(Side::TransferOut, "0.6"),
            entry(Side::Sell, "0.000000000000000001"),
        ];
        assert_eq!(first_shortfall(&ledger), Ok(Some((3, Decimal::ZERO))));
        assert_eq!(first_shortfall(&ledger[..3]), Ok(None));
    }

    #[test]
    fn a_sell_within_the_holding_is_allowed() {
        let ledger = bought_then_sold();
        // 0.4 is what is left after the later sell, so it fits on either side of it.
        assert_eq!(
            check_insert(&ledger, &entry(Side::Sell, "0.4"), day(15)),
            Ok(())
        );
        assert_eq!(
            check_insert(&ledger, &entry(Side::Sell, "0.4"), day(25)),
            Ok(())
        );
        // A sell at the same moment as the buy comes after it.
        assert_eq!(
            check_insert(
                &[row(1, Side::Buy, "1", 10)],
                &entry(Side::Sell, "1"),
                day(10)
            ),
            Ok(())
        );
    }

    #[test]
    fn a_sell_exceeding_the_holding_at_its_own_time_is_refused() {
        let ledger = bought_then_sold();
        assert_eq!(
            check_insert(&ledger, &entry(Side::Sell, "0.5"), day(25)),
            Err(InsertRefusal::ExceedsHolding { held: d("0.4") })
        );
        // Before the buy, nothing is held.
        assert_eq!(
            check_insert(&ledger, &entry(Side::Sell, "0.1"), day(9)),
            Err(InsertRefusal::ExceedsHolding {
                held: Decimal::ZERO
            })
        );
        // Another coin's ledger is another call: an empty ledger holds nothing.
        assert_eq!(
            check_insert(&[], &entry(Side::Sell, "1"), day(12)),
            Err(InsertRefusal::ExceedsHolding {
                held: Decimal::ZERO
            })
        );
    }

    #[test]
    fn a_back_dated_sell_that_leaves_a_later_sell_short_is_refused_naming_it() {
        let ledger = bought_then_sold();
        // 0.5 fits on the 15th (1 is held), but then the sell of 0.6 finds only 0.5.
        let refusal = check_insert(&ledger, &entry(Side::Sell, "0.5"), day(15));
        assert_eq!(
            refusal,
            Err(InsertRefusal::LeavesShort {
                later: outflow(&ledger[1]),
                held: d("0.5"),
            })
        );
        let Err(InsertRefusal::LeavesShort { later, .. }) = refusal else {
            unreachable!()
        };
        assert_eq!(later.to_string(), "the sell of 0.6 at 2025-01-20T12:00:00Z");
    }

    #[test]
    fn transfers_count_like_buys_and_sells() {
        let ledger = vec![
            row(1, Side::TransferIn, "2", 10),
            row(2, Side::TransferOut, "1.5", 20),
        ];
        // A transfer out is held to the holding like a sell.
        assert_eq!(
            check_insert(&ledger, &entry(Side::TransferOut, "0.6"), day(25)),
            Err(InsertRefusal::ExceedsHolding { held: d("0.5") })
        );
        let refusal = check_insert(&ledger, &entry(Side::Sell, "1"), day(15));
        assert_eq!(
            refusal,
            Err(InsertRefusal::LeavesShort {
                later: outflow(&ledger[1]),
                held: d("1"),
            })
        );
        let Err(InsertRefusal::LeavesShort { later, .. }) = refusal else {
            unreachable!()
        };
        assert_eq!(
            later.to_string(),
            "the transfer out of 1.5 at 2025-01-20T12:00:00Z"
        );
        // A transfer in before the later outflow makes room for a sell.
        assert_eq!(
            check_insert(&ledger, &entry(Side::TransferIn, "1"), day(15)),
            Ok(())
        );
    }

    #[test]
    fn deleting_a_buy_a_later_sell_needs_is_refused_naming_the_sell() {
        let ledger = vec![
            row(1, Side::Buy, "1", 10),
            row(2, Side::Sell, "0.4", 15),
            row(3, Side::Sell, "0.6", 20),
        ];
        assert_eq!(
            check_delete(&ledger, Uuid::from_u128(1)),
            Err(DeleteRefusal::LeavesShort {
                later: outflow(&ledger[1]),
                held: Decimal::ZERO,
            })
        );
    }

    #[test]
    fn deleting_a_buy_nothing_needs_is_allowed() {
        let ledger = vec![
            row(1, Side::Buy, "1", 10),
            row(2, Side::Buy, "1", 12),
            row(3, Side::Sell, "0.6", 20),
        ];
        assert_eq!(check_delete(&ledger, Uuid::from_u128(1)), Ok(()));
        assert_eq!(check_delete(&ledger, Uuid::from_u128(2)), Ok(()));
        // Deleting a sell never leaves anything short.
        assert_eq!(check_delete(&ledger, Uuid::from_u128(3)), Ok(()));
        // Both buys together are needed: once one is gone, the other is.
        assert_eq!(
            check_delete(&ledger[1..], Uuid::from_u128(2)),
            Err(DeleteRefusal::LeavesShort {
                later: outflow(&ledger[2]),
                held: Decimal::ZERO,
            })
        );
    }

    #[test]
    fn a_holding_too_large_to_sum_is_an_overflow_not_a_panic() {
        let mut huge = row(1, Side::Buy, "1", 10);
        huge.entry.quantity = Decimal::MAX;
        let ledger = vec![huge];
        assert_eq!(
            check_insert(&ledger, &entry(Side::Buy, "1"), day(11)),
            Err(InsertRefusal::Overflow)
        );
    }
}
