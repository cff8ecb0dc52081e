//! Shared state of the fake Okta org and Okta's JSON error responses.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};
use url::Url;

/// A failure or variation the fake applies to the next `/api/` requests, one per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 403 with errorCode E0000006, as for a token without the needed permission.
    Forbidden,
    /// A 5xx status such as 500 or 503.
    ServerError(u16),
    /// 429 with errorCode E0000047 and `X-Rate-Limit-Reset` one second ahead.
    TooManyRequests,
    /// The endpoint runs, then the fake returns 204 with no body.
    NoContent,
    /// The endpoint runs, then the fake returns 200 with `{}`.
    EmptyObject,
    /// The fake waits this long before it handles the request.
    Delay(Duration),
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub received_at: SystemTime,
}

impl RecordedRequest {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    }
}

/// The fixed-window rate limit the fake applies to all `/api/` requests.
#[derive(Debug)]
pub struct RateWindow {
    pub limit: u64,
    pub window: Duration,
    pub started: SystemTime,
    pub used: u64,
}

impl RateWindow {
    /// Counts one request and returns whether it fits in the current window.
    pub fn admit(&mut self, now: SystemTime) -> bool {
        if now >= self.started + self.window {
            self.started = now;
            self.used = 0;
        }
        if self.used >= self.limit {
            return false;
        }
        self.used += 1;
        true
    }

    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// Returns the end of the window in epoch seconds, rounded up.
    pub fn reset_epoch(&self) -> u64 {
        epoch_ceil(self.started + self.window)
    }
}

/// Returns `time` in Unix epoch seconds, rounded up.
pub fn epoch_ceil(time: SystemTime) -> u64 {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_secs() + u64::from(since_epoch.subsec_nanos() > 0)
}

/// A registered OAuth service app.
#[derive(Debug, Clone)]
pub struct ServiceApp {
    pub public_key_pem: String,
    pub scopes: Vec<String>,
}

/// A stored event hook: its JSON as Okta returns it and the write-only auth header value.
#[derive(Debug, Clone)]
pub struct StoredHook {
    pub json: Value,
    pub auth_value: Option<String>,
}

/// Where a System Log cursor continues.
#[derive(Debug, Clone)]
pub struct LogCursor {
    pub offset: usize,
    pub filter_type: Option<String>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub limit: usize,
}

/// Everything the fake org stores. Tests change it through `FakeOkta`.
#[derive(Debug)]
pub struct State {
    pub base_url: Url,
    pub api_token: String,
    pub requests: Vec<RecordedRequest>,
    pub faults: VecDeque<Fault>,
    pub rate: RateWindow,
    pub issued_429_resets: Vec<u64>,
    pub not_users: HashSet<String>,
    pub removal_requested: Vec<String>,
    pub service_apps: HashMap<String, ServiceApp>,
    pub access_tokens: HashSet<String>,
    pub token_lifetime_secs: u64,
    pub require_dpop: bool,
    pub events: Vec<Value>,
    pub log_cursors: HashMap<String, LogCursor>,
    pub hooks: BTreeMap<String, StoredHook>,
}

impl State {
    pub fn new(base_url: Url, api_token: String) -> State {
        State {
            base_url,
            api_token,
            requests: Vec::new(),
            faults: VecDeque::new(),
            rate: RateWindow {
                limit: 600,
                window: Duration::from_secs(60),
                started: SystemTime::now(),
                used: 0,
            },
            issued_429_resets: Vec::new(),
            not_users: HashSet::new(),
            removal_requested: Vec::new(),
            service_apps: HashMap::new(),
            access_tokens: HashSet::new(),
            token_lifetime_secs: 3600,
            require_dpop: false,
            events: Vec::new(),
            log_cursors: HashMap::new(),
            hooks: BTreeMap::new(),
        }
    }
}

/// Returns a random id with Okta's style of prefix, such as `who` for event hooks.
pub fn random_id(prefix: &str, length: usize) -> String {
    let suffix: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(length)
        .map(char::from)
        .collect();
    format!("{prefix}{suffix}")
}

/// Builds Okta's error response `{errorCode, errorSummary, errorLink, errorId, errorCauses}`.
pub fn okta_error(status: StatusCode, code: &str, summary: &str, causes: &[&str]) -> Response {
    let causes: Vec<Value> = causes
        .iter()
        .map(|cause| json!({ "errorSummary": cause }))
        .collect();
    let body = json!({
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": random_id("oae", 22),
        "errorCauses": causes,
    });
    (status, Json(body)).into_response()
}
