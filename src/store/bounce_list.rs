//! The inferred bounce list: addresses whose newest event put them on Okta's bounce list
//! (`bounced` or `dropped`) with no clear since. Okta has no API to read its list, so this is
//! what bouncewatch has seen, not Okta's own record.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::keys;
use super::reads::{decode_cursor, Page};
use super::{Store, StoreError};
use crate::state::AddressState;

impl Store {
    /// Returns up to `limit` suppressed addresses after `cursor`, in address-key order. An
    /// invalid cursor starts from the beginning, as the other lists do. `next` is set only when
    /// more records follow, though they may all turn out not to be suppressed.
    pub fn suppressed_addresses(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AddressState>, StoreError> {
        let start = cursor.and_then(|cursor| decode_cursor(cursor, keys::ADDRESS));
        let range = match &start {
            Some(after) => self.tree.range::<&[u8], _>((
                std::ops::Bound::Excluded(after.as_slice()),
                std::ops::Bound::Unbounded,
            )),
            None => self.tree.range::<&[u8], _>(keys::ADDRESS..),
        };
        let mut items = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        let mut more = false;
        for entry in range {
            let (key, value) = entry?;
            if !key.starts_with(keys::ADDRESS) {
                break;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            let state: AddressState = match serde_json::from_slice(&value) {
                Ok(state) => state,
                Err(err) => {
                    tracing::error!(key = %super::keys::describe(&key), error = %err, "unreadable address record skipped");
                    continue;
                }
            };
            if state.status().is_suppressed() {
                items.push(state);
                last_key = Some(key.to_vec());
            }
        }
        let next = if more {
            last_key.map(|key| URL_SAFE_NO_PAD.encode(key))
        } else {
            None
        };
        Ok(Page { items, next })
    }
}
