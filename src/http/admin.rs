//! The admin API under `/api/v1`: bearer-token authentication, then one handler per resource.
//! Lists return `{"items": [...], "next": cursor}` and take `limit` (default 100, at most 1000)
//! and `cursor`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::address::{normalise_domain, EmailAddress};
use crate::state::{AddressState, AddressStatus, DomainState};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/addresses", get(list_addresses))
        .route("/addresses/{address}", get(get_address))
        .route("/domains", get(list_domains))
        .route("/domains/{domain}", get(get_domain))
        .route("/actions", get(list_actions))
        .route("/quarantine", get(list_quarantine))
        .route("/quarantine/{id}/raw", get(quarantine_raw))
        .route("/backfill", post(super::backfill::run))
        .route("/bounce-list", get(super::bounce_list::list))
        .merge(super::rules::routes())
        .merge(super::subscriptions::router())
        .merge(super::tokens::routes())
        .merge(super::ops::routes())
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

/// Authenticates the bearer token (the configured one or a named one from the store), checks
/// its role against the method, and puts the [`Admin`](super::tokens::Admin) into the request's
/// extensions for handlers.
async fn require_admin(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(|token| token.trim().to_string());
    let admin = match &token {
        Some(token) => super::tokens::authenticate(&state, token).await?,
        None => None,
    };
    match admin {
        Some(admin) => {
            if let Some(forbidden) = super::tokens::check_role(&admin, request.method()) {
                return Ok(forbidden);
            }
            request.extensions_mut().insert(admin);
            Ok(next.run(request).await)
        }
        None => {
            state.metrics.inc(
                "bouncewatch_auth_failures_total",
                "Requests rejected for a missing or wrong credential.",
                &[
                    ("endpoint", "admin"),
                    ("reason", if token.is_some() { "wrong" } else { "missing" }),
                ],
                1,
            );
            tracing::warn!("admin request rejected: bearer token missing or wrong");
            Err(ApiError::Unauthorized(
                "a valid admin bearer token is required",
            ))
        }
    }
}

/// `limit` and `cursor` of a list request.
#[derive(Debug, Deserialize)]
pub struct Paging {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl Paging {
    pub fn limit(&self) -> Result<usize, ApiError> {
        match &self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(raw) => match raw.parse::<usize>() {
                Ok(0) | Err(_) => Err(ApiError::bad_request(
                    "limit",
                    "limit must be a whole number from 1 to 1000",
                )),
                Ok(value) => Ok(value.min(MAX_LIMIT)),
            },
        }
    }
}

/// Parses an address from a path or query value.
pub fn parse_address(raw: &str, field: &str) -> Result<EmailAddress, ApiError> {
    EmailAddress::parse(raw).map_err(|err| {
        let hint = if raw.contains(' ') {
            " (a '+' in a query string must be sent as %2B)"
        } else {
            ""
        };
        ApiError::bad_request(
            field,
            format!("{raw:?} is not a valid address: {err}{hint}"),
        )
    })
}

/// Turns a path segment that axum could not decode (invalid UTF-8 after percent-decoding, for
/// example) into the API's JSON error instead of axum's plain-text rejection.
pub fn path_value(
    extracted: Result<Path<String>, PathRejection>,
    field: &str,
) -> Result<String, ApiError> {
    extracted
        .map(|Path(value)| value)
        .map_err(|rejection| ApiError::bad_request(field, rejection.body_text()))
}

/// The admin API's document for one address.
pub fn address_document(state: &AddressState) -> Value {
    json!({
        "address": state.address,
        "raw": state.raw,
        "domain": state.domain,
        "status": state.status(),
        "verdict": state.verdict(),
        "last_message": state.last_message,
        "last_reason": state.last_reason,
        "last_event": {"uuid": state.latest.uuid, "published": state.latest.published, "status": state.latest_status},
        "first_failure_at": state.first_failure_at,
        "last_failure_at": state.last_failure_at,
        "last_delivered_at": state.last_delivered_at,
        "event_count": state.event_count,
        "clear_count": state.clear_count,
        "last_cleared_at": state.last_cleared_at,
        "history": state.history,
    })
}

pub fn domain_document(state: &DomainState) -> Value {
    json!({
        "domain": state.domain,
        "health": state.health,
        "addresses": state.addresses,
        "counts": state.counts,
        "last_24h": state.last_24h(),
        "newest_event_at": state.newest_event_at,
        "last_failure_at": state.last_failure_at,
        "last_delivered_at": state.last_delivered_at,
        "outage": state.open_episode(),
        "episodes": state.episodes,
    })
}

async fn get_address(
    State(state): State<AppState>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let raw = path_value(raw, "address")?;
    let address = parse_address(&raw, "address")?;
    let found = state.store.address(address.key())?;
    let found =
        found.ok_or_else(|| ApiError::NotFound(format!("no events for {}", address.key())))?;
    Ok(Json(address_document(&found)))
}

#[derive(Debug, Deserialize)]
struct AddressFilter {
    status: Option<String>,
    domain: Option<String>,
    #[serde(flatten)]
    paging: Paging,
}

async fn list_addresses(
    State(state): State<AppState>,
    Query(filter): Query<AddressFilter>,
) -> Result<Json<Value>, ApiError> {
    let status = match filter.status.as_deref() {
        None | Some("") => None,
        Some(word) => Some(AddressStatus::parse(word).ok_or_else(|| {
            ApiError::bad_request(
                "status",
                format!("{word:?} is not a status; use delivered, deferred, bounced, blocked, dropped, clearing, cleared or unknown"),
            )
        })?),
    };
    let domain = match filter.domain.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(normalise_domain(raw).map_err(|_| {
            ApiError::bad_request("domain", format!("{raw:?} is not a valid domain"))
        })?),
    };
    let limit = filter.paging.limit()?;
    let page = state.store.addresses(
        domain.as_deref(),
        status,
        filter.paging.cursor.as_deref(),
        limit,
    )?;
    let items: Vec<Value> = page.items.iter().map(address_document).collect();
    Ok(Json(json!({"items": items, "next": page.next})))
}

async fn get_domain(
    State(state): State<AppState>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let raw = path_value(raw, "domain")?;
    let domain = normalise_domain(&raw)
        .map_err(|_| ApiError::bad_request("domain", format!("{raw:?} is not a valid domain")))?;
    let found = state.store.domain(&domain)?;
    let found =
        found.ok_or_else(|| ApiError::NotFound(format!("no events for domain {domain}")))?;
    Ok(Json(domain_document(&found)))
}

async fn list_domains(
    State(state): State<AppState>,
    Query(paging): Query<Paging>,
) -> Result<Json<Value>, ApiError> {
    let limit = paging.limit()?;
    let domains = state.store.domains_by_failures(limit)?;
    let items: Vec<Value> = domains.iter().map(domain_document).collect();
    Ok(Json(json!({"items": items, "next": null})))
}

async fn list_actions(
    State(state): State<AppState>,
    Query(paging): Query<Paging>,
) -> Result<Json<Value>, ApiError> {
    let page = state
        .store
        .actions(paging.cursor.as_deref(), paging.limit()?)?;
    Ok(Json(json!({"items": page.items, "next": page.next})))
}

async fn list_quarantine(
    State(state): State<AppState>,
    Query(paging): Query<Paging>,
) -> Result<Json<Value>, ApiError> {
    let page = state
        .store
        .quarantine(paging.cursor.as_deref(), paging.limit()?)?;
    Ok(Json(json!({"items": page.items, "next": page.next})))
}

/// The raw bytes of a quarantined delivery or event, as received.
async fn quarantine_raw(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let raw = state.store.quarantine_raw(&id)?;
    let raw = raw.ok_or_else(|| ApiError::NotFound(format!("no quarantine entry has id {id}")))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], raw).into_response())
}
