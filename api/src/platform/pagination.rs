//! `?page=&per_page=` parameters and the `{items, page, per_page, total, total_pages}` envelope.

use poem_openapi::Object;
use poem_openapi::types::{ParseFromJSON, ToJSON};

use crate::error::{ApiError, FieldError};

/// Items per page when the caller does not say.
pub const DEFAULT_PER_PAGE: u32 = 20;
/// The most items a page may hold.
pub const MAX_PER_PAGE: u32 = 100;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// 1-based page number.
    pub page: u32,
    /// Items per page, 1..=100.
    pub per_page: u32,
}

impl PageRequest {
    /// Validates raw query values; out-of-range values are a 422 naming the parameter.
    pub fn parse(page: Option<u32>, per_page: Option<u32>) -> Result<Self, ApiError> {
        let page = page.unwrap_or(1);
        let per_page = per_page.unwrap_or(DEFAULT_PER_PAGE);
        let mut errors = Vec::new();
        if page == 0 {
            errors.push(FieldError::new("page", "must be at least 1"));
        }
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            errors.push(FieldError::new(
                "per_page",
                format!("must be between 1 and {MAX_PER_PAGE}"),
            ));
        }
        if errors.is_empty() {
            Ok(Self { page, per_page })
        } else {
            Err(ApiError::Validation(errors))
        }
    }

    /// SQL `LIMIT`.
    pub fn limit(self) -> i64 {
        i64::from(self.per_page)
    }

    /// SQL `OFFSET`.
    pub fn offset(self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.per_page)
    }
}

/// One page of a list.
#[derive(Debug, Object)]
pub struct Page<T: ParseFromJSON + ToJSON> {
    /// The items on this page.
    pub items: Vec<T>,
    /// This page's number (1-based).
    pub page: u32,
    /// The page size asked for.
    pub per_page: u32,
    /// How many items match in all.
    pub total: u64,
    /// How many pages there are at this page size.
    pub total_pages: u64,
}

impl<T: ParseFromJSON + ToJSON> Page<T> {
    /// Wraps one page of `items` out of `total`.
    pub fn new(items: Vec<T>, request: PageRequest, total: i64) -> Self {
        let total = u64::try_from(total).unwrap_or(0);
        Self {
            items,
            page: request.page,
            per_page: request.per_page,
            total,
            total_pages: total.div_ceil(u64::from(request.per_page)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(
            PageRequest::parse(None, None).ok(),
            Some(PageRequest {
                page: 1,
                per_page: 20
            })
        );
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(None, Some(101)).is_err());
        assert!(PageRequest::parse(None, Some(0)).is_err());
        let request = PageRequest::parse(Some(3), Some(10)).expect("valid");
        assert_eq!((request.limit(), request.offset()), (10, 20));
    }
}
