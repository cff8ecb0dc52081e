//! One signed delivery attempt to one subscriber.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{redirect, StatusCode};
use url::Url;

use crate::forward::backoff::parse_retry_after;
use crate::forward::notification::Notification;
use crate::forward::sign::sign;
use crate::forward::ssrf::{resolve_destination, Destination};
use crate::forward::subscription::Subscription;

/// The `user-agent` of every notification request.
pub const USER_AGENT: &str = concat!("bouncewatch/", env!("CARGO_PKG_VERSION"));

/// The maximum length of a response body excerpt, in bytes. No more than this much of a
/// response body is read.
pub const BODY_EXCERPT_BYTES: usize = 256;

/// The next step for the caller after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// A 2xx response.
    Delivered,
    /// A 5xx, a 429, a 3xx (redirects are never followed), a timeout, or a connection or
    /// resolution failure. `after` is the receiver's `Retry-After`, if it sent a valid one.
    Retry { after: Option<Duration> },
    /// A 410: the receiver no longer accepts notifications, so the caller disables the
    /// subscription.
    Gone,
    /// Any other 4xx. The caller's schedule still retries it, but counts it as a failure.
    Failed,
    /// The destination guard rejected the URL or one of its addresses, so nothing was sent.
    Refused,
}

/// The result of one attempt, with what the delivery log shows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub result: AttemptResult,
    /// The response status, when a response arrived.
    pub status: Option<u16>,
    /// The time from the start of the attempt to its end, resolution included.
    pub latency_ms: u64,
    /// The reason the attempt got no response or was refused. It never contains the URL,
    /// which may carry a receiver's token.
    pub error: Option<String>,
    /// The first [`BODY_EXCERPT_BYTES`] bytes of the response body, decoded lossily as UTF-8.
    pub body_excerpt: Option<String>,
}

/// Sends `notification` to `sub` once, signed with the subscription's active secrets.
///
/// The URL and every address its host resolves to are checked first (see
/// [`crate::forward::ssrf`]), unless `allow_private`, and the client is pinned to the checked
/// addresses. `timeout` bounds the whole attempt: resolution, connection, response and the
/// excerpt read. Redirects are never followed and no proxy is used.
pub async fn deliver_once(
    sub: &Subscription,
    notification: &Notification,
    allow_private: bool,
    timeout: Duration,
) -> AttemptOutcome {
    let started = Instant::now();
    let body = notification.to_body();
    let attempt = attempt(sub, notification, body, allow_private, timeout);
    let mut outcome = match tokio::time::timeout(timeout, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => retry_after_error(format!("timed out after {} ms", timeout.as_millis())),
    };
    outcome.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);

    tracing::debug!(
        subscription_id = %sub.id,
        webhook_id = %notification.id,
        status = outcome.status,
        latency_ms = outcome.latency_ms,
        result = ?outcome.result,
        "notification attempt finished"
    );
    outcome
}

/// Builds a client for one attempt: no redirects, no proxy, and for a checked destination, DNS
/// answers only from the pinned addresses.
pub fn build_client(
    destination: &Destination,
    timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        // NOTE: outbound proxies are not supported, because a proxy would connect to the
        // destination by name, past the pinned addresses.
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(USER_AGENT);
    match destination {
        Destination::Resolved { host, addrs } => {
            builder = builder
                .dns_resolver(Arc::new(NoLookup))
                .resolve_to_addrs(host, addrs);
        }
        Destination::Literal => builder = builder.dns_resolver(Arc::new(NoLookup)),
        Destination::Unchecked => {}
    }
    builder.build()
}

/// How long a built client, with its pooled connections, is reused for one destination.
const CLIENT_REUSE: Duration = Duration::from_secs(300);
/// Most clients kept; past this the cache starts afresh.
const MAX_CACHED_CLIENTS: usize = 256;

type ClientKey = (String, u128);

/// Clients by destination (its pinned addresses included) and timeout, so attempts to the same
/// destination reuse connections instead of building a client and connecting each time. The
/// destination is still resolved and checked on every attempt, and different addresses give a
/// different key, so a DNS change never reuses a client pinned to the old addresses.
static CLIENTS: std::sync::LazyLock<
    std::sync::Mutex<HashMap<ClientKey, (reqwest::Client, Instant)>>,
> = std::sync::LazyLock::new(Default::default);

fn cached_client(destination: &Destination, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    let shape = match destination {
        Destination::Literal => "literal".to_string(),
        Destination::Unchecked => "unchecked".to_string(),
        Destination::Resolved { host, addrs } => {
            let mut addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            addrs.sort();
            format!("{host}={}", addrs.join(","))
        }
    };
    let key = (shape, timeout.as_millis());
    let mut clients = CLIENTS.lock().expect("client cache lock");
    if let Some((client, built)) = clients.get(&key) {
        if built.elapsed() < CLIENT_REUSE {
            return Ok(client.clone());
        }
    }
    if clients.len() >= MAX_CACHED_CLIENTS {
        clients.clear();
    }
    let client = build_client(destination, timeout)?;
    clients.insert(key, (client.clone(), Instant::now()));
    Ok(client)
}

/// A resolver that fails every lookup, so that a name missing from the pinned overrides can
/// never fall back to a fresh DNS query.
struct NoLookup;

impl reqwest::dns::Resolve for NoLookup {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let message = format!("no pinned address for {}", name.as_str());
        Box::pin(async move { Err(message.into()) })
    }
}

async fn attempt(
    sub: &Subscription,
    notification: &Notification,
    body: Bytes,
    allow_private: bool,
    timeout: Duration,
) -> AttemptOutcome {
    let url = match Url::parse(&sub.url) {
        Ok(url) => url,
        Err(err) => return outcome(AttemptResult::Refused, Some(format!("invalid URL: {err}"))),
    };
    let destination = match resolve_destination(&url, allow_private).await {
        Ok(destination) => destination,
        Err(err) if err.is_refusal() => {
            return outcome(AttemptResult::Refused, Some(err.to_string()));
        }
        Err(err) => return retry_after_error(err.to_string()),
    };
    let client = match cached_client(&destination, timeout) {
        Ok(client) => client,
        Err(err) => return retry_after_error(format!("building the HTTP client failed: {err}")),
    };

    let now = Utc::now();
    let secrets = sub.active_secrets(now);
    if secrets.is_empty() {
        let error = "the subscription has no active signing secret".to_string();
        return outcome(AttemptResult::Failed, Some(error));
    }
    let timestamp = now.timestamp();
    let signature = sign(&notification.id, timestamp, &body, &secrets);

    let request = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header("webhook-id", &notification.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body);
    let response = match request.send().await {
        Ok(response) => response,
        Err(err) => return retry_after_error(describe(err)),
    };

    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()));
    let body_excerpt = read_excerpt(response).await;
    AttemptOutcome {
        result: classify(status, retry_after),
        status: Some(status.as_u16()),
        latency_ms: 0,
        error: None,
        body_excerpt,
    }
}

/// Maps a response status to what the caller does next.
fn classify(status: StatusCode, retry_after: Option<Duration>) -> AttemptResult {
    match status.as_u16() {
        200..=299 => AttemptResult::Delivered,
        410 => AttemptResult::Gone,
        429 | 500..=599 => AttemptResult::Retry { after: retry_after },
        300..=399 => AttemptResult::Retry { after: None },
        _ => AttemptResult::Failed,
    }
}

/// Reads at most [`BODY_EXCERPT_BYTES`] of the body and drops the rest unread. A read error
/// ends the excerpt where it happened.
async fn read_excerpt(mut response: reqwest::Response) -> Option<String> {
    let mut buffer = Vec::new();
    while buffer.len() < BODY_EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => buffer.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    if buffer.is_empty() {
        return None;
    }
    buffer.truncate(BODY_EXCERPT_BYTES);
    let mut excerpt = String::from_utf8_lossy(&buffer).into_owned();
    // A multi-byte character cut at the limit decodes to U+FFFD, which may push the excerpt
    // past the limit again.
    while excerpt.len() > BODY_EXCERPT_BYTES {
        excerpt.pop();
    }
    Some(excerpt)
}

/// Describes a request error with its causes, but without the URL.
fn describe(err: reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".to_string();
    }
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn outcome(result: AttemptResult, error: Option<String>) -> AttemptOutcome {
    AttemptOutcome {
        result,
        status: None,
        latency_ms: 0,
        error,
        body_excerpt: None,
    }
}

fn retry_after_error(error: String) -> AttemptOutcome {
    outcome(AttemptResult::Retry { after: None }, Some(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_statuses() {
        let after = Some(Duration::from_secs(30));
        let cases = [
            (200, None, AttemptResult::Delivered),
            (204, None, AttemptResult::Delivered),
            (302, after, AttemptResult::Retry { after: None }),
            (400, None, AttemptResult::Failed),
            (404, None, AttemptResult::Failed),
            (410, None, AttemptResult::Gone),
            (429, after, AttemptResult::Retry { after }),
            (500, None, AttemptResult::Retry { after: None }),
            (503, after, AttemptResult::Retry { after }),
        ];
        for (code, retry_after, expected) in cases {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(classify(status, retry_after), expected, "status {code}");
        }
    }
}
