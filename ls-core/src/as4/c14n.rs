//! Exclusive XML Canonicalization 1.0 without comments
//! (`http://www.w3.org/2001/10/xml-exc-c14n#`), of an element and its descendants, with an
//! optional InclusiveNamespaces PrefixList.
//!
//! roxmltree resolves names to namespaces; the prefixes C14N must reproduce are read from the
//! source text of each start tag and attribute.

use super::xml::{prefix_of, source_qname};
use crate::error::{Error, Result};
use roxmltree::{Node, NodeType};

/// The canonical form of `apex` and its subtree. `inclusive` lists prefixes to treat as in
/// inclusive C14N (`#default` for the default namespace).
pub fn canonicalize(apex: Node, inclusive: &[&str]) -> Result<Vec<u8>> {
    if !apex.is_element() {
        return Err(Error::Internal("C14N of a non-element".into()));
    }
    let mut out = Vec::with_capacity(apex.range().len());
    let inclusive: Vec<&str> = inclusive
        .iter()
        .map(|p| if *p == "#default" { "" } else { *p })
        .collect();
    let mut rendered: Vec<(String, String)> = Vec::new();
    element(apex, &inclusive, &mut rendered, &mut out, 0)?;
    Ok(out)
}

/// Parse an `InclusiveNamespaces/@PrefixList` value.
pub fn prefix_list(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

fn in_scope<'a>(n: Node<'a, '_>, prefix: &str) -> Option<&'a str> {
    n.namespaces()
        .find(|ns| ns.name().unwrap_or("") == prefix)
        .map(|ns| ns.uri())
}

/// Recursion bound: `xml::parse` already refuses deeper documents; this guards documents parsed
/// some other way.
const MAX_DEPTH: usize = 256;

fn element(
    n: Node,
    inclusive: &[&str],
    rendered: &mut Vec<(String, String)>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(format!(
            "XML nested more than {MAX_DEPTH} levels deep"
        )));
    }
    let qname = source_qname(n);
    let src = n.document().input_text();

    // Attributes with the prefixes they were written with.
    let mut attrs: Vec<(&str, &str, &str, &str)> = n
        .attributes()
        .map(|a| {
            let q = &src[a.range_qname()];
            (a.namespace().unwrap_or(""), a.name(), q, a.value())
        })
        .collect();
    attrs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));

    // Namespace declarations: the prefixes this element visibly uses, plus the inclusive ones
    // in scope, unless the nearest output ancestor already declared the same binding.
    let mut wanted: Vec<&str> = vec![prefix_of(qname)];
    for (_, _, q, _) in &attrs {
        let p = prefix_of(q);
        if !p.is_empty() {
            wanted.push(p);
        }
    }
    for p in inclusive {
        if in_scope(n, p).is_some() {
            wanted.push(p);
        }
    }
    wanted.sort_unstable();
    wanted.dedup();
    let mark = rendered.len();
    let mut decls: Vec<(&str, &str)> = Vec::new();
    for p in wanted {
        if p == "xml" {
            continue;
        }
        let uri = match in_scope(n, p) {
            Some(u) => u,
            None if p.is_empty() => "",
            None => {
                return Err(Error::Malformed(format!(
                    "XML prefix {p:?} is used but not declared"
                )))
            }
        };
        let current = rendered
            .iter()
            .rev()
            .find(|(rp, _)| rp == p)
            .map(|(_, u)| u.as_str());
        let already = match current {
            Some(u) => u == uri,
            // An empty default namespace needs no declaration unless an ancestor set one.
            None => p.is_empty() && uri.is_empty(),
        };
        if !already {
            decls.push((p, uri));
        }
    }
    out.push(b'<');
    out.extend_from_slice(qname.as_bytes());
    for (p, uri) in &decls {
        if p.is_empty() {
            out.extend_from_slice(b" xmlns=\"");
        } else {
            out.extend_from_slice(b" xmlns:");
            out.extend_from_slice(p.as_bytes());
            out.extend_from_slice(b"=\"");
        }
        escape_attr(uri, out);
        out.push(b'"');
        rendered.push((p.to_string(), uri.to_string()));
    }
    for (_, _, q, v) in &attrs {
        out.push(b' ');
        out.extend_from_slice(q.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_attr(v, out);
        out.push(b'"');
    }
    out.push(b'>');
    for c in n.children() {
        match c.node_type() {
            NodeType::Element => element(c, inclusive, rendered, out, depth + 1)?,
            NodeType::Text => escape_text(c.text().unwrap_or(""), out),
            NodeType::PI => {
                if let Some(pi) = c.pi() {
                    out.extend_from_slice(b"<?");
                    out.extend_from_slice(pi.target.as_bytes());
                    if let Some(v) = pi.value {
                        out.push(b' ');
                        out.extend_from_slice(v.as_bytes());
                    }
                    out.extend_from_slice(b"?>");
                }
            }
            NodeType::Comment | NodeType::Root => {}
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(qname.as_bytes());
    out.push(b'>');
    rendered.truncate(mark);
    Ok(())
}

fn escape_text(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'\r' => out.extend_from_slice(b"&#xD;"),
            _ => out.push(b),
        }
    }
}

fn escape_attr(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\t' => out.extend_from_slice(b"&#x9;"),
            b'\n' => out.extend_from_slice(b"&#xA;"),
            b'\r' => out.extend_from_slice(b"&#xD;"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::as4::xml::{parse, Limits};

    fn c14n(xml: &str, inclusive: &[&str]) -> String {
        let d = parse(xml, &Limits::default()).unwrap();
        String::from_utf8(canonicalize(d.root_element(), inclusive).unwrap()).unwrap()
    }

    fn c14n_of(xml: &str, local: &str, inclusive: &[&str]) -> String {
        let d = parse(xml, &Limits::default()).unwrap();
        let n = d
            .descendants()
            .find(|n| n.is_element() && n.tag_name().name() == local)
            .unwrap();
        String::from_utf8(canonicalize(n, inclusive).unwrap()).unwrap()
    }

    #[test]
    fn namespaces_are_rendered_where_used() {
        let x = r#"<a:r xmlns:a="urn:a" xmlns:b="urn:b" xmlns:u="urn:unused"><b:x b:k="1" z="2" a:k="3">t</b:x></a:r>"#;
        assert_eq!(
            c14n_of(x, "x", &[]),
            r#"<b:x xmlns:a="urn:a" xmlns:b="urn:b" z="2" a:k="3" b:k="1">t</b:x>"#
        );
        // Inclusive prefixes are rendered when in scope.
        assert_eq!(
            c14n_of(x, "x", &["u"]),
            r#"<b:x xmlns:a="urn:a" xmlns:b="urn:b" xmlns:u="urn:unused" z="2" a:k="3" b:k="1">t</b:x>"#
        );
        // Whole document: unused declarations disappear, nested ones are not repeated.
        assert_eq!(
            c14n(x, &[]),
            r#"<a:r xmlns:a="urn:a"><b:x xmlns:b="urn:b" z="2" a:k="3" b:k="1">t</b:x></a:r>"#
        );
    }

    #[test]
    fn default_namespace_and_escaping() {
        let x = "<r xmlns=\"urn:d\"><e a=\"&lt;&amp;&quot;&#9;&#10;\">x &amp; &lt; &gt; &#13;</e><f xmlns=\"\"/><!-- c --><?p d?></r>";
        assert_eq!(
            c14n(x, &[]),
            "<r xmlns=\"urn:d\"><e a=\"&lt;&amp;&quot;&#x9;&#xA;\">x &amp; &lt; &gt; &#xD;</e><f xmlns=\"\"></f><?p d?></r>"
        );
    }

    #[test]
    fn known_vector_from_the_exc_c14n_spec() {
        // Exclusive XML Canonicalization 1.0, section 2.2: the same apex in two contexts
        // canonicalizes identically, unlike inclusive C14N.
        let a = r#"<n0:local xmlns:n0="foo:bar" xmlns:n3="ftp://example.org"><n1:elem2 xmlns:n1="http://example.net" xml:lang="en"><n3:stuff xmlns:n3="ftp://example.org"/></n1:elem2></n0:local>"#;
        let b = r#"<n2:pdu xmlns:n1="http://example.com" xmlns:n2="http://foo.example" xml:lang="fr" xml:space="retain"><n1:elem2 xmlns:n1="http://example.net" xml:lang="en"><n3:stuff xmlns:n3="ftp://example.org"/></n1:elem2></n2:pdu>"#;
        let want = r#"<n1:elem2 xmlns:n1="http://example.net" xml:lang="en"><n3:stuff xmlns:n3="ftp://example.org"></n3:stuff></n1:elem2>"#;
        assert_eq!(c14n_of(a, "elem2", &[]), want);
        assert_eq!(c14n_of(b, "elem2", &[]), want);
    }
}
