//! Queries on `portfolios` and `portfolio_transactions`. Every query is scoped to its owner:
//! a portfolio is only ever found through `(user_id, id)` and never once deleted, and a
//! transaction only through its (so found) portfolio.

use chrono::{DateTime, Utc};
use common::portfolios::rules::ValidTransaction;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::ledger::LedgerRow;
use super::model::{PortfolioRow, TransactionRow};
use super::valuation::{Entry, Side};
use crate::error::{ApiError, Constraint, on_constraint};

/// The constraints on these tables a caller can violate, and their problems.
const CONSTRAINTS: &[Constraint] = &[
    ("portfolios_user_name_key", || ApiError::Conflict {
        detail: "you already have a portfolio with this name".into(),
        field: Some("name"),
    }),
    // The account was deleted while its access token is still valid.
    ("portfolios_user_id_fkey", || {
        ApiError::Unauthorized("the account no longer exists".into())
    }),
    ("portfolio_transactions_coin_id_fkey", || {
        ApiError::invalid("coin_id", "is not a known coin")
    }),
];

/// Fields of a new portfolio, validated.
#[derive(Debug)]
pub struct NewPortfolio<'a> {
    pub name: &'a str,
    pub base_currency: &'a str,
    pub cost_basis_method: &'a str,
}

/// Inserts a portfolio; a name the owner already uses is a 409.
pub async fn insert(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    new: &NewPortfolio<'_>,
) -> Result<PortfolioRow, ApiError> {
    sqlx::query_as!(
        PortfolioRow,
        "INSERT INTO portfolios (id, user_id, name, base_currency, cost_basis_method)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING id, name, base_currency, cost_basis_method, version, created_at, updated_at",
        Uuid::now_v7(),
        user_id,
        new.name,
        new.base_currency,
        new.cost_basis_method,
    )
    .fetch_one(db)
    .await
    .map_err(|err| on_constraint(err, CONSTRAINTS))
}

/// The owner's portfolio, unless deleted.
pub async fn find(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<PortfolioRow>, sqlx::Error> {
    sqlx::query_as!(
        PortfolioRow,
        "SELECT id, name, base_currency, cost_basis_method, version, created_at, updated_at
         FROM portfolios WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL",
        id,
        user_id,
    )
    .fetch_optional(db)
    .await
}

/// Like [`find`], and locks the row until the transaction ends: every write under one
/// portfolio takes this lock first, so they run one at a time (two sells cannot both pass
/// the over-sell check, a PATCH cannot interleave with a version check).
pub async fn lock(
    conn: &mut PgConnection,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<PortfolioRow>, sqlx::Error> {
    sqlx::query_as!(
        PortfolioRow,
        "SELECT id, name, base_currency, cost_basis_method, version, created_at, updated_at
         FROM portfolios WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL
         FOR UPDATE",
        id,
        user_id,
    )
    .fetch_optional(conn)
    .await
}

/// One page of the owner's portfolios and how many there are.
///
/// `sort` is `created_at`, `name` or `updated_at`, `order` `asc` or `desc`; ties are broken by
/// id in the same direction, so pages never overlap or skip.
pub async fn list(
    conn: &mut PgConnection,
    user_id: Uuid,
    sort: &str,
    order: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<PortfolioRow>, i64), sqlx::Error> {
    let rows = sqlx::query_as!(
        PortfolioRow,
        "SELECT id, name, base_currency, cost_basis_method, version, created_at, updated_at
         FROM portfolios
         WHERE user_id = $1 AND deleted_at IS NULL
         ORDER BY
           CASE WHEN $2 = 'name' AND $3 = 'asc' THEN lower(name) END ASC,
           CASE WHEN $2 = 'name' AND $3 = 'desc' THEN lower(name) END DESC,
           CASE WHEN $2 = 'created_at' AND $3 = 'asc' THEN created_at END ASC,
           CASE WHEN $2 = 'created_at' AND $3 = 'desc' THEN created_at END DESC,
           CASE WHEN $2 = 'updated_at' AND $3 = 'asc' THEN updated_at END ASC,
           CASE WHEN $2 = 'updated_at' AND $3 = 'desc' THEN updated_at END DESC,
           CASE WHEN $3 = 'asc' THEN id END ASC,
           CASE WHEN $3 = 'desc' THEN id END DESC
         LIMIT $4 OFFSET $5",
        user_id,
        sort,
        order,
        limit,
        offset,
    )
    .fetch_all(&mut *conn)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM portfolios WHERE user_id = $1 AND deleted_at IS NULL"#,
        user_id,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((rows, total))
}

/// Changes to a portfolio; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct Changes {
    pub name: Option<String>,
    pub base_currency: Option<String>,
    pub cost_basis_method: Option<&'static str>,
}

impl Changes {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.base_currency.is_none() && self.cost_basis_method.is_none()
    }
}

/// Applies `changes` to a (locked) portfolio and bumps its version.
pub async fn update(
    db: impl PgExecutor<'_>,
    id: Uuid,
    changes: &Changes,
) -> Result<PortfolioRow, ApiError> {
    sqlx::query_as!(
        PortfolioRow,
        "UPDATE portfolios SET
             name = COALESCE($2, name),
             base_currency = COALESCE($3, base_currency),
             cost_basis_method = COALESCE($4, cost_basis_method),
             version = version + 1,
             updated_at = now()
         WHERE id = $1
         RETURNING id, name, base_currency, cost_basis_method, version, created_at, updated_at",
        id,
        changes.name.as_deref(),
        changes.base_currency.as_deref(),
        changes.cost_basis_method,
    )
    .fetch_one(db)
    .await
    .map_err(|err| on_constraint(err, CONSTRAINTS))
}

/// Soft-deletes a (locked) portfolio: it and everything under it answer 404 from now on.
pub async fn soft_delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE portfolios SET deleted_at = now(), version = version + 1, updated_at = now()
         WHERE id = $1",
        id,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Whether the portfolio has any transaction.
pub async fn has_transactions(
    db: impl PgExecutor<'_>,
    portfolio_id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM portfolio_transactions WHERE portfolio_id = $1) AS "exists!""#,
        portfolio_id,
    )
    .fetch_one(db)
    .await
}

/// The ledger of one coin in one portfolio, in ledger order: `executed_at`, then creation.
pub async fn coin_ledger(
    db: impl PgExecutor<'_>,
    portfolio_id: Uuid,
    coin_id: &str,
) -> Result<Vec<LedgerRow>, ApiError> {
    let rows = sqlx::query!(
        "SELECT id, side, quantity, price, fee, executed_at FROM portfolio_transactions
         WHERE portfolio_id = $1 AND coin_id = $2
         ORDER BY executed_at, seq",
        portfolio_id,
        coin_id,
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(LedgerRow {
                id: row.id,
                executed_at: row.executed_at,
                entry: Entry {
                    side: parse_side(&row.side)?,
                    quantity: row.quantity,
                    price: row.price,
                    fee: row.fee,
                },
            })
        })
        .collect()
}

fn parse_side(side: &str) -> Result<Side, ApiError> {
    Side::from_db(side)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("unknown transaction side {side:?}")))
}

/// Inserts a transaction.
pub async fn insert_transaction(
    db: impl PgExecutor<'_>,
    portfolio_id: Uuid,
    new: &ValidTransaction,
) -> Result<TransactionRow, ApiError> {
    sqlx::query_as!(
        TransactionRow,
        "INSERT INTO portfolio_transactions
             (id, portfolio_id, coin_id, side, quantity, price, fee, executed_at, note)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING id, portfolio_id, coin_id, side, quantity, price, fee, executed_at, note,
                   created_at",
        Uuid::now_v7(),
        portfolio_id,
        new.coin_id,
        new.side.as_str(),
        new.quantity,
        new.price,
        new.fee,
        new.executed_at,
        new.note.as_deref(),
    )
    .fetch_one(db)
    .await
    .map_err(|err| on_constraint(err, CONSTRAINTS))
}

/// Replaces a transaction's fields. It takes a new `seq`, so in the ledger it comes after every
/// transaction executed at or before its (new) `executed_at`, as a new one would.
pub async fn update_transaction(
    db: impl PgExecutor<'_>,
    id: Uuid,
    changed: &ValidTransaction,
) -> Result<TransactionRow, ApiError> {
    sqlx::query_as!(
        TransactionRow,
        "UPDATE portfolio_transactions
         SET coin_id = $2, side = $3, quantity = $4, price = $5, fee = $6, executed_at = $7,
             note = $8, seq = DEFAULT
         WHERE id = $1
         RETURNING id, portfolio_id, coin_id, side, quantity, price, fee, executed_at, note,
                   created_at",
        id,
        changed.coin_id,
        changed.side.as_str(),
        changed.quantity,
        changed.price,
        changed.fee,
        changed.executed_at,
        changed.note.as_deref(),
    )
    .fetch_one(db)
    .await
    .map_err(|err| on_constraint(err, CONSTRAINTS))
}

/// A transaction of a portfolio.
pub async fn find_transaction(
    db: impl PgExecutor<'_>,
    portfolio_id: Uuid,
    id: Uuid,
) -> Result<Option<TransactionRow>, sqlx::Error> {
    sqlx::query_as!(
        TransactionRow,
        "SELECT id, portfolio_id, coin_id, side, quantity, price, fee, executed_at, note,
                created_at
         FROM portfolio_transactions WHERE id = $1 AND portfolio_id = $2",
        id,
        portfolio_id,
    )
    .fetch_optional(db)
    .await
}

/// Deletes a transaction.
pub async fn delete_transaction(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM portfolio_transactions WHERE id = $1", id)
        .execute(db)
        .await?;
    Ok(())
}

/// What a transaction list is narrowed to.
#[derive(Debug)]
pub struct TransactionFilter<'a> {
    pub coin_id: Option<&'a str>,
    pub side: Option<Side>,
    /// `asc` (ledger order) or `desc`.
    pub order: &'a str,
}

/// One page of a portfolio's transactions by `executed_at` (then creation order), and how
/// many match.
pub async fn list_transactions(
    conn: &mut PgConnection,
    portfolio_id: Uuid,
    filter: &TransactionFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<TransactionRow>, i64), sqlx::Error> {
    let side = filter.side.map(Side::as_str);
    let rows = sqlx::query_as!(
        TransactionRow,
        "SELECT id, portfolio_id, coin_id, side, quantity, price, fee, executed_at, note,
                created_at
         FROM portfolio_transactions
         WHERE portfolio_id = $1
           AND ($2::text IS NULL OR coin_id = $2)
           AND ($3::text IS NULL OR side = $3)
         ORDER BY
           CASE WHEN $4 = 'asc' THEN executed_at END ASC,
           CASE WHEN $4 = 'asc' THEN seq END ASC,
           CASE WHEN $4 = 'desc' THEN executed_at END DESC,
           CASE WHEN $4 = 'desc' THEN seq END DESC
         LIMIT $5 OFFSET $6",
        portfolio_id,
        filter.coin_id,
        side,
        filter.order,
        limit,
        offset,
    )
    .fetch_all(&mut *conn)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM portfolio_transactions
           WHERE portfolio_id = $1
             AND ($2::text IS NULL OR coin_id = $2)
             AND ($3::text IS NULL OR side = $3)"#,
        portfolio_id,
        filter.coin_id,
        side,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((rows, total))
}

/// Every transaction of a portfolio, grouped by coin (in coin order) and in ledger order
/// within each coin: what valuation replays. One query.
///
/// The rows come unordered and are sorted here: Postgres sorting 10,000 rows by a text key
/// took longer than the scan, the transfer and this sort together (docs/BENCHMARKS.md).
pub async fn ledgers(
    db: impl PgExecutor<'_>,
    portfolio_id: Uuid,
) -> Result<Vec<(String, Vec<Entry>)>, ApiError> {
    let mut rows = sqlx::query!(
        "SELECT coin_id, side, quantity, price, fee, executed_at, seq FROM portfolio_transactions
         WHERE portfolio_id = $1",
        portfolio_id,
    )
    .fetch_all(db)
    .await?;
    // `seq` is unique, so the order is total and an unstable sort is deterministic.
    rows.sort_unstable_by(|a, b| {
        a.coin_id
            .cmp(&b.coin_id)
            .then(a.executed_at.cmp(&b.executed_at))
            .then(a.seq.cmp(&b.seq))
    });
    let mut ledgers: Vec<(String, Vec<Entry>)> = Vec::new();
    for row in rows {
        let entry = Entry {
            side: parse_side(&row.side)?,
            quantity: row.quantity,
            price: row.price,
            fee: row.fee,
        };
        match ledgers.last_mut() {
            Some((coin, entries)) if *coin == row.coin_id => entries.push(entry),
            _ => ledgers.push((row.coin_id, vec![entry])),
        }
    }
    Ok(ledgers)
}

/// A transaction as performance reads it.
#[derive(Debug, Clone)]
pub struct TimedTransaction {
    pub coin_id: String,
    pub side: Side,
    pub quantity: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    pub executed_at: DateTime<Utc>,
}

/// Every transaction of a portfolio, oldest first (ties in the order they were recorded).
pub async fn transactions_in_time_order(
    db: impl PgExecutor<'_>,
    portfolio_id: Uuid,
) -> Result<Vec<TimedTransaction>, ApiError> {
    let rows = sqlx::query!(
        "SELECT coin_id, side, quantity, price, fee, executed_at FROM portfolio_transactions
         WHERE portfolio_id = $1
         ORDER BY executed_at, seq",
        portfolio_id,
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(TimedTransaction {
                side: parse_side(&row.side)?,
                coin_id: row.coin_id,
                quantity: row.quantity,
                price: row.price,
                fee: row.fee,
                executed_at: row.executed_at,
            })
        })
        .collect()
}

/// The coins a portfolio has transactions of, and when its first one was executed.
#[derive(Debug, Default)]
pub struct HeldCoins {
    pub coins: Vec<String>,
    pub first_executed_at: Option<DateTime<Utc>>,
}

/// The coins of a portfolio's transactions and the first `executed_at` (from the ledger index,
/// without reading the transactions).
pub async fn coins_and_first_execution(
    db: impl PgExecutor<'_>,
    portfolio_id: Uuid,
) -> Result<HeldCoins, ApiError> {
    let row = sqlx::query!(
        r#"SELECT coalesce(array_agg(coin_id), '{}') AS "coins!", min(first) AS first_executed_at
           FROM (SELECT coin_id, min(executed_at) AS first FROM portfolio_transactions
                 WHERE portfolio_id = $1 GROUP BY coin_id) AS held"#,
        portfolio_id,
    )
    .fetch_one(db)
    .await?;
    Ok(HeldCoins {
        coins: row.coins,
        first_executed_at: row.first_executed_at,
    })
}

/// For each coin and each point, the latest stored price in `vs` at or before the point and
/// less than `tolerance_secs` older: `(coin, point index, price)`, one row per pair. One index
/// lookup per pair (the history's primary key), however much history is stored.
pub async fn prices_at(
    db: impl PgExecutor<'_>,
    coins: &[String],
    vs: &str,
    points: &[DateTime<Utc>],
    tolerance_secs: f64,
) -> Result<Vec<(String, i64, Option<Decimal>)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT c.coin_id AS "coin_id!", g.idx - 1 AS "index!", p.price AS "price?"
           FROM UNNEST($1::text[]) AS c(coin_id)
           CROSS JOIN UNNEST($2::timestamptz[]) WITH ORDINALITY AS g(at, idx)
           LEFT JOIN LATERAL (
               SELECT h.price FROM price_history h
               WHERE h.coin_id = c.coin_id AND h.vs_currency = $3
                 AND h.at <= g.at AND h.at > g.at - make_interval(secs => $4)
               ORDER BY h.at DESC
               LIMIT 1) p ON true"#,
        coins,
        points,
        vs,
        tolerance_secs,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.coin_id, row.index, row.price))
        .collect())
}

/// The latest stored price of a coin at or before `at`, at most a day older.
pub async fn price_before(
    db: impl PgExecutor<'_>,
    coin_id: &str,
    vs: &str,
    at: DateTime<Utc>,
) -> Result<Option<Decimal>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT price FROM price_history
         WHERE coin_id = $1 AND vs_currency = $2 AND at <= $3 AND at > $3 - interval '1 day'
         ORDER BY at DESC
         LIMIT 1",
        coin_id,
        vs,
        at,
    )
    .fetch_optional(db)
    .await
}

/// Each coin's latest stored price in `vs` in the day ending at each midnight of
/// `[first, last]` (`price_daily`, kept by a trigger on the history): per coin, its day ends
/// and prices, oldest first (one row per coin: a year is 366 values, not 366 rows).
pub async fn daily_prices(
    db: impl PgExecutor<'_>,
    coins: &[String],
    vs: &str,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
) -> Result<Vec<(String, Vec<DateTime<Utc>>, Vec<Decimal>)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT coin_id, array_agg(day_end ORDER BY day_end) AS "days!",
                  array_agg(price ORDER BY day_end) AS "prices!"
           FROM price_daily
           WHERE coin_id = ANY($1) AND vs_currency = $2 AND day_end BETWEEN $3 AND $4
           GROUP BY coin_id"#,
        coins,
        vs,
        first,
        last,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.coin_id, row.days, row.prices))
        .collect())
}
