//! The building blocks of sealing and opening in constant memory: a buffered reader that knows
//! its position and reads BER element headers, small elements whole and the content of an
//! OCTET STRING in any form (primitive, or constructed of segments, definite or indefinite
//! length, nested), and the pieces of indefinite-length BER that the sealing side writes (as
//! `openssl cms -stream` does: constructed OCTET STRINGs of 64 KiB segments, end-of-contents
//! markers).
//!
//! Failures of a stage inside a `Read` chain (a wrong tag, a decryption or inflation error)
//! travel as an `io::Error` carrying the crate's [`Error`]; [`from_io`] takes it out again, so
//! the caller sees the specific error, not an I/O one.

use crate::error::{Error, Result};
use std::io::{self, Read, Write};

/// The buffer of each reading stage.
pub(crate) const BUF: usize = 64 * 1024;
/// The size of the OCTET STRING segments written.
pub(crate) const SEGMENT: usize = 64 * 1024;
use crate::asn1::MAX_PADDING;
/// Most nesting inside one element read whole, or of constructed OCTET STRING segments.
const MAX_NESTING: usize = 32;

/// Carry one of our errors through an `io::Read` / `io::Write` chain.
pub(crate) fn to_io(e: Error) -> io::Error {
    io::Error::other(e)
}

/// The error an `io::Error` carries if it is one of ours; else an I/O error in `context`.
pub(crate) fn from_io(e: io::Error, context: &str) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(ours) = inner.downcast::<Error>() {
                return *ours;
            }
        }
        return Error::Internal("an error was lost on its way".into());
    }
    Error::Io {
        context: context.into(),
        source: e,
    }
}

fn read_retry(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// An element's header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub tag: u8,
    /// `None` for an indefinite length.
    pub len: Option<u64>,
    raw: [u8; 10],
    raw_len: u8,
}

impl Header {
    pub fn constructed(&self) -> bool {
        self.tag & 0x20 != 0
    }

    /// The header's bytes as read.
    pub fn raw(&self) -> &[u8] {
        &self.raw[..self.raw_len as usize]
    }
}

/// Where a constructed element ends: at a position (definite length) or at its end-of-contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    At(u64),
    Eoc,
}

/// A buffered reader that counts what it consumed and reads BER.
pub(crate) struct Input<'r> {
    inner: &'r mut dyn Read,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    pos: u64,
    eof: bool,
}

impl<'r> Input<'r> {
    pub fn new(inner: &'r mut dyn Read) -> Input<'r> {
        Input {
            inner,
            buf: vec![0u8; BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            pos: 0,
            eof: false,
        }
    }

    /// At least `n` bytes (at most the buffer's size) buffered unless the input ends first;
    /// returns what is buffered.
    pub fn peek(&mut self, n: usize) -> Result<&[u8]> {
        let n = n.min(self.buf.len());
        if self.end - self.start < n && !self.eof {
            if self.start + n > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            while self.end - self.start < n {
                let got = read_retry(self.inner, &mut self.buf[self.end..])
                    .map_err(|e| from_io(e, "reading the input"))?;
                if got == 0 {
                    self.eof = true;
                    break;
                }
                self.end += got;
            }
        }
        Ok(&self.buf[self.start..self.end])
    }

    /// Drop `n` buffered bytes (after [`Self::peek`]).
    pub fn consume(&mut self, n: usize) {
        assert!(
            n <= self.end - self.start,
            "consumed more than was buffered"
        );
        self.start += n;
        self.pos += n as u64;
    }

    /// Whether the input has ended.
    pub fn at_end(&mut self) -> Result<bool> {
        Ok(self.peek(1)?.is_empty())
    }

    /// The next element's header; `what` names it in errors.
    pub fn header(&mut self, what: &str) -> Result<Header> {
        let b = self.peek(10)?;
        if b.len() < 2 {
            return Err(Error::Truncated(format!("the input ends before {what}")));
        }
        let tag = b[0];
        if tag & 0x1f == 0x1f {
            return Err(Error::Malformed(format!(
                "{what}: multi-byte ASN.1 tags are not used by CMS"
            )));
        }
        let l0 = b[1];
        let (len, hl) = if l0 < 0x80 {
            (Some(l0 as u64), 2)
        } else if l0 == 0x80 {
            if tag & 0x20 == 0 {
                return Err(Error::Malformed(format!(
                    "{what}: indefinite length on a primitive ASN.1 element"
                )));
            }
            (None, 2)
        } else {
            let n = (l0 & 0x7f) as usize;
            if n > 8 {
                return Err(Error::Malformed(format!("{what}: a length of {n} bytes")));
            }
            if b.len() < 2 + n {
                return Err(Error::Truncated(format!("the input ends inside {what}")));
            }
            let v = b[2..2 + n].iter().fold(0u64, |v, &x| (v << 8) | x as u64);
            (Some(v), 2 + n)
        };
        let mut raw = [0u8; 10];
        raw[..hl].copy_from_slice(&b[..hl]);
        self.consume(hl);
        Ok(Header {
            tag,
            len,
            raw,
            raw_len: hl as u8,
        })
    }

    /// The next element's header, which must have this tag.
    pub fn expect_header(&mut self, tag: u8, what: &str) -> Result<Header> {
        let h = self.header(what)?;
        if h.tag != tag {
            return Err(Error::Malformed(format!(
                "expected {what} (tag 0x{tag:02x}), found tag 0x{:02x}",
                h.tag
            )));
        }
        Ok(h)
    }

    /// The tag of the next element, if there is one.
    pub fn peek_tag(&mut self) -> Result<Option<u8>> {
        Ok(self.peek(1)?.first().copied())
    }

    /// Whether an end-of-contents marker comes next.
    pub fn at_eoc(&mut self) -> Result<bool> {
        let b = self.peek(2)?;
        Ok(b.len() >= 2 && b[0] == 0 && b[1] == 0)
    }

    /// Where the element whose header was just read ends.
    pub fn end_of(&self, h: &Header) -> End {
        match h.len {
            Some(n) => End::At(self.pos.saturating_add(n)),
            None => End::Eoc,
        }
    }

    /// Whether the element ending at `end` has more content.
    pub fn more(&mut self, end: End) -> Result<bool> {
        match end {
            End::At(p) => Ok(self.pos < p),
            End::Eoc => {
                if self.at_end()? {
                    return Err(Error::Truncated(
                        "the input ends inside an indefinite-length element".into(),
                    ));
                }
                Ok(!self.at_eoc()?)
            }
        }
    }

    /// The end of the element ending at `end`: its end-of-contents read, or its length checked.
    pub fn close(&mut self, end: End, what: &str) -> Result<()> {
        match end {
            End::At(p) if self.pos == p => Ok(()),
            End::At(_) => Err(Error::Malformed(format!(
                "{what} does not end where its length says"
            ))),
            End::Eoc => {
                if self.at_eoc()? {
                    self.consume(2);
                    Ok(())
                } else if self.at_end()? {
                    Err(Error::Truncated(format!("the input ends inside {what}")))
                } else {
                    Err(Error::Malformed(format!(
                        "{what} holds more than it should"
                    )))
                }
            }
        }
    }

    /// The whole next element (header and content, as read), at most `limit` bytes.
    pub fn element(&mut self, what: &str, limit: usize) -> Result<(Header, Vec<u8>)> {
        let h = self.header(what)?;
        let raw = self.rest_of(&h, what, limit)?;
        Ok((h, raw))
    }

    /// The element whose header `h` was just read, whole (header and content, as read), at most
    /// `limit` bytes.
    pub fn rest_of(&mut self, h: &Header, what: &str, limit: usize) -> Result<Vec<u8>> {
        let mut out = h.raw().to_vec();
        self.content_into(h, what, limit, &mut out, 0)?;
        Ok(out)
    }

    fn content_into(
        &mut self,
        h: &Header,
        what: &str,
        limit: usize,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<()> {
        let too_large = || Error::TooLarge(format!("{what} is larger than {limit} bytes"));
        match h.len {
            Some(n) => {
                if n > limit.saturating_sub(out.len()) as u64 {
                    return Err(too_large());
                }
                let mut left = n as usize;
                while left > 0 {
                    let b = self.peek(left)?;
                    if b.is_empty() {
                        return Err(Error::Truncated(format!("the input ends inside {what}")));
                    }
                    let k = b.len().min(left);
                    out.extend_from_slice(&b[..k]);
                    self.consume(k);
                    left -= k;
                }
                Ok(())
            }
            None => {
                if depth >= MAX_NESTING {
                    return Err(Error::TooDeep(format!("{what} is nested too deeply")));
                }
                loop {
                    if self.at_eoc()? {
                        out.extend_from_slice(&[0, 0]);
                        self.consume(2);
                        return Ok(());
                    }
                    let c = self.header(what)?;
                    if c.raw().len() > limit.saturating_sub(out.len()) {
                        return Err(too_large());
                    }
                    out.extend_from_slice(c.raw());
                    self.content_into(&c, what, limit, out, depth + 1)?;
                }
            }
        }
    }

    /// Nothing may follow: the input must end here. Zero bytes, which BER producers pad
    /// with, are tolerated as [`crate::asn1::parse_single`] tolerates them, up to
    /// [`MAX_PADDING`] (an endless stream of zeros is not padding).
    pub fn expect_end(&mut self, what: &str) -> Result<()> {
        let mut zeros = 0usize;
        loop {
            let b = self.peek(BUF)?;
            if b.is_empty() {
                return Ok(());
            }
            if b.iter().any(|&x| x != 0) || zeros + b.len() > MAX_PADDING {
                return Err(Error::Malformed(format!("unexpected bytes after {what}")));
            }
            let n = b.len();
            zeros += n;
            self.consume(n);
        }
    }
}

impl Read for Input<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.start == self.end {
            if self.eof {
                return Ok(0);
            }
            if out.len() >= self.buf.len() {
                // A large read bypasses the buffer.
                let n = read_retry(self.inner, out)?;
                if n == 0 {
                    self.eof = true;
                }
                self.pos += n as u64;
                return Ok(n);
            }
            self.start = 0;
            self.end = read_retry(self.inner, &mut self.buf)?;
            if self.end == 0 {
                self.eof = true;
                return Ok(0);
            }
        }
        let n = (self.end - self.start).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.consume(n);
        Ok(n)
    }
}

/// The content of an OCTET STRING (or of an element implicitly tagged as one) whose header was
/// just read: primitive, or constructed of primitive segments (nested, definite or indefinite
/// length). Reading it to its end also reads the end of the element.
pub(crate) struct Octets<'i, 'r> {
    input: &'i mut Input<'r>,
    /// Bytes left in the current primitive segment.
    left: u64,
    /// The constructed levels still open.
    open: Vec<End>,
    done: bool,
}

impl<'i, 'r> Octets<'i, 'r> {
    pub fn new(input: &'i mut Input<'r>, h: &Header) -> Octets<'i, 'r> {
        let (left, open) = if h.constructed() {
            (0, vec![input.end_of(h)])
        } else {
            (h.len.unwrap_or(0), Vec::new())
        };
        Octets {
            input,
            left,
            open,
            done: false,
        }
    }

    /// Move to the next non-empty primitive segment; `false` at the end.
    fn next_segment(&mut self) -> Result<bool> {
        loop {
            let Some(&end) = self.open.last() else {
                return Ok(false);
            };
            if !self.input.more(end)? {
                self.input.close(end, "a constructed OCTET STRING")?;
                self.open.pop();
                continue;
            }
            let h = self.input.header("an OCTET STRING segment")?;
            // What the in-memory reader (`Tlv::octets`) takes as segments: primitive OCTET
            // STRINGs (or primitive elements of a context-specific tag, as some producers write
            // them), nested constructed ones.
            match h.tag {
                t if t & 0x20 == 0 && (t & 0x1f == 0x04 || t & 0xc0 == 0x80) => {
                    self.left = h.len.unwrap_or(0);
                    if self.left > 0 {
                        return Ok(true);
                    }
                }
                t if t & 0x20 != 0 => {
                    if self.open.len() >= MAX_NESTING {
                        return Err(Error::TooDeep(
                            "OCTET STRING segments nested too deeply".into(),
                        ));
                    }
                    let end = self.input.end_of(&h);
                    self.open.push(end);
                }
                _ => return Err(Error::Malformed("a constructed OCTET STRING".into())),
            }
        }
    }

    /// Read to the end, returning how many bytes were left (0 when the reader was at its end).
    pub fn drain(&mut self) -> Result<u64> {
        let mut scratch = vec![0u8; BUF];
        let mut n = 0u64;
        loop {
            let k = self
                .read(&mut scratch)
                .map_err(|e| from_io(e, "reading the input"))?;
            if k == 0 {
                return Ok(n);
            }
            n += k as u64;
        }
    }
}

impl Read for Octets<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.left == 0 {
            if self.done {
                return Ok(0);
            }
            if !self.next_segment().map_err(to_io)? {
                self.done = true;
                return Ok(0);
            }
        }
        let want = self.left.min(out.len() as u64) as usize;
        let n = self.input.read(&mut out[..want])?;
        if n == 0 {
            return Err(to_io(Error::Truncated(
                "the input ends inside an OCTET STRING".into(),
            )));
        }
        self.left -= n as u64;
        if self.left == 0 && self.open.is_empty() {
            self.done = true;
        }
        Ok(n)
    }
}

/// Read everything left of `r` into `out`, at most `limit` bytes (`TooLarge` beyond).
pub(crate) fn read_bounded(
    r: &mut dyn Read,
    out: &mut Vec<u8>,
    limit: u64,
    what: &str,
) -> Result<()> {
    let mut chunk = vec![0u8; BUF];
    loop {
        let n = read_retry(r, &mut chunk).map_err(|e| from_io(e, "reading the input"))?;
        if n == 0 {
            return Ok(());
        }
        if out.len() as u64 + n as u64 > limit {
            return Err(Error::TooLarge(format!(
                "{what} is larger than the limit of {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

// ---------------------------------------------------------------------------------------------
// Writing indefinite-length BER

/// A constructed element of indefinite length begins.
pub(crate) fn open_indefinite(out: &mut Vec<u8>, tag: u8) {
    out.extend_from_slice(&[tag, 0x80]);
}

/// `n` end-of-contents markers.
pub(crate) fn close_indefinite(out: &mut dyn Write, n: usize) -> io::Result<()> {
    for _ in 0..n {
        out.write_all(&[0, 0])?;
    }
    Ok(())
}

/// One primitive OCTET STRING segment (none for empty data: a constructed OCTET STRING with no
/// segment is the empty string).
pub(crate) fn segment(out: &mut dyn Write, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut h = Vec::with_capacity(6);
    crate::asn1::write_header(&mut h, 0x04, data.len());
    out.write_all(&h)?;
    out.write_all(data)
}

/// Collects written bytes into segments of [`SEGMENT`] bytes, handing each full one to `emit`;
/// [`Segmenter::finish`] hands over the rest.
pub(crate) struct Segmenter {
    buf: Vec<u8>,
}

impl Segmenter {
    pub fn new() -> Segmenter {
        Segmenter {
            buf: Vec::with_capacity(SEGMENT),
        }
    }

    /// Take what fits of `data` (all of it unless a segment fills), calling `emit` for each full
    /// segment; a large write with nothing pending is handed over without being copied.
    pub fn write(
        &mut self,
        mut data: &[u8],
        emit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<usize> {
        let total = data.len();
        while !data.is_empty() {
            if self.buf.is_empty() && data.len() >= SEGMENT {
                emit(&data[..SEGMENT])?;
                data = &data[SEGMENT..];
                continue;
            }
            let take = (SEGMENT - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == SEGMENT {
                emit(&self.buf)?;
                self.buf.clear();
            }
        }
        Ok(total)
    }

    /// Hand over what is pending.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        if !self.buf.is_empty() {
            emit(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// A writer that counts the bytes that pass.
pub(crate) struct Counting<W: Write> {
    pub inner: W,
    pub count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Base64 in lines of `line` input bytes (57 for MIME's 76 characters, 48 for PEM's 64), each
/// followed by `eol`.
pub(crate) struct Base64Lines<W: Write> {
    pub out: W,
    line: usize,
    eol: &'static [u8],
    pending: Vec<u8>,
    text: Vec<u8>,
}

impl<W: Write> Base64Lines<W> {
    pub fn new(out: W, line: usize, eol: &'static [u8]) -> Base64Lines<W> {
        Base64Lines {
            out,
            line,
            eol,
            pending: Vec::with_capacity(line),
            text: Vec::with_capacity(BUF + BUF / 2),
        }
    }

    fn emit_lines(&mut self, mut data: &[u8]) -> io::Result<()> {
        while data.len() >= self.line {
            crate::mime::base64_append(&data[..self.line], &mut self.text);
            self.text.extend_from_slice(self.eol);
            data = &data[self.line..];
            if self.text.len() >= BUF {
                self.out.write_all(&self.text)?;
                self.text.clear();
            }
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    /// The last line, and the writer back.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.pending.is_empty() {
            let p = std::mem::take(&mut self.pending);
            crate::mime::base64_append(&p, &mut self.text);
            self.text.extend_from_slice(self.eol);
        }
        self.out.write_all(&self.text)?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Base64Lines<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let total = data.len();
        if !self.pending.is_empty() {
            let take = (self.line - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < self.line {
                return Ok(total);
            }
            let p = std::mem::take(&mut self.pending);
            self.emit_lines(&p)?;
            self.pending = p;
            self.pending.clear();
        }
        self.emit_lines(data)?;
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A digest state that a [`Digester`] can move to another thread.
pub(crate) trait DigestState: Send + 'static {
    fn update(&mut self, data: &[u8]) -> Result<()>;
}

impl DigestState for openssl::sha::Sha256 {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        openssl::sha::Sha256::update(self, data);
        Ok(())
    }
}

impl DigestState for Vec<(crate::cms::crypto::Digest, openssl::hash::Hasher)> {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        for (_, h) in self.iter_mut() {
            h.update(data)?;
        }
        Ok(())
    }
}

/// Content hashed inline up to this size; beyond it, on a thread of its own.
const INLINE_DIGEST: u64 = 1 << 20;
/// Pieces of content queued for the hashing thread.
const DIGEST_QUEUE: usize = 4;

/// Hashes what it is given: inline for the first MiB, then on a thread of its own, so that
/// hashing (SHA-256 is the slowest step of sealing or opening an incompressible document)
/// overlaps the encryption and the I/O of the calling thread. The digest does not depend on
/// where it was computed. Memory: at most [`DIGEST_QUEUE`] + 2 pieces in flight.
pub(crate) struct Digester<H: DigestState> {
    state: DigesterState<H>,
}

enum DigesterState<H: DigestState> {
    Inline(H, u64),
    Thread {
        tx: std::sync::mpsc::SyncSender<Vec<u8>>,
        spare: std::sync::mpsc::Receiver<Vec<u8>>,
        handle: std::thread::JoinHandle<Result<H>>,
    },
    Gone,
}

impl<H: DigestState> Digester<H> {
    pub fn new(h: H) -> Digester<H> {
        Digester {
            state: DigesterState::Inline(h, 0),
        }
    }

    pub fn update(&mut self, data: &[u8]) -> Result<()> {
        if let DigesterState::Inline(h, n) = &mut self.state {
            if *n + data.len() as u64 <= INLINE_DIGEST {
                *n += data.len() as u64;
                return h.update(data);
            }
            let DigesterState::Inline(h, _) =
                std::mem::replace(&mut self.state, DigesterState::Gone)
            else {
                unreachable!()
            };
            self.state = Self::spawn(h)?;
        }
        match &mut self.state {
            DigesterState::Inline(h, _) => h.update(data),
            DigesterState::Thread { tx, spare, .. } => {
                let mut buf = spare.try_recv().unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(data);
                if tx.send(buf).is_err() {
                    // The thread ended early: its result says why.
                    return self.finish_thread().map(drop);
                }
                Ok(())
            }
            DigesterState::Gone => Err(Error::Internal("a digest used after it ended".into())),
        }
    }

    fn spawn(mut h: H) -> Result<DigesterState<H>> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(DIGEST_QUEUE);
        let (back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(DIGEST_QUEUE + 2);
        let handle = std::thread::Builder::new()
            .name("ls-digest".into())
            .spawn(move || {
                for buf in rx {
                    h.update(&buf)?;
                    let _ = back.try_send(buf);
                }
                Ok(h)
            })
            .map_err(|e| Error::Internal(format!("cannot start a hashing thread: {e}")))?;
        Ok(DigesterState::Thread { tx, spare, handle })
    }

    fn finish_thread(&mut self) -> Result<H> {
        match std::mem::replace(&mut self.state, DigesterState::Gone) {
            DigesterState::Inline(h, _) => Ok(h),
            DigesterState::Thread { tx, handle, .. } => {
                drop(tx);
                handle
                    .join()
                    .map_err(|_| Error::Internal("the hashing thread panicked".into()))?
            }
            DigesterState::Gone => Err(Error::Internal("a digest used after it ended".into())),
        }
    }

    /// The state with everything given hashed into it.
    pub fn finish(mut self) -> Result<H> {
        self.finish_thread()
    }
}

/// Write the file `path` through `f`: into a new file beside it (mode 0600: it may hold an
/// opened document), flushed and synced, renamed into place only when `f` succeeded; on failure
/// the temporary file is removed and `path` is untouched.
pub(crate) fn write_then_rename<T>(
    path: &std::path::Path,
    f: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<T> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let io = |context: String| move |source| Error::Io { context, source };
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} is not a file name", path.display())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.part-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let file = o
        .open(&tmp)
        .map_err(io(format!("creating {}", tmp.display())))?;
    // Removed unless renamed: also when `f` panics (the C ABI turns a panic into an error,
    // and an opened document that was not verified must not stay behind).
    struct Guard<'p>(&'p std::path::Path, bool);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            if !self.1 {
                let _ = std::fs::remove_file(self.0);
            }
        }
    }
    let mut guard = Guard(&tmp, false);
    let mut w = io::BufWriter::with_capacity(4 * BUF, file);
    let v = f(&mut w)?;
    w.flush()
        .map_err(io(format!("writing {}", tmp.display())))?;
    let file = w.into_inner().map_err(|e| Error::Io {
        context: format!("writing {}", tmp.display()),
        source: e.into_error(),
    })?;
    file.sync_all()
        .map_err(io(format!("writing {}", tmp.display())))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| Error::Io {
        context: format!("renaming {} to {}", tmp.display(), path.display()),
        source: e,
    })?;
    guard.1 = true;
    // The rename is durable once the folder is synced.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ber_octets(segments: &[&[u8]], nested: bool) -> Vec<u8> {
        let mut v = vec![0x24, 0x80];
        for (i, s) in segments.iter().enumerate() {
            if nested && i == 1 {
                v.extend_from_slice(&[0x24, 0x80]);
                segment(&mut v, s).unwrap();
                v.extend_from_slice(&[0, 0]);
            } else {
                segment(&mut v, s).unwrap();
            }
        }
        v.extend_from_slice(&[0, 0]);
        v
    }

    #[test]
    fn octets_in_every_form_read_the_same() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let parts: Vec<&[u8]> = data.chunks(70_000).collect();
        let mut forms = vec![
            crate::asn1::octet_string(&data),
            ber_octets(&parts, false),
            ber_octets(&parts, true),
        ];
        // Definite-length constructed.
        let mut inner = Vec::new();
        for p in &parts {
            segment(&mut inner, p).unwrap();
        }
        forms.push(crate::asn1::tlv(0x24, &inner));
        for (i, f) in forms.iter().enumerate() {
            let mut tail = f.clone();
            tail.extend_from_slice(&[0x05, 0x00]); // a NULL after it
            let mut src: &[u8] = &tail;
            let mut input = Input::new(&mut src);
            let h = input.header("x").unwrap();
            let mut got = Vec::new();
            Octets::new(&mut input, &h).read_to_end(&mut got).unwrap();
            assert_eq!(got, data, "form {i}");
            let h = input.expect_header(0x05, "NULL").unwrap();
            assert_eq!(h.len, Some(0));
            input.expect_end("it").unwrap();
        }
    }

    #[test]
    fn truncated_octets_are_refused() {
        let data = vec![1u8; 100_000];
        let full = ber_octets(&[&data[..50_000], &data[50_000..]], false);
        for cut in [3, 10, 50_000, 100_005, full.len() - 1] {
            let mut src: &[u8] = &full[..cut];
            let mut input = Input::new(&mut src);
            let h = input.header("x").unwrap();
            let mut got = Vec::new();
            let e = Octets::new(&mut input, &h)
                .read_to_end(&mut got)
                .unwrap_err();
            let e = from_io(e, "t");
            assert!(matches!(e, Error::Truncated(_)), "cut {cut}: {e:?}");
        }
    }

    #[test]
    fn elements_are_read_whole_within_limits() {
        // SEQUENCE (indefinite) { INTEGER 1, OCTET STRING (constructed) { "ab" } }
        let v = [
            0x30, 0x80, 0x02, 0x01, 0x01, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0, 0, 0, 0,
        ];
        let mut src: &[u8] = &v;
        let mut input = Input::new(&mut src);
        let (_, raw) = input.element("seq", 100).unwrap();
        assert_eq!(raw, v);
        crate::asn1::parse_single(&raw).unwrap();
        let mut src: &[u8] = &v;
        let mut input = Input::new(&mut src);
        assert!(matches!(input.element("seq", 8), Err(Error::TooLarge(_))));
        let mut src: &[u8] = &v[..9];
        let mut input = Input::new(&mut src);
        assert!(matches!(
            input.element("seq", 100),
            Err(Error::Truncated(_))
        ));
    }

    #[test]
    fn base64_lines_are_those_of_the_whole_encoder() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 13) as u8).collect();
        for piece in [1usize, 7, 57, 58, 4096, 5000] {
            let mut w = Base64Lines::new(Vec::new(), 57, b"\r\n");
            for c in data.chunks(piece) {
                w.write_all(c).unwrap();
            }
            assert_eq!(w.finish().unwrap(), crate::mime::base64_encode_mime(&data));
        }
    }

    #[test]
    fn segmenter_cuts_the_same_whatever_the_writes() {
        let data: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        for piece in [1usize, 1000, SEGMENT - 1, SEGMENT, SEGMENT + 1, 300_000] {
            let mut s = Segmenter::new();
            let mut seen: Vec<usize> = Vec::new();
            let mut all = Vec::new();
            let mut emit = |b: &[u8]| {
                seen.push(b.len());
                all.extend_from_slice(b);
                Ok(())
            };
            for c in data.chunks(piece) {
                s.write(c, &mut emit).unwrap();
            }
            s.finish(&mut emit).unwrap();
            assert_eq!(all, data);
            assert!(
                seen[..seen.len() - 1].iter().all(|&n| n == SEGMENT),
                "{piece}"
            );
        }
    }
}
