//! Named admin tokens: who may call `/api/v1`, and the endpoints that manage them.
//!
//! The token configured as `admin_token` is always valid, is named `config` and has the admin
//! role; it changes only with the configuration. Tokens created through `POST /api/v1/tokens`
//! live in the store as SHA-256 digests, so rotating one needs no restart: create the new
//! token, switch the callers, delete the old one. A token with the read role may send only
//! `GET` and `HEAD` requests.
//!
//! Handlers learn who sent a request by taking [`Admin`] as an extractor.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::admin::Paging;
use super::{ApiError, AppState};
use crate::store::tokens::{CreateError, Role, TokenRecord};

/// Name, id and actor name of the token configured as `admin_token`.
pub const CONFIG_TOKEN_NAME: &str = "config";

/// Prefix of generated token values, so secret scanners and people can recognise them.
const TOKEN_VALUE_PREFIX: &str = "bwt_";

/// Maximum length of a token name, in bytes. Names go into audit log actors as `admin:<name>`.
const MAX_NAME_LEN: usize = 64;

/// `last_used_at` is written at most this often per token, so reads do not each cost a write.
const LAST_USED_RESOLUTION: chrono::Duration = chrono::Duration::seconds(60);

/// The admin who sent a request: set by the admin API's authentication on every request under
/// `/api/v1`, and taken by handlers as an extractor (`admin: Admin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Token id; `config` for the configured token.
    pub id: String,
    /// Token name; `config` for the configured token.
    pub name: String,
    pub role: Role,
}

impl Admin {
    /// Returns the audit log actor for this admin: `admin:<name>`.
    pub fn actor(&self) -> String {
        format!("admin:{}", self.name)
    }

    fn configured() -> Admin {
        Admin {
            id: CONFIG_TOKEN_NAME.into(),
            name: CONFIG_TOKEN_NAME.into(),
            role: Role::Admin,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Admin, ApiError> {
        parts.extensions.get::<Admin>().cloned().ok_or_else(|| {
            // Only a route outside the admin router's authentication layer gets here.
            tracing::error!(
                path = parts.uri.path(),
                "handler asked for the admin, but the route is not authenticated"
            );
            ApiError::Internal
        })
    }
}

/// Finds the admin a presented bearer token belongs to, or `None` when it is no valid token.
pub async fn authenticate(state: &AppState, presented: &str) -> Result<Option<Admin>, ApiError> {
    // Compared in constant time against the digest of the configured value.
    if state.admin_tokens.matches(presented.as_bytes()) {
        return Ok(Some(Admin::configured()));
    }
    // A lookup by digest reveals through timing at most something about the digest, which an
    // attacker cannot steer towards a stored value's digest.
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let Some(record) = state.store.token_by_digest(&digest)? else {
        return Ok(None);
    };
    note_use(state, &record);
    Ok(Some(Admin {
        id: record.id,
        name: record.name,
        role: record.role,
    }))
}

/// Records the time of use in the background, so the request does not wait for a flush.
fn note_use(state: &AppState, record: &TokenRecord) {
    let now = Utc::now();
    if record
        .last_used_at
        .is_some_and(|last| now - last < LAST_USED_RESOLUTION)
    {
        return;
    }
    let store = state.store.clone();
    let id = record.id.clone();
    tokio::spawn(async move {
        if let Err(err) = store.touch_token(&id, now).await {
            tracing::warn!(error = %err, token = %id, "could not record an admin token's last use");
        }
    });
}

/// Builds a 403 response when the admin's role does not allow `method`, or `None` when it does.
pub fn check_role(admin: &Admin, method: &Method) -> Option<Response> {
    if admin.role == Role::Admin || method == Method::GET || method == Method::HEAD {
        return None;
    }
    tracing::warn!(token = %admin.name, %method, "admin request rejected: the token has the read role");
    let body = json!({
        "error": "forbidden",
        "detail": format!(
            "the token {} has the read role, which allows only GET requests; use a token with the admin role",
            admin.name
        ),
    });
    Some((StatusCode::FORBIDDEN, Json(body)).into_response())
}

/// Returns the token endpoints, which the admin router merges behind its authentication.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", delete(delete_token))
}

/// Builds the API document of a token. It never contains the value, which is not stored.
fn token_document(record: &TokenRecord) -> Value {
    json!({
        "id": record.id,
        "name": record.name,
        "role": record.role,
        "created_at": record.created_at,
        "last_used_at": record.last_used_at,
        "source": "api",
    })
}

fn configured_document() -> Value {
    json!({
        "id": CONFIG_TOKEN_NAME,
        "name": CONFIG_TOKEN_NAME,
        "role": Role::Admin,
        "created_at": null,
        "last_used_at": null,
        "source": "config",
    })
}

/// Sort key of a token in lists: creation time (microseconds), then id. The configured token comes first.
fn sort_key(record: &TokenRecord) -> (i64, String) {
    (record.created_at.timestamp_micros(), record.id.clone())
}

fn encode_cursor(key: &(i64, String)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", key.0, key.1))
}

fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (millis, id) = text.split_once(':')?;
    Some((millis.parse().ok()?, id.to_string()))
}

async fn list_tokens(
    State(state): State<AppState>,
    Query(paging): Query<Paging>,
) -> Result<Json<Value>, ApiError> {
    let limit = paging.limit()?;
    let after = match paging.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(decode_cursor(raw).ok_or_else(|| {
            ApiError::bad_request("cursor", "the cursor is not one this endpoint returned")
        })?),
    };

    let mut stored = state.store.tokens()?;
    stored.sort_by_key(sort_key);
    // The configured token sorts before every stored one: (i64::MIN, "config").
    let config_key = (i64::MIN, CONFIG_TOKEN_NAME.to_string());
    let mut entries: Vec<((i64, String), Value)> = Vec::new();
    if after.as_ref().is_none_or(|after| config_key > *after) {
        entries.push((config_key, configured_document()));
    }
    for record in &stored {
        let key = sort_key(record);
        if after.as_ref().is_none_or(|after| key > *after) {
            entries.push((key, token_document(record)));
        }
    }

    let more = entries.len() > limit;
    entries.truncate(limit);
    let next = match (more, entries.last()) {
        (true, Some((key, _))) => Some(encode_cursor(key)),
        _ => None,
    };
    let items: Vec<Value> = entries.into_iter().map(|(_, document)| document).collect();
    Ok(Json(json!({"items": items, "next": next})))
}

/// A valid `POST /tokens` body.
#[derive(Debug)]
struct NewToken {
    name: String,
    role: Role,
}

fn parse_new_token(body: &[u8]) -> Result<NewToken, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request("body", format!("the body is not JSON: {err}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::bad_request(
            "body",
            "the body must be a JSON object such as {\"name\": \"ci\", \"role\": \"read\"}",
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|key| !["name", "role"].contains(&key.as_str()))
    {
        return Err(ApiError::bad_request(
            unknown,
            format!("unknown field {unknown:?}; a token has only name and role"),
        ));
    }
    let name = parse_name(&fields)?;
    let role = match fields.get("role").and_then(Value::as_str) {
        Some("read") => Role::Read,
        Some("admin") => Role::Admin,
        _ => {
            return Err(ApiError::bad_request(
                "role",
                "role is required and must be \"read\" or \"admin\"",
            ))
        }
    };
    Ok(NewToken { name, role })
}

fn parse_name(fields: &Map<String, Value>) -> Result<String, ApiError> {
    let Some(name) = fields.get("name").and_then(Value::as_str) else {
        return Err(ApiError::bad_request(
            "name",
            "name is required and must be a string",
        ));
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(allowed) {
        return Err(ApiError::bad_request(
            "name",
            format!(
                "{name:?} is not a valid token name: use 1 to {MAX_NAME_LEN} letters, digits, '.', '_' or '-'"
            ),
        ));
    }
    if name == CONFIG_TOKEN_NAME {
        return Err(ApiError::bad_request(
            "name",
            "the name config is reserved for the token configured as admin_token",
        ));
    }
    Ok(name.to_string())
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

async fn create_token(
    State(state): State<AppState>,
    admin: Admin,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new = parse_new_token(&body)?;

    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let value = format!("{TOKEN_VALUE_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
    let digest: [u8; 32] = Sha256::digest(value.as_bytes()).into();
    let created_at: DateTime<Utc> = Utc::now();
    let record = TokenRecord {
        id: format!("tok_{}", random_hex(8)),
        name: new.name,
        role: new.role,
        created_at,
        last_used_at: None,
        digest: hex::encode(digest),
    };

    let record = match state
        .store
        .create_token(record, digest, admin.actor())
        .await
    {
        Ok(record) => record,
        Err(CreateError::NameTaken) => {
            return Err(ApiError::Conflict {
                code: "name_taken",
                detail: "another token has this name; delete it first or choose another name"
                    .into(),
            })
        }
        Err(CreateError::Store(err)) => return Err(err.into()),
    };
    tracing::info!(token = %record.name, id = %record.id, role = record.role.as_str(), by = %admin.name, "admin token created");

    let mut document = token_document(&record);
    document["token"] = json!(value);
    Ok((StatusCode::CREATED, Json(document)).into_response())
}

async fn delete_token(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if id == CONFIG_TOKEN_NAME {
        return Err(ApiError::Conflict {
            code: "configured_token",
            detail: "the token named config comes from the admin_token setting; change that \
                     setting and restart to replace it"
                .into(),
        });
    }
    match state.store.delete_token(&id, admin.actor()).await? {
        Some(record) => {
            tracing::info!(token = %record.name, id = %record.id, by = %admin.name, "admin token deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::NotFound(format!(
            "no admin token has the id {id}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip() {
        let key = (1_736_935_200_000, "tok_0123456789abcdef".to_string());
        assert_eq!(decode_cursor(&encode_cursor(&key)), Some(key));
        assert_eq!(decode_cursor("not a cursor"), None);
    }

    #[test]
    fn new_token_fields_checked() {
        let parsed = parse_new_token(br#"{"name": "ci-reader", "role": "read"}"#).unwrap();
        assert_eq!(parsed.name, "ci-reader");
        assert_eq!(parsed.role, Role::Read);

        for (body, field) in [
            (&br#"{"role": "read"}"#[..], "name"),
            (br#"{"name": "", "role": "read"}"#, "name"),
            (br#"{"name": "has space", "role": "read"}"#, "name"),
            (br#"{"name": "config", "role": "admin"}"#, "name"),
            (br#"{"name": "ci"}"#, "role"),
            (br#"{"name": "ci", "role": "owner"}"#, "role"),
            (br#"{"name": "ci", "role": "read", "value": "x"}"#, "value"),
            (br#"["ci"]"#, "body"),
        ] {
            match parse_new_token(body) {
                Err(ApiError::BadRequest {
                    field: Some(found), ..
                }) => {
                    assert_eq!(found, field, "body {}", String::from_utf8_lossy(body))
                }
                other => panic!("body {} gave {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn read_role_limited_to_get() {
        let reader = Admin {
            id: "tok_1".into(),
            name: "dashboards".into(),
            role: Role::Read,
        };
        assert!(check_role(&reader, &Method::GET).is_none());
        assert!(check_role(&reader, &Method::HEAD).is_none());
        for method in [Method::POST, Method::PATCH, Method::PUT, Method::DELETE] {
            let response = check_role(&reader, &method).expect("rejected");
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method}");
        }
        assert!(check_role(&Admin::configured(), &Method::DELETE).is_none());
    }
}
