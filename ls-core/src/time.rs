//! Time: calendar arithmetic, ISO 8601 output, and the one parser of the dates and times we
//! read — ASN.1 UTCTime/GeneralizedTime (certificates, signing times), ISO 8601 date-times
//! (ebMS Timestamps) and calendar dates (the admin's usage report).

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

// --- parsing: one scanner and one set of field checks for every notation we read.

/// The days of month `m` (1–12) of year `y`.
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Unix seconds of a date `(year, month, day)` and time `(hour, minute, second)` written with
/// `offset` seconds east of UTC, when every field is in range: year 0–9999, month 1–12, a day
/// the month has, hour 0–23, minute 0–59, second 0–60 (a leap second), an offset under 24 hours.
fn checked_unix(date: (i64, i64, i64), time: (i64, i64, i64), offset: i64) -> Option<i64> {
    let ((y, mo, d), (h, mi, s)) = (date, time);
    let ok = (0..=9999).contains(&y)
        && (1..=12).contains(&mo)
        && (1..=days_in_month(y, mo)).contains(&d)
        && (0..=23).contains(&h)
        && (0..=59).contains(&mi)
        && (0..=60).contains(&s)
        && offset.abs() < 24 * 3600;
    ok.then(|| unix_from_parts(y, mo, d, h, mi, s) - offset)
}

/// A cursor over the text being parsed.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn new(b: &'a [u8]) -> Scan<'a> {
        Scan { b, i: 0 }
    }

    /// Exactly `n` ASCII digits.
    fn digits(&mut self, n: usize) -> Option<i64> {
        let d = self.b.get(self.i..self.i + n)?;
        if !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(d.iter().fold(0, |a, &c| a * 10 + i64::from(c - b'0')))
    }

    /// The byte `c`, if it is next.
    fn eat(&mut self, c: u8) -> bool {
        let found = self.b.get(self.i) == Some(&c);
        self.i += usize::from(found);
        found
    }

    /// Two digits when a digit is next.
    fn opt_digits2(&mut self) -> Option<Option<i64>> {
        match self.b.get(self.i) {
            Some(c) if c.is_ascii_digit() => self.digits(2).map(Some),
            _ => Some(None),
        }
    }

    /// A fraction of a second (ignored): one of `separators`, then any number of digits.
    fn fraction(&mut self, separators: &[u8]) {
        if self.b.get(self.i).is_some_and(|c| separators.contains(c)) {
            self.i += 1;
            while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
        }
    }

    /// The zone: nothing (UTC), `Z`, or `±hh` `colon` `mm`; then the end of the text.
    fn zone_and_end(&mut self, colon: bool) -> Option<i64> {
        let offset = if self.at_end() || self.eat(b'Z') {
            0
        } else {
            let sign = if self.eat(b'+') {
                1
            } else if self.eat(b'-') {
                -1
            } else {
                return None;
            };
            let h = self.digits(2)?;
            if colon && !self.eat(b':') {
                return None;
            }
            let m = self.digits(2)?;
            if m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        };
        self.at_end().then_some(offset)
    }

    fn at_end(&self) -> bool {
        self.i == self.b.len()
    }
}

/// An ISO 8601 / xs:dateTime date and time: `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)`, the zone
/// optional (then UTC), fractions of a second ignored → Unix seconds. The form of an ebMS
/// `Timestamp` (and of what [`iso8601`] writes).
pub fn parse_date_time(s: &str) -> Option<i64> {
    let mut p = Scan::new(s.as_bytes());
    let date = iso_date(&mut p)?;
    p.eat(b'T').then_some(())?;
    let hour = p.digits(2)?;
    p.eat(b':').then_some(())?;
    let minute = p.digits(2)?;
    p.eat(b':').then_some(())?;
    let second = p.digits(2)?;
    p.fraction(b".");
    let offset = p.zone_and_end(true)?;
    checked_unix(date, (hour, minute, second), offset)
}

/// An ISO 8601 calendar date, `YYYY-MM-DD` → the start of that day (UTC) in Unix seconds.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut p = Scan::new(s.as_bytes());
    let date = iso_date(&mut p)?;
    p.at_end().then_some(())?;
    checked_unix(date, (0, 0, 0), 0)
}

/// `YYYY-MM-DD`.
fn iso_date(p: &mut Scan<'_>) -> Option<(i64, i64, i64)> {
    let year = p.digits(4)?;
    p.eat(b'-').then_some(())?;
    let month = p.digits(2)?;
    p.eat(b'-').then_some(())?;
    let day = p.digits(2)?;
    Some((year, month, day))
}

/// Parse the content of a UTCTime (`tag` 0x17: `YYMMDDhhmm[ss]`, years 1950–2049) or a
/// GeneralizedTime (0x18: `YYYYMMDDhhmm[ss]`) to Unix seconds. Accepts the forms seen in the
/// field: with or without seconds, a fraction of a second (`.` or `,`), `Z`, `±hhmm` or no zone.
pub fn parse_asn1_time(tag: u8, c: &[u8]) -> Result<i64> {
    let what = "ASN.1 time";
    let mut p = Scan::new(c);
    let year = match tag {
        0x17 => p
            .digits(2)
            .map(|yy| if yy < 50 { 2000 + yy } else { 1900 + yy }),
        0x18 => p.digits(4),
        _ => {
            return Err(Error::Malformed(format!(
                "{what}: unexpected tag 0x{tag:02x}"
            )))
        }
    };
    let fields = (|| {
        let date = (year?, p.digits(2)?, p.digits(2)?);
        let (hour, minute) = (p.digits(2)?, p.digits(2)?);
        let second = p.opt_digits2()?.unwrap_or(0);
        p.fraction(b".,");
        let offset = p.zone_and_end(false)?;
        checked_unix(date, (hour, minute, second), offset)
    })();
    fields.ok_or_else(|| Error::Malformed(format!("bad {what}")))
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
    fn days_the_month_does_not_have_are_refused() {
        assert_eq!(parse_date("2024-02-29"), Some(1_709_164_800));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2024-02-31"), None);
        assert_eq!(parse_date("2026-04-31"), None);
        assert_eq!(parse_date("2000-02-29"), Some(951_782_400));
        assert_eq!(parse_date("1900-02-29"), None);
        assert_eq!(parse_date_time("2026-06-31T00:00:00Z"), None);
        // The admin API's usage period once overflowed on a year of 13 digits (fuzzing).
        assert_eq!(parse_date("2026666666664-01-01"), None);
        assert_eq!(parse_date("2026666666664-1-1"), None);
    }

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

    /// Every ASN.1 form certificates and signing times use: UTCTime (two-digit years, 1950 to
    /// 2049) and GeneralizedTime, with or without seconds, fractions, `Z`, `±hhmm`, no zone.
    #[test]
    fn asn1_times() {
        let t = |tag, s: &str| parse_asn1_time(tag, s.as_bytes()).ok();
        let at = |y, mo, d, h, mi, s| Some(unix_from_parts(y, mo, d, h, mi, s));
        assert_eq!(t(0x17, "261127152535Z"), at(2026, 11, 27, 15, 25, 35));
        assert_eq!(t(0x17, "4912312359Z"), at(2049, 12, 31, 23, 59, 0));
        assert_eq!(t(0x17, "500101000000Z"), at(1950, 1, 1, 0, 0, 0));
        assert_eq!(t(0x17, "2611271525-0130"), at(2026, 11, 27, 16, 55, 0));
        assert_eq!(t(0x17, "261127152535"), at(2026, 11, 27, 15, 25, 35));
        assert_eq!(t(0x17, "2611271525"), at(2026, 11, 27, 15, 25, 0));
        assert_eq!(t(0x18, "20261127152535Z"), at(2026, 11, 27, 15, 25, 35));
        assert_eq!(t(0x18, "20261127152535.123Z"), at(2026, 11, 27, 15, 25, 35));
        assert_eq!(
            t(0x18, "20261127152535,5+0200"),
            at(2026, 11, 27, 13, 25, 35)
        );
        assert_eq!(t(0x18, "205012312359Z"), at(2050, 12, 31, 23, 59, 0));
        assert_eq!(t(0x18, "20161231235960Z"), at(2016, 12, 31, 23, 59, 60));
        for bad in [
            "",
            "26112715Z",
            "261327152535Z",
            "261100152535Z",
            "261127242535Z",
            "261127156035Z",
            "2611271525355Z",
            "261127152535Q",
            "261127152535+01",
            "261127152535Zjunk",
            "26-1127152535Z",
        ] {
            assert_eq!(t(0x17, bad), None, "{bad:?}");
        }
        assert_eq!(t(0x18, "261127152535Z"), None);
        assert!(parse_asn1_time(0x04, b"261127152535Z").is_err());
    }

    /// ebMS Timestamps (xs:dateTime): what the service accepted before this parser moved here.
    #[test]
    fn date_times() {
        assert_eq!(parse_date_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_date_time("1970-01-01T01:00:00.123Z"), Some(3600));
        assert_eq!(parse_date_time("1970-01-01T01:00:00.Z"), Some(3600));
        assert_eq!(parse_date_time("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_date_time("1970-01-01T00:00:00-00:30"), Some(1800));
        assert_eq!(parse_date_time("1970-01-01T00:00:00"), Some(0));
        assert_eq!(
            parse_date_time("2026-11-27T14:07:22.307+00:00"),
            Some(unix_from_parts(2026, 11, 27, 14, 7, 22))
        );
        // What we write is read back.
        let t = 1_800_000_123;
        assert_eq!(parse_date_time(&iso8601(t)), Some(t));
        for bad in [
            "1970-01-01 00:00:00Z",
            "yesterday",
            "1970-01-01T00:00:00Zjunk",
            "1970-01-01T00:00Z",
            "1970-01-01",
            "1970-13-01T00:00:00Z",
            "1970-01-01T24:00:00Z",
            "1970-01-01T00:00:00+0100",
            "1970-01-01T00:00:00+01:60",
            "1970-1-01T00:00:00Z",
            "+970-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_date_time(bad), None, "{bad:?}");
        }
    }

    /// Calendar dates (the admin's usage report): the start of the day, UTC.
    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(
            parse_date("2026-11-27"),
            Some(unix_from_parts(2026, 11, 27, 0, 0, 0))
        );
        for bad in [
            "",
            "2026-11-27T00:00:00Z",
            "2026-1-5",
            "26-11-27",
            "2026-13-01",
            "2026-11-32",
            "2026-11-00",
            "2026/11/27",
            "1800000000",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }
}
