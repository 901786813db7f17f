//! Accounts: `POST /users` (public) starts onboarding, `POST /users/{id}/verify`
//! (public: the code is the credential) answers at once, `GET /users/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use temporalio_client::WorkflowExecuteUpdateOptions;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{Caller, Role};
use super::error::{ApiError, Problem};
use super::extract::JsonBody;
use super::state::AppState;
use crate::db::users::{self, UserView};
use crate::domain::user::parse_email;
use crate::domain::validation::text;
use crate::domain::{FieldError, FieldErrors, UserStatus};
use crate::temporal;
use crate::workflows::{OnboardingInput, UserOnboardingWorkflow};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(required = true, value_type = String, format = Email, max_length = 254, example = "ada@example.com")]
    pub email: Option<String>,
    #[schema(required = true, value_type = String, example = "Ada Lovelace", max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$")]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// The six-digit code from the verification email.
    #[schema(required = true, value_type = String, example = "123456", pattern = r"^[0-9]{6}$")]
    pub code: Option<String>,
}

fn workflow_id(id: Uuid) -> String {
    format!("user-{id}")
}

/// Create an account (`pending_verification`) and email it a verification code.
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUser,
    responses(
        (status = 201, body = UserView, headers(("Location" = String, description = "/users/{id}"))),
        (status = 409, description = "Email already registered", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    JsonBody { body, .. }: JsonBody<CreateUser>,
) -> Result<Response, ApiError> {
    let mut errors = FieldErrors::new();
    let email = errors.required("/email", body.email).and_then(|e| errors.check("/email", parse_email(&e)));
    let name = errors.required("/name", body.name).and_then(|n| errors.check("/name", text(&n, 1, 100)));
    let (Some(email), Some(name)) = (email, name) else { return Err(ApiError::Validation(errors.into_vec())) };
    let id = Uuid::now_v7();
    let user = users::insert(&state.pool, id, &email, &name)
        .await?
        .ok_or_else(|| ApiError::InvalidState("this email address is already registered".into()))?;
    let client = state.temporal().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let input =
        OnboardingInput { user_id: id, verify_within_secs: state.settings.verification_deadline.as_secs().max(1) };
    temporal::start_once(client, &state.settings, UserOnboardingWorkflow::run, workflow_id(id), input)
        .await
        .map_err(|e| ApiError::Unavailable(format!("temporal: {e}")))?;
    let location = HeaderValue::from_str(&format!("/users/{id}")).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(user)).into_response())
}

/// Verify the account with the emailed code. A wrong code is 422 with
/// `attempts_left`; the fifth wrong code locks the account (409 afterwards).
#[utoipa::path(post, path = "/users/{id}/verify", tag = "users", request_body = VerifyBody,
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 200, description = "Verified: the account is active", body = UserView),
        (status = 409, description = "Already active, locked or expired", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong code (see `errors`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody { body, .. }: JsonBody<VerifyBody>,
) -> Result<Json<UserView>, ApiError> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound)?;
    let user = users::find(&state.pool, id).await?.ok_or(ApiError::NotFound)?;
    let mut errors = FieldErrors::new();
    let Some(code) = errors.required("/code", body.code) else { return Err(ApiError::Validation(errors.into_vec())) };
    if user.status != UserStatus::PendingVerification {
        return Err(ApiError::InvalidState(format!("the account is {}", user.status.as_str())));
    }
    if code.len() != 6 || !code.chars().all(|d| d.is_ascii_digit()) {
        let message = "must be the six digits from the email".into();
        return Err(ApiError::Validation(vec![FieldError { pointer: "/code".into(), message }]));
    }
    let client = state.temporal().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let handle = client.get_workflow_handle::<UserOnboardingWorkflow>(workflow_id(id));
    let outcome = temporal::traced(handle.execute_update(
        UserOnboardingWorkflow::verify,
        code,
        WorkflowExecuteUpdateOptions::default(),
    ))
    .await
    .map_err(|e| {
        use temporalio_client::errors::WorkflowUpdateError as E;
        match e {
            E::Failed(f) => ApiError::InvalidState(f.message.clone()),
            E::NotFound(_) => ApiError::InvalidState("verification is over for this account".into()),
            other => ApiError::Unavailable(format!("temporal: {other}")),
        }
    })?;
    if !outcome.verified {
        let message = match outcome.status {
            UserStatus::Locked => "wrong code; the account is now locked".to_owned(),
            _ => format!("wrong code; {} attempts left", outcome.attempts_left),
        };
        return Err(ApiError::Validation(vec![FieldError { pointer: "/code".into(), message }]));
    }
    Ok(Json(users::find(&state.pool, id).await?.ok_or(ApiError::NotFound)?))
}

/// The account, for the user themself (token `sub` = the user id) or an admin.
#[utoipa::path(get, path = "/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")), security(("bearerAuth" = [])),
    responses((status = 200, body = UserView)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound)?;
    if caller.role != Role::Admin && caller.subject != id.to_string() {
        return Err(ApiError::NotFound);
    }
    Ok(Json(users::find(&state.pool, id).await?.ok_or(ApiError::NotFound)?))
}
