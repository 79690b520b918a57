//! Realistic business text for the compression benchmark and tests: UBL 2.1 invoices (XML),
//! EDIFACT D.96A INVOIC and ORDERS interchanges, and CSV exports (a general-ledger journal, order
//! lines, a bank statement), as a back office's bulk export or archive holds them.
//!
//! Deterministic: the same seed and [`Mix`] give the same bytes on every machine (our own
//! PRNG, no floating point in the output), and a shorter output is a prefix of a longer one.
//! Values vary as real ones do: a few thousand partners and twenty thousand articles drawn from
//! word lists (names, streets, cities with their postcodes, legal forms of twelve countries),
//! quantities, prices and totals that add up, dates that advance, sequential document numbers,
//! GTINs and GLNs with their check digits, IBANs with valid check digits, free text with numbers
//! and references in it. Data lines (CSV rows, EDIFACT segments with values, XML elements with
//! values) do not repeat; only structure does (closing tags, `UNS+S'`), as in real files.
//!
//! Memory is constant: the pools are built once (about 5 MB), then one document at a time is
//! written ([`BusinessText::next_document`], [`write`]).

use std::fmt::Write as _;
use std::io::{self, Write};

mod formats;
mod words;
use words::{
    Country, COMPANY_CORES, COMPANY_SECTORS, COUNTRIES, DEPARTMENTS, FAMILIES, FIRST_NAMES,
    LAST_NAMES, NOTES,
};

/// Which documents to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// UBL, EDIFACT and CSV documents in turn, chosen at random (about 45/25/30 % of the bytes).
    Mixed,
    Ubl,
    Edifact,
    Csv,
}

impl std::str::FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "mixed" => Mix::Mixed,
            "ubl" => Mix::Ubl,
            "edifact" => Mix::Edifact,
            "csv" => Mix::Csv,
            _ => return Err(format!("{s}: expected mixed, ubl, edifact or csv")),
        })
    }
}

/// `n` bytes of business text (in memory: for tests and in-process benchmarks).
pub fn generate(seed: u64, mix: Mix, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    write(seed, mix, n as u64, &mut v).expect("writing to a Vec");
    v
}

/// Write exactly `n` bytes of business text to `w`, one document at a time (the last one cut).
pub fn write(seed: u64, mix: Mix, n: u64, w: &mut impl Write) -> io::Result<()> {
    let mut g = BusinessText::new(seed, mix);
    let mut buf = String::with_capacity(1 << 20);
    let mut left = n;
    while left > 0 {
        buf.clear();
        while buf.len() < 256 << 10 {
            g.next_document(&mut buf);
        }
        let take = (buf.len() as u64).min(left) as usize;
        w.write_all(&buf.as_bytes()[..take])?;
        left -= take as u64;
    }
    Ok(())
}

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// Skewed towards small indices (popular partners and articles are ordered more often).
    fn skewed(&mut self, n: usize) -> usize {
        let a = self.below(n as u64);
        let b = self.below(n as u64);
        a.min(b) as usize
    }
    fn digits(&mut self, s: &mut String, n: usize) {
        for _ in 0..n {
            s.push((b'0' + self.below(10) as u8) as char);
        }
    }
    fn letters(&mut self, s: &mut String, n: usize) {
        for _ in 0..n {
            s.push((b'A' + self.below(26) as u8) as char);
        }
    }
    /// A price in cents, log-uniform between `lo` and `hi` cents, rounded as price lists are.
    fn price(&mut self, lo: u64, hi: u64) -> i64 {
        // Log-uniform without floating point: a uniform exponent step of 1/64 of a doubling.
        let steps = (64.0 * ((hi as f64) / (lo as f64)).log2()) as u64;
        let mut p = lo as i64;
        let s = self.below(steps.max(1));
        for _ in 0..s / 64 {
            p *= 2;
        }
        p = p * (64 + (s % 64) as i64) / 64;
        match self.below(4) {
            0 => p / 100 * 100 - 1, // .99
            1 => p / 5 * 5,
            _ => p,
        }
        .max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Pools.

struct Party {
    name: String,
    country: usize,
    street: String,
    city: &'static str,
    postcode: String,
    vat_id: String,
    gln: String,
    iban: String,
    bic: String,
    contact: String,
    department: &'static str,
    email: String,
    phone: String,
    customer_no: u32,
}

struct Article {
    name: String,
    sku: String,
    gtin: String,
    unit: &'static str,
    price: i64,
}

/// The generator: one document per [`BusinessText::next_document`].
pub struct BusinessText {
    rng: Rng,
    mix: Mix,
    suppliers: Vec<Party>,
    customers: Vec<Party>,
    articles: Vec<Article>,
    /// Days since 1970-01-01 of the documents being written; advances slowly.
    day: i64,
    minute: u32,
    invoice_no: u64,
    order_no: u64,
    interchange: u64,
    journal_no: u64,
    statement_balance: i64,
}

fn fill_pattern(rng: &mut Rng, pattern: &str, out: &mut String) {
    for c in pattern.chars() {
        match c {
            '9' => out.push((b'0' + rng.below(10) as u8) as char),
            'A' => out.push((b'A' + rng.below(26) as u8) as char),
            c => out.push(c),
        }
    }
}

/// The ISO 7064 mod 97 of a string of digits and capital letters (letters as 10..35).
fn mod97(s: &str) -> u32 {
    let mut r = 0u32;
    for c in s.chars() {
        let v = c.to_digit(36).unwrap();
        r = if v >= 10 {
            (r * 100 + v) % 97
        } else {
            (r * 10 + v) % 97
        };
    }
    r
}

fn iban(rng: &mut Rng, country: &Country) -> String {
    let mut bban = String::new();
    fill_pattern(rng, country.iban_bban, &mut bban);
    let check = 98 - mod97(&format!("{bban}{}00", country.code));
    format!("{}{check:02}{bban}", country.code)
}

/// A GS1 number of `n` digits (GTIN-13, GLN) with its check digit.
fn gs1(rng: &mut Rng, prefix: &str, n: usize) -> String {
    let mut s = prefix.to_string();
    rng.digits(&mut s, n - 1 - prefix.len());
    let sum: u32 = s
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| (b - b'0') as u32 * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    s.push((b'0' + ((10 - sum % 10) % 10) as u8) as char);
    s
}

fn vat_id(rng: &mut Rng, c: &Country) -> String {
    let mut s = String::new();
    match c.code {
        "AT" => {
            s.push_str("ATU");
            rng.digits(&mut s, 8);
        }
        "CH" => {
            s.push_str("CHE-");
            rng.digits(&mut s, 3);
            s.push('.');
            rng.digits(&mut s, 3);
            s.push('.');
            rng.digits(&mut s, 3);
            s.push_str(" MWST");
        }
        "FR" => {
            s.push_str("FR");
            rng.digits(&mut s, 11);
        }
        "NL" => {
            s.push_str("NL");
            rng.digits(&mut s, 9);
            s.push_str("B01");
        }
        "BE" => {
            s.push_str("BE0");
            rng.digits(&mut s, 9);
        }
        "IT" | "PL" | "SE" | "DK" | "GB" | "ES" | "DE" => {
            s.push_str(c.code);
            let n = match c.code {
                "IT" => 11,
                "PL" => 10,
                "SE" => 12,
                "DK" => 8,
                _ => 9,
            };
            rng.digits(&mut s, n);
        }
        _ => unreachable!(),
    }
    s
}

fn ascii_slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = match c {
            'ä' => "ae",
            'ö' | 'ø' => "oe",
            'ü' => "ue",
            'ß' => "ss",
            'é' | 'è' | 'É' => "e",
            'à' => "a",
            'í' => "i",
            'ł' => "l",
            'ś' => "s",
            'ı' => "i",
            c if c.is_ascii_alphanumeric() => {
                out.push(c.to_ascii_lowercase());
                continue;
            }
            _ => continue,
        };
        out.push_str(c);
    }
    out
}

fn party(rng: &mut Rng, customer_no: u32) -> Party {
    let ci = rng.below(COUNTRIES.len() as u64) as usize;
    let c = &COUNTRIES[ci];
    let core = rng.pick(COMPANY_CORES);
    let name = match rng.below(3) {
        0 => format!("{core} {} {}", rng.pick(COMPANY_SECTORS), rng.pick(c.forms)),
        1 => format!("{core} {}", rng.pick(c.forms)),
        _ => format!(
            "{core} & {} {} {}",
            rng.pick(LAST_NAMES),
            rng.pick(COMPANY_SECTORS),
            rng.pick(c.forms)
        ),
    };
    let (city, pc) = rng.pick(c.cities);
    let mut postcode = String::new();
    fill_pattern(rng, pc, &mut postcode);
    let street = format!("{} {}", rng.pick(c.streets), rng.range(1, 240));
    let first = rng.pick(FIRST_NAMES);
    let last = rng.pick(LAST_NAMES);
    let domain = ascii_slug(core);
    let email = format!(
        "{}.{}@{domain}.{}",
        ascii_slug(first),
        ascii_slug(last),
        c.code.to_ascii_lowercase().replace("gb", "co.uk")
    );
    let mut phone = String::new();
    fill_pattern(rng, c.phone, &mut phone);
    let mut bic = String::new();
    rng.letters(&mut bic, 4);
    bic.push_str(c.code);
    rng.letters(&mut bic, 2);
    if rng.chance(50) {
        bic.push_str("XXX");
    }
    Party {
        vat_id: vat_id(rng, c),
        gln: gs1(rng, "40", 13),
        iban: iban(rng, c),
        bic,
        contact: format!("{first} {last}"),
        department: rng.pick(DEPARTMENTS),
        email,
        phone,
        name,
        country: ci,
        street,
        city,
        postcode,
        customer_no,
    }
}

fn article(rng: &mut Rng, i: usize) -> Article {
    let f = &FAMILIES[rng.below(FAMILIES.len() as u64) as usize];
    let mut name = String::new();
    let mut chars = f.pattern.chars();
    while let Some(c) = chars.next() {
        if c == '{' {
            let k = chars.next().unwrap() as usize - 'a' as usize;
            chars.next(); // '}'
            name.push_str(rng.pick(f.values[k]));
        } else {
            name.push(c);
        }
    }
    let mut sku = String::new();
    rng.letters(&mut sku, 3);
    sku.push('-');
    sku.push_str(&format!("{:05}", i));
    if rng.chance(30) {
        sku.push('-');
        rng.letters(&mut sku, 1);
    }
    Article {
        name,
        sku,
        gtin: gs1(rng, "4", 13),
        unit: f.unit,
        price: rng.price(f.price.0, f.price.1),
    }
}

/// `1234.56` (or `1234,56` with `comma`), from cents.
fn money(s: &mut String, cents: i64, comma: bool) {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.abs();
    let _ = write!(
        s,
        "{sign}{}{}{:02}",
        c / 100,
        if comma { ',' } else { '.' },
        c % 100
    );
}

fn date(s: &mut String, day: i64, sep: &str) {
    let (y, m, d, ..) = ls_core::time::parts_from_unix(day * 86_400);
    let _ = write!(s, "{y:04}{sep}{m:02}{sep}{d:02}");
}

/// `31.12.2024`, as German exports write dates.
fn date_de(s: &mut String, day: i64) {
    let (y, m, d, ..) = ls_core::time::parts_from_unix(day * 86_400);
    let _ = write!(s, "{d:02}.{m:02}.{y:04}");
}

fn xml_escape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['&', '<', '>', '"']) {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .into()
    } else {
        s.into()
    }
}

/// EDIFACT release character before the service characters (UNOC: `?` releases `+:'?`).
fn edi_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '+' | ':' | '\'' | '?') {
            out.push('?');
        }
        out.push(c);
    }
    out
}

fn csv_field(s: &str, sep: char) -> std::borrow::Cow<'_, str> {
    if s.contains([sep, '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

struct Line {
    /// Index into the articles.
    article: usize,
    qty: i64,
    /// Hundredths of a percent.
    discount: i64,
    price: i64,
    net: i64,
    vat: u32,
}

impl BusinessText {
    pub fn new(seed: u64, mix: Mix) -> Self {
        let mut rng = Rng(seed ^ 0x4C61_7965_7253_6563);
        let suppliers = (0..40).map(|i| party(&mut rng, 70_000 + i)).collect();
        let customers = (0..4000)
            .map(|i| party(&mut rng, 100_000 + i * 7))
            .collect();
        let articles = (0..20_000).map(|i| article(&mut rng, i)).collect();
        BusinessText {
            day: 19_358 + rng.below(700) as i64, // 2023-01-01 + up to two years
            minute: 480,
            invoice_no: rng.range(1000, 90_000),
            order_no: rng.range(100_000, 900_000),
            interchange: rng.range(1, 50_000),
            journal_no: rng.range(1, 1_000_000),
            statement_balance: rng.range(1_000_000, 90_000_000) as i64,
            rng,
            mix,
            suppliers,
            customers,
            articles,
        }
    }

    /// Append the next document (a UBL invoice, an EDIFACT interchange or a CSV export).
    pub fn next_document(&mut self, out: &mut String) {
        self.minute += self.rng.range(1, 45) as u32;
        if self.minute > 1080 {
            self.minute = 420 + self.rng.below(60) as u32;
            self.day += 1 + (self.rng.below(10) == 0) as i64;
        }
        let kind = match self.mix {
            Mix::Ubl => 0,
            Mix::Edifact => 1,
            Mix::Csv => 2,
            // Documents average about 18 KB (UBL), 13 KB (EDIFACT) and 210 KB (CSV): these
            // odds give about 45/25/30 % of the bytes.
            Mix::Mixed => match self.rng.below(1000) {
                0..=536 => 0,
                537..=968 => 1,
                _ => 2,
            },
        };
        match kind {
            0 => self.ubl_invoice(out),
            1 => self.edifact(out),
            _ => match self.rng.below(3) {
                0 => self.csv_ledger(out),
                1 => self.csv_orders(out),
                _ => self.csv_statement(out),
            },
        }
    }

    fn lines(&mut self, n: usize, vat: &[u32]) -> Vec<Line> {
        let rng = &mut self.rng;
        (0..n)
            .map(|_| {
                let index = rng.skewed(self.articles.len());
                let article = &self.articles[index];
                let qty = match article.unit {
                    "HUR" => rng.range(1, 16) as i64,
                    "KGM" | "LTR" | "MTR" => rng.range(1, 100) as i64 * rng.pick(&[1, 5, 10, 25]),
                    _ => rng.range(1, 60) as i64 * rng.pick(&[1, 1, 1, 2, 10, 50]),
                };
                let discount = rng.pick(&[0, 0, 0, 0, 200, 300, 500, 750, 1000, 1500]);
                // Prices drift a little from the list price, per customer and over time.
                let price = article.price * (1000 + rng.below(81) as i64 - 40) / 1000;
                let price = price.max(1);
                let net = qty * price * (10_000 - discount) / 10_000;
                let vat = if rng.chance(85) {
                    vat[0]
                } else {
                    rng.pick(vat)
                };
                Line {
                    article: index,
                    qty,
                    discount,
                    price,
                    net,
                    vat,
                }
            })
            .collect()
    }

    fn note(&mut self, out: &mut String, party: usize) {
        let t = self.rng.pick(NOTES);
        let rng = &mut self.rng;
        let p = &self.customers[party];
        let mut parts = t.split('{');
        out.push_str(parts.next().unwrap());
        for part in parts {
            let (key, rest) = part.split_once('}').unwrap();
            match key {
                "n" => {
                    let _ = write!(out, "{}", rng.range(1, 48));
                }
                "q" => {
                    let _ = write!(out, "{}", rng.range(2, 400));
                }
                "d" => out.push_str(rng.pick(&["14", "30", "45", "60"])),
                "d2" => out.push_str(rng.pick(&["7", "10", "14"])),
                "p" => out.push_str(rng.pick(&["2", "3", "1.5"])),
                "y" => {
                    let (y, ..) = ls_core::time::parts_from_unix(self.day * 86_400);
                    let _ = write!(out, "{y}");
                }
                "date" => date(out, self.day - rng.range(1, 120) as i64, "-"),
                "phone" => out.push_str(&p.phone),
                "person" => out.push_str(&p.contact),
                "company" => out.push_str(&self.customers[rng.skewed(self.customers.len())].name),
                "ref" => {
                    out.push_str(rng.pick(&["FC-", "PRJ-", "REF ", "SO", "CN-", "SHP"]));
                    rng.digits(out, 7);
                }
                _ => unreachable!("{key}"),
            }
            out.push_str(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_prefix_stable_and_varied() {
        let a = generate(7, Mix::Mixed, 3 << 20);
        let b = generate(7, Mix::Mixed, 1 << 20);
        assert_eq!(&a[..1 << 20], &b[..]);
        assert_ne!(generate(8, Mix::Mixed, 1 << 16), a[..1 << 16]);
        assert!(std::str::from_utf8(&a[..a.len() - 4]).is_ok());
        // Every kind appears.
        let s = String::from_utf8_lossy(&a);
        for needle in [
            "<cac:InvoiceLine>",
            "UNH+1+INVOIC",
            "UNH+1+ORDERS",
            "Buchungsnr;",
            "order_no,",
            "booking_date,",
        ] {
            assert!(s.contains(needle), "{needle}");
        }
        // Lines with values repeat rarely (an article ordered twice, a company's name): a small
        // share of the lines repeat, mostly structure (closing tags, fixed segments); no CSV
        // row repeats.
        let mut seen = std::collections::HashMap::new();
        for l in s.lines() {
            *seen.entry(l).or_insert(0u32) += 1;
        }
        let lines = s.lines().count();
        let unique = seen.len();
        assert!(unique * 5 > lines, "{unique} unique of {lines}");
        let headers = ["Buchungsnr;", "order_no,", "booking_date,"];
        let rows = s
            .lines()
            .filter(|l| l.matches([',', ';']).count() >= 8)
            .filter(|l| !headers.iter().any(|h| l.starts_with(h)));
        for l in rows {
            assert_eq!(seen[l], 1, "{l}");
        }
    }

    #[test]
    fn check_digits() {
        let mut rng = Rng(1);
        for c in COUNTRIES {
            let i = iban(&mut rng, c);
            let rearranged = format!("{}{}", &i[4..], &i[..4]);
            assert_eq!(mod97(&rearranged), 1, "{i}");
        }
        assert_eq!(gs1(&mut Rng(0), "400638133393", 13).len(), 13);
        // GTIN 4006381333931: the check digit of 400638133393 is 1.
        let mut s = String::from("400638133393");
        let sum: u32 = s
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, b)| (b - b'0') as u32 * if i % 2 == 0 { 3 } else { 1 })
            .sum();
        s.push((b'0' + ((10 - sum % 10) % 10) as u8) as char);
        assert_eq!(s, "4006381333931");
    }
}
