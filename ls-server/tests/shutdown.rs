//! `layersec-server serve` stops gracefully on SIGTERM: it stops accepting, closes idle
//! connections, finishes the request in progress (the client gets its signed receipt), logs
//! `stopping` and `stopped`, and exits 0.

mod common;

use common::*;
use ls_core::transport::{HttpResponse, Transport};
use openssl::ssl::{SslConnector, SslMethod, SslStream};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

/// Generous bounds that only detect a hang.
const HANG: Duration = Duration::from_secs(120);

fn tls_to(s: &Server) -> SslStream<TcpStream> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    let ca = openssl::x509::X509::from_pem(&s.tls_ca()).unwrap();
    b.cert_store_mut().add_cert(ca).unwrap();
    let tcp = TcpStream::connect(s.hostport()).unwrap();
    tcp.set_read_timeout(Some(HANG)).unwrap();
    b.build().connect("localhost", tcp).unwrap()
}

/// Reads one response (Content-Length framed) from `c`: status, headers, body.
fn read_response(c: &mut impl Read) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = c.read(&mut chunk).expect("a response");
        assert!(n > 0, "the connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 65536];
        let n = c.read(&mut chunk).expect("the body");
        assert!(n > 0, "the connection closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    (status, headers, body)
}

/// A transport that sends the head and half the body, tells `half_sent`, waits for `go_on`,
/// then sends the rest and reads the answer; the response headers are kept.
struct PausingTransport<'a> {
    server: &'a Server,
    half_sent: mpsc::Sender<()>,
    go_on: Mutex<mpsc::Receiver<()>>,
    headers: Mutex<Vec<(String, String)>>,
}

impl Transport for PausingTransport<'_> {
    fn post(&self, content_type: &str, body: &[u8]) -> ls_core::Result<HttpResponse> {
        let mut c = tls_to(self.server);
        write!(
            c,
            "POST /as4 HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        let half = body.len() / 2;
        c.write_all(&body[..half]).unwrap();
        c.flush().unwrap();
        self.half_sent.send(()).unwrap();
        self.go_on.lock().unwrap().recv().unwrap();
        c.write_all(&body[half..]).unwrap();
        let (status, headers, body) = read_response(&mut c);
        let content_type = headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        *self.headers.lock().unwrap() = headers;
        Ok(HttpResponse::new(status, content_type, body))
    }
}

fn logged(s: &Server, event: &str) -> Option<serde_json::Value> {
    s.logs()
        .iter()
        .find(|l| l.contains(&format!("\"event\":\"{event}\"")))
        .map(|l| serde_json::from_str(l).unwrap())
}

#[test]
fn sigterm_finishes_the_push_in_flight_and_exits_0() {
    let mut s = Server::init("sigterm", |c| c);
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let svc = s.service_cert();

    // An idle kept-alive connection: closed at once when the stop begins.
    let mut idle = tls_to(&s);
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle).0, 200);

    // A large push, half uploaded when SIGTERM arrives.
    let doc = vec![0x42u8; 16 * 1024 * 1024];
    let sent = alice.message("bob", &doc);
    let (half_tx, half_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let t = PausingTransport {
        server: &s,
        half_sent: half_tx,
        go_on: Mutex::new(go_rx),
        headers: Mutex::new(Vec::new()),
    };
    let receipt = std::thread::scope(|scope| {
        let push = scope.spawn(|| alice.exchange(&t, &svc).push(&sent));
        half_rx.recv_timeout(HANG).expect("half the message sent");

        s.terminate();
        assert!(
            wait_until(HANG, || logged(&s, "stopping").is_some()),
            "no stopping line: {:?}",
            s.logs()
        );
        // From then on nobody new gets in ...
        let e = TcpStream::connect(s.hostport()).expect_err("the listener is closed");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
        // ... and the idle connection is closed.
        let mut b = [0u8; 16];
        match idle.read(&mut b) {
            Ok(0) => {}
            Ok(n) => panic!("{n} bytes on an idle connection"),
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the idle connection was not closed: {e}"
            ),
        }

        go_tx.send(()).unwrap();
        push.join().unwrap()
    });
    let receipt = receipt.expect("the push in flight is completed with a receipt");
    assert!(receipt.verified.is_some(), "the receipt is signed");
    let headers = t.headers.lock().unwrap().clone();
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close")),
        "{headers:?}"
    );

    let status = s.wait_exit(HANG).expect("the service exits");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(wait_until(HANG, || logged(&s, "stopped").is_some()));
    let stopping = logged(&s, "stopping").unwrap();
    assert_eq!(stopping["signal"], "SIGTERM");
    let stopped = logged(&s, "stopped").unwrap();
    assert_eq!(stopped["cut_at_grace"], 0, "{stopped}");

    // What was receipted was committed: bob gets it after a restart.
    s.serve();
    let t = s.transport();
    let pulled = bob
        .exchange(&t, &svc)
        .pull(&bob.mpc())
        .unwrap()
        .expect("the message waits");
    assert_eq!(pulled.body, sent.body);
}

#[test]
fn sigint_stops_an_idle_service_at_once() {
    let mut s = Server::init("sigint", |c| c);
    s.serve();
    let mut idle = tls_to(&s);
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle).0, 200);
    let pid = logged(&s, "listening").unwrap()["pid"].as_u64().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Nothing in flight: the grace (30 s) is not waited for; the bound only detects a hang.
    let status = s.wait_exit(HANG).expect("the service exits");
    assert_eq!(status.code(), Some(0));
    assert!(wait_until(HANG, || logged(&s, "stopped").is_some()));
    assert_eq!(logged(&s, "stopping").unwrap()["signal"], "SIGINT");
    assert_eq!(logged(&s, "stopped").unwrap()["open_at_stop"], 1);
}
