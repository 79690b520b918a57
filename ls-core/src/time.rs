//! Calendar arithmetic for ASN.1 times (UTCTime, GeneralizedTime) and ISO 8601 output.

use crate::error::{Error, Result};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_unix() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub fn unix_from_parts(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> i64 {
    days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
}

/// `(year, month, day, hour, minute, second)` in UTC.
pub fn parts_from_unix(t: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    (y, m, d, secs / 3600, (secs / 60) % 60, secs % 60)
}

/// `2026-11-27T15:25:35Z`
pub fn iso8601(t: i64) -> String {
    let (y, m, d, h, mi, s) = parts_from_unix(t);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn digits(s: &[u8], what: &str) -> Result<i64> {
    if s.is_empty() || !s.iter().all(|b| b.is_ascii_digit()) {
        return Err(Error::Malformed(format!("bad {what}")));
    }
    Ok(s.iter().fold(0i64, |a, &b| a * 10 + (b - b'0') as i64))
}

/// Parse the content of a UTCTime (`tag` 0x17) or GeneralizedTime (0x18) to Unix seconds.
/// Accepts the forms seen in the field: with or without seconds, fractional seconds, `Z` or an offset.
pub fn parse_asn1_time(tag: u8, c: &[u8]) -> Result<i64> {
    let what = "ASN.1 time";
    let (year, rest) = match tag {
        0x17 => {
            if c.len() < 10 {
                return Err(Error::Malformed(format!("bad {what}")));
            }
            let yy = digits(&c[..2], what)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &c[2..])
        }
        0x18 => {
            if c.len() < 12 {
                return Err(Error::Malformed(format!("bad {what}")));
            }
            (digits(&c[..4], what)?, &c[4..])
        }
        _ => {
            return Err(Error::Malformed(format!(
                "{what}: unexpected tag 0x{tag:02x}"
            )))
        }
    };
    let mo = digits(&rest[0..2], what)?;
    let d = digits(&rest[2..4], what)?;
    let h = digits(&rest[4..6], what)?;
    let mi = digits(&rest[6..8], what)?;
    let mut i = 8;
    let mut s = 0;
    if rest.len() >= i + 2 && rest[i].is_ascii_digit() {
        s = digits(&rest[i..i + 2], what)?;
        i += 2;
    }
    if rest.get(i) == Some(&b'.') || rest.get(i) == Some(&b',') {
        i += 1;
        while rest.get(i).is_some_and(|b| b.is_ascii_digit()) {
            i += 1;
        }
    }
    let mut offset = 0;
    match rest.get(i) {
        Some(b'Z') => {}
        Some(&sign @ (b'+' | b'-')) if rest.len() >= i + 5 => {
            let oh = digits(&rest[i + 1..i + 3], what)?;
            let om = digits(&rest[i + 3..i + 5], what)?;
            offset = (oh * 3600 + om * 60) * if sign == b'+' { 1 } else { -1 };
        }
        None => {}
        _ => return Err(Error::Malformed(format!("bad {what}"))),
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return Err(Error::Malformed(format!("bad {what}")));
    }
    Ok(unix_from_parts(year, mo, d, h, mi, s) - offset)
}

/// DER encoding of a signing time: UTCTime through 2049, GeneralizedTime after (RFC 5652 11.3).
pub fn encode_signing_time(t: i64) -> Vec<u8> {
    let (y, m, d, h, mi, s) = parts_from_unix(t);
    if (1950..2050).contains(&y) {
        let v = format!("{:02}{m:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
        crate::asn1::tlv(0x17, v.as_bytes())
    } else {
        let v = format!("{y:04}{m:02}{d:02}{h:02}{mi:02}{s:02}Z");
        crate::asn1::tlv(0x18, v.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for t in [0i64, 951782400, 1_800_000_000, 2_524_608_000, -1] {
            let enc = encode_signing_time(t);
            let tlv = crate::asn1::parse_single(&enc).unwrap();
            assert_eq!(parse_asn1_time(tlv.tag, tlv.content).unwrap(), t);
        }
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            parse_asn1_time(0x17, b"2611271525+0100").unwrap(),
            unix_from_parts(2026, 11, 27, 14, 25, 0)
        );
    }
}
