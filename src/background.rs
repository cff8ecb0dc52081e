//! The background tasks `serve` runs beside the HTTP server. Each reads a durable queue from
//! the store, so work left by a crash resumes on the next start.

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::http::AppState;

/// Starts every background task; each stops when `stop` turns true.
pub fn spawn(state: AppState, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    vec![tokio::spawn(crate::forward::dispatch::run(state, stop))]
}
