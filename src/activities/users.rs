//! Activities of `UserOnboardingWorkflow`. The code is random, so it is made
//! here (activities may be non-deterministic; their results are recorded); only
//! its keyed hash is stored, and only the email carries the code itself.

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use uuid::Uuid;

use std::sync::Arc;

use super::PartyError;
use super::mailer::SmtpMailer;
use crate::config::Secret;
use crate::db::users;
use crate::domain::UserStatus;
use crate::domain::user::{MAX_CODE_ATTEMPTS, code_hash, code_hashes};

pub struct UserActivities {
    pub pool: PgPool,
    /// Sends the account emails when SMTP is configured; otherwise they are only logged.
    pub mailer: Option<Arc<SmtpMailer>>,
    /// The key of the stored code hashes (`ORDERS_VERIFICATION_KEY`).
    pub verification_key: Secret,
}

impl UserActivities {
    async fn email(&self, user_id: Uuid, subject: &str, body: String) -> Result<(), ActivityError> {
        let Some(mailer) = &self.mailer else {
            // Development without SMTP: the log is the only place the email goes
            // (in production, configure ORDERS_SMTP_URL: nothing else sends account emails).
            tracing::info!(%user_id, subject, body = body.trim_end(), "account email (no SMTP configured)");
            return Ok(());
        };
        let Some(user) = users::find(&self.pool, user_id).await? else { return Ok(()) };
        match mailer.send(&user.email, subject, body).await {
            Ok(()) => Ok(()),
            Err(PartyError::Permanent(m)) => {
                tracing::warn!(%user_id, error = %m, "account email refused");
                Ok(())
            }
            Err(PartyError::Transient(m)) => Err(ActivityError::from(anyhow::anyhow!(m))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeCheck {
    pub user_id: Uuid,
    pub code: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeResult {
    pub matched: bool,
    pub attempts_left: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishOnboarding {
    pub user_id: Uuid,
    pub status: UserStatus,
}

#[activities]
impl UserActivities {
    /// Makes a six-digit code, stores its keyed hash and emails the code. A retry
    /// makes a new code (the first one was never stored): the latest email's works.
    #[activity(name = "SendVerificationCode")]
    #[tracing::instrument(name = "SendVerificationCode", skip_all, fields(user_id = %user_id, activity = "SendVerificationCode"))]
    pub async fn send_verification(self: Arc<Self>, _ctx: ActivityContext, user_id: Uuid) -> Result<(), ActivityError> {
        let random = Uuid::new_v4();
        let bytes = random.as_bytes();
        let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) % 1_000_000;
        let fresh = format!("{n:06}");
        let hash = code_hash(self.verification_key.expose().as_bytes(), user_id, &fresh);
        if !users::store_code(&self.pool, user_id, &hash).await? {
            return Ok(());
        }
        self.email(user_id, "Your verification code", format!("Your code: {fresh}\n")).await
    }

    /// Checks a code, counting a wrong one; locks the account at the last allowed
    /// attempt. For workflows started before the API decided attempts (their
    /// `verify` update).
    #[activity(name = "CheckVerificationCode")]
    #[tracing::instrument(name = "CheckVerificationCode", skip_all, fields(user_id = %c.user_id, activity = "CheckVerificationCode"))]
    pub async fn check_code(self: Arc<Self>, _ctx: ActivityContext, c: CodeCheck) -> Result<CodeResult, ActivityError> {
        let hashes = code_hashes(self.verification_key.expose().as_bytes(), c.user_id, &c.code);
        let (matched, failed) = users::check_code(&self.pool, c.user_id, &hashes).await?;
        let attempts_left = MAX_CODE_ATTEMPTS.saturating_sub(failed);
        if !matched && attempts_left == 0 {
            users::finish(&self.pool, c.user_id, UserStatus::Locked).await?;
        }
        Ok(CodeResult { matched, attempts_left })
    }

    /// The account's status, as attempts and the deadline decided it.
    #[activity(name = "ReadUserStatus")]
    #[tracing::instrument(name = "ReadUserStatus", skip_all, fields(user_id = %user_id, activity = "ReadUserStatus"))]
    pub async fn read_status(
        self: Arc<Self>,
        _ctx: ActivityContext,
        user_id: Uuid,
    ) -> Result<UserStatus, ActivityError> {
        users::status(&self.pool, user_id).await?.ok_or_else(|| {
            temporalio_sdk::ApplicationFailure::builder(format!("user {user_id} does not exist"))
                .non_retryable(true)
                .build()
                .into()
        })
    }

    /// Ends onboarding: activates (with a welcome email) or expires the account
    /// while it is pending; an account already decided keeps its status (the
    /// welcome of one the API activated still goes out).
    #[activity(name = "FinishOnboarding")]
    #[tracing::instrument(name = "FinishOnboarding", skip_all, fields(user_id = %f.user_id, activity = "FinishOnboarding"))]
    pub async fn finish(self: Arc<Self>, _ctx: ActivityContext, f: FinishOnboarding) -> Result<(), ActivityError> {
        users::finish(&self.pool, f.user_id, f.status).await?;
        if f.status == UserStatus::Active {
            self.email(f.user_id, "Welcome", "Your account is active.\n".into()).await?;
        }
        Ok(())
    }
}
