//! Every workflow run the worker is done with is freed. A timer that a
//! `select!` dropped unfired once kept its run alive for good (a reference
//! cycle through the workflow's cancellation token: `workflows::deadline_timer`),
//! and the worker grew by kilobytes per order served. Its own binary: the count
//! is per process, and no other test's workflows may run beside it.

use std::time::{Duration, Instant};

use orders::workflows::{OrderWorkflow, UserOnboardingWorkflow, run_counter, runs_in_memory};
use temporalio_client::WorkflowHistory;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

#[tokio::test]
async fn runs_that_dropped_a_deadline_are_freed() {
    // Each ends with a deadline timer dropped unfired: delivered before the
    // delivery deadline, approved before the review deadline, verified in time.
    let histories = [
        ("order-delivered", false),
        ("order-carrier-events", false),
        ("order-review-approved", false),
        ("v1/order-delivered", false),
        ("user-verified", true),
    ];
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/histories");
    for (name, user) in histories {
        let json = std::fs::read(format!("{dir}/{name}.json")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let options = WorkflowReplayerOptions::new().workflow_interceptor(run_counter());
        let options = if user {
            options.register_workflow::<UserOnboardingWorkflow>().unwrap()
        } else {
            options.register_workflow::<OrderWorkflow>().unwrap()
        };
        let replayer = WorkflowReplayer::new(options.build()).unwrap();
        replayer.replay_workflow(WorkflowHistory::from_json(&json).unwrap()).await.expect("replays");
    }
    // The SDK drops a finished run when it evicts it, which may trail the replay's end.
    let deadline = Instant::now() + Duration::from_secs(10);
    while runs_in_memory() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(runs_in_memory(), 0, "every replayed run is freed once done");
}
