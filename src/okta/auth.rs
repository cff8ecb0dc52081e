//! Credentials for the Okta Management API: an SSWS API token, or an OAuth 2.0 service app
//! that signs a `private_key_jwt` client assertion (RFC 7523) and receives a bearer token.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use url::Url;

use super::error::OktaError;

pub use crate::config::Secret;

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret::new(value)
    }
}

/// Credentials the client sends to Okta.
#[derive(Debug, Clone)]
pub enum OktaAuth {
    /// An API token, sent as `Authorization: SSWS <token>`.
    ApiToken(Secret),
    /// An OAuth 2.0 service app using the client credentials grant with a signed JWT.
    PrivateKeyJwt {
        client_id: String,
        /// PEM-encoded RSA private key (PKCS#1 or PKCS#8) whose public half is registered
        /// with the service app.
        private_key_pem: Secret,
        /// The `kid` of the registered public key, sent in the JWT header when set.
        key_id: Option<String>,
        /// Scopes to request, such as `okta.orgs.manage`, `okta.logs.read`,
        /// `okta.eventHooks.manage`.
        scopes: Vec<String>,
    },
}

/// Lifetime of the client assertion JWT. Okta rejects assertions that live longer than 1 hour.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// How long before `expires_in` ends the cached access token is replaced.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

pub(crate) const CLIENT_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An access token with the instant after which the client fetches a new one.
#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub(crate) value: Secret,
    pub(crate) refresh_at: Instant,
}

impl AccessToken {
    pub(crate) fn is_fresh(&self) -> bool {
        Instant::now() < self.refresh_at
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    expires_in: u64,
}

#[derive(Deserialize, Default)]
struct OAuthErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Returns the token endpoint of the org authorization server, `{org}/oauth2/v1/token`.
pub(crate) fn token_url(org_url: &Url) -> Url {
    let mut url = org_url.clone();
    url.set_path("/oauth2/v1/token");
    url.set_query(None);
    url
}

/// Signs an RS256 client assertion with `iss` = `sub` = the client id and `aud` = the token URL.
pub(crate) fn sign_client_assertion(
    client_id: &str,
    private_key_pem: &Secret,
    key_id: Option<&str>,
    audience: &str,
) -> Result<String, OktaError> {
    let key = EncodingKey::from_rsa_pem(private_key_pem.expose().as_bytes()).map_err(|error| {
        OktaError::InvalidPrivateKey {
            reason: error.to_string(),
        }
    })?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = key_id.map(str::to_string);

    let now = chrono::Utc::now().timestamp();
    let mut jti = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut jti);
    let claims = AssertionClaims {
        iss: client_id,
        sub: client_id,
        aud: audience,
        iat: now,
        exp: now + ASSERTION_LIFETIME.as_secs() as i64,
        jti: hex::encode(jti),
    };
    jsonwebtoken::encode(&header, &claims, &key).map_err(|error| OktaError::InvalidPrivateKey {
        reason: error.to_string(),
    })
}

/// Requests an access token with the client credentials grant and a signed client assertion.
pub(crate) async fn request_access_token(
    http: &reqwest::Client,
    org_url: &Url,
    client_id: &str,
    private_key_pem: &Secret,
    key_id: Option<&str>,
    scopes: &[String],
) -> Result<AccessToken, OktaError> {
    let endpoint = token_url(org_url);
    let assertion = sign_client_assertion(client_id, private_key_pem, key_id, endpoint.as_str())?;
    let scope = scopes.join(" ");
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", scope.as_str()),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("client_assertion", assertion.as_str()),
    ];

    let path = endpoint.path().to_string();
    let response = http
        .post(endpoint)
        .form(&form)
        .send()
        .await
        .map_err(|source| {
            if source.is_timeout() {
                OktaError::Timeout {
                    path: path.clone(),
                    attempts: 1,
                }
            } else {
                OktaError::Transport {
                    path: path.clone(),
                    attempts: 1,
                    source,
                }
            }
        })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|source| OktaError::Transport {
            path: path.clone(),
            attempts: 1,
            source,
        })?;

    if !status.is_success() {
        let parsed: OAuthErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        if is_dpop_error(&parsed.error, &parsed.error_description) {
            return Err(OktaError::DpopRequired {
                error: parsed.error,
            });
        }
        tracing::debug!(status = status.as_u16(), error = %parsed.error, "Okta token request failed");
        return Err(OktaError::TokenRequest {
            status: status.as_u16(),
            error: parsed.error,
            description: parsed.error_description,
        });
    }

    let token: TokenResponse =
        serde_json::from_slice(&body).map_err(|error| OktaError::InvalidResponse {
            path: path.clone(),
            reason: format!("token response is not valid JSON: {error}"),
        })?;
    if let Some(kind) = &token.token_type {
        if !kind.eq_ignore_ascii_case("Bearer") {
            return Err(OktaError::InvalidResponse {
                path,
                reason: format!("token_type is {kind}, expected Bearer"),
            });
        }
    }

    let lifetime = Duration::from_secs(token.expires_in);
    let margin = TOKEN_REFRESH_MARGIN.min(lifetime / 2);
    Ok(AccessToken {
        value: Secret::new(token.access_token),
        refresh_at: Instant::now() + lifetime - margin,
    })
}

fn is_dpop_error(error: &str, description: &str) -> bool {
    let text = format!("{error} {description}").to_ascii_lowercase();
    text.contains("invalid_dpop_proof") || text.contains("use_dpop_nonce") || text.contains("dpop")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_masked() {
        let auth = OktaAuth::ApiToken(Secret::new("00abcSECRET"));
        let printed = format!("{auth:?}");
        assert!(!printed.contains("SECRET"), "{printed}");
        assert!(printed.contains("***"), "{printed}");
    }

    #[test]
    fn private_key_debug_is_masked() {
        let auth = OktaAuth::PrivateKeyJwt {
            client_id: "0oa1".into(),
            private_key_pem: Secret::new("-----BEGIN PRIVATE KEY-----"),
            key_id: None,
            scopes: vec![],
        };
        assert!(!format!("{auth:?}").contains("BEGIN"));
    }

    #[test]
    fn token_url_replaces_path() {
        let org = Url::parse("https://example.okta.com/some/path?x=1").unwrap();
        assert_eq!(
            token_url(&org).as_str(),
            "https://example.okta.com/oauth2/v1/token"
        );
    }

    #[test]
    fn dpop_errors_detected() {
        assert!(is_dpop_error("invalid_dpop_proof", ""));
        assert!(is_dpop_error("use_dpop_nonce", ""));
        assert!(!is_dpop_error("invalid_client", "bad signature"));
    }
}
