//! User events against a real Redis: each history entry names the one written before it
//! (`prev`), however the publisher batches them, so a reader can tell a gap from a quiet spell.

use std::time::Duration;

use common::events::{Event, HistoryConfig, Publisher, history_key};
use common::redis::Redis;
use test_support::redis_client;
use uuid::Uuid;

/// Every entry of `user_id`'s history, oldest first: its id and its `prev` field.
async fn chain(redis: &Redis, user_id: Uuid) -> Vec<(String, String)> {
    let mut conn = redis.conn().await.expect("redis");
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(redis.key(&history_key(user_id)))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("xrange");
    entries
        .into_iter()
        .map(|(id, fields)| {
            let prev = fields
                .chunks_exact(2)
                .find(|pair| pair[0] == "prev")
                .map(|pair| pair[1].clone())
                .expect("a prev field");
            (id, prev)
        })
        .collect()
}

#[tokio::test]
async fn events_published_together_each_name_the_entry_before_them() {
    let redis = redis_client();
    let publisher = Publisher::new(
        redis.clone(),
        HistoryConfig {
            max_len: 1000,
            max_age: Duration::from_secs(3600),
        },
    );
    let user_id = Uuid::now_v7();
    // Two rounds of many events at once: most share a script call with others of the same
    // user, and the second round's first entry follows the first round's last.
    for round in 0..2 {
        let mut publishing = tokio::task::JoinSet::new();
        for n in 0..100 {
            let publisher = publisher.clone();
            publishing.spawn(async move {
                let event = Event::new("job", serde_json::json!({ "round": round, "n": n }));
                publisher.to_user(user_id, &event).await
            });
        }
        while let Some(published) = publishing.join_next().await {
            published.expect("task").expect("published");
        }
    }
    let entries = chain(&redis, user_id).await;
    assert_eq!(entries.len(), 200);
    assert_eq!(entries[0].1, "", "the first entry follows nothing");
    for pair in entries.windows(2) {
        assert_eq!(pair[1].1, pair[0].0, "each entry names the one before it");
    }
}
