//! Errors of the Okta Management API client and Okta's JSON error body.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Okta's error body: `{errorCode, errorSummary, errorLink, errorId, errorCauses}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OktaErrorBody {
    #[serde(default)]
    pub error_code: String,
    #[serde(default)]
    pub error_summary: String,
    #[serde(default)]
    pub error_link: Option<String>,
    #[serde(default)]
    pub error_id: Option<String>,
    #[serde(default)]
    pub error_causes: Vec<OktaErrorCause>,
}

/// One entry of `errorCauses`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OktaErrorCause {
    #[serde(default)]
    pub error_summary: String,
}

impl OktaErrorBody {
    /// Parses an error body, falling back to the raw text as the summary when it is not Okta JSON.
    pub fn from_bytes(body: &[u8]) -> OktaErrorBody {
        match serde_json::from_slice::<OktaErrorBody>(body) {
            Ok(parsed) => parsed,
            Err(_) => OktaErrorBody {
                error_summary: String::from_utf8_lossy(body).chars().take(200).collect(),
                ..OktaErrorBody::default()
            },
        }
    }

    /// Returns the `errorCauses` summaries joined with "; ".
    pub fn causes(&self) -> String {
        let summaries: Vec<&str> = self
            .error_causes
            .iter()
            .map(|cause| cause.error_summary.as_str())
            .collect();
        summaries.join("; ")
    }
}

/// A failed call to Okta.
#[derive(Debug, thiserror::Error)]
pub enum OktaError {
    #[error(
        "Okta returned 403 Forbidden for {path} ({}: {}): the API token or service app lacks \
         permission. Removing bounces requires the Super Admin role and, for an OAuth service \
         app, the okta.orgs.manage scope, and Free Trial and Developer orgs do not offer the \
         bounce-removal API. Event hooks need okta.eventHooks.manage and the System Log needs \
         okta.logs.read.",
        body.error_code,
        body.error_summary
    )]
    Forbidden {
        path: String,
        body: Box<OktaErrorBody>,
    },

    #[error(
        "Okta returned 401 Unauthorized for {path} ({}: {}): the API token or access token is \
         invalid, expired or revoked",
        body.error_code,
        body.error_summary
    )]
    Unauthorized {
        path: String,
        body: Box<OktaErrorBody>,
    },

    #[error("Okta rate limit for {path} still exceeded after {attempts} attempts (window resets at {})", reset_display(.reset))]
    RateLimited {
        path: String,
        attempts: u32,
        reset: Option<DateTime<Utc>>,
    },

    #[error("Okta returned {status} for {path} ({}: {}; causes: {})", body.error_code, body.error_summary, body.causes())]
    Client {
        status: u16,
        path: String,
        body: Box<OktaErrorBody>,
    },

    #[error("Okta returned {status} for {path} after {attempts} attempts ({})", body.error_summary)]
    Server {
        status: u16,
        path: String,
        attempts: u32,
        body: Box<OktaErrorBody>,
    },

    #[error("request to Okta {path} timed out after {attempts} attempts")]
    Timeout { path: String, attempts: u32 },

    #[error("request to Okta {path} failed after {attempts} attempts: {source}")]
    Transport {
        path: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },

    #[error("invalid response from Okta {path}: {reason}")]
    InvalidResponse { path: String, reason: String },

    #[error(
        "the Okta token endpoint rejected the client credentials request ({status}, {error}: \
         {description})"
    )]
    TokenRequest {
        status: u16,
        error: String,
        description: String,
    },

    #[error(
        "the Okta token endpoint requires a DPoP proof ({error}), which bouncewatch does not \
         send. In the Okta Admin Console, open the service app and turn off \"Require \
         Demonstrating Proof of Possession (DPoP) header in token requests\"."
    )]
    DpopRequired { error: String },

    #[error("cannot sign the client assertion JWT with the configured private key: {reason}")]
    InvalidPrivateKey { reason: String },

    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

fn reset_display(reset: &Option<DateTime<Utc>>) -> String {
    match reset {
        Some(at) => at.to_rfc3339(),
        None => "an unknown time".to_string(),
    }
}

impl OktaError {
    /// Reports whether the same request may succeed later: rate limits, 5xx responses, timeouts
    /// and transport failures. The client has already retried these within its own bounds.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            OktaError::RateLimited { .. }
                | OktaError::Server { .. }
                | OktaError::Timeout { .. }
                | OktaError::Transport { .. }
        )
    }

    /// Returns the HTTP status of Okta's response, when the failure carries one.
    pub fn status(&self) -> Option<u16> {
        match self {
            OktaError::Forbidden { .. } => Some(403),
            OktaError::Unauthorized { .. } => Some(401),
            OktaError::RateLimited { .. } => Some(429),
            OktaError::Client { status, .. } | OktaError::Server { status, .. } => Some(*status),
            OktaError::TokenRequest { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Returns Okta's `errorCode`, such as `E0000006`, when the failure carries an error body.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            OktaError::Forbidden { body, .. }
            | OktaError::Unauthorized { body, .. }
            | OktaError::Client { body, .. }
            | OktaError::Server { body, .. } => Some(body.error_code.as_str()),
            _ => None,
        }
    }
}
