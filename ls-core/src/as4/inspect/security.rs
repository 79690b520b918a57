//! The WS-Security header as the report shows it: tokens, timestamp, the signature and its
//! references, encrypted keys and data.

use super::detect::is_cid;
use super::report::{
    CertReport, EncryptedDataReport, EncryptedKeyReport, KeyInfoReport, ReferenceReport,
    SecurityReport, SignatureReport, TimestampReport, TokenReport,
};
use crate::as4::package::Package;
use crate::as4::wss::{self, VerifyPolicy};
use crate::as4::xml::{self, child, children, id_of, text, NS_DS, NS_WSSE, NS_WSU, NS_XENC};
use crate::cert::Certificate;
use crate::error::{Error, ErrorReport};
use crate::keys::Identity;
use crate::time;
use roxmltree::{Document, Node};

/// A `ds:Reference` as written (read tolerantly, for description).
pub(super) struct RefInfo {
    /// The reference as `wss` reads it (used to recompute its digest).
    pub signed: wss::SignedRef,
    pub uri: String,
    /// What the URI names: the element's qualified name as written, or `attachment`.
    pub target: Option<String>,
    pub transforms: Vec<String>,
    pub inclusive_prefixes: Option<String>,
    pub digest_method: String,
    pub digest_value: String,
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

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_string)
}

pub(super) fn read_references(doc: &Document, pkg: &Package, si: Node) -> Vec<RefInfo> {
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

pub(super) fn cert_report(c: &Certificate) -> CertReport {
    let now = time::now_unix();
    CertReport {
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        serial: c.serial_hex(),
        not_before: time::iso8601(c.not_before()),
        not_after: time::iso8601(c.not_after()),
        expired: now > c.not_after(),
        not_yet_valid: now < c.not_before(),
        fingerprint: c.sha256_fingerprint(),
    }
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
fn key_info(ki: Node) -> KeyInfoReport {
    let x509 = |x: Node| {
        if child(x, NS_DS, "X509Certificate").is_some() {
            return KeyInfoReport::Certificate;
        }
        match child(x, NS_DS, "X509IssuerSerial") {
            Some(is_) => KeyInfoReport::IssuerSerial {
                issuer: child(is_, NS_DS, "X509IssuerName").map(text),
                serial: child(is_, NS_DS, "X509SerialNumber").map(text),
            },
            None => KeyInfoReport::Unknown,
        }
    };
    if let Some(s) = child(ki, NS_WSSE, "SecurityTokenReference") {
        if let Some(r) = child(s, NS_WSSE, "Reference") {
            return KeyInfoReport::TokenReference {
                uri: owned(r.attribute("URI")),
                value_type: owned(r.attribute("ValueType").map(short_value_type)),
            };
        }
        if let Some(k) = child(s, NS_WSSE, "KeyIdentifier") {
            return KeyInfoReport::KeyIdentifier {
                value_type: owned(k.attribute("ValueType").map(short_value_type)),
                value: text(k),
            };
        }
        if let Some(x) = child(s, NS_DS, "X509Data") {
            return x509(x);
        }
    }
    if let Some(x) = child(ki, NS_DS, "X509Data") {
        return x509(x);
    }
    KeyInfoReport::Unknown
}

/// The certificate a KeyInfo names (resolved as `wss` resolves it, against the message's tokens
/// and `candidate`), or why it cannot be resolved.
fn resolved(
    doc: &Document,
    security: Node,
    ki: Option<Node>,
    candidate: Option<&Certificate>,
) -> (Option<CertReport>, Option<ErrorReport>) {
    let Some(ki) = ki else {
        return (
            None,
            Some((&Error::Malformed("no ds:KeyInfo".into())).into()),
        );
    };
    let policy = VerifyPolicy {
        signer: candidate,
        ..Default::default()
    };
    match wss::resolve_key(doc, security, ki, &policy) {
        Ok(c) => (Some(cert_report(&c)), None),
        Err(e) => (None, Some((&e).into())),
    }
}

/// The `cid:` URI of an EncryptedData's CipherReference.
pub(super) fn cipher_reference<'a>(ed: Node<'a, '_>) -> Option<&'a str> {
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

/// Everything the security header says, with the signer and the recipients resolved.
pub(super) fn security_report(
    doc: &Document,
    sec: Node,
    refs: &[RefInfo],
    encrypted_data: &[Node],
    pkg: &Package,
    verify_with: Option<&Certificate>,
    decrypt_with: Option<&Identity>,
) -> SecurityReport {
    let tokens = children(sec, NS_WSSE, "BinarySecurityToken")
        .map(|bst| {
            let (certificates, error) = match wss::bst_certificates(bst) {
                Ok(certs) => (certs.iter().map(cert_report).collect(), None),
                Err(e) => (Vec::new(), Some((&e).into())),
            };
            TokenReport {
                id: owned(id_of(bst)),
                value_type: short_value_type(bst.attribute("ValueType").unwrap_or(wss::VT_X509V3))
                    .to_string(),
                certificates,
                error,
            }
        })
        .collect();
    let timestamp = child(sec, NS_WSU, "Timestamp").map(|t| TimestampReport {
        created: child(t, NS_WSU, "Created").map(text),
        expires: child(t, NS_WSU, "Expires").map(text),
    });
    let signature = wss::signature_of(Some(sec)).map(|sig| {
        let si = child(sig, NS_DS, "SignedInfo");
        let cm = si.and_then(|s| child(s, NS_DS, "CanonicalizationMethod"));
        let ki = child(sig, NS_DS, "KeyInfo");
        let (signer, signer_error) = resolved(doc, sec, ki, verify_with);
        SignatureReport {
            id: owned(id_of(sig)),
            signature_method: alg_of(si.and_then(|s| child(s, NS_DS, "SignatureMethod"))),
            canonicalization: alg_of(cm),
            inclusive_prefixes: cm.and_then(prefix_list_of),
            key_info: ki.map(key_info),
            signer,
            signer_error,
            references: refs
                .iter()
                .map(|r| ReferenceReport {
                    uri: r.uri.clone(),
                    target: r.target.clone(),
                    transforms: r.transforms.clone(),
                    inclusive_prefixes: r.inclusive_prefixes.clone(),
                    digest_method: r.digest_method.clone(),
                    digest_value: r.digest_value.clone(),
                })
                .collect(),
        }
    });
    let ours = decrypt_with.map(Identity::certificate);
    let encrypted_keys = children(sec, NS_XENC, "EncryptedKey")
        .map(|ek| {
            let em = child(ek, NS_XENC, "EncryptionMethod");
            let ki = child(ek, NS_DS, "KeyInfo");
            let (recipient, recipient_error) = resolved(doc, sec, ki, ours);
            let for_us = match (ours, ki) {
                (Some(me), Some(ki)) => {
                    let policy = VerifyPolicy {
                        signer: Some(me),
                        ..Default::default()
                    };
                    Some(wss::resolve_key(doc, sec, ki, &policy).is_ok_and(|c| &c == me))
                }
                _ => None,
            };
            EncryptedKeyReport {
                id: owned(id_of(ek)),
                algorithm: alg_of(em),
                digest_method: alg_of(em.and_then(|m| child(m, NS_DS, "DigestMethod"))),
                mgf: alg_of(em.and_then(|m| child(m, xml::NS_XENC11, "MGF"))),
                key_info: ki.map(key_info),
                recipient,
                recipient_error,
                for_us,
                parts: served_by(doc, ek, encrypted_data)
                    .iter()
                    .map(|ed| {
                        let uri = cipher_reference(*ed);
                        uri.and_then(|u| pkg.attachment(u))
                            .map(|a| a.content_id.clone())
                            .or(uri.map(str::to_string))
                    })
                    .collect(),
            }
        })
        .collect();
    let encrypted_data = encrypted_data
        .iter()
        .map(|ed| EncryptedDataReport {
            id: owned(id_of(*ed)),
            r#type: ed.attribute("Type").map(|t| {
                if t == wss::TYPE_ATT_CONTENT_ONLY {
                    "Attachment-Content-Only".to_string()
                } else {
                    t.to_string()
                }
            }),
            algorithm: alg_of(child(*ed, NS_XENC, "EncryptionMethod")),
            mime_type: owned(ed.attribute("MimeType")),
            cipher_reference: owned(cipher_reference(*ed)),
        })
        .collect();
    SecurityReport {
        tokens,
        timestamp,
        signature,
        encrypted_keys,
        encrypted_data,
    }
}
