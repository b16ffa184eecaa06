//! `JsonBody<T>`: a JSON request body that reports bad fields by name.
//!
//! poem-openapi's own `Json<T>` rejects a missing or mistyped field with a message that does not
//! name the field. This extractor documents the body with `T`'s OpenAPI schema exactly like
//! `Json<T>`, checks the body against that very schema (every field that breaks it is listed
//! at once: `errors: [{field: "email", message: "is required"}, …]`, 422), and only then
//! parses it with serde, where `serde_path_to_error` names the field of anything the schema
//! could not express. JSON that does not parse at all is a 400.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};
use crate::platform::body_limit::MaxBodyBytes;
use crate::platform::pattern_words::NUL_MESSAGE;
use crate::platform::schema_check;

/// Most field errors one answer lists. Every real body has far fewer fields; a body of
/// thousands of bad strings must not be answered with a problem many times its size.
const MAX_FIELD_ERRORS: usize = 100;

/// The limit when no `BodyLimit` middleware told the request its own (the default of
/// `MAX_BODY_BYTES`).
const DEFAULT_MAX_BYTES: usize = 1_048_576;

/// A JSON request body of type `T` (which derives both `poem_openapi::Object` and
/// `serde::Deserialize`).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<'a, T: Type + DeserializeOwned + Send + 'static> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: "application/json",
                schema: T::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        if !is_json(request.content_type()) {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be sent as Content-Type: application/json".into(),
            )
            .into());
        }
        let bytes = read_limited(request, body).await?;
        parse(&bytes).map(JsonBody).map_err(Into::into)
    }
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|value| value.split(';').next())
        .map(str::trim)
        .is_some_and(|mime| {
            mime.eq_ignore_ascii_case("application/json")
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// Reads a request body up to the limit `BodyLimit` told the request (a second guard behind
/// that middleware: even where it is missing, a body is never read past the default limit).
pub async fn read_limited(
    request: &Request,
    body: &mut RequestBody,
) -> Result<bytes::Bytes, ApiError> {
    let limit = request
        .data::<MaxBodyBytes>()
        .map_or(DEFAULT_MAX_BYTES, |max| max.0);
    body.take()
        .map_err(|err| ApiError::BadRequest(err.to_string()))?
        .into_bytes_limit(limit)
        .await
        .map_err(|err| read_error(err, limit))
}

fn read_error(err: poem::error::ReadBodyError, limit: usize) -> ApiError {
    match err {
        poem::error::ReadBodyError::PayloadTooLarge => ApiError::PayloadTooLarge { limit },
        other => ApiError::BadRequest(format!("the request body could not be read: {other}")),
    }
}

/// `T`'s schema and the named schemas it refers to, as the OpenAPI document has them.
struct BodySchema {
    registry: Registry,
    root: MetaSchemaRef,
}

impl BodySchema {
    /// Built once per body type: registering walks every type the body refers to.
    fn of<T: Type + 'static>() -> Arc<Self> {
        static BUILT: LazyLock<RwLock<HashMap<TypeId, Arc<BodySchema>>>> =
            LazyLock::new(RwLock::default);
        let id = TypeId::of::<T>();
        if let Some(built) = BUILT
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            return built.clone();
        }
        let mut registry = Registry::new();
        T::register(&mut registry);
        let built = Arc::new(Self {
            registry,
            root: T::schema_ref(),
        });
        BUILT
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id)
            .or_insert(built)
            .clone()
    }
}

/// Parses `bytes` as `T`, separating syntax errors (400) from field errors (422): first every
/// field that breaks `T`'s schema, else the first one serde cannot read.
pub fn parse<T: Type + DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|err| {
        ApiError::BadRequest(format!("the request body is not valid JSON: {err}"))
    })?;
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    // Postgres text cannot hold U+0000; refused here for every field of every body.
    let mut errors = Vec::new();
    fields_with_nul(&value, String::new(), &mut errors);
    let schema = BodySchema::of::<T>();
    for error in schema_check::check(&value, &schema.root, &schema.registry) {
        if !errors
            .iter()
            .any(|known: &FieldError| known.field == error.field)
        {
            errors.push(error);
        }
    }
    if !errors.is_empty() {
        errors.truncate(MAX_FIELD_ERRORS);
        return Err(ApiError::Validation(errors));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        let (field, message) = field_and_message(&path, &inner);
        ApiError::Validation(vec![FieldError::new(field, message)])
    })
}

/// For an optional field whose schema is a named one (an enum): absent is `None`, `null` is
/// refused. OpenAPI 3.0 cannot mark a `$ref` nullable, so the document says `null` is not a
/// value of such a field, and the server agrees. Use with `#[serde(default)]`.
pub fn non_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Every string holding U+0000, by path (as `field` names it: `coins[2]`, `a.b`).
fn fields_with_nul(value: &serde_json::Value, path: String, found: &mut Vec<FieldError>) {
    match value {
        serde_json::Value::String(text) if text.contains('\0') => {
            found.push(FieldError::new(path, NUL_MESSAGE));
        }
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                fields_with_nul(item, format!("{path}[{index}]"), found);
            }
        }
        serde_json::Value::Object(fields) => {
            for (key, item) in fields {
                let field = schema_check::field_path(&path, key);
                if key.contains('\0') {
                    found.push(FieldError::new(field, NUL_MESSAGE));
                } else {
                    fields_with_nul(item, field, found);
                }
            }
        }
        _ => {}
    }
}

/// serde reports a missing or unknown field at the parent's path with the name in the message;
/// move the name into the path so `field` always names the culprit.
fn field_and_message(path: &str, message: &str) -> (String, String) {
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let join = |name: String| {
        if path == "." || path.is_empty() {
            name
        } else if path == name || path.ends_with(&format!(".{name}")) {
            path.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(name) = named("missing field `") {
        return (join(name), "is required".into());
    }
    if let Some(name) = named("unknown field `") {
        return (join(name), "is not a known field".into());
    }
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned();
    (path.to_owned(), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, poem_openapi::Object)]
    #[serde(deny_unknown_fields)]
    #[oai(deny_unknown_fields)]
    struct Login {
        email: String,
        count: u32,
    }

    fn field_errors(body: &str) -> Vec<FieldError> {
        match parse::<Login>(body.as_bytes()) {
            Err(ApiError::Validation(errors)) => errors,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn missing_fields_are_named() {
        assert_eq!(
            field_errors(r#"{"count": 1}"#),
            vec![FieldError::new("email", "is required")]
        );
    }

    #[test]
    fn mistyped_fields_are_named_with_what_they_must_be() {
        assert_eq!(
            field_errors(r#"{"email": "a@b.c", "count": "many"}"#),
            vec![FieldError::new(
                "count",
                "must be an integer from 0 to 4294967295"
            )]
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert_eq!(
            field_errors(r#"{"email": "a@b.c", "count": 1, "admin": true}"#),
            vec![FieldError::new("admin", "is not a known field")]
        );
    }

    #[test]
    fn every_bad_field_is_listed_at_once() {
        let fields: Vec<String> = field_errors(r#"{"count": -1, "admin": true}"#)
            .into_iter()
            .map(|error| error.field)
            .collect();
        assert_eq!(fields, ["email", "count", "admin"]);
    }

    #[test]
    fn nul_characters_are_refused_by_field() {
        assert_eq!(
            field_errors(r#"{"email": "a\u0000b", "count": 1}"#),
            vec![FieldError::new("email", NUL_MESSAGE)]
        );
        let nested: serde_json::Value =
            serde_json::from_str(r#"{"a": {"b": ["ok", "x\u0000"]}, "c\u0000": 1, "d": "\u0000"}"#)
                .expect("json");
        let mut found = Vec::new();
        fields_with_nul(&nested, String::new(), &mut found);
        let fields: Vec<&str> = found.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(fields, ["a.b[1]", "c\\u0000", "d"]);
        assert_eq!(
            field_errors(r#"{"email": "a@b.c", "count": 1, "x\u0000": 1}"#),
            vec![FieldError::new("x\\u0000", NUL_MESSAGE)],
            "an unknown field named with U+0000 is reported once"
        );
        let many = format!(
            r#"{{"email": "a@b.c", "count": 1, "x": [{}]}}"#,
            vec![r#""\u0000""#; 1000].join(",")
        );
        assert_eq!(field_errors(&many).len(), MAX_FIELD_ERRORS);
        let escaped_backslash: serde_json::Value =
            serde_json::from_str(r#"{"a": "\\u0000"}"#).expect("json");
        let mut none = Vec::new();
        fields_with_nul(&escaped_backslash, String::new(), &mut none);
        assert_eq!(none, vec![]);
    }

    #[test]
    fn serde_names_the_field_of_what_the_schema_cannot_say() {
        #[derive(Debug, serde::Deserialize, poem_openapi::Object)]
        struct Amount {
            value: crate::portfolios::amount::Dec,
        }
        // Matches the documented pattern, but has more decimals than an amount may.
        match parse::<Amount>(br#"{"value": "0.0000000000000000001"}"#) {
            Err(ApiError::Validation(errors)) => {
                assert_eq!(errors.len(), 1);
                assert_eq!(errors[0].field, "value");
                assert!(errors[0].message.contains("18 digits"), "{errors:?}");
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn named_optional_fields_refuse_null_but_may_be_absent() {
        #[derive(Debug, serde::Deserialize, poem_openapi::Enum)]
        #[serde(rename_all = "snake_case")]
        #[oai(rename_all = "snake_case")]
        enum Role {
            Admin,
        }
        #[derive(Debug, serde::Deserialize, poem_openapi::Object)]
        struct Change {
            #[serde(default, deserialize_with = "non_null")]
            role: Option<Role>,
        }
        assert!(parse::<Change>(br#"{}"#).expect("absent").role.is_none());
        assert!(matches!(
            parse::<Change>(br#"{"role": "admin"}"#)
                .expect("given")
                .role,
            Some(Role::Admin)
        ));
        match parse::<Change>(br#"{"role": null}"#) {
            Err(ApiError::Validation(errors)) => assert_eq!(
                errors,
                vec![FieldError::new("role", "must be one of: admin")]
            ),
            other => panic!("null must be refused, got {other:?}"),
        }
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        assert!(matches!(
            parse::<Login>(b"{\"email\":"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse::<Login>(b"[1]"),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[derive(Debug, serde::Deserialize, poem_openapi::Object)]
    struct Note {
        text: String,
    }

    struct NotesApi;

    #[poem_openapi::OpenApi]
    impl NotesApi {
        #[oai(path = "/notes", method = "post")]
        async fn create(&self, body: JsonBody<Note>) -> poem_openapi::payload::PlainText<String> {
            poem_openapi::payload::PlainText(body.0.text)
        }
    }

    #[tokio::test]
    async fn bodies_are_read_with_a_limit_even_without_the_middleware() {
        use poem::EndpointExt;
        let service = poem_openapi::OpenApiService::new(NotesApi, "notes", "1");
        let with_limit = |limit| {
            poem::test::TestClient::new(
                poem::Route::new()
                    .nest(
                        "/",
                        poem_openapi::OpenApiService::new(NotesApi, "notes", "1"),
                    )
                    .data(MaxBodyBytes(limit)),
            )
        };
        let body = format!(r#"{{"text": "{}"}}"#, "x".repeat(DEFAULT_MAX_BYTES));
        let unguarded = poem::test::TestClient::new(poem::Route::new().nest("/", service));
        unguarded
            .post("/notes")
            .content_type("application/json")
            .body(body.clone())
            .send()
            .await
            .assert_status(poem::http::StatusCode::PAYLOAD_TOO_LARGE);
        with_limit(16)
            .post("/notes")
            .content_type("application/json")
            .body(r#"{"text": "seventeen bytes?"}"#)
            .send()
            .await
            .assert_status(poem::http::StatusCode::PAYLOAD_TOO_LARGE);
        with_limit(64)
            .post("/notes")
            .content_type("application/json")
            .body(r#"{"text": "fits"}"#)
            .send()
            .await
            .assert_text("fits")
            .await;
    }

    #[test]
    fn json_media_types_are_recognised() {
        assert!(is_json(Some("application/json; charset=utf-8")));
        assert!(is_json(Some("application/merge-patch+json")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(None));
    }
}
