//! Subscriptions: where notifications go, which ones, and the secrets that sign them, with the
//! admin API's request and response shapes.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::address::normalise_domain;
use crate::forward::notification::NotificationKind;
use crate::forward::sign::WebhookSecret;
use crate::forward::ssrf::check_url;

/// How long a replaced secret keeps signing after a rotation, so receivers can switch over.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::hours(24);

/// The maximum number of secrets that sign at once, the current one included. A rotation past
/// this drops the previous secret that expires first, even if its grace period has not ended.
pub const MAX_SECRETS: usize = 4;

/// The maximum number of entries in `domains`.
pub const MAX_DOMAINS: usize = 1000;

/// The accepted digest windows, in seconds: one minute to one day.
pub const DIGEST_WINDOW_SECS: std::ops::RangeInclusive<u64> = 60..=86_400;

/// A signing secret with the time it stops signing, if it was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub secret: WebhookSecret,
    /// `None` for the current secret.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Settings for batching address-level notifications into one `digest` per domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestSettings {
    /// The length of one batch window, in seconds.
    pub window_secs: u64,
}

/// A stored subscription. `Serialize` includes the secrets, so serialise it only into storage.
/// API responses use [`SubscriptionView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub url: String,
    /// The current secret first, then replaced ones still in their grace period.
    pub secrets: Vec<SigningSecret>,
    /// Kinds to send. An empty list means all kinds.
    pub kinds: Vec<NotificationKind>,
    /// Recipient domains in normalised form. An empty list means all domains.
    pub domains: Vec<String>,
    pub enabled: bool,
    pub digest: Option<DigestSettings>,
    pub created_at: DateTime<Utc>,
}

impl Subscription {
    /// Returns `true` when a notification of `kind` about `domain` goes to this subscription. `domain` is
    /// a normalised domain as `EmailAddress::domain` returns it, or `None` for notifications
    /// about no domain (alerts, hook health, tests), which the domain filter does not apply to.
    /// A `digest` passes the kind filter when the subscription has digest settings.
    pub fn wants(&self, kind: NotificationKind, domain: Option<&str>) -> bool {
        if !self.enabled {
            return false;
        }
        let kind_matches = match kind {
            NotificationKind::Digest => self.digest.is_some(),
            _ => self.kinds.is_empty() || self.kinds.contains(&kind),
        };
        let domain_matches = match domain {
            Some(domain) => self.domains.is_empty() || self.domains.iter().any(|d| d == domain),
            None => true,
        };
        kind_matches && domain_matches
    }

    /// Returns the secrets that sign at `now`: the current one, then unexpired previous ones.
    pub fn active_secrets(&self, now: DateTime<Utc>) -> Vec<WebhookSecret> {
        self.secrets
            .iter()
            .filter(|entry| match entry.expires_at {
                None => true,
                Some(expiry) => expiry > now,
            })
            .map(|entry| entry.secret.clone())
            .collect()
    }

    /// Returns the view for API responses, without secrets.
    pub fn view(&self) -> SubscriptionView {
        SubscriptionView {
            id: self.id.clone(),
            url: self.url.clone(),
            kinds: self.kinds.clone(),
            domains: self.domains.clone(),
            enabled: self.enabled,
            digest: self.digest,
            created_at: self.created_at,
        }
    }
}

/// A subscription as every API response shows it: never with a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionView {
    pub id: String,
    pub url: String,
    pub kinds: Vec<NotificationKind>,
    pub domains: Vec<String>,
    pub enabled: bool,
    pub digest: Option<DigestSettings>,
    pub created_at: DateTime<Utc>,
}

/// The response to a create request: the only one that shows the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedSubscriptionView {
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    /// The secret in `whsec_` form.
    pub secret: String,
}

/// A request field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ValidationError {
    /// The JSON field name, such as `url` or `kinds`.
    pub field: &'static str,
    pub reason: String,
}

impl ValidationError {
    fn new(field: &'static str, reason: impl ToString) -> ValidationError {
        ValidationError {
            field,
            reason: reason.to_string(),
        }
    }
}

/// The body of `POST /api/v1/subscriptions`. Only `url` is required.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    pub url: String,
    /// A `whsec_` secret. A random one is generated when it is absent.
    pub secret: Option<String>,
    pub kinds: Option<Vec<String>>,
    pub domains: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub digest: Option<DigestSettings>,
}

impl CreateSubscription {
    /// Validates the request and builds a new subscription with a random `sub_` id, returned
    /// with the create response that shows its secret.
    pub fn into_subscription(
        self,
        allow_private: bool,
        now: DateTime<Utc>,
    ) -> Result<(Subscription, CreatedSubscriptionView), ValidationError> {
        let url = validate_url(&self.url, allow_private)?;
        let secret = match &self.secret {
            Some(text) => parse_secret(text)?,
            None => WebhookSecret::generate(),
        };
        let subscription = Subscription {
            id: format!("sub_{}", hex::encode(rand::random::<[u8; 16]>())),
            url,
            secrets: vec![SigningSecret {
                secret: secret.clone(),
                expires_at: None,
            }],
            kinds: validate_kinds(self.kinds.unwrap_or_default())?,
            domains: validate_domains(self.domains.unwrap_or_default())?,
            enabled: self.enabled.unwrap_or(true),
            digest: validate_digest(self.digest)?,
            created_at: now,
        };
        let created = CreatedSubscriptionView {
            subscription: subscription.view(),
            secret: secret.expose(),
        };
        Ok((subscription, created))
    }
}

/// The body of `PATCH /api/v1/subscriptions/{id}`. Absent fields stay as they are, and `"digest":
/// null` turns digests off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscription {
    pub url: Option<String>,
    /// A new `whsec_` secret. The replaced one keeps signing for the grace period.
    pub secret: Option<String>,
    pub kinds: Option<Vec<String>>,
    pub domains: Option<Vec<String>>,
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub digest: Option<Option<DigestSettings>>,
}

/// Maps a present field, even `null`, to `Some`, so an absent field stays `None`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

impl UpdateSubscription {
    /// Validates every field, then returns the updated subscription. On error `current` is
    /// unchanged. A new secret becomes current, and the secrets it replaces expire `grace`
    /// after `now`.
    pub fn apply(
        self,
        current: &Subscription,
        allow_private: bool,
        now: DateTime<Utc>,
        grace: Duration,
    ) -> Result<Subscription, ValidationError> {
        let mut updated = current.clone();
        if let Some(url) = &self.url {
            updated.url = validate_url(url, allow_private)?;
        }
        if let Some(kinds) = self.kinds {
            updated.kinds = validate_kinds(kinds)?;
        }
        if let Some(domains) = self.domains {
            updated.domains = validate_domains(domains)?;
        }
        if let Some(digest) = self.digest {
            updated.digest = validate_digest(digest)?;
        }
        if let Some(enabled) = self.enabled {
            updated.enabled = enabled;
        }
        if let Some(text) = &self.secret {
            let secret = parse_secret(text)?;
            updated.secrets = rotate(&current.secrets, secret, now, now + grace);
        }
        Ok(updated)
    }
}

/// Puts `new` first and gives the replaced current secret an expiry, dropping expired entries,
/// any earlier copy of `new`, and the soonest-expiring ones past [`MAX_SECRETS`].
fn rotate(
    secrets: &[SigningSecret],
    new: WebhookSecret,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Vec<SigningSecret> {
    let mut previous: Vec<SigningSecret> = secrets
        .iter()
        .filter(|entry| entry.secret != new)
        .map(|entry| SigningSecret {
            secret: entry.secret.clone(),
            expires_at: Some(entry.expires_at.unwrap_or(expires_at)),
        })
        .filter(|entry| entry.expires_at.is_some_and(|expiry| expiry > now))
        .collect();
    previous.sort_by_key(|entry| std::cmp::Reverse(entry.expires_at));
    previous.truncate(MAX_SECRETS - 1);

    let mut rotated = vec![SigningSecret {
        secret: new,
        expires_at: None,
    }];
    rotated.extend(previous);
    rotated
}

fn validate_url(url: &str, allow_private: bool) -> Result<String, ValidationError> {
    let parsed =
        check_url(url.trim(), allow_private).map_err(|err| ValidationError::new("url", err))?;
    Ok(parsed.to_string())
}

fn parse_secret(text: &str) -> Result<WebhookSecret, ValidationError> {
    WebhookSecret::parse(text).map_err(|err| ValidationError::new("secret", err))
}

fn validate_kinds(kinds: Vec<String>) -> Result<Vec<NotificationKind>, ValidationError> {
    let mut parsed = Vec::with_capacity(kinds.len());
    for kind in &kinds {
        let kind: NotificationKind = kind.parse().map_err(|err| {
            let known: Vec<&str> = NotificationKind::ALL.iter().map(|k| k.as_str()).collect();
            ValidationError::new("kinds", format!("{err}. Known kinds: {}", known.join(", ")))
        })?;
        parsed.push(kind);
    }
    parsed.sort();
    parsed.dedup();
    Ok(parsed)
}

fn validate_domains(domains: Vec<String>) -> Result<Vec<String>, ValidationError> {
    if domains.len() > MAX_DOMAINS {
        let reason = format!(
            "{} entries, but at most {MAX_DOMAINS} are allowed",
            domains.len()
        );
        return Err(ValidationError::new("domains", reason));
    }
    let mut normalised = Vec::with_capacity(domains.len());
    for domain in &domains {
        let ascii = normalise_domain(domain)
            .map_err(|err| ValidationError::new("domains", format!("{domain:?}: {err}")))?;
        normalised.push(ascii);
    }
    normalised.sort();
    normalised.dedup();
    Ok(normalised)
}

fn validate_digest(
    digest: Option<DigestSettings>,
) -> Result<Option<DigestSettings>, ValidationError> {
    if let Some(settings) = digest {
        if !DIGEST_WINDOW_SECS.contains(&settings.window_secs) {
            let reason = format!(
                "window_secs is {}, but it must be between 60 and 86400",
                settings.window_secs
            );
            return Err(ValidationError::new("digest", reason));
        }
    }
    Ok(digest)
}

#[cfg(test)]
mod tests;
