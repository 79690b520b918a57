//! TLS (OpenSSL) and HTTP/1.1 for the service: bounded connections, bounded requests, header,
//! body and idle timeouts, keep-alive. One thread per connection, at most `max_connections`.
//!
//! # Model
//!
//! [`serve`] / [`serve_with_stats`] run a non-blocking accept loop that polls the `shutdown`
//! flag every few milliseconds. Every accepted connection gets its own thread
//! (`ls-http-conn`, 1 MiB stack) while fewer than [`Limits::max_connections`] are open; over
//! the limit the socket is closed at once and [`HttpStats::refused_over_limit`] counts it.
//! Once `shutdown` is set the listener is closed, idle keep-alive connections close within
//! ~200 ms, requests in progress are finished (their response says `Connection: close`), and
//! `serve` returns when every connection is done or after [`SHUTDOWN_GRACE`].
//!
//! # Deadlines
//!
//! Every timeout is a deadline for a whole phase, not a per-read timeout: before each socket
//! read or write the socket timeout is set to the time left until the deadline, so a client
//! trickling one byte at a time is still cut off when the deadline passes.
//!
//! * TLS handshake: [`Limits::handshake_timeout`] from the accept.
//! * Request head (request line and header fields): [`Limits::header_timeout`] from the
//!   request's first byte. The first request of a connection must also *start* within
//!   `header_timeout` of the connection being ready (after the handshake).
//! * Body: [`Limits::body_timeout`] for the whole body, from the end of the head (or from the
//!   `100 Continue`).
//! * Between requests on a kept-alive connection: [`Limits::idle_timeout`] until the next
//!   request's first byte.
//! * Each response (and each `100 Continue`): [`Limits::write_timeout`].
//!
//! # HTTP/1.1 parsing decisions
//!
//! The parser is strict, to leave no room for request smuggling behind a proxy:
//!
//! * Lines must end in CRLF. A bare LF or a bare CR anywhere in the head is rejected with
//!   400 (RFC 9112 §2.2 allows either choice; we do not tolerate bare LF). Empty lines
//!   (CRLF or LF) *before* a request line are skipped, as RFC 9112 §2.2 recommends.
//! * The request line is exactly `method SP target SP HTTP/d.d`. The method may be any token
//!   and is passed to the handler unchanged. `HTTP/1.0` and `HTTP/1.1` (and `HTTP/1.x`,
//!   treated as 1.1) are served; another major version gets 505; anything else 400.
//! * The target must be visible ASCII without `#`: origin form (`/path?query`), absolute form
//!   (`http://host/path?query`, reduced to path and query) or `*` for `OPTIONS`. Path and
//!   query are passed as sent (no percent-decoding).
//! * Header fields: `name: value`, name a token (no whitespace before the colon), value
//!   without control characters other than HTAB; leading/trailing SP/HTAB trimmed; bytes
//!   ≥ 0x80 allowed and converted to UTF-8 lossily. obs-fold (a line starting with SP/HTAB)
//!   is rejected with 400. At most 128 fields; the head (request line + fields + CRLFs) at
//!   most [`Limits::max_header_bytes`], else 431.
//! * HTTP/1.1 requests need exactly one `Host` (RFC 9112 §3.2), else 400; HTTP/1.0 may omit it.
//! * Framing: `Content-Length` (digits only; repeated or list values must all be equal, else
//!   400; a value too large for u64 or above [`Limits::max_body_bytes`] gets 413 before the
//!   body is read) or `Transfer-Encoding: chunked` (chunk extensions and trailer fields are
//!   read and ignored; the trailer section counts against `max_header_bytes`). Both together,
//!   `Transfer-Encoding` in an HTTP/1.0 request, or a coding list not ending in `chunked` get
//!   400; other codings before `chunked` get 501. Neither header: no body.
//! * `Expect: 100-continue` (HTTP/1.1 only) gets `HTTP/1.1 100 Continue` before the body is
//!   read, unless the declared body is too large (413 instead) or body bytes already arrived.
//!   Other expectations are ignored.
//! * Keep-alive: HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
//!   `Connection: keep-alive` (answered with `Connection: keep-alive`). Pipelined requests
//!   are answered in order.
//!
//! Errors found by this layer (400, 408, 413, 431, 501, 505) are answered with a short
//! `text/plain` body and `Connection: close`, and the connection is closed. A handler panic
//! is answered with 500 and the connection closed; the server keeps running (the panic
//! message still goes through the process's panic hook).
//!
//! # Responses
//!
//! `HTTP/1.1 <status> <reason>`, `Content-Type` (when non-empty), `Content-Length` (not for
//! 204 and 304), `Connection: close` when the connection is closed after the response, then
//! [`Response::headers`]. Handler headers whose name is not a token or whose value holds CR,
//! LF or NUL are dropped, and so are `Content-Length`, `Transfer-Encoding` and `Connection`
//! (this layer frames the message; a handler `Connection: close` closes the connection). A
//! status outside 200..=599 is replaced by 500. No body is written for `HEAD`, 204 or 304.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use openssl::pkey::PKey;
use openssl::ssl::{
    HandshakeError, SslAcceptor, SslMethod, SslSessionCacheMode, SslStream, SslVerifyMode,
};
use openssl::x509::{X509VerifyResult, X509};

/// How long [`serve`] waits, after `shutdown` is set, for open connections to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Sleep of the accept loop when no connection is waiting.
const ACCEPT_POLL: Duration = Duration::from_millis(10);
/// Back-off after an accept error other than "no connection waiting" (e.g. out of files).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// How often an idle connection checks the shutdown flag.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);
const CONNECTION_STACK: usize = 1024 * 1024;
const READ_CHUNK: usize = 16 * 1024;
const BODY_READ_CHUNK: usize = 64 * 1024;
/// Bodies are not preallocated beyond this from a declared Content-Length.
const BODY_PREALLOC: usize = 1024 * 1024;
const MAX_HEADER_FIELDS: usize = 128;
const MAX_CHUNK_LINE: usize = 4096;
/// After an error response, unread request bytes are drained for at most this long / this
/// many bytes before the socket is closed, so the close does not reset the connection and
/// destroy the response in flight.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;
/// Coalesce head and body into one write up to this size.
const COALESCE_LIMIT: usize = 64 * 1024;

/// A request, read whole.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
    /// DER of the TLS client certificate, when the client presented one (and it verified).
    pub client_cert: Option<Vec<u8>>,
}

impl Request {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: content_type.to_string(),
            headers: Vec::new(),
            body,
        }
    }
    pub fn text(status: u16, body: &str) -> Response {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            body.as_bytes().to_vec(),
        )
    }
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> Response;
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    /// From accepting the connection to the end of the TLS handshake.
    pub handshake_timeout: Duration,
    /// From the first byte of a request to the end of its headers.
    pub header_timeout: Duration,
    /// For the whole body once the headers are in.
    pub body_timeout: Duration,
    /// Waiting for the next request on a kept-alive connection.
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 128 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// Counters of the HTTP layer, for the service's `/metrics`. All are monotonic counters except
/// `open_connections`, a gauge. Share one `Arc<HttpStats>` with [`serve_with_stats`].
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Connections being served right now (gauge).
    pub open_connections: AtomicU64,
    /// Connections accepted and given a thread (refused ones are not counted here).
    pub accepted: AtomicU64,
    /// Connections closed at once because `max_connections` were open (or no thread could be
    /// started).
    pub refused_over_limit: AtomicU64,
    /// Deadlines that passed: TLS handshake, request head, body, response write, and a new
    /// connection whose first request never started within `header_timeout`. (Idle kept-alive
    /// connections closing after `idle_timeout` are normal and not counted.)
    pub timeouts: AtomicU64,
    /// Requests refused by this layer: malformed or unsupported (400, 431, 501, 505) or too
    /// large (413).
    pub bad_requests: AtomicU64,
    /// Of `bad_requests`, those refused with 413 (body larger than `max_body_bytes`).
    pub too_large: AtomicU64,
    /// TLS handshakes that failed (including handshake timeouts, also counted in `timeouts`,
    /// and clients refused for lacking a valid client certificate).
    pub tls_failures: AtomicU64,
    /// Requests passed to the handler.
    pub requests: AtomicU64,
    /// Handler calls that panicked (answered with 500).
    pub handler_panics: AtomicU64,
}

/// A plain copy of [`HttpStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStatsSnapshot {
    pub open_connections: u64,
    pub accepted: u64,
    pub refused_over_limit: u64,
    pub timeouts: u64,
    pub bad_requests: u64,
    pub too_large: u64,
    pub tls_failures: u64,
    pub requests: u64,
    pub handler_panics: u64,
}

impl HttpStats {
    pub fn snapshot(&self) -> HttpStatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HttpStatsSnapshot {
            open_connections: get(&self.open_connections),
            accepted: get(&self.accepted),
            refused_over_limit: get(&self.refused_over_limit),
            timeouts: get(&self.timeouts),
            bad_requests: get(&self.bad_requests),
            too_large: get(&self.too_large),
            tls_failures: get(&self.tls_failures),
            requests: get(&self.requests),
            handler_panics: get(&self.handler_panics),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Serve `listener` until `shutdown` is set. With `tls`, every connection does a TLS handshake
/// first. Requests are passed to `handler` one at a time per connection.
pub fn serve(
    listener: TcpListener,
    tls: Option<SslAcceptor>,
    limits: Limits,
    handler: Arc<dyn Handler>,
    shutdown: Arc<AtomicBool>,
) -> io::Result<()> {
    serve_with_stats(
        listener,
        tls,
        limits,
        handler,
        shutdown,
        Arc::new(HttpStats::default()),
    )
}

/// [`serve`], counting into `stats`. Returns an error only if the listener cannot be made
/// non-blocking; accept errors (e.g. out of file descriptors) are retried after a short pause.
pub fn serve_with_stats(
    listener: TcpListener,
    tls: Option<SslAcceptor>,
    limits: Limits,
    handler: Arc<dyn Handler>,
    shutdown: Arc<AtomicBool>,
    stats: Arc<HttpStats>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let tls = tls.map(Arc::new);
    let limits = Arc::new(limits);
    // Connections of this `serve` call (stats may be shared between listeners).
    let live = Arc::new(AtomicUsize::new(0));

    while !shutdown.load(Ordering::SeqCst) {
        let (tcp, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                thread::sleep(ACCEPT_ERROR_BACKOFF);
                continue;
            }
        };
        if live.load(Ordering::SeqCst) >= limits.max_connections {
            bump(&stats.refused_over_limit);
            drop(tcp);
            continue;
        }
        let guard = LiveGuard::new(live.clone(), stats.clone());
        let (tls, limits, handler, shutdown2, stats2) = (
            tls.clone(),
            limits.clone(),
            handler.clone(),
            shutdown.clone(),
            stats.clone(),
        );
        let spawned = thread::Builder::new()
            .name("ls-http-conn".to_string())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let _guard = guard;
                run_connection(
                    tcp,
                    peer,
                    tls.as_deref(),
                    &limits,
                    &*handler,
                    &shutdown2,
                    &stats2,
                );
            });
        match spawned {
            Ok(_) => bump(&stats.accepted),
            // The closure (socket and guard) was dropped: the connection is closed.
            Err(_) => bump(&stats.refused_over_limit),
        }
    }

    drop(listener);
    let grace_end = Instant::now() + SHUTDOWN_GRACE;
    while live.load(Ordering::SeqCst) > 0 && Instant::now() < grace_end {
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Counts a connection as open for its lifetime (decrements even if the thread panics).
struct LiveGuard {
    live: Arc<AtomicUsize>,
    stats: Arc<HttpStats>,
}

impl LiveGuard {
    fn new(live: Arc<AtomicUsize>, stats: Arc<HttpStats>) -> LiveGuard {
        live.fetch_add(1, Ordering::SeqCst);
        stats.open_connections.fetch_add(1, Ordering::Relaxed);
        LiveGuard { live, stats }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.stats.open_connections.fetch_sub(1, Ordering::Relaxed);
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Build the TLS acceptor: Mozilla "intermediate" (v5) settings, TLS 1.2 and 1.3.
///
/// `cert_chain_pem` holds the server certificate first, then any intermediates. `key_pem` is
/// its unencrypted private key, PKCS#8 (`BEGIN PRIVATE KEY`) or traditional
/// (`BEGIN RSA/EC PRIVATE KEY`). With `client_ca_pem`, client certificates issued by those CAs
/// (and only those) are requested and verified, and `require_client_cert` makes them
/// mandatory (handshakes without one fail). The server-side session cache is on, with a
/// session id context, so clients can resume (also with client certificates).
pub fn tls_acceptor(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
    require_client_cert: bool,
) -> Result<SslAcceptor, String> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|e| format!("TLS setup failed: {e}"))?;

    let chain = X509::stack_from_pem(cert_chain_pem)
        .map_err(|e| format!("cannot read the certificate chain PEM: {e}"))?;
    let mut chain = chain.into_iter();
    let leaf = chain
        .next()
        .ok_or_else(|| "no certificate in the certificate chain PEM".to_string())?;
    builder
        .set_certificate(&leaf)
        .map_err(|e| format!("cannot use the server certificate: {e}"))?;
    for cert in chain {
        builder
            .add_extra_chain_cert(cert)
            .map_err(|e| format!("cannot add an intermediate certificate: {e}"))?;
    }

    if contains(key_pem, b"ENCRYPTED") {
        return Err("the private key PEM is encrypted; an unencrypted key is required".into());
    }
    // The callback keeps OpenSSL from prompting on the terminal for a passphrase.
    let key = PKey::private_key_from_pem_callback(key_pem, |_| Ok(0))
        .map_err(|e| format!("cannot read the private key PEM: {e}"))?;
    let matches = leaf
        .public_key()
        .map(|public| public.public_eq(&key))
        .unwrap_or(false);
    if !matches {
        return Err("the private key does not match the server certificate".into());
    }
    builder
        .set_private_key(&key)
        .map_err(|e| format!("cannot use the private key: {e}"))?;
    builder
        .check_private_key()
        .map_err(|_| "the private key does not match the server certificate".to_string())?;

    match client_ca_pem {
        None if require_client_cert => {
            return Err("client certificates are required but no client CA was given".into())
        }
        None => {}
        Some(ca_pem) => {
            let cas = X509::stack_from_pem(ca_pem)
                .map_err(|e| format!("cannot read the client CA PEM: {e}"))?;
            if cas.is_empty() {
                return Err("no certificate in the client CA PEM".into());
            }
            for ca in &cas {
                builder
                    .cert_store_mut()
                    .add_cert(ca.clone())
                    .map_err(|e| format!("cannot add a client CA: {e}"))?;
                builder
                    .add_client_ca(ca)
                    .map_err(|e| format!("cannot add a client CA: {e}"))?;
            }
            builder.set_verify(if require_client_cert {
                SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
            } else {
                SslVerifyMode::PEER
            });
        }
    }

    builder.set_session_cache_mode(SslSessionCacheMode::SERVER);
    builder
        .set_session_id_context(b"layersec-server")
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    Ok(builder.build())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Transport: a TCP stream whose reads and writes honour deadlines.

/// The time left until `deadline`, at least 1 ms (a zero socket timeout is invalid), or None
/// when it has passed.
fn time_left(deadline: Instant) -> Option<Duration> {
    let now = Instant::now();
    if now >= deadline {
        None
    } else {
        Some((deadline - now).max(Duration::from_millis(1)))
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A TCP stream with read and write deadlines. A passed deadline reads/writes as
/// `WouldBlock`, which OpenSSL treats as retriable (so a TLS stream stays usable after an idle
/// poll times out).
struct Conn {
    tcp: TcpStream,
    read_deadline: Option<Instant>,
    write_deadline: Option<Instant>,
}

fn timeout_error(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::TimedOut {
        io::ErrorKind::WouldBlock.into()
    } else {
        e
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.read_deadline {
            let left = time_left(deadline).ok_or(io::ErrorKind::WouldBlock)?;
            self.tcp.set_read_timeout(Some(left))?;
        }
        self.tcp.read(buf).map_err(timeout_error)
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(deadline) = self.write_deadline {
            let left = time_left(deadline).ok_or(io::ErrorKind::WouldBlock)?;
            self.tcp.set_write_timeout(Some(left))?;
        }
        self.tcp.write(buf).map_err(timeout_error)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

enum Stream {
    Plain(Conn),
    Tls(SslStream<Conn>),
}

impl Stream {
    fn conn(&mut self) -> &mut Conn {
        match self {
            Stream::Plain(c) => c,
            Stream::Tls(s) => s.get_mut(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(c) => c.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(c) => c.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(c) => c.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One connection.

/// Why a request could not be served.
#[derive(Debug, PartialEq, Eq)]
enum Fail {
    /// Close without a response: the peer went away or an I/O error.
    Close,
    /// A read deadline passed: 408 if it can be written, then close.
    Timeout,
    /// Answer with this status and a short text, then close.
    Reject(u16, &'static str),
}

/// What came before the next request.
enum Next {
    /// The first byte of a request is in the buffer.
    Request,
    /// The wait deadline passed (or shutdown): close quietly.
    Idle,
    /// The peer closed or the connection failed.
    Closed,
}

fn run_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<&SslAcceptor>,
    limits: &Limits,
    handler: &dyn Handler,
    shutdown: &AtomicBool,
    stats: &HttpStats,
) {
    let accepted_at = Instant::now();
    // Accepted sockets inherit O_NONBLOCK from the listener on some systems.
    if tcp.set_nonblocking(false).is_err() {
        return;
    }
    let _ = tcp.set_nodelay(true);
    let mut conn = Conn {
        tcp,
        read_deadline: None,
        write_deadline: None,
    };
    let (stream, client_cert) = match tls {
        None => (Stream::Plain(conn), None),
        Some(acceptor) => {
            let deadline = accepted_at + limits.handshake_timeout;
            conn.read_deadline = Some(deadline);
            conn.write_deadline = Some(deadline);
            match acceptor.accept(conn) {
                Ok(s) => {
                    let cert = if s.ssl().verify_result() == X509VerifyResult::OK {
                        s.ssl().peer_certificate().and_then(|c| c.to_der().ok())
                    } else {
                        None
                    };
                    (Stream::Tls(s), cert)
                }
                Err(e) => {
                    bump(&stats.tls_failures);
                    if matches!(e, HandshakeError::WouldBlock(_)) {
                        bump(&stats.timeouts);
                    }
                    return;
                }
            }
        }
    };

    let mut session = Session {
        stream,
        buf: Vec::with_capacity(READ_CHUNK),
        peer,
        client_cert,
        limits,
        stats,
        shutdown,
        is_head: false,
    };
    let mut first = true;
    loop {
        let wait = if first {
            limits.header_timeout
        } else {
            limits.idle_timeout
        };
        match session.await_request(Instant::now() + wait) {
            Next::Request => {}
            Next::Idle => {
                if first && !shutdown.load(Ordering::SeqCst) {
                    bump(&stats.timeouts);
                }
                session.close(false);
                return;
            }
            Next::Closed => return,
        }
        first = false;
        match session.one_request(handler) {
            Ok(true) => {}
            Ok(false) => {
                let linger = !session.buf.is_empty();
                session.close(linger);
                return;
            }
            Err(Fail::Close) => return,
            Err(Fail::Timeout) => {
                bump(&stats.timeouts);
                let _ = session.send_error(408, "request timeout");
                session.close(false);
                return;
            }
            Err(Fail::Reject(status, message)) => {
                bump(&stats.bad_requests);
                if status == 413 {
                    bump(&stats.too_large);
                }
                let _ = session.send_error(status, message);
                session.close(true);
                return;
            }
        }
    }
}

struct Session<'a> {
    stream: Stream,
    /// Bytes read and not consumed yet (the start of the next request when pipelined).
    buf: Vec<u8>,
    peer: SocketAddr,
    client_cert: Option<Vec<u8>>,
    limits: &'a Limits,
    stats: &'a HttpStats,
    shutdown: &'a AtomicBool,
    /// The current request is a HEAD (error responses then have no body either).
    is_head: bool,
}

impl Session<'_> {
    /// Read up to READ_CHUNK more bytes into `buf` before `deadline`; Ok(0) at end of stream.
    fn fill(&mut self, deadline: Instant) -> Result<usize, Fail> {
        self.stream.conn().read_deadline = Some(deadline);
        let len = self.buf.len();
        self.buf.resize(len + READ_CHUNK, 0);
        let result = loop {
            match self.stream.read(&mut self.buf[len..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(n) => {
                self.buf.truncate(len + n);
                Ok(n)
            }
            Err(e) => {
                self.buf.truncate(len);
                Err(if is_timeout(&e) {
                    Fail::Timeout
                } else {
                    Fail::Close
                })
            }
        }
    }

    /// Wait until the first byte of a request is buffered, skipping empty lines.
    fn await_request(&mut self, deadline: Instant) -> Next {
        loop {
            let blank = self
                .buf
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            self.buf.drain(..blank);
            if !self.buf.is_empty() {
                return Next::Request;
            }
            if self.shutdown.load(Ordering::SeqCst) {
                return Next::Idle;
            }
            let now = Instant::now();
            if now >= deadline {
                return Next::Idle;
            }
            match self.fill(deadline.min(now + SHUTDOWN_POLL)) {
                Ok(0) => return Next::Closed,
                Ok(_) | Err(Fail::Timeout) => {}
                Err(_) => return Next::Closed,
            }
        }
    }

    /// Read until the end of the head is buffered; returns the head's length (with the final
    /// CRLF CRLF).
    fn read_head(&mut self, deadline: Instant) -> Result<usize, Fail> {
        let max = self.limits.max_header_bytes;
        let mut scanned = 0;
        loop {
            while scanned < self.buf.len() {
                if self.buf[scanned] == b'\n' {
                    if scanned == 0 || self.buf[scanned - 1] != b'\r' {
                        return Err(Fail::Reject(400, "bare LF in the request head"));
                    }
                    if scanned >= 3 && &self.buf[scanned - 3..=scanned] == b"\r\n\r\n" {
                        let end = scanned + 1;
                        if end > max {
                            return Err(Fail::Reject(431, "request head too large"));
                        }
                        return Ok(end);
                    }
                }
                scanned += 1;
            }
            if scanned >= max {
                return Err(Fail::Reject(431, "request head too large"));
            }
            match self.fill(deadline)? {
                0 => return Err(Fail::Close),
                _ => continue,
            }
        }
    }

    /// Read one request, pass it to the handler and write the response. Ok(keep-alive).
    fn one_request(&mut self, handler: &dyn Handler) -> Result<bool, Fail> {
        self.is_head = false;
        let header_deadline = Instant::now() + self.limits.header_timeout;
        let end = self.read_head(header_deadline)?;
        let head = parse_head(&self.buf[..end])?;
        self.buf.drain(..end);
        self.is_head = head.method == "HEAD";

        let framing = framing(&head)?;
        let mut keep_alive = head.keep_alive();
        let max_body = self.limits.max_body_bytes;
        if let Framing::Length(n) = framing {
            if n > max_body {
                return Err(Fail::Reject(413, "request body too large"));
            }
        }
        let expects_body = match framing {
            Framing::None => false,
            Framing::Length(n) => n > 0,
            Framing::Chunked => true,
        };
        if head.expect_continue && expects_body && self.buf.is_empty() {
            self.write_all_by(
                b"HTTP/1.1 100 Continue\r\n\r\n",
                Instant::now() + self.limits.write_timeout,
            )?;
        }

        let body_deadline = Instant::now() + self.limits.body_timeout;
        let body = match framing {
            Framing::None => Vec::new(),
            Framing::Length(n) => self.read_body_length(n, body_deadline)?,
            Framing::Chunked => self.read_body_chunked(max_body, body_deadline)?,
        };

        bump(&self.stats.requests);
        let request = Request {
            method: head.method,
            path: head.path,
            query: head.query,
            headers: head.headers,
            body,
            peer: self.peer,
            client_cert: self.client_cert.clone(),
        };
        let response = match catch_unwind(AssertUnwindSafe(|| handler.handle(request))) {
            Ok(response) => response,
            Err(_) => {
                bump(&self.stats.handler_panics);
                keep_alive = false;
                Response::text(500, "internal server error\n")
            }
        };
        if response
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && has_token(v, "close"))
        {
            keep_alive = false;
        }
        if self.shutdown.load(Ordering::SeqCst) {
            keep_alive = false;
        }
        let keep_alive_header = keep_alive && head.minor == 0;
        let head_bytes = render_head(&response, !keep_alive, keep_alive_header);
        let send_body = !self.is_head && !matches!(response_status(&response), 204 | 304);
        let deadline = Instant::now() + self.limits.write_timeout;
        if send_body && head_bytes.len() + response.body.len() <= COALESCE_LIMIT {
            let mut all = head_bytes;
            all.extend_from_slice(&response.body);
            self.write_all_by(&all, deadline)?;
        } else {
            self.write_all_by(&head_bytes, deadline)?;
            if send_body {
                self.write_all_by(&response.body, deadline)?;
            }
        }
        Ok(keep_alive)
    }

    fn read_body_length(&mut self, len: u64, deadline: Instant) -> Result<Vec<u8>, Fail> {
        let len = usize::try_from(len).map_err(|_| Fail::Reject(413, "request body too large"))?;
        let buffered = len.min(self.buf.len());
        let mut body = Vec::with_capacity(len.min(BODY_PREALLOC).max(buffered));
        body.extend_from_slice(&self.buf[..buffered]);
        self.buf.drain(..buffered);
        self.stream.conn().read_deadline = Some(deadline);
        while body.len() < len {
            let old = body.len();
            let want = (len - old).min(BODY_READ_CHUNK);
            body.resize(old + want, 0);
            match self.stream.read(&mut body[old..]) {
                Ok(0) => return Err(Fail::Close),
                Ok(n) => body.truncate(old + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => body.truncate(old),
                Err(e) if is_timeout(&e) => return Err(Fail::Timeout),
                Err(_) => return Err(Fail::Close),
            }
        }
        Ok(body)
    }

    /// One CRLF-terminated line (without the CRLF), at most `max` bytes.
    fn read_line(
        &mut self,
        deadline: Instant,
        max: usize,
        too_long: Fail,
    ) -> Result<Vec<u8>, Fail> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|b| *b == b'\n') {
                let i = scanned + i;
                if i == 0 || self.buf[i - 1] != b'\r' {
                    return Err(Fail::Reject(400, "bare LF in the chunked body"));
                }
                if i - 1 > max {
                    return Err(too_long);
                }
                let line = self.buf[..i - 1].to_vec();
                self.buf.drain(..=i);
                if line.contains(&b'\r') {
                    return Err(Fail::Reject(400, "bare CR in the chunked body"));
                }
                return Ok(line);
            }
            scanned = self.buf.len();
            // The line so far, plus its CR.
            if scanned > max + 1 {
                return Err(too_long);
            }
            if self.fill(deadline)? == 0 {
                return Err(Fail::Close);
            }
        }
    }

    fn read_body_chunked(&mut self, max: u64, deadline: Instant) -> Result<Vec<u8>, Fail> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(
                deadline,
                MAX_CHUNK_LINE,
                Fail::Reject(400, "chunk size line too long"),
            )?;
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                break;
            }
            if size > max - body.len() as u64 {
                return Err(Fail::Reject(413, "request body too large"));
            }
            let mut need = size as usize; // ≤ max_body_bytes - body.len(), fits
            while need > 0 {
                if self.buf.is_empty() && self.fill(deadline)? == 0 {
                    return Err(Fail::Close);
                }
                let take = need.min(self.buf.len());
                body.extend_from_slice(&self.buf[..take]);
                self.buf.drain(..take);
                need -= take;
            }
            let end = self.read_line(deadline, 0, Fail::Reject(400, "chunk data too long"))?;
            if !end.is_empty() {
                return Err(Fail::Reject(400, "chunk data too long"));
            }
        }
        // Trailer section: fields are read and ignored, bounded like a head.
        let max_trailer = self.limits.max_header_bytes;
        let mut trailer_bytes = 0usize;
        loop {
            let line = self.read_line(
                deadline,
                max_trailer,
                Fail::Reject(431, "trailer section too large"),
            )?;
            if line.is_empty() {
                return Ok(body);
            }
            trailer_bytes += line.len() + 2;
            if trailer_bytes > max_trailer {
                return Err(Fail::Reject(431, "trailer section too large"));
            }
            if matches!(line[0], b' ' | b'\t') {
                return Err(Fail::Reject(400, "obsolete line folding"));
            }
        }
    }

    fn write_all_by(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), Fail> {
        self.stream.conn().write_deadline = Some(deadline);
        let result = self
            .stream
            .write_all(bytes)
            .and_then(|_| self.stream.flush());
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                if is_timeout(&e) {
                    bump(&self.stats.timeouts);
                }
                Err(Fail::Close)
            }
        }
    }

    fn send_error(&mut self, status: u16, message: &str) -> Result<(), Fail> {
        let mut response = Response::text(status, message);
        response.body.push(b'\n');
        let mut bytes = render_head(&response, true, false);
        if !self.is_head {
            bytes.extend_from_slice(&response.body);
        }
        self.write_all_by(&bytes, Instant::now() + self.limits.write_timeout)
    }

    /// Close: TLS close_notify, FIN, and with `linger` drain what the client still sends (for
    /// a short while) so the close does not turn into a reset that destroys our response.
    fn close(mut self, linger: bool) {
        let deadline = Instant::now() + self.limits.write_timeout.min(LINGER_TIME);
        self.stream.conn().write_deadline = Some(deadline);
        if let Stream::Tls(s) = &mut self.stream {
            let _ = s.shutdown();
        }
        let conn = self.stream.conn();
        let _ = conn.tcp.shutdown(Shutdown::Write);
        if linger {
            conn.read_deadline = Some(Instant::now() + LINGER_TIME);
            let mut sink = [0u8; 8192];
            let mut drained = 0;
            while drained < LINGER_BYTES {
                match conn.read(&mut sink) {
                    Ok(0) => break,
                    Ok(n) => drained += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing.

#[derive(Debug)]
struct Head {
    method: String,
    path: String,
    query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1 and later 1.x.
    minor: u8,
    headers: Vec<(String, String)>,
    expect_continue: bool,
}

impl Head {
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn keep_alive(&self) -> bool {
        let connection: Vec<&str> = self.all("connection").collect();
        if connection.iter().any(|v| has_token(v, "close")) {
            return false;
        }
        self.minor >= 1 || connection.iter().any(|v| has_token(v, "keep-alive"))
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|b| is_tchar(*b))
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim_matches([' ', '\t']).eq_ignore_ascii_case(token))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Parse a head (request line and fields) ending in CRLF CRLF, with every LF preceded by CR.
fn parse_head(head: &[u8]) -> Result<Head, Fail> {
    let text = head.strip_suffix(b"\r\n\r\n").unwrap_or(head);
    let mut lines = text
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let bad = |why| Fail::Reject(400, why);

    let mut parts = request_line.split(|b| *b == b' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(bad("malformed request line")),
    };
    if !is_token(method) {
        return Err(bad("malformed method"));
    }
    let minor = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major != b'1' {
                return Err(Fail::Reject(505, "HTTP version not supported"));
            }
            (*minor - b'0').min(1)
        }
        _ => return Err(bad("malformed HTTP version")),
    };
    if target.is_empty()
        || !target.iter().all(|b| (0x21..=0x7e).contains(b))
        || target.contains(&b'#')
    {
        return Err(bad("malformed request target"));
    }
    // Visible ASCII only, so UTF-8.
    let target = String::from_utf8_lossy(target);
    let origin: &str = if target.starts_with('/') {
        &target
    } else if target == "*" {
        if method != b"OPTIONS" {
            return Err(bad("'*' target is only for OPTIONS"));
        }
        "*"
    } else {
        let lower = target.to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return Err(bad("malformed request target"));
        };
        // Drop the authority; "?query" with an empty path gets the path "/" below.
        match rest.find(['/', '?']) {
            Some(i) => &rest[i..],
            None => "/",
        }
    };
    let (path, query) = match origin.split_once('?') {
        Some((p, q)) => (p, q),
        None => (origin, ""),
    };
    let path = if path.is_empty() { "/" } else { path };

    let mut headers = Vec::new();
    for line in lines {
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return Err(bad("obsolete line folding"));
        }
        let colon = line
            .iter()
            .position(|b| *b == b':')
            .ok_or(bad("header field without a colon"))?;
        let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
        if !is_token(name) {
            return Err(bad("malformed header field name"));
        }
        if value
            .iter()
            .any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f)
        {
            return Err(bad("control character in a header field"));
        }
        if headers.len() == MAX_HEADER_FIELDS {
            return Err(Fail::Reject(431, "too many header fields"));
        }
        headers.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }

    let mut head = Head {
        method: String::from_utf8_lossy(method).into_owned(),
        path: path.to_string(),
        query: query.to_string(),
        minor,
        headers,
        expect_continue: false,
    };
    let hosts = head.all("host").count();
    if hosts > 1 || (hosts == 0 && minor >= 1) {
        return Err(bad("an HTTP/1.1 request needs exactly one Host"));
    }
    head.expect_continue = minor >= 1
        && head
            .all("expect")
            .any(|v| v.trim().eq_ignore_ascii_case("100-continue"));
    Ok(head)
}

fn framing(head: &Head) -> Result<Framing, Fail> {
    let bad = |why| Fail::Reject(400, why);
    let te: Vec<&str> = head.all("transfer-encoding").collect();
    let cl: Vec<&str> = head.all("content-length").collect();
    if !te.is_empty() {
        if !cl.is_empty() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if head.minor == 0 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        let codings: Vec<String> = te
            .iter()
            .flat_map(|v| v.split(','))
            .map(|c| c.trim_matches([' ', '\t']).to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        return match codings.last().map(String::as_str) {
            Some("chunked") if codings.len() == 1 => Ok(Framing::Chunked),
            Some("chunked") => Err(Fail::Reject(501, "unsupported transfer coding")),
            _ => Err(bad("Transfer-Encoding does not end in chunked")),
        };
    }
    let mut length: Option<u64> = None;
    for value in cl.iter().flat_map(|v| v.split(',')) {
        let digits = value.trim_matches([' ', '\t']);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("malformed Content-Length"));
        }
        // All digits: only overflow can fail, and that is "too large".
        let n = digits.parse::<u64>().unwrap_or(u64::MAX);
        match length {
            Some(m) if m != n => return Err(bad("conflicting Content-Length values")),
            _ => length = Some(n),
        }
    }
    Ok(length.map_or(Framing::None, Framing::Length))
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, Fail> {
    let bad = Fail::Reject(400, "malformed chunk size");
    let size = match line.iter().position(|b| *b == b';') {
        Some(i) => {
            let ext = &line[i + 1..];
            if ext.iter().any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f) {
                return Err(bad);
            }
            trim_ows(&line[..i])
        }
        None => line,
    };
    let size = match size.iter().position(|b| *b != b'0') {
        Some(i) => &size[i..],
        None if !size.is_empty() => return Ok(0),
        None => return Err(bad),
    };
    if size.len() > 15 || !size.iter().all(|b| b.is_ascii_hexdigit()) {
        // > 15 hex digits is more than any body we accept; treat as malformed.
        return Err(bad);
    }
    // Hex digits only, at most 60 bits.
    Ok(u64::from_str_radix(std::str::from_utf8(size).unwrap_or("0"), 16).unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// Responses.

fn response_status(response: &Response) -> u16 {
    if (200..=599).contains(&response.status) {
        response.status
    } else {
        500
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        425 => "Too Early",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => match status / 100 {
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

fn valid_header(name: &str, value: &str) -> bool {
    is_token(name.as_bytes()) && !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// Status line and header fields, ending in the empty line.
fn render_head(response: &Response, close: bool, keep_alive_header: bool) -> Vec<u8> {
    use std::fmt::Write as _;
    let status = response_status(response);
    let mut head = String::with_capacity(256);
    let _ = write!(head, "HTTP/1.1 {status} {}\r\n", reason(status));
    if !response.content_type.is_empty() && valid_header("content-type", &response.content_type) {
        let _ = write!(head, "Content-Type: {}\r\n", response.content_type);
    }
    if !matches!(status, 204 | 304) {
        let _ = write!(head, "Content-Length: {}\r\n", response.body.len());
    }
    if close {
        head.push_str("Connection: close\r\n");
    } else if keep_alive_header {
        head.push_str("Connection: keep-alive\r\n");
    }
    for (name, value) in &response.headers {
        let reserved = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r));
        if !reserved && valid_header(name, value) {
            let _ = write!(head, "{name}: {value}\r\n");
        }
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::Private;
    use openssl::ssl::SslConnector;
    use openssl::symm::Cipher;
    use openssl::x509::extension::{
        BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    };
    use openssl::x509::X509NameBuilder;
    use std::thread::JoinHandle;

    // ---- certificates ----

    fn ec_key() -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    /// A certificate for `key`, self-signed or signed by `issuer`.
    fn make_cert(
        cn: &str,
        key: &PKey<Private>,
        issuer: Option<(&X509, &PKey<Private>)>,
        ca: bool,
        client: bool,
    ) -> X509 {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        let serial = BigNum::from_u32(rand_serial()).unwrap();
        b.set_serial_number(&serial.to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        match issuer {
            Some((cert, _)) => b.set_issuer_name(cert.subject_name()).unwrap(),
            None => b.set_issuer_name(&name).unwrap(),
        }
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        if ca {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        } else {
            b.append_extension(BasicConstraints::new().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .build()
                    .unwrap(),
            )
            .unwrap();
            let eku = if client {
                ExtendedKeyUsage::new().client_auth().build().unwrap()
            } else {
                ExtendedKeyUsage::new().server_auth().build().unwrap()
            };
            b.append_extension(eku).unwrap();
            let san = SubjectAlternativeName::new()
                .dns("localhost")
                .build(&b.x509v3_context(issuer.map(|(c, _)| &**c), None))
                .unwrap();
            b.append_extension(san).unwrap();
        }
        let signer = issuer.map_or(key, |(_, k)| k);
        b.sign(signer, MessageDigest::sha256()).unwrap();
        b.build()
    }

    fn rand_serial() -> u32 {
        let mut bytes = [0u8; 4];
        openssl::rand::rand_bytes(&mut bytes).unwrap();
        u32::from_be_bytes(bytes) >> 1
    }

    /// A server identity: (acceptor, certificate PEM, PKCS#8 key PEM).
    fn server_identity() -> (Vec<u8>, Vec<u8>) {
        let key = ec_key();
        let cert = make_cert("localhost", &key, None, false, false);
        (
            cert.to_pem().unwrap(),
            key.private_key_to_pem_pkcs8().unwrap(),
        )
    }

    fn plain_acceptor() -> SslAcceptor {
        let (cert, key) = server_identity();
        tls_acceptor(&cert, &key, None, false).unwrap()
    }

    // ---- server ----

    struct Echo;

    impl Handler for Echo {
        fn handle(&self, req: Request) -> Response {
            match req.path.as_str() {
                "/panic" => panic!("test handler panic (expected)"),
                "/cert" => Response::new(
                    200,
                    "application/octet-stream",
                    req.client_cert.unwrap_or_default(),
                ),
                "/headers" => {
                    let mut r = Response::text(200, "h");
                    r.headers.push(("X-Ok".into(), "1".into()));
                    r.headers
                        .push(("X-Bad".into(), "a\r\nInjected: yes".into()));
                    r.headers.push(("Content-Length".into(), "999".into()));
                    r
                }
                "/nocontent" => Response::new(204, "", Vec::new()),
                "/slow" => {
                    thread::sleep(Duration::from_millis(700));
                    Response::text(200, "slow")
                }
                _ => {
                    let mut body =
                        format!("{} {} {}\n", req.method, req.path, req.query).into_bytes();
                    body.extend_from_slice(&req.body);
                    let mut r = Response::new(200, "text/plain", body);
                    if let Some(v) = req.header("x-echo") {
                        r.headers.push(("X-Echo".into(), v.to_string()));
                    }
                    r
                }
            }
        }
    }

    struct TestServer {
        addr: SocketAddr,
        shutdown: Arc<AtomicBool>,
        stats: Arc<HttpStats>,
        handle: Option<JoinHandle<io::Result<()>>>,
    }

    impl TestServer {
        fn start(limits: Limits, tls: Option<SslAcceptor>) -> TestServer {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let shutdown = Arc::new(AtomicBool::new(false));
            let stats = Arc::new(HttpStats::default());
            let (sd, st) = (shutdown.clone(), stats.clone());
            let handle = thread::spawn(move || {
                serve_with_stats(listener, tls, limits, Arc::new(Echo), sd, st)
            });
            TestServer {
                addr,
                shutdown,
                stats,
                handle: Some(handle),
            }
        }

        fn stats(&self) -> HttpStatsSnapshot {
            self.stats.snapshot()
        }

        /// Wait (generously) until `cond` holds on the stats.
        fn wait_for(&self, what: &str, cond: impl Fn(&HttpStatsSnapshot) -> bool) {
            let end = Instant::now() + Duration::from_secs(10);
            while !cond(&self.stats()) {
                assert!(
                    Instant::now() < end,
                    "timed out waiting for {what}: {:?}",
                    self.stats()
                );
                thread::sleep(Duration::from_millis(10));
            }
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.shutdown.store(true, Ordering::SeqCst);
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }

    fn limits() -> Limits {
        Limits {
            max_connections: 32,
            max_header_bytes: 4096,
            max_body_bytes: 1 << 20,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
        }
    }

    // ---- clients ----

    fn plain(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    fn connector(client: Option<(&X509, &PKey<Private>)>) -> SslConnector {
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
        b.set_verify(SslVerifyMode::NONE);
        if let Some((cert, key)) = client {
            b.set_certificate(cert).unwrap();
            b.set_private_key(key).unwrap();
        }
        b.build()
    }

    fn tls_connect(
        addr: SocketAddr,
        client: Option<(&X509, &PKey<Private>)>,
    ) -> Result<SslStream<TcpStream>, String> {
        let tcp = plain(addr);
        connector(client)
            .configure()
            .unwrap()
            .verify_hostname(false)
            .connect("localhost", tcp)
            .map_err(|e| e.to_string())
    }

    fn tls(addr: SocketAddr) -> SslStream<TcpStream> {
        tls_connect(addr, None).unwrap()
    }

    #[derive(Debug)]
    struct Resp {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Resp {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    /// Read one response; None at a clean end of stream before any byte. `buf` keeps what was
    /// read beyond it.
    fn read_response(r: &mut impl Read, buf: &mut Vec<u8>, head_request: bool) -> Option<Resp> {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match r.read(&mut chunk) {
                Ok(0) | Err(_) if buf.is_empty() => return None,
                Ok(0) => panic!("end of stream inside a response head: {buf:?}"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("read error inside a response head: {e}"),
            }
        };
        let head = String::from_utf8(buf[..end - 4].to_vec()).unwrap();
        buf.drain(..end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status: u16 = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = match resp.header("content-length") {
            Some(v) if !head_request => v.parse().unwrap(),
            _ => 0,
        };
        while buf.len() < len {
            let mut chunk = [0u8; 4096];
            let n = r.read(&mut chunk).expect("read error inside a body");
            assert!(n > 0, "end of stream inside a body");
            buf.extend_from_slice(&chunk[..n]);
        }
        resp.body = buf.drain(..len).collect();
        Some(resp)
    }

    fn roundtrip(s: &mut (impl Read + Write), request: &[u8]) -> Resp {
        s.write_all(request).unwrap();
        let mut buf = Vec::new();
        let r = read_response(s, &mut buf, false).expect("a response");
        assert!(buf.is_empty());
        r
    }

    /// True when the peer has closed (end of stream or reset), false on a read timeout.
    fn closed_by_peer(s: &mut impl Read) -> bool {
        let mut b = [0u8; 1024];
        loop {
            match s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if is_timeout(&e) => return false,
                Err(_) => return true,
            }
        }
    }

    // ---- tests ----

    #[test]
    fn tls_get_and_post_echo() {
        let server = TestServer::start(limits(), Some(plain_acceptor()));
        let mut c = tls(server.addr);
        let r = roundtrip(
            &mut c,
            b"GET /hello?x=1&y=2 HTTP/1.1\r\nHost: localhost\r\nX-Echo: hi\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "GET /hello x=1&y=2\n");
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(r.header("x-echo"), Some("hi"));
        assert!(closed_by_peer(&mut c));

        let mut c = tls(server.addr);
        let r = roundtrip(
            &mut c,
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 7\r\n\r\npayload",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "POST /echo \npayload");
        assert_eq!(r.header("connection"), None);
        let s = server.stats();
        assert_eq!(s.requests, 2);
        assert_eq!(s.tls_failures, 0);
    }

    #[test]
    fn keep_alive_two_requests_on_one_tls_connection() {
        let server = TestServer::start(limits(), Some(plain_acceptor()));
        let mut c = tls(server.addr);
        for i in 0..2 {
            let req = format!("GET /n{i} HTTP/1.1\r\nHost: x\r\n\r\n");
            let r = roundtrip(&mut c, req.as_bytes());
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), format!("GET /n{i} \n"));
        }
        let r = roundtrip(
            &mut c,
            b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.header("connection"), Some("close"));
        assert!(closed_by_peer(&mut c));
        assert_eq!(server.stats().accepted, 1);
        assert_eq!(server.stats().requests, 3);
    }

    #[test]
    fn pipelined_requests_answered_in_order() {
        let server = TestServer::start(limits(), None);
        let mut c = plain(server.addr);
        c.write_all(
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
              GET /b?q HTTP/1.1\r\nHost: x\r\n\r\n\
              HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut buf = Vec::new();
        let r = read_response(&mut c, &mut buf, false).unwrap();
        assert_eq!(r.text(), "POST /a \nabc");
        let r = read_response(&mut c, &mut buf, false).unwrap();
        assert_eq!(r.text(), "GET /b q\n");
        let r = read_response(&mut c, &mut buf, true).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-length"),
            Some("9"),
            "HEAD keeps the length"
        );
        let r = read_response(&mut c, &mut buf, false).unwrap();
        assert_eq!(r.text(), "GET /d \n");
        assert!(buf.is_empty(), "no HEAD body leaked: {buf:?}");
        assert!(closed_by_peer(&mut c));
    }

    #[test]
    fn chunked_request_body_with_extensions_and_trailers() {
        let server = TestServer::start(limits(), None);
        let mut c = plain(server.addr);
        let r = roundtrip(
            &mut c,
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=value\r\nhello\r\n6\r\n world\r\n000\r\nX-Trailer: t\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "POST /c \nhello world");
        // The framing was consumed exactly: the connection goes on.
        let r = roundtrip(&mut c, b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.text(), "GET /next \n");
        // Chunks split over several writes.
        c.write_all(b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r")
            .unwrap();
        thread::sleep(Duration::from_millis(50));
        c.write_all(b"\nab").unwrap();
        thread::sleep(Duration::from_millis(50));
        let r = roundtrip(&mut c, b"c\r\n0\r\n\r\n");
        assert_eq!(r.text(), "POST /s \nabc");
    }

    #[test]
    fn expect_100_continue() {
        let server = TestServer::start(limits(), None);
        let mut c = plain(server.addr);
        c.write_all(
            b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        )
        .unwrap();
        let mut buf = Vec::new();
        while !buf.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            assert_eq!(c.read(&mut b).unwrap(), 1);
            buf.push(b[0]);
        }
        assert_eq!(buf, b"HTTP/1.1 100 Continue\r\n\r\n");
        let r = roundtrip(&mut c, b"abcd");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "PUT /up \nabcd");
    }

    #[test]
    fn too_large_content_length_is_413_before_the_body() {
        let server = TestServer::start(limits(), None);
        for expect in ["", "Expect: 100-continue\r\n"] {
            let mut c = plain(server.addr);
            let req = format!(
                "POST /big HTTP/1.1\r\nHost: x\r\n{expect}Content-Length: 10485760\r\n\r\n"
            );
            // No body is sent: the answer must come anyway, and no 100 Continue.
            let r = roundtrip(&mut c, req.as_bytes());
            assert_eq!(r.status, 413);
            assert_eq!(r.header("connection"), Some("close"));
            assert!(closed_by_peer(&mut c));
        }
        let mut c = plain(server.addr);
        let r = roundtrip(
            &mut c,
            b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        );
        assert_eq!(r.status, 413);
        assert_eq!(server.stats().too_large, 3);
        assert_eq!(server.stats().bad_requests, 3);
        assert_eq!(server.stats().requests, 0);
    }

    #[test]
    fn too_large_chunked_body_is_413() {
        let server = TestServer::start(
            Limits {
                max_body_bytes: 16,
                ..limits()
            },
            None,
        );
        let mut c = plain(server.addr);
        let r = roundtrip(
            &mut c,
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n",
        );
        assert_eq!(r.status, 413, "17th byte announced");
        // Exactly the limit is fine.
        let mut c = plain(server.addr);
        let r = roundtrip(
            &mut c,
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "POST /c \n0123456789abcdef");
        let r = roundtrip(
            &mut c,
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n9\r\n",
        );
        assert_eq!(r.status, 413);
    }

    #[test]
    fn slowloris_head_is_cut_at_the_header_deadline() {
        let server = TestServer::start(
            Limits {
                header_timeout: Duration::from_secs(1),
                ..limits()
            },
            None,
        );
        let c = plain(server.addr);
        let mut reader = c.try_clone().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let done2 = done.clone();
        let start = Instant::now();
        let writer = thread::spawn(move || {
            let mut c = c;
            let request = b"GET /slowly-slowly-slowly-slowly-slowly HTTP/1.1\r\nHost: x\r\n\r\n";
            for b in request.iter() {
                if done2.load(Ordering::SeqCst) || c.write_all(&[*b]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(200));
            }
        });
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        let elapsed = start.elapsed();
        done.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "closed after {elapsed:?}");
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("HTTP/1.1 408 "), "{got}");
        server.wait_for("timeouts", |s| s.timeouts == 1);
    }

    #[test]
    fn body_deadline() {
        let server = TestServer::start(
            Limits {
                body_timeout: Duration::from_secs(1),
                ..limits()
            },
            None,
        );
        let mut c = plain(server.addr);
        let start = Instant::now();
        let r = roundtrip(
            &mut c,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
        );
        assert_eq!(r.status, 408);
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(closed_by_peer(&mut c));
    }

    #[test]
    fn idle_keep_alive_connection_is_closed() {
        let server = TestServer::start(
            Limits {
                idle_timeout: Duration::from_millis(500),
                ..limits()
            },
            None,
        );
        let mut c = plain(server.addr);
        assert_eq!(
            roundtrip(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status,
            200
        );
        let start = Instant::now();
        assert!(closed_by_peer(&mut c));
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        assert_eq!(server.stats().timeouts, 0, "idle closes are not timeouts");
    }

    #[test]
    fn silent_tls_client_does_not_delay_others() {
        let server = TestServer::start(limits(), Some(plain_acceptor()));
        let silent = plain(server.addr);
        let silent_plain_after_handshake = tls(server.addr);
        thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        let mut c = tls(server.addr);
        let r = roundtrip(
            &mut c,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
        drop((silent, silent_plain_after_handshake));
    }

    #[test]
    fn handshake_deadline_closes_a_silent_connection() {
        let server = TestServer::start(
            Limits {
                handshake_timeout: Duration::from_millis(500),
                ..limits()
            },
            Some(plain_acceptor()),
        );
        let mut silent = plain(server.addr);
        let start = Instant::now();
        assert!(closed_by_peer(&mut silent));
        assert!(start.elapsed() < Duration::from_secs(3));
        server.wait_for("a TLS failure and a timeout", |s| {
            s.tls_failures == 1 && s.timeouts == 1
        });
    }

    #[test]
    fn connection_limit() {
        let server = TestServer::start(
            Limits {
                max_connections: 2,
                ..limits()
            },
            None,
        );
        let c1 = plain(server.addr);
        let mut c2 = plain(server.addr);
        server.wait_for("two open connections", |s| s.open_connections == 2);
        let mut c3 = plain(server.addr);
        assert!(closed_by_peer(&mut c3), "third connection closed at once");
        server.wait_for("a refusal", |s| s.refused_over_limit == 1);
        // The held ones still work.
        assert_eq!(
            roundtrip(&mut c2, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status,
            200
        );
        drop(c1);
        server.wait_for("one open connection", |s| s.open_connections == 1);
        let mut c4 = plain(server.addr);
        assert_eq!(
            roundtrip(&mut c4, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status,
            200
        );
        assert_eq!(server.stats().accepted, 3);
    }

    #[test]
    fn handler_panic_is_500_and_server_keeps_running() {
        let server = TestServer::start(limits(), None);
        let mut c = plain(server.addr);
        let r = roundtrip(&mut c, b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 500);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(closed_by_peer(&mut c));
        let mut c = plain(server.addr);
        assert_eq!(
            roundtrip(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status,
            200
        );
        assert_eq!(server.stats().handler_panics, 1);
    }

    #[test]
    fn shutdown_stops_serve() {
        let mut server = TestServer::start(limits(), None);
        let mut idle = plain(server.addr);
        assert_eq!(
            roundtrip(&mut idle, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status,
            200
        );
        // A request in progress when the flag is set is finished, with Connection: close.
        let mut busy = plain(server.addr);
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        thread::sleep(Duration::from_millis(200));
        let start = Instant::now();
        server.shutdown.store(true, Ordering::SeqCst);
        let mut buf = Vec::new();
        let r = read_response(&mut busy, &mut buf, false).unwrap();
        assert_eq!(r.text(), "slow");
        assert_eq!(r.header("connection"), Some("close"));
        server.handle.take().unwrap().join().unwrap().unwrap();
        let elapsed = start.elapsed();
        assert!(
            elapsed < Duration::from_secs(3),
            "serve returned after {elapsed:?}"
        );
        assert!(closed_by_peer(&mut idle), "idle connection closed");
        assert!(TcpStream::connect(server.addr).is_err(), "listener closed");
    }

    #[test]
    fn mutual_tls() {
        let ca_key = ec_key();
        let ca = make_cert("Test CA", &ca_key, None, true, false);
        let client_key = ec_key();
        let client = make_cert("client", &client_key, Some((&ca, &ca_key)), false, true);
        let other_ca_key = ec_key();
        let other_ca = make_cert("Other CA", &other_ca_key, None, true, false);
        let stranger = make_cert(
            "stranger",
            &client_key,
            Some((&other_ca, &other_ca_key)),
            false,
            true,
        );
        let (cert_pem, key_pem) = server_identity();
        let ca_pem = ca.to_pem().unwrap();

        let acceptor = tls_acceptor(&cert_pem, &key_pem, Some(&ca_pem), true).unwrap();
        let server = TestServer::start(limits(), Some(acceptor));
        let request = b"GET /cert HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

        // No certificate: the handshake fails (with TLS 1.3 the client may only see it at its
        // first read), and no response ever comes.
        for who in [None, Some((&stranger, &client_key))] {
            if let Ok(mut c) = tls_connect(server.addr, who) {
                let _ = c.write_all(request);
                let mut buf = Vec::new();
                let mut b = [0u8; 1024];
                while let Ok(n @ 1..) = c.read(&mut b) {
                    buf.extend_from_slice(&b[..n]);
                }
                assert!(buf.is_empty(), "got {buf:?}");
            }
        }
        server.wait_for("two TLS failures", |s| s.tls_failures == 2);

        let mut c = tls_connect(server.addr, Some((&client, &client_key))).unwrap();
        let r = roundtrip(&mut c, request);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, client.to_der().unwrap());
        assert_eq!(server.stats().requests, 1);
        drop(server);

        // Optional client certificates.
        let acceptor = tls_acceptor(&cert_pem, &key_pem, Some(&ca_pem), false).unwrap();
        let server = TestServer::start(limits(), Some(acceptor));
        let mut c = tls_connect(server.addr, None).unwrap();
        assert_eq!(roundtrip(&mut c, request).body, b"");
        let mut c = tls_connect(server.addr, Some((&client, &client_key))).unwrap();
        assert_eq!(roundtrip(&mut c, request).body, client.to_der().unwrap());
    }

    #[test]
    fn tls_acceptor_inputs() {
        let key = ec_key();
        let cert = make_cert("localhost", &key, None, false, false)
            .to_pem()
            .unwrap();
        let traditional = key.ec_key().unwrap().private_key_to_pem().unwrap();
        assert!(String::from_utf8_lossy(&traditional).contains("BEGIN EC PRIVATE KEY"));
        let pkcs8 = key.private_key_to_pem_pkcs8().unwrap();
        assert!(String::from_utf8_lossy(&pkcs8).contains("BEGIN PRIVATE KEY"));
        assert!(tls_acceptor(&cert, &traditional, None, false).is_ok());
        assert!(tls_acceptor(&cert, &pkcs8, None, false).is_ok());

        let other = ec_key().private_key_to_pem_pkcs8().unwrap();
        let e = tls_acceptor(&cert, &other, None, false).err().unwrap();
        assert!(e.contains("does not match"), "{e}");
        let encrypted = key
            .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), b"pw")
            .unwrap();
        let e = tls_acceptor(&cert, &encrypted, None, false).err().unwrap();
        assert!(e.contains("encrypted"), "{e}");
        assert!(tls_acceptor(b"", &pkcs8, None, false).is_err());
        assert!(tls_acceptor(&cert, b"junk", None, false).is_err());
        let e = tls_acceptor(&cert, &pkcs8, None, true).err().unwrap();
        assert!(e.contains("no client CA"), "{e}");
        assert!(tls_acceptor(&cert, &pkcs8, Some(b"junk"), true).is_err());
    }

    /// Send raw bytes on a fresh connection; return the response and whether the server then
    /// closed the connection.
    fn raw(server: &TestServer, request: &[u8]) -> (Resp, bool) {
        let mut c = plain(server.addr);
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.write_all(request).unwrap();
        let mut buf = Vec::new();
        let r = read_response(&mut c, &mut buf, false).expect("a response");
        (r, closed_by_peer(&mut c))
    }

    #[test]
    fn protocol_errors_are_answered_and_close() {
        let server = TestServer::start(limits(), None);
        let long = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
            "a".repeat(5000)
        );
        let cases: Vec<(&[u8], u16)> = vec![
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3a\r\n\r\nabc", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", 400),
            (b"GET / HTTP/1.1\nHost: x\n\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
            (b"GET / FOO/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
            (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET nopath HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", 400),
            (long.as_bytes(), 431),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 400),
        ];
        for (request, status) in &cases {
            let (r, closed) = raw(&server, request);
            let shown = String::from_utf8_lossy(&request[..request.len().min(80)]);
            assert_eq!(r.status, *status, "{shown}");
            assert_eq!(r.header("connection"), Some("close"), "{shown}");
            assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
            assert!(closed, "closed after {shown}");
        }
        assert_eq!(server.stats().requests, 0);
        assert_eq!(server.stats().bad_requests, cases.len() as u64);
    }

    #[test]
    fn accepted_forms() {
        let server = TestServer::start(limits(), None);
        let ok = |request: &[u8], body: &str| {
            let mut c = plain(server.addr);
            let r = roundtrip(&mut c, request);
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(request));
            assert_eq!(r.text(), body);
        };
        // Equal duplicate Content-Length values, list form, empty lines before the request,
        // absolute-form target, OPTIONS *, odd methods, OWS around values.
        ok(
            b"POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            "POST /d \nabc",
        );
        ok(
            b"POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
            "POST /d \nabc",
        );
        ok(b"\r\n\r\nGET /e HTTP/1.1\r\nHost: x\r\n\r\n", "GET /e \n");
        ok(
            b"GET http://example.com/p/q?r=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "GET /p/q r=1\n",
        );
        ok(
            b"GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "GET / \n",
        );
        ok(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "OPTIONS * \n");
        ok(
            b"M-SEARCH /x? HTTP/1.1\r\nHost: x\r\n\r\n",
            "M-SEARCH /x \n",
        );
        ok(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Echo: \t spaced  \t\r\n\r\n",
            "GET / \n",
        );
        ok(b"GET / HTTP/1.9\r\nHost: x\r\n\r\n", "GET / \n");
        let mut c = plain(server.addr);
        let r = roundtrip(
            &mut c,
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Echo: \t spaced  \t\r\n\r\n",
        );
        assert_eq!(r.header("x-echo"), Some("spaced"));
        // Handler headers are sanitised; 204 has no length and no body.
        let r = roundtrip(&mut c, b"GET /headers HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.header("x-ok"), Some("1"));
        assert_eq!(r.header("x-bad"), None);
        assert_eq!(r.header("injected"), None);
        assert_eq!(r.header("content-length"), Some("1"));
        c.write_all(b"GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        let r = read_response(&mut c, &mut buf, false).unwrap();
        assert_eq!(r.status, 204);
        assert_eq!(r.header("content-length"), None);
        assert_eq!(
            roundtrip(&mut c, b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n").text(),
            "GET /after \n"
        );
    }

    #[test]
    fn http_1_0() {
        let server = TestServer::start(limits(), None);
        // No keep-alive unless asked; no Host needed.
        let (r, closed) = raw(&server, b"GET /old HTTP/1.0\r\n\r\n");
        assert_eq!(r.text(), "GET /old \n");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(closed);
        let mut c = plain(server.addr);
        let r = roundtrip(
            &mut c,
            b"GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        );
        assert_eq!(r.header("connection"), Some("keep-alive"));
        let r = roundtrip(
            &mut c,
            b"POST /ka2 HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhi",
        );
        assert_eq!(r.text(), "POST /ka2 \nhi");
        // Expect is ignored in HTTP/1.0: no 100 Continue, the body is just read.
        let r = roundtrip(
            &mut c,
            b"POST /e HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("close"));
    }

    #[test]
    fn parsing_helpers() {
        assert_eq!(parse_chunk_size(b"1a"), Ok(26));
        assert_eq!(parse_chunk_size(b"0000"), Ok(0));
        assert_eq!(parse_chunk_size(b"A ; ext=\"v\""), Ok(10));
        assert!(parse_chunk_size(b"").is_err());
        assert!(parse_chunk_size(b"-1").is_err());
        assert!(parse_chunk_size(b" 1").is_err());
        assert!(parse_chunk_size(b"1000000000000000").is_err());
        assert!(has_token("Keep-Alive, Upgrade", "keep-alive"));
        assert!(!has_token("keep-alives", "keep-alive"));
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        let h =
            parse_head(b"GET /p?a?b HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n\r\n").unwrap();
        assert_eq!((h.path.as_str(), h.query.as_str()), ("/p", "a?b"));
        assert!(h.expect_continue);
        assert_eq!(h.headers[0], ("host".to_string(), "h".to_string()));
        assert_eq!(reason(413), "Content Too Large");
        assert_eq!(reason(299), "Success");
        let mut r = Response::text(700, "x");
        r.headers.push(("Connection".into(), "close".into()));
        let head = String::from_utf8(render_head(&r, true, false)).unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 1\r\nConnection: close\r\n\r\n"
        );
    }
}
