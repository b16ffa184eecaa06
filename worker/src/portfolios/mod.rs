//! Portfolio file jobs: importing the transactions of an uploaded file (every row checked
//! first, then all added in one transaction, once) and exporting a portfolio's transactions to
//! a file to download.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use common::portfolios::Side;
use common::portfolios::files::{self, FileRow, ReadFile};
use common::portfolios::jobs::{
    ExportResult, ExportTransactions, FileFormat, ImportOutcome, ImportResult, ImportTransactions,
};
use common::portfolios::rules::{self, ValidTransaction};
use common::portfolios::store::{self, Purpose};
use common::prices::PriceError;
use rust_decimal::Decimal;

use crate::jobs::{CurrentJob, Handlers, JobContext, JobError};

/// How long an export's file can be downloaded.
pub const DOWNLOAD_LIFETIME: chrono::Duration = chrono::Duration::days(1);
/// Coins not yet known that one import may ask the price provider about (in calls of
/// [`LOOKUP_BATCH`]); beyond them, rows are refused as unknown coins.
const MAX_LOOKUPS: usize = 1_000;
const LOOKUP_BATCH: usize = 250;

/// The portfolio job kinds and their handlers.
pub fn handlers(handlers: Handlers) -> Handlers {
    handlers.register(import).register(export)
}

fn retry(what: &str) -> impl FnOnce(sqlx::Error) -> JobError + '_ {
    move |err| JobError::Retry(format!("{what}: {err}"))
}

/// The job and its owner; portfolio jobs always have one.
fn owned_job(ctx: &JobContext) -> Result<(CurrentJob, uuid::Uuid), JobError> {
    let job = ctx
        .job
        .ok_or_else(|| JobError::Permanent("portfolio jobs run only from the queue".into()))?;
    let owner = job
        .owner
        .ok_or_else(|| JobError::Permanent("a portfolio job must have an owner".into()))?;
    Ok((job, owner))
}

fn rejected(format: FileFormat, file: ReadFile) -> ImportResult {
    let mut errors = file.errors;
    errors.sort_by_key(|error| error.line);
    ImportResult {
        outcome: ImportOutcome::Rejected,
        format,
        rows: file.total,
        added: 0,
        duplicates: 0,
        errors,
        errors_total: file.errors_total,
    }
}

fn coin_field(format: FileFormat) -> &'static str {
    match format {
        FileFormat::Csv => "coin_id",
        FileFormat::Json => "symbol",
    }
}

/// Adds the transactions of the job's uploaded file to the portfolio: every row is checked
/// first (fields, coins, the ledger with the rows added) and every problem reported with its
/// line; only a file without problems is applied, in one transaction. A run after the rows
/// were added (a retry after a crash) adds nothing and answers the first run's result; rows
/// already in the portfolio (the same file imported again) are counted as duplicates.
pub async fn import(ctx: JobContext, job: ImportTransactions) -> Result<ImportResult, JobError> {
    let (current, owner) = owned_job(&ctx)?;
    let Some(upload) = store::find_file(&ctx.db, current.id, Purpose::Upload)
        .await
        .map_err(retry("reading the upload"))?
    else {
        return Err(JobError::Permanent(
            "the uploaded file is gone (it expired before the import ran)".into(),
        ));
    };
    if let Some((_, result)) = upload.applied {
        return serde_json::from_value(result)
            .map_err(|err| JobError::Permanent(format!("stored import result: {err}")));
    }
    let mut conn = ctx.db.acquire().await.map_err(retry("connecting"))?;
    let Some(portfolio) = store::portfolio(&mut conn, owner, job.portfolio_id, false)
        .await
        .map_err(retry("reading the portfolio"))?
    else {
        let mut file = ReadFile::default();
        file.problem(1, "file", "cannot be imported: the portfolio was deleted");
        return Ok(rejected(job.format, file));
    };
    drop(conn);

    let format = job.format;
    let base = portfolio.base_currency.clone();
    let mut file = tokio::task::spawn_blocking(move || {
        files::read(format, &upload.content, &base, Utc::now())
    })
    .await
    .map_err(|err| JobError::Retry(format!("reading the file: {err}")))?;
    ctx.progress.report(0, file.total).await;
    check_coins(&ctx, &portfolio.base_currency, format, &mut file).await?;
    if file.errors_total > 0 {
        return Ok(rejected(format, file));
    }

    let mut tx = ctx.db.begin().await.map_err(retry("starting the import"))?;
    match store::lock_upload(&mut tx, current.id)
        .await
        .map_err(retry("locking the upload"))?
    {
        None => {
            return Err(JobError::Permanent(
                "the uploaded file is gone (it expired before the import ran)".into(),
            ));
        }
        // Another run added the rows while this one read the file.
        Some(Some(result)) => {
            return serde_json::from_value(result)
                .map_err(|err| JobError::Permanent(format!("stored import result: {err}")));
        }
        Some(None) => {}
    }
    if store::portfolio(&mut tx, owner, job.portfolio_id, true)
        .await
        .map_err(retry("locking the portfolio"))?
        .is_none()
    {
        file.problem(1, "file", "cannot be imported: the portfolio was deleted");
        return Ok(rejected(format, file));
    }
    let existing = store::transactions(&mut *tx, job.portfolio_id)
        .await
        .map_err(retry("reading the ledger"))?;
    let rows = std::mem::take(&mut file.rows);
    let (new_rows, duplicates) = without_duplicates(&rows, &existing);
    check_ledgers(&existing, &new_rows, &mut file);
    if file.errors_total > 0 {
        return Ok(rejected(format, file));
    }
    let new: Vec<&ValidTransaction> = new_rows.iter().map(|row| &row.transaction).collect();
    let total = file.total;
    let mut added = 0;
    for chunk in new.chunks(store::INSERT_CHUNK) {
        store::insert_transactions(&mut tx, job.portfolio_id, chunk)
            .await
            .map_err(retry("adding the transactions"))?;
        added += chunk.len() as u64;
        ctx.progress.report(duplicates + added, total).await;
    }
    let result = ImportResult {
        outcome: ImportOutcome::Applied,
        format,
        rows: file.total,
        added: new.len() as u64,
        duplicates,
        errors: Vec::new(),
        errors_total: 0,
    };
    let stored = serde_json::to_value(&result)
        .map_err(|err| JobError::Permanent(format!("cannot store the import result: {err}")))?;
    store::mark_applied(&mut tx, current.id, &stored)
        .await
        .map_err(retry("recording the import"))?;
    tx.commit().await.map_err(retry("committing the import"))?;
    ctx.progress.report(total, total).await;
    tracing::info!(job_id = %current.id, rows = total, added = result.added, duplicates, "import applied");
    Ok(result)
}

/// Refuses the rows of coins neither stored nor known to the price provider (which is asked
/// about the others in a few calls, its quotes recorded). A provider that cannot answer is a
/// reason to try again later, not to refuse the file.
async fn check_coins(
    ctx: &JobContext,
    vs: &str,
    format: FileFormat,
    file: &mut ReadFile,
) -> Result<(), JobError> {
    let mut coins: Vec<String> = file
        .rows
        .iter()
        .map(|row| row.transaction.coin_id.clone())
        .collect();
    coins.sort_unstable();
    coins.dedup();
    if coins.is_empty() {
        return Ok(());
    }
    let known: HashSet<String> = store::known_coins(&ctx.db, &coins)
        .await
        .map_err(retry("reading coins"))?
        .into_iter()
        .collect();
    let mut unknown: Vec<String> = coins
        .into_iter()
        .filter(|coin| !known.contains(coin))
        .collect();
    let asked: Vec<String> = unknown.iter().take(MAX_LOOKUPS).cloned().collect();
    for batch in asked.chunks(LOOKUP_BATCH) {
        let found = match ctx.prices.latest_many(batch, vs).await {
            Ok(found) => found,
            Err(PriceError::Refused(err)) => return Err(JobError::Permanent(err.to_string())),
            Err(err) => return Err(JobError::Retry(format!("looking up coins: {err}"))),
        };
        let missing = batch.iter().any(|coin| !found.prices.contains_key(coin));
        if missing && let Some(why) = found.unavailable {
            return Err(JobError::Retry(format!("looking up coins: {why}")));
        }
        unknown.retain(|coin| !found.prices.contains_key(coin));
    }
    if unknown.is_empty() {
        return Ok(());
    }
    let unknown: HashSet<String> = unknown.into_iter().collect();
    let lines: Vec<(u64, String)> = file
        .rows
        .iter()
        .filter(|row| unknown.contains(&row.transaction.coin_id))
        .map(|row| (row.line, row.transaction.coin_id.clone()))
        .collect();
    for (line, coin) in lines {
        file.problem(
            line,
            coin_field(format),
            format!("{coin:?} is not a known coin"),
        );
    }
    Ok(())
}

/// What makes two transactions the same for duplicate detection.
type Fingerprint<'a> = (
    &'a str,
    Side,
    Decimal,
    Decimal,
    Decimal,
    DateTime<Utc>,
    Option<&'a str>,
);

fn fingerprint<'a>(
    coin_id: &'a str,
    side: Side,
    amounts: [Decimal; 3],
    executed_at: DateTime<Utc>,
    note: Option<&'a str>,
) -> Fingerprint<'a> {
    let [quantity, price, fee] = amounts.map(|amount| amount.normalize());
    (coin_id, side, quantity, price, fee, executed_at, note)
}

/// The file's rows that are not in the portfolio yet, and how many are. Counted as multisets:
/// a file with two identical rows, imported into a portfolio holding one of them, adds one.
fn without_duplicates<'a>(
    rows: &'a [FileRow],
    existing: &[ValidTransaction],
) -> (Vec<&'a FileRow>, u64) {
    let mut held: HashMap<Fingerprint<'_>, usize> = HashMap::new();
    for row in existing {
        *held
            .entry(fingerprint(
                &row.coin_id,
                row.side,
                [row.quantity, row.price, row.fee],
                row.executed_at,
                row.note.as_deref(),
            ))
            .or_default() += 1;
    }
    let mut duplicates = 0;
    let mut new = Vec::with_capacity(rows.len());
    for row in rows {
        let tx = &row.transaction;
        let key = fingerprint(
            &tx.coin_id,
            tx.side,
            [tx.quantity, tx.price, tx.fee],
            tx.executed_at,
            tx.note.as_deref(),
        );
        match held.get_mut(&key) {
            Some(count) if *count > 0 => {
                *count -= 1;
                duplicates += 1;
            }
            _ => new.push(row),
        }
    }
    (new, duplicates)
}

/// One transaction of a coin's ledger once the new rows are in: stored ones carry no line.
struct Flow {
    line: Option<u64>,
    side: Side,
    quantity: Decimal,
    executed_at: DateTime<Utc>,
}

/// Replays each coin's ledger with the new rows in it (after stored ones executed at the same
/// instant, in file order, as they will be recorded) and reports, per coin, the first row that
/// takes out more than is held or leaves a stored sale short.
fn check_ledgers(existing: &[ValidTransaction], new_rows: &[&FileRow], file: &mut ReadFile) {
    let mut ledgers: BTreeMap<&str, Vec<Flow>> = BTreeMap::new();
    for row in existing {
        ledgers.entry(&row.coin_id).or_default().push(Flow {
            line: None,
            side: row.side,
            quantity: row.quantity,
            executed_at: row.executed_at,
        });
    }
    let mut added: BTreeMap<&str, Vec<Flow>> = BTreeMap::new();
    for row in new_rows {
        let tx = &row.transaction;
        added.entry(&tx.coin_id).or_default().push(Flow {
            line: Some(row.line),
            side: tx.side,
            quantity: tx.quantity,
            executed_at: tx.executed_at,
        });
    }
    for (coin, mut flows) in added {
        let mut ledger = ledgers.remove(coin).unwrap_or_default();
        ledger.append(&mut flows);
        // Stable: stored rows (first, in ledger order) stay before new ones at the same instant.
        ledger.sort_by_key(|flow| flow.executed_at);
        match rules::first_shortfall(ledger.iter().map(|flow| (flow.side, flow.quantity))) {
            Ok(None) => {}
            Ok(Some((index, held))) => {
                let short = &ledger[index];
                let verb = if short.side == Side::Sell {
                    "sell"
                } else {
                    "transfer out"
                };
                let at = common::wire::timestamp_text(&short.executed_at);
                let held = common::wire::decimal_text(&held);
                match short.line {
                    Some(line) => file.problem(
                        line,
                        "quantity",
                        format!("is more than the holding of {held} {coin} at {at}"),
                    ),
                    None => {
                        // A stored outflow left short: blame the last new outflow before it.
                        let line = ledger[..index]
                            .iter()
                            .rev()
                            .find(|flow| flow.line.is_some() && !flow.side.is_inflow())
                            .and_then(|flow| flow.line)
                            .unwrap_or(1);
                        file.problem(
                            line,
                            "quantity",
                            format!(
                                "would leave too little {coin} for the recorded {verb} of {} at {at} (the holding then would be {held})",
                                common::wire::decimal_text(&short.quantity)
                            ),
                        );
                    }
                }
            }
            Err(_) => {
                let line = ledger.iter().find_map(|flow| flow.line).unwrap_or(1);
                file.problem(
                    line,
                    "quantity",
                    format!("the holding of {coin} would become too large to compute exactly"),
                );
            }
        }
    }
}

/// Writes the portfolio's transactions, in ledger order, to a file its owner can download
/// for [`DOWNLOAD_LIFETIME`] (`GET /api/v1/jobs/{id}/download`).
pub async fn export(ctx: JobContext, job: ExportTransactions) -> Result<ExportResult, JobError> {
    let (current, owner) = owned_job(&ctx)?;
    let mut conn = ctx.db.acquire().await.map_err(retry("connecting"))?;
    let Some(portfolio) = store::portfolio(&mut conn, owner, job.portfolio_id, false)
        .await
        .map_err(retry("reading the portfolio"))?
    else {
        return Err(JobError::Permanent(
            "the portfolio was deleted before it could be exported".into(),
        ));
    };
    let rows = store::transactions(&mut *conn, job.portfolio_id)
        .await
        .map_err(retry("reading the transactions"))?;
    drop(conn);
    let total = rows.len() as u64;
    ctx.progress.report(0, total).await;
    let format = job.format;
    let base = portfolio.base_currency;
    let content = tokio::task::spawn_blocking(move || files::write(format, &rows, &base))
        .await
        .map_err(|err| JobError::Retry(format!("writing the file: {err}")))?;
    let expires_at = Utc::now() + DOWNLOAD_LIFETIME;
    store::save_file(
        &ctx.db,
        current.id,
        Purpose::Download,
        format.media_type(),
        &content,
        expires_at,
    )
    .await
    .map_err(retry("storing the file"))?;
    ctx.progress.report(total, total).await;
    Ok(ExportResult {
        format,
        rows: total,
        bytes: content.len() as u64,
        download: format!("/api/v1/jobs/{}/download", current.id),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, day, 0, 0, 0)
            .single()
            .expect("a valid time")
    }

    fn stored(side: Side, quantity: i64, day: u32) -> ValidTransaction {
        ValidTransaction {
            coin_id: "bitcoin".into(),
            side,
            quantity: Decimal::from(quantity),
            price: Decimal::ONE,
            fee: Decimal::ZERO,
            executed_at: at(day),
            note: None,
        }
    }

    fn row(line: u64, side: Side, quantity: i64, day: u32) -> FileRow {
        let stored = stored(side, quantity, day);
        FileRow {
            line,
            transaction: ValidTransaction {
                coin_id: stored.coin_id,
                side,
                quantity: stored.quantity,
                price: Decimal::new(10, 1), // 1.0: the same amount, written otherwise
                fee: stored.fee,
                executed_at: stored.executed_at,
                note: None,
            },
        }
    }

    #[test]
    fn duplicates_are_counted_as_multisets() {
        let existing = [stored(Side::Buy, 1, 1)];
        let rows = [
            row(2, Side::Buy, 1, 1),
            row(3, Side::Buy, 1, 1),
            row(4, Side::Buy, 2, 1),
        ];
        let (new, duplicates) = without_duplicates(&rows, &existing);
        assert_eq!(duplicates, 1);
        assert_eq!(new.iter().map(|row| row.line).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn an_oversell_is_reported_on_its_own_line_or_on_the_row_that_causes_it() {
        let existing = [stored(Side::Buy, 2, 1), stored(Side::Sell, 2, 10)];
        let rows = [row(2, Side::Buy, 1, 2), row(3, Side::Sell, 4, 3)];
        let new: Vec<&FileRow> = rows.iter().collect();
        let mut file = ReadFile::default();
        check_ledgers(&existing, &new, &mut file);
        assert_eq!(file.errors.len(), 1);
        assert_eq!(
            (file.errors[0].line, file.errors[0].field.as_str()),
            (3, "quantity")
        );
        assert!(
            file.errors[0].message.contains("holding of 3 bitcoin"),
            "{:?}",
            file.errors
        );

        let rows = [row(2, Side::Sell, 1, 5)];
        let new: Vec<&FileRow> = rows.iter().collect();
        let mut file = ReadFile::default();
        check_ledgers(&existing, &new, &mut file);
        assert_eq!(file.errors[0].line, 2);
        assert!(
            file.errors[0].message.contains("recorded sell of 2"),
            "{:?}",
            file.errors
        );
    }
}
