//! Named admin tokens. Only the SHA-256 digest of a token's value is stored, so a copy of the
//! store does not grant access.
//!
//! | key | value |
//! |---|---|
//! | `T/i/` + token id | the token's record (JSON) |
//! | `T/d/` + digest (32 bytes) | token id: the lookup by presented value |
//! | `T/n/` + name | token id: keeps names unique |

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::records::ActionStatus;
use super::{Store, StoreError, Txn};

/// Prefix of every token key.
pub const TOKEN: &[u8] = b"T/";
const BY_ID: &[u8] = b"T/i/";
const BY_DIGEST: &[u8] = b"T/d/";
const BY_NAME: &[u8] = b"T/n/";

/// Permissions of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `GET` (and `HEAD`) requests only.
    Read,
    /// Every request.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

/// One stored admin token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Time of the last authenticated request. The admin API writes it at most once a minute.
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// SHA-256 of the token's value, hex.
    pub digest: String,
}

/// Reason a token could not be created.
#[derive(Debug)]
pub enum CreateError {
    /// Another token already has this name.
    NameTaken,
    Store(StoreError),
}

fn by_id(id: &str) -> Vec<u8> {
    [BY_ID, id.as_bytes()].concat()
}

fn by_digest(digest: &[u8; 32]) -> Vec<u8> {
    [BY_DIGEST, digest.as_slice()].concat()
}

fn by_name(name: &str) -> Vec<u8> {
    [BY_NAME, name.as_bytes()].concat()
}

impl Store {
    /// Lists every stored token, ordered by id.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let mut tokens = Vec::new();
        for entry in self.tree.scan_prefix(BY_ID) {
            let (key, value) = entry?;
            match serde_json::from_slice(&value) {
                Ok(record) => tokens.push(record),
                Err(err) => {
                    tracing::error!(error = %err, key = %String::from_utf8_lossy(&key), "unreadable admin token record skipped");
                }
            }
        }
        Ok(tokens)
    }

    /// Finds the token whose value has this SHA-256 digest.
    pub fn token_by_digest(&self, digest: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        let Some(id) = self.tree.get(by_digest(digest))? else {
            return Ok(None);
        };
        match self.tree.get(by_id(&String::from_utf8_lossy(&id)))? {
            Some(value) => serde_json::from_slice(&value).map(Some).map_err(|err| {
                StoreError::Corrupt(format!("unreadable admin token record: {err}"))
            }),
            None => Ok(None),
        }
    }

    /// Stores a new token, whose name must not be in use, and records `actor` in the audit log.
    pub async fn create_token(
        &self,
        record: TokenRecord,
        digest: [u8; 32],
        actor: String,
    ) -> Result<TokenRecord, CreateError> {
        let result = self
            .write(move |txn| {
                if txn.contains(&by_name(&record.name)) {
                    return Err(CreateError::NameTaken);
                }
                txn.put(by_name(&record.name), record.id.clone().into_bytes());
                txn.put(by_digest(&digest), record.id.clone().into_bytes());
                txn.put_json(by_id(&record.id), &record);
                let reason = format!(
                    "admin token {} ({}) created with the {} role",
                    record.name,
                    record.id,
                    record.role.as_str()
                );
                audit(txn, &actor, "token_created", reason);
                Ok(record)
            })
            .await;
        match result {
            Ok(created) => created,
            Err(err) => Err(CreateError::Store(err)),
        }
    }

    /// Deletes a token and records `actor` in the audit log. Returns the deleted record, or
    /// `None` when no token has this id.
    pub async fn delete_token(
        &self,
        id: &str,
        actor: String,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let id = id.to_string();
        self.write(move |txn| {
            let record: TokenRecord = txn.get_json(&by_id(&id))?;
            remove_token(txn, &record);
            let reason = format!("admin token {} ({}) deleted", record.name, record.id);
            audit(txn, &actor, "token_deleted", reason);
            Some(record)
        })
        .await
    }

    /// Records that a token was used at `at`, unless it was deleted meanwhile.
    pub async fn touch_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |txn| {
            let key = by_id(&id);
            if let Some(mut record) = txn.get_json::<TokenRecord>(&key) {
                if record.last_used_at.is_none_or(|last| last < at) {
                    record.last_used_at = Some(at);
                    txn.put_json(key, &record);
                }
            }
        })
        .await
    }
}

fn audit(txn: &mut Txn<'_>, actor: &str, kind: &str, reason: String) {
    let action = super::rules::new_action(actor, kind, reason, ActionStatus::Done);
    super::rules::record_action(txn, action);
}

fn remove_token(txn: &mut Txn<'_>, record: &TokenRecord) {
    txn.remove(&by_id(&record.id));
    txn.remove(&by_name(&record.name));
    match hex::decode(&record.digest)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
    {
        Some(digest) => txn.remove(&by_digest(&digest)),
        None => {
            tracing::error!(id = %record.id, "admin token record has an invalid digest; its lookup key stays");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Durability;

    fn record(id: &str, name: &str, digest: &[u8; 32]) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            name: name.into(),
            role: Role::Read,
            created_at: Utc::now(),
            last_used_at: None,
            digest: hex::encode(digest),
        }
    }

    #[tokio::test]
    async fn create_find_touch_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Crash, Duration::from_secs(1)).unwrap();
        let digest = [7u8; 32];

        let created = store
            .create_token(
                record("tok_a", "ci", &digest),
                digest,
                "admin:config".into(),
            )
            .await
            .unwrap();
        assert_eq!(created.name, "ci");
        assert!(matches!(
            store
                .create_token(
                    record("tok_b", "ci", &[8u8; 32]),
                    [8u8; 32],
                    "admin:config".into()
                )
                .await,
            Err(CreateError::NameTaken)
        ));

        let found = store.token_by_digest(&digest).unwrap().unwrap();
        assert_eq!(found.id, "tok_a");
        assert!(store.token_by_digest(&[8u8; 32]).unwrap().is_none());

        let used = Utc::now();
        store.touch_token("tok_a", used).await.unwrap();
        let found = store.token_by_digest(&digest).unwrap().unwrap();
        assert_eq!(found.last_used_at, Some(used));

        let deleted = store
            .delete_token("tok_a", "admin:config".into())
            .await
            .unwrap();
        assert_eq!(deleted.map(|record| record.id).as_deref(), Some("tok_a"));
        assert!(store.token_by_digest(&digest).unwrap().is_none());
        assert!(store.tokens().unwrap().is_empty());
        assert!(store
            .delete_token("tok_a", "admin:config".into())
            .await
            .unwrap()
            .is_none());

        // The name is free again after the delete.
        store
            .create_token(
                record("tok_c", "ci", &digest),
                digest,
                "admin:config".into(),
            )
            .await
            .unwrap();
    }
}
