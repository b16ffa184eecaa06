//! The in-process test app and request helpers.

use api::config::ApiConfig;
use api::{AppState, build_app};
use common::redis::Redis;
use poem::endpoint::BoxEndpoint;
use poem::http::{HeaderMap, Method, StatusCode};
use poem::test::TestClient;
use poem::{EndpointExt, Response};
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::TestDatabase;

/// The API built from test configuration over a database of its own.
pub struct TestApp {
    pub client: TestClient<BoxEndpoint<'static, Response>>,
    pub pool: PgPool,
    pub state: AppState,
    _db: TestDatabase,
}

/// A response with its body parsed as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The value of header `name` as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts this is a problem+json response with `status` and `code`.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.body
        );
        assert_eq!(self.body["status"], status, "{}", self.body);
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
        assert_eq!(
            self.body["request_id"].as_str(),
            self.header("x-request-id"),
            "problem carries the request id"
        );
    }

    /// Asserts a `201 Created` and returns the new resource's id.
    #[track_caller]
    pub fn created_id(&self) -> String {
        assert_eq!(self.status, StatusCode::CREATED, "{}", self.body);
        self.body["id"].as_str().expect("an id").to_owned()
    }

    /// The `field` names of a validation problem.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A registered user and their tokens.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub email: String,
    pub password: String,
    pub access: String,
    pub refresh: String,
}

impl TestApp {
    /// The app with test defaults.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// The app with test defaults changed by `configure`.
    pub async fn spawn_with(configure: impl FnOnce(&mut ApiConfig)) -> Self {
        let db = TestDatabase::create().await;
        let mut config = ApiConfig::for_tests(
            db.url(),
            &test_support::redis_url(),
            &test_support::redis_prefix(),
        );
        // Generous limits unless a test is about them.
        config.rate_limit.per_minute = 100_000;
        config.rate_limit.burst = 100_000;
        config.rate_limit.auth_per_minute = 100_000;
        config.rate_limit.auth_burst = 100_000;
        configure(&mut config);
        let pool = db.pool().await;
        let redis = Redis::new(&config.common.redis).expect("redis url");
        let metrics = common::telemetry::install_metrics("api");
        let state = AppState::new(config, pool.clone(), redis, metrics).expect("state");
        let client = TestClient::new(build_app(state.clone()).boxed());
        Self {
            client,
            pool,
            state,
            _db: db,
        }
    }

    /// Sends a request; `bearer` and `body` are optional.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.send(method, path, bearer, body, &[]).await
    }

    /// Sends a request with extra headers (`If-Match`, `Idempotency-Key`, …).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.request(method, path);
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body_json(&body);
        }
        Self::reply(request.send().await).await
    }

    /// Turns a test response into a [`Reply`].
    pub async fn reply(response: poem::test::TestResponse) -> Reply {
        let response = response.0;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().into_vec().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        self.call(Method::GET, path, bearer, None).await
    }

    pub async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, bearer, Some(body)).await
    }

    /// Registers `name` (email `name@example.com`) and returns the session.
    pub async fn register(&self, name: &str) -> Session {
        let email = format!("{name}@example.com");
        let password = format!("{name}-password-1");
        let reply = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"email": email, "username": name, "password": password}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "register failed: {}",
            reply.body
        );
        session_from(&reply.body, &email, &password)
    }

    /// Presents a refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh_token}),
        )
        .await
    }

    /// The Prometheus text this app's `/metrics` renders.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get("/metrics")
            .send()
            .await
            .0
            .into_body()
            .into_string()
            .await
            .expect("metrics text")
    }

    /// Logs in and returns the session.
    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Registers `name` and makes them an administrator (directly in the database, as
    /// `api create-admin` would), then logs in again so the token carries the role.
    pub async fn admin(&self, name: &str) -> Session {
        let session = self.register(name).await;
        sqlx::query("UPDATE users SET role = 'admin' WHERE email = $1")
            .bind(&session.email)
            .execute(&self.pool)
            .await
            .expect("promote");
        let reply = self.login(&session.email, &session.password).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        session_from(&reply.body, &session.email, &session.password)
    }
}

/// The portfolio routes, one method per action; `id`s are as the API wrote them.
impl TestApp {
    /// `POST /api/v1/portfolios`.
    pub async fn create_portfolio(&self, user: &Session, body: Value) -> Reply {
        self.create_portfolio_with(user, body, &[]).await
    }

    /// `POST /api/v1/portfolios` with an `Idempotency-Key`.
    pub async fn create_portfolio_keyed(&self, user: &Session, body: Value, key: &str) -> Reply {
        self.create_portfolio_with(user, body, &[("idempotency-key", key)])
            .await
    }

    async fn create_portfolio_with(
        &self,
        user: &Session,
        body: Value,
        headers: &[(&str, &str)],
    ) -> Reply {
        let path = "/api/v1/portfolios";
        self.send(Method::POST, path, Some(&user.access), Some(body), headers)
            .await
    }

    /// `GET /api/v1/portfolios{query}`, e.g. with `query` `"?sort=name"` (or `""`).
    pub async fn list_portfolios(&self, user: &Session, query: &str) -> Reply {
        self.get(&format!("/api/v1/portfolios{query}"), Some(&user.access))
            .await
    }

    /// `GET /api/v1/portfolios/{id}`.
    pub async fn get_portfolio(&self, user: &Session, id: &str) -> Reply {
        self.get(&portfolio_path(id), Some(&user.access)).await
    }

    /// `PATCH /api/v1/portfolios/{id}`, with `If-Match` when given.
    pub async fn patch_portfolio(
        &self,
        user: &Session,
        id: &str,
        body: Value,
        if_match: Option<&str>,
    ) -> Reply {
        let headers: Vec<(&str, &str)> =
            if_match.map(|tag| ("if-match", tag)).into_iter().collect();
        let path = portfolio_path(id);
        self.send(
            Method::PATCH,
            &path,
            Some(&user.access),
            Some(body),
            &headers,
        )
        .await
    }

    /// `DELETE /api/v1/portfolios/{id}`, with `If-Match` when given.
    pub async fn delete_portfolio(
        &self,
        user: &Session,
        id: &str,
        if_match: Option<&str>,
    ) -> Reply {
        let headers: Vec<(&str, &str)> =
            if_match.map(|tag| ("if-match", tag)).into_iter().collect();
        let path = portfolio_path(id);
        self.send(Method::DELETE, &path, Some(&user.access), None, &headers)
            .await
    }

    /// `POST /api/v1/portfolios/{portfolio}/transactions`.
    pub async fn add_transaction(&self, user: &Session, portfolio: &str, body: Value) -> Reply {
        self.add_transaction_with(user, portfolio, body, &[]).await
    }

    /// `POST /api/v1/portfolios/{portfolio}/transactions` with an `Idempotency-Key`.
    pub async fn add_transaction_keyed(
        &self,
        user: &Session,
        portfolio: &str,
        body: Value,
        key: &str,
    ) -> Reply {
        self.add_transaction_with(user, portfolio, body, &[("idempotency-key", key)])
            .await
    }

    async fn add_transaction_with(
        &self,
        user: &Session,
        portfolio: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> Reply {
        let path = format!("{}/transactions", portfolio_path(portfolio));
        self.send(Method::POST, &path, Some(&user.access), Some(body), headers)
            .await
    }

    /// `GET /api/v1/portfolios/{portfolio}/transactions{query}` (`query` as for
    /// [`list_portfolios`](Self::list_portfolios)).
    pub async fn list_transactions(&self, user: &Session, portfolio: &str, query: &str) -> Reply {
        let path = format!("{}/transactions{query}", portfolio_path(portfolio));
        self.get(&path, Some(&user.access)).await
    }

    /// `GET /api/v1/portfolios/{portfolio}/transactions/{id}`.
    pub async fn get_transaction(&self, user: &Session, portfolio: &str, id: &str) -> Reply {
        let path = format!("{}/transactions/{id}", portfolio_path(portfolio));
        self.get(&path, Some(&user.access)).await
    }

    /// `DELETE /api/v1/portfolios/{portfolio}/transactions/{id}`.
    pub async fn delete_transaction(&self, user: &Session, portfolio: &str, id: &str) -> Reply {
        let path = format!("{}/transactions/{id}", portfolio_path(portfolio));
        self.call(Method::DELETE, &path, Some(&user.access), None)
            .await
    }

    /// `GET /api/v1/portfolios/{portfolio}/valuation`.
    pub async fn valuation(&self, user: &Session, portfolio: &str) -> Reply {
        let path = format!("{}/valuation", portfolio_path(portfolio));
        self.get(&path, Some(&user.access)).await
    }
}

/// The URL of portfolio `id`.
pub fn portfolio_path(id: &str) -> String {
    format!("/api/v1/portfolios/{id}")
}

/// Reads a token response.
pub fn session_from(body: &Value, email: &str, password: &str) -> Session {
    Session {
        id: body["user"]["id"].as_str().expect("user id").to_owned(),
        email: email.to_owned(),
        password: password.to_owned(),
        access: body["access_token"]
            .as_str()
            .expect("access token")
            .to_owned(),
        refresh: body["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_owned(),
    }
}
