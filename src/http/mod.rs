//! The axum routers: the Okta hook, the admin API under `/api/v1`, and health and metrics.

pub mod admin;
pub mod auth;
pub mod backfill;
pub mod bounce_list;
pub mod error;
pub mod health;
pub mod hook;
pub mod ops;
pub mod rules;
pub mod subscriptions;
pub mod tokens;
pub mod unavailable;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio::sync::Notify;

pub use error::ApiError;

use crate::config::Config;
use crate::store::Store;
use crate::telemetry::Metrics;

/// The state shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub hook_secrets: auth::Accepted,
    pub admin_tokens: auth::Accepted,
    /// Woken after a delivery is stored, so the rules run without waiting for their poll.
    pub rules_wake: Arc<Notify>,
    /// Woken when clears are queued or approved.
    pub clear_wake: Arc<Notify>,
}

impl AppState {
    pub fn new(config: Arc<Config>, store: Store, metrics: Arc<Metrics>) -> AppState {
        let hook_secrets = auth::Accepted::new(
            [&config.hook_secret, &config.hook_secret_previous]
                .into_iter()
                .flatten()
                .map(|secret| secret.expose()),
        );
        let admin_tokens =
            auth::Accepted::new(config.admin_token.iter().map(|token| token.expose()));
        AppState {
            config,
            store,
            metrics,
            hook_secrets,
            admin_tokens,
            rules_wake: Arc::new(Notify::new()),
            clear_wake: Arc::new(Notify::new()),
        }
    }
}

/// The whole service's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(hook::router(&state))
        .merge(health::router())
        .nest("/api/v1", admin::router(state.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts unmatched paths; one under `/okta` is probably lost Okta traffic.
async fn not_found(State(state): State<AppState>, request: Request) -> ApiError {
    let path = request.uri().path();
    if path.starts_with("/okta") {
        state.metrics.inc(
            "bouncewatch_okta_path_not_found_total",
            "Requests under /okta to a path that is not the hook: probably lost Okta deliveries.",
            &[],
            1,
        );
        tracing::warn!(path, "request under /okta to an unknown path");
    }
    ApiError::NotFound(format!("no route for {path}"))
}

/// Records each request's latency by route.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    state.metrics.observe(
        "bouncewatch_http_request_duration_seconds",
        "HTTP request latency by route, method and status.",
        &[("route", &route), ("method", &method), ("status", &status)],
        started.elapsed().as_secs_f64(),
    );
    response
}
