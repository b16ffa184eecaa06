//! Price alerts to notifications to email, end to end: the real `api` and `worker` binaries,
//! real Postgres and Redis, a fake CoinGecko whose prices each test sets, and a real SMTP
//! server. Every wait has a deadline and waits for a condition, never for time to pass.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use poem::web::{Data, Json, Query};
use poem::{EndpointExt, Route, get, handler};
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::smtp::{ReceivedMail, SmtpServer};
use test_support::{
    RunningBinary, TestDatabase, free_port, http_client, redis_prefix, redis_url, start_worker,
    wait_until, workspace_binary,
};
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(30);

/// The fake market: the price and 24 h change of each coin, as the test sets them.
#[derive(Clone, Default)]
struct Market {
    prices: Arc<Mutex<BTreeMap<String, (f64, f64)>>>,
}

impl Market {
    fn set(&self, coin: &str, price: f64) {
        self.prices
            .lock()
            .expect("lock")
            .insert(coin.to_owned(), (price, 1.0));
    }
}

#[derive(serde::Deserialize)]
struct MarketsQuery {
    ids: Option<String>,
}

#[handler]
async fn markets(market: Data<&Market>, query: Query<MarketsQuery>) -> Json<Vec<Value>> {
    let prices = market.prices.lock().expect("lock").clone();
    let wanted: Option<HashSet<String>> = query
        .ids
        .as_ref()
        .map(|ids| ids.split(',').map(str::to_owned).collect());
    let rows = prices
        .iter()
        .filter(|(id, _)| wanted.as_ref().is_none_or(|wanted| wanted.contains(*id)))
        .enumerate()
        .map(|(rank, (id, (price, change)))| {
            json!({
                "id": id, "symbol": id, "name": id, "current_price": price,
                "market_cap": 1_000_000.0, "market_cap_rank": rank + 1, "total_volume": 10.0,
                "price_change_percentage_24h": change,
                "last_updated": chrono::Utc::now().to_rfc3339(),
            })
        })
        .collect();
    Json(rows)
}

/// Postgres, Redis, the fake market, the SMTP server, the api and one user.
struct Stack {
    db: TestDatabase,
    pool: PgPool,
    prefix: String,
    market: Market,
    market_url: String,
    smtp: SmtpServer,
    api: RunningBinary,
    token: String,
    user_id: Uuid,
    email: String,
}

impl Stack {
    async fn start() -> Self {
        let db = TestDatabase::create().await;
        let pool = db.pool().await;
        let prefix = redis_prefix();
        let market = Market::default();
        market.set("bitcoin", 90.0);
        let app = Route::new()
            .at("/api/v3/coins/markets", get(markets))
            .data(market.clone());
        let market_url = format!(
            "http://{}/api/v3",
            test_support::serve_on_loopback(app).await
        );
        let smtp = SmtpServer::start().await;
        let port = free_port();
        let env = vec![
            ("DATABASE_URL", db.url().to_owned()),
            ("REDIS_URL", redis_url()),
            ("REDIS_KEY_PREFIX", prefix.clone()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
            ("PASSWORD_HASH_MEMORY_KIB", "1024".into()),
            ("PASSWORD_HASH_ITERATIONS", "1".into()),
            ("PRICE_PROVIDER", "coingecko".into()),
            ("COINGECKO_BASE_URL", market_url.clone()),
        ];
        let api = RunningBinary::start(&workspace_binary("api"), &env, port, "/health/live").await;
        let email = "alerts@example.com".to_owned();
        let registered: Value = http_client()
            .post(format!("{}/api/v1/auth/register", api.base_url))
            .json(&json!({"email": email, "username": "alerter", "password": "correct-horse-1"}))
            .send()
            .await
            .expect("register")
            .json()
            .await
            .expect("json");
        let token = registered["access_token"]
            .as_str()
            .expect("token")
            .to_owned();
        let user_id = registered["user"]["id"]
            .as_str()
            .expect("user id")
            .parse()
            .expect("uuid");
        Self {
            db,
            pool,
            prefix,
            market,
            market_url,
            smtp,
            api,
            token,
            user_id,
            email,
        }
    }

    async fn start_worker(&self, extra: &[(&str, &str)]) -> RunningBinary {
        let mut settings = vec![
            ("WORKER_RETRY_MAX", "500ms".to_owned()),
            ("PRICE_REFRESH_INTERVAL", "1s".to_owned()),
            ("PRICE_PROVIDER", "coingecko".to_owned()),
            ("COINGECKO_BASE_URL", self.market_url.clone()),
            ("COINGECKO_CALLS_PER_MINUTE", "60000".to_owned()),
            ("SMTP_URL", self.smtp.url()),
        ];
        settings.extend(extra.iter().map(|(key, value)| (*key, (*value).to_owned())));
        start_worker(
            Path::new(env!("CARGO_BIN_EXE_worker")),
            self.db.url(),
            &self.prefix,
            &settings,
        )
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.api.base_url)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = http_client()
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        http_client()
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    async fn create_alert(&self, body: Value) -> Uuid {
        let (status, alert) = self.post("/alerts", body).await;
        assert_eq!(status, 201, "{alert}");
        alert["id"].as_str().expect("id").parse().expect("uuid")
    }

    /// Waits until `alert` has been evaluated `n` more times than `since` (its
    /// `alert_eval` jobs that succeeded after the alert existed).
    async fn evaluations(&self) -> i64 {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM jobs WHERE kind = 'alert_eval' AND status = 'succeeded'",
        )
        .fetch_one(&self.pool)
        .await
        .expect("count evaluations")
    }

    /// Lets `n` more evaluations happen (at the current prices).
    async fn let_evaluate(&self, n: i64) {
        let start = self.evaluations().await;
        wait_until(&format!("{n} more evaluations"), DEADLINE, || async {
            self.evaluations().await >= start + n
        })
        .await;
    }

    /// Waits until `alert` has been evaluated at `price` (its remembered value is that price):
    /// whatever it does at that price has been done.
    async fn wait_evaluated_at(&self, alert: Uuid, price: f64) {
        wait_until(&format!("alert evaluated at {price}"), DEADLINE, || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT coalesce(last_value = $2::float8::numeric, false) FROM alerts WHERE id = $1",
            )
            .bind(alert)
            .bind(price)
            .fetch_one(&self.pool)
            .await
            .expect("alert")
        })
        .await;
    }

    async fn notifications_of(&self, kind: &str) -> Vec<Value> {
        sqlx::query_scalar::<_, Value>(
            "SELECT data FROM notifications WHERE user_id = $1 AND kind = $2 ORDER BY created_at",
        )
        .bind(self.user_id)
        .bind(kind)
        .fetch_all(&self.pool)
        .await
        .expect("notifications")
    }

    async fn wait_for_notifications(&self, kind: &str, n: usize) -> Vec<Value> {
        wait_until(&format!("{n} {kind} notifications"), DEADLINE, || async {
            self.notifications_of(kind).await.len() >= n
        })
        .await;
        self.notifications_of(kind).await
    }

    /// The messages about alert firings (their Message-ID names the firing's event).
    fn alert_mails(&self, alert: Uuid) -> Vec<ReceivedMail> {
        let ids: Vec<String> = (1..=20)
            .map(|sequence| common::alerts::firing_event_id(alert, sequence).to_string())
            .collect();
        self.smtp
            .messages()
            .into_iter()
            .filter(|mail| {
                mail.header("Message-ID")
                    .is_some_and(|id| ids.iter().any(|event| id.contains(event.as_str())))
            })
            .collect()
    }

    async fn wait_for_alert_mails(&self, alert: Uuid, n: usize) -> Vec<ReceivedMail> {
        wait_until(&format!("{n} alert emails"), DEADLINE, || async {
            self.alert_mails(alert).len() >= n
        })
        .await;
        self.alert_mails(alert)
    }

    /// Every job of `kind` finished (none queued, running or failed-and-retrying).
    async fn settled(&self, kind: &str) {
        wait_until(&format!("{kind} jobs settled"), DEADLINE, || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM jobs WHERE kind = $1 AND status NOT IN ('succeeded', 'dead', 'cancelled')",
            )
            .bind(kind)
            .fetch_one(&self.pool)
            .await
            .expect("count")
                == 0
        })
        .await;
    }

    /// Collects the events published on the user's channel, from now on.
    async fn listen(&self) -> Arc<Mutex<Vec<Value>>> {
        let client = redis::Client::open(redis_url()).expect("redis url");
        let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
        pubsub
            .subscribe(format!("{}user:{}", self.prefix, self.user_id))
            .await
            .expect("subscribe");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let payload: String = message.get_payload().expect("payload");
                let event: Value = serde_json::from_str(&payload).expect("event json");
                sink.lock().expect("lock").push(event);
            }
        });
        events
    }
}

/// The `notification` events about price alerts received so far.
fn alert_events(events: &Arc<Mutex<Vec<Value>>>) -> Vec<Value> {
    events
        .lock()
        .expect("lock")
        .iter()
        .filter(|event| event["type"] == "notification" && event["data"]["kind"] == "price_alert")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_crossing_gives_one_notification_one_email_and_one_event_with_two_workers() {
    let stack = Stack::start().await;
    let events = stack.listen().await;
    let alert = stack
        .create_alert(json!({
            "coin_id": "bitcoin", "vs_currency": "usd", "condition": "above", "target": "100",
            "trigger": "every_crossing", "note": "<script>alert(1)</script> & take profit",
        }))
        .await;
    let one = stack.start_worker(&[]).await;
    let two = stack.start_worker(&[]).await;
    stack.wait_evaluated_at(alert, 90.0).await;
    assert!(
        stack.notifications_of("price_alert").await.is_empty(),
        "90 is not above 100"
    );

    stack.market.set("bitcoin", 110.0);
    let fired = stack.wait_for_notifications("price_alert", 1).await;
    assert_eq!(fired[0]["alert_id"], alert.to_string());
    assert_eq!(fired[0]["price"], "110");
    let mails = stack.wait_for_alert_mails(alert, 1).await;
    let html = mails[0].html_part().expect("an html part");
    assert!(
        html.contains("&lt;script&gt;") && !html.contains("<script>"),
        "the note is escaped: {html}"
    );
    assert!(
        mails[0]
            .text_part()
            .expect("a text part")
            .contains("take profit")
    );

    // The price stays above: more evaluations, no more firings.
    stack.market.set("bitcoin", 120.0);
    stack.wait_evaluated_at(alert, 120.0).await;
    stack.let_evaluate(2).await;
    stack.settled("notify").await;
    stack.settled("email").await;
    assert_eq!(stack.notifications_of("price_alert").await.len(), 1);
    assert_eq!(stack.alert_mails(alert).len(), 1);
    wait_until("the notification event", DEADLINE, || async {
        !alert_events(&events).is_empty()
    })
    .await;
    assert_eq!(alert_events(&events).len(), 1, "one event");

    // It falls back below, and rises again: an every_crossing alert fires a second time.
    stack.market.set("bitcoin", 95.0);
    stack.wait_evaluated_at(alert, 95.0).await;
    let state = stack.get(&format!("/alerts/{alert}")).await;
    assert_eq!(state["state"], "armed", "re-armed: {state}");
    stack.market.set("bitcoin", 105.0);
    stack.wait_for_notifications("price_alert", 2).await;
    stack.wait_for_alert_mails(alert, 2).await;
    let state = stack.get(&format!("/alerts/{alert}")).await;
    assert_eq!(state["trigger_count"], 2, "{state}");
    assert_eq!(state["active"], true);

    // The workers' new series are well-formed, with their help text (each job ran on one
    // worker or the other, so a series may show on either).
    let mut both = String::new();
    for worker in [&one, &two] {
        let metrics = test_support::get_text(&format!("{}/metrics", worker.base_url)).await;
        test_support::assert_promtool_accepts(&metrics);
        both.push_str(&metrics);
    }
    for series in [
        "alerts_evaluated_total",
        "alerts_fired_total",
        "notifications_created_total",
        "emails_sent_total",
    ] {
        assert!(
            both.contains(&format!("# HELP {series} ")),
            "{series} in:\n{both}"
        );
    }
}

#[tokio::test]
async fn forced_redelivery_of_every_job_in_the_chain_writes_nothing_twice() {
    let stack = Stack::start().await;
    let events = stack.listen().await;
    let alert = stack
        .create_alert(json!({
            "coin_id": "bitcoin", "vs_currency": "usd", "condition": "crossing_up",
            "target": "100", "trigger": "every_crossing",
        }))
        .await;
    let _worker = stack.start_worker(&[]).await;
    stack.wait_evaluated_at(alert, 90.0).await;
    stack.market.set("bitcoin", 130.0);
    stack.wait_for_notifications("price_alert", 1).await;
    stack.wait_for_alert_mails(alert, 1).await;
    stack.settled("email").await;
    // Freeze the price where it is, so a re-run evaluation sees no new crossing.
    let event = common::alerts::firing_event_id(alert, 1);
    let chain: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE kind = 'alert_eval' OR payload->>'event_id' = $1::text",
    )
    .bind(event)
    .fetch_all(&stack.pool)
    .await
    .expect("the chain's jobs");
    assert!(
        chain.len() >= 3,
        "an evaluation, a notify and an email job: {chain:?}"
    );
    // As if each job's first run had done its work and then lost its record (a killed worker
    // before it could record the outcome): Redis forgets the job, the row goes back to queued,
    // and the relay hands it to the queue again.
    let queued: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, queue FROM jobs WHERE id = ANY($1)")
            .bind(&chain)
            .fetch_all(&stack.pool)
            .await
            .expect("queues");
    let mut redis = redis::Client::open(redis_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    for (id, queue) in queued {
        // A job's fields live in one hash per field, keyed by its id.
        for field in ["args", "max", "attempts", "state", "ready_at", "error"] {
            let _: i64 = redis::cmd("HDEL")
                .arg(format!("{}queue:{{{queue}}}:{field}", stack.prefix))
                .arg(id.to_string())
                .query_async(&mut redis)
                .await
                .expect("forget the job");
        }
    }
    sqlx::query(
        "UPDATE jobs SET status = 'queued', attempts = 0, enqueued_at = NULL, result = NULL,
                finished_at = NULL WHERE id = ANY($1)",
    )
    .bind(&chain)
    .execute(&stack.pool)
    .await
    .expect("re-queue");
    wait_until("every re-delivered job ran again", DEADLINE, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'succeeded'",
        )
        .bind(&chain)
        .fetch_one(&stack.pool)
        .await
        .expect("count")
            == chain.len() as i64
    })
    .await;
    assert_eq!(stack.notifications_of("price_alert").await.len(), 1);
    assert_eq!(stack.alert_mails(alert).len(), 1);
    let email: Value = sqlx::query_scalar(
        "SELECT result FROM jobs WHERE kind = 'email' AND payload->>'event_id' = $1::text",
    )
    .bind(event)
    .fetch_one(&stack.pool)
    .await
    .expect("email job");
    assert_eq!(email["outcome"], "duplicate", "{email}");
    let firings: i64 = sqlx::query_scalar("SELECT count(*) FROM alert_firings WHERE alert_id = $1")
        .bind(alert)
        .fetch_one(&stack.pool)
        .await
        .expect("firings");
    assert_eq!(firings, 1);
    assert_eq!(alert_events(&events).len(), 1);
}

#[tokio::test]
async fn once_deactivates_expiry_retires_and_a_cooldown_spaces_firings() {
    let stack = Stack::start().await;
    let once = stack
        .create_alert(json!({
            "coin_id": "bitcoin", "vs_currency": "usd", "condition": "below", "target": "100",
            "trigger": "once",
        }))
        .await;
    let cooled = stack
        .create_alert(json!({
            "coin_id": "bitcoin", "vs_currency": "usd", "condition": "crossing",
            "target": "100", "trigger": "every_crossing", "cooldown": 3600,
        }))
        .await;
    let expires_at = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
    let expiring = stack
        .create_alert(json!({
            "coin_id": "bitcoin", "vs_currency": "usd", "condition": "above", "target": "1000",
            "expires_at": expires_at,
        }))
        .await;
    let _worker = stack.start_worker(&[]).await;
    // 90 < 100: the `once` alert fires at its first evaluation and deactivates.
    stack.wait_for_notifications("price_alert", 1).await;
    let state = stack.get(&format!("/alerts/{once}")).await;
    assert_eq!(
        (&state["active"], &state["state"], &state["trigger_count"]),
        (&json!(false), &json!("triggered"), &json!(1)),
        "{state}"
    );
    // Crossing up, down and up again: the cooldown lets the first crossing through only.
    for price in [110.0, 90.0, 110.0] {
        stack.market.set("bitcoin", price);
        stack.wait_evaluated_at(cooled, price).await;
    }
    stack.settled("notify").await;
    let fired: Vec<Value> = stack.notifications_of("price_alert").await;
    let of = |alert: Uuid| {
        fired
            .iter()
            .filter(|data| data["alert_id"] == alert.to_string())
            .count()
    };
    assert_eq!((of(once), of(cooled), of(expiring)), (1, 1, 0));
    wait_until("the alert expires", DEADLINE, || async {
        stack.get(&format!("/alerts/{expiring}")).await["state"] == "expired"
    })
    .await;
    wait_until("the worker retires the expired alert", DEADLINE, || async {
        let stored: (bool, String) =
            sqlx::query_as("SELECT active, state FROM alerts WHERE id = $1")
                .bind(expiring)
                .fetch_one(&stack.pool)
                .await
                .expect("alert");
        stored == (false, "expired".to_owned())
    })
    .await;
}

#[tokio::test]
async fn email_off_means_in_app_only_and_a_mail_server_outage_delays_but_never_doubles() {
    let stack = Stack::start().await;
    let quiet = stack
        .create_alert(json!({
            "coin_id": "bitcoin", "vs_currency": "usd", "condition": "above", "target": "100",
        }))
        .await;
    let response = http_client()
        .put(stack.url("/notifications/preferences"))
        .bearer_auth(&stack.token)
        .json(
            &json!({"in_app_enabled": true, "email_enabled": false, "price_alerts": true,
                      "account": true, "jobs": true}),
        )
        .send()
        .await
        .expect("preferences");
    assert_eq!(response.status(), 200);
    let _worker = stack.start_worker(&[]).await;
    stack.market.set("bitcoin", 110.0);
    stack.wait_for_notifications("price_alert", 1).await;
    stack.settled("notify").await;
    stack.settled("email").await;
    assert!(stack.alert_mails(quiet).is_empty(), "email is off");

    // Email back on; the mail server goes away; a new alert fires.
    let response = http_client()
        .put(stack.url("/notifications/preferences"))
        .bearer_auth(&stack.token)
        .json(
            &json!({"in_app_enabled": true, "email_enabled": true, "price_alerts": true,
                      "account": true, "jobs": true}),
        )
        .send()
        .await
        .expect("preferences");
    assert_eq!(response.status(), 200);
    stack.smtp.stop();
    let loud = stack
        .create_alert(json!({
            "coin_id": "bitcoin", "vs_currency": "usd", "condition": "above", "target": "105",
        }))
        .await;
    stack.wait_for_notifications("price_alert", 2).await;
    let event = common::alerts::firing_event_id(loud, 1);
    wait_until(
        "the email failed while the server is away",
        DEADLINE,
        || async {
            sqlx::query_scalar::<_, Option<i32>>(
            "SELECT attempts FROM jobs WHERE kind = 'email' AND payload->>'event_id' = $1::text",
        )
        .bind(event)
        .fetch_optional(&stack.pool)
        .await
        .expect("email job")
        .flatten()
        .is_some_and(|attempts| attempts >= 2)
        },
    )
    .await;
    stack.smtp.restart().await;
    stack.wait_for_alert_mails(loud, 1).await;
    stack.settled("email").await;
    assert_eq!(stack.alert_mails(loud).len(), 1, "delivered once");
}

#[tokio::test]
async fn a_password_reset_works_end_to_end_from_the_link_in_the_email() {
    let stack = Stack::start().await;
    let _worker = stack
        .start_worker(&[("WORKER_QUEUES", "email,notify")])
        .await;
    let response = http_client()
        .post(stack.url("/auth/password-reset/request"))
        .json(&json!({ "email": stack.email.to_uppercase() }))
        .send()
        .await
        .expect("reset request");
    assert_eq!(response.status(), 202);
    let reset = {
        wait_until("the reset email", DEADLINE, || async {
            stack.smtp.messages().iter().any(|mail| {
                mail.text_part()
                    .is_some_and(|text| text.contains("reset-password?token="))
            })
        })
        .await;
        stack
            .smtp
            .messages()
            .into_iter()
            .find(|mail| {
                mail.text_part()
                    .is_some_and(|text| text.contains("reset-password?token="))
            })
            .expect("the reset email")
    };
    let text = reset.text_part().expect("text");
    let token: String = text
        .split("reset-password?token=")
        .nth(1)
        .expect("a link")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let confirm = |token: String| {
        let url = stack.url("/auth/password-reset/confirm");
        async move {
            http_client()
                .post(url)
                .json(&json!({ "token": token, "new_password": "a-brand-new-password-2" }))
                .send()
                .await
                .expect("confirm")
                .status()
                .as_u16()
        }
    };
    let status = confirm(token.clone()).await;
    assert!(status == 200 || status == 204, "confirm answered {status}");
    assert_eq!(confirm(token).await, 422, "a token is single-use");
    let login = http_client()
        .post(stack.url("/auth/login"))
        .json(&json!({ "email": stack.email, "password": "a-brand-new-password-2" }))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    let old = http_client()
        .post(stack.url("/auth/login"))
        .json(&json!({ "email": stack.email, "password": "correct-horse-1" }))
        .send()
        .await
        .expect("login");
    assert_eq!(old.status(), 401);
    stack.wait_for_notifications("password_changed", 1).await;
}

#[tokio::test]
async fn a_finished_bulk_fetch_becomes_a_notification_and_an_event() {
    let stack = Stack::start().await;
    let events = stack.listen().await;
    let _worker = stack
        .start_worker(&[("WORKER_QUEUES", "bulk_fetch,notify,email")])
        .await;
    let (status, job) = stack
        .post(
            "/crypto/bulk",
            json!({"coins": ["bitcoin"], "vs_currency": "usd"}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let finished = stack.wait_for_notifications("job_finished", 1).await;
    assert_eq!(finished[0]["job_id"], job["id"]);
    assert_eq!(finished[0]["status"], "succeeded");
    wait_until("the job's events", DEADLINE, || async {
        let events = events.lock().expect("lock").clone();
        events
            .iter()
            .any(|event| event["type"] == "job" && event["data"]["status"] == "succeeded")
            && events.iter().any(|event| event["type"] == "notification")
    })
    .await;
}

#[tokio::test]
async fn without_a_mail_server_messages_land_whole_in_the_outbox_directory() {
    let stack = Stack::start().await;
    let outbox = std::env::temp_dir().join(format!("coinpulse-outbox-{}", Uuid::now_v7()));
    let dir = outbox.to_string_lossy().into_owned();
    let _worker = stack
        .start_worker(&[
            ("SMTP_URL", ""),
            ("EMAIL_OUTBOX_DIR", &dir),
            ("WORKER_QUEUES", "notify,email"),
        ])
        .await;
    let files = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&outbox)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    // The welcome message of the account the stack registered.
    wait_until("the welcome message in the outbox", DEADLINE, || async {
        files()
            .iter()
            .any(|path| path.extension().is_some_and(|ext| ext == "eml"))
    })
    .await;
    stack.settled("email").await;
    let written = files();
    assert_eq!(
        written.len(),
        1,
        "one whole file, no partial one: {written:?}"
    );
    let message = ReceivedMail {
        from: String::new(),
        to: Vec::new(),
        data: std::fs::read_to_string(&written[0]).expect("the message"),
    };
    assert_eq!(message.subject().as_deref(), Some("Welcome to Coinpulse"));
    let text = message.text_part().expect("a text part");
    assert!(text.contains("verify-email?token="), "{text}");
    assert!(stack.smtp.messages().is_empty());
    let _ = std::fs::remove_dir_all(&outbox);
}
