//! Accounts: `POST /users` (public) starts onboarding, `POST /users/{id}/verify`
//! (public: the code is the credential) answers at once, `GET /users/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use temporalio_client::WorkflowSignalOptions;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{Caller, Role};
use super::error::{ApiError, Problem};
use super::extract::JsonBody;
use super::state::AppState;
use crate::db::users::{self, UserView, Verify};
use crate::domain::user::{code_hashes, parse_email};
use crate::domain::validation::text;
use crate::domain::{FieldError, FieldErrors, UserStatus};
use crate::temporal;
use crate::workflows::UserOnboardingWorkflow;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(required = true, value_type = String, format = Email, max_length = 254, example = "ada@example.com")]
    pub email: Option<String>,
    #[schema(required = true, value_type = String, example = "Ada Lovelace", max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*[^\s\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff][^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// The six-digit code from the verification email.
    #[schema(required = true, value_type = String, example = "123456", pattern = r"^[0-9]{6}$")]
    pub code: Option<String>,
}

/// Create an account (`pending_verification`) and email it a verification code.
/// While Temporal is away the account is still created (201), and the code is
/// sent once it is back.
#[utoipa::path(post, path = "/users", operation_id = "createUser", tag = "users", request_body = CreateUser,
    responses(
        (status = 201, description = "The account is created; a verification code is sent", body = UserView, headers(("Location" = String, description = "/users/{id}"))),
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
    start_onboarding(&state, id).await;
    let location = HeaderValue::from_str(&format!("/users/{id}")).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(user)).into_response())
}

/// Starts the account's onboarding (which emails the code). A failure is logged,
/// not returned: the account is recorded, and the recovery loop
/// (`app::recover`) starts it when Temporal answers again.
async fn start_onboarding(state: &AppState, id: Uuid) {
    match state.start_bounded(|client| temporal::start_user(client, &state.settings, id)).await {
        Ok(()) => {
            if let Err(e) = users::mark_workflow_started(&state.pool, id).await {
                tracing::warn!(user_id = %id, error = %e, "onboarding started but not marked; recovery will re-check");
            }
        }
        Err(e) => tracing::warn!(user_id = %id, error = %e, "onboarding not started yet; the recovery loop will retry"),
    }
}

/// Verify the account with the emailed code. A wrong code is 422 with
/// `attempts_left`; the fifth wrong code locks the account (409 afterwards).
/// Attempts are decided one at a time: however many arrive at once, at most
/// five wrong ones are ever compared, and the rest are answered 409.
#[utoipa::path(post, path = "/users/{id}/verify", operation_id = "verifyUser", tag = "users", request_body = VerifyBody,
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 200, description = "Verified: the account is active", body = UserView),
        (status = 409, description = "Already active, locked or expired; no code sent yet; or another attempt is in progress (retry)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong code (see `errors`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody { body, .. }: JsonBody<VerifyBody>,
) -> Result<Json<UserView>, ApiError> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound)?;
    let mut errors = FieldErrors::new();
    let Some(code) = errors.required("/code", body.code) else { return Err(ApiError::Validation(errors.into_vec())) };
    if code.len() != 6 || !code.chars().all(|d| d.is_ascii_digit()) {
        // Not an attempt: nothing is counted. An account that is no longer
        // waiting for a code says so first.
        let user = users::find(&state.pool, id).await?.ok_or(ApiError::NotFound)?;
        if user.status != UserStatus::PendingVerification {
            return Err(ApiError::InvalidState(format!("the account is {}", user.status.as_str())));
        }
        let message = "must be the six digits from the email".into();
        return Err(ApiError::Validation(vec![FieldError { pointer: "/code".into(), message }]));
    }
    let lock_wait = state.settings.action_lock_wait;
    let wrong = |message: String| ApiError::Validation(vec![FieldError { pointer: "/code".into(), message }]);
    let hashes = code_hashes(state.settings.verification_key.expose().as_bytes(), id, &code);
    match users::verify(&state.pool, lock_wait, id, &hashes).await? {
        Verify::Activated => tell_decided(&state, id).await,
        Verify::Locked => {
            tell_decided(&state, id).await;
            return Err(wrong("wrong code; the account is now locked".into()));
        }
        Verify::Wrong { attempts_left } => return Err(wrong(format!("wrong code; {attempts_left} attempts left"))),
        Verify::NoCodeYet => {
            return Err(ApiError::InvalidState("no code has been sent yet; try again in a moment".into()));
        }
        Verify::Over(status) => return Err(ApiError::InvalidState(format!("the account is {}", status.as_str()))),
    }
    Ok(Json(users::find(&state.pool, id).await?.ok_or(ApiError::NotFound)?))
}

/// Tells the account's onboarding workflow that it was decided (it then sends
/// the welcome email, or ends). Best effort: a workflow not told ends at its
/// deadline, reading the same record; the account's status is right meanwhile.
async fn tell_decided(state: &AppState, id: Uuid) {
    let attempt = async {
        let client = state.temporal().await.map_err(|e| e.to_string())?;
        let handle = client.get_workflow_handle::<UserOnboardingWorkflow>(temporal::user_workflow_id(id));
        let opts = WorkflowSignalOptions::builder().request_id(format!("decided-{id}")).build();
        temporal::traced(handle.signal(UserOnboardingWorkflow::decided, (), opts)).await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), attempt).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(user_id = %id, error = %e, "account decided; its workflow was not told"),
        Err(_) => tracing::warn!(user_id = %id, "account decided; Temporal did not answer the signal"),
    }
}

/// The account, for the user themself (token `sub` = the user id) or an admin.
#[utoipa::path(get, path = "/users/{id}", operation_id = "getUser", tag = "users",
    params(("id" = String, Path, description = "User id")), security(("bearerAuth" = [])),
    responses((status = 200, description = "The account", body = UserView)))]
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
