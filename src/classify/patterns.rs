//! The pattern table: every rule that turns an SMTP reply into a scope, permanence and cause.
//!
//! Rows are tried in order and the first match wins. The order is:
//! 1. a dead or invalid mailbox, by code or by wording, so that no later row can put a dead
//!    mailbox in domain or sender scope;
//! 2. a mailbox that cannot take mail for now (full, receiving too fast);
//! 3. SendGrid's own texts, which carry no code;
//! 4. provider wording that is more specific than its code or contradicts it;
//! 5. enhanced status codes by RFC 3463 subject, the most specific detail first;
//! 6. wording alone, for replies whose code (if any) matched nothing above.
//!
//! A row matches when every condition it sets holds: the enhanced code, the basic code and at
//! least one of its wording needles. No row matches on a basic code alone, because a bare 550
//! does not say whether the mailbox or the domain failed. Needles are lowercase ASCII and are
//! searched in the lowercased message. docs/classification.md describes every row.

use super::smtp::{EnhancedCode, SmtpReply};
use super::{Cause, Permanence, Scope};
use crate::okta::DeliveryStatus;

/// A condition on the enhanced status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedMatch {
    /// The class, or `None` for both 4 and 5 (written `X` in RFC 3463).
    pub class: Option<u8>,
    pub subject: u16,
    /// An inclusive range of details, or `None` for any detail.
    pub details: Option<(u16, u16)>,
}

impl EnhancedMatch {
    fn matches(&self, code: EnhancedCode) -> bool {
        let class_matches = match self.class {
            Some(class) => code.class == class,
            None => matches!(code.class, 4 | 5),
        };
        let detail_matches = match self.details {
            Some((low, high)) => (low..=high).contains(&code.detail),
            None => true,
        };
        class_matches && code.subject == self.subject && detail_matches
    }
}

/// The rule that sets the permanence of a row's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermanenceRule {
    /// The row's meaning fixes it, whatever the reply class (a full mailbox is transient even
    /// on a 552).
    Fixed(Permanence),
    /// 4xx is transient and 5xx permanent. Without a code, the delivery status decides.
    FromReply,
}

impl PermanenceRule {
    pub fn resolve(self, status: DeliveryStatus, reply: &SmtpReply) -> Permanence {
        match self {
            PermanenceRule::Fixed(permanence) => permanence,
            PermanenceRule::FromReply => permanence_from_reply(status, reply),
        }
    }
}

/// Returns the permanence that the reply class implies: 4xx is transient and 5xx permanent.
/// Without a 4xx or 5xx class, a bounce and an unknown status are permanent, and a deferral and
/// a block are transient.
// NOTE: a block without a code is transient on the reading that SendGrid's block is a soft
// rejection. That reading has not been checked against SendGrid's documentation.
pub fn permanence_from_reply(status: DeliveryStatus, reply: &SmtpReply) -> Permanence {
    match reply.class() {
        Some(4) => Permanence::Transient,
        Some(5) => Permanence::Permanent,
        _ => match status {
            DeliveryStatus::Deferred | DeliveryStatus::Blocked => Permanence::Transient,
            DeliveryStatus::Bounce
            | DeliveryStatus::Unknown
            | DeliveryStatus::Delivered
            | DeliveryStatus::Dropped => Permanence::Permanent,
        },
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    /// A stable name, stored in the audit log and shown in the simulate report.
    pub id: &'static str,
    pub enhanced: Option<EnhancedMatch>,
    /// An inclusive range of basic reply codes.
    pub basic: Option<(u16, u16)>,
    /// Lowercase needles, any one of which must occur in the message. Empty means no condition.
    pub wording: &'static [&'static str],
    pub scope: Scope,
    pub permanence: PermanenceRule,
    pub cause: Cause,
}

impl Pattern {
    const fn new(
        id: &'static str,
        scope: Scope,
        permanence: PermanenceRule,
        cause: Cause,
    ) -> Pattern {
        Pattern {
            id,
            enhanced: None,
            basic: None,
            wording: &[],
            scope,
            permanence,
            cause,
        }
    }

    /// Requires `class.subject.detail`, where a class of 0 means 4 or 5.
    const fn code(self, class: u8, subject: u16, detail: u16) -> Pattern {
        self.code_range(class, subject, detail, detail)
    }

    /// Requires `class.subject.low` to `class.subject.high`, where a class of 0 means 4 or 5.
    const fn code_range(mut self, class: u8, subject: u16, low: u16, high: u16) -> Pattern {
        self.enhanced = Some(EnhancedMatch {
            class: if class == 0 { None } else { Some(class) },
            subject,
            details: Some((low, high)),
        });
        self
    }

    /// Requires `X.subject.*` with class 4 or 5.
    const fn subject(mut self, subject: u16) -> Pattern {
        self.enhanced = Some(EnhancedMatch {
            class: None,
            subject,
            details: None,
        });
        self
    }

    const fn basic(mut self, low: u16, high: u16) -> Pattern {
        self.basic = Some((low, high));
        self
    }

    const fn wording(mut self, needles: &'static [&'static str]) -> Pattern {
        self.wording = needles;
        self
    }

    /// Tests the row against a parsed reply and the lowercased message.
    pub fn matches(&self, reply: &SmtpReply, lowered: &str) -> bool {
        if let Some(condition) = self.enhanced {
            if !reply.enhanced.is_some_and(|code| condition.matches(code)) {
                return false;
            }
        }
        if let Some((low, high)) = self.basic {
            if !reply.basic.is_some_and(|code| (low..=high).contains(&code)) {
                return false;
            }
        }
        self.wording.is_empty() || self.wording.iter().any(|needle| lowered.contains(needle))
    }
}

/// Returns the first row that matches, or `None` when no row does.
pub fn find_pattern(reply: &SmtpReply, lowered: &str) -> Option<&'static Pattern> {
    PATTERNS
        .iter()
        .find(|pattern| pattern.matches(reply, lowered))
}

use Cause as C;
use Permanence::{Permanent, Transient};
use PermanenceRule::{Fixed, FromReply};
use Scope::{Content, Domain, Mailbox, Sender, Unknown};

/// Class 0 in `code` and `code_range` stands for `X` (4 or 5).
const X: u8 = 0;

/// The table, in match order.
pub static PATTERNS: &[Pattern] = &[
    // 1. Dead or invalid mailbox.
    // RFC 3463 X.1.1 "Bad destination mailbox address". Gmail: "550-5.1.1 The email account
    // that you tried to reach does not exist". Apple iCloud: "550 5.1.1 <x>: user does not exist".
    Pattern::new("bad_mailbox", Mailbox, FromReply, C::UserUnknown).code(X, 1, 1),
    // Exchange Online NDR 5.1.10: "RESOLVER.ADR.RecipientNotFound".
    Pattern::new(
        "o365_recipient_not_found",
        Mailbox,
        FromReply,
        C::UserUnknown,
    )
    .code(X, 1, 10),
    // RFC 3463 X.1.6 "Destination mailbox has moved, No forwarding address".
    Pattern::new("mailbox_moved", Mailbox, FromReply, C::UserUnknown).code(X, 1, 6),
    // RFC 3463 X.1.3 "Bad destination mailbox address syntax".
    Pattern::new("bad_mailbox_syntax", Mailbox, FromReply, C::InvalidAddress).code(X, 1, 3),
    // Yahoo Help, "Email sent to Yahoo Mail addresses is rejected": "554 delivery error: dd This
    // user doesn't have a yahoo.com account". Yahoo advises never to retry it.
    Pattern::new(
        "yahoo_no_account",
        Mailbox,
        Fixed(Permanent),
        C::UserUnknown,
    )
    .wording(&["this user doesn't have a"]),
    // Mimecast SMTP Error Codes: "550 Invalid Recipient".
    Pattern::new(
        "mimecast_invalid_recipient",
        Mailbox,
        FromReply,
        C::UserUnknown,
    )
    .wording(&["invalid recipient"]),
    // Common wording of unknown-user replies (Postfix, Exim, Exchange, Gmail, iCloud).
    Pattern::new("user_unknown_wording", Mailbox, FromReply, C::UserUnknown).wording(&[
        "user unknown",
        "unknown user",
        "no such user",
        "user does not exist",
        "user doesn't exist",
        "mailbox does not exist",
        "address does not exist",
        "account does not exist",
        "account that you tried to reach does not exist",
        "recipientnotfound",
        "recipient not found",
        "recipient unknown",
        "unknown recipient",
        "no such recipient",
        "mailbox not found",
        "no mailbox here",
    ]),
    // Gmail "550-5.2.1 The email account that you tried to reach is disabled" and the same
    // wording from other providers.
    Pattern::new(
        "mailbox_disabled_wording",
        Mailbox,
        FromReply,
        C::MailboxDisabled,
    )
    .wording(&[
        "account that you tried to reach is disabled",
        "mailbox is disabled",
        "mailbox has been disabled",
        "account is disabled",
        "account has been disabled",
        "mailbox disabled",
    ]),
    // 2. Mailbox that cannot take mail for now.
    // RFC 3463 X.2.2 "Mailbox full". Gmail: "552-5.2.2 The email account that you tried to reach
    // is over quota". Transient even on a 552, because the owner can free space.
    Pattern::new("mailbox_full", Mailbox, Fixed(Transient), C::MailboxFull).code(X, 2, 2),
    Pattern::new(
        "mailbox_full_wording",
        Mailbox,
        Fixed(Transient),
        C::MailboxFull,
    )
    .wording(&[
        "over quota",
        "quota exceeded",
        "exceeded storage",
        "mailbox full",
        "mailbox is full",
        "mailbox size limit",
        "out of storage",
    ]),
    // Gmail SMTP errors and codes, 450 4.2.1: "The user you are trying to contact is receiving
    // mail too quickly". Exchange Online NDR 432 4.3.2: "recipient thread limit exceeded".
    Pattern::new(
        "recipient_rate_limited",
        Mailbox,
        Fixed(Transient),
        C::RateLimited,
    )
    .wording(&[
        "receiving mail too quickly",
        "receiving mail at a rate",
        "recipient thread limit exceeded",
    ]),
    // 3. SendGrid's own texts.
    // SendGrid drop reasons: the address is on a SendGrid suppression list. The text gives no
    // reason for the first suppression, which may have been a domain outage.
    Pattern::new("sendgrid_suppressed", Unknown, FromReply, C::Suppressed).wording(&[
        "bounced address",
        "unsubscribed address",
        "spam reporting address",
    ]),
    // SendGrid: the recipient domain does not resolve to a mail server.
    Pattern::new("sendgrid_invalid_domain", Domain, FromReply, C::Dns).wording(&["invalid domain"]),
    // 4. Wording that is more specific than its code or contradicts it.
    // Greylisting, whatever the code. Postgrey sends "450 4.2.0 ... Greylisted", whose X.2.0
    // would otherwise read as a mailbox status.
    Pattern::new("greylisted", Domain, Fixed(Transient), C::Greylist).wording(&[
        "greylist",
        "graylist",
        "grey-list",
        "gray-list",
    ]),
    // Mimecast SMTP Error Codes: "451 Internal resource temporarily unavailable" is
    // greylisting. Mimecast names poor sender IP reputation as the other possible cause.
    Pattern::new("mimecast_greylist", Domain, Fixed(Transient), C::Greylist)
        .basic(451, 451)
        .wording(&[
            "internal resource temporarily unavailable",
            "internal resource is temporarily unavailable",
        ]),
    // Microsoft, "Fix email delivery issues for error code 451 4.7.500-699 (ASxxx)": Exchange
    // Online throttles a sending IP whose traffic departs from its earlier pattern. Despite the
    // text "Server busy", the fault is the sending IP's, not an outage of the domain.
    Pattern::new(
        "o365_ip_throttled",
        Sender,
        Fixed(Transient),
        C::RateLimited,
    )
    .code_range(4, 7, 500, 699),
    // Exchange Online NDR 5.4.1: "Recipient address rejected: Access denied. AS(201806281)" comes
    // from Directory-Based Edge Blocking. For one address it means the mailbox is missing. When
    // many addresses of a domain get it at once, the tenant is misconfigured. Only the rules
    // that look across addresses can tell which, so the scope here is unknown.
    Pattern::new(
        "o365_access_denied",
        Unknown,
        FromReply,
        C::RecipientRejected,
    )
    .code(X, 4, 1)
    .wording(&["access denied"]),
    // Yahoo Help SLN3436: "421 4.7.1 [TS03] All messages from x.x.x.x permanently deferred".
    // Yahoo advises against resending until the sending practice changes, so permanent.
    Pattern::new(
        "yahoo_permanently_deferred",
        Sender,
        Fixed(Permanent),
        C::SenderReputation,
    )
    .wording(&["[ts03]", "permanently deferred"]),
    // Yahoo: "421 4.7.0 [TSS04] Messages from x.x.x.x temporarily deferred due to unexpected
    // volume or user complaints", and the older [TS01] and [TS02] "temporarily deferred due to
    // user complaints".
    Pattern::new("yahoo_deferred", Sender, Fixed(Transient), C::RateLimited).wording(&[
        "[tss04]",
        "[ts01]",
        "[ts02]",
        "temporarily deferred due to",
    ]),
    // Gmail SMTP errors and codes: "421-4.7.28 ... unusual rate of unsolicited mail".
    Pattern::new("gmail_unsolicited_rate", Sender, FromReply, C::RateLimited).code(X, 7, 28),
    // Gmail SMTP errors and codes, the older 421 4.7.0 form of the same reply.
    Pattern::new(
        "gmail_unsolicited_rate_wording",
        Sender,
        FromReply,
        C::RateLimited,
    )
    .wording(&["unusual rate of unsolicited mail"]),
    // Gmail SMTP errors and codes: "421 4.7.0 IP not in whitelist for RCPT domain". The
    // recipient's Google Workspace admin limited inbound mail to listed IPs.
    Pattern::new(
        "gmail_ip_not_allowlisted",
        Domain,
        FromReply,
        C::TenantMisconfigured,
    )
    .wording(&["ip not in whitelist"]),
    // Exchange Online NDR 5.7.606-649: "Access denied, banned sending IP".
    Pattern::new("o365_banned_ip", Sender, FromReply, C::Blocklist).code_range(5, 7, 606, 649),
    // Outlook.com: "550 5.7.1 ... part of their network is on our block list (S3150)".
    Pattern::new("outlook_block_list", Sender, FromReply, C::Blocklist)
        .wording(&["on our block list", "(s3150)"]),
    // Yahoo: "553 5.7.1 [BL21] Connections will not be accepted from x.x.x.x ..." rejects a
    // sending IP that Spamhaus lists.
    Pattern::new("yahoo_blocklist", Sender, FromReply, C::Blocklist).wording(&["[bl21]"]),
    Pattern::new("blocklist_wording", Sender, FromReply, C::Blocklist).wording(&[
        "spamhaus",
        "spamcop",
        "blocked using",
        "block list",
        "blocklist",
        "blacklist",
        "dnsbl",
        "banned sending ip",
    ]),
    // Proofpoint: "550 5.7.1 ... blocked - see https://ipcheck.proofpoint.com/?ip=x.x.x.x".
    Pattern::new("proofpoint_blocked", Sender, FromReply, C::SenderReputation)
        .wording(&["ipcheck.proofpoint.com"]),
    // Proofpoint "553 5.0.0 ... reputation" and Gmail "... very low reputation of the sending
    // domain". Reputation in a reply is always the sender's.
    Pattern::new("reputation_wording", Sender, FromReply, C::SenderReputation)
        .wording(&["reputation"]),
    // RFC 7372 X.7.20 to X.7.27: DKIM, SPF, reverse DNS and DMARC failures. Gmail: "550 5.7.26
    // This mail has been blocked because the sender is unauthenticated ... DMARC".
    Pattern::new("authentication_code", Sender, FromReply, C::Authentication)
        .code_range(X, 7, 20, 27),
    // Mimecast SMTP Error Codes: "550 Rejected by header based Anti-Spoofing policy".
    Pattern::new(
        "mimecast_anti_spoofing",
        Sender,
        FromReply,
        C::Authentication,
    )
    .wording(&["anti-spoofing"]),
    Pattern::new(
        "authentication_wording",
        Sender,
        FromReply,
        C::Authentication,
    )
    .wording(&[
        "dmarc",
        "unauthenticated",
        "spf check",
        "spf fail",
        "spf validation",
        "dkim",
        "spoof",
    ]),
    // A missing PTR record for the sending IP, before `dns_wording` reads it as the
    // recipient's DNS.
    Pattern::new("reverse_dns_wording", Sender, FromReply, C::Authentication).wording(&[
        "reverse dns",
        "rdns",
        "ptr record",
        "reverse hostname",
        "reverse lookup",
    ]),
    // The recipient's MX does not accept mail for the recipient's domain: its MX records point
    // at a server that is not set up for it. Exchange Online sends "550 5.7.64 TenantAttribution;
    // Relay Access Denied".
    Pattern::new("relay_denied", Domain, FromReply, C::TenantMisconfigured).wording(&[
        "relay access denied",
        "relaying denied",
        "relay denied",
        "relay not permitted",
        "relaying not allowed",
        "not permitted to relay",
        "unable to relay",
    ]),
    // Gmail: "550-5.7.1 ... this message is likely unsolicited mail".
    Pattern::new("gmail_likely_unsolicited", Sender, FromReply, C::Spam)
        .wording(&["likely unsolicited mail"]),
    // Apple iCloud Mail: "554 5.7.1 [CS01] Message rejected due to local policy".
    Pattern::new("icloud_cs01", Sender, FromReply, C::PolicyBlock).wording(&["[cs01]"]),
    // Mimecast SMTP Error Codes: "554 Email rejected due to security policies".
    // NOTE: the text does not name the sender or the content as the trigger. Sender is the
    // closer fit, but this row has not been checked against Mimecast's own logs.
    Pattern::new(
        "mimecast_security_policies",
        Sender,
        FromReply,
        C::PolicyBlock,
    )
    .wording(&["rejected due to security policies"]),
    // Orange: "550 5.2.0 ... Mail rejected. OFR_..." is an abuse block on the sending IP,
    // although X.2.0 is a mailbox status code.
    Pattern::new(
        "orange_mail_rejected",
        Sender,
        FromReply,
        C::SenderReputation,
    )
    .code(X, 2, 0)
    .wording(&["mail rejected", "mail rejete", "ofr_"]),
    // Greylisting servers (sqlgrey, policyd) reply "451 4.7.1 ... try again later". Checked
    // after the sender rows so that a 4.7.1 block list reply stays a sender fault.
    Pattern::new("greylist_try_again", Domain, Fixed(Transient), C::Greylist)
        .code(4, 7, 1)
        .wording(&[
            "try again later",
            "try later",
            "retry later",
            "come back later",
        ]),
    // 5. Enhanced status codes by RFC 3463 subject.
    // X.1.2 "Bad destination system address": the domain does not exist or cannot take mail.
    Pattern::new("bad_destination_system", Domain, FromReply, C::Routing).code(X, 1, 2),
    // X.1.7 "Bad sender's mailbox address syntax" and X.1.8 "Bad sender's system address".
    Pattern::new("bad_sender_address", Sender, FromReply, C::SenderAddress).code_range(X, 1, 7, 8),
    // X.2.1 "Mailbox disabled, not accepting messages".
    Pattern::new("mailbox_disabled", Mailbox, FromReply, C::MailboxDisabled).code(X, 2, 1),
    // X.2.3 "Message length exceeds administrative limit".
    Pattern::new("message_too_long", Content, FromReply, C::Content).code(X, 2, 3),
    // X.2.0 and the other X.2.x mailbox statuses.
    Pattern::new("mailbox_status", Mailbox, FromReply, C::MailboxUnavailable).subject(2),
    // X.3.4 "Message too big for system".
    Pattern::new("message_too_big", Content, FromReply, C::Content).code(X, 3, 4),
    // X.3.x destination mail system status: full, not accepting messages, misconfigured.
    // Transient, because the receiving system can recover without the sender changing anything.
    Pattern::new(
        "destination_system",
        Domain,
        Fixed(Transient),
        C::ServerError,
    )
    .subject(3),
    // X.4.7 "Delivery time expired" (SendGrid: "554 4.4.7 Message expired").
    Pattern::new("delivery_expired", Domain, Fixed(Transient), C::Expired).code(X, 4, 7),
    // X.4.4 "Unable to route".
    Pattern::new("no_route", Domain, Fixed(Transient), C::Routing).code(X, 4, 4),
    // X.4.6 "Routing loop detected".
    Pattern::new("routing_loop", Domain, Fixed(Transient), C::Routing).code(X, 4, 6),
    // Exchange Online NDR 5.4.14: "Hop count exceeded - possible mail loop".
    Pattern::new("o365_hop_count", Domain, Fixed(Transient), C::Routing).code(X, 4, 14),
    // X.4.3 "Directory server failure": DNS could not be reached.
    Pattern::new("directory_failure", Domain, Fixed(Transient), C::Dns).code(X, 4, 3),
    // X.4.5 "Mail system congestion". Gmail: "421 4.4.5 Server busy, try again later".
    Pattern::new("congestion", Domain, Fixed(Transient), C::ServerBusy).code(X, 4, 5),
    // The other X.4.x network and routing statuses: no reply (X.4.1), bad connection (X.4.2),
    // Exchange Online 4.4.316 "Connection refused".
    Pattern::new(
        "network_failure",
        Domain,
        Fixed(Transient),
        C::ConnectionFailure,
    )
    .subject(4),
    // X.6.x message content or media.
    Pattern::new("media_content", Content, FromReply, C::Content).subject(6),
    // X.7.x security or policy, for example a bare "550 5.7.1 Message rejected".
    Pattern::new("security_policy", Sender, FromReply, C::PolicyBlock).subject(7),
    // 6. Wording alone.
    Pattern::new(
        "connection_failure_wording",
        Domain,
        Fixed(Transient),
        C::ConnectionFailure,
    )
    .wording(&[
        "connection refused",
        "connection timed out",
        "connection reset",
        "timed out",
        "could not connect",
        "unable to connect",
        "failed to connect",
        "no route to host",
        "network is unreachable",
        "lost connection",
    ]),
    // The sender's own address or domain, before `dns_wording` reads "domain not found" as the
    // recipient's.
    Pattern::new(
        "sender_address_wording",
        Sender,
        FromReply,
        C::SenderAddress,
    )
    .wording(&["sender address rejected", "sender domain"]),
    Pattern::new("dns_wording", Domain, Fixed(Transient), C::Dns).wording(&[
        "servfail",
        "nxdomain",
        "no mx",
        "mx record",
        "host not found",
        "domain not found",
        "name service error",
        "domain does not exist",
        "no such domain",
        "dns error",
        "dns failure",
        "dns lookup failed",
    ]),
    Pattern::new("routing_wording", Domain, Fixed(Transient), C::Routing).wording(&[
        "unable to route",
        "unroutable",
        "unrouteable",
        "mail loop",
        "routing loop",
        "hop count exceeded",
        "too many hops",
    ]),
    // RFC 5321 421 "Service not available, closing transmission channel". Yahoo Help: "421
    // Resources temporarily unavailable. Please try again later".
    Pattern::new(
        "server_busy_wording",
        Domain,
        Fixed(Transient),
        C::ServerBusy,
    )
    .wording(&[
        "server busy",
        "too many connections",
        "resources temporarily unavailable",
        "service not available",
    ]),
    Pattern::new("expired_wording", Domain, Fixed(Transient), C::Expired)
        .wording(&["message expired", "retry timeout exceeded"]),
    Pattern::new("content_wording", Content, FromReply, C::Content).wording(&[
        "message size exceeds",
        "message too large",
        "message is too large",
        "message too big",
        "virus",
        "malware",
        "attachment",
    ]),
    Pattern::new("spam_wording", Sender, FromReply, C::Spam).wording(&["spam", "unsolicited"]),
    Pattern::new("policy_wording", Sender, FromReply, C::PolicyBlock).wording(&[
        "local policy",
        "blocked by policy",
        "rejected by policy",
        "policy violation",
        "message blocked",
    ]),
];
