//! The accept loop, admission (overall and per-address limits), one task per connection (TLS
//! handshake, the first byte, then hyper), and the graceful stop.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use openssl::ssl::{Ssl, SslAcceptor};
use openssl::x509::X509VerifyResult;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio_openssl::SslStream;

use super::io::{ConnState, DeadlineIo, Phase, HEAD_TIMEOUT_REPLY};
use super::service::{respond, ConnInfo, HttpResponse, Shared};
use super::{
    bump, Handler, HttpStats, Limits, ListenerGuard, Shutdown, Stopped, MAX_CONCURRENT_HANDLERS,
    MAX_CONCURRENT_STREAMS, MAX_HEADER_FIELDS,
};

/// Back-off after an accept error (e.g. out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// How often the stop checks whether every connection has closed.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// hyper's read buffer grows up to this (request bodies are read in pieces of at most this).
const MAX_READ_BUFFER: usize = 64 * 1024;

/// What connections are told: keep going, finish what is in progress, or stop now.
const RUNNING: u8 = 0;
const STOPPING: u8 = 1;
const CUT: u8 = 2;

pub(super) async fn run(
    listener: TcpListener,
    tls: Option<SslAcceptor>,
    limits: Limits,
    handler: Arc<dyn Handler>,
    shutdown: Shutdown,
    stats: Arc<HttpStats>,
    guard: ListenerGuard,
) -> io::Result<Stopped> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut http = http1::Builder::new();
    http.max_headers(MAX_HEADER_FIELDS)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(MAX_READ_BUFFER.max(limits.max_header_bytes + 1))
        .title_case_headers(true)
        .half_close(false)
        .keep_alive(true);
    let shared = Arc::new(Shared {
        limits,
        handler,
        stats,
        handlers: Arc::new(Semaphore::new(MAX_CONCURRENT_HANDLERS)),
        streams: Arc::new(Semaphore::new(MAX_CONCURRENT_STREAMS)),
        shutdown: shutdown.clone(),
    });
    let server = Arc::new(Server {
        shared,
        tls,
        http,
        admission: Admission::default(),
        phase: watch::Sender::new(RUNNING),
    });

    let stop = shutdown.triggered();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => server.admit(tcp, peer),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await,
            },
        }
    }

    drop(listener);
    drop(guard);
    Ok(server.drain().await)
}

struct Server {
    shared: Arc<Shared>,
    tls: Option<SslAcceptor>,
    http: http1::Builder,
    admission: Admission,
    phase: watch::Sender<u8>,
}

impl Server {
    fn admit(self: &Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        let stats = &self.shared.stats;
        let slot = match self.admission.admit(peer.ip(), &self.shared.limits, stats) {
            Ok(slot) => slot,
            Err(Refused::OverLimit) => return bump(&stats.refused_over_limit),
            Err(Refused::PerAddress) => return bump(&stats.refused_per_address),
        };
        bump(&stats.accepted);
        let server = self.clone();
        let phase = self.phase.subscribe();
        tokio::spawn(async move {
            let _slot = slot;
            server.connection(tcp, peer, phase).await;
        });
    }

    /// After the listener closed: let connections finish within the grace, then cut the rest.
    async fn drain(&self) -> Stopped {
        let open_at_stop = self.admission.live();
        self.phase.send_replace(STOPPING);
        let end = Instant::now() + self.shared.limits.shutdown_grace;
        while self.admission.live() > 0 && Instant::now() < end {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        let cut = self.admission.live();
        self.phase.send_replace(CUT);
        // Give the cut tasks a moment to drop their sockets.
        let end = Instant::now() + Duration::from_secs(1);
        while self.admission.live() > 0 && Instant::now() < end {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        Stopped { open_at_stop, cut }
    }

    async fn connection(&self, tcp: TcpStream, peer: SocketAddr, mut phase: watch::Receiver<u8>) {
        let _ = tcp.set_nodelay(true);
        let limits = &self.shared.limits;
        let stats = &self.shared.stats;
        let Some(acceptor) = &self.tls else {
            let ready = Instant::now() + limits.header_timeout;
            return self.first_request(tcp, peer, None, ready, phase).await;
        };

        let deadline = tokio::time::Instant::now() + limits.handshake_timeout;
        // No TLS session until the client has sent something (readiness alone can be
        // spurious: peek waits for a byte, or the end of the stream).
        let mut peeked = [0u8; 1];
        let said = tokio::select! {
            r = tokio::time::timeout_at(deadline, tcp.peek(&mut peeked)) => r,
            _ = reached(&mut phase, STOPPING) => return,
        };
        match said {
            Ok(Ok(1..)) => {}
            Ok(_) => return,
            Err(_) => {
                bump(&stats.tls_failures);
                return bump(&stats.timeouts);
            }
        }
        let Ok(mut stream) = Ssl::new(acceptor.context()).and_then(|ssl| SslStream::new(ssl, tcp))
        else {
            return bump(&stats.tls_failures);
        };
        let handshake = tokio::select! {
            r = tokio::time::timeout_at(deadline, Pin::new(&mut stream).accept()) => r,
            _ = reached(&mut phase, STOPPING) => return,
        };
        match handshake {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return bump(&stats.tls_failures),
            Err(_) => {
                bump(&stats.tls_failures);
                return bump(&stats.timeouts);
            }
        }
        let ssl = stream.ssl();
        let cert = if ssl.verify_result() == X509VerifyResult::OK {
            ssl.peer_certificate().and_then(|c| c.to_der().ok())
        } else {
            None
        };
        let ready = Instant::now() + limits.header_timeout;
        self.first_request(stream, peer, cert, ready, phase).await
    }

    /// Collect the first request's head without any HTTP state (a few bytes per connection,
    /// however slowly they come), then serve. The head must start within `deadline` and be
    /// complete within `header_timeout` of its first byte (else 408). hyper parses it: this
    /// only waits for the empty line that ends it, or for more than `max_header_bytes`.
    async fn first_request<S>(
        &self,
        mut stream: S,
        peer: SocketAddr,
        client_cert: Option<Vec<u8>>,
        deadline: Instant,
        mut phase: watch::Receiver<u8>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = &self.shared.limits;
        let mut head = HeadCollector::default();
        let mut chunk = [0u8; 512];
        let mut deadline = deadline;
        let mut started = None;
        while !head.complete(limits.max_header_bytes) {
            // A stop closes a connection still waiting for its first request; one whose request
            // has begun is served (with Connection: close) unless the grace runs out.
            let stop_at = if started.is_none() { STOPPING } else { CUT };
            let got = tokio::select! {
                r = tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk)) => r,
                _ = reached(&mut phase, stop_at) => {
                    return quiet_close(stream, limits).await;
                }
            };
            match got {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => head.bytes.extend_from_slice(&chunk[..n]),
                Err(_) if started.is_none() => {
                    // The first request never started.
                    bump(&self.shared.stats.timeouts);
                    return quiet_close(stream, limits).await;
                }
                Err(_) => {
                    bump(&self.shared.stats.timeouts);
                    let _ = tokio::time::timeout(limits.write_timeout, async {
                        stream.write_all(HEAD_TIMEOUT_REPLY).await?;
                        stream.flush().await
                    })
                    .await;
                    return quiet_close(stream, limits).await;
                }
            }
            if started.is_none() {
                let now = Instant::now();
                started = Some(now);
                deadline = now + limits.header_timeout;
            }
        }
        let head_deadline = deadline;
        // Boxed: the HTTP state is only allocated for connections that sent a head.
        Box::pin(self.http_session(stream, head.bytes, head_deadline, peer, client_cert, phase))
            .await
    }

    async fn http_session<S>(
        &self,
        stream: S,
        head: Vec<u8>,
        head_deadline: Instant,
        peer: SocketAddr,
        client_cert: Option<Vec<u8>>,
        mut phase: watch::Receiver<u8>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = &self.shared.limits;
        let state = Arc::new(ConnState::new(
            Phase::Head(head_deadline),
            limits,
            self.shared.stats.clone(),
        ));
        let info = Arc::new(ConnInfo {
            peer,
            client_cert,
            state: state.clone(),
        });
        let shared = self.shared.clone();
        let service = service_fn(move |req| {
            let fut: Pin<Box<dyn Future<Output = Result<HttpResponse, _>> + Send>> =
                Box::pin(respond(req, shared.clone(), info.clone()));
            fut
        });
        let io = TokioIo::new(DeadlineIo::new(stream, head, state.clone()));
        let mut conn = self.http.serve_connection(io, service);

        let mut stopping = false;
        let result = loop {
            let next = if stopping { CUT } else { STOPPING };
            tokio::select! {
                r = poll_fn(|cx| conn.poll_without_shutdown(cx)) => break Some(r),
                level = reached(&mut phase, next) => {
                    if level >= CUT {
                        break None;
                    }
                    // Idle: closes now; busy: the response says Connection: close.
                    Pin::new(&mut conn).graceful_shutdown();
                    stopping = true;
                }
            }
        };
        let Some(result) = result else {
            return;
        };
        let mut linger = state.unread_body.load(Ordering::Relaxed);
        if let Err(e) = &result {
            if e.is_parse() || e.is_parse_too_large() {
                bump(&self.shared.stats.bad_requests);
                linger = true;
            }
        }
        let parts = conn.into_parts();
        let linger = linger || !parts.read_buf.is_empty();
        parts.io.into_inner().close(linger).await;
    }
}

/// Close a connection that never started a request: TLS close_notify and FIN, bounded.
async fn quiet_close<S: AsyncWrite + Unpin>(mut stream: S, limits: &Limits) {
    let _ = tokio::time::timeout(
        limits.write_timeout.min(super::LINGER_TIME),
        stream.shutdown(),
    )
    .await;
}

/// The bytes of a first request head as they arrive, and whether they end in the empty line
/// that ends a head (CRLF or bare LF line endings; empty lines before the request line, which
/// hyper skips, are skipped here too).
#[derive(Default)]
struct HeadCollector {
    bytes: Vec<u8>,
    /// Bytes already scanned without finding the end.
    scanned: usize,
}

impl HeadCollector {
    fn complete(&mut self, max: usize) -> bool {
        if self.bytes.len() > max {
            // hyper answers 431.
            return true;
        }
        let lead = self
            .bytes
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        let from = self.scanned.saturating_sub(2).max(lead);
        let rest = &self.bytes[from..];
        let found =
            ls_core::bytes::contains(rest, b"\n\n") || ls_core::bytes::contains(rest, b"\n\r\n");
        self.scanned = self.bytes.len();
        found
    }
}

/// Resolves with the phase once it is at least `level` (never, if the server is gone).
async fn reached(phase: &mut watch::Receiver<u8>, level: u8) -> u8 {
    let reached = phase.wait_for(|p| *p >= level).await.map(|p| *p);
    match reached {
        Ok(p) => p,
        Err(_) => std::future::pending().await,
    }
}

/// Open connections, overall and per client address.
#[derive(Default)]
struct Admission {
    live: Arc<AtomicUsize>,
    per_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

enum Refused {
    OverLimit,
    PerAddress,
}

impl Admission {
    fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    fn admit(&self, ip: IpAddr, limits: &Limits, stats: &Arc<HttpStats>) -> Result<Slot, Refused> {
        let ip = address_key(ip);
        if self.live() >= limits.max_connections {
            return Err(Refused::OverLimit);
        }
        {
            let mut per = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
            let n = per.entry(ip).or_insert(0);
            if *n >= limits.max_connections_per_address {
                return Err(Refused::PerAddress);
            }
            *n += 1;
        }
        self.live.fetch_add(1, Ordering::SeqCst);
        stats.open_connections.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            ip,
            live: self.live.clone(),
            per_address: self.per_address.clone(),
            stats: stats.clone(),
        })
    }
}

/// Whose connections count together for `max_connections_per_address`: an IPv4 address (also
/// IPv4-mapped IPv6), or an IPv6 /64 — the smallest network one site gets, whose 2^64 addresses
/// a client can use at will.
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(net.into())
        }
        v4 => v4,
    }
}

/// One admitted connection; gives its place back when dropped (also if its task panics).
struct Slot {
    ip: IpAddr,
    live: Arc<AtomicUsize>,
    per_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
    stats: Arc<HttpStats>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut per = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = per.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    per.remove(&self.ip);
                }
            }
        }
        self.stats.open_connections.fetch_sub(1, Ordering::Relaxed);
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::address_key;
    use std::net::IpAddr;

    #[test]
    fn ipv6_addresses_count_by_their_64_bit_network() {
        let k = |s: &str| address_key(s.parse::<IpAddr>().unwrap());
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.7"), k("192.0.2.7"));
        assert_ne!(k("192.0.2.7"), k("192.0.2.8"));
    }
}
