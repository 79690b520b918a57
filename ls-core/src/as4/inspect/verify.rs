//! Verification against a given certificate: the verdict is `wss::verify`'s (with
//! `Covered::partial` only while an encrypted attachment cannot be decrypted). Only when it
//! fails is each reference digest recomputed on its own (exclusive C14N of the element, or the
//! attachment bytes), so that every altered part is named, not just the first.

use super::detect::is_cid;
use super::report::{ReferenceResult, VerificationReport};
use super::security::{cert_report, RefInfo};
use super::PartView;
use crate::as4::envelope::Envelope;
use crate::as4::package::Package;
use crate::as4::wss::{self, Covered, VerifyPolicy};
use crate::as4::xml::{child, NS_DS};
use crate::cert::Certificate;
use crate::error::{Error, ErrorCode};
use crate::time;
use roxmltree::{Document, Node};

/// What was read of the message, for verification.
#[derive(Clone, Copy)]
pub(super) struct Read<'a, 'd, 'i> {
    pub doc: &'d Document<'i>,
    pub env: &'a Envelope<'d, 'i>,
    pub pkg: &'a Package,
    pub parts: &'a [PartView],
    pub refs: &'a [RefInfo],
}

/// Per reference `(uri, result)`, the signature value's result, the verdict and the error.
type Outcome = (Vec<(String, String)>, String, Option<bool>, Option<Error>);

/// Verify against `cert` (expiry reported separately, not held against the message). The
/// verdict (`verified`): `Some(true)` all checked and valid, `Some(false)` something failed,
/// `None` nothing failed but an encrypted attachment could not be checked.
pub(super) fn verify(
    m: &Read,
    cert: &Certificate,
    unchecked_reason: &str,
    envelope_only: bool,
) -> VerificationReport {
    let Read {
        doc,
        env,
        pkg,
        parts,
        refs,
    } = *m;
    let now = time::now_unix();
    let sig = wss::signature_of(env.security);
    let key_info = sig.and_then(|s| child(s, NS_DS, "KeyInfo"));
    let signer_matches = match (env.security, key_info) {
        (Some(sec), Some(ki)) => {
            let policy = VerifyPolicy {
                signer: Some(cert),
                ..Default::default()
            };
            Some(wss::resolve_key(doc, sec, ki, &policy).is_ok_and(|c| &c == cert))
        }
        _ => None,
    };

    // What the signature covers, as `message::read_package` gives it: decrypted bytes for
    // encrypted parts. Only an encrypted part we could not decrypt is left out (partial).
    let mut covered_parts: Vec<(&str, &[u8])> = Vec::new();
    // A lone envelope is looked at on its own: its attachments are not there to check.
    let mut partial = envelope_only;
    for (p, a) in parts.iter().zip(&pkg.attachments) {
        match (&p.plain, p.encrypted) {
            (Some(d), _) => covered_parts.push((&a.content_id, d)),
            (None, false) => covered_parts.push((&a.content_id, &a.data)),
            (None, true) => partial = true,
        }
    }
    let covered = Covered {
        messaging: env.messaging,
        body: env.body,
        attachments: &covered_parts,
        partial,
    };
    let policy = VerifyPolicy {
        signer: Some(cert),
        partners: None,
        require_signature: true,
        allow_expired: true,
    };
    let plain_of = |uri: &str| -> std::result::Result<&[u8], String> {
        let a = pkg.attachment(uri).ok_or_else(|| {
            if envelope_only {
                "not checked: attachment not in the input (a SOAP envelope alone)".to_string()
            } else {
                "not checked: attachment not in the message".to_string()
            }
        })?;
        let i = pkg
            .attachments
            .iter()
            .position(|x| x.content_id == a.content_id)
            .unwrap_or(0);
        match (&parts[i].plain, parts[i].encrypted) {
            (Some(d), _) => Ok(d),
            (None, false) => Ok(&a.data),
            (None, true) => Err(unchecked_reason.to_string()),
        }
    };

    let (results, signature_value, verdict, error): Outcome =
        match wss::verify(doc, env.security, &covered, &policy) {
            Ok(Some(v)) => {
                let results: Vec<(String, String)> = v
                    .references
                    .iter()
                    .map(|r| {
                        let res = if v.unchecked.contains(&r.uri) {
                            plain_of(&r.uri)
                                .err()
                                .unwrap_or_else(|| unchecked_reason.to_string())
                        } else {
                            "ok".to_string()
                        };
                        (r.uri.clone(), res)
                    })
                    .collect();
                let verdict = if v.unchecked.is_empty() {
                    Some(true)
                } else {
                    None
                };
                (results, "ok".into(), verdict, None)
            }
            Ok(None) => (
                Vec::new(),
                "not checked: no signature".into(),
                Some(false),
                Some(Error::SignatureRequired(
                    "the message has no WS-Security signature".into(),
                )),
            ),
            Err(e) => {
                // Each reference on its own, so that every altered part is named.
                let results: Vec<(String, String)> = refs
                    .iter()
                    .map(|r| (r.uri.clone(), check_reference(doc, r, &plain_of)))
                    .collect();
                let signature_value = match e.code() {
                    ErrorCode::BadSignature => "bad signature".to_string(),
                    ErrorCode::DigestMismatch => {
                        "not checked: a reference digest does not match".to_string()
                    }
                    ErrorCode::SignerMismatch => own_signature_value(doc, env, &covered, key_info),
                    _ => format!("not checked: {e}"),
                };
                (results, signature_value, Some(false), Some(e))
            }
        };
    VerificationReport {
        certificate: cert_report(cert),
        certificate_expired: now > cert.not_after(),
        signer_matches,
        references: results
            .into_iter()
            .map(|(uri, result)| {
                let target = refs
                    .iter()
                    .find(|r| r.uri == uri)
                    .and_then(|r| r.target.clone());
                ReferenceResult {
                    uri,
                    target,
                    result,
                }
            })
            .collect(),
        signature_value,
        verified: verdict,
        error: error.as_ref().map(Into::into),
    }
}

/// When the message was signed by someone other than the given certificate: does the signature
/// value verify with the certificate the message itself names?
fn own_signature_value(
    doc: &Document,
    env: &Envelope,
    covered: &Covered,
    key_info: Option<Node>,
) -> String {
    let (Some(sec), Some(ki)) = (env.security, key_info) else {
        return "not checked: the signer is not the given certificate".into();
    };
    let Ok(own) = wss::resolve_key(doc, sec, ki, &VerifyPolicy::default()) else {
        return "not checked: the signer is not the given certificate".into();
    };
    let policy = VerifyPolicy {
        signer: Some(&own),
        allow_expired: true,
        ..Default::default()
    };
    match wss::verify(doc, env.security, covered, &policy) {
        Ok(_) => "ok with the certificate the message names (not the given one)".into(),
        Err(e) if e.code() == ErrorCode::BadSignature => "bad signature".into(),
        Err(e) => format!("not checked: {e}"),
    }
}

/// Recompute one reference's digest: `ok`, `digest mismatch` or `not checked: …`.
fn check_reference<'p>(
    doc: &Document,
    r: &RefInfo,
    plain_of: &dyn Fn(&str) -> std::result::Result<&'p [u8], String>,
) -> String {
    let attachment = if is_cid(&r.uri) {
        match plain_of(&r.uri) {
            Ok(d) => Some(d),
            Err(why) => return why,
        }
    } else {
        None
    };
    let got = match wss::reference_digest(doc, &r.signed, attachment) {
        Ok(d) => d,
        Err(e) => return format!("not checked: {e}"),
    };
    match crate::mime::base64_decode(r.digest_value.as_bytes()) {
        Ok(want) if want == got => "ok".into(),
        Ok(_) => "digest mismatch".into(),
        Err(_) => "not checked: the DigestValue is not base64".into(),
    }
}
