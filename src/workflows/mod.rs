//! Deterministic workflow code only: no clock, randomness, env, I/O or
//! hash-map iteration. Workflows depend on `domain` and on activity signatures.

pub mod order;
pub mod user_onboarding;

pub use order::{Decided, Decision, OrderInput, OrderOutcome, OrderWorkflow};
pub use user_onboarding::{OnboardingInput, UserOnboardingWorkflow, VerifyOutcome};

use std::time::Duration;

use temporalio_common::RetryPolicy;
use temporalio_sdk::{LocalActivityOptions, WorkflowCancellationToken};

/// What update validators and handlers return when they refuse.
pub(crate) type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The longest wait between attempts of a step while it fails on our own side
/// (Postgres away): orders resume within this much of Postgres being back. The
/// parties' own failures are bounded by calls (`party_calls`), not by this. It
/// stays under the SDK's local-retry threshold (1 min), so a backoff never turns
/// into a timer in the history.
pub(crate) const STEP_RETRY_CAP: Duration = Duration::from_secs(10);

/// Database steps: idempotent, so retried until they succeed (an outage of
/// Postgres pauses orders, it does not fail them).
pub(crate) fn db_step() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(15))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(200))
                .maximum_interval(STEP_RETRY_CAP)
                .maximum_attempts(0)
                .build(),
        )
        // Compensation and failure records must complete even when the workflow is cancelled.
        .cancellation_token(WorkflowCancellationToken::new())
        .build()
}
