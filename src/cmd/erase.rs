//! `bouncewatch erase ADDRESS`: erases everything stored about one address, through
//! `DELETE /api/v1/addresses/{address}` on a running service or directly in the store.

use reqwest::{Method, StatusCode};

use super::remote::{open_existing_store, path_segment, Service};
use crate::address::EmailAddress;
use crate::config::Config;

/// The audit log's actor for an erasure run against the store.
const CLI_ACTOR: &str = "admin:cli";

pub async fn run(config: &Config, raw: &str) -> anyhow::Result<()> {
    let address = EmailAddress::parse(raw)
        .map_err(|err| anyhow::anyhow!("{raw:?} is not a valid address: {err}"))?;

    if let Some(service) = Service::find(config).await? {
        let path = format!("/api/v1/addresses/{}", path_segment(address.key()));
        let what = format!("DELETE {path}");
        let (status, body) = service
            .send(service.request(Method::DELETE, &path), &what)
            .await?;
        return match status {
            StatusCode::NO_CONTENT => {
                println!(
                    "erased {} through the service at {}",
                    address.masked(),
                    service.base
                );
                Ok(())
            }
            StatusCode::NOT_FOUND => {
                anyhow::bail!("no events for {}: nothing to erase", address.key())
            }
            _ => anyhow::bail!("{}", service.failure(&what, status, &body)),
        };
    }

    let store = open_existing_store(config)?;
    let erased = store.erase_address(address.key(), CLI_ACTOR).await?;
    store.flush().await?;
    let Some(erased) = erased else {
        anyhow::bail!("no events for {}: nothing to erase", address.key());
    };
    println!(
        "erased {} and {} events in the store; audit action {}",
        address.masked(),
        erased.events,
        erased.action.id
    );
    Ok(())
}
