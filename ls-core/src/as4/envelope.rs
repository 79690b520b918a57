//! SOAP: building SOAP 1.2 (or 1.1) envelopes, reading either version, mustUnderstand.
//!
//! Everything is found by namespace, never by prefix: senders write `S12`, `soapenv`, `env`, and
//! Holodeck even binds a prefix named `mustUnderstand` to the SOAP namespace.

use super::xml::{escape_attr, is, NS_EB, NS_SOAP11, NS_SOAP12, NS_WSSE, NS_WSU};
use crate::error::{Error, Result};
use roxmltree::{Document, Node};

/// The SOAP version of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SoapVersion {
    Soap11,
    Soap12,
}

impl SoapVersion {
    /// The envelope namespace.
    pub fn namespace(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => NS_SOAP11,
            SoapVersion::Soap12 => NS_SOAP12,
        }
    }

    /// The media type of an envelope (without parameters).
    pub fn content_type(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => "text/xml",
            SoapVersion::Soap12 => "application/soap+xml",
        }
    }

    /// The prefix our writers use for the envelope namespace.
    pub fn prefix(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => "S11",
            SoapVersion::Soap12 => "S12",
        }
    }

    /// How this version writes a true `mustUnderstand` (`1` in SOAP 1.1, `true` in 1.2).
    pub fn must_understand_true(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => "1",
            SoapVersion::Soap12 => "true",
        }
    }

    /// The version whose envelope namespace is `ns`.
    pub fn from_namespace(ns: &str) -> Option<SoapVersion> {
        match ns {
            NS_SOAP11 => Some(SoapVersion::Soap11),
            NS_SOAP12 => Some(SoapVersion::Soap12),
            _ => None,
        }
    }
}

/// The header blocks the message layer processes: `eb:Messaging` and `wsse:Security`.
pub const UNDERSTOOD: &[(&str, &str)] = &[(NS_EB, "Messaging"), (NS_WSSE, "Security")];

/// A complete envelope: XML declaration, `Envelope`, `Header` with the given blocks (already
/// serialised, each declaring the namespaces it uses) and a `Body` carrying `wsu:Id` (omitted when
/// `body_wsu_id` is empty) around `body_content`. Compact and deterministic.
pub fn build(
    version: SoapVersion,
    header_blocks: &[&str],
    body_wsu_id: &str,
    body_content: &str,
) -> String {
    let p = version.prefix();
    let blocks_len: usize = header_blocks.iter().map(|b| b.len()).sum();
    let mut s = String::with_capacity(400 + blocks_len + body_content.len());
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    s.push_str(&format!(
        "<{p}:Envelope xmlns:{p}=\"{}\"><{p}:Header>",
        version.namespace()
    ));
    for b in header_blocks {
        s.push_str(b);
    }
    s.push_str(&format!("</{p}:Header><{p}:Body"));
    if !body_wsu_id.is_empty() {
        s.push_str(&format!(
            " xmlns:wsu=\"{NS_WSU}\" wsu:Id=\"{}\"",
            escape_attr(body_wsu_id)
        ));
    }
    s.push('>');
    s.push_str(body_content);
    s.push_str(&format!("</{p}:Body></{p}:Envelope>"));
    s
}

/// The parts of a received envelope the message layer works with.
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a, 'i> {
    pub version: SoapVersion,
    pub envelope: Node<'a, 'i>,
    pub header: Option<Node<'a, 'i>>,
    pub body: Node<'a, 'i>,
    /// The one `eb:Messaging` header block, if any.
    pub messaging: Option<Node<'a, 'i>>,
    /// The `wsse:Security` header block addressed to us (no `role`/`actor`, or the ultimate
    /// receiver). Security headers for other roles are not returned.
    pub security: Option<Node<'a, 'i>>,
}

/// Read the envelope of `doc`: the root must be a SOAP 1.1 or 1.2 `Envelope` with an optional
/// `Header` and one `Body`. Every header block marked mustUnderstand must be one of
/// `understood` (`(namespace, local name)`), else [`Error::MustUnderstand`]. At most one
/// `eb:Messaging` block ([`Error::InvalidEbms`]) and one `wsse:Security` block for us
/// ([`Error::SignatureWrapping`]).
pub fn read<'a, 'i>(
    doc: &'a Document<'i>,
    understood: &[(&str, &str)],
) -> Result<Envelope<'a, 'i>> {
    let root = doc.root_element();
    let version = root
        .tag_name()
        .namespace()
        .and_then(SoapVersion::from_namespace)
        .filter(|_| root.tag_name().name() == "Envelope")
        .ok_or_else(|| {
            Error::Malformed(format!(
                "the root element {} is not a SOAP 1.1 or 1.2 Envelope",
                expanded_name(root)
            ))
        })?;
    let ns = version.namespace();

    let mut header = None;
    let mut body = None;
    for c in root.children().filter(|c| c.is_element()) {
        if is(c, ns, "Header") && header.is_none() && body.is_none() {
            header = Some(c);
        } else if is(c, ns, "Body") && body.is_none() {
            body = Some(c);
        } else {
            return Err(Error::Malformed(format!(
                "unexpected element {} in the SOAP Envelope (one Header, then one Body)",
                expanded_name(c)
            )));
        }
    }
    let body = body.ok_or_else(|| Error::Malformed("the SOAP Envelope has no Body".into()))?;

    let mut messaging = None;
    let mut security = None;
    for block in header
        .iter()
        .flat_map(|h| h.children())
        .filter(|c| c.is_element())
    {
        let name = (
            block.tag_name().namespace().unwrap_or(""),
            block.tag_name().name(),
        );
        if must_understand(block, version)? && !understood.contains(&name) {
            return Err(Error::MustUnderstand(format!(
                "header block {} is marked mustUnderstand",
                expanded_name(block)
            )));
        }
        if is(block, NS_EB, "Messaging") {
            if messaging.is_some() {
                return Err(Error::InvalidEbms(
                    "the SOAP Header has two eb:Messaging blocks".into(),
                ));
            }
            messaging = Some(block);
        } else if is(block, NS_WSSE, "Security") && addressed_to_us(block, version) {
            if security.is_some() {
                return Err(Error::SignatureWrapping(
                    "the SOAP Header has two wsse:Security blocks for the same role".into(),
                ));
            }
            security = Some(block);
        }
    }
    Ok(Envelope {
        version,
        envelope: root,
        header,
        body,
        messaging,
        security,
    })
}

/// Whether a header block carries a true `mustUnderstand` in the envelope's namespace.
fn must_understand(block: Node, version: SoapVersion) -> Result<bool> {
    match block
        .attribute((version.namespace(), "mustUnderstand"))
        .map(str::trim)
    {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(Error::Malformed(format!(
            "header block {} has mustUnderstand={other:?} (expected true/false/1/0)",
            expanded_name(block)
        ))),
    }
}

/// Whether a header block targets the ultimate receiver: no SOAP 1.2 `role` / 1.1 `actor`, or
/// the ultimate receiver or "next" (every node) named explicitly.
fn addressed_to_us(block: Node, version: SoapVersion) -> bool {
    let role = match version {
        SoapVersion::Soap12 => block.attribute((NS_SOAP12, "role")),
        SoapVersion::Soap11 => block.attribute((NS_SOAP11, "actor")),
    };
    matches!(
        role.map(str::trim),
        None | Some("")
            | Some("http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver")
            | Some("http://www.w3.org/2003/05/soap-envelope/role/next")
            | Some("http://schemas.xmlsoap.org/soap/actor/next")
    )
}

/// `{namespace}local` for messages.
fn expanded_name(n: Node) -> String {
    match n.tag_name().namespace() {
        Some(ns) => format!("{{{ns}}}{}", n.tag_name().name()),
        None => n.tag_name().name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::as4::xml::{id_of, parse, Limits};
    use crate::ErrorCode;

    fn read_str(s: &str) -> Result<SoapVersion> {
        let doc = parse(s, &Limits::default())?;
        read(&doc, UNDERSTOOD).map(|e| e.version)
    }

    #[test]
    fn build_and_read_both_versions() {
        for v in [SoapVersion::Soap12, SoapVersion::Soap11] {
            let block = format!(
                "<eb:Messaging xmlns:eb=\"{NS_EB}\" xmlns:{p}=\"{ns}\" {p}:mustUnderstand=\"{t}\"/>",
                p = v.prefix(),
                ns = v.namespace(),
                t = v.must_understand_true()
            );
            let text = build(v, &[&block], "body-1", "<x>1</x>");
            let doc = parse(&text, &Limits::default()).unwrap();
            let env = read(&doc, UNDERSTOOD).unwrap();
            assert_eq!(env.version, v);
            assert!(env.messaging.is_some());
            assert!(env.security.is_none());
            assert_eq!(id_of(env.body), Some("body-1"));
            assert_eq!(
                env.body.first_element_child().unwrap().tag_name().name(),
                "x"
            );
        }
        let t = build(SoapVersion::Soap12, &[], "", "");
        assert_eq!(
            t,
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><S12:Envelope xmlns:S12=\"{NS_SOAP12}\"><S12:Header></S12:Header><S12:Body></S12:Body></S12:Envelope>")
        );
        assert_eq!(SoapVersion::Soap11.content_type(), "text/xml");
        assert_eq!(SoapVersion::Soap12.content_type(), "application/soap+xml");
    }

    #[test]
    fn must_understand_by_namespace() {
        // Holodeck binds a prefix named `mustUnderstand` to the SOAP 1.2 namespace.
        let ok = format!("<e:Envelope xmlns:e=\"{NS_SOAP12}\"><e:Header><x:Messaging xmlns:x=\"{NS_EB}\" xmlns:mustUnderstand=\"{NS_SOAP12}\" mustUnderstand:mustUnderstand=\"true\"/></e:Header><e:Body/></e:Envelope>");
        assert_eq!(read_str(&ok).unwrap(), SoapVersion::Soap12);
        let unknown = format!("<e:Envelope xmlns:e=\"{NS_SOAP12}\"><e:Header><f:Foo xmlns:f=\"urn:foo\" e:mustUnderstand=\"1\"/></e:Header><e:Body/></e:Envelope>");
        let err = read_str(&unknown).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MustUnderstand);
        assert!(err.to_string().contains("{urn:foo}Foo"), "{err}");
        // Not understood but not mandatory; a SOAP 1.1 attribute on a 1.2 envelope means nothing.
        for attr in [
            "e:mustUnderstand=\"false\"",
            &format!("xmlns:s=\"{NS_SOAP11}\" s:mustUnderstand=\"1\""),
        ] {
            let t = format!("<e:Envelope xmlns:e=\"{NS_SOAP12}\"><e:Header><f:Foo xmlns:f=\"urn:foo\" {attr}/></e:Header><e:Body/></e:Envelope>");
            assert!(read_str(&t).is_ok(), "{attr}");
        }
        let bad = format!("<e:Envelope xmlns:e=\"{NS_SOAP12}\"><e:Header><f:Foo xmlns:f=\"urn:foo\" e:mustUnderstand=\"yes\"/></e:Header><e:Body/></e:Envelope>");
        assert_eq!(read_str(&bad).unwrap_err().code(), ErrorCode::Malformed);
    }

    #[test]
    fn structure_is_checked() {
        let cases = [
            ("<a/>".to_string(), ErrorCode::Malformed),
            (format!("<e:Envelope xmlns:e=\"{NS_SOAP12}\"><e:Header/></e:Envelope>"), ErrorCode::Malformed),
            (format!("<e:Envelope xmlns:e=\"{NS_SOAP12}\"><e:Body/><e:Body/></e:Envelope>"), ErrorCode::Malformed),
            (format!("<e:Envelope xmlns:e=\"{NS_SOAP12}\"><e:Body/><e:Header/></e:Envelope>"), ErrorCode::Malformed),
            // A SOAP 1.1 Body in a 1.2 envelope.
            (format!("<e:Envelope xmlns:e=\"{NS_SOAP12}\" xmlns:o=\"{NS_SOAP11}\"><o:Body/></e:Envelope>"), ErrorCode::Malformed),
            (
                format!("<e:Envelope xmlns:e=\"{NS_SOAP12}\" xmlns:eb=\"{NS_EB}\"><e:Header><eb:Messaging/><eb:Messaging/></e:Header><e:Body/></e:Envelope>"),
                ErrorCode::InvalidEbms,
            ),
            (
                format!("<e:Envelope xmlns:e=\"{NS_SOAP12}\" xmlns:w=\"{NS_WSSE}\"><e:Header><w:Security/><w:Security/></e:Header><e:Body/></e:Envelope>"),
                ErrorCode::SignatureWrapping,
            ),
        ];
        for (text, code) in cases {
            assert_eq!(read_str(&text).unwrap_err().code(), code, "{text}");
        }
        // A Security header for another role is not ours.
        let t = format!("<e:Envelope xmlns:e=\"{NS_SOAP12}\" xmlns:w=\"{NS_WSSE}\"><e:Header><w:Security e:role=\"ebms\"/><w:Security Id=\"mine\"/></e:Header><e:Body/></e:Envelope>");
        let doc = parse(&t, &Limits::default()).unwrap();
        let env = read(&doc, UNDERSTOOD).unwrap();
        assert_eq!(env.security.and_then(id_of), Some("mine"));
        let t = format!("<e:Envelope xmlns:e=\"{NS_SOAP12}\" xmlns:w=\"{NS_WSSE}\"><e:Header><w:Security e:role=\"http://www.w3.org/2003/05/soap-envelope/role/next\" Id=\"next\"/></e:Header><e:Body/></e:Envelope>");
        let doc = parse(&t, &Limits::default()).unwrap();
        assert_eq!(
            read(&doc, UNDERSTOOD).unwrap().security.and_then(id_of),
            Some("next")
        );
    }
}
