//! `layersec verify-receipt`: check a partner's signed receipt (RFC 2634 ESS) against the
//! signed message it answers, offline, with no client state.

use crate::cli::{Cli, VerifyReceiptArgs};
use crate::fsio::{print_stdout, read_input, usage};
use crate::output::{display, print_json_pretty, printable};
use ls_core::cms::receipt::{verify_receipt_with, VerifyReceiptOptions};
use ls_core::{bytes, Certificate, Error};
use serde_json::json;

pub fn run(a: &VerifyReceiptArgs, cli: &Cli) -> Result<(), Error> {
    if crate::fsio::is_dash(&a.receipt) && crate::fsio::is_dash(&a.original) {
        return Err(usage(
            "--receipt and --original cannot both be read from stdin (`-`)",
        ));
    }
    let partners = a
        .partner
        .iter()
        .map(Certificate::load)
        .collect::<Result<Vec<_>, _>>()?;
    let receipt = read_input(&a.receipt, None, "receipt")?;
    let original = read_input(&a.original, None, "original message")?;
    let v = verify_receipt_with(
        &receipt,
        &original,
        &partners,
        &VerifyReceiptOptions {
            allow_expired: a.allow_expired,
        },
    )?;
    // With --allow-expired: whether the certificate is still valid today (else since when not).
    let expired_since = v
        .signer
        .check_validity(ls_core::time::now_unix())
        .err()
        .map(|e| e.to_string());
    let signing_time = v.signing_time.map(ls_core::time::iso8601);
    let id_hex = bytes::hex(&v.content_identifier);
    if cli.json {
        return print_json_pretty(&json!({
            "verified": true,
            "receipt": display(&a.receipt),
            "original": display(&a.original),
            "signer_subject": v.signer.subject(),
            "signer_sha256": v.signer.sha256_fingerprint(),
            "signing_time": signing_time,
            "content_identifier": id_hex,
            "certificate_now": expired_since.as_deref().unwrap_or("valid"),
        }));
    }
    // The identifier as text too when it is plain ASCII (a MessageId, say).
    let id_text = std::str::from_utf8(&v.content_identifier)
        .ok()
        .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_graphic() || c == ' '))
        .map(|t| format!(" ({})", printable(t)))
        .unwrap_or_default();
    let now = expired_since
        .map(|e| {
            format!(
                "\ncertificate now:     {} (valid when it signed)",
                printable(&e)
            )
        })
        .unwrap_or_default();
    print_stdout(&format!(
        "receipt:             verified\n\
         signer:              {}\n\
         fingerprint:         SHA256 {}\n\
         signing time:        {}\n\
         content identifier:  {id_hex}{id_text}{now}",
        printable(v.signer.subject()),
        v.signer.sha256_fingerprint(),
        signing_time.as_deref().unwrap_or("(not stated)"),
    ))
}
