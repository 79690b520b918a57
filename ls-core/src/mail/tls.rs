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
use crate::transport::tls::TlsTrust;
use openssl::ssl::SslStream;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub(crate) use crate::transport::tls::is_timeout;

/// An OpenSSL client context built from a [`MailTrust`]: the one trust implementation of
/// every protocol ([`crate::transport::tls`]).
#[derive(Debug)]
pub(crate) struct TlsConnector {
    trust: TlsTrust,
}

impl TlsConnector {
    /// `InvalidArgument` for a malformed pin; `CertInvalid`/`Malformed` for an unreadable CA.
    pub(crate) fn new(trust: &MailTrust) -> Result<TlsConnector> {
        Ok(TlsConnector {
            trust: TlsTrust::new(
                trust.ca_pem.as_deref(),
                trust.pinned_sha256.as_deref(),
                None,
            )?,
        })
    }

    /// The TLS handshake on `tcp` (whose timeouts bound it) with the server `host`. The
    /// certificate refused is `TlsFailed` saying why; a timeout `Timeout`; a connection lost
    /// `ConnectFailed`.
    pub(crate) fn handshake(&self, host: &str, tcp: TcpStream) -> Result<SslStream<TcpStream>> {
        self.trust.handshake(host, tcp)
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
