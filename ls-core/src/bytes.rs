//! Small helpers on bytes that every layer uses: lower-case hex, SHA-256 fingerprints, and
//! substring search. One of each, here, so that the crates above do not grow their own.

use std::fmt::Write as _;

/// Lower-case hex without separators (`ef45…`): how digests, serial numbers, key ids and
/// fingerprints are printed everywhere.
pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        // Writing to a String cannot fail.
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// [`hex`] of the SHA-256 of `data`: the form of every fingerprint and digest Layer Security
/// prints (as `sha256sum` prints it).
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&openssl::sha::sha256(data))
}

/// A SHA-256 fingerprint as people give it: 64 hex digits, upper or lower case, with or without
/// `:` (or space) between the pairs (`EF:45:…` as OpenSSL prints it, `ef45…` as we do). `None`
/// for anything else.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let digits: Vec<u8> = s.bytes().filter(|b| !matches!(b, b':' | b' ')).collect();
    if digits.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// The first position of `needle` in `hay` (SIMD search through memchr's `memmem`: MIME
/// boundaries are looked for across whole payloads). `None` for an empty needle.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    memchr::memmem::find(hay, needle)
}

/// Whether `needle` occurs in `hay` (an empty needle never does).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// `s` with every byte but ASCII letters, digits and those in `keep` written as `%XX` (upper
/// case hex).
pub fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `%XX` escapes (two hex digits) decoded, as URIs, RFC 2231 parameter values and query strings
/// carry them. A `%` that does not begin an escape is kept as it is.
pub fn percent_decode(s: &str) -> Vec<u8> {
    decode_escapes(s.as_bytes()).0
}

/// [`percent_decode`], or `None` when a `%` does not begin an escape.
pub fn percent_decode_strict(s: &str) -> Option<Vec<u8>> {
    let (out, well_formed) = decode_escapes(s.as_bytes());
    well_formed.then_some(out)
}

fn decode_escapes(b: &[u8]) -> (Vec<u8>, bool) {
    let hex_digit = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut well_formed = true;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let escape = b
                .get(i + 1..i + 3)
                .and_then(|h| Some((hex_digit(h[0])?, hex_digit(h[1])?)));
            if let Some((hi, lo)) = escape {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
            well_formed = false;
        }
        out.push(b[i]);
        i += 1;
    }
    (out, well_formed)
}

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 (RFC 4648 §4) on one line, with `=` padding: as JSON carries DER (a JWS `x5c`).
/// (MIME bodies and PEM, in lines, are `mime::base64_encode_mime` and `mime::pem_encode`.)
pub fn base64_encode(data: &[u8]) -> String {
    encode64(data, B64_STD, true)
}

/// Base64url (RFC 4648 §5) without padding, as JOSE (RFC 7515) writes it.
pub fn base64url_encode(data: &[u8]) -> String {
    encode64(data, B64_URL, false)
}

fn encode64(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(alphabet[(v >> shift) as usize & 63] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Strict base64url without padding (RFC 7515 §2): `None` for any other character, padding,
/// white space, a length no encoding has, or bits left over that an encoder leaves zero — so
/// that each byte string has exactly one accepted encoding.
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    decode64(s, B64_URL, false)
}

/// Strict base64 with its `=` padding (RFC 4648 §4), on one line: `None` for anything else.
pub fn base64_decode_strict(s: &str) -> Option<Vec<u8>> {
    decode64(s, B64_STD, true)
}

fn decode64(s: &str, alphabet: &[u8; 64], padded: bool) -> Option<Vec<u8>> {
    let mut b = s.as_bytes();
    if padded {
        if b.len() % 4 != 0 {
            return None;
        }
        let pad = b.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 {
            return None;
        }
        b = &b[..b.len() - pad];
    }
    if b.len() % 4 == 1 {
        return None;
    }
    let mut table = [255u8; 256];
    for (i, &c) in alphabet.iter().enumerate() {
        table[c as usize] = i as u8;
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3 + 2);
    for chunk in b.chunks(4) {
        let mut v: u32 = 0;
        for &c in chunk {
            let x = table[c as usize];
            if x == 255 {
                return None;
            }
            v = v << 6 | x as u32;
        }
        // Left-align a short final group, then take its whole bytes.
        v <<= 6 * (4 - chunk.len()) as u32;
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        let n = chunk.len() - 1;
        // The bits below the last whole byte must be zero (one encoding per byte string).
        if n < 3 && bytes[n] != 0 {
            return None;
        }
        out.extend_from_slice(&bytes[..n]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_without_separators() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xef, 0x45, 0xff]), "000fef45ff");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn fingerprints_are_read_in_every_form_people_give() {
        let d = openssl::sha::sha256(b"abc");
        let lower = sha256_hex(b"abc");
        let upper = lower.to_ascii_uppercase();
        let colons = |s: &str| {
            s.as_bytes()
                .chunks(2)
                .map(|p| std::str::from_utf8(p).unwrap())
                .collect::<Vec<_>>()
                .join(":")
        };
        for s in [
            lower.clone(),
            upper.clone(),
            colons(&lower),
            colons(&upper),
            colons(&lower).replace(':', " "),
        ] {
            assert_eq!(parse_sha256(&s), Some(d), "{s}");
        }
        for bad in [
            "",
            "abc",
            &"zz".repeat(32),
            &"00".repeat(33),
            &"00".repeat(31),
            &format!("+{}", &lower[1..]),
            &format!("{lower}\n"),
        ] {
            assert_eq!(parse_sha256(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn percent_escapes() {
        assert_eq!(percent_decode("a%3A%3ab%20c"), b"a::b c");
        assert_eq!(percent_decode("caf%C3%A9"), "café".as_bytes());
        // What is not an escape stays as it is (a sign is not a hex digit).
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
        assert_eq!(percent_decode("%+4x%"), b"%+4x%");
        assert_eq!(percent_decode("plain+text"), b"plain+text");
        assert_eq!(percent_decode_strict("a%2Fb").as_deref(), Some(&b"a/b"[..]));
        assert_eq!(
            percent_decode_strict("no escapes").as_deref(),
            Some(&b"no escapes"[..])
        );
        assert_eq!(percent_decode_strict("a%2"), None);
        assert_eq!(percent_decode_strict("a%g0"), None);
        let enc = percent_encode("a b/é%", b"-/");
        assert_eq!(enc, "a%20b/%C3%A9%25");
        assert_eq!(percent_decode(&enc), "a b/é%".as_bytes());
    }

    #[test]
    fn find_and_contains() {
        assert_eq!(find(b"hello world", b"world"), Some(6));
        assert_eq!(find(b"hello", b"hello world"), None);
        assert_eq!(find(b"hello", b""), None);
        assert_eq!(find(b"", b"x"), None);
        assert_eq!(find(b"aaab", b"ab"), Some(2));
        assert!(contains(b"-----BEGIN CERTIFICATE-----", b"BEGIN"));
        assert!(!contains(b"abc", b""));
        assert!(!contains(b"abc", b"abd"));
    }

    #[test]
    fn base64_both_alphabets_round_trip_and_decode_strictly() {
        // RFC 4648 §10 vectors.
        for (plain, std) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), std);
            assert_eq!(base64_decode_strict(std).unwrap(), plain.as_bytes());
            let url = std.trim_end_matches('=');
            assert_eq!(base64url_encode(plain.as_bytes()), url);
            assert_eq!(base64url_decode(url).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64url_decode(&base64url_encode(&all)).unwrap(), all);
        assert_eq!(base64_decode_strict(&base64_encode(&all)).unwrap(), all);
        assert!(base64url_encode(&[0xfb, 0xff]).contains(['-', '_']));
        for bad in [
            "Zg==", "Zg=", "Z", "Zh", "Zm9 v", "Zm9v\n", "Zm+v", "Zm/v", "é",
        ] {
            assert_eq!(base64url_decode(bad), None, "{bad:?}");
        }
        for bad in ["Zg", "Zg=", "Zh==", "Zm9vY===", "Zm9v\n", "Zm-v", " Zm9v"] {
            assert_eq!(base64_decode_strict(bad), None, "{bad:?}");
        }
    }
}
