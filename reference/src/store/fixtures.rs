//! What the store's unit tests share: a store of their own, a task and its 202 answer.

use std::time::Duration;

use super::{NewTask, Store};
use crate::{idempotency::StoredResponse, model::TaskSpec};

/// A store on a SQLite file of its own; the directory lives as long as the store is used.
pub(crate) async fn sqlite_for_test() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (
        Store::connect(&url, Duration::from_secs(5)).await.unwrap(),
        dir,
    )
}

/// An echo task with an id of its own.
pub(crate) fn task() -> NewTask {
    NewTask {
        id: uuid::Uuid::now_v7(),
        spec: TaskSpec::Echo(serde_json::json!({"n": 1})),
        callback_url: None,
    }
}

/// The answer a submission of `task` stores under its key.
pub(crate) fn response(task: &NewTask) -> StoredResponse {
    StoredResponse {
        status: 202,
        body: task.id.to_string().into_bytes(),
        location: None,
    }
}
