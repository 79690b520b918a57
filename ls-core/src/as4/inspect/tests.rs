use super::*;
use crate::as4::message::{self, Outgoing, Payload};
use crate::as4::model::{new_message_id, timestamp_now, EbmsError, PartyId, Service, DEFAULT_MPC};
use crate::as4::model::{MessageInfo, Party, Property, Signal, SignalMessage, UserMessage};
use crate::keys::KeyType;
use serde_json::{json, Value as Json};
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

/// The report as its JSON, as the CLI prints it.
fn inspect_v(
    input: &[u8],
    content_type: Option<&str>,
    verify_with: Option<&Certificate>,
    decrypt_with: Option<&Identity>,
    limits: &Limits,
) -> Json {
    serde_json::to_value(inspect(
        input,
        content_type,
        verify_with,
        decrypt_with,
        limits,
    ))
    .unwrap()
}

fn pretty(j: &Json) -> String {
    serde_json::to_string_pretty(j).unwrap()
}

fn run(b: &message::Built, verify: bool, decrypt: bool) -> Json {
    let i = ids();
    inspect_v(
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
                Json::Array(a) => &a[n],
                _ => panic!("{p}: not an array in {}", pretty(j)),
            },
            Err(_) => cur
                .get(p)
                .unwrap_or_else(|| panic!("no {p} in {}", pretty(cur))),
        };
    }
    cur
}

fn arr(j: &Json) -> &[Json] {
    match j {
        Json::Array(a) => a,
        _ => panic!("not an array: {}", pretty(j)),
    }
}

#[test]
fn shape_of_a_signed_and_encrypted_user_message() {
    let b = build(true);
    let j = run(&b, true, true);
    assert_eq!(s(&j, &["kind"]), &json!("as4"));
    assert_eq!(s(&j, &["input"]), &json!("body"));
    assert_eq!(s(&j, &["soap_version"]), &json!("1.2"));
    assert_eq!(s(&j, &["error"]), &Json::Null, "{}", pretty(&j));
    let um = s(&j, &["messaging", "user_messages", "0"]);
    assert_eq!(s(um, &["message_id"]), &json!(b.message_id.as_str()));
    assert_eq!(s(um, &["action"]), &json!("Deliver"));
    assert_eq!(s(um, &["from", "party_ids", "0", "value"]), &json!("alice"));
    assert_eq!(s(um, &["to", "role"]), &json!("responder"));
    assert_eq!(
        s(um, &["service", "type"]),
        &json!("urn:layersec:service-type")
    );
    assert_eq!(
        s(um, &["message_properties", "0", "name"]),
        &json!("originalSender")
    );
    assert_eq!(
        s(um, &["payloads", "0", "href"]),
        &json!("cid:invoice@layersec")
    );
    assert_eq!(arr(s(um, &["payloads", "0", "part_properties"])).len(), 2);

    let parts = arr(s(&j, &["parts"]));
    assert_eq!(parts.len(), 2);
    let inv = &parts[0];
    assert_eq!(s(inv, &["content_id"]), &json!("invoice@layersec"));
    assert_eq!(s(inv, &["encrypted"]), &Json::Bool(true));
    assert_eq!(s(inv, &["signed"]), &Json::Bool(true));
    assert_eq!(s(inv, &["compression"]), &json!("application/gzip"));
    assert_eq!(s(inv, &["decompressed_size"]), &json!(2100usize));
    let enc = s(inv, &["size"]).as_u64().unwrap();
    let dec = s(inv, &["decrypted_size"]).as_u64().unwrap();
    assert_eq!(enc, dec + 28, "IV and tag");
    assert_eq!(s(&parts[1], &["decrypted_size"]), &json!(1000usize));
    assert_eq!(s(&parts[1], &["decompressed_size"]), &Json::Null);

    let sec = s(&j, &["security"]);
    assert_eq!(arr(s(sec, &["tokens"])).len(), 2);
    assert_eq!(
        s(sec, &["tokens", "0", "certificates", "0", "subject"]),
        &json!(ids().alice.certificate().subject())
    );
    assert_eq!(
        s(sec, &["signature", "signature_method"]),
        &json!(wss::ALG_RSA_SHA256)
    );
    assert_eq!(
        s(sec, &["signature", "key_info", "type"]),
        &json!("token_reference")
    );
    assert_eq!(arr(s(sec, &["signature", "references"])).len(), 4);
    let ek = s(sec, &["encrypted_keys", "0"]);
    assert_eq!(s(ek, &["algorithm"]), &json!(wss::ALG_RSA_OAEP11));
    assert_eq!(s(ek, &["for_us"]), &Json::Bool(true));
    assert_eq!(
        s(ek, &["recipient", "subject"]),
        &json!(ids().bob.certificate().subject())
    );
    assert_eq!(arr(s(ek, &["parts"])).len(), 2);

    let v = s(&j, &["verification"]);
    assert_eq!(s(v, &["signer_matches"]), &Json::Bool(true));
    assert_eq!(s(v, &["certificate_expired"]), &Json::Bool(false));
    assert_eq!(s(v, &["signature_value"]), &json!("ok"));
    for r in arr(s(v, &["references"])) {
        assert_eq!(s(r, &["result"]), &json!("ok"), "{}", pretty(&j));
    }
    assert_eq!(s(&j, &["verified"]), &Json::Bool(true));
    assert_eq!(arr(s(&j, &["warnings"])).len(), 0, "{}", pretty(&j));
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
    assert_eq!(results[0], &json!("ok"));
    assert_eq!(results[1], &json!("ok"));
    for r in &results[2..] {
        assert_eq!(*r, &json!("not checked: attachment encrypted and no key"));
    }
    assert_eq!(s(&j, &["verification", "signature_value"]), &json!("ok"));
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
    let j = inspect_v(
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
            Json::String(s) => s.clone(),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        results,
        ["digest mismatch", "ok", "ok", "digest mismatch"],
        "{}",
        pretty(&j)
    );
    assert_eq!(
        s(&j, &["verification", "error", "name"]),
        &json!("LS_ERR_DIGEST_MISMATCH")
    );
    assert_eq!(s(&j, &["verified"]), &Json::Bool(false));
    assert_eq!(s(&j, &["error"]), &Json::Null);
    // The ebMS header is still described (as altered).
    assert_eq!(
        s(&j, &["messaging", "user_messages", "0", "action"]),
        &json!("deliver")
    );
}

#[test]
fn wrong_certificate_and_wrong_key() {
    let b = build(true);
    let i = ids();
    let j = inspect_v(
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
        &json!("LS_ERR_SIGNER_MISMATCH")
    );
    assert_eq!(s(&j, &["verified"]), &Json::Bool(false));
    assert_eq!(
        s(&j, &["decryption", "error", "name"]),
        &json!("LS_ERR_NOT_A_RECIPIENT")
    );
    assert_eq!(
        s(&j, &["verification", "references", "2", "result"]),
        &json!("not checked: attachment encrypted and could not be decrypted")
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
    let j = inspect_v(
        &b.body,
        None,
        Some(i.alice.certificate()),
        None,
        &Limits::default(),
    );
    assert_eq!(s(&j, &["input"]), &json!("soap"));
    assert_eq!(s(&j, &["soap_version"]), &json!("1.1"));
    assert_eq!(s(&j, &["envelope"]), &Json::Null);
    let sig = s(&j, &["messaging", "signals", "0"]);
    assert_eq!(s(sig, &["type"]), &json!("error"));
    assert_eq!(s(sig, &["errors", "0", "code"]), &json!("EBMS:0004"));
    assert_eq!(s(sig, &["errors", "0", "severity"]), &json!("failure"));
    assert_eq!(
        s(sig, &["errors", "0", "short_description"]),
        &json!("Other")
    );
    assert_eq!(s(sig, &["errors", "0", "description"]), &json!("it broke"));
    let pull = s(&j, &["messaging", "signals", "1"]);
    assert_eq!(s(pull, &["type"]), &json!("pull_request"));
    assert_eq!(s(pull, &["mpc"]), &json!(DEFAULT_MPC));
    assert_eq!(s(&j, &["verified"]), &Json::Bool(true), "{}", pretty(&j));
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
    let j = inspect_v(&capture, None, None, None, &Limits::default());
    assert_eq!(s(&j, &["input"]), &json!("http"));
    assert_eq!(s(&j, &["error"]), &Json::Null, "{}", pretty(&j));
    assert_eq!(arr(s(&j, &["messaging", "signals"])).len(), 2);
}

#[test]
fn malformed_messages_report_what_they_can() {
    // Not XML at all.
    let j = inspect_v(b"<not xml", None, None, None, &Limits::default());
    assert_eq!(s(&j, &["error", "name"]), &json!("LS_ERR_MALFORMED"));
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
    let j = inspect_v(&body, Some(&b.content_type), None, None, &Limits::default());
    assert_eq!(s(&j, &["error", "name"]), &json!("LS_ERR_MUST_UNDERSTAND"));
    assert_eq!(
        s(&j, &["messaging", "user_messages", "0", "message_id"]),
        &json!(b.message_id.as_str())
    );
    assert_eq!(arr(s(&j, &["parts"])).len(), 2);
    // A broken ebMS header: MessageIds still named; a MIME part left undescribed.
    let mut body = b.body.clone();
    let at = crate::cert::memfind(&body, b"<eb:Action>").unwrap();
    body.splice(at..at, b"<eb:Bogus/>".iter().copied());
    let j = inspect_v(&body, Some(&b.content_type), None, None, &Limits::default());
    assert_eq!(s(&j, &["error", "name"]), &json!("LS_ERR_INVALID_EBMS"));
    assert_eq!(s(&j, &["messaging"]), &Json::Null);
    let w = format!("{:?}", s(&j, &["warnings"]));
    assert!(w.contains(&b.message_id), "{w}");
    assert_eq!(
        pretty(s(&j, &["security", "signature", "references"]))
            .matches("uri")
            .count(),
        4
    );
    // No Content-Type for a bare body: the boundary is taken from its first line.
    let j = inspect_v(&b.body, None, None, None, &Limits::default());
    assert_eq!(s(&j, &["error"]), &Json::Null, "{}", pretty(&j));
    assert!(format!("{:?}", s(&j, &["warnings"])).contains("no Content-Type given"));
    // A garbage MIME body.
    let j = inspect_v(
        b"x",
        Some("multipart/related"),
        None,
        None,
        &Limits::default(),
    );
    assert_eq!(s(&j, &["error", "name"]), &json!("LS_ERR_MALFORMED_MIME"));
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

#[test]
fn the_report_serialises_in_the_documented_order_with_one_error_object() {
    let r = inspect(b"<not xml", None, None, None, &Limits::default());
    let text = r.to_json_pretty();
    let top: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  \"")?.split('"').next())
        .collect();
    assert_eq!(
        top,
        [
            "kind",
            "input",
            "content_type",
            "soap_version",
            "envelope",
            "messaging",
            "parts",
            "security",
            "decryption",
            "verification",
            "verified",
            "warnings",
            "error"
        ],
        "{text}"
    );
    let v: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], 400);
    assert_eq!(v["error"]["name"], "LS_ERR_MALFORMED");
    assert_eq!(v["error"]["family"], "format");
    assert_eq!(v["error"]["transient"], false);
    // The signer resolves: no error object beside it.
    let b = build(false);
    let j = run(&b, true, false);
    let sec = pretty(s(&j, &["security", "signature"]));
    assert!(sec.contains("\"signer_error\": null"), "{sec}");
}
