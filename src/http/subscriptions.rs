//! The subscriptions and deliveries part of the admin API. Only the create response shows a
//! subscription's secret; every other response uses the secret-free view.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin::Paging;
use super::{ApiError, AppState};
use crate::forward::dispatch::{result_word, ATTEMPT_TIMEOUT};
use crate::forward::notification::{Notification, NotificationKind};
use crate::forward::send::deliver_once;
use crate::forward::subscription::{
    CreateSubscription, UpdateSubscription, ValidationError, DEFAULT_ROTATION_GRACE,
};
use crate::forward::Subscription;
use crate::store::outbox::{parse_delivery_id, DeliveryState};

/// Builds the routes, which `admin::router` mounts behind the bearer-token check.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/subscriptions",
            get(list_subscriptions).post(create_subscription),
        )
        .route(
            "/subscriptions/{id}",
            get(get_subscription)
                .patch(update_subscription)
                .delete(delete_subscription),
        )
        .route("/subscriptions/{id}/test", post(test_subscription))
        .route("/subscriptions/{id}/retry-dead", post(retry_dead_letters))
        .route("/deliveries", get(list_deliveries))
        .route("/deliveries/{id}/retry", post(retry_delivery))
}

/// Parses a JSON body, naming the offending field in the 400 when serde names one.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        let message = err.to_string();
        let field = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|marker| message.split(marker).nth(1)?.split('`').next())
            .unwrap_or("body");
        ApiError::bad_request(field, format!("the request body is not valid: {message}"))
    })
}

fn invalid(err: ValidationError) -> ApiError {
    ApiError::bad_request(err.field, err.to_string())
}

fn subscription_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no subscription with id {id}"))
}

async fn load_subscription(state: &AppState, id: &str) -> Result<Subscription, ApiError> {
    state
        .store
        .subscription(id)?
        .ok_or_else(|| subscription_not_found(id))
}

async fn list_subscriptions(
    State(state): State<AppState>,
    Query(paging): Query<Paging>,
) -> Result<Json<Value>, ApiError> {
    let page = state
        .store
        .subscriptions(paging.cursor.as_deref(), paging.limit()?)?;
    let items: Vec<_> = page.items.iter().map(Subscription::view).collect();
    Ok(Json(json!({"items": items, "next": page.next})))
}

async fn create_subscription(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: CreateSubscription = parse_body(&body)?;
    let allow_private = state.config.forward_allow_private;
    let (subscription, created) = request
        .into_subscription(allow_private, Utc::now())
        .map_err(invalid)?;
    let id = subscription.id.clone();
    state.store.create_subscription(subscription).await?;
    tracing::info!(subscription_id = %id, "subscription created");
    let body = serde_json::to_value(created).map_err(|_| ApiError::Internal)?;
    Ok((StatusCode::CREATED, Json(body)))
}

async fn get_subscription(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let subscription = load_subscription(&state, &id).await?;
    Ok(Json(json!(subscription.view())))
}

async fn update_subscription(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: UpdateSubscription = parse_body(&body)?;
    let allow_private = state.config.forward_allow_private;
    let updated = state
        .store
        .update_subscription(&id, move |current| {
            request.apply(current, allow_private, Utc::now(), DEFAULT_ROTATION_GRACE)
        })
        .await?
        .ok_or_else(|| subscription_not_found(&id))?
        .map_err(invalid)?;
    tracing::info!(subscription_id = %id, enabled = updated.enabled, "subscription updated");
    Ok(Json(json!(updated.view())))
}

async fn delete_subscription(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state.store.delete_subscription(&id).await? {
        return Err(subscription_not_found(&id));
    }
    tracing::info!(subscription_id = %id, "subscription deleted with its pending and dead notifications");
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a signed `test` notification now, outside the outbox, and returns the receiver's
/// response: its status and at most a short excerpt of its body, never its headers.
async fn test_subscription(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let subscription = load_subscription(&state, &id).await?;
    let now = Utc::now();
    let cause = format!("test/{}", hex::encode(rand::random::<[u8; 8]>()));
    let notification = Notification::new(
        NotificationKind::Test,
        &cause,
        &subscription.id,
        now,
        json!({"subscription_id": subscription.id, "message": "a test notification from bouncewatch"}),
    );
    let allow_private = state.config.forward_allow_private;
    let outcome = deliver_once(&subscription, &notification, allow_private, ATTEMPT_TIMEOUT).await;
    tracing::info!(
        subscription_id = %id,
        status = outcome.status,
        latency_ms = outcome.latency_ms,
        "test notification sent"
    );
    Ok(Json(json!({
        "webhook_id": notification.id,
        "result": result_word(outcome.result),
        "status": outcome.status,
        "latency_ms": outcome.latency_ms,
        "error": outcome.error,
        "body_excerpt": outcome.body_excerpt,
    })))
}

async fn retry_dead_letters(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    load_subscription(&state, &id).await?;
    let retried = state.store.retry_dead_for_subscription(&id).await?;
    tracing::info!(subscription_id = %id, retried, "dead letters queued again");
    Ok((StatusCode::ACCEPTED, Json(json!({"retried": retried}))))
}

#[derive(Debug, Deserialize)]
struct DeliveryFilter {
    state: Option<String>,
    subscription: Option<String>,
    #[serde(flatten)]
    paging: Paging,
}

async fn list_deliveries(
    State(state): State<AppState>,
    Query(filter): Query<DeliveryFilter>,
) -> Result<Json<Value>, ApiError> {
    let wanted = match filter.state.as_deref() {
        None | Some("") | Some("pending") => DeliveryState::Pending,
        Some("dead") => DeliveryState::Dead,
        Some(other) => {
            return Err(ApiError::bad_request(
                "state",
                format!("{other:?} is not a delivery state; use pending or dead"),
            ))
        }
    };
    let page = state.store.deliveries(
        wanted,
        filter.subscription.as_deref().filter(|id| !id.is_empty()),
        filter.paging.cursor.as_deref(),
        filter.paging.limit()?,
    )?;
    let items: Vec<Value> = page.items.iter().map(|entry| entry.view()).collect();
    Ok(Json(json!({"items": items, "next": page.next})))
}

async fn retry_delivery(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let not_found = || ApiError::NotFound(format!("no dead delivery with id {id}"));
    let number = parse_delivery_id(&id).ok_or_else(not_found)?;
    match state.store.retry_dead(number).await? {
        Ok(Some(entry)) => {
            tracing::info!(delivery_id = %id, "dead letter queued again");
            Ok((StatusCode::ACCEPTED, Json(entry.view())))
        }
        Ok(None) => Err(not_found()),
        Err(_) => Err(ApiError::Conflict {
            code: "already_pending",
            detail: format!("delivery {id} is already pending; only dead letters can be retried"),
        }),
    }
}
