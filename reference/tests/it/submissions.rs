//! Undoing a submission that did not finish, on both store backends: a task nothing touched
//! goes and its key is freed; a task whose message was published, or that a worker started,
//! stays and its key replays the submission's answer; one whose task was never written frees
//! its key.

use std::time::Duration;

use reference::{
    idempotency::{KeyLease, Reservation, StoredResponse},
    model::TaskSpec,
    store::{Abandoned, NewTask, Store},
};

use crate::stores::{on_mysql, on_sqlite};

const LEASE: Duration = Duration::from_secs(60);

fn answer(task: &NewTask) -> StoredResponse {
    StoredResponse {
        status: 202,
        body: task.id.to_string().into_bytes(),
        location: None,
    }
}

/// Reserves `key`, which must be free.
async fn reserve(store: &Store, key: &str) -> KeyLease {
    let Reservation::Reserved(lease) = store.reserve_key(key, "fp", LEASE).await.unwrap() else {
        panic!("a fresh key is reserved")
    };
    lease
}

/// The task a submission under `key` writes.
fn task_for(key: &str) -> NewTask {
    NewTask {
        id: uuid::Uuid::now_v7(),
        spec: TaskSpec::Echo(serde_json::json!({"key": key})),
        callback_url: None,
    }
}

/// Reserves `key` and writes a task under it as the confirm publisher does; a worker starts it
/// if `started`; then the submission is undone, its message `published` or not.
async fn abandoned(
    store: &Store,
    key: &str,
    published: bool,
    started: bool,
) -> (NewTask, Abandoned) {
    let lease = reserve(store, key).await;
    let task = task_for(key);
    store.insert_task(&task, false, None).await.unwrap();
    if started {
        store.start_attempt(task.id).await.unwrap();
    }
    let outcome = undo(store, &lease, &task, published).await;
    (task, outcome)
}

async fn undo(store: &Store, lease: &KeyLease, task: &NewTask, published: bool) -> Abandoned {
    store
        .abandon_submission(lease, task.id, &answer(task), published)
        .await
        .unwrap()
}

async fn undo_paths(url: String) {
    let store = Store::connect(&url, Duration::from_secs(10)).await.unwrap();

    let (task, outcome) = abandoned(&store, "untouched", false, false).await;
    assert_eq!(outcome, Abandoned::Undone);
    assert!(store.get_task(task.id).await.unwrap().is_none());
    assert!(
        matches!(
            store.reserve_key("untouched", "fp", LEASE).await.unwrap(),
            Reservation::Reserved(_)
        ),
        "the key is free for a retry"
    );

    // The submission gave up before its task was written (a slow store): nothing to keep.
    let lease = reserve(&store, "unwritten").await;
    let never = task_for("unwritten");
    assert_eq!(undo(&store, &lease, &never, false).await, Abandoned::Undone);
    assert!(
        matches!(
            store.reserve_key("unwritten", "fp", LEASE).await.unwrap(),
            Reservation::Reserved(_)
        ),
        "a key whose task was never written is freed, not completed with its 202"
    );

    for (key, published, started) in [("published", true, false), ("started", false, true)] {
        let (task, outcome) = abandoned(&store, key, published, started).await;
        assert_eq!(outcome, Abandoned::Kept, "{key}");
        assert!(store.get_task(task.id).await.unwrap().is_some(), "{key}");
        assert_eq!(
            store.reserve_key(key, "fp", LEASE).await.unwrap(),
            Reservation::Replay(answer(&task)),
            "{key}: a retry replays the submission"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undoing_a_submission_on_sqlite() {
    on_sqlite(undo_paths).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undoing_a_submission_on_mysql() {
    on_mysql("undo", undo_paths).await;
}
