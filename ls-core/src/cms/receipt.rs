//! Signed receipts of signed CMS messages (RFC 2634, Enhanced Security Services, §2): the
//! sender's SignedData asks for one with a ReceiptRequest signed attribute; the recipient answers
//! with a SignedData whose content is an ESS `Receipt` (content type id-ct-receipt) and whose
//! signed attributes carry msgSigDigest (the digest of the original signer's signed attributes),
//! binding the receipt to exactly that signature. Interoperable with `openssl cms
//! -sign_receipt` / `-verify_receipt`.
//!
//! ```text
//! ReceiptRequest ::= SEQUENCE {
//!   signedContentIdentifier OCTET STRING,
//!   receiptsFrom CHOICE { allOrFirstTier [0] INTEGER, receiptList [1] SEQUENCE OF GeneralNames },
//!   receiptsTo SEQUENCE SIZE (1..16) OF GeneralNames }
//! Receipt ::= SEQUENCE {
//!   version INTEGER (1), contentType OBJECT IDENTIFIER,
//!   signedContentIdentifier OCTET STRING, originatorSignatureValue OCTET STRING }
//! ```
//!
//! Which signature a receipt answers: the first SignerInfo of the original that carries a
//! ReceiptRequest (as `openssl cms -sign_receipt` answers the first SignerInfo). `open` offers a
//! receipt ([`super::Opened::receipt_request`]) only when that is the signature it verified.

use super::crypto::{self, Digest};
use super::open::{not_cms, SignedAttrs, SignerInfo};
use super::seal::{self, SignSpec};
use super::SignatureScheme;
use crate::asn1::{self, tag, Tlv};
use crate::cert::{key_usage, Certificate};
use crate::error::{Error, Result};
use crate::keys::Identity;
use crate::{mime, oid, time};
use std::borrow::Cow;

/// A ReceiptRequest found on a verified signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptRequest {
    /// signedContentIdentifier: what the receipt must quote.
    pub content_identifier: Vec<u8>,
    /// receiptsFrom: `true` for allOrFirstTier = allReceipts (or firstTierRecipients), `false`
    /// when a receiptList names who should answer (then `receipts_from` lists them).
    pub from_all: bool,
    /// receiptList, as text (the GeneralNames' rfc822Name/URI/directoryName), when given.
    /// One entry per name, prefixed with its form as OpenSSL prints it: `email:a@example.com`,
    /// `DirName:CN=acme, O=ACME`, `URI:…`, `DNS:…`, `IP:…`.
    pub receipts_from: Vec<String>,
    /// receiptsTo, as text: one entry per name, as `receipts_from`.
    pub receipts_to: Vec<String>,
}

/// How to sign a receipt.
#[derive(Clone, Debug, Default)]
pub struct ReceiptOptions {
    /// The signing time to state (Unix seconds); now when absent.
    pub signing_time: Option<i64>,
}

/// A receipt whose signature, msgSigDigest and quoted signature were checked against the
/// original SignedData and the partner's certificate.
#[derive(Clone, Debug)]
pub struct VerifiedReceipt {
    /// The partner certificate the receipt's signature verified against.
    pub signer: Certificate,
    /// The signing time the receipt states (Unix seconds).
    pub signing_time: Option<i64>,
    /// The signedContentIdentifier the receipt quotes (equal to the original's request).
    pub content_identifier: Vec<u8>,
}

/// RFC 2634: ub-receiptsTo.
const MAX_RECEIPTS_TO: usize = 16;
/// The most names we read from a receiptList.
const MAX_RECEIPTS_FROM: usize = 64;

/// The one msgSigDigest of a signer (`None` without the attribute).
pub(crate) fn single_msg_sig_digest(values: &[Tlv]) -> Result<Option<Vec<u8>>> {
    match values {
        [] => Ok(None),
        [v] => Ok(Some(
            v.expect(tag::OCTET_STRING, "msgSigDigest")?
                .octets()?
                .into_owned(),
        )),
        _ => Err(Error::Malformed(
            "more than one msgSigDigest attribute value".into(),
        )),
    }
}

impl ReceiptRequest {
    /// The one ReceiptRequest among the values of a signer's receiptRequest attributes.
    pub(crate) fn from_values(values: &[Tlv]) -> Result<ReceiptRequest> {
        match values {
            [v] => ReceiptRequest::parse(*v),
            [] => Err(Error::Internal("no ReceiptRequest to read".into())),
            _ => Err(Error::Malformed(
                "more than one receiptRequest attribute value".into(),
            )),
        }
    }

    /// Read the value of a receiptRequest attribute (BER tolerated).
    pub(crate) fn parse(t: Tlv) -> Result<ReceiptRequest> {
        let mut r = t.expect(tag::SEQUENCE, "ReceiptRequest")?.children()?;
        let content_identifier = r
            .expect(tag::OCTET_STRING, "signedContentIdentifier")?
            .octets()?
            .into_owned();
        let from = r.req("receiptsFrom")?;
        let (from_all, receipts_from) = match from.tag {
            // allOrFirstTier [0] IMPLICIT INTEGER; also read when (wrongly) tagged explicitly.
            t if t == tag::ctx_prim(0) || t == tag::ctx(0) => {
                let v = if t == tag::ctx(0) {
                    from.children()?.expect(tag::INTEGER, "allOrFirstTier")?
                } else {
                    from
                };
                if v.small_uint()? > 1 {
                    return Err(Error::Malformed(
                        "allOrFirstTier is neither allReceipts nor firstTierRecipients".into(),
                    ));
                }
                (true, Vec::new())
            }
            t if t == tag::ctx(1) => {
                let mut names = Vec::new();
                let mut l = from.children()?;
                while let Some(g) = l.next()? {
                    general_names_text(g, &mut names, MAX_RECEIPTS_FROM)?;
                }
                (false, names)
            }
            _ => return Err(Error::Malformed("a receiptsFrom of unknown form".into())),
        };
        let to = r.expect(tag::SEQUENCE, "receiptsTo")?;
        let mut receipts_to = Vec::new();
        let mut n = 0usize;
        let mut l = to.children()?;
        while let Some(g) = l.next()? {
            n += 1;
            if n > MAX_RECEIPTS_TO {
                return Err(Error::Malformed(format!(
                    "more than {MAX_RECEIPTS_TO} receiptsTo entries"
                )));
            }
            general_names_text(g, &mut receipts_to, MAX_RECEIPTS_FROM)?;
        }
        if n == 0 {
            return Err(Error::Malformed(
                "a ReceiptRequest with no receiptsTo".into(),
            ));
        }
        if !r.is_empty() {
            return Err(Error::Malformed(
                "unexpected data after the receiptsTo of a ReceiptRequest".into(),
            ));
        }
        Ok(ReceiptRequest {
            content_identifier,
            from_all,
            receipts_from,
            receipts_to,
        })
    }
}

/// Append the names of one GeneralNames as text.
fn general_names_text(t: Tlv, out: &mut Vec<String>, max: usize) -> Result<()> {
    let mut r = t.expect(tag::SEQUENCE, "GeneralNames")?.children()?;
    let mut any = false;
    while let Some(g) = r.next()? {
        any = true;
        if out.len() >= max {
            return Err(Error::Malformed(format!(
                "more than {max} names in a ReceiptRequest"
            )));
        }
        out.push(general_name_text(g)?);
    }
    if !any {
        return Err(Error::Malformed("an empty GeneralNames".into()));
    }
    Ok(())
}

fn general_name_text(g: Tlv) -> Result<String> {
    let text =
        |g: Tlv| -> Result<String> { Ok(String::from_utf8_lossy(&g.octets()?).into_owned()) };
    Ok(match g.tag {
        t if t == tag::ctx_prim(1) => format!("email:{}", text(g)?),
        t if t == tag::ctx_prim(2) => format!("DNS:{}", text(g)?),
        t if t == tag::ctx_prim(6) => format!("URI:{}", text(g)?),
        t if t == tag::ctx(4) => {
            let name = g.children()?.expect(tag::SEQUENCE, "directoryName")?;
            let n = openssl::x509::X509Name::from_der(name.raw)
                .map_err(|_| Error::Malformed("an unreadable directoryName".into()))?;
            format!("DirName:{}", crate::cert::name_to_string(&n))
        }
        t if t == tag::ctx_prim(7) => match g.content.len() {
            4 => format!(
                "IP:{}",
                std::net::Ipv4Addr::from([g.content[0], g.content[1], g.content[2], g.content[3]])
            ),
            16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(g.content);
                format!("IP:{}", std::net::Ipv6Addr::from(a))
            }
            _ => "IP:(malformed)".into(),
        },
        t if t == tag::ctx(0) => "othername:(unsupported)".into(),
        _ => "(unsupported name form)".into(),
    })
}

/// The receiptRequest signed attribute of a seal: `id` as signedContentIdentifier, receipts
/// from all recipients (allOrFirstTier = allReceipts), to one GeneralNames naming `signer`:
/// its subject as directoryName, then each rfc822Name of its subjectAltName.
pub(crate) fn receipt_request_attribute(id: &[u8], signer: &Certificate) -> Result<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = vec![asn1::tlv(tag::ctx(4), signer.subject_der())];
    for e in signer.email_addresses() {
        if e.is_ascii() {
            names.push(asn1::tlv(tag::ctx_prim(1), e.as_bytes()));
        }
    }
    let refs: Vec<&[u8]> = names.iter().map(|n| n.as_slice()).collect();
    let general_names = asn1::seq(&refs);
    let rr = asn1::seq(&[
        &asn1::octet_string(id),
        &asn1::tlv(tag::ctx_prim(0), &[0]), // allOrFirstTier: allReceipts (0)
        &asn1::seq(&[&general_names]),
    ]);
    Ok(seal::attribute(oid::ATTR_RECEIPT_REQUEST, &rr))
}

/// The content of a signed receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Receipt {
    /// The eContentType of the message answered (its contentType signed attribute).
    pub content_type: Vec<u8>,
    pub content_identifier: Vec<u8>,
    /// The signature value of the SignerInfo answered.
    pub originator_signature: Vec<u8>,
}

impl Receipt {
    pub(crate) fn parse(der: &[u8]) -> Result<Receipt> {
        let t = asn1::parse_single(der)?;
        let mut r = t.expect(tag::SEQUENCE, "Receipt")?.children()?;
        if r.expect(tag::INTEGER, "version")?.small_uint()? != 1 {
            return Err(Error::Malformed(
                "a Receipt of a version other than 1".into(),
            ));
        }
        let content_type = r.expect(tag::OID, "contentType")?.content.to_vec();
        let content_identifier = r
            .expect(tag::OCTET_STRING, "signedContentIdentifier")?
            .octets()?
            .into_owned();
        let originator_signature = r
            .expect(tag::OCTET_STRING, "originatorSignatureValue")?
            .octets()?
            .into_owned();
        if !r.is_empty() {
            return Err(Error::Malformed(
                "unexpected data after the originatorSignatureValue of a Receipt".into(),
            ));
        }
        Ok(Receipt {
            content_type,
            content_identifier,
            originator_signature,
        })
    }

    fn to_der(&self) -> Vec<u8> {
        asn1::seq(&[
            &asn1::uint(1),
            &asn1::oid(&self.content_type),
            &asn1::octet_string(&self.content_identifier),
            &asn1::octet_string(&self.originator_signature),
        ])
    }
}

/// A SignedData as read for receipts: nothing is copied, the content is not touched.
pub(super) struct SignedDataView<'a> {
    pub econtent_type: &'a [u8],
    /// The `[0]` around eContent, when encapsulated.
    pub econtent: Option<Tlv<'a>>,
    pub certs: Vec<&'a [u8]>,
    pub signer_infos: Tlv<'a>,
}

/// DER (or BER) of a CMS object given as DER/BER, PEM or an S/MIME entity.
pub(super) fn cms_der<'a>(input: &'a [u8], what: &str) -> Result<Cow<'a, [u8]>> {
    if input.is_empty() {
        return Err(Error::Truncated(format!("{what} is empty")));
    }
    if input[0] == tag::SEQUENCE {
        return Ok(Cow::Borrowed(input));
    }
    let head = &input[..input.len().min(4096)];
    if head.is_ascii() && crate::bytes::contains(head, b"-----BEGIN ") {
        return Ok(Cow::Owned(super::open::decode_pem(input)?));
    }
    if mime::looks_like_entity(input) {
        let e = mime::Entity::parse(input)?;
        if matches!(
            e.content_type().as_str(),
            "application/pkcs7-mime" | "application/x-pkcs7-mime"
        ) {
            return e.decoded_body();
        }
    }
    Err(Error::Malformed(format!(
        "{what} is not a CMS object (DER, BER, PEM or S/MIME)"
    )))
}

pub(super) fn parse_signed_data<'a>(der: &'a [u8], what: &str) -> Result<SignedDataView<'a>> {
    let ci = asn1::parse_single(der).map_err(not_cms)?;
    let mut r = ci
        .expect(tag::SEQUENCE, "ContentInfo")
        .map_err(not_cms)?
        .children()
        .map_err(not_cms)?;
    let ct = r.expect(tag::OID, "contentType").map_err(not_cms)?.content;
    if ct != oid::SIGNED_DATA {
        return Err(Error::Malformed(format!(
            "{what} is a {}, not a SignedData",
            oid::name(ct)
        )));
    }
    let sd = r
        .expect(tag::ctx(0), "content")?
        .children()?
        .req("SignedData")?;
    let mut r = sd.expect(tag::SEQUENCE, "SignedData")?.children()?;
    r.expect(tag::INTEGER, "version")?;
    r.expect(tag::SET, "digestAlgorithms")?;
    let mut e = r.expect(tag::SEQUENCE, "encapContentInfo")?.children()?;
    let econtent_type = e.expect(tag::OID, "eContentType")?.content;
    let econtent = e.optional(tag::ctx(0))?;
    let mut certs = Vec::new();
    if let Some(c) = r.optional(tag::ctx(0))? {
        let mut cr = c.children()?;
        while let Some(x) = cr.next()? {
            if x.tag == tag::SEQUENCE {
                certs.push(x.raw);
            }
        }
    }
    r.optional(tag::ctx(1))?; // CRLs
    let signer_infos = r.expect(tag::SET, "signerInfos")?;
    Ok(SignedDataView {
        econtent_type,
        econtent,
        certs,
        signer_infos,
    })
}

/// The one signature of a SignedData (`what` names it in messages), by one of `expected`
/// (certificates the SignedData carries are never trusted: `SignerMismatch`): its algorithms
/// (SHA-1 refused), its signature over its signed attributes (`BadSignature`), its content-type
/// attribute against the eContentType (`BadSignature`) and its message digest against
/// `econtent` (`DigestMismatch`). The certificate's validity and key usage are the caller's to
/// check (receipts of old evidence judge them differently). Returns the certificate that
/// verified, the signed attributes and the digest algorithm.
pub(super) fn verify_single_signer<'a, 'c>(
    sd: &SignedDataView<'a>,
    econtent: &[u8],
    expected: &'c [Certificate],
    what: &str,
) -> Result<(&'c Certificate, SignedAttrs<'a>, Digest)> {
    let n = sd.signer_infos.children()?.count_all()?;
    if n != 1 {
        return Err(Error::Malformed(format!(
            "{what} has one signer; this one has {n}"
        )));
    }
    let si = SignerInfo::parse(sd.signer_infos.children()?.req("SignerInfo")?)?;
    let Some(signer) = expected.iter().find(|c| si.names(c)) else {
        let embedded: Vec<Certificate> = sd
            .certs
            .iter()
            .filter_map(|d| Certificate::from_der(d).ok())
            .collect();
        let names: Vec<&str> = expected.iter().map(|c| c.subject()).collect();
        return Err(Error::SignerMismatch(format!(
            "{what} is signed by {}, expected {}",
            si.describe(&embedded),
            names.join(" or ")
        )));
    };
    let digest = Digest::from_oid(si.digest_alg.oid, false)?;
    let sig_alg = crypto::parse_sig_alg(&si.sig_alg)?;
    if let crypto::SigAlg::RsaPss { hash, mgf, .. } = sig_alg {
        if hash == Digest::Sha1 || mgf == Digest::Sha1 {
            return Err(Error::WeakAlgorithm("RSA-PSS with SHA-1".into()));
        }
    }
    let sa = si
        .signed_attrs
        .ok_or_else(|| Error::Malformed(format!("{what} has no signed attributes")))?;
    let key = signer.public_key()?;
    if !crypto::verify(&key, sig_alg, digest, &attrs_as_set(sa), &si.signature)? {
        return Err(Error::BadSignature(format!(
            "{what}: the signature attributed to {} does not verify",
            signer.subject()
        )));
    }
    let attrs = si.attrs()?;
    if attrs.content_type != Some(sd.econtent_type) {
        return Err(Error::BadSignature(format!(
            "{what}: the signed content-type attribute does not match its content"
        )));
    }
    let md = attrs
        .message_digest
        .as_deref()
        .ok_or_else(|| Error::Malformed("signed attributes without a message digest".into()))?;
    if md != crypto::digest(digest, econtent)?.as_slice() {
        return Err(Error::DigestMismatch(format!(
            "{what} was altered after {} signed it",
            signer.subject()
        )));
    }
    Ok((signer, attrs, digest))
}

/// The DER of signed attributes as they are signed and digested: a SET OF.
fn attrs_as_set(sa: Tlv) -> Vec<u8> {
    let mut der = sa.raw.to_vec();
    der[0] = tag::SET;
    der
}

/// Sign a receipt for `original` (a SignedData ContentInfo, DER, exactly as the sender signed
/// it — [`super::Opened::signed_data`]) with `signer`: a SignedData ContentInfo (DER) of
/// content type id-ct-receipt, with contentType, messageDigest, msgSigDigest and signingTime
/// signed attributes and the signer's certificate. `Err` when `original` carries no
/// ReceiptRequest or is not a SignedData.
///
/// The receipt answers the first SignerInfo that asks for one: it quotes that signature value,
/// its content type and signedContentIdentifier, and msgSigDigest is the digest (with that
/// signer's digest algorithm, as OpenSSL computes it) of its signed attributes as a DER SET OF.
/// The receipt is signed with SHA-256: RSA PKCS#1 v1.5 (RSASSA-PSS for an RSA-PSS key) or
/// ECDSA. `original` is not verified here: give what [`super::open`] verified.
pub fn sign_receipt(original: &[u8], signer: &Identity, opts: &ReceiptOptions) -> Result<Vec<u8>> {
    let now = time::now_unix();
    signer.check_can_sign()?;
    signer.certificate().check_validity(now)?;
    if let Some(t) = opts.signing_time {
        signer.certificate().check_validity(t)?;
    }
    let der = cms_der(original, "the original message")?;
    let orig = parse_signed_data(&der, "the original message")?;
    let mut sis = orig.signer_infos.children()?;
    let (osi, oattrs, rr) = loop {
        let Some(t) = sis.next()? else {
            return Err(Error::InvalidArgument(
                "the original message asks for no signed receipt (no signature carries a \
                 ReceiptRequest)"
                    .into(),
            ));
        };
        let si = SignerInfo::parse(t)?;
        let attrs = si.attrs()?;
        if !attrs.receipt_request.is_empty() {
            let rr = ReceiptRequest::from_values(&attrs.receipt_request)?;
            break (si, attrs, rr);
        }
    };
    let request = rr;
    let content_type = oattrs.content_type.ok_or_else(|| {
        Error::Malformed("the signature asking for a receipt states no content type".into())
    })?;
    let signed_attrs = osi
        .signed_attrs
        .ok_or_else(|| Error::Internal("a ReceiptRequest outside signed attributes".into()))?;
    let odigest = Digest::from_oid(osi.digest_alg.oid, true)?;
    let msg_sig_digest = crypto::digest(odigest, &attrs_as_set(signed_attrs))?;
    let receipt = Receipt {
        content_type: content_type.to_vec(),
        content_identifier: request.content_identifier,
        originator_signature: osi.signature.into_owned(),
    }
    .to_der();
    seal::signed_data(
        &[&receipt],
        signer,
        &SignSpec {
            econtent_type: oid::CT_RECEIPT,
            scheme: SignatureScheme::Pkcs1v15,
            signing_time: opts.signing_time.unwrap_or(now),
            extra_attrs: vec![seal::attribute(
                oid::ATTR_MSG_SIG_DIGEST,
                &asn1::octet_string(&msg_sig_digest),
            )],
        },
    )
}

/// Verify `receipt` (a SignedData ContentInfo of content type id-ct-receipt, DER) against the
/// `original` SignedData (DER, as we signed it) and the partner certificate(s) that must have
/// signed it: the receipt's signature, its msgSigDigest (the digest of the original signer's
/// signed attributes), the original signature value and content type it quotes, and its
/// signedContentIdentifier (the original's ReceiptRequest). A receipt signed by anyone else is
/// `SignerMismatch`; one for another message `ReceiptMismatch`; a broken one `BadSignature`,
/// `DigestMismatch` or `Malformed`.
///
/// In order: the receipt is read (`Malformed`/`Truncated`; a SignedData of another content
/// type is `Malformed`); it must have exactly one signer (as OpenSSL requires), named by one
/// of `partners` (certificates carried in the receipt are never trusted: `SignerMismatch`);
/// its signature over its signed attributes (`BadSignature`), its content-type attribute
/// (`BadSignature`) and message digest (`DigestMismatch`); the partner's certificate is valid
/// now and at the stated signing time, and allows signing (`CertExpired`, `CertNotYetValid`,
/// `CertKeyUsage`), as `open` checks a sender's. Then the binding, all `ReceiptMismatch`: the
/// original has a SignerInfo with the quoted signature value, carrying a ReceiptRequest whose
/// signedContentIdentifier the receipt quotes, whose content type it quotes, and whose signed
/// attributes digest to msgSigDigest (with the original signer's digest algorithm, or the
/// receipt signer's).
pub fn verify_receipt(
    receipt: &[u8],
    original: &[u8],
    partners: &[Certificate],
) -> Result<VerifiedReceipt> {
    verify_receipt_with(
        receipt,
        original,
        partners,
        &VerifyReceiptOptions::default(),
    )
}

/// How [`verify_receipt_with`] judges the partner's certificate.
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyReceiptOptions {
    /// Old evidence: the partner's certificate need only have been valid at the signing time
    /// the receipt states (which it must then state), not now.
    pub allow_expired: bool,
}

/// [`verify_receipt`], with `opts`: an auditor checks a receipt years later, when the
/// partner's certificate has expired, with `allow_expired`.
pub fn verify_receipt_with(
    receipt: &[u8],
    original: &[u8],
    partners: &[Certificate],
    opts: &VerifyReceiptOptions,
) -> Result<VerifiedReceipt> {
    if partners.is_empty() {
        return Err(Error::InvalidArgument(
            "no partner certificate was given to verify the receipt against".into(),
        ));
    }
    let rder = cms_der(receipt, "the receipt")?;
    let rsd = parse_signed_data(&rder, "the receipt")?;
    if rsd.econtent_type != oid::CT_RECEIPT {
        return Err(Error::Malformed(format!(
            "not a signed receipt: the signed content is {}, not id-ct-receipt",
            oid::name(rsd.econtent_type)
        )));
    }
    let econtent = rsd
        .econtent
        .ok_or_else(|| Error::Malformed("a signed receipt without its Receipt".into()))?
        .children()?
        .req("eContent")?
        .expect(tag::OCTET_STRING, "eContent")?
        .octets()?;
    let (partner, attrs, digest) = verify_single_signer(&rsd, &econtent, partners, "the receipt")?;
    match (opts.allow_expired, attrs.signing_time) {
        (false, t) => {
            partner.check_validity(time::now_unix())?;
            if let Some(t) = t {
                partner.check_validity(t)?;
            }
        }
        (true, Some(t)) => partner.check_validity(t)?,
        (true, None) => {
            return Err(Error::CertExpired(
                "the receipt states no signing time: whether the partner's certificate was \
                 valid when it was signed cannot be told (check it without allow-expired)"
                    .into(),
            ))
        }
    }
    partner.check_key_usage(
        key_usage::DIGITAL_SIGNATURE | key_usage::NON_REPUDIATION,
        "signing",
    )?;
    let msg_sig_digest = single_msg_sig_digest(&attrs.msg_sig_digest)?.ok_or_else(|| {
        Error::Malformed("a signed receipt without msgSigDigest (RFC 2634 requires it)".into())
    })?;
    let rct = Receipt::parse(&econtent)?;

    // The binding to the original signature.
    let oder = cms_der(original, "the original message")?;
    let orig = parse_signed_data(&oder, "the original message")?;
    let mut osis = orig.signer_infos.children()?;
    let osi = loop {
        let Some(t) = osis.next()? else {
            return Err(Error::ReceiptMismatch(
                "it quotes a signature the original message does not carry".into(),
            ));
        };
        let osi = SignerInfo::parse(t)?;
        if *osi.signature == *rct.originator_signature {
            break osi;
        }
    };
    let oattrs = osi.attrs()?;
    if oattrs.receipt_request.is_empty() {
        return Err(Error::ReceiptMismatch(
            "the original message asked for no signed receipt".into(),
        ));
    }
    let request = ReceiptRequest::from_values(&oattrs.receipt_request)?;
    let osa = osi
        .signed_attrs
        .ok_or_else(|| Error::Internal("a ReceiptRequest outside signed attributes".into()))?;
    let oset = attrs_as_set(osa);
    let odigest = Digest::from_oid(osi.digest_alg.oid, true)?;
    let mut bound = crypto::digest(odigest, &oset)? == msg_sig_digest;
    if !bound && odigest != digest {
        bound = crypto::digest(digest, &oset)? == msg_sig_digest;
    }
    if !bound {
        return Err(Error::ReceiptMismatch(
            "its msgSigDigest is not the digest of the original signature's attributes".into(),
        ));
    }
    if oattrs.content_type != Some(rct.content_type.as_slice()) {
        return Err(Error::ReceiptMismatch(format!(
            "it answers content of type {}, the original signed {}",
            oid::name(&rct.content_type),
            oattrs
                .content_type
                .map(oid::name)
                .unwrap_or_else(|| "no content type".into())
        )));
    }
    if request.content_identifier != rct.content_identifier {
        return Err(Error::ReceiptMismatch(
            "it quotes another signedContentIdentifier than the original requested".into(),
        ));
    }
    Ok(VerifiedReceipt {
        signer: partner.clone(),
        signing_time: attrs.signing_time,
        content_identifier: rct.content_identifier,
    })
}

#[cfg(test)]
mod tests {
    //! Receipts forged with every field under the forger's control, correctly signed by the
    //! partner: only the binding checks can refuse them. (Receipts damaged in transit, third
    //! parties and other messages are in `ls-core/tests/receipts.rs`.)
    use super::*;
    use crate::cms::{open, seal_with_evidence, OpenOptions, SealOptions};
    use crate::keys::KeyType;
    use crate::ErrorCode;

    struct Case {
        alice: Identity,
        bob: Identity,
        original: Vec<u8>,
        receipt: Receipt,
        msg_sig_digest: Vec<u8>,
    }

    fn case(kt: KeyType) -> Case {
        let alice = Identity::generate("alice", kt, 2, None).unwrap().identity;
        let bob = Identity::generate("bob", kt, 2, None).unwrap().identity;
        let s = seal_with_evidence(
            b"<Invoice/>",
            &alice,
            &[bob.certificate().clone()],
            &SealOptions {
                receipt_request: Some(b"doc-1".to_vec()),
                ..Default::default()
            },
        )
        .unwrap();
        let opened = open(
            &s.sealed,
            &OpenOptions {
                recipient: Some(&bob),
                sender: Some(alice.certificate()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            opened.signed_data.as_deref(),
            Some(s.signed_data.as_slice())
        );
        // What an honest receipt says, read back from one.
        let honest = sign_receipt(&s.signed_data, &bob, &ReceiptOptions::default()).unwrap();
        let sd = parse_signed_data(&honest, "r").unwrap();
        let si = SignerInfo::parse(sd.signer_infos.children().unwrap().req("si").unwrap()).unwrap();
        let msg_sig_digest = single_msg_sig_digest(&si.attrs().unwrap().msg_sig_digest)
            .unwrap()
            .unwrap();
        let econtent = sd.econtent.unwrap().children().unwrap().req("e").unwrap();
        let receipt = Receipt::parse(&econtent.octets().unwrap()).unwrap();
        assert_eq!(receipt.content_identifier, b"doc-1");
        assert_eq!(receipt.content_type, oid::DATA);
        Case {
            alice,
            bob,
            original: s.signed_data,
            receipt,
            msg_sig_digest,
        }
    }

    /// A receipt saying `r` with `msd`, properly signed by `signer`.
    fn forge(signer: &Identity, r: &Receipt, msd: &[u8]) -> Vec<u8> {
        seal::signed_data(
            &[&r.to_der()],
            signer,
            &SignSpec {
                econtent_type: oid::CT_RECEIPT,
                scheme: SignatureScheme::Pkcs1v15,
                signing_time: time::now_unix(),
                extra_attrs: vec![seal::attribute(
                    oid::ATTR_MSG_SIG_DIGEST,
                    &asn1::octet_string(msd),
                )],
            },
        )
        .unwrap()
    }

    fn code(c: &Case, receipt: &[u8]) -> ErrorCode {
        verify_receipt(receipt, &c.original, &[c.bob.certificate().clone()])
            .unwrap_err()
            .code()
    }

    #[test]
    fn forged_fields_are_receipt_mismatches() {
        for kt in [KeyType::Rsa(2048), KeyType::EcP256] {
            let c = case(kt);
            // The honest values pass.
            let ok = forge(&c.bob, &c.receipt, &c.msg_sig_digest);
            let v = verify_receipt(&ok, &c.original, &[c.bob.certificate().clone()]).unwrap();
            assert_eq!(v.content_identifier, b"doc-1");

            let mut msd = c.msg_sig_digest.clone();
            msd[0] ^= 1;
            assert_eq!(
                code(&c, &forge(&c.bob, &c.receipt, &msd)),
                ErrorCode::ReceiptMismatch
            );

            let mut r = c.receipt.clone();
            let last = r.originator_signature.len() - 1;
            r.originator_signature[last] ^= 1;
            assert_eq!(
                code(&c, &forge(&c.bob, &r, &c.msg_sig_digest)),
                ErrorCode::ReceiptMismatch
            );

            let mut r = c.receipt.clone();
            r.content_identifier = b"doc-2".to_vec();
            assert_eq!(
                code(&c, &forge(&c.bob, &r, &c.msg_sig_digest)),
                ErrorCode::ReceiptMismatch
            );

            let mut r = c.receipt.clone();
            r.content_type = oid::COMPRESSED_DATA.to_vec();
            assert_eq!(
                code(&c, &forge(&c.bob, &r, &c.msg_sig_digest)),
                ErrorCode::ReceiptMismatch
            );

            // Without msgSigDigest at all: not a receipt RFC 2634 accepts.
            let bare = seal::signed_data(
                &[&c.receipt.to_der()],
                &c.bob,
                &SignSpec {
                    econtent_type: oid::CT_RECEIPT,
                    scheme: SignatureScheme::Pkcs1v15,
                    signing_time: time::now_unix(),
                    extra_attrs: vec![],
                },
            )
            .unwrap();
            assert_eq!(code(&c, &bare), ErrorCode::Malformed);

            // A signed message that is not a receipt.
            let data = seal::signed_data(
                &[b"hello"],
                &c.bob,
                &SignSpec {
                    econtent_type: oid::DATA,
                    scheme: SignatureScheme::Pkcs1v15,
                    signing_time: time::now_unix(),
                    extra_attrs: vec![],
                },
            )
            .unwrap();
            assert_eq!(code(&c, &data), ErrorCode::Malformed);

            // The sender's own signature is no receipt from the partner.
            let by_alice = forge(&c.alice, &c.receipt, &c.msg_sig_digest);
            assert_eq!(code(&c, &by_alice), ErrorCode::SignerMismatch);
        }
    }

    #[test]
    fn the_partner_certificate_is_checked_as_open_checks_a_sender() {
        use crate::keys::builder::{CertPurpose, CertificateBuilder};
        let c = case(KeyType::EcP256);
        let now = time::now_unix();
        let day = 86_400;
        // bob's receipt signed while his certificate was valid (all values honest) …
        let bob_at = |nb: i64, na: i64| {
            CertificateBuilder::new("bob", CertPurpose::Party)
                .key_type(KeyType::EcP256)
                .validity(nb, na)
                .build(None)
                .unwrap()
                .identity
        };
        let signed_at = |who: &Identity, t: i64| {
            seal::signed_data(
                &[&c.receipt.to_der()],
                who,
                &SignSpec {
                    econtent_type: oid::CT_RECEIPT,
                    scheme: SignatureScheme::Pkcs1v15,
                    signing_time: t,
                    extra_attrs: vec![seal::attribute(
                        oid::ATTR_MSG_SIG_DIGEST,
                        &asn1::octet_string(&c.msg_sig_digest),
                    )],
                },
            )
            .unwrap()
        };
        // … a certificate that has expired since,
        let expired = bob_at(now - 10 * day, now - day);
        let r = signed_at(&expired, now - 2 * day);
        let e = verify_receipt(&r, &c.original, &[expired.certificate().clone()]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::CertExpired);
        // which an auditor checking old evidence accepts: it was valid when it signed …
        let old = VerifyReceiptOptions {
            allow_expired: true,
        };
        let v =
            verify_receipt_with(&r, &c.original, &[expired.certificate().clone()], &old).unwrap();
        assert_eq!(v.signing_time, Some(now - 2 * day));
        // … but not a receipt stating a time after it expired,
        let late = signed_at(&expired, now);
        let e = verify_receipt_with(&late, &c.original, &[expired.certificate().clone()], &old)
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::CertExpired);
        // a receipt claiming a time before the certificate was valid,
        let young = bob_at(now - day, now + day);
        let r = signed_at(&young, now - 2 * day);
        let e = verify_receipt(&r, &c.original, &[young.certificate().clone()]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::CertNotYetValid);
        let e =
            verify_receipt_with(&r, &c.original, &[young.certificate().clone()], &old).unwrap_err();
        assert_eq!(e.code(), ErrorCode::CertNotYetValid);
        // and the same certificate with an honest time passes.
        let r = signed_at(&young, now);
        verify_receipt(&r, &c.original, &[young.certificate().clone()]).unwrap();
        // sign_receipt refuses to state a time its certificate does not cover.
        let e = sign_receipt(
            &c.original,
            &young,
            &ReceiptOptions {
                signing_time: Some(now - 2 * day),
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::CertNotYetValid);
    }

    #[test]
    fn an_unreadable_request_does_not_stop_the_document() {
        let alice = Identity::generate("alice", KeyType::EcP256, 2, None)
            .unwrap()
            .identity;
        let good = receipt_request_attribute(b"id", alice.certificate()).unwrap();
        let broken = seal::attribute(
            oid::ATTR_RECEIPT_REQUEST,
            &asn1::seq(&[&asn1::octet_string(b"id")]),
        );
        let not_a_sequence = seal::attribute(oid::ATTR_RECEIPT_REQUEST, &asn1::null());
        for (attrs, offered) in [
            (vec![good.clone()], true),
            (vec![broken.clone()], false),
            (vec![not_a_sequence], false),
            (vec![good.clone(), good.clone()], false),
            (vec![good, broken], false),
        ] {
            let sd = seal::signed_data(
                &[b"Content-Type: text/plain\r\n\r\nhello"],
                &alice,
                &SignSpec {
                    econtent_type: oid::DATA,
                    scheme: SignatureScheme::Pkcs1v15,
                    signing_time: time::now_unix(),
                    extra_attrs: attrs,
                },
            )
            .unwrap();
            let o = open(
                &sd,
                &OpenOptions {
                    sender: Some(alice.certificate()),
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(o.document, b"hello");
            assert_eq!(o.receipt_request.is_some(), offered);
            assert_eq!(o.signed_data.is_some(), offered);
            let signed = sign_receipt(&sd, &alice, &ReceiptOptions::default());
            assert_eq!(signed.is_ok(), offered);
            if !offered {
                assert_eq!(signed.unwrap_err().code(), ErrorCode::Malformed);
            }
        }
    }

    #[test]
    fn receipt_request_reads_every_form() {
        let alice = Identity::generate("alice", KeyType::EcP256, 2, None)
            .unwrap()
            .identity;
        let attr = receipt_request_attribute(b"id", alice.certificate()).unwrap();
        let t = asn1::parse_single(&attr).unwrap();
        let mut r = t.children().unwrap();
        r.expect(tag::OID, "oid").unwrap();
        let v = r
            .expect(tag::SET, "v")
            .unwrap()
            .children()
            .unwrap()
            .req("rr")
            .unwrap();
        let rr = ReceiptRequest::parse(v).unwrap();
        assert_eq!(rr.content_identifier, b"id");
        assert!(rr.from_all);
        assert_eq!(rr.receipts_to, ["DirName:CN=alice"]);

        // receiptList with an e-mail address and a URI; receiptsTo an IP address.
        let names = asn1::seq(&[
            &asn1::tlv(tag::ctx_prim(1), b"bob@example.com"),
            &asn1::tlv(tag::ctx_prim(6), b"urn:x"),
        ]);
        let to = asn1::seq(&[&asn1::tlv(tag::ctx_prim(7), &[10, 0, 0, 1])]);
        let der = asn1::seq(&[
            &asn1::octet_string(b"x"),
            &asn1::cons(tag::ctx(1), &[&names]),
            &asn1::seq(&[&to]),
        ]);
        let rr = ReceiptRequest::parse(asn1::parse_single(&der).unwrap()).unwrap();
        assert!(!rr.from_all);
        assert_eq!(rr.receipts_from, ["email:bob@example.com", "URI:urn:x"]);
        assert_eq!(rr.receipts_to, ["IP:10.0.0.1"]);

        // No receiptsTo, an unknown receiptsFrom, too many receiptsTo: malformed.
        let bad = [
            asn1::seq(&[
                &asn1::octet_string(b"x"),
                &asn1::tlv(tag::ctx_prim(0), &[0]),
                &asn1::seq(&[]),
            ]),
            asn1::seq(&[
                &asn1::octet_string(b"x"),
                &asn1::tlv(tag::ctx_prim(2), &[0]),
                &asn1::seq(&[&to]),
            ]),
            asn1::seq(&[
                &asn1::octet_string(b"x"),
                &asn1::tlv(tag::ctx_prim(0), &[7]),
                &asn1::seq(&[&to]),
            ]),
            asn1::seq(&[
                &asn1::octet_string(b"x"),
                &asn1::tlv(tag::ctx_prim(0), &[0]),
                &asn1::cons(tag::SEQUENCE, &vec![to.as_slice(); 17]),
            ]),
        ];
        for b in bad {
            let e = ReceiptRequest::parse(asn1::parse_single(&b).unwrap()).unwrap_err();
            assert_eq!(e.code(), ErrorCode::Malformed);
        }
    }
}
