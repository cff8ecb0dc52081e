//! Key layout. Every record lives in one sled tree, `bouncewatch-v1`, so that one atomic batch
//! can cover an event, its state changes and the queue entries it causes. The tree's name
//! carries the schema version; a key starts with a short prefix naming its kind.
//!
//! | prefix | key after the prefix | value |
//! |---|---|---|
//! | `e/` | event uuid | the stored event (JSON) |
//! | `t/` | published ms (8 bytes BE) + uuid | empty: the retention index |
//! | `a/` | address key | `AddressState` |
//! | `i/` | domain, 0, address key | empty: addresses by domain |
//! | `d/` | domain | `DomainState` |
//! | `x/` | domain, 0, published ms + uuid | `DomainEvent` for the rules |
//! | `r/` | domain | rules work: evaluate the domain from this event on |
//! | `c/` | id | a queued clear |
//! | `l/` | reversed id | an audit log action, newest first |
//! | `q/` | reversed id | a quarantine entry; its raw bytes under `Q/` id + chunk |
//! | `o/` | id | an outbox notification |
//! | `s/` | subscription id | a subscription |
//! | `m/` | name | settings changed at run time, checkpoints |

use chrono::{DateTime, Utc};

pub const TREE: &str = "bouncewatch-v1";
pub const SCHEMA_VERSION: u64 = 1;
pub const SCHEMA_KEY: &[u8] = b"schema_version";

pub const EVENT: &[u8] = b"e/";
pub const EVENT_TIME: &[u8] = b"t/";
pub const ADDRESS: &[u8] = b"a/";
pub const ADDRESS_BY_DOMAIN: &[u8] = b"i/";
pub const DOMAIN: &[u8] = b"d/";
pub const DOMAIN_EVENT: &[u8] = b"x/";
pub const RULES_QUEUE: &[u8] = b"r/";
pub const CLEAR_QUEUE: &[u8] = b"c/";
pub const ACTION: &[u8] = b"l/";
pub const QUARANTINE: &[u8] = b"q/";
pub const QUARANTINE_RAW: &[u8] = b"Q/";
pub const OUTBOX: &[u8] = b"o/";
pub const SUBSCRIPTION: &[u8] = b"s/";
pub const META: &[u8] = b"m/";

pub fn join(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

pub fn millis(time: DateTime<Utc>) -> [u8; 8] {
    // Offset so that times before 1970 still sort first.
    (time.timestamp_millis() as u64 ^ (1 << 63)).to_be_bytes()
}

pub fn id_bytes(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Ids reversed so that a forward scan returns the newest first.
pub fn reversed_id(id: u64) -> [u8; 8] {
    (u64::MAX - id).to_be_bytes()
}

pub fn id_from_reversed(bytes: &[u8]) -> Option<u64> {
    let raw: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::MAX - u64::from_be_bytes(raw))
}

pub fn event(uuid: &str) -> Vec<u8> {
    join(EVENT, &[uuid.as_bytes()])
}

pub fn event_time(published: DateTime<Utc>, uuid: &str) -> Vec<u8> {
    join(EVENT_TIME, &[&millis(published), uuid.as_bytes()])
}

pub fn address(key: &str) -> Vec<u8> {
    join(ADDRESS, &[key.as_bytes()])
}

pub fn address_by_domain(domain: &str, key: &str) -> Vec<u8> {
    join(
        ADDRESS_BY_DOMAIN,
        &[domain.as_bytes(), &[0], key.as_bytes()],
    )
}

pub fn address_by_domain_prefix(domain: &str) -> Vec<u8> {
    join(ADDRESS_BY_DOMAIN, &[domain.as_bytes(), &[0]])
}

pub fn domain(name: &str) -> Vec<u8> {
    join(DOMAIN, &[name.as_bytes()])
}

pub fn domain_event(domain: &str, published: DateTime<Utc>, uuid: &str) -> Vec<u8> {
    join(
        DOMAIN_EVENT,
        &[domain.as_bytes(), &[0], &millis(published), uuid.as_bytes()],
    )
}

pub fn domain_event_prefix(domain: &str) -> Vec<u8> {
    join(DOMAIN_EVENT, &[domain.as_bytes(), &[0]])
}

pub fn meta(name: &str) -> Vec<u8> {
    join(META, &[name.as_bytes()])
}

/// Describes a key for a log line without its content, since address keys are whole email
/// addresses: the prefix and the length.
pub fn describe(key: &[u8]) -> String {
    let prefix = String::from_utf8_lossy(&key[..key.len().min(2)]);
    format!("{prefix} ({} bytes)", key.len())
}
