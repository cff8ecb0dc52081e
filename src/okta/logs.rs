//! Reading `system.email.delivery` events from the System Log API (`GET /api/v1/logs`) to
//! backfill what the event hook missed.

use std::future::Future;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{HeaderMap, LINK};
use reqwest::Method;
use url::Url;

use super::client::OktaClient;
use super::error::OktaError;
use super::event::EMAIL_DELIVERY;

/// Maximum `limit` the System Log API accepts per page.
pub const MAX_LOGS_LIMIT: u32 = 1000;

/// One page of System Log events and the `next` link, when Okta sent one.
#[derive(Debug, Clone)]
pub struct LogsPage {
    pub events: Vec<serde_json::Value>,
    pub next: Option<Url>,
}

/// Totals of one [`OktaClient::backfill`] run.
#[derive(Debug, Clone, Default)]
pub struct BackfillSummary {
    /// Pages that contained events and were passed to the callback.
    pub pages: usize,
    pub events: usize,
    /// The last `next` link seen. In a polling query (no `until`) it is the checkpoint from
    /// which the next run continues.
    pub last_next: Option<Url>,
}

/// A failed backfill.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(
        "Okta rejected since={since} ({code}: {summary}). The System Log does not return data \
         older than 90 days and rejects a since more than 180 days back; choose a later since."
    )]
    SinceRejected {
        since: String,
        code: String,
        summary: String,
    },
    #[error(transparent)]
    Okta(#[from] OktaError),
    #[error("the page callback failed: {0}")]
    Callback(#[source] anyhow::Error),
}

impl OktaClient {
    /// Builds the first-page URL of a delivery-event query: `filter=eventType eq
    /// "system.email.delivery"`, `since`, `until` when given, `limit` (clamped to 1..=1000) and
    /// `sortOrder=ASCENDING`. Without `until` the query is a polling query, whose pages always
    /// carry a `next` link.
    pub fn logs_url(&self, since: DateTime<Utc>, until: Option<DateTime<Utc>>, limit: u32) -> Url {
        let mut url = self.api_url("/api/v1/logs");
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("filter", &format!("eventType eq \"{EMAIL_DELIVERY}\""));
            query.append_pair("since", &since.to_rfc3339_opts(SecondsFormat::Millis, true));
            if let Some(until) = until {
                query.append_pair("until", &until.to_rfc3339_opts(SecondsFormat::Millis, true));
            }
            query.append_pair("limit", &limit.clamp(1, MAX_LOGS_LIMIT).to_string());
            query.append_pair("sortOrder", "ASCENDING");
        }
        url
    }

    /// Fetches one page of events from `url`, a URL from [`OktaClient::logs_url`] or a `next`
    /// link, without changing its query.
    pub async fn fetch_page(&self, url: &Url) -> Result<LogsPage, OktaError> {
        let response = self.execute(Method::GET, url.clone(), None).await?;
        let events: Vec<serde_json::Value> =
            serde_json::from_slice(&response.body).map_err(|error| OktaError::InvalidResponse {
                path: url.path().to_string(),
                reason: format!("System Log page is not a JSON array: {error}"),
            })?;
        let next = next_link(&response.headers)
            .map(|link| url.join(&link))
            .transpose()
            .map_err(|error| OktaError::InvalidResponse {
                path: url.path().to_string(),
                reason: format!("invalid next link: {error}"),
            })?;
        Ok(LogsPage { events, next })
    }

    /// Reads delivery events from `since` (and up to `until`, when given) page by page, calling
    /// `on_page` with each non-empty page, until a page has no `next` link or is empty.
    pub async fn backfill<F, Fut>(
        &self,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        limit: u32,
        mut on_page: F,
    ) -> Result<BackfillSummary, BackfillError>
    where
        F: FnMut(Vec<serde_json::Value>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let mut summary = BackfillSummary::default();
        let mut url = self.logs_url(since, until, limit);
        let mut first_page = true;

        loop {
            let page = match self.fetch_page(&url).await {
                Ok(page) => page,
                Err(OktaError::Client {
                    status: 400, body, ..
                }) if first_page => {
                    return Err(BackfillError::SinceRejected {
                        since: since.to_rfc3339_opts(SecondsFormat::Millis, true),
                        code: body.error_code,
                        summary: body.error_summary,
                    });
                }
                Err(error) => return Err(error.into()),
            };
            first_page = false;
            if page.next.is_some() {
                summary.last_next = page.next.clone();
            }
            if page.events.is_empty() {
                break;
            }

            summary.pages += 1;
            summary.events += page.events.len();
            on_page(page.events)
                .await
                .map_err(BackfillError::Callback)?;

            match page.next {
                Some(next) => url = next,
                None => break,
            }
        }
        tracing::info!(
            pages = summary.pages,
            events = summary.events,
            "System Log backfill finished"
        );
        Ok(summary)
    }
}

/// Returns the target of the first `rel="next"` link in the `Link` headers.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| find_link(value, "next"))
}

/// Finds the target of the link with relation `rel` in one `Link` header value (RFC 8288).
/// It accepts several links per value, quoted or unquoted `rel`, several relations in one
/// `rel`, and extra whitespace. A malformed entry is skipped.
pub fn find_link(header_value: &str, rel: &str) -> Option<String> {
    let mut rest = header_value;
    loop {
        let start = rest.find('<')?;
        let after_start = &rest[start + 1..];
        let end = after_start.find('>')?;
        let target = after_start[..end].trim();
        let params_and_rest = &after_start[end + 1..];

        // The parameters of this link run until the next '<' (the next link) or the end.
        let params_end = params_and_rest.find('<').unwrap_or(params_and_rest.len());
        let params = &params_and_rest[..params_end];
        if params_name_rel(params, rel) {
            return Some(target.to_string());
        }
        rest = &params_and_rest[params_end..];
    }
}

fn params_name_rel(params: &str, rel: &str) -> bool {
    params
        .split([';', ','])
        .filter_map(|param| param.split_once('='))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("rel"))
        .any(|(_, value)| {
            value
                .trim()
                .trim_matches('"')
                .split_ascii_whitespace()
                .any(|relation| relation.eq_ignore_ascii_case(rel))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn next_found_after_self_in_one_value() {
        let value = r#"<https://o.example/api/v1/logs?a=1>; rel="self", <https://o.example/api/v1/logs?after=x>; rel="next""#;
        assert_eq!(
            find_link(value, "next").as_deref(),
            Some("https://o.example/api/v1/logs?after=x")
        );
    }

    #[test]
    fn unquoted_rel_accepted() {
        let value = "<https://o.example/n>; rel=next";
        assert_eq!(
            find_link(value, "next").as_deref(),
            Some("https://o.example/n")
        );
    }

    #[test]
    fn extra_whitespace_accepted() {
        let value = "  < https://o.example/n >  ;   rel = \"next\"  ";
        assert_eq!(
            find_link(value, "next").as_deref(),
            Some("https://o.example/n")
        );
    }

    #[test]
    fn multiple_relations_in_rel() {
        let value = r#"<https://o.example/n>; rel="prev next""#;
        assert_eq!(
            find_link(value, "next").as_deref(),
            Some("https://o.example/n")
        );
    }

    #[test]
    fn self_only_has_no_next() {
        let value = r#"<https://o.example/s>; rel="self""#;
        assert_eq!(find_link(value, "next"), None);
    }

    #[test]
    fn malformed_values_do_not_panic() {
        for value in [
            "",
            "<",
            ">",
            "<unterminated; rel=next",
            "rel=next",
            "<a>;;;rel",
            "<a>, <b>; rel=\"next",
            "<,>; rel=next,",
        ] {
            let _ = find_link(value, "next");
        }
    }

    #[test]
    fn comma_inside_url_does_not_panic() {
        let value = r#"<https://o.example/n?x=a,b>; rel="next""#;
        assert_eq!(
            find_link(value, "next").as_deref(),
            Some("https://o.example/n?x=a,b")
        );
    }

    #[test]
    fn next_found_in_second_header() {
        let mut headers = HeaderMap::new();
        headers.append(
            LINK,
            HeaderValue::from_static("<https://o.example/s>; rel=\"self\""),
        );
        headers.append(
            LINK,
            HeaderValue::from_static("<https://o.example/n>; rel=\"next\""),
        );
        assert_eq!(next_link(&headers).as_deref(), Some("https://o.example/n"));
    }

    #[test]
    fn logs_url_encodes_filter_once() {
        let client = OktaClient::new(
            Url::parse("https://example.okta.com").unwrap(),
            super::super::auth::OktaAuth::ApiToken("t".into()),
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        let since = DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let url = client.logs_url(since, None, 5000);
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs[0],
            (
                "filter".into(),
                "eventType eq \"system.email.delivery\"".into()
            )
        );
        assert_eq!(
            pairs[1],
            ("since".into(), "2024-01-02T03:04:05.000Z".into())
        );
        assert_eq!(pairs[2], ("limit".into(), "1000".into()));
        assert_eq!(pairs[3], ("sortOrder".into(), "ASCENDING".into()));
        assert!(!url.as_str().contains("%25"), "{url}");
    }
}
