//! End to end: live streams through the real binaries (api processes sharing one Redis, and a
//! worker publishing), used as clients would: SSE over HTTP and a WebSocket.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use test_support::sse::{SseEvent, SseStream};
use test_support::{
    RunningBinary, TestDatabase, free_port, get_text, redis_prefix, redis_url, start_worker,
    wait_until, workspace_binary,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const DEADLINE: Duration = Duration::from_secs(30);

/// Api processes (and a worker, once started) over one database and one Redis prefix.
struct Stack {
    db: TestDatabase,
    prefix: String,
    redis_url: String,
    apis: Vec<RunningBinary>,
    worker: Option<RunningBinary>,
    client: reqwest::Client,
}

/// A registered user.
struct User {
    id: String,
    token: String,
}

impl Stack {
    async fn start(apis: usize, settings: &[(&str, String)]) -> Self {
        Self::start_on(apis, settings, redis_url()).await
    }

    async fn start_on(apis: usize, settings: &[(&str, String)], redis: String) -> Self {
        let db = TestDatabase::create().await;
        let prefix = redis_prefix();
        let mut running = Vec::new();
        for _ in 0..apis {
            let port = free_port();
            let mut env = super::binary::env(&db, port);
            env.push(("REDIS_URL", redis.clone()));
            env.push(("REDIS_KEY_PREFIX", prefix.clone()));
            env.push(("STREAM_KEEPALIVE", "1s".into()));
            env.extend(settings.iter().map(|(key, value)| (*key, value.clone())));
            running.push(
                RunningBinary::start(
                    Path::new(env!("CARGO_BIN_EXE_api")),
                    &env,
                    port,
                    "/health/live",
                )
                .await,
            );
        }
        Self {
            db,
            prefix,
            redis_url: redis,
            apis: running,
            worker: None,
            client: test_support::http_client(),
        }
    }

    async fn start_worker(&mut self, settings: &[(&str, String)]) {
        let mut settings = settings.to_vec();
        settings.push(("REDIS_URL", self.redis_url.clone()));
        settings.push(("PRICE_REFRESH_INTERVAL", "1h".into()));
        self.worker = Some(
            start_worker(
                &workspace_binary("worker"),
                self.db.url(),
                &self.prefix,
                &settings,
            )
            .await,
        );
    }

    fn base(&self, api: usize) -> &str {
        &self.apis[api].base_url
    }

    fn url(&self, api: usize, path: &str) -> String {
        format!("{}/api/v1{path}", self.base(api))
    }

    async fn register(&self, name: &str) -> User {
        let body = super::binary::register(&self.client, self.base(0), name, None).await;
        User {
            id: body["user"]["id"].as_str().expect("id").to_owned(),
            token: body["access_token"].as_str().expect("token").to_owned(),
        }
    }

    async fn post(&self, api: usize, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(api, path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("POST")
    }

    /// Asks for a bulk price fetch of `coins`; returns the job id.
    async fn bulk(&self, user: &User, coins: &[&str]) -> String {
        let response = self
            .post(
                0,
                "/crypto/bulk",
                &user.token,
                json!({"coins": coins, "vs_currency": "usd"}),
            )
            .await;
        assert_eq!(response.status(), 202);
        let job: Value = response.json().await.expect("job");
        job["id"].as_str().expect("job id").to_owned()
    }

    async fn sse(&self, api: usize, path: &str, user: &User, last: Option<&str>) -> SseStream {
        SseStream::open(&self.client, &self.url(api, path), &user.token, last)
            .await
            .unwrap_or_else(|response| panic!("{path} answered {}", response.status()))
    }

    /// Waits until `user` has `count` notifications of finished jobs (their events were
    /// published by then).
    async fn wait_for_notifications(&self, user: &User, count: u64) {
        wait_until("the notifications", DEADLINE, || async {
            let page: Value = self
                .client
                .get(self.url(0, "/notifications?category=jobs"))
                .bearer_auth(&user.token)
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            page["total"] == count
        })
        .await;
    }

    async fn metric(&self, api: usize, series: &str) -> f64 {
        let exposition = get_text(&format!("{}/metrics", self.base(api))).await;
        exposition
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    async fn ws(&self, api: usize, query: &str, bearer: Option<&str>) -> Ws {
        let port = self.base(api).rsplit(':').next().expect("port");
        let mut request = format!("ws://127.0.0.1:{port}/api/v1/ws{query}")
            .into_client_request()
            .expect("ws request");
        if let Some(token) = bearer {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket handshake");
        Ws(socket)
    }

    async fn ticket(&self, api: usize, user: &User) -> String {
        let response = self
            .post(api, "/stream/ws-ticket", &user.token, json!({}))
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("ticket");
        body["ticket"].as_str().expect("ticket").to_owned()
    }
}

struct Ws(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

impl Ws {
    async fn send(&mut self, message: Value) {
        self.0
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send");
    }

    /// The next JSON message whose `type` is `kind`, skipping others.
    async fn next_of(&mut self, kind: &str) -> Value {
        tokio::time::timeout(DEADLINE, async {
            loop {
                match self.0.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let message: Value = serde_json::from_str(&text).expect("JSON message");
                        if message["type"] == kind {
                            return message;
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("the WebSocket ended before a {kind:?} message: {other:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {kind:?} message within {DEADLINE:?}"))
    }

    /// The close frame's code, skipping messages.
    async fn closed_with(&mut self) -> u16 {
        tokio::time::timeout(DEADLINE, async {
            loop {
                match self.0.next().await {
                    Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                    Some(Ok(_)) => {}
                    other => panic!("the WebSocket ended without a close frame: {other:?}"),
                }
            }
        })
        .await
        .expect("a close frame in time")
    }
}

/// The `job_finished` notification of `job` (skipping other events, such as the welcome).
async fn finished(stream: &mut SseStream, job: &str) -> SseEvent {
    loop {
        let event = stream.next_named("notification", DEADLINE).await;
        if event.data["data"]["data"]["job_id"] == job {
            assert_eq!(event.data["data"]["kind"], "job_finished");
            return event;
        }
    }
}

fn quotes_coins(event: &SseEvent) -> Vec<String> {
    event.data["data"]["quotes"]
        .as_array()
        .expect("quotes")
        .iter()
        .map(|quote| quote["coin_id"].as_str().expect("coin").to_owned())
        .collect()
}

#[tokio::test]
async fn a_price_tick_and_a_notification_reach_sse_and_websocket_clients_on_every_api_process() {
    let mut stack = Stack::start(2, &[]).await;
    let user = stack.register("fan").await;
    // The database has no prices yet, so any price update is a tick published by the worker.
    let mut prices = [
        stack
            .sse(0, "/stream/prices?coins=bitcoin&interval=0", &user, None)
            .await,
        stack
            .sse(1, "/stream/prices?coins=bitcoin&interval=0", &user, None)
            .await,
    ];
    let mut events = [
        stack.sse(0, "/stream/events", &user, None).await,
        stack.sse(1, "/stream/events", &user, None).await,
    ];
    // A browser: a ticket from one process, the socket on the other.
    let ticket = stack.ticket(0, &user).await;
    let mut ws = stack.ws(1, &format!("?ticket={ticket}"), None).await;
    ws.send(json!({"type": "subscribe", "coins": ["bitcoin"]}))
        .await;
    let subscribed = ws.next_of("subscribed").await;
    assert_eq!(subscribed["coins"], json!(["bitcoin"]));
    assert_eq!(
        stack.metric(1, "stream_clients{kind=\"ws\"}").await,
        1.0,
        "the WebSocket is counted"
    );

    stack.start_worker(&[]).await;
    let job = stack.bulk(&user, &["bitcoin"]).await;

    for stream in &mut prices {
        let tick = stream.next_named("prices", DEADLINE).await;
        assert_eq!(quotes_coins(&tick), ["bitcoin"]);
        assert_eq!(tick.data["type"], "prices");
        assert_eq!(tick.data["data"]["vs_currency"], "usd");
    }
    for stream in &mut events {
        let change = stream.next_named("job", DEADLINE).await;
        assert_eq!(change.data["data"]["id"], job.as_str());
        assert!(
            change.id.is_some(),
            "user events carry an id to resume from"
        );
        finished(stream, &job).await;
    }
    let tick = ws.next_of("prices").await;
    assert_eq!(tick["data"]["quotes"][0]["coin_id"], "bitcoin");
    loop {
        let notification = ws.next_of("notification").await;
        if notification["data"]["data"]["job_id"] == job.as_str() {
            break;
        }
    }

    // The ticket was single-use.
    let reused = stack
        .client
        .get(stack.url(0, &format!("/ws?ticket={ticket}")))
        .send()
        .await
        .expect("reuse");
    assert_eq!(reused.status(), 401);
}

#[tokio::test]
async fn max_updates_ends_the_price_stream() {
    let mut stack = Stack::start(1, &[]).await;
    let user = stack.register("counter").await;
    let mut prices = stack
        .sse(
            0,
            "/stream/prices?coins=bitcoin&interval=0&max_updates=2",
            &user,
            None,
        )
        .await;
    stack.start_worker(&[]).await;
    let mut updates = 0;
    loop {
        stack.bulk(&user, &["bitcoin"]).await;
        let event = prices
            .next(DEADLINE)
            .await
            .expect("an event before the end");
        if event.event == "prices" {
            updates += 1;
        }
        if updates == 2 {
            break;
        }
    }
    let closed = prices.next_named("closed", DEADLINE).await;
    assert_eq!(closed.data["data"]["reason"], "done");
    assert_eq!(
        prices.next(DEADLINE).await,
        None,
        "the stream ends after `closed`"
    );
}

#[tokio::test]
async fn last_event_id_replays_what_was_missed_on_any_process_then_goes_on_live() {
    let mut stack = Stack::start(2, &[]).await;
    let user = stack.register("resumer").await;
    stack.start_worker(&[]).await;
    let mut first = stack.sse(0, "/stream/events", &user, None).await;
    let first_job = stack.bulk(&user, &["bitcoin"]).await;
    let seen = finished(&mut first, &first_job).await;
    let last_id = seen.id.clone().expect("an event id");
    drop(first);

    // Missed while disconnected: job events and a notification.
    let missed_job = stack.bulk(&user, &["ethereum"]).await;
    stack.wait_for_notifications(&user, 2).await;

    let mut resumed = stack.sse(1, "/stream/events", &user, Some(&last_id)).await;
    let mut replayed = Vec::new();
    loop {
        let event = resumed.next(DEADLINE).await.expect("replayed events");
        assert_ne!(event.event, "resync", "the history covers the gap");
        replayed.push(event.clone());
        if event.event == "notification"
            && event.data["data"]["data"]["job_id"] == missed_job.as_str()
        {
            break;
        }
    }
    assert!(
        replayed
            .iter()
            .all(|event| event.data["data"]["id"] != first_job.as_str()
                && event.data["data"]["data"]["job_id"] != first_job.as_str()),
        "nothing seen before is sent again: {replayed:?}"
    );
    // Status changes, in order; the progress the job reported comes between them as `job`
    // events that carry `progress`.
    let jobs: Vec<&Value> = replayed
        .iter()
        .filter(|event| event.event == "job")
        .map(|event| &event.data["data"])
        .collect();
    let statuses: Vec<&Value> = jobs
        .iter()
        .filter(|job| job["progress"].is_null())
        .map(|job| &job["status"])
        .collect();
    assert_eq!(statuses, [&json!("running"), &json!("succeeded")]);
    let progress: Vec<&Value> = jobs
        .iter()
        .filter(|job| !job["progress"].is_null())
        .map(|job| &job["progress"])
        .collect();
    assert_eq!(
        progress.first().map(|p| &p["done"]),
        Some(&json!(0)),
        "{jobs:?}"
    );
    let last = progress.last().expect("progress was reported");
    assert_eq!(last["done"], last["total"], "{jobs:?}");
    assert!(
        replayed
            .iter()
            .all(|event| event.data["data"]["id"] == missed_job.as_str()
                || event.data["data"]["data"]["job_id"] == missed_job.as_str())
    );
    let ids: Vec<&String> = replayed
        .iter()
        .filter_map(|event| event.id.as_ref())
        .collect();
    assert_eq!(ids.len(), replayed.len());

    // Then live, without duplicates.
    let live_job = stack.bulk(&user, &["solana"]).await;
    let live = resumed.next_named("job", DEADLINE).await;
    assert_eq!(live.data["data"]["id"], live_job.as_str());
    assert!(
        stack
            .metric(1, "stream_resumes_total{outcome=\"replayed\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_gap_older_than_the_history_yields_resync() {
    let mut stack = Stack::start(1, &[]).await;
    let user = stack.register("gapped").await;
    stack
        .start_worker(&[("EVENT_HISTORY_LENGTH", "2".into())])
        .await;
    let mut stream = stack.sse(0, "/stream/events", &user, None).await;
    stack.bulk(&user, &["bitcoin"]).await;
    let oldest = stream.next_named("job", DEADLINE).await.id.expect("id");
    drop(stream);
    // Three more events than the history keeps.
    stack.bulk(&user, &["ethereum"]).await;
    stack.wait_for_notifications(&user, 2).await;

    let mut resumed = stack.sse(0, "/stream/events", &user, Some(&oldest)).await;
    let first = resumed.next(DEADLINE).await.expect("an event");
    assert_eq!(first.event, "resync");
    assert_eq!(first.data["type"], "resync");

    let mut garbage = stack
        .sse(0, "/stream/events", &user, Some("not-an-event-id"))
        .await;
    assert_eq!(
        garbage.next(DEADLINE).await.expect("an event").event,
        "resync"
    );
    assert!(
        stack
            .metric(0, "stream_resumes_total{outcome=\"resync\"}")
            .await
            >= 2.0
    );
}

/// A Redis server of this test's own, so that restarting it disturbs no other test.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (scripts/services.sh installs it)");
        Self { port, child }
    }

    async fn wait_ready(&self) {
        let url = self.url();
        wait_until("redis to answer", DEADLINE, || {
            let url = url.clone();
            async move {
                let Ok(client) = redis::Client::open(url) else {
                    return false;
                };
                let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                    return false;
                };
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            }
        })
        .await;
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn the_subscription_survives_a_redis_restart_and_clients_are_told_to_resync() {
    let mut redis = OwnRedis::start(free_port());
    redis.wait_ready().await;
    let mut stack = Stack::start_on(2, &[], redis.url()).await;
    let user = stack.register("survivor").await;
    stack.start_worker(&[]).await;
    let mut events = stack.sse(0, "/stream/events", &user, None).await;
    let mut prices = stack
        .sse(1, "/stream/prices?coins=bitcoin&interval=0", &user, None)
        .await;
    let job = stack.bulk(&user, &["bitcoin"]).await;
    finished(&mut events, &job).await;
    prices.next_named("prices", DEADLINE).await;

    // Redis restarts empty: everything published meanwhile, and the history, is gone.
    let port = redis.port;
    redis.kill();
    let redis = OwnRedis::start(port);
    redis.wait_ready().await;

    let resync = events.next_named("resync", DEADLINE).await;
    assert_eq!(resync.data["type"], "resync");
    prices.next_named("resync", DEADLINE).await;

    // And events flow again, on both processes.
    let job = stack.bulk(&user, &["bitcoin", "ethereum"]).await;
    // (Jobs caught by the restart may run again: at least once. Their events come too.)
    loop {
        let change = events.next_named("job", DEADLINE).await;
        if change.data["data"]["id"] == job.as_str() {
            break;
        }
    }
    let tick = prices.next_named("prices", DEADLINE).await;
    assert_eq!(quotes_coins(&tick), ["bitcoin"]);
    drop(redis);
}

/// Publishes a price tick on Redis as a worker does.
async fn publish_tick(prefix: &str, coins: &[String], round: usize) {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let quotes: Vec<Value> = coins
        .iter()
        .map(|coin| {
            json!({"coin_id": coin, "price": format!("{round}.{}", "1".repeat(60)),
                   "change_24h_pct": null, "quoted_at": null})
        })
        .collect();
    let tick = json!({"type": "prices", "id": uuid::Uuid::now_v7(), "at": chrono::Utc::now(),
                      "data": {"vs_currency": "usd", "source": "simulated", "quotes": quotes}});
    redis::cmd("PUBLISH")
        .arg(format!("{prefix}prices"))
        .arg(tick.to_string())
        .query_async::<()>(&mut conn)
        .await
        .expect("publish");
}

#[tokio::test]
async fn a_slow_client_is_dropped_while_the_others_keep_receiving() {
    let stack = Stack::start(1, &[("STREAM_CLIENT_BUFFER", "8".into())]).await;
    let user = stack.register("reader").await;
    let coins: Vec<String> = (0..50)
        .map(|i| format!("coin-{i:03}-{}", "x".repeat(80)))
        .collect();
    let path = format!("/stream/prices?interval=0&coins={}", coins.join(","));
    let mut fast = stack.sse(0, &path, &user, None).await;

    // The slow client asks, then reads nothing, with a tiny receive window.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let port: u16 = stack
        .base(0)
        .rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("port");
    let mut slow = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect");
    slow.write_all(
        format!(
            "GET /api/v1{path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
            user.token
        )
        .as_bytes(),
    )
    .await
    .expect("request");
    wait_until("both clients to be counted", DEADLINE, || async {
        stack.metric(0, "stream_clients{kind=\"prices\"}").await == 2.0
    })
    .await;

    let mut round = 0;
    while stack
        .metric(0, "stream_messages_dropped_total{kind=\"prices\"}")
        .await
        < 1.0
    {
        assert!(round < 3000, "the slow client was never dropped");
        for _ in 0..10 {
            round += 1;
            publish_tick(&stack.prefix, &coins, round).await;
            let tick = fast.next_named("prices", DEADLINE).await;
            assert_eq!(quotes_coins(&tick).len(), 50);
        }
    }
    wait_until("the slow client to be let go", DEADLINE, || async {
        stack.metric(0, "stream_clients{kind=\"prices\"}").await == 1.0
    })
    .await;
    // The fast one goes on.
    publish_tick(&stack.prefix, &coins, round + 1).await;
    let tick = fast.next_named("prices", DEADLINE).await;
    assert!(
        tick.data["data"]["quotes"][0]["price"]
            .as_str()
            .expect("price")
            .starts_with(&format!("{}.", round + 1))
    );

    // When the slow client reads again, it learns why it was dropped.
    let mut seen = Vec::new();
    let found = tokio::time::timeout(DEADLINE, async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = slow.read(&mut buffer).await.expect("read");
            if read == 0 {
                return false;
            }
            seen.extend_from_slice(&buffer[..read]);
            if String::from_utf8_lossy(&seen).contains("slow_consumer") {
                return true;
            }
        }
    })
    .await
    .expect("the slow client's data in time");
    assert!(found, "the slow client was told it was too slow");
}

#[tokio::test]
async fn a_portfolio_stream_is_its_owners_alone_and_follows_the_prices() {
    let mut stack = Stack::start(1, &[]).await;
    let owner = stack.register("owner").await;
    let intruder = stack.register("intruder").await;
    let portfolio: Value = stack
        .post(0, "/portfolios", &owner.token, json!({"name": "Main"}))
        .await
        .json()
        .await
        .expect("portfolio");
    let id = portfolio["id"].as_str().expect("id");
    let bought = stack
        .post(
            0,
            &format!("/portfolios/{id}/transactions"),
            &owner.token,
            json!({"coin_id": "bitcoin", "side": "buy", "quantity": "2", "price": "10"}),
        )
        .await;
    assert_eq!(bought.status(), 201);

    for (user, path) in [
        (&intruder, format!("/stream/portfolios/{id}")),
        (
            &owner,
            format!("/stream/portfolios/{}", uuid::Uuid::now_v7()),
        ),
    ] {
        let refused = SseStream::open(&stack.client, &stack.url(0, &path), &user.token, None)
            .await
            .expect_err("refused before the stream opens");
        assert_eq!(refused.status(), 404);
        assert_eq!(
            refused.headers()["content-type"],
            "application/problem+json"
        );
    }

    let mut stream = stack
        .sse(0, &format!("/stream/portfolios/{id}"), &owner, None)
        .await;
    let first = stream.next_named("valuation", DEADLINE).await;
    assert_eq!(first.data["data"]["portfolio_id"], id);
    stack.start_worker(&[]).await;
    stack.bulk(&owner, &["bitcoin"]).await;
    let revalued = stream.next_named("valuation", DEADLINE).await;
    assert_eq!(revalued.data["data"]["holdings"][0]["coin_id"], "bitcoin");
    assert_ne!(revalued.data["data"]["holdings"][0]["price"], Value::Null);
}

#[tokio::test]
async fn streams_close_when_the_account_is_disabled_or_logged_out_everywhere() {
    let stack = Stack::start(2, &[]).await;
    let admin = stack.register("chief").await;
    sqlx::query("UPDATE users SET role = 'admin' WHERE id = $1::uuid")
        .bind(&admin.id)
        .execute(&stack.db.pool().await)
        .await
        .expect("promote");
    let user = stack.register("suspect").await;
    let mut events = stack.sse(1, "/stream/events", &user, None).await;
    let mut prices = stack
        .sse(1, "/stream/prices?coins=bitcoin", &user, None)
        .await;
    let mut ws = stack.ws(1, "", Some(&user.token)).await;
    ws.send(json!({"type": "ping"})).await;
    ws.next_of("pong").await;

    let disabled = stack
        .client
        .patch(stack.url(0, &format!("/admin/users/{}", user.id)))
        .bearer_auth(&admin.token)
        .json(&json!({"is_active": false}))
        .send()
        .await
        .expect("disable");
    assert!(disabled.status().is_success(), "{}", disabled.status());
    for stream in [&mut events, &mut prices] {
        let closed = stream.next_named("closed", DEADLINE).await;
        assert_eq!(closed.data["data"]["reason"], "session_ended");
        assert_eq!(stream.next(DEADLINE).await, None);
    }
    assert_eq!(
        ws.next_of("closed").await["data"]["reason"],
        "session_ended"
    );
    assert_eq!(ws.closed_with().await, 1008);

    // Logging out everywhere ends the streams opened with the old tokens too.
    let other = stack.register("leaver").await;
    let mut stream = stack.sse(1, "/stream/events", &other, None).await;
    let out = stack
        .post(0, "/auth/logout-all", &other.token, json!({}))
        .await;
    assert!(out.status().is_success(), "{}", out.status());
    let closed = stream.next_named("closed", DEADLINE).await;
    assert_eq!(closed.data["data"]["reason"], "session_ended");
}

#[tokio::test]
async fn the_websocket_refuses_bad_messages_without_dropping_the_connection() {
    let stack = Stack::start(
        1,
        &[
            ("WS_MESSAGES_PER_SECOND", "1".into()),
            ("STREAM_MAX_PER_USER", "2".into()),
        ],
    )
    .await;
    let user = stack.register("socket").await;
    let other = stack.register("stranger").await;
    let theirs: Value = stack
        .post(0, "/portfolios", &other.token, json!({"name": "Theirs"}))
        .await
        .json()
        .await
        .expect("portfolio");

    // No credentials, or no handshake: problem responses, not upgrades.
    let anonymous = stack
        .client
        .get(stack.url(0, "/ws"))
        .send()
        .await
        .expect("ws");
    assert_eq!(anonymous.status(), 401);
    let plain = stack
        .client
        .get(stack.url(0, "/ws"))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("ws");
    assert_eq!(plain.status(), 400);
    assert_eq!(plain.headers()["content-type"], "application/problem+json");

    let mut ws = stack.ws(0, "", Some(&user.token)).await;
    ws.send(json!({"type": "dance"})).await;
    assert_eq!(ws.next_of("error").await["code"], "invalid_message");
    // Far more than 1 a second (bursts of 2).
    for _ in 0..10 {
        ws.send(json!({"type": "ping"})).await;
    }
    assert_eq!(ws.next_of("error").await["code"], "rate_limited");
    // A fresh connection has a fresh rate (no waiting for this one's to refill).
    ws.0.close(None).await.expect("close");
    wait_until("the first socket to be let go", DEADLINE, || async {
        stack.metric(0, "stream_clients{kind=\"ws\"}").await == 0.0
    })
    .await;
    let mut ws = stack.ws(0, "", Some(&user.token)).await;
    ws.send(json!({"type": "subscribe", "portfolios": [theirs["id"]]}))
        .await;
    let reply = ws.next_of("error").await;
    assert_eq!(
        reply["code"], "not_found",
        "another user's portfolio is refused as not found"
    );

    // Two streams at most for this user on this process.
    let _second = stack.sse(0, "/stream/events", &user, None).await;
    let third = SseStream::open(
        &stack.client,
        &stack.url(0, "/stream/events"),
        &user.token,
        None,
    )
    .await
    .expect_err("over the limit");
    assert_eq!(third.status(), 429);
}

#[tokio::test]
async fn sigterm_closes_open_streams_and_the_api_stops_without_waiting_for_them() {
    let mut stack = Stack::start(1, &[("SHUTDOWN_TIMEOUT", "60s".into())]).await;
    let user = stack.register("leaving").await;
    let mut events = stack.sse(0, "/stream/events", &user, None).await;
    let mut prices = stack
        .sse(0, "/stream/prices?coins=bitcoin", &user, None)
        .await;
    let api = stack.apis.remove(0);
    let stopping = tokio::spawn(api.terminate());
    for stream in [&mut events, &mut prices] {
        let closed = stream.next_named("closed", DEADLINE).await;
        assert_eq!(closed.data["data"]["reason"], "shutting_down");
        assert_eq!(stream.next(DEADLINE).await, None);
    }
    // Well before SHUTDOWN_TIMEOUT: the streams did not hold the drain.
    let status = tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("stopped before the drain timeout")
        .expect("join");
    assert!(status.success(), "{status}");
}
