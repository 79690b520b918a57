//! SOAP with attachments: the `multipart/related` package of an AS4 message (or a lone SOAP
//! envelope), raw HTTP captures, and gzip payload compression (RFC 1952).
//!
//! Parts are kept byte-exact as they arrived: attachment digests are computed over them.

use super::xml::Limits;
use crate::error::{Error, Result};
use crate::mime::{self, Entity};

/// One attachment (MIME part) of a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The Content-ID without angle brackets (`href="cid:…"` refers to it).
    pub content_id: String,
    /// The Content-Type header value, parameters included.
    pub content_type: String,
    /// All MIME headers of the part as received (names in lower case). When writing, headers
    /// other than Content-ID, Content-Type and Content-Transfer-Encoding are copied from here.
    pub headers: Vec<(String, String)>,
    /// The part body as on the wire (binary transfer encoding), base64 or quoted-printable decoded.
    pub data: Vec<u8>,
}

impl Attachment {
    pub fn new(content_id: &str, content_type: &str, data: Vec<u8>) -> Attachment {
        Attachment {
            content_id: content_id.into(),
            content_type: content_type.into(),
            headers: Vec::new(),
            data,
        }
    }
}

/// A SOAP envelope with its attachments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// The envelope bytes exactly as received (or to be sent).
    pub soap: Vec<u8>,
    /// The envelope's media type without parameters (`application/soap+xml` or `text/xml`).
    pub soap_content_type: String,
    pub attachments: Vec<Attachment>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::MalformedMime(msg.into())
}

/// Which attachment is the largest and where its bytes are in the body (for the owned path).
type LargestPart = (usize, std::ops::Range<usize>);

/// A part's Content-ID (stripped; `None` when absent or empty) and whether it is the SOAP part:
/// the one named by the package's `start` parameter, else the first. The one rule of both
/// readers (`Package::parse` and the spooler), which must agree.
pub(crate) fn part_identity(
    e: &Entity,
    index: usize,
    start: Option<&str>,
) -> (Option<String>, bool) {
    let cid = e
        .header("content-id")
        .map(|v| strip_cid(v).to_string())
        .filter(|c| !c.is_empty());
    let is_soap = match start {
        Some(s) => cid.as_deref() == Some(s),
        None => index == 0,
    };
    (cid, is_soap)
}

/// A Content-ID without white space and angle brackets.
pub(crate) fn strip_cid(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(v)
        .trim()
}

/// The media type of a Content-Type value, lower case, without parameters.
pub fn media_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    openssl::rand::rand_bytes(&mut b)?;
    Ok(crate::bytes::hex(&b))
}

/// A new random MIME boundary.
pub(super) fn new_boundary() -> Result<String> {
    Ok(format!("----=_Part_{}", random_hex(16)?))
}

impl Package {
    /// A package of an envelope alone (sent as `application/soap+xml`, no MIME).
    pub fn soap_only(soap: Vec<u8>) -> Package {
        Package {
            soap,
            soap_content_type: "application/soap+xml".into(),
            attachments: Vec::new(),
        }
    }

    /// The attachment `href` refers to (`cid:…`, percent-encoded as RFC 2392 allows, or a bare
    /// Content-ID).
    pub fn attachment(&self, href: &str) -> Option<&Attachment> {
        let cid = match href.get(..4) {
            Some(p) if p.eq_ignore_ascii_case("cid:") => &href[4..],
            _ => href,
        };
        let cid = strip_cid(cid);
        self.attachments
            .iter()
            .find(|a| a.content_id == cid)
            .or_else(|| {
                let decoded = percent_decode(cid)?;
                self.attachments.iter().find(|a| a.content_id == decoded)
            })
    }

    /// The MIME form: the Content-Type header value (`multipart/related; boundary=…;
    /// type=…; start=…`) and the body. The SOAP part comes first; every part is binary with
    /// CRLF line ends in its headers. The boundary is random and checked not to occur in any part.
    pub fn to_mime(&self) -> Result<(String, Vec<u8>)> {
        let (content_type, body, _) = self.write_mime(None, None)?;
        Ok((content_type, body))
    }

    /// As [`Package::to_mime`], consuming the package: the MIME framing is written around the
    /// largest attachment's own buffer instead of copying it into a new one (for large payloads
    /// a fresh buffer costs as much as hashing them).
    pub fn into_mime(mut self) -> Result<(String, Vec<u8>)> {
        let Some(k) = (0..self.attachments.len()).max_by_key(|&i| self.attachments[i].data.len())
        else {
            return self.to_mime();
        };
        let (content_type, frame, at) = self.write_mime(Some(k), None)?;
        let mut data = std::mem::take(&mut self.attachments[k].data);
        data.reserve(frame.len());
        data.splice(0..0, frame[..at].iter().copied());
        data.extend_from_slice(&frame[at..]);
        Ok((content_type, data))
    }

    /// The MIME body without the data of attachment `skip` (if given), and the offset where that
    /// data belongs. `boundary`: one the caller checked is absent from the skipped data (else
    /// a random one absent from every part here).
    pub(super) fn write_mime(
        &self,
        skip: Option<usize>,
        boundary: Option<String>,
    ) -> Result<(String, Vec<u8>, usize)> {
        let soap_type = if self.soap_content_type.is_empty() {
            "application/soap+xml"
        } else {
            &self.soap_content_type
        };
        let start = format!("soap-{}@layersec", random_hex(8)?);
        let mut boundary = boundary.filter(|b| {
            let delim = format!("--{b}");
            !std::iter::once(&self.soap[..])
                .chain(self.attachments.iter().map(|a| &a.data[..]))
                .any(|d| crate::bytes::contains(d, delim.as_bytes()))
        });
        for _ in 0..8 {
            if boundary.is_some() {
                break;
            }
            let b = new_boundary()?;
            let delim = format!("--{b}");
            let clash = std::iter::once(&self.soap[..])
                .chain(self.attachments.iter().map(|a| &a.data[..]))
                .any(|d| crate::bytes::contains(d, delim.as_bytes()));
            if !clash {
                boundary = Some(b);
                break;
            }
        }
        let boundary = boundary
            .ok_or_else(|| Error::Internal("no MIME boundary absent from the parts".into()))?;
        let size: usize = self.soap.len()
            + self
                .attachments
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    if Some(i) == skip {
                        256
                    } else {
                        a.data.len() + 256
                    }
                })
                .sum::<usize>();
        let mut skipped_at = 0;
        let mut out = Vec::with_capacity(size + 512);
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: {soap_type}; charset=UTF-8\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{start}>\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(&self.soap);
        for (i, a) in self.attachments.iter().enumerate() {
            let cid = strip_cid(&a.content_id);
            if cid.is_empty() || cid.contains(['\r', '\n', '<', '>']) {
                return Err(Error::InvalidArgument(format!(
                    "attachment Content-ID {:?}",
                    a.content_id
                )));
            }
            let ct = if a.content_type.is_empty() {
                "application/octet-stream"
            } else {
                &a.content_type
            };
            if ct.contains(['\r', '\n']) {
                return Err(Error::InvalidArgument(format!(
                    "attachment Content-Type {ct:?}"
                )));
            }
            out.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Type: {ct}\r\n").as_bytes());
            out.extend_from_slice(b"Content-Transfer-Encoding: binary\r\n");
            out.extend_from_slice(format!("Content-ID: <{cid}>\r\n").as_bytes());
            for (name, value) in &a.headers {
                let n = name.to_ascii_lowercase();
                if matches!(
                    n.as_str(),
                    "content-id" | "content-type" | "content-transfer-encoding" | "content-length"
                ) {
                    continue;
                }
                let ok_name =
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
                if !ok_name || value.contains(['\r', '\n']) {
                    return Err(Error::InvalidArgument(format!(
                        "attachment header {name:?}"
                    )));
                }
                out.extend_from_slice(format!("{}: {value}\r\n", header_case(name)).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            if Some(i) == skip {
                skipped_at = out.len();
            } else {
                out.extend_from_slice(&a.data);
            }
        }
        out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type = format!(
            "multipart/related; boundary=\"{boundary}\"; type=\"{soap_type}\"; start=\"<{start}>\""
        );
        Ok((content_type, out, skipped_at))
    }

    /// Read a message body given its Content-Type: `multipart/related` (the SOAP part is the
    /// `start` part, else the first) or a lone SOAP envelope (`application/soap+xml`,
    /// `text/xml`). Bounded by `limits` (parts, envelope and part sizes).
    pub fn parse(content_type: &str, body: &[u8], limits: &Limits) -> Result<Package> {
        Self::parse_impl(content_type, body, limits, false).map(|(p, _)| p)
    }

    /// As [`Package::parse`], taking the body: the largest attachment keeps the body's buffer
    /// (its bytes moved to the front) instead of being copied into a new one.
    pub fn parse_owned(content_type: &str, body: Vec<u8>, limits: &Limits) -> Result<Package> {
        let (mut pkg, deferred) = Self::parse_impl(content_type, &body, limits, true)?;
        if let Some((i, range)) = deferred {
            let mut body = body;
            body.truncate(range.end);
            body.drain(..range.start);
            pkg.attachments[i].data = body;
        }
        Ok(pkg)
    }

    /// `defer_largest`: leave the largest attachment's data empty when it is a slice of `body`,
    /// and return its index and range.
    fn parse_impl(
        content_type: &str,
        body: &[u8],
        limits: &Limits,
        defer_largest: bool,
    ) -> Result<(Package, Option<LargestPart>)> {
        let mt = media_type(content_type);
        match mt.as_str() {
            "multipart/related" => Self::parse_multipart(content_type, body, limits, defer_largest),
            "application/soap+xml" | "text/xml" => {
                check_envelope_size(body.len(), limits)?;
                let pkg = Package {
                    soap: body.to_vec(),
                    soap_content_type: mt,
                    attachments: Vec::new(),
                };
                Ok((pkg, None))
            }
            "" => Err(bad("the message has no Content-Type")),
            other => Err(bad(format!(
                "unexpected message Content-Type {other} (multipart/related or SOAP)"
            ))),
        }
    }

    fn parse_multipart(
        content_type: &str,
        body: &[u8],
        limits: &Limits,
        defer_largest: bool,
    ) -> Result<(Package, Option<LargestPart>)> {
        let boundary = mime::param(content_type, "boundary")
            .filter(|b| !b.is_empty())
            .ok_or_else(|| bad("multipart/related without a boundary"))?;
        mime::check_boundary(&boundary)?;
        let delimiters = count_delimiters(body, &boundary, limits.max_parts + 2);
        if delimiters > limits.max_parts + 1 {
            return Err(Error::TooLarge(format!(
                "the message has more than {} MIME parts",
                limits.max_parts
            )));
        }
        let parts = mime::split_multipart(body, &boundary)?;
        if parts.len() > limits.max_parts {
            return Err(Error::TooLarge(format!(
                "the message has more than {} MIME parts",
                limits.max_parts
            )));
        }
        let start = mime::param(content_type, "start")
            .map(|s| strip_cid(&s).to_string())
            .filter(|s| !s.is_empty());
        let outer_type = mime::param(content_type, "type").map(|t| t.trim().to_ascii_lowercase());

        let mut soap: Option<(Vec<u8>, String)> = None;
        let mut attachments: Vec<Attachment> = Vec::new();
        let largest = (0..parts.len())
            .filter(|_| defer_largest)
            .max_by_key(|&i| parts[i].len());
        let mut deferred = None;
        for (i, raw) in parts.iter().enumerate() {
            let e = Entity::parse(raw)?;
            let (cid, is_soap) = part_identity(&e, i, start.as_deref());
            if is_soap {
                if soap.is_some() {
                    return Err(bad(format!(
                        "two MIME parts carry the start Content-ID {}",
                        cid.unwrap_or_default()
                    )));
                }
                let data = e.decoded_body()?;
                check_envelope_size(data.len(), limits)?;
                let mt = soap_type_of(&e, content_type, outer_type.as_deref());
                soap = Some((data.into_owned(), mt));
                continue;
            }
            let cid = cid.ok_or_else(|| bad(format!("MIME part {} has no Content-ID", i + 1)))?;
            if attachments.iter().any(|a| a.content_id == cid) {
                return Err(bad(format!("two MIME parts carry the Content-ID {cid}")));
            }
            let data = e.decoded_body()?;
            check_part_size(data.len() as u64, limits)?;
            let data = match data {
                std::borrow::Cow::Borrowed(b) if Some(i) == largest => {
                    let start = b.as_ptr() as usize - body.as_ptr() as usize;
                    deferred = Some((attachments.len(), start..start + b.len()));
                    Vec::new()
                }
                d => d.into_owned(),
            };
            attachments.push(Attachment {
                content_id: cid,
                content_type: e
                    .header("content-type")
                    .unwrap_or("application/octet-stream")
                    .to_string(),
                headers: e.headers.clone(),
                data,
            });
        }
        let (soap, soap_content_type) = soap.ok_or_else(|| match &start {
            Some(s) => bad(format!("no MIME part has the start Content-ID {s}")),
            None => bad("multipart/related without parts"),
        })?;
        let pkg = Package {
            soap,
            soap_content_type,
            attachments,
        };
        Ok((pkg, deferred))
    }

    /// Read a raw capture: HTTP headers (after an optional request or status line), an empty line,
    /// the body. A body still in chunked transfer coding is de-chunked.
    pub fn parse_http(bytes: &[u8], limits: &Limits) -> Result<Package> {
        let first_end = bytes
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(bytes.len());
        let first = &bytes[..first_end];
        let rest = if is_start_line(first) {
            &bytes[(first_end + 1).min(bytes.len())..]
        } else {
            bytes
        };
        let e = Entity::parse(rest)?;
        let ct = e
            .header("content-type")
            .ok_or_else(|| bad("the HTTP message has no Content-Type"))?;
        if let Some(ce) = e
            .header("content-encoding")
            .map(|v| v.trim().to_ascii_lowercase())
        {
            if !ce.is_empty() && ce != "identity" {
                return Err(bad(format!("HTTP Content-Encoding {ce} is not supported")));
            }
        }
        let chunked = e
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        match if chunked { dechunk(e.body) } else { None } {
            Some(body) => Self::parse(ct, &body, limits),
            // Captures often keep the header of a body stored already de-chunked.
            None => Self::parse(ct, e.body, limits),
        }
    }
}

/// The media type of the SOAP part `e` of a `multipart/related` body of type `content_type`
/// (whose `type` parameter is `outer_type`, lower case).
pub(super) fn soap_type_of(e: &Entity, content_type: &str, outer_type: Option<&str>) -> String {
    let mut mt = e
        .header("content-type")
        .map(media_type)
        .or_else(|| outer_type.map(str::to_string));
    if mt.as_deref() == Some("application/xop+xml") {
        // MTOM: the envelope's own type is a parameter.
        mt = e
            .content_type_param("type")
            .or_else(|| mime::param(content_type, "start-info"));
    }
    mt.map(|t| media_type(&t))
        .unwrap_or_else(|| "application/soap+xml".into())
}

pub(super) fn check_envelope_size(n: usize, limits: &Limits) -> Result<()> {
    if n > limits.max_envelope {
        return Err(Error::TooLarge(format!(
            "SOAP envelope of {n} bytes exceeds the limit of {}",
            limits.max_envelope
        )));
    }
    Ok(())
}

pub(super) fn check_part_size(n: u64, limits: &Limits) -> Result<()> {
    if n > limits.max_part {
        return Err(Error::TooLarge(format!(
            "MIME part of {n} bytes exceeds the limit of {}",
            limits.max_part
        )));
    }
    Ok(())
}

/// Delimiter lines (`--boundary` at a line start) in `body`, counting up to `cap`.
fn count_delimiters(body: &[u8], boundary: &str, cap: usize) -> usize {
    let d = format!("--{boundary}");
    let d = d.as_bytes();
    let mut count = 0;
    let mut i = 0;
    while count < cap {
        let Some(off) = crate::bytes::find(&body[i..], d) else {
            break;
        };
        let at = i + off;
        if at == 0 || body[at - 1] == b'\n' {
            count += 1;
        }
        i = at + d.len();
    }
    count
}

/// Whether the first line of a capture is an HTTP request or status line, not a header.
fn is_start_line(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        None => !line.iter().all(|b| b.is_ascii_whitespace()),
        Some(colon) => {
            line.starts_with(b"HTTP/") || line[..colon].iter().any(|b| b.is_ascii_whitespace())
        }
    }
}

/// Undo chunked transfer coding, or `None` when the body is not validly chunked.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    loop {
        let eol = b.iter().position(|&c| c == b'\n')?;
        let line = std::str::from_utf8(&b[..eol]).ok()?.trim_end_matches('\r');
        let size_text = line.split(';').next()?.trim();
        if size_text.is_empty() || size_text.len() > 16 {
            return None;
        }
        let size = usize::from_str_radix(size_text, 16).ok()?;
        b = &b[eol + 1..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size..];
        b = b.strip_prefix(b"\r\n").or_else(|| b.strip_prefix(b"\n"))?;
    }
}

/// A Content-ID percent-decoded, when it has escapes and they all decode to UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    String::from_utf8(crate::bytes::percent_decode_strict(s)?).ok()
}

/// `content-description` → `Content-Description`.
fn header_case(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

// ---------------------------------------------------------------------------------------------
// gzip (RFC 1952)

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32 (IEEE 802.3, as gzip and zip use).
pub fn crc32(data: &[u8]) -> u32 {
    crc32_update(0, data)
}

fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// gzip `data` (deflate level 6, as the gzip tool defaults to; no file name, no time stamp).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let deflated = miniz_oxide::deflate::compress_to_vec(data, 6);
    let mut out = Vec::with_capacity(deflated.len() + 18);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn corrupt(msg: impl Into<String>) -> Error {
    Error::DecompressFailed(msg.into())
}

/// gunzip `data` (one or more members), checking each member's header, CRC-32 and length.
/// Output beyond `limit` bytes is [`Error::ExpansionTooLarge`], found without expanding it (a
/// decompression bomb costs no memory).
pub fn gunzip(data: &[u8], limit: u64) -> Result<Vec<u8>> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        let start = out.len();
        let body = skip_header(rest)?;
        let used = inflate_into(body, &mut out, limit)?;
        let trailer = body
            .get(used..used + 8)
            .ok_or_else(|| corrupt("the gzip data is truncated (no trailer)"))?;
        let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let isize = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if crc32(&out[start..]) != crc {
            return Err(corrupt("gzip CRC-32 mismatch"));
        }
        if (out.len() - start) as u32 != isize {
            return Err(corrupt("gzip length mismatch"));
        }
        rest = &body[used + 8..];
        if rest.is_empty() {
            return Ok(out);
        }
        if !rest.starts_with(&[0x1f, 0x8b]) {
            return Err(corrupt("data after the end of the gzip stream"));
        }
    }
}

/// The deflate data after a gzip member header.
fn skip_header(d: &[u8]) -> Result<&[u8]> {
    if d.len() < 10 {
        return Err(corrupt("the gzip data is truncated (header)"));
    }
    if d[0] != 0x1f || d[1] != 0x8b {
        return Err(corrupt("not gzip data (bad magic number)"));
    }
    if d[2] != 8 {
        return Err(corrupt(format!(
            "gzip compression method {} (only deflate)",
            d[2]
        )));
    }
    let flags = d[3];
    if flags & 0xe0 != 0 {
        return Err(corrupt("gzip header with reserved flags set"));
    }
    let truncated = || corrupt("the gzip data is truncated (header)");
    let mut pos = 10;
    if flags & 0x04 != 0 {
        let xlen = d.get(pos..pos + 2).ok_or_else(truncated)?;
        pos += 2 + u16::from_le_bytes([xlen[0], xlen[1]]) as usize;
    }
    for flag in [0x08, 0x10] {
        if flags & flag != 0 {
            let nul = d
                .get(pos..)
                .and_then(|s| s.iter().position(|&b| b == 0))
                .ok_or_else(truncated)?;
            pos += nul + 1;
        }
    }
    if flags & 0x02 != 0 {
        let hcrc = d.get(pos..pos + 2).ok_or_else(truncated)?;
        if crc32(&d[..pos]) as u16 != u16::from_le_bytes([hcrc[0], hcrc[1]]) {
            return Err(corrupt("gzip header CRC mismatch"));
        }
        pos += 2;
    }
    d.get(pos..).ok_or_else(truncated)
}

/// Inflate the raw deflate data of one gzip member onto `out` (at most `limit` bytes in all,
/// refused without expanding it when more); the input bytes used.
fn inflate_into(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<usize> {
    use crate::inflate::{inflate, Failure};
    let room = limit.saturating_sub(out.len());
    match inflate(input, false, room as u64) {
        Ok(done) => {
            out.extend_from_slice(&done.data);
            Ok(done.used)
        }
        Err(Failure::TooLarge { .. }) => Err(Error::ExpansionTooLarge(format!(
            "the gzip data expands beyond the limit of {limit} bytes (decompression bomb?)"
        ))),
        Err(Failure::Truncated) => Err(corrupt("the gzip data is truncated")),
        Err(Failure::Corrupt(why)) => Err(corrupt(format!("corrupt deflate data ({why})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn crc32_vectors() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414f_a339
        );
    }

    #[test]
    fn gzip_round_trip_and_limits() {
        for n in [0usize, 1, 100, 70_000] {
            let data: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
            let z = gzip(&data);
            assert_eq!(gunzip(&z, n as u64).unwrap(), data, "{n}");
            if n > 0 {
                assert_eq!(
                    gunzip(&z, n as u64 - 1).unwrap_err().code(),
                    ErrorCode::ExpansionTooLarge,
                    "{n}"
                );
            }
        }
        // Two members, as `cat a.gz b.gz` makes.
        let mut two = gzip(b"hello ");
        two.extend_from_slice(&gzip(b"world"));
        assert_eq!(gunzip(&two, 100).unwrap(), b"hello world");
        assert_eq!(
            gunzip(&two, 8).unwrap_err().code(),
            ErrorCode::ExpansionTooLarge
        );
    }

    #[test]
    fn gzip_corruption_is_detected() {
        let z = gzip(b"some business document, some business document");
        let mut bad_crc = z.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 1;
        let mut bad_len = z.clone();
        bad_len[n - 1] ^= 1;
        let mut bad_magic = z.clone();
        bad_magic[0] = 0;
        let mut trailing = z.clone();
        trailing.push(0);
        for (name, d) in [
            ("crc", bad_crc),
            ("len", bad_len),
            ("magic", bad_magic),
            ("trailing", trailing),
        ] {
            assert_eq!(
                gunzip(&d, 1 << 20).unwrap_err().code(),
                ErrorCode::DecompressFailed,
                "{name}"
            );
        }
        for cut in 0..z.len() {
            assert!(gunzip(&z[..cut], 1 << 20).is_err(), "{cut}");
        }
        // Header with a file name, comment and header CRC.
        let mut h = vec![0x1f, 0x8b, 8, 0x08 | 0x10 | 0x02, 0, 0, 0, 0, 0, 3];
        h.extend_from_slice(b"name.xml\0comment\0");
        let hcrc = crc32(&h) as u16;
        h.extend_from_slice(&hcrc.to_le_bytes());
        h.extend_from_slice(&z[10..]);
        assert_eq!(
            gunzip(&h, 1 << 20).unwrap(),
            b"some business document, some business document"
        );
    }

    #[test]
    fn mime_round_trip() {
        let mut att = Attachment::new(
            "part-1@x",
            "application/octet-stream",
            b"\r\n--binary\r\n\0".to_vec(),
        );
        att.headers
            .push(("content-description".into(), "Attachment".into()));
        let p = Package {
            soap: b"<S12:Envelope/>".to_vec(),
            soap_content_type: "application/soap+xml".into(),
            attachments: vec![att, Attachment::new("part-2@x", "text/plain", Vec::new())],
        };
        let (ct, body) = p.to_mime().unwrap();
        assert!(ct.starts_with("multipart/related; boundary=\""), "{ct}");
        assert!(
            ct.contains("type=\"application/soap+xml\"") && ct.contains("start=\"<soap-"),
            "{ct}"
        );
        let back = Package::parse(&ct, &body, &Limits::default()).unwrap();
        assert_eq!(back.soap, p.soap);
        assert_eq!(back.soap_content_type, "application/soap+xml");
        assert_eq!(back.attachments.len(), 2);
        for (a, b) in back.attachments.iter().zip(&p.attachments) {
            assert_eq!(
                (&a.content_id, &a.content_type, &a.data),
                (&b.content_id, &b.content_type, &b.data)
            );
        }
        assert_eq!(
            back.attachments[0]
                .headers
                .iter()
                .find(|h| h.0 == "content-description")
                .unwrap()
                .1,
            "Attachment"
        );
        assert_eq!(
            back.attachment("cid:part-1@x").unwrap().data,
            p.attachments[0].data
        );
        assert_eq!(
            back.attachment("cid:part-2%40x").unwrap().content_id,
            "part-2@x"
        );
        assert!(back.attachment("cid:nope").is_none());
        // Two packings use different boundaries.
        assert_ne!(p.to_mime().unwrap().0, ct);
    }

    #[test]
    fn multipart_variants() {
        let l = Limits::default();
        // No start: the first part; LF line ends; base64 attachment; no type anywhere.
        let body = b"--b\nContent-Type: text/xml\n\n<E/>\n--b\nContent-ID: a1\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n--b--\n";
        let p = Package::parse("Multipart/Related; boundary=b", body, &l).unwrap();
        assert_eq!(
            (&p.soap[..], p.soap_content_type.as_str()),
            (&b"<E/>"[..], "text/xml")
        );
        assert_eq!(p.attachments[0].data, b"hello");
        assert_eq!(p.attachments[0].content_type, "application/octet-stream");
        // start names the second part.
        let body = b"--b\r\nContent-ID: <att>\r\n\r\nDATA\r\n--b\r\nContent-ID: <root>\r\n\r\n<E/>\r\n--b--";
        let p = Package::parse(
            "multipart/related; boundary=\"b\"; start=\"<root>\"",
            body,
            &l,
        )
        .unwrap();
        assert_eq!(p.soap, b"<E/>");
        assert_eq!(p.attachments[0].content_id, "att");
        let e = Package::parse(
            "multipart/related; boundary=\"b\"; start=\"<other>\"",
            body,
            &l,
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::MalformedMime);
        // MTOM (XOP) packaging: the envelope's type is the part's `type` parameter.
        let body = b"--b\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n\r\n<E/>\r\n--b--";
        let ct = "multipart/related; boundary=b; type=\"application/xop+xml\"; start-info=\"application/soap+xml\"";
        let p = Package::parse(ct, body, &l).unwrap();
        assert_eq!(p.soap_content_type, "application/soap+xml");
        // A lone envelope.
        let p = Package::parse(
            "application/soap+xml; charset=UTF-8; action=\"x\"",
            b"<E/>",
            &l,
        )
        .unwrap();
        assert_eq!(
            (p.soap_content_type.as_str(), p.attachments.len()),
            ("application/soap+xml", 0)
        );

        let cases: [(&str, &[u8], ErrorCode); 6] = [
            ("multipart/related", b"--b\r\n\r\nx\r\n--b--", ErrorCode::MalformedMime),
            ("multipart/related; boundary=b", b"no parts at all", ErrorCode::MalformedMime),
            ("multipart/related; boundary=b", b"--b\r\n\r\n<E/>\r\n--b\r\n\r\nno cid\r\n--b--", ErrorCode::MalformedMime),
            (
                "multipart/related; boundary=b",
                b"--b\r\n\r\n<E/>\r\n--b\r\nContent-ID: <x>\r\n\r\n1\r\n--b\r\nContent-ID: x\r\n\r\n2\r\n--b--",
                ErrorCode::MalformedMime,
            ),
            ("text/plain", b"<E/>", ErrorCode::MalformedMime),
            ("", b"<E/>", ErrorCode::MalformedMime),
        ];
        for (ct, body, code) in cases {
            assert_eq!(
                Package::parse(ct, body, &l).unwrap_err().code(),
                code,
                "{ct} {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn limits_apply() {
        let mut body = Vec::new();
        for i in 0..70 {
            body.extend_from_slice(format!("--b\r\nContent-ID: <{i}>\r\n\r\nx\r\n").as_bytes());
        }
        body.extend_from_slice(b"--b--\r\n");
        let e =
            Package::parse("multipart/related; boundary=b", &body, &Limits::default()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TooLarge);
        let few = Limits {
            max_parts: 70,
            ..Default::default()
        };
        assert_eq!(
            Package::parse("multipart/related; boundary=b", &body, &few)
                .unwrap()
                .attachments
                .len(),
            69
        );
        let small = Limits {
            max_envelope: 3,
            max_part: 3,
            ..Default::default()
        };
        let e = Package::parse("application/soap+xml", b"<E/>", &small).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TooLarge);
        let body = b"--b\r\n\r\n<E>\r\n--b\r\nContent-ID: <a>\r\n\r\n1234\r\n--b--";
        let e = Package::parse("multipart/related; boundary=b", body, &small).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TooLarge);
    }

    #[test]
    fn http_captures() {
        let l = Limits::default();
        for first in [
            "HTTP/1.1 200 OK\r\n",
            "POST http://host:8080/as4 HTTP/1.1\r\n",
            "",
        ] {
            let raw = format!("{first}Content-Type: application/soap+xml\r\nX-A: b\r\n\r\n<E/>");
            assert_eq!(
                Package::parse_http(raw.as_bytes(), &l).unwrap().soap,
                b"<E/>",
                "{first}"
            );
        }
        let chunked = b"Transfer-Encoding: chunked\r\nContent-Type: text/xml\r\n\r\n2\r\n<E\r\n2;x=y\r\n/>\r\n0\r\n\r\n";
        assert_eq!(Package::parse_http(chunked, &l).unwrap().soap, b"<E/>");
        let stored = b"Transfer-Encoding: chunked\r\nContent-Type: text/xml\r\n\r\n<E/>";
        assert_eq!(Package::parse_http(stored, &l).unwrap().soap, b"<E/>");
        let no_ct = b"X-A: b\r\n\r\n<E/>";
        assert_eq!(
            Package::parse_http(no_ct, &l).unwrap_err().code(),
            ErrorCode::MalformedMime
        );
        let gz = b"Content-Encoding: gzip\r\nContent-Type: text/xml\r\n\r\n<E/>";
        assert_eq!(
            Package::parse_http(gz, &l).unwrap_err().code(),
            ErrorCode::MalformedMime
        );
    }
}
