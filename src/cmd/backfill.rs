//! `bouncewatch backfill --since TIME [--until TIME]`: reads `system.email.delivery` events from
//! the org's System Log into the store, through the same parsing as the hook, so events the
//! hook already delivered collapse by uuid. A running service does the work through
//! `POST /api/v1/backfill`; without one, this process opens the store itself.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::remote::{admin_token, running_service, ServiceError};
use crate::config::Config;
use crate::ingest::sort_events;
use crate::okta::client::OktaClient;
use crate::okta::logs::{BackfillError, MAX_LOGS_LIMIT};
use crate::okta::setup::client_from_config;
use crate::store::Store;
use crate::telemetry;

/// Okta rejects a `since` more than 180 days back, and it returns no events older than 90 days.
pub const MAX_SINCE_AGE_DAYS: i64 = 180;
pub const RETENTION_DAYS: i64 = 90;

/// How long the command waits for another process to release the store.
const STORE_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Totals of one backfill, as printed and as `POST /api/v1/backfill` returns them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackfillCounts {
    /// Non-empty System Log pages read.
    pub pages: usize,
    /// Events on those pages.
    pub events: usize,
    /// Events stored for the first time.
    pub stored: usize,
    /// Events whose uuid was already stored, by the hook or an earlier backfill.
    pub duplicates: usize,
    pub quarantined: usize,
    /// Events of other types, not stored.
    pub ignored: usize,
}

/// An invalid `since`/`until` pair, with the name of the offending field.
#[derive(Debug)]
pub struct RangeError {
    pub field: &'static str,
    pub detail: String,
}

/// Parses an RFC 3339 time given as `name`, such as `--since`.
pub fn parse_time(name: &'static str, text: &str) -> Result<DateTime<Utc>, RangeError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|time| time.with_timezone(&Utc))
        .map_err(|err| RangeError {
            field: name,
            detail: format!(
                "{name} {text:?} is not an RFC 3339 time ({err}); use a form such as \
                 2025-01-15T10:00:00Z"
            ),
        })
}

/// Checks a range against Okta's System Log limits before any request is sent.
pub fn check_range(
    since_name: &'static str,
    since: DateTime<Utc>,
    until_name: &'static str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), RangeError> {
    if since < now - chrono::Duration::days(MAX_SINCE_AGE_DAYS) {
        return Err(RangeError {
            field: since_name,
            detail: format!(
                "{since_name} {} is more than {MAX_SINCE_AGE_DAYS} days back: Okta's System Log \
                 rejects a since older than {MAX_SINCE_AGE_DAYS} days and returns no events older \
                 than {RETENTION_DAYS} days; choose a later {since_name}",
                format_time(since)
            ),
        });
    }
    if since >= until {
        return Err(RangeError {
            field: since_name,
            detail: format!(
                "{since_name} {} must be earlier than {until_name} {}",
                format_time(since),
                format_time(until)
            ),
        });
    }
    Ok(())
}

pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Reads `since..until` from the System Log page by page and stores each page before the next
/// is requested, calling `on_page` with the running totals. It always sends `until`, so Okta
/// treats the query as bounded, and it stops at the first empty page or the first page with no `next`.
pub async fn backfill_into_store(
    client: &OktaClient,
    store: &Store,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    on_page: &(dyn Fn(&BackfillCounts) + Sync),
) -> Result<BackfillCounts, BackfillError> {
    let counts = Mutex::new(BackfillCounts::default());
    let counts_ref = &counts;
    client
        .backfill(
            since,
            Some(until),
            MAX_LOGS_LIMIT,
            move |events| async move {
                let sorted = sort_events(events.iter());
                let ignored = sorted.ignored;
                let report = store
                    .ingest(sorted.events, sorted.quarantine)
                    .await
                    .context("store a System Log page")?;
                let snapshot = {
                    let mut counts = counts_ref.lock().expect("backfill counts mutex poisoned");
                    counts.pages += 1;
                    counts.events += events.len();
                    counts.stored += report.stored;
                    counts.duplicates += report.duplicates;
                    counts.quarantined += report.quarantined;
                    counts.ignored += ignored;
                    counts.clone()
                };
                on_page(&snapshot);
                Ok(())
            },
        )
        .await?;
    Ok(counts.into_inner().expect("backfill counts mutex poisoned"))
}

/// Runs the command.
pub async fn run(config: Config, since: &str, until: Option<&str>) -> anyhow::Result<()> {
    telemetry::init_logs(config.log_format);
    let started_at = Utc::now();
    let since = parse_time("--since", since).map_err(|err| anyhow::anyhow!(err.detail))?;
    let until = match until {
        Some(text) => parse_time("--until", text).map_err(|err| anyhow::anyhow!(err.detail))?,
        None => started_at,
    };
    check_range("--since", since, "--until", until, started_at)
        .map_err(|err| anyhow::anyhow!(err.detail))?;
    // Checked before the probe, so a missing org URL is reported the same way either path.
    let client = client_from_config(&config)?;

    if let Some(base) = running_service(&config).await {
        return run_through_service(config, &base, since, until).await;
    }

    eprintln!(
        "backfill: no service answers at {}; opening the store in {} directly",
        config.listen,
        config.data_dir.display()
    );
    let store = Store::open(&config.data_dir, config.durability, STORE_LOCK_WAIT)?;
    let progress = Progress::new();
    let result = backfill_into_store(&client, &store, since, until, &|counts| {
        progress.page(counts)
    })
    .await;
    store.flush().await.context("flush the store")?;
    let counts = result.map_err(|err| explain_backfill_error(err, "--since"))?;
    progress.finish(&counts);
    Ok(())
}

/// Rewords Okta's rejection of `since` so it names the option or field the user set.
pub fn explain_backfill_error(err: BackfillError, since_name: &str) -> anyhow::Error {
    match err {
        BackfillError::SinceRejected { .. } => {
            anyhow::anyhow!("{since_name} was rejected: {err}")
        }
        other => anyhow::Error::new(other).context("System Log backfill failed"),
    }
}

/// Asks the running service to backfill and waits for its totals.
async fn run_through_service(
    config: Config,
    base: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> anyhow::Result<()> {
    let token = admin_token(&config)?;

    eprintln!(
        "backfill: a service answers at {base}; it reads {} to {} into its store, and this \
         command waits for its totals",
        format_time(since),
        format_time(until)
    );
    // NOTE: no timeout, because a long range can take many minutes inside the service. The
    // service reports no per-page progress through this request.
    let started = Instant::now();
    let http = super::remote::local_client(&config, None)?;
    let response = http
        .post(format!("{base}/api/v1/backfill"))
        .bearer_auth(token.expose())
        .json(&serde_json::json!({"since": format_time(since), "until": format_time(until)}))
        .send()
        .await
        .with_context(|| format!("POST {base}/api/v1/backfill failed"))?;

    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    if !status.is_success() {
        let error = ServiceError::parse(&body);
        let option = match error.field.as_deref() {
            Some("since") => "--since was rejected: ",
            Some("until") => "--until was rejected: ",
            _ => "",
        };
        anyhow::bail!(
            "{option}the service at {base} failed the backfill with {status} ({}): {}",
            error.error,
            error.detail
        );
    }

    let counts: BackfillCounts = serde_json::from_slice(&body)
        .with_context(|| format!("the service at {base} returned an unreadable backfill result"))?;
    eprintln!("{}", summary_line(&counts, started.elapsed()));
    Ok(())
}

fn summary_line(counts: &BackfillCounts, elapsed: Duration) -> String {
    format!(
        "backfill: done: {} pages, {} events ({} stored, {} duplicates, {} quarantined, {} other \
         types) in {:.1} s",
        counts.pages,
        counts.events,
        counts.stored,
        counts.duplicates,
        counts.quarantined,
        counts.ignored,
        elapsed.as_secs_f64()
    )
}

/// Progress on stderr: one updating line on a terminal, one line per page otherwise.
struct Progress {
    started: Instant,
    terminal: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn page(&self, counts: &BackfillCounts) {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let line = format!(
            "backfill: page {}, {} events, {:.0} events/s",
            counts.pages,
            counts.events,
            counts.events as f64 / seconds
        );
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            // Carriage return and "erase line" rewrite the same line.
            let _ = write!(stderr, "\r\x1b[K{line}");
            let _ = stderr.flush();
        } else {
            let _ = writeln!(stderr, "{line}");
        }
    }

    fn finish(&self, counts: &BackfillCounts) {
        if self.terminal && counts.pages > 0 {
            eprintln!();
        }
        eprintln!("{}", summary_line(counts, self.started.elapsed()));
    }
}
