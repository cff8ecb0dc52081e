//! Event hook management (`/api/v1/eventHooks`) and the register and unregister flows that
//! point an Okta event hook for `system.email.delivery` at this service.

use std::fmt;
use std::net::IpAddr;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use url::{Host, Url};

use super::auth::Secret;
use super::client::OktaClient;
use super::error::OktaError;
use super::event::EMAIL_DELIVERY;

/// Name of the event hook that bouncewatch creates. `register` and `unregister` find their
/// hook by this exact name, so rename it in Okta only together with this constant.
pub const HOOK_NAME: &str = "bouncewatch";

/// Description written on the hook, which tells Okta admins which service manages it.
pub const HOOK_DESCRIPTION: &str = "Managed by bouncewatch: email delivery events";

/// An event hook as Okta returns it. The auth header value is write-only and never returned.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventHook {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `ACTIVE` or `INACTIVE`.
    #[serde(default)]
    pub status: Option<String>,
    /// `VERIFIED` or `UNVERIFIED`.
    #[serde(default)]
    pub verification_status: Option<String>,
    pub events: EventSubscriptions,
    pub channel: serde_json::Value,
}

impl EventHook {
    pub fn is_active(&self) -> bool {
        self.status.as_deref() == Some("ACTIVE")
    }

    pub fn is_verified(&self) -> bool {
        self.verification_status.as_deref() == Some("VERIFIED")
    }

    /// Returns `channel.config.uri`.
    pub fn uri(&self) -> Option<&str> {
        self.channel
            .pointer("/config/uri")
            .and_then(|uri| uri.as_str())
    }
}

/// The `events` object: `{type: "EVENT_TYPE", items: [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSubscriptions {
    #[serde(rename = "type")]
    pub kind: String,
    pub items: Vec<String>,
}

/// The body of a create or replace request.
#[derive(Clone, Serialize)]
pub struct EventHookRequest {
    pub name: String,
    pub description: String,
    pub events: EventSubscriptions,
    pub channel: ChannelRequest,
}

#[derive(Clone, Serialize)]
pub struct ChannelRequest {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: String,
    pub config: ChannelConfigRequest,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelConfigRequest {
    pub uri: String,
    pub headers: Vec<serde_json::Value>,
    pub auth_scheme: AuthSchemeRequest,
}

/// `{type: "HEADER", key, value}`: the header Okta sends with every delivery.
#[derive(Clone, Serialize)]
pub struct AuthSchemeRequest {
    #[serde(rename = "type")]
    pub kind: String,
    pub key: String,
    #[serde(serialize_with = "serialize_secret")]
    pub value: Secret,
}

fn serialize_secret<S: serde::Serializer>(
    secret: &Secret,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose())
}

impl fmt::Debug for EventHookRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventHookRequest")
            .field("name", &self.name)
            .field("uri", &self.channel.config.uri)
            .field("auth_header", &self.channel.config.auth_scheme.key)
            .field("auth_value", &self.channel.config.auth_scheme.value)
            .finish()
    }
}

impl EventHookRequest {
    /// Builds the bouncewatch hook: `system.email.delivery` to `uri`, authenticated by the
    /// header `header_name: secret`.
    pub fn bouncewatch(uri: &Url, header_name: &str, secret: &Secret) -> EventHookRequest {
        EventHookRequest {
            name: HOOK_NAME.to_string(),
            description: HOOK_DESCRIPTION.to_string(),
            events: EventSubscriptions {
                kind: "EVENT_TYPE".to_string(),
                items: vec![EMAIL_DELIVERY.to_string()],
            },
            channel: ChannelRequest {
                kind: "HTTP".to_string(),
                version: "1.0.0".to_string(),
                config: ChannelConfigRequest {
                    uri: uri.to_string(),
                    headers: Vec::new(),
                    auth_scheme: AuthSchemeRequest {
                        kind: "HEADER".to_string(),
                        key: header_name.to_string(),
                        value: secret.clone(),
                    },
                },
            },
        }
    }
}

/// A failed register or unregister flow.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("the hook URL {url} is rejected: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "Okta could not verify the event hook at {url}: {detail}. The service must be running, \
         reachable from Okta at this URL over https, and respond to the GET with header \
         x-okta-verification-challenge by returning {{\"verification\": <header value>}} within 3 s."
    )]
    VerificationFailed { url: String, detail: String },
    #[error("no event hook named \"{HOOK_NAME}\" exists in this Okta org, so there is nothing to unregister")]
    NotRegistered,
    #[error(transparent)]
    Okta(#[from] OktaError),
}

/// Accepts `https` URLs, and `http` only for loopback hosts (127.0.0.0/8, ::1, localhost) so
/// that local tests work. Okta itself rejects plain-http hook URLs.
pub fn validate_hook_url(url: &Url) -> Result<(), HookError> {
    let reject = |reason: &str| HookError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let host = url.host().ok_or_else(|| reject("the URL has no host"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&host) => Ok(()),
        "http" => Err(reject("Okta delivers event hooks only over https; plain http is allowed only for loopback hosts")),
        _ => Err(reject("the scheme must be https")),
    }
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(address) => IpAddr::V4(*address).is_loopback(),
        Host::Ipv6(address) => IpAddr::V6(*address).is_loopback(),
    }
}

impl OktaClient {
    async fn hook_call(
        &self,
        method: Method,
        path: &str,
        body: Option<&EventHookRequest>,
    ) -> Result<Option<EventHook>, OktaError> {
        let json = body
            .map(serde_json::to_value)
            .transpose()
            .map_err(|error| OktaError::InvalidResponse {
                path: path.to_string(),
                reason: error.to_string(),
            })?;
        let response = self
            .execute(method, self.api_url(path), json.as_ref())
            .await?;
        if response.body.is_empty() {
            return Ok(None);
        }
        let hook =
            serde_json::from_slice(&response.body).map_err(|error| OktaError::InvalidResponse {
                path: path.to_string(),
                reason: format!("event hook body is not the documented EventHook: {error}"),
            })?;
        Ok(Some(hook))
    }

    async fn hook_expected(
        &self,
        method: Method,
        path: &str,
        body: Option<&EventHookRequest>,
    ) -> Result<EventHook, OktaError> {
        self.hook_call(method, path, body)
            .await?
            .ok_or_else(|| OktaError::InvalidResponse {
                path: path.to_string(),
                reason: "empty body where an event hook was expected".to_string(),
            })
    }

    /// Lists the event hooks of the org.
    pub async fn list_event_hooks(&self) -> Result<Vec<EventHook>, OktaError> {
        let path = "/api/v1/eventHooks";
        let response = self.execute(Method::GET, self.api_url(path), None).await?;
        serde_json::from_slice(&response.body).map_err(|error| OktaError::InvalidResponse {
            path: path.to_string(),
            reason: format!("event hook list is not a JSON array of EventHook: {error}"),
        })
    }

    pub async fn create_event_hook(&self, hook: &EventHookRequest) -> Result<EventHook, OktaError> {
        self.hook_expected(Method::POST, "/api/v1/eventHooks", Some(hook))
            .await
    }

    pub async fn get_event_hook(&self, id: &str) -> Result<EventHook, OktaError> {
        self.hook_expected(Method::GET, &hook_path(id, ""), None)
            .await
    }

    /// Replaces the hook (`PUT`). Okta requires a new verification when the channel changes.
    pub async fn replace_event_hook(
        &self,
        id: &str,
        hook: &EventHookRequest,
    ) -> Result<EventHook, OktaError> {
        self.hook_expected(Method::PUT, &hook_path(id, ""), Some(hook))
            .await
    }

    pub async fn activate_event_hook(&self, id: &str) -> Result<EventHook, OktaError> {
        self.hook_expected(Method::POST, &hook_path(id, "/lifecycle/activate"), None)
            .await
    }

    pub async fn deactivate_event_hook(&self, id: &str) -> Result<EventHook, OktaError> {
        self.hook_expected(Method::POST, &hook_path(id, "/lifecycle/deactivate"), None)
            .await
    }

    /// Asks Okta to send the verification GET to the hook URI (3 s timeout, one retry).
    pub async fn verify_event_hook(&self, id: &str) -> Result<EventHook, OktaError> {
        self.hook_expected(Method::POST, &hook_path(id, "/lifecycle/verify"), None)
            .await
    }

    /// Deletes the hook. Okta deletes only `INACTIVE` hooks.
    pub async fn delete_event_hook(&self, id: &str) -> Result<(), OktaError> {
        self.hook_call(Method::DELETE, &hook_path(id, ""), None)
            .await?;
        Ok(())
    }

    /// Finds the hook named [`HOOK_NAME`]. When several exist it returns the first and logs
    /// a warning, because Okta allows duplicate names.
    pub async fn find_bouncewatch_hook(&self) -> Result<Option<EventHook>, OktaError> {
        let hooks = self.list_event_hooks().await?;
        let mut own = hooks.into_iter().filter(|hook| hook.name == HOOK_NAME);
        let first = own.next();
        let duplicates = own.count();
        if duplicates > 0 {
            tracing::warn!(
                duplicates,
                "several Okta event hooks are named {HOOK_NAME}; managing the first one"
            );
        }
        Ok(first)
    }
}

fn hook_path(id: &str, suffix: &str) -> String {
    let encoded = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
    format!("/api/v1/eventHooks/{encoded}{suffix}")
}

/// Points the bouncewatch event hook at `url`: replaces the hook found by [`HOOK_NAME`] or
/// creates it, has Okta verify it, and activates it when it is not `ACTIVE`. The service
/// must already be listening at `url` because Okta sends the verification GET during this call.
pub async fn register(
    client: &OktaClient,
    url: &Url,
    header_name: &str,
    secret: &Secret,
) -> Result<EventHook, HookError> {
    validate_hook_url(url)?;
    let request = EventHookRequest::bouncewatch(url, header_name, secret);

    let hook = match client.find_bouncewatch_hook().await? {
        Some(existing) => {
            tracing::info!(hook_id = %existing.id, %url, "replacing the existing Okta event hook");
            client.replace_event_hook(&existing.id, &request).await?
        }
        None => {
            let created = client.create_event_hook(&request).await?;
            tracing::info!(hook_id = %created.id, %url, "created the Okta event hook");
            created
        }
    };

    let verified = match client.verify_event_hook(&hook.id).await {
        Ok(verified) => verified,
        Err(OktaError::Client {
            status: 400, body, ..
        }) => {
            return Err(HookError::VerificationFailed {
                url: url.to_string(),
                detail: format!(
                    "Okta returned 400 ({}: {})",
                    body.error_code, body.error_summary
                ),
            });
        }
        Err(error) => return Err(error.into()),
    };
    if !verified.is_verified() {
        return Err(HookError::VerificationFailed {
            url: url.to_string(),
            detail: format!(
                "verificationStatus is {}",
                verified.verification_status.as_deref().unwrap_or("missing")
            ),
        });
    }

    if verified.is_active() {
        return Ok(verified);
    }
    let activated = client.activate_event_hook(&verified.id).await?;
    tracing::info!(hook_id = %activated.id, "activated the Okta event hook");
    Ok(activated)
}

/// Deactivates and deletes the hook named [`HOOK_NAME`], returning it as it was before deletion.
pub async fn unregister(client: &OktaClient) -> Result<EventHook, HookError> {
    let hook = client
        .find_bouncewatch_hook()
        .await?
        .ok_or(HookError::NotRegistered)?;
    let deactivated = if hook.is_active() {
        client.deactivate_event_hook(&hook.id).await?
    } else {
        hook
    };
    client.delete_event_hook(&deactivated.id).await?;
    tracing::info!(hook_id = %deactivated.id, "deleted the Okta event hook");
    Ok(deactivated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str) -> bool {
        validate_hook_url(&Url::parse(url).unwrap()).is_ok()
    }

    #[test]
    fn https_accepted() {
        assert!(check("https://hooks.example.com/okta"));
    }

    #[test]
    fn http_loopback_accepted() {
        assert!(check("http://127.0.0.1:8080/okta"));
        assert!(check("http://127.10.0.1/okta"));
        assert!(check("http://[::1]:8080/okta"));
        assert!(check("http://localhost:8080/okta"));
    }

    #[test]
    fn http_public_host_rejected() {
        assert!(!check("http://hooks.example.com/okta"));
        assert!(!check("http://10.0.0.1/okta"));
        assert!(!check("http://localhost.example.com/okta"));
    }

    #[test]
    fn other_schemes_rejected() {
        assert!(!check("ftp://hooks.example.com/okta"));
    }

    #[test]
    fn request_debug_masks_secret() {
        let url = Url::parse("https://hooks.example.com/okta").unwrap();
        let request = EventHookRequest::bouncewatch(&url, "Authorization", &Secret::new("hunter2"));
        assert!(!format!("{request:?}").contains("hunter2"));
    }
}
