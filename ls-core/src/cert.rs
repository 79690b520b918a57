//! X.509 certificates of partners and trust anchors, and the store that finds them.
//!
//! OpenSSL parses and checks signatures; the fields CMS matches on (issuer, serial, subject key
//! identifier) and the checks we apply (validity, key usage) are read from the DER here so the
//! comparisons are byte-exact and the error messages say exactly what is wrong.

use crate::asn1::{self, tag};
use crate::error::{Error, Result};
use crate::{bytes, oid, time};
use openssl::pkey::{PKey, Public};
use openssl::x509::X509;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Key usage bits (X.509 `KeyUsage`, bit 0 first).
pub mod key_usage {
    pub const DIGITAL_SIGNATURE: u16 = 1 << 0;
    pub const NON_REPUDIATION: u16 = 1 << 1;
    pub const KEY_ENCIPHERMENT: u16 = 1 << 2;
    pub const DATA_ENCIPHERMENT: u16 = 1 << 3;
    pub const KEY_AGREEMENT: u16 = 1 << 4;
    pub const KEY_CERT_SIGN: u16 = 1 << 5;
}

struct Inner {
    x509: X509,
    /// Decoded once: OpenSSL 3 decodes the key anew on every `X509_get_pubkey`, which costs
    /// tens of microseconds (a large share of a 1 KiB open).
    public: PKey<Public>,
    der: Vec<u8>,
    /// What CMS matches on and what we check, read from the DER.
    f: Fields,
    subject: String,
    common_name: Option<String>,
}

/// A parsed X.509 certificate. Cheap to clone.
#[derive(Clone)]
pub struct Certificate(Arc<Inner>);

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.0.subject)
            .field("serial", &bytes::hex(&self.0.f.serial))
            .finish()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.0.der == other.0.der
    }
}
impl Eq for Certificate {}

impl Certificate {
    pub fn from_der(der: &[u8]) -> Result<Certificate> {
        let x509 = X509::from_der(der)
            .map_err(|e| Error::CertInvalid(format!("not a DER X.509 certificate ({e})")))?;
        Self::from_x509(x509)
    }

    /// The first certificate of a PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<Certificate> {
        let x509 = X509::from_pem(pem)
            .map_err(|e| Error::CertInvalid(format!("no PEM certificate found ({e})")))?;
        Self::from_x509(x509)
    }

    /// Every certificate in a PEM text, or the one DER certificate.
    pub fn all_from_bytes(data: &[u8]) -> Result<Vec<Certificate>> {
        if looks_like_pem(data) {
            let stack = X509::stack_from_pem(data)
                .map_err(|e| Error::CertInvalid(format!("unreadable PEM certificates ({e})")))?;
            if stack.is_empty() {
                return Err(Error::CertInvalid("no certificate in the PEM text".into()));
            }
            stack.into_iter().map(Self::from_x509).collect()
        } else {
            Ok(vec![Self::from_der(data)?])
        }
    }

    /// PEM or DER, detected.
    pub fn from_bytes(data: &[u8]) -> Result<Certificate> {
        if looks_like_pem(data) {
            Self::from_pem(data)
        } else {
            Self::from_der(data)
        }
    }

    pub fn load(path: impl AsRef<Path>) -> Result<Certificate> {
        let path = path.as_ref();
        let data = std::fs::read(path)
            .map_err(|e| Error::io(format!("cannot read certificate {}", path.display()), e))?;
        Self::from_bytes(&data).map_err(|e| match e {
            Error::CertInvalid(m) => Error::CertInvalid(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    pub fn from_x509(x509: X509) -> Result<Certificate> {
        let der = x509.to_der()?;
        let f = parse_fields(&der).map_err(|e| Error::CertInvalid(format!("{e}")))?;
        let subject = name_to_string(x509.subject_name());
        let public = x509
            .public_key()
            .map_err(|e| Error::CertInvalid(format!("{subject}: unusable public key ({e})")))?;
        let common_name = x509
            .subject_name()
            .entries_by_nid(openssl::nid::Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok());
        Ok(Certificate(Arc::new(Inner {
            x509,
            public,
            der,
            f,
            subject,
            common_name,
        })))
    }

    pub fn x509(&self) -> &X509 {
        &self.0.x509
    }
    pub fn der(&self) -> &[u8] {
        &self.0.der
    }
    pub fn to_pem(&self) -> Vec<u8> {
        crate::mime::pem_encode("CERTIFICATE", &self.0.der)
    }
    /// DER of the issuer Name, as it appears in the certificate.
    pub fn issuer_der(&self) -> &[u8] {
        &self.0.f.issuer
    }
    /// DER of the subject Name, as it appears in the certificate.
    pub fn subject_der(&self) -> &[u8] {
        &self.0.f.subject
    }
    /// The e-mail addresses of the subjectAltName extension (rfc822Name), in order.
    pub fn email_addresses(&self) -> Vec<String> {
        self.0
            .x509
            .subject_alt_names()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.email().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
    /// The serial number's magnitude, big-endian, without leading zeros.
    pub fn serial(&self) -> &[u8] {
        &self.0.f.serial
    }
    pub fn serial_hex(&self) -> String {
        bytes::hex(&self.0.f.serial)
    }
    pub fn subject_key_id(&self) -> Option<&[u8]> {
        self.0.f.ski.as_deref()
    }
    pub fn subject(&self) -> &str {
        &self.0.subject
    }
    pub fn issuer(&self) -> String {
        name_to_string(self.0.x509.issuer_name())
    }
    pub fn common_name(&self) -> Option<&str> {
        self.0.common_name.as_deref()
    }
    pub fn not_before(&self) -> i64 {
        self.0.f.not_before
    }
    pub fn not_after(&self) -> i64 {
        self.0.f.not_after
    }
    pub fn key_usage(&self) -> Option<u16> {
        self.0.f.key_usage
    }
    pub fn public_key(&self) -> Result<PKey<Public>> {
        Ok(self.0.public.clone())
    }
    /// The SHA-256 of the DER, as Layer Security prints every fingerprint: lower-case hex
    /// without separators (`ef45…`, as `sha256sum` prints it). Read one back with
    /// [`crate::bytes::parse_sha256`], which also takes OpenSSL's `EF:45:…`.
    pub fn sha256_fingerprint(&self) -> String {
        bytes::sha256_hex(&self.0.der)
    }

    /// Whether a CMS signer/recipient identifier (issuer + serial) names this certificate.
    pub fn matches_issuer_serial(&self, issuer_der: &[u8], serial: &[u8]) -> bool {
        let serial = asn1::strip_int(serial).unwrap_or(serial);
        if self.0.f.serial != serial {
            return false;
        }
        if self.0.f.issuer == issuer_der {
            return true;
        }
        // Same name, different encoding: let OpenSSL compare canonically.
        match openssl::x509::X509Name::from_der(issuer_der) {
            Ok(n) => self
                .0
                .x509
                .issuer_name()
                .try_cmp(&n)
                .map(|o| o == std::cmp::Ordering::Equal)
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    pub fn matches_ski(&self, ski: &[u8]) -> bool {
        self.0.f.ski.as_deref() == Some(ski)
    }

    /// Validity at `at` (Unix seconds).
    pub fn check_validity(&self, at: i64) -> Result<()> {
        if at < self.0.f.not_before {
            return Err(Error::CertNotYetValid(format!(
                "{} is valid from {}",
                self.subject(),
                time::iso8601(self.0.f.not_before)
            )));
        }
        if at > self.0.f.not_after {
            return Err(Error::CertExpired(format!(
                "{} expired on {}",
                self.subject(),
                time::iso8601(self.0.f.not_after)
            )));
        }
        Ok(())
    }

    /// When the certificate restricts its key usage, one of `any_of` must be allowed.
    pub fn check_key_usage(&self, any_of: u16, purpose: &str) -> Result<()> {
        match self.0.f.key_usage {
            Some(ku) if ku & any_of == 0 => Err(Error::CertKeyUsage(format!(
                "the key usage of {} does not allow {purpose}",
                self.subject()
            ))),
            _ => Ok(()),
        }
    }
}

pub(crate) fn looks_like_pem(data: &[u8]) -> bool {
    let start = data
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    data[start..].starts_with(b"-----BEGIN")
        || bytes::contains(data, b"-----BEGIN ") && data.is_ascii()
}

pub(crate) fn name_to_string(name: &openssl::x509::X509NameRef) -> String {
    let parts: Vec<String> = name
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?").to_string();
            let val = e.data().to_string().unwrap_or_else(|_| "?".into());
            format!("{key}={val}")
        })
        .collect();
    parts.join(", ")
}

struct Fields {
    issuer: Vec<u8>,
    subject: Vec<u8>,
    serial: Vec<u8>,
    ski: Option<Vec<u8>>,
    not_before: i64,
    not_after: i64,
    key_usage: Option<u16>,
}

fn parse_fields(der: &[u8]) -> Result<Fields> {
    let cert = asn1::parse_single(der)?.expect(tag::SEQUENCE, "Certificate")?;
    let mut c = cert.children()?;
    let tbs = c.expect(tag::SEQUENCE, "tbsCertificate")?;
    let mut t = tbs.children()?;
    t.optional(tag::ctx(0))?; // version
    let serial = t.expect(tag::INTEGER, "serialNumber")?;
    t.expect(tag::SEQUENCE, "signature")?;
    let issuer = t.expect(tag::SEQUENCE, "issuer")?;
    let validity = t.expect(tag::SEQUENCE, "validity")?;
    let mut v = validity.children()?;
    let nb = v.req("notBefore")?;
    let na = v.req("notAfter")?;
    let subject = t.expect(tag::SEQUENCE, "subject")?;
    t.expect(tag::SEQUENCE, "subjectPublicKeyInfo")?;
    let mut ski = None;
    let mut key_usage = None;
    while let Some(x) = t.next()? {
        if x.tag != tag::ctx(3) {
            continue;
        }
        let exts = x.children()?.expect(tag::SEQUENCE, "extensions")?;
        let mut er = exts.children()?;
        while let Some(ext) = er.next()? {
            let mut e = ext.children()?;
            let id = e.expect(tag::OID, "extnID")?;
            e.optional(tag::BOOLEAN)?;
            let val = e.expect(tag::OCTET_STRING, "extnValue")?;
            if id.content == oid::EXT_SUBJECT_KEY_ID {
                let inner = asn1::parse_single(val.content)?.expect(tag::OCTET_STRING, "SKI")?;
                ski = Some(inner.content.to_vec());
            } else if id.content == oid::EXT_KEY_USAGE {
                let bits = asn1::parse_single(val.content)?.expect(tag::BIT_STRING, "keyUsage")?;
                let b = bits.content;
                let mut ku = 0u16;
                // Bit 0 is the most significant bit of the first content byte after the count.
                for (i, byte) in b.iter().skip(1).take(2).enumerate() {
                    for bit in 0..8 {
                        if byte & (0x80 >> bit) != 0 {
                            ku |= 1 << (i * 8 + bit);
                        }
                    }
                }
                key_usage = Some(ku);
            }
        }
    }
    Ok(Fields {
        issuer: issuer.raw.to_vec(),
        subject: subject.raw.to_vec(),
        serial: asn1::strip_int(serial.content)?.to_vec(),
        ski,
        not_before: time::parse_asn1_time(nb.tag, nb.content)?,
        not_after: time::parse_asn1_time(na.tag, na.content)?,
        key_usage,
    })
}

// ---------------------------------------------------------------------------------------------

/// Partner certificates (looked up by party id, issuer/serial and subject key identifier) and
/// trust anchors (CA certificates that vouch for partners not pinned individually).
#[derive(Clone, Debug, Default)]
pub struct CertStore {
    partners: Vec<(Option<String>, Certificate)>,
    anchors: Vec<Certificate>,
}

impl CertStore {
    pub fn new() -> CertStore {
        CertStore::default()
    }

    /// Load a folder: each `*.pem`, `*.crt`, `*.cer` or `*.der` file directly in it is a partner
    /// certificate whose party id is the file name without extension; files in the subfolder
    /// `anchors/` are trust anchors.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<CertStore> {
        let dir = dir.as_ref();
        let mut store = CertStore::new();
        for (path, anchor) in list_cert_files(dir)?.into_iter().map(|p| (p, false)).chain(
            list_cert_files(&dir.join("anchors"))
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p, true)),
        ) {
            let data = std::fs::read(&path)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            let certs = Certificate::all_from_bytes(&data)
                .map_err(|e| Error::CertInvalid(format!("{}: {e}", path.display())))?;
            if anchor {
                store.anchors.extend(certs);
            } else {
                let party = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                for c in certs {
                    store.partners.push((party.clone(), c));
                }
            }
        }
        Ok(store)
    }

    pub fn add_partner(&mut self, cert: Certificate, party_id: Option<&str>) {
        self.partners.push((party_id.map(str::to_string), cert));
    }

    pub fn add_anchor(&mut self, cert: Certificate) {
        self.anchors.push(cert);
    }

    pub fn partners(&self) -> impl Iterator<Item = (Option<&str>, &Certificate)> {
        self.partners.iter().map(|(p, c)| (p.as_deref(), c))
    }

    pub fn anchors(&self) -> &[Certificate] {
        &self.anchors
    }

    /// The partner certificate for a party id: the file it was loaded from, or its subject CN.
    /// With several (a rollover), the one valid now that expires last.
    pub fn by_party(&self, party_id: &str) -> Option<&Certificate> {
        let now = time::now_unix();
        let mut found: Vec<&Certificate> = self
            .partners
            .iter()
            .filter(|(p, c)| p.as_deref() == Some(party_id) || c.common_name() == Some(party_id))
            .map(|(_, c)| c)
            .collect();
        found.sort_by_key(|c| (c.check_validity(now).is_ok(), c.not_after()));
        found.last().copied()
    }

    pub fn by_issuer_serial(&self, issuer_der: &[u8], serial: &[u8]) -> Option<&Certificate> {
        self.partners
            .iter()
            .map(|(_, c)| c)
            .find(|c| c.matches_issuer_serial(issuer_der, serial))
    }

    pub fn by_ski(&self, ski: &[u8]) -> Option<&Certificate> {
        self.partners
            .iter()
            .map(|(_, c)| c)
            .find(|c| c.matches_ski(ski))
    }

    /// Whether `cert` chains to one of the trust anchors (with `extra` as untrusted intermediates).
    /// Validity periods are checked by the caller, so a chain is judged at the time given.
    pub fn verify_chain(&self, cert: &Certificate, extra: &[Certificate], at: i64) -> Result<()> {
        use openssl::stack::Stack;
        use openssl::x509::store::X509StoreBuilder;
        use openssl::x509::verify::X509VerifyFlags;
        use openssl::x509::X509StoreContext;
        if self.anchors.is_empty() {
            return Err(Error::UnknownSigner(format!(
                "{} is not a known partner and no trust anchors are configured",
                cert.subject()
            )));
        }
        let mut b = X509StoreBuilder::new()?;
        for a in &self.anchors {
            b.add_cert(a.x509().clone())?;
        }
        b.set_flags(X509VerifyFlags::PARTIAL_CHAIN)?;
        let mut param = openssl::x509::verify::X509VerifyParam::new()?;
        param.set_time(at as _);
        b.set_param(&param)?;
        let store = b.build();
        let mut chain = Stack::new()?;
        for c in extra {
            chain.push(c.x509().clone())?;
        }
        let mut ctx = X509StoreContext::new()?;
        let (ok, err) = ctx.init(&store, cert.x509(), &chain, |c| {
            let ok = c.verify_cert()?;
            Ok((ok, c.error()))
        })?;
        if ok {
            Ok(())
        } else {
            Err(Error::CertUntrusted(format!(
                "{} does not chain to a trust anchor: {}",
                cert.subject(),
                err.error_string()
            )))
        }
    }
}

fn list_cert_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        Error::io(
            format!("cannot read certificate folder {}", dir.display()),
            e,
        )
    })?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
        let p = entry.path();
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if p.is_file() && matches!(ext.as_str(), "pem" | "crt" | "cer" | "der") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// A CMS issuer-and-serial identifier as text, for messages and `inspect`.
pub(crate) fn describe_issuer_serial(issuer_der: &[u8], serial: &[u8]) -> String {
    let issuer = openssl::x509::X509Name::from_der(issuer_der)
        .map(|n| name_to_string(&n))
        .unwrap_or_else(|_| "(unreadable issuer)".into());
    format!(
        "issuer {issuer}, serial {}",
        bytes::hex(asn1::strip_int(serial).unwrap_or(serial))
    )
}
