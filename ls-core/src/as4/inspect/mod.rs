//! `inspect` for AS4 messages: describe a message — its ebMS header, MIME parts and WS-Security
//! header — and, given the partner's certificate and our key, say which signed references check
//! out, so an integrator can see why a gateway rejected it. Like the CMS inspect this never
//! fails: a problem ends up in an `error` member, next to everything that could still be read.
//!
//! Reading reuses the message layer (`package`, `envelope`, `model`, `wss`). The pieces:
//! [`detect`] (is it AS4, and the first lines of a capture), this module (the walk through the
//! message), `header` (the ebMS header), `security` (the WS-Security header), `verify` (checking
//! against a given certificate) and [`report`] (the typed report, serialised to the JSON of
//! docs/CLI.md).

mod detect;
mod header;
pub mod report;
mod security;
#[cfg(test)]
mod tests;
mod verify;

pub use detect::is_as4;
pub use report::As4Report;

use super::envelope::{self, Envelope, SoapVersion};
use super::model::{Messaging, PartInfo};
use super::package::{self, Package};
use super::wss;
use super::xml::{self, child, text, Limits, NS_DS, NS_EB, NS_WSSE, NS_XENC};
use crate::cert::Certificate;
use crate::error::{Error, ErrorCode, Result};
use crate::keys::Identity;
use detect::{boundary_of_bare_body, header_content_type, is_cid, skip_start_line, trim_start};
use report::{
    DecryptionReport, EnvelopePart, MessagingReport, PartReport, SecurityReport, VerificationReport,
};
use roxmltree::{Document, Node};
use security::{cipher_reference, read_references, security_report, RefInfo};
use verify::{verify, Read};

/// Describe an AS4 message. `input` is an HTTP capture (headers, empty line, body), a MIME body
/// whose Content-Type is `content_type`, or a bare SOAP envelope. With `verify_with`, the
/// signature is verified against that certificate (an expired certificate is reported, not held
/// against the message); with `decrypt_with`, encrypted attachments are decrypted to check their
/// digests and sizes. Never fails: problems are reported in `error` (and `verification.error`,
/// `decryption.error`).
pub fn inspect(
    input: &[u8],
    content_type: Option<&str>,
    verify_with: Option<&Certificate>,
    decrypt_with: Option<&Identity>,
    limits: &Limits,
) -> As4Report {
    let mut r = Report::default();
    r.run(input, content_type, verify_with, decrypt_with, limits);
    r.finish(verify_with.is_some())
}

// ------------------------------------------------------------------------------------------------
// The report, filled in as far as the message can be read.

#[derive(Default)]
struct Report {
    input_form: Option<&'static str>,
    content_type: Option<String>,
    soap_version: Option<SoapVersion>,
    envelope: Option<EnvelopePart>,
    messaging: Option<MessagingReport>,
    parts: Vec<PartReport>,
    security: Option<SecurityReport>,
    decryption: Option<DecryptionReport>,
    verification: Option<VerificationReport>,
    warnings: Vec<String>,
    error: Option<Error>,
}

impl Report {
    fn fail(&mut self, e: Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn finish(self, asked: bool) -> As4Report {
        let verified = match (asked, &self.verification) {
            (true, Some(v)) => v.verified,
            // Asked, but reading stopped before the signature could be looked at.
            (true, None) => Some(false),
            (false, _) => None,
        };
        As4Report {
            kind: "as4",
            input: self.input_form,
            content_type: self.content_type,
            soap_version: self.soap_version.map(|v| match v {
                SoapVersion::Soap11 => "1.1",
                SoapVersion::Soap12 => "1.2",
            }),
            envelope: self.envelope,
            messaging: self.messaging,
            parts: self.parts,
            security: self.security,
            decryption: self.decryption,
            verification: self.verification,
            verified,
            warnings: self.warnings,
            error: self.error.as_ref().map(Into::into),
        }
    }

    fn run(
        &mut self,
        input: &[u8],
        content_type: Option<&str>,
        verify_with: Option<&Certificate>,
        decrypt_with: Option<&Identity>,
        limits: &Limits,
    ) {
        let pkg = match self.read_package(input, content_type, limits) {
            Ok(p) => p,
            Err(e) => return self.fail(e),
        };
        if self.input_form != Some("soap") {
            self.envelope = Some(EnvelopePart {
                content_type: pkg.soap_content_type.clone(),
                size: pkg.soap.len(),
            });
        }
        // The parts as they arrived, whatever the envelope says.
        let mut parts: Vec<PartView> = pkg
            .attachments
            .iter()
            .map(|a| PartView {
                content_id: a.content_id.clone(),
                ..Default::default()
            })
            .collect();

        let doc = match xml::parse_bytes(&pkg.soap, limits) {
            Ok(d) => d,
            Err(e) => {
                self.fail(e);
                self.parts = describe_parts(&pkg, &parts);
                return;
            }
        };
        let env = match self.read_envelope(&doc) {
            Some(env) => env,
            None => {
                self.parts = describe_parts(&pkg, &parts);
                return;
            }
        };
        self.soap_version = Some(env.version);

        // The ebMS header.
        let envelope_only = self.input_form == Some("soap");
        // Attachments a lone envelope refers to (not an error: they are just not in the input).
        let mut missing: Vec<String> = Vec::new();
        let messaging = match env.messaging {
            None => {
                self.fail(Error::InvalidEbms(
                    "the message has no eb:Messaging header".into(),
                ));
                None
            }
            Some(node) => match Messaging::parse(node) {
                Ok(m) => Some(m),
                Err(e) => {
                    let ids: Vec<String> = node
                        .descendants()
                        .filter(|n| xml::is(*n, NS_EB, "MessageId"))
                        .map(text)
                        .collect();
                    if !ids.is_empty() {
                        self.warnings.push(format!(
                            "eb:Messaging could not be read; MessageIds found in it: {}",
                            ids.join(", ")
                        ));
                    }
                    self.fail(e);
                    None
                }
            },
        };
        if let Some(m) = &messaging {
            self.messaging = Some(m.into());
            for um in &m.user_messages {
                for pi in &um.payloads {
                    let Some(href) = pi.href.as_deref() else {
                        continue;
                    };
                    if pi.content_id().is_none() {
                        continue; // a payload in the SOAP Body
                    }
                    match pkg.attachment(href) {
                        Some(a) => {
                            if let Some(p) = parts.iter_mut().find(|p| p.content_id == a.content_id)
                            {
                                p.part_info = Some(pi.clone());
                            }
                        }
                        None if envelope_only => missing.push(href.to_string()),
                        None => self.warnings.push(format!(
                            "eb:PartInfo {href} names no MIME part of the message"
                        )),
                    }
                }
            }
            for p in parts.iter().filter(|p| p.part_info.is_none()) {
                self.warnings.push(format!(
                    "attachment {} is not described by any eb:PartInfo",
                    p.content_id
                ));
            }
        }

        // The security header.
        let security = env.security;
        let sig = wss::signature_of(security);
        let refs: Vec<RefInfo> = sig
            .and_then(|s| child(s, NS_DS, "SignedInfo"))
            .map(|si| read_references(&doc, &pkg, si))
            .unwrap_or_default();
        let encrypted_data: Vec<Node> = doc
            .descendants()
            .filter(|n| xml::is(*n, NS_XENC, "EncryptedData"))
            .collect();
        for ed in &encrypted_data {
            if let Some(uri) = cipher_reference(*ed) {
                match pkg.attachment(uri) {
                    Some(a) => {
                        if let Some(p) = parts.iter_mut().find(|p| p.content_id == a.content_id) {
                            p.encrypted = true;
                        }
                    }
                    None if envelope_only => {
                        if !missing.iter().any(|m| m == uri) {
                            missing.push(uri.to_string());
                        }
                    }
                    None => self.warnings.push(format!(
                        "xenc:EncryptedData names {uri}, which is not a MIME part of the message"
                    )),
                }
            }
        }
        for r in &refs {
            if is_cid(&r.uri) {
                if let Some(a) = pkg.attachment(&r.uri) {
                    if let Some(p) = parts.iter_mut().find(|p| p.content_id == a.content_id) {
                        p.signed = true;
                    }
                }
            }
        }
        if sig.is_some() {
            for p in parts.iter().filter(|p| !p.signed) {
                self.warnings.push(format!(
                    "attachment {} is not covered by the signature",
                    p.content_id
                ));
            }
        }
        if !missing.is_empty() {
            self.warnings.push(format!(
                "the input is a SOAP envelope alone: the attachments it refers to ({}) are not \
                 in it; give the whole MIME message to describe and check them",
                missing.join(", ")
            ));
        }
        if let Some(sec) = security {
            self.security = Some(security_report(
                &doc,
                sec,
                &refs,
                &encrypted_data,
                &pkg,
                verify_with,
                decrypt_with,
            ));
        } else if xml::children(env.header.unwrap_or(env.envelope), NS_WSSE, "Security")
            .next()
            .is_some()
        {
            self.warnings
                .push("the only wsse:Security headers are addressed to other SOAP roles".into());
        }

        // Decryption.
        let mut decryption_failed = false;
        if let Some(me) = decrypt_with {
            let wire: Vec<(&str, &[u8])> = pkg
                .attachments
                .iter()
                .map(|a| (a.content_id.as_str(), a.data.as_slice()))
                .collect();
            let res = match security {
                Some(sec) if child(sec, NS_XENC, "EncryptedKey").is_some() => {
                    wss::decrypt_parts(&doc, sec, &wire, me)
                }
                _ => Ok(Vec::new()),
            };
            let report = match res {
                Ok(done) => {
                    let decrypted = done.iter().map(|d| d.content_id.clone()).collect();
                    for d in done {
                        if let Some(p) = parts.iter_mut().find(|p| p.content_id == d.content_id) {
                            p.encrypted = true;
                            p.plain = Some(d.data);
                        }
                    }
                    DecryptionReport {
                        decrypted,
                        error: None,
                    }
                }
                Err(e) => {
                    decryption_failed = true;
                    DecryptionReport {
                        decrypted: Vec::new(),
                        error: Some((&e).into()),
                    }
                }
            };
            self.decryption = Some(report);
        }
        for (p, a) in parts.iter_mut().zip(&pkg.attachments) {
            let plain: Option<&[u8]> = match (&p.plain, p.encrypted) {
                (Some(d), _) => Some(d),
                (None, false) => Some(&a.data),
                (None, true) => None,
            };
            if let (Some(data), true) = (plain, p.part_info.as_ref().is_some_and(PartInfo::is_gzip))
            {
                match package::gunzip(data, limits.max_part) {
                    Ok(d) => p.decompressed_size = Some(d.len()),
                    Err(e) => p.error = Some(e),
                }
            }
        }
        self.parts = describe_parts(&pkg, &parts);

        // Verification.
        if let Some(cert) = verify_with {
            let unchecked_reason = if decryption_failed {
                "not checked: attachment encrypted and could not be decrypted"
            } else {
                "not checked: attachment encrypted and no key"
            };
            let read = Read {
                doc: &doc,
                env: &env,
                pkg: &pkg,
                parts: &parts,
                refs: &refs,
            };
            self.verification = Some(verify(&read, cert, unchecked_reason, envelope_only));
        }
    }

    fn read_package(
        &mut self,
        input: &[u8],
        content_type: Option<&str>,
        limits: &Limits,
    ) -> Result<Package> {
        if let Some(ct) = content_type {
            self.input_form = Some("body");
            self.content_type = Some(ct.to_string());
            return Package::parse(ct, input, limits);
        }
        let trimmed = trim_start(input);
        if trimmed.starts_with(b"<") {
            self.input_form = Some("soap");
            return Package::parse("application/soap+xml", trimmed, limits);
        }
        if let Some(b) = boundary_of_bare_body(trimmed) {
            let ct = format!("multipart/related; boundary=\"{b}\"");
            self.warnings.push(format!(
                "no Content-Type given: read as {ct} (from the first line; give --content-type)"
            ));
            self.input_form = Some("body");
            self.content_type = Some(ct.clone());
            return Package::parse(&ct, trimmed, limits);
        }
        self.input_form = Some("http");
        self.content_type = header_content_type(skip_start_line(input));
        Package::parse_http(input, limits)
    }

    /// The envelope; a header block marked mustUnderstand that the message layer does not
    /// process is reported, and the envelope is still described.
    fn read_envelope<'d, 'i>(&mut self, doc: &'d Document<'i>) -> Option<Envelope<'d, 'i>> {
        match envelope::read(doc, envelope::UNDERSTOOD) {
            Ok(env) => Some(env),
            Err(e) if e.code() == ErrorCode::MustUnderstand => {
                self.fail(e);
                let header = doc
                    .root_element()
                    .children()
                    .find(|c| c.is_element() && c.tag_name().name() == "Header");
                let all: Vec<(&str, &str)> = header
                    .iter()
                    .flat_map(|h| h.children())
                    .filter(|c| c.is_element())
                    .map(|c| (c.tag_name().namespace().unwrap_or(""), c.tag_name().name()))
                    .collect();
                match envelope::read(doc, &all) {
                    Ok(env) => Some(env),
                    Err(e) => {
                        self.fail(e);
                        None
                    }
                }
            }
            Err(e) => {
                let root = doc.root_element();
                if root.tag_name().name() == "Envelope" {
                    self.soap_version = root
                        .tag_name()
                        .namespace()
                        .and_then(SoapVersion::from_namespace);
                }
                self.fail(e);
                None
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Parts

#[derive(Default)]
pub(super) struct PartView {
    pub content_id: String,
    pub part_info: Option<PartInfo>,
    pub encrypted: bool,
    pub signed: bool,
    /// The decrypted bytes (encrypted parts only).
    pub plain: Option<Vec<u8>>,
    pub decompressed_size: Option<usize>,
    pub error: Option<Error>,
}

fn describe_parts(pkg: &Package, parts: &[PartView]) -> Vec<PartReport> {
    pkg.attachments
        .iter()
        .zip(parts)
        .map(|(a, p)| {
            let pi = p.part_info.as_ref();
            PartReport {
                content_id: a.content_id.clone(),
                content_type: a.content_type.clone(),
                size: a.data.len(),
                part_info: pi.is_some(),
                mime_type: pi.and_then(|i| i.property("MimeType")).map(str::to_string),
                compression: pi
                    .and_then(|i| i.property("CompressionType"))
                    .map(str::to_string),
                signed: p.signed,
                encrypted: p.encrypted,
                decrypted_size: p.plain.as_ref().map(Vec::len),
                decompressed_size: p.decompressed_size,
                error: p.error.as_ref().map(Into::into),
            }
        })
        .collect()
}
