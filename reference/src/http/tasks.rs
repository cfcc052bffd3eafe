//! `/api/v1/tasks` and `/api/v1/accounts`: submission with Idempotency-Key, status, balances.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::Response,
};

use super::{
    extract::{single_header, JsonBody, PathId},
    ApiState,
};
use crate::{
    config::PublishStrategy,
    envelope::{json_response, ok, ApiError, Code, Envelope, ErrorEnvelope, FieldError},
    idempotency::{fingerprint, KeyLease, Reservation, StoredResponse},
    model::{Account, Task, TaskAccepted, TaskStatus},
    publisher::SubmitError,
    store::{Abandoned, NewTask, Submission},
    validation::{
        check_idempotency_key, from_json, is_account_id, task_id, CreateTaskRequest, ValidTask,
        ACCOUNT_ID_RULE,
    },
};

/// Submit a task. Answers 202 with `Location`; replays the first response for a repeated key.
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks", request_body = CreateTaskRequest,
    params(("Idempotency-Key" = String, Header, description = "Client-chosen key, 1-255 visible ASCII characters")),
    responses(
        (status = 202, body = Envelope<TaskAccepted>, headers(("Location" = String), ("Idempotent-Replayed" = String))),
        (status = 400, body = ErrorEnvelope, description = "invalid body or missing Idempotency-Key"),
        (status = 409, body = ErrorEnvelope, description = "the first request with this key is still in flight, or took so long that another request took the key over"),
        (status = 422, body = ErrorEnvelope, description = "the key was used with another body"),
        (status = 503, body = ErrorEnvelope, description = "store or (confirm modes) broker unavailable")),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<ApiState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let key = check_idempotency_key(single_header(&headers, contract::IDEMPOTENCY_KEY)?)?;
    // Fingerprinted before validation consumes the body, so the body is never copied.
    let fingerprint = fingerprint(&body);
    let task = from_json::<CreateTaskRequest>(body, "")?.validate_input(&s.allow)?;
    if s.publisher.strategy() == PublishStrategy::Outbox {
        return submit_to_outbox(&s, &key, &fingerprint, task).await;
    }
    let lease = match s.store.reserve_key(&key, &fingerprint, s.key_lease).await? {
        Reservation::Reserved(lease) => lease,
        Reservation::Replay(stored) => return Ok(respond(&stored, true)),
        Reservation::Mismatch => return Err(key_reused()),
        Reservation::InFlight => return Err(key_in_flight()),
    };
    // Run the submission in its own task: a client that disconnects or a server timeout must
    // not leave the reserved key half-done.
    let stored = tokio::spawn(accept(s, task, lease))
        .await
        .map_err(ApiError::internal)??;
    Ok(respond(&stored, false))
}

fn key_reused() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        Code::IdempotencyKeyReused,
        "this Idempotency-Key was used with a different request body",
    )
}

fn key_in_flight() -> ApiError {
    ApiError::conflict("a request with this Idempotency-Key is still being processed")
}

/// The outbox strategy: key, task and outbox row in one write, shared with other requests'
/// writes (group commit). Nothing is held while it waits: a submission still queued when the
/// request gives up is dropped unwritten (503, and a retry starts afresh); one already
/// written stays, and a retry with the same key replays its 202.
async fn submit_to_outbox(
    s: &ApiState,
    key: &str,
    fingerprint: &str,
    task: ValidTask,
) -> Result<Response, ApiError> {
    let new = NewTask {
        id: uuid::Uuid::now_v7(),
        spec: task.spec,
        callback_url: task.callback_url,
    };
    let stored = accepted_response(&new);
    let submission = s
        .store
        .submit(key, fingerprint, new, stored.clone(), s.key_lease);
    let submitted = tokio::time::timeout(s.submit_timeout, submission)
        .await
        .map_err(|_| {
            ApiError::unavailable(format!(
                "the submission did not finish within {:?}; retry with the same Idempotency-Key",
                s.submit_timeout
            ))
        })??;
    match submitted {
        Submission::Accepted => {
            s.publisher.wake_relay();
            Ok(respond(&stored, false))
        }
        Submission::Replay(stored) => Ok(respond(&stored, true)),
        Submission::Mismatch => Err(key_reused()),
        Submission::InFlight => Err(key_in_flight()),
    }
}

/// Submits under the held key, within `submit_timeout` (shorter than the key's lease, so this
/// request gives up before another may take the key over); undoes what did not complete.
async fn accept(s: ApiState, task: ValidTask, lease: KeyLease) -> Result<StoredResponse, ApiError> {
    let new = NewTask {
        id: uuid::Uuid::now_v7(),
        spec: task.spec,
        callback_url: task.callback_url,
    };
    let stored = accepted_response(&new);
    let published = AtomicBool::new(false);
    let submission = s.publisher.submit(&new, &lease, &stored, &published);
    let submitted = tokio::time::timeout(s.submit_timeout, submission).await;
    let error = match submitted {
        Ok(Ok(())) => return Ok(stored),
        Ok(Err(SubmitError::Store(e))) => e.into(),
        Ok(Err(SubmitError::Publish(e))) => {
            ApiError::unavailable(format!("broker unavailable: {e}"))
        }
        Err(_) => ApiError::unavailable(format!(
            "the submission did not finish within {:?}; retry with the same Idempotency-Key",
            s.submit_timeout
        )),
    };
    let published = published.load(Ordering::SeqCst);
    match s
        .store
        .abandon_submission(&lease, new.id, &stored, published)
        .await
    {
        // The task is under way after all (its message got through): say so, as a retry would.
        Ok(Abandoned::Kept) => Ok(stored),
        Ok(Abandoned::Undone) => Err(error),
        Err(e) => {
            tracing::warn!(error = %e, "could not undo an unfinished submission; its key expires with its lease");
            Err(error)
        }
    }
}

/// The 202 that the key stores and replays.
fn accepted_response(new: &NewTask) -> StoredResponse {
    let accepted = TaskAccepted {
        task_id: new.id,
        status: TaskStatus::Pending,
    };
    let body = Envelope {
        message: "accepted".into(),
        ..Envelope::ok(accepted)
    }
    .to_bytes();
    StoredResponse {
        status: StatusCode::ACCEPTED.as_u16(),
        body: body.to_vec(),
        location: Some(format!("/api/v1/tasks/{}", new.id)),
    }
}

/// The stored response, byte for byte; replays say so in a header.
fn respond(stored: &StoredResponse, replayed: bool) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::ACCEPTED);
    let mut res = json_response(status, stored.body.clone().into());
    if let Some(location) = stored
        .location
        .as_deref()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        res.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        res.headers_mut().insert(
            contract::IDEMPOTENT_REPLAYED,
            HeaderValue::from_static("true"),
        );
    }
    res
}

/// A task's status, attempts and result.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Envelope<Task>), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn get(
    State(s): State<ApiState>,
    PathId(id): PathId<String>,
) -> Result<Response, ApiError> {
    let id = task_id(&id).ok_or_else(|| {
        ApiError::validation(vec![FieldError::new(
            "id",
            "pattern",
            "must be a UUID in its hyphenated form",
        )])
    })?;
    let task = s
        .store
        .get_task(id)
        .await?
        .ok_or_else(|| ApiError::not_found("task"))?;
    Ok(ok(task))
}

/// An account's balance: the sum of the credits applied to it.
#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "accounts", params(("id" = String, Path)),
    responses((status = 200, body = Envelope<Account>), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope, description = "no credit was ever applied")),
    security(("bearer" = [])))]
pub async fn account(
    State(s): State<ApiState>,
    PathId(id): PathId<String>,
) -> Result<Response, ApiError> {
    if !is_account_id(&id) {
        return Err(ApiError::validation(vec![FieldError::new(
            "id",
            "pattern",
            ACCOUNT_ID_RULE,
        )]));
    }
    let account = s
        .store
        .get_account(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    Ok(ok(account))
}
