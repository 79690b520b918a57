//! TLS client trust, one implementation for every protocol (HTTPS, SMTP, IMAP, POP3):
//! OpenSSL, TLS 1.2 at least, and whom to trust:
//!
//! - a pin (`pinned_sha256`): the server's leaf certificate must be exactly the pinned one
//!   (SHA-256 of its DER); the host name is not checked, nor the chain — unless CA
//!   certificates are given too, in which case the chain must also verify against them;
//! - CA certificates: the chain must verify against these only, and the certificate must name
//!   the host (DNS name or IP address);
//! - neither: the system trust store, host name checked.
//!
//! A refusal says why (untrusted, host name, pin mismatch with the SHA-256 seen): `TlsFailed`;
//! a handshake that timed out `Timeout`; a connection lost during it `ConnectFailed`.

use crate::error::{Error, Result};
use crate::keys::Identity;
use crate::Certificate;
use openssl::ssl::{
    ErrorCode as SslErrorCode, HandshakeError, SslConnector, SslMethod, SslStream, SslVerifyMode,
    SslVersion,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509StoreContextRef, X509VerifyResult};
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

/// An OpenSSL client context and the trust it applies.
pub(crate) struct TlsTrust {
    connector: SslConnector,
    /// SHA-256 of the only server certificate accepted.
    pin: Option<[u8; 32]>,
    /// Whether the chain must verify (false only when pinned without CA certificates).
    verify_chain: bool,
}

impl fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTrust")
            .field("pinned", &self.pin.is_some())
            .field("verify_chain", &self.verify_chain)
            .finish()
    }
}

fn parse_pin(pin: &str) -> Result<[u8; 32]> {
    crate::bytes::parse_sha256(pin).ok_or_else(|| {
        Error::InvalidArgument(
            "pinned_sha256 must be 64 hex digits (the SHA-256 of the certificate's DER)".into(),
        )
    })
}

fn leaf_sha256(ctx: &X509StoreContextRef) -> Option<[u8; 32]> {
    let der = ctx.current_cert()?.to_der().ok()?;
    Some(openssl::sha::sha256(&der))
}

pub(crate) fn is_timeout(kind: io::ErrorKind) -> bool {
    matches!(kind, io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

impl TlsTrust {
    /// `InvalidArgument` for a malformed pin; `CertInvalid`/`Malformed` for unreadable CA
    /// certificates; `KeyCertMismatch` for a client key that is not its certificate's.
    pub(crate) fn new(
        ca_pem: Option<&[u8]>,
        pinned_sha256: Option<&str>,
        client: Option<&Identity>,
    ) -> Result<TlsTrust> {
        let pin = pinned_sha256.map(parse_pin).transpose()?;
        let mut b = SslConnector::builder(SslMethod::tls_client())?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
        if let Some(pem) = ca_pem {
            let mut store = X509StoreBuilder::new()?;
            for cert in Certificate::all_from_bytes(pem)? {
                store.add_cert(cert.x509().clone())?;
            }
            b.set_cert_store(store.build());
        } else if pin.is_some() {
            // Pinned: the system store plays no part.
            b.set_cert_store(X509StoreBuilder::new()?.build());
        }
        if let Some(id) = client {
            b.set_certificate(id.certificate().x509())?;
            b.set_private_key(id.tls_key()?)?;
            for c in id.chain() {
                b.add_extra_chain_cert(c.x509().clone())?;
            }
            b.check_private_key().map_err(|_| {
                Error::KeyCertMismatch("the client key does not match its certificate".into())
            })?;
        }
        Ok(TlsTrust {
            connector: b.build(),
            pin,
            verify_chain: pin.is_none() || ca_pem.is_some(),
        })
    }

    /// The TLS handshake on `io` (whose timeouts bound it) with the server `host` (an IPv6
    /// literal may come bracketed).
    pub(crate) fn handshake<S: Read + Write + fmt::Debug>(
        &self,
        host: &str,
        io: S,
    ) -> Result<SslStream<S>> {
        let setup =
            |e: openssl::error::ErrorStack| Error::TlsFailed(format!("TLS setup failed: {e}"));
        let mut conf = self.connector.configure().map_err(setup)?;
        // What the verify callback saw of a pin mismatch, for the message.
        let pin_mismatch: Arc<Mutex<Option<String>>> = Arc::default();
        if let Some(pin) = self.pin {
            conf.set_verify_hostname(false);
            let seen = Arc::clone(&pin_mismatch);
            let verify_chain = self.verify_chain;
            conf.set_verify_callback(SslVerifyMode::PEER, move |preverify_ok, ctx| {
                let chain_ok = preverify_ok || !verify_chain;
                if ctx.error_depth() != 0 {
                    return chain_ok;
                }
                match leaf_sha256(ctx) {
                    Some(got) if got == pin => chain_ok,
                    got => {
                        let got =
                            got.map_or_else(|| "unreadable".into(), |g| crate::bytes::hex(&g));
                        if let Ok(mut s) = seen.lock() {
                            *s = Some(got);
                        }
                        ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
                        false
                    }
                }
            });
        }
        let domain = host.trim_start_matches('[').trim_end_matches(']');
        match conf.connect(domain, io) {
            Ok(stream) => {
                if let Some(pin) = self.pin {
                    // The callback already enforced it; checked again on the result.
                    let got = stream
                        .ssl()
                        .peer_certificate()
                        .and_then(|c| c.to_der().ok())
                        .map(|d| openssl::sha::sha256(&d));
                    if got != Some(pin) {
                        return Err(Error::TlsFailed(format!(
                            "the certificate of {host} does not match the pinned SHA-256"
                        )));
                    }
                }
                Ok(stream)
            }
            Err(HandshakeError::SetupFailure(e)) => Err(setup(e)),
            Err(HandshakeError::WouldBlock(_)) => Err(Error::Timeout(format!(
                "the TLS handshake with {host} timed out"
            ))),
            Err(HandshakeError::Failure(mid)) => {
                if let Some(got) = pin_mismatch.lock().ok().and_then(|mut s| s.take()) {
                    return Err(Error::TlsFailed(format!(
                        "pin mismatch: the certificate of {host} (SHA-256 {got}) is not the \
                         pinned one"
                    )));
                }
                let verify = mid.ssl().verify_result();
                if verify != X509VerifyResult::OK {
                    return Err(Error::TlsFailed(format!(
                        "certificate verification of {host} failed: {}",
                        verify.error_string()
                    )));
                }
                let err = mid.error();
                if let Some(e) = err.io_error() {
                    return Err(if is_timeout(e.kind()) {
                        Error::Timeout(format!("the TLS handshake with {host} timed out"))
                    } else {
                        Error::ConnectFailed(format!(
                            "the connection to {host} was lost during the TLS handshake: {e}"
                        ))
                    });
                }
                if err.code() == SslErrorCode::SYSCALL && err.ssl_error().is_none() {
                    return Err(Error::ConnectFailed(format!(
                        "{host} closed the connection during the TLS handshake"
                    )));
                }
                Err(Error::TlsFailed(format!(
                    "TLS handshake with {host} failed: {err}"
                )))
            }
        }
    }
}
