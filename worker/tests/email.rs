//! Email jobs through the real worker binary: real Postgres and Redis, a real SMTP server
//! (or the outbox directory), jobs accepted with `insert_once` and handed to Redis as the
//! API does. Every wait has a deadline and waits for a condition, never for time to pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use common::alerts::Condition;
use common::config::RedisConfig;
use common::email::tokens::{self, TokenPurpose};
use common::email::{EmailMessage, Recipient, SendEmail};
use common::jobs::queues::{QueueDefaults, QueueSet};
use common::jobs::store::{self, OutboxJob};
use common::jobs::{JobKind, JobStatus, Queue};
use common::notifications::{AlertFired, JobFinished};
use rust_decimal::Decimal;
use sqlx::PgPool;
use test_support::smtp::{ReceivedMail, SmtpServer};
use test_support::{
    RunningBinary, TestDatabase, redis_prefix, redis_url, start_worker, wait_until,
};
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(30);
const DOMAIN: &str = "coinpulse.localhost";

/// A database, a Redis prefix, the queues and an SMTP server for one test.
struct Stack {
    db: TestDatabase,
    pool: PgPool,
    prefix: String,
    queues: QueueSet,
    smtp: SmtpServer,
}

impl Stack {
    async fn start() -> Self {
        let db = TestDatabase::create().await;
        let pool = db.pool().await;
        let prefix = redis_prefix();
        let redis = RedisConfig {
            url: redis_url().as_str().into(),
            key_prefix: prefix.clone(),
            timeout: Duration::from_secs(2),
            queue_cluster_nodes: Vec::new(),
        };
        let queues = QueueSet::new(&redis, &QueueDefaults::default()).expect("queues");
        let smtp = SmtpServer::start().await;
        Self {
            db,
            pool,
            prefix,
            queues,
            smtp,
        }
    }

    /// A worker sending to the test's SMTP server, `extra` overriding any setting.
    async fn worker(&self, extra: &[(&str, String)]) -> RunningBinary {
        let mut settings = vec![
            ("WORKER_RETRY_MAX", "300ms".to_owned()),
            ("WORKER_QUEUES", Queue::Email.as_str().to_owned()),
            ("SMTP_URL", self.smtp.url()),
            ("APP_URL", "http://app.test".to_owned()),
        ];
        settings.extend(extra.iter().cloned());
        start_worker(
            Path::new(env!("CARGO_BIN_EXE_worker")),
            self.db.url(),
            &self.prefix,
            &settings,
        )
        .await
    }

    /// An account written directly (the worker reads only these columns).
    async fn user(&self, email: &str, username: &str) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO users (id, email, username, password_hash) VALUES ($1, $2, $3, 'x')",
        )
        .bind(id)
        .bind(email)
        .bind(username)
        .execute(&self.pool)
        .await
        .expect("insert user");
        id
    }

    /// Accepts the email job under `job_id` and hands it to Redis.
    async fn accept_as(&self, job_id: Uuid, job: &SendEmail) -> OutboxJob {
        let row = store::insert_once(&self.pool, job_id, job)
            .await
            .expect("insert job")
            .expect("a new job");
        let outbox = OutboxJob::from(&row);
        self.dispatch(&outbox).await;
        outbox
    }

    async fn accept(&self, job: &SendEmail) -> OutboxJob {
        self.accept_as(job.job_id(), job).await
    }

    async fn dispatch(&self, job: &OutboxJob) {
        self.queues
            .dispatch(&self.pool, std::slice::from_ref(job))
            .await
            .expect("dispatch");
    }

    /// The job's status, attempts and result.
    async fn job(&self, id: Uuid) -> (JobStatus, i32, Option<serde_json::Value>) {
        sqlx::query_as::<_, (JobStatus, i32, Option<serde_json::Value>)>(
            "SELECT status, attempts, result FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .expect("job")
    }

    /// Waits until the job ended and returns its result's outcome.
    async fn outcome(&self, id: Uuid) -> String {
        wait_until("the email job to finish", DEADLINE, || async {
            matches!(self.job(id).await.0, JobStatus::Succeeded | JobStatus::Dead)
        })
        .await;
        let (status, _, result) = self.job(id).await;
        assert_eq!(status, JobStatus::Succeeded, "{result:?}");
        result.expect("result")["outcome"]
            .as_str()
            .expect("outcome")
            .to_owned()
    }

    async fn deliveries(&self, event: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM email_deliveries WHERE event_id = $1")
            .bind(event)
            .fetch_one(&self.pool)
            .await
            .expect("deliveries")
    }

    async fn mail(&self, event: Uuid) -> ReceivedMail {
        let id = message_id(event);
        wait_until(&format!("the message {id}"), DEADLINE, || async {
            !self.mails(event).is_empty()
        })
        .await;
        self.mails(event).remove(0)
    }

    fn mails(&self, event: Uuid) -> Vec<ReceivedMail> {
        let id = message_id(event);
        self.smtp
            .messages()
            .into_iter()
            .filter(|mail| mail.header("Message-ID").as_deref() == Some(id.as_str()))
            .collect()
    }
}

fn message_id(event: Uuid) -> String {
    format!("<{event}@{DOMAIN}>")
}

fn email(event_id: Uuid, to: Recipient, message: EmailMessage) -> SendEmail {
    SendEmail {
        event_id,
        to,
        message,
    }
}

fn fired(note: &str) -> AlertFired {
    AlertFired {
        alert_id: Uuid::new_v4(),
        sequence: 1,
        coin_id: "bitcoin".into(),
        vs_currency: "usd".into(),
        condition: Condition::Above,
        target: Decimal::new(100, 0),
        price: Decimal::new(10125, 2),
        change_24h_pct: Some(Decimal::new(35, 1)),
        note: Some(note.to_owned()),
        fired_at: Utc::now(),
    }
}

/// The token printed on the line after "token" in the text part.
fn token_in(text: &str) -> String {
    let link = text
        .lines()
        .find(|line| line.contains("?token="))
        .expect("a link with a token");
    let token = link.rsplit("?token=").next().expect("token").trim();
    assert!(
        text.contains(&format!("\n{token}")),
        "the bare token: {text}"
    );
    token.to_owned()
}

#[tokio::test]
async fn every_message_arrives_with_its_headers_and_both_parts() {
    let stack = Stack::start().await;
    let user = stack.user("ann@example.com", "ann").await;
    let _worker = stack.worker(&[]).await;
    let to = || Recipient::User { user_id: user };
    let cases = [
        (
            email(Uuid::new_v4(), to(), EmailMessage::Welcome),
            "Welcome to Coinpulse",
            Some("http://app.test/verify-email?token="),
        ),
        (
            email(Uuid::new_v4(), to(), EmailMessage::VerifyEmail),
            "Verify your email address",
            Some("http://app.test/verify-email?token="),
        ),
        (
            email(
                Uuid::new_v4(),
                Recipient::Address {
                    email: "ANN@example.com".into(),
                },
                EmailMessage::PasswordReset,
            ),
            "Reset your password",
            Some("http://app.test/reset-password?token="),
        ),
        (
            email(Uuid::new_v4(), to(), EmailMessage::PasswordChanged),
            "Your password was changed",
            None,
        ),
        (
            email(
                Uuid::new_v4(),
                to(),
                EmailMessage::PriceAlert(fired("time to sell")),
            ),
            "Price alert: bitcoin",
            None,
        ),
        (
            email(
                Uuid::new_v4(),
                to(),
                EmailMessage::JobFinished(JobFinished {
                    job_id: Uuid::new_v4(),
                    kind: JobKind::BulkFetch,
                    status: JobStatus::Succeeded,
                    summary: "3 of 4 coins priced".into(),
                }),
            ),
            "Your bulk price fetch finished",
            None,
        ),
    ];
    for (job, _, _) in &cases {
        stack.accept(job).await;
    }
    for (job, subject, link) in &cases {
        assert_eq!(stack.outcome(job.job_id()).await, "sent");
        let mail = stack.mail(job.event_id).await;
        assert_eq!(mail.to, vec!["ann@example.com".to_owned()]);
        assert_eq!(mail.from, format!("no-reply@{DOMAIN}"));
        let from = mail.header("From").expect("From");
        assert!(from.contains(&format!("<no-reply@{DOMAIN}>")), "{from}");
        let header_to = mail.header("To").expect("To");
        assert!(header_to.contains("ann") && header_to.contains("<ann@example.com>"));
        assert!(mail.header("Date").is_some());
        let got = mail.subject().expect("Subject");
        assert!(got.starts_with(subject), "{got}");
        let text = mail.text_part().expect("text part");
        let html = mail.html_part().expect("html part");
        assert!(text.contains("ann") && html.contains("ann"));
        if let Some(link) = link {
            assert!(text.contains(link), "{text}");
            let token = token_in(&text);
            assert!(html.contains(&token), "{html}");
        }
        if let EmailMessage::PriceAlert(_) = job.message {
            assert!(text.contains("time to sell") && html.contains("time to sell"));
        }
        if let EmailMessage::JobFinished(_) = job.message {
            assert!(text.contains("3 of 4 coins priced"));
        }
        assert_eq!(stack.deliveries(job.event_id).await, 1);
    }

    // The reset's token works once.
    let reset = stack.mail(cases[2].0.event_id).await;
    let token = token_in(&reset.text_part().expect("text"));
    let used = tokens::consume(&stack.pool, &token, TokenPurpose::PasswordReset)
        .await
        .expect("consume")
        .expect("the token is valid");
    assert_eq!(used.user_id, user);
    assert!(
        tokens::consume(&stack.pool, &token, TokenPurpose::PasswordReset)
            .await
            .expect("consume again")
            .is_none()
    );
    assert_eq!(stack.smtp.messages().len(), cases.len());
}

#[tokio::test]
async fn a_hostile_username_and_note_are_escaped_and_add_no_header() {
    let stack = Stack::start().await;
    let username = "<script>alert(1)</script>\r\nBcc: evil@example.com";
    let user = stack.user("mallory@example.com", username).await;
    let _worker = stack.worker(&[]).await;
    let alert = email(
        Uuid::new_v4(),
        Recipient::User { user_id: user },
        EmailMessage::PriceAlert(fired(
            "<img src=x onerror=alert(2)>\r\nCc: evil@example.com",
        )),
    );
    let welcome = email(
        Uuid::new_v4(),
        Recipient::User { user_id: user },
        EmailMessage::Welcome,
    );
    stack.accept(&alert).await;
    stack.accept(&welcome).await;
    for job in [&alert, &welcome] {
        assert_eq!(stack.outcome(job.job_id()).await, "sent");
        let mail = stack.mail(job.event_id).await;
        assert_eq!(mail.to, vec!["mallory@example.com".to_owned()]);
        let names: Vec<String> = mail
            .header_names()
            .iter()
            .map(|name| name.to_ascii_lowercase())
            .collect();
        assert!(!names.contains(&"bcc".to_owned()), "{names:?}");
        assert!(!names.contains(&"cc".to_owned()), "{names:?}");
        let subject = mail.subject().expect("subject");
        assert!(!subject.contains('\r') && !subject.contains('\n'));
        let html = mail.html_part().expect("html");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<img"), "{html}");
    }
    assert_eq!(stack.smtp.messages().len(), 2);
}

#[tokio::test]
async fn one_event_is_sent_once_however_often_it_runs() {
    let stack = Stack::start().await;
    let user = stack.user("bob@example.com", "bob").await;
    let job = email(
        Uuid::new_v4(),
        Recipient::User { user_id: user },
        EmailMessage::PasswordChanged,
    );
    // Accepted twice under its own id: the second is dropped.
    let first = stack.accept(&job).await;
    assert!(
        store::insert_once(&stack.pool, job.job_id(), &job)
            .await
            .expect("insert")
            .is_none()
    );
    // Dispatched twice, and a second job (another id) for the same event, run by two workers.
    stack.dispatch(&first).await;
    let twin = stack.accept_as(Uuid::new_v4(), &job).await;
    let _one = stack.worker(&[]).await;
    let _two = stack.worker(&[]).await;
    // Each run either sent it or found it sent (a re-delivered run may overwrite "sent").
    for id in [first.id, twin.id] {
        let outcome = stack.outcome(id).await;
        assert!(
            ["sent", "duplicate"].contains(&outcome.as_str()),
            "{outcome}"
        );
    }
    assert_eq!(stack.mails(job.event_id).len(), 1);
    assert_eq!(stack.smtp.messages().len(), 1);
    assert_eq!(stack.deliveries(job.event_id).await, 1);
}

#[tokio::test]
async fn a_message_accepted_while_the_server_is_down_arrives_once_it_is_back() {
    let stack = Stack::start().await;
    let user = stack.user("cy@example.com", "cy").await;
    // Ten attempts at up to 1 s apart outlast the outage the test makes.
    let _worker = stack
        .worker(&[
            ("WORKER_RETRY_BASE", "200ms".into()),
            ("WORKER_RETRY_MAX", "1s".into()),
        ])
        .await;
    stack.smtp.stop();
    let job = email(
        Uuid::new_v4(),
        Recipient::User { user_id: user },
        EmailMessage::PasswordReset,
    );
    let row = stack.accept(&job).await;
    wait_until("two failed attempts", DEADLINE, || async {
        stack.job(row.id).await.1 >= 2
    })
    .await;
    // Nothing was recorded and no token was left behind by the failed attempts.
    assert_eq!(stack.deliveries(job.event_id).await, 0);
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM account_tokens WHERE user_id = $1")
        .bind(user)
        .fetch_one(&stack.pool)
        .await
        .expect("tokens");
    assert_eq!(tokens, 0);
    assert_ne!(stack.job(row.id).await.0, JobStatus::Dead);

    stack.smtp.restart().await;
    assert_eq!(stack.outcome(row.id).await, "sent");
    let mail = stack.mail(job.event_id).await;
    let token = token_in(&mail.text_part().expect("text"));
    assert!(
        tokens::consume(&stack.pool, &token, TokenPurpose::PasswordReset)
            .await
            .expect("consume")
            .is_some()
    );
    assert_eq!(stack.smtp.messages().len(), 1);
    assert_eq!(stack.deliveries(job.event_id).await, 1);
}

#[tokio::test]
async fn without_smtp_url_the_message_is_an_eml_file_in_the_outbox() {
    let stack = Stack::start().await;
    let user = stack.user("dee@example.com", "dee").await;
    let outbox: PathBuf = std::env::temp_dir().join(format!("coinpulse-outbox-{}", Uuid::new_v4()));
    let _worker = stack
        .worker(&[
            ("SMTP_URL", String::new()),
            ("EMAIL_OUTBOX_DIR", outbox.display().to_string()),
        ])
        .await;
    let job = email(
        Uuid::new_v4(),
        Recipient::User { user_id: user },
        EmailMessage::VerifyEmail,
    );
    let row = stack.accept(&job).await;
    assert_eq!(stack.outcome(row.id).await, "outbox");
    let file = outbox.join(format!("{}.eml", job.event_id));
    let eml = std::fs::read_to_string(&file).expect("the .eml file");
    assert!(eml.contains(&format!("Message-ID: {}", message_id(job.event_id))));
    assert!(eml.contains("dee@example.com"));
    let names: Vec<_> = std::fs::read_dir(&outbox)
        .expect("outbox")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "only the finished file: {names:?}");
    assert!(stack.smtp.messages().is_empty());
    std::fs::remove_dir_all(&outbox).expect("clean up");
}

#[tokio::test]
async fn a_reset_for_an_unknown_address_sends_nothing() {
    let stack = Stack::start().await;
    stack.user("eve@example.com", "eve").await;
    let _worker = stack.worker(&[]).await;
    let job = email(
        Uuid::new_v4(),
        Recipient::Address {
            email: "nobody@example.com".into(),
        },
        EmailMessage::PasswordReset,
    );
    let row = stack.accept(&job).await;
    assert_eq!(stack.outcome(row.id).await, "no_recipient");
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM account_tokens")
        .fetch_one(&stack.pool)
        .await
        .expect("tokens");
    assert_eq!(tokens, 0);
    assert_eq!(stack.deliveries(job.event_id).await, 0);
    assert!(stack.smtp.messages().is_empty());
}
