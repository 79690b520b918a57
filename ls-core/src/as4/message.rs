//! Complete AS4 messages: building (compress → sign → encrypt → MIME) and reading (MIME →
//! envelope → decrypt → verify → ebMS → decompress), and the signed NRR receipts of AS4.

use super::envelope::{self, SoapVersion};
use super::model::{Messaging, PartInfo, Property, Signal};
use super::package::{self, Attachment, Package};
use super::spool::{SpooledBody, SpooledPackage};
use super::wss::{self, Covered, CoveredParts, PartContent, SignedRef, Verified, VerifyPolicy};
use super::xml::{self, Limits, NS_WSSE, NS_WSU};
use crate::cert::Certificate;
use crate::error::{Error, Result};
use crate::keys::Identity;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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
    /// Its RefToMessageId (a receipt's or an error's: the message it answers).
    pub ref_to_message_id: Option<String>,
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
    let message_id = message_id_of(&messaging)?;
    let ref_to_message_id = messaging
        .user_messages
        .first()
        .map(|u| u.info.ref_to_message_id.clone())
        .or_else(|| {
            messaging
                .signals
                .first()
                .map(|s| s.info.ref_to_message_id.clone())
        })
        .flatten();

    let digests: Vec<(&str, [u8; 32])> = attachments
        .iter()
        .map(|(c, _, d)| (c.as_str(), openssl::sha::sha256(d)))
        .collect();
    let soap = out.soap;
    let (env, mut security, signature) = sign(&messaging, soap, out.signer, &digests)?;
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
    let (env, references) = fill_security(&env, &security)?;
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
        ref_to_message_id,
        references,
    })
}

/// The envelope of `messaging` with an empty security slot, our BST and the signature over
/// Messaging, Body and the attachments of the given SHA-256 digests.
fn sign(
    messaging: &Messaging,
    soap: SoapVersion,
    signer: &Identity,
    digests: &[(&str, [u8; 32])],
) -> Result<(String, String, String)> {
    // The envelope with an empty security header; the signature covers Messaging and Body,
    // whose canonical forms do not depend on what the security header will hold.
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
    let signer_bst = wss::new_id("X509");
    let signature = wss::signature_xml_digests(
        &doc,
        &[&messaging_id, &body_id],
        digests,
        signer,
        &signer_bst,
    )?;
    let security = wss::bst_xml(signer.certificate(), &signer_bst);
    Ok((env, security, signature))
}

/// The envelope with its security header filled in, and the references of its signature (what
/// a receipt for it must return).
fn fill_security(env: &str, security: &str) -> Result<(String, Vec<SignedRef>)> {
    let env = env.replacen(SECURITY_SLOT, security, 1);
    let doc = xml::parse(&env, &Limits::default())?;
    let e = envelope::read(&doc, envelope::UNDERSTOOD)?;
    let references = wss::signature_of(e.security)
        .and_then(|s| xml::child(s, xml::NS_DS, "SignedInfo"))
        .map(wss::signed_info_references)
        .unwrap_or_default();
    Ok((env, references))
}

/// The MessageId of the (first) UserMessage or SignalMessage.
fn message_id_of(messaging: &Messaging) -> Result<String> {
    messaging
        .user_messages
        .first()
        .map(|u| u.info.message_id.clone())
        .or_else(|| messaging.signals.first().map(|s| s.info.message_id.clone()))
        .ok_or_else(|| {
            Error::InvalidArgument("the message has neither a UserMessage nor a signal".into())
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
    /// Decrypted and decompressed. Empty when the payload is in `file`.
    pub data: Vec<u8>,
    /// Where the payload is when the message was read from a spool ([`read_spooled`]) and
    /// needed no decrypting or decompressing: a range of the spool file, not in memory.
    pub file: Option<PayloadFile>,
}

impl ReceivedPayload {
    /// The payload's bytes: `data`, or read from `file` (at most `limit` bytes, else
    /// `TooLarge`).
    pub fn bytes(&self, limit: u64) -> Result<std::borrow::Cow<'_, [u8]>> {
        match &self.file {
            None => Ok(std::borrow::Cow::Borrowed(&self.data)),
            Some(f) => f.read_all(limit).map(std::borrow::Cow::Owned),
        }
    }

    /// The payload's length.
    pub fn len(&self) -> u64 {
        self.file.as_ref().map_or(self.data.len() as u64, |f| f.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A payload in a file: `offset..offset + len` of `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadFile {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
    /// Its SHA-256, when known (computed as it was received).
    pub sha256: Option<[u8; 32]>,
}

impl PayloadFile {
    /// A reader of the payload's bytes (and nothing else of the file).
    pub fn reader(&self) -> Result<std::io::Take<std::fs::File>> {
        use std::io::{Read, Seek, SeekFrom};
        let io = |e| Error::io(format!("cannot read {}", self.path.display()), e);
        let mut f = std::fs::File::open(&self.path).map_err(io)?;
        f.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        Ok(f.take(self.len))
    }

    /// The payload's bytes in memory (at most `limit`, else `TooLarge`).
    pub fn read_all(&self, limit: u64) -> Result<Vec<u8>> {
        use std::io::Read;
        if self.len > limit {
            return Err(Error::TooLarge(format!(
                "the payload of {} bytes is larger than the {limit} bytes allowed",
                self.len
            )));
        }
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        self.reader()?
            .read_to_end(&mut out)
            .map_err(|e| Error::io(format!("cannot read {}", self.path.display()), e))?;
        if out.len() as u64 != self.len {
            return Err(Error::Io {
                context: format!("{} is shorter than it was", self.path.display()),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        Ok(out)
    }

    /// The SHA-256 of the payload (`sha256`, or read from the file).
    pub fn sha256(&self) -> Result<[u8; 32]> {
        if let Some(d) = self.sha256 {
            return Ok(d);
        }
        let d = PartContent::File {
            path: &self.path,
            offset: self.offset,
            len: self.len,
            sha256: None,
        }
        .digest(openssl::hash::MessageDigest::sha256())?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&d);
        Ok(out)
    }
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
                file: None,
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

/// A payload in a file, to send as the one attachment of a message ([`build_file`]).
#[derive(Clone, Debug)]
pub struct FilePayload<'a> {
    /// Content-ID (without `cid:`).
    pub content_id: String,
    pub mime_type: String,
    pub path: &'a Path,
    /// More PartProperties.
    pub properties: Vec<Property>,
}

/// What to send, with the payload in a file: signed, neither WS-Security-encrypted nor
/// gzipped (Layer Security's payloads are CMS, compressed and encrypted end to end).
pub struct OutgoingFile<'a> {
    /// The ebMS header; the payload's PartInfo is added to the (first) UserMessage.
    pub messaging: Messaging,
    pub payload: FilePayload<'a>,
    pub signer: &'a Identity,
    pub soap: SoapVersion,
}

/// A built message whose payload is a file: `head`, the file's bytes, `tail`.
#[derive(Clone, Debug)]
pub struct BuiltFile {
    pub content_type: String,
    /// The MIME preamble: the SOAP part and the payload part's headers.
    pub head: Vec<u8>,
    pub payload: PathBuf,
    pub payload_len: u64,
    /// The closing delimiter.
    pub tail: Vec<u8>,
    /// The payload's SHA-256 (as signed).
    pub payload_sha256: [u8; 32],
    pub message_id: String,
    pub references: Vec<SignedRef>,
}

impl BuiltFile {
    /// The length of the body.
    pub fn len(&self) -> u64 {
        self.head.len() as u64 + self.payload_len + self.tail.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write the body to `out`, the payload read in pieces (`Io` when the payload file is not
    /// the length it had when the message was built).
    pub fn write_to(&self, out: &mut dyn Write) -> Result<u64> {
        let io = |e| Error::io("cannot write the message", e);
        out.write_all(&self.head).map_err(io)?;
        let mut payload = std::fs::File::open(&self.payload)
            .map_err(|e| Error::io(format!("cannot read {}", self.payload.display()), e))?
            .take(self.payload_len);
        let copied = std::io::copy(&mut payload, out).map_err(io)?;
        if copied != self.payload_len {
            return Err(Error::Io {
                context: format!(
                    "{} changed since the message was built",
                    self.payload.display()
                ),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        out.write_all(&self.tail).map_err(io)?;
        Ok(self.len())
    }
}

/// Build and sign a message whose one payload is a file: the file is read once (its SHA-256 for
/// the signature, and a check that the MIME boundary is not in it); the body is
/// [`BuiltFile::write_to`], never in memory.
pub fn build_file(out: OutgoingFile) -> Result<BuiltFile> {
    let p = out.payload;
    if p.content_id.is_empty() || p.content_id.contains(['<', '>', '\r', '\n', '"']) {
        return Err(Error::InvalidArgument(format!(
            "bad Content-ID {:?}",
            p.content_id
        )));
    }
    let mut messaging = out.messaging;
    let mut props = vec![Property::new("MimeType", &p.mime_type)];
    props.extend(p.properties);
    messaging
        .user_messages
        .first_mut()
        .ok_or_else(|| Error::InvalidArgument("payloads need a UserMessage".into()))?
        .payloads
        .push(PartInfo {
            href: Some(format!("cid:{}", p.content_id)),
            properties: props,
            schema: None,
            description: None,
        });
    let message_id = message_id_of(&messaging)?;
    let (boundary, sha256, payload_len) = scan_payload(p.path)?;
    let (env, mut security, signature) = sign(
        &messaging,
        out.soap,
        out.signer,
        &[(p.content_id.as_str(), sha256)],
    )?;
    security.push_str(&signature);
    let (env, references) = fill_security(&env, &security)?;
    let pkg = Package {
        soap: env.into_bytes(),
        soap_content_type: out.soap.content_type().into(),
        attachments: vec![Attachment::new(&p.content_id, &p.mime_type, Vec::new())],
    };
    let (content_type, mut frame, at) = pkg.write_mime(Some(0), Some(boundary))?;
    let tail = frame.split_off(at);
    Ok(BuiltFile {
        content_type,
        head: frame,
        payload: p.path.to_path_buf(),
        payload_len,
        tail,
        payload_sha256: sha256,
        message_id,
        references,
    })
}

/// Read a payload file once: a MIME boundary absent from it, its SHA-256 and its length.
fn scan_payload(path: &Path) -> Result<(String, [u8; 32], u64)> {
    let io = |e| Error::io(format!("cannot read {}", path.display()), e);
    for _ in 0..8 {
        let boundary = package::new_boundary()?;
        let delim = format!("--{boundary}").into_bytes();
        let mut f = std::fs::File::open(path).map_err(io)?;
        let mut sha = openssl::sha::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        // The end of the previous piece, so that a delimiter across two is found.
        let mut carry: Vec<u8> = Vec::new();
        let mut len = 0u64;
        let mut clash = false;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(e)),
            };
            let piece = &buf[..n];
            sha.update(piece);
            len += n as u64;
            if !clash {
                carry.extend_from_slice(&piece[..piece.len().min(delim.len())]);
                clash =
                    crate::bytes::contains(&carry, &delim) || crate::bytes::contains(piece, &delim);
                let keep = delim.len() - 1;
                carry = piece[piece.len().saturating_sub(keep)..].to_vec();
            }
        }
        if !clash {
            return Ok((boundary, sha.finish(), len));
        }
    }
    Err(Error::Internal(
        "no MIME boundary absent from the payload".into(),
    ))
}

/// The most bytes of WS-Security-encrypted or gzipped attachments [`read_spooled`] reads into
/// memory to decrypt or decompress them.
pub const MAX_TRANSFORMED_IN_MEMORY: u64 = 64 << 20;

/// Read a message received into a spool ([`super::spool::Spooler`]) from the file `spool`:
/// the signature is verified with the attachment digests computed as the body arrived, and a
/// payload that needs neither decrypting nor decompressing stays in the spool
/// ([`ReceivedPayload::file`]). A message with WS-Security-encrypted or gzipped payloads is
/// read as [`read`] reads it, its payloads in memory — up to [`MAX_TRANSFORMED_IN_MEMORY`]
/// bytes of attachments in all, larger ones are refused (`TooLarge`) before anything is read:
/// Layer Security's own messages are neither (CMS compresses and encrypts end to end), and the
/// header that says so is not verified yet.
pub fn read_spooled(pkg: &SpooledPackage, spool: &Path, opts: &ReadOptions) -> Result<Incoming> {
    let doc = xml::parse_bytes(&pkg.soap, &opts.limits)?;
    let env = envelope::read(&doc, envelope::UNDERSTOOD)?;
    let messaging_node = env
        .messaging
        .ok_or_else(|| Error::InvalidEbms("the message has no eb:Messaging header".into()))?;
    let encrypted = env
        .security
        .is_some_and(|sec| xml::child(sec, xml::NS_XENC, "EncryptedKey").is_some());
    let gzipped = Messaging::parse(messaging_node)?
        .user_messages
        .iter()
        .flat_map(|u| &u.payloads)
        .any(PartInfo::is_gzip);
    if encrypted || gzipped {
        let in_file: u64 = pkg
            .attachments
            .iter()
            .map(|a| match a.body {
                SpooledBody::File { len, .. } => len,
                SpooledBody::Memory(_) => 0,
            })
            .sum();
        if in_file > MAX_TRANSFORMED_IN_MEMORY {
            return Err(Error::TooLarge(format!(
                "{in_file} bytes of WS-Security-encrypted or gzipped attachments: such payloads \
                 are decrypted and decompressed in memory, up to {MAX_TRANSFORMED_IN_MEMORY} \
                 bytes (send large documents CMS-sealed)"
            )));
        }
        drop(doc);
        return read_package(pkg.to_package(spool, opts.limits.max_part)?, opts);
    }
    let parts = pkg.parts(spool);
    let covered = CoveredParts {
        messaging: Some(messaging_node),
        body: env.body,
        attachments: &parts,
        partial: false,
    };
    let verified = wss::verify_parts(&doc, env.security, &covered, &opts.policy)?;
    let messaging = Messaging::parse(messaging_node)?;
    let mut left: Vec<&super::spool::SpooledAttachment> = pkg.attachments.iter().collect();
    let mut payloads = Vec::new();
    for um in &messaging.user_messages {
        for pi in &um.payloads {
            let Some(cid) = pi.content_id() else { continue };
            let at = left
                .iter()
                .position(|a| a.content_id == cid)
                .ok_or_else(|| {
                    Error::InvalidEbms(format!(
                        "payload cid:{cid} is not in the message (or described twice)"
                    ))
                })?;
            let a = left.swap_remove(at);
            let (data, file) = match &a.body {
                SpooledBody::File {
                    offset,
                    len,
                    sha256,
                } => (
                    Vec::new(),
                    Some(PayloadFile {
                        path: spool.to_path_buf(),
                        offset: *offset,
                        len: *len,
                        sha256: Some(*sha256),
                    }),
                ),
                SpooledBody::Memory(d) => (d.clone(), None),
            };
            payloads.push(ReceivedPayload {
                content_id: cid.to_string(),
                mime_type: pi.property("MimeType").map(str::to_string),
                properties: pi.properties.clone(),
                data,
                file,
            });
        }
    }
    if !left.is_empty() {
        return Err(Error::InvalidEbms(
            "an attachment is not described by any PartInfo".into(),
        ));
    }
    Ok(Incoming {
        soap: env.version,
        messaging,
        payloads,
        verified,
        encrypted: false,
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
    check_receipt_of(receipt, &sent.message_id, &sent.references)
}

/// [`check_receipt`] for a message known by its MessageId and the references we signed.
pub fn check_receipt_of(
    receipt: &Incoming,
    message_id: &str,
    references: &[SignedRef],
) -> Result<()> {
    let (sig, nrr) = receipt
        .messaging
        .signals
        .iter()
        .find_map(|s| match &s.signal {
            Signal::Receipt { nrr, .. } => Some((s, nrr)),
            _ => None,
        })
        .ok_or_else(|| Error::InvalidEbms("the message is not a receipt".into()))?;
    if sig.info.ref_to_message_id.as_deref() != Some(message_id) {
        return Err(Error::InvalidEbms(format!(
            "the receipt refers to {:?}, not to {message_id}",
            sig.info.ref_to_message_id
        )));
    }
    let same = nrr.len() == references.len()
        && references.iter().all(|s| {
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
