//! One AS4 message = one mail (docs/EMAIL.md is the contract for other implementations).
//!
//! The mail's body is the AS4 package as it would be POSTed — the same `multipart/related`
//! SOAP-with-attachments package with every part in base64, or a lone SOAP envelope in base64 —
//! signed exactly as over HTTPS, so the same verification applies: the signature covers the
//! canonical XML and each attachment's content (the Attachment-Content-Signature-Transform),
//! not the transfer encoding, which mail relays may not alter anyway once it is base64.
//!
//! Its header: `Message-ID` from the eb:MessageId, `In-Reply-To`/`References` for a signal or
//! a co-ordination message that refers to a message, `Auto-Submitted: auto-generated` (RFC
//! 3834: no vacation replies), and a Subject naming Service and Action. Every value taken from
//! the message is reduced to printable ASCII and bounded, so a header cannot be injected.

use crate::as4::exchange;
use crate::as4::model::{Messaging, Signal};
use crate::as4::package::media_type;
use crate::as4::xml::Limits;
use crate::error::{Error, Result};
use crate::mime::{self, Entity};

/// What a mail read from a mailbox carries.
#[derive(Debug)]
pub enum Content {
    /// An AS4 message: the Content-Type and body to read as a POSTed one (base64 parts are
    /// decoded by the package reader), and the eb:MessageId the mail's `Message-ID` names
    /// (unverified: read the message).
    As4 {
        content_type: String,
        body: Vec<u8>,
        message_id: Option<String>,
    },
    /// A delivery-status notification (RFC 3464) for a mail of ours.
    Bounce(Bounce),
    /// Anything else (a person's mail, spam, a bounce for a mail we cannot identify): why.
    NotOurs(String),
}

/// What a delivery-status notification says. Unsigned: evidence of nothing, a hint only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bounce {
    /// The eb:MessageId of the bounced mail (from its `Message-ID`, in the returned headers).
    pub message_id: Option<String>,
    /// The recipient it names (`Final-Recipient`).
    pub recipient: Option<String>,
    /// `Action` (`failed`, `delayed`, …).
    pub action: Option<String>,
    /// `Status` (e.g. `5.1.1`).
    pub status: Option<String>,
    /// `Diagnostic-Code` (the remote server's reply).
    pub diagnostic: Option<String>,
}

impl Bounce {
    /// Whether the mail was not delivered (Action `failed`; a `delayed` notice is not).
    pub fn is_failure(&self) -> bool {
        self.action
            .as_deref()
            .is_none_or(|a| a.eq_ignore_ascii_case("failed"))
    }

    /// One line for a record: who, status, the server's words.
    pub fn reason(&self) -> String {
        let mut s = String::from("the mail was returned undelivered");
        if let Some(r) = &self.recipient {
            s.push_str(&format!(" by the mail system of {r}"));
        }
        if let Some(st) = &self.status {
            s.push_str(&format!(" (status {st})"));
        }
        if let Some(d) = &self.diagnostic {
            s.push_str(&format!(": {d}"));
        }
        s
    }
}

/// The longest header value taken from a message (a Subject part, an id).
const MAX_VALUE: usize = 200;

/// `v` as printable ASCII without line ends, at most `MAX_VALUE` characters: what goes into a
/// header field or a record from a mail or a message.
pub fn printable(v: &str) -> String {
    v.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .take(MAX_VALUE)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Whether `a` can stand in a From/To field and an SMTP envelope: `local@domain`, printable
/// ASCII without spaces, angle brackets, quotes, commas or semicolons, at most 254 characters.
pub fn is_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && a.len() <= 254
        && a.bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:\"".contains(&b) || b == b'@')
        && !domain.contains('@')
}

/// `atext` of RFC 5322, the characters a msg-id may hold besides `.` and `@`.
fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$&'*+-/=?^_`{|}~".contains(&c)
}

/// The domain a `Message-ID` gets for an eb:MessageId that has none.
const NO_DOMAIN: &str = "ebms.invalid";

/// The domain of a `Message-ID` that stands for an eb:MessageId too long for a header line.
const HASHED_DOMAIN: &str = "ebms-sha256.invalid";

/// The longest `Message-ID` written out as the id itself; a longer one is its SHA-256.
const MAX_ID_HEADER: usize = 400;

/// The `Message-ID` (with angle brackets) for an eb:MessageId: the id itself where RFC 5322
/// allows it, its other characters percent-encoded (`%` too), `@ebms.invalid` added to an id
/// without `@`. [`eb_message_id`] reverses it. An id whose header would be longer than 400
/// characters (mail servers refuse lines over 998) is `<sha256-hex@ebms-sha256.invalid>`
/// instead, which names no eb:MessageId ([`eb_message_id`] gives `None`).
pub fn message_id_header(eb_id: &str) -> String {
    let h = message_id_header_full(eb_id);
    if h.len() <= MAX_ID_HEADER {
        return h;
    }
    format!(
        "<{}@{HASHED_DOMAIN}>",
        crate::bytes::hex(&openssl::sha::sha256(eb_id.as_bytes()))
    )
}

fn message_id_header_full(eb_id: &str) -> String {
    let (left, right) = match eb_id.rsplit_once('@') {
        Some((l, r)) if !l.is_empty() && !r.is_empty() => (l, r),
        _ => (eb_id, NO_DOMAIN),
    };
    let enc = |s: &str| {
        let b = s.as_bytes();
        let mut o = String::with_capacity(s.len());
        for (i, &c) in b.iter().enumerate() {
            let dot_ok = c == b'.' && i > 0 && i + 1 < b.len() && b[i - 1] != b'.';
            if is_atext(c) && c != b'%' || dot_ok {
                o.push(c as char);
            } else {
                o.push_str(&format!("%{c:02X}"));
            }
        }
        o
    };
    let right = if right == NO_DOMAIN {
        right.to_string()
    } else {
        enc(right)
    };
    format!("<{}@{}>", enc(left), right)
}

/// The eb:MessageId of a `Message-ID` made by [`message_id_header`] (brackets optional).
pub fn eb_message_id(header: &str) -> Option<String> {
    let v = header.trim();
    let v = v.strip_prefix('<').unwrap_or(v);
    let v = v.split('>').next().unwrap_or(v).trim();
    let (left, right) = v.rsplit_once('@')?;
    if right == HASHED_DOMAIN {
        return None;
    }
    let dec = |s: &str| -> Option<String> {
        String::from_utf8(crate::bytes::percent_decode_strict(s)?).ok()
    };
    let left = dec(left)?;
    if right == NO_DOMAIN {
        return Some(left);
    }
    Some(format!("{left}@{}", dec(right)?))
}

/// The RFC 5322 date of a Unix time, in UTC.
pub fn rfc5322_date(t: i64) -> String {
    let (y, mo, d, h, mi, s) = crate::time::parts_from_unix(t);
    let days = t.div_euclid(86_400);
    // 1970-01-01 was a Thursday.
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(mo - 1).clamp(0, 11) as usize];
    format!("{wd}, {d:02} {mon} {y} {h:02}:{mi:02}:{s:02} +0000")
}

/// What the header of the mail says of the message.
struct Summary {
    message_id: String,
    ref_to: Option<String>,
    subject: String,
}

fn summary(m: &Messaging) -> Result<Summary> {
    if let Some(um) = m.user_messages.first() {
        return Ok(Summary {
            message_id: um.info.message_id.clone(),
            ref_to: um.info.ref_to_message_id.clone(),
            subject: format!(
                "AS4 {} ({}) from {}",
                printable(&um.action),
                printable(&um.service.value),
                printable(um.from.ids.first().map(|p| p.value.as_str()).unwrap_or("?")),
            ),
        });
    }
    let s = m
        .signals
        .first()
        .ok_or_else(|| Error::InvalidEbms("eb:Messaging holds no message".into()))?;
    let kind = match &s.signal {
        Signal::PullRequest { .. } => "PullRequest",
        Signal::Receipt { .. } => "Receipt",
        Signal::Error(_) => "Error",
    };
    let subject = match &s.info.ref_to_message_id {
        Some(r) => format!("AS4 {kind} for {}", printable(r)),
        None => format!("AS4 {kind}"),
    };
    Ok(Summary {
        message_id: s.info.message_id.clone(),
        ref_to: s.info.ref_to_message_id.clone(),
        subject,
    })
}

/// Append `name: value` and CRLF.
fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The Content-Type value without line folding or control characters (it goes into a header
/// line as it is).
fn one_line(ct: &str) -> Result<String> {
    if ct.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) || ct.len() > 900 {
        return Err(Error::InvalidArgument(
            "the message's Content-Type cannot stand in a mail header".into(),
        ));
    }
    Ok(ct.trim().to_string())
}

/// The mail carrying the AS4 message `body` (as POSTed with `content_type`) from `from` to
/// `to`. `InvalidArgument` for an address that cannot stand in a header; the message's own
/// errors if its header cannot be read.
pub fn compose(
    content_type: &str,
    body: &[u8],
    from: &str,
    to: &str,
    limits: &Limits,
) -> Result<Vec<u8>> {
    for a in [from, to] {
        if !is_address(a) {
            return Err(Error::InvalidArgument(format!(
                "{:?} is not a mail address (local@domain)",
                printable(a)
            )));
        }
    }
    let messaging = exchange::peek(content_type, body, limits)?;
    let sum = summary(&messaging)?;
    let ct = one_line(content_type)?;
    let mt = media_type(&ct);
    let mut out = Vec::with_capacity(body.len() * 4 / 3 + body.len() / 38 + 4096);
    field(&mut out, "From", &format!("<{from}>"));
    field(&mut out, "To", &format!("<{to}>"));
    field(&mut out, "Date", &rfc5322_date(crate::time::now_unix()));
    field(&mut out, "Message-ID", &message_id_header(&sum.message_id));
    if let Some(r) = &sum.ref_to {
        let r = message_id_header(r);
        field(&mut out, "In-Reply-To", &r);
        field(&mut out, "References", &r);
    }
    field(&mut out, "Subject", &sum.subject);
    field(&mut out, "Auto-Submitted", "auto-generated");
    field(&mut out, "MIME-Version", "1.0");
    field(&mut out, "Content-Type", &ct);
    if mt == "multipart/related" {
        let boundary = mime::param(&ct, "boundary")
            .ok_or_else(|| Error::MalformedMime("multipart/related without a boundary".into()))?;
        let parts = mime::split_multipart(body, &boundary)?;
        out.extend_from_slice(b"\r\n");
        for part in parts {
            out.extend_from_slice(b"--");
            out.extend_from_slice(boundary.as_bytes());
            out.extend_from_slice(b"\r\n");
            let e = Entity::parse(part)?;
            let decoded = e.decoded_body()?;
            for (name, value) in &e.headers {
                if name == "content-transfer-encoding" || name == "content-length" {
                    continue;
                }
                // RFC 5322 field names: printable ASCII but the colon (a bare CR in a name
                // would become a line end on the way).
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                    return Err(Error::MalformedMime(
                        "a part header name a mail cannot carry".into(),
                    ));
                }
                field(&mut out, &header_name(name), &one_line(value)?);
            }
            field(&mut out, "Content-Transfer-Encoding", "base64");
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&mime::base64_encode_mime(&decoded));
        }
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"--\r\n");
    } else {
        field(&mut out, "Content-Transfer-Encoding", "base64");
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&mime::base64_encode_mime(body));
    }
    Ok(out)
}

/// A lower-case header name as it is usually written (`content-id` → `Content-ID`).
fn header_name(n: &str) -> String {
    match n {
        "content-id" => "Content-ID".into(),
        _ => n
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                    None => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join("-"),
    }
}

/// What the mail `raw` (as fetched: header, blank line, body) carries. Never fails: what
/// cannot be read as an AS4 message or a bounce is [`Content::NotOurs`].
pub fn read(raw: &[u8], limits: &Limits) -> Content {
    match read_inner(raw, limits) {
        Ok(c) => c,
        Err(e) => Content::NotOurs(format!("not an AS4 message: {}", e.code().name())),
    }
}

fn read_inner(raw: &[u8], limits: &Limits) -> Result<Content> {
    let e = Entity::parse(raw)?;
    let ct = e.header("content-type").unwrap_or("text/plain").to_string();
    let mt = media_type(&ct);
    let message_id = e.header("message-id").and_then(eb_message_id);
    match mt.as_str() {
        "multipart/report" => Ok(match bounce(&e) {
            Some(b) => Content::Bounce(b),
            None => Content::NotOurs(
                "a delivery-status notification for a mail that is not ours".into(),
            ),
        }),
        "multipart/related" | "application/soap+xml" | "text/xml" => {
            let body = if mt == "multipart/related" {
                e.body.to_vec()
            } else {
                e.decoded_body()?.into_owned()
            };
            // Only what has an ebMS header is ours (a person's XML mail is not).
            exchange::peek(&ct, &body, limits)?;
            Ok(Content::As4 {
                content_type: ct,
                body,
                message_id,
            })
        }
        other => Ok(Content::NotOurs(format!("a {} mail", printable(other)))),
    }
}

/// The notification of a `multipart/report; report-type=delivery-status` mail, if it names a
/// mail of ours (a `Message-ID` made by [`message_id_header`] in the returned headers).
fn bounce(e: &Entity) -> Option<Bounce> {
    let ct = e.header("content-type")?;
    if !mime::param(ct, "report-type")?.eq_ignore_ascii_case("delivery-status") {
        return None;
    }
    let boundary = mime::param(ct, "boundary")?;
    let parts = mime::split_multipart(e.body, &boundary).ok()?;
    let mut b = Bounce::default();
    for part in parts {
        let Ok(p) = Entity::parse(part) else { continue };
        let Ok(body) = p.decoded_body() else { continue };
        match p.content_type().as_str() {
            "message/delivery-status" | "message/global-delivery-status" => {
                // Groups of fields separated by empty lines: the message's, then one per
                // recipient (the first failed one is taken).
                let text = body.as_ref();
                let mut rest: &[u8] = text;
                while !rest.is_empty() {
                    let Ok(group) = Entity::parse(rest) else {
                        break;
                    };
                    let get = |n: &str| group.header(n).map(|v| printable(strip_type(v)));
                    if group.header("final-recipient").is_some() || group.header("action").is_some()
                    {
                        let take = b.action.is_none()
                            || get("action").is_some_and(|a| a.eq_ignore_ascii_case("failed"))
                                && !b.is_failure();
                        if take {
                            b.recipient =
                                get("final-recipient").or_else(|| get("original-recipient"));
                            b.action = get("action").map(|a| a.to_ascii_lowercase());
                            b.status = get("status");
                            b.diagnostic = get("diagnostic-code");
                        }
                    }
                    if group.body.len() >= rest.len() {
                        break;
                    }
                    rest = group.body;
                    // Skip further empty lines between groups.
                    while let Some(r) = rest
                        .strip_prefix(b"\r\n")
                        .or_else(|| rest.strip_prefix(b"\n"))
                    {
                        rest = r;
                    }
                }
            }
            "message/rfc822" | "text/rfc822-headers" | "message/global-headers" => {
                if let Ok(orig) = Entity::parse(&body) {
                    if let Some(id) = orig.header("message-id").and_then(eb_message_id) {
                        b.message_id = Some(id);
                    }
                }
            }
            _ => {}
        }
    }
    b.message_id.as_ref()?;
    Some(b)
}

/// A DSN field's value without its type (`rfc822; bob@example.test` → `bob@example.test`).
fn strip_type(v: &str) -> &str {
    match v.split_once(';') {
        Some((t, rest)) if !t.contains(' ') && t.len() < 20 => rest.trim(),
        _ => v.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_round_trip() {
        for id in [
            "6f1c2f9e-1b7e-4f55-9d1e-1b0c5d2f7a10@acme.example",
            "no-domain",
            "with space@x",
            "a..b@c",
            ".lead@x",
            "pct%41@x",
            "ü@ex",
            "a@b@c",
        ] {
            let h = message_id_header(id);
            assert!(h.starts_with('<') && h.ends_with('>'), "{h}");
            assert!(h.is_ascii() && !h.contains(' ') && !h.contains(".."), "{h}");
            assert_eq!(eb_message_id(&h).as_deref(), Some(id), "{h}");
        }
        assert_eq!(
            message_id_header("abc@acme.example"),
            "<abc@acme.example>",
            "a usual id stays as it is"
        );
        let long = format!("{}@acme.example", "ü".repeat(300));
        let h = message_id_header(&long);
        assert!(h.len() < 100 && h.ends_with("@ebms-sha256.invalid>"), "{h}");
        assert_eq!(eb_message_id(&h), None);
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_796_601_600),
            "Mon, 07 Dec 2026 00:00:00 +0000"
        );
    }

    #[test]
    fn addresses_are_checked() {
        assert!(is_address("alice@example.test"));
        for bad in [
            "alice",
            "@x",
            "a@",
            "a b@x",
            "a@x\r\nBcc: e@f",
            "<a@x>",
            "a@x,b@y",
        ] {
            assert!(!is_address(bad), "{bad:?}");
        }
    }

    #[test]
    fn printable_cuts_line_ends() {
        assert_eq!(printable("a\r\nBcc: x"), "a??Bcc: x");
        assert_eq!(printable(&"x".repeat(500)).len(), MAX_VALUE);
    }

    #[test]
    fn a_plain_mail_is_not_ours() {
        let raw = b"From: a@b\r\nSubject: hi\r\n\r\nhello\r\n";
        assert!(matches!(read(raw, &Limits::default()), Content::NotOurs(_)));
        let xml = b"From: a@b\r\nContent-Type: text/xml\r\n\r\n<a/>\r\n";
        assert!(matches!(read(xml, &Limits::default()), Content::NotOurs(_)));
        assert!(matches!(
            read(b"\x00\x01garbage", &Limits::default()),
            Content::NotOurs(_)
        ));
    }

    #[test]
    fn a_postfix_bounce_is_recognised() {
        let raw = b"Return-Path: <>\r\n\
From: MAILER-DAEMON@example.test (Mail Delivery System)\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Auto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"B1\"\r\n\
\r\n\
--B1\r\n\
Content-Description: Notification\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
This is the mail system.\r\n\
\r\n\
--B1\r\n\
Content-Description: Delivery report\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mail.example.test\r\n\
Arrival-Date: Mon,  7 Dec 2026 13:00:00 +0000 (UTC)\r\n\
\r\n\
Final-Recipient: rfc822; svc@bounce.test\r\n\
Original-Recipient: rfc822;svc@bounce.test\r\n\
Action: failed\r\n\
Status: 5.0.0\r\n\
Diagnostic-Code: X-Postfix; mailbox unavailable\r\n\
\r\n\
--B1\r\n\
Content-Description: Undelivered Message Headers\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: <alice@example.test>\r\n\
Message-ID: <m1%20x@acme.example>\r\n\
Subject: AS4 Deliver (urn:x) from alice\r\n\
\r\n\
--B1--\r\n";
        let Content::Bounce(b) = read(raw, &Limits::default()) else {
            panic!("not a bounce")
        };
        assert_eq!(b.message_id.as_deref(), Some("m1 x@acme.example"));
        assert_eq!(b.recipient.as_deref(), Some("svc@bounce.test"));
        assert_eq!(b.status.as_deref(), Some("5.0.0"));
        assert!(b.is_failure());
        assert!(b.reason().contains("mailbox unavailable"), "{}", b.reason());
        // Without the returned headers it cannot be told whose it is.
        let at = raw
            .windows(40)
            .position(|w| w.starts_with(b"--B1\r\nContent-Description: Undel"))
            .unwrap();
        let mut cut = raw[..at].to_vec();
        cut.extend_from_slice(b"--B1--\r\n");
        assert!(matches!(
            read(&cut, &Limits::default()),
            Content::NotOurs(_)
        ));
    }
}
