//! Sealing and opening documents of any size in constant memory: from a file to a file
//! (`ls_seal_file`, `ls_open_file`) or through the caller's read and write callbacks
//! (`ls_seal_stream`, `ls_open_stream`), in the manner of rustls-ffi's I/O callbacks.

use crate::cert::ls_cert;
use crate::identity::ls_identity;
use crate::open::{ls_open_options, ls_opened, with_open_options};
use crate::ptr;
use crate::result::{call, ls_result};
use crate::seal::ls_seal_options;
use ls_core::{Certificate, Error};
use std::ffi::{c_char, c_int, c_void};
use std::io;
use std::path::PathBuf;

/// Reads up to `len` bytes into `buf`: sets `*out_n` to the number read (0 at the end of the
/// input) and returns 0, or returns an `errno` value (e.g. `EIO`) on failure. Called on the
/// thread of the `ls_*_stream` call, never after it returns.
#[allow(non_camel_case_types)]
pub type ls_read_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        buf: *mut u8,
        len: usize,
        out_n: *mut usize,
    ) -> c_int,
>;

/// Writes up to `len` bytes from `buf`: sets `*out_n` to the number written (at least 1 when
/// `len` is not 0) and returns 0, or returns an `errno` value on failure. Called on the thread
/// of the `ls_*_stream` call, never after it returns.
#[allow(non_camel_case_types)]
pub type ls_write_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        buf: *const u8,
        len: usize,
        out_n: *mut usize,
    ) -> c_int,
>;

struct CallbackReader {
    f: unsafe extern "C" fn(*mut c_void, *mut u8, usize, *mut usize) -> c_int,
    userdata: *mut c_void,
}

impl io::Read for CallbackReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0usize;
        // SAFETY: the callback contract of `ls_read_callback`: `buf` is valid for `len` bytes
        // of writing and `out_n` for one write during the call; `userdata` is the caller's,
        // passed unchanged. C code does not unwind.
        let rc = unsafe { (self.f)(self.userdata, buf.as_mut_ptr(), buf.len(), &mut n) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if n > buf.len() {
            return Err(io::Error::other(
                "the read callback claims more bytes than it was given room for",
            ));
        }
        Ok(n)
    }
}

struct CallbackWriter {
    f: unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut usize) -> c_int,
    userdata: *mut c_void,
}

impl io::Write for CallbackWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut n = 0usize;
        // SAFETY: as for the reader: `buf` is valid for `len` bytes of reading during the call.
        let rc = unsafe { (self.f)(self.userdata, buf.as_ptr(), buf.len(), &mut n) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if n > buf.len() {
            return Err(io::Error::other(
                "the write callback claims more bytes than it was given",
            ));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn reader(f: ls_read_callback, userdata: *mut c_void) -> Result<CallbackReader, Error> {
    let f = f.ok_or_else(|| Error::NullArgument("read_cb".into()))?;
    Ok(CallbackReader { f, userdata })
}

fn writer(
    f: ls_write_callback,
    userdata: *mut c_void,
) -> Result<io::BufWriter<CallbackWriter>, Error> {
    let f = f.ok_or_else(|| Error::NullArgument("write_cb".into()))?;
    Ok(io::BufWriter::with_capacity(
        256 * 1024,
        CallbackWriter { f, userdata },
    ))
}

fn path(p: *const c_char, name: &str) -> Result<PathBuf, Error> {
    if p.is_null() {
        return Err(Error::NullArgument(name.into()));
    }
    // SAFETY: a non-NULL `const char *` argument is a NUL-terminated string unchanged during
    // the call (the header contract). Paths are bytes on Unix, not necessarily UTF-8.
    let c = unsafe { std::ffi::CStr::from_ptr(p) };
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(c.to_bytes())))
    }
    #[cfg(not(unix))]
    {
        c.to_str()
            .map(PathBuf::from)
            .map_err(|_| Error::InvalidArgument(format!("{name} is not valid UTF-8")))
    }
}

fn recipients_of(
    recipients: *const *const ls_cert,
    n_recipients: usize,
) -> Result<Vec<Certificate>, Error> {
    ptr::arg_array(recipients, n_recipients, "recipients")?
        .iter()
        .enumerate()
        .map(|(i, &c)| ptr::arg_ref(c, &format!("recipients[{i}]")).map(|c| c.cert.clone()))
        .collect()
}

/// `ls_seal` in constant memory: the document is read through `read_cb(read_userdata, ...)`
/// and the sealed message written through `write_cb(write_userdata, ...)` as it is made, as
/// indefinite-length BER (PEM or S/MIME around it with those flags), as `openssl cms -stream`
/// writes it. With `LS_SEAL_MULTIPART_SIGNED` (the legacy AS2 profile) the document is read
/// whole. `sealed_size` (nullable) receives the number of bytes written.
///
/// On failure what was written is incomplete: discard it. A callback's `errno` is reported as
/// `LS_ERR_IO`.
#[no_mangle]
pub unsafe extern "C" fn ls_seal_stream(
    signer: *const ls_identity,
    recipients: *const *const ls_cert,
    n_recipients: usize,
    read_cb: ls_read_callback,
    read_userdata: *mut c_void,
    write_cb: ls_write_callback,
    write_userdata: *mut c_void,
    opts: *const ls_seal_options,
    sealed_size: *mut u64,
) -> ls_result {
    call("ls_seal_stream", || {
        if !sealed_size.is_null() {
            ptr::out_arg(sealed_size, 0, "sealed_size")?;
        }
        let signer = ptr::arg_ref(signer, "signer")?;
        let certs = recipients_of(recipients, n_recipients)?;
        let opts = ls_seal_options::read(opts)?.to_core()?;
        let mut r = reader(read_cb, read_userdata)?;
        let mut w = writer(write_cb, write_userdata)?;
        let s = match ls_core::seal_stream(&mut r, &mut w, &signer.identity, &certs, &opts) {
            Ok(s) => s,
            Err(e) => {
                // Nothing more goes to the caller once the seal failed.
                let _ = w.into_parts();
                return Err(e);
            }
        };
        io::Write::flush(&mut w).map_err(|e| Error::Io {
            context: "writing the sealed message".into(),
            source: e,
        })?;
        if !sealed_size.is_null() {
            *ptr::out_arg(sealed_size, 0, "sealed_size")? = s.sealed_size;
        }
        Ok(())
    })
}

/// `ls_seal` from the file `in_path` to the file `out_path` in constant memory (see
/// `ls_seal_stream`). `out_path` appears only once complete (written beside it under a
/// temporary name, synced, renamed); a failed seal leaves no file.
#[no_mangle]
pub unsafe extern "C" fn ls_seal_file(
    signer: *const ls_identity,
    recipients: *const *const ls_cert,
    n_recipients: usize,
    in_path: *const c_char,
    out_path: *const c_char,
    opts: *const ls_seal_options,
) -> ls_result {
    call("ls_seal_file", || {
        let signer = ptr::arg_ref(signer, "signer")?;
        let certs = recipients_of(recipients, n_recipients)?;
        let input = path(in_path, "in_path")?;
        let output = path(out_path, "out_path")?;
        let opts = ls_seal_options::read(opts)?.to_core()?;
        ls_core::seal_file(&input, &output, &signer.identity, &certs, &opts)?;
        Ok(())
    })
}

/// `ls_open` in constant memory: the sealed message is read through `read_cb` and the
/// document written through `write_cb` as the layers are peeled.
///
/// **Nothing written through `write_cb` is authentic until this call returns `LS_OK`**: the
/// signature and the authentication tag follow the content they cover. Write to a place that
/// nobody uses before then (a temporary file, a staging table) and discard it on any error;
/// `ls_open_file` does this for files.
///
/// `*out` is set to NULL first, then to the opened document's description (signer, file name,
/// MIME type, `ls_opened_size`; its `ls_opened_document` is empty), freed with
/// `ls_opened_free`. Errors as `ls_open`.
#[no_mangle]
pub unsafe extern "C" fn ls_open_stream(
    recipient: *const ls_identity,
    read_cb: ls_read_callback,
    read_userdata: *mut c_void,
    write_cb: ls_write_callback,
    write_userdata: *mut c_void,
    opts: *const ls_open_options,
    out: *mut *mut ls_opened,
) -> ls_result {
    call("ls_open_stream", || {
        let out = ptr::out_arg(out, std::ptr::null_mut(), "out")?;
        let mut r = reader(read_cb, read_userdata)?;
        let mut w = writer(write_cb, write_userdata)?;
        let opened = match with_open_options(recipient, opts, |core| {
            ls_core::open_stream(&mut r, &mut w, core)
        }) {
            Ok(o) => o,
            Err(e) => {
                // What is still buffered belongs to a document that was refused: it is dropped,
                // not handed to the write callback.
                let _ = w.into_parts();
                return Err(e);
            }
        };
        io::Write::flush(&mut w).map_err(|e| Error::Io {
            context: "writing the document".into(),
            source: e,
        })?;
        *out = ptr::into_handle(ls_opened::new(opened));
        Ok(())
    })
}

/// `ls_open` from the file `in_path` to the file `out_path` in constant memory. `out_path`
/// (mode 0600) appears only once the signature and the authentication tag verified; a refused
/// message leaves no file behind. `*out` as for `ls_open_stream`.
#[no_mangle]
pub unsafe extern "C" fn ls_open_file(
    recipient: *const ls_identity,
    in_path: *const c_char,
    out_path: *const c_char,
    opts: *const ls_open_options,
    out: *mut *mut ls_opened,
) -> ls_result {
    call("ls_open_file", || {
        let out = ptr::out_arg(out, std::ptr::null_mut(), "out")?;
        let input = path(in_path, "in_path")?;
        let output = path(out_path, "out_path")?;
        let opened = with_open_options(recipient, opts, |core| {
            ls_core::open_file(&input, &output, core)
        })?;
        *out = ptr::into_handle(ls_opened::new(opened));
        Ok(())
    })
}
