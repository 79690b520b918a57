//! Bodies that are not held whole: a request body handed to the (blocking) handler as it
//! arrives ([`BodyStream`], fed by [`pump`] under the body's limits and progress deadlines), and
//! a response body read from a file in pieces, each by a short blocking task ([`OutBody::File`]).
//!
//! Memory per stream: at most [`IN_FLIGHT`] pieces of at most hyper's read buffer (64 KiB) in
//! the request direction, [`IN_FLIGHT`] pieces of [`FILE_PIECE`] in the response direction.

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use ls_core::transport::MinRate;
use tokio::sync::mpsc;

/// Pieces buffered between the network and the handler (or the file and the network).
pub(super) const IN_FLIGHT: usize = 8;
/// What a response file is read in.
const FILE_PIECE: usize = 128 * 1024;

/// Why a request body could not be read whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyFail {
    TooLarge,
    Malformed,
    /// The client went away.
    Gone,
    /// No byte for the idle limit, or slower than the minimum rate.
    Timeout,
}

/// The body's deadlines: no frame for `idle`, or fewer bytes than `rate` asks for.
#[derive(Clone, Copy, Debug)]
pub(super) struct Progress {
    pub idle: Duration,
    pub rate: MinRate,
}

/// The next data frame of `body` within the deadlines (`None` at its end); `received` counts
/// the bytes so far and must not pass `max`.
pub(super) async fn next_piece(
    body: &mut Incoming,
    progress: Progress,
    started: Instant,
    received: &mut u64,
    max: u64,
) -> Result<Option<Bytes>, BodyFail> {
    loop {
        let frame = match tokio::time::timeout(progress.idle, body.frame()).await {
            Err(_) => return Err(BodyFail::Timeout),
            Ok(None) => return Ok(None),
            Ok(Some(frame)) => frame.map_err(|e| body_error(&e))?,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        *received += data.len() as u64;
        if *received > max {
            return Err(BodyFail::TooLarge);
        }
        if progress.rate.too_slow(*received, started.elapsed()) {
            return Err(BodyFail::Timeout);
        }
        if !data.is_empty() {
            return Ok(Some(data));
        }
    }
}

/// A malformed chunked framing, or a client that went away.
pub(super) fn body_error(e: &hyper::Error) -> BodyFail {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
                    BodyFail::Malformed
                }
                _ => BodyFail::Gone,
            };
        }
        source = s.source();
    }
    if e.is_incomplete_message() || e.is_closed() {
        BodyFail::Gone
    } else {
        BodyFail::Malformed
    }
}

/// What the pump and the connection share about one streamed body.
#[derive(Default)]
pub(super) struct PumpState {
    /// The body was read to its end and handed on.
    pub complete: AtomicBool,
    /// Why it was not (set before the handler sees the error).
    pub failed: Mutex<Option<BodyFail>>,
}

impl PumpState {
    pub fn failure(&self) -> Option<BodyFail> {
        *self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Read `body` into `tx` piece by piece under its limit and deadlines, until its end, a
/// failure (recorded in `state`, then given to the reader as an error), or the reader going
/// away. The minimum rate's clock (and its grace) counts only the time spent waiting on the
/// peer: while the handler is not taking pieces (it waits for its stream slot, or works) the
/// clock is held, so that an upload is not cut for the service's own delays.
pub(super) async fn pump(
    mut body: Incoming,
    tx: mpsc::Sender<io::Result<Bytes>>,
    max: u64,
    progress: Progress,
    state: Arc<PumpState>,
) {
    let mut started = Instant::now();
    let mut received = 0u64;
    loop {
        match next_piece(&mut body, progress, started, &mut received, max).await {
            Ok(Some(data)) => {
                let waiting = Instant::now();
                if tx.send(Ok(data)).await.is_err() {
                    return; // the handler stopped reading
                }
                // Not the peer's time.
                started += waiting.elapsed();
            }
            Ok(None) => {
                state.complete.store(true, Ordering::Release);
                return;
            }
            Err(fail) => {
                *state.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(fail);
                let kind = match fail {
                    BodyFail::Timeout => io::ErrorKind::TimedOut,
                    BodyFail::TooLarge => io::ErrorKind::FileTooLarge,
                    BodyFail::Malformed => io::ErrorKind::InvalidData,
                    BodyFail::Gone => io::ErrorKind::UnexpectedEof,
                };
                let _ = tx
                    .send(Err(io::Error::new(kind, "the request body failed")))
                    .await;
                return;
            }
        }
    }
}

/// A request body as the handler reads it (blocking), as it arrives. Read errors mean the
/// body failed (the connection layer answers for it: 408, 413, 400).
pub struct BodyStream {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    /// The length the client declared (`None`: chunked).
    declared: Option<u64>,
}

impl BodyStream {
    pub(super) fn new(rx: mpsc::Receiver<io::Result<Bytes>>, declared: Option<u64>) -> BodyStream {
        BodyStream {
            rx,
            current: Bytes::new(),
            declared,
        }
    }

    /// The Content-Length of the request, if it had one.
    pub fn declared_len(&self) -> Option<u64> {
        self.declared
    }
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyStream")
            .field("declared", &self.declared)
            .finish_non_exhaustive()
    }
}

impl Read for BodyStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// A response body: bytes, or a file read on a blocking thread as the client takes it.
pub(super) enum OutBody {
    Bytes(Option<Bytes>),
    File {
        rx: mpsc::Receiver<io::Result<Bytes>>,
        len: u64,
        sent: u64,
    },
}

impl OutBody {
    pub fn bytes(b: Vec<u8>) -> OutBody {
        OutBody::Bytes((!b.is_empty()).then(|| Bytes::from(b)))
    }

    /// `len` bytes of `file` from its current position, read piece by piece, each piece in a
    /// short blocking task of its own: no thread waits while the client takes the response
    /// (a slow pull holds a task, not one of the blocking pool's threads). Stops when the
    /// response is dropped.
    pub fn file(file: std::fs::File, len: u64) -> OutBody {
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        tokio::spawn(async move {
            let mut file = Some(file);
            let mut left = len;
            while left > 0 {
                let want = FILE_PIECE.min(usize::try_from(left).unwrap_or(FILE_PIECE));
                let Some(f) = file.take() else { return };
                let read = tokio::task::spawn_blocking(move || {
                    let mut f = f;
                    let piece = read_piece(&mut f, want);
                    (f, piece)
                })
                .await;
                let piece = match read {
                    Ok((f, piece)) => {
                        file = Some(f);
                        piece
                    }
                    Err(_) => Err(io::Error::other("reading the stored body failed")),
                };
                if let Ok(b) = &piece {
                    left -= b.len() as u64;
                }
                let failed = piece.is_err();
                if tx.send(piece).await.is_err() || failed {
                    return;
                }
            }
        });
        OutBody::File { rx, len, sent: 0 }
    }
}

/// Up to `want` (> 0) bytes of `file`; its end is an error (the stored body is shorter than its
/// length).
fn read_piece(file: &mut std::fs::File, want: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; want];
    loop {
        match file.read(&mut buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stored body is shorter than its length",
                ))
            }
            Ok(n) => {
                buf.truncate(n);
                return Ok(Bytes::from(buf));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            OutBody::Bytes(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            OutBody::File { rx, len, sent } => {
                if *sent >= *len {
                    return Poll::Ready(None);
                }
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(Ok(b))) => {
                        *sent += b.len() as u64;
                        Poll::Ready(Some(Ok(Frame::data(b))))
                    }
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stored body ended early",
                    )))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OutBody::Bytes(b) => b.is_none(),
            OutBody::File { len, sent, .. } => sent >= len,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutBody::Bytes(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            OutBody::File { len, .. } => SizeHint::with_exact(*len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    fn temp_file(n: usize) -> std::fs::File {
        let path = std::env::temp_dir().join(format!(
            "ls-body-test-{}-{n}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
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
        f
    }

    /// A file response the client does not take holds no blocking thread: with a pool of one,
    /// a second file response is still read while the first waits.
    #[test]
    fn a_stalled_file_response_parks_no_blocking_thread() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let n = 4 << 20;
            // Never polled: its reader fills the channel, then waits for the client.
            let _stalled = OutBody::file(temp_file(n), n as u64);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let other = OutBody::file(temp_file(n), n as u64);
            let got = tokio::time::timeout(Duration::from_secs(10), other.collect())
                .await
                .expect("the second response is read while the first is stalled")
                .unwrap()
                .to_bytes();
            assert_eq!(got.len(), n);
            assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        });
    }
}
