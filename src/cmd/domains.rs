//! `bouncewatch domains [--limit N]`: domains with their health, the most failures in their last
//! 24 hours of events first, from `GET /api/v1/domains` or, without a service, from the store.

use serde_json::{json, Value};

use super::remote::{open_existing_store, Service};
use super::status::{table, text};
use crate::config::Config;
use crate::http::admin::domain_document;

pub async fn run(config: &Config, limit: u16, format: &str) -> anyhow::Result<()> {
    let items: Vec<Value> = match Service::find(config).await? {
        Some(service) => {
            let page = service
                .get_json(&format!("/api/v1/domains?limit={limit}"))
                .await?;
            page["items"].as_array().cloned().unwrap_or_default()
        }
        None => {
            let store = open_existing_store(config)?;
            let domains = store.domains_by_failures(usize::from(limit))?;
            domains.iter().map(domain_document).collect()
        }
    };
    if format == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"items": items}))?
        );
        return Ok(());
    }
    if items.is_empty() {
        println!("no domains: no events are stored yet");
        return Ok(());
    }
    let mut rows = vec![vec![
        "DOMAIN".to_string(),
        "HEALTH".to_string(),
        "FAILURES_24H".to_string(),
        "DELIVERED_24H".to_string(),
        "ADDRESSES".to_string(),
        "LAST_FAILURE".to_string(),
    ]];
    for item in &items {
        let recent = &item["last_24h"];
        rows.push(vec![
            text(&item["domain"]),
            text(&item["health"]),
            failures(recent).to_string(),
            recent["delivered"].as_u64().unwrap_or(0).to_string(),
            text(&item["addresses"]),
            text(&item["last_failure_at"]),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

/// Failures in a `StatusCounts` document: every status but `delivered`.
fn failures(counts: &Value) -> u64 {
    ["bounce", "blocked", "deferred", "dropped", "unknown"]
        .iter()
        .map(|status| counts[*status].as_u64().unwrap_or(0))
        .sum()
}
