//! What the client and the Messaging Service agree on beyond ebMS3 itself: size limits, the
//! Layer Security ebMS error codes, and co-ordination messages between end points.
//!
//! # Sizes
//!
//! The service has one limit for a whole message (`limits.max_message_bytes`; a larger upload
//! is answered with HTTP 413 naming it in [`MAX_MESSAGE_BYTES_HEADER`]). A client has one limit
//! for a document (`[limits] max_document_bytes`), which is also part of its party's
//! registration at the service: a message larger than [`message_limit_for`] that limit is
//! refused at push time with [`errors::RECIPIENT_LIMIT`], so the service never accepts what its
//! recipient cannot take.
//!
//! # Refusal notices
//!
//! A recipient that refuses a message for good (too large, cannot be opened, a known partner's
//! bad signature, its policy) answers it with one *refusal notice*: an ordinary signed
//! UserMessage from the recipient to the sender, Service [`SERVICE`], Action
//! [`ACTION_REFUSAL`], `RefToMessageId` the refused message, no payload, and two message
//! properties: [`PROP_PAYLOAD_SHA256`] (hex SHA-256 of the payload bytes it received) and
//! [`PROP_FAILURE_CLASS`] (a [`FailureClass`]). The service, seeing that the notice comes from
//! a recipient of the message it names and goes to that message's sender, marks the message
//! failed (it is not offered again) and routes the notice to the sender like any message; the
//! sender verifies the recipient's signature and records the refusal on its sent document.
//!
//! # Signed receipts
//!
//! A recipient that verified, opened and stored a document answers it with a *signed receipt*
//! ([`receipt_message`], [`read_receipt`]): an ordinary signed UserMessage from the recipient
//! to the sender, Service [`SERVICE`], Action [`ACTION_RECEIPT`], `RefToMessageId` the
//! receipted message, the message properties [`PROP_PAYLOAD_SHA256`], [`PROP_DISPOSITION`]
//! (`processed`) and [`PROP_RECEIVED_AT`] (an xsd:dateTime), and one payload, the RFC 2634
//! (ESS) signed receipt ([`RECEIPT_CONTENT_TYPE`]). The refusal notice is the `failed`
//! disposition. The service routes it like a refusal notice (it must name a document it holds
//! or held, sent by the receipt's To party to its From party, neither refused nor receipted
//! yet) and records on that document that a receipt went back. Co-ordination messages are at
//! most [`MAX_COORDINATION_BYTES`] as pushed; a larger one is refused with
//! [`errors::COORDINATION_TOO_LARGE`].
//!
//! # Refusing a message that cannot be read
//!
//! Both ends refuse what they cannot read or authenticate — the service a push or a pull, a
//! client a pulled message — and tell the failure the same way: [`MessageFailure::of`] sorts an
//! [`Error`] into one family, which names the ebMS error of the answer
//! ([`MessageFailure::ebms_code`]), the reason the service counts and logs
//! ([`MessageFailure::reason`]) and the class of a client's refusal notice
//! ([`MessageFailure::class`]). What each end may reveal (the service: one uniform refusal until
//! a signature verifies; a client: nothing but that about an unknown sender) is that end's rule.

use super::model::{Property, UserMessage};
use crate::error::{Error, ErrorCode, Result};

/// The HTTP response header of a 413 that states the service's limit in bytes.
pub const MAX_MESSAGE_BYTES_HEADER: &str = "LayerSec-Max-Message-Bytes";

/// What a message may add to a document: the AS4 envelope and MIME framing, the CMS layers and
/// their certificates. A party that accepts documents of `n` bytes accepts messages of
/// `n + MESSAGE_OVERHEAD`.
pub const MESSAGE_OVERHEAD: u64 = 1 << 20;

/// The largest message (pull response, push) that carries a document of at most
/// `max_document_bytes`.
pub fn message_limit_for(max_document_bytes: u64) -> u64 {
    max_document_bytes.saturating_add(MESSAGE_OVERHEAD)
}

/// The default document limit of a client (`[limits] max_document_bytes`), of `layersec open
/// --max-size`, and of a party registered without one: 4 GiB. The service's default
/// `limits.max_message_bytes` is [`message_limit_for`] it, so that the two agree. (Messages
/// are streamed through the transport and the service: the limit is not an amount of memory.)
pub const DEFAULT_MAX_DOCUMENT_BYTES: u64 = 4 << 30;

/// ebMS `errorCode`s of Layer Security, for refusals ebMS3 has no code of its own for. They
/// are failures (severity `failure`) and permanent: sending the same message again cannot
/// succeed.
pub mod errors {
    /// The message is larger than its recipient accepts (its registered document limit plus
    /// [`super::MESSAGE_OVERHEAD`]).
    pub const RECIPIENT_LIMIT: &str = "LS:0001";
    /// The sender's account holds more undelivered bytes at the service than its quota allows.
    /// Permanent for this message as sent; the client reports it and does not retry.
    pub const QUOTA_EXCEEDED: &str = "LS:0002";
    /// The MessageId was already used by this sender for a message with other content or for
    /// another recipient.
    pub const MESSAGE_ID_REUSED: &str = "LS:0003";
    /// The message was refused by its recipient (a refusal notice names the class).
    pub const REFUSED_BY_RECIPIENT: &str = "LS:0004";
    /// A co-ordination message is larger than [`super::MAX_COORDINATION_BYTES`].
    pub const COORDINATION_TOO_LARGE: &str = "LS:0005";

    /// Whether `code` is one of ours.
    pub fn is_layersec(code: &str) -> bool {
        code.starts_with("LS:")
    }
}

/// The Service of co-ordination messages between end points.
pub const SERVICE: &str = "urn:layersec:coordination";
/// The Action of a refusal notice.
pub const ACTION_REFUSAL: &str = "RefusalNotice";
/// Message property: hex SHA-256 of the refused message's payload bytes as received.
pub const PROP_PAYLOAD_SHA256: &str = "PayloadSHA256";
/// Message property: the [`FailureClass`].
pub const PROP_FAILURE_CLASS: &str = "FailureClass";

/// Why a recipient refused a message for good. The classes say nothing about which
/// cryptographic step failed: everything from decryption on (key unwrap, content decryption,
/// the inner signature, the document's format) is [`FailureClass::CannotOpen`], so that a
/// sender cannot use refusals as a padding or decryption oracle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Larger than the recipient accepts (the message, or the document it expands to).
    TooLarge,
    /// The message's signature does not verify against the certificate the recipient holds
    /// for its sender (checked before anything is decrypted).
    NotTrusted,
    /// The recipient's policy refuses the message as it stands (checked before anything is
    /// decrypted): e.g. an algorithm it does not accept, not exactly one payload.
    Policy,
    /// The AS4 message itself is malformed.
    Malformed,
    /// The document cannot be opened: decryption, its signature or its format.
    CannotOpen,
    /// Handling the message stopped the recipient's client more than once; it was set aside.
    Quarantined,
}

impl FailureClass {
    pub const ALL: [FailureClass; 6] = [
        FailureClass::TooLarge,
        FailureClass::NotTrusted,
        FailureClass::Policy,
        FailureClass::Malformed,
        FailureClass::CannotOpen,
        FailureClass::Quarantined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::TooLarge => "too_large",
            FailureClass::NotTrusted => "not_trusted",
            FailureClass::Policy => "policy",
            FailureClass::Malformed => "malformed",
            FailureClass::CannotOpen => "cannot_open",
            FailureClass::Quarantined => "quarantined",
        }
    }

    pub fn parse(s: &str) -> Option<FailureClass> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// What the class means, for people.
    pub fn describe(self) -> &'static str {
        match self {
            FailureClass::TooLarge => "it is larger than the recipient accepts",
            FailureClass::NotTrusted => {
                "its signature does not verify against the certificate the recipient holds for \
                 the sender"
            }
            FailureClass::Policy => "the recipient's policy does not accept it",
            FailureClass::Malformed => "the message is malformed",
            FailureClass::CannotOpen => "the recipient cannot open the document",
            FailureClass::Quarantined => {
                "handling it stopped the recipient's client; it was set aside"
            }
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The family of a failure to read or authenticate an AS4 message: the one mapping from an
/// [`ErrorCode`] to what the service and a client answer with. Nothing of the document has been
/// decrypted when these are told (see [`FailureClass`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageFailure {
    /// Larger than accepted (the message, a part, or what it expands to).
    TooLarge,
    /// The signature does not verify against the certificates held for the signer, or there
    /// are none to check it with: `EBMS:0101` FailedAuthentication.
    Authentication,
    /// Signed, but not as the policy requires: no signature, an unsigned part, signature
    /// wrapping: `EBMS:0103` PolicyNoncompliance.
    Unsigned,
    /// A weak or unknown algorithm: `EBMS:0103` PolicyNoncompliance.
    Algorithm,
    /// A part WS-Security-encrypted for the reader cannot be decrypted (a client reads these
    /// while it reads the message; the service never decrypts).
    Decryption,
    /// The ebMS header is missing or wrong: `EBMS:0009` InvalidHeader.
    InvalidHeader,
    /// Anything else about the form (MIME, XML, SOAP): `EBMS:0004` Other.
    Malformed,
}

impl MessageFailure {
    /// The family of `e`.
    pub fn of(e: &Error) -> MessageFailure {
        use ErrorCode as C;
        match e.code() {
            C::TooLarge | C::ExpansionTooLarge => MessageFailure::TooLarge,
            C::BadSignature
            | C::SignerMismatch
            | C::UnknownSigner
            | C::CertNotFound
            | C::CertUntrusted
            | C::CertExpired
            | C::CertNotYetValid
            | C::CertKeyUsage
            | C::CertInvalid
            | C::DigestMismatch => MessageFailure::Authentication,
            C::SignatureRequired | C::Unsigned | C::UnsignedPart | C::SignatureWrapping => {
                MessageFailure::Unsigned
            }
            C::WeakAlgorithm | C::UnsupportedAlgorithm => MessageFailure::Algorithm,
            C::DecryptFailed | C::KeyUnwrapFailed | C::NotARecipient => MessageFailure::Decryption,
            C::InvalidEbms => MessageFailure::InvalidHeader,
            _ => MessageFailure::Malformed,
        }
    }

    /// The ebMS `errorCode` that answers it. A decryption failure is `EBMS:0004` (Other), not
    /// `EBMS:0102` FailedDecryption: which step failed is not told.
    pub fn ebms_code(self) -> &'static str {
        match self {
            MessageFailure::Authentication => "EBMS:0101",
            MessageFailure::Unsigned | MessageFailure::Algorithm => "EBMS:0103",
            MessageFailure::InvalidHeader => "EBMS:0009",
            MessageFailure::TooLarge | MessageFailure::Decryption | MessageFailure::Malformed => {
                "EBMS:0004"
            }
        }
    }

    /// A short name for logs and metrics (the service's
    /// `layersec_messages_rejected_total{reason}`).
    pub fn reason(self) -> &'static str {
        match self {
            MessageFailure::TooLarge => "too_large",
            MessageFailure::Authentication => "authentication",
            MessageFailure::Unsigned | MessageFailure::Algorithm => "policy",
            MessageFailure::Decryption => "cannot_open",
            MessageFailure::InvalidHeader => "invalid_header",
            MessageFailure::Malformed => "malformed",
        }
    }

    /// The class of a refusal notice about it. A message that is not signed as required is
    /// `not_trusted` (its sender cannot be believed); only algorithms are `policy`.
    pub fn class(self) -> FailureClass {
        match self {
            MessageFailure::TooLarge => FailureClass::TooLarge,
            MessageFailure::Authentication | MessageFailure::Unsigned => FailureClass::NotTrusted,
            MessageFailure::Algorithm => FailureClass::Policy,
            MessageFailure::Decryption => FailureClass::CannotOpen,
            MessageFailure::InvalidHeader | MessageFailure::Malformed => FailureClass::Malformed,
        }
    }
}

/// The content of a refusal notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusalNotice {
    /// The refused message.
    pub message_id: String,
    /// Hex SHA-256 of its payload bytes as the recipient received them (of the whole message
    /// body when it could not be split into parts).
    pub payload_sha256: String,
    pub class: FailureClass,
}

/// The header of a refusal notice from `from` (the refusing recipient) to `to` (the sender of
/// the refused message). Build it with [`super::message::build`] and no payloads.
pub fn refusal_notice(
    from: &str,
    to: &str,
    notice: &RefusalNotice,
    domain: &str,
) -> Result<UserMessage> {
    let mut um = super::exchange::user_message(from, to, SERVICE, ACTION_REFUSAL, "", domain)?;
    um.info.ref_to_message_id = Some(notice.message_id.clone());
    um.properties = vec![
        Property::new(PROP_PAYLOAD_SHA256, &notice.payload_sha256),
        Property::new(PROP_FAILURE_CLASS, notice.class.as_str()),
    ];
    Ok(um)
}

/// What every co-ordination message about a message names: its RefToMessageId and the hex
/// SHA-256 of its payload (the `PayloadSHA256` property), as given.
fn reference_and_digest<'a>(um: &'a UserMessage, kind: &str) -> Result<(String, &'a str)> {
    let bad = |what: &str| Error::InvalidEbms(format!("{kind}: {what}"));
    let message_id = um
        .info
        .ref_to_message_id
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("no RefToMessageId"))?;
    let sha = um
        .property(PROP_PAYLOAD_SHA256)
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| bad("no hex SHA-256 in PayloadSHA256"))?;
    Ok((message_id, sha))
}

/// Whether a UserMessage is a co-ordination message (not a document for the inbox).
pub fn is_coordination(um: &UserMessage) -> bool {
    um.service.value == SERVICE
}

/// The refusal notice a UserMessage carries: `None` when it is not one, `Err` when it says it
/// is one but is not well formed.
pub fn read_refusal(um: &UserMessage) -> Option<Result<RefusalNotice>> {
    if !is_coordination(um) || um.action != ACTION_REFUSAL {
        return None;
    }
    Some((|| {
        let bad = |what: &str| Error::InvalidEbms(format!("refusal notice: {what}"));
        let (message_id, sha) = reference_and_digest(um, "refusal notice")?;
        let class = um
            .property(PROP_FAILURE_CLASS)
            .and_then(FailureClass::parse)
            .ok_or_else(|| bad("no known FailureClass"))?;
        if !um.payloads.is_empty() {
            return Err(bad("a refusal notice has no payload"));
        }
        Ok(RefusalNotice {
            message_id,
            payload_sha256: sha.to_ascii_lowercase(),
            class,
        })
    })())
}

/// The Action of a signed receipt (RFC 2634 ESS) of a document: one payload, the receipt
/// (a CMS SignedData of content type id-ct-receipt), Content-Type [`RECEIPT_CONTENT_TYPE`].
pub const ACTION_RECEIPT: &str = "Receipt";
/// Message property of a receipt: `processed` (verified, opened and durably stored).
pub const PROP_DISPOSITION: &str = "Disposition";
/// Message property of a receipt: when the document was stored (xsd:dateTime).
pub const PROP_RECEIVED_AT: &str = "ReceivedAt";
/// The Content-Type of a receipt's payload.
pub const RECEIPT_CONTENT_TYPE: &str = "application/pkcs7-mime; smime-type=signed-receipt";
/// The one disposition a receipt carries (a refusal notice is the `failed` one).
pub const DISPOSITION_PROCESSED: &str = "processed";
/// The largest co-ordination message (a receipt with its certificates is a few KB): they are
/// metered apart from documents, so they must not carry documents.
pub const MAX_COORDINATION_BYTES: u64 = 256 << 10;

/// What a receipt's header says beside the ESS receipt it carries, signed by the recipient with
/// the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptHeader {
    /// The original message.
    pub message_id: String,
    /// Hex SHA-256 of the original's payload bytes as the recipient received them.
    pub payload_sha256: String,
    /// [`DISPOSITION_PROCESSED`].
    pub disposition: String,
    /// When the recipient stored the document (xsd:dateTime).
    pub received_at: String,
}

/// The header of a signed receipt from `from` (the recipient of the original) to `to` (its
/// sender). Build it with [`super::message::build`] and the ESS receipt as the one payload.
pub fn receipt_message(
    from: &str,
    to: &str,
    h: &ReceiptHeader,
    domain: &str,
) -> Result<UserMessage> {
    let mut um = super::exchange::user_message(from, to, SERVICE, ACTION_RECEIPT, "", domain)?;
    um.info.ref_to_message_id = Some(h.message_id.clone());
    um.properties = vec![
        Property::new(PROP_PAYLOAD_SHA256, &h.payload_sha256),
        Property::new(PROP_DISPOSITION, &h.disposition),
        Property::new(PROP_RECEIVED_AT, &h.received_at),
    ];
    Ok(um)
}

/// The receipt header a UserMessage carries: `None` when it is not a receipt, `Err` when it
/// says it is one but is not well formed.
pub fn read_receipt(um: &UserMessage) -> Option<Result<ReceiptHeader>> {
    if !is_coordination(um) || um.action != ACTION_RECEIPT {
        return None;
    }
    Some((|| {
        let bad = |what: &str| Error::InvalidEbms(format!("receipt: {what}"));
        let (message_id, sha) = reference_and_digest(um, "receipt")?;
        let disposition = um
            .property(PROP_DISPOSITION)
            .filter(|d| *d == DISPOSITION_PROCESSED)
            .ok_or_else(|| bad("no Disposition \"processed\""))?;
        let received_at = um.property(PROP_RECEIVED_AT).unwrap_or("");
        if um.payloads.len() != 1 {
            return Err(bad("one payload, the signed receipt, is expected"));
        }
        Ok(ReceiptHeader {
            message_id,
            payload_sha256: sha.to_ascii_lowercase(),
            disposition: disposition.to_string(),
            received_at: received_at.to_string(),
        })
    })())
}

/// The Action of a certificate update ([`crate::rollover`]): a party tells a partner its new
/// certificate. Signed (AS4) by the party's old key; one payload, the statement counter-signed
/// by the new key ([`crate::rollover::UPDATE_CONTENT_TYPE`]); message properties
/// [`PROP_NEW_CERTIFICATE_SHA256`] and [`PROP_OLD_VALID_UNTIL`], so that the service can check
/// the new certificate is the one registered for the party (it does not read the payload).
pub const ACTION_CERTIFICATE_UPDATE: &str = "CertificateUpdate";
/// The Action of a partner's answer to a certificate update: no payload, `RefToMessageId` the
/// update, message properties [`PROP_PAYLOAD_SHA256`] (of the update's payload as received),
/// [`PROP_NEW_CERTIFICATE_SHA256`], [`PROP_DECISION`] and, when rejected, [`PROP_REASON`].
pub const ACTION_CERTIFICATE_UPDATE_ANSWER: &str = "CertificateUpdateAnswer";
/// Message property: hex SHA-256 of the new certificate's DER.
pub const PROP_NEW_CERTIFICATE_SHA256: &str = "NewCertificateSHA256";
/// Message property: until when the old certificate stays valid (xsd:dateTime).
pub const PROP_OLD_VALID_UNTIL: &str = "OldValidUntil";
/// Message property of an answer: [`DECISION_ACCEPTED`] or [`DECISION_REJECTED`].
pub const PROP_DECISION: &str = "Decision";
/// Message property of a rejection: a [`crate::rollover::UpdateReason`].
pub const PROP_REASON: &str = "Reason";
/// The update was applied: the new certificate is the party's current one at the partner.
pub const DECISION_ACCEPTED: &str = "accepted";
/// The update was not applied: the certificate the partner holds is unchanged.
pub const DECISION_REJECTED: &str = "rejected";

/// What a certificate update's header says beside its statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateHeader {
    pub new_certificate_sha256: String,
    /// xsd:dateTime.
    pub old_valid_until: String,
}

/// The header of a certificate update from `from` (the party rolling over) to `to` (a
/// partner). Build it with [`super::message::build`], signed by the old key, with the
/// counter-signed statement as the one payload.
pub fn certificate_update_message(
    from: &str,
    to: &str,
    h: &UpdateHeader,
    domain: &str,
) -> Result<UserMessage> {
    let mut um =
        super::exchange::user_message(from, to, SERVICE, ACTION_CERTIFICATE_UPDATE, "", domain)?;
    um.properties = vec![
        Property::new(PROP_NEW_CERTIFICATE_SHA256, &h.new_certificate_sha256),
        Property::new(PROP_OLD_VALID_UNTIL, &h.old_valid_until),
    ];
    Ok(um)
}

fn sha256_property<'a>(um: &'a UserMessage, name: &str, kind: &str) -> Result<&'a str> {
    um.property(name)
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| Error::InvalidEbms(format!("{kind}: no hex SHA-256 in {name}")))
}

/// The certificate update a UserMessage carries: `None` when it is not one, `Err` when it says
/// it is one but is not well formed.
pub fn read_certificate_update(um: &UserMessage) -> Option<Result<UpdateHeader>> {
    if !is_coordination(um) || um.action != ACTION_CERTIFICATE_UPDATE {
        return None;
    }
    Some((|| {
        let kind = "certificate update";
        let sha = sha256_property(um, PROP_NEW_CERTIFICATE_SHA256, kind)?;
        let until = um
            .property(PROP_OLD_VALID_UNTIL)
            .filter(|t| crate::time::parse_date_time(t).is_some())
            .ok_or_else(|| {
                Error::InvalidEbms(format!("{kind}: no xsd:dateTime in {PROP_OLD_VALID_UNTIL}"))
            })?;
        if um.payloads.len() != 1 {
            return Err(Error::InvalidEbms(format!(
                "{kind}: one payload, the counter-signed statement, is expected"
            )));
        }
        Ok(UpdateHeader {
            new_certificate_sha256: sha.to_ascii_lowercase(),
            old_valid_until: until.to_string(),
        })
    })())
}

/// A partner's answer to a certificate update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateAnswer {
    /// The update answered.
    pub message_id: String,
    /// Hex SHA-256 of the update's payload as the partner received it.
    pub payload_sha256: String,
    pub new_certificate_sha256: String,
    /// [`DECISION_ACCEPTED`] or [`DECISION_REJECTED`].
    pub decision: String,
    /// Why, when rejected (a [`crate::rollover::UpdateReason`]); empty when accepted.
    pub reason: String,
}

impl UpdateAnswer {
    pub fn accepted(&self) -> bool {
        self.decision == DECISION_ACCEPTED
    }
}

/// The header of an answer from `from` (the partner) to `to` (the party that rolls over).
/// Build it with [`super::message::build`] and no payloads.
pub fn update_answer_message(
    from: &str,
    to: &str,
    a: &UpdateAnswer,
    domain: &str,
) -> Result<UserMessage> {
    let mut um = super::exchange::user_message(
        from,
        to,
        SERVICE,
        ACTION_CERTIFICATE_UPDATE_ANSWER,
        "",
        domain,
    )?;
    um.info.ref_to_message_id = Some(a.message_id.clone());
    um.properties = vec![
        Property::new(PROP_PAYLOAD_SHA256, &a.payload_sha256),
        Property::new(PROP_NEW_CERTIFICATE_SHA256, &a.new_certificate_sha256),
        Property::new(PROP_DECISION, &a.decision),
    ];
    if !a.reason.is_empty() {
        um.properties.push(Property::new(PROP_REASON, &a.reason));
    }
    Ok(um)
}

/// The answer a UserMessage carries: `None` when it is not one, `Err` when it says it is one
/// but is not well formed.
pub fn read_update_answer(um: &UserMessage) -> Option<Result<UpdateAnswer>> {
    if !is_coordination(um) || um.action != ACTION_CERTIFICATE_UPDATE_ANSWER {
        return None;
    }
    Some((|| {
        let kind = "certificate update answer";
        let bad = |what: &str| Error::InvalidEbms(format!("{kind}: {what}"));
        let (message_id, sha) = reference_and_digest(um, kind)?;
        let new = sha256_property(um, PROP_NEW_CERTIFICATE_SHA256, kind)?;
        let decision = um
            .property(PROP_DECISION)
            .filter(|d| *d == DECISION_ACCEPTED || *d == DECISION_REJECTED)
            .ok_or_else(|| bad("no Decision \"accepted\" or \"rejected\""))?;
        let reason = um.property(PROP_REASON).unwrap_or("");
        if decision == DECISION_REJECTED && reason.is_empty() {
            return Err(bad("a rejection names its Reason"));
        }
        if reason.len() > 64 || reason.chars().any(|c| c.is_control()) {
            return Err(bad("Reason: at most 64 characters"));
        }
        if !um.payloads.is_empty() {
            return Err(bad("an answer has no payload"));
        }
        Ok(UpdateAnswer {
            message_id,
            payload_sha256: sha.to_ascii_lowercase(),
            new_certificate_sha256: new.to_ascii_lowercase(),
            decision: decision.to_string(),
            reason: reason.to_string(),
        })
    })())
}

/// The PartyId (no type) the service names itself with in the certificate updates of its own
/// signing key ([`ACTION_CERTIFICATE_UPDATE`] from the service to each party; no party of a
/// service has this id).
pub const SERVICE_PARTY: &str = "urn:layersec:service";

/// The co-ordination Actions a service routes, and a client reads.
pub const ACTIONS: &[&str] = &[
    ACTION_REFUSAL,
    ACTION_RECEIPT,
    ACTION_CERTIFICATE_UPDATE,
    ACTION_CERTIFICATE_UPDATE_ANSWER,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_trip() {
        for c in FailureClass::ALL {
            assert_eq!(FailureClass::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        assert_eq!(FailureClass::parse("decrypt_failed"), None);
    }

    /// The one mapping, where the service's and the client's tables disagreed: `CertNotFound`
    /// is an authentication failure (the client's), `InvalidEbms` an invalid header and a bad
    /// signature `EBMS:0101` (the service's); the notice classes are the client's.
    #[test]
    fn read_failures_map_to_one_ebms_error_reason_and_class() {
        let f = |e: Error| {
            let m = MessageFailure::of(&e);
            (m.ebms_code(), m.reason(), m.class())
        };
        use FailureClass as K;
        let s = String::new;
        assert_eq!(
            f(Error::TooLarge(s())),
            ("EBMS:0004", "too_large", K::TooLarge)
        );
        assert_eq!(
            f(Error::ExpansionTooLarge(s())),
            ("EBMS:0004", "too_large", K::TooLarge)
        );
        for e in [
            Error::BadSignature(s()),
            Error::UnknownSigner(s()),
            Error::CertNotFound(s()),
            Error::CertExpired(s()),
            Error::DigestMismatch(s()),
        ] {
            assert_eq!(f(e), ("EBMS:0101", "authentication", K::NotTrusted));
        }
        for e in [
            Error::SignatureRequired(s()),
            Error::UnsignedPart(s()),
            Error::SignatureWrapping(s()),
        ] {
            assert_eq!(f(e), ("EBMS:0103", "policy", K::NotTrusted));
        }
        assert_eq!(
            f(Error::WeakAlgorithm(s())),
            ("EBMS:0103", "policy", K::Policy)
        );
        assert_eq!(
            f(Error::DecryptFailed(s())),
            ("EBMS:0004", "cannot_open", K::CannotOpen)
        );
        assert_eq!(
            f(Error::InvalidEbms(s())),
            ("EBMS:0009", "invalid_header", K::Malformed)
        );
        assert_eq!(
            f(Error::Malformed(s())),
            ("EBMS:0004", "malformed", K::Malformed)
        );
    }

    #[test]
    fn receipt_header_round_trip() {
        let h = ReceiptHeader {
            message_id: "m3@example".into(),
            payload_sha256: "cd".repeat(32),
            disposition: DISPOSITION_PROCESSED.into(),
            received_at: "2026-12-07T06:00:00Z".into(),
        };
        let mut um = receipt_message("rcpt", "sndr", &h, "example").unwrap();
        // A receipt without its payload is not one.
        assert!(read_receipt(&um).unwrap().is_err());
        um.payloads.push(crate::as4::model::PartInfo {
            href: Some("cid:r@example".into()),
            schema: None,
            properties: Vec::new(),
            description: None,
        });
        assert_eq!(read_receipt(&um).unwrap().unwrap(), h);
        assert!(read_refusal(&um).is_none());
        let mut bad = um.clone();
        bad.properties.retain(|p| p.name != PROP_DISPOSITION);
        assert!(read_receipt(&bad).unwrap().is_err());
    }

    #[test]
    fn certificate_update_and_answer_headers_round_trip() {
        let h = UpdateHeader {
            new_certificate_sha256: "ab".repeat(32),
            old_valid_until: "2026-12-14T07:00:00Z".into(),
        };
        let mut um = certificate_update_message("acme", "globex", &h, "example").unwrap();
        assert!(read_certificate_update(&um).unwrap().is_err(), "no payload");
        um.payloads.push(crate::as4::model::PartInfo {
            href: Some("cid:u@example".into()),
            schema: None,
            properties: Vec::new(),
            description: None,
        });
        assert_eq!(read_certificate_update(&um).unwrap().unwrap(), h);
        assert!(read_update_answer(&um).is_none() && read_receipt(&um).is_none());
        let mut bad = um.clone();
        bad.properties.retain(|p| p.name != PROP_OLD_VALID_UNTIL);
        assert!(read_certificate_update(&bad).unwrap().is_err());

        let a = UpdateAnswer {
            message_id: um.info.message_id.clone(),
            payload_sha256: "cd".repeat(32),
            new_certificate_sha256: "ab".repeat(32),
            decision: DECISION_REJECTED.into(),
            reason: "replayed".into(),
        };
        let am = update_answer_message("globex", "acme", &a, "example").unwrap();
        assert_eq!(read_update_answer(&am).unwrap().unwrap(), a);
        assert!(!a.accepted());
        let mut no_reason = am.clone();
        no_reason.properties.retain(|p| p.name != PROP_REASON);
        assert!(read_update_answer(&no_reason).unwrap().is_err());
        let mut maybe = am;
        for p in &mut maybe.properties {
            if p.name == PROP_DECISION {
                p.value = "maybe".into();
            }
        }
        assert!(read_update_answer(&maybe).unwrap().is_err());
    }

    #[test]
    fn notice_header_round_trip() {
        let n = RefusalNotice {
            message_id: "m1@example".into(),
            payload_sha256: "ab".repeat(32),
            class: FailureClass::CannotOpen,
        };
        let um = refusal_notice("rcpt", "sndr", &n, "example").unwrap();
        assert_eq!(um.info.ref_to_message_id.as_deref(), Some("m1@example"));
        assert_eq!(read_refusal(&um).unwrap().unwrap(), n);
        let mut bad = um.clone();
        bad.properties.retain(|p| p.name != PROP_FAILURE_CLASS);
        assert!(read_refusal(&bad).unwrap().is_err());
        let mut other = um;
        other.action = "Something".into();
        assert!(read_refusal(&other).is_none());
        assert_eq!(message_limit_for(u64::MAX), u64::MAX);
    }

    #[test]
    fn notice_is_a_signed_message_without_payloads() {
        use crate::as4::envelope::SoapVersion;
        use crate::as4::message::{self, Outgoing, ReadOptions};
        use crate::as4::model::Messaging;
        use crate::as4::wss::VerifyPolicy;
        use crate::keys::{Identity, KeyType};
        let me = Identity::generate("rcpt", KeyType::EcP256, 2, None)
            .unwrap()
            .identity;
        let n = RefusalNotice {
            message_id: "m2@example".into(),
            payload_sha256: "0f".repeat(32),
            class: FailureClass::TooLarge,
        };
        let built = message::build(Outgoing {
            messaging: Messaging {
                user_messages: vec![refusal_notice("rcpt", "sndr", &n, "example").unwrap()],
                signals: Vec::new(),
            },
            payloads: Vec::new(),
            signer: &me,
            encrypt_for: None,
            soap: SoapVersion::Soap12,
        })
        .unwrap();
        let read = message::read(
            &built.content_type,
            &built.body,
            &ReadOptions {
                policy: VerifyPolicy {
                    signer: Some(me.certificate()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap();
        let um = &read.messaging.user_messages[0];
        assert!(is_coordination(um));
        assert_eq!(read_refusal(um).unwrap().unwrap(), n);
    }
}
