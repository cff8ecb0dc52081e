//! `bouncewatch check-config`: the configuration loaded without errors by the time this runs,
//! so it reports what is set, never a secret's value.

use crate::config::Config;

pub fn run(config: &Config) -> anyhow::Result<()> {
    let set = |present: bool| {
        if present {
            "set"
        } else {
            "not set (generated on first start)"
        }
    };
    println!("configuration is valid");
    println!("  listen: {}", config.listen);
    println!("  data_dir: {}", config.data_dir.display());
    println!("  hook_auth_header: {}", config.hook_auth_header);
    println!("  hook_secret: {}", set(config.hook_secret.is_some()));
    println!("  admin_token: {}", set(config.admin_token.is_some()));
    match &config.okta_org_url {
        Some(url) => println!("  okta_org_url: {url}"),
        None => println!("  okta_org_url: not set (clears, backfill and register are unavailable)"),
    }
    println!("  dry_run: {}", config.dry_run);
    Ok(())
}
