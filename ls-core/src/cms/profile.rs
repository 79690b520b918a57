//! Per-partner algorithm profiles: what we seal for a partner and what we accept from it.
//!
//! A profile is a name for a set of the individual settings of [`SealOptions`] and
//! [`InboundPolicy`], so that a partner record can say `profile = "legacy-as2"` and `send`
//! seals (and `poll` opens) with one call. The individual settings stay available for partners
//! between the two.

use super::{
    Compression, ContentCipher, KeyTransport, OpenOptions, SealOptions, SignatureFormat,
    SignatureScheme,
};
use crate::cert::Certificate;
use crate::error::{Error, Result};
use crate::keys::Identity;
use openssl::pkey::{Id, PKeyRef, Public};

/// What a partner's software can read, and what we accept from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Profile {
    /// S/MIME 4.0: AES-256-GCM AuthEnvelopedData, RSA-OAEP-SHA-256 or ECDH P-256 key
    /// management, SignedData with the content inside. Inbound: AES-GCM (or ChaCha20-Poly1305)
    /// only, RSA-OAEP or ECDH, opaque SignedData only.
    #[default]
    Modern,
    /// What AS2-era software reads (pyas2lib, Mendelson, Sterling…): compressed (always), then
    /// multipart/signed (RSA PKCS#1 v1.5 with SHA-256), then AES-256-CBC
    /// EnvelopedData with RSA PKCS#1 v1.5 key transport. RSA keys only, ours and the
    /// partner's. Inbound: also AES-CBC, 3DES, RSA PKCS#1 v1.5 key transport and
    /// multipart/signed.
    LegacyAs2,
}

impl Profile {
    /// Every profile, in the order documentation lists them.
    pub const ALL: [Profile; 2] = [Profile::Modern, Profile::LegacyAs2];

    /// The name used in configuration files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Modern => "modern",
            Profile::LegacyAs2 => "legacy-as2",
        }
    }

    /// The profile named `name` (`modern`, `legacy-as2`).
    pub fn from_name(name: &str) -> Result<Profile> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown profile {name:?} (expected modern or legacy-as2)"
                ))
            })
    }

    /// Sets the fields of `opts` that the profile decides: content cipher, key transport,
    /// signature scheme and format, compression, and [`SealOptions::profile`]. The rest (file
    /// name, output format, receipt request…) is left as it is; change individual settings
    /// after this call.
    pub fn apply(self, opts: &mut SealOptions) {
        let (cipher, key_transport, signature_format) = match self {
            Profile::Modern => (
                ContentCipher::Aes256Gcm,
                KeyTransport::RsaOaepSha256,
                SignatureFormat::Opaque,
            ),
            Profile::LegacyAs2 => (
                ContentCipher::Aes256Cbc,
                KeyTransport::RsaPkcs1v15,
                SignatureFormat::MultipartSigned,
            ),
        };
        opts.cipher = cipher;
        opts.key_transport = key_transport;
        opts.signature_format = signature_format;
        // Both sign with RSA PKCS#1 v1.5 (SHA-256) unless told otherwise.
        opts.signature = SignatureScheme::Pkcs1v15;
        opts.compression = match self {
            Profile::Modern => Compression::Auto,
            // Always, before signing (RFC 5402; pyas2lib reads both orders): the signed part is
            // then an application/pkcs7-mime entity in base64, which every reader digests
            // alike. pyas2lib 1.4.4 digests an application/octet-stream part decoded, so an
            // uncompressed document of that type in base64 would not verify there.
            Profile::LegacyAs2 => Compression::Always,
        };
        opts.profile = Some(self);
    }

    /// [`SealOptions`] with this profile's settings and the defaults for everything else.
    pub fn seal_options(self) -> SealOptions {
        let mut o = SealOptions::default();
        self.apply(&mut o);
        o
    }

    /// What we accept from a partner of this profile.
    pub fn inbound_policy(self) -> InboundPolicy {
        match self {
            Profile::Modern => InboundPolicy::MODERN,
            // 3DES too: it is what pyas2lib (enc_alg "tripledes_192_cbc") and many AS2
            // products send unless configured otherwise. `accept_3des = false` per partner
            // when the partner is set to AES.
            Profile::LegacyAs2 => InboundPolicy::ANY,
        }
    }

    /// Checks that the keys suit the profile: [`Profile::LegacyAs2`] needs an RSA signing
    /// identity and RSA recipient certificates. `seal` calls this when
    /// [`SealOptions::profile`] is set; callers may call it earlier (e.g. when a partner
    /// record is saved).
    pub fn check_keys(self, signer: &Identity, recipients: &[&Certificate]) -> Result<()> {
        if self != Profile::LegacyAs2 {
            return Ok(());
        }
        let key = signer.private_key().public_key();
        if key.id() != Id::RSA {
            return Err(Error::InvalidArgument(format!(
                "{} needs an RSA identity (this one is {})",
                self.name(),
                key_description(key.id(), key.bits(), ec_curve(key))
            )));
        }
        for r in recipients {
            let pk = r.public_key()?;
            if pk.id() != Id::RSA {
                return Err(Error::InvalidArgument(format!(
                    "{} needs an RSA certificate (the one of {} is {})",
                    self.name(),
                    r.subject(),
                    describe_public_key(&pk)
                )));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Profile {
    type Err = Error;
    fn from_str(s: &str) -> Result<Profile> {
        Profile::from_name(s)
    }
}

/// Which legacy algorithms and forms `open` accepts ([`OpenOptions::policy`]). What is always
/// accepted: AuthEnvelopedData (AES-GCM, ChaCha20-Poly1305), RSA-OAEP (any of its hashes) and
/// ECDH key management, SignedData with the content inside. SHA-1 signatures are a separate
/// switch ([`OpenOptions::allow_sha1`]), off in every profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InboundPolicy {
    /// EnvelopedData with AES-CBC: no integrity of its own (the signature inside is all there
    /// is, and an unsigned or multipart/signed layer around it is open to tampering until
    /// verified).
    pub accept_cbc: bool,
    /// EnvelopedData with 3DES-CBC (DES-EDE3-CBC): CBC as above, with a 64-bit block and
    /// 112-bit security.
    pub accept_3des: bool,
    /// RSA PKCS#1 v1.5 key transport (`rsaEncryption`): decrypting it is a padding oracle
    /// unless no difference is ever shown (docs/SECURITY.md).
    pub accept_rsa_pkcs1v15: bool,
    /// A `multipart/signed` entity (a detached signature over a MIME part).
    pub accept_multipart_signed: bool,
}

impl InboundPolicy {
    /// Nothing legacy: [`Profile::Modern`].
    pub const MODERN: InboundPolicy = InboundPolicy {
        accept_cbc: false,
        accept_3des: false,
        accept_rsa_pkcs1v15: false,
        accept_multipart_signed: false,
    };
    /// Everything legacy partners send: [`Profile::LegacyAs2`], and the default of
    /// [`OpenOptions`] (what `layersec open` accepts unless told otherwise).
    pub const ANY: InboundPolicy = InboundPolicy {
        accept_cbc: true,
        accept_3des: true,
        accept_rsa_pkcs1v15: true,
        accept_multipart_signed: true,
    };

    /// Sets [`OpenOptions::policy`].
    pub fn apply(self, opts: &mut OpenOptions) {
        opts.policy = self;
    }
}

impl Default for InboundPolicy {
    /// [`InboundPolicy::ANY`], as [`OpenOptions::default`] has it.
    fn default() -> Self {
        InboundPolicy::ANY
    }
}

fn ec_curve<T: openssl::pkey::HasPublic>(key: &PKeyRef<T>) -> Option<&'static str> {
    let ec = key.ec_key().ok()?;
    let nid = ec.group().curve_name()?;
    Some(match nid {
        openssl::nid::Nid::X9_62_PRIME256V1 => "P-256",
        openssl::nid::Nid::SECP384R1 => "P-384",
        openssl::nid::Nid::SECP521R1 => "P-521",
        other => other.short_name().unwrap_or("an unnamed curve"),
    })
}

fn key_description(id: Id, bits: u32, curve: Option<&str>) -> String {
    match id {
        Id::RSA | Id::RSA_PSS => format!("RSA-{bits}"),
        Id::EC => format!("EC {}", curve.unwrap_or("of an unknown curve")),
        Id::ED25519 => "Ed25519".into(),
        Id::ED448 => "Ed448".into(),
        other => format!("a {other:?} key"),
    }
}

/// "RSA-3072", "EC P-256", …: for errors that say why a key does not fit.
pub(crate) fn describe_public_key(pk: &PKeyRef<Public>) -> String {
    key_description(pk.id(), pk.bits(), ec_curve(pk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Profile::ALL {
            assert_eq!(Profile::from_name(p.name()).unwrap(), p);
            assert_eq!(p.to_string().parse::<Profile>().unwrap(), p);
        }
        let e = Profile::from_name("legacy").unwrap_err();
        assert!(e.to_string().contains("modern or legacy-as2"), "{e}");
        assert_eq!(Profile::default(), Profile::Modern);
    }

    #[test]
    fn settings_of_each_profile() {
        let m = Profile::Modern.seal_options();
        assert_eq!(m.cipher, ContentCipher::Aes256Gcm);
        assert_eq!(m.key_transport, KeyTransport::RsaOaepSha256);
        assert_eq!(m.signature_format, SignatureFormat::Opaque);
        assert_eq!(m.profile, Some(Profile::Modern));
        let l = Profile::LegacyAs2.seal_options();
        assert_eq!(l.cipher, ContentCipher::Aes256Cbc);
        assert_eq!(l.key_transport, KeyTransport::RsaPkcs1v15);
        assert_eq!(l.signature_format, SignatureFormat::MultipartSigned);
        assert_eq!(l.signature, SignatureScheme::Pkcs1v15);
        assert_eq!(l.compression, Compression::Always);
        // Modern is the default of SealOptions, apart from naming the profile.
        let d = SealOptions::default();
        assert_eq!(
            (d.cipher, d.key_transport, d.signature_format),
            (m.cipher, m.key_transport, m.signature_format)
        );
        assert_eq!(Profile::Modern.inbound_policy(), InboundPolicy::MODERN);
        assert_eq!(Profile::LegacyAs2.inbound_policy(), InboundPolicy::ANY);
        assert_eq!(OpenOptions::default().policy, InboundPolicy::ANY);
    }
}
