//! `bouncewatch clear ADDRESS... | --file CSV [--force]`: clears addresses from Okta's bounce
//! list through the running service's `POST /api/v1/addresses/clear`, so each clear goes
//! through the service's queue, hourly cap, loop guard and approval mode. It prints one result
//! per address and fails when any address was not queued.

use std::path::Path;

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};

use super::remote::Service;
use super::status::{table, text};
use crate::config::Config;

/// The maximum number of addresses `POST /api/v1/addresses/clear` accepts in one request.
const REQUEST_MAX: usize = 1000;

pub async fn run(
    config: &Config,
    mut addresses: Vec<String>,
    file: Option<&Path>,
    force: bool,
) -> anyhow::Result<()> {
    if let Some(file) = file {
        let content =
            std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
        addresses.extend(
            addresses_from_csv(&content).with_context(|| format!("read {}", file.display()))?,
        );
    }
    anyhow::ensure!(!addresses.is_empty(), "no addresses to clear");
    let Some(service) = Service::find(config).await? else {
        anyhow::bail!(
            "no service responds at {}; clear needs the running service, because clears go \
             through its queue, hourly cap, loop guard and approval mode. Start it with \
             `bouncewatch serve`",
            config.listen
        );
    };

    let mut rows = vec![vec![
        "ADDRESS".to_string(),
        "RESULT".to_string(),
        "DETAIL".to_string(),
    ]];
    let mut failed = 0;
    for batch in addresses.chunks(REQUEST_MAX) {
        let body = json!({"addresses": batch, "force": force});
        let request = service
            .request(Method::POST, "/api/v1/addresses/clear")
            .json(&body);
        let what = "POST /api/v1/addresses/clear";
        let (status, response) = service.send(request, what).await?;
        if !status.is_success() {
            anyhow::bail!("{}", service.failure(what, status, &response));
        }
        let answer: Value = serde_json::from_slice(&response)
            .with_context(|| format!("the service at {} returned unreadable JSON", service.base))?;
        for item in answer["items"].as_array().cloned().unwrap_or_default() {
            let result = text(&item["result"]);
            if result != "queued" {
                failed += 1;
            }
            rows.push(vec![text(&item["address"]), result, detail(&item)]);
        }
    }
    print!("{}", table(&rows));
    if failed > 0 {
        anyhow::bail!("{failed} of {} addresses were not queued", addresses.len());
    }
    Ok(())
}

/// Returns the detail column: the action and its status for a queued clear, the reason otherwise.
fn detail(item: &Value) -> String {
    match item["id"].as_str() {
        Some(id) => format!("{id} ({})", text(&item["status"])),
        None => item["detail"].as_str().unwrap_or("").to_string(),
    }
}

/// Reads addresses from CSV text: the `email` or `address` column when the first row names
/// one, otherwise the whole of each line. Blank lines are skipped.
fn addresses_from_csv(content: &str) -> anyhow::Result<Vec<String>> {
    let mut lines = content
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty());
    let Some((_, first)) = lines.next() else {
        return Ok(Vec::new());
    };
    let header = split_csv_line(first);
    let column = header.iter().position(|cell| {
        let name = cell.to_ascii_lowercase();
        name == "email" || name == "address"
    });
    let Some(column) = column else {
        let whole = |line: &str| unquote(line.trim()).to_string();
        return Ok(std::iter::once(first)
            .chain(lines.map(|(_, line)| line))
            .map(whole)
            .collect());
    };
    let mut addresses = Vec::new();
    for (index, line) in lines {
        let cells = split_csv_line(line);
        let cell = cells.get(column).with_context(|| {
            format!(
                "line {} has no column {} ({:?})",
                index + 1,
                column + 1,
                header[column]
            )
        })?;
        if !cell.is_empty() {
            addresses.push(cell.clone());
        }
    }
    Ok(addresses)
}

/// Splits one CSV line into trimmed cells, honouring double quotes (RFC 4180, one line).
fn split_csv_line(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => cells.push(std::mem::take(&mut cell).trim().to_string()),
            other => cell.push(other),
        }
    }
    cells.push(cell.trim().to_string());
    cells
}

fn unquote(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_without_header_takes_lines() {
        let addresses = addresses_from_csv("a@example.com\n\n\"b@example.com\"\n").unwrap();
        assert_eq!(addresses, vec!["a@example.com", "b@example.com"]);
    }

    #[test]
    fn csv_header_picks_email_column() {
        let content = "name,Email\n\"Doe, Jane\",jane@example.com\nBob,bob@example.com\n";
        let addresses = addresses_from_csv(content).unwrap();
        assert_eq!(addresses, vec!["jane@example.com", "bob@example.com"]);
    }

    #[test]
    fn csv_short_row_names_line() {
        let err = addresses_from_csv("name,address\nonly-name\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
