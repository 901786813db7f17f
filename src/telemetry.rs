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
use opentelemetry_otlp::WithHttpConfig;
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

/// The OTLP/HTTP exporter's client: blocking (the batch processor exports from a
/// thread of its own, outside any runtime), over rustls, so `https://`
/// collectors work. `OTEL_EXPORTER_OTLP_CERTIFICATE` (or `..._TRACES_CERTIFICATE`)
/// names a PEM CA to trust besides the built-in roots, as the OTel specification
/// has it; `OTEL_EXPORTER_OTLP_HEADERS` is applied by the exporter itself.
#[derive(Debug)]
struct OtlpHttpClient(reqwest::blocking::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttpClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<opentelemetry_http::Response<opentelemetry_http::Bytes>, opentelemetry_http::HttpError> {
        let request: reqwest::blocking::Request = request.try_into()?;
        let response = self.0.execute(request)?.error_for_status()?;
        let mut out = opentelemetry_http::Response::builder().status(response.status());
        if let Some(headers) = out.headers_mut() {
            *headers = response.headers().clone();
        }
        Ok(out.body(response.bytes()?)?)
    }
}

fn otlp_client() -> Result<OtlpHttpClient, String> {
    let mut builder = crate::tls::blocking_client().timeout(std::time::Duration::from_secs(10));
    let ca = ["OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|p| !p.trim().is_empty()));
    if let Some(path) = ca {
        let pem = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("{path}: {e}"))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    // A blocking client may not be built (its runtime started and dropped) inside
    // the async main: build it on a thread of its own.
    std::thread::spawn(move || builder.build().map(OtlpHttpClient).map_err(|e| e.to_string()))
        .join()
        .map_err(|_| "building the OTLP client panicked".to_owned())?
}

fn tracer_provider(service_name: &'static str) -> Option<SdkTracerProvider> {
    let client = match otlp_client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("telemetry: OTLP client not built, traces are off: {e}");
            return None;
        }
    };
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().with_http_client(client).build() {
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
