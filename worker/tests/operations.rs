//! Operators repairing the pipeline through the admin API, end to end: the real `api` and
//! `worker` binaries, real Postgres and Redis, a scripted fake CoinGecko.

mod stack;

use std::time::Duration;

use serde_json::{Value, json};
use test_support::{http_client, wait_until};

use self::stack::*;

/// An admin's bearer token on `stack`'s api (the role is granted in Postgres, as
/// `api create-admin` would).
async fn admin_token(stack: &Stack) -> String {
    let registered: Value = http_client()
        .post(format!("{}/api/v1/auth/register", stack.api.base_url))
        .json(
            &json!({"email": "ops@example.com", "username": "ops", "password": "correct-horse-1"}),
        )
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    sqlx::query("UPDATE users SET role = 'admin' WHERE email = 'ops@example.com'")
        .execute(&stack.db.pool().await)
        .await
        .expect("grant admin");
    registered["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// Calls the api as `token`; returns the status and the JSON body (`null` when empty).
async fn call(
    stack: &Stack,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http_client()
        .request(method, format!("{}{path}", stack.api.base_url))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("json body")
    };
    (status, body)
}

async fn get(stack: &Stack, token: &str, path: &str) -> Value {
    let (status, body) = call(stack, token, reqwest::Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

async fn post(stack: &Stack, token: &str, path: &str, body: Value) -> (u16, Value) {
    call(stack, token, reqwest::Method::POST, path, Some(body)).await
}

async fn bulk_queue(stack: &Stack, token: &str) -> Value {
    let queues = get(stack, token, "/api/v1/admin/queues").await;
    queues["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|queue| queue["queue"] == "bulk_fetch")
        .expect("bulk_fetch listed")
        .clone()
}

async fn redis_conn(stack: &Stack) -> redis::aio::MultiplexedConnection {
    redis::Client::open(stack.redis_url.as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis")
}

#[tokio::test]
async fn a_paused_queue_accepts_jobs_but_starts_none_until_resumed_even_after_redis_forgets() {
    let stack = Stack::start().await;
    let worker = stack
        .start_worker(&[
            ("WORKER_RESCUE_INTERVAL", "200ms"),
            ("WORKER_RESCUE_GRACE", "100ms"),
        ])
        .await;
    let admin = admin_token(&stack).await;

    let (status, paused) = post(
        &stack,
        &admin,
        "/api/v1/admin/queues/bulk_fetch/pause",
        json!({"reason": "upstream maintenance"}),
    )
    .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["pause_reason"], "upstream maintenance");

    // Redis loses the flag (a restart without persistence): the rescuer puts it back from
    // the record before anything runs.
    let flag = format!("{}queue:{{bulk_fetch}}:paused", stack.prefix);
    let mut redis = redis_conn(&stack).await;
    let _: () = redis::cmd("DEL")
        .arg(&flag)
        .query_async(&mut redis)
        .await
        .expect("del");
    wait_until("the pause flag restored", Duration::from_secs(10), || {
        let mut redis = redis.clone();
        let flag = flag.clone();
        async move {
            redis::cmd("EXISTS")
                .arg(&flag)
                .query_async::<bool>(&mut redis)
                .await
                .expect("exists")
        }
    })
    .await;

    let id = stack.bulk(&coins(&["bitcoin"])).await;
    wait_until(
        "the job to wait well past a claim round",
        Duration::from_secs(15),
        || async {
            let queue = bulk_queue(&stack, &admin).await;
            queue["depth"] == 1 && queue["oldest_job_age_seconds"].as_f64() > Some(1.5)
        },
    )
    .await;
    assert_eq!(stack.job(&id).await["status"], "queued");
    assert_eq!(stack.upstream.calls(), 0);
    wait_until("queue_paused exported", Duration::from_secs(15), || async {
        metrics_of(&worker)
            .await
            .contains(r#"queue_paused{queue="bulk_fetch"} 1"#)
    })
    .await;

    let (status, resumed) = post(
        &stack,
        &admin,
        "/api/v1/admin/queues/bulk_fetch/resume",
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["paused"], false);
    stack
        .wait_for_status(&id, "succeeded", Duration::from_secs(15))
        .await;

    let audit = get(&stack, &admin, "/api/v1/admin/audit").await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|entry| entry["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["queue_resumed", "queue_paused"], "{audit}");
    assert_eq!(audit["items"][1]["actor_email"], "ops@example.com");
    assert_eq!(audit["items"][1]["target"], "queue:bulk_fetch");
}

#[tokio::test]
async fn an_operator_cancels_a_running_job_and_its_worker_stops_it() {
    let stack = Stack::start().await;
    let worker = stack.start_worker(&[]).await;
    let admin = admin_token(&stack).await;
    stack.upstream.script([Step {
        status: 200,
        delay_ms: 60_000,
    }]);
    let id = stack.bulk(&coins(&["bitcoin"])).await;
    wait_until(
        "the job to call upstream",
        Duration::from_secs(10),
        || async { stack.upstream.calls() == 1 },
    )
    .await;
    assert_eq!(stack.job(&id).await["status"], "running");

    let (status, cancelled) = post(
        &stack,
        &admin,
        &format!("/api/v1/admin/jobs/{id}/cancel"),
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    wait_until(
        "the worker to stop the job",
        Duration::from_secs(10),
        || async {
            metrics_of(&worker)
                .await
                .contains(r#"jobs_completed_total{queue="bulk_fetch",outcome="cancelled"} 1"#)
        },
    )
    .await;
    let job = stack.job(&id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert_eq!(job["result"], Value::Null);

    // Cancelling a finished job is refused and changes nothing.
    let (status, problem) = post(
        &stack,
        &admin,
        &format!("/api/v1/admin/jobs/{id}/cancel"),
        json!(null),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "CONFLICT");

    // The worker's slot is free again: the next job runs, and the stopped one never reran.
    let next = stack.bulk(&coins(&["ethereum"])).await;
    stack
        .wait_for_status(&next, "succeeded", Duration::from_secs(15))
        .await;
    assert_eq!(stack.upstream.calls(), 2);
}

#[tokio::test]
async fn operators_find_retry_and_discard_dead_jobs_and_every_action_is_audited() {
    let stack = Stack::start().await;
    let _worker = stack
        .start_worker(&[
            ("WORKER_RETRY_BASE", "20ms"),
            ("WORKER_RETRY_MAX", "50ms"),
            // Every scripted failure must reach the fake, not be cut short by the breaker.
            ("COINGECKO_BREAKER_FAILURES", "1000"),
        ])
        .await;
    let admin = admin_token(&stack).await;
    // Three jobs of five attempts each fail every attempt: exactly 15 failing answers.
    stack.upstream.script((0..15).map(|_| Step {
        status: 500,
        delay_ms: 0,
    }));
    let mut ids = Vec::new();
    for coin in ["bitcoin", "ethereum", "solana"] {
        ids.push(stack.bulk(&coins(&[coin])).await);
    }
    for id in &ids {
        stack
            .wait_for_status(id, "dead", Duration::from_secs(30))
            .await;
    }

    let dead = get(
        &stack,
        &admin,
        "/api/v1/admin/jobs?status=dead&queue=bulk_fetch",
    )
    .await;
    assert_eq!(dead["total"], 3, "{dead}");
    let found = get(&stack, &admin, "/api/v1/admin/jobs?q=ETHER").await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["items"][0]["id"], ids[1].as_str());
    let detail = get(&stack, &admin, &format!("/api/v1/admin/jobs/{}", ids[0])).await;
    let attempts: Vec<i64> = detail["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| error["attempt"].as_i64().expect("attempt"))
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4, 5], "{detail}");
    assert!(detail["enqueued_at"].is_string(), "{detail}");

    // One job by id: it runs again from its first attempt, its history kept.
    let (status, retried) = post(
        &stack,
        &admin,
        &format!("/api/v1/admin/jobs/{}/retry", ids[0]),
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{retried}");
    let job = stack
        .wait_for_status(&ids[0], "succeeded", Duration::from_secs(15))
        .await;
    assert_eq!(job["attempts"], 1, "{job}");
    let detail = get(&stack, &admin, &format!("/api/v1/admin/jobs/{}", ids[0])).await;
    assert_eq!(detail["errors"].as_array().map(Vec::len), Some(5));

    // A succeeded job cannot be retried; nothing changes.
    let (status, problem) = post(
        &stack,
        &admin,
        &format!("/api/v1/admin/jobs/{}/retry", ids[0]),
        json!(null),
    )
    .await;
    assert_eq!((status, &problem["code"]), (409, &json!("CONFLICT")));

    // By filter: the dead jobs whose arguments mention ethereum.
    let (status, retried) = post(
        &stack,
        &admin,
        "/api/v1/admin/jobs/retry",
        json!({"q": "ethereum"}),
    )
    .await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["affected"], 1);
    stack
        .wait_for_status(&ids[1], "succeeded", Duration::from_secs(15))
        .await;

    // Hostile filters are refused whole.
    let (status, problem) = post(
        &stack,
        &admin,
        "/api/v1/admin/jobs/discard",
        json!({"status": "succeeded"}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let (status, _) = post(
        &stack,
        &admin,
        "/api/v1/admin/jobs/discard",
        json!({"q": "a\u{0}b"}),
    )
    .await;
    assert_eq!(status, 422);

    // Discard what is left dead.
    let (status, discarded) = post(&stack, &admin, "/api/v1/admin/jobs/discard", json!({})).await;
    assert_eq!(status, 200, "{discarded}");
    assert_eq!(discarded["affected"], 1);
    let (status, _) = call(
        &stack,
        &admin,
        reqwest::Method::GET,
        &format!("/api/v1/admin/jobs/{}", ids[2]),
        None,
    )
    .await;
    assert_eq!(status, 404);

    let audit = get(&stack, &admin, "/api/v1/admin/audit?per_page=100").await;
    let entries: Vec<(String, i64)> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().expect("action").to_owned(),
                entry["affected"].as_i64().expect("affected"),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("jobs_discarded".to_owned(), 1),
            ("jobs_retried".to_owned(), 1),
            ("job_retried".to_owned(), 1),
        ],
        "{audit}"
    );
    assert_eq!(audit["items"][1]["details"]["q"], "ethereum");

    // Not for users.
    let (status, _) = call(
        &stack,
        &stack.token,
        reqwest::Method::GET,
        "/api/v1/admin/jobs",
        None,
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn the_binaries_run_their_queues_on_a_redis_cluster() {
    let nodes = test_support::redis_cluster().join(",");
    let stack = Stack::start_with(
        test_support::redis_url(),
        &[("QUEUE_REDIS_CLUSTER_NODES", nodes.clone())],
    )
    .await;
    let _worker = stack
        .start_worker(&[("QUEUE_REDIS_CLUSTER_NODES", nodes.as_str())])
        .await;
    let admin = admin_token(&stack).await;

    let id = stack.bulk(&coins(&["bitcoin"])).await;
    stack
        .wait_for_status(&id, "succeeded", Duration::from_secs(20))
        .await;

    // Operations work on the cluster too: a paused queue starts nothing until resumed.
    let (status, _) = post(
        &stack,
        &admin,
        "/api/v1/admin/queues/bulk_fetch/pause",
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let held = stack.bulk(&coins(&["ethereum"])).await;
    wait_until(
        "the held job to be ready on the cluster",
        Duration::from_secs(15),
        || async { bulk_queue(&stack, &admin).await["depth"] == 1 },
    )
    .await;
    assert_eq!(stack.job(&held).await["status"], "queued");
    let (status, _) = post(
        &stack,
        &admin,
        "/api/v1/admin/queues/bulk_fetch/resume",
        json!(null),
    )
    .await;
    assert_eq!(status, 200);
    stack
        .wait_for_status(&held, "succeeded", Duration::from_secs(20))
        .await;
}
