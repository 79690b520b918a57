//! TLS (OpenSSL) and HTTP/1.1 for the service: hyper 1.x on tokio, with tokio-openssl for TLS.
//! Bounded connections (overall and per client address), bounded requests, deadlines for every
//! phase of a request, keep-alive, graceful stop. Handlers stay synchronous: they run on
//! tokio's blocking pool, at most [`MAX_CONCURRENT_HANDLERS`] at a time.
//!
//! # Model
//!
//! [`run`] accepts connections on one listener until its [`Shutdown`] is triggered; [`serve`]
//! and [`serve_with_stats`] do the same on a runtime of their own ([`runtime`]). Every accepted
//! connection is a tokio task: an idle connection costs a task and a socket, no thread. Over
//! [`Limits::max_connections`] open connections, or [`Limits::max_connections_per_address`]
//! from one client address, a new connection is closed at once and counted
//! ([`HttpStats::refused_over_limit`], [`HttpStats::refused_per_address`]).
//!
//! A connection costs little until it proves itself: a TLS session is only allocated once the
//! client has sent its first bytes, and hyper's buffers (about 24 KiB) only once the first
//! request's head is complete (until then its bytes are kept as they come, and only the empty
//! line ending it is looked for; hyper parses it). Measured with a debug build: a silent TCP
//! connection about 2 KiB, a silent TLS one about 15 KiB, one trickling its head over TLS
//! about 17 KiB.
//!
//! # Deadlines
//!
//! Every timeout is a deadline for a whole phase, so a client trickling one byte at a time is
//! still cut off when the deadline passes:
//!
//! * TLS handshake: [`Limits::handshake_timeout`] from the accept.
//! * The first request must start within [`Limits::header_timeout`] of the connection being
//!   ready (after the handshake); later ones within [`Limits::idle_timeout`] of the previous
//!   response (an idle kept-alive connection is then closed quietly).
//! * Request head: [`Limits::header_timeout`] from the request's first byte; then 408.
//! * Body: progress, not the whole body: at most [`Limits::body_idle_timeout`] between two
//!   pieces of it, and on average at least [`Limits::min_rate`] after its grace; then 408. A
//!   4 GiB upload on a slow line is not cut as long as it moves.
//! * Each response: a write may stall at most [`Limits::write_timeout`], and the response must
//!   be taken at [`Limits::min_rate`] on average after its grace.
//!
//! # HTTP/1.1
//!
//! hyper parses requests. On top of it this layer refuses what hyper lets through but the
//! service does not want (see `service.rs`): an HTTP/1.1 request without exactly one `Host`,
//! a target other than origin form, absolute form or `*` for `OPTIONS`, a transfer coding other
//! than `chunked` alone (501), a head larger than [`Limits::max_header_bytes`] or with more
//! than [`MAX_HEADER_FIELDS`] fields (431, from hyper). Lines may end in CRLF or a bare LF (RFC
//! 9112 §2.2). A request with both `Content-Length` and `Transfer-Encoding` is read by its
//! transfer coding alone and its connection closed after the response (RFC 9112 §6.3), so
//! nothing after its body is ever read as a request.
//!
//! A body larger than [`Limits::max_body_bytes`] is answered 413 before it is read (declared
//! `Content-Length`), or as soon as the bytes received cross the limit (chunked). The 413 body
//! says `the message of N bytes is larger than this service accepts
//! (limits.max_message_bytes = M)` and its header [`MAX_MESSAGE_BYTES_HEADER`] gives `M`.
//!
//! Errors found by this layer (400, 408, 413, 431, 501) are answered with a short `text/plain`
//! body and `Connection: close`; hyper's own refusals of malformed heads (400, 431) have an
//! empty body. After any response sent while request bytes remain unread, the connection is
//! closed gracefully: flush, TLS close_notify and FIN, then what the client still sends is read
//! and discarded for at most [`LINGER_TIME`] / [`LINGER_BYTES`], so that the close does not
//! turn into a TCP reset that destroys the response in flight. A handler panic is answered
//! with 500 and the connection closed; the server keeps running.
//!
//! # Responses
//!
//! `Content-Type` (when non-empty), `Content-Length` (hyper: not for 204 and 304, kept for
//! `HEAD` without its body), `Connection: close` when the connection is closed after the
//! response, then [`Response::headers`]. Handler headers whose name or value is not valid are
//! dropped, and so are `Content-Length`, `Transfer-Encoding` and `Connection` (a handler
//! `Connection: close` closes the connection). A status outside 200..=599 is replaced by 500.
//!
//! # Graceful stop
//!
//! When the [`Shutdown`] is triggered, every listener sharing it is closed, connections that
//! wait for a request (or a TLS handshake) are closed at once, requests in progress are
//! finished with `Connection: close`, and [`run`] returns when every connection is closed or
//! [`Limits::shutdown_grace`] has passed (the connections still open are then cut).

mod body;
mod io;
mod listen;
mod service;
mod tls;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::SslAcceptor;
use tokio::sync::watch;

pub use body::BodyStream;
pub(crate) use listen::address_key;
pub use ls_core::as4::coordination::MAX_MESSAGE_BYTES_HEADER;
pub use ls_core::transport::MinRate;
pub use tls::tls_acceptor;

/// At most this many handler calls run at once per [`run`] (on tokio's blocking pool); more
/// requests wait for a turn without holding a thread.
pub const MAX_CONCURRENT_HANDLERS: usize = 64;
/// At most this many handler calls that read their body as it arrives
/// ([`Handler::stream_body`]) run at once per [`run`], apart from the others: slow uploads do
/// not hold up small requests.
pub const MAX_CONCURRENT_STREAMS: usize = 64;
/// At most this many header fields in a request head (431 beyond).
pub const MAX_HEADER_FIELDS: usize = 128;
/// After a response sent while request bytes remain unread, what the client still sends is
/// read and discarded for at most this long / this many bytes before the socket is closed.
pub const LINGER_TIME: Duration = Duration::from_secs(1);
pub const LINGER_BYTES: usize = 1024 * 1024;

/// A request: its head, and its body read whole or as a stream.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: String,
    /// Header names lower-cased. The values of a repeated name keep their order; the order
    /// between different names is hyper's `HeaderMap` order, not necessarily the wire order.
    pub headers: Vec<(String, String)>,
    /// The body, read whole — empty when the handler asked for it as a stream
    /// ([`Handler::stream_body`]).
    pub body: Vec<u8>,
    /// The body as it arrives, when the handler asked for it so. A read error means the body
    /// failed (too large, too slow, malformed, the client gone): the connection layer answers
    /// for it (413, 408, 400) whatever the handler returns.
    pub body_stream: Option<BodyStream>,
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
    /// Instead of `body`: this many bytes of this file (from its current position), read and
    /// sent as the client takes them.
    pub file: Option<(std::fs::File, u64)>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: content_type.to_string(),
            headers: Vec::new(),
            body,
            file: None,
        }
    }

    /// A response whose body is `len` bytes of `file`, never read whole.
    pub fn file(status: u16, content_type: &str, file: std::fs::File, len: u64) -> Response {
        Response {
            file: Some((file, len)),
            ..Response::new(status, content_type, Vec::new())
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

/// Answers requests. Called on a blocking thread: it may block (store, signatures).
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> Response;

    /// A smaller body limit than the listener's [`Limits::max_body_bytes`] for requests to
    /// `path` (413 above it, as for the listener's); `None`: the listener's. Called from the
    /// connection's task before the body is read: it must not block.
    fn max_body_bytes(&self, _path: &str) -> Option<u64> {
        None
    }

    /// Whether this request's body goes to the handler as it arrives ([`Request::body_stream`])
    /// rather than read whole first: for bodies too large to hold. `declared`: the
    /// Content-Length (`None`: chunked). Called from the connection's task: it must not block.
    /// At most [`MAX_CONCURRENT_STREAMS`] such handler calls run at once per listener.
    fn stream_body(&self, _method: &str, _path: &str, _declared: Option<u64>) -> bool {
        false
    }
}

#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections of one [`run`]; more are closed at once.
    pub max_connections: usize,
    /// Open connections from one client IP address; more from it are closed at once.
    pub max_connections_per_address: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    /// From accepting the connection to the end of the TLS handshake.
    pub handshake_timeout: Duration,
    /// From the first byte of a request to the end of its headers (and for the first request
    /// to start, once the connection is ready).
    pub header_timeout: Duration,
    /// The longest wait for more of a request body (the idle limit; not a limit on the whole
    /// body, which may take as long as it keeps `min_rate`).
    pub body_idle_timeout: Duration,
    /// The slowest a request body may arrive, and a response be taken, on average after a
    /// grace period: a client that trickles is cut (408 for a body).
    pub min_rate: MinRate,
    /// Waiting for the next request on a kept-alive connection.
    pub idle_timeout: Duration,
    /// The longest a response write may stall (the idle limit of the response; with
    /// `min_rate`, not a limit on the whole response).
    pub write_timeout: Duration,
    /// After a stop is asked: how long requests in progress may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 20_000,
            max_connections_per_address: 128,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 128 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(60),
            min_rate: MinRate {
                bytes_per_sec: 16 * 1024,
                grace: Duration::from_secs(30),
            },
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Counters of the HTTP layer, for the service's `/metrics`. All are monotonic counters except
/// `open_connections`, a gauge. Share one `Arc<HttpStats>` with [`serve_with_stats`] / [`run`].
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Connections being served right now (gauge).
    pub open_connections: AtomicU64,
    /// Connections accepted and served (refused ones are not counted here).
    pub accepted: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub refused_over_limit: AtomicU64,
    /// Connections closed at once because `max_connections_per_address` were open from the
    /// same client address.
    pub refused_per_address: AtomicU64,
    /// Deadlines that passed: TLS handshake, request head, body, response write, and a new
    /// connection whose first request never started within `header_timeout`. (Idle kept-alive
    /// connections closing after `idle_timeout` are normal and not counted.)
    pub timeouts: AtomicU64,
    /// Requests refused by this layer or by hyper: malformed or unsupported (400, 431, 501) or
    /// too large (413).
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
    pub refused_per_address: u64,
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
            refused_per_address: get(&self.refused_per_address),
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

/// Asks every [`run`] that shares it to stop (clones share one state).
#[derive(Clone, Debug)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

#[derive(Debug)]
struct ShutdownInner {
    stop: watch::Sender<bool>,
    /// Listeners still open.
    listeners: watch::Sender<usize>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown {
            inner: Arc::new(ShutdownInner {
                stop: watch::Sender::new(false),
                listeners: watch::Sender::new(0),
            }),
        }
    }

    /// Stop accepting and close connections as they finish (idempotent).
    pub fn trigger(&self) {
        self.inner.stop.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.inner.stop.borrow()
    }

    /// Resolves once every listener of a [`run`] sharing this handle is closed (new
    /// connections are refused by the system from then on).
    pub async fn listeners_closed(&self) {
        let mut rx = self.inner.listeners.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    async fn triggered(&self) {
        let mut rx = self.inner.stop.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    fn listener_opened(&self) -> ListenerGuard {
        self.inner.listeners.send_modify(|n| *n += 1);
        ListenerGuard(self.clone())
    }
}

/// Counts an open listener; dropping it counts the listener closed.
struct ListenerGuard(Shutdown);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0
            .inner
            .listeners
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// How a [`run`] ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Connections open when the stop began.
    pub open_at_stop: usize,
    /// Of those, still open when the grace ended and then cut.
    pub cut: usize,
}

/// The runtime [`serve`] and [`serve_with_stats`] make: one worker thread per core, and a
/// blocking pool sized for [`MAX_CONCURRENT_HANDLERS`] handler calls of each of two listeners.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("ls-http")
        // Per listener: the handlers, the streaming handlers, and the short reads of response
        // files (one piece each: a slow pull holds no thread).
        .max_blocking_threads(2 * (MAX_CONCURRENT_HANDLERS + 2 * MAX_CONCURRENT_STREAMS) + 8)
        .enable_all()
        .build()
}

/// Serve `listener` until `shutdown` is triggered. With `tls`, every connection does a TLS
/// handshake first. Requests are passed to `handler` one at a time per connection. Blocks; runs
/// on a runtime of its own.
pub fn serve(
    listener: TcpListener,
    tls: Option<SslAcceptor>,
    limits: Limits,
    handler: Arc<dyn Handler>,
    shutdown: Shutdown,
) -> std::io::Result<Stopped> {
    serve_with_stats(
        listener,
        tls,
        limits,
        handler,
        shutdown,
        Arc::new(HttpStats::default()),
    )
}

/// [`serve`], counting into `stats`.
pub fn serve_with_stats(
    listener: TcpListener,
    tls: Option<SslAcceptor>,
    limits: Limits,
    handler: Arc<dyn Handler>,
    shutdown: Shutdown,
    stats: Arc<HttpStats>,
) -> std::io::Result<Stopped> {
    let rt = runtime()?;
    let result = rt.block_on(run(listener, tls, limits, handler, shutdown, stats));
    // Handler calls cut at the end of the grace may still run on blocking threads: do not
    // wait for them.
    rt.shutdown_background();
    result
}

/// [`serve_with_stats`] on the caller's tokio runtime. The listener counts as open for
/// [`Shutdown::listeners_closed`] from this call on (before the future is first polled).
/// Returns an error only if the listener cannot be registered with the runtime; accept errors
/// (e.g. out of file descriptors) are retried after a short pause.
pub fn run(
    listener: TcpListener,
    tls: Option<SslAcceptor>,
    limits: Limits,
    handler: Arc<dyn Handler>,
    shutdown: Shutdown,
    stats: Arc<HttpStats>,
) -> impl Future<Output = std::io::Result<Stopped>> + Send + 'static {
    let guard = shutdown.listener_opened();
    listen::run(listener, tls, limits, handler, shutdown, stats, guard)
}

/// Raise this process's soft limit of open files towards `wanted` (at most the hard limit).
/// Returns the soft limit now in force and the hard limit.
pub fn raise_open_files_limit(wanted: u64) -> std::io::Result<(u64, u64)> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let current = getrlimit(Resource::Nofile);
    let hard = current.maximum.unwrap_or(u64::MAX);
    let soft = current.current.unwrap_or(u64::MAX);
    if soft >= wanted {
        return Ok((soft, hard));
    }
    let new = wanted.min(hard);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(new),
            maximum: current.maximum,
        },
    )
    .map_err(std::io::Error::from)?;
    Ok((new, hard))
}
