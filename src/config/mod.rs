//! Settings: defaults, then a TOML file (`--config FILE` or `BOUNCEWATCH_CONFIG`), then
//! `BOUNCEWATCH_*` environment variables, which win over the file. Every key of the file is the
//! variable's name without the prefix, in lowercase. Loaded and validated once at start-up.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

mod secrets;

pub use secrets::{ensure_generated_secrets, GeneratedSecrets};

/// Prefix of every environment variable bouncewatch reads.
pub const ENV_PREFIX: &str = "BOUNCEWATCH_";

/// A secret value: `Debug` and `Display` never print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Returns the secret itself, for a request header, a signature or a comparison.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// What "durably stored" means before the hook responds 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// One sled flush per group commit: survives a process crash, not a power loss.
    Crash,
    /// The flush followed by `fdatasync` of the store's data file: survives a power loss too.
    Power,
}

/// Per-domain rule settings, from `[domains."example.com"]` tables in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSettings {
    /// Never clear this domain's bounces automatically; an admin still can.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub never_auto_clear: bool,
    /// Notify subscribers of every address-level change for this domain, never as a digest.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub always_notify: bool,
}

/// The whole configuration. Field docs give the default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Directory of the sled store and generated secrets. Default `./data`.
    pub data_dir: PathBuf,
    /// The exact value Okta sends in the hook's auth header. Generated on first start if unset.
    pub hook_secret: Option<Secret>,
    /// A second accepted value while the hook secret is being rotated.
    pub hook_secret_previous: Option<Secret>,
    /// Name of the header that carries the hook secret. Default `Authorization`.
    pub hook_auth_header: String,
    /// Bearer token for `/api/v1`. Generated on first start if unset.
    pub admin_token: Option<Secret>,
    /// Base URL of the Okta org.
    pub okta_org_url: Option<url::Url>,
    /// Okta API token, sent as `Authorization: SSWS <token>`.
    pub okta_api_token: Option<Secret>,
    /// OAuth 2.0 service app client id, used with `okta_private_key_file` instead of a token.
    pub okta_client_id: Option<String>,
    /// PEM file of the service app's private key (RS256).
    pub okta_private_key_file: Option<PathBuf>,
    /// Key id (`kid`) of that key, when the app has several.
    pub okta_key_id: Option<String>,
    /// Rules record what they would do and call nothing. Default false.
    #[serde(deserialize_with = "lenient::bool")]
    pub dry_run: bool,
    /// Subscriber URLs may use http and point at loopback and private addresses. Default false.
    #[serde(deserialize_with = "lenient::bool")]
    pub forward_allow_private: bool,
    /// Largest hook request body in bytes. Default 16 MiB.
    #[serde(deserialize_with = "lenient::u64")]
    pub body_limit_bytes: u64,
    /// Days an event, its dedupe record and its history are kept. Default 90 (Okta's System Log
    /// retention).
    #[serde(deserialize_with = "lenient::u64")]
    pub retention_days: u64,
    /// `crash` (flush per group commit) or `power` (flush and fdatasync). Default `crash`.
    pub durability: Durability,
    /// `text` or `json`. Default `text`.
    pub log_format: LogFormat,
    /// Counted failures that open an outage. Default 3.
    #[serde(deserialize_with = "lenient::u64")]
    pub outage_min_failures: u64,
    /// Distinct addresses among them. Default 2.
    #[serde(deserialize_with = "lenient::u64")]
    pub outage_min_addresses: u64,
    /// Window, in minutes of `published` time, that those failures fall within. Default 60.
    #[serde(deserialize_with = "lenient::u64")]
    pub outage_window_minutes: u64,
    /// `Delivered` events to distinct addresses after the last failure that end an outage.
    /// Default 2.
    #[serde(deserialize_with = "lenient::u64")]
    pub recovery_deliveries: u64,
    /// Above this many events in the window, a domain also needs `outage_min_failure_ratio`.
    /// Default 50.
    #[serde(deserialize_with = "lenient::u64")]
    pub volume_threshold_events: u64,
    /// Share of the window's events that must be counted failures for a busy domain. Default 0.2.
    #[serde(deserialize_with = "lenient::f64")]
    pub outage_min_failure_ratio: f64,
    /// Hours after a clear during which the same address is not cleared again. Default 24.
    #[serde(deserialize_with = "lenient::u64")]
    pub loop_guard_hours: u64,
    /// Most clears sent to Okta per hour; the rest wait in the queue. Default 200.
    #[serde(deserialize_with = "lenient::u64")]
    pub clear_cap_per_hour: u64,
    /// Queued clears wait for an admin's approval. Default false.
    #[serde(deserialize_with = "lenient::bool")]
    pub approval_mode: bool,
    /// Days after which a full-mailbox bounce is cleared; 0 turns the rule off. Default 0.
    #[serde(deserialize_with = "lenient::u64")]
    pub mailbox_full_clear_days: u64,
    /// Canary clears for a domain in outage that has been quiet; 0 turns the rule off. Default 0.
    #[serde(deserialize_with = "lenient::u64")]
    pub canary_count: u64,
    /// Hours without a counted failure before canaries are sent. Default 6.
    #[serde(deserialize_with = "lenient::u64")]
    pub canary_quiet_hours: u64,
    /// Per-domain rule settings.
    pub domains: BTreeMap<String, DomainSettings>,
    // TLS.
    /// PEM certificate chain (leaf first) for serving https directly. Set together with
    /// `tls_key_file`; unset (the default) serves plain HTTP, for use behind a TLS proxy.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub tls_key_file: Option<PathBuf>,
    /// Seconds between checks of both files for changes, which are then loaded without a
    /// restart; 0 turns the checks off (SIGHUP still reloads). Default 30.
    #[serde(deserialize_with = "lenient::u64")]
    pub tls_reload_seconds: u64,
    // Gap-fill and hook health.
    /// Poll the System Log for delivery events the hook missed. It runs only when
    /// `okta_org_url` is set. Default true.
    #[serde(deserialize_with = "lenient::bool")]
    pub gap_fill: bool,
    /// Seconds between the starts of two gap-fill runs. Default 300.
    #[serde(deserialize_with = "lenient::u64")]
    pub gap_fill_interval_secs: u64,
    /// Seconds behind real time that gap-fill reads, so events Okta writes late are not
    /// skipped. Each run also re-reads this much before its checkpoint. Default 600.
    #[serde(deserialize_with = "lenient::u64")]
    pub gap_fill_lag_secs: u64,
    /// Seconds without a hook delivery after which the hook counts as unhealthy; 0 turns the
    /// check off. Default 0, because a quiet org is normal.
    #[serde(deserialize_with = "lenient::u64")]
    pub hook_quiet_alert_secs: u64,
    // Retention.
    /// Days audit log actions are kept; 0 keeps them forever. Default 365.
    #[serde(deserialize_with = "lenient::u64")]
    pub action_retention_days: u64,
    /// Days quarantine entries and their raw bytes are kept; 0 keeps them forever. Default 30.
    #[serde(deserialize_with = "lenient::u64")]
    pub quarantine_retention_days: u64,
    /// Seconds between retention passes (one also runs at start); 0 counts as 1. Default 300.
    #[serde(deserialize_with = "lenient::u64")]
    pub retention_interval_seconds: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            data_dir: PathBuf::from("./data"),
            hook_secret: None,
            hook_secret_previous: None,
            hook_auth_header: "Authorization".into(),
            admin_token: None,
            okta_org_url: None,
            okta_api_token: None,
            okta_client_id: None,
            okta_private_key_file: None,
            okta_key_id: None,
            dry_run: false,
            forward_allow_private: false,
            body_limit_bytes: 16 * 1024 * 1024,
            retention_days: 90,
            durability: Durability::Crash,
            log_format: LogFormat::Text,
            outage_min_failures: 3,
            outage_min_addresses: 2,
            outage_window_minutes: 60,
            recovery_deliveries: 2,
            volume_threshold_events: 50,
            outage_min_failure_ratio: 0.2,
            loop_guard_hours: 24,
            clear_cap_per_hour: 200,
            approval_mode: false,
            mailbox_full_clear_days: 0,
            canary_count: 0,
            canary_quiet_hours: 6,
            domains: BTreeMap::new(),
            // TLS.
            tls_cert_file: None,
            tls_key_file: None,
            tls_reload_seconds: 30,
            // Gap-fill and hook health.
            gap_fill: true,
            gap_fill_interval_secs: 300,
            gap_fill_lag_secs: 600,
            hook_quiet_alert_secs: 0,
            // Retention.
            action_retention_days: 365,
            quarantine_retention_days: 30,
            retention_interval_seconds: 300,
        }
    }
}

/// A configuration error that names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid setting {setting}: {reason}")]
    Setting { setting: String, reason: String },
}

fn invalid(setting: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Setting {
        setting: setting.to_string(),
        reason: reason.into(),
    }
}

impl Config {
    /// Loads defaults, then `file` (or `BOUNCEWATCH_CONFIG`), then the environment, and validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::load_from(file, &env)
    }

    /// Like [`Config::load`], with the environment given as pairs (for tests).
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let env_file = env
            .iter()
            .find(|(key, _)| key == "BOUNCEWATCH_CONFIG")
            .map(|(_, value)| PathBuf::from(value));
        let path = file.map(Path::to_path_buf).or(env_file);

        let mut table = match &path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|err| ConfigError::Invalid(format!("{}: {err}", path.display())))?
            }
            None => toml::Table::new(),
        };

        for (key, value) in env {
            let Some(name) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if name == "CONFIG" || name.is_empty() {
                continue;
            }
            let setting = name.to_ascii_lowercase();
            if !Config::is_scalar_setting(&setting) {
                return Err(invalid(key, "not a bouncewatch setting"));
            }
            table.insert(setting, toml::Value::String(value.clone()));
        }

        // Deserializing from text (not from the table) makes the error quote the offending line,
        // which names the setting.
        let text = toml::to_string(&table).map_err(|err| ConfigError::Invalid(err.to_string()))?;
        let config: Config =
            toml::from_str(&text).map_err(|err| ConfigError::Invalid(err.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn is_scalar_setting(name: &str) -> bool {
        const NAMES: &[&str] = &[
            "listen",
            "data_dir",
            "hook_secret",
            "hook_secret_previous",
            "hook_auth_header",
            "admin_token",
            "okta_org_url",
            "okta_api_token",
            "okta_client_id",
            "okta_private_key_file",
            "okta_key_id",
            "dry_run",
            "forward_allow_private",
            "body_limit_bytes",
            "retention_days",
            "durability",
            "log_format",
            "outage_min_failures",
            "outage_min_addresses",
            "outage_window_minutes",
            "recovery_deliveries",
            "volume_threshold_events",
            "outage_min_failure_ratio",
            "loop_guard_hours",
            "clear_cap_per_hour",
            "approval_mode",
            "mailbox_full_clear_days",
            "canary_count",
            "canary_quiet_hours",
            // TLS.
            "tls_cert_file",
            "tls_key_file",
            "tls_reload_seconds",
            // Gap-fill and hook health.
            "gap_fill",
            "gap_fill_interval_secs",
            "gap_fill_lag_secs",
            "hook_quiet_alert_secs",
            // Retention.
            "action_retention_days",
            "quarantine_retention_days",
            "retention_interval_seconds",
        ];
        NAMES.contains(&name)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let header = &self.hook_auth_header;
        if header.is_empty() || axum::http::HeaderName::try_from(header.as_str()).is_err() {
            return Err(invalid(
                "hook_auth_header",
                "must be a valid HTTP header name",
            ));
        }
        for (name, secret) in [
            ("hook_secret", &self.hook_secret),
            ("hook_secret_previous", &self.hook_secret_previous),
            ("admin_token", &self.admin_token),
            ("okta_api_token", &self.okta_api_token),
        ] {
            if let Some(secret) = secret {
                if secret.expose().trim().is_empty() {
                    return Err(invalid(name, "must not be empty"));
                }
                if secret.expose().chars().any(char::is_control) {
                    return Err(invalid(name, "must not contain control characters"));
                }
            }
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|token| token.expose().len() < 16)
        {
            return Err(invalid("admin_token", "must be at least 16 characters"));
        }
        if let Some(url) = &self.okta_org_url {
            if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
                return Err(invalid(
                    "okta_org_url",
                    "must be an https URL such as https://example.okta.com",
                ));
            }
        }
        if self.okta_client_id.is_some() != self.okta_private_key_file.is_some() {
            return Err(invalid(
                "okta_client_id",
                "okta_client_id and okta_private_key_file must be set together",
            ));
        }
        if self.body_limit_bytes < 64 * 1024 {
            return Err(invalid("body_limit_bytes", "must be at least 65536"));
        }
        if self.retention_days == 0 {
            return Err(invalid("retention_days", "must be at least 1"));
        }
        let positive = [
            ("outage_min_failures", self.outage_min_failures),
            ("outage_min_addresses", self.outage_min_addresses),
            ("outage_window_minutes", self.outage_window_minutes),
            ("recovery_deliveries", self.recovery_deliveries),
            ("clear_cap_per_hour", self.clear_cap_per_hour),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(invalid(name, "must be at least 1"));
            }
        }
        if !(0.0..=1.0).contains(&self.outage_min_failure_ratio) {
            return Err(invalid(
                "outage_min_failure_ratio",
                "must be between 0 and 1",
            ));
        }
        for domain in self.domains.keys() {
            if crate::address::normalise_domain(domain).is_err() {
                return Err(invalid(
                    &format!("domains.{domain}"),
                    "is not a valid domain name",
                ));
            }
        }
        // TLS.
        crate::tls::check_settings(self.tls_cert_file.as_deref(), self.tls_key_file.as_deref())
            .map_err(|err| invalid(err.setting, err.reason))?;
        // Gap-fill and hook health.
        if self.gap_fill_interval_secs == 0 {
            return Err(invalid("gap_fill_interval_secs", "must be at least 1"));
        }
        if self.gap_fill_lag_secs > 86_400 {
            return Err(invalid(
                "gap_fill_lag_secs",
                "must be at most 86400 (one day); events would otherwise reach the store more \
                 than a day late",
            ));
        }
        Ok(())
    }

    /// Settings for one normalised domain, or the defaults.
    pub fn domain_settings(&self, domain: &str) -> DomainSettings {
        self.domains
            .iter()
            .find(|(name, _)| {
                crate::address::normalise_domain(name).is_ok_and(|name| name == domain)
            })
            .map(|(_, settings)| settings.clone())
            .unwrap_or_default()
    }
}

/// Deserializers that take a typed TOML value or the string an environment variable gives.
mod lenient {
    use serde::{de::Error, Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Int(i64),
        Float(f64),
        Text(String),
    }

    pub fn bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
        match Raw::deserialize(deserializer)? {
            Raw::Bool(value) => Ok(value),
            Raw::Int(1) => Ok(true),
            Raw::Int(0) => Ok(false),
            Raw::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(D::Error::custom(format!(
                    "expected true or false, found {text:?}"
                ))),
            },
            _ => Err(D::Error::custom("expected true or false")),
        }
    }

    pub fn u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        match Raw::deserialize(deserializer)? {
            Raw::Int(value) if value >= 0 => Ok(value as u64),
            Raw::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| D::Error::custom(format!("expected a whole number, found {text:?}"))),
            _ => Err(D::Error::custom("expected a whole number")),
        }
    }

    pub fn f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        match Raw::deserialize(deserializer)? {
            Raw::Int(value) => Ok(value as f64),
            Raw::Float(value) => Ok(value),
            Raw::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| D::Error::custom(format!("expected a number, found {text:?}"))),
            _ => Err(D::Error::custom("expected a number")),
        }
    }
}

#[cfg(test)]
mod tests;
