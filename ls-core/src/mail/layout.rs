//! One AS4 message = one mail (docs/EMAIL.md is the contract for other implementations).
//!
//! The mail's body is the AS4 package as it would be POSTed — the same `multipart/related`
//! SOAP-with-attachments package with its parts in base64, or a lone SOAP envelope in base64 —
//! signed exactly as over HTTPS, so the same verification applies. Its header: `Message-ID`
//! from the eb:MessageId, `In-Reply-To`/`References` for a signal or co-ordination message that
//! refers to a message, `Auto-Submitted: auto-generated`, a Subject naming Service and Action.

use crate::as4::xml::Limits;
use crate::error::Result;

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

/// The mail carrying the AS4 message `body` (as POSTed with `content_type`) from `from` to `to`.
pub fn compose(
    content_type: &str,
    body: &[u8],
    from: &str,
    to: &str,
    limits: &Limits,
) -> Result<Vec<u8>> {
    let _ = (content_type, body, from, to, limits);
    todo!("layout")
}

/// What the mail `raw` (as fetched: header, blank line, body) carries. Never fails: what
/// cannot be read as an AS4 message or a bounce is [`Content::NotOurs`].
pub fn read(raw: &[u8], limits: &Limits) -> Content {
    let _ = (raw, limits);
    todo!("layout")
}
