//! The hook secret and admin token made on first start when none is configured: random values
//! kept in the data directory as `hook-secret` and `admin-token`, readable by the owner only.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::RngCore;

use super::{Config, Secret};

pub const HOOK_SECRET_FILE: &str = "hook-secret";
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The files written on this start, so the caller can tell the admin where they are.
#[derive(Debug, Default)]
pub struct GeneratedSecrets {
    pub created: Vec<PathBuf>,
    pub hook_secret_file: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
}

/// Fills in `hook_secret` and `admin_token` from files in the data directory, creating the
/// files with fresh random values (mode 0600) when they do not exist yet.
pub fn ensure_generated_secrets(config: &mut Config) -> anyhow::Result<GeneratedSecrets> {
    let mut generated = GeneratedSecrets::default();
    fs::create_dir_all(&config.data_dir)?;
    if config.hook_secret.is_none() {
        let path = config.data_dir.join(HOOK_SECRET_FILE);
        config.hook_secret = Some(load_or_create(&path, &mut generated.created)?);
        generated.hook_secret_file = Some(path);
    }
    if config.admin_token.is_none() {
        let path = config.data_dir.join(ADMIN_TOKEN_FILE);
        config.admin_token = Some(load_or_create(&path, &mut generated.created)?);
        generated.admin_token_file = Some(path);
    }
    Ok(generated)
}

fn load_or_create(path: &Path, created: &mut Vec<PathBuf>) -> anyhow::Result<Secret> {
    if path.exists() {
        let mode = fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        }
        let value = fs::read_to_string(path)?.trim().to_string();
        anyhow::ensure!(
            !value.is_empty(),
            "{} is empty; delete it to generate a new value",
            path.display()
        );
        return Ok(Secret::new(value));
    }
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(value.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    created.push(path.to_path_buf());
    Ok(Secret::new(value))
}
