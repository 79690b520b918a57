//! The JWS profile of enrolment (RFC 7515, flattened JSON serialisation): `ES256`, `ES384`,
//! `ES512` with EC keys of the matching curve, `PS256` and `RS256` with RSA keys; a protected
//! header of exactly `alg`, `typ` and `x5c`; no unprotected header. The rollover request
//! ([`crate::rollover`]) uses the general JSON serialisation with two signatures of that form.

use super::{json_error, MAX_CHAIN};
use crate::bytes;
use crate::cert::Certificate;
use crate::cms::crypto::{self, Digest, SigAlg};
use crate::error::{Error, Result};
use crate::keys::Identity;
use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Public};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Jws {
    protected: String,
    payload: String,
    signature: String,
}

/// The general JSON serialisation (RFC 7515 §7.2.1), each signature with a protected header
/// and no unprotected one.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneralJws {
    payload: String,
    signatures: Vec<GeneralSignature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneralSignature {
    protected: String,
    signature: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    typ: String,
    x5c: Vec<String>,
}

/// The signature algorithms of the profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Alg {
    Es256,
    Es384,
    Es512,
    Ps256,
    Rs256,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Es512 => "ES512",
            Alg::Ps256 => "PS256",
            Alg::Rs256 => "RS256",
        }
    }

    fn parse(s: &str) -> Option<Alg> {
        [Alg::Es256, Alg::Es384, Alg::Es512, Alg::Ps256, Alg::Rs256]
            .into_iter()
            .find(|a| a.name() == s)
    }

    fn digest(self) -> Digest {
        match self {
            Alg::Es384 => Digest::Sha384,
            Alg::Es512 => Digest::Sha512,
            _ => Digest::Sha256,
        }
    }

    fn sig_alg(self) -> SigAlg {
        match self {
            Alg::Es256 | Alg::Es384 | Alg::Es512 => SigAlg::Ecdsa,
            Alg::Ps256 => SigAlg::RsaPss {
                hash: Digest::Sha256,
                mgf: Digest::Sha256,
                salt: 32,
            },
            Alg::Rs256 => SigAlg::RsaPkcs1,
        }
    }

    /// The curve an ES algorithm needs, and its field size in bytes.
    fn curve(self) -> Option<(Nid, usize)> {
        match self {
            Alg::Es256 => Some((Nid::X9_62_PRIME256V1, 32)),
            Alg::Es384 => Some((Nid::SECP384R1, 48)),
            Alg::Es512 => Some((Nid::SECP521R1, 66)),
            _ => None,
        }
    }

    /// What we sign with: ES for EC keys (by curve), PS256 for RSA.
    pub(super) fn for_key<T: openssl::pkey::HasPublic>(key: &PKeyRef<T>) -> Result<Alg> {
        match key.id() {
            Id::RSA => Ok(Alg::Ps256),
            Id::EC => {
                let nid = key.ec_key()?.group().curve_name();
                [Alg::Es256, Alg::Es384, Alg::Es512]
                    .into_iter()
                    .find(|a| a.curve().map(|c| Some(c.0)) == Some(nid))
                    .ok_or_else(|| {
                        Error::UnsupportedKey("EC keys on P-256, P-384 or P-521 only".into())
                    })
            }
            other => Err(Error::UnsupportedKey(format!(
                "{other:?} keys cannot sign an enrolment (RSA and EC can)"
            ))),
        }
    }
}

/// A key the service registers: RSA of 2048 to 16384 bits, or EC on P-256, P-384 or P-521.
pub fn check_key(cert: &Certificate) -> Result<()> {
    let key = cert.public_key()?;
    match key.id() {
        Id::RSA => {
            let bits = key.bits();
            if bits < 2048 {
                return Err(Error::WeakAlgorithm(format!(
                    "an RSA key of {bits} bits is too weak: 2048 bits at least"
                )));
            }
            if bits > 16384 {
                return Err(Error::UnsupportedKey(format!(
                    "an RSA key of {bits} bits: 16384 bits at most"
                )));
            }
            Ok(())
        }
        Id::EC => Alg::for_key(&key).map(|_| ()),
        other => Err(Error::UnsupportedKey(format!(
            "{other:?} keys are not registered (RSA and EC P-256/P-384/P-521 are)"
        ))),
    }
}

/// Sign `payload` as a flattened JWS of type `typ` with `signer`, its certificate and chain in
/// `x5c`.
pub(crate) fn sign_jws(signer: &Identity, typ: &str, payload: &[u8]) -> Result<Vec<u8>> {
    let payload = bytes::base64url_encode(payload);
    let (protected, signature) = sign_part(signer, typ, &payload)?;
    serde_json::to_vec(&Jws {
        protected,
        payload,
        signature,
    })
    .map_err(|e| Error::Internal(format!("JWS: {e}")))
}

/// Sign `payload` as a JWS in the general JSON serialisation (RFC 7515 §7.2.1) of type `typ`,
/// once by each of `signers` in this order, each signature with its own protected header
/// (`alg`, `typ`, `x5c` of that signer).
pub(crate) fn sign_jws_general(
    signers: &[&Identity],
    typ: &str,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let payload = bytes::base64url_encode(payload);
    let mut signatures = Vec::with_capacity(signers.len());
    for s in signers {
        let (protected, signature) = sign_part(s, typ, &payload)?;
        signatures.push(GeneralSignature {
            protected,
            signature,
        });
    }
    serde_json::to_vec(&GeneralJws {
        payload,
        signatures,
    })
    .map_err(|e| Error::Internal(format!("JWS: {e}")))
}

/// One signature over `payload` (base64url): the protected header and the signature, both
/// base64url.
fn sign_part(signer: &Identity, typ: &str, payload: &str) -> Result<(String, String)> {
    let key = signer.private_key();
    let alg = Alg::for_key(key.public_key())?;
    let x5c = std::iter::once(signer.certificate())
        .chain(signer.chain().iter().take(MAX_CHAIN - 1))
        .map(|c| bytes::base64_encode(c.der()))
        .collect();
    let header = serde_json::to_vec(&Header {
        alg: alg.name().into(),
        typ: typ.into(),
        x5c,
    })
    .map_err(|e| Error::Internal(format!("JWS header: {e}")))?;
    let protected = bytes::base64url_encode(&header);
    let input = format!("{protected}.{payload}");
    let sig = key.sign(alg.sig_alg(), alg.digest(), input.as_bytes())?;
    let sig = match alg.curve() {
        // JWS wants R ‖ S, each the curve's size (RFC 7518 §3.4), not DER.
        Some((_, n)) => {
            let s = EcdsaSig::from_der(&sig)?;
            let mut raw = s.r().to_vec_padded(n as i32)?;
            raw.extend_from_slice(&s.s().to_vec_padded(n as i32)?);
            raw
        }
        None => sig,
    };
    Ok((protected, bytes::base64url_encode(&sig)))
}

/// A JWS whose signature verified: its signer (`x5c[0]`), the rest of `x5c`, the payload.
pub(crate) struct Verified {
    pub signer: Certificate,
    pub chain: Vec<Certificate>,
    pub payload: Vec<u8>,
}

/// Why a JWS does not verify: malformed (the form) or not proven (the signature).
pub(crate) enum JwsFailure {
    Malformed(String),
    Signature(Error),
}

/// Read a flattened JWS of type `typ` and check its signature with the key of its `x5c[0]`.
pub(crate) fn verify_jws(body: &[u8], typ: &str) -> std::result::Result<Verified, JwsFailure> {
    let m = |s: String| JwsFailure::Malformed(s);
    let jws: Jws =
        serde_json::from_slice(body).map_err(|e| m(format!("not a JWS: {}", json_error(&e))))?;
    let (signer, chain) = verify_part(&jws.protected, &jws.payload, &jws.signature, typ)?;
    let payload =
        bytes::base64url_decode(&jws.payload).ok_or_else(|| m("payload: not base64url".into()))?;
    Ok(Verified {
        signer,
        chain,
        payload,
    })
}

/// A JWS in the general JSON serialisation whose signatures all verified.
pub(crate) struct VerifiedGeneral {
    /// Each signature's signer (its `x5c[0]`) and the rest of its `x5c`, in order.
    pub signers: Vec<(Certificate, Vec<Certificate>)>,
    pub payload: Vec<u8>,
}

/// Read a JWS in the general JSON serialisation of type `typ` with exactly `count` signatures,
/// and check each with the key of its own `x5c[0]`. Every signature must verify (RFC 7515
/// leaves the policy to the application: ours is "all of them").
pub(crate) fn verify_jws_general(
    body: &[u8],
    typ: &str,
    count: usize,
) -> std::result::Result<VerifiedGeneral, JwsFailure> {
    let m = |s: String| JwsFailure::Malformed(s);
    let jws: GeneralJws =
        serde_json::from_slice(body).map_err(|e| m(format!("not a JWS: {}", json_error(&e))))?;
    if jws.signatures.len() != count {
        return Err(m(format!(
            "signatures: {count} expected, the JWS has {}",
            jws.signatures.len()
        )));
    }
    let mut signers = Vec::with_capacity(count);
    for (i, s) in jws.signatures.iter().enumerate() {
        let v =
            verify_part(&s.protected, &jws.payload, &s.signature, typ).map_err(|f| match f {
                JwsFailure::Malformed(e) => JwsFailure::Malformed(format!("signatures[{i}]: {e}")),
                other => other,
            })?;
        signers.push(v);
    }
    let payload =
        bytes::base64url_decode(&jws.payload).ok_or_else(|| m("payload: not base64url".into()))?;
    Ok(VerifiedGeneral { signers, payload })
}

/// Check one signature: its protected header (of type `typ`), the certificates of its `x5c`,
/// the signature over `protected.payload` with the key of `x5c[0]`.
fn verify_part(
    protected: &str,
    payload: &str,
    signature: &str,
    typ: &str,
) -> std::result::Result<(Certificate, Vec<Certificate>), JwsFailure> {
    let m = |s: String| JwsFailure::Malformed(s);
    let header =
        bytes::base64url_decode(protected).ok_or_else(|| m("protected: not base64url".into()))?;
    let header: Header =
        serde_json::from_slice(&header).map_err(|e| m(format!("the protected header: {e}")))?;
    if header.typ != typ {
        return Err(m(format!("typ {:?}: expected {typ:?}", header.typ)));
    }
    if header.x5c.is_empty() || header.x5c.len() > MAX_CHAIN {
        return Err(m(format!("x5c: 1 to {MAX_CHAIN} certificates")));
    }
    let mut certs = Vec::with_capacity(header.x5c.len());
    for (i, c) in header.x5c.iter().enumerate() {
        let der = bytes::base64_decode_strict(c)
            .filter(|d| d.len() <= 16 * 1024)
            .ok_or_else(|| m(format!("x5c[{i}]: not base64 DER of at most 16 KiB")))?;
        certs.push(
            Certificate::from_der(&der)
                .map_err(|e| m(format!("x5c[{i}]: not a certificate: {e}")))?,
        );
    }
    if bytes::base64url_decode(payload).is_none() {
        return Err(m("payload: not base64url".into()));
    }
    let sig =
        bytes::base64url_decode(signature).ok_or_else(|| m("signature: not base64url".into()))?;
    let signer = certs.remove(0);
    let alg = Alg::parse(&header.alg).ok_or_else(|| {
        JwsFailure::Signature(Error::UnsupportedAlgorithm(format!(
            "alg {:?}: ES256, ES384, ES512, PS256 or RS256",
            header.alg
        )))
    })?;
    let key = signer.public_key().map_err(JwsFailure::Signature)?;
    check_alg_key(alg, &key).map_err(JwsFailure::Signature)?;
    let input = format!("{protected}.{payload}");
    let sig = match alg.curve() {
        Some((_, n)) => {
            if sig.len() != 2 * n {
                return Err(JwsFailure::Signature(Error::BadSignature(format!(
                    "{} signatures are {} bytes",
                    alg.name(),
                    2 * n
                ))));
            }
            BigNum::from_slice(&sig[..n])
                .and_then(|r| Ok((r, BigNum::from_slice(&sig[n..])?)))
                .and_then(|(r, s)| EcdsaSig::from_private_components(r, s))
                .and_then(|s| s.to_der())
                .map_err(|_| {
                    JwsFailure::Signature(Error::BadSignature("not an ECDSA signature".into()))
                })?
        }
        None => sig,
    };
    let ok = crypto::verify(&key, alg.sig_alg(), alg.digest(), input.as_bytes(), &sig)
        .map_err(JwsFailure::Signature)?;
    if !ok {
        return Err(JwsFailure::Signature(Error::BadSignature(format!(
            "the {} signature does not verify with the key of {}",
            alg.name(),
            signer.subject()
        ))));
    }
    Ok((signer, certs))
}

/// The algorithm must fit the key: ES256 a P-256 key, …, PS256 and RS256 an RSA key.
fn check_alg_key(alg: Alg, key: &PKey<Public>) -> Result<()> {
    let fits = match (alg.curve(), key.id()) {
        (Some((nid, _)), Id::EC) => key.ec_key()?.group().curve_name() == Some(nid),
        (None, Id::RSA) => true,
        _ => false,
    };
    if !fits {
        return Err(Error::BadSignature(format!(
            "alg {} does not fit the certificate's key",
            alg.name()
        )));
    }
    Ok(())
}

/// A JSON answer of the service's (`typ`), as its client checks it: at most `max` bytes, a JWS
/// that verifies, signed by `service_certificate` itself (its `x5c[0]` must be that very
/// certificate, never one it merely chains to), and a payload of type `T`. `what` names the
/// answer in errors ("the enrolment answer").
pub(crate) fn verify_service_answer<T: serde::de::DeserializeOwned>(
    body: &[u8],
    typ: &str,
    max: u64,
    service_certificate: &Certificate,
    what: &str,
) -> Result<T> {
    if body.len() as u64 > max {
        return Err(Error::TooLarge(format!(
            "{what} is larger than {max} bytes"
        )));
    }
    let v = verify_jws(body, typ).map_err(|f| match f {
        JwsFailure::Malformed(m) => Error::BadResponse(format!("{what} is not valid: {m}")),
        JwsFailure::Signature(e) => e,
    })?;
    if v.signer != *service_certificate {
        return Err(Error::SignerMismatch(format!(
            "{what} is signed by {} ({}), not by the service certificate {}",
            v.signer.subject(),
            v.signer.sha256_fingerprint(),
            service_certificate.sha256_fingerprint()
        )));
    }
    serde_json::from_slice(&v.payload)
        .map_err(|e| Error::BadResponse(format!("{what} is not valid: {e}")))
}
