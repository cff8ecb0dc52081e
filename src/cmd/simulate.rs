//! `bouncewatch simulate FILE`: a System Log export through the same classification and
//! outage pass as the service, on `published` time, touching no store and no Okta. Each
//! address's eligibility is judged as of its domain's recovery, as the service would.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::classify::{self, Scope, Verdict};
use crate::config::Config;
use crate::okta::event::{LogEvent, EMAIL_DELIVERY};
use crate::okta::recipient::find_recipient;
use crate::okta::DeliveryStatus;
use crate::rules::outage::{analyse, Thresholds};
use crate::state::{AddressStatus, DomainEvent};

/// Distinct unknown replies listed for review.
const UNKNOWN_LISTED: usize = 25;

struct Row {
    published: DateTime<Utc>,
    uuid: String,
    address: String,
    status: DeliveryStatus,
    verdict: Option<Verdict>,
}

#[derive(Debug, Serialize)]
struct Outage {
    domain: String,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    recovered_by: Option<String>,
    addresses_affected: usize,
}

#[derive(Debug, Serialize)]
struct Kept {
    address: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct UnknownReply {
    message: String,
    count: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    events: usize,
    duplicates: usize,
    skipped: usize,
    outages: Vec<Outage>,
    would_clear: Vec<String>,
    kept: Vec<Kept>,
    unknown_verdicts: Vec<UnknownReply>,
}

pub fn run(config: &Config, file: &Path, format: &str) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
    let report = simulate(config, &bytes)?;
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

/// Calls `each` with every event of an export, a JSON array or one event per line, and returns
/// how many entries were not readable events. An array's elements are parsed one at a time
/// from the input, so the export is never held in memory twice.
fn for_each_event(bytes: &[u8], mut each: impl FnMut(LogEvent)) -> anyhow::Result<usize> {
    let mut skipped = 0;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let elements: Vec<&RawValue> =
            serde_json::from_slice(bytes).context("the export is not a JSON array")?;
        for element in elements {
            match serde_json::from_str::<LogEvent>(element.get()) {
                Ok(event) => each(event),
                Err(_) => skipped += 1,
            }
        }
        return Ok(skipped);
    }
    for line in bytes.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<LogEvent>(line) {
            Ok(event) => each(event),
            Err(_) => skipped += 1,
        }
    }
    Ok(skipped)
}

fn simulate(config: &Config, bytes: &[u8]) -> anyhow::Result<Report> {
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let mut untracked = 0;
    let mut unknown: HashMap<String, usize> = HashMap::new();
    let mut rows = Vec::new();
    let unreadable = for_each_event(bytes, |event| {
        let tracked = event.event_type == EMAIL_DELIVERY
            || event.event_type == crate::ingest::BOUNCE_BLOCKED_EMAIL;
        let Some(address) = find_recipient(&event).filter(|_| tracked) else {
            untracked += 1;
            return;
        };
        if !seen.insert(event.uuid.clone()) {
            duplicates += 1;
            return;
        }
        let status = if event.event_type == crate::ingest::BOUNCE_BLOCKED_EMAIL {
            DeliveryStatus::Dropped
        } else {
            event.status()
        };
        let verdict = classify::classify(status, event.provider_message());
        if verdict.is_some_and(|v| v.scope == Scope::Unknown) {
            let message = event.provider_message().unwrap_or("(no provider message)");
            *unknown
                .entry(message.chars().take(200).collect())
                .or_default() += 1;
        }
        rows.push(Row {
            published: event.published,
            uuid: event.uuid,
            address: address.key().to_string(),
            status,
            verdict,
        });
    })?;
    let skipped = unreadable + untracked;
    rows.sort_unstable_by(|a, b| (a.published, &a.uuid).cmp(&(b.published, &b.uuid)));

    let mut by_address: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_domain: BTreeMap<&str, Vec<DomainEvent>> = BTreeMap::new();
    for (index, row) in rows.iter().enumerate() {
        by_address
            .entry(row.address.as_str())
            .or_default()
            .push(index);
        let domain = crate::address::domain_of_key(&row.address);
        by_domain.entry(domain).or_default().push(DomainEvent {
            published: row.published,
            uuid: row.uuid.clone(),
            address: row.address.clone(),
            status: row.status,
            scope: row.verdict.map(|v| v.scope),
        });
    }

    let thresholds = Thresholds::from_config(config);
    let mut outages = Vec::new();
    let mut would_clear = Vec::new();
    let mut kept = Vec::new();
    for (domain, events) in &by_domain {
        let analysis = analyse(events, &thresholds);
        let never = config.domain_settings(domain).never_auto_clear;
        for episode in analysis.episodes {
            outages.push(Outage {
                domain: domain.to_string(),
                start: episode.start,
                end: episode.end,
                recovered_by: episode.recovered_by,
                addresses_affected: episode.caused.len(),
            });
            for address in episode.caused.keys() {
                let verdict = match episode.end {
                    None => Err("the domain has not recovered".to_string()),
                    Some(_) if never => {
                        Err("the domain is set never to clear automatically".to_string())
                    }
                    Some(end) => eligible_at(&rows, &by_address[address.as_str()], end),
                };
                match verdict {
                    Ok(()) => would_clear.push(address.clone()),
                    Err(reason) => kept.push(Kept {
                        address: address.clone(),
                        reason,
                    }),
                }
            }
        }
    }
    would_clear.sort();
    would_clear.dedup();
    let mut unknown: Vec<UnknownReply> = unknown
        .into_iter()
        .map(|(message, count)| UnknownReply { message, count })
        .collect();
    unknown.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.message.cmp(&b.message))
    });
    unknown.truncate(UNKNOWN_LISTED);
    Ok(Report {
        events: rows.len(),
        duplicates,
        skipped,
        outages,
        would_clear,
        kept,
        unknown_verdicts: unknown,
    })
}

/// Whether an address would be cleared at `when`: as the service judges it at recovery, its
/// newest status must be a bounce or drop and its newest failure a domain or sender fault.
fn eligible_at(rows: &[Row], indices: &[usize], when: DateTime<Utc>) -> Result<(), String> {
    let upto = indices.partition_point(|&i| rows[i].published <= when);
    let history = &indices[..upto];
    let Some(&latest) = history.last() else {
        return Err("no event before the recovery".into());
    };
    let status = AddressStatus::from_delivery(rows[latest].status);
    if !status.is_suppressed() {
        return Err("not on the bounce list (its newest status is not bounced or dropped)".into());
    }
    let verdict = history.iter().rev().find_map(|&i| rows[i].verdict);
    match verdict.map(|v| v.scope) {
        Some(Scope::Domain | Scope::Sender) => Ok(()),
        Some(Scope::Mailbox) => Err("its own mailbox is the cause".into()),
        Some(Scope::Content) => Err("the message content is the cause".into()),
        _ => Err("the cause of its newest failure is unknown".into()),
    }
}

fn print_text(report: &Report) {
    println!(
        "{} events ({} duplicates, {} skipped)",
        report.events, report.duplicates, report.skipped
    );
    println!("\nOutages: {}", report.outages.len());
    for outage in &report.outages {
        let end = outage
            .end
            .map_or("not recovered".to_string(), |end| end.to_rfc3339());
        println!(
            "  {}  {} .. {}  ({} addresses, recovered by {})",
            outage.domain,
            outage.start.to_rfc3339(),
            end,
            outage.addresses_affected,
            outage.recovered_by.as_deref().unwrap_or("-")
        );
    }
    println!("\nWould clear: {}", report.would_clear.len());
    for address in &report.would_clear {
        println!("  {address}");
    }
    println!("\nKept: {}", report.kept.len());
    for kept in &report.kept {
        println!("  {}  ({})", kept.address, kept.reason);
    }
    println!(
        "\nUnknown verdicts to review: {}",
        report.unknown_verdicts.len()
    );
    for reply in &report.unknown_verdicts {
        println!("  {:>6}  {}", reply.count, reply.message);
    }
}
