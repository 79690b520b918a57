//! `ls_open`: undo every layer of a sealed message and prove who sent it; `ls_inspect`.

use crate::bytes::ls_bytes;
use crate::cert::{ls_cert, ls_certstore};
use crate::identity::ls_identity;
use crate::ptr;
use crate::result::{call, cstring_lossy, guard, ls_result};
use ls_core::{Error, Kek, OpenOptions, Opened};
use std::ffi::{c_char, c_int, CString};
use std::mem::{offset_of, size_of};

/// Accept a document that carries no signature (then `ls_opened_signer` returns NULL). Such input
/// may also be unencrypted (plain MIME or CMS data): check `ls_opened_was_encrypted` if it matters.
pub const LS_OPEN_ALLOW_UNSIGNED: u32 = 1 << 0;
/// Accept a signer certificate outside its validity period.
pub const LS_OPEN_ALLOW_EXPIRED: u32 = 1 << 1;
/// Refuse 3DES and RSA PKCS#1 v1.5 key transport (accepted by default from legacy partners).
pub const LS_OPEN_REJECT_LEGACY: u32 = 1 << 2;
/// Accept SHA-1 signatures (refused by default).
pub const LS_OPEN_ALLOW_SHA1: u32 = 1 << 3;
/// Refuse 3DES content encryption (accepted by default and by `LS_PROFILE_LEGACY_AS2`).
pub const LS_OPEN_REJECT_3DES: u32 = 1 << 4;

const OPEN_FLAGS: u32 = LS_OPEN_ALLOW_UNSIGNED
    | LS_OPEN_ALLOW_EXPIRED
    | LS_OPEN_REJECT_LEGACY
    | LS_OPEN_ALLOW_SHA1
    | LS_OPEN_REJECT_3DES;

/// Options of `ls_open`. Initialise with `ls_open_options_init` (or set every byte to zero and
/// `struct_size` to `sizeof(ls_open_options)`), then set what you need: a zero field means its
/// default. Fields may be appended in later versions; `struct_size` tells the library which ones
/// the caller knows.
///
/// Whom to expect: `sender` (the one partner who must have signed), or `partners` (any partner
/// of the store, or a certificate chaining to its trust anchors). Without either, a signed
/// message fails with `LS_ERR_INVALID_ARGUMENT`. The pointers are borrowed for the call only.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug)]
pub struct ls_open_options {
    /// `sizeof(ls_open_options)` as the caller was compiled.
    pub struct_size: u32,
    /// `LS_OPEN_*` flags, or-ed. Unknown bits are an error.
    pub flags: u32,
    /// Limit on the opened document's size in bytes (against decompression bombs); 0 means the
    /// default, 1 GiB.
    pub max_output: u64,
    /// The partner who must have signed (nullable). A valid signature by anyone else fails with
    /// `LS_ERR_SIGNER_MISMATCH`.
    pub sender: *const ls_cert,
    /// Partners and trust anchors to verify the signer against (nullable).
    pub partners: *const ls_certstore,
    /// A pre-shared key-encryption key for KEKRecipientInfo: its identifier (`kek_id_len`
    /// bytes, nullable)…
    pub kek_id: *const u8,
    pub kek_id_len: usize,
    /// …and the AES key itself (`kek_len` bytes, nullable). Both or neither.
    pub kek: *const u8,
    pub kek_len: usize,
    /// The legacy algorithms and forms accepted: those of an `LS_PROFILE_*` value (0,
    /// `LS_PROFILE_NONE`: all of them, as before profiles existed), less what the
    /// `LS_OPEN_REJECT_*` flags refuse. Older callers' structs end before it.
    pub profile: u32,
}

impl ls_open_options {
    const DEFAULT: ls_open_options = ls_open_options {
        struct_size: size_of::<ls_open_options>() as u32,
        flags: 0,
        max_output: 0,
        sender: std::ptr::null(),
        partners: std::ptr::null(),
        kek_id: std::ptr::null(),
        kek_id_len: 0,
        kek: std::ptr::null(),
        kek_len: 0,
        profile: crate::seal::LS_PROFILE_NONE,
    };

    /// The caller's options (NULL: defaults), read as far as its `struct_size` reaches.
    fn read(p: *const ls_open_options) -> Result<ls_open_options, Error> {
        let mut o = Self::DEFAULT;
        if p.is_null() {
            return Ok(o);
        }
        let size = ptr::versioned_size(p, size_of::<ls_open_options>(), "opts")?;
        macro_rules! read_fields {
            ($($f:ident),*) => {$(
                if let Some(v) = ptr::versioned_field(p, size, offset_of!(ls_open_options, $f)) {
                    o.$f = v;
                }
            )*};
        }
        read_fields!(
            flags, max_output, sender, partners, kek_id, kek_id_len, kek, kek_len, profile
        );
        if o.flags & !OPEN_FLAGS != 0 {
            return Err(Error::InvalidArgument(format!(
                "opts->flags has unknown bits 0x{:x}",
                o.flags & !OPEN_FLAGS
            )));
        }
        Ok(o)
    }

    fn kek(&self) -> Result<Option<Kek>, Error> {
        let id = ptr::opt_bytes(self.kek_id, self.kek_id_len, "opts->kek_id")?;
        let key = ptr::opt_bytes(self.kek, self.kek_len, "opts->kek")?;
        match (id, key) {
            (None, None) => Ok(None),
            (Some(id), Some(key)) => Ok(Some(Kek {
                id: id.to_vec(),
                key: key.to_vec(),
            })),
            _ => Err(Error::InvalidArgument(
                "opts->kek_id and opts->kek go together: set both or neither".into(),
            )),
        }
    }
}

/// Sets `*opts` to the defaults (signature required, validity checked, legacy ciphers accepted,
/// SHA-1 refused, 1 GiB output limit, no sender) with `struct_size = sizeof(ls_open_options)`.
/// NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn ls_open_options_init(opts: *mut ls_open_options) {
    guard("ls_open_options_init", (), || {
        let _ = ptr::out_arg(opts, ls_open_options::DEFAULT, "opts");
    })
}

/// An opened document with the proof of who sent it. Immutable: may be shared by any number of
/// threads. Every pointer its accessors return is owned by it and valid until `ls_opened_free`.
pub struct ls_opened {
    opened: Opened,
    filename: Option<CString>,
    safe_filename: Option<CString>,
    mime_type: CString,
    signer: Option<ls_cert>,
}

/// Opens a sealed message (DER, BER, PEM or S/MIME, detected; `in_len` bytes at `in`):
/// decrypts it with `recipient` (nullable for a signed-only message), verifies every signature
/// against the sender policy of `opts` (nullable: defaults, which name no sender and so fail
/// on a signed message with `LS_ERR_INVALID_ARGUMENT`) and undoes compression and MIME.
///
/// `*out` is set to NULL first, then to the opened document the caller frees with
/// `ls_opened_free`. Errors: among others `LS_ERR_NOT_A_RECIPIENT`, `LS_ERR_DECRYPT_FAILED`,
/// `LS_ERR_BAD_SIGNATURE`, `LS_ERR_SIGNER_MISMATCH`, `LS_ERR_UNKNOWN_SIGNER`, `LS_ERR_UNSIGNED`,
/// `LS_ERR_CERT_EXPIRED`, `LS_ERR_WEAK_ALGORITHM`, `LS_ERR_MALFORMED`, `LS_ERR_TOO_LARGE`.
#[no_mangle]
pub unsafe extern "C" fn ls_open(
    recipient: *const ls_identity,
    r#in: *const u8,
    in_len: usize,
    opts: *const ls_open_options,
    out: *mut *mut ls_opened,
) -> ls_result {
    call("ls_open", || {
        let out = ptr::out_arg(out, std::ptr::null_mut(), "out")?;
        let input = ptr::arg_bytes(r#in, in_len, "in")?;
        let opened = with_open_options(recipient, opts, |core| ls_core::open(input, core))?;
        *out = ptr::into_handle(ls_opened::new(opened));
        Ok(())
    })
}

/// Runs `f` with the core's options from `recipient` and the caller's `opts` (borrowed for the
/// call).
pub(crate) fn with_open_options<T>(
    recipient: *const ls_identity,
    opts: *const ls_open_options,
    f: impl FnOnce(&OpenOptions) -> Result<T, Error>,
) -> Result<T, Error> {
    let recipient = ptr::opt_ref(recipient);
    let o = ls_open_options::read(opts)?;
    let kek = o.kek()?;
    let defaults = OpenOptions::default();
    let mut policy = match crate::seal::profile(o.profile, "opts->profile")? {
        Some(p) => p.inbound_policy(),
        None => defaults.policy,
    };
    if o.flags & LS_OPEN_REJECT_LEGACY != 0 {
        policy.accept_3des = false;
        policy.accept_rsa_pkcs1v15 = false;
    }
    if o.flags & LS_OPEN_REJECT_3DES != 0 {
        policy.accept_3des = false;
    }
    let core = OpenOptions {
        recipient: recipient.map(|r: &ls_identity| &r.identity),
        kek: kek.as_ref(),
        sender: ptr::opt_ref(o.sender).map(|c: &ls_cert| &c.cert),
        partners: ptr::opt_ref(o.partners).map(|s: &ls_certstore| &s.store),
        allow_unsigned: o.flags & LS_OPEN_ALLOW_UNSIGNED != 0,
        allow_expired: o.flags & LS_OPEN_ALLOW_EXPIRED != 0,
        policy,
        allow_sha1: o.flags & LS_OPEN_ALLOW_SHA1 != 0,
        max_output: if o.max_output == 0 {
            defaults.max_output
        } else {
            o.max_output
        },
        ..defaults
    };
    f(&core)
}

impl ls_opened {
    pub(crate) fn new(mut opened: Opened) -> ls_opened {
        let signer = opened.signer.take().map(ls_cert::new);
        ls_opened {
            filename: opened.filename.as_deref().map(cstring_lossy),
            safe_filename: opened.safe_filename().as_deref().map(cstring_lossy),
            mime_type: cstring_lossy(&opened.mime_type),
            signer,
            opened,
        }
    }
}

/// The opened document's size in bytes (also when it was written to a stream or a file by
/// `ls_open_stream` / `ls_open_file`, whose `ls_opened_document` is empty); 0 when `opened` is
/// NULL.
#[no_mangle]
pub unsafe extern "C" fn ls_opened_size(opened: *const ls_opened) -> u64 {
    guard("ls_opened_size", 0, || {
        ptr::opt_ref(opened).map_or(0, |o: &ls_opened| o.opened.size)
    })
}

/// The opened document: `*data` points to `*len` bytes owned by `opened` (valid until
/// `ls_opened_free`; never NULL on success, even for an empty document). Both out-pointers are
/// set to NULL/0 first.
#[no_mangle]
pub unsafe extern "C" fn ls_opened_document(
    opened: *const ls_opened,
    data: *mut *const u8,
    len: *mut usize,
) -> ls_result {
    call("ls_opened_document", || {
        let data = ptr::out_arg(data, std::ptr::null(), "data")?;
        let len = ptr::out_arg(len, 0, "len")?;
        let o = ptr::arg_ref(opened, "opened")?;
        // An empty document still gets a valid pointer (C's memcpy/fwrite want one).
        *data = if o.opened.document.is_empty() {
            c"".as_ptr().cast()
        } else {
            o.opened.document.as_ptr()
        };
        *len = o.opened.document.len();
        Ok(())
    })
}

/// The document's file name exactly as the sender stated it, or NULL when none was given (or
/// `opened` is NULL). It may contain directories or `..`: to write the document into a folder
/// use `ls_opened_safe_filename`. Owned by `opened`.
#[no_mangle]
pub unsafe extern "C" fn ls_opened_filename(opened: *const ls_opened) -> *const c_char {
    guard("ls_opened_filename", std::ptr::null(), || {
        ptr::opt_ref(opened)
            .and_then(|o: &ls_opened| o.filename.as_ref())
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// The file name reduced to a safe base name (no directories, no control characters, no
/// leading dots), or NULL when there is none left. Owned by `opened`.
#[no_mangle]
pub unsafe extern "C" fn ls_opened_safe_filename(opened: *const ls_opened) -> *const c_char {
    guard("ls_opened_safe_filename", std::ptr::null(), || {
        ptr::opt_ref(opened)
            .and_then(|o: &ls_opened| o.safe_filename.as_ref())
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// The document's MIME type, e.g. `"application/xml"` (NULL only when `opened` is NULL).
/// Owned by `opened`.
#[no_mangle]
pub unsafe extern "C" fn ls_opened_mime_type(opened: *const ls_opened) -> *const c_char {
    guard("ls_opened_mime_type", std::ptr::null(), || {
        ptr::opt_ref(opened).map_or(std::ptr::null(), |o: &ls_opened| o.mime_type.as_ptr())
    })
}

/// The verified signer's certificate, borrowed from `opened` (valid until `ls_opened_free`, do
/// not free it), or NULL when the document was unsigned (`LS_OPEN_ALLOW_UNSIGNED`).
#[no_mangle]
pub unsafe extern "C" fn ls_opened_signer(opened: *const ls_opened) -> *const ls_cert {
    guard("ls_opened_signer", std::ptr::null(), || {
        ptr::opt_ref(opened)
            .and_then(|o: &ls_opened| o.signer.as_ref())
            .map_or(std::ptr::null(), |c| c as *const ls_cert)
    })
}

/// The signing time the signer stated, in Unix seconds, or `LS_NO_TIME` (`INT64_MIN`) when it
/// stated none (or the document was unsigned).
#[no_mangle]
pub unsafe extern "C" fn ls_opened_signing_time(opened: *const ls_opened) -> i64 {
    guard("ls_opened_signing_time", i64::MIN, || {
        ptr::opt_ref(opened)
            .and_then(|o: &ls_opened| o.opened.signing_time)
            .unwrap_or(i64::MIN)
    })
}

/// 1 when an encryption layer was removed, 0 when the message was only signed (or `opened` is
/// NULL).
#[no_mangle]
pub unsafe extern "C" fn ls_opened_was_encrypted(opened: *const ls_opened) -> c_int {
    guard("ls_opened_was_encrypted", 0, || {
        ptr::opt_ref(opened).map_or(0, |o: &ls_opened| c_int::from(o.opened.encrypted))
    })
}

/// Frees an opened document. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn ls_opened_free(opened: *mut ls_opened) {
    guard("ls_opened_free", (), || ptr::free_handle(opened))
}

/// Describes any CMS/S-MIME object (`in_len` bytes at `in`) as JSON: its layers, algorithms,
/// recipients and signers. With `recipient` (nullable) it also looks inside layers encrypted
/// for us; with `sender` (nullable) it verifies signatures. Problems with the input do not fail
/// the call: they end the description and are reported in its `"error"` member.
///
/// `*json_out` is reset first, then receives UTF-8 JSON text (NUL-terminated, the NUL not
/// counted in `len`); free it with `ls_bytes_free`.
#[no_mangle]
pub unsafe extern "C" fn ls_inspect(
    r#in: *const u8,
    in_len: usize,
    recipient: *const ls_identity,
    sender: *const ls_cert,
    json_out: *mut ls_bytes,
) -> ls_result {
    call("ls_inspect", || {
        let out = ptr::out_arg(json_out, ls_bytes::EMPTY, "json_out")?;
        let input = ptr::arg_bytes(r#in, in_len, "in")?;
        let opts = OpenOptions {
            recipient: ptr::opt_ref(recipient).map(|r: &ls_identity| &r.identity),
            sender: ptr::opt_ref(sender).map(|c: &ls_cert| &c.cert),
            ..OpenOptions::default()
        };
        let json = ls_core::inspect(input, &opts);
        *out = ls_bytes::from_vec(json.to_json_pretty().into_bytes());
        Ok(())
    })
}
