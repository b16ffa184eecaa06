//! Portfolio import and export, end to end: files uploaded to the real `api`, read and applied
//! (or refused) by the real `worker`, exported, downloaded and imported again.

mod stack;

use std::time::Duration;

use serde_json::{Value, json};
use test_support::{http_client, redis_url};

use self::stack::*;

const DEADLINE: Duration = Duration::from_secs(60);

/// Calls the api as `token` with a raw body of `content_type`; returns the status and the
/// JSON body (`null` when empty).
async fn send(
    stack: &Stack,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, Value) {
    let mut request = http_client().request(method, format!("{}{path}", stack.api.base_url));
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    if let Some((content_type, bytes)) = body {
        request = request.header("content-type", content_type).body(bytes);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body)
}

async fn new_portfolio(stack: &Stack, name: &str) -> String {
    let body = serde_json::to_vec(&json!({"name": name})).expect("json");
    let (status, portfolio) = send(
        stack,
        &stack.token,
        reqwest::Method::POST,
        "/api/v1/portfolios",
        Some(("application/json", body)),
    )
    .await;
    assert_eq!(status, 201, "{portfolio}");
    portfolio["id"].as_str().expect("id").to_owned()
}

/// Uploads `content` to the portfolio's imports; the accepted job's id.
async fn import(stack: &Stack, portfolio: &str, content_type: &str, content: &[u8]) -> String {
    let (status, job) = send(
        stack,
        &stack.token,
        reqwest::Method::POST,
        &format!("/api/v1/portfolios/{portfolio}/imports"),
        Some((content_type, content.to_vec())),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["kind"], "portfolio_import");
    job["id"].as_str().expect("id").to_owned()
}

async fn finished(stack: &Stack, job: &str) -> Value {
    let done = stack.wait_for_status(job, "succeeded", DEADLINE).await;
    assert_eq!(done["error"], Value::Null, "{done}");
    done
}

/// The portfolio's transactions as the fields an import reads, in ledger order.
async fn transactions(stack: &Stack, portfolio: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 1.. {
        let (status, listed) = send(
            stack,
            &stack.token,
            reqwest::Method::GET,
            &format!("/api/v1/portfolios/{portfolio}/transactions?per_page=100&page={page}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{listed}");
        let items = listed["items"].as_array().expect("items").clone();
        if items.is_empty() {
            break;
        }
        all.extend(items.into_iter().map(|tx| {
            json!([
                tx["coin_id"],
                tx["side"],
                tx["quantity"],
                tx["price"],
                tx["fee"],
                tx["executed_at"],
                tx["note"]
            ])
        }));
    }
    all
}

const GOOD_CSV: &str = "\
executed_at,coin_id,side,quantity,price,fee,note
2024-01-05T10:00:00Z,bitcoin,buy,0.5,42000.50,2.5,first buy
2024-01-05T10:00:00Z,bitcoin,buy,0.5,42000.50,2.5,first buy
2024-01-06,ethereum,transfer_in,3,,,\"from my wallet, the old one\"
2024-02-01T08:30:00.123456Z,bitcoin,sell,0.75,45000,1,
2024-03-01T00:00:00+02:00,ethereum,sell,1.000000000000000001,2500,0,
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_checks_every_row_then_applies_once_and_an_export_imports_again() {
    let stack = Stack::start_with(redis_url(), &[("MAX_IMPORT_BYTES", "3000000".into())]).await;
    let portfolio = new_portfolio(&stack, "Main").await;

    // An export asked for before any worker runs cannot be downloaded yet.
    let (status, early) = send(
        &stack,
        &stack.token,
        reqwest::Method::POST,
        &format!("/api/v1/portfolios/{portfolio}/exports"),
        None,
    )
    .await;
    assert_eq!(status, 202, "{early}");
    let early_id = early["id"].as_str().expect("id");
    let (status, problem) = send(
        &stack,
        &stack.token,
        reqwest::Method::GET,
        &format!("/api/v1/jobs/{early_id}/download"),
        None,
    )
    .await;
    assert_eq!(status, 409, "{problem}");

    // An import whose portfolio is deleted before the job runs adds nothing, and says why.
    let doomed = new_portfolio(&stack, "Doomed").await;
    let orphan = import(&stack, &doomed, "text/csv", GOOD_CSV.as_bytes()).await;
    let (status, _) = send(
        &stack,
        &stack.token,
        reqwest::Method::DELETE,
        &format!("/api/v1/portfolios/{doomed}"),
        None,
    )
    .await;
    assert_eq!(status, 204);

    let worker = stack
        .start_worker(&[("WORKER_QUEUES", "portfolio_files")])
        .await;
    let done = finished(&stack, &orphan).await;
    assert_eq!(done["result"]["outcome"], "rejected", "{done}");
    assert!(
        done["result"]["errors"][0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("portfolio was deleted")),
        "{done}"
    );

    // Every bad row is reported, with its line and field; nothing is added.
    let bad = "\
executed_at,coin_id,side,quantity,price
2024-01-05T10:00:00Z,bitcoin,buy,1,100
last tuesday,bitcoin,buy,1,100
2024-01-06T10:00:00Z,unknownium,buy,1,100
2024-01-07T10:00:00Z,bitcoin,sell,5,100
2024-01-08T10:00:00Z,bitcoin,sell,,100
";
    let job = import(&stack, &portfolio, "text/csv", bad.as_bytes()).await;
    let done = finished(&stack, &job).await;
    let result = &done["result"];
    assert_eq!(result["outcome"], "rejected", "{done}");
    assert_eq!(result["rows"], 5);
    let found: Vec<(u64, &str)> = result["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().expect("line"),
                e["field"].as_str().expect("field"),
            )
        })
        .collect();
    // Field problems first; coins and the ledger are checked on the rows that pass them.
    assert_eq!(
        found,
        [(3, "executed_at"), (4, "coin_id"), (6, "quantity")],
        "{result}"
    );
    assert!(transactions(&stack, &portfolio).await.is_empty());

    // Once every row is valid in itself, the ledger is checked with the new rows in it.
    let oversold = "\
executed_at,coin_id,side,quantity,price
2024-01-05T10:00:00Z,bitcoin,buy,1,100
2024-01-07T10:00:00Z,bitcoin,sell,5,100
";
    let job = import(&stack, &portfolio, "text/csv", oversold.as_bytes()).await;
    let done = finished(&stack, &job).await;
    assert_eq!(done["result"]["outcome"], "rejected", "{done}");
    assert_eq!(done["result"]["errors"][0]["line"], 3, "{done}");
    assert_eq!(done["result"]["errors"][0]["field"], "quantity", "{done}");
    assert!(transactions(&stack, &portfolio).await.is_empty());

    // A good file is applied whole, with its progress on the job.
    let job = import(
        &stack,
        &portfolio,
        "text/csv; charset=utf-8",
        GOOD_CSV.as_bytes(),
    )
    .await;
    let done = finished(&stack, &job).await;
    assert_eq!(done["result"]["outcome"], "applied", "{done}");
    assert_eq!(done["result"]["added"], 5);
    assert_eq!(done["result"]["duplicates"], 0);
    assert_eq!(done["progress"], json!({"done": 5, "total": 5}));
    let imported = transactions(&stack, &portfolio).await;
    assert_eq!(imported.len(), 5);
    assert_eq!(
        imported[2],
        json!([
            "ethereum",
            "transfer_in",
            "3",
            "0",
            "0",
            "2024-01-06T00:00:00Z",
            "from my wallet, the old one"
        ])
    );
    assert_eq!(imported[3][5], "2024-02-01T08:30:00.123456Z");
    assert_eq!(imported[4][2], "1.000000000000000001");

    // The same file again adds nothing: every row is already there.
    let again = import(&stack, &portfolio, "text/csv", GOOD_CSV.as_bytes()).await;
    let done = finished(&stack, &again).await;
    assert_eq!(
        (&done["result"]["added"], &done["result"]["duplicates"]),
        (&json!(0), &json!(5)),
        "{done}"
    );

    // The same job run again (as after a crash between commit and result) adds nothing and
    // answers its first result.
    let pool = stack.db.pool().await;
    sqlx::query(
        "UPDATE jobs SET status = 'queued', attempts = 0, result = NULL, finished_at = NULL,
                         enqueued_at = NULL
         WHERE id = $1::uuid",
    )
    .bind(&job)
    .execute(&pool)
    .await
    .expect("queue the job again");
    let rerun = finished(&stack, &job).await;
    assert_eq!(rerun["result"]["added"], 5, "{rerun}");
    assert_eq!(transactions(&stack, &portfolio).await.len(), 5);

    // Both formats export and import into another portfolio unchanged.
    for format in ["csv", "json"] {
        let (status, export) = send(
            &stack,
            &stack.token,
            reqwest::Method::POST,
            &format!("/api/v1/portfolios/{portfolio}/exports?format={format}"),
            None,
        )
        .await;
        assert_eq!(status, 202, "{export}");
        let export_id = export["id"].as_str().expect("id").to_owned();
        let done = finished(&stack, &export_id).await;
        assert_eq!(done["result"]["rows"], 5, "{done}");
        let download = done["result"]["download"].as_str().expect("download");
        assert_eq!(download, format!("/api/v1/jobs/{export_id}/download"));
        let response = http_client()
            .get(format!("{}{download}", stack.api.base_url))
            .bearer_auth(&stack.token)
            .send()
            .await
            .expect("download");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let disposition = response.headers()["content-disposition"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            disposition.starts_with("attachment; filename=\"portfolio-"),
            "{disposition}"
        );
        assert!(
            disposition.ends_with(&format!(".{format}\"")),
            "{disposition}"
        );
        let file = response.bytes().await.expect("file").to_vec();
        assert_eq!(done["result"]["bytes"], file.len());

        let copy = new_portfolio(&stack, &format!("Copy {format}")).await;
        let media = if format == "csv" {
            "text/csv"
        } else {
            "application/json"
        };
        assert!(content_type.starts_with(media), "{content_type}");
        let job = import(&stack, &copy, media, &file).await;
        let done = finished(&stack, &job).await;
        assert_eq!(done["result"]["added"], 5, "{done}");
        assert_eq!(transactions(&stack, &copy).await, imported, "{format}");

        // Only its owner can download it, and only until it expires.
        let other = register(&stack, &format!("other-{format}")).await;
        let (status, _) = send(&stack, &other, reqwest::Method::GET, download, None).await;
        assert_eq!(status, 404);
        sqlx::query("UPDATE job_files SET expires_at = now() WHERE job_id = $1::uuid")
            .bind(&export_id)
            .execute(&pool)
            .await
            .expect("expire");
        let (status, problem) =
            send(&stack, &stack.token, reqwest::Method::GET, download, None).await;
        assert_eq!(status, 410, "{problem}");
    }

    // An import's job has nothing to download.
    let (status, _) = send(
        &stack,
        &stack.token,
        reqwest::Method::GET,
        &format!("/api/v1/jobs/{job}/download"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    drop(worker);
}

async fn register(stack: &Stack, name: &str) -> String {
    let body = json!({"email": format!("{name}@example.com"), "username": name,
                      "password": "correct-horse-1"});
    let (status, registered) = send(
        stack,
        "",
        reqwest::Method::POST,
        "/api/v1/auth/register",
        Some(("application/json", serde_json::to_vec(&body).expect("json"))),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    registered["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_refused_at_once_when_they_cannot_be_a_portfolio_file() {
    let stack = Stack::start_with(redis_url(), &[("MAX_IMPORT_BYTES", "3000000".into())]).await;
    let portfolio = new_portfolio(&stack, "Main").await;
    let path = format!("/api/v1/portfolios/{portfolio}/imports");
    let post = |content_type: &'static str, body: Vec<u8>| {
        let stack = &stack;
        let path = path.clone();
        async move {
            send(
                stack,
                &stack.token,
                reqwest::Method::POST,
                &path,
                Some((content_type, body)),
            )
            .await
        }
    };
    let (status, problem) = post("application/vnd.ms-excel", b"PK\x03\x04".to_vec()).await;
    assert_eq!(status, 415, "{problem}");
    let (status, problem) = post("text/csv", b"\xff\xfe\x00a".to_vec()).await;
    assert_eq!(
        (status, &problem["errors"][0]["field"]),
        (422, &json!("file")),
        "{problem}"
    );
    let (status, problem) = post("text/csv", b"\n\n".to_vec()).await;
    assert_eq!(status, 422, "{problem}");
    let (status, problem) = post("application/json", b"{\"activities\": [".to_vec()).await;
    assert_eq!(status, 400, "{problem}");
    let (status, problem) = post(
        "application/json",
        br#"{"activities": [{"type": "BUY", "symbol": "bitcoin", "quantity": "lots"}]}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect();
    assert_eq!(
        fields,
        ["activities[0].quantity", "activities[0].date"],
        "{problem}"
    );

    // Larger than a JSON body may be, within the import limit: accepted.
    let mut big = String::from("executed_at,coin_id,side,quantity,price\n");
    while big.len() < 2_000_000 {
        big.push_str("2024-01-05T10:00:00Z,bitcoin,buy,0.001,42000\n");
    }
    let (status, job) = post("text/csv", big.clone().into_bytes()).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["payload"]["bytes"], big.len());
    // Beyond it: 413.
    let (status, problem) = post("text/csv", vec![b'a'; 3_000_001]).await;
    assert_eq!(status, 413, "{problem}");

    // Another user's portfolio is not there.
    let other = register(&stack, "other").await;
    let (status, _) = send(
        &stack,
        &other,
        reqwest::Method::POST,
        &path,
        Some(("text/csv", GOOD_CSV.as_bytes().to_vec())),
    )
    .await;
    assert_eq!(status, 404);
    let pool = stack.db.pool().await;
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'portfolio_import'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(jobs, 1, "only the accepted upload became a job");
}
