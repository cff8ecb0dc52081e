//! Turns a failed delivery (its status and the provider's SMTP reply) into a verdict: which
//! party is at fault (`scope`) and whether the fault can go away on its own (`permanence`).

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

/// Classifies one delivery event. Returns `None` for a `Delivered` event and for `Dropped`,
/// which carries no new evidence (the address keeps its earlier verdict).
pub fn classify(status: DeliveryStatus, provider_message: Option<&str>) -> Option<Verdict> {
    if matches!(status, DeliveryStatus::Delivered | DeliveryStatus::Dropped) {
        return None;
    }
    // TODO: the SMTP reply and pattern table are read in a later change.
    let _ = provider_message;
    Some(Verdict {
        scope: Scope::Unknown,
        permanence: Permanence::Permanent,
    })
}
