//! `/api/v1/users`: the seed's CRUD resource (2.2), with its validation and the cached GET (2.5).

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::Response,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    extract::{JsonBody, PathId, QueryParams},
    ApiState,
};
use crate::{
    envelope::{json_response, ok, ApiError, Envelope, ErrorEnvelope, FieldError},
    model::{Page, User},
    store::StoreError,
    validation::{from_json, UserInput, ValidUser},
};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page number, from 1 [default: 1].
    page: Option<u32>,
    /// Users per page, 1–100 [default: 20].
    per_page: Option<u32>,
}

impl PageQuery {
    fn checked(&self) -> Result<(u32, u32), ApiError> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(20);
        let mut errors = Vec::new();
        if page == 0 {
            errors.push(FieldError::new("page", "range", "must be at least 1"));
        }
        if !(1..=100).contains(&per_page) {
            errors.push(FieldError::new(
                "per_page",
                "range",
                "must be between 1 and 100",
            ));
        }
        if errors.is_empty() {
            Ok((page, per_page))
        } else {
            Err(ApiError::validation(errors))
        }
    }
}

fn taken_email(e: StoreError) -> ApiError {
    match e {
        StoreError::Duplicate => ApiError::conflict("email is already registered"),
        other => other.into(),
    }
}

fn valid_user(body: serde_json::Value) -> Result<ValidUser, ApiError> {
    from_json::<UserInput>(body, "")?.validate_input()
}

/// List users, paged.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageQuery),
    responses((status = 200, body = Envelope<Page<User>>), (status = 400, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<ApiState>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Response, ApiError> {
    let (page, per_page) = q.checked()?;
    let (items, total) = s.store.list_users(page, per_page).await?;
    Ok(ok(Page {
        items,
        page,
        per_page,
        total,
    }))
}

/// Create a user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = UserInput,
    responses((status = 201, body = Envelope<User>, headers(("Location" = String))),
        (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<ApiState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let user = s
        .store
        .create_user(&valid_user(body)?)
        .await
        .map_err(taken_email)?;
    let location = format!("/api/v1/users/{}", user.id);
    let mut res = json_response(StatusCode::CREATED, Envelope::ok(user).to_bytes());
    res.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("ASCII path"),
    );
    Ok(res)
}

/// Get a user (cached).
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = Envelope<User>), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn get(State(s): State<ApiState>, PathId(id): PathId<i64>) -> Result<Response, ApiError> {
    if let Some(body) = s.cache.get(id).await {
        return Ok(json_response(StatusCode::OK, body));
    }
    let ticket = s.cache.ticket(id).await;
    let user = s
        .store
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let body = Envelope::ok(user).to_bytes();
    s.cache.fill(id, &body, ticket).await;
    Ok(json_response(StatusCode::OK, body))
}

/// Replace a user's name and email.
#[utoipa::path(put, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path)), request_body = UserInput,
    responses((status = 200, body = Envelope<User>), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(s): State<ApiState>,
    PathId(id): PathId<i64>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let input = valid_user(body)?;
    let updated = s.store.update_user(id, &input).await.map_err(taken_email)?;
    s.cache.invalidate(id).await;
    Ok(ok(updated.ok_or_else(|| ApiError::not_found("user"))?))
}

/// Delete a user.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = ErrorEnvelope, description = "deleted; data is null"),
        (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn delete(
    State(s): State<ApiState>,
    PathId(id): PathId<i64>,
) -> Result<Response, ApiError> {
    let existed = s.store.delete_user(id).await?;
    s.cache.invalidate(id).await;
    if !existed {
        return Err(ApiError::not_found("user"));
    }
    let body = Envelope::<()> {
        data: None,
        message: "deleted".into(),
        ..Envelope::ok(())
    };
    Ok(json_response(StatusCode::OK, body.to_bytes()))
}
