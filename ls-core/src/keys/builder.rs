//! New keys and certificates: the one builder for every certificate Layer Security makes — a
//! party's identity (`layersec keygen`, [`Identity::generate`]), the service's signing and TLS
//! certificates (`layersec-server init`), and the certificates tests need (TLS servers and
//! clients, CAs and what they issue, certificates valid at other times).

use super::private::{PrivateKey, SoftKey};
use super::{Generated, Identity, KeyType};
use crate::asn1::{self, tag};
use crate::cms::crypto::{Digest, SigAlg};
use crate::error::{Error, Result};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509Req, X509ReqBuilder, X509};
use std::sync::{Arc, OnceLock};

/// What a certificate is for: its basic constraints, key usage and extended key usage (all but
/// the last critical), besides a subject key identifier (and an authority key identifier when
/// a CA issues it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertPurpose {
    /// A party's identity for documents and messages: not a CA; digitalSignature,
    /// nonRepudiation, and keyEncipherment (RSA) or keyAgreement (EC); emailProtection and
    /// clientAuth.
    Party,
    /// A TLS server: not a CA; digitalSignature, and keyEncipherment for RSA; serverAuth.
    TlsServer,
    /// A TLS client: not a CA; digitalSignature; clientAuth.
    TlsClient,
    /// A certificate authority: keyCertSign and cRLSign.
    Ca,
}

/// Builds a key pair (or takes one) and a certificate for it, self-signed or issued by a CA's
/// [`Identity`]. Defaults: an RSA key of [`KeyType::default`], valid from now for 365 days, a
/// random 127-bit serial, no subject alternative names.
///
/// ```
/// use ls_core::keys::builder::{CertificateBuilder, CertPurpose};
/// use ls_core::KeyType;
/// let tls = CertificateBuilder::new("svc.example", CertPurpose::TlsServer)
///     .key_type(KeyType::EcP256)
///     .valid_days(825)
///     .subject_alt_names(&["svc.example", "127.0.0.1"])
///     .build(None)
///     .unwrap();
/// assert_eq!(tls.identity.certificate().common_name(), Some("svc.example"));
/// ```
pub struct CertificateBuilder<'a> {
    common_name: String,
    organisation: Option<String>,
    purpose: CertPurpose,
    key_type: KeyType,
    key: Option<Arc<dyn PrivateKey>>,
    /// Set when `key` was given as an OpenSSL key that could not be wrapped.
    key_error: Option<Error>,
    validity: Validity,
    names: Vec<String>,
    serial: Option<u64>,
    issuer: Option<&'a Identity>,
}

enum Validity {
    DaysFromNow(u32),
    Between(i64, i64),
}

impl<'a> CertificateBuilder<'a> {
    /// A certificate with the subject `CN=common_name` for `purpose`.
    pub fn new(common_name: &str, purpose: CertPurpose) -> CertificateBuilder<'a> {
        CertificateBuilder {
            common_name: common_name.to_string(),
            organisation: None,
            purpose,
            key_type: KeyType::default(),
            key: None,
            key_error: None,
            validity: Validity::DaysFromNow(365),
            names: Vec::new(),
            serial: None,
            issuer: None,
        }
    }

    /// An `O=` in the subject too.
    pub fn organisation(mut self, organisation: &str) -> Self {
        self.organisation = Some(organisation.to_string());
        self
    }

    /// The type of the new key (RSA 2048, 3072 or 4096; EC P-256).
    pub fn key_type(mut self, key_type: KeyType) -> Self {
        self.key_type = key_type;
        self
    }

    /// Certify this key instead of a new one.
    pub fn key(mut self, key: PKey<Private>) -> Self {
        match SoftKey::new(key) {
            Ok(k) => self.key = Some(Arc::new(k)),
            Err(e) => self.key_error = Some(e),
        }
        self
    }

    /// Certify this key behind the seam (e.g. a key on a token) instead of a new one. The
    /// certificate and the CSR are signed by it, through [`PrivateKey::sign`]; the
    /// [`Generated::key_pem`] is then empty.
    pub fn private_key(mut self, key: Arc<dyn PrivateKey>) -> Self {
        self.key = Some(key);
        self
    }

    /// Valid from now for `days` days.
    pub fn valid_days(mut self, days: u32) -> Self {
        self.validity = Validity::DaysFromNow(days);
        self
    }

    /// Valid from `not_before` to `not_after` (Unix seconds): also in the past or the future.
    pub fn validity(mut self, not_before: i64, not_after: i64) -> Self {
        self.validity = Validity::Between(not_before, not_after);
        self
    }

    /// Subject alternative names: each an IP address (v4 or v6) or else a DNS name.
    pub fn subject_alt_names<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        self.names = names.iter().map(|n| n.as_ref().to_string()).collect();
        self
    }

    /// This serial number instead of a random one.
    pub fn serial(mut self, serial: u64) -> Self {
        self.serial = Some(serial);
        self
    }

    /// Issued (signed) by this CA instead of self-signed; its certificate and chain become the
    /// new identity's chain.
    pub fn issuer(mut self, ca: &'a Identity) -> Self {
        self.issuer = Some(ca);
        self
    }

    /// The key, the certificate and a CSR for the subject. The key PEM (PKCS#8) is encrypted
    /// with AES-256-CBC when `password` is given and not empty.
    pub fn build(self, password: Option<&str>) -> Result<Generated> {
        let name = self.subject()?;
        if let Some(e) = self.key_error {
            return Err(e);
        }
        let key: Arc<dyn PrivateKey> = match self.key {
            Some(k) => k,
            None => Arc::new(SoftKey::new(new_key(self.key_type)?)?),
        };
        let public = key.public_key();
        let (not_before, not_after) = match self.validity {
            Validity::DaysFromNow(days) => {
                (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(days)?)
            }
            Validity::Between(from, to) => (Asn1Time::from_unix(from)?, Asn1Time::from_unix(to)?),
        };
        let serial = match self.serial {
            Some(n) => BigNum::from_slice(&n.to_be_bytes())?,
            None => {
                let mut n = BigNum::new()?;
                n.rand(127, MsbOption::MAYBE_ZERO, false)?;
                n
            }
        };
        let (issuer_cert, signer): (_, &dyn PrivateKey) = match self.issuer {
            Some(ca) => (Some(ca.certificate().x509()), ca.private_key()),
            None => (None, &*key),
        };

        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let serial = serial.to_asn1_integer()?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(issuer_cert.map_or(&*name, |c| c.subject_name()))?;
        b.set_pubkey(public)?;
        b.set_not_before(&not_before)?;
        b.set_not_after(&not_after)?;
        let is_rsa = public.id() == Id::RSA;
        let mut bc = BasicConstraints::new();
        bc.critical();
        let mut ku = KeyUsage::new();
        ku.critical();
        let mut eku = ExtendedKeyUsage::new();
        let eku = match self.purpose {
            CertPurpose::Party => {
                ku.digital_signature().non_repudiation();
                if is_rsa {
                    ku.key_encipherment();
                } else {
                    ku.key_agreement();
                }
                Some(eku.email_protection().client_auth().build()?)
            }
            CertPurpose::TlsServer => {
                ku.digital_signature();
                if is_rsa {
                    ku.key_encipherment();
                }
                Some(eku.server_auth().build()?)
            }
            CertPurpose::TlsClient => {
                ku.digital_signature();
                Some(eku.client_auth().build()?)
            }
            CertPurpose::Ca => {
                bc.ca();
                ku.key_cert_sign().crl_sign();
                None
            }
        };
        b.append_extension(bc.build()?)?;
        b.append_extension(ku.build()?)?;
        if let Some(eku) = eku {
            b.append_extension(eku)?;
        }
        if !self.names.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for n in &self.names {
                if n.parse::<std::net::IpAddr>().is_ok() {
                    san.ip(n);
                } else {
                    san.dns(n);
                }
            }
            let san = san.build(&b.x509v3_context(issuer_cert.map(|c| &**c), None))?;
            b.append_extension(san)?;
        }
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
        b.append_extension(ski)?;
        if let Some(ca) = issuer_cert {
            let aki = AuthorityKeyIdentifier::new()
                .keyid(false)
                .build(&b.x509v3_context(Some(ca), None))?;
            b.append_extension(aki)?;
        }
        let x509 = match signer.in_memory() {
            // OpenSSL signs RSA-PSS keys' certificates with the key's own parameters.
            Some(k) if k.id() == Id::RSA_PSS => {
                b.sign(k, MessageDigest::sha256())?;
                b.build()
            }
            _ => {
                b.sign(&*stand_in(signer.public_key())?, MessageDigest::sha256())?;
                X509::from_der(&signed_by(&b.build().to_der()?, signer)?)?
            }
        };

        let mut r = X509ReqBuilder::new()?;
        r.set_subject_name(&name)?;
        r.set_pubkey(public)?;
        let csr = match key.in_memory() {
            Some(k) if k.id() == Id::RSA_PSS => {
                r.sign(k, MessageDigest::sha256())?;
                r.build()
            }
            _ => {
                r.sign(&*stand_in(public)?, MessageDigest::sha256())?;
                X509Req::from_der(&signed_by(&r.build().to_der()?, &*key)?)?
            }
        };
        let csr_pem = csr.to_pem()?;

        let key_pem = match (key.in_memory(), password) {
            (None, _) => Vec::new(),
            (Some(k), Some(p)) if !p.is_empty() => k.private_key_to_pem_pkcs8_passphrase(
                openssl::symm::Cipher::aes_256_cbc(),
                p.as_bytes(),
            )?,
            (Some(k), _) => k.private_key_to_pem_pkcs8()?,
        };
        let cert_pem = x509.to_pem()?;
        let chain = match self.issuer {
            Some(ca) => std::iter::once(ca.certificate())
                .chain(ca.chain())
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        let identity = Identity::with_key(key, crate::Certificate::from_x509(x509)?, chain)?;
        Ok(Generated {
            identity,
            key_pem: zeroize::Zeroizing::new(key_pem),
            cert_pem,
            csr_pem,
        })
    }

    fn subject(&self) -> Result<X509Name> {
        let bad = |what: &str, v: &str| {
            Error::InvalidArgument(format!("{v:?} is not a valid {what} for a certificate"))
        };
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_nid(Nid::COMMONNAME, &self.common_name)
            .map_err(|_| bad("common name", &self.common_name))?;
        if let Some(o) = &self.organisation {
            name.append_entry_by_nid(Nid::ORGANIZATIONNAME, o)
                .map_err(|_| bad("organisation", o))?;
        }
        Ok(name.build())
    }
}

/// A key of the signer's type to let OpenSSL's builders write the TBS part (its signature
/// algorithm included); [`signed_by`] then replaces the stand-in's signature with the
/// signer's. A fresh EC key on the signer's curve; one RSA key per process.
fn stand_in(signer: &PKeyRef<Public>) -> Result<Arc<PKey<Private>>> {
    static RSA: OnceLock<Arc<PKey<Private>>> = OnceLock::new();
    match signer.id() {
        Id::RSA => {
            if let Some(k) = RSA.get() {
                return Ok(k.clone());
            }
            let k = Arc::new(PKey::from_rsa(Rsa::generate(2048)?)?);
            Ok(RSA.get_or_init(|| k).clone())
        }
        Id::EC => {
            let group = signer.ec_key()?.group().curve_name().ok_or_else(|| {
                Error::UnsupportedKey("an EC key on an unnamed curve cannot sign".into())
            })?;
            let group = EcGroup::from_curve_name(group)?;
            Ok(Arc::new(PKey::from_ec_key(EcKey::generate(&group)?)?))
        }
        other => Err(Error::UnsupportedKey(format!(
            "cannot sign certificates with a {other:?} key"
        ))),
    }
}

/// `signed` (a Certificate or CertificationRequest: the part to sign, the signature algorithm,
/// the signature) signed again, by `signer`, through the seam (SHA-256: RSA PKCS#1 v1.5 or
/// ECDSA, as the algorithm the stand-in wrote says).
fn signed_by(signed: &[u8], signer: &dyn PrivateKey) -> Result<Vec<u8>> {
    let mut r = asn1::parse_single(signed)?
        .expect(tag::SEQUENCE, "certificate")?
        .children()?;
    let tbs = r.req("to-be-signed part")?;
    let alg = r.req("signature algorithm")?;
    let sig_alg = match signer.public_key().id() {
        Id::EC => SigAlg::Ecdsa,
        _ => SigAlg::RsaPkcs1,
    };
    let sig = signer.sign(sig_alg, Digest::Sha256, tbs.raw)?;
    Ok(asn1::seq(&[tbs.raw, alg.raw, &asn1::bit_string(&sig)]))
}

/// A new key of `key_type`.
fn new_key(key_type: KeyType) -> Result<PKey<Private>> {
    Ok(match key_type {
        KeyType::Rsa(bits) => {
            if !matches!(bits, 2048 | 3072 | 4096) {
                return Err(Error::InvalidArgument(format!(
                    "RSA key size {bits} is not one of 2048, 3072, 4096"
                )));
            }
            PKey::from_rsa(Rsa::generate(bits)?)?
        }
        KeyType::EcP256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            PKey::from_ec_key(EcKey::generate(&group)?)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::key_usage;
    use crate::CertStore;

    fn extensions(g: &Generated) -> String {
        let text = g.identity.certificate().x509().to_text().unwrap();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn each_purpose_gets_its_extensions() {
        let party = CertificateBuilder::new("acme", CertPurpose::Party)
            .key_type(KeyType::EcP256)
            .build(None)
            .unwrap();
        let t = extensions(&party);
        assert!(t.contains("CA:FALSE"), "{t}");
        assert!(
            t.contains("Digital Signature, Non Repudiation, Key Agreement"),
            "{t}"
        );
        assert!(
            t.contains("E-mail Protection, TLS Web Client Authentication"),
            "{t}"
        );
        assert!(party.identity.certificate().subject_key_id().is_some());

        let tls = CertificateBuilder::new("localhost", CertPurpose::TlsServer)
            .key_type(KeyType::Rsa(2048))
            .organisation("layersec-server (self-signed)")
            .subject_alt_names(&["localhost", "127.0.0.1", "::1"])
            .build(None)
            .unwrap();
        let t = extensions(&tls);
        assert!(t.contains("Digital Signature, Key Encipherment"), "{t}");
        assert!(t.contains("TLS Web Server Authentication"), "{t}");
        assert!(
            t.contains("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"),
            "{t}"
        );
        assert!(t.contains("O=layersec-server (self-signed)"), "{t}");

        let client = CertificateBuilder::new("client", CertPurpose::TlsClient)
            .key_type(KeyType::EcP256)
            .build(None)
            .unwrap();
        let c = client.identity.certificate();
        assert_eq!(c.key_usage(), Some(key_usage::DIGITAL_SIGNATURE));
        assert!(extensions(&client).contains("TLS Web Client Authentication"));
    }

    #[test]
    fn a_ca_issues_certificates_that_chain_to_it() {
        let ca = CertificateBuilder::new("Test CA", CertPurpose::Ca)
            .key_type(KeyType::EcP256)
            .build(None)
            .unwrap();
        assert!(extensions(&ca).contains("CA:TRUE"));
        let leaf = CertificateBuilder::new("bob", CertPurpose::Party)
            .key_type(KeyType::EcP256)
            .issuer(&ca.identity)
            .build(None)
            .unwrap();
        let c = leaf.identity.certificate();
        assert_eq!(c.issuer(), ca.identity.certificate().subject());
        assert_eq!(leaf.identity.chain(), [ca.identity.certificate().clone()]);
        let mut anchors = CertStore::new();
        anchors.add_anchor(ca.identity.certificate().clone());
        anchors
            .verify_chain(c, &[], crate::time::now_unix())
            .unwrap();
        assert!(extensions(&leaf).contains("X509v3 Authority Key Identifier"));
    }

    #[test]
    fn given_key_serial_and_validity() {
        let key = new_key(KeyType::EcP256).unwrap();
        let (from, to) = (1_500_000_000, 1_600_000_000);
        let g = CertificateBuilder::new("old", CertPurpose::Party)
            .key(key.clone())
            .serial(4242)
            .validity(from, to)
            .build(Some("pw"))
            .unwrap();
        let c = g.identity.certificate();
        assert_eq!((c.not_before(), c.not_after()), (from, to));
        assert_eq!(c.serial_hex(), "1092");
        assert!(g.identity.private_key().public_key().public_eq(&key));
        assert!(String::from_utf8_lossy(&g.key_pem).contains("ENCRYPTED"));
        let e = CertificateBuilder::new("x", CertPurpose::Party)
            .key_type(KeyType::Rsa(1024))
            .build(None)
            .err()
            .unwrap();
        assert_eq!(e.code(), crate::ErrorCode::InvalidArgument);
    }
}
