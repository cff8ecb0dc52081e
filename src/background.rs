//! The background tasks `serve` runs beside the HTTP server. Each reads a durable queue from
//! the store, so work left by a crash resumes on the next start.

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::http::AppState;
use crate::okta::client::OktaClient;

/// Starts every background task; each stops when `stop` turns true.
pub fn spawn(state: AppState, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let client = okta_client(&state.config);
    vec![
        tokio::spawn(crate::rules::worker::run(state.clone(), stop.clone())),
        tokio::spawn(crate::rules::periodic::run(state.clone(), stop.clone())),
        tokio::spawn(crate::rules::clear::run(
            state.clone(),
            client,
            stop.clone(),
        )),
        tokio::spawn(crate::store::retention::run(
            state.store.clone(),
            state.config.clone(),
            state.metrics.clone(),
            stop.clone(),
        )),
        tokio::spawn(crate::poller::run(
            state.clone(),
            okta_client(&state.config),
            stop.clone(),
        )),
        tokio::spawn(crate::hook_health::run(state.clone(), stop.clone())),
        tokio::spawn(crate::forward::dispatch::run(state, stop)),
    ]
}

/// The Okta client for clears, or `None` when no org is configured.
fn okta_client(config: &Config) -> Option<OktaClient> {
    config.okta_org_url.as_ref()?;
    match crate::okta::setup::client_from_config(config) {
        Ok(client) => Some(client),
        Err(err) => {
            tracing::error!(error = %err, "cannot build the Okta client; clears stay queued");
            None
        }
    }
}
