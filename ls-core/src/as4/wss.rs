//! WS-Security for AS4: XML signatures over `eb:Messaging`, the Body and every attachment, and
//! payload encryption (XML Encryption 1.1), as the eDelivery AS4 profile does it.

use super::c14n;
use super::xml::{self, by_id, child, is, text, NS_DS, NS_WSSE, NS_WSU, NS_XENC};
use crate::cert::{key_usage, CertStore, Certificate};
use crate::cms::crypto::{Digest, SigAlg};
use crate::error::{Error, Result};
use crate::keys::private::RsaDecryption;
use crate::keys::Identity;
use crate::{asn1, time};
use openssl::hash::MessageDigest;
use openssl::pkey::Id;
use roxmltree::{Document, Node};

pub const ALG_EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
pub const ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const ALG_RSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384";
pub const ALG_RSA_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512";
pub const ALG_ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
pub const ALG_ECDSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
pub const ALG_ECDSA_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512";
pub const ALG_RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
pub const ALG_SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub const ALG_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";
pub const ALG_SHA512: &str = "http://www.w3.org/2001/04/xmlenc#sha512";
pub const ALG_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
pub const ALG_ATT_CONTENT: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-SwAProfile-1.1#Attachment-Content-Signature-Transform";
pub const ALG_ATT_COMPLETE: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-SwAProfile-1.1#Attachment-Complete-Signature-Transform";
pub const VT_X509V3: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3";
pub const VT_PKIPATH: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509PKIPathv1";
pub const VT_SKI: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509SubjectKeyIdentifier";
pub const ENC_BASE64: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";

/// Most references a signature may carry: eb:Messaging, the Body and the attachments (the parts
/// limit), with room to spare. More is refused before any work is done for them.
pub const MAX_REFERENCES: usize = 128;

/// One reference of a signature, as verified (also what an NRR receipt copies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRef {
    pub uri: String,
    /// Transform algorithms, with the InclusiveNamespaces PrefixList of each (if any).
    pub transforms: Vec<(String, Option<String>)>,
    pub digest_method: String,
    /// Base64, as in the message.
    pub digest_value: String,
}

/// What a verified signature proves.
#[derive(Clone, Debug)]
pub struct Verified {
    pub signer: Certificate,
    pub references: Vec<SignedRef>,
    pub signature_method: String,
    /// With `Covered::partial`: the attachment references that could not be checked because
    /// the attachment was not given.
    pub unchecked: Vec<String>,
}

/// Whom we believe and what we require.
#[derive(Clone, Debug)]
pub struct VerifyPolicy<'a> {
    /// The one certificate that must have signed.
    pub signer: Option<&'a Certificate>,
    /// Or: a partner of this store (or a certificate chaining to its anchors).
    pub partners: Option<&'a CertStore>,
    /// Fail when the message carries no signature.
    pub require_signature: bool,
    /// Accept a signer certificate outside its validity (e.g. to inspect an old message).
    pub allow_expired: bool,
}

impl Default for VerifyPolicy<'_> {
    fn default() -> Self {
        VerifyPolicy {
            signer: None,
            partners: None,
            require_signature: true,
            allow_expired: false,
        }
    }
}

/// The parts a signature must cover: the very `eb:Messaging` and Body elements being processed
/// and every attachment (by Content-ID), with their bytes.
pub struct Covered<'a, 'd, 'i> {
    pub messaging: Option<Node<'d, 'i>>,
    pub body: Node<'d, 'i>,
    pub attachments: &'a [(&'a str, &'a [u8])],
    /// For looking at a SOAP part on its own (`inspect`), and for a service routing payloads
    /// encrypted for someone else (`exchange::authenticate`): attachment references whose
    /// attachment is not given are reported in `Verified::unchecked` instead of failing.
    /// Never for accepting a message's content.
    pub partial: bool,
}

/// The bytes of an attachment a signature covers.
#[derive(Clone, Copy, Debug)]
pub enum PartContent<'a> {
    Bytes(&'a [u8]),
    /// `offset..offset + len` of a file (a message body received into a spool,
    /// [`super::spool`]), with its SHA-256 when it was computed as the bytes arrived. Other
    /// digests are computed by reading the range (in pieces).
    File {
        path: &'a std::path::Path,
        offset: u64,
        len: u64,
        sha256: Option<[u8; 32]>,
    },
}

impl PartContent<'_> {
    /// The digest of the content with `md`.
    pub fn digest(&self, md: MessageDigest) -> Result<Vec<u8>> {
        match *self {
            PartContent::Bytes(d) => Ok(openssl::hash::hash(md, d)?.to_vec()),
            PartContent::File {
                sha256: Some(d), ..
            } if md == MessageDigest::sha256() => Ok(d.to_vec()),
            PartContent::File {
                path, offset, len, ..
            } => {
                use std::io::{Read, Seek, SeekFrom};
                let io = |e| Error::io(format!("cannot read {}", path.display()), e);
                let mut f = std::fs::File::open(path).map_err(io)?;
                f.seek(SeekFrom::Start(offset)).map_err(io)?;
                let mut h = openssl::hash::Hasher::new(md)?;
                let mut left = len;
                let mut buf = vec![0u8; 256 * 1024];
                while left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    f.read_exact(&mut buf[..want]).map_err(io)?;
                    h.update(&buf[..want])?;
                    left -= want as u64;
                }
                Ok(h.finish()?.to_vec())
            }
        }
    }
}

/// [`Covered`] with attachments given as [`PartContent`] (bytes, or ranges of a file).
pub struct CoveredParts<'a, 'd, 'i> {
    pub messaging: Option<Node<'d, 'i>>,
    pub body: Node<'d, 'i>,
    pub attachments: &'a [(&'a str, PartContent<'a>)],
    /// As [`Covered::partial`].
    pub partial: bool,
}

fn digest_alg(uri: &str) -> Result<MessageDigest> {
    Ok(match uri {
        ALG_SHA256 => MessageDigest::sha256(),
        ALG_SHA384 => MessageDigest::sha384(),
        ALG_SHA512 => MessageDigest::sha512(),
        ALG_SHA1 => return Err(Error::WeakAlgorithm("SHA-1 digests are refused".into())),
        other => {
            return Err(Error::UnsupportedAlgorithm(format!(
                "digest method {other}"
            )))
        }
    })
}

fn signature_alg(uri: &str) -> Result<(MessageDigest, bool)> {
    Ok(match uri {
        ALG_RSA_SHA256 => (MessageDigest::sha256(), false),
        ALG_RSA_SHA384 => (MessageDigest::sha384(), false),
        ALG_RSA_SHA512 => (MessageDigest::sha512(), false),
        ALG_ECDSA_SHA256 => (MessageDigest::sha256(), true),
        ALG_ECDSA_SHA384 => (MessageDigest::sha384(), true),
        ALG_ECDSA_SHA512 => (MessageDigest::sha512(), true),
        ALG_RSA_SHA1 => {
            return Err(Error::WeakAlgorithm(
                "RSA-SHA1 signatures are refused".into(),
            ))
        }
        other => {
            return Err(Error::UnsupportedAlgorithm(format!(
                "signature method {other}"
            )))
        }
    })
}

fn alg_of<'a>(n: Node<'a, '_>) -> &'a str {
    n.attribute("Algorithm").unwrap_or("")
}

fn b64(s: &str) -> Result<Vec<u8>> {
    crate::mime::base64_decode(s.as_bytes())
        .map_err(|_| Error::Malformed("bad base64 in the security header".into()))
}

pub fn b64_encode(data: &[u8]) -> String {
    crate::mime::base64_encode_mime(data)
        .into_iter()
        .filter(|b| !b.is_ascii_whitespace())
        .map(char::from)
        .collect()
}

fn inclusive_prefixes(n: Node) -> Option<String> {
    n.children()
        .find(|c| is(*c, xml::NS_EC, "InclusiveNamespaces"))
        .and_then(|c| c.attribute("PrefixList"))
        .map(str::to_string)
}

/// The `ds:Signature` of the security header, if any.
pub fn signature_of<'d, 'i>(security: Option<Node<'d, 'i>>) -> Option<Node<'d, 'i>> {
    security.and_then(|s| child(s, NS_DS, "Signature"))
}

/// Verify the signature of the security header against the policy. Returns `None` when there is
/// none and the policy does not require one.
pub fn verify<'d, 'i>(
    doc: &'d Document<'i>,
    security: Option<Node<'d, 'i>>,
    covered: &Covered<'_, 'd, 'i>,
    policy: &VerifyPolicy,
) -> Result<Option<Verified>> {
    let attachments: Vec<(&str, PartContent)> = covered
        .attachments
        .iter()
        .map(|(c, d)| (*c, PartContent::Bytes(d)))
        .collect();
    verify_parts(
        doc,
        security,
        &CoveredParts {
            messaging: covered.messaging,
            body: covered.body,
            attachments: &attachments,
            partial: covered.partial,
        },
        policy,
    )
}

/// [`verify`], with the attachments' bytes given as [`PartContent`]: a signature over a message
/// received into a spool is verified with the digests computed as it arrived.
pub fn verify_parts<'d, 'i>(
    doc: &'d Document<'i>,
    security: Option<Node<'d, 'i>>,
    covered: &CoveredParts<'_, 'd, 'i>,
    policy: &VerifyPolicy,
) -> Result<Option<Verified>> {
    let Some(sig) = signature_of(security) else {
        if policy.require_signature {
            return Err(Error::SignatureRequired(
                "the message has no WS-Security signature".into(),
            ));
        }
        return Ok(None);
    };
    let security = security.expect("a signature implies a security header");
    let si = child(sig, NS_DS, "SignedInfo")
        .ok_or_else(|| Error::Malformed("ds:Signature without SignedInfo".into()))?;
    let cm = child(si, NS_DS, "CanonicalizationMethod")
        .ok_or_else(|| Error::Malformed("SignedInfo without CanonicalizationMethod".into()))?;
    if alg_of(cm) != ALG_EXC_C14N {
        return Err(Error::UnsupportedAlgorithm(format!(
            "canonicalization {}",
            alg_of(cm)
        )));
    }
    let sm = child(si, NS_DS, "SignatureMethod")
        .ok_or_else(|| Error::Malformed("SignedInfo without SignatureMethod".into()))?;
    let signature_method = alg_of(sm).to_string();
    let (md, is_ec) = signature_alg(&signature_method)?;

    // 1. Every reference names what we process (signature wrapping is refused before any
    //    digest is computed), then every digest recomputes.
    let refs = signed_info_references(si);
    if refs.len() > MAX_REFERENCES {
        return Err(Error::TooLarge(format!(
            "the signature has {} references (at most {MAX_REFERENCES})",
            refs.len()
        )));
    }
    for (i, r) in refs.iter().enumerate() {
        if refs[..i].iter().any(|o| o.uri == r.uri) {
            return Err(Error::SignatureWrapping(format!(
                "two references to {}",
                r.uri
            )));
        }
    }
    let mut saw_messaging = false;
    let mut saw_body = false;
    let mut seen_cids: Vec<&str> = Vec::new();
    let mut targets: Vec<Option<PartContent>> = Vec::new(); // attachment bytes for cid: references
    for r in &refs {
        // Unknown or weak algorithms are named before anything else is judged.
        digest_alg(&r.digest_method)?;
        if let Some(id) = r.uri.strip_prefix('#') {
            let el = by_id(doc, id)?.ok_or_else(|| {
                Error::SignatureWrapping(format!(
                    "the signature references #{id}, which is not in the message"
                ))
            })?;
            if covered.messaging == Some(el) {
                saw_messaging = true;
            } else if el == covered.body {
                saw_body = true;
            }
            targets.push(None);
        } else if let Some(cid) = r.uri.strip_prefix("cid:") {
            let cid = percent_decode(cid);
            match covered.attachments.iter().find(|(c, _)| *c == cid) {
                Some((name, data)) => {
                    seen_cids.push(name);
                    targets.push(Some(*data));
                }
                None if covered.partial => targets.push(None),
                None => {
                    return Err(Error::SignatureWrapping(format!(
                        "the signature references attachment {cid}, which is not in the message"
                    )))
                }
            }
        } else {
            return Err(Error::UnsupportedAlgorithm(format!(
                "reference URI {:?}",
                r.uri
            )));
        }
    }
    if covered.messaging.is_some() && !saw_messaging {
        return Err(Error::SignatureWrapping(
            "the signature does not cover the eb:Messaging header being processed".into(),
        ));
    }
    if !saw_body {
        return Err(Error::SignatureWrapping(
            "the signature does not cover the SOAP Body".into(),
        ));
    }
    for (cid, _) in covered.attachments {
        if !seen_cids.contains(cid) {
            return Err(Error::UnsignedPart(format!(
                "attachment {cid} is not covered by the signature"
            )));
        }
    }
    // 2. Who signed, and do we believe them? (Before any referenced content is hashed: a
    //    stranger's message costs one signature check, not a hash of every part it names.)
    let key_info = child(sig, NS_DS, "KeyInfo")
        .ok_or_else(|| Error::Malformed("ds:Signature without KeyInfo".into()))?;
    let signer = resolve_key(doc, security, key_info, policy)?;
    accept_signer(&signer, policy)?;

    // 3. The signature value over the canonical SignedInfo, then every digest it vouches for.
    let si_prefixes = inclusive_prefixes(cm).unwrap_or_default();
    let c = c14n::canonicalize(si, &c14n::prefix_list(&si_prefixes))?;
    let sv = child(sig, NS_DS, "SignatureValue")
        .ok_or_else(|| Error::Malformed("ds:Signature without SignatureValue".into()))?;
    let mut value = b64(&text(sv))?;
    let key = signer.public_key()?;
    if is_ec != (key.id() == Id::EC) {
        return Err(Error::BadSignature(format!(
            "{signature_method} does not fit the signer's key"
        )));
    }
    if is_ec {
        value = ecdsa_raw_to_der(&value)?;
    }
    let mut v = openssl::sign::Verifier::new(md, &key)?;
    if !v.verify_oneshot(&value, &c).unwrap_or(false) {
        return Err(Error::BadSignature(format!(
            "the signature of {} does not verify",
            signer.subject()
        )));
    }
    let mut unchecked = Vec::new();
    for (r, attachment) in refs.iter().zip(targets) {
        if attachment.is_none() && r.uri.starts_with("cid:") {
            unchecked.push(r.uri.clone());
            continue;
        }
        if reference_digest_of(doc, r, attachment)? != b64(&r.digest_value)? {
            return Err(Error::DigestMismatch(format!(
                "the digest of {} does not match (altered in transit?)",
                r.uri
            )));
        }
    }

    Ok(Some(Verified {
        signer,
        references: refs,
        signature_method,
        unchecked,
    }))
}

/// The references of a `ds:SignedInfo`, as written.
pub fn signed_info_references(si: Node) -> Vec<SignedRef> {
    xml::children(si, NS_DS, "Reference")
        .map(|r| SignedRef {
            uri: r.attribute("URI").unwrap_or("").to_string(),
            transforms: child(r, NS_DS, "Transforms")
                .map(|ts| {
                    xml::children(ts, NS_DS, "Transform")
                        .map(|t| (alg_of(t).to_string(), inclusive_prefixes(t)))
                        .collect()
                })
                .unwrap_or_default(),
            digest_method: child(r, NS_DS, "DigestMethod")
                .map(alg_of)
                .unwrap_or("")
                .to_string(),
            digest_value: child(r, NS_DS, "DigestValue").map(text).unwrap_or_default(),
        })
        .collect()
}

/// Recompute the digest of one reference: an element of `doc` by `#Id` (exclusive C14N, the only
/// transform allowed), or an attachment's bytes (`cid:`, with the
/// Attachment-Content-Signature-Transform). Unknown or weak algorithms are errors.
pub fn reference_digest(
    doc: &Document,
    r: &SignedRef,
    attachment: Option<&[u8]>,
) -> Result<Vec<u8>> {
    reference_digest_of(doc, r, attachment.map(PartContent::Bytes))
}

/// [`reference_digest`] with the attachment as [`PartContent`].
pub fn reference_digest_of(
    doc: &Document,
    r: &SignedRef,
    attachment: Option<PartContent>,
) -> Result<Vec<u8>> {
    let md = digest_alg(&r.digest_method)?;
    if let Some(id) = r.uri.strip_prefix('#') {
        let mut prefixes = String::new();
        for (alg, pl) in &r.transforms {
            if alg != ALG_EXC_C14N {
                return Err(Error::UnsupportedAlgorithm(format!(
                    "transform {alg} on {}",
                    r.uri
                )));
            }
            prefixes = pl.clone().unwrap_or_default();
        }
        let el = by_id(doc, id)?.ok_or_else(|| {
            Error::SignatureWrapping(format!("no element with Id {id} in the message"))
        })?;
        Ok(
            openssl::hash::hash(md, &c14n::canonicalize(el, &c14n::prefix_list(&prefixes))?)?
                .to_vec(),
        )
    } else if r.uri.starts_with("cid:") {
        if !r.transforms.iter().any(|(a, _)| a == ALG_ATT_CONTENT) {
            return Err(Error::UnsupportedAlgorithm(format!(
                "attachment reference {} without the Attachment-Content-Signature-Transform",
                r.uri
            )));
        }
        if let Some((a, _)) = r.transforms.iter().find(|(a, _)| a != ALG_ATT_CONTENT) {
            return Err(Error::UnsupportedAlgorithm(format!(
                "transform {a} on {}",
                r.uri
            )));
        }
        let data =
            attachment.ok_or_else(|| Error::Internal(format!("no bytes given for {}", r.uri)))?;
        data.digest(md)
    } else {
        Err(Error::UnsupportedAlgorithm(format!(
            "reference URI {:?}",
            r.uri
        )))
    }
}

/// A `cid:` reference's Content-ID, percent-decoded (RFC 2392).
pub(crate) fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&crate::bytes::percent_decode(s)).into_owned()
}

fn accept_signer(signer: &Certificate, policy: &VerifyPolicy) -> Result<()> {
    match (policy.signer, policy.partners) {
        (Some(p), _) => {
            if p != signer {
                return Err(Error::SignerMismatch(format!(
                    "signed by {} (serial {}), expected {} (serial {})",
                    signer.subject(),
                    signer.serial_hex(),
                    p.subject(),
                    p.serial_hex()
                )));
            }
        }
        (None, Some(store)) => {
            let known = store.partners().any(|(_, c)| c == signer);
            if !known {
                store
                    .verify_chain(signer, &[], time::now_unix())
                    .map_err(|e| {
                        Error::UnknownSigner(format!(
                            "signed by {}, who is not a known partner ({e})",
                            signer.subject()
                        ))
                    })?;
            }
        }
        (None, None) => {
            return Err(Error::InvalidArgument(
                "no signer certificate or partner store was given to verify the signature".into(),
            ))
        }
    }
    if !policy.allow_expired {
        signer.check_validity(time::now_unix())?;
    }
    signer.check_key_usage(
        key_usage::DIGITAL_SIGNATURE | key_usage::NON_REPUDIATION,
        "signing",
    )
}

/// The certificate a `ds:KeyInfo` (or `xenc` KeyInfo) names: a BinarySecurityToken (X509v3 or
/// X509PKIPathv1) by reference, an X509 issuer/serial or a subject key identifier, resolved
/// against the tokens of the message and the certificates of the policy.
pub fn resolve_key(
    doc: &Document,
    security: Node,
    key_info: Node,
    policy: &VerifyPolicy,
) -> Result<Certificate> {
    let str_ = child(key_info, NS_WSSE, "SecurityTokenReference");
    let candidates = || -> Vec<Certificate> {
        let mut v: Vec<Certificate> = policy.signer.into_iter().cloned().collect();
        if let Some(s) = policy.partners {
            v.extend(s.partners().map(|(_, c)| c.clone()));
        }
        for bst in xml::children(security, NS_WSSE, "BinarySecurityToken") {
            if let Ok(certs) = bst_certificates(bst) {
                v.extend(certs.into_iter().last());
            }
        }
        v
    };
    if let Some(s) = str_ {
        if let Some(r) = child(s, NS_WSSE, "Reference") {
            let uri = r.attribute("URI").unwrap_or("");
            let id = uri
                .strip_prefix('#')
                .ok_or_else(|| Error::UnsupportedAlgorithm(format!("token reference {uri:?}")))?;
            let bst = by_id(doc, id)?.ok_or_else(|| {
                Error::Malformed(format!("the security token #{id} is not in the message"))
            })?;
            if !is(bst, NS_WSSE, "BinarySecurityToken") {
                return Err(Error::UnsupportedAlgorithm(format!(
                    "token #{id} is a {}",
                    bst.tag_name().name()
                )));
            }
            return bst_signer(bst, policy);
        }
        if let Some(k) = child(s, NS_WSSE, "KeyIdentifier") {
            if k.attribute("ValueType") != Some(VT_SKI) {
                return Err(Error::UnsupportedAlgorithm(format!(
                    "key identifier {:?}",
                    k.attribute("ValueType")
                )));
            }
            let ski = b64(&text(k))?;
            return candidates()
                .into_iter()
                .find(|c| c.matches_ski(&ski))
                .ok_or_else(|| {
                    Error::UnknownSigner(format!(
                        "no known certificate has the subject key identifier {}",
                        crate::bytes::hex(&ski)
                    ))
                });
        }
        if let Some(x) = child(s, NS_DS, "X509Data") {
            return resolve_issuer_serial(x, candidates);
        }
    }
    if let Some(x) = child(key_info, NS_DS, "X509Data") {
        if let Some(c) = child(x, NS_DS, "X509Certificate") {
            return known_or_parse(&b64(&text(c))?, policy);
        }
        return resolve_issuer_serial(x, candidates);
    }
    Err(Error::UnsupportedAlgorithm(
        "a KeyInfo that names no certificate we can resolve".into(),
    ))
}

fn resolve_issuer_serial(
    x509data: Node,
    candidates: impl Fn() -> Vec<Certificate>,
) -> Result<Certificate> {
    let is_ = child(x509data, NS_DS, "X509IssuerSerial")
        .ok_or_else(|| Error::UnsupportedAlgorithm("X509Data without X509IssuerSerial".into()))?;
    let issuer = child(is_, NS_DS, "X509IssuerName")
        .map(text)
        .unwrap_or_default();
    let serial = child(is_, NS_DS, "X509SerialNumber")
        .map(text)
        .unwrap_or_default();
    let serial = decimal_to_bytes(&serial)?;
    let want = dn_parts(&issuer);
    candidates()
        .into_iter()
        .find(|c| c.serial() == serial.as_slice() && dn_parts(&c.issuer()) == want)
        .ok_or_else(|| {
            Error::UnknownSigner(format!(
                "no known certificate has issuer {issuer:?} and that serial number"
            ))
        })
}

/// A distinguished name as a sorted list of (attribute, value), to compare `CN=a,O=b` with
/// `O = b, CN = a` and the long forms of attribute names.
fn dn_parts(dn: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = dn
        .split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            let k = k.trim().to_ascii_uppercase();
            let k = match k.as_str() {
                "EMAILADDRESS" | "E" => "EMAIL".to_string(),
                "ST" | "S" => "ST".to_string(),
                _ => k,
            };
            (k, v.trim().to_string())
        })
        .collect();
    v.sort();
    v
}

fn decimal_to_bytes(s: &str) -> Result<Vec<u8>> {
    let bn = openssl::bn::BigNum::from_dec_str(s.trim())
        .map_err(|_| Error::Malformed(format!("bad serial number {s:?}")))?;
    Ok(bn.to_vec())
}

/// The certificate with this DER: the policy's own object when it is one we already know
/// (parsing a certificate is the most expensive step of verifying a small message with
/// OpenSSL 3), else parsed.
fn known_or_parse(der: &[u8], policy: &VerifyPolicy) -> Result<Certificate> {
    if let Some(c) = policy.signer.filter(|c| c.der() == der) {
        return Ok(c.clone());
    }
    if let Some(c) = policy
        .partners
        .and_then(|s| s.partners().map(|(_, c)| c).find(|c| c.der() == der))
    {
        return Ok(c.clone());
    }
    Certificate::from_der(der)
}

/// The signer's certificate in a BinarySecurityToken (X509PKIPathv1 lists the path root first:
/// the signer is the last certificate).
fn bst_signer(bst: Node, policy: &VerifyPolicy) -> Result<Certificate> {
    let der = b64(&text(bst))?;
    match bst.attribute("ValueType").unwrap_or(VT_X509V3) {
        VT_X509V3 => known_or_parse(&der, policy),
        VT_PKIPATH => {
            let seq = asn1::parse_single(&der)?.expect(asn1::tag::SEQUENCE, "PkiPath")?;
            let mut r = seq.children()?;
            let mut last = None;
            while let Some(c) = r.next()? {
                last = Some(c.raw);
            }
            known_or_parse(
                last.ok_or_else(|| Error::CertInvalid("empty security token".into()))?,
                policy,
            )
        }
        other => Err(Error::UnsupportedAlgorithm(format!(
            "security token type {other}"
        ))),
    }
}

/// The certificates of a BinarySecurityToken (X509v3: one; X509PKIPathv1: the path).
pub fn bst_certificates(bst: Node) -> Result<Vec<Certificate>> {
    let der = b64(&text(bst))?;
    match bst.attribute("ValueType").unwrap_or(VT_X509V3) {
        VT_X509V3 => Ok(vec![Certificate::from_der(&der)?]),
        VT_PKIPATH => {
            let seq = asn1::parse_single(&der)?.expect(asn1::tag::SEQUENCE, "PkiPath")?;
            let mut r = seq.children()?;
            let mut out = Vec::new();
            while let Some(c) = r.next()? {
                out.push(Certificate::from_der(c.raw)?);
            }
            Ok(out)
        }
        other => Err(Error::UnsupportedAlgorithm(format!(
            "security token type {other}"
        ))),
    }
}

/// XML-DSig ECDSA values are r‖s; OpenSSL wants DER.
fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>> {
    crate::cms::crypto::ecdsa_rs_to_der(raw)?
        .ok_or_else(|| Error::BadSignature("malformed ECDSA signature value".into()))
}

fn ecdsa_der_to_raw(der: &[u8], field_len: usize) -> Result<Vec<u8>> {
    let sig = openssl::ecdsa::EcdsaSig::from_der(der)?;
    let mut out = sig.r().to_vec_padded(field_len as i32)?;
    out.extend(sig.s().to_vec_padded(field_len as i32)?);
    Ok(out)
}

// ------------------------------------------------------------------------------------------------
// Signing

/// A fresh `wsu:Id` value (an NCName: starts with a letter).
pub fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 16];
    openssl::rand::rand_bytes(&mut b).expect("the OpenSSL RNG does not fail");
    format!("{prefix}-{}", crate::bytes::hex(&b))
}

/// The `wsse:BinarySecurityToken` element for a certificate.
pub fn bst_xml(cert: &Certificate, id: &str) -> String {
    format!(
        "<wsse:BinarySecurityToken xmlns:wsse=\"{NS_WSSE}\" xmlns:wsu=\"{NS_WSU}\" EncodingType=\"{ENC_BASE64}\" ValueType=\"{VT_X509V3}\" wsu:Id=\"{id}\">{}</wsse:BinarySecurityToken>",
        b64_encode(cert.der())
    )
}

/// Build a `ds:Signature` over the elements with the given Ids (in `doc`) and the attachments,
/// with `signer`, naming its certificate by reference to the BST `bst_id`.
pub fn signature_xml(
    doc: &Document,
    ids: &[&str],
    attachments: &[(&str, &[u8])],
    signer: &Identity,
    bst_id: &str,
) -> Result<String> {
    let digests: Vec<(&str, [u8; 32])> = attachments
        .iter()
        .map(|(cid, data)| (*cid, openssl::sha::sha256(data)))
        .collect();
    signature_xml_digests(doc, ids, &digests, signer, bst_id)
}

/// [`signature_xml`] with the attachments' SHA-256 digests given (computed while reading a
/// payload file).
pub fn signature_xml_digests(
    doc: &Document,
    ids: &[&str],
    attachments: &[(&str, [u8; 32])],
    signer: &Identity,
    bst_id: &str,
) -> Result<String> {
    let cert = signer.certificate();
    cert.check_validity(time::now_unix())?;
    cert.check_key_usage(
        key_usage::DIGITAL_SIGNATURE | key_usage::NON_REPUDIATION,
        "signing",
    )?;
    let is_ec = signer.is_ec();
    let sig_alg = if is_ec {
        ALG_ECDSA_SHA256
    } else {
        ALG_RSA_SHA256
    };
    let mut refs = String::new();
    for id in ids {
        let el = by_id(doc, id)?
            .ok_or_else(|| Error::Internal(format!("no element with Id {id} to sign")))?;
        let digest = openssl::sha::sha256(&c14n::canonicalize(el, &[])?);
        refs.push_str(&format!(
            "<ds:Reference URI=\"#{}\"><ds:Transforms><ds:Transform Algorithm=\"{ALG_EXC_C14N}\"/></ds:Transforms><ds:DigestMethod Algorithm=\"{ALG_SHA256}\"/><ds:DigestValue>{}</ds:DigestValue></ds:Reference>",
            xml::escape_attr(id),
            b64_encode(&digest)
        ));
    }
    for (cid, digest) in attachments {
        refs.push_str(&format!(
            "<ds:Reference URI=\"cid:{}\"><ds:Transforms><ds:Transform Algorithm=\"{ALG_ATT_CONTENT}\"/></ds:Transforms><ds:DigestMethod Algorithm=\"{ALG_SHA256}\"/><ds:DigestValue>{}</ds:DigestValue></ds:Reference>",
            xml::escape_attr(cid),
            b64_encode(digest)
        ));
    }
    let signed_info = format!(
        "<ds:SignedInfo xmlns:ds=\"{NS_DS}\"><ds:CanonicalizationMethod Algorithm=\"{ALG_EXC_C14N}\"/><ds:SignatureMethod Algorithm=\"{sig_alg}\"/>{refs}</ds:SignedInfo>"
    );
    let si_doc = xml::parse(&signed_info, &xml::Limits::default())?;
    let c = c14n::canonicalize(si_doc.root_element(), &[])?;
    let key = signer.private_key();
    let alg = if is_ec {
        SigAlg::Ecdsa
    } else {
        SigAlg::RsaPkcs1
    };
    let mut value = key.sign(alg, Digest::Sha256, &c)?;
    if is_ec {
        let bits = key.public_key().bits() as usize;
        value = ecdsa_der_to_raw(&value, bits.div_ceil(8))?;
    }
    let str_id = new_id("STR");
    Ok(format!(
        "<ds:Signature xmlns:ds=\"{NS_DS}\" Id=\"{}\">{signed_info}<ds:SignatureValue>{}</ds:SignatureValue><ds:KeyInfo><wsse:SecurityTokenReference xmlns:wsse=\"{NS_WSSE}\" xmlns:wsu=\"{NS_WSU}\" wsu:Id=\"{str_id}\"><wsse:Reference URI=\"#{bst_id}\" ValueType=\"{VT_X509V3}\"/></wsse:SecurityTokenReference></ds:KeyInfo></ds:Signature>",
        new_id("SIG"),
        b64_encode(&value)
    ))
}

// ------------------------------------------------------------------------------------------------
// Encryption of payload parts (XML Encryption 1.1, SwA Attachment-Content-Only)

pub const ALG_AES128_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";
pub const ALG_AES192_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes192-gcm";
pub const ALG_AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";
pub const ALG_RSA_OAEP11: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";
pub const ALG_RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
pub const ALG_MGF1_SHA1: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha1";
pub const ALG_MGF1_SHA256: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha256";
pub const ALG_MGF1_SHA384: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha384";
pub const ALG_MGF1_SHA512: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha512";
pub const TYPE_ATT_CONTENT_ONLY: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-SwAProfile-1.1#Attachment-Content-Only";
pub const ALG_ATT_CIPHERTEXT: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-SwAProfile-1.1#Attachment-Ciphertext-Transform";
pub const TT_ENCRYPTED_KEY: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-soap-message-security-1.1#EncryptedKey";

/// A decrypted payload part.
#[derive(Clone, Debug)]
pub struct DecryptedPart {
    pub content_id: String,
    /// The part's MIME type before encryption (`EncryptedData/@MimeType`).
    pub mime_type: Option<String>,
    pub data: Vec<u8>,
}

fn oaep_digest(uri: &str) -> Result<Digest> {
    Ok(match uri {
        "" | ALG_SHA1 => Digest::Sha1,
        ALG_SHA256 => Digest::Sha256,
        ALG_SHA384 => Digest::Sha384,
        ALG_SHA512 => Digest::Sha512,
        other => return Err(Error::UnsupportedAlgorithm(format!("OAEP digest {other}"))),
    })
}

fn mgf_digest(uri: &str) -> Result<Digest> {
    Ok(match uri {
        "" | ALG_MGF1_SHA1 => Digest::Sha1,
        ALG_MGF1_SHA256 => Digest::Sha256,
        ALG_MGF1_SHA384 => Digest::Sha384,
        ALG_MGF1_SHA512 => Digest::Sha512,
        other => return Err(Error::UnsupportedAlgorithm(format!("MGF {other}"))),
    })
}

fn gcm_cipher(uri: &str) -> Result<openssl::symm::Cipher> {
    Ok(match uri {
        ALG_AES128_GCM => openssl::symm::Cipher::aes_128_gcm(),
        ALG_AES192_GCM => openssl::symm::Cipher::aes_192_gcm(),
        ALG_AES256_GCM => openssl::symm::Cipher::aes_256_gcm(),
        other => {
            return Err(Error::UnsupportedAlgorithm(format!(
                "payload encryption {other}"
            )))
        }
    })
}

/// Decrypt the payload parts encrypted for `recipient`. `parts` are the attachments as received
/// (Content-ID, bytes). Parts the security header does not encrypt are not returned.
pub fn decrypt_parts(
    doc: &Document,
    security: Node,
    parts: &[(&str, &[u8])],
    recipient: &Identity,
) -> Result<Vec<DecryptedPart>> {
    let me = VerifyPolicy {
        signer: Some(recipient.certificate()),
        ..Default::default()
    };
    let mut addressed = Vec::new();
    let mut key = None;
    for ek in xml::children(security, NS_XENC, "EncryptedKey") {
        let Some(ki) = child(ek, NS_DS, "KeyInfo") else {
            continue;
        };
        match resolve_key(doc, security, ki, &me) {
            Ok(c) if &c == recipient.certificate() => {
                key = Some(ek);
                break;
            }
            Ok(c) => addressed.push(c.subject().to_string()),
            Err(_) => addressed.push("an unresolvable key".into()),
        }
    }
    let Some(ek) = key else {
        if addressed.is_empty() {
            return Ok(Vec::new());
        }
        return Err(Error::NotARecipient(format!(
            "the payloads are encrypted for {}; our identity: {}",
            addressed.join("; "),
            recipient.certificate().subject()
        )));
    };
    let em = child(ek, NS_XENC, "EncryptionMethod")
        .ok_or_else(|| Error::Malformed("EncryptedKey without EncryptionMethod".into()))?;
    let (md, mgf) = match alg_of(em) {
        ALG_RSA_OAEP11 => (
            oaep_digest(child(em, NS_DS, "DigestMethod").map(alg_of).unwrap_or(""))?,
            mgf_digest(child(em, xml::NS_XENC11, "MGF").map(alg_of).unwrap_or(""))?,
        ),
        ALG_RSA_OAEP_MGF1P => (
            oaep_digest(child(em, NS_DS, "DigestMethod").map(alg_of).unwrap_or(""))?,
            Digest::Sha1,
        ),
        other => {
            return Err(Error::UnsupportedAlgorithm(format!(
                "key transport {other}"
            )))
        }
    };
    let cv = child(ek, NS_XENC, "CipherData")
        .and_then(|c| child(c, NS_XENC, "CipherValue"))
        .ok_or_else(|| Error::Malformed("EncryptedKey without CipherValue".into()))?;
    let wrapped = b64(&text(cv))?;
    let oaep = RsaDecryption::Oaep {
        hash: md,
        mgf,
        label: Vec::new(),
    };
    // Every failure of the decryption itself looks the same (no padding oracle): see
    // `crypto::hidden_decrypt_failure`.
    let key = recipient.private_key();
    let cek = key.decrypt(&oaep, &wrapped).or_else(|e| {
        crate::cms::crypto::hidden_decrypt_failure(key, e, None).map_err(|e| match e {
            Error::KeyUnwrapFailed(_) => {
                Error::KeyUnwrapFailed("RSA-OAEP decryption of the payload key failed".into())
            }
            other => other,
        })
    })?;

    // The EncryptedData the key serves: its ReferenceList, else those whose KeyInfo names it.
    let ek_id = xml::id_of(ek).unwrap_or("");
    let mut eds: Vec<Node> = Vec::new();
    if let Some(rl) = child(ek, NS_XENC, "ReferenceList") {
        let n = xml::children(rl, NS_XENC, "DataReference").count();
        if n > MAX_REFERENCES {
            return Err(Error::TooLarge(format!(
                "{n} encrypted parts (at most {MAX_REFERENCES})"
            )));
        }
        for dr in xml::children(rl, NS_XENC, "DataReference") {
            let uri = dr.attribute("URI").unwrap_or("");
            let id = uri
                .strip_prefix('#')
                .ok_or_else(|| Error::Malformed(format!("DataReference {uri:?}")))?;
            eds.push(
                by_id(doc, id)?
                    .ok_or_else(|| Error::Malformed(format!("EncryptedData #{id} is missing")))?,
            );
        }
    } else {
        for ed in doc
            .descendants()
            .filter(|n| is(*n, NS_XENC, "EncryptedData"))
        {
            let names_key = ed
                .descendants()
                .filter(|n| is(*n, NS_WSSE, "Reference"))
                .any(|r| r.attribute("URI") == Some(&format!("#{ek_id}")));
            if names_key {
                eds.push(ed);
            }
        }
    }
    if eds.len() > MAX_REFERENCES {
        return Err(Error::TooLarge(format!(
            "{} encrypted parts (at most {MAX_REFERENCES})",
            eds.len()
        )));
    }
    let mut out: Vec<DecryptedPart> = Vec::new();
    let mut done: Vec<Node> = Vec::new();
    for ed in eds {
        // Each EncryptedData, and each attachment, is decrypted once.
        if done.contains(&ed) {
            return Err(Error::Malformed(
                "two references to the same EncryptedData".into(),
            ));
        }
        done.push(ed);
        if ed.attribute("Type") != Some(TYPE_ATT_CONTENT_ONLY) {
            return Err(Error::UnsupportedAlgorithm(format!(
                "encrypted data of type {:?} (AS4 encrypts attachment content only)",
                ed.attribute("Type").unwrap_or("")
            )));
        }
        let alg = child(ed, NS_XENC, "EncryptionMethod")
            .map(alg_of)
            .unwrap_or("");
        let cipher = gcm_cipher(alg)?;
        if cek.len() != cipher.key_len() {
            return Err(Error::KeyUnwrapFailed(format!(
                "a {}-byte key for {alg}",
                cek.len()
            )));
        }
        let cr = child(ed, NS_XENC, "CipherData")
            .and_then(|c| child(c, NS_XENC, "CipherReference"))
            .ok_or_else(|| Error::Malformed("EncryptedData without CipherReference".into()))?;
        let uri = cr.attribute("URI").unwrap_or("");
        let cid = percent_decode(
            uri.strip_prefix("cid:")
                .ok_or_else(|| Error::UnsupportedAlgorithm(format!("cipher reference {uri:?}")))?,
        );
        let data = parts
            .iter()
            .find(|(c, _)| *c == cid)
            .map(|(_, d)| *d)
            .ok_or_else(|| {
                Error::Malformed(format!(
                    "the encrypted attachment {cid} is not in the message"
                ))
            })?;
        if out.iter().any(|d| d.content_id == cid) {
            return Err(Error::Malformed(format!(
                "attachment {cid} is encrypted twice"
            )));
        }
        if data.len() < 12 + 16 {
            return Err(Error::Truncated(format!(
                "encrypted attachment {cid} is too short"
            )));
        }
        let (iv, rest) = data.split_at(12);
        let (ct, tag) = rest.split_at(rest.len() - 16);
        let plain =
            openssl::symm::decrypt_aead(cipher, &cek, Some(iv), &[], ct, tag).map_err(|_| {
                Error::DecryptFailed(format!(
                    "attachment {cid}: the authentication tag does not match"
                ))
            })?;
        out.push(DecryptedPart {
            content_id: cid,
            mime_type: ed.attribute("MimeType").map(str::to_string),
            data: plain,
        });
    }
    Ok(out)
}

/// Encrypt payload parts for `recipient` (whose certificate travels as the BST `recipient_bst_id`):
/// returns the `xenc:EncryptedKey` and `xenc:EncryptedData` elements for the security header and
/// the encrypted bytes of each part (IV ‖ ciphertext ‖ tag), in order.
pub fn encrypt_parts(
    parts: &[(&str, &str, &[u8])], // (Content-ID, MIME type, data)
    recipient: &Certificate,
    recipient_bst_id: &str,
) -> Result<(String, Vec<Vec<u8>>)> {
    let pk = recipient.public_key()?;
    if pk.id() != Id::RSA {
        return Err(Error::UnsupportedKey(format!(
            "AS4 1.x payload encryption needs an RSA recipient key ({})",
            recipient.subject()
        )));
    }
    recipient.check_validity(time::now_unix())?;
    recipient.check_key_usage(key_usage::KEY_ENCIPHERMENT, "encryption")?;
    let mut cek = [0u8; 16];
    openssl::rand::rand_bytes(&mut cek)?;
    let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&pk)?;
    ctx.encrypt_init()?;
    ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)?;
    ctx.set_rsa_oaep_md(openssl::md::Md::sha256())?;
    ctx.set_rsa_mgf1_md(openssl::md::Md::sha256())?;
    let mut wrapped = Vec::new();
    ctx.encrypt_to_vec(&cek, &mut wrapped)?;
    let ek_id = new_id("EK");
    let mut datas = String::new();
    let mut refs = String::new();
    let mut encrypted = Vec::new();
    for (cid, mime_type, data) in parts {
        let mut iv = [0u8; 12];
        openssl::rand::rand_bytes(&mut iv)?;
        let mut tag = [0u8; 16];
        let ct = openssl::symm::encrypt_aead(
            openssl::symm::Cipher::aes_128_gcm(),
            &cek,
            Some(&iv),
            &[],
            data,
            &mut tag,
        )?;
        let mut blob = Vec::with_capacity(12 + ct.len() + 16);
        blob.extend_from_slice(&iv);
        blob.extend_from_slice(&ct);
        blob.extend_from_slice(&tag);
        encrypted.push(blob);
        let ed_id = new_id("ED");
        refs.push_str(&format!("<xenc:DataReference URI=\"#{ed_id}\"/>"));
        datas.push_str(&format!(
            "<xenc:EncryptedData xmlns:xenc=\"{NS_XENC}\" Id=\"{ed_id}\" MimeType=\"{}\" Type=\"{TYPE_ATT_CONTENT_ONLY}\"><xenc:EncryptionMethod Algorithm=\"{ALG_AES128_GCM}\"/><ds:KeyInfo xmlns:ds=\"{NS_DS}\"><wsse:SecurityTokenReference xmlns:wsse=\"{NS_WSSE}\" xmlns:wsse11=\"{}\" wsse11:TokenType=\"{TT_ENCRYPTED_KEY}\"><wsse:Reference URI=\"#{ek_id}\"/></wsse:SecurityTokenReference></ds:KeyInfo><xenc:CipherData><xenc:CipherReference URI=\"cid:{}\"><xenc:Transforms><ds:Transform xmlns:ds=\"{NS_DS}\" Algorithm=\"{ALG_ATT_CIPHERTEXT}\"/></xenc:Transforms></xenc:CipherReference></xenc:CipherData></xenc:EncryptedData>",
            xml::escape_attr(mime_type),
            xml::NS_WSSE11,
            xml::escape_attr(cid)
        ));
    }
    let ek = format!(
        "<xenc:EncryptedKey xmlns:xenc=\"{NS_XENC}\" Id=\"{ek_id}\"><xenc:EncryptionMethod Algorithm=\"{ALG_RSA_OAEP11}\"><ds:DigestMethod xmlns:ds=\"{NS_DS}\" Algorithm=\"{ALG_SHA256}\"/><xenc11:MGF xmlns:xenc11=\"{}\" Algorithm=\"{ALG_MGF1_SHA256}\"/></xenc:EncryptionMethod><ds:KeyInfo xmlns:ds=\"{NS_DS}\"><wsse:SecurityTokenReference xmlns:wsse=\"{NS_WSSE}\"><wsse:Reference URI=\"#{recipient_bst_id}\" ValueType=\"{VT_X509V3}\"/></wsse:SecurityTokenReference></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData><xenc:ReferenceList>{refs}</xenc:ReferenceList></xenc:EncryptedKey>",
        xml::NS_XENC11,
        b64_encode(&wrapped)
    );
    Ok((ek + &datas, encrypted))
}
