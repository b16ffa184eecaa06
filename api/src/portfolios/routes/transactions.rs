//! A portfolio's transactions: `/api/v1/portfolios/{id}/transactions[/{tx_id}]`.

use chrono::Utc;
use common::market::store as market_store;
use common::prices::PriceError;
use poem::http::StatusCode;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use uuid::Uuid;

use super::{NoContent, location, not_found, replayed};
use crate::app::AppState;
use crate::auth::extract::ActiveUser;
use crate::error::{ApiError, ApiResult, status};
use crate::market::parse_coin_id;
use crate::platform::ApiTags;
use crate::platform::conditional::{self, Conditional};
use crate::platform::idempotency::{self, Answer, Claim, Key, Scope};
use crate::platform::json_body::JsonBody;
use crate::platform::pagination::{Page, PageRequest};
use crate::portfolios::amount::Dec;
use crate::portfolios::ledger::{self, DeleteRefusal, InsertRefusal};
use crate::portfolios::model::{
    CreateTransactionRequest, PortfolioRow, SortOrder, Transaction, TransactionRow,
    TransactionSide, UpdateTransactionRequest,
};
use crate::portfolios::store;
use crate::portfolios::validate::{self, ValidTransaction};
use crate::portfolios::valuation::{Entry, Side};

/// Transaction endpoints.
#[derive(Debug)]
pub struct TransactionsApi {
    state: AppState,
}

impl TransactionsApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// Makes sure the coin is known: stored already, or known to the price provider (the
    /// prices service records its quote). Unknown coins are a 422.
    async fn ensure_coin(&self, coin_id: &str, vs: &str) -> Result<(), ApiError> {
        if market_store::coin_exists(&self.state.db, coin_id).await? {
            return Ok(());
        }
        match self.state.prices.latest(coin_id, vs).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(ApiError::invalid("coin_id", "is not a known coin")),
            Err(PriceError::Refused(err)) => {
                tracing::warn!(error = %err, coin_id, "price provider refused a coin lookup");
                Err(ApiError::invalid("coin_id", "is not a known coin"))
            }
            Err(PriceError::Unavailable(why)) => {
                tracing::warn!(reason = %why, coin_id, "price provider failed a coin lookup");
                Err(unavailable())
            }
            Err(PriceError::Database(err)) => Err(err.into()),
        }
    }
}

#[derive(ApiResponse)]
enum TransactionCreated {
    /// Recorded. With an `Idempotency-Key` that was used before for the same request, this is
    /// the first response again (same id), marked `Idempotent-Replayed: true`.
    #[oai(status = 201)]
    Created(
        Json<Transaction>,
        /// The transaction's URL.
        #[oai(header = "Location")]
        String,
        /// `true` when this is a replay of an earlier response.
        #[oai(header = "Idempotent-Replayed")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
enum TransactionUpdated {
    /// The transaction as it is now.
    #[oai(status = 200)]
    Ok(
        Json<Transaction>,
        /// Its new entity tag, for the next `If-Match`.
        #[oai(header = "ETag")]
        String,
    ),
}

fn created_transaction(transaction: Transaction, replay: bool) -> TransactionCreated {
    let location = format!(
        "{}/transactions/{}",
        location(transaction.portfolio_id),
        transaction.id
    );
    TransactionCreated::Created(Json(transaction), location, replayed(replay))
}

fn unavailable() -> ApiError {
    ApiError::Unavailable("the price provider is unavailable; retry later".into())
}

/// A refused new transaction as a 422 on `quantity`.
fn insert_refused(refusal: InsertRefusal, new: &ValidTransaction) -> ApiError {
    let coin_id = &new.coin_id;
    let message = match refusal {
        InsertRefusal::ExceedsHolding { held } => format!(
            "is more than the holding of {} {coin_id} at {}",
            Dec(held),
            common::wire::timestamp_text(&new.executed_at)
        ),
        InsertRefusal::LeavesShort { later, held } => format!(
            "would leave too little {coin_id} for {later} (the holding then would be {})",
            Dec(held)
        ),
        InsertRefusal::Overflow => {
            "the holding would become too large to compute exactly".to_owned()
        }
    };
    ApiError::invalid("quantity", message)
}

/// A refused deletion as a 409 naming the transaction left short.
fn delete_refused(refusal: DeleteRefusal, coin_id: &str) -> ApiError {
    match refusal {
        DeleteRefusal::LeavesShort { later, held } => ApiError::Conflict {
            detail: format!(
                "deleting this transaction would leave too little {coin_id} for {later} \
                 (the holding then would be {})",
                Dec(held)
            ),
            field: None,
        },
        DeleteRefusal::Overflow => ApiError::Internal(anyhow::anyhow!(
            "the ledger of {coin_id} is too large to compute exactly"
        )),
    }
}

/// Locks the caller's portfolio `id` (the ledger's writers queue behind it) and reads its
/// transaction `tx_id`; 404 when either is not there or not theirs.
async fn lock_transaction(
    tx: &mut sqlx::PgConnection,
    user: Uuid,
    id: Uuid,
    tx_id: Uuid,
) -> Result<(PortfolioRow, TransactionRow), ApiError> {
    let portfolio = store::lock(&mut *tx, user, id)
        .await?
        .ok_or_else(not_found)?;
    let row = store::find_transaction(&mut *tx, portfolio.id, tx_id)
        .await?
        .ok_or_else(|| ApiError::not_found("transaction"))?;
    Ok((portfolio, row))
}

#[OpenApi(prefix_path = "/api/v1/portfolios", tag = "ApiTags::Portfolios")]
impl TransactionsApi {
    /// A portfolio's transactions, by `executed_at` (then the order they were recorded in).
    ///
    /// `order` is `asc` (ledger order, the default) or `desc`; filter by `coin_id` and `side`.
    #[oai(path = "/:id/transactions", method = "get")]
    #[expect(
        clippy::too_many_arguments,
        reason = "poem-openapi takes each query parameter as an argument"
    )]
    async fn list_transactions(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// Page number, from 1 (at most 1,000,000).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Items per page, 1–100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        per_page: Query<Option<u32>>,
        /// Only this coin's transactions.
        #[oai(validator(pattern = r"^[a-z0-9_.-]{1,100}$"))]
        coin_id: Query<Option<String>>,
        /// Only transactions of this side.
        side: Query<Option<TransactionSide>>,
        /// `asc` (default) or `desc` by `executed_at`.
        order: Query<Option<SortOrder>>,
    ) -> ApiResult<
        Json<Page<Transaction>>,
        { status::AUTHED | status::VALIDATION | status::NOT_FOUND },
    > {
        let request = PageRequest::parse(page.0, per_page.0)?;
        let coin_id = coin_id
            .0
            .as_deref()
            .map(|raw| parse_coin_id("coin_id", raw))
            .transpose()?;
        let user = caller.0.id;
        let mut conn = self.state.db.acquire().await?;
        let portfolio = store::find(&mut *conn, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        let (rows, total) = store::list_transactions(
            &mut conn,
            portfolio.id,
            &store::TransactionFilter {
                coin_id: coin_id.as_deref(),
                side: side.0.map(Side::from),
                order: order.0.unwrap_or(SortOrder::Asc).as_str(),
            },
            request.limit(),
            request.offset(),
        )
        .await?;
        let items = rows
            .into_iter()
            .map(Transaction::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Json(Page::new(items, request, total)))
    }

    /// Record a transaction.
    ///
    /// A `sell` or `transfer_out` may not take out more than the holding at its
    /// `executed_at`, nor leave a later one short (`422`, naming the transaction). Amounts are
    /// decimal strings. `Idempotency-Key` works as for creating a portfolio.
    #[oai(path = "/:id/transactions", method = "post")]
    async fn create_transaction(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// A unique value per intended create, e.g. a UUID (1–255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = r"^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        body: JsonBody<CreateTransactionRequest>,
    ) -> ApiResult<Answer<TransactionCreated>, { status::AUTHED | status::BODY | status::NOT_FOUND }>
    {
        let request = body.0;
        let key = idempotency_key.0.as_deref().map(Key::parse).transpose()?;
        let new = validate::transaction(&request, Utc::now())?;
        let user = caller.0.id;
        let portfolio = store::find(&self.state.db, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        self.ensure_coin(&new.coin_id, &portfolio.base_currency)
            .await?;

        let mut tx = self.state.db.begin().await?;
        if let Some(key) = &key {
            let path = format!("{}/transactions", location(portfolio.id));
            let fingerprint = idempotency::fingerprint(&path, &request)?;
            let claim = idempotency::claim::<Transaction>(
                &mut tx,
                user,
                Scope::CreateTransaction,
                key,
                &fingerprint,
            )
            .await?;
            if let Claim::Replay { status, body } = claim {
                return Ok(Answer::replay(status, created_transaction(body, true)));
            }
        }
        let portfolio = store::lock(&mut tx, user, portfolio.id)
            .await?
            .ok_or_else(not_found)?;
        let ledger = store::coin_ledger(&mut *tx, portfolio.id, &new.coin_id).await?;
        ledger::check_insert(&ledger, &Entry::from(&new), new.executed_at)
            .map_err(|refusal| insert_refused(refusal, &new))?;
        let row = store::insert_transaction(&mut *tx, portfolio.id, &new).await?;
        let transaction = Transaction::try_from(row)?;
        if let Some(key) = &key {
            idempotency::store(
                &mut tx,
                user,
                Scope::CreateTransaction,
                key,
                StatusCode::CREATED, // What `TransactionCreated` answers.
                &transaction,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Answer::fresh(created_transaction(transaction, false)))
    }

    /// One transaction of a portfolio, with an `ETag` for `If-Match` on a change (and
    /// `If-None-Match`: `304` while it is unchanged).
    #[oai(path = "/:id/transactions/:tx_id", method = "get")]
    async fn get_transaction(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// The transaction's id.
        tx_id: Path<Uuid>,
        /// The `ETag` of a copy the caller holds (`*` or a list also work).
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> ApiResult<
        Conditional<Transaction>,
        { status::AUTHED | status::VALIDATION | status::NOT_FOUND },
    > {
        let user = caller.0.id;
        let mut conn = self.state.db.acquire().await?;
        let portfolio = store::find(&mut *conn, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        let row = store::find_transaction(&mut *conn, portfolio.id, tx_id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("transaction"))?;
        let transaction = Transaction::try_from(row)?;
        let etag = conditional::content_etag(&transaction, &[]);
        Ok(Conditional::new(
            transaction,
            etag,
            if_none_match.0.as_deref(),
        ))
    }

    /// Change a transaction.
    ///
    /// Absent fields keep their values; the result follows the same rules as a new
    /// transaction. The coin's ledger is replayed with the change (both ledgers when the coin
    /// changes): an edit that would make this or a later `sell` or `transfer_out` take out
    /// more than is held is refused with `422` naming it, and nothing changes. Send the
    /// transaction's `ETag` as `If-Match` to change it only if nobody else did meanwhile
    /// (`412` otherwise).
    #[oai(path = "/:id/transactions/:tx_id", method = "patch")]
    async fn update_transaction(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// The transaction's id.
        tx_id: Path<Uuid>,
        /// The `ETag` last seen; `*` matches any version.
        #[oai(name = "If-Match")]
        if_match: Header<Option<String>>,
        body: JsonBody<UpdateTransactionRequest>,
    ) -> ApiResult<
        TransactionUpdated,
        { status::AUTHED | status::BODY | status::NOT_FOUND | status::PRECONDITION_FAILED },
    > {
        let mut tx = self.state.db.begin().await?;
        let (portfolio, row) = lock_transaction(&mut tx, caller.0.id, id.0, tx_id.0).await?;
        let current = Transaction::try_from(row)?;
        conditional::check_if_match(
            if_match.0.as_deref(),
            &conditional::content_etag(&current, &[]),
            "transaction",
        )?;
        let changed = validate::transaction(&body.0.applied_to(&current), Utc::now())?;
        if changed.coin_id != current.coin_id {
            self.ensure_coin(&changed.coin_id, &portfolio.base_currency)
                .await?;
            // Leaving the old coin's ledger must not leave a later outflow short.
            let old = store::coin_ledger(&mut *tx, portfolio.id, &current.coin_id).await?;
            ledger::check_delete(&old, current.id).map_err(|refusal| {
                match delete_refused(refusal, &current.coin_id) {
                    ApiError::Conflict { detail, .. } => ApiError::invalid(
                        "coin_id",
                        detail.replace("deleting this transaction", "moving this transaction"),
                    ),
                    other => other,
                }
            })?;
        }
        let others: Vec<_> = store::coin_ledger(&mut *tx, portfolio.id, &changed.coin_id)
            .await?
            .into_iter()
            .filter(|entry| entry.id != current.id)
            .collect();
        ledger::check_insert(&others, &Entry::from(&changed), changed.executed_at)
            .map_err(|refusal| insert_refused(refusal, &changed))?;
        let row = store::update_transaction(&mut *tx, current.id, &changed).await?;
        let transaction = Transaction::try_from(row)?;
        tx.commit().await?;
        let etag = conditional::content_etag(&transaction, &[]);
        Ok(TransactionUpdated::Ok(Json(transaction), etag))
    }

    /// Delete a transaction.
    ///
    /// Refused with `409` when a later `sell` or `transfer_out` would then take out more than
    /// the holding (the problem names it); nothing changes.
    #[oai(path = "/:id/transactions/:tx_id", method = "delete")]
    async fn delete_transaction(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// The transaction's id.
        tx_id: Path<Uuid>,
    ) -> ApiResult<
        NoContent,
        { status::AUTHED | status::VALIDATION | status::NOT_FOUND | status::CONFLICT },
    > {
        let mut tx = self.state.db.begin().await?;
        let (portfolio, row) = lock_transaction(&mut tx, caller.0.id, id.0, tx_id.0).await?;
        let ledger = store::coin_ledger(&mut *tx, portfolio.id, &row.coin_id).await?;
        ledger::check_delete(&ledger, row.id)
            .map_err(|refusal| delete_refused(refusal, &row.coin_id))?;
        store::delete_transaction(&mut *tx, row.id).await?;
        tx.commit().await?;
        Ok(NoContent::Done)
    }
}
