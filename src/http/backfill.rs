//! `POST /api/v1/backfill {"since", "until"}`: the service reads the System Log into its own
//! store, so `bouncewatch backfill` works while the service has the store open. It responds once
//! the whole range is stored, with the totals.

use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState};
use crate::cmd::backfill::{backfill_into_store, check_range, format_time, parse_time};
use crate::okta::logs::BackfillError;
use crate::okta::setup::client_from_config;

#[derive(Debug, Deserialize)]
pub struct BackfillRequest {
    /// RFC 3339 start of the range.
    pub since: String,
    /// RFC 3339 end of the range. Default: the time of the request.
    pub until: Option<String>,
}

pub async fn run(
    State(state): State<AppState>,
    body: Result<Json<BackfillRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) =
        body.map_err(|rejection| ApiError::bad_request("body", rejection.body_text()))?;
    let now = Utc::now();
    let invalid =
        |err: crate::cmd::backfill::RangeError| ApiError::bad_request(err.field, err.detail);
    let since = parse_time("since", &request.since).map_err(invalid)?;
    let until = match &request.until {
        Some(text) => parse_time("until", text).map_err(invalid)?,
        None => now,
    };
    check_range("since", since, "until", until, now).map_err(invalid)?;
    let client = client_from_config(&state.config).map_err(|err| ApiError::Conflict {
        code: "okta_not_configured",
        detail: format!("{err:#}"),
    })?;

    tracing::info!(since = %format_time(since), until = %format_time(until), "backfill requested through the admin API");
    let started = Instant::now();
    let wake = state.rules_wake.clone();
    let result = backfill_into_store(&client, &state.store, since, until, &|counts| {
        tracing::debug!(
            pages = counts.pages,
            events = counts.events,
            "backfill page stored"
        );
        wake.notify_one();
    })
    .await;
    match result {
        Ok(counts) => {
            tracing::info!(
                pages = counts.pages,
                events = counts.events,
                stored = counts.stored,
                duplicates = counts.duplicates,
                seconds = started.elapsed().as_secs_f64(),
                "backfill through the admin API finished"
            );
            Ok(Json(counts).into_response())
        }
        Err(err @ BackfillError::SinceRejected { .. }) => {
            tracing::warn!(error = %err, "backfill rejected by Okta");
            Err(ApiError::bad_request("since", err.to_string()))
        }
        Err(err) => {
            tracing::error!(error = %err, "backfill through the admin API failed");
            // A failed upstream call is a 502, which ApiError has no variant for.
            let body = json!({"error": "backfill_failed", "detail": err.to_string()});
            Ok((StatusCode::BAD_GATEWAY, Json(body)).into_response())
        }
    }
}
