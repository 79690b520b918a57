//! `ls_identity`: our private key with its certificate and chain.

use crate::bytes::ls_bytes;
use crate::cert::ls_cert;
use crate::ptr;
use crate::result::{call, guard, ls_result};
use ls_core::{Error, Identity, KeyType};
use std::ffi::{c_char, c_int};
use std::path::Path;

/// The key algorithm of `ls_identity_generate`: one of the `LS_KEY_*` values.
#[allow(non_camel_case_types)]
pub type ls_key_type = u32;

/// RSA, 2048-bit modulus.
pub const LS_KEY_RSA_2048: ls_key_type = 1;
/// RSA, 3072-bit modulus (the recommended RSA size).
pub const LS_KEY_RSA_3072: ls_key_type = 2;
/// RSA, 4096-bit modulus.
pub const LS_KEY_RSA_4096: ls_key_type = 3;
/// ECDSA/ECDH on NIST P-256.
pub const LS_KEY_EC_P256: ls_key_type = 4;

/// Our own identity: a private key, its certificate and the chain to its CA. Immutable once
/// made: may be shared by any number of threads.
pub struct ls_identity {
    pub(crate) identity: Identity,
    /// For a generated identity: the private key PEM (encrypted when a password was given) and
    /// the CSR PEM, the files a user keeps.
    generated: Option<(zeroize::Zeroizing<Vec<u8>>, Vec<u8>)>,
}

/// Loads an identity from files. `key_path` is either a PKCS#12 file (`.p12`/`.pfx`; then
/// `cert_path` is ignored) or a PEM private key (PKCS#8, encrypted PKCS#8 or PKCS#1); the format
/// is detected. With a PEM key, `cert_path` names the PEM certificate(s) (the one matching the
/// key, plus its chain); NULL means they are in the key file. `password` (nullable) decrypts an
/// encrypted key or the PKCS#12 file.
///
/// `*out` is set to NULL first, then to a new identity the caller frees with
/// `ls_identity_free`. Errors: `LS_ERR_IO`, `LS_ERR_BAD_PASSWORD`, `LS_ERR_MALFORMED`,
/// `LS_ERR_KEY_CERT_MISMATCH`, `LS_ERR_UNSUPPORTED_KEY`, `LS_ERR_CERT_INVALID`.
#[no_mangle]
pub unsafe extern "C" fn ls_identity_load(
    key_path: *const c_char,
    cert_path: *const c_char,
    password: *const c_char,
    out: *mut *mut ls_identity,
) -> ls_result {
    call("ls_identity_load", || {
        let out = ptr::out_arg(out, std::ptr::null_mut(), "out")?;
        let key_path = ptr::arg_str(key_path, "key_path")?;
        let cert_path = ptr::opt_str(cert_path, "cert_path")?;
        let password = ptr::opt_str(password, "password")?;
        let identity = Identity::load(key_path, cert_path.map(Path::new), password)?;
        *out = ptr::into_handle(ls_identity {
            identity,
            generated: None,
        });
        Ok(())
    })
}

/// Like `ls_identity_load`, from memory: `key` (`key_len` bytes) is PKCS#12 DER or PEM;
/// `cert` (nullable, `cert_len` bytes) holds the PEM certificate(s) for a PEM key.
#[no_mangle]
pub unsafe extern "C" fn ls_identity_from_memory(
    key: *const u8,
    key_len: usize,
    cert: *const u8,
    cert_len: usize,
    password: *const c_char,
    out: *mut *mut ls_identity,
) -> ls_result {
    call("ls_identity_from_memory", || {
        let out = ptr::out_arg(out, std::ptr::null_mut(), "out")?;
        let key = ptr::arg_bytes(key, key_len, "key")?;
        let cert = ptr::opt_bytes(cert, cert_len, "cert")?;
        let password = ptr::opt_str(password, "password")?;
        let identity = Identity::from_bytes(key, cert, password)?;
        *out = ptr::into_handle(ls_identity {
            identity,
            generated: None,
        });
        Ok(())
    })
}

/// Loads an identity whose private key stays on a PKCS#11 token (an HSM, a smart card,
/// SoftHSM2). `uri` is an RFC 7512 `pkcs11:` URI naming the token and the key
/// (`pkcs11:token=…;object=…` and/or `id=…`); a `pin-value` in it is refused.
/// `module_path` (nullable) is the PKCS#11 module (`.so`); it wins over a `module-path` in the
/// URI, one of the two is needed. `pin` (nullable: no login) is the user PIN: read it from
/// an environment variable or a file, never from a configuration. `cert_path` (nullable)
/// names the PEM certificate of the key (and its chain); NULL takes the certificate object
/// with the key's label or id from the token.
///
/// The token is logged in once, here; a wrong PIN is not tried again (each attempt counts
/// towards the token's lock-out). The identity signs and decrypts through the token
/// (`ls_seal`, `ls_open`, the client); it cannot serve TLS. `*out` is set to NULL first, then
/// to a new identity the caller frees with `ls_identity_free`. Errors:
/// `LS_ERR_INVALID_ARGUMENT` (a bad URI, a PIN in it, no module), `LS_ERR_PIN_INCORRECT`,
/// `LS_ERR_TOKEN_UNAVAILABLE` (the module cannot be loaded, no such token: transient),
/// `LS_ERR_KEY_NOT_FOUND`, `LS_ERR_IO`, `LS_ERR_CERT_NOT_FOUND`, `LS_ERR_KEY_CERT_MISMATCH`,
/// `LS_ERR_UNSUPPORTED_KEY`.
#[no_mangle]
pub unsafe extern "C" fn ls_identity_load_pkcs11(
    uri: *const c_char,
    module_path: *const c_char,
    pin: *const c_char,
    cert_path: *const c_char,
    out: *mut *mut ls_identity,
) -> ls_result {
    call("ls_identity_load_pkcs11", || {
        let out = ptr::out_arg(out, std::ptr::null_mut(), "out")?;
        let uri = ptr::arg_str(uri, "uri")?;
        let module_path = ptr::opt_str(module_path, "module_path")?;
        let pin = ptr::opt_str(pin, "pin")?;
        let cert_path = ptr::opt_str(cert_path, "cert_path")?;
        let cert = match cert_path {
            Some(p) => Some(
                std::fs::read(p)
                    .map_err(|e| Error::io(format!("cannot read certificate {p}"), e))?,
            ),
            None => None,
        };
        let identity =
            Identity::from_pkcs11(uri, module_path.map(Path::new), pin, cert.as_deref())?;
        *out = ptr::into_handle(ls_identity {
            identity,
            generated: None,
        });
        Ok(())
    })
}

/// Generates a new key pair with a self-signed certificate (CN = `party_id`, 1 to 64 printable
/// characters, valid for `days` days from now; 0 makes a certificate that expires at once, for
/// tests) and a certificate signing request for a CA.
///
/// `key_password` (nullable or empty: none) encrypts the private key PEM that
/// `ls_identity_key_pem` exports (PKCS#8, AES-256-CBC). Save the outputs of
/// `ls_identity_key_pem`, `ls_identity_cert` + `ls_cert_to_pem` and `ls_identity_csr_pem`.
/// Generating an RSA key takes from a fraction of a second to a few seconds.
#[no_mangle]
pub unsafe extern "C" fn ls_identity_generate(
    party_id: *const c_char,
    key_type: ls_key_type,
    days: u32,
    key_password: *const c_char,
    out: *mut *mut ls_identity,
) -> ls_result {
    call("ls_identity_generate", || {
        let out = ptr::out_arg(out, std::ptr::null_mut(), "out")?;
        let party_id = ptr::arg_str(party_id, "party_id")?;
        let password = ptr::opt_str(key_password, "key_password")?;
        let key_type = match key_type {
            LS_KEY_RSA_2048 => KeyType::Rsa(2048),
            LS_KEY_RSA_3072 => KeyType::Rsa(3072),
            LS_KEY_RSA_4096 => KeyType::Rsa(4096),
            LS_KEY_EC_P256 => KeyType::EcP256,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "key_type {other} is not one of the LS_KEY_* values"
                )))
            }
        };
        let g = Identity::generate(party_id, key_type, days, password)?;
        *out = ptr::into_handle(ls_identity {
            identity: g.identity,
            generated: Some((g.key_pem, g.csr_pem)),
        });
        Ok(())
    })
}

#[allow(clippy::type_complexity)]
fn generated<'a>(
    id: &'a ls_identity,
    what: &str,
) -> Result<&'a (zeroize::Zeroizing<Vec<u8>>, Vec<u8>), Error> {
    id.generated.as_ref().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "only an identity made by ls_identity_generate exports its {what}"
        ))
    })
}

/// The private key of a generated identity as PKCS#8 PEM, encrypted when a password was given
/// to `ls_identity_generate`. `LS_ERR_INVALID_ARGUMENT` for a loaded identity.
/// `*out` is reset first; free it with `ls_bytes_free`.
#[no_mangle]
pub unsafe extern "C" fn ls_identity_key_pem(
    identity: *const ls_identity,
    out: *mut ls_bytes,
) -> ls_result {
    call("ls_identity_key_pem", || {
        let out = ptr::out_arg(out, ls_bytes::EMPTY, "out")?;
        let id = ptr::arg_ref(identity, "identity")?;
        *out = ls_bytes::from_vec(generated(id, "private key")?.0.to_vec());
        Ok(())
    })
}

/// The certificate signing request (PEM) of a generated identity, to send to a CA.
/// `LS_ERR_INVALID_ARGUMENT` for a loaded identity. `*out` is reset first; free it with
/// `ls_bytes_free`.
#[no_mangle]
pub unsafe extern "C" fn ls_identity_csr_pem(
    identity: *const ls_identity,
    out: *mut ls_bytes,
) -> ls_result {
    call("ls_identity_csr_pem", || {
        let out = ptr::out_arg(out, ls_bytes::EMPTY, "out")?;
        let id = ptr::arg_ref(identity, "identity")?;
        *out = ls_bytes::from_vec(generated(id, "CSR")?.1.clone());
        Ok(())
    })
}

/// The identity's own certificate, as a new handle the caller frees with `ls_cert_free`
/// (independent of the identity's lifetime). `*out` is set to NULL first.
#[no_mangle]
pub unsafe extern "C" fn ls_identity_cert(
    identity: *const ls_identity,
    out: *mut *mut ls_cert,
) -> ls_result {
    call("ls_identity_cert", || {
        let out = ptr::out_arg(out, std::ptr::null_mut(), "out")?;
        let id = ptr::arg_ref(identity, "identity")?;
        *out = ptr::into_handle(ls_cert::new(id.identity.certificate().clone()));
        Ok(())
    })
}

/// 1 when the identity's private key is not in this process's memory but on a PKCS#11 token
/// (`ls_identity_load_pkcs11`), 0 for a key in memory or a NULL `identity`.
///
/// With a key on a token, `ls_seal`, `ls_open` and the client block while the token works: on
/// the device's I/O, on the identity's session pool, and on a re-login after the token was
/// taken out and put back. A binding must not hold its runtime's critical regions across such
/// a call: the Java binding copies the document instead of pinning it with
/// `GetPrimitiveArrayCritical`, which stalls the JVM's garbage collector until it is released.
/// For a key in memory it may pin: `ls_seal` and `ls_open` run none of the caller's code (they
/// take no callbacks, and the library has no process-wide callback such as a logger). A
/// callback added to the library later (a log callback) must not call back into the library or
/// into a VM (a JNI env) while it runs: it may run inside such a region.
#[no_mangle]
pub unsafe extern "C" fn ls_identity_is_on_token(identity: *const ls_identity) -> c_int {
    guard("ls_identity_is_on_token", 0, || {
        ptr::opt_ref(identity).map_or(0, |id: &ls_identity| {
            c_int::from(id.identity.private_key().in_memory().is_none())
        })
    })
}

/// Frees an identity (and its private key). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn ls_identity_free(identity: *mut ls_identity) {
    guard("ls_identity_free", (), || ptr::free_handle(identity))
}
