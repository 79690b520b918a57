//! `inspect` for AS4 messages: describe a message as JSON — its ebMS header, MIME parts and
//! WS-Security header — and, given the partner's certificate and our key, say which signed
//! references check out, so an integrator can see why a gateway rejected it.
//!
//! Reading reuses the message layer (`package`, `envelope`, `model`, `wss`); the verdict on the
//! signature is `wss::verify`'s (with `Covered::partial` only while an encrypted attachment
//! cannot be decrypted). Only when `wss::verify` fails is each reference digest recomputed on its
//! own (exclusive C14N of the element, or the attachment bytes), so that every altered part is
//! named, not just the first. Like the CMS inspect this never fails: a problem ends up in an
//! `error` member, next to everything that could still be read.

use super::envelope::{self, Envelope, SoapVersion};
use super::model::{
    MessageInfo, Messaging, PartInfo, Party, Property, Signal, SignalMessage, UserMessage,
};
use super::package::{self, media_type, Package};
use super::wss::{self, Covered, VerifyPolicy};
use super::xml::{
    self, child, children, id_of, text, Limits, NS_DS, NS_EB, NS_WSSE, NS_WSU, NS_XENC,
};
use crate::cert::Certificate;
use crate::error::{Error, ErrorCode, Result};
use crate::json::Json;
use crate::keys::Identity;
use crate::time;
use roxmltree::{Document, Node};

/// Whether `input` should be read as an AS4 message rather than a CMS/S-MIME object: a
/// Content-Type was given, or it is an XML document, a MIME body whose first part is a SOAP
/// envelope, or an HTTP capture / MIME entity of type `multipart/related`, `application/soap+xml`
/// or `text/xml`.
pub fn is_as4(input: &[u8], content_type: Option<&str>) -> bool {
    if content_type.is_some() {
        return true;
    }
    let head = &input[..input.len().min(64 << 10)];
    let trimmed = trim_start(head);
    if trimmed.starts_with(b"<") {
        return true;
    }
    if boundary_of_bare_body(trimmed).is_some() {
        // A multipart body without its headers: AS4 when its first part is a SOAP envelope.
        let first_nl = trimmed
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(trimmed.len());
        let rest = &trimmed[(first_nl + 1).min(trimmed.len())..];
        return header_content_type(rest).is_some_and(|ct| is_soap_type(&media_type(&ct)));
    }
    match header_content_type(skip_start_line(head)) {
        Some(ct) => {
            let mt = media_type(&ct);
            mt == "multipart/related" || is_soap_type(&mt)
        }
        None => false,
    }
}

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
) -> Json {
    let mut r = Report::default();
    r.run(input, content_type, verify_with, decrypt_with, limits);
    r.into_json(verify_with.is_some())
}

// ------------------------------------------------------------------------------------------------
// The report, filled in as far as the message can be read.

#[derive(Default)]
struct Report {
    input_form: Option<&'static str>,
    content_type: Option<String>,
    soap_version: Option<SoapVersion>,
    envelope: Option<Json>,
    messaging: Option<Json>,
    parts: Vec<Json>,
    security: Option<Json>,
    decryption: Option<Json>,
    verification: Option<Json>,
    verified: Option<bool>,
    warnings: Vec<String>,
    error: Option<Error>,
}

impl Report {
    fn fail(&mut self, e: Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn into_json(self, asked: bool) -> Json {
        let verification = self.verification.unwrap_or(Json::Null);
        let verified = match (asked, self.verified) {
            (true, Some(v)) => Json::Bool(v),
            // Asked, but reading stopped before the signature could be looked at.
            (true, None) if verification == Json::Null => Json::Bool(false),
            _ => Json::Null,
        };
        Json::obj()
            .with("kind", "as4")
            .with("input", self.input_form)
            .with("content_type", self.content_type)
            .with(
                "soap_version",
                self.soap_version.map(|v| match v {
                    SoapVersion::Soap11 => "1.1",
                    SoapVersion::Soap12 => "1.2",
                }),
            )
            .with("envelope", self.envelope)
            .with("messaging", self.messaging)
            .with("parts", Json::Arr(self.parts))
            .with("security", self.security)
            .with("decryption", self.decryption)
            .with("verification", verification)
            .with("verified", verified)
            .with(
                "warnings",
                Json::Arr(self.warnings.into_iter().map(Json::from).collect()),
            )
            .with("error", self.error.as_ref().map(Error::to_json))
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
            self.envelope = Some(
                Json::obj()
                    .with("content_type", pkg.soap_content_type.as_str())
                    .with("size", pkg.soap.len()),
            );
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
            self.messaging = Some(messaging_json(m));
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
            self.security = Some(security_json(
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
            let mut j = Json::obj();
            match res {
                Ok(done) => {
                    j.set(
                        "decrypted",
                        Json::Arr(
                            done.iter()
                                .map(|d| Json::from(d.content_id.as_str()))
                                .collect(),
                        ),
                    );
                    j.set("error", Json::Null);
                    for d in done {
                        if let Some(p) = parts.iter_mut().find(|p| p.content_id == d.content_id) {
                            p.encrypted = true;
                            p.plain = Some(d.data);
                        }
                    }
                }
                Err(e) => {
                    decryption_failed = true;
                    j.set("decrypted", Json::Arr(Vec::new()));
                    j.set("error", e.to_json());
                }
            }
            self.decryption = Some(j);
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
            let (j, verified) = verify(&read, cert, unchecked_reason, envelope_only);
            self.verification = Some(j);
            self.verified = verified;
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
struct PartView {
    content_id: String,
    part_info: Option<PartInfo>,
    encrypted: bool,
    signed: bool,
    /// The decrypted bytes (encrypted parts only).
    plain: Option<Vec<u8>>,
    decompressed_size: Option<usize>,
    error: Option<Error>,
}

fn describe_parts(pkg: &Package, parts: &[PartView]) -> Vec<Json> {
    pkg.attachments
        .iter()
        .zip(parts)
        .map(|(a, p)| {
            let pi = p.part_info.as_ref();
            Json::obj()
                .with("content_id", a.content_id.as_str())
                .with("content_type", a.content_type.as_str())
                .with("size", a.data.len())
                .with("part_info", pi.is_some())
                .with("mime_type", pi.and_then(|i| i.property("MimeType")))
                .with(
                    "compression",
                    pi.and_then(|i| i.property("CompressionType")),
                )
                .with("signed", p.signed)
                .with("encrypted", p.encrypted)
                .with("decrypted_size", p.plain.as_ref().map(Vec::len))
                .with("decompressed_size", p.decompressed_size)
                .with("error", p.error.as_ref().map(Error::to_json))
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------
// The ebMS header

fn info_json(j: Json, i: &MessageInfo) -> Json {
    j.with("message_id", i.message_id.as_str())
        .with("ref_to_message_id", i.ref_to_message_id.as_deref())
        .with("timestamp", i.timestamp.as_str())
}

fn party_json(p: &Party) -> Json {
    Json::obj()
        .with(
            "party_ids",
            Json::Arr(
                p.ids
                    .iter()
                    .map(|id| {
                        Json::obj()
                            .with("value", id.value.as_str())
                            .with("type", id.r#type.as_deref())
                    })
                    .collect(),
            ),
        )
        .with("role", p.role.as_str())
}

fn properties_json(props: &[Property]) -> Json {
    Json::Arr(
        props
            .iter()
            .map(|p| {
                Json::obj()
                    .with("name", p.name.as_str())
                    .with("type", p.r#type.as_deref())
                    .with("value", p.value.as_str())
            })
            .collect(),
    )
}

fn user_message_json(u: &UserMessage) -> Json {
    info_json(Json::obj(), &u.info)
        .with("mpc", u.mpc.as_deref())
        .with("from", party_json(&u.from))
        .with("to", party_json(&u.to))
        .with(
            "agreement_ref",
            u.agreement_ref.as_ref().map(|a| {
                Json::obj()
                    .with("value", a.value.as_str())
                    .with("type", a.r#type.as_deref())
                    .with("pmode", a.pmode.as_deref())
            }),
        )
        .with(
            "service",
            Json::obj()
                .with("value", u.service.value.as_str())
                .with("type", u.service.r#type.as_deref()),
        )
        .with("action", u.action.as_str())
        .with("conversation_id", u.conversation_id.as_str())
        .with("message_properties", properties_json(&u.properties))
        .with(
            "payloads",
            Json::Arr(
                u.payloads
                    .iter()
                    .map(|p| {
                        Json::obj()
                            .with("href", p.href.as_deref())
                            .with(
                                "schema",
                                p.schema.as_ref().map(|s| {
                                    Json::obj()
                                        .with("location", s.location.as_str())
                                        .with("version", s.version.as_deref())
                                        .with("namespace", s.namespace.as_deref())
                                }),
                            )
                            .with("description", p.description.as_deref())
                            .with("part_properties", properties_json(&p.properties))
                    })
                    .collect(),
            ),
        )
}

fn signal_json(s: &SignalMessage) -> Json {
    let j = info_json(Json::obj(), &s.info);
    match &s.signal {
        Signal::PullRequest { mpc } => j.with("type", "pull_request").with("mpc", mpc.as_str()),
        Signal::Receipt {
            nrr, user_message, ..
        } => j
            .with("type", "receipt")
            .with("user_message", *user_message)
            .with(
                "non_repudiation",
                Json::Arr(
                    nrr.iter()
                        .map(|r| {
                            Json::obj()
                                .with("uri", r.uri.as_str())
                                .with(
                                    "transforms",
                                    Json::Arr(
                                        r.transforms
                                            .iter()
                                            .map(|t| Json::from(t.algorithm.as_str()))
                                            .collect(),
                                    ),
                                )
                                .with("digest_method", r.digest_method.as_str())
                                .with("digest_value", r.digest_value.as_str())
                        })
                        .collect(),
                ),
            ),
        Signal::Error(errors) => j.with("type", "error").with(
            "errors",
            Json::Arr(
                errors
                    .iter()
                    .map(|e| {
                        Json::obj()
                            .with("code", e.code.as_str())
                            .with("severity", e.severity.as_str())
                            .with("category", e.category.as_deref())
                            .with("short_description", e.short_description.as_deref())
                            .with("description", e.description.as_deref())
                            .with(
                                "ref_to_message_in_error",
                                e.ref_to_message_in_error.as_deref(),
                            )
                            .with("origin", e.origin.as_deref())
                            .with("error_detail", e.error_detail.as_deref())
                    })
                    .collect(),
            ),
        ),
    }
}

fn messaging_json(m: &Messaging) -> Json {
    Json::obj()
        .with(
            "user_messages",
            Json::Arr(m.user_messages.iter().map(user_message_json).collect()),
        )
        .with(
            "signals",
            Json::Arr(m.signals.iter().map(signal_json).collect()),
        )
}

// ------------------------------------------------------------------------------------------------
// The security header

/// A `ds:Reference` as written (read tolerantly, for description).
struct RefInfo {
    /// The reference as `wss` reads it (used to recompute its digest).
    signed: wss::SignedRef,
    uri: String,
    /// What the URI names: the element's qualified name as written, or `attachment`.
    target: Option<String>,
    transforms: Vec<String>,
    inclusive_prefixes: Option<String>,
    digest_method: String,
    digest_value: String,
}

fn alg_of(n: Option<Node>) -> Option<String> {
    n.and_then(|n| n.attribute("Algorithm")).map(str::to_string)
}

fn prefix_list_of(n: Node) -> Option<String> {
    n.children()
        .find(|c| xml::is(*c, xml::NS_EC, "InclusiveNamespaces"))
        .and_then(|c| c.attribute("PrefixList"))
        .map(str::to_string)
}

fn read_references(doc: &Document, pkg: &Package, si: Node) -> Vec<RefInfo> {
    wss::signed_info_references(si)
        .into_iter()
        .map(|r| {
            let target = if let Some(id) = r.uri.strip_prefix('#') {
                xml::by_id(doc, id)
                    .ok()
                    .flatten()
                    .map(|el| xml::source_qname(el).to_string())
            } else if is_cid(&r.uri) {
                pkg.attachment(&r.uri).map(|_| "attachment".to_string())
            } else {
                None
            };
            RefInfo {
                uri: r.uri.clone(),
                target,
                transforms: r.transforms.iter().map(|(a, _)| a.clone()).collect(),
                inclusive_prefixes: r.transforms.iter().rev().find_map(|(_, p)| p.clone()),
                digest_method: r.digest_method.clone(),
                digest_value: r.digest_value.clone(),
                signed: r,
            }
        })
        .collect()
}

fn cert_json(c: &Certificate) -> Json {
    let now = time::now_unix();
    Json::obj()
        .with("subject", c.subject())
        .with("issuer", c.issuer())
        .with("serial", c.serial_hex())
        .with("not_before", time::iso8601(c.not_before()))
        .with("not_after", time::iso8601(c.not_after()))
        .with("expired", now > c.not_after())
        .with("not_yet_valid", now < c.not_before())
        .with("fingerprint", c.sha256_fingerprint())
}

fn short_value_type(vt: &str) -> &str {
    match vt {
        wss::VT_X509V3 => "X509v3",
        wss::VT_PKIPATH => "X509PKIPathv1",
        wss::VT_SKI => "X509SubjectKeyIdentifier",
        other => other,
    }
}

/// How a `ds:KeyInfo` names its certificate.
fn key_info_json(ki: Node) -> Json {
    let x509 = |x: Node| {
        if child(x, NS_DS, "X509Certificate").is_some() {
            return Json::obj().with("type", "certificate");
        }
        match child(x, NS_DS, "X509IssuerSerial") {
            Some(is_) => Json::obj()
                .with("type", "issuer_serial")
                .with("issuer", child(is_, NS_DS, "X509IssuerName").map(text))
                .with("serial", child(is_, NS_DS, "X509SerialNumber").map(text)),
            None => Json::obj().with("type", "unknown"),
        }
    };
    if let Some(s) = child(ki, NS_WSSE, "SecurityTokenReference") {
        if let Some(r) = child(s, NS_WSSE, "Reference") {
            return Json::obj()
                .with("type", "token_reference")
                .with("uri", r.attribute("URI"))
                .with("value_type", r.attribute("ValueType").map(short_value_type));
        }
        if let Some(k) = child(s, NS_WSSE, "KeyIdentifier") {
            return Json::obj()
                .with("type", "key_identifier")
                .with("value_type", k.attribute("ValueType").map(short_value_type))
                .with("value", text(k));
        }
        if let Some(x) = child(s, NS_DS, "X509Data") {
            return x509(x);
        }
    }
    if let Some(x) = child(ki, NS_DS, "X509Data") {
        return x509(x);
    }
    Json::obj().with("type", "unknown")
}

/// The certificate a KeyInfo names (resolved as `wss` resolves it, against the message's tokens
/// and `candidate`), as `(cert JSON, error message)`.
fn resolved_json(
    doc: &Document,
    security: Node,
    ki: Option<Node>,
    candidate: Option<&Certificate>,
) -> (Json, Json) {
    let Some(ki) = ki else {
        return (Json::Null, Json::from("no ds:KeyInfo"));
    };
    let policy = VerifyPolicy {
        signer: candidate,
        ..Default::default()
    };
    match wss::resolve_key(doc, security, ki, &policy) {
        Ok(c) => (cert_json(&c), Json::Null),
        Err(e) => (Json::Null, Json::from(e.to_string())),
    }
}

/// The `cid:` URI of an EncryptedData's CipherReference.
fn cipher_reference<'a>(ed: Node<'a, '_>) -> Option<&'a str> {
    child(ed, NS_XENC, "CipherData")
        .and_then(|c| child(c, NS_XENC, "CipherReference"))
        .and_then(|c| c.attribute("URI"))
}

/// The EncryptedData elements an EncryptedKey serves: its ReferenceList, else those whose
/// KeyInfo refers to it (as `wss::decrypt_parts` finds them).
fn served_by<'d, 'i>(
    doc: &'d Document<'i>,
    ek: Node<'d, 'i>,
    eds: &[Node<'d, 'i>],
) -> Vec<Node<'d, 'i>> {
    if let Some(rl) = child(ek, NS_XENC, "ReferenceList") {
        return children(rl, NS_XENC, "DataReference")
            .filter_map(|dr| dr.attribute("URI")?.strip_prefix('#'))
            .filter_map(|id| xml::by_id(doc, id).ok().flatten())
            .collect();
    }
    let Some(ek_id) = id_of(ek) else {
        return Vec::new();
    };
    let want = format!("#{ek_id}");
    eds.iter()
        .copied()
        .filter(|ed| {
            ed.descendants()
                .filter(|n| xml::is(*n, NS_WSSE, "Reference"))
                .any(|r| r.attribute("URI") == Some(want.as_str()))
        })
        .collect()
}

fn security_json(
    doc: &Document,
    sec: Node,
    refs: &[RefInfo],
    encrypted_data: &[Node],
    pkg: &Package,
    verify_with: Option<&Certificate>,
    decrypt_with: Option<&Identity>,
) -> Json {
    let tokens: Vec<Json> = children(sec, NS_WSSE, "BinarySecurityToken")
        .map(|bst| {
            let j = Json::obj().with("id", id_of(bst)).with(
                "value_type",
                short_value_type(bst.attribute("ValueType").unwrap_or(wss::VT_X509V3)),
            );
            match wss::bst_certificates(bst) {
                Ok(certs) => j
                    .with(
                        "certificates",
                        Json::Arr(certs.iter().map(cert_json).collect()),
                    )
                    .with("error", Json::Null),
                Err(e) => j
                    .with("certificates", Json::Arr(Vec::new()))
                    .with("error", e.to_string()),
            }
        })
        .collect();
    let timestamp = child(sec, NS_WSU, "Timestamp").map(|t| {
        Json::obj()
            .with("created", child(t, NS_WSU, "Created").map(text))
            .with("expires", child(t, NS_WSU, "Expires").map(text))
    });
    let signature = wss::signature_of(Some(sec)).map(|sig| {
        let si = child(sig, NS_DS, "SignedInfo");
        let cm = si.and_then(|s| child(s, NS_DS, "CanonicalizationMethod"));
        let ki = child(sig, NS_DS, "KeyInfo");
        let (signer, signer_error) = resolved_json(doc, sec, ki, verify_with);
        Json::obj()
            .with("id", id_of(sig))
            .with(
                "signature_method",
                alg_of(si.and_then(|s| child(s, NS_DS, "SignatureMethod"))),
            )
            .with("canonicalization", alg_of(cm))
            .with("inclusive_prefixes", cm.and_then(prefix_list_of))
            .with("key_info", ki.map(key_info_json))
            .with("signer", signer)
            .with("signer_error", signer_error)
            .with(
                "references",
                Json::Arr(
                    refs.iter()
                        .map(|r| {
                            Json::obj()
                                .with("uri", r.uri.as_str())
                                .with("target", r.target.as_deref())
                                .with(
                                    "transforms",
                                    Json::Arr(
                                        r.transforms
                                            .iter()
                                            .map(|t| Json::from(t.as_str()))
                                            .collect(),
                                    ),
                                )
                                .with("inclusive_prefixes", r.inclusive_prefixes.as_deref())
                                .with("digest_method", r.digest_method.as_str())
                                .with("digest_value", r.digest_value.as_str())
                        })
                        .collect(),
                ),
            )
    });
    let ours = decrypt_with.map(Identity::certificate);
    let encrypted_keys: Vec<Json> = children(sec, NS_XENC, "EncryptedKey")
        .map(|ek| {
            let em = child(ek, NS_XENC, "EncryptionMethod");
            let ki = child(ek, NS_DS, "KeyInfo");
            let (recipient, recipient_error) = resolved_json(doc, sec, ki, ours);
            let for_us = match (ours, ki) {
                (Some(me), Some(ki)) => {
                    let policy = VerifyPolicy {
                        signer: Some(me),
                        ..Default::default()
                    };
                    Json::Bool(wss::resolve_key(doc, sec, ki, &policy).is_ok_and(|c| &c == me))
                }
                _ => Json::Null,
            };
            let served = served_by(doc, ek, encrypted_data);
            Json::obj()
                .with("id", id_of(ek))
                .with("algorithm", alg_of(em))
                .with(
                    "digest_method",
                    alg_of(em.and_then(|m| child(m, NS_DS, "DigestMethod"))),
                )
                .with(
                    "mgf",
                    alg_of(em.and_then(|m| child(m, xml::NS_XENC11, "MGF"))),
                )
                .with("key_info", ki.map(key_info_json))
                .with("recipient", recipient)
                .with("recipient_error", recipient_error)
                .with("for_us", for_us)
                .with(
                    "parts",
                    Json::Arr(
                        served
                            .iter()
                            .map(|ed| {
                                let uri = cipher_reference(*ed);
                                Json::from(
                                    uri.and_then(|u| pkg.attachment(u))
                                        .map(|a| a.content_id.clone())
                                        .or(uri.map(str::to_string)),
                                )
                            })
                            .collect(),
                    ),
                )
        })
        .collect();
    let eds: Vec<Json> = encrypted_data
        .iter()
        .map(|ed| {
            Json::obj()
                .with("id", id_of(*ed))
                .with(
                    "type",
                    ed.attribute("Type").map(|t| {
                        if t == wss::TYPE_ATT_CONTENT_ONLY {
                            "Attachment-Content-Only"
                        } else {
                            t
                        }
                    }),
                )
                .with("algorithm", alg_of(child(*ed, NS_XENC, "EncryptionMethod")))
                .with("mime_type", ed.attribute("MimeType"))
                .with("cipher_reference", cipher_reference(*ed))
        })
        .collect();
    Json::obj()
        .with("tokens", Json::Arr(tokens))
        .with("timestamp", timestamp)
        .with("signature", signature)
        .with("encrypted_keys", Json::Arr(encrypted_keys))
        .with("encrypted_data", Json::Arr(eds))
}

// ------------------------------------------------------------------------------------------------
// Verification

/// What was read of the message, for verification.
#[derive(Clone, Copy)]
struct Read<'a, 'd, 'i> {
    doc: &'d Document<'i>,
    env: &'a Envelope<'d, 'i>,
    pkg: &'a Package,
    parts: &'a [PartView],
    refs: &'a [RefInfo],
}

/// Per reference `(uri, result)`, the signature value's result, the verdict and the error.
type Outcome = (Vec<(String, String)>, String, Option<bool>, Option<Error>);

/// Verify against `cert` (expiry reported separately, not held against the message). Returns
/// the `verification` object and the verdict: `Some(true)` all checked and valid, `Some(false)`
/// something failed, `None` nothing failed but an encrypted attachment could not be checked.
fn verify(
    m: &Read,
    cert: &Certificate,
    unchecked_reason: &str,
    envelope_only: bool,
) -> (Json, Option<bool>) {
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
            Json::Bool(wss::resolve_key(doc, sec, ki, &policy).is_ok_and(|c| &c == cert))
        }
        _ => Json::Null,
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
    let j = Json::obj()
        .with("certificate", cert_json(cert))
        .with("certificate_expired", now > cert.not_after())
        .with("signer_matches", signer_matches)
        .with(
            "references",
            Json::Arr(
                results
                    .into_iter()
                    .map(|(uri, res)| {
                        let target = refs
                            .iter()
                            .find(|r| r.uri == uri)
                            .and_then(|r| r.target.clone());
                        Json::obj()
                            .with("uri", uri)
                            .with("target", target)
                            .with("result", res)
                    })
                    .collect(),
            ),
        )
        .with("signature_value", signature_value)
        .with("verified", verdict)
        .with("error", error.as_ref().map(Error::to_json));
    (j, verdict)
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

// ------------------------------------------------------------------------------------------------
// Small helpers

fn is_cid(uri: &str) -> bool {
    uri.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("cid:"))
}

fn trim_start(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b);
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn is_soap_type(mt: &str) -> bool {
    matches!(
        mt,
        "application/soap+xml" | "text/xml" | "application/xop+xml"
    )
}

/// `BOUNDARY` when `b` starts with a multipart delimiter line `--BOUNDARY`.
fn boundary_of_bare_body(b: &[u8]) -> Option<String> {
    let line_end = b.iter().take(200).position(|&c| c == b'\n')?;
    let line = std::str::from_utf8(&b[..line_end]).ok()?.trim_end();
    let boundary = line.strip_prefix("--")?;
    let ok = !boundary.is_empty()
        && boundary.len() <= 70
        && boundary.bytes().all(|c| c.is_ascii_graphic() || c == b' ')
        && !boundary.contains('"');
    ok.then(|| boundary.to_string())
}

/// The input after an HTTP request or status line, if it starts with one.
fn skip_start_line(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
    let line = &b[..end];
    let is_start = match line.iter().position(|&c| c == b':') {
        None => !line.iter().all(|c| c.is_ascii_whitespace()),
        Some(colon) => {
            line.starts_with(b"HTTP/") || line[..colon].iter().any(|c| c.is_ascii_whitespace())
        }
    };
    if is_start {
        &b[(end + 1).min(b.len())..]
    } else {
        b
    }
}

/// The Content-Type of a header block (up to its empty line), unfolded.
fn header_content_type(b: &[u8]) -> Option<String> {
    let mut found: Option<String> = None;
    let mut in_ct = false;
    for line in b.split(|&c| c == b'\n').take(200) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with([' ', '\t']) {
            if in_ct {
                if let Some(f) = &mut found {
                    f.push(' ');
                    f.push_str(line.trim());
                }
            }
            continue;
        }
        in_ct = false;
        let Some((name, value)) = line.split_once(':') else {
            break;
        };
        if name.trim().eq_ignore_ascii_case("content-type") && found.is_none() {
            found = Some(value.trim().to_string());
            in_ct = true;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::as4::message::{self, Outgoing, Payload};
    use crate::as4::model::{
        new_message_id, timestamp_now, EbmsError, PartyId, Service, DEFAULT_MPC,
    };
    use crate::keys::KeyType;
    use std::sync::OnceLock;

    struct Ids {
        alice: Identity,
        bob: Identity,
    }

    fn ids() -> &'static Ids {
        static IDS: OnceLock<Ids> = OnceLock::new();
        IDS.get_or_init(|| {
            let g = |n: &str| {
                Identity::generate(n, KeyType::Rsa(2048), 30, None)
                    .unwrap()
                    .identity
            };
            Ids {
                alice: g("alice"),
                bob: g("bob"),
            }
        })
    }

    fn party(v: &str, role: &str) -> Party {
        Party {
            ids: vec![PartyId {
                value: v.into(),
                r#type: Some("urn:layersec:party".into()),
            }],
            role: role.into(),
        }
    }

    fn user_message() -> UserMessage {
        UserMessage {
            info: MessageInfo {
                timestamp: timestamp_now(),
                message_id: new_message_id("layersec.test").unwrap(),
                ref_to_message_id: None,
            },
            mpc: None,
            from: party("alice", "initiator"),
            to: party("bob", "responder"),
            agreement_ref: None,
            service: Service {
                value: "urn:layersec:documents".into(),
                r#type: Some("urn:layersec:service-type".into()),
            },
            action: "Deliver".into(),
            conversation_id: "conv-42".into(),
            properties: vec![Property::new("originalSender", "alice")],
            payloads: Vec::new(),
        }
    }

    fn build(encrypt: bool) -> message::Built {
        let i = ids();
        message::build(Outgoing {
            messaging: Messaging {
                user_messages: vec![user_message()],
                signals: vec![],
            },
            payloads: vec![
                Payload {
                    content_id: "invoice@layersec".into(),
                    mime_type: "application/xml".into(),
                    data: b"<Invoice>42</Invoice>".repeat(100),
                    compress: true,
                    properties: vec![],
                },
                Payload {
                    content_id: "scan@layersec".into(),
                    mime_type: "application/pdf".into(),
                    data: vec![7u8; 1000],
                    compress: false,
                    properties: vec![],
                },
            ],
            signer: &i.alice,
            encrypt_for: encrypt.then(|| i.bob.certificate()),
            soap: SoapVersion::Soap12,
        })
        .unwrap()
    }

    fn run(b: &message::Built, verify: bool, decrypt: bool) -> Json {
        let i = ids();
        inspect(
            &b.body,
            Some(&b.content_type),
            verify.then(|| i.alice.certificate()),
            decrypt.then_some(&i.bob),
            &Limits::default(),
        )
    }

    fn s<'a>(j: &'a Json, path: &[&str]) -> &'a Json {
        let mut cur = j;
        for p in path {
            cur = match p.parse::<usize>() {
                Ok(n) => match cur {
                    Json::Arr(a) => &a[n],
                    _ => panic!("{p}: not an array in {}", j.to_pretty()),
                },
                Err(_) => cur
                    .get(p)
                    .unwrap_or_else(|| panic!("no {p} in {}", cur.to_pretty())),
            };
        }
        cur
    }

    fn arr(j: &Json) -> &[Json] {
        match j {
            Json::Arr(a) => a,
            _ => panic!("not an array: {}", j.to_pretty()),
        }
    }

    #[test]
    fn shape_of_a_signed_and_encrypted_user_message() {
        let b = build(true);
        let j = run(&b, true, true);
        assert_eq!(s(&j, &["kind"]), &Json::from("as4"));
        assert_eq!(s(&j, &["input"]), &Json::from("body"));
        assert_eq!(s(&j, &["soap_version"]), &Json::from("1.2"));
        assert_eq!(s(&j, &["error"]), &Json::Null, "{}", j.to_pretty());
        let um = s(&j, &["messaging", "user_messages", "0"]);
        assert_eq!(s(um, &["message_id"]), &Json::from(b.message_id.as_str()));
        assert_eq!(s(um, &["action"]), &Json::from("Deliver"));
        assert_eq!(
            s(um, &["from", "party_ids", "0", "value"]),
            &Json::from("alice")
        );
        assert_eq!(s(um, &["to", "role"]), &Json::from("responder"));
        assert_eq!(
            s(um, &["service", "type"]),
            &Json::from("urn:layersec:service-type")
        );
        assert_eq!(
            s(um, &["message_properties", "0", "name"]),
            &Json::from("originalSender")
        );
        assert_eq!(
            s(um, &["payloads", "0", "href"]),
            &Json::from("cid:invoice@layersec")
        );
        assert_eq!(arr(s(um, &["payloads", "0", "part_properties"])).len(), 2);

        let parts = arr(s(&j, &["parts"]));
        assert_eq!(parts.len(), 2);
        let inv = &parts[0];
        assert_eq!(s(inv, &["content_id"]), &Json::from("invoice@layersec"));
        assert_eq!(s(inv, &["encrypted"]), &Json::Bool(true));
        assert_eq!(s(inv, &["signed"]), &Json::Bool(true));
        assert_eq!(s(inv, &["compression"]), &Json::from("application/gzip"));
        assert_eq!(s(inv, &["decompressed_size"]), &Json::from(2100usize));
        let Json::Num(enc) = s(inv, &["size"]) else {
            panic!()
        };
        let Json::Num(dec) = s(inv, &["decrypted_size"]) else {
            panic!()
        };
        assert_eq!(*enc, *dec + 28, "IV and tag");
        assert_eq!(s(&parts[1], &["decrypted_size"]), &Json::from(1000usize));
        assert_eq!(s(&parts[1], &["decompressed_size"]), &Json::Null);

        let sec = s(&j, &["security"]);
        assert_eq!(arr(s(sec, &["tokens"])).len(), 2);
        assert_eq!(
            s(sec, &["tokens", "0", "certificates", "0", "subject"]),
            &Json::from(ids().alice.certificate().subject())
        );
        assert_eq!(
            s(sec, &["signature", "signature_method"]),
            &Json::from(wss::ALG_RSA_SHA256)
        );
        assert_eq!(
            s(sec, &["signature", "key_info", "type"]),
            &Json::from("token_reference")
        );
        assert_eq!(arr(s(sec, &["signature", "references"])).len(), 4);
        let ek = s(sec, &["encrypted_keys", "0"]);
        assert_eq!(s(ek, &["algorithm"]), &Json::from(wss::ALG_RSA_OAEP11));
        assert_eq!(s(ek, &["for_us"]), &Json::Bool(true));
        assert_eq!(
            s(ek, &["recipient", "subject"]),
            &Json::from(ids().bob.certificate().subject())
        );
        assert_eq!(arr(s(ek, &["parts"])).len(), 2);

        let v = s(&j, &["verification"]);
        assert_eq!(s(v, &["signer_matches"]), &Json::Bool(true));
        assert_eq!(s(v, &["certificate_expired"]), &Json::Bool(false));
        assert_eq!(s(v, &["signature_value"]), &Json::from("ok"));
        for r in arr(s(v, &["references"])) {
            assert_eq!(s(r, &["result"]), &Json::from("ok"), "{}", j.to_pretty());
        }
        assert_eq!(s(&j, &["verified"]), &Json::Bool(true));
        assert_eq!(arr(s(&j, &["warnings"])).len(), 0, "{}", j.to_pretty());
        assert_eq!(s(&j, &["decryption", "error"]), &Json::Null);
    }

    #[test]
    fn without_the_key_attachments_are_not_checked() {
        let b = build(true);
        let j = run(&b, true, false);
        assert_eq!(s(&j, &["decryption"]), &Json::Null);
        assert_eq!(s(&j, &["parts", "0", "decrypted_size"]), &Json::Null);
        assert_eq!(s(&j, &["parts", "0", "decompressed_size"]), &Json::Null);
        let refs = arr(s(&j, &["verification", "references"]));
        let results: Vec<&Json> = refs.iter().map(|r| s(r, &["result"])).collect();
        assert_eq!(results[0], &Json::from("ok"));
        assert_eq!(results[1], &Json::from("ok"));
        for r in &results[2..] {
            assert_eq!(
                *r,
                &Json::from("not checked: attachment encrypted and no key")
            );
        }
        assert_eq!(
            s(&j, &["verification", "signature_value"]),
            &Json::from("ok")
        );
        assert_eq!(s(&j, &["verified"]), &Json::Null);
        assert_eq!(s(&j, &["verification", "error"]), &Json::Null);
        // Nothing asked: no verification at all.
        let j = run(&b, false, false);
        assert_eq!(s(&j, &["verification"]), &Json::Null);
        assert_eq!(s(&j, &["verified"]), &Json::Null);
    }

    #[test]
    fn every_altered_part_is_named() {
        let b = build(false);
        // Alter the Action (in eb:Messaging) and a byte of the uncompressed attachment.
        let mut body = b.body.clone();
        let at = crate::cert::memfind(&body, b">Deliver<").unwrap();
        body[at + 1] = b'd';
        let at = crate::cert::memfind(&body, &[7u8; 1000]).unwrap();
        body[at + 500] = 8;
        let i = ids();
        let j = inspect(
            &body,
            Some(&b.content_type),
            Some(i.alice.certificate()),
            None,
            &Limits::default(),
        );
        let refs = arr(s(&j, &["verification", "references"]));
        let results: Vec<String> = refs
            .iter()
            .map(|r| match s(r, &["result"]) {
                Json::Str(s) => s.clone(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            results,
            ["digest mismatch", "ok", "ok", "digest mismatch"],
            "{}",
            j.to_pretty()
        );
        assert_eq!(
            s(&j, &["verification", "error", "name"]),
            &Json::from("LS_ERR_DIGEST_MISMATCH")
        );
        assert_eq!(s(&j, &["verified"]), &Json::Bool(false));
        assert_eq!(s(&j, &["error"]), &Json::Null);
        // The ebMS header is still described (as altered).
        assert_eq!(
            s(&j, &["messaging", "user_messages", "0", "action"]),
            &Json::from("deliver")
        );
    }

    #[test]
    fn wrong_certificate_and_wrong_key() {
        let b = build(true);
        let i = ids();
        let j = inspect(
            &b.body,
            Some(&b.content_type),
            Some(i.bob.certificate()),
            Some(&i.alice),
            &Limits::default(),
        );
        assert_eq!(
            s(&j, &["verification", "signer_matches"]),
            &Json::Bool(false)
        );
        assert_eq!(
            s(&j, &["verification", "error", "name"]),
            &Json::from("LS_ERR_SIGNER_MISMATCH")
        );
        assert_eq!(s(&j, &["verified"]), &Json::Bool(false));
        assert_eq!(
            s(&j, &["decryption", "error", "name"]),
            &Json::from("LS_ERR_NOT_A_RECIPIENT")
        );
        assert_eq!(
            s(&j, &["verification", "references", "2", "result"]),
            &Json::from("not checked: attachment encrypted and could not be decrypted")
        );
        assert_eq!(
            s(&j, &["security", "encrypted_keys", "0", "for_us"]),
            &Json::Bool(false)
        );
    }

    #[test]
    fn signals_and_bare_envelopes() {
        let i = ids();
        let mut err = EbmsError::new("EBMS:0004").with_description("it broke");
        err.ref_to_message_in_error = Some("m1@x".into());
        let messaging = Messaging {
            user_messages: vec![],
            signals: vec![
                SignalMessage {
                    info: MessageInfo {
                        timestamp: timestamp_now(),
                        message_id: "s1@x".into(),
                        ref_to_message_id: Some("m1@x".into()),
                    },
                    signal: Signal::Error(vec![err]),
                },
                SignalMessage {
                    info: MessageInfo {
                        timestamp: timestamp_now(),
                        message_id: "s2@x".into(),
                        ref_to_message_id: None,
                    },
                    signal: Signal::PullRequest {
                        mpc: DEFAULT_MPC.into(),
                    },
                },
            ],
        };
        let b = message::build(Outgoing {
            messaging,
            payloads: vec![],
            signer: &i.alice,
            encrypt_for: None,
            soap: SoapVersion::Soap11,
        })
        .unwrap();
        // A bare envelope: no Content-Type needed.
        let j = inspect(
            &b.body,
            None,
            Some(i.alice.certificate()),
            None,
            &Limits::default(),
        );
        assert_eq!(s(&j, &["input"]), &Json::from("soap"));
        assert_eq!(s(&j, &["soap_version"]), &Json::from("1.1"));
        assert_eq!(s(&j, &["envelope"]), &Json::Null);
        let sig = s(&j, &["messaging", "signals", "0"]);
        assert_eq!(s(sig, &["type"]), &Json::from("error"));
        assert_eq!(s(sig, &["errors", "0", "code"]), &Json::from("EBMS:0004"));
        assert_eq!(s(sig, &["errors", "0", "severity"]), &Json::from("failure"));
        assert_eq!(
            s(sig, &["errors", "0", "short_description"]),
            &Json::from("Other")
        );
        assert_eq!(
            s(sig, &["errors", "0", "description"]),
            &Json::from("it broke")
        );
        let pull = s(&j, &["messaging", "signals", "1"]);
        assert_eq!(s(pull, &["type"]), &Json::from("pull_request"));
        assert_eq!(s(pull, &["mpc"]), &Json::from(DEFAULT_MPC));
        assert_eq!(s(&j, &["verified"]), &Json::Bool(true), "{}", j.to_pretty());
        // As an HTTP capture.
        let capture = [
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\n\r\n",
                b.content_type
            )
            .as_bytes(),
            &b.body,
        ]
        .concat();
        assert!(is_as4(&capture, None));
        let j = inspect(&capture, None, None, None, &Limits::default());
        assert_eq!(s(&j, &["input"]), &Json::from("http"));
        assert_eq!(s(&j, &["error"]), &Json::Null, "{}", j.to_pretty());
        assert_eq!(arr(s(&j, &["messaging", "signals"])).len(), 2);
    }

    #[test]
    fn malformed_messages_report_what_they_can() {
        // Not XML at all.
        let j = inspect(b"<not xml", None, None, None, &Limits::default());
        assert_eq!(s(&j, &["error", "name"]), &Json::from("LS_ERR_MALFORMED"));
        assert_eq!(s(&j, &["messaging"]), &Json::Null);
        // A header block we must understand but do not: reported, the rest still described.
        let b = build(false);
        let soap_end = crate::cert::memfind(&b.body, b"</S12:Header>").unwrap();
        let mut body = b.body.clone();
        body.splice(
            soap_end..soap_end,
            b"<x:Foo xmlns:x=\"urn:x\" S12:mustUnderstand=\"true\"/>"
                .iter()
                .copied(),
        );
        let j = inspect(&body, Some(&b.content_type), None, None, &Limits::default());
        assert_eq!(
            s(&j, &["error", "name"]),
            &Json::from("LS_ERR_MUST_UNDERSTAND")
        );
        assert_eq!(
            s(&j, &["messaging", "user_messages", "0", "message_id"]),
            &Json::from(b.message_id.as_str())
        );
        assert_eq!(arr(s(&j, &["parts"])).len(), 2);
        // A broken ebMS header: MessageIds still named; a MIME part left undescribed.
        let mut body = b.body.clone();
        let at = crate::cert::memfind(&body, b"<eb:Action>").unwrap();
        body.splice(at..at, b"<eb:Bogus/>".iter().copied());
        let j = inspect(&body, Some(&b.content_type), None, None, &Limits::default());
        assert_eq!(
            s(&j, &["error", "name"]),
            &Json::from("LS_ERR_INVALID_EBMS")
        );
        assert_eq!(s(&j, &["messaging"]), &Json::Null);
        let w = format!("{:?}", s(&j, &["warnings"]));
        assert!(w.contains(&b.message_id), "{w}");
        assert_eq!(
            s(&j, &["security", "signature", "references"])
                .to_pretty()
                .matches("uri")
                .count(),
            4
        );
        // No Content-Type for a bare body: the boundary is taken from its first line.
        let j = inspect(&b.body, None, None, None, &Limits::default());
        assert_eq!(s(&j, &["error"]), &Json::Null, "{}", j.to_pretty());
        assert!(format!("{:?}", s(&j, &["warnings"])).contains("no Content-Type given"));
        // A garbage MIME body.
        let j = inspect(
            b"x",
            Some("multipart/related"),
            None,
            None,
            &Limits::default(),
        );
        assert_eq!(
            s(&j, &["error", "name"]),
            &Json::from("LS_ERR_MALFORMED_MIME")
        );
    }

    #[test]
    fn detection() {
        assert!(is_as4(b"  <?xml version=\"1.0\"?><a/>", None));
        assert!(is_as4(b"\xef\xbb\xbf<S:Envelope/>", None));
        assert!(is_as4(b"anything", Some("multipart/related")));
        assert!(is_as4(
            b"POST /as4 HTTP/1.1\r\nHost: x\r\nContent-Type: Multipart/Related;\r\n boundary=b\r\n\r\n--b",
            None
        ));
        assert!(is_as4(b"Content-Type: application/soap+xml\n\n<E/>", None));
        assert!(is_as4(
            b"--b1\r\nContent-Type: application/soap+xml\r\n\r\n<E/>\r\n--b1--",
            None
        ));
        // CMS / S/MIME stays with the CMS inspect.
        assert!(!is_as4(b"\x30\x82\x01\x00", None));
        assert!(!is_as4(
            b"-----BEGIN CMS-----\nMIIB\n-----END CMS-----\n",
            None
        ));
        assert!(!is_as4(
            b"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMIIB",
            None
        ));
        assert!(!is_as4(
            b"POST /as2 HTTP/1.1\r\nContent-Type: multipart/signed; boundary=x\r\n\r\n--x",
            None
        ));
        assert!(!is_as4(
            b"--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--",
            None
        ));
    }
}
