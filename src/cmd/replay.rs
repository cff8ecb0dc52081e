//! `bouncewatch replay [--domain D]`: queues rules work for every domain, or one, so the rules
//! evaluate the stored events again with the current settings. A running service does it
//! through `POST /api/v1/replay`; without one, the work is queued in the store and the service
//! evaluates it when it starts.

use reqwest::Method;
use serde_json::json;

use super::remote::{open_existing_store, Service};
use crate::address::normalise_domain;
use crate::config::Config;
use crate::http::ops::queue_replay;

pub async fn run(config: &Config, domain: Option<&str>) -> anyhow::Result<()> {
    let domain = match domain {
        Some(raw) => Some(
            normalise_domain(raw)
                .map_err(|_| anyhow::anyhow!("--domain {raw:?} is not a valid domain name"))?,
        ),
        None => None,
    };
    let scope = domain.as_deref().unwrap_or("every domain");

    if let Some(service) = Service::find(config).await? {
        let body = json!({"domain": domain});
        let request = service.request(Method::POST, "/api/v1/replay").json(&body);
        let (status, response) = service.send(request, "POST /api/v1/replay").await?;
        if !status.is_success() {
            anyhow::bail!(
                "{}",
                service.failure("POST /api/v1/replay", status, &response)
            );
        }
        let queued: serde_json::Value = serde_json::from_slice(&response)?;
        println!(
            "replay: the service at {} queued {} domains ({scope}); the rules evaluate them now",
            service.base, queued["domains"]
        );
        return Ok(());
    }

    let store = open_existing_store(config)?;
    let queued = queue_replay(&store, domain.as_deref()).await?;
    store.flush().await?;
    let Some(queued) = queued else {
        anyhow::bail!(
            "no events for domain {}; `bouncewatch domains` lists the known ones",
            domain.as_deref().unwrap_or("")
        );
    };
    println!(
        "replay: no service responds at {}; queued {queued} domains ({scope}) in the store, and \
         the service evaluates them when it starts",
        config.listen
    );
    Ok(())
}
