//! Credentials compared in constant time: both sides are hashed with SHA-256 first, so neither
//! the content nor the length of a secret leaks through timing.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Digests of the accepted values of one credential.
#[derive(Clone)]
pub struct Accepted {
    digests: Vec<[u8; 32]>,
}

impl Accepted {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Accepted {
        Accepted {
            digests: values.into_iter().map(digest).collect(),
        }
    }

    /// Whether `presented` equals any accepted value. Every value is compared, match or not.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let presented = Sha256::digest(presented);
        let mut found = subtle::Choice::from(0);
        for accepted in &self.digests {
            found |= accepted.ct_eq(presented.as_slice());
        }
        found.into()
    }
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_current_and_previous() {
        let accepted = Accepted::new(["Basic dGVzdA==", "old-secret"]);
        assert!(accepted.matches(b"Basic dGVzdA=="));
        assert!(accepted.matches(b"old-secret"));
        assert!(!accepted.matches(b"dGVzdA=="));
        assert!(!accepted.matches(b""));
    }
}
