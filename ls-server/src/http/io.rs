//! The byte stream under hyper: it knows which phase of a request the connection is in and
//! enforces that phase's deadline, since hyper has no deadline counted from a request's first
//! byte.
//!
//! Phases move on events: the first byte read while [`Phase::Idle`] starts a head
//! ([`Phase::Head`]); the service marks the head parsed ([`Phase::Busy`]: it reads the body
//! under its own deadline, then runs the handler) and its response produced
//! ([`Phase::Writing`]); the flush that completes the response makes the connection idle again.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

use super::{bump, HttpStats, Limits, LINGER_BYTES, LINGER_TIME};

/// What the server sends when a request head does not arrive within its deadline.
pub(super) const HEAD_TIMEOUT_REPLY: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n\
request timeout\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the next request's first byte; at the deadline the connection ends quietly.
    Idle(Instant),
    /// A request head is arriving; at the deadline 408 and close.
    Head(Instant),
    /// The service reads the body (under its own deadline) or the handler runs.
    Busy,
    /// A response of `len` body bytes is being written since `started`; the last write went
    /// through at `last`.
    Writing {
        started: Instant,
        last: Instant,
        len: u64,
        written: u64,
    },
}

/// The state one connection's stream and its service share.
pub(super) struct ConnState {
    phase: Mutex<Phase>,
    header_timeout: Duration,
    idle_timeout: Duration,
    write_timeout: Duration,
    min_rate: ls_core::transport::MinRate,
    pub stats: Arc<HttpStats>,
    /// A response was sent (or is being sent) while request body bytes remained unread.
    pub unread_body: AtomicBool,
}

enum Expiry {
    Idle,
    Head,
}

impl ConnState {
    pub fn new(phase: Phase, limits: &Limits, stats: Arc<HttpStats>) -> ConnState {
        ConnState {
            phase: Mutex::new(phase),
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            write_timeout: limits.write_timeout,
            min_rate: limits.min_rate,
            stats,
            unread_body: AtomicBool::new(false),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // Nothing panics while holding it; a poisoned lock still holds a valid phase.
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set(&self, phase: Phase) {
        *self.phase() = phase;
    }

    /// The service produced a response with `len` body bytes to write.
    pub fn writing(&self, len: u64) {
        let now = Instant::now();
        self.set(Phase::Writing {
            started: now,
            last: now,
            len,
            written: 0,
        });
    }

    fn bytes_read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now() + self.header_timeout);
        }
    }

    fn read_deadline(&self) -> Option<(Instant, Expiry)> {
        match *self.phase() {
            Phase::Idle(d) => Some((d, Expiry::Idle)),
            Phase::Head(d) => Some((d, Expiry::Head)),
            // Reads while busy or writing are hyper looking for the end of the stream.
            Phase::Busy | Phase::Writing { .. } => None,
        }
    }

    fn wrote(&self, n: usize) {
        if let Phase::Writing { written, last, .. } = &mut *self.phase() {
            *written += n as u64;
            *last = Instant::now();
        }
    }

    /// A flush completed: if the whole response is out, wait for the next request. True when
    /// the connection became idle (its read deadline starts now).
    fn flushed(&self) -> bool {
        let mut phase = self.phase();
        if let Phase::Writing { len, written, .. } = *phase {
            if written >= len {
                *phase = Phase::Idle(Instant::now() + self.idle_timeout);
                return true;
            }
        }
        false
    }

    /// A response may stall `write_timeout` after its last progress, and must have been
    /// taken at `min_rate` since it started (after the grace).
    fn write_deadline(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Writing {
                started,
                last,
                written,
                ..
            } => {
                let idle = last + self.write_timeout;
                let rate = self.min_rate;
                if rate.bytes_per_sec == 0 {
                    return Some(idle);
                }
                let due = started
                    + rate.grace
                    + Duration::from_secs_f64(written as f64 / rate.bytes_per_sec as f64);
                Some(idle.min(due.max(started + rate.grace)))
            }
            _ => None,
        }
    }
}

/// A stream with the deadlines of [`ConnState`]'s phases, and the bytes read before hyper took
/// over (the first request's head) given back first.
pub(super) struct DeadlineIo<S> {
    inner: S,
    prefix: Vec<u8>,
    prefix_read: usize,
    state: Arc<ConnState>,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    /// Deadline of a write outside [`Phase::Writing`] (a `100 Continue`, hyper's own error
    /// responses, the 408 of a head timeout): `write_timeout` from its first stall.
    stall_deadline: Option<Instant>,
    /// Bytes of [`HEAD_TIMEOUT_REPLY`] written, once the head deadline passed.
    timeout_reply: Option<usize>,
}

/// Whether `deadline` has passed; if not, `timer` will wake the task at it.
fn expired(timer: &mut Option<Pin<Box<Sleep>>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    if Instant::now() >= deadline {
        return true;
    }
    let deadline = tokio::time::Instant::from_std(deadline);
    let sleep = match timer {
        Some(sleep) => {
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            sleep
        }
        None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
    };
    sleep.as_mut().poll(cx).is_ready()
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} deadline passed"))
}

impl<S: AsyncRead + AsyncWrite + Unpin> DeadlineIo<S> {
    pub fn new(inner: S, prefix: Vec<u8>, state: Arc<ConnState>) -> DeadlineIo<S> {
        DeadlineIo {
            inner,
            prefix,
            prefix_read: 0,
            state,
            read_timer: None,
            write_timer: None,
            stall_deadline: None,
            timeout_reply: None,
        }
    }

    /// A write is pending: whether its deadline passed (then it counts as a timeout).
    fn write_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = match self.state.write_deadline() {
            Some(d) => d,
            None => *self
                .stall_deadline
                .get_or_insert_with(|| Instant::now() + self.state.write_timeout),
        };
        let gone = expired(&mut self.write_timer, deadline, cx);
        if gone {
            bump(&self.state.stats.timeouts);
        }
        gone
    }

    /// Send the 408 of a head timeout, then end the stream with an error.
    fn poll_timeout_reply(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let sent = self.timeout_reply.unwrap_or(0);
            if sent < HEAD_TIMEOUT_REPLY.len() {
                match Pin::new(&mut self.inner).poll_write(cx, &HEAD_TIMEOUT_REPLY[sent..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => self.timeout_reply = Some(sent + n),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending if self.write_expired(cx) => {
                        return Poll::Ready(Err(timed_out("write")))
                    }
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            let done = match Pin::new(&mut self.inner).poll_flush(cx) {
                Poll::Ready(_) => Pin::new(&mut self.inner).poll_shutdown(cx),
                Poll::Pending => Poll::Pending,
            };
            return match done {
                Poll::Pending if !self.write_expired(cx) => Poll::Pending,
                _ => Poll::Ready(Err(timed_out("request head"))),
            };
        }
    }

    /// Close: flush, TLS close_notify and FIN; with `linger`, read and discard what the client
    /// still sends (bounded), so the close does not reset the connection and destroy the
    /// response in flight.
    pub async fn close(mut self, linger: bool) {
        let limit = self.state.write_timeout.min(LINGER_TIME);
        let _ = tokio::time::timeout(limit, async {
            self.inner.flush().await?;
            self.inner.shutdown().await
        })
        .await;
        if !linger {
            return;
        }
        let end = tokio::time::Instant::now() + LINGER_TIME;
        let mut sink = vec![0u8; 16 * 1024];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match tokio::time::timeout_at(end, self.inner.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for DeadlineIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.timeout_reply.is_some() {
            return this.poll_timeout_reply(cx);
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.prefix_read < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.prefix_read);
            buf.put_slice(&this.prefix[this.prefix_read..this.prefix_read + n]);
            this.prefix_read += n;
            if this.prefix_read == this.prefix.len() {
                this.prefix = Vec::new();
                this.prefix_read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.state.bytes_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some((deadline, expiry)) = this.state.read_deadline() else {
                    return Poll::Pending;
                };
                if !expired(&mut this.read_timer, deadline, cx) {
                    return Poll::Pending;
                }
                match expiry {
                    // The end of the stream: hyper closes an idle connection quietly.
                    Expiry::Idle => Poll::Ready(Ok(())),
                    Expiry::Head => {
                        bump(&this.state.stats.timeouts);
                        this.timeout_reply = Some(0);
                        this.poll_timeout_reply(cx)
                    }
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for DeadlineIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.stall_deadline = None;
                this.state.wrote(n);
                Poll::Ready(Ok(n))
            }
            Poll::Pending if this.write_expired(cx) => Poll::Ready(Err(timed_out("write"))),
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                this.stall_deadline = None;
                if this.state.flushed() {
                    // hyper may already wait on a read without a deadline (it looks for the end
                    // of the stream while writing): have it poll again, so the idle deadline
                    // is armed.
                    cx.waker().wake_by_ref();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.write_expired(cx) => Poll::Ready(Err(timed_out("write"))),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending if this.write_expired(cx) => Poll::Ready(Err(timed_out("write"))),
            other => other,
        }
    }
}
