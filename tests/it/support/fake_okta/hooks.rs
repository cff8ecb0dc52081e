//! `/api/v1/eventHooks`: create, list, get, replace, delete, and the lifecycle operations.

// Validation helpers return the finished error response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use super::state::{okta_error, random_id, StoredHook};
use super::Shared;

/// Okta waits 3 s for the verification response and retries once.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(3);
const VERIFY_ATTEMPTS: usize = 2;

fn not_found(id: &str) -> Response {
    okta_error(
        StatusCode::NOT_FOUND,
        "E0000007",
        &format!("Not found: Resource not found: {id} (EventHook)"),
        &[],
    )
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Checks the required fields and returns the auth header value, which Okta never returns.
fn validate(body: &Value) -> Result<Option<String>, Response> {
    let invalid = |field: &str| {
        okta_error(
            StatusCode::BAD_REQUEST,
            "E0000001",
            &format!("Api validation failed: {field}"),
            &[&format!("{field}: The field cannot be left blank")],
        )
    };
    if body.get("name").and_then(Value::as_str).is_none_or_empty() {
        return Err(invalid("name"));
    }
    let items = body.pointer("/events/items").and_then(Value::as_array);
    if items.is_none_or_empty() {
        return Err(invalid("events.items"));
    }
    let uri = body.pointer("/channel/config/uri").and_then(Value::as_str);
    if uri.is_none_or_empty() {
        return Err(invalid("channel.config.uri"));
    }
    Ok(body
        .pointer("/channel/config/authScheme/value")
        .and_then(Value::as_str)
        .map(str::to_string))
}

trait NoneOrEmpty {
    fn is_none_or_empty(&self) -> bool;
}

impl NoneOrEmpty for Option<&str> {
    fn is_none_or_empty(&self) -> bool {
        self.is_none_or(str::is_empty)
    }
}

impl NoneOrEmpty for Option<&Vec<Value>> {
    fn is_none_or_empty(&self) -> bool {
        self.is_none_or(Vec::is_empty)
    }
}

/// Builds the stored JSON from a request body: read-only fields set, the auth value removed.
fn hook_json(id: &str, body: &Value, base_url: &url::Url, created: &str) -> Value {
    let mut channel = body["channel"].clone();
    channel["config"]["method"] = json!("POST");
    if let Some(scheme) = channel["config"]["authScheme"].as_object_mut() {
        scheme.remove("value");
    }
    let self_href = format!("{}api/v1/eventHooks/{id}", base_url);
    json!({
        "id": id,
        "status": "ACTIVE",
        "verificationStatus": "UNVERIFIED",
        "name": body["name"],
        "description": body.get("description").cloned().unwrap_or(Value::Null),
        "created": created,
        "createdBy": "00ufakeadmin",
        "lastUpdated": now_text(),
        "events": body["events"],
        "channel": channel,
        "_links": { "self": { "href": self_href } },
    })
}

pub async fn list(State(shared): State<Shared>) -> Response {
    let state = shared.lock().unwrap();
    let hooks: Vec<Value> = state.hooks.values().map(|hook| hook.json.clone()).collect();
    Json(hooks).into_response()
}

/// Creates a hook in `ACTIVE` status, as Okta's create operation documents.
pub async fn create(State(shared): State<Shared>, Json(body): Json<Value>) -> Response {
    let auth_value = match validate(&body) {
        Ok(value) => value,
        Err(response) => return response,
    };
    let mut state = shared.lock().unwrap();
    let id = random_id("who", 17);
    let json = hook_json(&id, &body, &state.base_url, &now_text());
    state.hooks.insert(
        id,
        StoredHook {
            json: json.clone(),
            auth_value,
        },
    );
    Json(json).into_response()
}

pub async fn get_one(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let state = shared.lock().unwrap();
    match state.hooks.get(&id) {
        Some(hook) => Json(hook.json.clone()).into_response(),
        None => not_found(&id),
    }
}

/// Replaces the hook; a changed `channel` makes it `UNVERIFIED` again.
pub async fn replace(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let auth_value = match validate(&body) {
        Ok(value) => value,
        Err(response) => return response,
    };
    let mut state = shared.lock().unwrap();
    let base_url = state.base_url.clone();
    let Some(stored) = state.hooks.get_mut(&id) else {
        return not_found(&id);
    };
    let created = stored.json["created"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut json = hook_json(&id, &body, &base_url, &created);
    json["status"] = stored.json["status"].clone();
    let channel_unchanged =
        json["channel"] == stored.json["channel"] && auth_value == stored.auth_value;
    if channel_unchanged {
        json["verificationStatus"] = stored.json["verificationStatus"].clone();
    }
    *stored = StoredHook {
        json: json.clone(),
        auth_value,
    };
    Json(json).into_response()
}

/// Deletes an `INACTIVE` hook. Okta deletes only inactive hooks and its API reference lists
/// 403 as the error of this operation, so the fake returns 403 for an active one.
// NOTE: the errorCode Okta uses for this case is not documented; E0000006 is a guess.
pub async fn delete(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let mut state = shared.lock().unwrap();
    let Some(stored) = state.hooks.get(&id) else {
        return not_found(&id);
    };
    if stored.json["status"] == "ACTIVE" {
        return okta_error(
            StatusCode::FORBIDDEN,
            "E0000006",
            "You do not have permission to perform the requested action",
            &["Only INACTIVE event hooks can be deleted"],
        );
    }
    state.hooks.remove(&id);
    StatusCode::NO_CONTENT.into_response()
}

fn set_status(shared: &Shared, id: &str, field: &str, value: &str) -> Response {
    let mut state = shared.lock().unwrap();
    let Some(stored) = state.hooks.get_mut(id) else {
        return not_found(id);
    };
    stored.json[field] = json!(value);
    stored.json["lastUpdated"] = json!(now_text());
    Json(stored.json.clone()).into_response()
}

pub async fn activate(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    set_status(&shared, &id, "status", "ACTIVE")
}

pub async fn deactivate(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    set_status(&shared, &id, "status", "INACTIVE")
}

/// Sends the one-time verification GET to the hook URI with `x-okta-verification-challenge`,
/// the auth header and the extra headers, and expects `{"verification": <challenge>}`.
pub async fn verify(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let stored = shared.lock().unwrap().hooks.get(&id).cloned();
    let Some(stored) = stored else {
        return not_found(&id);
    };
    let uri = stored.json["channel"]["config"]["uri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let auth_key = stored.json["channel"]["config"]["authScheme"]["key"]
        .as_str()
        .map(str::to_string);
    let extra_headers = stored.json["channel"]["config"]["headers"]
        .as_array()
        .cloned()
        .unwrap_or_default();

    let http = reqwest::Client::builder()
        .timeout(VERIFY_TIMEOUT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("verification HTTP client");
    let mut failure = String::new();
    for _ in 0..VERIFY_ATTEMPTS {
        let challenge = random_id("", 32);
        let mut request = http
            .get(&uri)
            .header("x-okta-verification-challenge", &challenge);
        if let (Some(key), Some(value)) = (&auth_key, &stored.auth_value) {
            request = request.header(key.as_str(), value.as_str());
        }
        for header in &extra_headers {
            if let (Some(key), Some(value)) = (header["key"].as_str(), header["value"].as_str()) {
                request = request.header(key, value);
            }
        }
        match request.send().await {
            Ok(response) if response.status() == StatusCode::OK => {
                let echoed: Value = response.json().await.unwrap_or(Value::Null);
                if echoed["verification"] == challenge.as_str() {
                    return set_status(&shared, &id, "verificationStatus", "VERIFIED");
                }
                failure = "the response did not echo the verification challenge".to_string();
            }
            Ok(response) => failure = format!("the endpoint returned {}", response.status()),
            Err(error) => failure = format!("the request failed: {error}"),
        }
    }
    okta_error(
        StatusCode::BAD_REQUEST,
        "E0000001",
        "Api validation failed: Event hook verification failed",
        &[&failure],
    )
}
