//! Rejects request bodies over the configured size with a 413 problem.
//!
//! poem's own `SizeLimit` insists on a `Content-Length` even for GET requests, so this one checks
//! the declared length when there is one and otherwise reads (chunked) bodies up to the limit.

use poem::http::header::CONTENT_LENGTH;
use poem::{Body, Endpoint, Middleware, Request};

use crate::error::ApiError;

/// Limits request bodies to `max_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    max_bytes: usize,
}

impl BodyLimit {
    /// A limit of `max_bytes` per request body.
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        BodyLimitEndpoint {
            inner: ep,
            max_bytes: self.max_bytes,
        }
    }
}

/// The endpoint produced by [`BodyLimit`].
#[derive(Debug)]
pub struct BodyLimitEndpoint<E> {
    inner: E,
    max_bytes: usize,
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let too_large = || ApiError::PayloadTooLarge {
            limit: self.max_bytes,
        };
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        match declared {
            Some(length) if length > self.max_bytes as u64 => return Err(too_large().into()),
            // The server enforces the declared length, so the body cannot exceed it.
            Some(_) => {}
            None => {
                let body = req.take_body();
                if !body.is_empty() {
                    let bytes =
                        body.into_bytes_limit(self.max_bytes)
                            .await
                            .map_err(|err| match err {
                                poem::error::ReadBodyError::PayloadTooLarge => too_large(),
                                other => ApiError::BadRequest(format!(
                                    "the request body could not be read: {other}"
                                )),
                            })?;
                    req.set_body(Body::from_bytes(bytes));
                }
            }
        }
        self.inner.call(req).await
    }
}
