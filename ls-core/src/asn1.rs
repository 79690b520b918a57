//! A small BER reader and DER writer: exactly what CMS needs, zero-copy where the input allows.
//!
//! The reader accepts BER (indefinite lengths, constructed strings, non-minimal lengths) because
//! legacy S/MIME products send it; the writer always produces DER. Every read is bounded by the
//! input slice and by a nesting limit, so hostile input can only produce an error.

use crate::error::{Error, Result};
use std::borrow::Cow;

pub const MAX_DEPTH: usize = 48;

pub mod tag {
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const PRINTABLE_STRING: u8 = 0x13;
    pub const IA5_STRING: u8 = 0x16;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// `[n]` context-specific, constructed.
    pub const fn ctx(n: u8) -> u8 {
        0xa0 | n
    }
    /// `[n]` context-specific, primitive.
    pub const fn ctx_prim(n: u8) -> u8 {
        0x80 | n
    }
}

/// One decoded element. `tag` is the identifier octet (low tag numbers only, as CMS uses).
#[derive(Clone, Copy, Debug)]
pub struct Tlv<'a> {
    pub tag: u8,
    /// The content octets (for an indefinite length: up to, not including, the end-of-contents).
    pub content: &'a [u8],
    /// The whole encoding, identifier and length included.
    pub raw: &'a [u8],
    /// Whether the length was indefinite (BER).
    pub indefinite: bool,
    depth: usize,
}

fn malformed(what: &str) -> Error {
    Error::Malformed(format!("bad ASN.1 in {what}"))
}

/// Decode one element at the start of `input`; returns it and the rest.
pub fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8])> {
    read_tlv_at(input, 0)
}

fn read_tlv_at(input: &[u8], depth: usize) -> Result<(Tlv<'_>, &[u8])> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(format!(
            "ASN.1 nesting deeper than {MAX_DEPTH} levels"
        )));
    }
    if input.is_empty() {
        return Err(Error::Truncated(
            "input ended where an ASN.1 element was expected".into(),
        ));
    }
    let tag = input[0];
    if tag & 0x1f == 0x1f {
        return Err(Error::Malformed(
            "ASN.1 high tag numbers are not used by CMS".into(),
        ));
    }
    if input.len() < 2 {
        return Err(Error::Truncated(
            "input ended inside an ASN.1 header".into(),
        ));
    }
    let first = input[1];
    let constructed = tag & 0x20 != 0;
    if first == 0x80 {
        // Indefinite length: only for constructed encodings; content runs to end-of-contents.
        if !constructed {
            return Err(Error::Malformed(
                "indefinite length on a primitive ASN.1 element".into(),
            ));
        }
        let body = &input[2..];
        let mut rest = body;
        loop {
            if rest.len() >= 2 && rest[0] == 0 && rest[1] == 0 {
                let content_len = body.len() - rest.len();
                let total = 2 + content_len + 2;
                let tlv = Tlv {
                    tag,
                    content: &body[..content_len],
                    raw: &input[..total],
                    indefinite: true,
                    depth,
                };
                return Ok((tlv, &input[total..]));
            }
            if rest.is_empty() {
                return Err(Error::Truncated(
                    "input ended before the end of an indefinite-length element".into(),
                ));
            }
            let (_, r) = read_tlv_at(rest, depth + 1)?;
            rest = r;
        }
    }
    let (len, hdr) = if first & 0x80 == 0 {
        (first as usize, 2usize)
    } else {
        let n = (first & 0x7f) as usize;
        if n > 8 {
            return Err(Error::Malformed("ASN.1 length field too long".into()));
        }
        if input.len() < 2 + n {
            return Err(Error::Truncated(
                "input ended inside an ASN.1 length".into(),
            ));
        }
        let mut len: u64 = 0;
        for &b in &input[2..2 + n] {
            len = (len << 8) | b as u64;
        }
        let len = usize::try_from(len).map_err(|_| Error::TooLarge("ASN.1 length".into()))?;
        (len, 2 + n)
    };
    let avail = input.len() - hdr;
    if len > avail {
        return Err(Error::Truncated(format!(
            "an ASN.1 element declares {len} bytes but only {avail} follow"
        )));
    }
    let tlv = Tlv {
        tag,
        content: &input[hdr..hdr + len],
        raw: &input[..hdr + len],
        indefinite: false,
        depth,
    };
    Ok((tlv, &input[hdr + len..]))
}

/// Most zero bytes tolerated after a structure (padding by BER producers): more is not padding.
pub const MAX_PADDING: usize = 1 << 20;

/// Decode exactly one element spanning the whole input (trailing zero padding from BER
/// producers is tolerated, anything else is an error).
pub fn parse_single(input: &[u8]) -> Result<Tlv<'_>> {
    let (t, rest) = read_tlv(input)?;
    if rest.len() > MAX_PADDING || rest.iter().any(|&b| b != 0) {
        return Err(Error::Malformed(format!(
            "{} unexpected bytes after the ASN.1 structure",
            rest.len()
        )));
    }
    Ok(t)
}

impl<'a> Tlv<'a> {
    pub fn is_constructed(&self) -> bool {
        self.tag & 0x20 != 0
    }

    /// Iterate over the children of a constructed element.
    pub fn children(&self) -> Result<Reader<'a>> {
        if !self.is_constructed() {
            return Err(Error::Malformed(format!(
                "expected a constructed ASN.1 element, found tag 0x{:02x}",
                self.tag
            )));
        }
        Ok(Reader {
            rest: self.content,
            depth: self.depth + 1,
        })
    }

    pub fn expect(self, tag: u8, what: &str) -> Result<Tlv<'a>> {
        // Strings may arrive constructed (BER): accept either form for universal string tags.
        let ok = self.tag == tag || (tag < 0x1f && self.tag == tag | 0x20 && is_string_tag(tag));
        if ok {
            Ok(self)
        } else {
            Err(Error::Malformed(format!(
                "{what}: expected tag 0x{tag:02x}, found 0x{:02x}",
                self.tag
            )))
        }
    }

    /// The value of an OCTET STRING (or any string type, or an implicitly tagged one), joining the
    /// pieces of a BER constructed string.
    pub fn octets(&self) -> Result<Cow<'a, [u8]>> {
        if !self.is_constructed() {
            return Ok(Cow::Borrowed(self.content));
        }
        let mut out = Vec::new();
        self.collect_octets(&mut out)?;
        Ok(Cow::Owned(out))
    }

    fn collect_octets(&self, out: &mut Vec<u8>) -> Result<()> {
        let mut r = self.children()?;
        while let Some(c) = r.next()? {
            if c.is_constructed() {
                c.collect_octets(out)?;
            } else if c.tag & 0x1f == tag::OCTET_STRING || c.tag & 0xc0 == 0x80 {
                out.extend_from_slice(c.content);
            } else {
                return Err(malformed("a constructed OCTET STRING"));
            }
        }
        Ok(())
    }

    /// A non-negative INTEGER that fits in u64.
    pub fn small_uint(&self) -> Result<u64> {
        let c = strip_int(self.content)?;
        if c.len() > 8 || (!self.content.is_empty() && self.content[0] & 0x80 != 0) {
            return Err(malformed("an INTEGER"));
        }
        Ok(c.iter().fold(0u64, |a, &b| (a << 8) | b as u64))
    }

    /// A BIT STRING's bytes (the unused-bits count must be 0 for keys and signatures).
    pub fn bit_string_bytes(&self) -> Result<&'a [u8]> {
        if self.is_constructed() || self.content.is_empty() {
            return Err(malformed("a BIT STRING"));
        }
        Ok(&self.content[1..])
    }

    pub fn utf8_lossy(&self) -> String {
        String::from_utf8_lossy(self.content).into_owned()
    }
}

fn is_string_tag(t: u8) -> bool {
    matches!(
        t,
        tag::OCTET_STRING
            | tag::BIT_STRING
            | tag::UTF8_STRING
            | tag::PRINTABLE_STRING
            | tag::IA5_STRING
    )
}

/// INTEGER content without its redundant leading zero octets (the magnitude of a positive value).
pub fn strip_int(c: &[u8]) -> Result<&[u8]> {
    if c.is_empty() {
        return Err(malformed("an INTEGER"));
    }
    let mut i = 0;
    while i + 1 < c.len() && c[i] == 0 {
        i += 1;
    }
    Ok(&c[i..])
}

/// Sequential access to the children of a constructed element.
pub struct Reader<'a> {
    rest: &'a [u8],
    depth: usize,
}

impl<'a> Reader<'a> {
    pub fn new(input: &'a [u8]) -> Reader<'a> {
        Reader {
            rest: input,
            depth: 0,
        }
    }

    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Tlv<'a>>> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let (t, r) = read_tlv_at(self.rest, self.depth)?;
        self.rest = r;
        Ok(Some(t))
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next child, which must exist.
    pub fn req(&mut self, what: &str) -> Result<Tlv<'a>> {
        self.next()?
            .ok_or_else(|| Error::Malformed(format!("{what} is missing")))
    }

    /// The next child, which must exist and carry `tag`.
    pub fn expect(&mut self, tag: u8, what: &str) -> Result<Tlv<'a>> {
        self.req(what)?.expect(tag, what)
    }

    /// The next child if it carries `tag`, else nothing is consumed.
    pub fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>> {
        match self.peek_tag() {
            Some(t) if t == tag || (t == tag | 0x20 && is_string_tag(tag)) => self.next(),
            _ => Ok(None),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The number of remaining children (each one parsed, so malformed input is an error).
    pub fn count_all(mut self) -> Result<usize> {
        let mut n = 0;
        while self.next()?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// DER writer

/// Append an identifier and a definite length.
pub fn write_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

pub fn header_len(len: usize) -> usize {
    if len < 0x80 {
        2
    } else {
        2 + (8 - (len as u64).leading_zeros() as usize / 8)
    }
}

pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_len(content.len()) + content.len());
    write_header(&mut out, tag, content.len());
    out.extend_from_slice(content);
    out
}

/// A constructed element from already-encoded children.
pub fn cons(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(header_len(len) + len);
    write_header(&mut out, tag, len);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    cons(tag::SEQUENCE, parts)
}

/// A DER SET OF: the encodings sorted as X.690 requires.
pub fn set_of(mut parts: Vec<Vec<u8>>) -> Vec<u8> {
    parts.sort();
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    cons(tag::SET, &refs)
}

pub fn octet_string(v: &[u8]) -> Vec<u8> {
    tlv(tag::OCTET_STRING, v)
}

pub fn null() -> Vec<u8> {
    vec![tag::NULL, 0]
}

/// OID from its DER content octets.
pub fn oid(content: &[u8]) -> Vec<u8> {
    tlv(tag::OID, content)
}

/// A non-negative INTEGER from its big-endian magnitude.
pub fn uint_bytes(mag: &[u8]) -> Vec<u8> {
    let mut i = 0;
    while i + 1 < mag.len() && mag[i] == 0 {
        i += 1;
    }
    let m = if mag.is_empty() {
        &[0u8][..]
    } else {
        &mag[i..]
    };
    if m[0] & 0x80 != 0 {
        let mut c = Vec::with_capacity(m.len() + 1);
        c.push(0);
        c.extend_from_slice(m);
        tlv(tag::INTEGER, &c)
    } else {
        tlv(tag::INTEGER, m)
    }
}

pub fn uint(v: u64) -> Vec<u8> {
    uint_bytes(&v.to_be_bytes())
}

pub fn bit_string(v: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(v.len() + 1);
    c.push(0);
    c.extend_from_slice(v);
    tlv(tag::BIT_STRING, &c)
}

/// Dotted form of an OID's content octets, for messages and `inspect`.
pub fn oid_to_string(content: &[u8]) -> String {
    if content.is_empty() {
        return "(empty OID)".into();
    }
    let mut arcs: Vec<u64> = Vec::new();
    let mut v: u64 = 0;
    for &b in content {
        if v > (u64::MAX >> 7) {
            return "(invalid OID)".into();
        }
        v = (v << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let (a, b) = if v < 40 {
                    (0, v)
                } else if v < 80 {
                    (1, v - 40)
                } else {
                    (2, v - 80)
                };
                arcs.push(a);
                arcs.push(b);
            } else {
                arcs.push(v);
            }
            v = 0;
        }
    }
    arcs.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definite_and_indefinite_lengths() {
        // SEQUENCE (indefinite) { OCTET STRING (constructed, indefinite) { "ab", "c" } }
        let ber = [
            0x30, 0x80, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c', 0, 0, 0, 0,
        ];
        let t = parse_single(&ber).unwrap();
        assert!(t.indefinite);
        let mut r = t.children().unwrap();
        let s = r.expect(tag::OCTET_STRING, "s").unwrap();
        assert_eq!(&*s.octets().unwrap(), b"abc");
        assert!(r.next().unwrap().is_none());
    }

    #[test]
    fn truncation_is_reported_as_such() {
        let e = parse_single(&[0x30, 0x05, 0x02, 0x01]).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Truncated);
        let e = parse_single(&[0x30, 0x80, 0x02, 0x01, 0x00]).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Truncated);
    }

    #[test]
    fn nesting_is_bounded() {
        let mut v = Vec::new();
        for _ in 0..200 {
            v.extend_from_slice(&[0x30, 0x80]);
        }
        let e = parse_single(&v).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::TooDeep);
    }

    #[test]
    fn writer_lengths_round_trip() {
        for n in [0usize, 1, 127, 128, 255, 256, 65535, 65536, 1 << 24] {
            let v = vec![7u8; n];
            let enc = octet_string(&v);
            assert_eq!(enc.len(), header_len(n) + n);
            let t = parse_single(&enc).unwrap();
            assert_eq!(t.content.len(), n);
        }
    }

    #[test]
    fn integers_and_oids() {
        assert_eq!(uint(0), vec![2, 1, 0]);
        assert_eq!(uint(128), vec![2, 2, 0, 128]);
        let enc = uint(65537);
        let t = parse_single(&enc).unwrap();
        assert_eq!(t.small_uint().unwrap(), 65537);
        assert_eq!(
            oid_to_string(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01]),
            "1.2.840.113549.1.7.1"
        );
    }
}
