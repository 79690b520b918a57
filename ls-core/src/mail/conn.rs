//! The connection the three mail clients share: TCP, then TLS (at once or after
//! STARTTLS/STLS), read as bounded lines and counted bytes.

use super::tls::{connect_tcp, effective_timeout, is_timeout, TlsConnector};
use super::Account;
use crate::error::{Error, Result};
use openssl::ssl::SslStream;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The longest line a server may send (a hostile server cannot make us hold more).
pub(crate) const MAX_LINE: usize = 64 * 1024;
/// The read buffer is given back when it grew past this (it only holds lines and the pieces
/// of a literal not yet taken: large data is read into its own vector).
const KEEP_BUF: usize = 256 * 1024;

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
    /// The end of the command in progress (see [`Conn::set_deadline`]).
    deadline: Option<Instant>,
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
            deadline: None,
        };
        if url.scheme.implicit_tls() {
            conn.start_tls(tls)?;
        }
        Ok(conn)
    }

    /// The answer to a command must be complete within `budget` (besides each read's own
    /// timeout: a server that sends a byte now and then cannot keep the session forever);
    /// `None`: no overall limit. A read after the deadline is `Timeout`.
    pub(crate) fn set_deadline(&mut self, budget: Option<Duration>) {
        self.deadline = budget.map(|b| Instant::now() + b);
    }

    /// The timeout of one read (the account's).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn past_deadline(&self) -> Option<Error> {
        match self.deadline {
            Some(d) if Instant::now() >= d => Some(Error::Timeout(format!(
                "{} did not complete its answer in time",
                self.peer
            ))),
            _ => None,
        }
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
        if self.buf.capacity() > KEEP_BUF && self.buf.len() <= KEEP_BUF / 4 {
            self.buf.shrink_to(KEEP_BUF / 4);
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
        if let Some(e) = self.past_deadline() {
            return Err(e);
        }
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

    /// Exactly `n` bytes (an IMAP literal). What the buffer does not hold yet is read
    /// straight into the result (one copy of a large mail, and the buffer stays small).
    pub(crate) fn read_exact(&mut self, n: usize) -> Result<Vec<u8>> {
        let have = (self.buf.len() - self.start).min(n);
        let mut out = Vec::with_capacity(n);
        out.extend_from_slice(&self.buf[self.start..self.start + have]);
        self.start += have;
        if out.len() == n {
            return Ok(out);
        }
        out.resize(n, 0);
        let mut at = have;
        while at < n {
            if let Some(e) = self.past_deadline() {
                return Err(e);
            }
            let r = match &mut self.stream {
                Stream::Plain(t) => t.read(&mut out[at..]),
                Stream::Tls(s) => s.read(&mut out[at..]),
                Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
            };
            match r {
                Ok(0) => return Err(self.io_error(io::ErrorKind::UnexpectedEof.into())),
                Ok(k) => at += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e)),
            }
        }
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
