//! Logs and traces for both binaries and the tests: one initialiser.
//!
//! Logs: JSON lines (or compact text) to stdout, level from `RUST_LOG`.
//! Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set, spans
//! go over OTLP/HTTP (protobuf) to that collector, with the standard `OTEL_*`
//! variables honoured (service name, headers, resource attributes). `tracing`
//! spans (HTTP requests, activities, SQL) become OpenTelemetry spans, and the
//! Temporal SDK's plugin (see `temporal::connect`) carries the context from the
//! workflow start through the workflow into every activity, so one order is one trace.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use temporalio_sdk::opentelemetry::WorkflowIdGenerator;
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

use crate::config::LogFormat;

/// Flushes and stops trace export when dropped: keep it alive for the life of `main`.
#[must_use]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported (an OTLP endpoint is configured).
    pub fn traces_enabled(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.provider.take().map(|p| p.shutdown()) {
            eprintln!("telemetry: flushing spans failed: {e}");
        }
    }
}

/// Whether the standard OTel variables ask for trace export.
pub fn otlp_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| !v.trim().is_empty()))
        && std::env::var("OTEL_TRACES_EXPORTER").map_or(true, |v| v != "none")
}

/// Installs the global subscriber (and, when configured, the OTLP span pipeline).
/// Level comes from `RUST_LOG` (default `info`). Safe to call more than once
/// (later calls change nothing), which tests rely on.
pub fn init(format: LogFormat, service_name: &'static str) -> Telemetry {
    let provider = if otlp_configured() { tracer_provider(service_name) } else { None };
    let otel_layer = provider.as_ref().map(|p| {
        // Spans of this crate (HTTP, activities, SQL); the workflow and activity spans come
        // from the SDK's plugin, so the SDK's own internal tracing spans are left out.
        let filter = EnvFilter::new("off,orders=info,orders_api=info,orders_worker=info");
        tracing_opentelemetry::layer().with_tracer(p.tracer(service_name)).with_filter(filter)
    });
    let logs = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt_layer = match format {
        LogFormat::Json => fmt::layer().json().flatten_event(true).with_current_span(true).boxed(),
        LogFormat::Text => fmt::layer().compact().boxed(),
    };
    let installed = tracing_subscriber::registry().with(fmt_layer.with_filter(logs)).with(otel_layer).try_init();
    if installed.is_err() {
        // Already installed (tests): this pipeline would never see a span.
        return Telemetry { provider: None };
    }
    if let Some(p) = &provider {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(p.clone());
    }
    Telemetry { provider }
}

fn tracer_provider(service_name: &'static str) -> Option<SdkTracerProvider> {
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("telemetry: OTLP exporter not started, traces are off: {e}");
            return None;
        }
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service_name);
    }
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            // Replay-safe ids for workflow spans, as the SDK's plugin requires.
            .with_id_generator(WorkflowIdGenerator::default())
            .with_resource(resource.build())
            .build(),
    )
}
