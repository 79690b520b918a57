//! Opening in constant memory: the layers are peeled as the bytes pass, each layer a reader
//! over the one around it (the encrypted content decrypted, the compressed content inflated,
//! the signed content hashed, S/MIME base64 decoded), and the document is written to the
//! caller's writer as it appears.
//!
//! What is written is not authentic until [`open_stream`] returns `Ok`: the signature is
//! checked after the content it covers has passed, and the authentication tag of
//! AuthEnvelopedData after all of the ciphertext. [`open_file`] writes to a temporary file and
//! renames it into place only then. When a layer inside AuthEnvelopedData fails, the rest of
//! the ciphertext is read and the tag checked: altered ciphertext is reported as the
//! decryption failure it is, not as whatever the altered plaintext looked like.
//!
//! Read in memory (bounded by `max_output` plus the wrapping allowance) instead: a
//! `multipart/signed` entity (its parts are delimited by a boundary and its signature comes
//! last), a quoted-printable body. The key decisions (the recipient, the signer, the policy)
//! are those of the in-memory path, shared with it.

use super::{
    content_type, wrapped_limit, ContentType, Embedded, Evidence, Kind, SignedContent, State,
};
use crate::asn1::{self, tag};
use crate::cms::crypto::{self, AlgId, Digest};
use crate::cms::stream::{from_io, read_bounded, to_io, Digester, Input, Octets, BUF};
use crate::cms::{OpenOptions, Opened};
use crate::error::{Error, Result};
use crate::{mime, oid};
use openssl::hash::Hasher;
use openssl::symm::{Crypter, Mode};
use std::io::{self, Read, Write};

/// Largest RecipientInfos, certificates, CRLs or SignerInfos field read.
const MAX_FIELD: usize = 1 << 20;
/// Largest small element (a version, an OID, an AlgorithmIdentifier).
const MAX_SMALL: usize = 4096;

pub(crate) fn open_stream(
    input: &mut dyn Read,
    output: &mut dyn Write,
    opts: &OpenOptions,
) -> Result<Opened> {
    let mut st = State {
        opts,
        out: Opened::default(),
        budget: wrapped_limit(opts.max_output),
        trace: None,
        verification_failed: false,
    };
    let mut s = Streamer {
        st: &mut st,
        depth: 0,
        leaf_seen: false,
        inflate_budget: std::rc::Rc::new(std::cell::Cell::new(wrapped_limit(opts.max_output))),
        evidence_decided: false,
    };
    // However it is framed (segments, base64, padding), a sealed message is at most about
    // twice the document: reading stops there, whatever the input keeps sending.
    let input_limit = wrapped_limit(opts.max_output)
        .saturating_mul(2)
        .saturating_add(1 << 20);
    let mut limited = Limited {
        inner: input,
        left: input_limit,
        limit: input_limit,
    };
    let mut inp = Input::new(&mut limited);
    let head = inp.peek(BUF)?;
    if head.is_empty() {
        return Err(Error::Truncated("the input is empty".into()));
    }
    if head[0] == tag::SEQUENCE {
        s.content_info(&mut inp, output)?;
        inp.expect_end("the CMS object")?;
    } else if super::is_pem(head) {
        s.pem(&mut inp, output)?;
    } else if mime::looks_like_entity(head) {
        s.mime(&mut inp, output)?;
    } else {
        return Err(Error::Malformed(
            "the input is neither a CMS object (DER/BER/PEM) nor an S/MIME entity".into(),
        ));
    }
    if !s.leaf_seen {
        return Err(Error::Malformed("the input holds no document".into()));
    }
    output
        .flush()
        .map_err(|e| from_io(e, "writing the document"))?;
    if st.out.signer.is_none() && !opts.allow_unsigned {
        return Err(Error::Unsigned(
            "no signature was found; refusing an unsigned document (allow it explicitly if expected)".into(),
        ));
    }
    Ok(st.out)
}

pub(crate) fn open_file(
    input: &std::path::Path,
    output: &std::path::Path,
    opts: &OpenOptions,
) -> Result<Opened> {
    let mut src = std::fs::File::open(input).map_err(|e| Error::Io {
        context: format!("opening {}", input.display()),
        source: e,
    })?;
    crate::cms::stream::write_then_rename(output, |w| open_stream(&mut src, w, opts))
}

struct Streamer<'s, 'o> {
    st: &'s mut State<'o>,
    depth: u32,
    leaf_seen: bool,
    /// What all compressed layers together may inflate to (the in-memory path's budget:
    /// `max_output` plus the wrapping allowance, shared by the layers).
    inflate_budget: std::rc::Rc<std::cell::Cell<u64>>,
    /// Whether an inner SignedData already decided the receipt evidence: the innermost
    /// verified layer decides it, as in memory (where it is verified last).
    evidence_decided: bool,
}

/// One small element, parsed.
fn small(inp: &mut Input, what: &str) -> Result<Vec<u8>> {
    Ok(inp.element(what, MAX_SMALL)?.1)
}

/// A version field: an INTEGER.
fn version(inp: &mut Input) -> Result<Vec<u8>> {
    let (h, raw) = inp.element("version", MAX_SMALL)?;
    if h.tag != tag::INTEGER {
        return Err(Error::Malformed(format!(
            "expected version (tag 0x02), found tag 0x{:02x}",
            h.tag
        )));
    }
    Ok(raw)
}

fn oid_of(raw: &[u8], what: &str) -> Result<Vec<u8>> {
    let t = asn1::parse_single(raw)?.expect(tag::OID, what)?;
    Ok(t.content.to_vec())
}

impl Streamer<'_, '_> {
    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > self.st.opts.max_depth * 2 + 4 {
            return Err(Error::TooDeep(format!(
                "more than {} nested layers",
                self.st.opts.max_depth
            )));
        }
        Ok(())
    }

    /// A ContentInfo.
    fn content_info(&mut self, inp: &mut Input, out: &mut dyn Write) -> Result<()> {
        self.enter()?;
        let h = inp.expect_header(tag::SEQUENCE, "ContentInfo")?;
        let end = inp.end_of(&h);
        let ct = content_type(&oid_of(&small(inp, "contentType")?, "contentType")?)?;
        let h0 = inp.expect_header(tag::ctx(0), "content")?;
        let end0 = inp.end_of(&h0);
        self.cms(inp, ct, out)?;
        inp.close(end0, "the content of a ContentInfo")?;
        inp.close(end, "a ContentInfo")
    }

    /// The content of a CMS layer of type `ct` (a SignedData, an EnvelopedData, ... or the
    /// OCTET STRING of data).
    fn cms(&mut self, inp: &mut Input, ct: ContentType, out: &mut dyn Write) -> Result<()> {
        match ct {
            ContentType::Data => {
                let h = inp.header("data")?;
                if h.tag & !0x20 != tag::OCTET_STRING {
                    return Err(Error::Malformed("data is not an OCTET STRING".into()));
                }
                let mut oct = Octets::new(inp, &h);
                self.data(&mut oct, out)
            }
            ContentType::Signed => self.signed_data(inp, out),
            ContentType::Enveloped => self.enveloped(inp, false, out),
            ContentType::AuthEnveloped => self.enveloped(inp, true, out),
            ContentType::Compressed => self.compressed(inp, out),
            ContentType::Receipt => Err(Error::Malformed(
                "this is a signed receipt (id-ct-receipt), not a document: check it against \
                 the message it answers (layersec verify-receipt)"
                    .into(),
            )),
        }
    }

    /// The content of a layer: eContent, decrypted or inflated bytes, of type `ct`.
    fn content(&mut self, r: &mut dyn Read, ct: ContentType, out: &mut dyn Write) -> Result<()> {
        if ct == ContentType::Data {
            return self.data(r, out);
        }
        let mut inp = Input::new(r);
        self.cms(&mut inp, ct, out)?;
        inp.expect_end("a CMS layer")
    }

    /// Data: a MIME entity, a nested ContentInfo (CMS nested without MIME), or the document.
    fn data(&mut self, r: &mut dyn Read, out: &mut dyn Write) -> Result<()> {
        let mut inp = Input::new(r);
        let head = inp.peek(BUF)?;
        if mime::looks_like_entity(head) {
            self.mime(&mut inp, out)
        } else if super::is_nested_cms(head) {
            self.content_info(&mut inp, out)?;
            inp.expect_end("a nested CMS object")
        } else {
            // Plain CMS content without MIME headers (e.g. made by `openssl cms`).
            self.leaf(&mut inp, None, "application/octet-stream".into(), out)
        }
    }

    /// The document.
    fn leaf(
        &mut self,
        r: &mut dyn Read,
        filename: Option<String>,
        mime_type: String,
        out: &mut dyn Write,
    ) -> Result<()> {
        let max = self.st.opts.max_output;
        let mut buf = vec![0u8; 4 * BUF];
        let mut n = 0u64;
        loop {
            let k = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(from_io(e, "reading the input")),
            };
            n += k as u64;
            if n > max {
                // Read on (without writing) up to the limit of the layers around the document,
                // so that a compressed layer expanding beyond that is reported as the
                // decompression bomb it is, as the in-memory path reports it.
                let wrapped = wrapped_limit(max);
                while n <= wrapped {
                    match r.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => n += k as u64,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(from_io(e, "reading the input")),
                    }
                }
                return Err(Error::TooLarge(format!(
                    "the document is larger than the limit of {max} bytes"
                )));
            }
            out.write_all(&buf[..k])
                .map_err(|e| from_io(e, "writing the document"))?;
        }
        self.leaf_seen = true;
        self.st.out.size = n;
        self.st.out.filename = filename;
        self.st.out.mime_type = mime_type;
        Ok(())
    }

    /// A MIME entity.
    fn mime(&mut self, inp: &mut Input, out: &mut dyn Write) -> Result<()> {
        self.enter()?;
        let head = inp.peek(BUF)?;
        let hlen = match header_block_len(head) {
            Some(n) => n,
            // The input ends within the headers: an entity without a body, as the in-memory
            // parser reads it.
            None if head.len() < BUF => head.len(),
            None => {
                return Err(Error::MalformedMime(format!(
                    "MIME headers longer than {BUF} bytes"
                )))
            }
        };
        let headers = head[..hlen].to_vec();
        inp.consume(hlen);
        let e = mime::Entity::parse(&headers)?;
        let ct = e.content_type();
        let cte = e
            .header("content-transfer-encoding")
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match ct.as_str() {
            "application/pkcs7-mime" | "application/x-pkcs7-mime" => {
                let smime_type = e.content_type_param("smime-type");
                self.st.layer(format!(
                    "S/MIME entity ({})",
                    smime_type.unwrap_or_else(|| "no smime-type".into())
                ))?;
                match cte.as_str() {
                    "" | "binary" | "8bit" | "7bit" => {
                        self.content_info(inp, out)?;
                        inp.expect_end("an S/MIME entity")
                    }
                    "base64" => {
                        let mut dec =
                            Base64Reader::new(inp, false, wrapped_limit(self.st.opts.max_output));
                        let mut inner = Input::new(&mut dec);
                        self.content_info(&mut inner, out)?;
                        inner.expect_end("an S/MIME entity")
                    }
                    _ => self.buffered(headers, inp, out),
                }
            }
            "multipart/signed" => self.buffered(headers, inp, out),
            _ => {
                let filename = e.filename();
                match cte.as_str() {
                    "" | "binary" | "8bit" | "7bit" => self.leaf(inp, filename, ct, out),
                    "base64" => {
                        let mut dec =
                            Base64Reader::new(inp, false, wrapped_limit(self.st.opts.max_output));
                        self.leaf(&mut dec, filename, ct, out)
                    }
                    _ => self.buffered(headers, inp, out),
                }
            }
        }
    }

    /// The rest of a MIME entity read in memory (bounded) and opened the in-memory way.
    fn buffered(
        &mut self,
        headers: Vec<u8>,
        rest: &mut dyn Read,
        out: &mut dyn Write,
    ) -> Result<()> {
        let mut all = headers;
        read_bounded(
            rest,
            &mut all,
            wrapped_limit(self.st.opts.max_output),
            "a multipart/signed or quoted-printable entity",
        )?;
        self.st.walk_from(&all, Kind::Mime)?;
        drop(all);
        // A signature verified in there is inner to every layer streamed around it.
        self.evidence_decided |= self.st.out.signer.is_some();
        let doc = std::mem::take(&mut self.st.out.document);
        out.write_all(&doc)
            .map_err(|e| from_io(e, "writing the document"))?;
        self.leaf_seen = true;
        Ok(())
    }

    /// PEM around a ContentInfo.
    fn pem(&mut self, inp: &mut Input, out: &mut dyn Write) -> Result<()> {
        // Skip to the BEGIN line and past it.
        loop {
            let b = inp.peek(BUF)?;
            if b.is_empty() {
                return Err(Error::Malformed("no PEM block".into()));
            }
            match crate::bytes::find(b, b"-----BEGIN") {
                Some(i) => {
                    inp.consume(i);
                    break;
                }
                None => {
                    let keep = b.len().saturating_sub(10).max(1);
                    inp.consume(keep);
                }
            }
        }
        // Past the BEGIN label, as `decode_pem` reads it.
        inp.consume(10);
        let b = inp.peek(BUF)?;
        let hdr_end = crate::bytes::find(b, b"-----")
            .ok_or_else(|| Error::Malformed("bad PEM header".into()))?;
        inp.consume(hdr_end + 5);
        let mut dec = Base64Reader::new(inp, true, wrapped_limit(self.st.opts.max_output));
        let inner_result = {
            let mut inner = Input::new(&mut dec);
            self.content_info(&mut inner, out)
                .and_then(|()| inner.expect_end("the PEM block"))
        };
        let ended_at_dash = dec.ended_at_dash;
        // The END line must follow the base64 (a `-` elsewhere is bad base64, as in memory).
        if !ended_at_dash {
            inner_result?;
            return Err(Error::Truncated("PEM block without its END line".into()));
        }
        if !inp.peek(8)?.starts_with(b"-----END") {
            let rest_has_end = {
                let b = inp.peek(BUF)?;
                crate::bytes::find(b, b"-----END").is_some()
            };
            return Err(if rest_has_end {
                Error::Malformed("bad base64 in the PEM block".into())
            } else {
                Error::Truncated("PEM block without its END line".into())
            });
        }
        inner_result
    }

    fn signed_data(&mut self, inp: &mut Input, out: &mut dyn Write) -> Result<()> {
        self.enter()?;
        let h = inp.expect_header(tag::SEQUENCE, "SignedData")?;
        let end = inp.end_of(&h);
        let version = version(inp)?;
        let (dh, digest_algs) = inp.element("digestAlgorithms", MAX_SMALL)?;
        if dh.tag != tag::SET {
            return Err(Error::Malformed(
                "SignedData without digestAlgorithms".into(),
            ));
        }
        // The content is hashed with SHA-256 and with what digestAlgorithms lists (the field
        // is not signed, and the in-memory path does not read it: entries it cannot read are
        // skipped), whatever the policy: the SignerInfo's algorithm is judged when it is
        // verified. A signer using a digest not hashed here is an UnsupportedAlgorithm.
        let mut listed = vec![Digest::Sha256];
        if let Ok(mut r) = asn1::parse_single(&digest_algs).and_then(|t| t.children()) {
            while let Ok(Some(a)) = r.next() {
                if let Ok(d) = AlgId::parse(a).and_then(|a| Digest::from_oid(a.oid, true)) {
                    if !listed.contains(&d) {
                        listed.push(d);
                    }
                }
            }
        }
        let mut hashers: Vec<(Digest, Hasher)> = Vec::new();
        for d in listed {
            hashers.push((d, Hasher::new(d.md())?));
        }
        let he = inp.expect_header(tag::SEQUENCE, "encapContentInfo")?;
        let eend = inp.end_of(&he);
        let ect_raw = small(inp, "eContentType")?;
        let ect = oid_of(&ect_raw, "eContentType")?;
        if !inp.more(eend)? {
            return Err(Error::Malformed(
                "a detached signature without its content".into(),
            ));
        }
        let h0 = inp.expect_header(tag::ctx(0), "eContent")?;
        let end0 = inp.end_of(&h0);
        let ho = inp.header("eContent")?;
        if ho.tag & !0x20 != tag::OCTET_STRING {
            return Err(Error::Malformed("eContent is not an OCTET STRING".into()));
        }
        let inner_type = content_type(&ect)?;
        // The inner layers' result: on a failure of theirs (not of the input itself) the rest
        // of the content is still hashed, so that the signature decides first, as in memory,
        // where it is checked before the content is read.
        let inner = {
            let mut oct = Octets::new(inp, &ho);
            let mut hashing = Hashing {
                inner: &mut oct,
                digester: Digester::new(std::mem::take(&mut hashers)),
                src_failed: false,
            };
            let r = match self.content(&mut hashing, inner_type, out) {
                Ok(()) => match hashing.drain()? {
                    0 => Ok(()),
                    _ => Err(Error::Malformed(
                        "bytes after the end of the signed content's layer".into(),
                    )),
                },
                Err(e) if hashing.src_failed || stops_reading(&e) => return Err(e),
                Err(e) => {
                    hashing.drain()?;
                    Err(e)
                }
            };
            hashers = hashing.digester.finish()?;
            r
        };
        inp.close(end0, "eContent")?;
        inp.close(eend, "encapContentInfo")?;
        let certs = match inp.peek_tag()? {
            Some(t) if t == tag::ctx(0) => Some(inp.element("certificates", MAX_FIELD)?.1),
            _ => None,
        };
        let crls = match inp.peek_tag()? {
            Some(t) if t == tag::ctx(1) => Some(inp.element("crls", MAX_FIELD)?.1),
            _ => None,
        };
        let (sh, signer_infos) = inp.element("signerInfos", MAX_FIELD)?;
        if sh.tag != tag::SET {
            return Err(Error::Malformed("SignedData without signerInfos".into()));
        }
        inp.close(end, "SignedData")?;

        let digests: Vec<(Digest, Vec<u8>)> = hashers
            .into_iter()
            .map(|(d, mut h)| Ok((d, h.finish()?.to_vec())))
            .collect::<Result<_>>()?;
        let embedded = Embedded::of(certs.as_deref().map(asn1::parse_single).transpose()?)?;
        // The SignedData as received without its content: what a signed receipt refers to.
        let mut parts: Vec<&[u8]> = vec![&version, &digest_algs];
        let eci = asn1::seq(&[&ect_raw]);
        parts.push(&eci);
        if let Some(c) = &certs {
            parts.push(c);
        }
        if let Some(c) = &crls {
            parts.push(c);
        }
        parts.push(&signer_infos);
        let detached = asn1::seq(&parts);
        let si = asn1::parse_single(&signer_infos)?;
        // Layers are verified innermost first here (outermost first in memory): the outermost
        // signer is the one reported, the innermost layer's receipt evidence the one kept, as
        // in memory.
        self.st.out.signer = None;
        self.st.out.signing_time = None;
        let inner_evidence = self.evidence_decided.then(|| {
            (
                self.st.out.signed_data.take(),
                self.st.out.receipt_request.take(),
            )
        });
        self.st.verify_signers(
            si,
            &ect,
            &SignedContent::Digests(&digests),
            &embedded,
            Some(Evidence {
                sd: &detached,
                ci: None,
            }),
        )?;
        if let Some((sd, rr)) = inner_evidence {
            self.st.out.signed_data = sd;
            self.st.out.receipt_request = rr;
        }
        self.evidence_decided = true;
        inner
    }

    fn enveloped(&mut self, inp: &mut Input, auth: bool, out: &mut dyn Write) -> Result<()> {
        self.enter()?;
        let what = if auth {
            "AuthEnvelopedData"
        } else {
            "EnvelopedData"
        };
        let h = inp.expect_header(tag::SEQUENCE, what)?;
        let end = inp.end_of(&h);
        version(inp)?;
        if inp.peek_tag()? == Some(tag::ctx(0)) {
            inp.element("originatorInfo", MAX_FIELD)?;
        }
        let (rh, ris_raw) = inp.element("recipientInfos", MAX_FIELD)?;
        if rh.tag != tag::SET {
            return Err(Error::Malformed(format!("{what} without recipientInfos")));
        }
        let he = inp.expect_header(tag::SEQUENCE, "encryptedContentInfo")?;
        let eend = inp.end_of(&he);
        let ect = oid_of(&small(inp, "contentType")?, "contentType")?;
        let calg_raw = small(inp, "contentEncryptionAlgorithm")?;
        let calg = AlgId::parse(asn1::parse_single(&calg_raw)?)?;
        let params = crypto::parse_content_alg(&calg)?;
        self.st.check_content_alg(&calg, &params, auth)?;
        if !inp.more(eend)? {
            return Err(Error::Malformed(
                "detached encrypted content is not supported".into(),
            ));
        }
        let hc = inp.header("encryptedContent")?;
        if hc.tag & !0x20 != 0x80 {
            return Err(Error::Malformed("bad encryptedContent".into()));
        }
        let inner_type = content_type(&ect)?;
        let (cek, how) = self
            .st
            .content_key(asn1::parse_single(&ris_raw)?, params.alg)?;
        if cek.len() != params.alg.key_len() {
            return Err(Error::KeyUnwrapFailed(format!(
                "recovered a {}-byte key for a cipher that takes {}",
                cek.len(),
                params.alg.key_len()
            )));
        }
        self.st.layer(format!(
            "{} ({}, {})",
            if auth {
                "authEnvelopedData"
            } else {
                "envelopedData"
            },
            calg.name(),
            how
        ))?;
        self.st.out.encrypted = true;
        let aead = params.alg.is_aead();
        let mut crypter = Crypter::new(params.alg.cipher(), Mode::Decrypt, &cek, Some(&params.iv))?;
        crypter.pad(!aead);
        let limit = wrapped_limit(self.st.opts.max_output);
        // The inner layers' result. On a failure of theirs (not of the input itself) the rest
        // of the ciphertext is still decrypted: the tag (GCM) or the padding (CBC) then
        // decides first, as in memory, where the content is decrypted before it is read.
        let inner = {
            let mut oct = Octets::new(inp, &hc);
            let mut dec = Decrypting {
                src: &mut oct,
                crypter: &mut crypter,
                aead,
                cbuf: vec![0u8; BUF],
                carry: 0,
                pending: Vec::new(),
                at: 0,
                finished: false,
                src_failed: false,
                count: 0,
                limit,
            };
            match self.content(&mut dec, inner_type, out) {
                Ok(()) => match dec.drain()? {
                    0 => Ok(()),
                    _ => Err(Error::Malformed(
                        "bytes after the end of the encrypted content's layer".into(),
                    )),
                },
                Err(e) if dec.src_failed || stops_reading(&e) => return Err(e),
                Err(e) => {
                    dec.drain()?;
                    Err(e)
                }
            }
        };
        // The end of the layer, and the tag: it decides over what the inner layers said.
        let tail = (|| -> Result<()> {
            inp.close(eend, "encryptedContentInfo")?;
            if aead {
                if inp.peek_tag()? == Some(tag::ctx(1)) {
                    return Err(Error::UnsupportedAlgorithm(
                        "authenticated attributes in AuthEnvelopedData (they follow the content \
                         they authenticate, which a stream cannot wait for)"
                            .into(),
                    ));
                }
                let mac_raw = inp.element("mac", MAX_SMALL)?.1;
                let mac_t = asn1::parse_single(&mac_raw)?.expect(tag::OCTET_STRING, "mac")?;
                let mac = mac_t.octets()?;
                if mac.len() != params.tag_len {
                    return Err(Error::Malformed(format!(
                        "authentication tag of {} bytes, the parameters say {}",
                        mac.len(),
                        params.tag_len
                    )));
                }
                crypter.set_tag(&mac)?;
                let mut last = [0u8; 32];
                if crypter.finalize(&mut last).is_err() {
                    return Err(Error::DecryptFailed(
                        "the authentication tag does not match".into(),
                    ));
                }
            } else if inp.peek_tag()? == Some(tag::ctx(1)) {
                inp.element("unprotectedAttrs", MAX_FIELD)?;
            }
            Ok(())
        })();
        match (inner, tail) {
            (_, Err(e @ Error::DecryptFailed(_))) => Err(e),
            (Err(e), _) | (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(())) => inp.close(end, what),
        }
    }

    fn compressed(&mut self, inp: &mut Input, out: &mut dyn Write) -> Result<()> {
        self.enter()?;
        let h = inp.expect_header(tag::SEQUENCE, "CompressedData")?;
        let end = inp.end_of(&h);
        version(inp)?;
        let alg_raw = small(inp, "compressionAlgorithm")?;
        let alg = AlgId::parse(asn1::parse_single(&alg_raw)?)?;
        if alg.oid != oid::ZLIB {
            return Err(Error::UnsupportedAlgorithm(format!(
                "compression {}",
                alg.name()
            )));
        }
        let he = inp.expect_header(tag::SEQUENCE, "encapContentInfo")?;
        let eend = inp.end_of(&he);
        let ect = oid_of(&small(inp, "eContentType")?, "eContentType")?;
        let inner_type = content_type(&ect)?;
        let h0 = inp.expect_header(tag::ctx(0), "eContent")?;
        let end0 = inp.end_of(&h0);
        let ho = inp.header("eContent")?;
        if ho.tag & !0x20 != tag::OCTET_STRING {
            return Err(Error::Malformed("eContent is not an OCTET STRING".into()));
        }
        self.st.layer("compressedData (zlib)".into())?;
        {
            let mut oct = Octets::new(inp, &ho);
            let mut inf = Inflating {
                src: &mut oct,
                z: zlib_rs::Inflate::new(true, 15),
                inbuf: vec![0u8; BUF],
                start: 0,
                end: 0,
                src_done: false,
                done: false,
                budget: self.inflate_budget.clone(),
                max_output: self.st.opts.max_output,
            };
            self.content(&mut inf, inner_type, out)?;
            let mut scratch = [0u8; 512];
            match inf.read(&mut scratch) {
                Ok(0) => {}
                Ok(_) => {
                    return Err(Error::Malformed(
                        "bytes after the end of the compressed content's layer".into(),
                    ))
                }
                Err(e) => return Err(from_io(e, "reading the input")),
            }
            // Whatever follows the end of the zlib stream is ignored, as the in-memory path
            // ignores it.
            oct.drain()?;
        }
        inp.close(end0, "eContent")?;
        inp.close(eend, "encapContentInfo")?;
        inp.close(end, "CompressedData")
    }
}

/// Errors after which nothing more is read: the input is too large, or writing the document
/// failed (a full disk says nothing about the message).
fn stops_reading(e: &Error) -> bool {
    matches!(
        e,
        Error::TooLarge(_) | Error::ExpansionTooLarge(_) | Error::Io { .. }
    )
}

/// The length of the header block (through the empty line), if it is complete in `b`.
fn header_block_len(b: &[u8]) -> Option<usize> {
    if b.starts_with(b"\r\n") {
        return Some(2);
    }
    if b.starts_with(b"\n") {
        return Some(1);
    }
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|&c| c == b'\n') {
        let nl = i + p;
        let rest = &b[nl + 1..];
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        if rest.starts_with(b"\n") {
            return Some(nl + 2);
        }
        i = nl + 1;
    }
    None
}

/// The input, refused beyond `limit` bytes.
struct Limited<'a> {
    inner: &'a mut dyn Read,
    left: u64,
    limit: u64,
}

impl Read for Limited<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // At the limit: anything more is too much; the end of the input is fine.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(to_io(Error::TooLarge(format!(
                    "the sealed message is larger than {} bytes, more than a document within \
                     the limit can take",
                    self.limit
                )))),
            };
        }
        let n = (out.len() as u64).min(self.left) as usize;
        let k = self.inner.read(&mut out[..n])?;
        self.left -= k as u64;
        Ok(k)
    }
}

/// Hashes what passes.
struct Hashing<'a> {
    inner: &'a mut dyn Read,
    digester: Digester<Vec<(Digest, Hasher)>>,
    /// Whether reading the content failed (the input, not what the content holds).
    src_failed: bool,
}

impl Hashing<'_> {
    fn drain(&mut self) -> Result<u64> {
        let mut scratch = vec![0u8; BUF];
        let mut n = 0u64;
        loop {
            match self.read(&mut scratch) {
                Ok(0) => return Ok(n),
                Ok(k) => n += k as u64,
                Err(e) => return Err(from_io(e, "reading the input")),
            }
        }
    }
}

impl Read for Hashing<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self
            .inner
            .read(out)
            .inspect_err(|_| self.src_failed = true)?;
        self.digester.update(&out[..n]).map_err(to_io)?;
        Ok(n)
    }
}

/// Decrypts what passes. CBC's padding is checked at the end of the ciphertext; an AEAD tag
/// by the caller, after the content.
struct Decrypting<'a> {
    src: &'a mut dyn Read,
    crypter: &'a mut Crypter,
    aead: bool,
    cbuf: Vec<u8>,
    /// Ciphertext read but not yet decrypted (less than a block).
    carry: usize,
    pending: Vec<u8>,
    at: usize,
    finished: bool,
    /// Whether reading the ciphertext failed (the input, not what it decrypts to).
    src_failed: bool,
    count: u64,
    limit: u64,
}

impl Decrypting<'_> {
    fn drain(&mut self) -> Result<u64> {
        let mut scratch = vec![0u8; BUF + 64];
        let mut n = 0u64;
        loop {
            match self.read(&mut scratch) {
                Ok(0) => return Ok(n),
                Ok(k) => n += k as u64,
                Err(e) => return Err(from_io(e, "reading the input")),
            }
        }
    }

    fn count(&mut self, n: usize) -> io::Result<()> {
        self.count += n as u64;
        if self.count > self.limit {
            return Err(to_io(Error::TooLarge(format!(
                "the encrypted content cannot hold a document within the limit of {} bytes",
                self.limit - crate::cms::WRAPPING_ALLOWANCE.min(self.limit)
            ))));
        }
        Ok(())
    }
}

impl Decrypting<'_> {
    /// Decrypt `self.cbuf[..n]` into `out` (at least `n` + 32 bytes).
    fn update_into(&mut self, n: usize, out: &mut [u8]) -> io::Result<usize> {
        let k = self
            .crypter
            .update(&self.cbuf[..n], out)
            .map_err(|e| to_io(e.into()))?;
        self.count(k)?;
        Ok(k)
    }
}

impl Read for Decrypting<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.at < self.pending.len() {
                let n = (self.pending.len() - self.at).min(out.len());
                out[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            if self.finished || out.is_empty() {
                return Ok(0);
            }
            let k = self
                .src
                .read(&mut self.cbuf[self.carry..])
                .inspect_err(|_| self.src_failed = true)?;
            let total = self.carry + k;
            // The cipher is given whole blocks until the last piece (a partial block inside
            // the stream would take OpenSSL's slower path for every later call).
            let n = if k == 0 { total } else { total - total % 16 };
            if k == 0 {
                self.finished = true;
            }
            if n == 0 && k != 0 {
                self.carry = total;
                continue;
            }
            let made = if out.len() >= n + 32 {
                // Straight into the caller's buffer.
                self.update_into(n, out)?
            } else {
                let mut pending = std::mem::take(&mut self.pending);
                pending.resize(n + 32, 0);
                let made = self.update_into(n, &mut pending)?;
                pending.truncate(made);
                self.pending = pending;
                self.at = 0;
                0
            };
            self.cbuf.copy_within(n..total, 0);
            self.carry = total - n;
            if self.finished && !self.aead {
                let mut last = [0u8; 64];
                let t = self.crypter.finalize(&mut last).map_err(|_| {
                    to_io(Error::DecryptFailed(
                        "bad padding after decryption (wrong key or altered ciphertext)".into(),
                    ))
                })?;
                self.count(t)?;
                if made > 0 {
                    // Returned after what was decrypted straight into `out`.
                    self.pending.clear();
                    self.pending.extend_from_slice(&last[..t]);
                    self.at = 0;
                } else {
                    self.pending.extend_from_slice(&last[..t]);
                }
            }
            if made > 0 {
                return Ok(made);
            }
        }
    }
}

/// Inflates what passes (zlib), refusing output beyond the limit.
struct Inflating<'a> {
    src: &'a mut dyn Read,
    z: zlib_rs::Inflate,
    inbuf: Vec<u8>,
    start: usize,
    end: usize,
    src_done: bool,
    done: bool,
    /// Shared by every compressed layer of the message.
    budget: std::rc::Rc<std::cell::Cell<u64>>,
    max_output: u64,
}

impl Read for Inflating<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.done {
                return Ok(0);
            }
            if self.start == self.end && !self.src_done {
                self.start = 0;
                self.end = self.src.read(&mut self.inbuf)?;
                if self.end == 0 {
                    self.src_done = true;
                }
            }
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let flush = if self.src_done {
                zlib_rs::InflateFlush::Finish
            } else {
                zlib_rs::InflateFlush::NoFlush
            };
            let status = self
                .z
                .decompress(&self.inbuf[self.start..self.end], out, flush)
                .map_err(|e| {
                    let why = self.z.error_message().unwrap_or(e.as_str());
                    to_io(Error::DecompressFailed(format!(
                        "corrupt zlib data ({why})"
                    )))
                })?;
            let used = (self.z.total_in() - in0) as usize;
            let made = (self.z.total_out() - out0) as usize;
            self.start += used;
            let left = self.budget.get();
            self.budget.set(left.saturating_sub(made as u64));
            if made as u64 > left {
                return Err(to_io(Error::ExpansionTooLarge(format!(
                    "the compressed content expands beyond the limit of {} bytes \
                     (decompression bomb?)",
                    self.max_output
                ))));
            }
            if status == zlib_rs::Status::StreamEnd {
                self.done = true;
            }
            if made > 0 {
                return Ok(made);
            }
            if self.done {
                return Ok(0);
            }
            if self.src_done && used == 0 {
                return Err(to_io(Error::DecompressFailed("truncated zlib data".into())));
            }
        }
    }
}

/// Base64 decoding as the bytes pass: white space skipped, anything else refused. In PEM mode
/// it ends at the first `-` (the END line, whose presence is recorded).
struct Base64Reader<'i, 'r> {
    inp: &'i mut Input<'r>,
    pem: bool,
    acc: u32,
    n: u8,
    pad: u8,
    out: [u8; 3],
    out_len: u8,
    out_at: u8,
    done: bool,
    ended_at_dash: bool,
    /// Decoded bytes so far, and the most the layer may have (as in memory, where a decoded
    /// layer is bounded by `max_output` plus the wrapping allowance).
    count: u64,
    limit: u64,
}

impl<'i, 'r> Base64Reader<'i, 'r> {
    fn new(inp: &'i mut Input<'r>, pem: bool, limit: u64) -> Self {
        Base64Reader {
            count: 0,
            limit,
            inp,
            pem,
            acc: 0,
            n: 0,
            pad: 0,
            out: [0; 3],
            out_len: 0,
            out_at: 0,
            done: false,
            ended_at_dash: false,
        }
    }

    fn finish_quantum(&mut self) -> Result<()> {
        match self.n {
            0 => {}
            2 => {
                self.out[0] = (self.acc >> 4) as u8;
                self.out_len = 1;
            }
            3 => {
                self.out[0] = (self.acc >> 10) as u8;
                self.out[1] = (self.acc >> 2) as u8;
                self.out_len = 2;
            }
            _ => return Err(Error::MalformedMime("truncated base64 data".into())),
        }
        self.out_at = 0;
        self.n = 0;
        Ok(())
    }
}

const fn b64_table() -> [u8; 256] {
    let mut t = [255u8; 256];
    let a = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[a[i] as usize] = i as u8;
        i += 1;
    }
    t
}
static B64: [u8; 256] = b64_table();

impl Read for Base64Reader<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.decode(out)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(to_io(Error::TooLarge(format!(
                "a base64 layer cannot hold a document within the limit of {} bytes",
                self.limit - crate::cms::WRAPPING_ALLOWANCE.min(self.limit)
            ))));
        }
        Ok(n)
    }
}

impl Base64Reader<'_, '_> {
    fn decode(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut w = 0;
        while w < out.len() {
            if self.out_at < self.out_len {
                out[w] = self.out[self.out_at as usize];
                self.out_at += 1;
                w += 1;
                continue;
            }
            if self.done {
                break;
            }
            let b = self.inp.peek(BUF).map_err(to_io)?;
            if b.is_empty() {
                self.done = true;
                self.finish_quantum().map_err(to_io)?;
                continue;
            }
            // Decode as much of the buffered text as fits.
            let mut used = 0;
            let mut stop = false;
            let bad = |c: u8| {
                to_io(Error::MalformedMime(format!(
                    "invalid base64 character 0x{c:02x}"
                )))
            };
            for &c in b {
                if w + 3 > out.len() {
                    break;
                }
                if c == b'-' && self.pem {
                    stop = true;
                    break;
                }
                used += 1;
                if c.is_ascii_whitespace() {
                    continue;
                }
                if c == b'=' {
                    self.pad += 1;
                    continue;
                }
                if self.pad > 0 {
                    return Err(to_io(Error::MalformedMime(
                        "base64 data continues after its padding".into(),
                    )));
                }
                let v = B64[c as usize];
                if v == 255 {
                    return Err(bad(c));
                }
                self.acc = (self.acc << 6) | v as u32;
                self.n += 1;
                if self.n == 4 {
                    out[w] = (self.acc >> 16) as u8;
                    out[w + 1] = (self.acc >> 8) as u8;
                    out[w + 2] = self.acc as u8;
                    w += 3;
                    self.acc = 0;
                    self.n = 0;
                }
            }
            self.inp.consume(used);
            if stop {
                self.done = true;
                self.ended_at_dash = true;
                self.finish_quantum().map_err(to_io)?;
                continue;
            }
            if used == 0 {
                // `out` has no room for a whole quantum: decode one into the spare buffer.
                if w > 0 {
                    break;
                }
                let mut tmp = [0u8; 3];
                let k = self.decode(&mut tmp)?;
                let m = k.min(out.len());
                out[..m].copy_from_slice(&tmp[..m]);
                // What did not fit stays for the next read.
                if k > m {
                    self.out[..k - m].copy_from_slice(&tmp[m..k]);
                    self.out_len = (k - m) as u8;
                    self.out_at = 0;
                }
                return Ok(m);
            }
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    //! The streaming open against the in-memory one on inputs made to tell them apart (found
    //! by review and by the differential fuzz target `cms_open`).
    use crate::cms::seal::{self, SignSpec};
    use crate::cms::{OpenOptions, SealOptions};
    use crate::error::ErrorCode;
    use crate::keys::{Identity, KeyType};
    use crate::oid;

    fn id(name: &str) -> Identity {
        Identity::generate(name, KeyType::EcP256, 30, None)
            .unwrap()
            .identity
    }

    /// Both opens on `input`: the same outcome (document and signer, or error code).
    fn both(input: &[u8], o: &OpenOptions) -> Result<crate::cms::Opened, ErrorCode> {
        let mem = crate::cms::open(input, o);
        let mut out = Vec::new();
        let st = super::open_stream(&mut &input[..], &mut out, o);
        match (mem, st) {
            (Ok(m), Ok(s)) => {
                assert!(m.document == out, "different documents");
                assert_eq!(m.signer, s.signer, "different signers");
                assert_eq!(m.signing_time, s.signing_time);
                assert_eq!(m.receipt_request.is_some(), s.receipt_request.is_some());
                Ok(m)
            }
            (Err(a), Err(b)) => {
                assert_eq!(a.code(), b.code(), "in memory: {a}; streamed: {b}");
                Err(a.code())
            }
            (m, s) => panic!(
                "in memory {:?}, streamed {:?}",
                m.map(|o| o.size),
                s.map(|o| o.size)
            ),
        }
    }

    fn spec(extra: Vec<Vec<u8>>) -> SignSpec<'static> {
        SignSpec {
            econtent_type: oid::DATA,
            scheme: crate::cms::SignatureScheme::Pkcs1v15,
            signing_time: crate::time::now_unix(),
            extra_attrs: extra,
        }
    }

    #[test]
    fn an_8_byte_length_is_refused_without_overflow() {
        let o = OpenOptions {
            allow_unsigned: true,
            ..Default::default()
        };
        let mut input = vec![
            0x30, 0x80, 0x06, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfa,
        ];
        input.extend_from_slice(&[0u8; 64]);
        let mut out = Vec::new();
        assert!(super::open_stream(&mut &input[..], &mut out, &o).is_err());
    }

    #[test]
    fn nested_signatures_name_the_outer_signer_and_keep_the_inner_evidence() {
        let (a, b) = (id("a"), id("b"));
        let inner_attr =
            crate::cms::receipt::receipt_request_attribute(b"doc-7", a.certificate()).unwrap();
        let doc = b"Content-Type: text/plain\r\n\r\nthe document\n";
        let inner = seal::signed_data(&[doc], &a, &spec(vec![inner_attr])).unwrap();
        let header = seal::pkcs7_entity_header("signed-data", "smime.p7m", "binary");
        let outer = seal::signed_data(&[&header, &inner], &b, &spec(vec![])).unwrap();
        let mut store = crate::cert::CertStore::new();
        store.add_partner(a.certificate().clone(), None);
        store.add_partner(b.certificate().clone(), None);
        let o = OpenOptions {
            partners: Some(&store),
            ..Default::default()
        };
        let opened = both(&outer, &o).unwrap();
        assert_eq!(opened.signer.as_ref(), Some(b.certificate()));
        assert!(opened.receipt_request.is_some());
    }

    #[test]
    fn nested_compression_shares_one_budget() {
        let big = vec![b'A'; 1_000_000];
        // Stored (level 0): the inner layer is as large compressed as inflated.
        let inner = seal::compressed_data(&[&big], 0).unwrap();
        // The outer layer's content is the whole inner ContentInfo (CMS nested without MIME):
        // 2 x 1,000,000 bytes inflated in all.
        let outer = seal::compressed_data(&[&inner], 6).unwrap();
        let o = OpenOptions {
            allow_unsigned: true,
            max_output: 1_100_000,
            ..Default::default()
        };
        assert_eq!(
            both(&outer, &o).map(|o| o.size).unwrap_err(),
            ErrorCode::ExpansionTooLarge
        );
        let roomy = OpenOptions {
            max_output: 4_000_000,
            ..o
        };
        assert_eq!(both(&outer, &roomy).unwrap().document, big);
    }

    #[test]
    fn a_version_that_is_not_an_integer_is_refused_by_both() {
        let a = id("a");
        let doc = b"Content-Type: text/plain\r\n\r\nx\n";
        let mut sd = seal::signed_data(&[doc], &a, &spec(vec![])).unwrap();
        // ContentInfo { OID, [0] { SEQUENCE { INTEGER 1 ... } } }: the version's tag.
        let at = sd.windows(3).position(|w| w == [0x02, 0x01, 0x01]).unwrap();
        sd[at] = 0x04;
        let o = OpenOptions {
            sender: Some(a.certificate()),
            ..Default::default()
        };
        assert_eq!(
            both(&sd, &o).map(|o| o.size).unwrap_err(),
            ErrorCode::Malformed
        );
    }

    #[test]
    fn altered_signed_content_is_a_digest_mismatch_in_both() {
        let a = id("a");
        let doc = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n";
        let mut sd = seal::signed_data(&[doc], &a, &spec(vec![])).unwrap();
        let at = sd.windows(4).position(|w| w == b"aGVs").unwrap();
        sd[at] = b'!';
        let o = OpenOptions {
            sender: Some(a.certificate()),
            ..Default::default()
        };
        assert_eq!(
            both(&sd, &o).map(|o| o.size).unwrap_err(),
            ErrorCode::DigestMismatch
        );
    }

    #[test]
    fn altered_ciphertext_is_a_decryption_failure_in_both() {
        let (a, b) = (id("a"), id("b"));
        let doc: Vec<u8> = (0..5000u32)
            .flat_map(|i| format!("{i};\n").into_bytes())
            .collect();
        let opts = SealOptions {
            compression: crate::cms::Compression::Never,
            ..Default::default()
        };
        let sealed = crate::cms::seal(&doc, &a, &[b.certificate().clone()], &opts).unwrap();
        let o = OpenOptions {
            recipient: Some(&b),
            sender: Some(a.certificate()),
            ..Default::default()
        };
        // Bytes of the ciphertext around the inner layers' headers (the ciphertext ends 18
        // bytes before the end, where the tag is, and is longer than the document by the
        // SignedData around it), flipped one at a time.
        let start = sealed.len() - 18 - doc.len() - 300;
        for at in (start..start + 1024).step_by(7) {
            let mut bad = sealed.clone();
            bad[at] ^= 0x55;
            let r = both(&bad, &o).map(|o| o.size);
            assert_eq!(r, Err(ErrorCode::DecryptFailed), "flipped at {at}");
        }
    }
}
