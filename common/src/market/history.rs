//! Price history over a range at a fixed resolution, with holes filled from the provider.
//!
//! A range is cut into buckets: hours for ranges up to [`HOURLY_UP_TO`], days beyond (what
//! CoinGecko itself answers). Each bucket is represented by the first price stored in it, at
//! that price's own instant. Buckets that ended before the range's end and `now` but hold no
//! stored price are gaps: they are asked of the provider in one call spanning all of them,
//! stored, and the span is recorded in `price_history_coverage`, so a span the provider has
//! no data for (before a coin was listed) is asked once, then reported as unavailable. What a
//! range returns therefore no longer depends on which ranges were asked before.
//!
//! The bucket still in progress (or the one `to` falls into) is not a gap: it shows a price
//! when one is stored, otherwise nothing.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use sqlx::PgPool;

use super::{PricePoint, PriceProvider, ProviderError, store};

/// The longest range answered hourly; longer ranges are answered daily.
pub const HOURLY_UP_TO: TimeDelta = TimeDelta::days(90);

/// How far apart a series' points are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// One point per hour (UTC).
    Hour,
    /// One point per day (UTC).
    Day,
}

impl Resolution {
    /// The resolution a range from `from` to `to` is answered at.
    pub fn for_range(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        if to - from <= HOURLY_UP_TO {
            Self::Hour
        } else {
            Self::Day
        }
    }

    /// Seconds per bucket.
    pub fn seconds(self) -> i64 {
        match self {
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }

    fn step(self) -> TimeDelta {
        TimeDelta::seconds(self.seconds())
    }

    /// The first bucket boundary at or after `at`.
    fn ceil(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let secs = at.timestamp();
        let rem = secs.rem_euclid(self.seconds());
        let aligned = if rem == 0 && at.timestamp_subsec_nanos() == 0 {
            secs
        } else {
            secs - rem + self.seconds()
        };
        Utc.timestamp_opt(aligned, 0).single().unwrap_or(at)
    }
}

/// A span of time with no price, `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
}

/// A coin's prices over a range.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The resolution of `points`.
    pub resolution: Resolution,
    /// At most one point per bucket, oldest first.
    pub points: Vec<PricePoint>,
    /// Finished buckets without a price, merged into spans, oldest first.
    pub unavailable: Vec<Span>,
}

/// Why a series could not be given.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Postgres failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The provider refused the request itself (unknown coin, unsupported currency).
    #[error(transparent)]
    Provider(ProviderError),
}

/// The series of `coin_id` in `vs` over `[from, to]`, filling gaps from `provider` once. A
/// provider that is failing only leaves the gaps reported as unavailable (and asked again
/// next time); one that refuses the coin or currency is an error.
pub async fn series(
    db: &PgPool,
    provider: &PriceProvider,
    coin_id: &str,
    vs: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Series, HistoryError> {
    let resolution = Resolution::for_range(from, to);
    let grid = Grid::new(resolution, from, to, now);
    let mut points = grid.first_per_bucket(store::history(db, coin_id, vs, from, to).await?);
    let missing = grid.gaps(&points);
    let uncovered = uncovered(db, coin_id, vs, resolution, &grid, &missing).await?;
    if let (Some(&first), Some(&last)) = (uncovered.first(), uncovered.last()) {
        let ask_from = grid.bucket_start(first);
        let ask_to = (grid.bucket_start(last) + resolution.step()).min(to);
        match provider.history(coin_id, vs, ask_from, ask_to).await {
            Ok(fetched) => {
                let mut tx = db.begin().await?;
                store::save_history(&mut *tx, coin_id, vs, &fetched, provider.kind().as_str())
                    .await?;
                sqlx::query!(
                    "INSERT INTO price_history_coverage
                         (coin_id, vs_currency, resolution_secs, from_at, to_at)
                     VALUES ($1, $2, $3, $4, $5)",
                    coin_id,
                    vs,
                    i32::try_from(resolution.seconds()).unwrap_or(i32::MAX),
                    ask_from,
                    grid.bucket_start(last),
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                points = grid.first_per_bucket(store::history(db, coin_id, vs, from, to).await?);
            }
            Err(err) if err.is_transient() => {
                tracing::warn!(error = %err, coin_id, vs, "could not fill a gap in price history; reporting it unavailable");
            }
            Err(err) => return Err(HistoryError::Provider(err)),
        }
    }
    let unavailable = grid.spans(&grid.gaps(&points));
    Ok(Series {
        resolution,
        points: points.into_iter().flatten().collect(),
        unavailable,
    })
}

/// Of the `missing` buckets, those no earlier provider call at this resolution or finer was
/// asked for.
async fn uncovered(
    db: &PgPool,
    coin_id: &str,
    vs: &str,
    resolution: Resolution,
    grid: &Grid,
    missing: &[usize],
) -> Result<Vec<usize>, sqlx::Error> {
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let starts: Vec<DateTime<Utc>> = missing.iter().map(|&i| grid.bucket_start(i)).collect();
    let covered = sqlx::query_scalar!(
        r#"SELECT s.at AS "at!" FROM UNNEST($4::timestamptz[]) AS s(at)
           WHERE EXISTS (
               SELECT 1 FROM price_history_coverage c
               WHERE c.coin_id = $1 AND c.vs_currency = $2 AND c.resolution_secs <= $3
                 AND c.from_at <= s.at AND c.to_at >= s.at)"#,
        coin_id,
        vs,
        i32::try_from(resolution.seconds()).unwrap_or(i32::MAX),
        &starts,
    )
    .fetch_all(db)
    .await?;
    let covered: std::collections::HashSet<DateTime<Utc>> = covered.into_iter().collect();
    Ok(missing
        .iter()
        .copied()
        .filter(|&i| !covered.contains(&grid.bucket_start(i)))
        .collect())
}

/// The buckets of a range.
#[derive(Debug, Clone, Copy)]
struct Grid {
    resolution: Resolution,
    /// Start of the first bucket: the first boundary at or after the range's start.
    first: DateTime<Utc>,
    /// How many buckets start within the range.
    len: usize,
    /// Buckets before this index have ended (before `to` and before now).
    finished: usize,
}

impl Grid {
    fn new(
        resolution: Resolution,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Self {
        let first = resolution.ceil(from);
        let step = resolution.seconds();
        // Every boundary in [first, to], `to` itself included.
        let span = (to - first).num_seconds();
        let len = if span < 0 {
            0
        } else {
            usize::try_from(span / step + 1).unwrap_or(0)
        };
        // A bucket has ended when its end is at or before both `to` and now.
        let end = to.min(now);
        let finished = usize::try_from((end - first).num_seconds().max(0) / step)
            .unwrap_or(0)
            .min(len);
        Self {
            resolution,
            first,
            len,
            finished,
        }
    }

    fn bucket_start(&self, index: usize) -> DateTime<Utc> {
        self.first + self.resolution.step() * i32::try_from(index).unwrap_or(i32::MAX)
    }

    /// The first point of each bucket (`None` where a bucket has none); `points` oldest first.
    fn first_per_bucket(&self, points: Vec<PricePoint>) -> Vec<Option<PricePoint>> {
        let mut buckets = vec![None; self.len];
        for point in points {
            let offset = (point.at - self.first).num_seconds();
            if offset < 0 {
                continue;
            }
            let Ok(index) = usize::try_from(offset / self.resolution.seconds()) else {
                continue;
            };
            if let Some(slot @ None) = buckets.get_mut(index) {
                *slot = Some(point);
            }
        }
        buckets
    }

    /// Indexes of finished buckets without a point.
    fn gaps(&self, buckets: &[Option<PricePoint>]) -> Vec<usize> {
        buckets
            .iter()
            .take(self.finished)
            .enumerate()
            .filter(|(_, point)| point.is_none())
            .map(|(index, _)| index)
            .collect()
    }

    /// Consecutive bucket indexes merged into time spans.
    fn spans(&self, indexes: &[usize]) -> Vec<Span> {
        let mut spans: Vec<Span> = Vec::new();
        for &index in indexes {
            let from = self.bucket_start(index);
            let to = from + self.resolution.step();
            match spans.last_mut() {
                Some(last) if last.to == from => last.to = to,
                _ => spans.push(Span { from, to }),
            }
        }
        spans
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("RFC 3339")
    }

    fn point(text: &str) -> PricePoint {
        PricePoint {
            at: at(text),
            price: Decimal::ONE,
        }
    }

    #[test]
    fn ranges_up_to_ninety_days_are_hourly() {
        let from = at("2026-01-01T00:00:00Z");
        assert_eq!(
            Resolution::for_range(from, from + HOURLY_UP_TO),
            Resolution::Hour
        );
        assert_eq!(
            Resolution::for_range(from, from + HOURLY_UP_TO + TimeDelta::seconds(1)),
            Resolution::Day
        );
    }

    #[test]
    fn a_grid_starts_at_the_first_boundary_and_includes_the_end() {
        let grid = Grid::new(
            Resolution::Hour,
            at("2026-11-01T00:00:00Z"),
            at("2026-11-02T00:00:00Z"),
            at("2026-12-01T00:00:00Z"),
        );
        assert_eq!(grid.first, at("2026-11-01T00:00:00Z"));
        assert_eq!(grid.len, 25, "the end's own bucket is included");
        assert_eq!(
            grid.finished, 24,
            "the bucket `to` falls into has not ended"
        );

        let grid = Grid::new(
            Resolution::Hour,
            at("2026-11-01T00:30:00Z"),
            at("2026-11-01T03:15:00Z"),
            at("2026-12-01T00:00:00Z"),
        );
        assert_eq!(grid.first, at("2026-11-01T01:00:00Z"));
        assert_eq!((grid.len, grid.finished), (3, 2));

        let within_one_hour = Grid::new(
            Resolution::Hour,
            at("2026-11-01T00:30:00Z"),
            at("2026-11-01T00:45:00Z"),
            at("2026-12-01T00:00:00Z"),
        );
        assert_eq!((within_one_hour.len, within_one_hour.finished), (0, 0));
    }

    #[test]
    fn buckets_in_progress_are_not_gaps() {
        let grid = Grid::new(
            Resolution::Hour,
            at("2026-11-01T00:00:00Z"),
            at("2026-11-01T10:00:00Z"),
            at("2026-11-01T05:30:00Z"),
        );
        assert_eq!(grid.finished, 5);
        let buckets = grid.first_per_bucket(vec![]);
        assert_eq!(grid.gaps(&buckets), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn each_bucket_keeps_its_first_point_and_holes_become_spans() {
        let grid = Grid::new(
            Resolution::Hour,
            at("2026-11-01T00:00:00Z"),
            at("2026-11-01T06:00:00Z"),
            at("2026-12-01T00:00:00Z"),
        );
        let buckets = grid.first_per_bucket(vec![
            point("2026-11-01T00:10:00Z"),
            point("2026-11-01T00:40:00Z"),
            point("2026-11-01T03:00:00Z"),
            point("2026-11-01T06:00:00Z"),
        ]);
        assert_eq!(buckets[0], Some(point("2026-11-01T00:10:00Z")));
        let gaps = grid.gaps(&buckets);
        assert_eq!(gaps, vec![1, 2, 4, 5]);
        assert_eq!(
            grid.spans(&gaps),
            vec![
                Span {
                    from: at("2026-11-01T01:00:00Z"),
                    to: at("2026-11-01T03:00:00Z")
                },
                Span {
                    from: at("2026-11-01T04:00:00Z"),
                    to: at("2026-11-01T06:00:00Z")
                },
            ]
        );
    }

    #[test]
    fn daily_buckets_start_at_midnight() {
        let grid = Grid::new(
            Resolution::Day,
            at("2025-01-01T12:00:00Z"),
            at("2025-12-01T00:00:00Z"),
            at("2026-12-01T00:00:00Z"),
        );
        assert_eq!(grid.first, at("2025-01-02T00:00:00Z"));
        assert_eq!(grid.bucket_start(1), at("2025-01-03T00:00:00Z"));
    }
}
