//! Turns a failed delivery (its status and the provider's SMTP reply) into a verdict: which
//! party is at fault (`scope`) and whether the fault can go away on its own (`permanence`).

//!
//! [`smtp`] extracts the reply codes, [`patterns`] contains the rules as one ordered table, and
//! [`classify_detailed`] applies the first matching row. A reply that no row matches gets scope
//! `Unknown`, which never clears an address on its own.

pub mod patterns;
pub mod smtp;

use serde::{Deserialize, Serialize};

use crate::okta::DeliveryStatus;

pub use smtp::{EnhancedCode, SmtpReply};

/// Which party a failure points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The recipient's own mailbox: unknown user, disabled or full mailbox.
    Mailbox,
    /// The receiving side as a whole: DNS, no MX, connection refused or timed out, tenant
    /// misconfiguration.
    Domain,
    /// Okta's or SendGrid's sending reputation: block lists, rate limits, policy and spam blocks.
    Sender,
    /// The message itself: size, attachments, content filters.
    Content,
    /// Nothing in the reply says which; never a reason to clear on its own.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permanence {
    Permanent,
    Transient,
}

/// The classification of one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Verdict {
    pub scope: Scope,
    pub permanence: Permanence,
}

/// The reason for a failure, finer than [`Scope`], for the audit log and the simulate report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The mailbox does not exist.
    UserUnknown,
    /// The mailbox address is malformed.
    InvalidAddress,
    MailboxDisabled,
    MailboxFull,
    /// A mailbox status code without a more specific reason.
    MailboxUnavailable,
    /// A recipient rejection that does not distinguish a missing mailbox from a misconfigured
    /// tenant (Exchange Online 5.4.1 "Access denied").
    RecipientRejected,
    Dns,
    ConnectionFailure,
    /// No route, a routing loop or too many hops.
    Routing,
    /// The recipient domain's mail setup rejects mail it should accept: relay denied, an IP
    /// allowlist that does not list the sender.
    TenantMisconfigured,
    ServerBusy,
    /// The receiving mail system reported a fault of its own (RFC 3463 X.3.x).
    ServerError,
    Greylist,
    /// The sending side gave up after retrying until the message expired.
    Expired,
    /// The sender's own address or domain was rejected.
    SenderAddress,
    SenderReputation,
    Blocklist,
    /// SPF, DKIM, DMARC, reverse DNS or anti-spoofing checks failed.
    Authentication,
    RateLimited,
    PolicyBlock,
    Spam,
    Content,
    /// SendGrid did not send because the address is on a suppression list.
    Suppressed,
    Unknown,
}

/// A verdict with the evidence behind it, for the audit log and the simulate report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub verdict: Verdict,
    pub cause: Cause,
    pub reply: SmtpReply,
    /// The id of the pattern row that matched, or [`UNMATCHED`].
    pub pattern: &'static str,
}

/// The `pattern` of a classification that no row matched.
pub const UNMATCHED: &str = "unmatched";

/// Maximum number of bytes of a provider message that are parsed and searched. Real replies,
/// including Gmail's multi-line ones, are well under 1 KiB. The limit bounds the cost of a
/// hostile or corrupt message, whose later bytes are ignored.
pub const MAX_SCANNED_BYTES: usize = 4096;

/// Classifies one delivery event. Returns `None` for a `Delivered` event and for `Dropped`,
/// which carries no new evidence (the address keeps its earlier verdict).
pub fn classify(status: DeliveryStatus, provider_message: Option<&str>) -> Option<Verdict> {
    classify_detailed(status, provider_message).map(|classification| classification.verdict)
}

/// Classifies one delivery event like [`classify`] and returns the cause, the parsed reply
/// and the matching pattern row as well.
///
/// Without a matching row the scope is `Unknown` and the permanence follows the reply class:
/// 4xx is transient, 5xx permanent, and without a code a bounce is permanent and a deferral
/// transient (see [`patterns::permanence_from_reply`]).
pub fn classify_detailed(
    status: DeliveryStatus,
    provider_message: Option<&str>,
) -> Option<Classification> {
    if matches!(status, DeliveryStatus::Delivered | DeliveryStatus::Dropped) {
        return None;
    }

    let message = scanned_prefix(provider_message.unwrap_or(""));
    let reply = SmtpReply::parse(message);
    let lowered = wording_text(message);

    let classification = match patterns::find_pattern(&reply, &lowered) {
        Some(pattern) => Classification {
            verdict: Verdict {
                scope: pattern.scope,
                permanence: pattern.permanence.resolve(status, &reply),
            },
            cause: pattern.cause,
            reply,
            pattern: pattern.id,
        },
        None => Classification {
            verdict: Verdict {
                scope: Scope::Unknown,
                permanence: patterns::permanence_from_reply(status, &reply),
            },
            cause: Cause::Unknown,
            reply,
            pattern: UNMATCHED,
        },
    };
    Some(classification)
}

/// Returns at most the first [`MAX_SCANNED_BYTES`] of `message`, cut at a character boundary.
fn scanned_prefix(message: &str) -> &str {
    if message.len() <= MAX_SCANNED_BYTES {
        return message;
    }
    let mut end = MAX_SCANNED_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// Returns `message` lowercased, with the reply prefixes of continuation lines removed and
/// each run of whitespace turned into one space. Gmail splits a sentence over lines that each
/// start with `550-5.7.1`, and this joins it back so a needle can span the line break.
fn wording_text(message: &str) -> String {
    let mut text = String::with_capacity(message.len());
    for (line_number, line) in message.lines().enumerate() {
        let line = line.trim_start();
        let words = if line_number == 0 {
            line
        } else {
            &line[smtp::reply_prefix_length(line)..]
        };
        for word in words.split_ascii_whitespace() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(word);
        }
    }
    text.make_ascii_lowercase();
    text
}

#[cfg(test)]
mod tests;
