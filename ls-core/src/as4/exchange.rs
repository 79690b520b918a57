//! The AS4 exchange with a Messaging Service, from both sides.
//!
//! - The service authenticates what it receives with [`authenticate`]: the signature is checked
//!   against the certificates registered for the party the (not yet trusted) header names, and
//!   answers with [`receipt_for`], [`error_signal`] or the stored message.
//! - A client pushes with [`Exchange::push`] (and checks the service's signed receipt), pulls
//!   with [`Exchange::pull`] and confirms delivery with [`Exchange::post_receipt`].
//!
//! Message ids, MPCs and party ids are the sender's; the service never rewrites a message.

use super::envelope::{self, SoapVersion};
use super::message::{self, Built, Incoming, Outgoing, ReadOptions};
use super::model::{
    EbmsError, MessageInfo, Messaging, Party, PartyId, ReceiptRef, Service, Severity, Signal,
    SignalMessage, Transform, UserMessage,
};
use super::package::{self, Package};
use super::spool::{SpooledPackage, Spooler};
use super::wss::{self, CoveredParts, PartContent, Verified, VerifyPolicy};
use super::xml::{self, Limits};
use crate::cert::{CertStore, Certificate};
use crate::error::{Error, ErrorCode, Result};
use crate::keys::Identity;
use crate::transport::{read_error, Carrier, HttpResponse, Outbound, Oversized, StreamingResponse};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The MPC where messages for a party wait at a Layer Security service:
/// `urn:layersec:mpc:<party id>` (characters outside the URN set percent-encoded).
pub fn party_mpc(party_id: &str) -> String {
    let id = crate::bytes::percent_encode(party_id, b"-._~:@!$&'()*+,;=/");
    format!("urn:layersec:mpc:{id}")
}

/// The default initiator role of ebMS3.
pub const ROLE_INITIATOR: &str =
    "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/initiator";
/// The default responder role of ebMS3.
pub const ROLE_RESPONDER: &str =
    "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/responder";

/// A UserMessage header from `from` to `to` (party ids without a type), with a new MessageId
/// in `domain` and the conversation `conversation` (a new one when empty). Payloads are added
/// by [`message::build`].
pub fn user_message(
    from: &str,
    to: &str,
    service: &str,
    action: &str,
    conversation: &str,
    domain: &str,
) -> Result<UserMessage> {
    let party = |id: &str, role: &str| Party {
        ids: vec![PartyId {
            value: id.to_string(),
            r#type: None,
        }],
        role: role.to_string(),
    };
    let message_id = super::model::new_message_id(domain)?;
    Ok(UserMessage {
        info: MessageInfo {
            timestamp: super::model::timestamp_now(),
            message_id: message_id.clone(),
            ref_to_message_id: None,
        },
        mpc: None,
        from: party(from, ROLE_INITIATOR),
        to: party(to, ROLE_RESPONDER),
        agreement_ref: None,
        service: Service {
            value: service.to_string(),
            r#type: None,
        },
        action: action.to_string(),
        conversation_id: if conversation.is_empty() {
            message_id
        } else {
            conversation.to_string()
        },
        properties: Vec::new(),
        payloads: Vec::new(),
    })
}

/// A message whose signature was checked against the party it claims to come from.
#[derive(Debug)]
pub struct Authenticated {
    pub soap: SoapVersion,
    /// The header, covered by the verified signature.
    pub messaging: Messaging,
    pub verified: Verified,
    /// The payloads are WS-Security encrypted for the recipient: their signed digests (over the
    /// plaintext) could not be checked here and are listed in `verified.unchecked`.
    pub encrypted: bool,
}

/// Parse a message and check its signature against the certificates `trust` returns for its
/// header. `trust` sees the header before the signature is checked: it may only use it to
/// choose whom to believe (the registered certificates of the party it names). Every
/// attachment must be covered by the signature; when the payloads are encrypted for someone
/// else, their digests are left to the recipient (see [`Authenticated::encrypted`]).
pub fn authenticate<F>(
    content_type: &str,
    body: &[u8],
    limits: &Limits,
    trust: F,
) -> Result<Authenticated>
where
    F: FnOnce(&Messaging) -> Result<Vec<Certificate>>,
{
    let pkg = Package::parse(content_type, body, limits)?;
    let attachments: Vec<(&str, PartContent)> = pkg
        .attachments
        .iter()
        .map(|a| (a.content_id.as_str(), PartContent::Bytes(&a.data)))
        .collect();
    authenticate_parts(&pkg.soap, Some(&attachments), limits, trust)
}

/// [`authenticate`] for a message received into the spool file `spool`
/// ([`super::spool::Spooler`]): the attachments' digests were computed as the body arrived,
/// so nothing of them is read again.
pub fn authenticate_spooled<F>(
    pkg: &SpooledPackage,
    spool: &Path,
    limits: &Limits,
    trust: F,
) -> Result<Authenticated>
where
    F: FnOnce(&Messaging) -> Result<Vec<Certificate>>,
{
    authenticate_parts(&pkg.soap, Some(&pkg.parts(spool)), limits, trust)
}

/// The pre-check of a message still arriving, once its SOAP part is whole (a service
/// refusing a stranger's upload before it is spooled whole, [`Spooler::soap_part`]): the
/// header is parsed and the signer chosen by `trust` as [`authenticate`] does, and the
/// signature over SignedInfo and the digests of its same-document references (`eb:Messaging`,
/// the Body) are verified; the attachment references are left unchecked
/// (`verified.unchecked`), not accepted — their digests are known only when the body is in.
/// Every failure here is one [`authenticate_spooled`] would return for the whole message;
/// success accepts nothing: the whole message must still pass [`authenticate_spooled`].
pub fn precheck_soap_part<F>(soap: &[u8], limits: &Limits, trust: F) -> Result<Authenticated>
where
    F: FnOnce(&Messaging) -> Result<Vec<Certificate>>,
{
    authenticate_parts(soap, None, limits, trust)
}

/// `attachments`: `None` for [`precheck_soap_part`] (the attachment references unchecked).
fn authenticate_parts<F>(
    soap: &[u8],
    attachments: Option<&[(&str, PartContent)]>,
    limits: &Limits,
    trust: F,
) -> Result<Authenticated>
where
    F: FnOnce(&Messaging) -> Result<Vec<Certificate>>,
{
    let precheck = attachments.is_none();
    let attachments = attachments.unwrap_or(&[]);
    let doc = xml::parse_bytes(soap, limits)?;
    let env = envelope::read(&doc, envelope::UNDERSTOOD)?;
    let node = env
        .messaging
        .ok_or_else(|| Error::InvalidEbms("the message has no eb:Messaging header".into()))?;
    let messaging = Messaging::parse(node)?;
    let certs = trust(&messaging)?;
    if certs.is_empty() {
        return Err(Error::UnknownSigner(
            "no certificate is registered for the sender".into(),
        ));
    }
    let mut store = CertStore::new();
    for c in certs {
        store.add_partner(c, None);
    }
    let policy = VerifyPolicy {
        partners: Some(&store),
        ..Default::default()
    };
    let encrypted = env
        .security
        .is_some_and(|s| xml::child(s, xml::NS_XENC, "EncryptedKey").is_some());
    let covered = CoveredParts {
        messaging: Some(node),
        body: env.body,
        attachments: if encrypted { &[] } else { attachments },
        partial: encrypted || precheck,
    };
    let verified = wss::verify_parts(&doc, env.security, &covered, &policy)?
        .ok_or_else(|| Error::SignatureRequired("the message is not signed".into()))?;
    if encrypted && !precheck {
        // Every attachment is named by the signature, and the signature names nothing else.
        for (cid, _) in attachments {
            if !verified.unchecked.iter().any(|u| cid_matches(u, cid)) {
                return Err(Error::UnsignedPart(format!(
                    "attachment {cid} is not covered by the signature"
                )));
            }
        }
        for u in &verified.unchecked {
            if !attachments.iter().any(|(cid, _)| cid_matches(u, cid)) {
                return Err(Error::SignatureWrapping(format!(
                    "the signature references {u}, which is not in the message"
                )));
            }
        }
    }
    Ok(Authenticated {
        soap: env.version,
        messaging,
        verified,
        encrypted,
    })
}

fn cid_matches(uri: &str, cid: &str) -> bool {
    // References may percent-encode the Content-ID.
    uri.strip_prefix("cid:")
        .is_some_and(|u| u == cid || wss::percent_decode(u) == cid)
}

fn new_info(domain: &str, ref_to: Option<&str>) -> Result<MessageInfo> {
    Ok(MessageInfo {
        timestamp: super::model::timestamp_now(),
        message_id: super::model::new_message_id(domain)?,
        ref_to_message_id: ref_to.map(str::to_string),
    })
}

fn signal(
    soap: SoapVersion,
    signer: &Identity,
    info: MessageInfo,
    signal: Signal,
) -> Result<Built> {
    message::build(Outgoing {
        messaging: Messaging {
            user_messages: Vec::new(),
            signals: vec![SignalMessage { info, signal }],
        },
        payloads: Vec::new(),
        signer,
        encrypt_for: None,
        soap,
    })
}

/// The signed non-repudiation receipt for the (first) UserMessage of `messaging`, whose
/// signature was verified as `verified`.
pub fn receipt_for(
    soap: SoapVersion,
    messaging: &Messaging,
    verified: &Verified,
    signer: &Identity,
    domain: &str,
) -> Result<Built> {
    let um = messaging
        .user_messages
        .first()
        .ok_or_else(|| Error::InvalidArgument("a receipt answers a UserMessage".into()))?;
    let nrr = verified
        .references
        .iter()
        .map(|r| ReceiptRef {
            uri: r.uri.clone(),
            transforms: r
                .transforms
                .iter()
                .map(|(a, p)| Transform {
                    algorithm: a.clone(),
                    inclusive_prefixes: p.clone(),
                })
                .collect(),
            digest_method: r.digest_method.clone(),
            digest_value: r.digest_value.clone(),
        })
        .collect();
    signal(
        soap,
        signer,
        new_info(domain, Some(&um.info.message_id))?,
        Signal::Receipt {
            nrr,
            user_message: false,
            raw_other: None,
        },
    )
}

/// A signed error signal.
pub fn error_signal(
    soap: SoapVersion,
    errors: Vec<EbmsError>,
    ref_to: Option<&str>,
    signer: &Identity,
    domain: &str,
) -> Result<Built> {
    signal(
        soap,
        signer,
        new_info(domain, ref_to)?,
        Signal::Error(errors),
    )
}

/// A signed PullRequest for `mpc`.
pub fn pull_request(
    soap: SoapVersion,
    mpc: &str,
    signer: &Identity,
    domain: &str,
) -> Result<Built> {
    signal(
        soap,
        signer,
        new_info(domain, None)?,
        Signal::PullRequest {
            mpc: mpc.to_string(),
        },
    )
}

/// The header of a message, read without checking anything but its form: for choosing how to
/// verify it.
pub fn peek(content_type: &str, body: &[u8], limits: &Limits) -> Result<Messaging> {
    let pkg = Package::parse(content_type, body, limits)?;
    let doc = xml::parse_bytes(&pkg.soap, limits)?;
    let env = envelope::read(&doc, envelope::UNDERSTOOD)?;
    let node = env
        .messaging
        .ok_or_else(|| Error::InvalidEbms("the message has no eb:Messaging header".into()))?;
    Messaging::parse(node)
}

/// As [`peek`], for a body that cannot be read as a package (a MIME structure the spooler
/// refuses): the header of the first SOAP envelope found in `head`, if any. It is not
/// verified; it only names the message to refuse.
fn peek_leniently(content_type: &str, head: &[u8], limits: &Limits) -> Option<Messaging> {
    if let Ok(m) = peek(content_type, head, limits) {
        return Some(m);
    }
    // `<x:Envelope` (any prefix) to the end of the matching `</x:Envelope>`.
    let mut from = 0;
    let start = loop {
        let at = from + crate::bytes::find(&head[from..], b"Envelope")?;
        let lt = head[..at].iter().rposition(|&c| c == b'<')?;
        let name = &head[lt + 1..at];
        if name
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_-.:".contains(c))
            && (name.is_empty() || name.ends_with(b":"))
        {
            break (lt, name.to_vec());
        }
        from = at + 8;
    };
    let (lt, prefix) = start;
    let mut close = b"</".to_vec();
    close.extend_from_slice(&prefix);
    close.extend_from_slice(b"Envelope>");
    let end = lt + crate::bytes::find(&head[lt..], &close)? + close.len();
    let doc = xml::parse_bytes(&head[lt..end], limits).ok()?;
    let env = envelope::read(&doc, envelope::UNDERSTOOD).ok()?;
    Messaging::parse(env.messaging?).ok()
}

/// The first failure (or, without one, the first error) of an error signal the service sent in
/// answer to `refused` (`the message`, `the pull request`, `the receipt`), as an [`Error`].
pub fn error_of(errors: &[EbmsError], refused: &'static str) -> Error {
    let e = errors
        .iter()
        .find(|e| e.severity == Severity::Failure)
        .or_else(|| errors.first());
    match e {
        Some(e) => Error::EbmsError {
            ebms_code: e.code.clone(),
            message: [
                e.short_description.as_deref(),
                e.description.as_deref(),
                e.error_detail.as_deref(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": "),
            refused,
        },
        None => Error::InvalidEbms("an error signal without errors".into()),
    }
}

fn is_ebms_response(r: &HttpResponse) -> bool {
    let mt = package::media_type(&r.content_type);
    !r.body.is_empty()
        && matches!(
            mt.as_str(),
            "application/soap+xml" | "text/xml" | "multipart/related"
        )
}

/// An ebMS message in the response, or the HTTP status as the error: transient for 5xx, 408
/// and 429 (`HttpStatus`), a refusal for good for any other 4xx (`Refused`; a 413 names the
/// service's limit and the size of what was sent).
fn expect_ebms(r: &HttpResponse, sent: usize) -> Result<()> {
    if is_ebms_response(r) {
        return Ok(());
    }
    Err(if r.status >= 300 {
        status_error(r, sent)
    } else {
        Error::BadResponse(format!(
            "the service answered HTTP {} with {:?}, not an ebMS message",
            r.status, r.content_type
        ))
    })
}

/// Printable text of a short plain-text body, for messages (never more than a line).
fn short_text(r: &HttpResponse) -> Option<String> {
    if !package::media_type(&r.content_type).starts_with("text/plain") {
        return None;
    }
    let t: String = String::from_utf8_lossy(&r.body)
        .chars()
        .take(300)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let t = t.trim().to_string();
    (!t.is_empty()).then_some(t)
}

fn status_error(r: &HttpResponse, sent: usize) -> Error {
    let transient = matches!(r.status, 500..=599 | 408 | 429);
    if r.status == 413 {
        let limit = r
            .header(super::coordination::MAX_MESSAGE_BYTES_HEADER)
            .and_then(|v| v.trim().parse::<u64>().ok());
        return Error::Refused(match limit {
            Some(l) => format!(
                "HTTP 413: the message of {sent} bytes is larger than the service accepts \
                 ({l} bytes)"
            ),
            None => format!(
                "HTTP 413: the message of {sent} bytes is larger than the service accepts{}",
                short_text(r).map(|t| format!(" ({t})")).unwrap_or_default()
            ),
        });
    }
    let detail = short_text(r).map(|t| format!(": {t}")).unwrap_or_default();
    if transient || r.status < 400 {
        Error::HttpStatus {
            status: r.status,
            message: format!("the service answered HTTP {}{detail}", r.status),
        }
    } else {
        Error::Refused(format!("HTTP {}{detail}", r.status))
    }
}

/// A message pulled from the service, exactly as its sender signed it.
#[derive(Clone, Debug)]
pub struct Pulled {
    pub content_type: String,
    pub body: Vec<u8>,
    /// The header (not yet verified: read the message with the sender's certificate).
    pub messaging: Messaging,
    /// Set when the message is larger than we accept ([`Exchange::limits`]' `max_part` and the
    /// transport's response limit): `body` is then only its head, enough for the header, and
    /// the message can only be refused.
    pub oversized: Option<Oversized>,
    /// Set when the message was received into a spool file ([`Exchange::pull_to`]) and is
    /// larger than [`KEEP_IN_MEMORY`]: `body` is then empty and the message is in the file.
    pub spooled: Option<SpooledMessage>,
    /// Set by [`Exchange::pull_to`] when the body cannot be read as a message (its MIME
    /// structure, a limit) although its header could be found in its head: `body` is then at
    /// most its first [`crate::transport::OVERSIZED_HEAD`] bytes, and the message can only be
    /// refused — a fault of this message, not of the pull.
    pub unreadable: Option<Unreadable>,
}

/// Why a pulled message cannot be read ([`Pulled::unreadable`]).
#[derive(Clone, Debug)]
pub struct Unreadable {
    pub code: ErrorCode,
    pub message: String,
}

impl Unreadable {
    fn of(e: &Error) -> Unreadable {
        Unreadable {
            code: e.code(),
            message: e.to_string(),
        }
    }

    /// The failure as an error of its code's kind.
    pub fn error(&self) -> Error {
        let m = self.message.clone();
        match self.code {
            ErrorCode::TooLarge => Error::TooLarge(m),
            ErrorCode::InvalidEbms => Error::InvalidEbms(m),
            _ => Error::MalformedMime(m),
        }
    }
}

/// A pulled message in a spool file.
#[derive(Clone, Debug)]
pub struct SpooledMessage {
    pub path: PathBuf,
    pub package: SpooledPackage,
}

impl Pulled {
    /// The length of the message as received.
    pub fn len(&self) -> u64 {
        match (&self.oversized, &self.spooled) {
            (Some(o), _) => o.length,
            (None, Some(s)) => s.package.length,
            (None, None) => self.body.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Read, decrypt and verify the message as [`message::read`] does (a spooled one with
    /// [`message::read_spooled`]: its payload stays in the file).
    pub fn read(&self, opts: &ReadOptions) -> Result<Incoming> {
        match &self.spooled {
            Some(s) => message::read_spooled(&s.package, &s.path, opts),
            None => message::read(&self.content_type, &self.body, opts),
        }
    }
}

/// Pulled messages up to this size are kept in memory ([`Pulled::body`]); larger ones stay in
/// their spool file ([`Pulled::spooled`]).
pub const KEEP_IN_MEMORY: u64 = 4 << 20;

/// The longest answer to a push or a receipt that is read (a signed receipt or error signal).
const MAX_SIGNAL_BYTES: u64 = 4 << 20;

/// A client's side of the exchange with one service.
pub struct Exchange<'a> {
    /// What carries the messages: HTTPS (any [`Transport`]) or e-mail.
    pub transport: &'a dyn Carrier,
    /// Our identity: signs pull requests and receipts.
    pub me: &'a Identity,
    /// The service's signing certificate: its receipts and signals must verify against it.
    pub service: &'a Certificate,
    /// Earlier certificates of the service still accepted (its key's rollover: it signs with
    /// the old key until it switches, and a receipt returned again for a duplicate is the
    /// first one, signed when it was made).
    pub service_previous: &'a [Certificate],
    pub soap: SoapVersion,
    /// For MessageIds of our signals.
    pub domain: String,
    pub limits: Limits,
}

impl Exchange<'_> {
    /// The next message for `mpc` from the carrier (over HTTPS: the answer to a signed pull
    /// request), with the length of the pull request if one was sent (for messages).
    fn receive_next(&self, mpc: &str) -> Result<Option<(StreamingResponse, usize)>> {
        let sent = std::cell::Cell::new(0usize);
        let r = self.transport.receive(&|| {
            let req = pull_request(self.soap, mpc, self.me, &self.domain)?;
            sent.set(req.body.len());
            Ok(req)
        })?;
        Ok(r.map(|r| (r, sent.get())))
    }

    /// The answer a carrier returned for a UserMessage (which the service always answers).
    fn answer_of(&self, r: Option<HttpResponse>) -> Result<HttpResponse> {
        r.ok_or_else(|| Error::BadResponse("the service gave no answer to the message".into()))
    }

    /// The service's signed answer to a request of ours (`what`: how an error signal names the
    /// request it refuses).
    fn read_signal(&self, r: HttpResponse, sent: usize, what: &'static str) -> Result<Incoming> {
        let r = &r.whole()?;
        expect_ebms(r, sent)?;
        let store = (!self.service_previous.is_empty()).then(|| {
            let mut s = crate::cert::CertStore::new();
            for c in std::iter::once(self.service).chain(self.service_previous) {
                s.add_partner(c.clone(), None);
            }
            s
        });
        let incoming = message::read(
            &r.content_type,
            &r.body,
            &ReadOptions {
                recipient: None,
                policy: VerifyPolicy {
                    signer: store.is_none().then_some(self.service),
                    partners: store.as_ref(),
                    ..Default::default()
                },
                limits: self.limits.clone(),
            },
        )?;
        if let Some(errors) = incoming
            .messaging
            .signals
            .iter()
            .find_map(|s| match &s.signal {
                Signal::Error(e) => Some(e),
                _ => None,
            })
        {
            return Err(error_of(errors, what));
        }
        Ok(incoming)
    }

    /// Push a built UserMessage; returns the service's verified receipt once it has checked
    /// that the receipt acknowledges exactly what we signed.
    pub fn push(&self, built: &Built) -> Result<Incoming> {
        let again = || Ok(Box::new(&built.body[..]) as Box<dyn Read>);
        let r = self.answer_of(self.transport.send(Outbound {
            content_type: &built.content_type,
            body: &mut &built.body[..],
            len: built.body.len() as u64,
            message_id: &built.message_id,
            ref_to: None,
            reopen: Some(&again),
        })?)?;
        let checked = self
            .read_signal(r, built.body.len(), "the message")
            .and_then(|receipt| message::check_receipt(&receipt, built).map(|()| receipt));
        if let Err(e) = &checked {
            if !matches!(e, Error::EbmsError { .. }) {
                self.transport.discard_answer(&built.message_id);
            }
        }
        checked
    }

    /// Push a built UserMessage of `len` bytes read from `body` (a journalled message file),
    /// never whole in memory; the service's receipt is checked against `message_id` and the
    /// `references` we signed, as [`Exchange::push`] checks it.
    pub fn push_streaming(
        &self,
        content_type: &str,
        body: &mut dyn Read,
        len: u64,
        message_id: &str,
        references: &[wss::SignedRef],
    ) -> Result<Incoming> {
        self.push_reopenable(content_type, body, len, message_id, references, None)
    }

    /// [`Exchange::push_streaming`] of a message that `reopen` reads again from its start (the
    /// journalled file opened again): a carrier with several nodes of the service then sends the
    /// same bytes — the same MessageId — to the next node when one fails after taking some of
    /// them.
    pub fn push_reopenable<'a>(
        &self,
        content_type: &'a str,
        body: &'a mut dyn Read,
        len: u64,
        message_id: &'a str,
        references: &[wss::SignedRef],
        reopen: Option<crate::transport::Reopen<'a>>,
    ) -> Result<Incoming> {
        let r = self.answer_of(self.transport.send(Outbound {
            content_type,
            body,
            len,
            message_id,
            ref_to: None,
            reopen,
        })?)?;
        let sent = usize::try_from(len).unwrap_or(usize::MAX);
        let checked = self
            .read_signal(r, sent, "the message")
            .and_then(|receipt| {
                message::check_receipt_of(&receipt, message_id, references).map(|()| receipt)
            });
        if let Err(e) = &checked {
            if !matches!(e, Error::EbmsError { .. }) {
                // Not the answer to what we sent (a carrier that answers later may have taken
                // another message's): the next one is looked at.
                self.transport.discard_answer(message_id);
            }
        }
        checked
    }

    /// [`Exchange::pull`], the response received into the file `spool` (created, or
    /// truncated) as it arrives: a message larger than [`KEEP_IN_MEMORY`] is left there
    /// ([`Pulled::spooled`], its attachment digests computed on the way), a smaller one is
    /// read back into [`Pulled::body`] and the file removed. A message larger than
    /// `limits.max_part` is read to its end and kept as its first MiB, its length and digest
    /// ([`Pulled::oversized`]). The file is removed unless it holds the returned message.
    pub fn pull_to(&self, mpc: &str, spool: &Path) -> Result<Option<Pulled>> {
        let Some((mut r, req_len)) = self.receive_next(mpc)? else {
            return Ok(None);
        };
        let mt = package::media_type(&r.content_type);
        if !matches!(
            mt.as_str(),
            "application/soap+xml" | "text/xml" | "multipart/related"
        ) {
            let whole = r.read_whole(MAX_SIGNAL_BYTES)?;
            return Err(expect_ebms(&whole, req_len).err().unwrap_or_else(|| {
                Error::BadResponse("the service's answer is not an ebMS message".into())
            }));
        }
        let removed = || {
            let _ = std::fs::remove_file(spool);
        };
        if let Some(o) = r.oversized {
            // Measured by the transport itself: the body is the head.
            let mut head = Vec::new();
            (&mut r.body)
                .take(crate::transport::OVERSIZED_HEAD as u64)
                .read_to_end(&mut head)
                .map_err(read_error)?;
            return self.oversized_pull(r.content_type, head, o).map(Some);
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(spool)
            .map_err(|e| Error::io(format!("cannot create {}", spool.display()), e))?;
        let received = receive(&mut r.body, file, &r.content_type, &self.limits);
        let received = match received {
            Ok(x) => x,
            Err(e) => {
                removed();
                return Err(e);
            }
        };
        let pkg = match received {
            Received::Whole(pkg) => pkg,
            Received::Unreadable { head, error } => {
                removed();
                // A fault of this message (it is refused) when its header can be found;
                // otherwise the pull fails.
                let Some(messaging) = peek_leniently(&r.content_type, &head, &self.limits)
                    .filter(|m| !m.user_messages.is_empty())
                else {
                    return Err(error);
                };
                return Ok(Some(Pulled {
                    content_type: r.content_type,
                    body: head,
                    messaging,
                    oversized: None,
                    spooled: None,
                    unreadable: Some(Unreadable::of(&error)),
                }));
            }
            Received::Oversized { head, oversized } => {
                removed();
                return self
                    .oversized_pull(r.content_type, head, oversized)
                    .map(Some);
            }
        };
        let in_memory = pkg.length <= KEEP_IN_MEMORY;
        let body = if in_memory {
            let body = std::fs::read(spool)
                .map_err(|e| Error::io(format!("cannot read {}", spool.display()), e));
            removed();
            body?
        } else {
            Vec::new()
        };
        let messaging = (|| {
            let doc = xml::parse_bytes(&pkg.soap, &self.limits)?;
            let env = envelope::read(&doc, envelope::UNDERSTOOD)?;
            let node = env.messaging.ok_or_else(|| {
                Error::InvalidEbms("the message has no eb:Messaging header".into())
            })?;
            Messaging::parse(node)
        })();
        let messaging = match messaging {
            Ok(m) => m,
            Err(e) => {
                removed();
                return Err(e);
            }
        };
        if !messaging.user_messages.is_empty() {
            return Ok(Some(Pulled {
                content_type: r.content_type,
                body,
                messaging,
                oversized: None,
                spooled: (!in_memory).then(|| SpooledMessage {
                    path: spool.to_path_buf(),
                    package: pkg,
                }),
                unreadable: None,
            }));
        }
        removed();
        if !in_memory {
            return Err(Error::TooLarge(format!(
                "the service answered the pull request with a signal of {} bytes",
                pkg.length
            )));
        }
        let mut whole = HttpResponse::new(r.status, r.content_type, body);
        whole.headers = r.headers;
        match self.read_signal(whole, req_len, "the pull request") {
            Ok(_) => Err(Error::InvalidEbms(
                "the service answered the pull request with neither a message nor an error".into(),
            )),
            Err(Error::EbmsError { ebms_code, .. }) if ebms_code == "EBMS:0006" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A pulled message too large to keep, known by its head, length and digest.
    fn oversized_pull(
        &self,
        content_type: String,
        head: Vec<u8>,
        oversized: Oversized,
    ) -> Result<Pulled> {
        let messaging = peek(&content_type, &head, &self.limits)?;
        if messaging.user_messages.is_empty() {
            return Err(Error::TooLarge(format!(
                "the service's answer of {} bytes is longer than the {} allowed",
                oversized.length, oversized.limit
            )));
        }
        Ok(Pulled {
            content_type,
            body: head,
            messaging,
            oversized: Some(oversized),
            spooled: None,
            unreadable: None,
        })
    }

    /// Pull the oldest message waiting in `mpc`; `None` when there is none (EBMS:0006).
    pub fn pull(&self, mpc: &str) -> Result<Option<Pulled>> {
        let Some((r, req_len)) = self.receive_next(mpc)? else {
            return Ok(None);
        };
        let r = r.read_whole_or_head(self.limits.max_part)?;
        expect_ebms(&r, req_len)?;
        // Of a message too large to keep, the head holds the header (the SOAP part comes
        // first): enough to say who sent what, and to refuse it.
        let messaging = peek(&r.content_type, &r.body, &self.limits)?;
        if !messaging.user_messages.is_empty() {
            return Ok(Some(Pulled {
                content_type: r.content_type,
                body: r.body,
                messaging,
                oversized: r.oversized,
                spooled: None,
                unreadable: None,
            }));
        }
        // A signal from the service: it must be signed by it.
        match self.read_signal(r, req_len, "the pull request") {
            Ok(_) => Err(Error::InvalidEbms(
                "the service answered the pull request with neither a message nor an error".into(),
            )),
            Err(Error::EbmsError { ebms_code, .. }) if ebms_code == "EBMS:0006" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Tell the service (and through it the sender) that a pulled message was received.
    pub fn post_receipt(&self, receipt: &Built) -> Result<()> {
        let again = || Ok(Box::new(&receipt.body[..]) as Box<dyn Read>);
        let Some(r) = self.transport.send(Outbound {
            content_type: &receipt.content_type,
            body: &mut &receipt.body[..],
            len: receipt.body.len() as u64,
            message_id: &receipt.message_id,
            ref_to: Some(receipt.ref_to_message_id.as_deref().unwrap_or("")),
            reopen: Some(&again),
        })?
        else {
            return Ok(());
        };
        if r.status / 100 == 2 && r.body.is_empty() && r.oversized.is_none() {
            return Ok(());
        }
        self.read_signal(r, receipt.body.len(), "the receipt")
            .map(|_| ())
    }
}

/// What [`receive`] got.
enum Received {
    Whole(SpooledPackage),
    /// Longer than `limits.max_part`: the first [`crate::transport::OVERSIZED_HEAD`] bytes.
    Oversized {
        head: Vec<u8>,
        oversized: Oversized,
    },
    /// Not a message the spooler reads (its MIME structure, a limit): why, and the first
    /// [`crate::transport::OVERSIZED_HEAD`] bytes (or fewer, if the body ended before).
    Unreadable {
        head: Vec<u8>,
        error: Error,
    },
}

/// Read a message body from `body` into `file` through a [`Spooler`]; past `limits.max_part`
/// bytes it is read on to its end (at most 16 times the limit) only to be measured and hashed.
fn receive(
    body: &mut dyn Read,
    file: std::fs::File,
    content_type: &str,
    limits: &Limits,
) -> Result<Received> {
    use crate::transport::OVERSIZED_HEAD;
    // A refusal of the body (not a failure to write the spool) ends the reading once the head
    // is read: the message is then known by its head only.
    let refused = |e: &Error| !matches!(e, Error::Io { .. });
    let mut failed: Option<Error> = None;
    let mut spooler = match Spooler::new(content_type, file, limits) {
        Ok(s) => Some(s),
        Err(e) => {
            failed = Some(e);
            None
        }
    };
    let mut head: Vec<u8> = Vec::new();
    let mut sha = openssl::sha::Sha256::new();
    let mut length = 0u64;
    let max = limits.max_part;
    let hard = max.saturating_mul(16);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        let piece = &buf[..n];
        length += n as u64;
        if head.len() < OVERSIZED_HEAD {
            head.extend_from_slice(&piece[..piece.len().min(OVERSIZED_HEAD - head.len())]);
        }
        sha.update(piece);
        if length > hard {
            return Err(Error::TooLarge(format!(
                "the response is far longer than the {max} bytes allowed"
            )));
        }
        if failed.is_some() {
            if head.len() >= OVERSIZED_HEAD {
                break;
            }
            continue;
        }
        match &mut spooler {
            Some(_) if length > max => spooler = None,
            Some(s) => {
                if let Err(e) = s.feed(piece) {
                    if !refused(&e) {
                        return Err(e);
                    }
                    spooler = None;
                    failed = Some(e);
                }
            }
            None => {}
        }
    }
    if let Some(error) = failed {
        return Ok(Received::Unreadable { head, error });
    }
    match spooler {
        Some(s) => match s.finish() {
            Ok((pkg, _)) => Ok(Received::Whole(pkg)),
            Err(e) if refused(&e) => Ok(Received::Unreadable { head, error: e }),
            Err(e) => Err(e),
        },
        None => Ok(Received::Oversized {
            head,
            oversized: Oversized {
                length,
                sha256: sha.finish(),
                limit: max,
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::party_mpc;

    #[test]
    fn party_mpcs_escape_what_a_urn_cannot_hold() {
        assert_eq!(party_mpc("acme"), "urn:layersec:mpc:acme");
        assert_eq!(
            party_mpc("0088:123 GmbH/ü"),
            "urn:layersec:mpc:0088:123%20GmbH/%C3%BC"
        );
    }
}
