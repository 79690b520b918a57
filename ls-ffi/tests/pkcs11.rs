//! `ls_identity_load_pkcs11`: an identity whose key stays on a SoftHSM2 token, through the C
//! API — a seal/open round trip with the key on the token, the certificate from a file or from
//! the token, `ls_identity_is_on_token`, and the errors of a wrong PIN, a missing module, an
//! unknown key and a PIN in the URI, each with its own code.

// Out-parameters start as garbage pointers such as `1 as *mut T` on purpose: the library must
// overwrite them without reading them.
#![allow(clippy::manual_dangling_ptr)]

use layersec::*;
use ls_core::keys::pkcs11::Pkcs11Key;
use ls_core::{CertPurpose, CertificateBuilder, ErrorCode, KeyType};
use ls_tests::softhsm::{SoftHsm, EC_TOKEN, PIN};
use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::Arc;

const LS_ERR_NULL_ARGUMENT: ls_result = ErrorCode::NullArgument as ls_result;
const LS_ERR_INVALID_ARGUMENT: ls_result = ErrorCode::InvalidArgument as ls_result;
const LS_ERR_PIN_INCORRECT: ls_result = ErrorCode::PinIncorrect as ls_result;
const LS_ERR_TOKEN_UNAVAILABLE: ls_result = ErrorCode::TokenUnavailable as ls_result;
const LS_ERR_KEY_NOT_FOUND: ls_result = ErrorCode::KeyNotFound as ls_result;
const LS_ERR_CERT_NOT_FOUND: ls_result = ErrorCode::CertNotFound as ls_result;

fn msg() -> String {
    unsafe { CStr::from_ptr(ls_last_error_message()) }
        .to_str()
        .unwrap()
        .to_string()
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// `ls_identity_load_pkcs11` with the module of `hsm`; the identity or the result code.
fn load(
    uri: &str,
    module: Option<&str>,
    pin: Option<&str>,
    cert: Option<&str>,
) -> Result<*mut ls_identity, ls_result> {
    let (uri, module, pin, cert) = (c(uri), module.map(c), pin.map(c), cert.map(c));
    let p = |s: &Option<CString>| s.as_ref().map_or(null(), |s| s.as_ptr() as *const c_char);
    let mut id = 1 as *mut ls_identity; // garbage: must be reset
    let rc =
        unsafe { ls_identity_load_pkcs11(uri.as_ptr(), p(&module), p(&pin), p(&cert), &mut id) };
    if rc == 0 {
        assert!(!id.is_null());
        Ok(id)
    } else {
        assert!(id.is_null(), "*out is NULL after a failure");
        Err(rc)
    }
}

#[test]
fn an_identity_on_a_token_seals_and_opens_through_the_c_api() {
    let Some(hsm) = SoftHsm::get() else { return };
    let module = hsm.module().to_str().unwrap();
    let uri = hsm.uri(EC_TOKEN, "ffi-kate");
    let key = Pkcs11Key::generate(&uri, Some(hsm.module()), PIN, KeyType::EcP256).unwrap();
    let g = CertificateBuilder::new("kate", CertPurpose::Party)
        .private_key(Arc::new(key))
        .build(None)
        .unwrap();
    let dir = ls_tests::tempdir("ffi-pkcs11");
    let cert_path = dir.join("kate.crt");
    std::fs::write(&cert_path, &g.cert_pem).unwrap();

    let kate = load(
        &uri,
        Some(module),
        Some(PIN),
        Some(cert_path.to_str().unwrap()),
    )
    .unwrap_or_else(|rc| panic!("{rc}: {}", msg()));
    let mut cert = null_mut();
    assert_eq!(unsafe { ls_identity_cert(kate, &mut cert) }, 0, "{}", msg());
    // The key is on the token (bindings copy rather than pin documents for it); a key in
    // memory and NULL are not.
    assert_eq!(unsafe { ls_identity_is_on_token(kate) }, 1);
    assert_eq!(unsafe { ls_identity_is_on_token(null()) }, 0);
    let mut soft = null_mut();
    let rc =
        unsafe { ls_identity_generate(c("soft").as_ptr(), LS_KEY_EC_P256, 1, null(), &mut soft) };
    assert_eq!(rc, 0, "{}", msg());
    assert_eq!(unsafe { ls_identity_is_on_token(soft) }, 0);
    unsafe { ls_identity_free(soft) };

    // Sealed by kate (ECDSA on the token) to kate (ECDH on the token), opened by kate.
    let doc = b"<Invoice>token</Invoice>";
    let recipients = [cert as *const ls_cert];
    let mut sealed = ls_bytes {
        data: null_mut(),
        len: 0,
    };
    let rc = unsafe {
        ls_seal(
            kate,
            recipients.as_ptr(),
            1,
            doc.as_ptr(),
            doc.len(),
            null(),
            &mut sealed,
        )
    };
    assert_eq!(rc, 0, "{}", msg());
    let mut oo: ls_open_options = unsafe { std::mem::zeroed() };
    unsafe { ls_open_options_init(&mut oo) };
    oo.sender = cert;
    let mut opened = null_mut();
    let rc = unsafe { ls_open(kate, sealed.data, sealed.len, &oo, &mut opened) };
    assert_eq!(rc, 0, "{}", msg());
    let (mut p, mut n) = (null(), 0usize);
    assert_eq!(unsafe { ls_opened_document(opened, &mut p, &mut n) }, 0);
    assert_eq!(unsafe { std::slice::from_raw_parts(p, n) }, doc);
    unsafe {
        ls_opened_free(opened);
        ls_bytes_free(&mut sealed);
        ls_cert_free(cert);
        ls_identity_free(kate);
    }

    // Without a certificate file the token's own certificate object is needed: there is none
    // for this key yet, so that is "certificate not found".
    assert_eq!(
        load(&uri, Some(module), Some(PIN), None).unwrap_err(),
        LS_ERR_CERT_NOT_FOUND,
        "{}",
        msg()
    );
}

#[test]
fn each_token_failure_has_its_code() {
    let Some(hsm) = SoftHsm::get() else { return };
    let module = hsm.module().to_str().unwrap();
    // A token only this test logs in to: a token already logged in accepts any PIN.
    let uri = hsm.uri(ls_tests::softhsm::PIN_TOKEN, "ffi-liam");
    Pkcs11Key::generate(&uri, Some(hsm.module()), PIN, KeyType::EcP256).unwrap();

    let rc = load(&uri, Some(module), Some("0000-wrong"), None).unwrap_err();
    assert_eq!(rc, LS_ERR_PIN_INCORRECT, "{}", msg());
    assert!(!msg().contains("0000-wrong"), "{}", msg());
    assert_eq!(ls_last_error_is_transient(), 0);

    let rc = load(&uri, Some("/nonexistent/libnope.so"), Some(PIN), None).unwrap_err();
    assert_eq!(rc, LS_ERR_TOKEN_UNAVAILABLE, "{}", msg());
    assert_eq!(ls_last_error_is_transient(), 1);

    let rc = load(
        &hsm.uri(EC_TOKEN, "ffi-nobody"),
        Some(module),
        Some(PIN),
        None,
    )
    .unwrap_err();
    assert_eq!(rc, LS_ERR_KEY_NOT_FOUND, "{}", msg());

    let rc = load(&format!("{uri}?pin-value={PIN}"), Some(module), None, None).unwrap_err();
    assert_eq!(rc, LS_ERR_INVALID_ARGUMENT, "{}", msg());
    assert!(!msg().contains(PIN), "{}", msg());

    let mut id = 1 as *mut ls_identity;
    let rc = unsafe { ls_identity_load_pkcs11(null(), null(), null(), null(), &mut id) };
    assert_eq!(rc, LS_ERR_NULL_ARGUMENT);
    assert!(id.is_null());
}
