//! `ls_seal`: sign, compress and encrypt a document for its recipients.

use crate::bytes::ls_bytes;
use crate::cert::ls_cert;
use crate::identity::ls_identity;
use crate::ptr;
use crate::result::{call, guard, ls_result};
use ls_core::cms::{KeyTransport, Profile, SignatureFormat};
use ls_core::{Compression, ContentCipher, Error, OutputFormat, SealOptions, SignatureScheme};
use std::ffi::c_char;
use std::mem::{offset_of, size_of};

/// Never compress (default: compress unless the content is already compressed or does not
/// shrink).
pub const LS_SEAL_NO_COMPRESS: u32 = 1 << 0;
/// Always compress.
pub const LS_SEAL_FORCE_COMPRESS: u32 = 1 << 1;
/// Encrypt with EnvelopedData and AES-256-CBC, for partners that cannot read the default
/// AuthEnvelopedData with AES-256-GCM.
pub const LS_SEAL_CBC: u32 = 1 << 2;
/// Sign with RSASSA-PSS instead of RSA PKCS#1 v1.5. RSA keys only: with an EC signing key (which
/// always signs with ECDSA) `ls_seal` fails with `LS_ERR_INVALID_ARGUMENT`.
pub const LS_SEAL_PSS: u32 = 1 << 3;
/// Output a complete S/MIME entity (`application/pkcs7-mime`, base64) instead of DER.
pub const LS_SEAL_SMIME: u32 = 1 << 4;
/// Output PEM (`-----BEGIN CMS-----`) instead of DER.
pub const LS_SEAL_PEM: u32 = 1 << 5;
/// Also encrypt to the signer's own certificate, so the sender's archive copy stays readable.
pub const LS_SEAL_ENCRYPT_TO_SELF: u32 = 1 << 6;
/// Carry the signature as a `multipart/signed` entity (a detached SignedData beside the
/// content, as AS2 software reads it) instead of SignedData with the content inside.
pub const LS_SEAL_MULTIPART_SIGNED: u32 = 1 << 7;
/// RSA recipients: RSA PKCS#1 v1.5 key transport instead of RSA-OAEP-SHA-256 (for AS2-era
/// partners; an EC recipient is then `LS_ERR_INVALID_ARGUMENT`).
pub const LS_SEAL_RSA_PKCS1V15: u32 = 1 << 8;
/// RSA recipients: RSA-OAEP with SHA-1 (the default OAEP parameters) instead of SHA-256; an EC
/// recipient is then `LS_ERR_INVALID_ARGUMENT`. Excludes `LS_SEAL_RSA_PKCS1V15`.
pub const LS_SEAL_RSA_OAEP_SHA1: u32 = 1 << 9;

const SEAL_FLAGS: u32 = LS_SEAL_NO_COMPRESS
    | LS_SEAL_FORCE_COMPRESS
    | LS_SEAL_CBC
    | LS_SEAL_PSS
    | LS_SEAL_SMIME
    | LS_SEAL_PEM
    | LS_SEAL_ENCRYPT_TO_SELF
    | LS_SEAL_MULTIPART_SIGNED
    | LS_SEAL_RSA_PKCS1V15
    | LS_SEAL_RSA_OAEP_SHA1;

/// No profile: the defaults (`ls_seal`: those of `LS_PROFILE_MODERN`; `ls_open`: every legacy
/// algorithm accepted, as before profiles existed) and the flags.
pub const LS_PROFILE_NONE: u32 = 0;
/// `ls_seal`: AES-256-GCM AuthEnvelopedData, RSA-OAEP-SHA-256 or ECDH, SignedData with the
/// content inside. `ls_open`: none of the legacy algorithms or forms.
pub const LS_PROFILE_MODERN: u32 = 1;
/// `ls_seal`: compressed, then multipart/signed, then AES-256-CBC EnvelopedData with RSA PKCS#1
/// v1.5 key transport; RSA keys only (an EC identity or recipient is `LS_ERR_INVALID_ARGUMENT`).
/// `ls_open`: AES-CBC, 3DES, RSA PKCS#1 v1.5 key transport and multipart/signed accepted.
pub const LS_PROFILE_LEGACY_AS2: u32 = 2;

/// The profile named by an `LS_PROFILE_*` value of `field`.
pub(crate) fn profile(value: u32, field: &str) -> Result<Option<Profile>, Error> {
    match value {
        LS_PROFILE_NONE => Ok(None),
        LS_PROFILE_MODERN => Ok(Some(Profile::Modern)),
        LS_PROFILE_LEGACY_AS2 => Ok(Some(Profile::LegacyAs2)),
        v => Err(Error::InvalidArgument(format!(
            "{field} is {v}, not an LS_PROFILE_* value"
        ))),
    }
}

/// Options of `ls_seal`. Initialise with `ls_seal_options_init` (or set every byte to zero and
/// `struct_size` to `sizeof(ls_seal_options)`), then change what you need: a zero field means
/// its default. Fields may be appended in later versions; `struct_size` tells the library which
/// ones the caller knows.
///
/// A `profile` sets the algorithms first; the flags then add to it (e.g. `LS_PROFILE_LEGACY_AS2`
/// with `LS_SEAL_RSA_OAEP_SHA1` for a partner that reads OAEP).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug)]
pub struct ls_seal_options {
    /// `sizeof(ls_seal_options)` as the caller was compiled.
    pub struct_size: u32,
    /// `LS_SEAL_*` flags, or-ed. Unknown bits are an error.
    pub flags: u32,
    /// The document's file name, carried in its Content-Disposition (nullable).
    pub filename: *const c_char,
    /// The document's MIME type (nullable: guessed from `filename`, else
    /// `application/octet-stream`).
    pub mime_type: *const c_char,
    /// zlib level, 1 (fastest) to 9; 0 means the default, 6.
    pub compression_level: u32,
    /// The signing time to state, in Unix seconds; 0 means now.
    pub signing_time: i64,
    /// What the recipients can read: an `LS_PROFILE_*` value (0, `LS_PROFILE_NONE`: the
    /// defaults and the flags). Appended: an older caller's struct ends before it.
    pub profile: u32,
}

impl ls_seal_options {
    const DEFAULT: ls_seal_options = ls_seal_options {
        struct_size: size_of::<ls_seal_options>() as u32,
        flags: 0,
        filename: std::ptr::null(),
        mime_type: std::ptr::null(),
        compression_level: 0,
        signing_time: 0,
        profile: LS_PROFILE_NONE,
    };

    /// The caller's options (NULL: defaults), read as far as its `struct_size` reaches.
    pub(crate) fn read(p: *const ls_seal_options) -> Result<ls_seal_options, Error> {
        let mut o = Self::DEFAULT;
        if p.is_null() {
            return Ok(o);
        }
        let size = ptr::versioned_size(p, size_of::<ls_seal_options>(), "opts")?;
        macro_rules! read_fields {
            ($($f:ident),*) => {$(
                if let Some(v) = ptr::versioned_field(p, size, offset_of!(ls_seal_options, $f)) {
                    o.$f = v;
                }
            )*};
        }
        read_fields!(
            flags,
            filename,
            mime_type,
            compression_level,
            signing_time,
            profile
        );
        Ok(o)
    }

    pub(crate) fn to_core(self) -> Result<SealOptions, Error> {
        let f = self.flags;
        if f & !SEAL_FLAGS != 0 {
            return Err(Error::InvalidArgument(format!(
                "opts->flags has unknown bits 0x{:x}",
                f & !SEAL_FLAGS
            )));
        }
        let both = |a: u32, b: u32| f & a != 0 && f & b != 0;
        if both(LS_SEAL_NO_COMPRESS, LS_SEAL_FORCE_COMPRESS) {
            return Err(Error::InvalidArgument(
                "LS_SEAL_NO_COMPRESS and LS_SEAL_FORCE_COMPRESS exclude each other".into(),
            ));
        }
        if both(LS_SEAL_SMIME, LS_SEAL_PEM) {
            return Err(Error::InvalidArgument(
                "LS_SEAL_SMIME and LS_SEAL_PEM exclude each other".into(),
            ));
        }
        if both(LS_SEAL_RSA_PKCS1V15, LS_SEAL_RSA_OAEP_SHA1) {
            return Err(Error::InvalidArgument(
                "LS_SEAL_RSA_PKCS1V15 and LS_SEAL_RSA_OAEP_SHA1 exclude each other".into(),
            ));
        }
        let level = match self.compression_level {
            0 => SealOptions::default().compression_level,
            l @ 1..=9 => l as u8,
            l => {
                return Err(Error::InvalidArgument(format!(
                    "opts->compression_level {l} is not between 1 and 9"
                )))
            }
        };
        let mut o = match profile(self.profile, "opts->profile")? {
            Some(p) => p.seal_options(),
            None => SealOptions::default(),
        };
        o.filename = ptr::opt_str(self.filename, "opts->filename")?.map(str::to_string);
        o.mime_type = ptr::opt_str(self.mime_type, "opts->mime_type")?.map(str::to_string);
        if f & LS_SEAL_NO_COMPRESS != 0 {
            o.compression = Compression::Never;
        } else if f & LS_SEAL_FORCE_COMPRESS != 0 {
            o.compression = Compression::Always;
        }
        o.compression_level = level;
        if f & LS_SEAL_CBC != 0 {
            o.cipher = ContentCipher::Aes256Cbc;
        }
        if f & LS_SEAL_PSS != 0 {
            o.signature = SignatureScheme::RsaPss;
        }
        if f & LS_SEAL_MULTIPART_SIGNED != 0 {
            o.signature_format = SignatureFormat::MultipartSigned;
        }
        if f & LS_SEAL_RSA_PKCS1V15 != 0 {
            o.key_transport = KeyTransport::RsaPkcs1v15;
        } else if f & LS_SEAL_RSA_OAEP_SHA1 != 0 {
            o.key_transport = KeyTransport::RsaOaepSha1;
        }
        o.output = if f & LS_SEAL_SMIME != 0 {
            OutputFormat::Smime
        } else if f & LS_SEAL_PEM != 0 {
            OutputFormat::Pem
        } else {
            OutputFormat::Der
        };
        o.encrypt_to_self = f & LS_SEAL_ENCRYPT_TO_SELF != 0;
        o.signing_time = (self.signing_time != 0).then_some(self.signing_time);
        Ok(o)
    }
}

/// Sets `*opts` to the defaults (no profile: DER output, AES-256-GCM, RSA-OAEP-SHA-256 or ECDH,
/// RSA PKCS#1 v1.5 signatures inside SignedData, compression when it pays) with
/// `struct_size = sizeof(ls_seal_options)`. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn ls_seal_options_init(opts: *mut ls_seal_options) {
    guard("ls_seal_options_init", (), || {
        let _ = ptr::out_arg(opts, ls_seal_options::DEFAULT, "opts");
    })
}

/// Seals `doc` (`doc_len` bytes): wraps it as a MIME entity, compresses it (when it pays), signs
/// it with `signer` and encrypts it to the `n_recipients` certificates of `recipients` (an array
/// of `const ls_cert *`; NULL when `n_recipients` is 0, which needs `LS_SEAL_ENCRYPT_TO_SELF`).
/// `opts` is nullable (defaults).
///
/// `*out` is reset first, then receives the sealed message; free it with `ls_bytes_free`.
/// Errors: `LS_ERR_INVALID_ARGUMENT`, `LS_ERR_CERT_EXPIRED`, `LS_ERR_CERT_NOT_YET_VALID`,
/// `LS_ERR_CERT_KEY_USAGE`, `LS_ERR_CERT_INVALID`, `LS_ERR_UNSUPPORTED_ALGORITHM`.
#[no_mangle]
pub unsafe extern "C" fn ls_seal(
    signer: *const ls_identity,
    recipients: *const *const ls_cert,
    n_recipients: usize,
    doc: *const u8,
    doc_len: usize,
    opts: *const ls_seal_options,
    out: *mut ls_bytes,
) -> ls_result {
    call("ls_seal", || {
        let out = ptr::out_arg(out, ls_bytes::EMPTY, "out")?;
        let signer = ptr::arg_ref(signer, "signer")?;
        let certs = ptr::arg_array(recipients, n_recipients, "recipients")?
            .iter()
            .enumerate()
            .map(|(i, &c)| ptr::arg_ref(c, &format!("recipients[{i}]")).map(|c| c.cert.clone()))
            .collect::<Result<Vec<_>, Error>>()?;
        let doc = ptr::arg_bytes(doc, doc_len, "doc")?;
        let opts = ls_seal_options::read(opts)?.to_core()?;
        let sealed = ls_core::seal(doc, &signer.identity, &certs, &opts)?;
        *out = ls_bytes::from_vec(sealed);
        Ok(())
    })
}
