//! The cryptographic operations of CMS on top of OpenSSL: content ciphers, key transport,
//! key agreement, key wrap, signatures and digests. Algorithm identifiers are parsed here, so an
//! algorithm we do not support is reported by name.

use super::KeyTransport;
use crate::asn1::{self, tag, Tlv};
use crate::error::{Error, Result};
use crate::keys::private::{PrivateKey, RsaDecryption};
use crate::oid;
use openssl::hash::{Hasher, MessageDigest};
use openssl::md::Md;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Signer, Verifier};
use openssl::symm::{Cipher, Crypter, Mode};

const CHUNK: usize = 1 << 20;

/// An AlgorithmIdentifier: the OID content and the raw parameters (if any).
#[derive(Clone, Copy, Debug)]
pub struct AlgId<'a> {
    pub oid: &'a [u8],
    pub params: Option<Tlv<'a>>,
}

impl<'a> AlgId<'a> {
    pub fn parse(t: Tlv<'a>) -> Result<AlgId<'a>> {
        let t = t.expect(tag::SEQUENCE, "AlgorithmIdentifier")?;
        let mut r = t.children()?;
        let oid = r.expect(tag::OID, "algorithm")?.content;
        let params = r.next()?.filter(|p| p.tag != tag::NULL);
        Ok(AlgId { oid, params })
    }
    pub fn name(&self) -> String {
        oid::name(self.oid)
    }
}

pub fn alg_id(oid_content: &[u8], params: Option<&[u8]>) -> Vec<u8> {
    match params {
        Some(p) => asn1::seq(&[&asn1::oid(oid_content), p]),
        None => asn1::seq(&[&asn1::oid(oid_content)]),
    }
}

// ---------------------------------------------------------------------------------------------
// Digests

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    pub fn from_oid(o: &[u8], allow_sha1: bool) -> Result<Digest> {
        Ok(match o {
            x if x == oid::SHA256 => Digest::Sha256,
            x if x == oid::SHA384 => Digest::Sha384,
            x if x == oid::SHA512 => Digest::Sha512,
            x if x == oid::SHA224 => Digest::Sha224,
            x if x == oid::SHA1 => {
                if !allow_sha1 {
                    return Err(Error::WeakAlgorithm(
                        "SHA-1 signatures are refused (allow them explicitly for old partners)"
                            .into(),
                    ));
                }
                Digest::Sha1
            }
            x if x == oid::MD5 => return Err(Error::WeakAlgorithm("MD5 is never accepted".into())),
            x => {
                return Err(Error::UnsupportedAlgorithm(format!(
                    "digest algorithm {}",
                    oid::name(x)
                )))
            }
        })
    }
    pub fn md(self) -> MessageDigest {
        match self {
            Digest::Sha1 => MessageDigest::sha1(),
            Digest::Sha224 => MessageDigest::sha224(),
            Digest::Sha256 => MessageDigest::sha256(),
            Digest::Sha384 => MessageDigest::sha384(),
            Digest::Sha512 => MessageDigest::sha512(),
        }
    }
    /// The digest's OID (content octets).
    pub fn oid(self) -> &'static [u8] {
        match self {
            Digest::Sha1 => oid::SHA1,
            Digest::Sha224 => oid::SHA224,
            Digest::Sha256 => oid::SHA256,
            Digest::Sha384 => oid::SHA384,
            Digest::Sha512 => oid::SHA512,
        }
    }
    pub fn evp(self) -> &'static openssl::md::MdRef {
        match self {
            Digest::Sha1 => Md::sha1(),
            Digest::Sha224 => Md::sha224(),
            Digest::Sha256 => Md::sha256(),
            Digest::Sha384 => Md::sha384(),
            Digest::Sha512 => Md::sha512(),
        }
    }
}

pub fn digest(d: Digest, data: &[u8]) -> Result<Vec<u8>> {
    digest_parts(d, &[data])
}

/// The digest of the concatenation of `parts`.
pub fn digest_parts(d: Digest, parts: &[&[u8]]) -> Result<Vec<u8>> {
    let mut h = Hasher::new(d.md())?;
    for part in parts {
        for c in part.chunks(CHUNK) {
            h.update(c)?;
        }
    }
    Ok(h.finish()?.to_vec())
}

/// Key material: wiped from memory when dropped.
pub type Secret = zeroize::Zeroizing<Vec<u8>>;

/// A new random key of `n` bytes.
pub fn random_key(n: usize) -> Result<Secret> {
    let mut v = Secret::new(vec![0u8; n]);
    openssl::rand::rand_bytes(&mut v)?;
    Ok(v)
}

pub fn random(n: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    openssl::rand::rand_bytes(&mut v)?;
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Content encryption

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentAlg {
    AesCbc(usize),
    AesGcm(usize),
    DesEde3Cbc,
    ChaCha20Poly1305,
}

pub struct ContentParams {
    pub alg: ContentAlg,
    pub iv: Vec<u8>,
    /// Expected tag length for AEAD ciphers.
    pub tag_len: usize,
}

impl ContentAlg {
    pub fn key_len(self) -> usize {
        match self {
            ContentAlg::AesCbc(n) | ContentAlg::AesGcm(n) => n,
            ContentAlg::DesEde3Cbc => 24,
            ContentAlg::ChaCha20Poly1305 => 32,
        }
    }
    pub(crate) fn cipher(self) -> Cipher {
        match self {
            ContentAlg::AesCbc(16) => Cipher::aes_128_cbc(),
            ContentAlg::AesCbc(24) => Cipher::aes_192_cbc(),
            ContentAlg::AesCbc(_) => Cipher::aes_256_cbc(),
            ContentAlg::AesGcm(16) => Cipher::aes_128_gcm(),
            ContentAlg::AesGcm(24) => Cipher::aes_192_gcm(),
            ContentAlg::AesGcm(_) => Cipher::aes_256_gcm(),
            ContentAlg::DesEde3Cbc => Cipher::des_ede3_cbc(),
            ContentAlg::ChaCha20Poly1305 => Cipher::chacha20_poly1305(),
        }
    }
    pub fn is_aead(self) -> bool {
        matches!(self, ContentAlg::AesGcm(_) | ContentAlg::ChaCha20Poly1305)
    }
    pub fn is_legacy(self) -> bool {
        matches!(self, ContentAlg::DesEde3Cbc)
    }
    pub fn wrap_oid(self) -> &'static [u8] {
        match self.key_len() {
            16 => oid::AES128_WRAP,
            24 => oid::AES192_WRAP,
            _ => oid::AES256_WRAP,
        }
    }
}

/// Parse a content-encryption AlgorithmIdentifier.
pub fn parse_content_alg(a: &AlgId) -> Result<ContentParams> {
    let iv_param = |min: usize| -> Result<Vec<u8>> {
        let p = a
            .params
            .ok_or_else(|| Error::Malformed(format!("{} without its IV", a.name())))?
            .expect(tag::OCTET_STRING, "IV")?;
        let iv = p.octets()?.into_owned();
        if iv.len() != min {
            return Err(Error::Malformed(format!(
                "{}: IV of {} bytes",
                a.name(),
                iv.len()
            )));
        }
        Ok(iv)
    };
    let gcm = |n: usize| -> Result<ContentParams> {
        let p = a
            .params
            .ok_or_else(|| Error::Malformed("AES-GCM without its parameters".into()))?
            .expect(tag::SEQUENCE, "GCMParameters")?;
        let mut r = p.children()?;
        let nonce = r
            .expect(tag::OCTET_STRING, "GCM nonce")?
            .octets()?
            .into_owned();
        let tag_len = match r.optional(tag::INTEGER)? {
            Some(t) => t.small_uint()? as usize,
            None => 12,
        };
        if !(12..=16).contains(&tag_len) || nonce.is_empty() || nonce.len() > 64 {
            return Err(Error::Malformed("bad AES-GCM parameters".into()));
        }
        Ok(ContentParams {
            alg: ContentAlg::AesGcm(n),
            iv: nonce,
            tag_len,
        })
    };
    match a.oid {
        o if o == oid::AES128_CBC => Ok(ContentParams {
            alg: ContentAlg::AesCbc(16),
            iv: iv_param(16)?,
            tag_len: 0,
        }),
        o if o == oid::AES192_CBC => Ok(ContentParams {
            alg: ContentAlg::AesCbc(24),
            iv: iv_param(16)?,
            tag_len: 0,
        }),
        o if o == oid::AES256_CBC => Ok(ContentParams {
            alg: ContentAlg::AesCbc(32),
            iv: iv_param(16)?,
            tag_len: 0,
        }),
        o if o == oid::DES_EDE3_CBC => Ok(ContentParams {
            alg: ContentAlg::DesEde3Cbc,
            iv: iv_param(8)?,
            tag_len: 0,
        }),
        o if o == oid::AES128_GCM => gcm(16),
        o if o == oid::AES192_GCM => gcm(24),
        o if o == oid::AES256_GCM => gcm(32),
        o if o == oid::CHACHA20_POLY1305 => Ok(ContentParams {
            alg: ContentAlg::ChaCha20Poly1305,
            iv: iv_param(12)?,
            tag_len: 16,
        }),
        o => Err(Error::UnsupportedAlgorithm(format!(
            "content encryption {}",
            oid::name(o)
        ))),
    }
}

/// The AlgorithmIdentifier we write for a content cipher.
pub fn content_alg_id(alg: ContentAlg, iv: &[u8]) -> Vec<u8> {
    match alg {
        ContentAlg::AesGcm(n) => {
            let o = match n {
                16 => oid::AES128_GCM,
                24 => oid::AES192_GCM,
                _ => oid::AES256_GCM,
            };
            alg_id(
                o,
                Some(&asn1::seq(&[&asn1::octet_string(iv), &asn1::uint(16)])),
            )
        }
        ContentAlg::AesCbc(n) => {
            let o = match n {
                16 => oid::AES128_CBC,
                24 => oid::AES192_CBC,
                _ => oid::AES256_CBC,
            };
            alg_id(o, Some(&asn1::octet_string(iv)))
        }
        ContentAlg::DesEde3Cbc => alg_id(oid::DES_EDE3_CBC, Some(&asn1::octet_string(iv))),
        ContentAlg::ChaCha20Poly1305 => {
            alg_id(oid::CHACHA20_POLY1305, Some(&asn1::octet_string(iv)))
        }
    }
}

/// Encrypt the concatenation of `data` into `out` (appended); returns the AEAD tag (empty for
/// CBC).
pub fn encrypt_content(
    alg: ContentAlg,
    key: &[u8],
    iv: &[u8],
    data: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<Vec<u8>> {
    let cipher = alg.cipher();
    let mut c = Crypter::new(cipher, Mode::Encrypt, key, Some(iv))?;
    c.pad(!alg.is_aead());
    run_crypter(&mut c, cipher, data, out)?;
    if alg.is_aead() {
        let mut tag = vec![0u8; 16];
        c.get_tag(&mut tag)?;
        Ok(tag)
    } else {
        Ok(Vec::new())
    }
}

/// Decrypt; a wrong tag or padding is `DecryptFailed`.
pub fn decrypt_content(
    p: &ContentParams,
    key: &[u8],
    data: &[u8],
    aad: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>> {
    if key.len() != p.alg.key_len() {
        return Err(Error::KeyUnwrapFailed(format!(
            "recovered a {}-byte key for a cipher that takes {}",
            key.len(),
            p.alg.key_len()
        )));
    }
    let cipher = p.alg.cipher();
    let mut c = Crypter::new(cipher, Mode::Decrypt, key, Some(&p.iv))?;
    if p.alg.is_aead() {
        if tag.len() != p.tag_len {
            return Err(Error::Malformed(format!(
                "authentication tag of {} bytes, the parameters say {}",
                tag.len(),
                p.tag_len
            )));
        }
        c.pad(false);
        if !aad.is_empty() {
            c.aad_update(aad)?;
        }
        c.set_tag(tag)?;
    } else {
        c.pad(true);
    }
    let mut out = Vec::new();
    run_crypter(&mut c, cipher, &[data], &mut out).map_err(|_| {
        Error::DecryptFailed(if p.alg.is_aead() {
            "the authentication tag does not match".into()
        } else {
            "bad padding after decryption (wrong key or altered ciphertext)".into()
        })
    })?;
    Ok(out)
}

fn run_crypter(c: &mut Crypter, cipher: Cipher, data: &[&[u8]], out: &mut Vec<u8>) -> Result<()> {
    let bs = cipher.block_size();
    let start = out.len();
    let len: usize = data.iter().map(|d| d.len()).sum();
    out.resize(start + len + bs * 2, 0);
    let mut pos = start;
    for chunk in data.iter().flat_map(|d| d.chunks(CHUNK)) {
        pos += c.update(chunk, &mut out[pos..])?;
    }
    pos += c.finalize(&mut out[pos..])?;
    out.truncate(pos);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Key transport (RSA)

pub fn oaep_params_sha256() -> Vec<u8> {
    let sha256 = alg_id(oid::SHA256, None);
    let mgf = alg_id(oid::MGF1, Some(&sha256));
    asn1::seq(&[
        &asn1::tlv(tag::ctx(0), &sha256),
        &asn1::tlv(tag::ctx(1), &mgf),
    ])
}

/// OAEP parameters: (hash, mgf1 hash, label). Defaults are SHA-1 per RFC 8017.
fn parse_oaep(params: Option<Tlv>) -> Result<(Digest, Digest, Vec<u8>)> {
    let mut hash = Digest::Sha1;
    let mut mgf = Digest::Sha1;
    let mut label = Vec::new();
    if let Some(p) = params {
        let mut r = p.expect(tag::SEQUENCE, "RSAES-OAEP-params")?.children()?;
        while let Some(f) = r.next()? {
            let inner = f.children()?.req("OAEP parameter")?;
            match f.tag {
                t if t == tag::ctx(0) => hash = Digest::from_oid(AlgId::parse(inner)?.oid, true)?,
                t if t == tag::ctx(1) => mgf = parse_mgf1(inner)?,
                t if t == tag::ctx(2) => {
                    let a = AlgId::parse(inner)?;
                    if let Some(l) = a.params {
                        label = l.octets()?.into_owned();
                    }
                }
                _ => return Err(Error::Malformed("unknown OAEP parameter".into())),
            }
        }
    }
    Ok((hash, mgf, label))
}

fn parse_mgf1(t: Tlv) -> Result<Digest> {
    let a = AlgId::parse(t)?;
    if a.oid != oid::MGF1 {
        return Err(Error::UnsupportedAlgorithm(format!(
            "mask generation {}",
            a.name()
        )));
    }
    let h = a
        .params
        .ok_or_else(|| Error::Malformed("MGF1 without its hash".into()))?;
    Digest::from_oid(AlgId::parse(h)?.oid, true)
}

/// Encrypt the content key to an RSA public key: the encrypted key and the
/// keyEncryptionAlgorithm (DER AlgorithmIdentifier) that says how.
pub fn rsa_encrypt_key(
    key: &PKeyRef<Public>,
    cek: &[u8],
    how: KeyTransport,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut ctx = PkeyCtx::new(key)?;
    ctx.encrypt_init()?;
    let alg = match how {
        KeyTransport::RsaOaepSha256 => {
            ctx.set_rsa_padding(Padding::PKCS1_OAEP)?;
            ctx.set_rsa_oaep_md(Md::sha256())?;
            ctx.set_rsa_mgf1_md(Md::sha256())?;
            alg_id(oid::RSAES_OAEP, Some(&oaep_params_sha256()))
        }
        KeyTransport::RsaOaepSha1 => {
            ctx.set_rsa_padding(Padding::PKCS1_OAEP)?;
            ctx.set_rsa_oaep_md(Md::sha1())?;
            ctx.set_rsa_mgf1_md(Md::sha1())?;
            // Every parameter at its default (SHA-1, MGF1-SHA-1, empty label): an empty
            // SEQUENCE, as RFC 4055 §4.1 asks (and OpenSSL writes).
            alg_id(oid::RSAES_OAEP, Some(&asn1::seq(&[])))
        }
        KeyTransport::RsaPkcs1v15 => {
            ctx.set_rsa_padding(Padding::PKCS1)?;
            alg_id(oid::RSA_ENCRYPTION, Some(&asn1::null()))
        }
    };
    let mut out = Vec::new();
    ctx.encrypt_to_vec(cek, &mut out)?;
    Ok((out, alg))
}

/// Unwrap a content key of `key_len` bytes sent by RSA key transport.
///
/// With RSA PKCS#1 v1.5, a padding failure (or a key of the wrong length) is not reported:
/// a random key takes its place and the content fails to decrypt like any other damaged
/// content (RFC 3218 §2.3.2), so that neither the error nor the work done after it tells an
/// attacker whether the padding was right (Bleichenbacher's attack). The random key is made
/// before the decryption, whatever its outcome.
pub fn rsa_decrypt_key(
    key: &dyn PrivateKey,
    alg: &AlgId,
    enc: &[u8],
    key_len: usize,
    accept_pkcs1v15: bool,
) -> Result<Secret> {
    if key.public_key().id() != Id::RSA {
        return Err(Error::NotARecipient(
            "RSA key transport to a non-RSA key".into(),
        ));
    }
    let padding = if alg.oid == oid::RSA_ENCRYPTION {
        if !accept_pkcs1v15 {
            return Err(Error::WeakAlgorithm(
                "RSA PKCS#1 v1.5 key transport is refused by policy".into(),
            ));
        }
        RsaDecryption::Pkcs1v15
    } else if alg.oid == oid::RSAES_OAEP {
        let (hash, mgf, label) = parse_oaep(alg.params)?;
        RsaDecryption::Oaep { hash, mgf, label }
    } else {
        return Err(Error::UnsupportedAlgorithm(format!(
            "key transport {}",
            alg.name()
        )));
    };
    // The substitute is made before the decryption, whatever its outcome.
    let substitute = match padding {
        RsaDecryption::Pkcs1v15 => Some(random_key(key_len)?),
        RsaDecryption::Oaep { .. } => None,
    };
    let out = key.decrypt(&padding, enc);
    match (out, substitute) {
        (Ok(out), Some(_)) if out.len() == key_len => Ok(out),
        (Ok(out), None) => Ok(out),
        // A key of the wrong length from good PKCS#1 v1.5 padding: as bad padding.
        (Ok(_), Some(substitute)) => Ok(substitute),
        (Err(e), substitute) => hidden_decrypt_failure(key, e, substitute),
    }
}

/// After a failed RSA decryption of a content key: the same outcome whatever the key's error
/// was (bad padding, or a token's odd answer to it: `CKR_DEVICE_ERROR`, a lost session…), so
/// that no error tells an attacker about the padding (Bleichenbacher's attack, on PKCS#1 v1.5
/// and OAEP alike): `KeyUnwrapFailed`, or with PKCS#1 v1.5 the `substitute` key, with which the
/// content fails to decrypt like any damaged content. Only two failures pass:
/// - "mechanism not supported", which the token gives when the operation starts (the
///   algorithm and its parameters, which the sender names openly, decide it; the ciphertext
///   never reached the token);
/// - a failure of [`PrivateKey::usable`], asked after the hidden failure without the
///   ciphertext: our key cannot be used now (token gone, PIN refused, key gone), for this
///   message and every other. Its outcome depends on the token's state, not on the
///   ciphertext, so it is no oracle; a token whose state a ciphertext could change (dropping
///   its sessions on bad padding) would show it to the next operation anyway.
pub fn hidden_decrypt_failure(
    key: &dyn PrivateKey,
    e: Error,
    substitute: Option<Secret>,
) -> Result<Secret> {
    if let Error::MechanismUnsupported(_) = e {
        return Err(e);
    }
    key.usable()?;
    substitute
        .ok_or_else(|| Error::KeyUnwrapFailed("RSA decryption of the content key failed".into()))
}

// ---------------------------------------------------------------------------------------------
// Key agreement (ECDH, RFC 5753) and key wrap (RFC 3394)

#[derive(Clone, Copy, Debug)]
pub struct KdfScheme {
    pub hash: Digest,
}

pub fn parse_kdf_scheme(o: &[u8]) -> Result<KdfScheme> {
    let hash = match o {
        x if x == oid::ECDH_STD_SHA256KDF || x == oid::ECDH_COFACTOR_SHA256KDF => Digest::Sha256,
        x if x == oid::ECDH_STD_SHA384KDF || x == oid::ECDH_COFACTOR_SHA384KDF => Digest::Sha384,
        x if x == oid::ECDH_STD_SHA512KDF || x == oid::ECDH_COFACTOR_SHA512KDF => Digest::Sha512,
        x if x == oid::ECDH_STD_SHA224KDF || x == oid::ECDH_COFACTOR_SHA224KDF => Digest::Sha224,
        x if x == oid::ECDH_STD_SHA1KDF || x == oid::ECDH_COFACTOR_SHA1KDF => Digest::Sha1,
        x => {
            return Err(Error::UnsupportedAlgorithm(format!(
                "key agreement {}",
                oid::name(x)
            )))
        }
    };
    Ok(KdfScheme { hash })
}

pub fn wrap_key_len(wrap_oid: &[u8]) -> Result<usize> {
    match wrap_oid {
        o if o == oid::AES128_WRAP => Ok(16),
        o if o == oid::AES192_WRAP => Ok(24),
        o if o == oid::AES256_WRAP => Ok(32),
        o => Err(Error::UnsupportedAlgorithm(format!(
            "key wrap {}",
            oid::name(o)
        ))),
    }
}

/// ANSI X9.63 KDF with the ECC-CMS-SharedInfo of RFC 5753.
pub fn x963_kdf(
    hash: Digest,
    z: &[u8],
    wrap_oid: &[u8],
    ukm: Option<&[u8]>,
    key_len: usize,
) -> Result<Secret> {
    let mut parts: Vec<Vec<u8>> = vec![alg_id(wrap_oid, None)];
    if let Some(u) = ukm {
        parts.push(asn1::tlv(tag::ctx(0), &asn1::octet_string(u)));
    }
    parts.push(asn1::tlv(
        tag::ctx(2),
        &asn1::octet_string(&((key_len * 8) as u32).to_be_bytes()),
    ));
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    let shared_info = asn1::seq(&refs);
    let mut out = Secret::default();
    let mut counter: u32 = 1;
    while out.len() < key_len {
        let mut h = Hasher::new(hash.md())?;
        h.update(z)?;
        h.update(&counter.to_be_bytes())?;
        h.update(&shared_info)?;
        out.extend_from_slice(&h.finish()?);
        counter += 1;
    }
    out.truncate(key_len);
    Ok(out)
}

pub fn aes_wrap(kek: &[u8], key: &[u8]) -> Result<Vec<u8>> {
    let k = openssl::aes::AesKey::new_encrypt(kek)
        .map_err(|_| Error::Internal("bad KEK length".into()))?;
    let mut out = vec![0u8; key.len() + 8];
    let n = openssl::aes::wrap_key(&k, None, &mut out, key)
        .map_err(|_| Error::Internal("AES key wrap failed".into()))?;
    out.truncate(n);
    Ok(out)
}

pub fn aes_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Secret> {
    if wrapped.len() < 24 || wrapped.len() % 8 != 0 {
        return Err(Error::Malformed("wrapped key of a bad length".into()));
    }
    let k = openssl::aes::AesKey::new_decrypt(kek)
        .map_err(|_| Error::KeyUnwrapFailed("key-encryption key of a bad length".into()))?;
    let mut out = Secret::new(vec![0u8; wrapped.len() - 8]);
    let n = openssl::aes::unwrap_key(&k, None, &mut out, wrapped)
        .map_err(|_| Error::KeyUnwrapFailed("AES key unwrap failed (wrong key?)".into()))?;
    out.truncate(n);
    Ok(out)
}

/// An ECDSA signature as R ‖ S (XML-DSig, PKCS#11) → DER `Ecdsa-Sig-Value`, as OpenSSL wants it;
/// `None` when `raw` cannot be one (empty or of odd length).
pub(crate) fn ecdsa_rs_to_der(raw: &[u8]) -> Result<Option<Vec<u8>>> {
    if raw.is_empty() || raw.len() % 2 != 0 {
        return Ok(None);
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let sig = openssl::ecdsa::EcdsaSig::from_private_components(
        openssl::bn::BigNum::from_slice(r)?,
        openssl::bn::BigNum::from_slice(s)?,
    )?;
    Ok(Some(sig.to_der()?))
}

pub fn ecdh(ours: &PKeyRef<Private>, peer: &PKeyRef<Public>) -> Result<Secret> {
    let mut d = openssl::derive::Deriver::new(ours)?;
    d.set_peer(peer)
        .map_err(|_| Error::Malformed("the originator's EC key is not on our curve".into()))?;
    Ok(Secret::new(d.derive_to_vec()?))
}

/// An EC public key from an uncompressed/compressed point on the group of `like`.
pub fn ec_public_from_point<T: HasPublic>(like: &PKeyRef<T>, point: &[u8]) -> Result<PKey<Public>> {
    let ec = like
        .ec_key()
        .map_err(|_| Error::NotARecipient("ECDH to a non-EC key".into()))?;
    let group = ec.group();
    let mut ctx = openssl::bn::BigNumContext::new()?;
    let p = openssl::ec::EcPoint::from_bytes(group, point, &mut ctx)
        .map_err(|_| Error::Malformed("the originator's EC point is invalid".into()))?;
    let k = openssl::ec::EcKey::from_public_key(group, &p)?;
    k.check_key()
        .map_err(|_| Error::Malformed("the originator's EC point is not on the curve".into()))?;
    Ok(PKey::from_ec_key(k)?)
}

pub fn ec_point_bytes<T: HasPublic>(key: &PKeyRef<T>) -> Result<Vec<u8>> {
    let ec = key.ec_key()?;
    let mut ctx = openssl::bn::BigNumContext::new()?;
    Ok(ec.public_key().to_bytes(
        ec.group(),
        openssl::ec::PointConversionForm::UNCOMPRESSED,
        &mut ctx,
    )?)
}

// ---------------------------------------------------------------------------------------------
// Signatures

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigAlg {
    RsaPkcs1,
    RsaPss {
        hash: Digest,
        mgf: Digest,
        salt: usize,
    },
    Ecdsa,
    Ed25519,
}

/// The signature algorithm named in a SignerInfo (the digest comes from its digestAlgorithm).
pub fn parse_sig_alg(a: &AlgId) -> Result<SigAlg> {
    match a.oid {
        o if o == oid::RSA_ENCRYPTION
            || o == oid::SHA256_WITH_RSA
            || o == oid::SHA384_WITH_RSA
            || o == oid::SHA512_WITH_RSA
            || o == oid::SHA224_WITH_RSA
            || o == oid::SHA1_WITH_RSA =>
        {
            Ok(SigAlg::RsaPkcs1)
        }
        o if o == oid::RSASSA_PSS => {
            let mut hash = Digest::Sha1;
            let mut mgf = Digest::Sha1;
            let mut salt = 20usize;
            if let Some(p) = a.params {
                let mut r = p.expect(tag::SEQUENCE, "RSASSA-PSS-params")?.children()?;
                while let Some(f) = r.next()? {
                    let inner = f.children()?.req("PSS parameter")?;
                    match f.tag {
                        t if t == tag::ctx(0) => {
                            hash = Digest::from_oid(AlgId::parse(inner)?.oid, true)?
                        }
                        t if t == tag::ctx(1) => mgf = parse_mgf1(inner)?,
                        t if t == tag::ctx(2) => salt = inner.small_uint()? as usize,
                        t if t == tag::ctx(3) => {
                            if inner.small_uint()? != 1 {
                                return Err(Error::UnsupportedAlgorithm(
                                    "PSS trailer field".into(),
                                ));
                            }
                        }
                        _ => return Err(Error::Malformed("unknown PSS parameter".into())),
                    }
                }
            }
            if salt > 512 {
                return Err(Error::Malformed("PSS salt length".into()));
            }
            Ok(SigAlg::RsaPss { hash, mgf, salt })
        }
        o if o == oid::ECDSA_SHA256
            || o == oid::ECDSA_SHA384
            || o == oid::ECDSA_SHA512
            || o == oid::ECDSA_SHA224
            || o == oid::ECDSA_SHA1
            || o == oid::EC_PUBLIC_KEY =>
        {
            Ok(SigAlg::Ecdsa)
        }
        o if o == oid::ED25519 => Ok(SigAlg::Ed25519),
        o => Err(Error::UnsupportedAlgorithm(format!(
            "signature algorithm {}",
            oid::name(o)
        ))),
    }
}

pub fn pss_sha256_alg_id() -> Vec<u8> {
    let sha256 = alg_id(oid::SHA256, None);
    let mgf = alg_id(oid::MGF1, Some(&sha256));
    let params = asn1::seq(&[
        &asn1::tlv(tag::ctx(0), &sha256),
        &asn1::tlv(tag::ctx(1), &mgf),
        &asn1::tlv(tag::ctx(2), &asn1::uint(32)),
    ]);
    alg_id(oid::RSASSA_PSS, Some(&params))
}

pub fn sign(key: &PKeyRef<Private>, alg: SigAlg, digest: Digest, data: &[u8]) -> Result<Vec<u8>> {
    let mut s = if alg == SigAlg::Ed25519 {
        Signer::new_without_digest(key)?
    } else {
        Signer::new(digest.md(), key)?
    };
    if let SigAlg::RsaPss { mgf, salt, .. } = alg {
        s.set_rsa_padding(Padding::PKCS1_PSS)?;
        s.set_rsa_mgf1_md(mgf.md())?;
        s.set_rsa_pss_saltlen(RsaPssSaltlen::custom(salt as i32))?;
    }
    Ok(s.sign_oneshot_to_vec(data)?)
}

/// Verify `sig` over `data`; false (not an error) when it does not verify.
pub fn verify(
    key: &PKeyRef<Public>,
    alg: SigAlg,
    digest: Digest,
    data: &[u8],
    sig: &[u8],
) -> Result<bool> {
    let kid = key.id();
    let key_ok = match alg {
        SigAlg::RsaPkcs1 => kid == Id::RSA,
        SigAlg::RsaPss { .. } => kid == Id::RSA || kid == Id::RSA_PSS,
        SigAlg::Ecdsa => kid == Id::EC,
        SigAlg::Ed25519 => kid == Id::ED25519,
    };
    if !key_ok {
        return Ok(false);
    }
    let mut v = match alg {
        SigAlg::Ed25519 => Verifier::new_without_digest(key)?,
        SigAlg::RsaPss { hash, .. } => Verifier::new(hash.md(), key)?,
        _ => Verifier::new(digest.md(), key)?,
    };
    if let SigAlg::RsaPss { mgf, salt, .. } = alg {
        v.set_rsa_padding(Padding::PKCS1_PSS)?;
        v.set_rsa_mgf1_md(mgf.md())?;
        v.set_rsa_pss_saltlen(RsaPssSaltlen::custom(salt as i32))?;
    }
    Ok(v.verify_oneshot(sig, data).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A key whose decryption fails as a token might: a token's error (`TokenUnavailable`,
    /// which `CKR_DEVICE_ERROR` used to become) for one ciphertext, bad padding for another.
    struct Fake {
        public: PKey<Public>,
        gone: AtomicBool,
    }

    impl PrivateKey for Fake {
        fn public_key(&self) -> &PKeyRef<Public> {
            &self.public
        }
        fn location(&self) -> String {
            "a fake token".into()
        }
        fn sign(&self, _: SigAlg, _: Digest, _: &[u8]) -> Result<Vec<u8>> {
            unreachable!()
        }
        fn decrypt(&self, _: &RsaDecryption, enc: &[u8]) -> Result<Secret> {
            match enc {
                b"device error" => Err(Error::TokenUnavailable("CKR_DEVICE_ERROR".into())),
                b"pin" => Err(Error::PinIncorrect("CKR_PIN_INCORRECT".into())),
                _ => Err(Error::KeyUnwrapFailed("bad padding".into())),
            }
        }
        fn ecdh(&self, _: &PKeyRef<Public>) -> Result<Secret> {
            unreachable!()
        }
        fn usable(&self) -> Result<()> {
            match self.gone.load(Ordering::SeqCst) {
                true => Err(Error::TokenUnavailable("the token went away".into())),
                false => Ok(()),
            }
        }
    }

    fn fake() -> Fake {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let public = PKey::public_key_from_der(&rsa.public_key_to_der().unwrap()).unwrap();
        Fake {
            public,
            gone: AtomicBool::new(false),
        }
    }

    #[test]
    fn a_tokens_error_during_decryption_looks_like_bad_padding() {
        let key = fake();
        let v15 = AlgId {
            oid: oid::RSA_ENCRYPTION,
            params: None,
        };
        // PKCS#1 v1.5: the substitute key for each, whatever the error was.
        for enc in [&b"device error"[..], b"pin", b"bad padding"] {
            let k = rsa_decrypt_key(&key, &v15, enc, 32, true).unwrap();
            assert_eq!(k.len(), 32);
        }
        // OAEP: the same error for each.
        let oaep_params = asn1::seq(&[]);
        let oaep = AlgId {
            oid: oid::RSAES_OAEP,
            params: Some(asn1::parse_single(&oaep_params).unwrap()),
        };
        let mut seen = std::collections::BTreeSet::new();
        for enc in [&b"device error"[..], b"pin", b"bad padding"] {
            let e = rsa_decrypt_key(&key, &oaep, enc, 32, true).unwrap_err();
            assert!(matches!(e, Error::KeyUnwrapFailed(_)), "{e}");
            seen.insert(e.to_string());
        }
        assert_eq!(seen.len(), 1, "one message for all: {seen:?}");
        // A key that cannot be used at all (asked without the ciphertext) is our failure,
        // for every ciphertext alike.
        key.gone.store(true, Ordering::SeqCst);
        for alg in [&v15, &oaep] {
            for enc in [&b"device error"[..], b"bad padding"] {
                let e = rsa_decrypt_key(&key, alg, enc, 32, true).unwrap_err();
                assert!(matches!(e, Error::TokenUnavailable(_)), "{e}");
            }
        }
    }
}
