//! `GET /api/v1/bounce-list?format=json|csv`: the inferred bounce list. Okta has no API to read
//! its bounce list, so this lists the addresses whose newest event was `bounced` or `dropped`
//! and that were not cleared since, as far as the events bouncewatch stored show.
//!
//! JSON is paged like the other lists (`limit`, `cursor`, `{"items", "next"}`). CSV is the
//! whole list, streamed page by page so a long list is never held in memory.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin::Paging;
use super::{ApiError, AppState};
use crate::state::AddressState;
use crate::store::{Page, Store, StoreError};

/// Addresses read from the store per CSV chunk.
const CSV_PAGE: usize = 500;

pub const CSV_HEADER: &str = "address,domain,status,verdict,last_failure_at,last_message\r\n";

#[derive(Debug, Deserialize)]
pub struct BounceListQuery {
    format: Option<String>,
    #[serde(flatten)]
    paging: Paging,
}

/// Lists the inferred bounce list as paged JSON or streamed CSV.
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<BounceListQuery>,
) -> Result<Response, ApiError> {
    match query.format.as_deref().unwrap_or("json") {
        "json" => {
            let limit = query.paging.limit()?;
            let page = state
                .store
                .suppressed_addresses(query.paging.cursor.as_deref(), limit)?;
            let items: Vec<Value> = page.items.iter().map(entry_json).collect();
            Ok(Json(json!({"items": items, "next": page.next})).into_response())
        }
        "csv" => Ok(csv_response(state.store.clone())),
        other => Err(ApiError::bad_request(
            "format",
            format!("{other:?} is not a format; use json or csv"),
        )),
    }
}

/// Builds one entry of the JSON list.
pub fn entry_json(state: &AddressState) -> Value {
    json!({
        "address": state.address,
        "domain": state.domain,
        "status": state.status(),
        "verdict": state.verdict(),
        "last_failure_at": state.last_failure_at,
        "last_message": state.last_message,
    })
}

fn csv_response(store: Store) -> Response {
    // The state of the stream: the cursor of the next page, or `None` once the list ended.
    let start: Option<Option<String>> = Some(None);
    let pages = futures_util::stream::unfold(start, move |cursor| {
        let store = store.clone();
        async move {
            let cursor = cursor?;
            let page: Result<Page<AddressState>, StoreError> =
                store.suppressed_addresses(cursor.as_deref(), CSV_PAGE);
            match page {
                Ok(page) => {
                    let mut chunk = String::new();
                    if cursor.is_none() {
                        chunk.push_str(CSV_HEADER);
                    }
                    for state in &page.items {
                        chunk.push_str(&csv_row(state));
                    }
                    let next = page.next.map(Some);
                    Some((Ok::<Bytes, StoreError>(Bytes::from(chunk)), next))
                }
                Err(err) => {
                    // The status line is already sent, so the error can only end the body early.
                    tracing::error!(error = %err, "bounce list CSV export failed mid-stream");
                    Some((Err(err), None))
                }
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"bounce-list.csv\"",
            ),
        ],
        Body::from_stream(pages),
    )
        .into_response()
}

/// Formats one CSV row (RFC 4180, CRLF line ends). The verdict is `scope/permanence`, such as
/// `mailbox/permanent`, and empty when the address never had a classified failure.
pub fn csv_row(state: &AddressState) -> String {
    let verdict = state
        .verdict()
        .map(|verdict| {
            let scope = serde_json::to_value(verdict.scope).unwrap_or_default();
            let permanence = serde_json::to_value(verdict.permanence).unwrap_or_default();
            format!(
                "{}/{}",
                scope.as_str().unwrap_or(""),
                permanence.as_str().unwrap_or("")
            )
        })
        .unwrap_or_default();
    let fields = [
        state.address.as_str(),
        state.domain.as_str(),
        state.status().as_str(),
        verdict.as_str(),
        &format_optional(state.last_failure_at),
        state.last_message.as_deref().unwrap_or(""),
    ];
    let mut row = fields
        .iter()
        .map(|field| csv_field(field))
        .collect::<Vec<_>>()
        .join(",");
    row.push_str("\r\n");
    row
}

/// Quotes a field when it contains a comma, quote or line break. A field that starts with
/// `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so a spreadsheet does not
/// run it as a formula, because provider messages come from remote mail servers.
pub fn csv_field(value: &str) -> String {
    let mut text = String::with_capacity(value.len() + 2);
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        text.push('\'');
    }
    text.push_str(value);
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn format_optional(time: Option<DateTime<Utc>>) -> String {
    time.map(|time| time.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::routing::get;
    use axum::Router;

    use super::*;
    use crate::config::{Config, Durability};
    use crate::ingest::sort_events;
    use crate::telemetry::Metrics;

    #[test]
    fn plain_field_unquoted() {
        assert_eq!(csv_field("a@example.com"), "a@example.com");
    }

    #[test]
    fn comma_and_quote_escaped() {
        assert_eq!(
            csv_field("550 5.1.1 \"user\", unknown"),
            "\"550 5.1.1 \"\"user\"\", unknown\""
        );
    }

    #[test]
    fn formula_prefix_neutralised() {
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
    }

    fn event(uuid: &str, published: &str, reason: &str, address: &str, message: &str) -> Value {
        let result = if reason == "delivered" {
            "SUCCESS"
        } else {
            "FAILURE"
        };
        json!({
            "uuid": uuid,
            "published": published,
            "eventType": "system.email.delivery",
            "outcome": {"result": result, "reason": reason},
            "target": [{"id": "00u1", "type": "User", "alternateId": address}],
            "debugContext": {"debugData": {"providerMessage": message}},
        })
    }

    /// Serves only the bounce-list route on 127.0.0.1 and returns its base URL.
    async fn serve(events: Vec<Value>) -> (String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Crash, Duration::from_secs(5)).unwrap();
        let sorted = sort_events(events.iter());
        assert!(sorted.quarantine.is_empty(), "{:?}", sorted.quarantine);
        store.ingest(sorted.events, Vec::new()).await.unwrap();
        let state = AppState::new(
            Arc::new(Config::default()),
            store,
            Arc::new(Metrics::default()),
        );
        let app = Router::new()
            .route("/bounce-list", get(list))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{address}"), dir)
    }

    fn sample_events() -> Vec<Value> {
        vec![
            event(
                "u1",
                "2025-01-15T10:00:00Z",
                "bounce",
                "a@example.com",
                "550 5.1.1 user unknown",
            ),
            event(
                "u2",
                "2025-01-15T10:00:00Z",
                "bounce",
                "b@example.com",
                "550 5.1.1 user unknown",
            ),
            event(
                "u3",
                "2025-01-15T10:05:00Z",
                "delivered",
                "b@example.com",
                "250 OK",
            ),
            event(
                "u4",
                "2025-01-15T10:00:00Z",
                "delivered",
                "c@example.com",
                "250 OK",
            ),
            event(
                "u5",
                "2025-01-15T10:00:00Z",
                "bounce",
                "d@example.org",
                "550 5.2.1 mailbox disabled, \"gone\"",
            ),
        ]
    }

    #[tokio::test]
    async fn json_lists_only_suppressed() {
        let (base, _dir) = serve(sample_events()).await;
        let body: Value = reqwest::get(format!("{base}/bounce-list"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let addresses: Vec<&str> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["address"].as_str().unwrap())
            .collect();
        assert_eq!(addresses, vec!["a@example.com", "d@example.org"]);
        assert_eq!(body["items"][0]["status"], json!("bounced"));
        assert_eq!(body["items"][0]["domain"], json!("example.com"));
        assert!(body["items"][0]["last_failure_at"].is_string());
        assert_eq!(body["next"], Value::Null);
    }

    #[tokio::test]
    async fn json_pages_with_cursor() {
        let (base, _dir) = serve(sample_events()).await;
        let first: Value = reqwest::get(format!("{base}/bounce-list?limit=1"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(first["items"][0]["address"], json!("a@example.com"));
        let cursor = first["next"].as_str().expect("a next cursor");
        let second: Value = reqwest::get(format!("{base}/bounce-list?limit=1&cursor={cursor}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(second["items"][0]["address"], json!("d@example.org"));
        assert_eq!(second["next"], Value::Null);
    }

    #[tokio::test]
    async fn csv_streams_whole_list() {
        let (base, _dir) = serve(sample_events()).await;
        let response = reqwest::get(format!("{base}/bounce-list?format=csv"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/csv; charset=utf-8"
        );
        let text = response.text().await.unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], CSV_HEADER.trim_end());
        assert!(
            lines[1].starts_with(
                "a@example.com,example.com,bounced,mailbox/permanent,2025-01-15T10:00:00.000Z,"
            ),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].ends_with(",\"550 5.2.1 mailbox disabled, \"\"gone\"\"\""),
            "{}",
            lines[2]
        );
        assert_eq!(lines.len(), 4, "{text}");
    }

    #[tokio::test]
    async fn unknown_format_rejected() {
        let (base, _dir) = serve(Vec::new()).await;
        let response = reqwest::get(format!("{base}/bounce-list?format=xml"))
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
    }
}
