//! `bouncewatch import FILE`: reads an export into the configured data directory. The store
//! there must hold no records, and the service must be stopped: an import into a live store
//! would mix two histories.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::Context;

use super::remote::running_service;
use crate::config::Config;
use crate::store::Store;

/// How long the import waits for another process to release the store.
const STORE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn run(config: &Config, file: &Path) -> anyhow::Result<()> {
    if let Some(base) = running_service(config).await {
        anyhow::bail!(
            "a service responds at {base}; stop it before importing. An import goes only into a \
             new data directory: import there, then start the service on it"
        );
    }
    let input = File::open(file).with_context(|| format!("open {}", file.display()))?;
    let store = Store::open(&config.data_dir, config.durability, STORE_LOCK_WAIT)?;
    let imported = store
        .import(BufReader::new(input))
        .await
        .with_context(|| format!("import {} failed", file.display()))?;
    eprintln!(
        "import: read {} records from {} into {}",
        imported.records,
        file.display(),
        store.path().display()
    );
    Ok(())
}
