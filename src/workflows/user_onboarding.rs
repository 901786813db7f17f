//! `UserOnboardingWorkflow`: send a verification code, then wait until the
//! account is decided or the deadline passes (a durable timer): activated (with
//! a welcome email), locked after too many wrong codes, or expired.
//!
//! Attempts are decided by the API in Postgres, under the account's row lock
//! (`db::users::verify`), so a burst of them is compared one at a time and
//! never reaches the workflow: it is told only that the account was decided (a
//! `decided` signal) and reads the record. Workflows started before that
//! (no `verified-in-postgres` marker) keep their `verify` update.

use std::time::Duration;

use futures::FutureExt;
use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::select;
use temporalio_sdk::{SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult};
use uuid::Uuid;

use super::{HandlerError, db_step, deadline_timer};
use crate::activities::users::{CodeCheck, FinishOnboarding, UserActivities};
use crate::domain::UserStatus;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardingInput {
    pub user_id: Uuid,
    pub verify_within_secs: u64,
}

/// The answer to one verification attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOutcome {
    pub status: UserStatus,
    pub verified: bool,
    pub attempts_left: u32,
}

/// Patch id: attempts are decided by the API; the workflow follows the record.
const VERIFIED_IN_POSTGRES: &str = "verified-in-postgres";

#[workflow]
pub struct UserOnboardingWorkflow {
    input: OnboardingInput,
    status: UserStatus,
    /// Started on this version (the `verified-in-postgres` patch).
    follows_records: bool,
    /// `decided` signals received, and how many the workflow has read the record for.
    wakes: u32,
    wakes_read: u32,
}

#[workflow_methods]
impl UserOnboardingWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: OnboardingInput) -> Self {
        Self { input, status: UserStatus::PendingVerification, follows_records: false, wakes: 0, wakes_read: 0 }
    }

    #[run(name = "UserOnboardingWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<UserStatus> {
        let follows_records = ctx.patched(VERIFIED_IN_POSTGRES);
        ctx.state_mut(|s| s.follows_records = follows_records);
        let (user_id, within) = ctx.state(|s| (s.input.user_id, s.input.verify_within_secs));
        ctx.execute_local_activity(UserActivities::send_verification, user_id, db_step()).await?;
        if follows_records {
            return Self::follow_record(ctx, user_id, Duration::from_secs(within)).await;
        }
        let decided = select! {
            r = ctx.wait_condition(|s: &Self| s.status != UserStatus::PendingVerification).fuse() => { r?; true }
            _ = deadline_timer(ctx, Duration::from_secs(within), None).fuse() => false,
        };
        if !decided {
            let finish = FinishOnboarding { user_id, status: UserStatus::Expired };
            ctx.execute_local_activity(UserActivities::finish, finish, db_step()).await?;
            ctx.state_mut(|s| s.status = UserStatus::Expired);
        }
        // Let a verify call that activated the account answer before closing.
        let c = ctx.clone();
        ctx.wait_condition(move |_| c.all_handlers_finished()).await?;
        Ok(ctx.state(|s| s.status))
    }

    /// Waits until the record shows the account decided (the API signals
    /// `decided`) or the deadline passes, which expires it unless a decision
    /// came first; then finishes as the record says.
    async fn follow_record(ctx: &WorkflowContext<Self>, user_id: Uuid, within: Duration) -> WorkflowResult<UserStatus> {
        let mut deadline = std::pin::pin!(deadline_timer(ctx, within, None).fuse());
        loop {
            let woke = select! {
                r = ctx.wait_condition(|s: &Self| s.wakes > s.wakes_read).fuse() => { r?; true }
                _ = deadline => false,
            };
            if !woke {
                let expire = FinishOnboarding { user_id, status: UserStatus::Expired };
                ctx.execute_local_activity(UserActivities::finish, expire, db_step()).await?;
            }
            let wakes = ctx.state(|s| s.wakes);
            let status = ctx.execute_local_activity(UserActivities::read_status, user_id, db_step()).await?;
            ctx.state_mut(|s| {
                s.wakes_read = wakes;
                s.status = status;
            });
            match status {
                UserStatus::PendingVerification => continue,
                UserStatus::Active => {
                    // The welcome email.
                    let finish = FinishOnboarding { user_id, status };
                    ctx.execute_local_activity(UserActivities::finish, finish, db_step()).await?;
                    return Ok(status);
                }
                UserStatus::Locked | UserStatus::Expired => return Ok(status),
            }
        }
    }

    /// The account was decided in Postgres (activated, or locked): read it.
    #[signal(name = "decided")]
    pub fn decided(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _decided: ()) {
        self.wakes += 1;
    }

    #[query]
    pub fn status(&self, _ctx: &WorkflowContextView) -> UserStatus {
        self.status
    }

    #[update_validator(verify)]
    // The macro passes the update's input by reference: `&String` is its signature.
    #[allow(clippy::ptr_arg)]
    fn validate_verify(&self, _ctx: &WorkflowContextView, code: &String) -> Result<(), HandlerError> {
        if self.follows_records {
            return Err("verify through POST /users/{id}/verify".into());
        }
        if self.status != UserStatus::PendingVerification {
            return Err(format!("the account is {}", self.status.as_str()).into());
        }
        if code.trim().len() != 6 || !code.trim().chars().all(|c| c.is_ascii_digit()) {
            return Err("the code has six digits".into());
        }
        Ok(())
    }

    /// One verification attempt; the fifth wrong code locks the account. Only
    /// for workflows started before the API decided attempts.
    #[update(name = "verify")]
    pub async fn verify(ctx: &mut WorkflowContext<Self>, code: String) -> Result<VerifyOutcome, HandlerError> {
        let user_id = ctx.state(|s| s.input.user_id);
        let check = CodeCheck { user_id, code };
        let r = ctx
            .execute_local_activity(UserActivities::check_code, check, db_step())
            .await
            .map_err(|e| -> HandlerError { e.to_string().into() })?;
        if r.matched {
            let finish = FinishOnboarding { user_id, status: UserStatus::Active };
            ctx.execute_local_activity(UserActivities::finish, finish, db_step())
                .await
                .map_err(|e| -> HandlerError { e.to_string().into() })?;
            ctx.state_mut(|s| s.status = UserStatus::Active);
        } else if r.attempts_left == 0 {
            ctx.state_mut(|s| s.status = UserStatus::Locked);
        }
        Ok(VerifyOutcome { status: ctx.state(|s| s.status), verified: r.matched, attempts_left: r.attempts_left })
    }
}
