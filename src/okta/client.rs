//! The Okta Management API client: authentication, rate limits, retries and bounce removal.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use super::auth::{request_access_token, AccessToken, OktaAuth};
use super::error::{OktaError, OktaErrorBody};
use super::rate_limit::{bucket_key, until_epoch, RateLimitState, RateLimits};
pub use super::retry::RetryPolicy;

/// Maximum number of addresses [`OktaClient::remove_bounces`] should receive in one call.
/// Okta does not document a maximum for the remove-list endpoint, so 50 is a conservative
/// choice that keeps each request small. Callers split longer lists into batches.
pub const MAX_REMOVE_BATCH: usize = 50;

/// A successful (2xx) response from Okta.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Result of one remove-list call. Okta removes accepted addresses in an asynchronous job,
/// so acceptance does not mean the address has left the bounce list yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoveListOutcome {
    /// Addresses Okta accepted for removal, as sent.
    pub accepted: Vec<String>,
    /// Addresses Okta rejected, as sent, with Okta's reason.
    pub rejected: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct RemoveListResult {
    #[serde(default)]
    errors: Vec<RemoveListError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemoveListError {
    email_address: String,
    #[serde(default)]
    reason: String,
}

/// Client for one Okta org.
#[derive(Debug)]
pub struct OktaClient {
    http: reqwest::Client,
    org_url: Url,
    auth: OktaAuth,
    retry: RetryPolicy,
    rate_limits: RateLimits,
    /// The cached OAuth access token; a tokio mutex so concurrent calls fetch it once.
    access_token: tokio::sync::Mutex<Option<AccessToken>>,
}

impl OktaClient {
    /// Builds a client for the org at `org_url`, such as `https://example.okta.com`, with
    /// `timeout` per HTTP request. The client follows no redirects.
    pub fn new(org_url: Url, auth: OktaAuth, timeout: Duration) -> Result<OktaClient, OktaError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .user_agent(concat!("bouncewatch/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(OktaError::HttpClient)?;
        Ok(OktaClient {
            http,
            org_url,
            auth,
            retry: RetryPolicy::default(),
            rate_limits: RateLimits::default(),
            access_token: tokio::sync::Mutex::new(None),
        })
    }

    /// Replaces the retry bounds.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> OktaClient {
        self.retry = retry;
        self
    }

    pub fn org_url(&self) -> &Url {
        &self.org_url
    }

    /// Returns the last rate-limit headers seen for the bucket of `path`.
    pub fn rate_limit(&self, path: &str) -> Option<RateLimitState> {
        self.rate_limits.get(&bucket_key(path))
    }

    /// Returns `{org}{path}` with no query.
    pub fn api_url(&self, path: &str) -> Url {
        let mut url = self.org_url.clone();
        url.set_path(path);
        url.set_query(None);
        url
    }

    /// Sends `addresses` to `POST /api/v1/org/email/bounces/remove-list` exactly as given, in
    /// one request of at most [`MAX_REMOVE_BATCH`] addresses. A 200 with per-address `errors`,
    /// a 200 with `{}` or no errors, and a 204 all count as success. An address missing from
    /// `errors` was accepted.
    pub async fn remove_bounces(
        &self,
        addresses: &[String],
    ) -> Result<RemoveListOutcome, OktaError> {
        let url = self.api_url("/api/v1/org/email/bounces/remove-list");
        let body = serde_json::json!({ "emailAddresses": addresses });
        let response = self.execute(Method::POST, url, Some(&body)).await?;

        let result = if response.status == StatusCode::NO_CONTENT || response.body.is_empty() {
            RemoveListResult { errors: Vec::new() }
        } else {
            serde_json::from_slice(&response.body).map_err(|error| OktaError::InvalidResponse {
                path: "/api/v1/org/email/bounces/remove-list".to_string(),
                reason: format!("remove-list body is not the documented result: {error}"),
            })?
        };
        Ok(match_remove_list_errors(addresses, result.errors))
    }

    /// Sends one request with authentication, rate-limit waits and bounded retries, and
    /// returns the 2xx response or the classified failure.
    pub async fn execute(
        &self,
        method: Method,
        url: Url,
        json_body: Option<&serde_json::Value>,
    ) -> Result<ApiResponse, OktaError> {
        let path = url.path().to_string();
        let bucket = bucket_key(&path);
        let body = json_body.map(|value| value.to_string());
        let mut token_refreshed = false;
        let mut attempt = 0;

        loop {
            attempt += 1;
            if let Some(wait) = self.rate_limits.take_wait(&bucket, SystemTime::now()) {
                let wait = wait.min(self.retry.max_delay) + self.retry.random_jitter();
                tracing::info!(%path, wait_ms = wait.as_millis() as u64, "Okta rate-limit window used up, waiting for reset");
                tokio::time::sleep(wait).await;
            }

            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(header::AUTHORIZATION, self.authorization().await?);
            if let Some(body) = &body {
                request = request
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }

            let response = match request.send().await {
                Ok(response) => response,
                Err(source) => {
                    if attempt < self.retry.max_attempts {
                        let delay = self.retry.backoff(attempt);
                        tracing::warn!(%path, attempt, error = %source, delay_ms = delay.as_millis() as u64, "Okta request failed, retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    if source.is_timeout() {
                        return Err(OktaError::Timeout {
                            path,
                            attempts: attempt,
                        });
                    }
                    return Err(OktaError::Transport {
                        path,
                        attempts: attempt,
                        source,
                    });
                }
            };

            let status = response.status();
            let headers = response.headers().clone();
            if let Some(state) = RateLimitState::from_headers(&headers) {
                self.rate_limits.record(&bucket, state);
            }
            let body_bytes = match response.bytes().await {
                Ok(bytes) => bytes,
                Err(source) if attempt < self.retry.max_attempts => {
                    tracing::warn!(%path, attempt, error = %source, "reading Okta response failed, retrying");
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    continue;
                }
                Err(source) => {
                    return Err(OktaError::Transport {
                        path,
                        attempts: attempt,
                        source,
                    })
                }
            };

            if status.is_success() {
                return Ok(ApiResponse {
                    status,
                    headers,
                    body: body_bytes,
                });
            }

            let request_id = headers
                .get("x-okta-request-id")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("-")
                .to_string();
            tracing::debug!(%path, status = status.as_u16(), okta_request_id = %request_id, "Okta returned an error");
            let error_body = Box::new(OktaErrorBody::from_bytes(&body_bytes));

            if status == StatusCode::TOO_MANY_REQUESTS {
                let reset_epoch =
                    RateLimitState::from_headers(&headers).and_then(|state| state.reset_epoch);
                if attempt < self.retry.max_attempts {
                    let wait = match reset_epoch {
                        Some(epoch) => {
                            until_epoch(epoch, SystemTime::now())
                                .unwrap_or(Duration::ZERO)
                                .min(self.retry.max_delay)
                                + self.retry.random_jitter()
                        }
                        None => self.retry.backoff(attempt),
                    };
                    tracing::warn!(%path, attempt, wait_ms = wait.as_millis() as u64, okta_request_id = %request_id, "Okta rate limit exceeded, waiting for reset");
                    // The wait covers this reset, so the pre-request check must not wait again.
                    self.rate_limits.take_wait(&bucket, SystemTime::now());
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(OktaError::RateLimited {
                    path,
                    attempts: attempt,
                    reset: reset_epoch.and_then(epoch_to_datetime),
                });
            }

            if status.is_server_error() {
                if attempt < self.retry.max_attempts {
                    let delay = self.retry.backoff(attempt);
                    tracing::warn!(%path, attempt, status = status.as_u16(), okta_request_id = %request_id, delay_ms = delay.as_millis() as u64, "Okta server error, retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                return Err(OktaError::Server {
                    status: status.as_u16(),
                    path,
                    attempts: attempt,
                    body: error_body,
                });
            }

            if status == StatusCode::UNAUTHORIZED && self.uses_oauth() && !token_refreshed {
                // A revoked or expired bearer token: fetch a new one once and try again.
                token_refreshed = true;
                *self.access_token.lock().await = None;
                attempt -= 1;
                continue;
            }

            return Err(classify_client_error(status, path, error_body));
        }
    }

    fn uses_oauth(&self) -> bool {
        matches!(self.auth, OktaAuth::PrivateKeyJwt { .. })
    }

    /// Returns the `Authorization` header value, fetching an access token when none is cached
    /// or the cached one is about to expire.
    async fn authorization(&self) -> Result<HeaderValue, OktaError> {
        let value = match &self.auth {
            OktaAuth::ApiToken(token) => format!("SSWS {}", token.expose()),
            OktaAuth::PrivateKeyJwt {
                client_id,
                private_key_pem,
                key_id,
                scopes,
            } => {
                let mut cached = self.access_token.lock().await;
                let token = match cached.as_ref() {
                    Some(token) if token.is_fresh() => token.clone(),
                    _ => {
                        let token = request_access_token(
                            &self.http,
                            &self.org_url,
                            client_id,
                            private_key_pem,
                            key_id.as_deref(),
                            scopes,
                        )
                        .await?;
                        tracing::debug!(client_id = %client_id, "fetched an Okta access token");
                        *cached = Some(token.clone());
                        token
                    }
                };
                format!("Bearer {}", token.value.expose())
            }
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| OktaError::InvalidResponse {
            path: "Authorization".to_string(),
            reason: "the API token or access token contains characters not allowed in a header"
                .to_string(),
        })?;
        header.set_sensitive(true);
        Ok(header)
    }
}

fn classify_client_error(status: StatusCode, path: String, body: Box<OktaErrorBody>) -> OktaError {
    match status {
        StatusCode::FORBIDDEN => OktaError::Forbidden { path, body },
        StatusCode::UNAUTHORIZED => OktaError::Unauthorized { path, body },
        _ if status.is_redirection() => OktaError::InvalidResponse {
            path,
            reason: format!("unexpected redirect {status}; the client follows no redirects"),
        },
        _ => OktaError::Client {
            status: status.as_u16(),
            path,
            body,
        },
    }
}

fn epoch_to_datetime(epoch: u64) -> Option<DateTime<Utc>> {
    let seconds = i64::try_from(epoch).ok()?;
    DateTime::from_timestamp(seconds, 0)
}

/// Splits `sent` into accepted and rejected, matching Okta's `errors` entries to the sent
/// addresses case-insensitively and in any order.
pub fn match_remove_list_errors(
    sent: &[String],
    errors: Vec<impl Into<(String, String)>>,
) -> RemoveListOutcome {
    let errors: Vec<(String, String)> = errors.into_iter().map(Into::into).collect();
    let mut outcome = RemoveListOutcome::default();
    for address in sent {
        let reason = errors
            .iter()
            .find(|(reported, _)| reported.trim().eq_ignore_ascii_case(address.trim()))
            .map(|(_, reason)| reason.clone());
        match reason {
            Some(reason) => outcome.rejected.push((address.clone(), reason)),
            None => outcome.accepted.push(address.clone()),
        }
    }
    let unmatched = errors
        .iter()
        .filter(|(reported, _)| {
            !sent
                .iter()
                .any(|address| address.trim().eq_ignore_ascii_case(reported.trim()))
        })
        .count();
    if unmatched > 0 {
        tracing::warn!(
            unmatched,
            "Okta reported remove-list errors for addresses that were not sent"
        );
    }
    outcome
}

impl From<RemoveListError> for (String, String) {
    fn from(error: RemoveListError) -> (String, String) {
        (error.email_address, error.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, r)| (a.to_string(), r.to_string()))
            .collect()
    }

    #[test]
    fn remove_list_errors_match_case_insensitively() {
        let sent = vec![
            "Ok@Example.com".to_string(),
            "Nobody@Example.com".to_string(),
        ];
        let outcome =
            match_remove_list_errors(&sent, pairs(&[("nobody@example.com", "not a user")]));
        assert_eq!(outcome.accepted, vec!["Ok@Example.com".to_string()]);
        assert_eq!(
            outcome.rejected,
            pairs(&[("Nobody@Example.com", "not a user")])
        );
    }

    #[test]
    fn plus_address_kept_as_sent() {
        let sent = vec!["first.last+okta@example.com".to_string()];
        let outcome = match_remove_list_errors(&sent, Vec::<(String, String)>::new());
        assert_eq!(outcome.accepted, sent);
    }
}
