//! HTTPS POST over OpenSSL: ureq 2 (no TLS features of its own) does HTTP/1.1, keep-alive and
//! timeouts; `OpensslConnector` does TLS with rust-openssl, so OpenSSL stays the only TLS and
//! crypto library.
//!
//! Trust, in order of precedence:
//! - `pinned_sha256`: the server's leaf certificate must be exactly the pinned one (SHA-256 of
//!   its DER). The host name is not checked then, nor the chain — unless `ca_pem` is given too,
//!   in which case the chain must also verify against it.
//! - `ca_pem`: the chain must verify against these certificates only (CAs or the server's own
//!   self-signed certificate), and the certificate must name the URL's host (DNS name or IP).
//! - neither: the system trust store, with the host name checked.
//!
//! TLS 1.2 is the minimum. Client-side session resumption is not done: rust-openssl's
//! `SslRef::set_session` is `unsafe`, which ls-core forbids; keep-alive makes it rare anyway.

use super::{HttpResponse, MinRate, RateReader, StreamingResponse, Transport};
use crate::error::{Error, Result};
use crate::keys::Identity;
use openssl::ssl::SslStream;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// How to reach one Messaging Service over HTTPS. Start from [`HttpsConfig::new`].
#[derive(Clone)]
pub struct HttpsConfig {
    /// `https://host[:port]/path`. `http://` only with `allow_plain_http`.
    pub url: String,
    /// Trust these certificates (PEM, one or more, or one DER) instead of the system store: the
    /// partner's CA or its self-signed server certificate.
    pub ca_pem: Option<Vec<u8>>,
    /// Hex SHA-256 of the server's leaf certificate (DER); `:` separators and either case are
    /// accepted. When set, the handshake succeeds only with exactly that certificate and the
    /// host name is not checked.
    pub pinned_sha256: Option<String>,
    /// Our certificate and key for mutual TLS (its chain is sent too).
    pub client: Option<Identity>,
    /// Limit on the TCP connect (DNS resolution is not bounded by it).
    pub connect_timeout: Duration,
    /// The idle limit: the longest wait for progress once connected — in the TLS handshake,
    /// for the server to take more of the request body, for the response to start, for more of
    /// its body. (Not a limit on the whole request: a large message on a slow line takes as
    /// long as it takes while it moves at `min_rate`.)
    pub idle_timeout: Duration,
    /// The slowest a request or response body may move on average (after a grace period):
    /// a peer that trickles fails with `Timeout` ([`MinRate::NONE`]: no minimum).
    pub min_rate: MinRate,
    /// Longest response body accepted; a longer one fails with `TooLarge`.
    pub max_response_bytes: u64,
    /// Allow `http://` URLs (tests and local demos only). Default false.
    pub allow_plain_http: bool,
}

impl HttpsConfig {
    /// The default connect timeout (10 s).
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default idle limit (60 s).
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// The default minimum rate: 16 KiB/s on average after 30 s.
    pub const DEFAULT_MIN_RATE: MinRate = MinRate {
        bytes_per_sec: 16 * 1024,
        grace: Duration::from_secs(30),
    };
    /// The default limit on a response body (64 MiB).
    pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 << 20;

    /// A configuration for `url` with the system trust store, no client certificate and the
    /// default limits.
    pub fn new(url: impl Into<String>) -> HttpsConfig {
        HttpsConfig {
            url: url.into(),
            ca_pem: None,
            pinned_sha256: None,
            client: None,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            min_rate: Self::DEFAULT_MIN_RATE,
            max_response_bytes: Self::DEFAULT_MAX_RESPONSE_BYTES,
            allow_plain_http: false,
        }
    }
}

impl fmt::Debug for HttpsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsConfig")
            .field("url", &redact_userinfo(&self.url))
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .field("pinned_sha256", &self.pinned_sha256)
            .field("client", &self.client)
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("min_rate", &self.min_rate)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("allow_plain_http", &self.allow_plain_http)
            .finish()
    }
}

/// The URL with any `user:password@` replaced, for Debug output.
pub fn redact_userinfo(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..start], &url[start + at + 1..]),
        None => url.to_string(),
    }
}

/// POSTs to one HTTPS URL, reusing keep-alive connections across calls. Cheap to share between
/// threads (`Transport` is `Send + Sync`).
pub struct HttpsTransport {
    agent: ureq::Agent,
    url: String,
    /// `host:port` of the URL, for messages (never the path, query or user info).
    endpoint: String,
    max_response_bytes: u64,
    min_rate: MinRate,
}

impl fmt::Debug for HttpsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsTransport")
            .field("endpoint", &self.endpoint)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

impl HttpsTransport {
    /// Checks the configuration and builds the TLS context (no connection is made yet).
    /// `InvalidArgument` for a bad URL, a plain `http://` URL not allowed, or a bad pin;
    /// `CertInvalid` for unreadable `ca_pem`.
    pub fn new(config: HttpsConfig) -> Result<HttpsTransport> {
        let url = config.url.trim().to_string();
        let lower = url.to_ascii_lowercase();
        let plain = if lower.starts_with("https://") {
            false
        } else if lower.starts_with("http://") {
            if !config.allow_plain_http {
                return Err(Error::InvalidArgument(
                    "plain http:// URLs are refused: use https:// (allow_plain_http is for tests)"
                        .into(),
                ));
            }
            true
        } else {
            return Err(Error::InvalidArgument(
                "the service URL must start with https://".into(),
            ));
        };
        if config.idle_timeout.is_zero() || config.connect_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "timeouts must be more than zero".into(),
            ));
        }
        let connector = OpensslConnector::new(&config)?;
        let agent = ureq::AgentBuilder::new()
            .tls_connector(Arc::new(connector))
            .https_only(!plain)
            .timeout_connect(config.connect_timeout)
            // Deadlines of progress, not of the whole request: each read and write.
            .timeout_read(config.idle_timeout)
            .timeout_write(config.idle_timeout)
            // A POST is not replayed to another URL: a 3xx is returned to the caller.
            .redirects(0)
            .max_idle_connections(4)
            .max_idle_connections_per_host(4)
            .user_agent(&format!("layersec/{}", crate::VERSION))
            .build();
        let parsed = agent
            .post(&url)
            .request_url()
            .map_err(|_| Error::InvalidArgument("the service URL is not a valid URL".into()))?;
        let port = parsed.port().unwrap_or(if plain { 80 } else { 443 });
        let endpoint = format!("{}:{port}", parsed.host());
        Ok(HttpsTransport {
            agent,
            url,
            endpoint,
            max_response_bytes: config.max_response_bytes,
            min_rate: config.min_rate,
        })
    }

    /// The URL posted to.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn read_response(&self, resp: ureq::Response) -> Result<HttpResponse> {
        let status = resp.status();
        let content_type = resp.header("content-type").unwrap_or("").to_string();
        let headers = resp
            .headers_names()
            .into_iter()
            .take(MAX_KEPT_HEADERS)
            .filter_map(|n| {
                let v = resp.header(&n)?.to_string();
                Some((n.to_ascii_lowercase(), v))
            })
            .collect();
        let max = self.max_response_bytes;
        let hard = max.saturating_mul(OVERSIZED_FACTOR);
        let declared = resp
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(len) = declared.filter(|&len| len > hard) {
            return Err(Error::TooLarge(format!(
                "the response of {} declares {len} bytes, far more than the {max} allowed",
                self.endpoint
            )));
        }
        let mut reader = RateReader::new(resp.into_reader(), self.min_rate, "the response");
        let mut body = Vec::new();
        let over = match declared {
            Some(len) if len > max => true,
            _ => {
                body.reserve(declared.unwrap_or(0).min(1 << 20) as usize);
                (&mut reader)
                    .take(max.saturating_add(1))
                    .read_to_end(&mut body)
                    .map_err(|e| body_error(&self.endpoint, e))?;
                body.len() as u64 > max
            }
        };
        let oversized = if over {
            // Read on to the end without keeping it: the caller may still identify (from the
            // head) and refuse what the body carries, by its length and digest.
            let mut sha = openssl::sha::Sha256::new();
            sha.update(&body);
            let mut length = body.len() as u64;
            body.truncate(super::OVERSIZED_HEAD);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(body_error(&self.endpoint, e)),
                };
                let keep = super::OVERSIZED_HEAD.saturating_sub(body.len()).min(n);
                body.extend_from_slice(&buf[..keep]);
                sha.update(&buf[..n]);
                length += n as u64;
                if length > hard {
                    return Err(Error::TooLarge(format!(
                        "the response of {} is far longer than the {max} bytes allowed",
                        self.endpoint
                    )));
                }
            }
            Some(super::Oversized {
                length,
                sha256: sha.finish(),
                limit: max,
            })
        } else {
            None
        };
        Ok(HttpResponse {
            status,
            content_type,
            headers,
            body,
            oversized,
        })
    }
}

/// Response header fields kept at most.
const MAX_KEPT_HEADERS: usize = 64;
/// A response body longer than the limit is still read (and hashed) up to this multiple of it.
const OVERSIZED_FACTOR: u64 = 16;

/// A response the server sent while we were still uploading (a 413 before the body was read),
/// as raw bytes: carried out of ureq inside the write error.
#[derive(Debug)]
struct EarlyResponse(Vec<u8>);

impl fmt::Display for EarlyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the server answered before the request was sent whole")
    }
}

impl std::error::Error for EarlyResponse {}

/// Parse an early response: status line, header fields, the body (by Content-Length, else
/// what arrived).
fn parse_early(endpoint: &str, raw: &[u8]) -> Result<HttpResponse> {
    let bad = || {
        Error::BadResponse(format!(
            "{endpoint} answered before the request was sent, with something that is not HTTP"
        ))
    };
    let end = crate::bytes::find(raw, b"\r\n\r\n").ok_or_else(bad)?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(bad)?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(bad());
    }
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .filter(|c| (100..600).contains(c))
        .ok_or_else(bad)?;
    let mut headers = Vec::new();
    for l in lines.take(MAX_KEPT_HEADERS) {
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut r = HttpResponse::new(status, "", Vec::new());
    r.headers = headers;
    r.content_type = r.header("content-type").unwrap_or("").to_string();
    let body = &raw[end + 4..];
    let len = r
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(body.len(), |n| n.min(body.len()));
    r.body = body[..len].to_vec();
    Ok(r)
}

impl HttpsTransport {
    /// GET the URL: for the small documents a service keeps beside its AS4 endpoint (the
    /// enrolment information, `crate::enrol`). Any status is returned, as [`Transport::post`]
    /// returns it.
    pub fn get(&self) -> Result<HttpResponse> {
        match self.agent.get(&self.url).call() {
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => self.read_response(resp),
            Err(ureq::Error::Transport(t)) => Err(transport_error(&self.endpoint, &t)),
        }
    }
}

impl Transport for HttpsTransport {
    fn post(&self, content_type: &str, body: &[u8]) -> Result<HttpResponse> {
        if content_type.is_empty() || content_type.chars().any(|c| c.is_control()) {
            return Err(Error::InvalidArgument(
                "the Content-Type must be non-empty, without control characters".into(),
            ));
        }
        match self
            .agent
            .post(&self.url)
            .set("Content-Type", content_type)
            .send_bytes(body)
        {
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => self.read_response(resp),
            Err(ureq::Error::Transport(t)) => match find_in_chain::<EarlyResponse>(&t) {
                // The service refused the upload before reading it (413): its answer, not a
                // broken pipe.
                Some(early) => parse_early(&self.endpoint, &early.0),
                None => Err(transport_error(&self.endpoint, &t)),
            },
        }
    }

    fn post_streaming(
        &self,
        content_type: &str,
        body: &mut dyn Read,
        len: u64,
    ) -> Result<StreamingResponse> {
        if content_type.is_empty() || content_type.chars().any(|c| c.is_control()) {
            return Err(Error::InvalidArgument(
                "the Content-Type must be non-empty, without control characters".into(),
            ));
        }
        // The body is read as ureq writes it; how fast it is taken is the upload's rate.
        let exact = Exact {
            inner: body.take(len),
            left: len,
        };
        let upload = RateReader::new(exact, self.min_rate, "the request body");
        let sent = self
            .agent
            .post(&self.url)
            .set("Content-Type", content_type)
            .set("Content-Length", &len.to_string())
            .send(upload);
        let resp = match sent {
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
            Err(ureq::Error::Transport(t)) => {
                if let Some(early) = find_in_chain::<EarlyResponse>(&t) {
                    let r = parse_early(&self.endpoint, &early.0)?;
                    return Ok(StreamingResponse {
                        status: r.status,
                        content_type: r.content_type,
                        headers: r.headers,
                        content_length: Some(r.body.len() as u64),
                        body: Box::new(io::Cursor::new(r.body)),
                        oversized: None,
                    });
                }
                // Our own refusal of a slow upload, or the body failing.
                if let Some(e) = find_in_chain::<Error>(&t) {
                    return Err(match e {
                        Error::Timeout(m) => Error::Timeout(m.clone()),
                        other => Error::io(
                            "cannot read the message being sent",
                            io::Error::other(other.to_string()),
                        ),
                    });
                }
                if let Some(e) = find_in_chain::<ShortBody>(&t) {
                    return Err(Error::io(
                        e.to_string(),
                        io::ErrorKind::UnexpectedEof.into(),
                    ));
                }
                return Err(transport_error(&self.endpoint, &t));
            }
        };
        let status = resp.status();
        let content_type = resp.header("content-type").unwrap_or("").to_string();
        let headers = resp
            .headers_names()
            .into_iter()
            .take(MAX_KEPT_HEADERS)
            .filter_map(|n| {
                let v = resp.header(&n)?.to_string();
                Some((n.to_ascii_lowercase(), v))
            })
            .collect();
        let content_length = resp
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let endpoint = self.endpoint.clone();
        let reader = RateReader::new(resp.into_reader(), self.min_rate, "the response");
        Ok(StreamingResponse {
            status,
            content_type,
            headers,
            content_length,
            body: Box::new(OurErrors {
                inner: reader,
                endpoint,
            }),
            oversized: None,
        })
    }
}

/// A request body that must give exactly `left` more bytes.
struct Exact<R> {
    inner: R,
    left: u64,
}

#[derive(Debug)]
struct ShortBody(u64);

impl fmt::Display for ShortBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the message ended {} bytes before its length", self.0)
    }
}

impl std::error::Error for ShortBody {}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::other(ShortBody(self.left)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A response body whose read errors carry our [`Error`] (as [`super::read_error`] reads it).
struct OurErrors<R> {
    inner: R,
    endpoint: String,
}

impl<R: Read> Read for OurErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.get_ref().is_some_and(|i| i.is::<Error>()) {
                return e;
            }
            io::Error::other(body_error(&self.endpoint, e))
        })
    }
}

/// What our TLS connector reports through ureq (inside an `io::Error`), so the classification
/// of a TLS failure survives ureq's error type.
#[derive(Debug)]
enum Failure {
    Tls(String),
    Timeout(String),
    Connect(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Tls(m) | Failure::Timeout(m) | Failure::Connect(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Failure {}

impl From<Failure> for ureq::Error {
    fn from(f: Failure) -> ureq::Error {
        let kind = match f {
            Failure::Timeout(_) => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::Other,
        };
        ureq::Error::from(io::Error::new(kind, f))
    }
}

fn is_timeout(kind: io::ErrorKind) -> bool {
    matches!(kind, io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

fn is_connection_lost(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

/// The first `T` in an error's chain, looking inside `io::Error`s too (their `source()` skips
/// the error they wrap, and ureq nests its errors in them).
fn find_in_chain<'a, T: std::error::Error + 'static>(
    start: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(start);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Our error for an I/O failure while the response body is read.
fn body_error(endpoint: &str, e: io::Error) -> Error {
    if let Some(ssl) = find_in_chain::<openssl::ssl::Error>(&e) {
        if !ssl.io_error().is_some_and(|io| is_timeout(io.kind())) {
            return Error::TlsFailed(format!("TLS error from {endpoint}: {ssl}"));
        }
    }
    match e.kind() {
        k if is_timeout(k) => {
            Error::Timeout(format!("reading the response of {endpoint} timed out"))
        }
        io::ErrorKind::UnexpectedEof => Error::BadResponse(format!(
            "the response of {endpoint} is truncated (the connection closed early)"
        )),
        k if is_connection_lost(k) => Error::BadResponse(format!(
            "the response of {endpoint} is truncated (the connection was lost: {e})"
        )),
        _ => Error::BadResponse(format!("bad response body from {endpoint}: {e}")),
    }
}

/// Our error for a ureq failure before a response arrived. Messages name the endpoint
/// (`host:port`) and the cause, never the URL's path, query or user info.
fn transport_error(endpoint: &str, t: &ureq::Transport) -> Error {
    use ureq::ErrorKind as K;
    if let Some(f) = find_in_chain::<Failure>(t) {
        return match f {
            Failure::Tls(m) => Error::TlsFailed(m.clone()),
            Failure::Timeout(m) => Error::Timeout(m.clone()),
            Failure::Connect(m) => Error::ConnectFailed(m.clone()),
        };
    }
    let io = std::error::Error::source(t).and_then(|s| s.downcast_ref::<io::Error>());
    // ureq nests errors; the innermost says most.
    let cause = find_in_chain::<io::Error>(t)
        .map(|e| {
            let mut inner: &(dyn std::error::Error + 'static) = e;
            while let Some(next) = inner
                .downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .map(|i| i as &(dyn std::error::Error + 'static))
                .or_else(|| inner.source())
            {
                inner = next;
            }
            inner.to_string()
        })
        .unwrap_or_else(|| {
            t.message()
                .map_or_else(|| t.kind().to_string(), |m| format!("{}: {m}", t.kind()))
        });
    let tls = find_in_chain::<openssl::ssl::Error>(t)
        .filter(|ssl| !ssl.io_error().is_some_and(|io| is_timeout(io.kind())));
    match t.kind() {
        K::InvalidUrl | K::UnknownScheme | K::InsecureRequestHttpsOnly => {
            Error::InvalidArgument(format!("cannot POST to {endpoint}: {cause}"))
        }
        K::Dns => Error::ConnectFailed(format!("cannot resolve the host of {endpoint}")),
        K::ConnectionFailed | K::ProxyConnect => match io {
            Some(e) if is_timeout(e.kind()) => {
                Error::Timeout(format!("connecting to {endpoint} timed out"))
            }
            _ => Error::ConnectFailed(format!("cannot connect to {endpoint}: {cause}")),
        },
        K::BadStatus | K::BadHeader => Error::BadResponse(format!(
            "{endpoint} did not answer with valid HTTP: {cause}"
        )),
        K::Io => match (io, tls) {
            (_, Some(ssl)) => Error::TlsFailed(format!("TLS error from {endpoint}: {ssl}")),
            (Some(e), None) if is_timeout(e.kind()) => {
                Error::Timeout(format!("the request to {endpoint} timed out"))
            }
            (Some(e), None) if is_connection_lost(e.kind()) => Error::ConnectFailed(format!(
                "the connection to {endpoint} was lost before a response: {cause}"
            )),
            (Some(e), None) if e.kind() == io::ErrorKind::UnexpectedEof => Error::ConnectFailed(
                format!("{endpoint} closed the connection before a response"),
            ),
            _ => Error::BadResponse(format!("exchange with {endpoint} failed: {cause}")),
        },
        _ => Error::ConnectFailed(format!("cannot reach {endpoint}: {cause}")),
    }
}

/// ureq's TLS hook: the shared OpenSSL trust ([`super::tls::TlsTrust`]).
struct OpensslConnector {
    trust: super::tls::TlsTrust,
}

impl OpensslConnector {
    fn new(config: &HttpsConfig) -> Result<OpensslConnector> {
        Ok(OpensslConnector {
            trust: super::tls::TlsTrust::new(
                config.ca_pem.as_deref(),
                config.pinned_sha256.as_deref(),
                config.client.as_ref(),
            )?,
        })
    }

    fn handshake(
        &self,
        host: &str,
        io: Box<dyn ureq::ReadWrite>,
    ) -> std::result::Result<SslStream<Box<dyn ureq::ReadWrite>>, Failure> {
        self.trust.handshake(host, io).map_err(|e| match e {
            Error::Timeout(m) => Failure::Timeout(m),
            Error::ConnectFailed(m) => Failure::Connect(m),
            Error::TlsFailed(m) => Failure::Tls(m),
            other => Failure::Tls(other.to_string()),
        })
    }
}

impl ureq::TlsConnector for OpensslConnector {
    fn connect(
        &self,
        dns_name: &str,
        io: Box<dyn ureq::ReadWrite>,
    ) -> std::result::Result<Box<dyn ureq::ReadWrite>, ureq::Error> {
        Ok(Box::new(TlsStream::new(self.handshake(dns_name, io)?)))
    }
}

/// A TLS connection as ureq sees it; `socket` exposes the TCP stream so ureq can apply its
/// deadlines and check pooled connections for closure.
///
/// While a request body is written, every [`EARLY_CHECK`] bytes it looks (without blocking)
/// whether the server has answered already, as a server does that refuses a body too large to
/// read (HTTP 413) and then closes: that answer is read and carried out as [`EarlyResponse`],
/// so the caller sees the refusal, not the broken pipe the rest of the upload would meet.
#[derive(Debug)]
struct TlsStream {
    ssl: SslStream<Box<dyn ureq::ReadWrite>>,
    unchecked: usize,
}

/// How many request bytes are written between two looks for an early response.
const EARLY_CHECK: usize = 64 * 1024;
/// The most of an early response that is read.
const EARLY_MAX: usize = 64 * 1024;

impl TlsStream {
    fn new(ssl: SslStream<Box<dyn ureq::ReadWrite>>) -> TlsStream {
        TlsStream { ssl, unchecked: 0 }
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self.ssl.get_ref().socket() {
            Some(tcp) => tcp.set_nonblocking(on),
            None => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    /// The server's response, if one has arrived (never blocks waiting for one to start).
    fn early_response(&mut self) -> Option<Vec<u8>> {
        self.set_nonblocking(true).ok()?;
        let mut buf = vec![0u8; 16 * 1024];
        // A TLS 1.3 session ticket is read here too (and gives WouldBlock: no data).
        let first = self.ssl.read(&mut buf);
        if self.set_nonblocking(false).is_err() {
            return None;
        }
        let n = match first {
            Ok(n) if n > 0 => n,
            _ => return None,
        };
        let mut raw = buf[..n].to_vec();
        // The rest of it, blocking (within the socket's deadlines), up to its end.
        while raw.len() < EARLY_MAX && !early_complete(&raw) {
            match self.ssl.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
        Some(raw)
    }
}

/// Whether `raw` holds a whole response head and as much body as its Content-Length says.
fn early_complete(raw: &[u8]) -> bool {
    let Some(end) = crate::bytes::find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    raw.len() >= end + 4 + len
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.unchecked = 0;
        self.ssl.read(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.unchecked >= EARLY_CHECK {
            self.unchecked = 0;
            if let Some(raw) = self.early_response() {
                return Err(io::Error::other(EarlyResponse(raw)));
            }
        }
        match self.ssl.write(&buf[..buf.len().min(EARLY_CHECK)]) {
            Ok(n) => {
                self.unchecked += n;
                Ok(n)
            }
            // The server may have answered and closed: what did it say?
            Err(e) if is_connection_lost(e.kind()) => match self.early_response() {
                Some(raw) => Err(io::Error::other(EarlyResponse(raw))),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.ssl.flush()
    }
}

impl ureq::ReadWrite for TlsStream {
    fn socket(&self) -> Option<&TcpStream> {
        self.ssl.get_ref().socket()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::Certificate;
    use openssl::pkey::{PKey, Private};
    use openssl::ssl::SslAcceptor;
    use openssl::ssl::{SslMethod, SslVerifyMode};
    use openssl::x509::X509;
    use std::io::{BufRead, BufReader};
    use std::net::{SocketAddr, TcpListener};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::thread;
    use std::time::Instant;

    /// A throwaway EC P-256 self-signed certificate for `cn` with the given SANs (the core's
    /// builder: a TLS server's, or a TLS client's without SANs).
    fn self_signed(cn: &str, dns: &[&str], ips: &[&str]) -> (PKey<Private>, X509) {
        use crate::keys::builder::{CertPurpose, CertificateBuilder};
        let names: Vec<&str> = dns.iter().chain(ips).copied().collect();
        let purpose = if names.is_empty() {
            CertPurpose::TlsClient
        } else {
            CertPurpose::TlsServer
        };
        let g = CertificateBuilder::new(cn, purpose)
            .key_type(crate::KeyType::EcP256)
            .valid_days(2)
            .subject_alt_names(&names)
            .build(None)
            .unwrap();
        (
            g.identity.tls_key().unwrap().clone(),
            g.identity.certificate().x509().clone(),
        )
    }

    fn localhost_cert() -> (PKey<Private>, X509) {
        self_signed("localhost", &["localhost"], &["127.0.0.1"])
    }

    #[derive(Clone)]
    enum Mode {
        /// Answer every request with these bytes (a whole HTTP response).
        Respond(Vec<u8>),
        /// Answer the first request with these bytes, then close the connection.
        RespondAndClose(Vec<u8>),
        /// Accept TCP and never say anything (not even the TLS handshake).
        Mute,
        /// Complete the handshake, read the request, never answer.
        MuteAfterRequest,
        /// Read the request head only, answer 413 at once, then read and discard for a while
        /// (as a server does that refuses a body it will not read) and close.
        RefuseEarly,
    }

    #[derive(Clone, Debug, Default)]
    struct Recorded {
        request_line: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Recorded {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    struct Server {
        addr: SocketAddr,
        accepted: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<Recorded>>>,
        /// The client certificate of each TLS connection (None: none was sent).
        client_certs: Arc<Mutex<Vec<Option<Vec<u8>>>>>,
        /// Connections a mute server let go (after holding them for 10 s).
        released: Arc<AtomicUsize>,
    }

    impl Server {
        fn url(&self, path: &str) -> String {
            format!("https://127.0.0.1:{}{path}", self.addr.port())
        }
        fn requests(&self) -> Vec<Recorded> {
            self.requests.lock().unwrap().clone()
        }
    }

    fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn ok_response() -> Vec<u8> {
        response(200, "application/soap+xml; charset=utf-8", b"<ok/>")
    }

    trait Stream: Read + Write {}
    impl<T: Read + Write> Stream for T {}

    /// Reads one request; None at EOF or on garbage.
    fn read_request(r: &mut BufReader<Box<dyn Stream>>) -> Option<Recorded> {
        let mut rec = Recorded::default();
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        rec.request_line = line.trim_end().to_string();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':')?;
            rec.headers
                .push((n.trim().to_string(), v.trim().to_string()));
        }
        let len: usize = rec
            .header("content-length")
            .map_or(0, |v| v.parse().unwrap());
        rec.body = vec![0; len];
        r.read_exact(&mut rec.body).ok()?;
        Some(rec)
    }

    /// A server on 127.0.0.1 that serves each connection on its own thread. `tls`: its key and
    /// certificate (None: plain HTTP); `require_client_cert`: mutual TLS.
    fn serve(tls: Option<(PKey<Private>, X509)>, require_client_cert: bool, mode: Mode) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls.map(|(key, cert)| {
            let mut a = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
            a.set_private_key(&key).unwrap();
            a.set_certificate(&cert).unwrap();
            if require_client_cert {
                // Any certificate will do: the test checks which one arrived.
                a.set_verify_callback(
                    SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
                    |_, _| true,
                );
            }
            Arc::new(a.build())
        });
        let server = Server {
            addr,
            accepted: Arc::default(),
            requests: Arc::default(),
            client_certs: Arc::default(),
            released: Arc::default(),
        };
        let (accepted, requests, client_certs, released) = (
            Arc::clone(&server.accepted),
            Arc::clone(&server.requests),
            Arc::clone(&server.client_certs),
            Arc::clone(&server.released),
        );
        thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { return };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (acceptor, requests, client_certs, released, mode) = (
                    acceptor.clone(),
                    Arc::clone(&requests),
                    Arc::clone(&client_certs),
                    Arc::clone(&released),
                    mode.clone(),
                );
                thread::spawn(move || {
                    if let Mode::Mute = mode {
                        thread::sleep(Duration::from_secs(10));
                        drop(tcp);
                        released.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    let stream: Box<dyn Stream> = match acceptor {
                        Some(a) => match a.accept(tcp) {
                            Ok(s) => {
                                client_certs
                                    .lock()
                                    .unwrap()
                                    .push(s.ssl().peer_certificate().map(|c| c.to_der().unwrap()));
                                Box::new(s)
                            }
                            Err(_) => return,
                        },
                        None => Box::new(tcp),
                    };
                    let mut r = BufReader::new(stream);
                    if let Mode::RefuseEarly = mode {
                        let mut line = String::new();
                        while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                            line.clear();
                        }
                        let body = b"the message is larger than this service accepts \
                                     (limits.max_message_bytes = 1000)";
                        let head = format!(
                            "HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\n\
                             LayerSec-Max-Message-Bytes: 1000\r\nContent-Length: {}\r\n\
                             Connection: close\r\n\r\n",
                            body.len()
                        );
                        let w = r.get_mut();
                        let _ = w.write_all(head.as_bytes());
                        let _ = w.write_all(body);
                        let _ = w.flush();
                        let until = Instant::now() + Duration::from_secs(1);
                        let mut sink = [0u8; 16 * 1024];
                        let mut drained = 0;
                        while Instant::now() < until && drained < 1 << 20 {
                            match r.read(&mut sink) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => drained += n,
                            }
                        }
                        return;
                    }
                    while let Some(rec) = read_request(&mut r) {
                        requests.lock().unwrap().push(rec);
                        match &mode {
                            Mode::Respond(bytes) | Mode::RespondAndClose(bytes) => {
                                if r.get_mut().write_all(bytes).is_err() {
                                    return;
                                }
                                let _ = r.get_mut().flush();
                                if let Mode::RespondAndClose(_) = mode {
                                    return;
                                }
                            }
                            _ => {
                                thread::sleep(Duration::from_secs(10));
                                drop(r);
                                released.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                        }
                    }
                });
            }
        });
        server
    }

    fn trusting(server_cert: &X509, url: String) -> HttpsConfig {
        let mut c = HttpsConfig::new(url);
        c.ca_pem = Some(server_cert.to_pem().unwrap());
        c.idle_timeout = Duration::from_secs(10);
        c
    }

    fn sha256_hex(cert: &X509) -> String {
        crate::bytes::sha256_hex(&cert.to_der().unwrap())
    }

    const CT: &str = "multipart/related; boundary=\"b1\"; type=\"application/soap+xml\"";

    #[test]
    fn posts_with_ca_pem_and_sends_what_was_asked() {
        let (key, cert) = localhost_cert();
        let s = serve(
            Some((key, cert.clone())),
            false,
            Mode::Respond(ok_response()),
        );
        let t = HttpsTransport::new(trusting(&cert, s.url("/as4/msh?x=1"))).unwrap();
        let r = t.post(CT, b"hello body").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "application/soap+xml; charset=utf-8");
        assert_eq!(r.body, b"<ok/>");
        let reqs = s.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].request_line, "POST /as4/msh?x=1 HTTP/1.1");
        assert_eq!(reqs[0].header("content-type"), Some(CT));
        assert_eq!(reqs[0].header("content-length"), Some("10"));
        assert_eq!(
            reqs[0].header("host"),
            Some(format!("127.0.0.1:{}", s.addr.port()).as_str())
        );
        assert!(reqs[0]
            .header("user-agent")
            .unwrap()
            .starts_with("layersec/"));
        assert_eq!(reqs[0].body, b"hello body");
        assert_eq!(s.client_certs.lock().unwrap()[0], None);
    }

    #[test]
    fn host_name_is_checked_for_a_dns_name() {
        let (key, cert) = localhost_cert();
        let s = serve(
            Some((key, cert.clone())),
            false,
            Mode::Respond(ok_response()),
        );
        let url = format!("https://localhost:{}/", s.addr.port());
        let t = HttpsTransport::new(trusting(&cert, url)).unwrap();
        assert_eq!(t.post("text/xml", b"x").unwrap().status, 200);
    }

    #[test]
    fn keep_alive_reuses_one_connection() {
        let (key, cert) = localhost_cert();
        let s = serve(
            Some((key, cert.clone())),
            false,
            Mode::Respond(ok_response()),
        );
        let t = HttpsTransport::new(trusting(&cert, s.url("/"))).unwrap();
        for i in 0..3 {
            let r = t.post("text/xml", format!("msg {i}").as_bytes()).unwrap();
            assert_eq!(r.body, b"<ok/>");
        }
        assert_eq!(s.requests().len(), 3);
        assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn chunked_responses_are_read() {
        let (key, cert) = localhost_cert();
        let resp = b"HTTP/1.1 202 Accepted\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec();
        let s = serve(Some((key, cert.clone())), false, Mode::Respond(resp));
        let t = HttpsTransport::new(trusting(&cert, s.url("/"))).unwrap();
        for _ in 0..2 {
            let r = t.post("text/xml", b"x").unwrap();
            assert_eq!((r.status, r.body.as_slice()), (202, &b"hello world"[..]));
        }
        assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn pinned_certificate_is_accepted_without_ca_or_host_name() {
        // A certificate for another name: only the pin makes it acceptable.
        let (key, cert) = self_signed("other.example", &["other.example"], &[]);
        let s = serve(
            Some((key, cert.clone())),
            false,
            Mode::Respond(ok_response()),
        );
        for pin in [
            sha256_hex(&cert),
            Certificate::from_x509(cert.clone())
                .unwrap()
                .sha256_fingerprint(),
        ] {
            let mut c = HttpsConfig::new(s.url("/"));
            c.pinned_sha256 = Some(pin);
            let t = HttpsTransport::new(c).unwrap();
            assert_eq!(t.post("text/xml", b"x").unwrap().status, 200);
        }
    }

    #[test]
    fn pin_mismatch_is_tls_failed() {
        let (key, cert) = localhost_cert();
        let (_, other) = localhost_cert();
        let s = serve(
            Some((key, cert.clone())),
            false,
            Mode::Respond(ok_response()),
        );
        // Even with the server's certificate trusted, a different pin refuses it.
        let mut c = trusting(&cert, s.url("/"));
        c.pinned_sha256 = Some(sha256_hex(&other));
        let t = HttpsTransport::new(c).unwrap();
        let e = t.post("text/xml", b"x").unwrap_err();
        assert_eq!(e.code(), ErrorCode::TlsFailed, "{e}");
        assert!(e.to_string().contains("pin"), "{e}");
        assert!(e.to_string().contains(&sha256_hex(&cert)), "{e}");
        assert!(!e.is_transient());
        assert!(s.requests().is_empty());
    }

    #[test]
    fn bad_pins_are_refused() {
        for pin in ["", "abc", &"zz".repeat(32), &"00".repeat(33)] {
            let mut c = HttpsConfig::new("https://127.0.0.1:1/");
            c.pinned_sha256 = Some(pin.to_string());
            let e = HttpsTransport::new(c).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidArgument);
        }
    }

    #[test]
    fn untrusted_server_is_tls_failed() {
        let (key, cert) = localhost_cert();
        let s = serve(Some((key, cert)), false, Mode::Respond(ok_response()));
        let mut c = HttpsConfig::new(s.url("/"));
        c.idle_timeout = Duration::from_secs(10);
        let t = HttpsTransport::new(c).unwrap();
        let e = t.post("text/xml", b"x").unwrap_err();
        assert_eq!(e.code(), ErrorCode::TlsFailed, "{e}");
        assert!(e.to_string().contains("certificate verification"), "{e}");
        assert!(!e.is_transient());
        assert!(s.requests().is_empty());
    }

    #[test]
    fn host_name_mismatch_is_tls_failed() {
        let (key, cert) = self_signed("other.example", &["other.example"], &[]);
        let s = serve(
            Some((key, cert.clone())),
            false,
            Mode::Respond(ok_response()),
        );
        let t = HttpsTransport::new(trusting(&cert, s.url("/"))).unwrap();
        let e = t.post("text/xml", b"x").unwrap_err();
        assert_eq!(e.code(), ErrorCode::TlsFailed, "{e}");
        assert!(e.to_string().contains("mismatch"), "{e}");
        assert!(s.requests().is_empty());
    }

    #[test]
    fn client_certificate_is_presented_for_mutual_tls() {
        let (key, cert) = localhost_cert();
        let s = serve(
            Some((key, cert.clone())),
            true,
            Mode::Respond(ok_response()),
        );
        let (ckey, ccert) = self_signed("client", &[], &[]);
        let id =
            Identity::new(ckey, Certificate::from_x509(ccert.clone()).unwrap(), vec![]).unwrap();
        let mut c = trusting(&cert, s.url("/"));
        c.client = Some(id);
        let t = HttpsTransport::new(c).unwrap();
        assert_eq!(t.post("text/xml", b"x").unwrap().status, 200);
        assert_eq!(
            s.client_certs.lock().unwrap().as_slice(),
            &[Some(ccert.to_der().unwrap())]
        );
    }

    #[test]
    fn mutual_tls_without_a_client_certificate_fails() {
        let (key, cert) = localhost_cert();
        let s = serve(
            Some((key, cert.clone())),
            true,
            Mode::Respond(ok_response()),
        );
        let t = HttpsTransport::new(trusting(&cert, s.url("/"))).unwrap();
        let e = t.post("text/xml", b"x").unwrap_err();
        // TLS 1.3: the server's refusal arrives as an alert after the client's handshake.
        assert!(
            matches!(e.code(), ErrorCode::TlsFailed | ErrorCode::ConnectFailed),
            "{e}"
        );
        assert!(s.requests().is_empty());
    }

    #[test]
    fn error_status_is_a_response() {
        let (key, cert) = localhost_cert();
        let body = b"<soap:Fault/>";
        let s = serve(
            Some((key, cert.clone())),
            false,
            Mode::Respond(response(500, "application/soap+xml", body)),
        );
        let t = HttpsTransport::new(trusting(&cert, s.url("/"))).unwrap();
        let r = t.post("text/xml", b"x").unwrap();
        assert_eq!(r.status, 500);
        assert_eq!(r.content_type, "application/soap+xml");
        assert_eq!(r.body, body);
        let e = r.error_for_status().unwrap_err();
        assert_eq!(e.code(), ErrorCode::HttpStatus);
        assert!(e.is_transient());
        // The connection survives an error status.
        assert_eq!(t.post("text/xml", b"x").unwrap().status, 500);
        assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn redirects_are_not_followed() {
        let (key, cert) = localhost_cert();
        let resp =
            b"HTTP/1.1 302 Found\r\nLocation: https://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n";
        let s = serve(
            Some((key, cert.clone())),
            false,
            Mode::Respond(resp.to_vec()),
        );
        let t = HttpsTransport::new(trusting(&cert, s.url("/"))).unwrap();
        let r = t.post("text/xml", b"x").unwrap();
        assert_eq!((r.status, r.content_type.as_str()), (302, ""));
    }

    #[test]
    fn connection_refused_is_connect_failed_and_transient() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t =
            HttpsTransport::new(HttpsConfig::new(format!("https://127.0.0.1:{port}/x"))).unwrap();
        let e = t.post("text/xml", b"x").unwrap_err();
        assert_eq!(e.code(), ErrorCode::ConnectFailed, "{e}");
        assert!(e.is_transient());
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }

    fn assert_times_out(mode: Mode) {
        let (key, cert) = localhost_cert();
        let s = serve(Some((key, cert.clone())), false, mode);
        let mut c = trusting(&cert, s.url("/"));
        c.idle_timeout = Duration::from_secs(1);
        let t = HttpsTransport::new(c).unwrap();
        let start = Instant::now();
        let e = t.post("text/xml", b"x").unwrap_err();
        let took = start.elapsed();
        assert_eq!(e.code(), ErrorCode::Timeout, "{e}");
        assert!(e.is_transient());
        assert!(took >= Duration::from_millis(900), "{took:?}");
        // Our timeout, while the server still held the connection (it lets go after 10 s).
        assert_eq!(
            s.released.load(Ordering::SeqCst),
            0,
            "the server let go first ({took:?})"
        );
    }

    #[test]
    fn silent_server_times_out_in_the_handshake() {
        assert_times_out(Mode::Mute);
    }

    #[test]
    fn silent_server_times_out_after_the_request() {
        assert_times_out(Mode::MuteAfterRequest);
    }

    #[test]
    fn oversized_responses_are_kept_as_their_head_length_and_digest() {
        let (key, cert) = localhost_cert();
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let declared = response(200, "text/plain", &big);
        let mut chunked =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        chunked.extend_from_slice(b"1388\r\n");
        chunked.extend_from_slice(&big);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        for resp in [declared, chunked] {
            let s = serve(
                Some((key.clone(), cert.clone())),
                false,
                Mode::Respond(resp),
            );
            let mut c = trusting(&cert, s.url("/"));
            c.max_response_bytes = 4999;
            let t = HttpsTransport::new(c.clone()).unwrap();
            let r = t.post("text/xml", b"x").unwrap();
            let o = r.oversized.expect("oversized");
            assert_eq!(o.length, 5000);
            assert_eq!(o.limit, 4999);
            assert_eq!(o.sha256, openssl::sha::sha256(&big));
            assert_eq!(r.body, big, "the head (all of it here)");
            assert_eq!(r.whole().unwrap_err().code(), ErrorCode::TooLarge);
            // The connection was read to its end: the next request on it works.
            assert!(t.post("text/xml", b"y").unwrap().oversized.is_some());
            assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
            // Exactly at the limit is fine.
            c.max_response_bytes = 5000;
            let t = HttpsTransport::new(c.clone()).unwrap();
            assert_eq!(t.post("text/xml", b"x").unwrap().whole().unwrap().body, big);
            // Far beyond it (16 times) is refused outright.
            c.max_response_bytes = 300;
            let t = HttpsTransport::new(c).unwrap();
            let e = t.post("text/xml", b"x").unwrap_err();
            assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
        }
    }

    #[test]
    fn an_upload_refused_early_is_the_servers_answer_not_a_broken_pipe() {
        let (key, cert) = localhost_cert();
        let s = serve(Some((key, cert.clone())), false, Mode::RefuseEarly);
        let t = HttpsTransport::new(trusting(&cert, s.url("/"))).unwrap();
        // Far more than the server drains before it closes.
        let body = vec![b'x'; 32 << 20];
        let r = t.post("text/xml", &body).unwrap();
        assert_eq!(r.status, 413);
        assert_eq!(r.header("layersec-max-message-bytes"), Some("1000"));
        assert_eq!(r.content_type, "text/plain");
        assert!(
            String::from_utf8_lossy(&r.body).contains("limits.max_message_bytes = 1000"),
            "{:?}",
            String::from_utf8_lossy(&r.body)
        );
        // A body that fits the socket buffers is answered the ordinary way.
        let r = t.post("text/xml", b"small").unwrap();
        assert_eq!(r.status, 413);
        assert_eq!(r.header("LayerSec-Max-Message-Bytes"), Some("1000"));
    }

    #[test]
    fn truncated_and_non_http_responses_are_bad_responses() {
        let (key, cert) = localhost_cert();
        for resp in [
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..".to_vec(),
            b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n".to_vec(),
        ] {
            let s = serve(
                Some((key.clone(), cert.clone())),
                false,
                Mode::RespondAndClose(resp),
            );
            let t = HttpsTransport::new(trusting(&cert, s.url("/"))).unwrap();
            let e = t.post("text/xml", b"x").unwrap_err();
            assert_eq!(e.code(), ErrorCode::BadResponse, "{e}");
            assert!(!e.is_transient());
        }
    }

    #[test]
    fn plain_http_only_when_allowed() {
        let s = serve(None, false, Mode::Respond(ok_response()));
        let url = format!("http://127.0.0.1:{}/", s.addr.port());
        let e = HttpsTransport::new(HttpsConfig::new(url.clone())).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(e.to_string().contains("http://"), "{e}");
        let mut c = HttpsConfig::new(url);
        c.allow_plain_http = true;
        let t = HttpsTransport::new(c).unwrap();
        assert_eq!(t.post("text/xml", b"plain").unwrap().body, b"<ok/>");
        assert_eq!(s.requests()[0].body, b"plain");
    }

    #[test]
    fn bad_urls_and_arguments_are_invalid() {
        for url in [
            "ftp://example.com/",
            "example.com",
            "https://",
            "https://exa mple.com/",
        ] {
            let e = HttpsTransport::new(HttpsConfig::new(url)).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidArgument, "{url}");
        }
        let t = HttpsTransport::new(HttpsConfig::new("https://127.0.0.1:1/")).unwrap();
        for ct in ["", "text/xml\r\nX-Evil: 1"] {
            let e = t.post(ct, b"x").unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidArgument);
        }
        let mut c = HttpsConfig::new("https://127.0.0.1:1/");
        c.ca_pem = Some(b"not a certificate".to_vec());
        assert_eq!(
            HttpsTransport::new(c).unwrap_err().code(),
            ErrorCode::CertInvalid
        );
    }

    #[test]
    fn debug_output_hides_user_info_and_keys() {
        let (ckey, ccert) = self_signed("client", &[], &[]);
        let mut c = HttpsConfig::new("https://user:secret@example.com:8443/msh?q=1");
        c.client =
            Some(Identity::new(ckey, Certificate::from_x509(ccert).unwrap(), vec![]).unwrap());
        let d = format!("{c:?}");
        assert!(!d.contains("secret"), "{d}");
        assert!(d.contains("https://***@example.com:8443/msh?q=1"), "{d}");
        assert!(!d.contains("PRIVATE"), "{d}");
        let t = HttpsTransport::new(c).unwrap();
        assert!(!format!("{t:?}").contains("secret"));
        assert_eq!(
            redact_userinfo("https://example.com/a@b"),
            "https://example.com/a@b"
        );
    }
}
