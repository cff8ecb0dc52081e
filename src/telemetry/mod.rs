//! Logs and metrics. Logs go through `tracing`, as text or JSON lines, filtered by `RUST_LOG`
//! (default `info`). Metrics are kept in process and served in the Prometheus text format.

mod metrics;

pub use metrics::{Metrics, LATENCY_BUCKETS};

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global log subscriber; later calls do nothing.
pub fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
