//! The connection layer against real sockets on loopback (plain and TLS), driven by raw
//! HTTP bytes so every framing decision is visible.

use super::*;
use ls_core::{CertPurpose, CertificateBuilder, Identity};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::pkey::Private;
use openssl::ssl::SslConnector;
use openssl::ssl::{SslMethod, SslStream, SslVerifyMode};
use openssl::symm::Cipher;
use openssl::x509::X509;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::thread::JoinHandle;
use std::time::Instant;

// ---- certificates ----

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A certificate for `key` from the core's builder, self-signed or issued by `issuer` (a
/// TLS server's and a TLS client's name `localhost` too).
fn make_cert(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<&Identity>,
    purpose: CertPurpose,
) -> Identity {
    let mut b = CertificateBuilder::new(cn, purpose)
        .key(key.clone())
        .valid_days(2);
    if purpose != CertPurpose::Ca {
        b = b.subject_alt_names(&["localhost"]);
    }
    if let Some(ca) = issuer {
        b = b.issuer(ca);
    }
    b.build(None).unwrap().identity
}

/// A server identity: (acceptor, certificate PEM, PKCS#8 key PEM).
fn server_identity() -> (Vec<u8>, Vec<u8>) {
    let key = ec_key();
    let cert = make_cert("localhost", &key, None, CertPurpose::TlsServer);
    (
        cert.certificate().to_pem(),
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
    fn stream_body(&self, _method: &str, path: &str, _declared: Option<u64>) -> bool {
        Echo::streams(path)
    }

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
            "/status700" => {
                let mut r = Response::text(700, "x");
                r.headers.push(("Connection".into(), "close".into()));
                r.headers
                    .push(("Transfer-Encoding".into(), "chunked".into()));
                r
            }
            "/slow" => {
                SLOW.enter_and_wait();
                Response::text(200, "slow")
            }
            "/stream" | "/stream-late" => {
                if req.path == "/stream-late" {
                    // As if it had waited for its turn (a stream slot) before reading.
                    thread::sleep(Duration::from_millis(req.query.parse().unwrap()));
                }
                // The body as it arrives: its length and digest.
                let mut stream = req.body_stream.expect("streamed");
                let mut sha = openssl::sha::Sha256::new();
                let mut buf = vec![0u8; 10_000];
                let mut n = 0;
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => {
                            sha.update(&buf[..k]);
                            n += k;
                        }
                        Err(_) => return Response::text(200, "the handler's answer"),
                    }
                }
                let digest = ls_core::bytes::hex(&sha.finish());
                Response::text(200, &format!("streamed {n} {digest}"))
            }
            "/file" => {
                // A response of `query` bytes from a file.
                let n: u64 = req.query.parse().unwrap();
                use std::io::Seek;
                let path =
                    std::env::temp_dir().join(format!("ls-http-file-{}-{n}", std::process::id()));
                let mut f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)
                    .unwrap();
                let _ = std::fs::remove_file(&path);
                let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
                f.write_all(&data).unwrap();
                f.seek(io::SeekFrom::Start(0)).unwrap();
                Response::file(200, "application/octet-stream", f, n)
            }
            _ => {
                let mut body = format!("{} {} {}\n", req.method, req.path, req.query).into_bytes();
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

impl Echo {
    fn streams(path: &str) -> bool {
        path == "/stream" || path == "/stream-late"
    }
}

/// The `/slow` handler: it says that it started, then waits until the test lets it go (or 30 s,
/// so that a failing test cannot hang it). Only `shutdown_stops_serve` asks for `/slow`.
struct Gate {
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

static SLOW: Gate = Gate {
    state: Mutex::new((0, false)),
    changed: Condvar::new(),
};

impl Gate {
    fn enter_and_wait(&self) {
        let mut st = self.state.lock().unwrap();
        st.0 += 1;
        self.changed.notify_all();
        let _ = self
            .changed
            .wait_timeout_while(st, Duration::from_secs(30), |st| !st.1)
            .unwrap();
    }
    /// Wait (generously) until a handler entered.
    fn wait_entered(&self) {
        let st = self.state.lock().unwrap();
        let (st, _) = self
            .changed
            .wait_timeout_while(st, Duration::from_secs(10), |st| st.0 == 0)
            .unwrap();
        assert!(st.0 > 0, "the /slow request did not reach its handler");
    }
    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

struct TestServer {
    addr: SocketAddr,
    shutdown: Shutdown,
    stats: Arc<HttpStats>,
    handle: Option<JoinHandle<io::Result<Stopped>>>,
}

impl TestServer {
    fn start(limits: Limits, tls: Option<SslAcceptor>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let stats = Arc::new(HttpStats::default());
        let (sd, st) = (shutdown.clone(), stats.clone());
        let handle =
            thread::spawn(move || serve_with_stats(listener, tls, limits, Arc::new(Echo), sd, st));
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
        self.shutdown.trigger();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// [`limits`] with every deadline a minute away, for tests where only one of them may act.
fn far_deadlines() -> Limits {
    let minute = Duration::from_secs(60);
    Limits {
        handshake_timeout: minute,
        header_timeout: minute,
        body_idle_timeout: minute,
        idle_timeout: minute,
        write_timeout: minute,
        ..limits()
    }
}

fn limits() -> Limits {
    Limits {
        max_connections: 32,
        max_connections_per_address: 32,
        max_header_bytes: 4096,
        max_body_bytes: 1 << 20,
        handshake_timeout: Duration::from_secs(5),
        header_timeout: Duration::from_secs(5),
        body_idle_timeout: Duration::from_secs(5),
        min_rate: MinRate::NONE,
        idle_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        shutdown_grace: Duration::from_secs(5),
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
    /// `HTTP/1.1`, or `HTTP/1.0` in answer to an HTTP/1.0 request (hyper answers in kind).
    version: String,
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
        if let Some(i) = ls_core::bytes::find(buf, b"\r\n\r\n") {
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
    assert!(
        status_line.starts_with("HTTP/1.1 ") || status_line.starts_with("HTTP/1.0 "),
        "{status_line}"
    );
    let version = status_line[..8].to_string();
    let status: u16 = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    let mut resp = Resp {
        version,
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

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
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
        let req =
            format!("POST /big HTTP/1.1\r\nHost: x\r\n{expect}Content-Length: 10485760\r\n\r\n");
        // No body is sent: the answer must come anyway, and no 100 Continue.
        let r = roundtrip(&mut c, req.as_bytes());
        assert_eq!(r.status, 413);
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(r.header(MAX_MESSAGE_BYTES_HEADER), Some("1048576"));
        assert_eq!(
            r.text(),
            "the message of 10485760 bytes is larger than this service accepts \
             (limits.max_message_bytes = 1048576)\n"
        );
        assert!(closed_by_peer(&mut c));
    }
    assert_eq!(server.stats().too_large, 2);
    assert_eq!(server.stats().bad_requests, 2);
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
    // The 17th byte received crosses the limit (the rest of the body is never sent).
    let mut c = plain(server.addr);
    let r = roundtrip(
        &mut c,
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n0123456789abcdefg",
    );
    assert_eq!(r.status, 413, "17th byte received");
    assert_eq!(r.header(MAX_MESSAGE_BYTES_HEADER), Some("16"));
    assert_eq!(
        r.text(),
        "the message is larger than this service accepts (limits.max_message_bytes = 16)\n"
    );
    assert!(closed_by_peer(&mut c));
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
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n9\r\n012345678",
    );
    assert_eq!(r.status, 413);
    assert_eq!(server.stats().too_large, 2);
}

/// A client that uploads a body far over the limit (over TLS, without waiting for an answer)
/// still reads the whole 413 and its limit header: the server does not reset the connection
/// under the response, it reads and discards for a while after closing its side.
#[test]
fn an_upload_far_over_the_limit_reads_the_413() {
    let server = TestServer::start(limits(), Some(plain_acceptor()));
    let body_len = 8 * 1024 * 1024; // 8× the limit
    let mut c = tls(server.addr);
    let head = format!("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {body_len}\r\n\r\n");
    c.write_all(head.as_bytes()).unwrap();
    // Write as a client without Expect would: the body right away, until the server stops
    // taking it; the response is read afterwards.
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < body_len {
        match c.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).expect("the 413 arrives whole");
    assert_eq!(r.status, 413);
    assert_eq!(r.header(MAX_MESSAGE_BYTES_HEADER), Some("1048576"));
    assert!(
        r.text()
            .starts_with(&format!("the message of {body_len} bytes is larger")),
        "{}",
        r.text()
    );
    assert_eq!(server.stats().requests, 0);
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
    // The first request of a connection (collected before hyper sees it), and a second one
    // on a kept-alive connection (read by hyper, under the stream's deadline).
    for (i, earlier) in [&b""[..], b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"]
        .into_iter()
        .enumerate()
    {
        let mut c = plain(server.addr);
        let mut got = Vec::new();
        if !earlier.is_empty() {
            let r = roundtrip(&mut c, earlier);
            assert_eq!(r.status, 200);
        }
        let mut reader = c.try_clone().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(0));
        let (done2, written2) = (done.clone(), written.clone());
        const REQUEST: &[u8] =
            b"GET /slowly-slowly-slowly-slowly-slowly HTTP/1.1\r\nHost: x\r\n\r\n";
        let start = Instant::now();
        let writer = thread::spawn(move || {
            let mut c = c;
            // A byte every 200 ms: the whole head would take 12 s.
            for b in REQUEST.iter() {
                if done2.load(Ordering::SeqCst) || c.write_all(&[*b]).is_err() {
                    return;
                }
                written2.fetch_add(1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(200));
            }
        });
        let mut chunk = [0u8; 1024];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        let elapsed = start.elapsed();
        let sent = written.load(Ordering::SeqCst);
        done.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
        // Cut by the deadline while the head was still coming, not when it was complete.
        assert!(
            sent < REQUEST.len(),
            "closed after the whole head ({sent} bytes, {elapsed:?})"
        );
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("HTTP/1.1 408 "), "{got}");
        assert!(got.contains("Connection: close"), "{got}");
        server.wait_for("timeouts", |s| s.timeouts == i as u64 + 1);
    }
}

#[test]
fn body_deadline() {
    let server = TestServer::start(
        Limits {
            body_idle_timeout: Duration::from_secs(1),
            ..limits()
        },
        None,
    );
    let mut c = plain(server.addr);
    // The rest of the body never comes: only the deadline answers (before the client's read
    // timeout of 10 s).
    let r = roundtrip(
        &mut c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
    );
    assert_eq!(r.status, 408);
    assert!(closed_by_peer(&mut c));
    server.wait_for("a timeout", |s| s.timeouts == 1);
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    // Every other deadline is a minute away: a close before the client's read timeout (10 s)
    // is the idle timeout's.
    let server = TestServer::start(
        Limits {
            idle_timeout: Duration::from_millis(500),
            ..far_deadlines()
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
    assert_eq!(server.stats().timeouts, 0, "idle closes are not timeouts");
}

#[test]
fn silent_tls_client_does_not_delay_others() {
    // The deadlines are a minute away: a request that waited for the silent clients to be cut
    // would run into the client's read timeout (10 s) and fail.
    let server = TestServer::start(far_deadlines(), Some(plain_acceptor()));
    let silent = plain(server.addr);
    let silent_plain_after_handshake = tls(server.addr);
    server.wait_for("two open connections", |s| s.open_connections == 2);
    let mut c = tls(server.addr);
    let r = roundtrip(
        &mut c,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    // Served while both silent connections were still there, none cut.
    let st = server.stats();
    assert_eq!((st.timeouts, st.tls_failures), (0, 0), "{st:?}");
    assert!(st.open_connections >= 2, "{st:?}");
    drop((silent, silent_plain_after_handshake));
}

#[test]
fn handshake_deadline_closes_a_silent_connection() {
    // The other deadlines are a minute away: a close before the client's read timeout (10 s)
    // is the handshake deadline's.
    let server = TestServer::start(
        Limits {
            handshake_timeout: Duration::from_millis(500),
            ..far_deadlines()
        },
        Some(plain_acceptor()),
    );
    let mut silent = plain(server.addr);
    assert!(closed_by_peer(&mut silent));
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
fn per_address_connection_limit() {
    let server = TestServer::start(
        Limits {
            max_connections_per_address: 2,
            ..limits()
        },
        None,
    );
    let from = |ip: &str| {
        let sock = connect_from(ip, server.addr);
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        sock
    };
    let _a1 = from("127.0.0.1");
    let mut a2 = from("127.0.0.1");
    server.wait_for("two open connections", |s| s.open_connections == 2);
    let mut a3 = from("127.0.0.1");
    assert!(
        closed_by_peer(&mut a3),
        "a third from the same address is closed"
    );
    server.wait_for("a refusal", |s| s.refused_per_address == 1);
    // Another address is not affected, and the held ones still work.
    let mut b1 = from("127.0.0.2");
    assert_eq!(
        roundtrip(&mut b1, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status,
        200
    );
    assert_eq!(
        roundtrip(&mut a2, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status,
        200
    );
    let s = server.stats();
    assert_eq!((s.refused_per_address, s.refused_over_limit), (1, 0));
}

/// A TCP connection to `to` from the loopback address `ip` (any port).
fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        let s = sock.connect(to).await.unwrap();
        let s = s.into_std().unwrap();
        s.set_nonblocking(false).unwrap();
        s
    })
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
    // The grace is a minute: serve returning within 30 s did not wait it out.
    let mut server = TestServer::start(
        Limits {
            shutdown_grace: Duration::from_secs(60),
            ..limits()
        },
        None,
    );
    let mut idle = plain(server.addr);
    assert_eq!(
        roundtrip(&mut idle, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status,
        200
    );
    // A request in progress when the flag is set is finished, with Connection: close.
    let mut busy = plain(server.addr);
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    SLOW.wait_entered();
    server.shutdown.trigger();
    SLOW.release();
    let mut buf = Vec::new();
    let r = read_response(&mut busy, &mut buf, false).unwrap();
    assert_eq!(r.text(), "slow");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        wait_until_refused(server.addr),
        "the listener is closed once the stop began"
    );
    let handle = server.handle.take().unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while !handle.is_finished() {
        assert!(
            Instant::now() < end,
            "serve still runs 30 s after the stop (the grace is 60 s)"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let stopped = handle.join().unwrap().unwrap();
    // The idle connection was open when the stop began; the busy one too unless it finished
    // (it was released right after the trigger) before the accept loop saw the stop. Nothing
    // was cut: the request in progress was finished.
    assert!(
        (1..=2).contains(&stopped.open_at_stop) && stopped.cut == 0,
        "{stopped:?}"
    );
    assert!(closed_by_peer(&mut idle), "idle connection closed");
    assert!(TcpStream::connect(server.addr).is_err(), "listener closed");
}

#[test]
fn mutual_tls() {
    let ca_key = ec_key();
    let ca = make_cert("Test CA", &ca_key, None, CertPurpose::Ca);
    let client_key = ec_key();
    let client = make_cert("client", &client_key, Some(&ca), CertPurpose::TlsClient);
    let other_ca_key = ec_key();
    let other_ca = make_cert("Other CA", &other_ca_key, None, CertPurpose::Ca);
    let stranger = make_cert(
        "stranger",
        &client_key,
        Some(&other_ca),
        CertPurpose::TlsClient,
    );
    let (client, stranger) = (
        client.certificate().x509().clone(),
        stranger.certificate().x509().clone(),
    );
    let (cert_pem, key_pem) = server_identity();
    let ca_pem = ca.certificate().to_pem();

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
    let cert = make_cert("localhost", &key, None, CertPurpose::TlsServer)
        .certificate()
        .to_pem();
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

/// Wait (generously) until connecting to `addr` is refused.
fn wait_until_refused(addr: SocketAddr) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if TcpStream::connect(addr).is_err() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
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

/// Who answers a refusal: hyper (malformed heads: empty body) or this layer (a short text).
#[derive(Clone, Copy, Debug, PartialEq)]
enum By {
    Hyper,
    Us,
}

#[test]
fn protocol_errors_are_answered_and_close() {
    let server = TestServer::start(limits(), None);
    let long = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "a".repeat(5000)
    );
    let many = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..MAX_HEADER_FIELDS)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    use By::*;
    let cases: Vec<(&[u8], u16, By)> = vec![
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, Hyper),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd", 400, Hyper),
        // RFC 9110 §8.6 lets a recipient refuse a list of equal values; hyper does.
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", 400, Hyper),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400, Hyper),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3a\r\n\r\nabc", 400, Hyper),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400, Hyper),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", 400, Hyper),
        (b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400, Hyper),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, Hyper),
        (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400, Hyper),
        (b"GET / HTTP/1.1\r\n\r\n", 400, Us),
        (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, Us),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 400, Hyper),
        (b"GET / HTTP/1.9\r\nHost: x\r\n\r\n", 400, Hyper),
        (b"GET / FOO/1.1\r\nHost: x\r\n\r\n", 400, Hyper),
        (b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400, Hyper),
        (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, Hyper),
        (b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, Hyper),
        (b"GET nopath HTTP/1.1\r\nHost: x\r\n\r\n", 400, Us),
        (b"GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, Us),
        (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, Us),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", 400, Hyper),
        (long.as_bytes(), 431, Hyper),
        (many.as_bytes(), 431, Hyper),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, Us),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501, Us),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, Hyper),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, Hyper),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400, Hyper),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, Us),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", 400, Us),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 400, Us),
    ];
    for (request, status, by) in &cases {
        let (r, closed) = raw(&server, request);
        let shown = String::from_utf8_lossy(&request[..request.len().min(80)]);
        assert_eq!(r.status, *status, "{shown}");
        assert_eq!(r.header("connection"), Some("close"), "{shown}");
        if *by == Us {
            assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
            assert!(!r.body.is_empty(), "{shown}");
        } else {
            assert_eq!(r.header("content-type"), None, "{shown}");
            assert!(r.body.is_empty(), "{shown}");
        }
        assert!(closed, "closed after {shown}");
    }
    // The HTTP/2 connection preface: no HTTP/1.1 answer, the connection is closed.
    let mut c = plain(server.addr);
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    assert!(read_response(&mut c, &mut buf, false).is_none());
    assert_eq!(server.stats().requests, 0);
    server.wait_for("every refusal counted", |s| {
        s.bad_requests == cases.len() as u64 + 1
    });
}

/// Content-Length with Transfer-Encoding (a smuggling attempt behind a proxy that frames by
/// Content-Length): the body is framed by the transfer coding alone and the connection is
/// closed after the response, so what follows the chunked body is never read as a request.
#[test]
fn content_length_with_transfer_encoding_cannot_smuggle_a_request() {
    let server = TestServer::start(limits(), None);
    for order in [
        "Content-Length: 40\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 40",
    ] {
        let mut c = plain(server.addr);
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let request = format!(
            "POST /a HTTP/1.1\r\nHost: x\r\n{order}\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
             GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        c.write_all(request.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let r = read_response(&mut c, &mut buf, false).expect("a response");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "POST /a \nabc");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(buf.is_empty(), "nothing after the first response: {buf:?}");
        assert!(closed_by_peer(&mut c));
    }
    assert_eq!(
        server.stats().requests,
        2,
        "the smuggled requests never ran"
    );
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
    // Equal duplicate Content-Length fields, empty lines before the request,
    // absolute-form target, OPTIONS *, odd methods, OWS around values.
    ok(
        b"POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
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
    // Bare LF line endings (RFC 9112 §2.2 lets a recipient accept them; hyper does), also
    // mixed with CRLF.
    ok(b"GET /lf HTTP/1.1\nHost: x\n\n", "GET /lf \n");
    ok(
        b"POST /lf HTTP/1.1\r\nHost: x\nContent-Length: 2\r\n\nhi",
        "POST /lf \nhi",
    );
    // A fragment (never sent by conforming clients) is dropped from the target.
    ok(b"GET /a?b#frag HTTP/1.1\r\nHost: x\r\n\r\n", "GET /a b\n");
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
    assert_eq!(
        r.version, "HTTP/1.0",
        "hyper answers in the client's version"
    );
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

/// What the handler's response becomes on the wire: a status outside 200..=599 is 500, a
/// handler `Connection: close` closes, headers that would break framing are dropped.
#[test]
fn response_rules() {
    let server = TestServer::start(limits(), None);
    let mut c = plain(server.addr);
    let r = roundtrip(&mut c, b"GET /status700 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 500);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("1"));
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.text(), "x");
    assert!(closed_by_peer(&mut c));
    assert_eq!(server.stats().requests, 1);
}

#[test]
fn a_body_that_keeps_moving_is_not_cut_however_long_it_takes() {
    // Idle limit 1 s, no minimum rate: 12 bytes over about 3 s are taken.
    let server = TestServer::start(
        Limits {
            body_idle_timeout: Duration::from_secs(1),
            ..limits()
        },
        None,
    );
    let mut c = plain(server.addr);
    c.write_all(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n")
        .unwrap();
    for b in b"hello, world" {
        std::thread::sleep(Duration::from_millis(250));
        c.write_all(&[*b]).unwrap();
    }
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).expect("a response");
    assert_eq!(r.status, 200);
    assert!(r.body.ends_with(b"hello, world"));
}

#[test]
fn a_body_below_the_minimum_rate_is_cut_after_its_grace() {
    let server = TestServer::start(
        Limits {
            body_idle_timeout: Duration::from_secs(5),
            min_rate: MinRate {
                bytes_per_sec: 1000,
                grace: Duration::from_secs(1),
            },
            ..limits()
        },
        None,
    );
    let mut c = plain(server.addr);
    c.write_all(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    // 50 bytes/s: a byte every 20 ms, never idle, far below the minimum.
    let r = loop {
        if c.write_all(&[b'x'; 1]).is_err() {
            let mut buf = Vec::new();
            break read_response(&mut c, &mut buf, false);
        }
        std::thread::sleep(Duration::from_millis(20));
        c.set_nonblocking(true).unwrap();
        let mut peek = [0u8; 1];
        let answered = matches!(c.peek(&mut peek), Ok(n) if n > 0);
        c.set_nonblocking(false).unwrap();
        if answered {
            let mut buf = Vec::new();
            break read_response(&mut c, &mut buf, false);
        }
        assert!(started.elapsed() < Duration::from_secs(8), "not cut");
    };
    assert_eq!(r.expect("a response").status, 408);
    server.wait_for("a timeout", |s| s.timeouts == 1);
}

#[test]
fn a_streamed_body_reaches_the_handler_as_it_arrives_under_the_same_limits() {
    let server = TestServer::start(
        Limits {
            max_body_bytes: 3_000_000,
            ..limits()
        },
        None,
    );
    // Chunked, in pieces: the handler reads it as a stream.
    let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 253) as u8).collect();
    let mut c = plain(server.addr);
    c.write_all(b"POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    for piece in data.chunks(70_000) {
        c.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .unwrap();
        c.write_all(piece).unwrap();
        c.write_all(b"\r\n").unwrap();
    }
    c.write_all(b"0\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).expect("a response");
    assert_eq!(r.status, 200);
    let want = format!(
        "streamed {} {}",
        data.len(),
        ls_core::bytes::hex(&openssl::sha::sha256(&data))
    );
    assert_eq!(String::from_utf8_lossy(&r.body), want);
    // Over the limit: the layer's 413, not the handler's answer.
    let mut c = plain(server.addr);
    c.write_all(b"POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let mut r = None;
    for _ in 0..60 {
        let piece = [7u8; 60_000];
        let sent = c
            .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .and_then(|()| c.write_all(&piece))
            .and_then(|()| c.write_all(b"\r\n"));
        if sent.is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    if let Some(resp) = read_response(&mut c, &mut buf, false) {
        r = Some(resp.status);
    }
    assert_eq!(r, Some(413));
}

/// The minimum rate is the peer's: time the body waits for the handler (its turn, its own
/// work) is not counted against the client.
#[test]
fn a_streamed_body_waiting_for_its_handler_is_not_cut_for_the_rate() {
    let server = TestServer::start(
        Limits {
            max_body_bytes: 8 << 20,
            min_rate: MinRate {
                bytes_per_sec: 1 << 20,
                grace: Duration::from_millis(500),
            },
            ..far_deadlines()
        },
        None,
    );
    let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut c = plain(server.addr);
    let mut w = c.try_clone().unwrap();
    let body = data.clone();
    let writer = thread::spawn(move || {
        w.write_all(
            format!(
                "POST /stream-late?2500 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )?;
        w.write_all(&body)
    });
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).expect("a response");
    let _ = writer.join();
    assert_eq!(r.status, 200, "{}", r.text());
    let want = format!(
        "streamed {} {}",
        data.len(),
        ls_core::bytes::hex(&openssl::sha::sha256(&data))
    );
    assert_eq!(String::from_utf8_lossy(&r.body), want);
    assert_eq!(server.stats().timeouts, 0);
}

#[test]
fn a_file_response_is_sent_as_the_client_takes_it() {
    let server = TestServer::start(limits(), None);
    let mut c = plain(server.addr);
    let n = 3_000_001u64;
    let r = roundtrip(
        &mut c,
        format!("GET /file?{n} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, n);
    assert!(r
        .body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i % 251) as u8));
    // The connection stays usable.
    let r = roundtrip(&mut c, b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
}
