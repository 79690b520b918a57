//! Our own identity: a private key with its certificate and chain; new keys and certificates
//! ([`builder`]).

pub mod builder;
pub mod pkcs11;
pub mod private;

use crate::cert::{self, key_usage, Certificate};
use crate::error::{Error, Result};
use openssl::pkey::{Id, PKey, Private};
use private::{PrivateKey, SoftKey};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The key algorithm of a new identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// RSA with the given modulus size in bits (2048, 3072 or 4096).
    Rsa(u32),
    /// ECDSA / ECDH on NIST P-256.
    EcP256,
}

impl Default for KeyType {
    fn default() -> Self {
        KeyType::Rsa(3072)
    }
}

/// A private key, its certificate and the certificates that chain it to a CA. The key is in
/// memory ([`SoftKey`]) or on a token ([`pkcs11::Pkcs11Key`]); either is used through the
/// [`PrivateKey`] seam.
#[derive(Clone)]
pub struct Identity {
    key: Arc<dyn PrivateKey>,
    cert: Certificate,
    chain: Vec<Certificate>,
}

impl fmt::Debug for Identity {
    // Never print the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("cert", &self.cert)
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// A freshly generated identity with the files a user keeps and the CSR for a provider's CA.
pub struct Generated {
    pub identity: Identity,
    /// PKCS#8 PEM, encrypted with AES-256-CBC when a password was given; empty when the key is
    /// on a token. Wiped from memory when dropped.
    pub key_pem: zeroize::Zeroizing<Vec<u8>>,
    pub cert_pem: Vec<u8>,
    pub csr_pem: Vec<u8>,
}

/// The longest validity `generate` accepts (100 years).
pub const MAX_DAYS: u32 = 36_500;

fn legacy_provider() {
    // RC2-40 and 3DES PKCS#12 files (the default of older tools) need OpenSSL's legacy provider.
    // Loaded once, kept for the life of the process, with the default provider still available.
    static LEGACY: OnceLock<Option<openssl::provider::Provider>> = OnceLock::new();
    LEGACY.get_or_init(|| openssl::provider::Provider::try_load(None, "legacy", true).ok());
}

impl Identity {
    /// Build from parts, checking that the key belongs to the certificate.
    pub fn new(key: PKey<Private>, cert: Certificate, chain: Vec<Certificate>) -> Result<Identity> {
        Self::with_key(Arc::new(SoftKey::new(key)?), cert, chain)
    }

    /// Build from a key behind the seam (in memory or on a token), checking that it belongs to
    /// the certificate.
    pub fn with_key(
        key: Arc<dyn PrivateKey>,
        cert: Certificate,
        chain: Vec<Certificate>,
    ) -> Result<Identity> {
        let public = cert.public_key()?;
        if !key.public_key().public_eq(&public) {
            return Err(Error::KeyCertMismatch(format!(
                "the private key ({}) is not the key of {}",
                key.location(),
                cert.subject()
            )));
        }
        match key.public_key().id() {
            Id::RSA | Id::EC | Id::RSA_PSS => {}
            other => {
                return Err(Error::UnsupportedKey(format!(
                    "{other:?} keys are not supported (RSA and EC P-256 are)"
                )))
            }
        }
        Ok(Identity { key, cert, chain })
    }

    /// A PKCS#12 file (`.p12`/`.pfx`) with its password.
    pub fn from_pkcs12(der: &[u8], password: &str) -> Result<Identity> {
        legacy_provider();
        let p12 = openssl::pkcs12::Pkcs12::from_der(der)
            .map_err(|_| Error::Malformed("not a PKCS#12 file".into()))?;
        let parsed = p12.parse2(password).map_err(|_| {
            Error::BadPassword("the PKCS#12 password is wrong or the file is damaged".into())
        })?;
        let key = parsed
            .pkey
            .ok_or_else(|| Error::Malformed("the PKCS#12 file holds no private key".into()))?;
        let cert = parsed
            .cert
            .ok_or_else(|| Error::Malformed("the PKCS#12 file holds no certificate".into()))?;
        let chain = match parsed.ca {
            Some(s) => s
                .into_iter()
                .map(Certificate::from_x509)
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        Self::new(key, Certificate::from_x509(cert)?, chain)
    }

    /// A PEM private key (PKCS#8, encrypted PKCS#8 or PKCS#1) and PEM certificates. When
    /// `cert_pem` is `None` the certificates are read from the key file (a combined PEM).
    pub fn from_pem(
        key_pem: &[u8],
        cert_pem: Option<&[u8]>,
        password: Option<&str>,
    ) -> Result<Identity> {
        let key = parse_private_key_pem(key_pem, password)?;
        let cert_source = cert_pem.unwrap_or(key_pem);
        if cert_pem.is_none()
            && !crate::bytes::contains(cert_source, b"-----BEGIN CERTIFICATE-----")
        {
            return Err(Error::InvalidArgument(
                "the key file holds no certificate: give the certificate as well".into(),
            ));
        }
        let certs = Certificate::all_from_bytes(cert_source)?;
        // The certificate of the key may sit anywhere in the file; the rest is the chain.
        let pos = certs
            .iter()
            .position(|c| c.public_key().map(|p| key.public_eq(&p)).unwrap_or(false))
            .ok_or_else(|| {
                Error::KeyCertMismatch(format!(
                    "none of the {} certificate(s) given belongs to the private key",
                    certs.len()
                ))
            })?;
        let mut certs = certs;
        let cert = certs.remove(pos);
        Self::new(key, cert, certs)
    }

    /// Load from files: `key_path` is PKCS#12 (then `cert_path` is ignored) or PEM.
    pub fn load(
        key_path: impl AsRef<Path>,
        cert_path: Option<&Path>,
        password: Option<&str>,
    ) -> Result<Identity> {
        let key_path = key_path.as_ref();
        // The key file's bytes are wiped once parsed (OpenSSL wipes its own copy when the key
        // is freed).
        let key =
            zeroize::Zeroizing::new(std::fs::read(key_path).map_err(|e| {
                Error::io(format!("cannot read key file {}", key_path.display()), e)
            })?);
        if !cert::looks_like_pem(&key) {
            return Self::from_pkcs12(&key, password.unwrap_or(""));
        }
        let cert =
            match cert_path {
                Some(p) => Some(std::fs::read(p).map_err(|e| {
                    Error::io(format!("cannot read certificate {}", p.display()), e)
                })?),
                None => None,
            };
        Self::from_pem(&key, cert.as_deref(), password)
    }

    /// Like `load`, from memory: `key` is PKCS#12 (then `cert` is ignored) or PEM, detected.
    pub fn from_bytes(key: &[u8], cert: Option<&[u8]>, password: Option<&str>) -> Result<Identity> {
        if !cert::looks_like_pem(key) {
            return Self::from_pkcs12(key, password.unwrap_or(""));
        }
        Self::from_pem(key, cert, password)
    }

    /// The key `uri` names on a PKCS#11 token (`module` wins over the URI's `module-path`),
    /// logged in with `pin`, and its certificate: `cert_pem` (with the chain after it), else
    /// the certificate object on the token with the key's label or id.
    pub fn from_pkcs11(
        uri: &str,
        module: Option<&Path>,
        pin: Option<&str>,
        cert_pem: Option<&[u8]>,
    ) -> Result<Identity> {
        let key = pkcs11::Pkcs11Key::open(uri, module, pin)?;
        let mut certs = match cert_pem {
            Some(pem) => Certificate::all_from_bytes(pem)?,
            None => vec![key.certificate()?],
        };
        let pos = certs
            .iter()
            .position(|c| {
                c.public_key()
                    .map(|p| key.public_key().public_eq(&p))
                    .unwrap_or(false)
            })
            .ok_or_else(|| {
                Error::KeyCertMismatch(format!(
                    "none of the {} certificate(s) given belongs to the key {}",
                    certs.len(),
                    key.location()
                ))
            })?;
        let cert = certs.remove(pos);
        Self::with_key(Arc::new(key), cert, certs)
    }

    /// A new key pair with a self-signed certificate for a party (CN = `party_id`, valid
    /// `days`; [`builder::CertPurpose::Party`]) and a CSR.
    pub fn generate(
        party_id: &str,
        key_type: KeyType,
        days: u32,
        password: Option<&str>,
    ) -> Result<Generated> {
        if days > MAX_DAYS {
            return Err(Error::InvalidArgument(format!(
                "a certificate validity of {days} days is more than the {MAX_DAYS} allowed"
            )));
        }
        if party_id.is_empty() || party_id.len() > 64 || party_id.chars().any(|c| c.is_control()) {
            return Err(Error::InvalidArgument(
                "a party id must be 1 to 64 printable characters".into(),
            ));
        }
        builder::CertificateBuilder::new(party_id, builder::CertPurpose::Party)
            .key_type(key_type)
            .valid_days(days)
            .build(password)
    }

    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }
    pub fn chain(&self) -> &[Certificate] {
        &self.chain
    }
    /// The private key, through the seam.
    pub fn private_key(&self) -> &dyn PrivateKey {
        &*self.key
    }
    /// The private key, shared (for another identity with the same key, e.g. a new
    /// certificate).
    pub fn private_key_arc(&self) -> Arc<dyn PrivateKey> {
        self.key.clone()
    }
    /// The in-memory OpenSSL key, for a TLS context: a key on a token is refused with
    /// [`Error::UnsupportedKey`] (TLS keys stay in files).
    pub fn tls_key(&self) -> Result<&PKey<Private>> {
        self.key.in_memory().ok_or_else(|| {
            Error::UnsupportedKey(format!(
                "TLS needs a key in a file; this identity's key is on a token ({})",
                self.key.location()
            ))
        })
    }
    /// The private key as PKCS#8 PEM, encrypted with AES-256-CBC under `password` when one is
    /// given (as [`Identity::generate`] writes keys). Wiped from memory when dropped.
    pub fn private_key_pem(&self, password: Option<&str>) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let key = self.key.in_memory().ok_or_else(|| {
            Error::UnsupportedKey(format!(
                "the key is on a token ({}) and cannot be written to a file",
                self.key.location()
            ))
        })?;
        let pem = match password {
            Some(p) if !p.is_empty() => key.private_key_to_pem_pkcs8_passphrase(
                openssl::symm::Cipher::aes_256_cbc(),
                p.as_bytes(),
            )?,
            _ => key.private_key_to_pem_pkcs8()?,
        };
        Ok(zeroize::Zeroizing::new(pem))
    }

    /// The key's type, as [`Identity::generate`] makes it (`None` for other keys: EC curves
    /// but P-256, RSA-PSS keys).
    pub fn key_type(&self) -> Option<KeyType> {
        let key = self.key.public_key();
        match key.id() {
            Id::RSA => Some(KeyType::Rsa(key.bits())),
            Id::EC => {
                let p256 = key.ec_key().ok().and_then(|k| k.group().curve_name())
                    == Some(openssl::nid::Nid::X9_62_PRIME256V1);
                p256.then_some(KeyType::EcP256)
            }
            _ => None,
        }
    }

    pub fn is_ec(&self) -> bool {
        self.key.public_key().id() == Id::EC
    }

    /// Our certificate must allow signing before we sign with it.
    pub(crate) fn check_can_sign(&self) -> Result<()> {
        self.cert.check_key_usage(
            key_usage::DIGITAL_SIGNATURE | key_usage::NON_REPUDIATION,
            "signing",
        )
    }
}

fn parse_private_key_pem(pem: &[u8], password: Option<&str>) -> Result<PKey<Private>> {
    let encrypted = crate::bytes::contains(pem, b"ENCRYPTED");
    if encrypted {
        let pass = password.ok_or_else(|| {
            Error::BadPassword("the private key is encrypted and no password was given".into())
        })?;
        return PKey::private_key_from_pem_passphrase(pem, pass.as_bytes()).map_err(|_| {
            Error::BadPassword("the key password is wrong or the key is damaged".into())
        });
    }
    if !crate::bytes::contains(pem, b"PRIVATE KEY-----") {
        return Err(Error::Malformed("no PEM private key found".into()));
    }
    PKey::private_key_from_pem(pem)
        .map_err(|e| Error::Malformed(format!("unreadable private key ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_and_reload() {
        let g = Identity::generate("acme", KeyType::EcP256, 30, Some("pw")).unwrap();
        let id = Identity::from_pem(&g.key_pem, Some(&g.cert_pem), Some("pw")).unwrap();
        assert_eq!(id.certificate(), g.identity.certificate());
        assert_eq!(id.certificate().common_name(), Some("acme"));
        assert!(id.certificate().subject_key_id().is_some());
        let e = Identity::from_pem(&g.key_pem, Some(&g.cert_pem), Some("nope")).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::BadPassword);
        let e = Identity::from_pem(&g.key_pem, Some(&g.cert_pem), None).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::BadPassword);
        let e = Identity::generate("x", KeyType::EcP256, u32::MAX, None)
            .err()
            .unwrap();
        assert_eq!(e.code(), crate::ErrorCode::InvalidArgument);
        assert_eq!(
            Certificate::from_pem(&id.certificate().to_pem()).unwrap(),
            *id.certificate()
        );
        let other = Identity::generate("other", KeyType::EcP256, 30, None).unwrap();
        let e = Identity::from_pem(&g.key_pem, Some(&other.cert_pem), Some("pw")).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::KeyCertMismatch);
    }
}
