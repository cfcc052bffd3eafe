//! Retention: the housekeeping sweep deletes old dedupe records, old finished deliveries and
//! old finished tasks, and nothing else, on both store backends.

use std::time::Duration;

use reference::{
    idempotency::Reservation,
    model::now_ms,
    store::{DeliveryOutcome, Store},
};
use sqlx::AnyPool;

use crate::stores::{on_mysql, on_sqlite};

const DAY_MS: i64 = 24 * 3600 * 1000;

async fn open(url: &str) -> (Store, AnyPool) {
    let store = Store::connect(url, Duration::from_secs(10)).await.unwrap();
    // A second pool sees the tables as an operator would (the store's own is private).
    let pool = AnyPool::connect(url).await.unwrap();
    (store, pool)
}

async fn processed(pool: &AnyPool, id: &str, at: i64) {
    sqlx::query("INSERT INTO processed_messages (message_id, processed_at) VALUES (?, ?)")
        .bind(id)
        .bind(at)
        .execute(pool)
        .await
        .unwrap();
}

async fn delivery(pool: &AnyPool, event: &str, state: &str, at: i64) {
    sqlx::query(
        "INSERT INTO deliveries (task_id, event_id, kind, target, body, next_attempt_at, state) \
         VALUES (?, ?, 'event', 'task.succeeded', '{}', ?, ?)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(event)
    .bind(at)
    .bind(state)
    .execute(pool)
    .await
    .unwrap();
}

async fn task(pool: &AnyPool, id: &str, status: &str, created_at: i64) {
    sqlx::query(
        "INSERT INTO tasks (id, kind, payload, status, created_at, updated_at) \
         VALUES (?, 'echo', '{}', ?, ?, ?)",
    )
    .bind(id)
    .bind(status)
    .bind(created_at)
    .bind(created_at)
    .execute(pool)
    .await
    .unwrap();
}

async fn count(pool: &AnyPool, sql: &str, key: &str) -> i64 {
    use sqlx::Row;
    sqlx::query(sql)
        .bind(key)
        .fetch_one(pool)
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

async fn has_processed(pool: &AnyPool, id: &str) -> bool {
    count(
        pool,
        "SELECT COUNT(*) FROM processed_messages WHERE message_id = ?",
        id,
    )
    .await
        == 1
}

async fn has_delivery(pool: &AnyPool, event: &str) -> bool {
    count(
        pool,
        "SELECT COUNT(*) FROM deliveries WHERE event_id = ?",
        event,
    )
    .await
        == 1
}

/// Old dedupe records and old delivered / given-up deliveries go, in bounded batches; recent
/// rows and deliveries still owed stay, however old.
async fn sweep_deletes_only_old_finished_rows(url: String) {
    let (store, pool) = open(&url).await;
    let now = now_ms();
    let (old, recent) = (now - 10 * DAY_MS, now - DAY_MS);
    let before = now - 7 * DAY_MS;

    for i in 0..5 {
        processed(&pool, &format!("old-{i}"), old).await;
    }
    processed(&pool, "recent", recent).await;
    delivery(&pool, "old-delivered", "delivered", old).await;
    delivery(&pool, "old-given-up", "given_up", old).await;
    delivery(&pool, "old-pending", "pending", old).await;
    delivery(&pool, "recent-delivered", "delivered", recent).await;
    delivery(&pool, "recent-given-up", "given_up", recent).await;

    // One batch of two per table: bounded, and it says more is left.
    let first = store.sweep_retention(before, 2, 1).await.unwrap();
    assert_eq!((first.processed, first.deliveries), (2, 2), "{first:?}");
    assert!(first.more, "{first:?}");

    let rest = store.sweep_retention(before, 2, 100).await.unwrap();
    assert_eq!((rest.processed, rest.deliveries), (3, 0), "{rest:?}");
    assert!(!rest.more, "{rest:?}");

    for i in 0..5 {
        assert!(!has_processed(&pool, &format!("old-{i}")).await, "old-{i}");
    }
    assert!(has_processed(&pool, "recent").await);
    assert!(!has_delivery(&pool, "old-delivered").await);
    assert!(!has_delivery(&pool, "old-given-up").await);
    assert!(has_delivery(&pool, "old-pending").await, "still owed");
    assert!(has_delivery(&pool, "recent-delivered").await);
    assert!(has_delivery(&pool, "recent-given-up").await);

    let again = store.sweep_retention(before, 2, 100).await.unwrap();
    assert_eq!((again.processed, again.deliveries), (0, 0), "{again:?}");

    // A delivery owed since long ago but made just now counts its age from now.
    delivery(&pool, "late", "pending", old).await;
    let claimed = store
        .claim_deliveries(10, Duration::from_secs(30))
        .await
        .unwrap();
    let late = claimed.iter().find(|d| d.event_id == "late").expect("due");
    store
        .record_deliveries(vec![(late.id, DeliveryOutcome::Delivered)])
        .await
        .unwrap();
    store.sweep_retention(before, 2, 100).await.unwrap();
    let delivered = "SELECT COUNT(*) FROM deliveries WHERE event_id = ? AND state = 'delivered'";
    assert_eq!(
        count(&pool, delivered, "late").await,
        1,
        "delivered just now"
    );

    pool.close().await;
    store.close().await;
}

/// Old tasks that ended go, in bounded batches; a task still pending or running stays however
/// old, and so does a recent one that ended.
async fn sweep_deletes_only_old_finished_tasks(url: String) {
    let (store, pool) = open(&url).await;
    let now = now_ms();
    let (old, recent) = (now - 40 * DAY_MS, now - DAY_MS);
    let before = now - 30 * DAY_MS;
    for (id, status, at) in [
        ("old-success", "SUCCESS", old),
        ("old-failed", "FAILED", old),
        ("old-success-2", "SUCCESS", old),
        ("old-pending", "PENDING", old),
        ("old-running", "RUNNING", old),
        ("recent-success", "SUCCESS", recent),
    ] {
        task(&pool, id, status, at).await;
    }

    let first = store.sweep_finished_tasks(before, 2, 1).await.unwrap();
    assert_eq!(first, (2, true), "one batch of two, and more left");
    let rest = store.sweep_finished_tasks(before, 2, 100).await.unwrap();
    assert_eq!(rest, (1, false));

    let has_task = |id: &'static str| {
        let pool = pool.clone();
        async move { count(&pool, "SELECT COUNT(*) FROM tasks WHERE id = ?", id).await == 1 }
    };
    for gone in ["old-success", "old-failed", "old-success-2"] {
        assert!(!has_task(gone).await, "{gone}");
    }
    for kept in ["old-pending", "old-running", "recent-success"] {
        assert!(has_task(kept).await, "{kept}");
    }
    pool.close().await;
    store.close().await;
}

/// Expired idempotency keys go in bounded batches, younger ones stay.
async fn sweep_forgets_only_expired_keys(url: String) {
    let (store, _pool) = open(&url).await;
    for key in ["a", "b", "c"] {
        store
            .reserve_key(key, "fp", Duration::from_secs(60))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let before = now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    store
        .reserve_key("young", "fp", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        store.sweep_expired_keys(before, 2, 1).await.unwrap(),
        (2, true)
    );
    assert_eq!(
        store.sweep_expired_keys(before, 2, 10).await.unwrap(),
        (1, false)
    );
    let young = store
        .reserve_key("young", "fp", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(young, Reservation::InFlight, "a young key stays");
    store.close().await;
}

#[tokio::test]
async fn sqlite_sweep_forgets_only_expired_keys() {
    on_sqlite(sweep_forgets_only_expired_keys).await;
}

#[tokio::test]
async fn mysql_sweep_forgets_only_expired_keys() {
    on_mysql("key_retention", sweep_forgets_only_expired_keys).await;
}

#[tokio::test]
async fn sqlite_sweep_deletes_only_old_finished_tasks() {
    on_sqlite(sweep_deletes_only_old_finished_tasks).await;
}

#[tokio::test]
async fn mysql_sweep_deletes_only_old_finished_tasks() {
    on_mysql("task_retention", sweep_deletes_only_old_finished_tasks).await;
}

#[tokio::test]
async fn sqlite_sweep_deletes_only_old_finished_rows() {
    on_sqlite(sweep_deletes_only_old_finished_rows).await;
}

#[tokio::test]
async fn mysql_sweep_deletes_only_old_finished_rows() {
    on_mysql("retention", sweep_deletes_only_old_finished_rows).await;
}
