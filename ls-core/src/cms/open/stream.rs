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
}

/// One small element, parsed.
fn small(inp: &mut Input, what: &str) -> Result<Vec<u8>> {
    Ok(inp.element(what, MAX_SMALL)?.1)
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
        } else if nested_cms_head(head) {
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
                        let mut dec = Base64Reader::new(inp, false);
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
                        let mut dec = Base64Reader::new(inp, false);
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
        let mut dec = Base64Reader::new(inp, true);
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
        let version = small(inp, "version")?;
        let (dh, digest_algs) = inp.element("digestAlgorithms", MAX_SMALL)?;
        if dh.tag != tag::SET {
            return Err(Error::Malformed(
                "SignedData without digestAlgorithms".into(),
            ));
        }
        let mut hashers: Vec<(Digest, Hasher)> = Vec::new();
        let mut r = asn1::parse_single(&digest_algs)?.children()?;
        while let Some(a) = r.next()? {
            // Hashed whatever the policy: the SignerInfo's algorithm is judged when it is
            // verified. Algorithms we do not know are not hashed (a signer using one fails).
            if let Ok(d) = Digest::from_oid(AlgId::parse(a)?.oid, true) {
                if !hashers.iter().any(|(x, _)| *x == d) && hashers.len() < 4 {
                    hashers.push((d, Hasher::new(d.md())?));
                }
            }
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
        {
            let mut oct = Octets::new(inp, &ho);
            let mut hashing = Hashing {
                inner: &mut oct,
                digester: Digester::new(std::mem::take(&mut hashers)),
            };
            self.content(&mut hashing, inner_type, out)?;
            if hashing.drain()? != 0 {
                return Err(Error::Malformed(
                    "bytes after the end of the signed content's layer".into(),
                ));
            }
            hashers = hashing.digester.finish()?;
        }
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
        self.st.verify_signers(
            si,
            &ect,
            &SignedContent::Digests(&digests),
            &embedded,
            Some(Evidence {
                sd: &detached,
                ci: None,
            }),
        )
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
        small(inp, "version")?;
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
                count: 0,
                limit,
            };
            let r = self
                .content(&mut dec, inner_type, out)
                .and_then(|()| match dec.drain()? {
                    0 => Ok(()),
                    _ => Err(Error::Malformed(
                        "bytes after the end of the encrypted content's layer".into(),
                    )),
                });
            match r {
                Ok(()) => Ok(()),
                // Altered ciphertext shows as whatever the altered plaintext looks like: for
                // an authenticated cipher, read the rest and let the tag decide, unless the
                // input itself is too large or ends early.
                Err(e)
                    if aead
                        && !matches!(
                            e,
                            Error::TooLarge(_)
                                | Error::ExpansionTooLarge(_)
                                | Error::Truncated(_)
                                | Error::Io { .. }
                        ) =>
                {
                    match dec.drain() {
                        Ok(_) => Err(e),
                        Err(other) => Err(other),
                    }
                }
                Err(e) => return Err(e),
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
        small(inp, "version")?;
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
                count: 0,
                limit: wrapped_limit(self.st.opts.max_output),
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

/// Whether `b` begins a ContentInfo of a layer type we peel.
fn nested_cms_head(b: &[u8]) -> bool {
    if b.first() != Some(&tag::SEQUENCE) || b.len() < 4 {
        return false;
    }
    let hl = match b[1] {
        0x80 => 2,
        l if l < 0x80 => 2,
        l if (0x81..=0x84).contains(&l) => 2 + (l & 0x7f) as usize,
        _ => return false,
    };
    let Some(rest) = b.get(hl..) else {
        return false;
    };
    if rest.len() < 2 || rest[0] != tag::OID || rest[1] as usize + 2 > rest.len() {
        return false;
    }
    matches!(
        content_type(&rest[2..2 + rest[1] as usize]),
        Ok(ContentType::Signed
            | ContentType::Enveloped
            | ContentType::AuthEnveloped
            | ContentType::Compressed)
    )
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
        let n = self.inner.read(out)?;
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
            let k = self.src.read(&mut self.cbuf[self.carry..])?;
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
    count: u64,
    limit: u64,
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
                    to_io(Error::DecompressFailed(format!(
                        "corrupt zlib data ({})",
                        e.as_str()
                    )))
                })?;
            let used = (self.z.total_in() - in0) as usize;
            let made = (self.z.total_out() - out0) as usize;
            self.start += used;
            self.count += made as u64;
            if self.count > self.limit {
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
}

impl<'i, 'r> Base64Reader<'i, 'r> {
    fn new(inp: &'i mut Input<'r>, pem: bool) -> Self {
        Base64Reader {
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
                let k = self.read(&mut tmp)?;
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
