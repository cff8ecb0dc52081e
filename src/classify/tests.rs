use std::collections::HashSet;

use proptest::prelude::*;

use super::patterns::PATTERNS;
use super::*;
use DeliveryStatus::{Blocked, Bounce, Deferred};
use Permanence::{Permanent, Transient};

/// One provider message per pattern row, with the verdict and cause that row must give.
struct Case {
    pattern: &'static str,
    status: DeliveryStatus,
    message: &'static str,
    scope: Scope,
    permanence: Permanence,
    cause: Cause,
}

const fn case(
    pattern: &'static str,
    status: DeliveryStatus,
    message: &'static str,
    scope: Scope,
    permanence: Permanence,
    cause: Cause,
) -> Case {
    Case {
        pattern,
        status,
        message,
        scope,
        permanence,
        cause,
    }
}

const CASES: &[Case] = &[
    case(
        "bad_mailbox",
        Bounce,
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\n\
         550-5.1.1 double-checking the recipient's email address for typos or\n\
         550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser a1si1 - gsmtp",
        Scope::Mailbox,
        Permanent,
        Cause::UserUnknown,
    ),
    case(
        "bad_mailbox",
        Bounce,
        "550 5.1.1 <jane@icloud.com>: user does not exist",
        Scope::Mailbox,
        Permanent,
        Cause::UserUnknown,
    ),
    case(
        "o365_recipient_not_found",
        Bounce,
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient jane@contoso.com not found by SMTP address lookup",
        Scope::Mailbox,
        Permanent,
        Cause::UserUnknown,
    ),
    case(
        "mailbox_moved",
        Bounce,
        "550 5.1.6 Recipient addresses in this domain have moved; no forwarding address",
        Scope::Mailbox,
        Permanent,
        Cause::UserUnknown,
    ),
    case(
        "bad_mailbox_syntax",
        Bounce,
        "553 5.1.3 The recipient address <jane@@example.com> is not a valid RFC 5321 address",
        Scope::Mailbox,
        Permanent,
        Cause::InvalidAddress,
    ),
    case(
        "yahoo_no_account",
        Bounce,
        "554 delivery error: dd This user doesn't have a yahoo.com account (jane@yahoo.com) [0] - mta1012.mail.gq1.yahoo.com",
        Scope::Mailbox,
        Permanent,
        Cause::UserUnknown,
    ),
    case(
        "mimecast_invalid_recipient",
        Bounce,
        "550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550 [aBcDeF.uk12]",
        Scope::Mailbox,
        Permanent,
        Cause::UserUnknown,
    ),
    case(
        "user_unknown_wording",
        Bounce,
        "smtp; 550 <jane@example.org>... No such user",
        Scope::Mailbox,
        Permanent,
        Cause::UserUnknown,
    ),
    case(
        "mailbox_disabled_wording",
        Bounce,
        "554 delivery error: dd Sorry, your message to jane@yahoo.com cannot be delivered. This mailbox is disabled (554.30). - mta1012.mail.gq1.yahoo.com",
        Scope::Mailbox,
        Permanent,
        Cause::MailboxDisabled,
    ),
    case(
        "mailbox_full",
        Bounce,
        "552-5.2.2 The email account that you tried to reach is over quota. Please direct\n\
         552-5.2.2 the recipient to\n\
         552 5.2.2  https://support.google.com/mail/?p=OverQuotaTemp a1si1 - gsmtp",
        Scope::Mailbox,
        Transient,
        Cause::MailboxFull,
    ),
    case(
        "mailbox_full_wording",
        Bounce,
        "554 delivery error: dd Sorry, your message to jane@yahoo.com cannot be delivered. This account is over quota.",
        Scope::Mailbox,
        Transient,
        Cause::MailboxFull,
    ),
    case(
        "recipient_rate_limited",
        Deferred,
        "450-4.2.1 The user you are trying to contact is receiving mail too quickly. Please\n\
         450-4.2.1 resend your message at a later time. - gsmtp",
        Scope::Mailbox,
        Transient,
        Cause::RateLimited,
    ),
    case(
        "sendgrid_suppressed",
        Bounce,
        "Bounced Address",
        Scope::Unknown,
        Permanent,
        Cause::Suppressed,
    ),
    case(
        "sendgrid_invalid_domain",
        Bounce,
        "Invalid Domain",
        Scope::Domain,
        Permanent,
        Cause::Dns,
    ),
    case(
        "greylisted",
        Deferred,
        "450 4.2.0 <jane@example.org>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.org.html",
        Scope::Domain,
        Transient,
        Cause::Greylist,
    ),
    case(
        "mimecast_greylist",
        Bounce,
        "451 Internal resource temporarily unavailable - https://community.mimecast.com/docs/DOC-1369#451 [Aj3QXape.us32]",
        Scope::Domain,
        Transient,
        Cause::Greylist,
    ),
    case(
        "o365_ip_throttled",
        Deferred,
        "451 4.7.500 Server busy. Please try again later from [203.0.113.5]. (AS77712344) [BN8NAM12FT045.eop-nam12.prod.protection.outlook.com]",
        Scope::Sender,
        Transient,
        Cause::RateLimited,
    ),
    case(
        "o365_access_denied",
        Bounce,
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [BN1NAM02FT022.eop-nam02.prod.protection.outlook.com]",
        Scope::Unknown,
        Permanent,
        Cause::RecipientRejected,
    ),
    case(
        "yahoo_permanently_deferred",
        Deferred,
        "421 4.7.1 [TS03] All messages from 203.0.113.5 will be permanently deferred; Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
        Scope::Sender,
        Permanent,
        Cause::SenderReputation,
    ),
    case(
        "yahoo_deferred",
        Deferred,
        "421 4.7.0 [TSS04] Messages from 203.0.113.5 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        Scope::Sender,
        Transient,
        Cause::RateLimited,
    ),
    case(
        "gmail_unsolicited_rate",
        Deferred,
        "421-4.7.28 [203.0.113.5      15] Our system has detected an unusual rate of\n\
         421-4.7.28 unsolicited mail originating from your IP address. To protect our\n\
         421 4.7.28 users from spam, mail sent from your IP address has been temporarily rate limited. - gsmtp",
        Scope::Sender,
        Transient,
        Cause::RateLimited,
    ),
    case(
        "gmail_unsolicited_rate_wording",
        Deferred,
        "421-4.7.0 [203.0.113.5      15] Our system has detected an unusual rate of\n\
         421-4.7.0 unsolicited mail originating from your IP address. - gsmtp",
        Scope::Sender,
        Transient,
        Cause::RateLimited,
    ),
    case(
        "gmail_ip_not_allowlisted",
        Deferred,
        "421 4.7.0 IP not in whitelist for RCPT domain, closing connection. - gsmtp",
        Scope::Domain,
        Transient,
        Cause::TenantMisconfigured,
    ),
    case(
        "o365_banned_ip",
        Bounce,
        "550 5.7.606 Access denied, banned sending IP [203.0.113.5]. To request removal from this list please visit https://sender.office.com/ and follow the directions. (AS16012609)",
        Scope::Sender,
        Permanent,
        Cause::Blocklist,
    ),
    case(
        "outlook_block_list",
        Bounce,
        "550 5.7.1 Unfortunately, messages from [203.0.113.5] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150).",
        Scope::Sender,
        Permanent,
        Cause::Blocklist,
    ),
    case(
        "yahoo_blocklist",
        Bounce,
        "553 5.7.1 [BL21] Connections will not be accepted from 203.0.113.5, because the ip is in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
        Scope::Sender,
        Permanent,
        Cause::Blocklist,
    ),
    case(
        "blocklist_wording",
        Bounce,
        "554 5.7.1 Service unavailable; Client host [203.0.113.5] blocked using zen.spamhaus.org",
        Scope::Sender,
        Permanent,
        Cause::Blocklist,
    ),
    case(
        "proofpoint_blocked",
        Bounce,
        "550 5.7.1 Message blocked - see https://ipcheck.proofpoint.com/?ip=203.0.113.5",
        Scope::Sender,
        Permanent,
        Cause::SenderReputation,
    ),
    case(
        "reputation_wording",
        Bounce,
        "553 5.0.0 Message rejected: the sending IP has a poor reputation",
        Scope::Sender,
        Permanent,
        Cause::SenderReputation,
    ),
    case(
        "authentication_code",
        Bounce,
        "550 5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy. - gsmtp",
        Scope::Sender,
        Permanent,
        Cause::Authentication,
    ),
    case(
        "mimecast_anti_spoofing",
        Bounce,
        "550 Rejected by header based Anti-Spoofing policy: jane@example.org - https://community.mimecast.com/docs/DOC-1369#550",
        Scope::Sender,
        Permanent,
        Cause::Authentication,
    ),
    case(
        "authentication_wording",
        Bounce,
        "550 Message rejected: SPF check failed for example.com",
        Scope::Sender,
        Permanent,
        Cause::Authentication,
    ),
    case(
        "reverse_dns_wording",
        Bounce,
        "550 Client host rejected: cannot find your reverse hostname, [203.0.113.5]",
        Scope::Sender,
        Permanent,
        Cause::Authentication,
    ),
    case(
        "relay_denied",
        Bounce,
        "554 5.7.1 <jane@example.org>: Relay access denied",
        Scope::Domain,
        Permanent,
        Cause::TenantMisconfigured,
    ),
    case(
        "gmail_likely_unsolicited",
        Bounce,
        "550-5.7.1 [203.0.113.5] Our system has detected that this message is\n\
         550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\n\
         550-5.7.1 this message has been blocked. Please visit\n\
         550 5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError - gsmtp",
        Scope::Sender,
        Permanent,
        Cause::Spam,
    ),
    case(
        "icloud_cs01",
        Bounce,
        "554 5.7.1 [CS01] Message rejected due to local policy. Please visit https://support.apple.com/en-us/HT204137",
        Scope::Sender,
        Permanent,
        Cause::PolicyBlock,
    ),
    case(
        "mimecast_security_policies",
        Bounce,
        "554 Email rejected due to security policies - https://community.mimecast.com/docs/DOC-1369#554",
        Scope::Sender,
        Permanent,
        Cause::PolicyBlock,
    ),
    case(
        "orange_mail_rejected",
        Bounce,
        "550 5.2.0 Mail rejete. Mail rejected. ofr_506 [506]",
        Scope::Sender,
        Permanent,
        Cause::SenderReputation,
    ),
    case(
        "greylist_try_again",
        Deferred,
        "451 4.7.1 Please try again later",
        Scope::Domain,
        Transient,
        Cause::Greylist,
    ),
    case(
        "bad_destination_system",
        Bounce,
        "550 5.1.2 Host unknown (Name server: mx.example.invalid: host not found)",
        Scope::Domain,
        Permanent,
        Cause::Routing,
    ),
    case(
        "bad_sender_address",
        Bounce,
        "553 5.1.8 <bounce@okta.example>: Sender address rejected: Domain not found",
        Scope::Sender,
        Permanent,
        Cause::SenderAddress,
    ),
    case(
        "mailbox_disabled",
        Bounce,
        "550 5.2.1 Mailbox unavailable, not accepting messages",
        Scope::Mailbox,
        Permanent,
        Cause::MailboxDisabled,
    ),
    case(
        "message_too_long",
        Bounce,
        "552 5.2.3 Message length exceeds administrative limit",
        Scope::Content,
        Permanent,
        Cause::Content,
    ),
    case(
        "mailbox_status",
        Bounce,
        "550 5.2.0 Mailbox unavailable",
        Scope::Mailbox,
        Permanent,
        Cause::MailboxUnavailable,
    ),
    case(
        "message_too_big",
        Bounce,
        "552 5.3.4 Message size exceeds fixed limit",
        Scope::Content,
        Permanent,
        Cause::Content,
    ),
    case(
        "destination_system",
        Bounce,
        "554 5.3.2 Mail system not accepting network messages",
        Scope::Domain,
        Transient,
        Cause::ServerError,
    ),
    case(
        "delivery_expired",
        Bounce,
        "554 4.4.7 Message expired: unable to deliver in 840 minutes.<421 4.4.2 Connection timed out>",
        Scope::Domain,
        Transient,
        Cause::Expired,
    ),
    case(
        "no_route",
        Bounce,
        "550 5.4.4 Unable to route: no mail hosts for domain",
        Scope::Domain,
        Transient,
        Cause::Routing,
    ),
    case(
        "routing_loop",
        Bounce,
        "554 5.4.6 Too many hops",
        Scope::Domain,
        Transient,
        Cause::Routing,
    ),
    case(
        "o365_hop_count",
        Bounce,
        "554 5.4.14 Hop count exceeded - possible mail loop ATTR34",
        Scope::Domain,
        Transient,
        Cause::Routing,
    ),
    case(
        "directory_failure",
        Deferred,
        "451 4.4.3 Temporary DNS failure",
        Scope::Domain,
        Transient,
        Cause::Dns,
    ),
    case(
        "congestion",
        Deferred,
        "421 4.4.5 Server busy, try again later. - gsmtp",
        Scope::Domain,
        Transient,
        Cause::ServerBusy,
    ),
    case(
        "network_failure",
        Deferred,
        "451 4.4.316 Connection refused [Message=Socket error code 10061]",
        Scope::Domain,
        Transient,
        Cause::ConnectionFailure,
    ),
    case(
        "media_content",
        Bounce,
        "554 5.6.0 Message contains invalid header",
        Scope::Content,
        Permanent,
        Cause::Content,
    ),
    case(
        "security_policy",
        Bounce,
        "550 5.7.1 Message rejected",
        Scope::Sender,
        Permanent,
        Cause::PolicyBlock,
    ),
    case(
        "connection_failure_wording",
        Deferred,
        "connect to mx.example.org[192.0.2.25]:25: Connection refused",
        Scope::Domain,
        Transient,
        Cause::ConnectionFailure,
    ),
    case(
        "sender_address_wording",
        Bounce,
        "Sender address rejected: Domain not found",
        Scope::Sender,
        Permanent,
        Cause::SenderAddress,
    ),
    case(
        "dns_wording",
        Deferred,
        "Host or domain name not found. Name service error for name=example.org type=MX: Host not found, try again",
        Scope::Domain,
        Transient,
        Cause::Dns,
    ),
    case(
        "routing_wording",
        Bounce,
        "550 Unrouteable address",
        Scope::Domain,
        Transient,
        Cause::Routing,
    ),
    case(
        "server_busy_wording",
        Deferred,
        "421 Resources temporarily unavailable. Please try again later",
        Scope::Domain,
        Transient,
        Cause::ServerBusy,
    ),
    case(
        "expired_wording",
        Bounce,
        "Message expired, unable to deliver after 72 hours",
        Scope::Domain,
        Transient,
        Cause::Expired,
    ),
    case(
        "content_wording",
        Bounce,
        "552 Message size exceeds maximum permitted",
        Scope::Content,
        Permanent,
        Cause::Content,
    ),
    case(
        "spam_wording",
        Bounce,
        "554 Message rejected as spam",
        Scope::Sender,
        Permanent,
        Cause::Spam,
    ),
    case(
        "policy_wording",
        Blocked,
        "554 Message blocked by policy",
        Scope::Sender,
        Permanent,
        Cause::PolicyBlock,
    ),
];

#[test]
fn every_row_matches_its_example() {
    for case in CASES {
        let result = classify_detailed(case.status, Some(case.message))
            .unwrap_or_else(|| panic!("row {}: no classification", case.pattern));
        assert_eq!(
            result.pattern, case.pattern,
            "row {}: pattern",
            case.pattern
        );
        assert_eq!(
            result.verdict.scope, case.scope,
            "row {}: scope",
            case.pattern
        );
        assert_eq!(
            result.verdict.permanence, case.permanence,
            "row {}: permanence",
            case.pattern
        );
        assert_eq!(result.cause, case.cause, "row {}: cause", case.pattern);
    }
}

#[test]
fn every_row_has_an_example() {
    let covered: HashSet<&str> = CASES.iter().map(|case| case.pattern).collect();
    for pattern in PATTERNS {
        assert!(
            covered.contains(pattern.id),
            "row {} has no test case",
            pattern.id
        );
    }
}

#[test]
fn table_rows_are_well_formed() {
    let mut ids = HashSet::new();
    for pattern in PATTERNS {
        assert!(ids.insert(pattern.id), "row {} is listed twice", pattern.id);
        assert!(
            pattern.enhanced.is_some() || !pattern.wording.is_empty(),
            "row {} needs an enhanced code or wording, never a basic code alone",
            pattern.id
        );
        for needle in pattern.wording {
            assert!(!needle.is_empty(), "row {} has an empty needle", pattern.id);
            assert_eq!(
                *needle,
                needle.to_ascii_lowercase(),
                "row {}: needle must be lowercase",
                pattern.id
            );
            assert_eq!(
                *needle,
                needle.trim(),
                "row {}: needle must not start or end with a space",
                pattern.id
            );
        }
    }
}

#[test]
fn docs_describe_every_row() {
    let docs = include_str!("../../docs/classification.md");
    for pattern in PATTERNS {
        let cell = format!("`{}`", pattern.id);
        assert!(
            docs.contains(&cell),
            "docs/classification.md lacks row {}",
            pattern.id
        );
    }
}

#[test]
fn delivered_and_dropped_have_no_verdict() {
    assert_eq!(
        classify(DeliveryStatus::Delivered, Some("250 2.0.0 OK")),
        None
    );
    assert_eq!(
        classify(DeliveryStatus::Dropped, Some("Bounced Address")),
        None
    );
    assert_eq!(classify_detailed(DeliveryStatus::Dropped, None), None);
}

#[test]
fn unmatched_reply_is_unknown_with_reply_class() {
    let cases = [
        (
            Bounce,
            Some("550 Requested action not taken: mailbox unavailable"),
            Permanent,
        ),
        (Bounce, Some("550"), Permanent),
        (Bounce, Some("550 #5.1.0 Address rejected."), Permanent),
        (Bounce, Some("451 please wait"), Transient),
        (Deferred, Some("554 transaction failed"), Permanent),
        (Bounce, None, Permanent),
        (Bounce, Some("something odd happened"), Permanent),
        (Deferred, None, Transient),
        (Blocked, None, Transient),
        (DeliveryStatus::Unknown, None, Permanent),
    ];
    for (status, message, permanence) in cases {
        let result = classify_detailed(status, message).unwrap();
        assert_eq!(result.pattern, UNMATCHED, "{status:?} {message:?}: pattern");
        assert_eq!(
            result.verdict.scope,
            Scope::Unknown,
            "{status:?} {message:?}: scope"
        );
        assert_eq!(
            result.cause,
            Cause::Unknown,
            "{status:?} {message:?}: cause"
        );
        assert_eq!(
            result.verdict.permanence, permanence,
            "{status:?} {message:?}: permanence"
        );
    }
}

#[test]
fn dead_mailbox_wins_over_sender_wording() {
    let message =
        "550 5.1.1 <jane@example.org>: user unknown; client host blocked using zen.spamhaus.org";
    let verdict = classify(Bounce, Some(message)).unwrap();
    assert_eq!(verdict.scope, Scope::Mailbox);
    assert_eq!(verdict.permanence, Permanent);
}

#[test]
fn temporary_unknown_user_is_transient_mailbox() {
    let message = "450 4.1.1 <jane@example.org>: Recipient address rejected: unverified address";
    let verdict = classify(Deferred, Some(message)).unwrap();
    assert_eq!(verdict.scope, Scope::Mailbox);
    assert_eq!(verdict.permanence, Transient);
}

#[test]
fn classify_matches_detailed_verdict() {
    for case in CASES {
        let detailed = classify_detailed(case.status, Some(case.message)).map(|c| c.verdict);
        assert_eq!(
            classify(case.status, Some(case.message)),
            detailed,
            "row {}",
            case.pattern
        );
    }
}

#[test]
fn classification_serialises_for_audit_log() {
    let result =
        classify_detailed(Bounce, Some("550 5.1.10 RESOLVER.ADR.RecipientNotFound")).unwrap();
    let json = serde_json::to_value(result).unwrap();
    let expected = serde_json::json!({
        "verdict": {"scope": "mailbox", "permanence": "permanent"},
        "cause": "user_unknown",
        "reply": {"basic": 550, "enhanced": "5.1.10"},
        "pattern": "o365_recipient_not_found",
    });
    assert_eq!(json, expected);
}

#[test]
fn wording_text_joins_continuation_lines() {
    let message = "550-5.7.1 Our system has detected that this message is\r\n550-5.7.1 likely UNSOLICITED mail.\n550 5.7.1  Blocked - gsmtp";
    let expected = "550-5.7.1 our system has detected that this message is likely unsolicited mail. blocked - gsmtp";
    assert_eq!(wording_text(message), expected);
    assert_eq!(wording_text("550\n550"), "550 550");
    assert_eq!(wording_text(""), "");
}

#[test]
fn long_message_is_cut_at_char_boundary() {
    let message = format!("{}550 5.1.1 user unknown", "é".repeat(MAX_SCANNED_BYTES));
    let result = classify_detailed(Bounce, Some(&message)).unwrap();
    assert_eq!(result.pattern, UNMATCHED);

    let message = format!(
        "550 5.1.1 user unknown{}",
        "x".repeat(10 * MAX_SCANNED_BYTES)
    );
    let result = classify_detailed(Bounce, Some(&message)).unwrap();
    assert_eq!(result.pattern, "bad_mailbox");
}

const USER_UNKNOWN_WORDING: &[&str] = &[
    "user unknown",
    "User Unknown",
    "no such user",
    "The email account that you tried to reach does not exist",
    "RESOLVER.ADR.RecipientNotFound",
    "user does not exist",
    "mailbox does not exist",
];

fn any_status() -> impl Strategy<Value = DeliveryStatus> {
    prop_oneof![
        Just(Bounce),
        Just(Blocked),
        Just(Deferred),
        Just(DeliveryStatus::Unknown),
        Just(DeliveryStatus::Delivered),
        Just(DeliveryStatus::Dropped),
    ]
}

proptest! {
    #[test]
    fn classify_never_panics(status in any_status(), message in any::<String>()) {
        let _ = classify(status, Some(&message));
    }

    #[test]
    fn classify_never_panics_on_code_like_text(
        status in any_status(),
        message in "[0-9.#;:<>( \\-\n\r a-zé]{0,120}",
    ) {
        let verdict = classify(status, Some(&message));
        let detailed = classify_detailed(status, Some(&message)).map(|c| c.verdict);
        prop_assert_eq!(verdict, detailed);
    }

    #[test]
    fn dead_mailbox_is_never_domain_or_sender(
        status in prop_oneof![Just(Bounce), Just(Blocked), Just(Deferred)],
        basic in prop_oneof![Just(""), Just("550 "), Just("550-"), Just("smtp; 550 "), Just("554 ")],
        code in prop_oneof![Just("5.1.1"), Just("5.1.10"), Just("#5.1.1")],
        wording in prop::sample::select(USER_UNKNOWN_WORDING),
        filler in "[a-zA-Z ,.:<>@]{0,40}",
        tail in any::<String>(),
    ) {
        let message = format!("{basic}{code} {filler} {wording} {tail}");
        let reply = SmtpReply::parse(&message);
        let enhanced = reply.enhanced.map(|code| code.to_string());
        prop_assert!(
            matches!(enhanced.as_deref(), Some("5.1.1" | "5.1.10")),
            "parsed {:?} from {:?}", enhanced, message
        );
        let verdict = classify(status, Some(&message)).unwrap();
        prop_assert!(
            !matches!(verdict.scope, Scope::Domain | Scope::Sender),
            "{:?} from {:?}", verdict, message
        );
    }
}
