//! Deterministic workflow code only: no clock, randomness, env, I/O or
//! hash-map iteration. Workflows depend on `domain` and on activity signatures.

pub mod order;
pub mod user_onboarding;

pub use order::{Decided, Decision, OrderInput, OrderOutcome, OrderWorkflow};
pub use user_onboarding::{OnboardingInput, UserOnboardingWorkflow, VerifyOutcome};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use temporalio_common::RetryPolicy;
use temporalio_sdk::workflow_interceptors::{WorkflowInterceptor, WorkflowInterceptorConstructor};
use temporalio_sdk::{LocalActivityOptions, TimerOptions, TimerResult, WorkflowCancellationToken, WorkflowContext};

/// What update validators and handlers return when they refuse.
pub(crate) type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The longest wait between attempts of a step while it fails on our own side
/// (Postgres away): orders resume within this much of Postgres being back. The
/// parties' own failures are bounded by calls (`party_calls`), not by this. It
/// stays under the SDK's local-retry threshold (1 min), so a backoff never turns
/// into a timer in the history.
pub(crate) const STEP_RETRY_CAP: Duration = Duration::from_secs(10);

static RUNS_IN_MEMORY: AtomicUsize = AtomicUsize::new(0);

/// Workflow runs this process holds: the SDK's cache (`temporal_sticky_cache_size`)
/// plus any run not yet freed. Well above the cache for long means runs leak
/// (see `deadline_timer`); the worker exports it as `orders_workflow_runs_in_memory`.
pub fn runs_in_memory() -> usize {
    RUNS_IN_MEMORY.load(Ordering::Relaxed)
}

/// Counts runs in `runs_in_memory`: the SDK builds one interceptor per run and
/// keeps it in the run's context, so it lives exactly as long as the run does.
pub fn run_counter() -> WorkflowInterceptorConstructor {
    WorkflowInterceptorConstructor::new(|_| {
        RUNS_IN_MEMORY.fetch_add(1, Ordering::Relaxed);
        RunCounted
    })
}

struct RunCounted;

impl WorkflowInterceptor for RunCounted {}

impl Drop for RunCounted {
    fn drop(&mut self) {
        RUNS_IN_MEMORY.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A deadline raced against a wait (`select!`), which drops it unfired when the
/// wait wins. The SDK (1.1.1) removes a timer's cancellation callback only when
/// the timer completes, and the callback holds the workflow's context: left on
/// the workflow's own token, which that context holds, a dropped timer closed a
/// reference cycle and the run was never freed (the worker grew by kilobytes per
/// order served). On a child token, owned by the returned future (the parent
/// keeps only a weak reference), the callback leaves with the timer, and a
/// cancellation of the workflow still reaches it through the child. `detached`
/// replaces the child: the timer then ignores the workflow's cancellation.
/// Either way the commands are the same, so histories replay unchanged.
pub(crate) fn deadline_timer<W>(
    ctx: &WorkflowContext<W>,
    after: Duration,
    detached: Option<WorkflowCancellationToken>,
) -> impl Future<Output = TimerResult> {
    let token = detached.unwrap_or_else(|| ctx.cancellation_token().child_token());
    let timer = ctx.timer(TimerOptions::builder(after).cancellation_token(token.clone()).build());
    async move {
        let _token = token;
        timer.await
    }
}

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
