//! The MIME that S/MIME needs: entity headers and parameters, transfer encodings, and the split of
//! `multipart/signed` that keeps the signed part byte-exact.

use crate::error::{Error, Result};

/// A parsed MIME entity borrowing its input.
#[derive(Debug)]
pub struct Entity<'a> {
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

const MAX_HEADER_BYTES: usize = 64 * 1024;

fn bad(msg: impl Into<String>) -> Error {
    Error::MalformedMime(msg.into())
}

/// Whether `data` is a MIME entity: a header block ending in an empty line that has a
/// `Content-*` or `MIME-Version` field. (A text document that merely starts with `Word: …` is not.)
pub fn looks_like_entity(data: &[u8]) -> bool {
    let line_end = data.iter().take(1000).position(|&b| b == b'\n');
    let Some(end) = line_end else { return false };
    let line = &data[..end];
    let first_ok = match line.iter().position(|&b| b == b':') {
        Some(colon) if colon > 0 => line[..colon]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        _ => false,
    };
    if !first_ok {
        return false;
    }
    match Entity::parse(data) {
        Ok(e) => {
            e.body.len() < data.len()
                && e.headers
                    .iter()
                    .any(|(n, _)| n.starts_with("content-") || n == "mime-version")
        }
        Err(_) => false,
    }
}

impl<'a> Entity<'a> {
    /// Parse headers (CRLF or LF line ends, folded lines) up to the first empty line.
    pub fn parse(data: &'a [u8]) -> Result<Entity<'a>> {
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut pos = 0;
        loop {
            if pos >= data.len() {
                // Headers with no body at all.
                return Ok(Entity {
                    headers,
                    body: &data[data.len()..],
                });
            }
            if pos > MAX_HEADER_BYTES {
                return Err(bad(format!(
                    "MIME headers longer than {MAX_HEADER_BYTES} bytes"
                )));
            }
            let end = data[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| pos + i);
            let (line, next) = match end {
                Some(e) => (&data[pos..e], e + 1),
                None => (&data[pos..], data.len()),
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                return Ok(Entity {
                    headers,
                    body: &data[next..],
                });
            }
            let text = String::from_utf8_lossy(line);
            if line[0] == b' ' || line[0] == b'\t' {
                match headers.last_mut() {
                    Some((_, v)) => {
                        v.push(' ');
                        v.push_str(text.trim());
                    }
                    None => return Err(bad("a MIME entity starts with a continuation line")),
                }
            } else {
                // Errors give the position, never the text: a decrypted part's lines may be the
                // document itself.
                let colon = text.find(':').ok_or_else(|| {
                    bad(format!(
                        "MIME header line {} has no colon",
                        headers.len() + 1
                    ))
                })?;
                let name = text[..colon].trim();
                if name.is_empty() || name.contains(' ') {
                    return Err(bad(format!(
                        "bad MIME header name on line {}",
                        headers.len() + 1
                    )));
                }
                headers.push((
                    name.to_ascii_lowercase(),
                    text[colon + 1..].trim().to_string(),
                ));
            }
            if headers.len() > 200 {
                return Err(bad("more than 200 MIME header fields"));
            }
            pos = next;
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `type/subtype` in lower case; `text/plain` when absent, as RFC 2045 says.
    pub fn content_type(&self) -> String {
        self.header("content-type")
            .map(|v| split_value(v).0.to_ascii_lowercase())
            .unwrap_or_else(|| "text/plain".into())
    }

    pub fn content_type_param(&self, name: &str) -> Option<String> {
        self.header("content-type").and_then(|v| param(v, name))
    }

    /// The file name from Content-Disposition, else from the Content-Type `name` parameter.
    pub fn filename(&self) -> Option<String> {
        self.header("content-disposition")
            .and_then(|v| param(v, "filename"))
            .or_else(|| self.content_type_param("name"))
    }

    /// The body with its Content-Transfer-Encoding undone.
    pub fn decoded_body(&self) -> Result<std::borrow::Cow<'a, [u8]>> {
        let cte = self
            .header("content-transfer-encoding")
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match cte.as_str() {
            "" | "binary" | "8bit" | "7bit" => Ok(std::borrow::Cow::Borrowed(self.body)),
            "base64" => Ok(std::borrow::Cow::Owned(base64_decode(self.body)?)),
            "quoted-printable" => Ok(std::borrow::Cow::Owned(qp_decode(self.body))),
            other => Err(bad(format!("unknown Content-Transfer-Encoding {other}"))),
        }
    }
}

/// Split `type/subtype; a=b` into the value and the parameter text.
fn split_value(v: &str) -> (&str, &str) {
    match v.find(';') {
        Some(i) => (v[..i].trim(), &v[i + 1..]),
        None => (v.trim(), ""),
    }
}

/// A parameter of a structured header value (quoted strings, RFC 2231 `name*=charset''pct`).
pub fn param(value: &str, name: &str) -> Option<String> {
    let (_, params) = split_value(value);
    let mut rest = params;
    let mut extended: Option<String> = None;
    let mut plain: Option<String> = None;
    while !rest.trim().is_empty() {
        let r = rest.trim_start_matches([';', ' ', '\t']);
        let eq = r.find('=')?;
        let key = r[..eq].trim().to_ascii_lowercase();
        let after = &r[eq + 1..];
        let after = after.trim_start();
        let (val, remaining) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n)
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => out.push(c),
                }
            }
            (out, &q[end.min(q.len())..])
        } else {
            let e = after.find(';').unwrap_or(after.len());
            (after[..e].trim().to_string(), &after[e..])
        };
        if key == name {
            plain = Some(val);
        } else if key == format!("{name}*") {
            // charset'language'percent-encoded
            let parts: Vec<&str> = val.splitn(3, '\'').collect();
            let enc = if parts.len() == 3 { parts[2] } else { &val };
            extended =
                Some(String::from_utf8_lossy(&crate::bytes::percent_decode(enc)).into_owned());
        }
        rest = remaining;
    }
    extended.or(plain)
}

/// Quote a parameter value for a header we write; non-ASCII values use RFC 2231.
pub fn format_param(name: &str, value: &str) -> String {
    if value.is_ascii() && !value.chars().any(|c| c.is_ascii_control()) {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        format!("{name}=\"{escaped}\"")
    } else {
        let enc = crate::bytes::percent_encode(value, b"-._~");
        format!("{name}*=UTF-8''{enc}")
    }
}

/// The two parts of a `multipart/signed` body: the signed part byte-exact (headers included,
/// as on the wire) and the signature entity.
pub struct SignedParts<'a> {
    pub content: &'a [u8],
    pub signature: &'a [u8],
}

/// Refuse (`MalformedMime`) a multipart boundary RFC 2046 does not allow: 1 to 70 of its
/// `bchars` (digits, letters, `'()+_,-./:=?` and space), not ending in a space. Anything else
/// (a line end above all, which an RFC 2231 `boundary*=` value can carry) would let readers
/// of the same body find different parts.
pub fn check_boundary(boundary: &str) -> Result<()> {
    let allowed = |c: u8| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c);
    if boundary.is_empty()
        || boundary.len() > 70
        || boundary.ends_with(' ')
        || !boundary.bytes().all(allowed)
    {
        return Err(bad(format!(
            "invalid multipart boundary {boundary:?} (RFC 2046: 1 to 70 digits, letters or \
             '()+_,-./:=? and spaces, not last)"
        )));
    }
    Ok(())
}

/// Split a multipart body on `boundary`. The CRLF (or LF) before each delimiter belongs to the
/// delimiter (RFC 2046), so the parts are returned exactly as signed.
pub fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>> {
    check_boundary(boundary)?;
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    // Find every delimiter at the start of a line.
    let mut starts = Vec::new(); // (line start, index after the delimiter line)
    let mut i = 0;
    while let Some(off) = crate::bytes::find(&body[i..], d) {
        let at = i + off;
        let at_line_start = at == 0 || body[at - 1] == b'\n';
        if at_line_start {
            starts.push(at);
        }
        i = at + d.len();
        if starts.len() > 1000 {
            return Err(bad("too many multipart parts"));
        }
    }
    if starts.len() < 2 {
        return Err(bad(format!(
            "multipart body without its boundary {boundary}"
        )));
    }
    let mut parts = Vec::new();
    for w in starts.windows(2) {
        let (a, b) = (w[0], w[1]);
        // The part starts after the delimiter line's line end.
        let line_end = body[a..b]
            .iter()
            .position(|&c| c == b'\n')
            .map(|p| a + p + 1)
            .ok_or_else(|| bad("multipart delimiter line without a line end"))?;
        // The part ends before the line end that precedes the next delimiter.
        let mut end = b;
        if end > line_end && body[end - 1] == b'\n' {
            end -= 1;
            if end > line_end && body[end - 1] == b'\r' {
                end -= 1;
            }
        }
        parts.push(&body[line_end..end.max(line_end)]);
        if body[b + d.len()..].starts_with(b"--") {
            break;
        }
    }
    Ok(parts)
}

pub fn split_signed<'a>(entity: &Entity<'a>) -> Result<SignedParts<'a>> {
    let boundary = entity
        .content_type_param("boundary")
        .ok_or_else(|| bad("multipart/signed without a boundary"))?;
    let parts = split_multipart(entity.body, &boundary)?;
    if parts.len() != 2 {
        return Err(bad(format!(
            "multipart/signed has {} parts, expected 2",
            parts.len()
        )));
    }
    Ok(SignedParts {
        content: parts[0],
        signature: parts[1],
    })
}

// ---------------------------------------------------------------------------------------------
// Transfer encodings

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 with CRLF every 76 characters, as MIME wants.
pub fn base64_encode_mime(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + data.len() / 57 * 2 + 8);
    for (n, chunk) in data.chunks(57).enumerate() {
        if n > 0 {
            out.extend_from_slice(b"\r\n");
        }
        base64_append(chunk, &mut out);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Base64 of `chunk` appended to `out`, without line breaks.
pub(crate) fn base64_append(chunk: &[u8], out: &mut Vec<u8>) {
    for c in chunk.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(B64[(v >> 18) as usize & 63]);
        out.push(B64[(v >> 12) as usize & 63]);
        out.push(if c.len() > 1 {
            B64[(v >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if c.len() > 2 {
            B64[v as usize & 63]
        } else {
            b'='
        });
    }
}

/// PEM: base64 in 64-character lines between BEGIN and END lines.
pub fn pem_encode(label: &str, der: &[u8]) -> Vec<u8> {
    let b64 = base64_encode_mime(der);
    let flat: Vec<u8> = b64
        .into_iter()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let mut out = format!("-----BEGIN {label}-----\n").into_bytes();
    for line in flat.chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("-----END {label}-----\n").as_bytes());
    out
}

/// Base64 decoding that skips white space and rejects anything else that is not base64.
pub fn base64_decode(data: &[u8]) -> Result<Vec<u8>> {
    let mut table = [255u8; 256];
    for (i, &c) in B64.iter().enumerate() {
        table[c as usize] = i as u8;
    }
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut n = 0;
    let mut pad = 0;
    for &c in data {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            pad += 1;
            continue;
        }
        if pad > 0 {
            return Err(bad("base64 data continues after its padding"));
        }
        let v = table[c as usize];
        if v == 255 {
            return Err(bad(format!("invalid base64 character 0x{c:02x}")));
        }
        acc = (acc << 6) | v as u32;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        0 => {}
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => return Err(bad("truncated base64 data")),
    }
    Ok(out)
}

fn qp_decode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'=' {
            if data.get(i + 1) == Some(&b'\r') && data.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            if data.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if i + 2 < data.len() {
                if let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(&data[i + 1..i + 3]), 16)
                {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// A MIME type for a file name, by extension; `application/octet-stream` when unknown.
/// The longest file name [`safe_filename`] returns, in bytes: room is left for what a receiver
/// adds (`-12`, `.meta.json`, `.bin`) within the usual 255-byte limit of file systems.
pub const MAX_SAFE_FILENAME: usize = 200;

/// Characters that are not shown but change what is shown: format characters (Unicode
/// category Cf: bidirectional controls such as U+202E RIGHT-TO-LEFT OVERRIDE, which makes
/// `invoice\u{202E}fdp.exe` display as `invoiceexe.pdf`, zero-width characters, the byte order
/// mark, tags) and the line and paragraph separators.
fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// A file name a sender gave, reduced to a safe base name: no folders, no control or invisible
/// characters (bidirectional overrides, zero-width characters), no `:`, no leading dots or
/// spaces, at most [`MAX_SAFE_FILENAME`] bytes (a longer name is shortened before its
/// extension). `None` when nothing is left.
pub fn safe_filename(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base
        .chars()
        .filter(|&c| !c.is_control() && !is_invisible(c) && c != ':')
        .collect::<String>()
        .trim()
        .trim_start_matches('.')
        .trim()
        .to_string();
    if clean.is_empty() {
        return None;
    }
    if clean.len() <= MAX_SAFE_FILENAME {
        return Some(clean);
    }
    // Keep a short extension; cut the stem at a character boundary.
    let ext = clean
        .rfind('.')
        .map(|i| &clean[i..])
        .filter(|e| e.len() <= 16)
        .unwrap_or("");
    let mut stem = &clean[..clean.len() - ext.len()];
    let room = MAX_SAFE_FILENAME - ext.len();
    let mut cut = room.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    stem = stem[..cut].trim_end();
    Some(format!("{stem}{ext}"))
}

pub fn guess_type(filename: &str) -> &'static str {
    let ext = filename
        .rsplit('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "xml" => "application/xml",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "csv" => "text/csv",
        "txt" => "text/plain",
        "html" | "htm" => "text/html",
        "edi" | "edifact" => "application/edifact",
        "x12" => "application/edi-x12",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "tif" | "tiff" => "image/tiff",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for n in 0..200 {
            let v: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            assert_eq!(base64_decode(&base64_encode_mime(&v)).unwrap(), v);
        }
        assert!(base64_decode(b"ab$c").is_err());
        assert!(base64_decode(b"abcde").is_err());
    }

    #[test]
    fn params() {
        let v = "attachment; filename=\"in \\\"voice\\\".xml\"; size=3";
        assert_eq!(param(v, "filename").unwrap(), "in \"voice\".xml");
        assert_eq!(
            param("a; filename*=UTF-8''f%C3%BCr.txt", "filename").unwrap(),
            "für.txt"
        );
        assert_eq!(param("a; name=plain.txt", "name").unwrap(), "plain.txt");
        let f = format_param("filename", "für.txt");
        assert_eq!(param(&format!("a; {f}"), "filename").unwrap(), "für.txt");
    }

    #[test]
    fn multipart_parts_are_byte_exact() {
        let body = b"preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nline\nbare LF\r\n--b1\r\nsig\r\n--b1--\r\n";
        let parts = split_multipart(body, "b1").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], b"Content-Type: text/plain\r\n\r\nline\nbare LF");
        assert_eq!(parts[1], b"sig");
    }

    #[test]
    fn entity_detection() {
        assert!(looks_like_entity(b"Content-Type: text/plain\r\n\r\nhi"));
        assert!(looks_like_entity(b"X-Foo: 1\nMIME-Version: 1.0\n\nhi"));
        assert!(!looks_like_entity(b"Note: pay by Friday\nThanks\n"));
        assert!(!looks_like_entity(b"Note: pay by Friday\n\nThanks\n"));
        assert!(!looks_like_entity(b"\x30\x82\x01\x00"));
    }

    #[test]
    fn entity_headers() {
        let e = Entity::parse(
            b"Content-Type: application/pkcs7-mime;\r\n smime-type=enveloped-data\r\n\r\nBODY",
        )
        .unwrap();
        assert_eq!(e.content_type(), "application/pkcs7-mime");
        assert_eq!(
            e.content_type_param("smime-type").unwrap(),
            "enveloped-data"
        );
        assert_eq!(e.body, b"BODY");
    }
}
