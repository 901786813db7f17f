//! `UserOnboardingWorkflow`: send a verification code, wait for it (an Update,
//! so the caller learns at once whether it was right) or for the deadline (a
//! durable timer), then activate, lock after too many wrong codes, or expire.

use std::time::Duration;

use futures::FutureExt;
use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::select;
use temporalio_sdk::{WorkflowContext, WorkflowContextView, WorkflowResult};
use uuid::Uuid;

use super::{HandlerError, db_step};
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

#[workflow]
pub struct UserOnboardingWorkflow {
    input: OnboardingInput,
    status: UserStatus,
}

#[workflow_methods]
impl UserOnboardingWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: OnboardingInput) -> Self {
        Self { input, status: UserStatus::PendingVerification }
    }

    #[run(name = "UserOnboardingWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<UserStatus> {
        let (user_id, within) = ctx.state(|s| (s.input.user_id, s.input.verify_within_secs));
        ctx.execute_local_activity(UserActivities::send_verification, user_id, db_step()).await?;
        let decided = select! {
            r = ctx.wait_condition(|s: &Self| s.status != UserStatus::PendingVerification).fuse() => { r?; true }
            _ = ctx.timer(Duration::from_secs(within)).fuse() => false,
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

    #[query]
    pub fn status(&self, _ctx: &WorkflowContextView) -> UserStatus {
        self.status
    }

    #[update_validator(verify)]
    // The macro passes the update's input by reference: `&String` is its signature.
    #[allow(clippy::ptr_arg)]
    fn validate_verify(&self, _ctx: &WorkflowContextView, code: &String) -> Result<(), HandlerError> {
        if self.status != UserStatus::PendingVerification {
            return Err(format!("the account is {}", self.status.as_str()).into());
        }
        if code.trim().len() != 6 || !code.trim().chars().all(|c| c.is_ascii_digit()) {
            return Err("the code has six digits".into());
        }
        Ok(())
    }

    /// One verification attempt; the fifth wrong code locks the account.
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
