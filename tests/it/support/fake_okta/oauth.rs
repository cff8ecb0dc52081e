//! `POST /oauth2/v1/token`: the org authorization server's client credentials grant with a
//! `private_key_jwt` client assertion.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Value};

use super::state::random_id;
use super::Shared;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Okta rejects client assertions whose lifetime exceeds one hour.
const MAX_ASSERTION_LIFETIME_SECS: i64 = 3600;

#[derive(Deserialize)]
struct AssertionClaims {
    sub: String,
    iat: i64,
    exp: i64,
    #[serde(default)]
    jti: String,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({ "error": error, "error_description": description });
    (status, Json(body)).into_response()
}

pub async fn token(
    State(shared): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if shared.lock().unwrap().require_dpop {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_dpop_proof",
            "The DPoP proof JWT header is missing.",
        );
    }
    if field("grant_type") != "client_credentials" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The grant_type is not supported.",
        );
    }
    if field("client_assertion_type") != ASSERTION_TYPE {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "client_assertion_type is invalid.",
        );
    }

    let assertion = field("client_assertion");
    let Some(client_id) = unverified_issuer(assertion) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client_assertion is not a JWT.",
        );
    };
    let (app, audience) = {
        let state = shared.lock().unwrap();
        let mut audience = state.base_url.clone();
        audience.set_path("/oauth2/v1/token");
        (
            state.service_apps.get(&client_id).cloned(),
            audience.to_string(),
        )
    };
    let Some(app) = app else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client_id is unknown.",
        );
    };

    let key = DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes())
        .expect("registered public key is PEM");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[client_id.as_str()]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    let claims = match jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(error) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                &format!("The client_assertion is invalid: {error}"),
            );
        }
    };
    if claims.sub != client_id {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client_assertion sub must equal iss.",
        );
    }
    if claims.exp - claims.iat > MAX_ASSERTION_LIFETIME_SECS {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client_assertion lifetime exceeds 1 hour.",
        );
    }
    if claims.jti.is_empty() {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client_assertion has no jti.",
        );
    }

    let requested: Vec<&str> = field("scope").split_whitespace().collect();
    if requested.is_empty()
        || requested
            .iter()
            .any(|scope| !app.scopes.iter().any(|granted| granted == scope))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "One or more scopes are not granted to the client.",
        );
    }

    let access_token = random_id("eyJfake.", 32);
    let mut state = shared.lock().unwrap();
    state.access_tokens.insert(access_token.clone());
    let body = json!({
        "token_type": "Bearer",
        "expires_in": state.token_lifetime_secs,
        "access_token": access_token,
        "scope": requested.join(" "),
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// Reads `iss` from the JWT payload without checking the signature, to find the app's key.
fn unverified_issuer(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let decoded = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Value = serde_json::from_slice(&decoded).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}
