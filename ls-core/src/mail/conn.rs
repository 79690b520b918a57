//! The connection the three mail clients share: TCP, then TLS (at once or after
//! STARTTLS/STLS), read as bounded lines and counted bytes.

use super::tls::{connect_tcp, effective_timeout, is_timeout, TlsConnector};
use super::Account;
use crate::error::{Error, Result};
use openssl::ssl::SslStream;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The longest line a server may send (a hostile server cannot make us hold more).
pub(crate) const MAX_LINE: usize = 64 * 1024;

enum Stream {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
    Gone,
}

/// One connection to a mail server, with its read buffer.
pub(crate) struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    /// `scheme://host:port`, for messages.
    pub(crate) peer: String,
    host: String,
    timeout: Duration,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.peer)
            .field("tls", &matches!(self.stream, Stream::Tls(_)))
            .finish()
    }
}

impl Conn {
    /// Connects to the account's server; TLS at once for an implicit-TLS scheme.
    pub(crate) fn open(account: &Account, tls: &TlsConnector) -> Result<Conn> {
        let url = &account.url;
        let tcp = connect_tcp(&url.host, url.port, account.timeout)?;
        let mut conn = Conn {
            stream: Stream::Plain(tcp),
            buf: Vec::new(),
            start: 0,
            peer: url.to_string(),
            host: url.host.clone(),
            timeout: effective_timeout(account.timeout),
        };
        if url.scheme.implicit_tls() {
            conn.start_tls(tls)?;
        }
        Ok(conn)
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// TLS on the plain connection (after the server agreed to STARTTLS/STLS). Bytes the
    /// server sent before the handshake would be outside TLS: refused.
    pub(crate) fn start_tls(&mut self, tls: &TlsConnector) -> Result<()> {
        if self.start < self.buf.len() {
            return Err(Error::BadResponse(format!(
                "{} sent data after agreeing to start TLS",
                self.peer
            )));
        }
        match std::mem::replace(&mut self.stream, Stream::Gone) {
            Stream::Plain(tcp) => {
                let ssl = tls.handshake(&self.host, tcp)?;
                self.stream = Stream::Tls(Box::new(ssl));
                Ok(())
            }
            other => {
                self.stream = other;
                Err(Error::Internal("TLS started twice".into()))
            }
        }
    }

    fn tcp(&self) -> Option<&TcpStream> {
        match &self.stream {
            Stream::Plain(t) => Some(t),
            Stream::Tls(s) => Some(s.get_ref()),
            Stream::Gone => None,
        }
    }

    fn io_error(&self, e: io::Error) -> Error {
        if is_timeout(e.kind()) {
            Error::Timeout(format!(
                "{} did not answer within {} s",
                self.peer,
                self.timeout.as_secs_f32()
            ))
        } else if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::ConnectFailed(format!("{} closed the connection", self.peer))
        } else {
            Error::ConnectFailed(format!("the connection to {} failed: {e}", self.peer))
        }
    }

    /// Reads more into the buffer; `Ok(0)` at the end of the stream.
    fn fill_raw(&mut self) -> io::Result<usize> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = match &mut self.stream {
            Stream::Plain(t) => t.read(&mut chunk)?,
            Stream::Tls(s) => s.read(&mut chunk)?,
            Stream::Gone => return Err(io::ErrorKind::NotConnected.into()),
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn fill(&mut self) -> Result<()> {
        match self.fill_raw() {
            Ok(0) => Err(self.io_error(io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => Ok(()),
            Err(e) => Err(self.io_error(e)),
        }
    }

    /// The next line, without its CRLF (a bare LF is accepted too). A line longer than
    /// `limit` is `BadResponse`.
    pub(crate) fn read_line_max(&mut self, limit: usize) -> Result<Vec<u8>> {
        let mut scanned = 0;
        loop {
            let avail = &self.buf[self.start..];
            if let Some(i) = memchr::memchr(b'\n', &avail[scanned..]) {
                let end = scanned + i;
                let mut line = avail[..end].to_vec();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.start += end + 1;
                if line.len() > limit {
                    return Err(self.too_long(limit));
                }
                return Ok(line);
            }
            scanned = avail.len();
            if scanned > limit + 1 {
                return Err(self.too_long(limit));
            }
            self.fill()?;
        }
    }

    fn too_long(&self, limit: usize) -> Error {
        Error::BadResponse(format!(
            "{} sent a line longer than {limit} bytes",
            self.peer
        ))
    }

    pub(crate) fn read_line(&mut self) -> Result<Vec<u8>> {
        self.read_line_max(MAX_LINE)
    }

    /// Exactly `n` bytes (an IMAP literal).
    pub(crate) fn read_exact(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.buf.len() - self.start < n {
            self.fill()?;
        }
        let out = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        Ok(out)
    }

    /// Reads and drops `n` bytes.
    pub(crate) fn discard(&mut self, mut n: u64) -> Result<()> {
        loop {
            let avail = (self.buf.len() - self.start) as u64;
            if avail >= n {
                self.start += n as usize;
                return Ok(());
            }
            n -= avail;
            self.start = self.buf.len();
            self.fill()?;
        }
    }

    pub(crate) fn write_all(&mut self, data: &[u8]) -> Result<()> {
        let r = match &mut self.stream {
            Stream::Plain(t) => t.write_all(data).and_then(|_| t.flush()),
            Stream::Tls(s) => s.write_all(data).and_then(|_| s.flush()),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        };
        r.map_err(|e| self.io_error(e))
    }

    /// Whether the server has sent something, waiting at most `wait` for it.
    pub(crate) fn wait_readable(&mut self, wait: Duration) -> Result<bool> {
        if self.start < self.buf.len() {
            return Ok(true);
        }
        let Some(tcp) = self.tcp() else {
            return Err(self.io_error(io::ErrorKind::NotConnected.into()));
        };
        let set = |t: &TcpStream, d: Duration| t.set_read_timeout(Some(d));
        set(tcp, wait.max(Duration::from_millis(1))).map_err(|e| self.io_error(e))?;
        let r = self.fill_raw();
        if let Some(tcp) = self.tcp() {
            set(tcp, self.timeout).map_err(|e| self.io_error(e))?;
        }
        match r {
            Ok(0) => Err(self.io_error(io::ErrorKind::UnexpectedEof.into())),
            // A TLS record may be incomplete yet: OpenSSL keeps what it has.
            Ok(_) => Ok(self.start < self.buf.len()),
            Err(e) if is_timeout(e.kind()) => Ok(false),
            Err(e) => Err(self.io_error(e)),
        }
    }

    /// Closes the TLS session (best effort) and the connection.
    pub(crate) fn shutdown(&mut self) {
        if let Stream::Tls(s) = &mut self.stream {
            let _ = s.shutdown();
        }
        self.stream = Stream::Gone;
    }
}

/// What a server said, for a message: printable ASCII (others as `?`), at most 300
/// characters.
pub(crate) fn sanitize(text: &[u8]) -> String {
    const MAX: usize = 300;
    let mut s: String = text
        .iter()
        .take(MAX)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    if text.len() > MAX {
        s.push('…');
    }
    s.trim().to_string()
}
