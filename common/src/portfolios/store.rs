//! Queries of the portfolio jobs: a job's files, and a portfolio's transactions read and added
//! in bulk.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::Side;
use super::rules::ValidTransaction;

/// Rows [`insert_transactions`] takes at once, comfortably within Postgres's limits.
pub const INSERT_CHUNK: usize = 5_000;

/// Why a job's file is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The file an import job reads.
    Upload,
    /// The file an export job wrote.
    Download,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Upload => "upload",
            Purpose::Download => "download",
        }
    }
}

/// Stores a job's file (replacing an earlier one of the same purpose, as a re-run export
/// writes it again).
pub async fn save_file(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    purpose: Purpose,
    media_type: &str,
    content: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO job_files (job_id, purpose, media_type, content, expires_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (job_id, purpose) DO UPDATE
         SET media_type = EXCLUDED.media_type, content = EXCLUDED.content,
             created_at = now(), expires_at = EXCLUDED.expires_at",
        job_id,
        purpose.as_str(),
        media_type,
        content,
        expires_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A job's file.
#[derive(Debug)]
pub struct JobFile {
    /// Its media type.
    pub media_type: String,
    /// Its bytes.
    pub content: Vec<u8>,
    /// When it is deleted.
    pub expires_at: DateTime<Utc>,
    /// For an upload: when its rows were added, and the import's result then.
    pub applied: Option<(DateTime<Utc>, serde_json::Value)>,
}

/// A job's file of `purpose` that has not expired.
pub async fn find_file(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    purpose: Purpose,
) -> Result<Option<JobFile>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT media_type, content, expires_at, applied_at, applied_result
         FROM job_files WHERE job_id = $1 AND purpose = $2 AND expires_at > now()",
        job_id,
        purpose.as_str(),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| JobFile {
        media_type: row.media_type,
        content: row.content,
        expires_at: row.expires_at,
        applied: row.applied_at.zip(row.applied_result),
    }))
}

/// Locks an upload's row until the transaction ends (a second run of the same import waits,
/// then finds it applied) and says whether, and with what result, it was applied already.
pub async fn lock_upload(
    tx: &mut PgConnection,
    job_id: Uuid,
) -> Result<Option<Option<serde_json::Value>>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT applied_result FROM job_files
         WHERE job_id = $1 AND purpose = 'upload' FOR UPDATE",
        job_id,
    )
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|row| row.applied_result))
}

/// Records that an upload's rows were added, with the import's result.
pub async fn mark_applied(
    tx: &mut PgConnection,
    job_id: Uuid,
    result: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE job_files SET applied_at = now(), applied_result = $2
         WHERE job_id = $1 AND purpose = 'upload'",
        job_id,
        result,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Deletes up to `limit` expired files; returns how many.
pub async fn purge_expired_files(db: impl PgExecutor<'_>, limit: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM job_files WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM job_files WHERE expires_at <= now()
             LIMIT $1 FOR UPDATE SKIP LOCKED))",
        limit,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// A portfolio as its jobs need it.
#[derive(Debug, Clone)]
pub struct PortfolioHeader {
    /// Its owner.
    pub user_id: Uuid,
    /// The currency its amounts are in.
    pub base_currency: String,
}

/// The portfolio `id` of `user` (not deleted), locked until the transaction ends when
/// `lock` (its ledger's writers queue behind it, as the API's do).
pub async fn portfolio(
    db: &mut PgConnection,
    user: Uuid,
    id: Uuid,
    lock: bool,
) -> Result<Option<PortfolioHeader>, sqlx::Error> {
    let row = if lock {
        sqlx::query_as!(
            PortfolioHeader,
            "SELECT user_id, base_currency FROM portfolios
             WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL FOR UPDATE",
            id,
            user,
        )
        .fetch_optional(&mut *db)
        .await?
    } else {
        sqlx::query_as!(
            PortfolioHeader,
            "SELECT user_id, base_currency FROM portfolios
             WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL",
            id,
            user,
        )
        .fetch_optional(&mut *db)
        .await?
    };
    Ok(row)
}

/// The ids among `coins` that are known.
pub async fn known_coins(
    db: impl PgExecutor<'_>,
    coins: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!("SELECT id FROM coins WHERE id = ANY($1)", coins)
        .fetch_all(db)
        .await
}

/// Every transaction of a portfolio, in ledger order (by `executed_at`, then as recorded).
pub async fn transactions(
    db: impl PgExecutor<'_>,
    portfolio_id: Uuid,
) -> Result<Vec<ValidTransaction>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT coin_id, side, quantity, price, fee, executed_at, note
         FROM portfolio_transactions WHERE portfolio_id = $1
         ORDER BY executed_at, seq",
        portfolio_id,
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|row| {
            let side = Side::from_db(&row.side).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown transaction side {:?}", row.side).into())
            })?;
            Ok(ValidTransaction {
                coin_id: row.coin_id,
                side,
                quantity: row.quantity,
                price: row.price,
                fee: row.fee,
                executed_at: row.executed_at,
                note: row.note,
            })
        })
        .collect()
}

/// Adds `chunk` (at most [`INSERT_CHUNK`] rows) to a portfolio in one statement, in their
/// order, which becomes their ledger order among transactions executed at the same instant.
pub async fn insert_transactions(
    tx: &mut PgConnection,
    portfolio_id: Uuid,
    chunk: &[&ValidTransaction],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
    let coins: Vec<&str> = chunk.iter().map(|row| row.coin_id.as_str()).collect();
    let sides: Vec<&str> = chunk.iter().map(|row| row.side.as_str()).collect();
    let quantities: Vec<Decimal> = chunk.iter().map(|row| row.quantity).collect();
    let prices: Vec<Decimal> = chunk.iter().map(|row| row.price).collect();
    let fees: Vec<Decimal> = chunk.iter().map(|row| row.fee).collect();
    let times: Vec<DateTime<Utc>> = chunk.iter().map(|row| row.executed_at).collect();
    let notes: Vec<Option<&str>> = chunk.iter().map(|row| row.note.as_deref()).collect();
    sqlx::query!(
        "INSERT INTO portfolio_transactions
                 (id, portfolio_id, coin_id, side, quantity, price, fee, executed_at, note)
             SELECT id, $2, coin_id, side, quantity, price, fee, executed_at, note
             FROM UNNEST($1::uuid[], $3::text[], $4::text[], $5::numeric[], $6::numeric[],
                         $7::numeric[], $8::timestamptz[], $9::text[])
                  WITH ORDINALITY AS row (id, coin_id, side, quantity, price, fee,
                                          executed_at, note, position)
             ORDER BY position",
        &ids,
        portfolio_id,
        &coins as &[&str],
        &sides as &[&str],
        &quantities,
        &prices,
        &fees,
        &times,
        &notes as &[Option<&str>],
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}
