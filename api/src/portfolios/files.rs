//! Portfolio files over HTTP: the upload an import takes (CSV or Ghostfolio JSON, documented
//! as both media types) and the download an export gives. Reading the rows is the import
//! job's work (`common::portfolios::files`); here a file is only checked to be what its media
//! type says, so that a client learns at once that it sent, say, a spreadsheet.

use poem::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use poem::{IntoResponse, Request, RequestBody, Response};
use poem_openapi::registry::{
    MetaHeader, MetaMediaType, MetaRequest, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef,
    Registry,
};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object};
use serde::Deserialize;

use common::portfolios::files;
use common::portfolios::jobs::FileFormat;

use crate::error::{ApiError, FieldError};
use crate::platform::json_body;

/// Whether `path` is a portfolio's imports, the one route that takes files (and so a larger
/// body limit, `MAX_IMPORT_BYTES`).
pub fn is_import_path(path: &str) -> bool {
    let mut segments = path.trim_end_matches('/').split('/');
    matches!(
        (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ),
        (
            Some(""),
            Some("api"),
            Some("v1"),
            Some("portfolios"),
            Some(_),
            Some("imports"),
            None
        )
    )
}

/// Ghostfolio's JSON export, as an import reads it. Only `activities` is read; the other
/// sections of an export are accepted and ignored.
#[derive(Debug, Object, Deserialize)]
#[oai(rename = "GhostfolioExport")]
pub struct GhostfolioExport {
    /// The export's metadata (ignored).
    pub meta: Option<serde_json::Value>,
    /// The transactions, at most 100,000. Types `BUY` and `SELL` (and Coinpulse's
    /// `TRANSFER_IN`, `TRANSFER_OUT`) of `COINGECKO` assets can be imported.
    #[oai(validator(max_items = 100000))]
    pub activities: Vec<GhostfolioActivity>,
    /// Accounts (ignored).
    pub accounts: Option<serde_json::Value>,
    /// Asset profiles (ignored).
    #[oai(rename = "assetProfiles")]
    #[serde(rename = "assetProfiles")]
    pub asset_profiles: Option<serde_json::Value>,
    /// Platforms (ignored).
    pub platforms: Option<serde_json::Value>,
    /// Tags (ignored).
    pub tags: Option<serde_json::Value>,
    /// The user's settings (ignored).
    pub user: Option<serde_json::Value>,
}

/// One activity of a Ghostfolio export. Other fields (ids, accounts) are ignored.
#[derive(Debug, Object, Deserialize)]
#[oai(rename = "GhostfolioActivity")]
pub struct GhostfolioActivity {
    /// `BUY`, `SELL`, `TRANSFER_IN` or `TRANSFER_OUT`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// The CoinGecko coin id, e.g. `bitcoin`.
    pub symbol: String,
    /// `COINGECKO` (others cannot be imported).
    #[oai(rename = "dataSource")]
    #[serde(rename = "dataSource")]
    pub data_source: Option<String>,
    /// Units.
    pub quantity: f64,
    /// Price per unit in `currency`, which must be the portfolio's base currency.
    #[oai(rename = "unitPrice")]
    #[serde(rename = "unitPrice")]
    pub unit_price: Option<f64>,
    /// Fee in `currency`.
    pub fee: Option<f64>,
    /// The portfolio's base currency (any case).
    pub currency: Option<String>,
    /// When it happened: RFC 3339, or a date.
    pub date: String,
    /// A note.
    pub comment: Option<String>,
}

/// Uploads checked at once per api process. Checking a JSON file builds a tree several times
/// its size (a 32 MiB export can take a few hundred MB for a moment): the checks wait for one
/// another rather than let a burst of uploads exhaust memory.
pub const CONCURRENT_CHECKS: usize = 2;

/// The permits of [`CONCURRENT_CHECKS`], as request data for the [`ImportFile`] extractor.
#[derive(Debug, Clone)]
pub struct FileChecks(pub std::sync::Arc<tokio::sync::Semaphore>);

impl Default for FileChecks {
    fn default() -> Self {
        Self(std::sync::Arc::new(tokio::sync::Semaphore::new(
            CONCURRENT_CHECKS,
        )))
    }
}

/// An uploaded portfolio file: `text/csv` or Ghostfolio's `application/json`, read but not yet
/// checked ([`ImportFile::check`]). It holds one of the [`CONCURRENT_CHECKS`] permits from
/// before its body is read until it is dropped, so a burst of uploads waits (its bodies unread)
/// instead of filling memory.
#[derive(Debug)]
pub struct ImportFile {
    /// Its format, from its media type.
    pub format: FileFormat,
    /// Its bytes.
    pub content: bytes::Bytes,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

fn media_type(request: &Request) -> Option<String> {
    request
        .content_type()
        .and_then(|value| value.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
}

/// The two formats of a portfolio file, as the document states them (an upload's and a
/// download's alike).
fn file_media_types() -> Vec<MetaMediaType> {
    let mut csv = MetaSchema::new("string");
    csv.description = Some(
        "CSV with a header row: executed_at, coin_id, side, quantity required; price, fee, \
         currency, note optional (see the README)",
    );
    vec![
        MetaMediaType {
            content_type: "text/csv",
            schema: MetaSchemaRef::Inline(Box::new(csv)),
        },
        MetaMediaType {
            content_type: "application/json",
            schema: GhostfolioExport::schema_ref(),
        },
    ]
}

impl<'a> ApiExtractor<'a> for ImportFile {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        GhostfolioExport::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some("The file: CSV, or a Ghostfolio JSON export."),
            content: file_media_types(),
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let format = match media_type(request).as_deref() {
            Some("text/csv") => FileFormat::Csv,
            Some("application/json") => FileFormat::Json,
            _ => {
                return Err(ApiError::UnsupportedMediaType(
                    "send the file as Content-Type: text/csv, or a Ghostfolio export as \
                     application/json"
                        .into(),
                )
                .into());
            }
        };
        let permit = match request.data::<FileChecks>() {
            Some(checks) => Some(
                checks
                    .0
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|err| ApiError::Internal(err.into()))?,
            ),
            None => None,
        };
        let content = json_body::read_limited(request, body).await?;
        Ok(Self {
            format,
            content,
            _permit: permit,
        })
    }
}

impl ImportFile {
    /// Whether the file is what its media type says: for CSV, UTF-8 text whose header names
    /// the columns; for JSON, the `GhostfolioExport` shape the document states (the rows'
    /// values are the import job's to check). CPU-bound for large files: run it off the async
    /// threads.
    pub fn check(&self) -> Result<(), ApiError> {
        match self.format {
            FileFormat::Csv => check_csv(&self.content),
            FileFormat::Json => json_body::parse::<GhostfolioExport>(&self.content).map(|_| ()),
        }
    }
}

/// A CSV upload must be UTF-8 text with a header row.
fn check_csv(content: &[u8]) -> Result<(), ApiError> {
    let text = std::str::from_utf8(content).map_err(|_| {
        ApiError::invalid(
            "file",
            "must be UTF-8 text (save the spreadsheet as CSV UTF-8)",
        )
    })?;
    if text.trim_start_matches('\u{feff}').trim().is_empty() {
        return Err(ApiError::invalid(
            "file",
            "is empty: it needs a header row and one row per transaction",
        ));
    }
    if text.contains('\0') {
        return Err(ApiError::invalid("file", "contains a NUL character"));
    }
    let header = files::csv_header_problems(text);
    if header.is_empty() {
        return Ok(());
    }
    Err(ApiError::Validation(
        header
            .into_iter()
            .map(|problem| {
                let message = if problem.field == "file" {
                    problem.message
                } else {
                    format!("{} {}", problem.field, problem.message)
                };
                FieldError::new("file", message)
            })
            .collect(),
    ))
}

/// An export's file, as a download.
#[derive(Debug)]
pub struct FileDownload {
    /// Its format.
    pub format: FileFormat,
    /// The name a browser saves it under.
    pub file_name: String,
    /// Its bytes.
    pub content: Vec<u8>,
}

impl ApiResponse for FileDownload {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The exported file: CSV, or a Ghostfolio JSON export, as the \
                              export asked.",
                status: Some(200),
                status_range: None,
                content: file_media_types(),
                headers: vec![MetaHeader {
                    name: "Content-Disposition".into(),
                    description: Some("`attachment` with the file's name.".into()),
                    required: true,
                    deprecated: false,
                    schema: String::schema_ref(),
                }],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        GhostfolioExport::register(registry);
    }
}

impl IntoResponse for FileDownload {
    fn into_response(self) -> Response {
        Response::builder()
            .header(CONTENT_TYPE, self.format.media_type())
            .header(
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", self.file_name),
            )
            .body(self.content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_portfolios_imports_take_files() {
        let id = "0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d";
        assert!(is_import_path(&format!("/api/v1/portfolios/{id}/imports")));
        assert!(is_import_path(&format!("/api/v1/portfolios/{id}/imports/")));
        for other in [
            "/api/v1/portfolios",
            &format!("/api/v1/portfolios/{id}/transactions"),
            &format!("/api/v1/portfolios/{id}/imports/x"),
            "/api/v1/portfolios//imports/x",
            "/api/v1/crypto/bulk",
        ] {
            assert!(!is_import_path(other), "{other}");
        }
    }

    async fn extract(request: Request) -> poem::Result<ImportFile> {
        let (request, mut body) = request.split();
        let options = ExtractParamOptions {
            name: "file",
            ignore_case: false,
            default_value: None,
            example_value: None,
            explode: true,
            style: None,
        };
        ImportFile::from_request(&request, &mut body, options).await
    }

    fn upload(checks: &FileChecks) -> Request {
        let mut request = Request::builder()
            .content_type("text/csv")
            .body("executed_at,coin_id,side,quantity\n");
        request.set_data(checks.clone());
        request
    }

    #[tokio::test]
    async fn an_upload_waits_for_a_check_permit_before_its_body_is_read() {
        let checks = FileChecks(std::sync::Arc::new(tokio::sync::Semaphore::new(1)));
        let held = extract(upload(&checks)).await.expect("the first upload");
        assert_eq!(checks.0.available_permits(), 0, "the file holds the permit");
        let second = tokio::spawn(extract(upload(&checks)));
        // While the first file lives, the second cannot get past the permit.
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        drop(held);
        let second = tokio::time::timeout(std::time::Duration::from_secs(10), second)
            .await
            .expect("released in time")
            .expect("joined")
            .expect("the second upload");
        assert_eq!(second.format, FileFormat::Csv);
        drop(second);
        assert_eq!(checks.0.available_permits(), 1);
    }

    #[test]
    fn a_csv_upload_must_be_text_with_something_in_it() {
        assert!(check_csv(b"executed_at,coin_id,side,quantity\n").is_ok());
        assert!(check_csv(b"\xef\xbb\xbfExecuted_At,coin_id,side,quantity,note").is_ok());
        for bad in [
            &b""[..],
            b"\xef\xbb\xbf \n",
            b"\xff\xfe",
            b"a\0b",
            b"{}",
            b"executed_at,coin_id,side\n",
        ] {
            assert!(check_csv(bad).is_err(), "{bad:?}");
        }
    }
}
