//! The one error type of the HTTP surface: each variant's status in one `match`, and a JSON
//! body `{"error": code, "detail": sentence, "field": name}`. 5xx bodies never show internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed; `field` names the offending part.
    BadRequest {
        field: Option<String>,
        detail: String,
    },
    /// 401: missing or wrong credentials.
    Unauthorized(&'static str),
    /// 404.
    NotFound(String),
    /// 409: the request conflicts with the current state.
    Conflict { code: &'static str, detail: String },
    /// 408: the client did not send the whole body in time.
    RequestTimeout,
    /// 413: the body is over the limit.
    PayloadTooLarge(u64),
    /// 503: the store cannot take writes; Okta retries a 5xx.
    Unavailable,
    /// 500.
    Internal,
}

impl ApiError {
    pub fn bad_request(field: &str, detail: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            field: Some(field.to_string()),
            detail: detail.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        tracing::error!(error = %err, "store request failed");
        ApiError::Unavailable
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail, field) = match self {
            ApiError::BadRequest { field, detail } => {
                (StatusCode::BAD_REQUEST, "invalid_request", detail, field)
            }
            ApiError::Unauthorized(detail) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                detail.to_string(),
                None,
            ),
            ApiError::NotFound(detail) => (StatusCode::NOT_FOUND, "not_found", detail, None),
            ApiError::Conflict { code, detail } => (StatusCode::CONFLICT, code, detail, None),
            ApiError::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the body was not received in time".to_string(),
                Some("body".to_string()),
            ),
            ApiError::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than the limit of {limit} bytes"),
                Some("body".to_string()),
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store cannot take writes right now; retry later".to_string(),
                None,
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "an internal error occurred".to_string(),
                None,
            ),
        };
        let mut body = json!({"error": code, "detail": detail});
        if let Some(field) = field {
            body["field"] = json!(field);
        }
        (status, Json(body)).into_response()
    }
}
