//! Access tokens that must be refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::TestApp;

fn claims(app: &TestApp, sub: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    let auth = &app.state.config.auth;
    json!({
        "sub": sub, "role": "admin", "iat": now, "nbf": now, "exp": now + 600,
        "iss": auth.jwt_issuer, "aud": auth.jwt_audience, "jti": uuid::Uuid::now_v7(),
    })
}

fn sign(claims: &Value, secret: &str) -> String {
    api::auth::hmac_only::install();
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

async fn assert_refused(app: &TestApp, token: &str) {
    app.get("/api/v1/users/me", Some(token))
        .await
        .assert_problem(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn a_token_signed_with_the_right_key_works() {
    let app = TestApp::spawn().await;
    let session = app.register("valid").await;
    let secret = app.state.config.auth.signing_secret().to_owned();
    let token = sign(&claims(&app, &session.id), &secret);
    assert_eq!(app.get("/api/v1/users/me", Some(&token)).await.status, 200);
}

#[tokio::test]
async fn forged_tampered_and_foreign_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let session = app.register("target").await;
    let secret = app.state.config.auth.signing_secret().to_owned();
    let good = claims(&app, &session.id);

    // Wrong key.
    assert_refused(&app, &sign(&good, "another-secret-another-secret-another")).await;

    // Tampered payload, original signature.
    let mut parts: Vec<String> = session.access.split('.').map(str::to_owned).collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).expect("b64")).expect("json");
    payload["role"] = json!("admin");
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    assert_refused(&app, &parts.join(".")).await;

    // alg: none.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(good.to_string());
    assert_refused(&app, &format!("{header}.{body}.")).await;

    // Wrong audience, wrong issuer.
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("another-service");
    assert_refused(&app, &sign(&wrong_aud, &secret)).await;
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("someone-else");
    assert_refused(&app, &sign(&wrong_iss, &secret)).await;

    // Expired (beyond the leeway) and not yet valid.
    let now = chrono::Utc::now().timestamp();
    let mut expired = good.clone();
    expired["exp"] = json!(now - 60);
    assert_refused(&app, &sign(&expired, &secret)).await;
    let mut early = good.clone();
    early["nbf"] = json!(now + 600);
    assert_refused(&app, &sign(&early, &secret)).await;

    // Not a JWT at all, and a token for a user that does not exist.
    assert_refused(&app, "garbage").await;
    assert_refused(
        &app,
        &sign(&claims(&app, &uuid::Uuid::now_v7().to_string()), &secret),
    )
    .await;
}

#[tokio::test]
async fn a_401_says_in_www_authenticate_whether_the_token_was_missing_or_invalid() {
    let app = TestApp::spawn().await;
    let user = app.register("challenged").await;

    let missing = app.get("/api/v1/users/me", None).await;
    assert_eq!(missing.status, poem::http::StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="coinpulse""#),
        "no token: no error code (RFC 6750 §3.1)"
    );

    let garbage = app.get("/api/v1/users/me", Some("not-a-token")).await;
    assert_eq!(garbage.status, poem::http::StatusCode::UNAUTHORIZED);
    let challenge = garbage.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge
            .starts_with(r#"Bearer realm="coinpulse", error="invalid_token", error_description=""#),
        "{challenge}"
    );

    // A token whose sessions were all ended is invalid too, and says why.
    let ended = app
        .post(
            "/api/v1/auth/logout-all",
            Some(&user.access),
            serde_json::json!({}),
        )
        .await;
    assert!(ended.status.is_success(), "{}", ended.body);
    let after = app.get("/api/v1/users/me", Some(&user.access)).await;
    assert_eq!(after.status, poem::http::StatusCode::UNAUTHORIZED);
    let challenge = after.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains(r#"error="invalid_token""#) && challenge.contains("ended"),
        "{challenge}"
    );
}
