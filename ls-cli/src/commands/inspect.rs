//! `layersec inspect`: describe a CMS/S-MIME object or an AS4 message as JSON; the exit status
//! is decided from the typed report (the first failure), not from the JSON it prints.

use super::{load_identity, load_partners, DEFAULT_MAX_SIZE};
use crate::cli::{Cli, InspectArgs};
use crate::fsio::{print_stdout, read_input, usage};
use crate::output::{fail, info};
use ls_core::as4::inspect::As4Report;
use ls_core::{Certificate, Error, ErrorCode, ErrorReport, Identity, InspectReport, OpenOptions};

pub fn run(a: &InspectArgs, cli: &Cli) -> Result<u8, Error> {
    let identity = match &a.key {
        Some(k) => Some(load_identity(k, a.cert.as_deref(), &a.pass, "--cert")?),
        None => None,
    };
    let sender = a.from.as_ref().map(Certificate::load).transpose()?;
    let max = a.max_size.unwrap_or(DEFAULT_MAX_SIZE);
    let data = read_input(
        &a.file,
        Some(max.saturating_mul(2).saturating_add(1 << 20)),
        "input",
    )?;
    // An AS4 message (SOAP envelope, multipart/related) or a CMS/S-MIME object?
    if ls_core::as4::inspect::is_as4(&data, a.content_type.as_deref()) {
        return as4(a, cli, &data, sender.as_ref(), identity.as_ref(), max);
    }
    let store = a.partners.as_deref().map(load_partners).transpose()?;
    let opts = OpenOptions {
        recipient: identity.as_ref(),
        sender: sender.as_ref(),
        partners: store.as_ref(),
        allow_sha1: a.allow_sha1,
        max_output: max,
        ..Default::default()
    };
    let report = ls_core::inspect(&data, &opts);
    print_stdout(&report.to_json_pretty())?;
    let asked = sender.is_some() || store.is_some();
    Ok(match cms_failure(&report, asked) {
        Some(e) => fail(e.code, &e.message),
        None => {
            if asked && report.verified.is_none() {
                info(
                    cli,
                    "note: no signature could be checked (encrypted for someone else? give --key)",
                );
            }
            0
        }
    })
}

/// What fails `inspect` of a CMS object: the first failed verification, then an error that
/// ended the walk, then a signature that did not verify or a document that turned out unsigned
/// while a certificate was given to verify it.
fn cms_failure(r: &InspectReport, asked: bool) -> Option<ErrorReport> {
    if let Some(e) = r.verification_error().or(r.error.as_ref()) {
        return Some(e.clone());
    }
    if r.verified == Some(false) {
        return Some(ErrorReport::new(
            ErrorCode::BadSignature,
            "the signature does not verify",
        ));
    }
    if asked && r.complete && r.signed == Some(false) {
        return Some(ErrorReport::new(
            ErrorCode::Unsigned,
            "the document is not signed, so the given certificate cannot verify it",
        ));
    }
    None
}

/// `inspect` of an AS4 message: the core's AS4 report, and the exit status of the first failure
/// among verification, reading and decryption.
fn as4(
    a: &InspectArgs,
    cli: &Cli,
    data: &[u8],
    sender: Option<&Certificate>,
    identity: Option<&Identity>,
    max: u64,
) -> Result<u8, Error> {
    if a.partners.is_some() {
        return Err(usage(
            "--partners applies to CMS objects; for an AS4 message give the partner's \
             certificate with --verify-with CERT",
        ));
    }
    if a.allow_sha1 {
        return Err(usage(
            "--allow-sha1 applies to CMS objects (AS4 signatures with SHA-1 are always refused)",
        ));
    }
    let limits = ls_core::as4::xml::Limits {
        max_part: max,
        ..Default::default()
    };
    let report =
        ls_core::as4::inspect::inspect(data, a.content_type.as_deref(), sender, identity, &limits);
    print_stdout(&report.to_json_pretty())?;
    if let Some(e) = as4_failure(&report) {
        return Ok(fail(e.code, &e.message));
    }
    if sender.is_some() && report.verified.is_none() {
        // Say why, from the first reference that was not checked.
        let why = report
            .verification
            .iter()
            .flat_map(|v| &v.references)
            .find(|r| r.result != "ok")
            .map(|r| {
                format!(
                    "{}: {}",
                    r.uri,
                    r.result.trim_start_matches("not checked: ")
                )
            });
        info(
            cli,
            &format!(
                "note: not every signed reference could be checked ({}); \"verified\" is null",
                why.unwrap_or_default()
            ),
        );
    }
    Ok(0)
}

/// What fails `inspect` of an AS4 message: the verification's error, then what stopped the
/// reading, then the decryption's error, then a signature that did not verify.
fn as4_failure(r: &As4Report) -> Option<ErrorReport> {
    let verification = r.verification.as_ref().and_then(|v| v.error.as_ref());
    let decryption = r.decryption.as_ref().and_then(|d| d.error.as_ref());
    if let Some(e) = verification.or(r.error.as_ref()).or(decryption) {
        return Some(e.clone());
    }
    (r.verified == Some(false))
        .then(|| ErrorReport::new(ErrorCode::BadSignature, "the signature does not verify"))
}
