//! `gen-business-text SIZE [--seed N] [--mix mixed|ubl|edifact|csv] [-o FILE]`: exactly SIZE
//! bytes of realistic business text (UBL 2.1 invoices, EDIFACT INVOIC/ORDERS, CSV exports) on
//! stdout or into FILE, in constant memory. SIZE is bytes or a number with K, M, G (KiB, MiB,
//! GiB; `1GiB` and `1G` are the same). The same seed and mix give the same bytes, and a shorter
//! output is a prefix of a longer one.

use ls_tests::business_text::{write, Mix};
use std::io::Write;
use std::process::ExitCode;

fn size(s: &str) -> Option<u64> {
    let s = s.trim_end_matches("iB").trim_end_matches('B');
    let (num, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

fn main() -> ExitCode {
    let usage = "usage: gen-business-text SIZE [--seed N] [--mix mixed|ubl|edifact|csv] [-o FILE]";
    let mut args = std::env::args().skip(1);
    let (mut n, mut seed, mut mix, mut out) = (None, 1u64, Mix::Mixed, None);
    while let Some(a) = args.next() {
        let ok = match a.as_str() {
            "--seed" => args.next().and_then(|v| v.parse().ok()).map(|v| seed = v),
            "--mix" => args.next().and_then(|v| v.parse().ok()).map(|v| mix = v),
            "-o" => args.next().map(|v| out = Some(v)),
            "-h" | "--help" => {
                println!("{usage}");
                return ExitCode::SUCCESS;
            }
            s if n.is_none() => size(s).map(|v| n = Some(v)),
            _ => None,
        };
        if ok.is_none() {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    }
    let Some(n) = n else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let result = match &out {
        Some(path) => std::fs::File::create(path).and_then(|f| {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            write(seed, mix, n, &mut w)?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()
        }),
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            write(seed, mix, n, &mut w).and_then(|()| w.flush())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "gen-business-text: {}: {e}",
                out.as_deref().unwrap_or("stdout")
            );
            ExitCode::FAILURE
        }
    }
}
