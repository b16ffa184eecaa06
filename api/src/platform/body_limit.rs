//! Request bodies: refuses encoded ones (415) and bounds what a handler can read (413).
//!
//! Why request bodies may not be compressed: a compressed body's size says nothing about what
//! it expands to (a 200 KB gzip body became 200 MiB), and a zstd or brotli decoder allocates
//! whatever window the sender declares before producing a byte. This API takes small JSON
//! documents, so it gains nothing from compressed requests; it refuses any `Content-Encoding`
//! but `identity` with 415 and `Accept-Encoding: identity` (RFC 7694), before a byte is decoded.
//! Responses are still compressed.
//!
//! The limit then applies to the bytes the handler can read: a declared `Content-Length` over it
//! is refused from the head (the server never delivers more than a declared length), and a body
//! without one (chunked) is read and counted up to it. The middleware must sit outside poem's
//! `Compression`, which would otherwise decode request bodies; `JsonBody` reads with the same
//! limit again.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use poem::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH};
use poem::http::{HeaderMap, HeaderValue};
use poem::{Body, Endpoint, Middleware, Request};

use crate::error::ApiError;
use crate::platform::request_context::ExtraHeaders;

/// The largest body a handler may read, as request data for extractors that read bodies.
#[derive(Debug, Clone, Copy)]
pub struct MaxBodyBytes(pub usize);

/// Which paths a larger limit applies to.
pub type PathMatcher = fn(&str) -> bool;

/// Refuses encoded request bodies and limits bodies to `max_bytes` (or a larger limit on the
/// few paths that take files).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    max_bytes: usize,
    larger: Option<(PathMatcher, usize)>,
}

impl BodyLimit {
    /// A limit of `max_bytes` per request body.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            larger: None,
        }
    }

    /// Allows bodies of up to `max_bytes` on the paths `matches` accepts.
    pub fn with_larger(self, matches: PathMatcher, max_bytes: usize) -> Self {
        Self {
            larger: Some((matches, max_bytes)),
            ..self
        }
    }
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        BodyLimitEndpoint {
            inner: ep,
            limit: *self,
        }
    }
}

/// The endpoint produced by [`BodyLimit`].
#[derive(Debug)]
pub struct BodyLimitEndpoint<E> {
    inner: E,
    limit: BodyLimit,
}

/// Whether the request declares a content coding other than `identity`.
fn is_encoded(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_ENCODING).iter().any(|value| {
        value.to_str().map_or(true, |codings| {
            codings
                .split(',')
                .any(|coding| !coding.trim().eq_ignore_ascii_case("identity"))
        })
    })
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
}

/// Reads and drops up to `budget` bytes of a refused body, so that a client that sent a
/// modest body whole gets its answer on a connection that closes cleanly instead of being reset
/// with the answer unread. Nothing is kept, so memory stays flat; beyond the budget the body is
/// left unread and the connection closes.
async fn drain<S>(mut stream: S, budget: usize)
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    let mut seen = 0usize;
    while seen <= budget {
        match stream.next().await {
            Some(Ok(chunk)) => seen += chunk.len(),
            _ => return,
        }
    }
}

/// Reads `body` whole if it is at most `max_bytes`; otherwise drains at most `max_bytes` more
/// and refuses it with 413. Never holds more than `max_bytes`.
async fn read_limited(body: Body, max_bytes: usize) -> Result<Bytes, ApiError> {
    let mut stream = std::pin::pin!(body.into_bytes_stream());
    let mut buffer = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| {
            ApiError::BadRequest(format!("the request body could not be read: {err}"))
        })?;
        if buffer.len() + chunk.len() > max_bytes {
            drop(buffer);
            drain(stream, max_bytes).await;
            return Err(ApiError::PayloadTooLarge { limit: max_bytes });
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let max_bytes = match self.limit.larger {
            Some((matches, larger)) if matches(req.uri().path()) => larger,
            _ => self.limit.max_bytes,
        };
        let too_large = || ApiError::PayloadTooLarge { limit: max_bytes };
        if is_encoded(req.headers()) {
            if declared_length(req.headers()).is_none_or(|length| length <= max_bytes as u64) {
                drain(req.take_body().into_bytes_stream().boxed(), max_bytes).await;
            }
            let mut error = poem::Error::from(ApiError::UnsupportedMediaType(
                "request bodies must not be compressed: send them without Content-Encoding".into(),
            ));
            let mut headers = HeaderMap::with_capacity(1);
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            error.set_data(ExtraHeaders(headers));
            return Err(error);
        }
        match declared_length(req.headers()) {
            Some(length) if length > max_bytes as u64 => return Err(too_large().into()),
            // The server enforces the declared length, so the body cannot exceed it.
            Some(_) => {}
            None => {
                let body = req.take_body();
                if !body.is_empty() {
                    let bytes = read_limited(body, max_bytes).await?;
                    req.set_body(Body::from_bytes(bytes));
                }
            }
        }
        req.set_data(MaxBodyBytes(max_bytes));
        self.inner.call(req).await
    }
}

#[cfg(test)]
mod tests {
    use poem::http::StatusCode;
    use poem::test::TestClient;
    use poem::web::Data;
    use poem::{EndpointExt, handler};

    use super::*;

    /// Echoes the body's length and the limit it was told about.
    #[handler]
    async fn length(body: Vec<u8>, limit: Data<&MaxBodyBytes>) -> String {
        format!("{} of {}", body.len(), limit.0.0)
    }

    fn app() -> impl Endpoint {
        length
            .with(BodyLimit::new(1024))
            .map_to_response()
            .catch_all_error(|err| async move {
                poem::IntoResponse::into_response(ApiError::from_poem(err).to_response(None, None))
            })
    }

    #[test]
    fn only_identity_counts_as_not_encoded() {
        let mut headers = HeaderMap::new();
        assert!(!is_encoded(&headers));
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("Identity"));
        assert!(!is_encoded(&headers));
        for coding in [
            "gzip",
            "br",
            "zstd",
            "deflate",
            "identity, gzip",
            "x-custom",
            "",
        ] {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding));
            assert!(is_encoded(&headers), "{coding:?}");
        }
    }

    #[tokio::test]
    async fn bodies_within_the_limit_pass_and_larger_ones_are_refused() {
        let client = TestClient::new(app());
        let ok = client.post("/").body(vec![b'a'; 1024]).send().await;
        ok.assert_status_is_ok();
        ok.assert_text("1024 of 1024").await;
        client
            .post("/")
            .body(vec![b'a'; 1025])
            .send()
            .await
            .assert_status(StatusCode::PAYLOAD_TOO_LARGE);
        let chunked =
            futures_util::stream::iter((0..3).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 512])));
        client
            .post("/")
            .body(Body::from_bytes_stream(chunked))
            .send()
            .await
            .assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn encoded_bodies_are_refused_with_415_naming_identity() {
        let client = TestClient::new(app());
        let response = client
            .post("/")
            .header(CONTENT_ENCODING, "gzip")
            .body(vec![0u8; 100])
            .send()
            .await;
        response.assert_status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        response.assert_content_type("application/problem+json");
    }
}
