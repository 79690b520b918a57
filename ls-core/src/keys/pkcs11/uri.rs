//! RFC 7512 `pkcs11:` URIs: which token, which key, which module.

use crate::error::{Error, Result};

/// The parts of a `pkcs11:` URI we use. Token attributes select one token; `object` (the
/// label) and `id` select the key on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub token: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub slot_id: Option<u64>,
    pub object: Option<String>,
    pub id: Option<Vec<u8>>,
    /// `module-path` from the query: used only when no module is given explicitly.
    pub module_path: Option<String>,
}

impl Pkcs11Uri {
    /// Parse `uri`. A `pin-value` is refused (a PIN does not belong in a configuration file
    /// or a command line); `type` must be `private` when present; unknown attributes are
    /// refused, so that a misspelt one does not select another key.
    pub fn parse(uri: &str) -> Result<Pkcs11Uri> {
        let bad = |what: String| Error::InvalidArgument(format!("pkcs11 URI: {what}"));
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad("it must start with \"pkcs11:\"".into()))?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut out = Pkcs11Uri::default();
        let text = |name: &str, v: &str| -> Result<String> {
            let raw = crate::bytes::percent_decode_strict(v)
                .ok_or_else(|| bad(format!("bad percent-encoding in {name}")))?;
            String::from_utf8(raw).map_err(|_| bad(format!("{name} is not UTF-8")))
        };
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| bad(format!("attribute {attr:?} has no value")))?;
            let slot = match name {
                "token" => &mut out.token,
                "manufacturer" => &mut out.manufacturer,
                "model" => &mut out.model,
                "serial" => &mut out.serial,
                "object" => &mut out.object,
                "id" => {
                    let id = crate::bytes::percent_decode_strict(value)
                        .ok_or_else(|| bad("bad percent-encoding in id".into()))?;
                    if out.id.replace(id).is_some() {
                        return Err(bad("id given twice".into()));
                    }
                    continue;
                }
                "slot-id" => {
                    let n = value
                        .parse()
                        .map_err(|_| bad(format!("slot-id {value:?} is not a number")))?;
                    if out.slot_id.replace(n).is_some() {
                        return Err(bad("slot-id given twice".into()));
                    }
                    continue;
                }
                "type" => {
                    if value != "private" {
                        return Err(bad(format!(
                            "type={value}: the identity's key is a private key (type=private)"
                        )));
                    }
                    continue;
                }
                // Library attributes: one module is loaded, nothing to choose among.
                "library-manufacturer" | "library-description" | "library-version" => continue,
                other => return Err(bad(format!("unknown attribute {other:?}"))),
            };
            if slot.replace(text(name, value)?).is_some() {
                return Err(bad(format!("{name} given twice")));
            }
        }
        for attr in query.unwrap_or("").split('&').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
            match name {
                "pin-value" => {
                    return Err(bad(
                        "a PIN in the URI (pin-value) is refused: give it from an environment \
                         variable or a file"
                            .into(),
                    ))
                }
                "module-path" => out.module_path = Some(text(name, value)?),
                // pin-source names a file the caller reads; module-name is a hint we do not
                // resolve. Neither selects the key.
                "pin-source" | "module-name" => {}
                other => return Err(bad(format!("unknown query attribute {other:?}"))),
            }
        }
        if out.object.is_none() && out.id.is_none() {
            return Err(bad("name the key with object= (its label) or id=".into()));
        }
        Ok(out)
    }

    /// The URI without query attributes, for messages (never a PIN: none is accepted).
    pub fn describe(&self) -> String {
        let enc = |s: &str| crate::bytes::percent_encode(s, b"-._~");
        let mut parts = Vec::new();
        if let Some(t) = &self.token {
            parts.push(format!("token={}", enc(t)));
        }
        if let Some(o) = &self.object {
            parts.push(format!("object={}", enc(o)));
        }
        if let Some(id) = &self.id {
            let hex: String = id.iter().map(|b| format!("%{b:02x}")).collect();
            parts.push(format!("id={hex}"));
        }
        format!("pkcs11:{}", parts.join(";"))
    }
}

/// A `pkcs11:` URI as configured, without its query (no module path, never a PIN), trimmed:
/// for messages and `key_location`.
pub fn without_query(uri: &str) -> String {
    let uri = uri.trim();
    uri.split_once('?')
        .map_or(uri, |(path, _)| path)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn parses_the_rfc_examples_we_need() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=Layer%20Security;object=acme%20signing;id=%01%02;type=private\
             ?module-path=/usr/lib/softhsm/libsofthsm2.so",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("Layer Security"));
        assert_eq!(u.object.as_deref(), Some("acme signing"));
        assert_eq!(u.id.as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(
            u.module_path.as_deref(),
            Some("/usr/lib/softhsm/libsofthsm2.so")
        );
        assert_eq!(
            u.describe(),
            "pkcs11:token=Layer%20Security;object=acme%20signing;id=%01%02"
        );
        let u = Pkcs11Uri::parse("pkcs11:id=%aa;slot-id=3").unwrap();
        assert_eq!((u.id.unwrap(), u.slot_id), (vec![0xaa], Some(3)));
    }

    #[test]
    fn refuses_a_pin_and_what_could_select_another_key() {
        for (uri, says) in [
            ("pkcs11:object=k?pin-value=1234", "pin-value"),
            ("pkcs11:object=k?module-path=/x&pin-value=1234", "pin-value"),
            ("pkcs11:object=k;type=cert", "type=cert"),
            ("pkcs11:object=k;objekt=j", "objekt"),
            ("pkcs11:token=t", "object="),
            ("pkcs11:object=a;object=b", "twice"),
            ("pkcs11:object=%zz", "percent"),
            ("pkcs:object=a", "pkcs11:"),
            ("pkcs11:object=k;slot-id=x", "slot-id"),
        ] {
            let e = Pkcs11Uri::parse(uri).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidArgument, "{uri}");
            assert!(e.to_string().contains(says), "{uri}: {e}");
            assert!(!e.to_string().contains("1234"), "{uri}: {e}");
        }
    }
}
