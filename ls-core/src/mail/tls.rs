//! TLS for the mail protocols: OpenSSL, trusted as [`super::MailTrust`] says (as the HTTPS
//! transport: a CA file, or a pinned leaf certificate).
//!
//! - `pinned_sha256`: the server's leaf certificate must be exactly the pinned one (SHA-256 of
//!   its DER); the host name is not checked, nor the chain — unless `ca_pem` is given too, in
//!   which case the chain must also verify against it.
//! - `ca_pem`: the chain must verify against these certificates only, and the certificate must
//!   name the URL's host (DNS name or IP address).
//! - neither: the system trust store, host name checked.
//!
//! TLS 1.2 is the minimum. The TCP connection is made with the account's timeout on each of
//! the host's addresses in turn; the same timeout bounds every read and write.

use super::MailTrust;
use crate::error::{Error, Result};
use crate::Certificate;
use openssl::ssl::{
    ErrorCode as SslErrorCode, HandshakeError, SslConnector, SslMethod, SslStream, SslVerifyMode,
    SslVersion,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509StoreContextRef, X509VerifyResult};
use std::fmt;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An OpenSSL client context built from a [`MailTrust`].
pub(crate) struct TlsConnector {
    connector: SslConnector,
    /// SHA-256 of the only server certificate accepted.
    pin: Option<[u8; 32]>,
    /// Whether the chain must verify (false only when pinned without `ca_pem`).
    verify_chain: bool,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("pinned", &self.pin.is_some())
            .field("verify_chain", &self.verify_chain)
            .finish()
    }
}

fn leaf_sha256(ctx: &X509StoreContextRef) -> Option<[u8; 32]> {
    let der = ctx.current_cert()?.to_der().ok()?;
    Some(openssl::sha::sha256(&der))
}

pub(crate) fn is_timeout(kind: io::ErrorKind) -> bool {
    matches!(kind, io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

impl TlsConnector {
    /// `InvalidArgument` for a malformed pin; `CertInvalid`/`Malformed` for an unreadable CA.
    pub(crate) fn new(trust: &MailTrust) -> Result<TlsConnector> {
        let pin = trust
            .pinned_sha256
            .as_deref()
            .map(|p| {
                crate::bytes::parse_sha256(p).ok_or_else(|| {
                    Error::InvalidArgument(
                        "pinned_sha256 must be 64 hex digits (the SHA-256 of the certificate's \
                         DER)"
                            .into(),
                    )
                })
            })
            .transpose()?;
        let mut b = SslConnector::builder(SslMethod::tls_client())?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
        if let Some(pem) = &trust.ca_pem {
            let mut store = X509StoreBuilder::new()?;
            for cert in Certificate::all_from_bytes(pem)? {
                store.add_cert(cert.x509().clone())?;
            }
            b.set_cert_store(store.build());
        } else if pin.is_some() {
            // Pinned: the system store plays no part.
            b.set_cert_store(X509StoreBuilder::new()?.build());
        }
        Ok(TlsConnector {
            connector: b.build(),
            pin,
            verify_chain: pin.is_none() || trust.ca_pem.is_some(),
        })
    }

    /// The TLS handshake on `tcp` (whose timeouts bound it) with the server `host`. The
    /// certificate refused is `TlsFailed` saying why; a timeout `Timeout`; a connection lost
    /// `ConnectFailed`.
    pub(crate) fn handshake(&self, host: &str, tcp: TcpStream) -> Result<SslStream<TcpStream>> {
        let setup = |e: openssl::error::ErrorStack| Error::TlsFailed(format!("TLS setup: {e}"));
        let mut conf = self.connector.configure().map_err(setup)?;
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
        match conf.connect(domain, tcp) {
            Ok(stream) => {
                if let Some(pin) = self.pin {
                    // The callback enforced it already; checked again on the result.
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

/// The account's timeout; 30 s for zero (a socket timeout cannot be zero).
pub(crate) fn effective_timeout(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        Duration::from_secs(30)
    } else {
        timeout
    }
}

/// A TCP connection to `host:port`: each resolved address in turn, `timeout` for each
/// connect, then for every read and write.
pub(crate) fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let timeout = effective_timeout(timeout);
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::ConnectFailed(format!("cannot resolve {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::ConnectFailed(format!("{host} has no address")));
    }
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(tcp) => {
                let set = |r: io::Result<()>| {
                    r.map_err(|e| Error::ConnectFailed(format!("socket setup for {host}: {e}")))
                };
                set(tcp.set_read_timeout(Some(timeout)))?;
                set(tcp.set_write_timeout(Some(timeout)))?;
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(match last {
        Some((addr, e)) if is_timeout(e.kind()) => {
            Error::Timeout(format!("connecting to {host} ({addr}) timed out"))
        }
        Some((addr, e)) => Error::ConnectFailed(format!("cannot connect to {host} ({addr}): {e}")),
        None => Error::ConnectFailed(format!("cannot connect to {host}")),
    })
}
