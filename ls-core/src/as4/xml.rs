//! XML for the message layer: roxmltree with limits, namespace constants, Id lookup, escaping.

use crate::error::{Error, Result};
use roxmltree::{Document, Node, ParsingOptions};

pub const NS_SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const NS_SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const NS_EB: &str = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/";
pub const NS_EBBP: &str = "http://docs.oasis-open.org/ebxml-bp/ebbp-signals-2.0";
pub const NS_WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
pub const NS_WSSE11: &str = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd";
pub const NS_WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
pub const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const NS_XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
pub const NS_XENC11: &str = "http://www.w3.org/2009/xmlenc11#";
pub const NS_EC: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// Most `xmlns` declarations an envelope may carry.
pub const MAX_NAMESPACE_DECLARATIONS: usize = 512;

/// Limits on what we parse (all configurable by the caller of the message layer).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest SOAP envelope (bytes).
    pub max_envelope: usize,
    /// Most XML nodes in an envelope.
    pub max_nodes: u32,
    /// Deepest element nesting.
    pub max_depth: usize,
    /// Most MIME parts in a message.
    pub max_parts: usize,
    /// Largest payload part (bytes), after decompression too.
    pub max_part: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_envelope: 4 << 20,
            max_nodes: 100_000,
            max_depth: 64,
            max_parts: 64,
            max_part: 1 << 30,
        }
    }
}

/// Parse XML text with DTDs refused (no XXE, no entity expansion) and sizes bounded.
pub fn parse<'a>(text: &'a str, limits: &Limits) -> Result<Document<'a>> {
    if text.len() > limits.max_envelope {
        return Err(Error::TooLarge(format!(
            "SOAP envelope of {} bytes exceeds the limit of {}",
            text.len(),
            limits.max_envelope
        )));
    }
    // roxmltree copies and scans the in-scope namespaces for every element that declares one:
    // thousands of declarations make parsing quadratic (roxmltree issue #153). Real envelopes
    // declare a few dozen.
    let declarations = memchr::memmem::find_iter(text.as_bytes(), b"xmlns").count();
    if declarations > MAX_NAMESPACE_DECLARATIONS {
        return Err(Error::TooLarge(format!(
            "the XML declares more than {MAX_NAMESPACE_DECLARATIONS} namespaces"
        )));
    }
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.max_nodes,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, opts).map_err(|e| match e {
        roxmltree::Error::DtdDetected => Error::Malformed(
            "the XML has a DTD (refused: no entities, no external references)".into(),
        ),
        roxmltree::Error::NodesLimitReached => {
            Error::TooLarge(format!("the XML has more than {} nodes", limits.max_nodes))
        }
        other => Error::Malformed(format!("XML: {other}")),
    })?;
    // Depth of every node (text and comments included), in one pass: nodes come in document
    // order, so a parent's depth is known before its children's.
    let mut depth = vec![0usize; doc.descendants().count() + 2];
    for n in doc.descendants() {
        let d = n
            .parent()
            .map(|p| depth[p.id().get_usize()] + 1)
            .unwrap_or(0);
        if d > limits.max_depth {
            return Err(Error::TooDeep(format!(
                "XML nested more than {} levels deep",
                limits.max_depth
            )));
        }
        depth[n.id().get_usize()] = d;
    }
    Ok(doc)
}

/// Parse bytes as UTF-8 XML (a UTF-8 BOM is skipped).
pub fn parse_bytes<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Document<'a>> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text =
        std::str::from_utf8(bytes).map_err(|_| Error::Malformed("the XML is not UTF-8".into()))?;
    parse(text, limits)
}

/// Whether `n` is the element `{ns}local`.
pub fn is(n: Node, ns: &str, local: &str) -> bool {
    n.is_element() && n.tag_name().name() == local && n.tag_name().namespace() == Some(ns)
}

/// The first child element `{ns}local`.
pub fn child<'a, 'i>(n: Node<'a, 'i>, ns: &str, local: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| is(*c, ns, local))
}

/// All child elements `{ns}local`.
pub fn children<'a, 'i>(
    n: Node<'a, 'i>,
    ns: &'a str,
    local: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children().filter(move |c| is(*c, ns, local))
}

/// The text content of an element (its text children joined), trimmed. Comments are not text:
/// exclusive C14N without comments leaves them out of every digest, so a value read from a
/// comment would be unsigned (roxmltree's `Node::text` returns a comment's content too).
pub fn text(n: Node) -> String {
    n.children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text())
        .collect::<String>()
        .trim()
        .to_string()
}

/// The element's Id: `wsu:Id`, else an unqualified `Id`, `ID` or `id` attribute.
pub fn id_of<'a>(n: Node<'a, '_>) -> Option<&'a str> {
    n.attribute((NS_WSU, "Id"))
        .or_else(|| n.attribute("Id"))
        .or_else(|| n.attribute("ID"))
        .or_else(|| n.attribute("id"))
}

/// The one element whose Id is `id`. Two elements with the same Id are an error (a signature
/// wrapping attempt or a broken message): a reference must name exactly one element.
pub fn by_id<'a, 'i>(doc: &'a Document<'i>, id: &str) -> Result<Option<Node<'a, 'i>>> {
    let mut found = None;
    for n in doc.descendants().filter(|n| n.is_element()) {
        if id_of(n) == Some(id) {
            if found.is_some() {
                return Err(Error::SignatureWrapping(format!(
                    "two elements carry the Id {id:?}"
                )));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// The qualified name of an element as written in the source (`eb:Messaging`).
pub fn source_qname<'i>(n: Node<'_, 'i>) -> &'i str {
    let src = n.document().input_text();
    let r = n.range();
    let s = &src[r.start + 1..r.end];
    let end = s
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .unwrap_or(s.len());
    &s[..end]
}

/// The prefix of a qualified name (`""` when unprefixed).
pub fn prefix_of(qname: &str) -> &str {
    qname.split_once(':').map(|(p, _)| p).unwrap_or("")
}

/// Escape text content for an XML writer.
pub fn escape_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escape an attribute value (double-quoted) for an XML writer.
pub fn escape_attr(s: &str) -> String {
    escape_text(s).replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtds_are_refused() {
        let xxe = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>";
        assert_eq!(
            parse(xxe, &Limits::default()).unwrap_err().code(),
            crate::ErrorCode::Malformed
        );
        let bomb = "<!DOCTYPE a [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><a>&b;</a>";
        assert!(parse(bomb, &Limits::default()).is_err());
    }

    #[test]
    fn limits() {
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert_eq!(
            parse(&deep, &Limits::default()).unwrap_err().code(),
            crate::ErrorCode::TooDeep
        );
        let big = format!("<a>{}</a>", "x".repeat(100));
        let small = Limits {
            max_envelope: 50,
            ..Default::default()
        };
        assert_eq!(
            parse(&big, &small).unwrap_err().code(),
            crate::ErrorCode::TooLarge
        );
    }

    #[test]
    fn namespace_floods_are_refused_quickly() {
        // Found in review: K declarations on the root and M children declaring one more made
        // roxmltree quadratic (K=2000, M=400 took 1.45 s).
        let mut x = String::from("<r");
        for i in 0..2000 {
            x += &format!(" xmlns:n{i}=\"u\"");
        }
        x += ">";
        for _ in 0..400 {
            x += "<b xmlns:z=\"v\"/>";
        }
        x += "</r>";
        assert_eq!(
            parse(&x, &Limits::default()).unwrap_err().code(),
            crate::ErrorCode::TooLarge
        );
    }

    #[test]
    fn ids_and_qnames() {
        let x = format!("<S:E xmlns:S=\"{NS_SOAP12}\" xmlns:wsu=\"{NS_WSU}\"><S:B wsu:Id=\"b1\"/><x Id=\"b2\"/></S:E>");
        let d = parse(&x, &Limits::default()).unwrap();
        let b = by_id(&d, "b1").unwrap().unwrap();
        assert_eq!(source_qname(b), "S:B");
        assert!(by_id(&d, "b2").unwrap().is_some());
        let dup = "<a><b Id=\"x\"/><c Id=\"x\"/></a>";
        let d = parse(dup, &Limits::default()).unwrap();
        assert_eq!(
            by_id(&d, "x").unwrap_err().code(),
            crate::ErrorCode::SignatureWrapping
        );
    }
}
