//! `bouncewatch status`: queue depths, domains in outage, clears waiting, the rules settings and
//! the store's size. From a running service it reads `GET /readyz` and `GET /api/v1/status`;
//! without one it builds the same document from the store.

use reqwest::Method;
use serde_json::{json, Value};

use super::remote::{open_existing_store, Service};
use crate::config::Config;
use crate::http::ops::status_document;

pub async fn run(config: &Config, format: &str) -> anyhow::Result<()> {
    let document = match Service::find(config).await? {
        Some(service) => from_service(&service).await?,
        None => {
            let store = open_existing_store(config)?;
            let mut document = status_document(&store, config)?;
            document["service"] = json!({"running": false, "listen": config.listen.to_string()});
            document
        }
    };
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        print!("{}", render(&document));
    }
    Ok(())
}

async fn from_service(service: &Service) -> anyhow::Result<Value> {
    let (ready_status, ready_body) = service
        .send(service.request(Method::GET, "/readyz"), "GET /readyz")
        .await?;
    let readyz: Value = serde_json::from_slice(&ready_body).unwrap_or(Value::Null);
    let mut document = service.get_json("/api/v1/status").await?;
    document["service"] = json!({
        "running": true,
        "url": service.base,
        "ready": ready_status.is_success(),
        "readyz": readyz,
    });
    Ok(document)
}

fn yes_no(value: &Value) -> &'static str {
    if value.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
}

/// Renders the status document as labelled lines.
fn render(document: &Value) -> String {
    let service = &document["service"];
    let service_line = if service["running"].as_bool() == Some(true) {
        let readiness = if service["ready"].as_bool() == Some(true) {
            "ready"
        } else {
            "NOT READY (the store does not take writes)"
        };
        format!("running at {}, {readiness}", text(&service["url"]))
    } else {
        format!(
            "not running (nothing responds at {}); read from the store",
            text(&service["listen"])
        )
    };
    let store = &document["store"];
    let queues = &document["queues"];
    let clears = &document["clears"];
    let rules = &document["rules"];
    let mut rules_line = format!(
        "paused: {}, approval mode: {}, dry run: {}",
        yes_no(&rules["paused"]),
        yes_no(&rules["approval_mode"]),
        yes_no(&rules["dry_run"])
    );
    if let Some(reason) = rules["stopped_by_okta"].as_str() {
        rules_line.push_str(&format!(", STOPPED BY OKTA: {reason}"));
    }
    let outages: Vec<&str> = document["domains_in_outage"]
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let retention = &document["retention"];

    let rows = vec![
        vec!["service".to_string(), service_line],
        vec![
            "store".to_string(),
            format!(
                "{}, {}",
                text(&store["path"]),
                human_bytes(store["bytes_on_disk"].as_u64().unwrap_or(0))
            ),
        ],
        vec![
            "queues".to_string(),
            format!(
                "rules {}, clears {}, outbox {}, quarantine {}",
                queues["rules"], queues["clears"], queues["outbox"], queues["quarantine"]
            ),
        ],
        vec![
            "clears".to_string(),
            format!(
                "{} pending, {} awaiting approval",
                clears["pending"], clears["awaiting_approval"]
            ),
        ],
        vec!["rules".to_string(), rules_line],
        vec![
            "outages".to_string(),
            if outages.is_empty() {
                "none".to_string()
            } else {
                outages.join(", ")
            },
        ],
        vec![
            "retention".to_string(),
            format!(
                "events {} days, actions {} days, quarantine {} days (0: kept forever)",
                retention["retention_days"],
                retention["action_retention_days"],
                retention["quarantine_retention_days"]
            ),
        ],
    ];
    table(&rows)
}

/// Returns a JSON string's text, `-` for null, or the JSON of any other value.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Lays rows out in columns padded to the widest cell, two spaces apart.
pub(super) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                let padding = widths[column] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(padding + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["a".to_string(), "bb".to_string(), "c".to_string()],
            vec!["dddd".to_string(), "e".to_string(), "f".to_string()],
        ];
        assert_eq!(table(&rows), "a     bb  c\ndddd  e   f\n");
    }

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
