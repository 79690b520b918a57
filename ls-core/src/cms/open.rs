//! Recipient side: peel the layers in whatever order the sender nested them (S/MIME entities,
//! multipart/signed, EnvelopedData, AuthEnvelopedData, SignedData, CompressedData), verifying every
//! signature against the partner the caller expects.

use super::crypto::{self, AlgId, ContentAlg, Digest};
use super::inspect::{
    EnvelopedLayer, InspectReport, Layer, ReceiptLayer, Recipient, SignedLayer, Signer,
};
use super::{receipt, Kek, OpenOptions, Opened};
use crate::asn1::{self, tag, Reader, Tlv};
use crate::cert::{self, key_usage, Certificate};
use crate::error::{Error, Result};
use crate::keys::Identity;
use crate::{mime, oid, time};
use std::borrow::Cow;
use std::ops::Range;

mod stream;
pub(crate) use stream::{open_file, open_stream};

/// How the bytes at hand are to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Top level: DER, PEM or an S/MIME entity, detected.
    Auto,
    Mime,
    /// A ContentInfo.
    ContentInfo,
    /// The content of a CMS layer whose eContentType is given (OID bytes interned below).
    Content(ContentType),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ContentType {
    Data,
    Signed,
    Enveloped,
    AuthEnveloped,
    Compressed,
    /// An ESS signed receipt's content (RFC 2634): signed, but no document.
    Receipt,
}

fn content_type(o: &[u8]) -> Result<ContentType> {
    Ok(match o {
        x if x == oid::DATA => ContentType::Data,
        x if x == oid::SIGNED_DATA => ContentType::Signed,
        x if x == oid::ENVELOPED_DATA => ContentType::Enveloped,
        x if x == oid::AUTH_ENVELOPED_DATA => ContentType::AuthEnveloped,
        x if x == oid::COMPRESSED_DATA => ContentType::Compressed,
        x if x == oid::CT_RECEIPT => ContentType::Receipt,
        x => {
            return Err(Error::UnsupportedAlgorithm(format!(
                "CMS content type {}",
                oid::name(x)
            )))
        }
    })
}

/// What one step produced: new bytes, or a sub-range of the current ones.
enum Next {
    Owned(Vec<u8>, Kind),
    Sub(Range<usize>, Kind),
    Leaf(Leaf),
    /// Inspection cannot go further (e.g. not addressed to us).
    Stop,
}

struct Leaf {
    range: Option<Range<usize>>,
    owned: Option<Vec<u8>>,
    filename: Option<String>,
    mime_type: String,
}

fn wrapped_limit(max_output: u64) -> u64 {
    max_output.saturating_add(super::WRAPPING_ALLOWANCE)
}

/// What a signature covers: the content itself, or (when it was streamed past) its digests.
pub(super) enum SignedContent<'a> {
    Bytes(&'a [u8]),
    Digests(&'a [(Digest, Vec<u8>)]),
}

impl SignedContent<'_> {
    fn digest(&self, d: Digest) -> Result<Vec<u8>> {
        match self {
            SignedContent::Bytes(b) => crypto::digest(d, b),
            SignedContent::Digests(ds) => ds
                .iter()
                .find(|(x, _)| *x == d)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| {
                    Error::UnsupportedAlgorithm(format!(
                        "a signer uses a digest ({d:?}) the SignedData does not list in its \
                         digestAlgorithms: a stream is hashed with the listed ones only"
                    ))
                }),
        }
    }
}

/// Most SignerInfos in one SignedData (real messages have one or two).
const MAX_SIGNERS: usize = 16;

/// Byte offset of `sub` within `base` (both slices of the same buffer).
fn range_in(base: &[u8], sub: &[u8]) -> Range<usize> {
    let start = sub.as_ptr() as usize - base.as_ptr() as usize;
    start..start + sub.len()
}

struct State<'o> {
    opts: &'o OpenOptions<'o>,
    out: Opened,
    budget: u64,
    /// In inspect mode: one report per layer; signatures are described, verified only when a
    /// certificate is given, and failures are recorded instead of ending the walk.
    trace: Option<Vec<Layer>>,
    verification_failed: bool,
}

pub(crate) fn open(input: &[u8], opts: &OpenOptions) -> Result<Opened> {
    let mut st = State {
        opts,
        out: Opened::default(),
        budget: wrapped_limit(opts.max_output),
        trace: None,
        verification_failed: false,
    };
    st.walk(input)?;
    if st.out.signer.is_none() && !opts.allow_unsigned {
        return Err(Error::Unsigned(
            "no signature was found; refusing an unsigned document (allow it explicitly if expected)".into(),
        ));
    }
    Ok(st.out)
}

/// Describe every layer of `input`. Decrypts when `opts.recipient` is ours, verifies signatures
/// when `opts.sender`/`opts.partners` is given. Never fails: an error ends the walk and is
/// reported in the result's `error` member.
pub(crate) fn inspect(input: &[u8], opts: &OpenOptions) -> InspectReport {
    let mut st = State {
        opts,
        out: Opened::default(),
        budget: wrapped_limit(opts.max_output),
        trace: Some(Vec::new()),
        verification_failed: false,
    };
    let res = st.walk(input);
    let layers = st.trace.take().unwrap_or_default();
    // Signed = some layer carried a signature, whether or not it verified.
    let signed = layers.iter().any(|l| matches!(l, Layer::SignedData(_)));
    let complete = res.is_ok() && !st.out.mime_type.is_empty();
    let asked = opts.sender.is_some() || opts.partners.is_some();
    InspectReport {
        layers,
        complete,
        verified: (asked && signed).then(|| !st.verification_failed && res.is_ok()),
        signed: complete.then_some(signed),
        encrypted: complete.then_some(st.out.encrypted),
        error: res.err().map(|e| (&e).into()),
    }
}

impl<'o> State<'o> {
    /// The document is bounded by `max_output`.
    fn check_size(&self, n: usize) -> Result<()> {
        if n as u64 > self.opts.max_output {
            return Err(Error::TooLarge(format!(
                "the document of {n} bytes is larger than the limit of {} bytes",
                self.opts.max_output
            )));
        }
        Ok(())
    }

    /// Every buffer on the way to it (a decrypted or inflated layer, which still holds MIME
    /// headers, signatures and certificates around the document) by `max_output` plus
    /// [`super::WRAPPING_ALLOWANCE`]: a document of exactly the limit opens.
    fn check_wrapped(&self, n: usize, what: &str) -> Result<()> {
        let max = wrapped_limit(self.opts.max_output);
        if n as u64 > max {
            return Err(Error::TooLarge(format!(
                "{what} of {n} bytes cannot hold a document within the limit of {} bytes",
                self.opts.max_output
            )));
        }
        Ok(())
    }

    fn inspecting(&self) -> bool {
        self.trace.is_some()
    }

    fn trace(&mut self, j: Layer) {
        if let Some(t) = &mut self.trace {
            t.push(j);
        }
    }

    fn walk(&mut self, input: &[u8]) -> Result<()> {
        self.walk_from(input, Kind::Auto)
    }

    /// Peel the layers of `input`, read as `kind`.
    fn walk_from(&mut self, input: &[u8], kind: Kind) -> Result<()> {
        let opts = self.opts;
        let st = self;
        if input.is_empty() {
            return Err(Error::Truncated("the input is empty".into()));
        }
        let mut buf: Cow<[u8]> = Cow::Borrowed(input);
        let mut range = 0..input.len();
        let mut kind = kind;
        let mut steps = 0u32;
        loop {
            steps += 1;
            if steps > opts.max_depth * 2 + 4 {
                return Err(Error::TooDeep(format!(
                    "more than {} nested layers",
                    opts.max_depth
                )));
            }
            let cur = &buf[range.clone()];
            match st.step(cur, kind)? {
                Next::Owned(v, k) => {
                    st.check_wrapped(v.len(), "a layer")?;
                    range = 0..v.len();
                    buf = Cow::Owned(v);
                    kind = k;
                }
                Next::Sub(r, k) => {
                    range = range.start + r.start..range.start + r.end;
                    kind = k;
                }
                Next::Stop => break,
                Next::Leaf(leaf) => {
                    let doc = match (leaf.owned, leaf.range) {
                        (Some(v), _) => v,
                        (None, Some(r)) => {
                            let abs = range.start + r.start..range.start + r.end;
                            match buf {
                                // The document is the tail of the last decrypted or inflated
                                // buffer: move it to the front instead of copying it out, so a
                                // large document needs no second allocation.
                                Cow::Owned(mut v) => {
                                    v.truncate(abs.end);
                                    v.drain(..abs.start);
                                    v
                                }
                                Cow::Borrowed(b) => b[abs].to_vec(),
                            }
                        }
                        (None, None) => Vec::new(),
                    };
                    st.check_size(doc.len())?;
                    st.trace(Layer::Document {
                        mime_type: leaf.mime_type.clone(),
                        filename: leaf.filename.clone(),
                        size: doc.len(),
                    });
                    st.out.size = doc.len() as u64;
                    st.out.document = doc;
                    st.out.filename = leaf.filename;
                    st.out.mime_type = leaf.mime_type;
                    break;
                }
            }
        }
        Ok(())
    }

    fn layer(&mut self, s: String) -> Result<()> {
        self.out.layers.push(s);
        let n = self.out.layers.len() as u32;
        if n > self.opts.max_depth {
            return Err(Error::TooDeep(format!(
                "more than {} nested CMS/MIME layers",
                self.opts.max_depth
            )));
        }
        Ok(())
    }

    fn step(&mut self, cur: &[u8], kind: Kind) -> Result<Next> {
        match kind {
            Kind::Auto => {
                if cur[0] != tag::SEQUENCE && is_pem(cur) {
                    Ok(Next::Owned(decode_pem(cur)?, Kind::ContentInfo))
                } else if cur[0] == tag::SEQUENCE {
                    Ok(Next::Sub(0..cur.len(), Kind::ContentInfo))
                } else if mime::looks_like_entity(cur) {
                    Ok(Next::Sub(0..cur.len(), Kind::Mime))
                } else {
                    Err(Error::Malformed(
                        "the input is neither a CMS object (DER/BER/PEM) nor an S/MIME entity"
                            .into(),
                    ))
                }
            }
            Kind::Mime => self.mime(cur),
            Kind::ContentInfo => {
                let ci = asn1::parse_single(cur).map_err(not_cms)?;
                let ci = ci.expect(tag::SEQUENCE, "ContentInfo").map_err(not_cms)?;
                let mut r = ci.children().map_err(not_cms)?;
                let ct_oid = r.expect(tag::OID, "contentType").map_err(not_cms)?;
                let ct = content_type(ct_oid.content)?;
                let explicit = r.expect(tag::ctx(0), "content")?;
                let mut er = explicit.children()?;
                let inner = er.req("content")?;
                // Exactly one content, and nothing after it (as the streaming path reads it).
                if !er.is_empty() || !r.is_empty() {
                    return Err(Error::Malformed(
                        "a ContentInfo holds more than its content type and content".into(),
                    ));
                }
                self.cms(cur, ct, inner, Some(ci.raw))
            }
            Kind::Content(ContentType::Data) => {
                if mime::looks_like_entity(cur) {
                    Ok(Next::Sub(0..cur.len(), Kind::Mime))
                } else if is_nested_cms(cur) {
                    // Tools that nest CMS without MIME (e.g. `openssl cms -sign` output fed to
                    // `openssl cms -encrypt`) carry a whole ContentInfo as plain data.
                    Ok(Next::Sub(0..cur.len(), Kind::ContentInfo))
                } else {
                    // Plain CMS content without MIME headers (e.g. made by `openssl cms`).
                    Ok(Next::Leaf(Leaf {
                        range: Some(0..cur.len()),
                        owned: None,
                        filename: None,
                        mime_type: "application/octet-stream".into(),
                    }))
                }
            }
            Kind::Content(ContentType::Receipt) => self.receipt_content(cur),
            Kind::Content(ct) => {
                let inner = asn1::parse_single(cur)?;
                self.cms(cur, ct, inner, None)
            }
        }
    }

    fn mime(&mut self, cur: &[u8]) -> Result<Next> {
        let e = mime::Entity::parse(cur)?;
        let ct = e.content_type();
        match ct.as_str() {
            "application/pkcs7-mime" | "application/x-pkcs7-mime" => {
                let smime_type = e.content_type_param("smime-type");
                self.trace(Layer::Mime {
                    content_type: ct.clone(),
                    smime_type: smime_type.clone(),
                    transfer_encoding: e.header("content-transfer-encoding").map(str::to_string),
                });
                self.layer(format!(
                    "S/MIME entity ({})",
                    smime_type.unwrap_or_else(|| "no smime-type".into())
                ))?;
                match e.decoded_body()? {
                    Cow::Borrowed(b) => Ok(Next::Sub(range_in(cur, b), Kind::ContentInfo)),
                    Cow::Owned(v) => Ok(Next::Owned(v, Kind::ContentInfo)),
                }
            }
            "multipart/signed" => {
                if !self.opts.policy.accept_multipart_signed {
                    return Err(Error::WeakAlgorithm(
                        "a multipart/signed entity (a detached signature, as AS2 software \
                         sends it) is refused by policy"
                            .into(),
                    ));
                }
                let parts = mime::split_signed(&e)?;
                let sig_entity = mime::Entity::parse(parts.signature)?;
                let sct = sig_entity.content_type();
                if !matches!(
                    sct.as_str(),
                    "application/pkcs7-signature" | "application/x-pkcs7-signature"
                ) {
                    return Err(Error::MalformedMime(format!(
                        "the second part of multipart/signed is {sct}, not application/pkcs7-signature"
                    )));
                }
                let sig = sig_entity.decoded_body()?;
                let sd_ci = asn1::parse_single(&sig).map_err(not_cms)?;
                let mut r = sd_ci.expect(tag::SEQUENCE, "ContentInfo")?.children()?;
                let ct_oid = r.expect(tag::OID, "contentType")?;
                if ct_oid.content != oid::SIGNED_DATA {
                    return Err(Error::Malformed(format!(
                        "the detached signature is a {}, not SignedData",
                        oid::name(ct_oid.content)
                    )));
                }
                let sd = r
                    .expect(tag::ctx(0), "content")?
                    .children()?
                    .req("SignedData")?;
                self.trace(Layer::MultipartSigned {
                    micalg: e.content_type_param("micalg"),
                    signed_part_size: parts.content.len(),
                });
                self.layer("multipart/signed".into())?;
                self.signed_data(sd, Some(parts.content), Some(sd_ci.raw))?;
                Ok(Next::Sub(range_in(cur, parts.content), Kind::Mime))
            }
            _ => {
                let filename = e.filename();
                let body = e.decoded_body()?;
                let (range, owned) = match body {
                    Cow::Borrowed(b) => (Some(range_in(cur, b)), None),
                    Cow::Owned(v) => (None, Some(v)),
                };
                Ok(Next::Leaf(Leaf {
                    range,
                    owned,
                    filename,
                    mime_type: ct,
                }))
            }
        }
    }

    /// One CMS layer: `inner` is its content, `ci` the whole ContentInfo when the layer came
    /// as one (not as the bare content of an outer layer).
    fn cms(&mut self, cur: &[u8], ct: ContentType, inner: Tlv, ci: Option<&[u8]>) -> Result<Next> {
        match ct {
            ContentType::Data => {
                let o = inner.expect(tag::OCTET_STRING, "data")?;
                match o.octets()? {
                    Cow::Borrowed(b) => Ok(Next::Sub(
                        range_in(cur, b),
                        Kind::Content(ContentType::Data),
                    )),
                    Cow::Owned(v) => Ok(Next::Owned(v, Kind::Content(ContentType::Data))),
                }
            }
            ContentType::Signed => {
                let (ect, content) = self.signed_data(inner, None, ci)?;
                let k = Kind::Content(content_type(ect)?);
                match content {
                    Cow::Borrowed(b) => Ok(Next::Sub(range_in(cur, b), k)),
                    Cow::Owned(v) => Ok(Next::Owned(v, k)),
                }
            }
            ContentType::Enveloped | ContentType::AuthEnveloped => {
                let (ect, plain) = match self.decrypt(inner, ct == ContentType::AuthEnveloped) {
                    Err(Error::NotARecipient(_))
                        if self.inspecting() && self.opts.recipient.is_none() =>
                    {
                        return Ok(Next::Stop)
                    }
                    other => other?,
                };
                self.out.encrypted = true;
                Ok(Next::Owned(plain, Kind::Content(content_type(&ect)?)))
            }
            ContentType::Compressed => {
                let (ect, plain) = self.decompress(inner)?;
                Ok(Next::Owned(plain, Kind::Content(content_type(&ect)?)))
            }
            ContentType::Receipt => Err(Error::Malformed(
                "a Receipt outside the SignedData that signs it".into(),
            )),
        }
    }

    /// The content of a signed receipt: described by `inspect`; `open` refuses it, as it holds
    /// no document.
    fn receipt_content(&mut self, cur: &[u8]) -> Result<Next> {
        if !self.inspecting() {
            return Err(Error::Malformed(
                "this is a signed receipt (id-ct-receipt), not a document: check it against \
                 the message it answers (layersec verify-receipt)"
                    .into(),
            ));
        }
        let r = receipt::Receipt::parse(cur)?;
        self.layer("receipt".into())?;
        self.trace(Layer::Receipt(ReceiptLayer {
            content_type: oid::name(&r.content_type),
            content_identifier: crate::bytes::hex(&r.content_identifier),
            originator_signature_size: r.originator_signature.len(),
        }));
        Ok(Next::Stop)
    }

    fn decompress(&mut self, cd: Tlv) -> Result<(Vec<u8>, Vec<u8>)> {
        let mut r = cd.expect(tag::SEQUENCE, "CompressedData")?.children()?;
        r.expect(tag::INTEGER, "version")?;
        let alg = AlgId::parse(r.req("compressionAlgorithm")?)?;
        if alg.oid != oid::ZLIB {
            return Err(Error::UnsupportedAlgorithm(format!(
                "compression {}",
                alg.name()
            )));
        }
        let eci = r.expect(tag::SEQUENCE, "encapContentInfo")?;
        let mut e = eci.children()?;
        let ect = e.expect(tag::OID, "eContentType")?.content.to_vec();
        let data = e
            .expect(tag::ctx(0), "eContent")?
            .children()?
            .expect(tag::OCTET_STRING, "eContent")?
            .octets()?;
        self.layer("compressedData (zlib)".into())?;
        let compressed_size = data.len();
        let out = match crate::inflate::inflate(&data, true, self.budget) {
            Ok(done) => done.data,
            Err(crate::inflate::Failure::TooLarge { .. }) => {
                return Err(Error::ExpansionTooLarge(format!(
                    "the compressed content expands beyond the limit of {} bytes (decompression \
                     bomb?)",
                    self.opts.max_output
                )))
            }
            Err(crate::inflate::Failure::Truncated) => {
                return Err(Error::DecompressFailed("truncated zlib data".into()))
            }
            Err(crate::inflate::Failure::Corrupt(why)) => {
                return Err(Error::DecompressFailed(format!(
                    "corrupt zlib data ({why})"
                )))
            }
        };
        self.budget = self.budget.saturating_sub(out.len() as u64);
        self.trace(Layer::CompressedData {
            algorithm: "zlib".into(),
            compressed_size,
            size: out.len(),
        });
        Ok((ect, out))
    }

    /// Verify a SignedData against the sender policy. Returns the eContentType and the content
    /// (the encapsulated one, or `detached` for multipart/signed). `ci` is its ContentInfo as
    /// received, when it came as one.
    fn signed_data<'a>(
        &mut self,
        sd: Tlv<'a>,
        detached: Option<&'a [u8]>,
        ci: Option<&[u8]>,
    ) -> Result<(&'a [u8], Cow<'a, [u8]>)> {
        let mut r = sd.expect(tag::SEQUENCE, "SignedData")?.children()?;
        r.expect(tag::INTEGER, "version")?;
        r.expect(tag::SET, "digestAlgorithms")?;
        let eci = r.expect(tag::SEQUENCE, "encapContentInfo")?;
        let mut e = eci.children()?;
        let ect = e.expect(tag::OID, "eContentType")?.content;
        let encapsulated = match e.optional(tag::ctx(0))? {
            Some(x) => Some(x.children()?.req("eContent")?.octets()?),
            None => None,
        };
        let content: Cow<'a, [u8]> = match (encapsulated, detached) {
            (Some(c), None) => c,
            (None, Some(d)) => Cow::Borrowed(d),
            (Some(_), Some(_)) => {
                return Err(Error::Malformed(
                    "a detached signature that also encapsulates content".into(),
                ))
            }
            (None, None) => {
                return Err(Error::Malformed(
                    "a detached signature without its content".into(),
                ))
            }
        };
        // Certificates carried in the message only name the signer (or chain it to an anchor):
        // parsed when needed, not on the common path of a pinned partner.
        let embedded = Embedded::of(r.optional(tag::ctx(0))?)?;
        r.optional(tag::ctx(1))?; // CRLs
        let signer_infos = r.expect(tag::SET, "signerInfos")?;
        if self.inspecting() {
            let mut signers = Vec::new();
            let mut sis = signer_infos.children()?;
            while let Some(si) = sis.next()? {
                signers.push(describe_signer(si, embedded.certs())?);
            }
            let mut j = SignedLayer {
                content_type: oid::name(ect),
                detached: detached.is_some(),
                content_size: content.len(),
                certificates: embedded
                    .certs()
                    .iter()
                    .map(|c| c.subject().to_string())
                    .collect(),
                signers,
                verified: None,
                verification_error: None,
            };
            if self.opts.sender.is_none() && self.opts.partners.is_none() {
                self.layer("signedData (not verified)".into())?;
            } else {
                match self.verify_signers(
                    signer_infos,
                    ect,
                    &SignedContent::Bytes(&content),
                    &embedded,
                    None,
                ) {
                    Ok(()) => j.verified = Some(true),
                    Err(e) => {
                        j.verified = Some(false);
                        j.verification_error = Some((&e).into());
                        self.verification_failed = true;
                    }
                }
            }
            self.trace(Layer::SignedData(j));
            return Ok((ect, content));
        }
        let evidence = Evidence { sd: sd.raw, ci };
        self.verify_signers(
            signer_infos,
            ect,
            &SignedContent::Bytes(&content),
            &embedded,
            Some(evidence),
        )?;
        Ok((ect, content))
    }

    /// Verify the SignerInfos: the first one of the expected partner decides. With `evidence`
    /// (opening, not inspecting), a verified signature that asks for a signed receipt keeps the
    /// SignedData and its ReceiptRequest in [`Opened`] (the innermost such layer wins).
    fn verify_signers(
        &mut self,
        signer_infos: Tlv,
        ect: &[u8],
        content: &SignedContent,
        embedded: &Embedded,
        evidence: Option<Evidence>,
    ) -> Result<()> {
        let mut sis = signer_infos.children()?;
        if signer_infos.children()?.count_all()? > MAX_SIGNERS {
            return Err(Error::TooLarge(format!("more than {MAX_SIGNERS} signers")));
        }

        let mut seen = Vec::new();
        let mut first_error: Option<Error> = None;
        let mut index = 0usize;
        while let Some(si) = sis.next()? {
            match self.signer_info(si, ect, content, embedded) {
                Ok(SignerOutcome::Verified(cert, at, desc)) => {
                    self.layer(desc)?;
                    if self.out.signer.is_none() {
                        self.out.signer = Some(cert);
                        self.out.signing_time = at;
                    }
                    if let Some(ev) = evidence {
                        self.keep_evidence(signer_infos, index, ev)?;
                    }
                    return Ok(());
                }
                Ok(SignerOutcome::NotOurPartner(who)) => seen.push(who),
                Err(e) => {
                    // A signer that is our partner but fails is decisive: report it.
                    first_error.get_or_insert(e);
                }
            }
            index += 1;
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let who = if seen.is_empty() {
            "nobody".to_string()
        } else {
            seen.join("; ")
        };
        Err(match (self.opts.sender, self.opts.partners) {
            (Some(exp), _) => {
                Error::SignerMismatch(format!("signed by {who}, expected {}", exp.subject()))
            }
            (None, Some(_)) => {
                Error::UnknownSigner(format!("signed by {who}, who is not a known partner"))
            }
            (None, None) => Error::InvalidArgument(
                "no sender certificate or partner store was given to verify the signature".into(),
            ),
        })
    }

    /// After SignerInfo number `verified` of this layer verified: keep what a signed receipt
    /// needs when it asks for one, else forget what an outer layer asked. A receipt answers the
    /// first SignerInfo that asks for one (as [`receipt::sign_receipt`] and `openssl cms
    /// -sign_receipt` pick it), so one is offered only when that is the signature verified
    /// here. A ReceiptRequest we cannot read is ignored (no receipt is offered): the document
    /// itself is sound. The SignedData is copied once, only when a receipt is asked for.
    fn keep_evidence(&mut self, signer_infos: Tlv, verified: usize, ev: Evidence) -> Result<()> {
        self.out.signed_data = None;
        self.out.receipt_request = None;
        let mut sis = signer_infos.children()?;
        let mut index = 0usize;
        while let Some(si) = sis.next()? {
            let rr = SignerInfo::parse(si)
                .and_then(|si| si.attrs())
                .map(|a| a.receipt_request)
                .unwrap_or_default();
            if !rr.is_empty() {
                if index == verified {
                    if let Ok(request) = receipt::ReceiptRequest::from_values(&rr) {
                        self.out.receipt_request = Some(request);
                        self.out.signed_data = Some(match ev.ci {
                            Some(ci) => ci.to_vec(),
                            None => super::seal::content_info(oid::SIGNED_DATA, ev.sd),
                        });
                    }
                }
                break;
            }
            index += 1;
        }
        Ok(())
    }

    fn signer_info(
        &self,
        si: Tlv,
        ect: &[u8],
        content: &SignedContent,
        embedded: &Embedded,
    ) -> Result<SignerOutcome> {
        let si = SignerInfo::parse(si)?;
        // Who is this signer, and is it the partner we expect?
        let now = time::now_unix();
        let signer: Certificate = match (self.opts.sender, self.opts.partners) {
            (Some(exp), _) => {
                if !si.names(exp) {
                    return Ok(SignerOutcome::NotOurPartner(si.describe(embedded.certs())));
                }
                exp.clone()
            }
            (None, Some(store)) => {
                let found = match si.sid.tag {
                    tag::SEQUENCE => {
                        let (i, s) = issuer_serial(si.sid)?;
                        store.by_issuer_serial(i, s)
                    }
                    _ => store.by_ski(si.sid.content),
                };
                match found {
                    Some(c) => c.clone(),
                    None => match embedded.certs().iter().find(|c| si.names(c)) {
                        Some(c) if !store.anchors().is_empty() => {
                            // A stranger to the store is an unknown signer, whatever the reason
                            // its certificate does not chain to our anchors.
                            store.verify_chain(c, embedded.certs(), now).map_err(|e| {
                                Error::UnknownSigner(format!(
                                    "signed by {}, who is not a known partner ({e})",
                                    c.subject()
                                ))
                            })?;
                            c.clone()
                        }
                        _ => {
                            return Ok(SignerOutcome::NotOurPartner(si.describe(embedded.certs())))
                        }
                    },
                }
            }
            (None, None) => return Ok(SignerOutcome::NotOurPartner(si.describe(embedded.certs()))),
        };

        let digest = Digest::from_oid(si.digest_alg.oid, self.opts.allow_sha1)?;
        let sig_alg = crypto::parse_sig_alg(&si.sig_alg)?;
        if let crypto::SigAlg::RsaPss { hash, mgf, .. } = sig_alg {
            if (hash == Digest::Sha1 || mgf == Digest::Sha1) && !self.opts.allow_sha1 {
                return Err(Error::WeakAlgorithm("RSA-PSS with SHA-1".into()));
            }
        }
        let key = signer.public_key()?;
        let attrs = si.attrs()?;
        let not_verified = || {
            Error::BadSignature(format!(
                "the signature attributed to {} does not verify",
                signer.subject()
            ))
        };
        match si.signed_attrs {
            Some(sa) => {
                // The signature over the attributes first: a forged SignerInfo costs one
                // signature check, not a hash of the whole content.
                let mut der = sa.raw.to_vec();
                der[0] = tag::SET; // signed as a SET OF
                if !crypto::verify(&key, sig_alg, digest, &der, &si.signature)? {
                    return Err(not_verified());
                }
                let found_md = attrs.message_digest.as_deref().ok_or_else(|| {
                    Error::Malformed("signed attributes without a message digest".into())
                })?;
                if attrs.content_type != Some(ect) {
                    return Err(Error::BadSignature(
                        "the signed content-type attribute does not match the content".into(),
                    ));
                }
                if found_md != content.digest(digest)?.as_slice() {
                    return Err(Error::DigestMismatch(format!(
                        "the content was altered after {} signed it",
                        signer.subject()
                    )));
                }
            }
            None => {
                // Nothing signed binds another content type (RFC 5652 5.3).
                if ect != oid::DATA {
                    return Err(Error::BadSignature(
                        "a content type other than data without signed attributes".into(),
                    ));
                }
                let SignedContent::Bytes(content) = content else {
                    return Err(Error::UnsupportedAlgorithm(
                        "a signature without signed attributes cannot be checked on a \
                         document opened as a stream"
                            .into(),
                    ));
                };
                if !crypto::verify(&key, sig_alg, digest, content, &si.signature)? {
                    return Err(not_verified());
                }
            }
        }
        if !self.opts.allow_expired {
            signer.check_validity(now)?;
            if let Some(t) = attrs.signing_time {
                signer.check_validity(t)?;
            }
        }
        signer.check_key_usage(
            key_usage::DIGITAL_SIGNATURE | key_usage::NON_REPUDIATION,
            "signing",
        )?;
        let desc = format!(
            "signedData ({} {}, by {})",
            si.digest_alg.name(),
            si.sig_alg.name(),
            signer.subject()
        );
        Ok(SignerOutcome::Verified(signer, attrs.signing_time, desc))
    }

    /// The content-encryption algorithm against the policy and the layer's type.
    fn check_content_alg(
        &self,
        calg: &AlgId,
        params: &crypto::ContentParams,
        auth: bool,
    ) -> Result<()> {
        let policy = &self.opts.policy;
        if params.alg.is_legacy() {
            if !policy.accept_3des {
                return Err(Error::WeakAlgorithm(format!(
                    "{} is refused by policy",
                    calg.name()
                )));
            }
        } else if !params.alg.is_aead() && !policy.accept_cbc {
            return Err(Error::WeakAlgorithm(format!(
                "{} (CBC, without authenticated encryption) is refused by policy",
                calg.name()
            )));
        }
        if !params.alg.is_aead() && auth {
            return Err(Error::Malformed(
                "AuthEnvelopedData with a non-AEAD cipher".into(),
            ));
        }
        if params.alg.is_aead() && !auth {
            return Err(Error::UnsupportedAlgorithm(format!(
                "{} inside EnvelopedData",
                calg.name()
            )));
        }
        Ok(())
    }

    fn decrypt(&mut self, body: Tlv, auth: bool) -> Result<(Vec<u8>, Vec<u8>)> {
        let what = if auth {
            "AuthEnvelopedData"
        } else {
            "EnvelopedData"
        };
        let mut r = body.expect(tag::SEQUENCE, what)?.children()?;
        r.expect(tag::INTEGER, "version")?;
        r.optional(tag::ctx(0))?; // originatorInfo
        let ris = r.expect(tag::SET, "recipientInfos")?;
        let eci = r.expect(tag::SEQUENCE, "encryptedContentInfo")?;
        let mut e = eci.children()?;
        let ect = e.expect(tag::OID, "contentType")?.content.to_vec();
        let calg = AlgId::parse(e.req("contentEncryptionAlgorithm")?)?;
        let params = crypto::parse_content_alg(&calg)?;
        self.check_content_alg(&calg, &params, auth)?;
        let ciphertext: Cow<[u8]> = match e.next()? {
            Some(t) if t.tag & 0x1f == 0 && t.tag & 0xc0 == 0x80 => t.octets()?,
            Some(_) => return Err(Error::Malformed("bad encryptedContent".into())),
            None => {
                return Err(Error::Malformed(
                    "detached encrypted content is not supported".into(),
                ))
            }
        };
        // Before anything is decrypted: content this large cannot be a document we accept
        // (compressed content is bounded while it is inflated).
        self.check_wrapped(ciphertext.len(), "the encrypted content")?;
        let (aad, mac) = if auth {
            let aad = match r.optional(tag::ctx(1))? {
                Some(a) => {
                    let mut v = a.raw.to_vec();
                    v[0] = tag::SET;
                    v
                }
                None => Vec::new(),
            };
            let mac = r.expect(tag::OCTET_STRING, "mac")?.octets()?.into_owned();
            (aad, mac)
        } else {
            (Vec::new(), Vec::new())
        };

        if self.inspecting() {
            let j = EnvelopedLayer {
                content_encryption: calg.name(),
                content_type: oid::name(&ect),
                encrypted_size: ciphertext.len(),
                authenticated_attributes: auth && !aad.is_empty(),
                recipients: describe_recipients(ris)?,
            };
            self.trace(if auth {
                Layer::AuthEnvelopedData(j)
            } else {
                Layer::EnvelopedData(j)
            });
        }
        let (cek, how) = self.content_key(ris, params.alg)?;
        self.layer(format!(
            "{} ({}, {})",
            if auth {
                "authEnvelopedData"
            } else {
                "envelopedData"
            },
            calg.name(),
            how
        ))?;
        let plain = crypto::decrypt_content(&params, &cek, &ciphertext, &aad, &mac)?;
        Ok((ect, plain))
    }

    /// Find the RecipientInfo addressed to us and recover the content key.
    fn content_key(&self, ris: Tlv, alg: ContentAlg) -> Result<(crypto::Secret, String)> {
        if let Some(me) = self.opts.recipient {
            // The RecipientInfo for one of our earlier certificates, if there is none for the
            // current one (a document sealed for us before a partner took our new certificate).
            let ids = std::iter::once(me).chain(self.opts.earlier_recipients.iter());
            let mut last = None;
            for (i, id) in ids.enumerate() {
                match self.content_key_for(ris, alg, Some(id)) {
                    Err(e @ Error::NotARecipient(_)) => {
                        if i == 0 {
                            last = Some(e)
                        }
                    }
                    other => return other,
                }
            }
            return Err(last.expect("the current identity was tried"));
        }
        self.content_key_for(ris, alg, None)
    }

    /// The content key for `id` (or the KEK), from the RecipientInfo addressed to it.
    fn content_key_for(
        &self,
        ris: Tlv,
        alg: ContentAlg,
        id: Option<&Identity>,
    ) -> Result<(crypto::Secret, String)> {
        let kek = self.opts.kek;
        let mut addressed_to = Vec::new();
        let mut rr = ris.children()?;
        while let Some(ri) = rr.next()? {
            match ri.tag {
                tag::SEQUENCE => {
                    // KeyTransRecipientInfo
                    let mut k = ri.children()?;
                    k.expect(tag::INTEGER, "version")?;
                    let rid = k.req("rid")?;
                    let kalg = AlgId::parse(k.req("keyEncryptionAlgorithm")?)?;
                    let ek = k.expect(tag::OCTET_STRING, "encryptedKey")?.octets()?;
                    match id {
                        Some(me) if rid_matches(me.certificate(), rid)? => {
                            let cek = crypto::rsa_decrypt_key(
                                me.private_key(),
                                &kalg,
                                &ek,
                                alg.key_len(),
                                self.opts.policy.accept_rsa_pkcs1v15,
                            )?;
                            return Ok((cek, format!("key transport {}", kalg.name())));
                        }
                        _ => addressed_to.push(describe_rid(rid)),
                    }
                }
                t if t == tag::ctx(1) => {
                    if let Some(r) = self.kari(ri, id, &mut addressed_to)? {
                        return Ok(r);
                    }
                }
                t if t == tag::ctx(2) => {
                    // KEKRecipientInfo
                    let mut k = ri.children()?;
                    k.expect(tag::INTEGER, "version")?;
                    let kekid = k.expect(tag::SEQUENCE, "kekid")?;
                    let key_id = kekid
                        .children()?
                        .expect(tag::OCTET_STRING, "keyIdentifier")?
                        .octets()?;
                    let kalg = AlgId::parse(k.req("keyEncryptionAlgorithm")?)?;
                    let ek = k.expect(tag::OCTET_STRING, "encryptedKey")?.octets()?;
                    match kek {
                        Some(Kek { id, key }) if id.as_slice() == &*key_id => {
                            let n = crypto::wrap_key_len(kalg.oid)?;
                            if key.len() != n {
                                return Err(Error::KeyUnwrapFailed(format!(
                                    "the key-encryption key has {} bytes, {} needs {n}",
                                    key.len(),
                                    kalg.name()
                                )));
                            }
                            let cek = crypto::aes_unwrap(key, &ek)?;
                            return Ok((cek, format!("KEK {}", kalg.name())));
                        }
                        _ => addressed_to.push(format!(
                            "key-encryption key id {}",
                            crate::bytes::hex(&key_id)
                        )),
                    }
                }
                t if t == tag::ctx(3) => addressed_to.push("a password (not supported)".into()),
                _ => addressed_to.push("another kind of recipient".into()),
            }
        }
        let ours = match (id, kek) {
            (Some(me), _) => me.certificate().subject().to_string(),
            (None, Some(k)) => format!("key-encryption key id {}", crate::bytes::hex(&k.id)),
            (None, None) => "none (no private key or key-encryption key was given)".into(),
        };
        Err(Error::NotARecipient(format!(
            "it is encrypted for {}; our identity: {ours}",
            if addressed_to.is_empty() {
                "nobody".into()
            } else {
                addressed_to.join("; ")
            }
        )))
    }

    fn kari(
        &self,
        ri: Tlv,
        id: Option<&Identity>,
        addressed_to: &mut Vec<String>,
    ) -> Result<Option<(crypto::Secret, String)>> {
        let mut k = ri.children()?;
        k.expect(tag::INTEGER, "version")?;
        let originator = k
            .expect(tag::ctx(0), "originator")?
            .children()?
            .req("originator")?;
        let ukm = match k.optional(tag::ctx(1))? {
            Some(u) => Some(
                u.children()?
                    .expect(tag::OCTET_STRING, "ukm")?
                    .octets()?
                    .into_owned(),
            ),
            None => None,
        };
        let kea = AlgId::parse(k.req("keyEncryptionAlgorithm")?)?;
        let reks = k.expect(tag::SEQUENCE, "recipientEncryptedKeys")?;
        let mut rr = reks.children()?;
        while let Some(rek) = rr.next()? {
            let mut x = rek.children()?;
            let rid = x.req("rid")?;
            let ek = x.expect(tag::OCTET_STRING, "encryptedKey")?.octets()?;
            let is_us = match (id, rid.tag) {
                (Some(me), tag::SEQUENCE) => rid_matches(me.certificate(), rid)?,
                (Some(me), t) if t == tag::ctx(0) => {
                    let ski = rid
                        .children()?
                        .expect(tag::OCTET_STRING, "subjectKeyIdentifier")?;
                    me.certificate().matches_ski(ski.content)
                }
                _ => false,
            };
            if !is_us {
                addressed_to.push(describe_rid(rid));
                continue;
            }
            let me = id.expect("matched above");
            let scheme = crypto::parse_kdf_scheme(kea.oid)?;
            let wrap =
                AlgId::parse(kea.params.ok_or_else(|| {
                    Error::Malformed("key agreement without its key wrap".into())
                })?)?;
            let klen = crypto::wrap_key_len(wrap.oid)?;
            if originator.tag != tag::ctx(1) {
                return Err(Error::UnsupportedAlgorithm(
                    "key agreement with a static originator key".into(),
                ));
            }
            let mut o = originator.children()?;
            o.req("algorithm")?;
            let point = o.expect(tag::BIT_STRING, "publicKey")?.bit_string_bytes()?;
            let peer = crypto::ec_public_from_point(me.private_key().public_key(), point)?;
            let z = me.private_key().ecdh(&peer)?;
            let kek = crypto::x963_kdf(scheme.hash, &z, wrap.oid, ukm.as_deref(), klen)?;
            let cek = crypto::aes_unwrap(&kek, &ek)?;
            return Ok(Some((
                cek,
                format!("key agreement {} + {}", kea.name(), wrap.name()),
            )));
        }
        Ok(None)
    }
}

/// Certificates carried in a SignedData, parsed on first use.
struct Embedded<'a> {
    raw: Vec<&'a [u8]>,
    parsed: std::cell::OnceCell<Vec<Certificate>>,
}

impl<'a> Embedded<'a> {
    /// The certificates of a SignedData's `certificates` field (other certificate formats
    /// are skipped), parsed on first use.
    fn of(certificates: Option<Tlv<'a>>) -> Result<Embedded<'a>> {
        let mut raw = Vec::new();
        if let Some(certs) = certificates {
            let mut cr = certs.children()?;
            while let Some(c) = cr.next()? {
                if c.tag == tag::SEQUENCE {
                    raw.push(c.raw);
                }
            }
        }
        Ok(Embedded {
            raw,
            parsed: std::cell::OnceCell::new(),
        })
    }

    fn certs(&self) -> &[Certificate] {
        self.parsed.get_or_init(|| {
            self.raw
                .iter()
                .filter_map(|d| Certificate::from_der(d).ok())
                .collect()
        })
    }
}

/// The SignedData a verified signature came in: its DER, and its ContentInfo as received when
/// it came as one.
#[derive(Clone, Copy)]
struct Evidence<'a> {
    sd: &'a [u8],
    ci: Option<&'a [u8]>,
}

enum SignerOutcome {
    Verified(Certificate, Option<i64>, String),
    NotOurPartner(String),
}

pub(super) fn not_cms(e: Error) -> Error {
    match e {
        Error::Truncated(m) => Error::Truncated(m),
        Error::TooDeep(m) => Error::TooDeep(m),
        other => Error::Malformed(format!("not a CMS object ({other})")),
    }
}

pub(super) fn issuer_serial(t: Tlv<'_>) -> Result<(&[u8], &[u8])> {
    let mut r: Reader = t.children()?;
    let issuer = r.expect(tag::SEQUENCE, "issuer")?;
    let serial = r.expect(tag::INTEGER, "serialNumber")?;
    Ok((issuer.raw, serial.content))
}

/// A RecipientIdentifier (issuerAndSerialNumber or [0] subjectKeyIdentifier) naming `cert`.
pub(super) fn rid_matches(cert: &Certificate, rid: Tlv) -> Result<bool> {
    Ok(match rid.tag {
        tag::SEQUENCE => {
            let (i, s) = issuer_serial(rid)?;
            cert.matches_issuer_serial(i, s)
        }
        t if t == tag::ctx_prim(0) => cert.matches_ski(rid.content),
        _ => false,
    })
}

fn describe_rid(rid: Tlv) -> String {
    match rid.tag {
        tag::SEQUENCE => issuer_serial(rid)
            .map(|(i, s)| cert::describe_issuer_serial(i, s))
            .unwrap_or_else(|_| "an unreadable recipient id".into()),
        _ => format!("subject key id {}", crate::bytes::hex(rid.content)),
    }
}

/// The content of the first PEM block of `text` (what comes before its BEGIN line and after
/// its END line is not read: explanatory text of test-vector files).
pub(crate) fn decode_pem(text: &[u8]) -> Result<Vec<u8>> {
    let begin = crate::bytes::find(text, b"-----BEGIN")
        .ok_or_else(|| Error::Malformed("no PEM block".into()))?;
    let hdr_end = crate::bytes::find(&text[begin + 10..], b"-----")
        .ok_or_else(|| Error::Malformed("bad PEM header".into()))?;
    let body_start = begin + 10 + hdr_end + 5;
    let end = crate::bytes::find(&text[body_start..], b"-----END")
        .ok_or_else(|| Error::Truncated("PEM block without its END line".into()))?;
    mime::base64_decode(&text[body_start..body_start + end])
        .map_err(|_| Error::Malformed("bad base64 in the PEM block".into()))
}

fn describe_signer(si: Tlv, embedded: &[Certificate]) -> Result<Signer> {
    let si = SignerInfo::parse(si)?;
    let attrs = si.attrs()?;
    let signing_time = attrs.signing_time.map(time::iso8601);
    // Shown when it can be read (what cannot is ignored by `open` too).
    let receipt_request = (!attrs.receipt_request.is_empty())
        .then(|| receipt::ReceiptRequest::from_values(&attrs.receipt_request).ok())
        .flatten()
        .map(|r| (&r).into());
    let cert = embedded.iter().find(|c| si.names(c));
    Ok(Signer {
        id: describe_rid(si.sid),
        subject: cert.map(|c| c.subject().to_string()),
        digest: si.digest_alg.name(),
        signature: si.sig_alg.name(),
        signed_attributes: si.signed_attrs.is_some(),
        signing_time,
        receipt_request,
        msg_sig_digest: receipt::single_msg_sig_digest(&attrs.msg_sig_digest)
            .ok()
            .flatten()
            .map(|d| crate::bytes::hex(&d)),
    })
}

/// One SignerInfo of a SignedData.
pub(super) struct SignerInfo<'a> {
    pub sid: Tlv<'a>,
    pub digest_alg: AlgId<'a>,
    pub signed_attrs: Option<Tlv<'a>>,
    pub sig_alg: AlgId<'a>,
    pub signature: Cow<'a, [u8]>,
}

/// The signed attributes we act on.
#[derive(Default)]
pub(super) struct SignedAttrs<'a> {
    pub message_digest: Option<Vec<u8>>,
    pub content_type: Option<&'a [u8]>,
    pub signing_time: Option<i64>,
    /// The values of ESS msgSigDigest attributes (RFC 2634 2.7; one, on a signed receipt), as
    /// found: not yet checked.
    pub msg_sig_digest: Vec<Tlv<'a>>,
    /// The values of ESS ReceiptRequest attributes (RFC 2634 2.7; one, when a receipt is
    /// asked for), as found: not yet checked.
    pub receipt_request: Vec<Tlv<'a>>,
}

impl<'a> SignerInfo<'a> {
    pub fn parse(si: Tlv<'a>) -> Result<SignerInfo<'a>> {
        let mut r = si.expect(tag::SEQUENCE, "SignerInfo")?.children()?;
        r.expect(tag::INTEGER, "version")?;
        let sid = r.req("sid")?;
        let digest_alg = AlgId::parse(r.req("digestAlgorithm")?)?;
        let signed_attrs = r.optional(tag::ctx(0))?;
        let sig_alg = AlgId::parse(r.req("signatureAlgorithm")?)?;
        let signature = r.expect(tag::OCTET_STRING, "signature")?.octets()?;
        Ok(SignerInfo {
            sid,
            digest_alg,
            signed_attrs,
            sig_alg,
            signature,
        })
    }

    pub fn attrs(&self) -> Result<SignedAttrs<'a>> {
        let mut out = SignedAttrs::default();
        let Some(sa) = self.signed_attrs else {
            return Ok(out);
        };
        let mut ar = sa.children()?;
        while let Some(a) = ar.next()? {
            let mut x = a.expect(tag::SEQUENCE, "Attribute")?.children()?;
            let aoid = x.expect(tag::OID, "attrType")?.content;
            let mut values = x.expect(tag::SET, "attrValues")?.children()?;
            let v = values.req("attribute value")?;
            if aoid == oid::ATTR_MESSAGE_DIGEST {
                if out.message_digest.is_some() {
                    return Err(Error::Malformed("two message-digest attributes".into()));
                }
                out.message_digest = Some(
                    v.expect(tag::OCTET_STRING, "messageDigest")?
                        .octets()?
                        .into_owned(),
                );
            } else if aoid == oid::ATTR_CONTENT_TYPE {
                out.content_type = Some(v.expect(tag::OID, "contentType")?.content);
            } else if aoid == oid::ATTR_SIGNING_TIME {
                out.signing_time = Some(time::parse_asn1_time(v.tag, v.content)?);
            } else if aoid == oid::ATTR_MSG_SIG_DIGEST || aoid == oid::ATTR_RECEIPT_REQUEST {
                // Every value, checked only where receipts are made or verified: a document
                // whose ESS attributes are malformed still opens (no receipt is offered).
                let to = if aoid == oid::ATTR_MSG_SIG_DIGEST {
                    &mut out.msg_sig_digest
                } else {
                    &mut out.receipt_request
                };
                to.push(v);
                while let Some(more) = values.next()? {
                    to.push(more);
                }
            }
        }
        Ok(out)
    }

    /// Whether the signer identifier names `cert`.
    pub fn names(&self, cert: &Certificate) -> bool {
        rid_matches(cert, self.sid).unwrap_or(false)
    }

    /// The signer as a person reads it: the subject of its certificate when the message carries
    /// it, else its identifier.
    pub fn describe(&self, embedded: &[Certificate]) -> String {
        match embedded.iter().find(|c| self.names(c)) {
            Some(c) => c.subject().to_string(),
            None => describe_rid(self.sid),
        }
    }
}

fn describe_recipients(ris: Tlv) -> Result<Vec<Recipient>> {
    let mut out = Vec::new();
    let mut rr = ris.children()?;
    while let Some(ri) = rr.next()? {
        let mut k = ri.children()?;
        k.expect(tag::INTEGER, "version")?;
        let j = match ri.tag {
            tag::SEQUENCE => {
                let rid = k.req("rid")?;
                let alg = AlgId::parse(k.req("keyEncryptionAlgorithm")?)?;
                Recipient::KeyTransport {
                    id: describe_rid(rid),
                    algorithm: alg.name(),
                }
            }
            t if t == tag::ctx(1) => {
                k.req("originator")?;
                k.optional(tag::ctx(1))?;
                let alg = AlgId::parse(k.req("keyEncryptionAlgorithm")?)?;
                let mut ids = Vec::new();
                let mut reks = k
                    .expect(tag::SEQUENCE, "recipientEncryptedKeys")?
                    .children()?;
                while let Some(rek) = reks.next()? {
                    ids.push(describe_rid(rek.children()?.req("rid")?));
                }
                Recipient::KeyAgreement {
                    ids,
                    algorithm: alg.name(),
                }
            }
            t if t == tag::ctx(2) => {
                let kekid = k.expect(tag::SEQUENCE, "kekid")?;
                let id = kekid
                    .children()?
                    .expect(tag::OCTET_STRING, "keyIdentifier")?
                    .octets()?;
                let alg = AlgId::parse(k.req("keyEncryptionAlgorithm")?)?;
                Recipient::Kek {
                    id: crate::bytes::hex(&id),
                    algorithm: alg.name(),
                }
            }
            t if t == tag::ctx(3) => Recipient::Password,
            _ => Recipient::Other,
        };
        out.push(j);
    }
    Ok(out)
}

/// Whether `data` begins a ContentInfo of a layer type we peel (its SEQUENCE header and
/// contentType, any BER length form): decided on the first bytes alone, so that the streaming
/// path, which has only those, decides alike (what follows must then be that ContentInfo).
pub(super) fn is_nested_cms(data: &[u8]) -> bool {
    /// An element's header: tag, header length, content length (None: indefinite).
    fn header(b: &[u8]) -> Option<(u8, usize, Option<usize>)> {
        let (&t, &l0) = (b.first()?, b.get(1)?);
        if t & 0x1f == 0x1f {
            return None;
        }
        match l0 {
            0..=0x7f => Some((t, 2, Some(l0 as usize))),
            0x80 => Some((t, 2, None)),
            0x81..=0x88 => {
                let n = (l0 & 0x7f) as usize;
                let v = b
                    .get(2..2 + n)?
                    .iter()
                    .try_fold(0usize, |v, &x| v.checked_mul(256).map(|v| v | x as usize))?;
                Some((t, 2 + n, Some(v)))
            }
            _ => None,
        }
    }
    let Some((tag::SEQUENCE, hl, _)) = header(data) else {
        return false;
    };
    let rest = &data[hl..];
    let Some((tag::OID, ol, Some(len))) = header(rest) else {
        return false;
    };
    let Some(oid) = rest.get(ol..ol.saturating_add(len)) else {
        return false;
    };
    matches!(
        content_type(oid),
        Ok(ContentType::Signed
            | ContentType::Enveloped
            | ContentType::AuthEnveloped
            | ContentType::Compressed)
    )
}

/// PEM text, possibly after a few lines of explanatory text (as test-vector files have).
pub(super) fn is_pem(data: &[u8]) -> bool {
    let head = &data[..data.len().min(4096)];
    head.is_ascii()
        && crate::bytes::contains(head, b"-----BEGIN ")
        && !mime::looks_like_entity(data)
}
