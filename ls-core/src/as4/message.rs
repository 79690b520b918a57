//! Complete AS4 messages: building (compress → sign → encrypt → MIME) and reading (MIME →
//! envelope → decrypt → verify → ebMS → decompress), and the signed NRR receipts of AS4.

use super::envelope::{self, SoapVersion};
use super::model::{Messaging, PartInfo, Property, Signal};
use super::package::{self, Attachment, Package};
use super::wss::{self, Covered, SignedRef, Verified, VerifyPolicy};
use super::xml::{self, Limits, NS_WSSE, NS_WSU};
use crate::cert::Certificate;
use crate::error::{Error, Result};
use crate::keys::Identity;

/// A payload to send as an attachment.
#[derive(Clone, Debug)]
pub struct Payload {
    /// Content-ID (without `cid:`), unique within the message.
    pub content_id: String,
    pub mime_type: String,
    pub data: Vec<u8>,
    /// gzip it (AS4 compression, `CompressionType=application/gzip`) before signing.
    pub compress: bool,
    /// More PartProperties.
    pub properties: Vec<Property>,
}

/// What to send.
pub struct Outgoing<'a> {
    /// The ebMS header. PartInfo entries for `payloads` are added to the (first) UserMessage.
    pub messaging: Messaging,
    pub payloads: Vec<Payload>,
    pub signer: &'a Identity,
    /// Encrypt the payloads for this partner (AS4: AES-128-GCM, RSA-OAEP).
    pub encrypt_for: Option<&'a Certificate>,
    pub soap: SoapVersion,
}

/// A built message, ready for HTTP (or SMTP).
#[derive(Clone, Debug)]
pub struct Built {
    pub content_type: String,
    pub body: Vec<u8>,
    /// The MessageId of the (first) UserMessage or SignalMessage.
    pub message_id: String,
    /// What our signature covers: a receipt for this message must return these.
    pub references: Vec<SignedRef>,
}

const SECURITY_SLOT: &str = "<!--ls:security-->";

/// Build, sign and (optionally) encrypt a message.
pub fn build(out: Outgoing) -> Result<Built> {
    let mut messaging = out.messaging;
    let mut attachments: Vec<(String, String, Vec<u8>)> = Vec::new(); // (cid, MIME type, signed bytes)
    for p in out.payloads {
        if p.content_id.is_empty() || p.content_id.contains(['<', '>', '\r', '\n', '"']) {
            return Err(Error::InvalidArgument(format!(
                "bad Content-ID {:?}",
                p.content_id
            )));
        }
        if attachments.iter().any(|(c, _, _)| *c == p.content_id) {
            return Err(Error::InvalidArgument(format!(
                "two payloads with Content-ID {}",
                p.content_id
            )));
        }
        let mut props = vec![Property::new("MimeType", &p.mime_type)];
        let data = if p.compress {
            props.push(Property::new("CompressionType", "application/gzip"));
            package::gzip(&p.data)
        } else {
            p.data
        };
        props.extend(p.properties);
        let um = messaging
            .user_messages
            .first_mut()
            .ok_or_else(|| Error::InvalidArgument("payloads need a UserMessage".into()))?;
        um.payloads.push(PartInfo {
            href: Some(format!("cid:{}", p.content_id)),
            properties: props,
            schema: None,
            description: None,
        });
        let wire_type = if p.compress {
            "application/gzip".to_string()
        } else {
            p.mime_type
        };
        attachments.push((p.content_id, wire_type, data));
    }
    let message_id = messaging
        .user_messages
        .first()
        .map(|u| u.info.message_id.clone())
        .or_else(|| messaging.signals.first().map(|s| s.info.message_id.clone()))
        .ok_or_else(|| {
            Error::InvalidArgument("the message has neither a UserMessage nor a signal".into())
        })?;

    // The envelope with an empty security header; the signature covers Messaging and Body,
    // whose canonical forms do not depend on what the security header will hold.
    let soap = out.soap;
    let messaging_id = wss::new_id("ebms");
    let body_id = wss::new_id("body");
    let security_open = format!(
        "<wsse:Security xmlns:wsse=\"{NS_WSSE}\" xmlns:wsu=\"{NS_WSU}\" xmlns:{p}=\"{ns}\" {p}:mustUnderstand=\"{mu}\">",
        p = soap.prefix(),
        ns = soap.namespace(),
        mu = soap.must_understand_true()
    );
    let security_block = format!("{security_open}{SECURITY_SLOT}</wsse:Security>");
    let messaging_xml = messaging.to_xml(soap, &messaging_id);
    let env = envelope::build(soap, &[&messaging_xml, &security_block], &body_id, "");
    let doc = xml::parse(&env, &Limits::default())?;
    let signed: Vec<(&str, &[u8])> = attachments
        .iter()
        .map(|(c, _, d)| (c.as_str(), d.as_slice()))
        .collect();
    let signer_bst = wss::new_id("X509");
    let signature = wss::signature_xml(
        &doc,
        &[&messaging_id, &body_id],
        &signed,
        out.signer,
        &signer_bst,
    )?;
    let mut security = wss::bst_xml(out.signer.certificate(), &signer_bst);
    let mut wire: Vec<Attachment> = Vec::new();
    match out.encrypt_for {
        Some(rcpt) if !attachments.is_empty() => {
            let rcpt_bst = wss::new_id("X509");
            let parts: Vec<(&str, &str, &[u8])> = attachments
                .iter()
                .map(|(c, t, d)| (c.as_str(), t.as_str(), d.as_slice()))
                .collect();
            let (xml_enc, blobs) = wss::encrypt_parts(&parts, rcpt, &rcpt_bst)?;
            security.push_str(&wss::bst_xml(rcpt, &rcpt_bst));
            security.push_str(&xml_enc);
            for ((cid, _, _), blob) in attachments.iter().zip(blobs) {
                wire.push(Attachment::new(cid, "application/octet-stream", blob));
            }
        }
        _ => {
            for (cid, t, d) in attachments {
                wire.push(Attachment::new(&cid, &t, d));
            }
        }
    }
    security.push_str(&signature);
    let env = env.replacen(SECURITY_SLOT, &security, 1);

    // What we signed, for checking the receipt later.
    let doc = xml::parse(&env, &Limits::default())?;
    let e = envelope::read(&doc, envelope::UNDERSTOOD)?;
    let references = wss::signature_of(e.security)
        .and_then(|s| xml::child(s, xml::NS_DS, "SignedInfo"))
        .map(wss::signed_info_references)
        .unwrap_or_default();
    let pkg = Package {
        soap: env.into_bytes(),
        soap_content_type: soap.content_type().into(),
        attachments: wire,
    };
    let (content_type, body) = if pkg.attachments.is_empty() {
        (format!("{}; charset=UTF-8", soap.content_type()), pkg.soap)
    } else {
        pkg.into_mime()?
    };
    Ok(Built {
        content_type,
        body,
        message_id,
        references,
    })
}

/// How to read a message.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions<'a> {
    /// Our identity, to decrypt payloads encrypted for us.
    pub recipient: Option<&'a Identity>,
    pub policy: VerifyPolicy<'a>,
    pub limits: Limits,
}

/// A received payload.
#[derive(Clone, Debug)]
pub struct ReceivedPayload {
    pub content_id: String,
    pub mime_type: Option<String>,
    pub properties: Vec<Property>,
    /// Decrypted and decompressed.
    pub data: Vec<u8>,
}

/// A message read, decrypted and verified.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub soap: SoapVersion,
    pub messaging: Messaging,
    pub payloads: Vec<ReceivedPayload>,
    /// The verified signature (None only when the policy did not require one).
    pub verified: Option<Verified>,
    pub encrypted: bool,
}

/// Read a message received with `content_type`.
pub fn read(content_type: &str, body: &[u8], opts: &ReadOptions) -> Result<Incoming> {
    let pkg = Package::parse(content_type, body, &opts.limits)?;
    read_package(pkg, opts)
}

/// As [`read`], taking the received body: the largest payload keeps its buffer.
pub fn read_owned(content_type: &str, body: Vec<u8>, opts: &ReadOptions) -> Result<Incoming> {
    let pkg = Package::parse_owned(content_type, body, &opts.limits)?;
    read_package(pkg, opts)
}

/// Read a parsed package; its attachment bytes move into the result rather than being copied.
pub fn read_package(pkg: Package, opts: &ReadOptions) -> Result<Incoming> {
    let Package {
        soap, attachments, ..
    } = pkg;
    let doc = xml::parse_bytes(&soap, &opts.limits)?;
    let env = envelope::read(&doc, envelope::UNDERSTOOD)?;
    let messaging_node = env
        .messaging
        .ok_or_else(|| Error::InvalidEbms("the message has no eb:Messaging header".into()))?;

    // Decrypt what is encrypted for us (signatures cover the plaintext: sign before encrypt).
    let wire: Vec<(&str, &[u8])> = attachments
        .iter()
        .map(|a| (a.content_id.as_str(), a.data.as_slice()))
        .collect();
    let mut plain: Vec<(String, Vec<u8>, Option<String>)> = Vec::new();
    let mut encrypted = false;
    if let Some(sec) = env.security {
        if xml::child(sec, xml::NS_XENC, "EncryptedKey").is_some() {
            let me = opts.recipient.ok_or_else(|| {
                Error::NotARecipient(
                    "the payloads are encrypted and no private key was given".into(),
                )
            })?;
            for d in wss::decrypt_parts(&doc, sec, &wire, me)? {
                plain.push((d.content_id, d.data, d.mime_type));
            }
            // The security header is not signed: only claim confidentiality for what was
            // actually decrypted — every payload.
            encrypted = !plain.is_empty() && plain.len() == wire.len();
        }
    }
    drop(wire);
    for a in attachments {
        if !plain.iter().any(|(c, _, _)| *c == a.content_id) {
            plain.push((a.content_id, a.data, None));
        }
    }
    let signed: Vec<(&str, &[u8])> = plain
        .iter()
        .map(|(c, d, _)| (c.as_str(), d.as_slice()))
        .collect();
    let covered = Covered {
        messaging: Some(messaging_node),
        body: env.body,
        attachments: &signed,
        partial: false,
    };
    let verified = wss::verify(&doc, env.security, &covered, &opts.policy)?;
    let messaging = Messaging::parse(messaging_node)?;

    // Payloads as the ebMS header describes them.
    let mut payloads = Vec::new();
    for um in &messaging.user_messages {
        for pi in &um.payloads {
            let Some(cid) = pi.content_id() else { continue };
            let at = plain
                .iter()
                .position(|(c, _, _)| *c == cid)
                .ok_or_else(|| {
                    Error::InvalidEbms(format!(
                        "payload cid:{cid} is not in the message (or described twice)"
                    ))
                })?;
            let (_, data, _) = plain.swap_remove(at);
            let data = if pi.is_gzip() {
                package::gunzip(&data, opts.limits.max_part)?
            } else {
                data
            };
            payloads.push(ReceivedPayload {
                content_id: cid.to_string(),
                mime_type: pi.property("MimeType").map(str::to_string),
                properties: pi.properties.clone(),
                data,
            });
        }
    }
    if !plain.is_empty() {
        return Err(Error::InvalidEbms(
            "an attachment is not described by any PartInfo".into(),
        ));
    }
    Ok(Incoming {
        soap: env.version,
        messaging,
        payloads,
        verified,
        encrypted,
    })
}

/// A signed NRR receipt for a received UserMessage: its references are the ones the sender signed.
pub fn build_receipt(received: &Incoming, signer: &Identity, domain: &str) -> Result<Built> {
    let verified = received.verified.as_ref().ok_or_else(|| {
        Error::SignatureRequired("a non-repudiation receipt needs a signed message".into())
    })?;
    super::exchange::receipt_for(received.soap, &received.messaging, verified, signer, domain)
}

/// Check that a received (and verified) receipt acknowledges `sent`: it refers to its MessageId
/// and returns exactly the references we signed.
pub fn check_receipt(receipt: &Incoming, sent: &Built) -> Result<()> {
    let (sig, nrr) = receipt
        .messaging
        .signals
        .iter()
        .find_map(|s| match &s.signal {
            Signal::Receipt { nrr, .. } => Some((s, nrr)),
            _ => None,
        })
        .ok_or_else(|| Error::InvalidEbms("the message is not a receipt".into()))?;
    if sig.info.ref_to_message_id.as_deref() != Some(sent.message_id.as_str()) {
        return Err(Error::InvalidEbms(format!(
            "the receipt refers to {:?}, not to {}",
            sig.info.ref_to_message_id, sent.message_id
        )));
    }
    let same = nrr.len() == sent.references.len()
        && sent.references.iter().all(|s| {
            nrr.iter().any(|r| {
                r.uri == s.uri
                    && r.digest_method == s.digest_method
                    && r.digest_value == s.digest_value
            })
        });
    if !same {
        return Err(Error::DigestMismatch(
            "the receipt's non-repudiation references differ from what we signed".into(),
        ));
    }
    Ok(())
}
