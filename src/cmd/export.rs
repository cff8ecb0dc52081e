//! `bouncewatch export FILE`: every record of the store as NDJSON. From a running service it
//! reads `GET /api/v1/export`; without one it opens the store. The lines go to a temporary file
//! beside FILE, which replaces FILE only once the export is complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use reqwest::Method;

use super::remote::{open_existing_store, Service};
use crate::config::Config;
use crate::store::Store;

pub async fn run(config: &Config, file: &Path) -> anyhow::Result<()> {
    let partial = partial_path(file);
    let result = match Service::find(config).await? {
        Some(service) => export_from_service(&service, &partial).await,
        None => {
            let store = open_existing_store(config)?;
            eprintln!(
                "export: no service responds at {}; reading the store in {} directly",
                config.listen,
                config.data_dir.display()
            );
            export_from_store(&store, &partial)
        }
    };
    let records = match result {
        Ok(records) => records,
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(err);
        }
    };
    std::fs::rename(&partial, file)
        .with_context(|| format!("rename {} to {}", partial.display(), file.display()))?;
    eprintln!("export: wrote {records} records to {}", file.display());
    Ok(())
}

/// Streams the service's export into `partial` and returns the number of records.
async fn export_from_service(service: &Service, partial: &Path) -> anyhow::Result<u64> {
    let response = service
        .request(Method::GET, "/api/v1/export")
        .send()
        .await
        .with_context(|| format!("GET /api/v1/export at {} failed", service.base))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.bytes().await.unwrap_or_default();
        anyhow::bail!("{}", service.failure("GET /api/v1/export", status, &body));
    }
    let mut response = response;
    let mut out = BufWriter::new(create(partial)?);
    let mut lines: u64 = 0;
    while let Some(chunk) = response
        .chunk()
        .await
        .context("the export stream broke off before its end; nothing was written")?
    {
        lines += chunk.iter().filter(|&&byte| byte == b'\n').count() as u64;
        out.write_all(&chunk)?;
    }
    out.into_inner()?.sync_all()?;
    anyhow::ensure!(lines > 0, "the service sent an empty export");
    // The first line is the header.
    Ok(lines - 1)
}

fn export_from_store(store: &Store, partial: &Path) -> anyhow::Result<u64> {
    let mut out = BufWriter::new(create(partial)?);
    let records = store
        .write_export(&mut out)
        .with_context(|| format!("write {}", partial.display()))?;
    out.into_inner()?.sync_all()?;
    Ok(records)
}

fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    file.with_file_name(name)
}

fn create(path: &Path) -> anyhow::Result<File> {
    File::create(path).with_context(|| format!("create {}", path.display()))
}
