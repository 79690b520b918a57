//! What every command shares for its output: exit statuses decided from error codes, the error
//! object on stdout, text made safe for a terminal, lines on stderr and JSON on stdout.

use crate::cli::Cli;
use crate::fsio::{is_dash, print_stdout};
use ls_core::{Certificate, Error, ErrorCode, ErrorReport};
use serde::Serialize;
use serde_json::json;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

/// The exit status of a document queued for retry by `send` (and of the service unreachable).
pub const EXIT_UNREACHABLE: u8 = 9;

/// The exit status of a document handed over by e-mail whose receipt has not come within
/// `[email] receipt_wait_secs` (`layersec run` completes the send when it comes).
pub const EXIT_RECEIPT_PENDING: u8 = 13;

/// The process exit status for a failure of the given code.
pub fn exit_code(code: ErrorCode) -> u8 {
    use ErrorCode as C;
    match code {
        // Configuration problems are usage problems.
        C::NullArgument | C::InvalidArgument | C::ConfigInvalid => 2,
        C::Io => 3,
        // Our key cannot be used: a wrong password or PIN, an unsupported key, a token or key
        // that is not there (the JSON error's `transient` says whether that may pass).
        C::BadPassword
        | C::UnsupportedKey
        | C::LoginFailed
        | C::PinIncorrect
        | C::TokenUnavailable
        | C::KeyNotFound => 7,
        // The service could not be reached or answered with a (possibly passing) failure.
        C::ConnectFailed
        | C::Timeout
        | C::TlsFailed
        | C::HttpStatus
        | C::BadResponse
        | C::MailStatus => EXIT_UNREACHABLE,
        C::ReceiptPending => EXIT_RECEIPT_PENDING,
        // Refused by the service or the partner, for good.
        C::EbmsError | C::Refused => 10,
        // The client's journal is busy or damaged.
        C::StateCorrupt | C::StateLocked => 11,
        C::Internal | C::Panic => 70,
        _ => match code.family() {
            "crypto" => 4,
            "certificate" => 5,
            "format" => 6,
            "protocol" => 8,
            _ => 70,
        },
    }
}

/// How an error is printed on stdout besides stderr.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum JsonOut {
    No,
    /// One pretty-printed object (the commands with one result).
    Pretty,
    /// One line (the commands that print a stream of JSON lines).
    Line,
}

/// `{"error": {code, name, family, message, transient, exit_code}}`.
fn error_json(report: &ErrorReport, style: JsonOut) -> String {
    let v = json!({ "error": report });
    if style == JsonOut::Line {
        serde_json::to_string(&v).unwrap_or_default()
    } else {
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }
}

/// Text from a message (file names, MIME headers, ...) made safe for a terminal: control and
/// bidirectional-override characters are shown escaped instead of being interpreted.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let invisible = c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        if invisible {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

pub fn stderr_line(line: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{line}");
}

/// The line on stderr for a failure of `code`; its exit status.
pub fn fail(code: ErrorCode, message: &str) -> u8 {
    stderr_line(&format!("layersec: error[{code}]: {}", printable(message)));
    exit_code(code)
}

/// Report a failure on stderr (and as the error object on stdout when asked); its exit status.
pub fn report(e: ErrorReport, json: JsonOut) -> u8 {
    let status = fail(e.code, &e.message);
    if json != JsonOut::No {
        let _ = print_stdout(&error_json(&e.with_exit_code(status), json));
    }
    status
}

/// A command that failed with `e`.
pub fn report_error(e: &Error, json: JsonOut) -> u8 {
    report(e.into(), json)
}

/// clap's help and version go out as clap prints them; usage errors get our error line first
/// (and the JSON error object with --json), then clap's usage and hints.
pub fn clap_error(e: clap::Error, args: &[OsString]) -> u8 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return 0;
    }
    let json = args.iter().skip(1).any(|a| a == "--json" || a == "inspect");
    let rendered = e.render().to_string();
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or("invalid usage");
    let first = first.strip_prefix("error: ").unwrap_or(first).to_string();
    let rest: Vec<&str> = lines.collect();
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
    } else {
        stderr_line(&format!(
            "layersec: error[{}]: {first}",
            ErrorCode::InvalidArgument
        ));
        let rest = rest.join("\n");
        let rest = rest.trim_matches('\n');
        if !rest.is_empty() {
            stderr_line(&format!("\n{rest}"));
        }
    }
    if json {
        let report = ErrorReport::new(ErrorCode::InvalidArgument, first);
        let _ = print_stdout(&error_json(
            &report.with_exit_code(exit_code(ErrorCode::InvalidArgument)),
            JsonOut::Pretty,
        ));
    }
    exit_code(ErrorCode::InvalidArgument)
}

/// An informational line on stderr (not with `--quiet`).
pub fn info(cli: &Cli, msg: &str) {
    if !cli.quiet {
        stderr_line(&format!("layersec: {}", printable(msg)));
    }
}

/// A path as the user gave it (`-` for stdin/stdout).
pub fn display(p: &Path) -> String {
    if is_dash(p) {
        "-".into()
    } else {
        p.display().to_string()
    }
}

pub fn iso(t: i64) -> String {
    ls_core::time::iso8601(t)
}

pub fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
}

/// Print one JSON value on one line (the streams of `poll` and `run`).
pub fn print_json_line<T: Serialize + ?Sized>(v: &T) -> Result<(), Error> {
    print_stdout(&serde_json::to_string(v).unwrap_or_default())
}

pub fn print_json_pretty<T: Serialize + ?Sized>(v: &T) -> Result<(), Error> {
    print_stdout(&serde_json::to_string_pretty(v).unwrap_or_default())
}

/// A certificate as `seal` and `open` show it.
pub fn cert_json(c: &Certificate) -> serde_json::Value {
    json!({
        "subject": c.subject(),
        "serial": c.serial_hex(),
        "fingerprint": c.sha256_fingerprint(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code of the core, one by one: a new code fails this test until its exit status is
    /// decided here (and in `exit_codes!`, docs/CLI.md and README.md).
    #[test]
    fn every_code_has_its_documented_exit_status() {
        for &c in ErrorCode::ALL {
            let want = match c.as_i32() {
                // usage, argument, configuration
                100 | 101 | 701 => 2,
                102 => 3,
                103 | 104 => 7,
                // a PKCS#11 token: wrong PIN, token unavailable, key not found
                105..=107 => 7,
                200..=210 => 4,
                300..=307 => 5,
                400..=406 => 6,
                500..=504 => 8,
                // the service refused (an ebMS error, or a permanent HTTP status)
                505 | 605 => 10,
                // the service unreachable or failing for now (a mail server too)
                600..=604 | 606 => 9,
                // the mail server refused our login
                607 => 7,
                // handed over by e-mail, the receipt not come yet
                608 => 13,
                // the client's state busy or damaged
                700 | 702 => 11,
                900 | 901 => 70,
                other => panic!("{c} ({other}) has no exit status decided: add it here"),
            };
            assert_eq!(exit_code(c), want, "{c}");
        }
    }
}
