//! `GET /api/v1/logs`: the System Log, filtered by `published` and paged with `Link` headers.

// Validation helpers return the finished error response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::state::{okta_error, random_id, LogCursor};
use super::Shared;

/// Okta rejects a `since` more than 180 days back.
const MAX_SINCE_AGE_DAYS: i64 = 180;

pub async fn list(
    State(shared): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut state = shared.lock().unwrap();

    let cursor = match params.get("after") {
        Some(after) => match state.log_cursors.get(after) {
            Some(cursor) => cursor.clone(),
            None => {
                return okta_error(
                    StatusCode::BAD_REQUEST,
                    "E0000001",
                    "Api validation failed: after",
                    &[],
                )
            }
        },
        None => match first_page_cursor(&params) {
            Ok(cursor) => cursor,
            Err(response) => return response,
        },
    };

    let mut matching: Vec<&Value> = state
        .events
        .iter()
        .filter(|event| matches_cursor(event, &cursor))
        .collect();
    matching.sort_by_key(|event| published(event));
    let page: Vec<Value> = matching
        .iter()
        .skip(cursor.offset)
        .take(cursor.limit)
        .map(|event| (*event).clone())
        .collect();
    let next_offset = cursor.offset + page.len();

    // A polling query (no until) always has a next link; a bounded one only while events remain.
    let has_next = cursor.until.is_none() || next_offset < matching.len();
    let mut links = Vec::new();
    let mut self_url = state.base_url.clone();
    self_url.set_path("/api/v1/logs");
    self_url.set_query(None);
    let mut next_url = self_url.clone();
    self_url.query_pairs_mut().extend_pairs(params.iter());
    links.push(format!("<{self_url}>; rel=\"self\""));
    if has_next {
        let after = random_id("", 24);
        next_url
            .query_pairs_mut()
            .append_pair("after", &after)
            .append_pair("limit", &cursor.limit.to_string());
        state.log_cursors.insert(
            after,
            LogCursor {
                offset: next_offset,
                ..cursor
            },
        );
        links.push(format!("<{next_url}>; rel=\"next\""));
    }

    let mut response = (StatusCode::OK, Json(page)).into_response();
    for link in links {
        response
            .headers_mut()
            .append(header::LINK, HeaderValue::from_str(&link).unwrap());
    }
    response
}

fn first_page_cursor(params: &HashMap<String, String>) -> Result<LogCursor, Response> {
    let parse_time = |name: &str| -> Result<Option<DateTime<Utc>>, Response> {
        match params.get(name) {
            None => Ok(None),
            Some(text) => DateTime::parse_from_rfc3339(text)
                .map(|time| Some(time.with_timezone(&Utc)))
                .map_err(|_| {
                    okta_error(
                        StatusCode::BAD_REQUEST,
                        "E0000001",
                        &format!("Api validation failed: {name}"),
                        &[],
                    )
                }),
        }
    };
    let since = parse_time("since")?;
    let until = parse_time("until")?;
    if let Some(since) = since {
        if since < Utc::now() - Duration::days(MAX_SINCE_AGE_DAYS) {
            return Err(okta_error(
                StatusCode::BAD_REQUEST,
                "E0000053",
                "Invalid date. 'Since' must be a date within the last 180 days.",
                &[],
            ));
        }
    }
    let limit = match params.get("limit").map(|text| text.parse::<usize>()) {
        None => 100,
        Some(Ok(limit)) if limit <= 1000 => limit,
        Some(_) => {
            return Err(okta_error(
                StatusCode::BAD_REQUEST,
                "E0000001",
                "Api validation failed: limit",
                &[],
            ))
        }
    };
    Ok(LogCursor {
        offset: 0,
        filter_type: params
            .get("filter")
            .and_then(|filter| event_type_filter(filter)),
        since,
        until,
        limit,
    })
}

/// Reads the event type of a filter of the form `eventType eq "..."`; other filters are ignored.
fn event_type_filter(filter: &str) -> Option<String> {
    let value = filter.trim().strip_prefix("eventType eq ")?;
    Some(value.trim().trim_matches('"').to_string())
}

fn published(event: &Value) -> Option<DateTime<Utc>> {
    let text = event.get("published")?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

fn matches_cursor(event: &Value, cursor: &LogCursor) -> bool {
    if let Some(wanted) = &cursor.filter_type {
        if event.get("eventType").and_then(Value::as_str) != Some(wanted.as_str()) {
            return false;
        }
    }
    let Some(published) = published(event) else {
        return false;
    };
    let after_since = cursor.since.is_none_or(|since| published >= since);
    let before_until = cursor.until.is_none_or(|until| published < until);
    after_since && before_until
}
