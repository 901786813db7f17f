//! The one way both binaries connect to Temporal.

use std::time::Duration;

use rust_decimal::Decimal;

use sqlx::PgPool;
use temporalio_client::errors::{WorkflowInteractionError, WorkflowStartError};
use temporalio_client::tonic::Request;
use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, ConnectionOptions, TlsOptions, Url, WorkflowIdConflictPolicy,
    WorkflowIdReusePolicy, WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_common::protos::temporal::api::workflowservice::v1::{
    DescribeNamespaceRequest, DescribeNamespaceResponse,
};
use temporalio_common::{HasWorkflowDefinition, WorkflowDefinition};

use crate::config::Settings;
use crate::db::decisions;
use crate::domain::OrderId;
use crate::workflows::{Decided, Decision, OnboardingInput, OrderInput, OrderWorkflow, UserOnboardingWorkflow};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    #[error("TEMPORAL_ADDRESS {0:?} is not a valid address")]
    Address(String),
    #[error("Temporal TLS: {0}")]
    Tls(String),
    #[error("cannot connect to Temporal at {address}: {message}")]
    Connect { address: String, message: String },
}

/// `host:port` or a full URL; a bare address gets `http://`, as the Temporal CLI does.
pub fn target_url(address: &str) -> Result<Url, TemporalError> {
    let with_scheme = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
    Url::parse(&with_scheme).map_err(|_| TemporalError::Address(address.to_owned()))
}

pub async fn connect(settings: &Settings, identity: &str) -> Result<Client, TemporalError> {
    let address = settings.temporal_address.clone();
    let mut url = target_url(&address)?;
    let tls = tls_options(settings)?;
    if tls.is_some() && url.scheme() == "http" {
        // Scheme-only change of a URL we built; cannot fail for http → https.
        let _ = url.set_scheme("https");
    }
    let conn = ConnectionOptions::new(url)
        .identity(format!("{identity}@{}", hostname()))
        .connect_timeout(Duration::from_secs(10))
        .maybe_tls_options(tls)
        .maybe_api_key(settings.temporal_api_key.as_ref().map(|k| k.expose().to_owned()))
        .build();
    let mut opts = ClientOptions::new(settings.temporal_namespace.clone());
    if crate::telemetry::otlp_configured() {
        // Trace context rides in Temporal headers from the start through the workflow
        // into every activity; workers built on this client inherit the plugin.
        opts = opts.plugin(temporalio_sdk::opentelemetry::OpenTelemetryPlugin::builder().build());
    }
    let opts = opts.build();
    Client::connect(conn, opts).await.map_err(|e| TemporalError::Connect { address, message: e.to_string() })
}

/// The TLS options of `settings`, reading the PEM files it names.
pub fn tls_options(settings: &Settings) -> Result<Option<TlsOptions>, TemporalError> {
    let Some(tls) = &settings.temporal_tls else { return Ok(None) };
    let read = |path: &str| std::fs::read(path).map_err(|e| TemporalError::Tls(format!("{path}: {e}")));
    let client = match (&tls.client_cert_path, &tls.client_key_path) {
        (Some(cert), Some(key)) => {
            Some(ClientTlsOptions::builder().client_cert(read(cert)?).client_private_key(read(key)?).build())
        }
        _ => None,
    };
    Ok(Some(
        TlsOptions::builder()
            .maybe_server_root_ca_cert(tls.server_ca_cert_path.as_deref().map(read).transpose()?)
            .maybe_domain(tls.server_name.clone())
            .maybe_client_tls_options(client)
            .build(),
    ))
}

/// The server answers for our namespace within `timeout` (readiness).
pub async fn answers(
    client: &Client,
    namespace: &str,
    timeout: Duration,
) -> Result<(), temporalio_client::tonic::Status> {
    describe_namespace(client, namespace, timeout).await.map(drop)
}

/// `DescribeNamespace`, given up after `timeout` (a server that hangs is an error).
async fn describe_namespace(
    client: &Client,
    namespace: &str,
    timeout: Duration,
) -> Result<DescribeNamespaceResponse, temporalio_client::tonic::Status> {
    let mut svc = client.connection().workflow_service();
    let mut req = Request::new(DescribeNamespaceRequest { namespace: namespace.to_owned(), ..Default::default() });
    // The deadline tells the server to give up; the local timeout also covers a
    // connection that never answers at all.
    req.set_timeout(timeout);
    match tokio::time::timeout(timeout, svc.describe_namespace(req)).await {
        Ok(answer) => answer.map(|r| r.into_inner()),
        Err(_) => Err(temporalio_client::tonic::Status::deadline_exceeded("DescribeNamespace took too long")),
    }
}

/// Whether the server completes a worker's outstanding long polls when the
/// worker shuts down (`frontend.enableCancelWorkerPollsOnShutdown`, Temporal
/// 1.31 and later; off by default). Without it the SDK abandons those polls,
/// and a task the server had just handed to one waits out its timeout (5 s for
/// a workflow task) before another worker gets it: at every deploy, and at
/// every replacement of the SDK worker (`worker::run_until_stopped`).
pub async fn completes_polls_on_shutdown(
    client: &Client,
    namespace: &str,
    timeout: Duration,
) -> Result<bool, temporalio_client::tonic::Status> {
    let info = describe_namespace(client, namespace, timeout).await?.namespace_info;
    Ok(info.and_then(|i| i.capabilities).is_some_and(|c| c.worker_poll_complete_on_shutdown))
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .unwrap_or_else(|| "unknown".into())
}

/// The workflow input for an order of this total under the current policy.
pub fn order_input(settings: &Settings, id: OrderId, total: Decimal) -> OrderInput {
    OrderInput {
        order_id: id,
        review_within_secs: (total >= settings.review_threshold).then(|| settings.review_deadline.as_secs().max(1)),
        deliver_within_secs: settings.delivery_deadline.as_secs().max(1),
    }
}

/// Runs a client call (start, signal, update) in the current `tracing` span's
/// OpenTelemetry context: the SDK's tracing plugin reads that context, so the
/// call and the workflow's handling of it join the caller's trace.
pub fn traced<F: std::future::Future>(call: F) -> opentelemetry::trace::WithContext<F> {
    let context = tracing_opentelemetry::OpenTelemetrySpanExt::context(&tracing::Span::current());
    opentelemetry::trace::FutureExt::with_context(call, context)
}

/// How long a workflow task may go unanswered before the server hands it to
/// another worker, and (the worker's sticky-queue setting) how long a task waits
/// for the worker that has the workflow cached. Both bound how long orders stall
/// after a worker dies without saying so (`kill -9`, a lost node): Temporal's
/// default is 10 s. Local activities longer than this keep their task alive with
/// heartbeats, so it does not limit a step's duration.
pub const WORKFLOW_TASK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a workflow start is waited for before it is left to the recovery
/// loop: an unreachable Temporal holds an order's start slot
/// (`STARTS_IN_FLIGHT`), or delays the answer to a sign-up, by at most this much.
pub const START_TIMEOUT: Duration = Duration::from_secs(3);

/// Order workflow starts the API runs at once off the answers' path; a request
/// beyond them waits for one to finish (`http::orders::start_workflow`). More than
/// Temporal needs to reach its start rate, few enough that an unreachable
/// Temporal holds little.
pub const STARTS_IN_FLIGHT: usize = 64;

/// Starts a workflow idempotently on its id: a start repeated while it runs
/// attaches to that run; one repeated after it closed is refused by the server,
/// which also means "started".
pub async fn start_once<W>(
    client: &Client,
    settings: &Settings,
    workflow: W,
    workflow_id: String,
    input: <W as WorkflowDefinition>::Input,
) -> Result<(), WorkflowStartError>
where
    W: HasWorkflowDefinition,
    <W as WorkflowDefinition>::Input: Send,
{
    let opts = WorkflowStartOptions::new(settings.task_queue.clone(), workflow_id)
        .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
        .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
        .task_timeout(WORKFLOW_TASK_TIMEOUT)
        .build();
    match traced(client.start_workflow(workflow, input, opts)).await {
        Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Starts the workflow of an order (`order-<id>`).
pub async fn start_order(client: &Client, settings: &Settings, input: OrderInput) -> Result<(), WorkflowStartError> {
    let workflow_id = input.order_id.workflow_id();
    start_once(client, settings, OrderWorkflow::run, workflow_id, input).await
}

/// Starts the onboarding workflow of an account (`user-<id>`).
pub async fn start_user(client: &Client, settings: &Settings, user_id: Uuid) -> Result<(), WorkflowStartError> {
    let input = OnboardingInput { user_id, verify_within_secs: settings.verification_deadline.as_secs().max(1) };
    start_once(client, settings, UserOnboardingWorkflow::run, user_workflow_id(user_id), input).await
}

pub fn user_workflow_id(user_id: Uuid) -> String {
    format!("user-{user_id}")
}

/// Tells the order's workflow that decision number `seq` was recorded (the
/// `decided` signal, idempotent on `seq`), then notes that it was told. A
/// workflow that is not running has nothing to be told: one not started yet
/// reads the records at every step, one that ended followed them to its end.
pub async fn tell_decided(
    client: &Client,
    pool: &PgPool,
    id: OrderId,
    seq: i64,
    decision: Option<Decision>,
) -> Result<(), WorkflowInteractionError> {
    let opts = WorkflowSignalOptions::builder().request_id(format!("decided-{id}-{seq}")).build();
    let handle = client.get_workflow_handle::<OrderWorkflow>(id.workflow_id());
    match traced(handle.signal(OrderWorkflow::decided, Decided { decision }, opts)).await {
        Ok(()) | Err(WorkflowInteractionError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    if let Err(e) = decisions::signalled(pool, id, seq).await {
        // The recovery loop signals it again (the same request id: a no-op).
        tracing::warn!(order_id = %id, error = %e, "decision signalled but not marked");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TemporalTls;

    #[test]
    fn tls_options_read_the_named_pem_files() {
        let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/ec-public.pem");
        let mut settings = Settings::from_lookup(&|k| match k {
            "DATABASE_URL" => Some("postgres://localhost/orders".into()),
            "ORDERS_JWT_SECRET" => Some("0123456789abcdef0123456789abcdef".into()),
            "ORDERS_VERIFICATION_KEY" => Some("fedcba9876543210fedcba9876543210".into()),
            _ => None,
        })
        .unwrap();
        assert!(tls_options(&settings).unwrap().is_none());
        settings.temporal_tls = Some(TemporalTls {
            server_ca_cert_path: Some(pem.into()),
            client_cert_path: Some(pem.into()),
            client_key_path: Some(pem.into()),
            server_name: Some("temporal.internal".into()),
        });
        let tls = tls_options(&settings).unwrap().unwrap();
        assert_eq!(tls.domain.as_deref(), Some("temporal.internal"));
        assert_eq!(tls.server_root_ca_cert.as_deref(), Some(std::fs::read(pem).unwrap().as_slice()));
        assert!(tls.client_tls_options.is_some(), "mTLS");
        settings.temporal_tls.as_mut().unwrap().server_ca_cert_path = Some("/nonexistent.pem".into());
        assert!(matches!(tls_options(&settings), Err(TemporalError::Tls(m)) if m.contains("/nonexistent.pem")));
    }
}
