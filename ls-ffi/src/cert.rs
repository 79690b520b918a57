//! `ls_cert` (an X.509 certificate) and `ls_certstore` (partners and trust anchors).

use crate::bytes::ls_bytes;
use crate::ptr;
use crate::result::{call, cstring_lossy, guard, ls_result};
use ls_core::{CertStore, Certificate};
use std::ffi::{c_char, CString};

/// An X.509 certificate (of a partner, a trust anchor or our own). Immutable: may be shared by
/// any number of threads.
pub struct ls_cert {
    pub(crate) cert: Certificate,
    subject: CString,
}

impl ls_cert {
    pub(crate) fn new(cert: Certificate) -> ls_cert {
        let subject = cstring_lossy(cert.subject());
        ls_cert { cert, subject }
    }
}

/// Partner certificates (each optionally named by a party id) and trust anchors (CA
/// certificates that vouch for partners not listed one by one). Fill it first, from one thread;
/// once filled it may be shared by any number of threads that only read it (`ls_open`).
pub struct ls_certstore {
    pub(crate) store: CertStore,
}

/// Loads a certificate file, PEM (the first certificate) or DER, detected. `*out` is set to NULL
/// first, then to a new certificate the caller frees with `ls_cert_free`.
/// Errors: `LS_ERR_IO`, `LS_ERR_CERT_INVALID`.
#[no_mangle]
pub unsafe extern "C" fn ls_cert_load(path: *const c_char, out: *mut *mut ls_cert) -> ls_result {
    call("ls_cert_load", || {
        let out = ptr::out_arg(out, std::ptr::null_mut(), "out")?;
        let path = ptr::arg_str(path, "path")?;
        *out = ptr::into_handle(ls_cert::new(Certificate::load(path)?));
        Ok(())
    })
}

/// Like `ls_cert_load`, from `len` bytes of PEM or DER at `data`.
#[no_mangle]
pub unsafe extern "C" fn ls_cert_from_memory(
    data: *const u8,
    len: usize,
    out: *mut *mut ls_cert,
) -> ls_result {
    call("ls_cert_from_memory", || {
        let out = ptr::out_arg(out, std::ptr::null_mut(), "out")?;
        let data = ptr::arg_bytes(data, len, "data")?;
        *out = ptr::into_handle(ls_cert::new(Certificate::from_bytes(data)?));
        Ok(())
    })
}

/// The subject name as text, e.g. `"CN=acme, O=ACME Corp"`. Owned by the certificate: valid
/// while it lives, never freed by the caller. NULL when `cert` is NULL.
#[no_mangle]
pub unsafe extern "C" fn ls_cert_subject(cert: *const ls_cert) -> *const c_char {
    guard("ls_cert_subject", std::ptr::null(), || {
        ptr::opt_ref(cert).map_or(std::ptr::null(), |c| c.subject.as_ptr())
    })
}

/// The certificate as PEM text. `*out` is reset first; free it with `ls_bytes_free`.
#[no_mangle]
pub unsafe extern "C" fn ls_cert_to_pem(cert: *const ls_cert, out: *mut ls_bytes) -> ls_result {
    call("ls_cert_to_pem", || {
        let out = ptr::out_arg(out, ls_bytes::EMPTY, "out")?;
        let cert = ptr::arg_ref(cert, "cert")?;
        let pem = cert.cert.x509().to_pem()?;
        *out = ls_bytes::from_vec(pem);
        Ok(())
    })
}

/// Frees a certificate. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn ls_cert_free(cert: *mut ls_cert) {
    guard("ls_cert_free", (), || ptr::free_handle(cert))
}

/// A new, empty certificate store. `*out` is set to NULL first; free it with
/// `ls_certstore_free`.
#[no_mangle]
pub unsafe extern "C" fn ls_certstore_new(out: *mut *mut ls_certstore) -> ls_result {
    call("ls_certstore_new", || {
        let out = ptr::out_arg(out, std::ptr::null_mut(), "out")?;
        *out = ptr::into_handle(ls_certstore {
            store: CertStore::new(),
        });
        Ok(())
    })
}

/// A store loaded from a folder: each `*.pem`, `*.crt`, `*.cer` or `*.der` file directly in it
/// is a partner certificate whose party id is the file name without extension; the files in
/// its subfolder `anchors/` are trust anchors. `*out` is set to NULL first.
/// Errors: `LS_ERR_IO`, `LS_ERR_CERT_INVALID`.
#[no_mangle]
pub unsafe extern "C" fn ls_certstore_load_dir(
    path: *const c_char,
    out: *mut *mut ls_certstore,
) -> ls_result {
    call("ls_certstore_load_dir", || {
        let out = ptr::out_arg(out, std::ptr::null_mut(), "out")?;
        let path = ptr::arg_str(path, "path")?;
        *out = ptr::into_handle(ls_certstore {
            store: CertStore::load_dir(path)?,
        });
        Ok(())
    })
}

/// Adds a partner certificate (copied: the caller still owns and frees `cert`), optionally
/// under a party id (nullable). Not to be called while another thread uses the store.
#[no_mangle]
pub unsafe extern "C" fn ls_certstore_add_partner(
    store: *mut ls_certstore,
    cert: *const ls_cert,
    party_id: *const c_char,
) -> ls_result {
    call("ls_certstore_add_partner", || {
        let store = ptr::arg_mut(store, "store")?;
        let cert = ptr::arg_ref(cert, "cert")?;
        let party_id = ptr::opt_str(party_id, "party_id")?;
        store.store.add_partner(cert.cert.clone(), party_id);
        Ok(())
    })
}

/// Adds a trust anchor (a CA certificate; copied: the caller still owns and frees `cert`). Not
/// to be called while another thread uses the store.
#[no_mangle]
pub unsafe extern "C" fn ls_certstore_add_anchor(
    store: *mut ls_certstore,
    cert: *const ls_cert,
) -> ls_result {
    call("ls_certstore_add_anchor", || {
        let store = ptr::arg_mut(store, "store")?;
        let cert = ptr::arg_ref(cert, "cert")?;
        store.store.add_anchor(cert.cert.clone());
        Ok(())
    })
}

/// Frees a certificate store. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn ls_certstore_free(store: *mut ls_certstore) {
    guard("ls_certstore_free", (), || ptr::free_handle(store))
}
