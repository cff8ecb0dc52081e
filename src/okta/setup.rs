//! Building the Okta client from the configuration, for the commands and the service.

use std::time::Duration;

use anyhow::Context;

use super::auth::{OktaAuth, Secret};
use super::client::OktaClient;
use crate::config::Config;

/// Timeout of one HTTP request to Okta. The client retries within its own bounds on top.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Scopes requested by an OAuth service app: the System Log for backfill, event hooks for
/// register and unregister, and `okta.orgs.manage` for removing bounces.
pub const SERVICE_APP_SCOPES: &[&str] = &[
    "okta.logs.read",
    "okta.eventHooks.manage",
    "okta.orgs.manage",
];

/// Builds an [`OktaClient`] for `okta_org_url`, authenticated with `okta_api_token` or, when
/// no token is set, with the service app of `okta_client_id` and `okta_private_key_file`.
pub fn client_from_config(config: &Config) -> anyhow::Result<OktaClient> {
    let org_url = config.okta_org_url.clone().context(
        "okta_org_url is not set: set BOUNCEWATCH_OKTA_ORG_URL (or okta_org_url in the \
         configuration file) to the org's base URL, such as https://example.okta.com",
    )?;
    let auth = auth_from_config(config)?;
    let client =
        OktaClient::new(org_url, auth, REQUEST_TIMEOUT).context("build the Okta HTTP client")?;
    Ok(client)
}

fn auth_from_config(config: &Config) -> anyhow::Result<OktaAuth> {
    if let Some(token) = &config.okta_api_token {
        return Ok(OktaAuth::ApiToken(Secret::new(token.expose())));
    }
    let (Some(client_id), Some(key_file)) = (&config.okta_client_id, &config.okta_private_key_file)
    else {
        anyhow::bail!(
            "no Okta credentials are configured: set okta_api_token (BOUNCEWATCH_OKTA_API_TOKEN), \
             or okta_client_id and okta_private_key_file for an OAuth service app"
        );
    };
    let private_key_pem = std::fs::read_to_string(key_file)
        .with_context(|| format!("cannot read okta_private_key_file {}", key_file.display()))?;
    Ok(OktaAuth::PrivateKeyJwt {
        client_id: client_id.clone(),
        private_key_pem: Secret::new(private_key_pem),
        key_id: config.okta_key_id.clone(),
        scopes: SERVICE_APP_SCOPES
            .iter()
            .map(|scope| scope.to_string())
            .collect(),
    })
}
