//! A fake Okta org: a real axum HTTP server on 127.0.0.1 that follows the contract of Okta's
//! Management API (remove-list, System Log, event hooks, the org token endpoint) closely
//! enough for the client's integration tests. It records every request it receives.

mod bounces;
mod hooks;
mod logs;
mod oauth;
mod state;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::sync::oneshot;
use url::Url;

use state::{epoch_ceil, okta_error, ServiceApp, State};
pub use state::{Fault, RecordedRequest};

type Shared = Arc<Mutex<State>>;

/// The SSWS API token the fake accepts unless a test sets another.
pub const API_TOKEN: &str = "00fake-okta-api-token";

/// A running fake Okta org. Dropping it stops the server.
pub struct FakeOkta {
    base_url: Url,
    state: Shared,
    shutdown: Option<oneshot::Sender<()>>,
}

impl FakeOkta {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start() -> FakeOkta {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Okta listener");
        let address = listener.local_addr().expect("fake Okta local address");
        let base_url = Url::parse(&format!("http://{address}")).expect("fake Okta base URL");
        let state: Shared = Arc::new(Mutex::new(State::new(base_url.clone(), API_TOKEN.into())));

        let router = Router::new()
            .route("/oauth2/v1/token", post(oauth::token))
            .route(
                "/api/v1/org/email/bounces/remove-list",
                post(bounces::remove_list),
            )
            .route("/api/v1/logs", get(logs::list))
            .route("/api/v1/eventHooks", get(hooks::list).post(hooks::create))
            .route(
                "/api/v1/eventHooks/{id}",
                get(hooks::get_one)
                    .put(hooks::replace)
                    .delete(hooks::delete),
            )
            .route(
                "/api/v1/eventHooks/{id}/lifecycle/activate",
                post(hooks::activate),
            )
            .route(
                "/api/v1/eventHooks/{id}/lifecycle/deactivate",
                post(hooks::deactivate),
            )
            .route(
                "/api/v1/eventHooks/{id}/lifecycle/verify",
                post(hooks::verify),
            )
            .layer(middleware::from_fn_with_state(state.clone(), gateway))
            .with_state(state.clone());

        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .expect("fake Okta server");
        });
        FakeOkta {
            base_url,
            state,
            shutdown: Some(shutdown),
        }
    }

    /// Returns the org URL, such as `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> Url {
        self.base_url.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake Okta state mutex poisoned")
    }

    /// Applies `fault` to each of the next `count` `/api/` requests.
    pub fn fail_next(&self, count: usize, fault: Fault) {
        let mut state = self.state();
        for _ in 0..count {
            state.faults.push_back(fault.clone());
        }
    }

    /// Sets the fixed window of the rate limit and starts a new window now.
    pub fn set_rate_limit(&self, limit: u64, window: Duration) {
        let mut state = self.state();
        state.rate.limit = limit;
        state.rate.window = window;
        state.rate.started = SystemTime::now();
        state.rate.used = 0;
    }

    /// Returns the `X-Rate-Limit-Reset` values of the 429 responses sent so far.
    pub fn issued_429_resets(&self) -> Vec<u64> {
        self.state().issued_429_resets.clone()
    }

    /// Marks `address` as belonging to no user of the org, so remove-list rejects it.
    pub fn add_unknown_address(&self, address: &str) {
        self.state().not_users.insert(address.to_lowercase());
    }

    /// Returns the addresses remove-list accepted, in the order received.
    pub fn accepted_removals(&self) -> Vec<String> {
        self.state().removal_requested.clone()
    }

    /// Registers an OAuth service app whose client assertions are signed with the private
    /// half of `public_key_pem`, allowed to request `scopes`.
    pub fn register_service_app(&self, client_id: &str, public_key_pem: &str, scopes: &[&str]) {
        let app = ServiceApp {
            public_key_pem: public_key_pem.to_string(),
            scopes: scopes.iter().map(|scope| scope.to_string()).collect(),
        };
        self.state().service_apps.insert(client_id.to_string(), app);
    }

    /// Makes the token endpoint demand a DPoP proof, as a service app with DPoP required does.
    pub fn require_dpop(&self, required: bool) {
        self.state().require_dpop = required;
    }

    /// Adds System Log events; each needs `uuid`, `published` and `eventType`.
    pub fn load_events(&self, events: Vec<Value>) {
        self.state().events.extend(events);
    }

    /// Returns the stored event hooks as Okta would return them.
    pub fn hooks(&self) -> Vec<Value> {
        self.state()
            .hooks
            .values()
            .map(|hook| hook.json.clone())
            .collect()
    }

    /// Returns every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Returns the requests received for `path`.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|request| request.path == path)
            .collect()
    }
}

impl Drop for FakeOkta {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Runs before every handler: records the request, and for `/api/` paths checks the
/// credentials, applies queued faults and the rate limit, and adds the rate-limit headers.
async fn gateway(AxumState(shared): AxumState<Shared>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers.clone(),
        body: body.clone(),
        received_at: SystemTime::now(),
    };
    let is_api = recorded.path.starts_with("/api/");
    let authorized = is_authorized(&shared, recorded.header("authorization"));
    shared.lock().unwrap().requests.push(recorded);
    let request = Request::from_parts(parts, Body::from(body));
    if !is_api {
        return next.run(request).await;
    }

    let fault = shared.lock().unwrap().faults.pop_front();
    if let Some(Fault::Delay(delay)) = fault {
        tokio::time::sleep(delay).await;
    }

    let now = SystemTime::now();
    let (admitted, limit, remaining, reset) = {
        let mut state = shared.lock().unwrap();
        let admitted = state.rate.admit(now);
        (
            admitted,
            state.rate.limit,
            state.rate.remaining(),
            state.rate.reset_epoch(),
        )
    };

    let mut response = if !admitted {
        shared.lock().unwrap().issued_429_resets.push(reset);
        okta_error(
            StatusCode::TOO_MANY_REQUESTS,
            "E0000047",
            "API call exceeded rate limit due to too many requests.",
            &[],
        )
    } else if !authorized {
        okta_error(
            StatusCode::UNAUTHORIZED,
            "E0000011",
            "Invalid token provided",
            &[],
        )
    } else {
        match fault {
            Some(Fault::Forbidden) => okta_error(
                StatusCode::FORBIDDEN,
                "E0000006",
                "You do not have permission to perform the requested action",
                &[],
            ),
            Some(Fault::ServerError(status)) => okta_error(
                StatusCode::from_u16(status).expect("valid 5xx status"),
                "E0000009",
                "Internal Server Error",
                &[],
            ),
            Some(Fault::TooManyRequests) => {
                let fault_reset = epoch_ceil(now + Duration::from_secs(1));
                shared.lock().unwrap().issued_429_resets.push(fault_reset);
                let mut response = okta_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "E0000047",
                    "API call exceeded rate limit due to too many requests.",
                    &[],
                );
                set_rate_headers(&mut response, limit, 0, fault_reset);
                return response;
            }
            Some(Fault::NoContent) => {
                let _ = next.run(request).await;
                StatusCode::NO_CONTENT.into_response()
            }
            Some(Fault::EmptyObject) => {
                let _ = next.run(request).await;
                (StatusCode::OK, axum::Json(serde_json::json!({}))).into_response()
            }
            Some(Fault::Delay(_)) | None => next.run(request).await,
        }
    };
    set_rate_headers(&mut response, limit, remaining, reset);
    let request_id = state::random_id("req", 20);
    response.headers_mut().insert(
        "x-okta-request-id",
        HeaderValue::from_str(&request_id).unwrap(),
    );
    response
}

fn set_rate_headers(response: &mut Response, limit: u64, remaining: u64, reset: u64) {
    let headers = response.headers_mut();
    headers.insert("x-rate-limit-limit", HeaderValue::from(limit));
    headers.insert("x-rate-limit-remaining", HeaderValue::from(remaining));
    headers.insert("x-rate-limit-reset", HeaderValue::from(reset));
}

fn is_authorized(shared: &Shared, authorization: Option<String>) -> bool {
    let Some(authorization) = authorization else {
        return false;
    };
    let state = shared.lock().unwrap();
    if let Some(token) = authorization.strip_prefix("SSWS ") {
        return token == state.api_token;
    }
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        return state.access_tokens.contains(token);
    }
    false
}
