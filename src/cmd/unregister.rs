//! `bouncewatch unregister`: deactivates and deletes the event hook that `register` made.

use crate::config::Config;
use crate::okta::hooks;
use crate::okta::setup::client_from_config;
use crate::telemetry;

pub async fn run(config: &Config) -> anyhow::Result<()> {
    telemetry::init_logs(config.log_format);
    let client = client_from_config(config)?;
    let hook = hooks::unregister(&client).await?;
    println!(
        "event hook {} ({}) is deactivated and deleted",
        hook.id,
        hook.uri().unwrap_or("no URL")
    );
    Ok(())
}
