//! `POST /api/v1/org/email/bounces/remove-list`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};

use super::state::okta_error;
use super::Shared;

/// Okta's reason for an address that belongs to no user of the org.
pub const NOT_A_USER: &str = "This email address does not belong to any user in your organization.";

/// Okta's reason for an address that fails its syntax check.
pub const INVALID_ADDRESS: &str =
    "Invalid email address. The provided email address failed validation against RFC 3696.";

/// Validates the body as Okta does, accepts every valid address of a known user and returns
/// the others in `errors`. The fake lists errors in reverse input order with the address
/// lowercased, so a client that matches by position or exact case fails its tests.
pub async fn remove_list(State(shared): State<Shared>, body: Bytes) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let addresses = parsed
        .as_ref()
        .and_then(|value| value.get("emailAddresses"))
        .and_then(Value::as_array);
    let Some(addresses) = addresses else {
        return okta_error(
            StatusCode::BAD_REQUEST,
            "E0000003",
            "The request body was not well-formed.",
            &[],
        );
    };
    if addresses.is_empty() {
        return okta_error(
            StatusCode::BAD_REQUEST,
            "E0000001",
            "Api validation failed: emailAddresses",
            &["emailAddresses: The field cannot be left blank"],
        );
    }

    let mut state = shared.lock().unwrap();
    let mut errors = Vec::new();
    for address in addresses {
        let address = address.as_str().unwrap_or_default();
        if !is_plausible_address(address) {
            errors
                .push(json!({ "emailAddress": address.to_lowercase(), "reason": INVALID_ADDRESS }));
        } else if state.not_users.contains(&address.to_lowercase()) {
            errors.push(json!({ "emailAddress": address.to_lowercase(), "reason": NOT_A_USER }));
        } else {
            state.removal_requested.push(address.to_string());
        }
    }
    errors.reverse();
    (StatusCode::OK, Json(json!({ "errors": errors }))).into_response()
}

/// Checks an address roughly as Okta's RFC 3696 validation does: one `@`, a local part of 1 to 64 characters
/// without spaces or `..`, and a dotted domain of letters, digits and hyphens.
fn is_plausible_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let local_valid = !local.is_empty()
        && local.len() <= 64
        && !local.contains("..")
        && !local.chars().any(|c| c.is_whitespace() || c.is_control());
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_valid = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    local_valid && domain_valid
}
