//! Logging for both binaries and the tests: one initialiser.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber. Level comes from `RUST_LOG` (default `info`).
/// Safe to call more than once (later calls are ignored), which tests rely on.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true).with_current_span(true)).try_init(),
        LogFormat::Text => registry.with(fmt::layer().compact()).try_init(),
    };
}
