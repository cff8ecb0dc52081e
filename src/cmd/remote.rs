//! Access to a running service from another command: whether one responds at the configured
//! listen address, and calls to its admin API with the admin token. sled admits one
//! process per store, so a command that needs the store goes through the service when one runs
//! and opens the store itself otherwise.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::config::{ensure_generated_secrets, Config, Secret};
use crate::store::Store;

/// How long the probe for a running service waits for `/healthz`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Returns the base URL of a service that responds to `/healthz` at the configured listen
/// address, if any: https when the configuration has a certificate. An unspecified listen
/// address (0.0.0.0 or ::) is probed on loopback.
pub async fn running_service(config: &Config) -> Option<String> {
    let mut address = config.listen;
    if address.ip().is_unspecified() {
        let loopback = match address.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        address.set_ip(loopback);
    }
    let scheme = if config.tls_cert_file.is_some() {
        "https"
    } else {
        "http"
    };
    let base = format!("{scheme}://{address}");
    let http = local_client(config, Some(PROBE_TIMEOUT)).ok()?;
    let response = http.get(format!("{base}/healthz")).send().await.ok()?;
    response.status().is_success().then_some(base)
}

/// An HTTP client for this configuration's own service. With TLS on, the service's
/// certificate names its public host, not the listen address dialled here, so certificate
/// checks are off: the client only ever connects to the configured listen address.
pub fn local_client(
    config: &Config,
    timeout: Option<Duration>,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().no_proxy();
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    if config.tls_cert_file.is_some() {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build()
}

/// Returns the service's admin token: the configured one, or the file the service generated in
/// the data directory.
pub fn admin_token(config: &Config) -> anyhow::Result<Secret> {
    let mut config = config.clone();
    ensure_generated_secrets(&mut config)
        .context("read the admin token from the data directory")?;
    config
        .admin_token
        .context("no admin token is configured or generated")
}

/// The error body of the admin API.
#[derive(Debug, Default, Deserialize)]
pub struct ServiceError {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub field: Option<String>,
}

impl ServiceError {
    /// Reads an error body, keeping a body that is not the API's JSON as the detail.
    pub fn parse(body: &[u8]) -> ServiceError {
        serde_json::from_slice(body).unwrap_or_else(|_| ServiceError {
            detail: String::from_utf8_lossy(body).into_owned(),
            ..ServiceError::default()
        })
    }
}

/// A running service's admin API.
pub struct Service {
    pub base: String,
    token: Secret,
    http: reqwest::Client,
}

impl Service {
    /// Returns the service that responds at the configured listen address, or `None`.
    pub async fn find(config: &Config) -> anyhow::Result<Option<Service>> {
        let Some(base) = running_service(config).await else {
            return Ok(None);
        };
        let token = admin_token(config)?;
        let http = local_client(config, None)?;
        Ok(Some(Service { base, token, http }))
    }

    /// Starts an admin API request to `path` (which begins with `/api/v1`).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token.expose())
    }

    /// Sends a request and returns the status and body, failing only when no response arrives.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<(StatusCode, bytes::Bytes)> {
        let response = request
            .send()
            .await
            .with_context(|| format!("{what} at {} failed", self.base))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("read the response to {what} from {}", self.base))?;
        Ok((status, body))
    }

    /// GETs a JSON document, failing with the API's error on any status but 2xx.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let what = format!("GET {path}");
        let (status, body) = self.send(self.request(Method::GET, path), &what).await?;
        if !status.is_success() {
            anyhow::bail!("{}", self.failure(&what, status, &body));
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("the service at {} returned unreadable JSON", self.base))
    }

    /// Describes a failed admin API call for the user.
    pub fn failure(&self, what: &str, status: StatusCode, body: &[u8]) -> String {
        let error = ServiceError::parse(body);
        format!(
            "{what} at {} failed with {status} ({}): {}",
            self.base, error.error, error.detail
        )
    }
}

/// How long a command waits for another process to release the store.
const STORE_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens the store of the configured data directory for a command that found no running
/// service, failing when no store exists there rather than creating an empty one.
pub fn open_existing_store(config: &Config) -> anyhow::Result<Store> {
    let path = config.data_dir.join("store");
    if !path.exists() {
        anyhow::bail!(
            "no service responds at {} and there is no store at {}; start `bouncewatch serve`, \
             or set data_dir (BOUNCEWATCH_DATA_DIR) to the service's data directory",
            config.listen,
            path.display()
        );
    }
    Ok(Store::open(
        &config.data_dir,
        config.durability,
        STORE_LOCK_WAIT,
    )?)
}

/// Percent-encodes an address or domain for a path segment of the admin API.
pub fn path_segment(raw: &str) -> String {
    percent_encoding::utf8_percent_encode(raw, percent_encoding::NON_ALPHANUMERIC).to_string()
}
