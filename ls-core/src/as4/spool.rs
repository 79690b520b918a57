//! A message body received in pieces and kept in a file (the spool), never whole in memory.
//!
//! [`Spooler`] takes the body as it arrives ([`Spooler::feed`], any piece sizes): every byte is
//! written to the spool unchanged, while a `multipart/related` splitter finds the MIME parts
//! across piece boundaries. The SOAP part is kept in memory (bounded by `Limits::max_envelope`,
//! or [`encoded_soap_cap`] in another transfer encoding than binary, refused while it arrives
//! once past it; a second part with the `start` Content-ID is refused when it is complete);
//! an attachment is only a byte range of the spool, whose SHA-256 is computed as it passes —
//! the digest the WS-Security signature's Attachment-Content-Signature-Transform covers, so
//! that a signature is verified without reading the attachment again ([`crate::as4::wss::
//! PartContent::File`]). [`Spooler::finish`] returns the [`SpooledPackage`].
//!
//! It reads exactly what [`Package::parse`](super::package::Package::parse) reads and refuses
//! what it refuses, with the same error codes: delimiters are `--boundary` at a line start,
//! a part ends before the line end that precedes the next delimiter, a close delimiter ends
//! the parts (what follows is the epilogue), and what follows the last delimiter of a body
//! without a close delimiter is not a part. Memory: the SOAP part, the header blocks of the
//! parts (each at most 64 KiB and a line), a few bytes held back at the end of a piece (a
//! delimiter may start there) — never an attachment's body, except one in base64 or
//! quoted-printable transfer encoding, which is decoded from the spool into memory at the end:
//! such parts are accepted up to [`MAX_ENCODED_TOTAL`] bytes (as received) in all, and the
//! message is refused (`TooLarge`) while it arrives once they pass it (AS4 gateways send
//! binary parts).
//!
//! The size refusals while the body arrives apply to the part being received even if no
//! delimiter follows it (where `Package::parse` would not count it as a part).

use super::package::{
    check_envelope_size, check_part_size, media_type, part_identity, soap_type_of, strip_cid,
};
use super::package::{Attachment, Package};
use super::wss::PartContent;
use super::xml::Limits;
use crate::error::{Error, Result};
use crate::mime::{self, Entity};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Header blocks of parts longer than this (and the line that crosses it) are refused, as
/// [`Entity::parse`] refuses them.
const MAX_PART_HEADER_BYTES: usize = 64 * 1024;

/// The largest part in base64 or quoted-printable transfer encoding (as received) that is
/// decoded into memory; larger ones are refused (`TooLarge`): they would have to be held whole.
pub const MAX_ENCODED_PART: usize = 64 << 20;

/// The most bytes (as received) of attachments in base64 or quoted-printable transfer encoding
/// in one message: they are decoded into memory, so beyond it the message is refused
/// (`TooLarge`) while it arrives.
pub const MAX_ENCODED_TOTAL: u64 = 64 << 20;

/// The most bytes of a SOAP part in another transfer encoding than binary, 8bit or 7bit: what
/// base64 in lines of 76 characters takes for `Limits::max_envelope` bytes, and a little more
/// (at most [`MAX_ENCODED_PART`]). Larger ones are refused while they arrive.
pub fn encoded_soap_cap(max_envelope: usize) -> usize {
    (max_envelope / 57 * 78 + 1024).min(MAX_ENCODED_PART)
}

/// The most of a single line that may cross [`MAX_PART_HEADER_BYTES`] before a header block
/// is refused without waiting for its end.
const MAX_HEADER_LINE: usize = 64 * 1024;

/// Where an attachment's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpooledBody {
    /// `offset..offset + len` of the spool, as received (binary, 8bit or 7bit transfer
    /// encoding), with its SHA-256.
    File {
        offset: u64,
        len: u64,
        sha256: [u8; 32],
    },
    /// Decoded from base64 or quoted-printable (read back from the spool at the end).
    Memory(Vec<u8>),
}

impl SpooledBody {
    /// The length of the (decoded) content.
    pub fn len(&self) -> u64 {
        match self {
            SpooledBody::File { len, .. } => *len,
            SpooledBody::Memory(d) => d.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One attachment of a spooled message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpooledAttachment {
    /// As [`super::package::Attachment`]'s fields.
    pub content_id: String,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: SpooledBody,
}

/// A message body in a spool: the SOAP part in memory, the attachments as ranges of the spool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpooledPackage {
    /// The envelope bytes exactly as received.
    pub soap: Vec<u8>,
    /// The envelope's media type without parameters.
    pub soap_content_type: String,
    pub attachments: Vec<SpooledAttachment>,
    /// Bytes of the body (= bytes written to the spool).
    pub length: u64,
}

impl SpooledPackage {
    /// The attachment `href` refers to (as [`super::package::Package::attachment`]).
    pub fn attachment(&self, href: &str) -> Option<&SpooledAttachment> {
        let cid = match href.get(..4) {
            Some(p) if p.eq_ignore_ascii_case("cid:") => &href[4..],
            _ => href,
        };
        let cid = strip_cid(cid);
        self.attachments
            .iter()
            .find(|a| a.content_id == cid)
            .or_else(|| {
                let decoded = crate::bytes::percent_decode_strict(cid)
                    .and_then(|d| String::from_utf8(d).ok())?;
                self.attachments.iter().find(|a| a.content_id == decoded)
            })
    }
}

impl SpooledPackage {
    /// The attachments as the signature check takes them: ranges of `spool` with their
    /// SHA-256, or decoded bytes.
    pub fn parts<'a>(&'a self, spool: &'a Path) -> Vec<(&'a str, PartContent<'a>)> {
        self.attachments
            .iter()
            .map(|a| {
                let content = match &a.body {
                    SpooledBody::File {
                        offset,
                        len,
                        sha256,
                    } => PartContent::File {
                        path: spool,
                        offset: *offset,
                        len: *len,
                        sha256: Some(*sha256),
                    },
                    SpooledBody::Memory(d) => PartContent::Bytes(d),
                };
                (a.content_id.as_str(), content)
            })
            .collect()
    }

    /// The package in memory, its attachments read from `spool` (each at most `max_part`
    /// bytes, else `TooLarge`).
    pub fn to_package(&self, spool: &Path, max_part: u64) -> Result<Package> {
        let mut attachments = Vec::new();
        for a in &self.attachments {
            let data = match &a.body {
                SpooledBody::File { offset, len, .. } => crate::as4::message::PayloadFile {
                    path: spool.to_path_buf(),
                    offset: *offset,
                    len: *len,
                    sha256: None,
                }
                .read_all(max_part)?,
                SpooledBody::Memory(d) => d.clone(),
            };
            attachments.push(Attachment {
                content_id: a.content_id.clone(),
                content_type: a.content_type.clone(),
                headers: a.headers.clone(),
                data,
            });
        }
        Ok(Package {
            soap: self.soap.clone(),
            soap_content_type: self.soap_content_type.clone(),
            attachments,
        })
    }
}

/// What the part being received is.
enum Role {
    /// Its header block has not ended yet.
    Undecided,
    /// The SOAP part: its bytes are kept, up to `cap` (the envelope limit, or for another
    /// transfer encoding than binary [`encoded_soap_cap`]); more are refused.
    Soap { identity: bool, cap: usize },
    /// An attachment in an identity transfer encoding: hashed as it passes.
    Hashed(openssl::sha::Sha256),
    /// An attachment in another transfer encoding: decoded from the spool at the end.
    Encoded,
    /// A part whose header block is refused if it is committed (its `header_error`, raised
    /// at the end): nothing is kept.
    Refused,
    /// A second part with the `start` Content-ID: refused (its `header_error`) as soon as it
    /// is committed; nothing is kept.
    SecondStart,
}

/// A part being received, or received (committed when the next delimiter is found).
struct RawPart {
    /// Its header block, up to and including the empty line that ends it.
    headers: Vec<u8>,
    /// The header block has ended.
    headers_done: bool,
    /// Offset of the body in the spool, once the header block has ended.
    body_offset: u64,
    body_len: u64,
    role: Role,
    /// The SOAP part's bytes (at most the envelope limit).
    soap: Vec<u8>,
    /// A failure found in its header block (raised only if the part is committed).
    header_error: Option<Error>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// After a delimiter, until the end of its line.
    DelimiterLine,
    /// In a part.
    Part,
    /// After the close delimiter.
    Epilogue,
}

enum Kind {
    /// `multipart/related`.
    Multipart {
        /// `--boundary`.
        delimiter: Vec<u8>,
        start: Option<String>,
        outer_type: Option<String>,
    },
    /// A lone SOAP envelope of this media type.
    Single(String),
}

/// Receives a message body into a spool; see the module documentation.
pub struct Spooler<W> {
    out: W,
    content_type: String,
    kind: Kind,
    limits: Limits,
    /// Bytes received (= written to the spool).
    received: u64,
    /// Offset in the spool of the first byte of `held`.
    scan_at: u64,
    /// Bytes received but not yet passed on: the start of a delimiter may be among them.
    held: Vec<u8>,
    /// The byte before `held` (a line end at the start of the body).
    prev: u8,
    delimiters: usize,
    state: State,
    current: Option<RawPart>,
    parts: Vec<RawPart>,
    /// The lone envelope's bytes (at most the envelope limit).
    single: Vec<u8>,
    /// Bytes of attachments in an encoding decoded at the end (at most [`MAX_ENCODED_TOTAL`]).
    encoded: u64,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::MalformedMime(msg.into())
}

fn io_error(e: io::Error) -> Error {
    Error::io("cannot write the message to its spool file", e)
}

impl<W: Write + Read + Seek> Spooler<W> {
    /// A spooler for a body of `content_type` written to `out` (from its current position,
    /// which must be its start: offsets are counted from there).
    pub fn new(content_type: &str, out: W, limits: &Limits) -> Result<Spooler<W>> {
        let mt = media_type(content_type);
        let kind = match mt.as_str() {
            "multipart/related" => {
                let boundary = mime::param(content_type, "boundary")
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad("multipart/related without a boundary"))?;
                mime::check_boundary(&boundary)?;
                Kind::Multipart {
                    delimiter: format!("--{boundary}").into_bytes(),
                    start: mime::param(content_type, "start")
                        .map(|s| strip_cid(&s).to_string())
                        .filter(|s| !s.is_empty()),
                    outer_type: mime::param(content_type, "type")
                        .map(|t| t.trim().to_ascii_lowercase()),
                }
            }
            "application/soap+xml" | "text/xml" => Kind::Single(mt),
            "" => return Err(bad("the message has no Content-Type")),
            other => {
                return Err(bad(format!(
                    "unexpected message Content-Type {other} (multipart/related or SOAP)"
                )))
            }
        };
        Ok(Spooler {
            out,
            content_type: content_type.to_string(),
            kind,
            limits: limits.clone(),
            received: 0,
            scan_at: 0,
            held: Vec::new(),
            prev: b'\n',
            delimiters: 0,
            state: State::Preamble,
            current: None,
            parts: Vec::new(),
            single: Vec::new(),
            encoded: 0,
        })
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The SOAP part (decoded, as [`SpooledPackage::soap`] will hold it), once it is whole:
    /// `None` while it is still arriving or has not begun (and always for a lone envelope,
    /// which is whole only at the end), `Some(Err)` when it cannot be decoded or is too large
    /// (the message will be refused). It is the part whose delimiter has been received; the
    /// message may still be refused at [`Spooler::finish`] (a later part, a second start part),
    /// but if it is accepted its SOAP part is this one. For a check before the rest of the
    /// body is received (`exchange::precheck_soap_part`).
    pub fn soap_part(&self) -> Option<Result<std::borrow::Cow<'_, [u8]>>> {
        let part = self
            .parts
            .iter()
            .find(|p| matches!(p.role, Role::Soap { .. }))?;
        let identity = matches!(part.role, Role::Soap { identity: true, .. });
        if identity {
            // (At most `max_envelope` bytes: more were refused as they arrived.)
            return Some(Ok(std::borrow::Cow::Borrowed(&part.soap)));
        }
        let decoded = (|| {
            let mut whole = part.headers.clone();
            whole.extend_from_slice(&part.soap);
            let data = Entity::parse(&whole)?.decoded_body()?.into_owned();
            check_envelope_size(data.len(), &self.limits)?;
            Ok(std::borrow::Cow::Owned(data))
        })();
        Some(decoded)
    }

    /// The next piece of the body.
    pub fn feed(&mut self, piece: &[u8]) -> Result<()> {
        if piece.is_empty() {
            return Ok(());
        }
        self.out.write_all(piece).map_err(io_error)?;
        self.received += piece.len() as u64;
        if let Kind::Single(_) = self.kind {
            let room = self.limits.max_envelope.saturating_sub(self.single.len());
            self.single
                .extend_from_slice(&piece[..piece.len().min(room)]);
            return Ok(());
        }
        if self.held.is_empty() {
            self.scan(piece, false)
        } else {
            let mut buf = std::mem::take(&mut self.held);
            buf.extend_from_slice(piece);
            self.scan(&buf, false)
        }
    }

    /// Look for delimiters in `buf` (which starts at `self.scan_at` of the spool) and pass the
    /// bytes on; unless `last`, keep back the end that may be the start of a delimiter.
    fn scan(&mut self, buf: &[u8], last: bool) -> Result<()> {
        let Kind::Multipart { delimiter, .. } = &self.kind else {
            return Ok(());
        };
        let d = delimiter.clone();
        let dlen = d.len();
        let mut done = 0; // bytes of buf passed on
        let mut search = 0;
        let mut hold_from = None;
        while let Some(off) = crate::bytes::find(&buf[search..], &d) {
            let p = search + off;
            let line_start = if p == 0 {
                self.prev == b'\n'
            } else {
                buf[p - 1] == b'\n'
            };
            if !line_start {
                search = p + dlen;
                continue;
            }
            // Whether it closes the parts depends on the two bytes after it.
            if !last && p + dlen + 2 > buf.len() {
                hold_from = Some(p.saturating_sub(2).max(done));
                break;
            }
            self.advance(&buf[done..p], self.scan_at + done as u64, true)?;
            self.delimiter(buf.get(p + dlen..p + dlen + 2) == Some(b"--"))?;
            done = p + dlen;
            search = p + dlen;
        }
        let hold = match hold_from {
            Some(h) => h,
            None if last => buf.len(),
            None => self.hold_point(buf, done, &d),
        };
        self.advance(&buf[done..hold], self.scan_at + done as u64, false)?;
        if hold > 0 {
            self.prev = buf[hold - 1];
        }
        self.scan_at += hold as u64;
        self.held = buf[hold..].to_vec();
        Ok(())
    }

    /// Where the end of `buf` that may begin a delimiter (with the line end before it) starts.
    fn hold_point(&self, buf: &[u8], from: usize, d: &[u8]) -> usize {
        let first = from.max(buf.len().saturating_sub(d.len() + 2));
        for h in first..buf.len() {
            let tail = &buf[h..];
            let prefix_of = |lead: &[u8]| {
                let n = tail.len().min(lead.len());
                tail[..n] == lead[..n]
                    && (tail.len() <= lead.len() || d.starts_with(&tail[lead.len()..]))
            };
            if prefix_of(b"\r\n") || prefix_of(b"\n") {
                return h;
            }
            let at_line_start = if h == 0 {
                self.prev == b'\n'
            } else {
                buf[h - 1] == b'\n'
            };
            if at_line_start && d.starts_with(tail) {
                return h;
            }
        }
        buf.len()
    }

    /// A delimiter at a line start was found (`closes`: `--` follows it).
    fn delimiter(&mut self, closes: bool) -> Result<()> {
        self.delimiters += 1;
        if self.delimiters > self.limits.max_parts + 1 {
            return Err(Error::TooLarge(format!(
                "the message has more than {} MIME parts",
                self.limits.max_parts
            )));
        }
        if self.state == State::Epilogue {
            return Ok(());
        }
        if let Some(mut part) = self.current.take() {
            if let Role::SecondStart = part.role {
                // Refused now rather than kept to the end (an error of an earlier part comes
                // first, as `Package::parse` finds it first).
                let earlier = self.parts.iter_mut().find_map(|p| p.header_error.take());
                let own = part.header_error.take();
                return Err(earlier
                    .or(own)
                    .unwrap_or_else(|| bad("a refused MIME part")));
            }
            self.parts.push(part);
        }
        self.state = if self.delimiters > 1 && closes {
            State::Epilogue
        } else {
            State::DelimiterLine
        };
        Ok(())
    }

    /// Pass on bytes at `at` of the spool; `before_delimiter`: a delimiter follows them, so the
    /// line end at their end is not content.
    fn advance(&mut self, mut b: &[u8], mut at: u64, before_delimiter: bool) -> Result<()> {
        if self.state == State::DelimiterLine {
            let Some(nl) = memchr::memchr(b'\n', b) else {
                return Ok(());
            };
            b = &b[nl + 1..];
            at += nl as u64 + 1;
            self.state = State::Part;
            self.current = Some(RawPart {
                headers: Vec::new(),
                headers_done: false,
                body_offset: at,
                body_len: 0,
                role: Role::Undecided,
                soap: Vec::new(),
                header_error: None,
            });
        }
        if self.state != State::Part {
            return Ok(());
        }
        if before_delimiter {
            if let Some(rest) = b.strip_suffix(b"\n") {
                b = rest.strip_suffix(b"\r").unwrap_or(rest);
            }
        }
        self.content(b, at)
    }

    /// Content of the current part.
    fn content(&mut self, mut b: &[u8], mut at: u64) -> Result<()> {
        let part = self
            .current
            .as_mut()
            .expect("a part is open in State::Part");
        if !part.headers_done {
            let before = part.headers.len();
            part.headers.extend_from_slice(b);
            match header_block_end(&part.headers, before) {
                Some(end) => {
                    let used = end - before;
                    part.headers.truncate(end);
                    part.headers_done = true;
                    b = &b[used..];
                    at += used as u64;
                    part.body_offset = at;
                    self.decide()?;
                }
                None => {
                    if part.headers.len() > MAX_PART_HEADER_BYTES + MAX_HEADER_LINE {
                        // Not kept: the part is refused if it turns out to be one (what
                        // follows the last delimiter of a body without a close is not).
                        part.header_error = Some(bad(format!(
                            "MIME headers longer than {MAX_PART_HEADER_BYTES} bytes"
                        )));
                        part.headers = Vec::new();
                        part.headers_done = true;
                        part.role = Role::Refused;
                    }
                    part.body_offset = at + b.len() as u64;
                    return Ok(());
                }
            }
        }
        let part = self.current.as_mut().expect("a part is open");
        part.body_len += b.len() as u64;
        match &mut part.role {
            Role::Soap { identity, cap } => {
                if part.body_len > *cap as u64 {
                    return Err(if *identity {
                        Error::TooLarge(format!(
                            "SOAP envelope of more than {} bytes exceeds the limit of {}",
                            part.body_len, self.limits.max_envelope
                        ))
                    } else {
                        Error::TooLarge(format!(
                            "SOAP part of more than {} bytes in base64 or quoted-printable \
                             transfer encoding: the envelope limit is {} bytes",
                            part.body_len, self.limits.max_envelope
                        ))
                    });
                }
                part.soap.extend_from_slice(b);
            }
            Role::Hashed(h) => h.update(b),
            Role::Encoded => {
                self.encoded += b.len() as u64;
                if self.encoded > MAX_ENCODED_TOTAL {
                    return Err(encoded_too_large(self.encoded));
                }
            }
            Role::Undecided | Role::Refused | Role::SecondStart => {}
        }
        Ok(())
    }

    /// The current part's header block has ended: what is it?
    fn decide(&mut self) -> Result<()> {
        let Kind::Multipart { start, .. } = &self.kind else {
            return Ok(());
        };
        let index = self.parts.len();
        let part = self.current.as_mut().expect("a part is open");
        let e = match Entity::parse(&part.headers) {
            Ok(e) => e,
            Err(e) => {
                part.header_error = Some(e);
                part.role = Role::Refused;
                return Ok(());
            }
        };
        let (cid, is_soap) = part_identity(&e, index, start.as_deref());
        let identity = matches!(
            e.header("content-transfer-encoding")
                .map(|v| v.trim().to_ascii_lowercase())
                .unwrap_or_default()
                .as_str(),
            "" | "binary" | "8bit" | "7bit"
        );
        let soap_seen = self
            .parts
            .iter()
            .any(|p| matches!(p.role, Role::Soap { .. }));
        part.role = if is_soap && soap_seen {
            part.header_error = Some(bad(format!(
                "two MIME parts carry the start Content-ID {}",
                cid.unwrap_or_default()
            )));
            Role::SecondStart
        } else if is_soap {
            let cap = if identity {
                self.limits.max_envelope
            } else {
                encoded_soap_cap(self.limits.max_envelope)
            };
            Role::Soap { identity, cap }
        } else if identity {
            Role::Hashed(openssl::sha::Sha256::new())
        } else {
            Role::Encoded
        };
        Ok(())
    }

    /// The body has ended: the package, and the spool (flushed).
    pub fn finish(mut self) -> Result<(SpooledPackage, W)> {
        let held = std::mem::take(&mut self.held);
        self.scan(&held, true)?;
        self.out.flush().map_err(io_error)?;
        let length = self.received;
        let pkg = match &self.kind {
            Kind::Single(mt) => {
                check_envelope_size(usize::try_from(length).unwrap_or(usize::MAX), &self.limits)?;
                SpooledPackage {
                    soap: std::mem::take(&mut self.single),
                    soap_content_type: mt.clone(),
                    attachments: Vec::new(),
                    length,
                }
            }
            Kind::Multipart { .. } => self.assemble()?,
        };
        Ok((pkg, self.out))
    }

    /// The committed parts, checked as `Package::parse` checks them, in its order.
    fn assemble(&mut self) -> Result<SpooledPackage> {
        let Kind::Multipart {
            start, outer_type, ..
        } = &self.kind
        else {
            unreachable!("assemble is for multipart bodies");
        };
        let (start, outer_type) = (start.clone(), outer_type.clone());
        if self.delimiters < 2 {
            let boundary = mime::param(&self.content_type, "boundary").unwrap_or_default();
            return Err(bad(format!(
                "multipart body without its boundary {boundary}"
            )));
        }
        if self.parts.len() > self.limits.max_parts {
            return Err(Error::TooLarge(format!(
                "the message has more than {} MIME parts",
                self.limits.max_parts
            )));
        }
        let mut soap: Option<(Vec<u8>, String)> = None;
        let mut attachments: Vec<SpooledAttachment> = Vec::new();
        for (i, part) in std::mem::take(&mut self.parts).into_iter().enumerate() {
            if let Some(e) = part.header_error {
                return Err(e);
            }
            let e = Entity::parse(&part.headers)?;
            let (cid, is_soap) = part_identity(&e, i, start.as_deref());
            if is_soap {
                if soap.is_some() {
                    return Err(bad(format!(
                        "two MIME parts carry the start Content-ID {}",
                        cid.unwrap_or_default()
                    )));
                }
                // (A part whose header block never ended has no body.)
                let identity = !matches!(
                    part.role,
                    Role::Soap {
                        identity: false,
                        ..
                    }
                );
                let n = usize::try_from(part.body_len).unwrap_or(usize::MAX);
                if identity {
                    check_envelope_size(n, &self.limits)?;
                }
                let mut whole = part.headers.clone();
                whole.extend_from_slice(&part.soap);
                let data = Entity::parse(&whole)?.decoded_body()?.into_owned();
                check_envelope_size(data.len(), &self.limits)?;
                let mt = soap_type_of(&e, &self.content_type, outer_type.as_deref());
                soap = Some((data, mt));
                continue;
            }
            let cid = cid.ok_or_else(|| bad(format!("MIME part {} has no Content-ID", i + 1)))?;
            if attachments.iter().any(|a| a.content_id == cid) {
                return Err(bad(format!("two MIME parts carry the Content-ID {cid}")));
            }
            let body = match part.role {
                Role::Hashed(h) => SpooledBody::File {
                    offset: part.body_offset,
                    len: part.body_len,
                    sha256: h.finish(),
                },
                Role::Encoded => {
                    // An unknown transfer encoding is refused before anything is read.
                    e.decoded_body()?;
                    let mut encoded = part.headers.clone();
                    let at = encoded.len();
                    encoded.resize(at + part.body_len as usize, 0);
                    self.out
                        .seek(SeekFrom::Start(part.body_offset))
                        .and_then(|_| self.out.read_exact(&mut encoded[at..]))
                        .map_err(|e| Error::io("cannot read the spool file", e))?;
                    SpooledBody::Memory(Entity::parse(&encoded)?.decoded_body()?.into_owned())
                }
                // The header block never ended: no body (its transfer encoding is still
                // checked, as `decoded_body` checks it).
                Role::Undecided | Role::Soap { .. } | Role::Refused | Role::SecondStart => {
                    e.decoded_body()?;
                    SpooledBody::File {
                        offset: part.body_offset,
                        len: 0,
                        sha256: openssl::sha::sha256(b""),
                    }
                }
            };
            check_part_size(body.len(), &self.limits)?;
            attachments.push(SpooledAttachment {
                content_id: cid,
                content_type: e
                    .header("content-type")
                    .unwrap_or("application/octet-stream")
                    .to_string(),
                headers: e.headers.clone(),
                body,
            });
        }
        let (soap, soap_content_type) = soap.ok_or_else(|| match &start {
            Some(s) => bad(format!("no MIME part has the start Content-ID {s}")),
            None => bad("multipart/related without parts"),
        })?;
        self.out
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io("cannot seek in the spool file", e))?;
        Ok(SpooledPackage {
            soap,
            soap_content_type,
            attachments,
            length: self.received,
        })
    }
}

fn encoded_too_large(n: u64) -> Error {
    Error::TooLarge(format!(
        "{n} bytes of MIME parts in base64 or quoted-printable transfer encoding; such parts \
         are accepted up to {MAX_ENCODED_TOTAL} bytes in all (send large payloads in binary)"
    ))
}

/// Where the header block in `h` ends (after its empty line), looking at lines that end at or
/// after `from` (what was there before had no end).
fn header_block_end(h: &[u8], from: usize) -> Option<usize> {
    // An empty first line: no headers at all.
    if h.starts_with(b"\n") {
        return Some(1);
    }
    if h.starts_with(b"\r\n") {
        return Some(2);
    }
    // An empty line is "\n\n" or "\n\r\n"; it may begin up to two bytes before `from`.
    let mut i = from.saturating_sub(2);
    while let Some(off) = memchr::memchr(b'\n', &h[i..]) {
        let nl = i + off;
        match h.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if h.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => {}
        }
        i = nl + 1;
    }
    None
}

#[cfg(test)]
mod tests;
