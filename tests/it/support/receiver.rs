//! A webhook receiver on 127.0.0.1 that verifies Standard Webhooks signatures over the raw
//! request body and records every request for the test to inspect.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bouncewatch::forward::sign::{verify, WebhookSecret};
use tokio::task::JoinHandle;

/// How the receiver responds to the next requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// 204 No Content.
    Accept,
    /// 500 Internal Server Error.
    Fail,
    /// 410 Gone.
    Gone,
    /// The given status with the given `Retry-After` value.
    RetryAfter { status: u16, value: String },
    /// 200 after the given delay.
    Slow(Duration),
    /// Never responds.
    Hang,
    /// 302 Found to the given location.
    Redirect(String),
    /// The given status with a body of `length` bytes of `x`.
    LargeBody { status: u16, length: usize },
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    pub path: String,
    pub id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    /// The `type` field of the JSON body, if the body parsed.
    pub kind: Option<String>,
    pub body: Bytes,
    /// `true` when the signature matched the raw body under the receiver's secret.
    pub verified: bool,
}

struct Shared {
    secret: WebhookSecret,
    mode: Mutex<Mode>,
    received: Mutex<Vec<ReceivedWebhook>>,
}

/// A running receiver. Dropping it stops the server.
pub struct TestReceiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl TestReceiver {
    /// Starts a receiver on an ephemeral port of 127.0.0.1 that accepts every request.
    pub async fn start(secret: WebhookSecret) -> TestReceiver {
        let shared = Arc::new(Shared {
            secret,
            mode: Mutex::new(Mode::Accept),
            received: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0 failed");
        let addr = listener
            .local_addr()
            .expect("listener has no local address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver failed");
        });
        TestReceiver {
            addr,
            shared,
            server,
        }
    }

    /// Returns `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Returns a copy of every request received so far.
    pub fn received(&self) -> Vec<ReceivedWebhook> {
        self.shared.received.lock().unwrap().clone()
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let id = header("webhook-id");
    let timestamp = header("webhook-timestamp");
    let signature = header("webhook-signature");

    // The check runs on the body bytes exactly as received, before any JSON parsing.
    let verified = match (&id, &timestamp, &signature) {
        (Some(id), Some(timestamp), Some(signature)) => {
            let now = chrono::Utc::now().timestamp();
            verify(&shared.secret, id, timestamp, signature, &body, now).is_ok()
        }
        _ => false,
    };
    let kind = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|value| value.get("type")?.as_str().map(str::to_string));

    shared.received.lock().unwrap().push(ReceivedWebhook {
        path: uri.path().to_string(),
        id,
        timestamp,
        signature,
        content_type: header("content-type"),
        user_agent: header("user-agent"),
        kind,
        body,
        verified,
    });

    let mode = shared.mode.lock().unwrap().clone();
    respond(mode).await
}

async fn respond(mode: Mode) -> Response {
    match mode {
        Mode::Accept => StatusCode::NO_CONTENT.into_response(),
        Mode::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response(),
        Mode::Gone => StatusCode::GONE.into_response(),
        Mode::RetryAfter { status, value } => {
            let status = StatusCode::from_u16(status).expect("invalid status code");
            (status, [("retry-after", value)]).into_response()
        }
        Mode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK.into_response()
        }
        Mode::Hang => std::future::pending().await,
        Mode::Redirect(location) => (StatusCode::FOUND, [("location", location)]).into_response(),
        Mode::LargeBody { status, length } => {
            let status = StatusCode::from_u16(status).expect("invalid status code");
            (status, "x".repeat(length)).into_response()
        }
    }
}
