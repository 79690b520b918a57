//! The seam between what a private key does and where it lives: [`PrivateKey`], implemented by
//! [`SoftKey`] (an OpenSSL key in memory, from a PEM or PKCS#12 file) and by
//! [`super::pkcs11::Pkcs11Key`] (a key on a token that never leaves it).
//!
//! Every use of our private key goes through this trait — CMS signing and opening, receipts,
//! signed statements, WS-Security signing and decryption, JWS, certificates and CSRs — except
//! TLS, whose keys stay in files ([`PrivateKey::in_memory`]).

use crate::cms::crypto;
pub use crate::cms::crypto::{Digest, Secret, SigAlg};
use crate::error::{Error, Result};
use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;

/// How an RSA-encrypted content key is padded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RsaDecryption {
    /// RSA PKCS#1 v1.5 (legacy key transport).
    Pkcs1v15,
    /// RSAES-OAEP with its hash, MGF1 hash and label (usually empty).
    Oaep {
        hash: Digest,
        mgf: Digest,
        label: Vec<u8>,
    },
}

/// What a private key does. The key itself is never handed out (but see
/// [`PrivateKey::in_memory`]).
pub trait PrivateKey: Send + Sync {
    /// The public half: the key's type, size and curve are read from it.
    fn public_key(&self) -> &PKeyRef<Public>;

    /// Where the key lives, for messages: "in memory" or its `pkcs11:` URI (never a PIN).
    fn location(&self) -> String;

    /// A signature over `data` hashed with `digest` (the hash is made here; a token sees
    /// the digest only): RSA PKCS#1 v1.5, RSA-PSS, or ECDSA (DER `Ecdsa-Sig-Value`).
    fn sign(&self, alg: SigAlg, digest: Digest, data: &[u8]) -> Result<Vec<u8>>;

    /// Decrypt `enc`, an RSA-encrypted content key. A failed decryption is
    /// [`Error::KeyUnwrapFailed`]. Callers hide every failure of this call (see
    /// `cms::crypto::rsa_decrypt_key`) and ask [`PrivateKey::usable`] afterwards.
    fn decrypt(&self, padding: &RsaDecryption, enc: &[u8]) -> Result<Secret>;

    /// Whether the key can be used now, asked without any ciphertext: called after a failed
    /// [`PrivateKey::decrypt`], whose own error is hidden (it may depend on the ciphertext's
    /// padding), to tell a failure of our key (token gone, PIN refused, key gone) from a bad
    /// message. Its outcome depends on the key's state only, never on the ciphertext. A key
    /// in memory is always usable.
    fn usable(&self) -> Result<()> {
        Ok(())
    }

    /// ECDH with `peer` (a public key on our curve): the raw shared secret (the x coordinate),
    /// which the caller feeds to its own KDF.
    fn ecdh(&self, peer: &PKeyRef<Public>) -> Result<Secret>;

    /// The OpenSSL key, when the key is in memory: for TLS contexts and for writing the key to
    /// a file, nothing else. `None` for a key on a token.
    fn in_memory(&self) -> Option<&PKey<Private>> {
        None
    }
}

impl std::fmt::Debug for dyn PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.location())
    }
}

/// A private key in memory (OpenSSL), as read from PEM or PKCS#12 or generated.
pub struct SoftKey {
    key: PKey<Private>,
    public: PKey<Public>,
}

impl SoftKey {
    pub fn new(key: PKey<Private>) -> Result<SoftKey> {
        let public = PKey::public_key_from_der(&key.public_key_to_der()?)?;
        Ok(SoftKey { key, public })
    }
}

impl PrivateKey for SoftKey {
    fn public_key(&self) -> &PKeyRef<Public> {
        &self.public
    }

    fn location(&self) -> String {
        "in memory".into()
    }

    fn sign(&self, alg: SigAlg, digest: Digest, data: &[u8]) -> Result<Vec<u8>> {
        crypto::sign(&self.key, alg, digest, data)
    }

    fn decrypt(&self, padding: &RsaDecryption, enc: &[u8]) -> Result<Secret> {
        if self.key.id() != Id::RSA {
            return Err(Error::NotARecipient(
                "RSA key transport to a non-RSA key".into(),
            ));
        }
        let mut ctx = PkeyCtx::new(&self.key)?;
        ctx.decrypt_init()?;
        match padding {
            RsaDecryption::Pkcs1v15 => ctx.set_rsa_padding(Padding::PKCS1)?,
            RsaDecryption::Oaep { hash, mgf, label } => {
                ctx.set_rsa_padding(Padding::PKCS1_OAEP)?;
                ctx.set_rsa_oaep_md(hash.evp())?;
                ctx.set_rsa_mgf1_md(mgf.evp())?;
                if !label.is_empty() {
                    ctx.set_rsa_oaep_label(label)?;
                }
            }
        }
        let mut out = Secret::default();
        ctx.decrypt_to_vec(enc, &mut out).map_err(|_| {
            Error::KeyUnwrapFailed("RSA decryption of the content key failed (wrong key?)".into())
        })?;
        Ok(out)
    }

    fn ecdh(&self, peer: &PKeyRef<Public>) -> Result<Secret> {
        crypto::ecdh(&self.key, peer)
    }

    fn in_memory(&self) -> Option<&PKey<Private>> {
        Some(&self.key)
    }
}
