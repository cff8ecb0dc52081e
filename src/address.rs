//! Email addresses as bouncewatch keys them: the local part compared case-insensitively, the
//! domain lowercased and in IDNA ASCII form (UTS 46, non-transitional), while the spelling Okta
//! sent is kept for display and for calls back to Okta.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A parsed recipient address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAddress {
    /// The normalised key, `local@ascii-domain`, all lowercase.
    key: String,
    /// The address exactly as Okta reported it.
    raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the address is empty")]
    Empty,
    #[error("the address has no '@' separating a local part from a domain")]
    MissingAt,
    #[error("the local part is empty, too long, or contains spaces or control characters")]
    InvalidLocalPart,
    #[error("the domain is not a valid internationalised domain name")]
    InvalidDomain,
}

/// RFC 5321 limits: 64 octets of local part, 255 of domain.
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 255;

impl EmailAddress {
    /// Parses an addr-spec such as `Jane.Doe+okta@Example.COM` or `user@bücher.example`.
    pub fn parse(input: &str) -> Result<EmailAddress, AddressError> {
        let raw = input.trim();
        if raw.is_empty() {
            return Err(AddressError::Empty);
        }
        let (local, domain) = raw.rsplit_once('@').ok_or(AddressError::MissingAt)?;
        if local.is_empty()
            || local.len() > MAX_LOCAL
            || local
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '@')
        {
            return Err(AddressError::InvalidLocalPart);
        }
        let domain = normalise_domain(domain)?;
        Ok(EmailAddress {
            key: format!("{}@{}", local.to_lowercase(), domain),
            raw: raw.to_string(),
        })
    }

    /// The normalised key, used for storage and comparison.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The spelling Okta sent.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The normalised (ASCII, lowercase) domain.
    pub fn domain(&self) -> &str {
        domain_of_key(&self.key)
    }

    /// A form safe for logs at info level: the first character of the local part, then `***`.
    pub fn masked(&self) -> String {
        mask_key(&self.key)
    }
}

impl fmt::Display for EmailAddress {
    /// Displays the masked form, so an address formatted into a log line never shows whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Returns the domain part of a normalised key.
pub fn domain_of_key(key: &str) -> &str {
    key.rsplit_once('@').map(|(_, domain)| domain).unwrap_or("")
}

/// Masks a normalised key as `j***@example.com`.
pub fn mask_key(key: &str) -> String {
    match key.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_string(),
    }
}

/// Lowercases a domain and converts it to IDNA ASCII form by UTS 46 non-transitional
/// processing, so `Bücher.Example` and `xn--bcher-kva.example` are one key.
pub fn normalise_domain(domain: &str) -> Result<String, AddressError> {
    let domain = domain.trim().trim_end_matches('.');
    if domain.is_empty() || domain.len() > MAX_DOMAIN || !domain.contains('.') {
        return Err(AddressError::InvalidDomain);
    }
    let ascii = idna::domain_to_ascii(domain).map_err(|_| AddressError::InvalidDomain)?;
    let valid_labels = ascii.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !valid_labels || ascii.len() > MAX_DOMAIN {
        return Err(AddressError::InvalidDomain);
    }
    Ok(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lowercases_and_keeps_raw() {
        let address = EmailAddress::parse("Jane.Doe+okta@Example.COM").unwrap();
        assert_eq!(address.key(), "jane.doe+okta@example.com");
        assert_eq!(address.raw(), "Jane.Doe+okta@Example.COM");
        assert_eq!(address.domain(), "example.com");
    }

    #[test]
    fn unicode_and_punycode_domains_share_a_key() {
        let unicode = EmailAddress::parse("user@Bücher.example").unwrap();
        let ascii = EmailAddress::parse("user@xn--bcher-kva.example").unwrap();
        assert_eq!(unicode.key(), "user@xn--bcher-kva.example");
        assert_eq!(unicode.key(), ascii.key());
    }

    #[test]
    fn non_transitional_keeps_sharp_s() {
        let address = EmailAddress::parse("a@straße.example").unwrap();
        assert_eq!(address.domain(), "xn--strae-oqa.example");
    }

    #[test]
    fn rejects_what_is_not_an_address() {
        for input in [
            "",
            "unknown",
            "Jane Doe",
            "a@b",
            "@example.com",
            "a b@example.com",
            "a@exa mple.com",
            "a@-.-",
        ] {
            assert!(EmailAddress::parse(input).is_err(), "{input:?} parsed");
        }
    }

    #[test]
    fn masked_shows_first_letter_and_domain() {
        let address = EmailAddress::parse("jane@example.com").unwrap();
        assert_eq!(address.masked(), "j***@example.com");
        assert_eq!(format!("{address}"), "j***@example.com");
    }
}
