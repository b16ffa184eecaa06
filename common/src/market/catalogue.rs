//! The provider's catalogue: every coin it knows and every currency it quotes in, copied into
//! Postgres (`coins`, `market_catalogues`) so callers can discover ids without spending the
//! provider's budget on each search.
//!
//! The copy is refreshed on demand when older than [`MAX_AGE`]: one provider call for the
//! coins and one for the currencies a day, whatever the traffic. A provider that fails keeps
//! the previous copy in use; only a catalogue never read at all makes the caller fail.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{CoinInfo, PriceProvider, ProviderError};

/// How long a copy of the catalogue is used before it is read again.
pub const MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Coins a search page may hold at most.
pub const MAX_PAGE: i64 = 100;

/// Why the catalogue could not be given.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// Postgres failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The catalogue was never read and the provider could not give it now.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// A coin as searches list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedCoin {
    /// Provider id, e.g. `bitcoin`: what every other endpoint takes.
    pub id: String,
    /// Ticker, e.g. `btc`.
    pub symbol: String,
    /// Display name.
    pub name: String,
    /// Position by market capitalisation, when known.
    pub market_cap_rank: Option<i32>,
}

/// One page of a coin search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinPage {
    /// The coins on the page.
    pub coins: Vec<ListedCoin>,
    /// How many coins match in all.
    pub total: i64,
}

/// The currencies `provider` quotes in, reading the catalogue first when it is stale.
pub async fn currencies(
    db: &PgPool,
    provider: &PriceProvider,
) -> Result<Vec<String>, CatalogueError> {
    ensure_fresh(db, provider).await?;
    let currencies = sqlx::query_scalar!(
        "SELECT currencies FROM market_catalogues WHERE provider = $1",
        provider.kind().as_str(),
    )
    .fetch_optional(db)
    .await?;
    Ok(currencies.unwrap_or_default())
}

/// Coins whose id, symbol or name starts with `search` (any case; every coin when `None`):
/// exact id or symbol matches first, then by market capitalisation rank, then by id.
pub async fn search(
    db: &PgPool,
    provider: &PriceProvider,
    search: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<CoinPage, CatalogueError> {
    ensure_fresh(db, provider).await?;
    let needle = search.map(|text| text.trim().to_lowercase());
    let pattern = needle.as_deref().map(like_prefix);
    let coins = sqlx::query_as!(
        ListedCoin,
        r#"SELECT id, symbol, name, market_cap_rank FROM coins
           WHERE $1::text IS NULL
              OR lower(id) LIKE $1 OR lower(symbol) LIKE $1 OR lower(name) LIKE $1
           ORDER BY (lower(id) = $2 OR lower(symbol) = $2) DESC, market_cap_rank NULLS LAST, id
           LIMIT $3 OFFSET $4"#,
        pattern.as_deref(),
        needle.as_deref(),
        limit.clamp(1, MAX_PAGE),
        offset.max(0),
    )
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "total!" FROM coins
           WHERE $1::text IS NULL
              OR lower(id) LIKE $1 OR lower(symbol) LIKE $1 OR lower(name) LIKE $1"#,
        pattern.as_deref(),
    )
    .fetch_one(db)
    .await?;
    Ok(CoinPage { coins, total })
}

/// A `LIKE` pattern matching values that start with `prefix` taken literally.
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for ch in prefix.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(ch);
    }
    pattern.push('%');
    pattern
}

/// Reads the provider's catalogue into Postgres unless a copy younger than [`MAX_AGE`] is
/// there. Concurrent callers (in any process) wait for one reader instead of each asking the
/// provider.
pub async fn ensure_fresh(db: &PgPool, provider: &PriceProvider) -> Result<(), CatalogueError> {
    let kind = provider.kind().as_str();
    if synced_at(db, kind).await?.is_some_and(is_fresh) {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('coinpulse:catalogue:' || $1, 0))",
        kind,
    )
    .execute(&mut *tx)
    .await?;
    let synced = synced_at(&mut *tx, kind).await?;
    if synced.is_some_and(is_fresh) {
        return Ok(());
    }
    let fetched = match (provider.coins().await, provider.quote_currencies().await) {
        (Ok(coins), Ok(currencies)) => (coins, currencies),
        (Err(err), _) | (_, Err(err)) => {
            return match synced {
                // A stale copy beats none: try again on the next call.
                Some(_) => {
                    tracing::warn!(error = %err, provider = kind, "could not refresh the coin catalogue; using the previous copy");
                    Ok(())
                }
                None => Err(err.into()),
            };
        }
    };
    let (coins, currencies) = fetched;
    upsert_coins(&mut tx, &dedup(coins)).await?;
    sqlx::query!(
        "INSERT INTO market_catalogues (provider, currencies, synced_at) VALUES ($1, $2, now())
         ON CONFLICT (provider) DO UPDATE SET currencies = EXCLUDED.currencies, synced_at = now()",
        kind,
        &currencies,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

fn is_fresh(synced_at: DateTime<Utc>) -> bool {
    Utc::now() - synced_at < MAX_AGE
}

async fn synced_at(
    db: impl sqlx::PgExecutor<'_>,
    kind: &str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT synced_at FROM market_catalogues WHERE provider = $1",
        kind
    )
    .fetch_optional(db)
    .await
}

/// One row per id (the first listing wins): an upsert may not touch a row twice.
fn dedup(coins: Vec<CoinInfo>) -> Vec<CoinInfo> {
    let mut seen = std::collections::HashSet::with_capacity(coins.len());
    coins
        .into_iter()
        .filter(|coin| seen.insert(coin.id.clone()))
        .collect()
}

async fn upsert_coins(tx: &mut sqlx::PgConnection, coins: &[CoinInfo]) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = coins.iter().map(|coin| coin.id.as_str()).collect();
    let symbols: Vec<&str> = coins.iter().map(|coin| coin.symbol.as_str()).collect();
    let names: Vec<&str> = coins.iter().map(|coin| coin.name.as_str()).collect();
    let ranks: Vec<Option<i32>> = coins
        .iter()
        .map(|coin| {
            coin.market_cap_rank
                .and_then(|rank| i32::try_from(rank).ok())
        })
        .collect();
    super::store::upsert_coins(&mut *tx, &ids, &symbols, &names, &ranks).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_prefix_takes_wildcards_literally() {
        assert_eq!(like_prefix("bit"), "bit%");
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }

    #[test]
    fn duplicate_ids_keep_the_first_listing() {
        let coin = |id: &str, name: &str| CoinInfo {
            id: id.into(),
            symbol: id.into(),
            name: name.into(),
            market_cap_rank: None,
        };
        let kept = dedup(vec![
            coin("a", "first"),
            coin("b", "b"),
            coin("a", "second"),
        ]);
        assert_eq!(kept, vec![coin("a", "first"), coin("b", "b")]);
    }
}
