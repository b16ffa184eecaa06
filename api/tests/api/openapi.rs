//! The OpenAPI document callers generate clients from.

use serde_json::Value;

use crate::helpers::TestApp;

#[tokio::test]
async fn every_operation_is_tagged_summarised_and_documents_its_errors() {
    let app = TestApp::spawn().await;
    let reply = app.get("/openapi.json", None).await;
    assert_eq!(reply.status, 200);
    let spec = reply.body;
    let paths = spec["paths"].as_object().expect("paths");
    let expected = [
        ("/api/v1/auth/register", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/auth/logout-all", "post"),
        ("/api/v1/users/me", "get"),
        ("/api/v1/users/me", "patch"),
        ("/api/v1/users/me", "delete"),
        ("/api/v1/users/me/password", "put"),
        ("/api/v1/admin/users", "get"),
        ("/api/v1/admin/users/{id}", "get"),
        ("/api/v1/admin/users/{id}", "patch"),
        ("/api/v1/admin/users/{id}", "delete"),
        ("/api/v1/admin/cache/stats", "get"),
        ("/api/v1/admin/cache", "delete"),
        ("/api/v1/crypto/prices/{coin_id}", "get"),
        ("/api/v1/crypto/popular", "get"),
        ("/api/v1/crypto/{coin_id}/history", "get"),
        ("/api/v1/crypto/bulk", "post"),
        ("/api/v1/jobs", "get"),
        ("/api/v1/jobs/{id}", "get"),
        ("/api/v1/jobs/{id}", "delete"),
        ("/health", "get"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
    ];
    for (path, method) in expected {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        assert!(
            operation["summary"].is_string(),
            "{method} {path} has a summary"
        );
        assert!(
            operation["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{method} {path} is tagged"
        );
        if path.starts_with("/api/") {
            let responses = operation["responses"].as_object().expect("responses");
            for status in ["400", "429", "500"] {
                let problem = &responses[status]["content"]["application/problem+json"];
                assert!(
                    problem.is_object(),
                    "{method} {path} documents {status} as problem+json"
                );
            }
        }
    }
    // Authenticated operations declare the bearer scheme and their 401.
    let me = &paths["/api/v1/users/me"]["get"];
    assert_eq!(me["security"][0]["bearerAuth"], Value::Array(vec![]));
    assert!(me["responses"]["401"].is_object());
    assert!(paths["/api/v1/admin/users"]["get"]["responses"]["403"].is_object());
    assert!(paths["/api/v1/auth/register"]["post"]["responses"]["409"].is_object());
    assert!(paths["/api/v1/auth/register"]["post"]["responses"]["422"].is_object());
    let scheme = &spec["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");
    // Schemas carry examples.
    let schemas = &spec["components"]["schemas"];
    for name in [
        "Problem",
        "RegisterRequest",
        "LoginRequest",
        "RefreshRequest",
        "TokenResponse",
        "UserProfile",
        "UpdateProfileRequest",
        "ChangePasswordRequest",
        "AdminUpdateUser",
        "HealthInfo",
        "Price",
        "Job",
        "BulkFetchRequest",
    ] {
        assert!(
            schemas[name]["example"].is_object(),
            "{name} has an example"
        );
    }
}

#[tokio::test]
async fn interactive_docs_are_served() {
    let app = TestApp::spawn().await;
    let response = app.client.get("/docs").send().await;
    response.assert_status_is_ok();
    let html = response.0.into_body().into_string().await.expect("html");
    assert!(html.contains("swagger"), "swagger ui page");
}

#[tokio::test]
async fn decimal_patterns_refuse_negatives_where_the_server_does() {
    let app = TestApp::spawn().await;
    let spec = app.get("/openapi.json", None).await.body;
    let schema = &spec["components"]["schemas"]["CreateTransactionRequest"]["properties"];
    for field in ["quantity", "price", "fee"] {
        let pattern = schema[field]["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {}", schema[field]));
        let pattern = regex::Regex::new(pattern).expect("pattern");
        assert!(pattern.is_match("12.5"), "{field}");
        assert!(!pattern.is_match("-12.5"), "{field} refuses a negative");
    }
    // A price alert's target may be negative (a change below -5 %): its pattern says so.
    let alert = &spec["components"]["schemas"]["CreateAlertRequest"]["properties"]["target"];
    let pattern = regex::Regex::new(alert["pattern"].as_str().expect("pattern")).expect("regex");
    assert!(pattern.is_match("-5"));
}
