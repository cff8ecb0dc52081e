//! `bouncewatch register --url URL`: creates (or updates the one made before), verifies and
//! activates the org's event hook for `system.email.delivery`. Never prints the hook secret.

use anyhow::Context;
use url::Url;

use crate::config::{ensure_generated_secrets, Config};
use crate::okta::auth::Secret;
use crate::okta::hooks::{self, validate_hook_url};
use crate::okta::setup::client_from_config;
use crate::telemetry;

pub async fn run(mut config: Config, url: &str) -> anyhow::Result<()> {
    telemetry::init_logs(config.log_format);
    let url = Url::parse(url.trim())
        .with_context(|| format!("--url {url:?} is not a valid URL; use a form such as https://bouncewatch.example.com/okta/events"))?;
    validate_hook_url(&url).context("--url is invalid")?;
    let client = client_from_config(&config)?;

    if config.hook_secret.is_none() {
        let generated =
            ensure_generated_secrets(&mut config).context("prepare the data directory")?;
        if let Some(path) = &generated.hook_secret_file {
            if generated.created.contains(path) {
                eprintln!(
                    "register: generated a new hook secret in {}; restart a running service on \
                     this data directory so it accepts the secret Okta now sends",
                    path.display()
                );
            } else {
                eprintln!("register: using the hook secret in {}", path.display());
            }
        }
    }
    let secret = config
        .hook_secret
        .as_ref()
        .context("no hook secret is configured or generated")?;
    let secret = Secret::new(secret.expose());

    eprintln!("register: Okta now sends the verification request to {url}");
    let hook = hooks::register(&client, &url, &config.hook_auth_header, &secret).await?;
    println!(
        "event hook {} is {} and {}, sending {} to {} with header {}",
        hook.id,
        hook.status.as_deref().unwrap_or("of unknown status"),
        hook.verification_status
            .as_deref()
            .unwrap_or("of unknown verification status"),
        crate::okta::event::EMAIL_DELIVERY,
        hook.uri().unwrap_or(url.as_str()),
        config.hook_auth_header
    );
    Ok(())
}
