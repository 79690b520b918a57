//! `ls_seal`: sign, compress and encrypt a document for its recipients.

use crate::bytes::ls_bytes;
use crate::cert::ls_cert;
use crate::identity::ls_identity;
use crate::ptr;
use crate::result::{call, guard, ls_result};
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

const SEAL_FLAGS: u32 = LS_SEAL_NO_COMPRESS
    | LS_SEAL_FORCE_COMPRESS
    | LS_SEAL_CBC
    | LS_SEAL_PSS
    | LS_SEAL_SMIME
    | LS_SEAL_PEM
    | LS_SEAL_ENCRYPT_TO_SELF;

/// Options of `ls_seal`. Initialise with `ls_seal_options_init` (or set every byte to zero and
/// `struct_size` to `sizeof(ls_seal_options)`), then change what you need: a zero field means
/// its default. Fields may be appended in later versions; `struct_size` tells the library which
/// ones the caller knows.
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
    /// zlib level, 1 (fastest, the default) to 9; 0 means the default.
    pub compression_level: u32,
    /// The signing time to state, in Unix seconds; 0 means now.
    pub signing_time: i64,
}

impl ls_seal_options {
    const DEFAULT: ls_seal_options = ls_seal_options {
        struct_size: size_of::<ls_seal_options>() as u32,
        flags: 0,
        filename: std::ptr::null(),
        mime_type: std::ptr::null(),
        compression_level: 0,
        signing_time: 0,
    };

    /// The caller's options (NULL: defaults), read as far as its `struct_size` reaches.
    fn read(p: *const ls_seal_options) -> Result<ls_seal_options, Error> {
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
        read_fields!(flags, filename, mime_type, compression_level, signing_time);
        Ok(o)
    }

    fn to_core(self) -> Result<SealOptions, Error> {
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
        let level = match self.compression_level {
            0 => SealOptions::default().compression_level,
            l @ 1..=9 => l as u8,
            l => {
                return Err(Error::InvalidArgument(format!(
                    "opts->compression_level {l} is not between 1 and 9"
                )))
            }
        };
        Ok(SealOptions {
            filename: ptr::opt_str(self.filename, "opts->filename")?.map(str::to_string),
            mime_type: ptr::opt_str(self.mime_type, "opts->mime_type")?.map(str::to_string),
            compression: if f & LS_SEAL_NO_COMPRESS != 0 {
                Compression::Never
            } else if f & LS_SEAL_FORCE_COMPRESS != 0 {
                Compression::Always
            } else {
                Compression::Auto
            },
            compression_level: level,
            cipher: if f & LS_SEAL_CBC != 0 {
                ContentCipher::Aes256Cbc
            } else {
                ContentCipher::Aes256Gcm
            },
            signature: if f & LS_SEAL_PSS != 0 {
                SignatureScheme::RsaPss
            } else {
                SignatureScheme::Pkcs1v15
            },
            output: if f & LS_SEAL_SMIME != 0 {
                OutputFormat::Smime
            } else if f & LS_SEAL_PEM != 0 {
                OutputFormat::Pem
            } else {
                OutputFormat::Der
            },
            encrypt_to_self: f & LS_SEAL_ENCRYPT_TO_SELF != 0,
            signing_time: (self.signing_time != 0).then_some(self.signing_time),
            receipt_request: None,
        })
    }
}

/// Sets `*opts` to the defaults (DER output, AES-256-GCM, RSA PKCS#1 v1.5 signatures,
/// compression when it pays) with `struct_size = sizeof(ls_seal_options)`. NULL is a no-op.
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
