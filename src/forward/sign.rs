//! Standard Webhooks signatures: `whsec_` secrets, the `webhook-signature` header we send, and
//! the check a receiver runs on it.
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}` over the exact body bytes
//! that go on the wire, so the caller must serialise a body once and pass those bytes both here
//! and to the HTTP request.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The prefix of every secret in the Standard Webhooks format.
pub const SECRET_PREFIX: &str = "whsec_";

/// The accepted key lengths in bytes, after base64 decoding.
pub const MIN_SECRET_BYTES: usize = 24;
pub const MAX_SECRET_BYTES: usize = 64;

/// The key length of a generated secret, in bytes.
const GENERATED_SECRET_BYTES: usize = 32;

/// The maximum age or lead of a `webhook-timestamp` that [`verify`] accepts, in seconds. Five
/// minutes is the tolerance of the Standard Webhooks reference libraries.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

/// Standard base64 that accepts the key with or without `=` padding, as secrets issued by other
/// Standard Webhooks senders come both ways.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type HmacSha256 = Hmac<Sha256>;

/// An HMAC-SHA256 signing key. `Debug` prints `***`. `Serialize` writes the full `whsec_` form
/// because the store needs it, so only serialise it into storage, never into an API response.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

/// The reason a string is not a valid `whsec_` secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the secret must start with \"whsec_\"")]
    MissingPrefix,
    #[error("the part after \"whsec_\" is not valid standard base64")]
    InvalidBase64,
    #[error("the key is {0} bytes long, but it must be between 24 and 64 bytes")]
    InvalidLength(usize),
}

impl WebhookSecret {
    /// Parses `whsec_` followed by the base64 of a 24 to 64 byte key.
    pub fn parse(input: &str) -> Result<WebhookSecret, SecretError> {
        let encoded = input
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = LENIENT_BASE64
            .decode(encoded)
            .map_err(|_| SecretError::InvalidBase64)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError::InvalidLength(key.len()));
        }
        Ok(WebhookSecret { key })
    }

    /// Generates a random 32-byte secret from the operating system's random source.
    pub fn generate() -> WebhookSecret {
        let mut key = vec![0u8; GENERATED_SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut key);
        WebhookSecret { key }
    }

    /// Returns the `whsec_` form, for storage and for the one response that shows a new secret.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC accepts keys of any length")
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for WebhookSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.expose())
    }
}

impl<'de> Deserialize<'de> for WebhookSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        WebhookSecret::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Computes one `v1,<base64>` signature.
fn sign_with(secret: &WebhookSecret, id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let mut mac = secret.mac();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Builds the `webhook-signature` header value: one `v1,` signature per secret, separated by
/// spaces, so a receiver still holding a previous secret verifies during a rotation.
pub fn sign(id: &str, timestamp_secs: i64, body: &[u8], secrets: &[WebhookSecret]) -> String {
    secrets
        .iter()
        .map(|secret| sign_with(secret, id, timestamp_secs, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The reason [`verify`] rejected a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the webhook-timestamp header is not an integer number of seconds")]
    InvalidTimestamp,
    #[error("the webhook-timestamp is more than 5 minutes in the past")]
    TimestampTooOld,
    #[error("the webhook-timestamp is more than 5 minutes in the future")]
    TimestampTooNew,
    #[error("no v1 signature in the webhook-signature header matches the body")]
    NoMatchingSignature,
}

/// Verifies a received request the way the Standard Webhooks reference libraries do. The
/// timestamp must lie within 5 minutes of `now_secs`. At least one space-separated `v1,`
/// signature must equal the HMAC over the raw body bytes, compared in constant time, and
/// entries of other versions are skipped.
///
/// A receiver must pass the body bytes as received, before any JSON parsing.
pub fn verify(
    secret: &WebhookSecret,
    id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_secs: i64,
) -> Result<(), VerifyError> {
    let timestamp: i64 = timestamp_header
        .trim()
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    if now_secs - timestamp > TIMESTAMP_TOLERANCE_SECS {
        return Err(VerifyError::TimestampTooOld);
    }
    if timestamp - now_secs > TIMESTAMP_TOLERANCE_SECS {
        return Err(VerifyError::TimestampTooNew);
    }

    let expected = sign_with(secret, id, timestamp, body);
    let matched = signature_header
        .split(' ')
        .filter(|entry| entry.starts_with("v1,"))
        .any(|entry| bool::from(entry.as_bytes().ct_eq(expected.as_bytes())));
    if matched {
        Ok(())
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector published with the Standard Webhooks and Svix reference libraries.
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn vector_secret() -> WebhookSecret {
        WebhookSecret::parse(VECTOR_SECRET).unwrap()
    }

    #[test]
    fn sign_matches_reference_vector() {
        let signature = sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY, &[vector_secret()]);
        assert_eq!(signature, VECTOR_SIGNATURE);
    }

    #[test]
    fn sign_joins_one_signature_per_secret() {
        let other = WebhookSecret::generate();
        let header = sign(
            VECTOR_ID,
            VECTOR_TIMESTAMP,
            VECTOR_BODY,
            &[other, vector_secret()],
        );
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], VECTOR_SIGNATURE);
    }

    #[test]
    fn verify_accepts_any_listed_signature() {
        let header = format!("v2,abc v1,bm9wZQ== {VECTOR_SIGNATURE}");
        let result = verify(
            &vector_secret(),
            VECTOR_ID,
            "1614265330",
            &header,
            VECTOR_BODY,
            VECTOR_TIMESTAMP + 10,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn verify_rejects_changed_body() {
        let result = verify(
            &vector_secret(),
            VECTOR_ID,
            "1614265330",
            VECTOR_SIGNATURE,
            br#"{"test": 2432232315}"#,
            VECTOR_TIMESTAMP,
        );
        assert_eq!(result, Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn verify_enforces_timestamp_tolerance() {
        let secret = vector_secret();
        let check = |now: i64| {
            verify(
                &secret,
                VECTOR_ID,
                "1614265330",
                VECTOR_SIGNATURE,
                VECTOR_BODY,
                now,
            )
        };
        assert_eq!(check(VECTOR_TIMESTAMP + 300), Ok(()));
        assert_eq!(check(VECTOR_TIMESTAMP - 300), Ok(()));
        assert_eq!(
            check(VECTOR_TIMESTAMP + 301),
            Err(VerifyError::TimestampTooOld)
        );
        assert_eq!(
            check(VECTOR_TIMESTAMP - 301),
            Err(VerifyError::TimestampTooNew)
        );
    }

    #[test]
    fn verify_rejects_non_numeric_timestamp() {
        let result = verify(
            &vector_secret(),
            VECTOR_ID,
            "soon",
            VECTOR_SIGNATURE,
            VECTOR_BODY,
            0,
        );
        assert_eq!(result, Err(VerifyError::InvalidTimestamp));
    }

    #[test]
    fn non_ascii_body_round_trips() {
        let secret = WebhookSecret::generate();
        let body = r#"{"display_name":"José Núñez"}"#.as_bytes();
        let header = sign("msg_1", 1_700_000_000, body, std::slice::from_ref(&secret));
        let result = verify(&secret, "msg_1", "1700000000", &header, body, 1_700_000_000);
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn parse_names_each_problem() {
        let short = format!("whsec_{}", STANDARD.encode([7u8; 23]));
        let long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8G"),
            Err(SecretError::MissingPrefix)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_!!!!"),
            Err(SecretError::InvalidBase64)
        );
        assert_eq!(
            WebhookSecret::parse(&short),
            Err(SecretError::InvalidLength(23))
        );
        assert_eq!(
            WebhookSecret::parse(&long),
            Err(SecretError::InvalidLength(65))
        );
    }

    #[test]
    fn parse_accepts_padded_and_unpadded_keys() {
        let padded = format!("whsec_{}", STANDARD.encode([9u8; 32]));
        let unpadded = padded.trim_end_matches('=').to_string();
        assert!(padded.ends_with('='));
        assert_eq!(
            WebhookSecret::parse(&padded),
            WebhookSecret::parse(&unpadded)
        );
    }

    #[test]
    fn generated_secret_round_trips() {
        let secret = WebhookSecret::generate();
        let parsed = WebhookSecret::parse(&secret.expose()).unwrap();
        assert_eq!(parsed, secret);
        assert_eq!(secret.key.len(), 32);
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", vector_secret()), "***");
    }
}
