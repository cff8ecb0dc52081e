//! Extraction of the SMTP reply code (RFC 5321) and the enhanced status code (RFC 3463) from a
//! provider message.
//!
//! Provider messages come in many shapes: `550 5.1.1 ...`, Gmail's multi-line `550-5.7.1 ...`,
//! `550 #5.1.0 ...`, a DSN prefix such as `smtp; 550 5.4.1 ...`, Office 365's two-digit details
//! (`5.1.10`), replies without an enhanced code, and SendGrid texts without any code. The
//! scanner is hand-written: one pass over the bytes with a bounded lookahead at each position,
//! so it runs in linear time. It reads bytes only through bounds checks, and a proptest feeds
//! it arbitrary strings.

use std::fmt;

use serde::{Serialize, Serializer};

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// 1 to 3 digits, for example 1 for addressing and 7 for security or policy.
    pub subject: u16,
    /// 1 to 3 digits.
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// Serialised as the dotted string, for example `"5.1.10"`.
impl Serialize for EnhancedCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The codes found in one provider message. Either code may be missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct SmtpReply {
    /// The three-digit reply code, for example 550.
    pub basic: Option<u16>,
    /// The enhanced status code, for example 5.1.1.
    pub enhanced: Option<EnhancedCode>,
}

impl SmtpReply {
    /// Parses the first reply in `text`.
    ///
    /// The basic code is the first three-digit token whose first digit is 2 to 5 and whose
    /// second digit is 0 to 5. It must follow the start of the text, whitespace or one of
    /// `;:<([,"'`, and be followed by the end, whitespace or `-`. The enhanced code is the first
    /// `class.subject.detail` token with class 2, 4 or 5 that is not part of a longer dotted
    /// number, so IP addresses and Yahoo's `4.16.55.1` are skipped. A basic code is only taken
    /// before the enhanced code, so a nested reply such as `...<421 4.4.2 Connection timed
    /// out>` after the outer one does not replace it.
    pub fn parse(text: &str) -> SmtpReply {
        let bytes = text.as_bytes();
        let mut reply = SmtpReply::default();
        let mut index = 0;

        while index < bytes.len() && reply.enhanced.is_none() {
            // A digit after a letter, digit or dot continues a word or a dotted number.
            let starts_token = bytes[index].is_ascii_digit()
                && (index == 0
                    || !(bytes[index - 1].is_ascii_alphanumeric() || bytes[index - 1] == b'.'));
            if !starts_token {
                index += 1;
                continue;
            }

            if reply.basic.is_none() {
                if let Some(code) = basic_code_at(bytes, index) {
                    reply.basic = Some(code);
                    index += 3;
                    continue;
                }
            }
            if let Some((code, length)) = enhanced_code_at(bytes, index) {
                reply.enhanced = Some(code);
                index += length;
                continue;
            }

            // Skip the rest of this number so that its later digits are not read as a token.
            while index < bytes.len() && (bytes[index].is_ascii_digit() || bytes[index] == b'.') {
                index += 1;
            }
        }
        reply
    }

    /// Returns the reply class: the first digit of the basic code, or the enhanced code's
    /// class when the basic code is missing. The basic code wins on a mismatch because it is the code that
    /// the sending server acted on (SendGrid reports `554 4.4.7` for an expired message).
    pub fn class(&self) -> Option<u8> {
        let basic_class = self.basic.map(|code| (code / 100) as u8);
        basic_class.or(self.enhanced.map(|code| code.class))
    }
}

/// Returns the length of the continuation prefix at the start of `line`: a basic code followed
/// by `-` or a space, then an optional enhanced code and spaces, as in Gmail's
/// `550-5.1.1 double-checking ...`. Returns 0 when the line does not start with one.
pub(crate) fn reply_prefix_length(line: &str) -> usize {
    let bytes = line.as_bytes();
    if basic_code_at(bytes, 0).is_none() || bytes.len() < 4 {
        return 0;
    }
    let mut length = 4;
    if let Some((_, code_length)) = enhanced_code_at(bytes, length) {
        length += code_length;
    }
    while bytes.get(length).is_some_and(u8::is_ascii_whitespace) {
        length += 1;
    }
    length
}

/// Reads a basic reply code starting at `index`, which is known to start a token.
fn basic_code_at(bytes: &[u8], index: usize) -> Option<u16> {
    let previous = index.checked_sub(1).map(|position| bytes[position]);
    let allowed_before = match previous {
        None => true,
        Some(byte) => byte.is_ascii_whitespace() || b";:<([,\"'".contains(&byte),
    };
    if !allowed_before {
        return None;
    }

    let digits = bytes.get(index..index + 3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !(b'2'..=b'5').contains(&digits[0]) || !(b'0'..=b'5').contains(&digits[1]) {
        return None;
    }
    match bytes.get(index + 3) {
        None => {}
        Some(byte) if byte.is_ascii_whitespace() || *byte == b'-' => {}
        Some(_) => return None,
    }

    let value = digits
        .iter()
        .fold(0u16, |total, digit| total * 10 + u16::from(digit - b'0'));
    Some(value)
}

/// Reads an enhanced status code starting at `index`, which is known to start a token.
/// Returns the code and its length in bytes.
fn enhanced_code_at(bytes: &[u8], index: usize) -> Option<(EnhancedCode, usize)> {
    let class = *bytes.get(index)?;
    if !matches!(class, b'2' | b'4' | b'5') || bytes.get(index + 1) != Some(&b'.') {
        return None;
    }

    let subject_start = index + 2;
    let (subject, subject_length) = read_number(bytes, subject_start)?;
    let dot = subject_start + subject_length;
    if bytes.get(dot) != Some(&b'.') {
        return None;
    }
    let detail_start = dot + 1;
    let (detail, detail_length) = read_number(bytes, detail_start)?;
    let end = detail_start + detail_length;

    // Reject a longer dotted number (an IP address, a version) and a code glued to a word.
    match bytes.get(end) {
        None => {}
        Some(b'.') if bytes.get(end + 1).is_some_and(u8::is_ascii_digit) => return None,
        Some(byte) if byte.is_ascii_alphanumeric() => return None,
        Some(_) => {}
    }

    let code = EnhancedCode {
        class: class - b'0',
        subject,
        detail,
    };
    Some((code, end - index))
}

/// Reads 1 to 3 ASCII digits at `start`. Returns `None` for no digit or for more than 3.
fn read_number(bytes: &[u8], start: usize) -> Option<(u16, usize)> {
    let mut value = 0u16;
    let mut length = 0;
    while let Some(byte) = bytes
        .get(start + length)
        .filter(|byte| byte.is_ascii_digit())
    {
        if length == 3 {
            return None;
        }
        value = value * 10 + u16::from(byte - b'0');
        length += 1;
    }
    (length > 0).then_some((value, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(class: u8, subject: u16, detail: u16) -> Option<EnhancedCode> {
        Some(EnhancedCode {
            class,
            subject,
            detail,
        })
    }

    fn assert_reply(text: &str, basic: Option<u16>, enhanced: Option<EnhancedCode>) {
        let reply = SmtpReply::parse(text);
        assert_eq!(reply.basic, basic, "basic code of {text:?}");
        assert_eq!(reply.enhanced, enhanced, "enhanced code of {text:?}");
    }

    #[test]
    fn parse_plain_reply() {
        assert_reply(
            "550 5.1.1 <x@icloud.com>: user does not exist",
            Some(550),
            code(5, 1, 1),
        );
    }

    #[test]
    fn parse_gmail_continuation_lines() {
        let text = "550-5.7.1 [203.0.113.5] Our system has detected that this message is\n\
                    550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\n\
                    550 5.7.1 this message has been blocked. - gsmtp";
        assert_reply(text, Some(550), code(5, 7, 1));
    }

    #[test]
    fn parse_hash_prefixed_code() {
        assert_reply("550 #5.1.0 Address rejected.", Some(550), code(5, 1, 0));
    }

    #[test]
    fn parse_dsn_prefix() {
        assert_reply(
            "smtp; 550 5.4.1 Recipient address rejected: Access denied.",
            Some(550),
            code(5, 4, 1),
        );
        assert_reply(
            "smtp;550 5.7.606 Access denied, banned sending IP [203.0.113.5]",
            Some(550),
            code(5, 7, 606),
        );
    }

    #[test]
    fn parse_two_digit_detail() {
        let text =
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup";
        assert_reply(text, Some(550), code(5, 1, 10));
    }

    #[test]
    fn parse_reply_without_enhanced_code() {
        let text = "554 delivery error: dd This user doesn't have a yahoo.com account (x@yahoo.com) [0] - mta1.mail.gq1.yahoo.com";
        assert_reply(text, Some(554), None);
    }

    #[test]
    fn parse_keeps_outer_of_nested_reply() {
        let text = "554 4.4.7 Message expired: unable to deliver in 840 minutes.<421 4.4.2 Connection timed out>";
        assert_reply(text, Some(554), code(4, 4, 7));
    }

    #[test]
    fn parse_sendgrid_text_without_code() {
        assert_reply("Bounced Address", None, None);
        assert_reply("Invalid Domain", None, None);
    }

    #[test]
    fn parse_skips_ip_and_yahoo_diagnostic() {
        let text = "421 4.7.0 [TSS04] Messages from 203.0.113.5 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes";
        assert_reply(text, Some(421), code(4, 7, 0));
        assert_reply("from 192.0.2.10 rejected", None, None);
    }

    #[test]
    fn parse_enhanced_code_without_basic() {
        assert_reply("dsn=5.1.1, status=bounced", None, code(5, 1, 1));
    }

    #[test]
    fn parse_ignores_numbers_inside_words_and_longer_numbers() {
        assert_reply("AS(201806281) error", None, None);
        assert_reply("id 5501 x4.4.7 v4.4.7.2 5.1.1234", None, None);
        assert_reply("code 650 and 5.1", None, None);
    }

    #[test]
    fn parse_does_not_take_basic_code_after_enhanced() {
        assert_reply(
            "5.4.7 delivery time expired after 450 minutes",
            None,
            code(5, 4, 7),
        );
    }

    #[test]
    fn class_prefers_basic_code() {
        let reply = SmtpReply::parse("554 4.4.7 Message expired");
        assert_eq!(reply.class(), Some(5));
        let reply = SmtpReply::parse("4.2.2 mailbox full");
        assert_eq!(reply.class(), Some(4));
        assert_eq!(SmtpReply::parse("Bounced Address").class(), None);
    }

    #[test]
    fn enhanced_code_serialises_as_dotted_string() {
        let reply = SmtpReply::parse("550 5.1.10 RecipientNotFound");
        let json = serde_json::to_value(reply).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"basic": 550, "enhanced": "5.1.10"})
        );
    }

    #[test]
    fn parse_survives_hostile_input() {
        let long_digits = "5".repeat(100_000);
        assert_reply(&long_digits, None, None);
        let long_dots = "5.".repeat(100_000);
        assert_reply(&long_dots, None, None);
        assert_reply("", None, None);
        assert_reply("5", None, None);
        assert_reply("5.1.", None, None);
        assert_reply("550", Some(550), None);
        assert_reply("é550 5.1.1", None, code(5, 1, 1));
    }
}
