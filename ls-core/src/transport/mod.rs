//! Carrying built messages to a Messaging Service: the [`Transport`] trait, HTTPS over OpenSSL
//! ([`https::HttpsTransport`]), failover between the nodes of one service
//! ([`failover::Failover`]) and a stub for unit tests ([`stub::StubTransport`]).
//!
//! Failures of a transport use the 6xx codes: `ConnectFailed`, `Timeout`, `TlsFailed`,
//! `BadResponse`, and `HttpStatus` for callers that decide a status is an error
//! ([`HttpResponse::error_for_status`]). [`Error::is_transient`] tells which are worth a retry.

pub mod failover;
pub mod https;
pub mod stub;
pub(crate) mod tls;

pub use failover::{Failover, NodeEvent};
pub use https::{HttpsConfig, HttpsTransport};
pub use stub::StubTransport;

use crate::error::{Error, Result};
use std::io::{self, Read};
use std::sync::Arc;

/// An HTTP response, read whole (bounded).
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Empty when the response had none.
    pub content_type: String,
    /// The header fields, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Set when the body was longer than the transport accepts: it was read to its end (so the
    /// connection stays usable and the caller can still identify and refuse what it carried)
    /// but `body` holds only its first [`OVERSIZED_HEAD`] bytes.
    pub oversized: Option<Oversized>,
}

/// How much of an oversized response body is kept.
pub const OVERSIZED_HEAD: usize = 1 << 20;

/// The whole of a response body that was too long to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Oversized {
    pub length: u64,
    pub sha256: [u8; 32],
    /// The transport's limit it exceeded.
    pub limit: u64,
}

impl HttpResponse {
    pub fn new(status: u16, content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: body.into(),
            oversized: None,
        }
    }

    /// The first header field with this name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The response, unless its body was too long to keep (`TooLarge`).
    pub fn whole(self) -> Result<HttpResponse> {
        match self.oversized {
            None => Ok(self),
            Some(o) => Err(Error::TooLarge(format!(
                "the response of {} bytes is longer than the {} bytes allowed",
                o.length, o.limit
            ))),
        }
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The response itself when 2xx, else `Error::HttpStatus` (transient for 5xx, 408 and 429).
    /// For callers that found no ebMS signal in a non-2xx response.
    pub fn error_for_status(self) -> Result<HttpResponse> {
        if self.is_success() {
            return Ok(self);
        }
        let ct = if self.content_type.is_empty() {
            "no content type"
        } else {
            &self.content_type
        };
        Err(Error::HttpStatus {
            status: self.status,
            message: format!(
                "the service answered HTTP {} ({ct}, {} bytes)",
                self.status,
                self.body.len()
            ),
        })
    }
}

/// A response whose body is read as it arrives (from [`Transport::post_streaming`]).
pub struct StreamingResponse {
    pub status: u16,
    /// Empty when the response had none.
    pub content_type: String,
    /// The header fields, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The declared length of the body, when there was one.
    pub content_length: Option<u64>,
    /// The body. Its read errors carry the transport's [`Error`] (see [`read_error`]).
    pub body: Box<dyn Read + Send>,
    /// Set by a transport that read the body itself and found it too long (as
    /// [`HttpResponse::oversized`]): `body` is then its head.
    pub oversized: Option<Oversized>,
}

impl StreamingResponse {
    /// The first header field with this name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The response read whole, its body at most `max` bytes (else `TooLarge`).
    pub fn read_whole(mut self, max: u64) -> Result<HttpResponse> {
        if let Some(o) = self.oversized {
            return Err(Error::TooLarge(format!(
                "the response of {} bytes is longer than the {} bytes allowed",
                o.length, o.limit
            )));
        }
        let mut body = Vec::new();
        (&mut self.body)
            .take(max.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(read_error)?;
        if body.len() as u64 > max {
            return Err(Error::TooLarge(format!(
                "the response is longer than the {max} bytes allowed"
            )));
        }
        Ok(HttpResponse {
            status: self.status,
            content_type: self.content_type,
            headers: self.headers,
            body,
            oversized: None,
        })
    }
}

impl StreamingResponse {
    /// The response read whole when its body is at most `max` bytes; a longer one is read to
    /// its end (hashed) and kept as its first [`OVERSIZED_HEAD`] bytes with
    /// [`HttpResponse::oversized`] set, as [`Transport::post`] returns it.
    pub fn read_whole_or_head(mut self, max: u64) -> Result<HttpResponse> {
        let mut body = Vec::new();
        let mut oversized = self.oversized;
        if oversized.is_some() {
            (&mut self.body)
                .take(OVERSIZED_HEAD as u64)
                .read_to_end(&mut body)
                .map_err(read_error)?;
        } else {
            (&mut self.body)
                .take(max.saturating_add(1))
                .read_to_end(&mut body)
                .map_err(read_error)?;
            if body.len() as u64 > max {
                let mut sha = openssl::sha::Sha256::new();
                sha.update(&body);
                let mut length = body.len() as u64;
                let mut buf = vec![0u8; 64 * 1024];
                // Measured to its end, but not an endless one.
                let hard = max.saturating_mul(16).max(64 << 20);
                loop {
                    let n = match self.body.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(read_error(e)),
                    };
                    sha.update(&buf[..n]);
                    length += n as u64;
                    if length > hard {
                        return Err(Error::TooLarge(format!(
                            "the response is far longer than the {max} bytes allowed"
                        )));
                    }
                }
                body.truncate(OVERSIZED_HEAD);
                oversized = Some(Oversized {
                    length,
                    sha256: sha.finish(),
                    limit: max,
                });
            }
        }
        Ok(HttpResponse {
            status: self.status,
            content_type: self.content_type,
            headers: self.headers,
            body,
            oversized,
        })
    }
}

impl std::fmt::Debug for StreamingResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingResponse")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

/// A failure while a streamed body was read or written, as an [`Error`]: the transport's own
/// error when it put one inside the `io::Error`, else `BadResponse`.
pub fn read_error(e: io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        if let Ok(inner) = e.into_inner().expect("checked").downcast::<Error>() {
            return *inner;
        }
        unreachable!("checked: the inner error is an Error");
    }
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            Error::Timeout(format!("reading the response timed out: {e}"))
        }
        io::ErrorKind::UnexpectedEof => {
            Error::BadResponse("the response is truncated (the connection closed early)".into())
        }
        _ => Error::BadResponse(format!("the response could not be read: {e}")),
    }
}

/// Something that POSTs a message and returns the synchronous response.
pub trait Transport: Send + Sync {
    /// POST `body` with `content_type` to the service. A 2xx response is `Ok`; any other status
    /// is returned as `Ok` too, so the caller can read an ebMS error signal in it — but a 5xx
    /// without an ebMS body is the caller's to treat as transient.
    fn post(&self, content_type: &str, body: &[u8]) -> Result<HttpResponse>;

    /// POST the `len` bytes `body` gives, read in pieces as they are sent, and return the
    /// response with its body still to be read: neither is held whole in memory. Statuses as
    /// [`Transport::post`]. The default reads both into memory (for stubs).
    fn post_streaming(
        &self,
        content_type: &str,
        body: &mut dyn Read,
        len: u64,
    ) -> Result<StreamingResponse> {
        let mut data = Vec::new();
        body.take(len)
            .read_to_end(&mut data)
            .map_err(|e| Error::io("cannot read the message", e))?;
        if data.len() as u64 != len {
            return Err(Error::io(
                "the message is shorter than its length",
                io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        let r = self.post(content_type, &data)?;
        Ok(StreamingResponse {
            status: r.status,
            content_type: r.content_type,
            headers: r.headers,
            content_length: Some(r.body.len() as u64),
            body: Box::new(io::Cursor::new(r.body)),
            oversized: r.oversized,
        })
    }

    /// [`Transport::post_streaming`] of a body that `reopen` can read again from its start: a
    /// transport with several nodes ([`failover::Failover`]) sends it again to the next node
    /// when one fails after taking some of it. The default ignores `reopen`.
    fn post_reopenable(
        &self,
        content_type: &str,
        body: &mut dyn Read,
        len: u64,
        reopen: Option<Reopen<'_>>,
    ) -> Result<StreamingResponse> {
        let _ = reopen;
        self.post_streaming(content_type, body, len)
    }

    /// POST a single-use request (a pull request: its MessageId is taken once), `build` giving
    /// its content type and bytes. A transport with several nodes ([`failover::Failover`])
    /// builds it anew for every node it goes to: a node that failed after taking it may have
    /// remembered it, and another node of the service would refuse the same bytes as a replay.
    /// The default builds it once.
    fn post_fresh(&self, build: FreshRequest<'_>) -> Result<StreamingResponse> {
        let (content_type, body) = build()?;
        self.post_streaming(&content_type, &mut &body[..], body.len() as u64)
    }
}

/// Builds a single-use request: its content type and bytes ([`Transport::post_fresh`]).
pub type FreshRequest<'a> = &'a dyn Fn() -> Result<(String, Vec<u8>)>;

/// Reads a request body again, from its start (the journalled message file opened again, or
/// bytes in memory).
pub type Reopen<'a> = &'a dyn Fn() -> io::Result<Box<dyn Read + 'a>>;

impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn post(&self, content_type: &str, body: &[u8]) -> Result<HttpResponse> {
        (**self).post(content_type, body)
    }
    fn post_streaming(
        &self,
        content_type: &str,
        body: &mut dyn Read,
        len: u64,
    ) -> Result<StreamingResponse> {
        (**self).post_streaming(content_type, body, len)
    }
    fn post_reopenable(
        &self,
        content_type: &str,
        body: &mut dyn Read,
        len: u64,
        reopen: Option<Reopen<'_>>,
    ) -> Result<StreamingResponse> {
        (**self).post_reopenable(content_type, body, len, reopen)
    }
    fn post_fresh(&self, build: FreshRequest<'_>) -> Result<StreamingResponse> {
        (**self).post_fresh(build)
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn post(&self, content_type: &str, body: &[u8]) -> Result<HttpResponse> {
        (**self).post(content_type, body)
    }
    fn post_streaming(
        &self,
        content_type: &str,
        body: &mut dyn Read,
        len: u64,
    ) -> Result<StreamingResponse> {
        (**self).post_streaming(content_type, body, len)
    }
    fn post_reopenable(
        &self,
        content_type: &str,
        body: &mut dyn Read,
        len: u64,
        reopen: Option<Reopen<'_>>,
    ) -> Result<StreamingResponse> {
        (**self).post_reopenable(content_type, body, len, reopen)
    }
    fn post_fresh(&self, build: FreshRequest<'_>) -> Result<StreamingResponse> {
        (**self).post_fresh(build)
    }
}

impl<T: Transport + ?Sized> Transport for &T {
    fn post(&self, content_type: &str, body: &[u8]) -> Result<HttpResponse> {
        (**self).post(content_type, body)
    }
    fn post_streaming(
        &self,
        content_type: &str,
        body: &mut dyn Read,
        len: u64,
    ) -> Result<StreamingResponse> {
        (**self).post_streaming(content_type, body, len)
    }
    fn post_reopenable(
        &self,
        content_type: &str,
        body: &mut dyn Read,
        len: u64,
        reopen: Option<Reopen<'_>>,
    ) -> Result<StreamingResponse> {
        (**self).post_reopenable(content_type, body, len, reopen)
    }
    fn post_fresh(&self, build: FreshRequest<'_>) -> Result<StreamingResponse> {
        (**self).post_fresh(build)
    }
}

/// A minimum transfer rate: after `grace`, a transfer must have moved at least `bytes_per_sec`
/// times the seconds since it started, less the grace (so a slow start is forgiven, a stall is
/// not). 0 bytes per second: no minimum. Idle limits (no byte at all for a while) are the
/// socket's deadlines; this catches a peer that trickles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub grace: std::time::Duration,
}

impl MinRate {
    /// No minimum.
    pub const NONE: MinRate = MinRate {
        bytes_per_sec: 0,
        grace: std::time::Duration::ZERO,
    };

    /// Whether `moved` bytes after `elapsed` are too slow.
    pub fn too_slow(&self, moved: u64, elapsed: std::time::Duration) -> bool {
        if self.bytes_per_sec == 0 || elapsed <= self.grace {
            return false;
        }
        let due = (elapsed - self.grace).as_secs_f64() * self.bytes_per_sec as f64;
        (moved as f64) < due
    }
}

/// A reader that fails with `Timeout` when it is read more slowly than a [`MinRate`] allows
/// (`what` names the transfer in the message).
pub struct RateReader<R> {
    inner: R,
    rate: MinRate,
    started: std::time::Instant,
    moved: u64,
    what: &'static str,
}

impl<R: Read> RateReader<R> {
    pub fn new(inner: R, rate: MinRate, what: &'static str) -> RateReader<R> {
        RateReader {
            inner,
            rate,
            started: std::time::Instant::now(),
            moved: 0,
            what,
        }
    }
}

impl<R: Read> Read for RateReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.moved += n as u64;
        let elapsed = self.started.elapsed();
        if n > 0 && self.rate.too_slow(self.moved, elapsed) {
            return Err(io::Error::other(Error::Timeout(format!(
                "{} moved {} bytes in {} s, slower than the minimum of {} bytes/s (after a \
                 grace of {} s)",
                self.what,
                self.moved,
                elapsed.as_secs(),
                self.rate.bytes_per_sec,
                self.rate.grace.as_secs()
            ))));
        }
        Ok(n)
    }
}

/// A message handed to a [`Carrier`].
pub struct Outbound<'a> {
    pub content_type: &'a str,
    /// The `len` bytes of the message as built (read in pieces).
    pub body: &'a mut dyn Read,
    pub len: u64,
    /// Its eb:MessageId: a carrier whose answers come later finds the answer by it.
    pub message_id: &'a str,
    /// For a signal about a message we received (our receipt, our error): that message's id.
    /// Such a signal is not answered by the service; the carrier may forget the message (a mail
    /// is deleted from the mailbox once its receipt is handed over).
    pub ref_to: Option<&'a str>,
    /// The same bytes read again from their start, where the caller can (a journalled file,
    /// bytes in memory): a carrier with several nodes then hands the message to the next one
    /// when a node fails after taking some of it.
    pub reopen: Option<Reopen<'a>>,
}

/// How a message handed to an e-mail carrier stands ([`Carrier::pending`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// How often it was submitted (a submission without an answer is repeated after a while).
    pub submissions: u32,
    /// When it was submitted last (Unix time), if ever.
    pub last_submitted: Option<i64>,
    /// Whether the service's answer (receipt or error) has come.
    pub answered: bool,
    /// A delivery-status notification for its last submission, if one came: its reason.
    pub bounced: Option<String>,
    /// Whether sending it again now would submit it again (never submitted, bounced, or
    /// unanswered for longer than the carrier waits).
    pub due: bool,
}

/// What carries a client's messages to its Messaging Service and the service's messages to it:
/// the message-level contract of which HTTPS ([`Transport`], through the implementation for
/// every transport) and e-mail (SMTP out, IMAP or POP3 in; `ls_client`'s mail carrier) are the
/// two implementations. The journal, receipts and exactly-once guarantees of the client sit
/// above it and do not depend on which one carries the messages.
///
/// Over HTTPS the service answers a pushed message at once (the response); over e-mail its
/// answer arrives later, by mail. So [`Carrier::send`] of a UserMessage returns the answer if
/// it is there, and `ReceiptPending` (transient) if it is not yet: callers that journal a message
/// and send it again until it is answered (every caller does) work unchanged on both; sending
/// the same message again submits it again only when the carrier decides it is due.
pub trait Carrier: Send + Sync {
    /// Hand `out` to the service. A UserMessage: the service's answer (a signed receipt or
    /// error signal, to be verified by the caller), or `ReceiptPending`. A signal
    /// (`out.ref_to` set): `Ok(None)` once handed over, or the service's answer if it gave one
    /// at once (HTTPS: the response to a receipt or error we post, usually empty).
    fn send(&self, out: Outbound<'_>) -> Result<Option<HttpResponse>>;

    /// The next message the service has for us, as the service's answer to `pull_request`
    /// (HTTPS: that request is signed and posted, and the response returned, an EBMS:0006
    /// error signal when nothing waits) or the next message of ours in the mailbox (e-mail:
    /// `None` when none is left this round; signals and bounces found on the way are
    /// recorded for [`Carrier::send`], mails that are not ours moved aside).
    fn receive(
        &self,
        pull_request: &dyn Fn() -> Result<crate::as4::message::Built>,
    ) -> Result<Option<StreamingResponse>>;

    /// How the message `message_id` stands on a carrier whose answers come later; `None` on
    /// one that answers at once (HTTPS).
    fn pending(&self, message_id: &str) -> Option<Pending> {
        let _ = message_id;
        None
    }

    /// Wait up to `max` (or until `stop`) for the answer to `message_id`, reading what arrives
    /// meanwhile (only answers, bounces and mails that are not ours; messages are left for the
    /// next [`Carrier::receive`]). Whether the answer is there. At once `true` on a carrier
    /// that answers at once.
    fn await_answer(
        &self,
        message_id: &str,
        max: std::time::Duration,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<bool> {
        let _ = (message_id, max, stop);
        Ok(true)
    }

    /// Wait up to `max` (or until `stop`) for something new to receive, where the carrier can
    /// be told (IMAP IDLE) and is connected already (it never logs in for this); whether
    /// something came. `Ok(false)` at once where it cannot (the caller sleeps as usual).
    fn wait(&self, max: std::time::Duration, stop: &std::sync::atomic::AtomicBool) -> Result<bool> {
        let _ = (max, stop);
        Ok(false)
    }

    /// Whether where a received message comes from is vouched for by the carrier (HTTPS: the
    /// service, over TLS, authenticated its sender) or only by the message's own signature
    /// (e-mail: anyone can send a mail). On the latter, a message whose signature does not
    /// verify is not refused (a refusal would answer a forger) but set aside.
    fn authenticates_origin(&self) -> bool {
        true
    }

    /// Take the received message `message_id` out of the way without answering it (see
    /// [`Carrier::authenticates_origin`]); `why` is recorded.
    fn set_aside(&self, message_id: &str, why: &str) -> Result<()> {
        let _ = (message_id, why);
        Ok(())
    }

    /// The answer returned for `message_id` did not check out (not the receipt of what we
    /// sent): forget it, so that the next one can be taken.
    fn discard_answer(&self, message_id: &str) {
        let _ = message_id;
    }

    /// The message `message_id` is finished (sent or failed): what the carrier kept for it
    /// can go.
    fn forget(&self, message_id: &str) {
        let _ = message_id;
    }

    /// A poll is over: end what must not stay open until the next (a POP3 session holds the
    /// maildrop locked, and its deletions take effect when it ends).
    fn end_round(&self) -> Result<()> {
        Ok(())
    }
}

/// The longest answer to a pushed message, a receipt or a signal that is read (a signed
/// receipt or error signal).
pub const MAX_ANSWER_BYTES: u64 = 4 << 20;

/// HTTPS (or any HTTP-shaped transport) as a carrier: every message is POSTed and the response
/// is the service's answer.
impl<T: Transport> Carrier for T {
    fn send(&self, out: Outbound<'_>) -> Result<Option<HttpResponse>> {
        let r = self
            .post_reopenable(out.content_type, out.body, out.len, out.reopen)?
            .read_whole(MAX_ANSWER_BYTES)?;
        Ok(Some(r))
    }

    fn receive(
        &self,
        pull_request: &dyn Fn() -> Result<crate::as4::message::Built>,
    ) -> Result<Option<StreamingResponse>> {
        // A new pull request for every node it goes to (a node may have taken its MessageId).
        let build = || {
            let req = pull_request()?;
            Ok((req.content_type.clone(), req.body.to_vec()))
        };
        self.post_fresh(&build).map(Some)
    }
}
