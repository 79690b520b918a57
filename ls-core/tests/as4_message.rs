//! Whole AS4 messages: build → read round trips of every message type, NRR receipts, and each
//! rejection the message layer promises.

use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::message::{self, Outgoing, Payload, ReadOptions};
use ls_core::as4::model::*;
use ls_core::as4::wss::VerifyPolicy;
use ls_core::*;

fn id(name: &str) -> Identity {
    Identity::generate(name, KeyType::Rsa(2048), 30, None)
        .unwrap()
        .identity
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

fn user_message(from: &str, to: &str) -> UserMessage {
    UserMessage {
        info: MessageInfo {
            timestamp: timestamp_now(),
            message_id: new_message_id("layersec.test").unwrap(),
            ref_to_message_id: None,
        },
        mpc: None,
        from: party(
            from,
            "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/initiator",
        ),
        to: party(
            to,
            "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/responder",
        ),
        agreement_ref: None,
        service: Service {
            value: "urn:layersec:documents".into(),
            r#type: None,
        },
        action: "Deliver".into(),
        conversation_id: "conv-42".into(),
        properties: vec![
            Property::new("originalSender", from),
            Property::new("finalRecipient", to),
        ],
        payloads: Vec::new(),
    }
}

fn payloads() -> Vec<Payload> {
    vec![
        Payload {
            content_id: "invoice@layersec".into(),
            mime_type: "application/pkcs7-mime".into(),
            data: b"<Invoice>42</Invoice>".repeat(300),
            compress: true,
            properties: vec![],
        },
        Payload {
            content_id: "scan@layersec".into(),
            mime_type: "application/pdf".into(),
            data: (0..5000u32).map(|i| (i * 7 % 251) as u8).collect(),
            compress: false,
            properties: vec![Property::new("Note", "a scan")],
        },
    ]
}

struct Parties {
    alice: Identity,
    bob: Identity,
    bob_key_pem: Vec<u8>,
}

fn parties() -> Parties {
    let bob = Identity::generate("bob", KeyType::Rsa(2048), 30, None).unwrap();
    Parties {
        alice: id("alice"),
        bob: bob.identity,
        bob_key_pem: bob.key_pem.to_vec(),
    }
}

fn send(p: &Parties, encrypt: bool) -> message::Built {
    message::build(Outgoing {
        messaging: Messaging {
            user_messages: vec![user_message("alice", "bob")],
            signals: vec![],
        },
        payloads: payloads(),
        signer: &p.alice,
        encrypt_for: if encrypt {
            Some(p.bob.certificate())
        } else {
            None
        },
        soap: SoapVersion::Soap12,
    })
    .unwrap()
}

fn bob_reads<'a>(p: &'a Parties) -> ReadOptions<'a> {
    ReadOptions {
        recipient: Some(&p.bob),
        policy: VerifyPolicy {
            signer: Some(p.alice.certificate()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn user_message_signed_and_encrypted_round_trip_with_receipt() {
    let p = parties();
    for encrypt in [true, false] {
        let sent = send(&p, encrypt);
        assert!(sent.content_type.starts_with("multipart/related"));
        assert_eq!(
            sent.references.len(),
            4,
            "Messaging, Body and two attachments"
        );
        let got = message::read(&sent.content_type, &sent.body, &bob_reads(&p)).unwrap();
        assert_eq!(got.encrypted, encrypt);
        let um = &got.messaging.user_messages[0];
        assert_eq!(um.info.message_id, sent.message_id);
        assert_eq!(um.from.ids[0].value, "alice");
        assert_eq!(got.payloads.len(), 2);
        for (want, have) in payloads().iter().zip(&got.payloads) {
            assert_eq!(have.data, want.data);
            assert_eq!(have.mime_type.as_deref(), Some(want.mime_type.as_str()));
        }
        assert_eq!(
            got.verified.as_ref().unwrap().signer,
            *p.alice.certificate()
        );

        // Bob's signed NRR receipt, verified by Alice against what she signed.
        let receipt = message::build_receipt(&got, &p.bob, "layersec.test").unwrap();
        let alice_reads = ReadOptions {
            policy: VerifyPolicy {
                signer: Some(p.bob.certificate()),
                ..Default::default()
            },
            ..Default::default()
        };
        let r = message::read(&receipt.content_type, &receipt.body, &alice_reads).unwrap();
        message::check_receipt(&r, &sent).unwrap();
        // A receipt for another message does not pass for this one.
        let other = send(&p, encrypt);
        assert_eq!(
            message::check_receipt(&r, &other).unwrap_err().code(),
            ErrorCode::InvalidEbms
        );
    }
}

#[test]
fn signals_round_trip() {
    let p = parties();
    let info = || MessageInfo {
        timestamp: timestamp_now(),
        message_id: new_message_id("t").unwrap(),
        ref_to_message_id: None,
    };
    for signal in [
        Signal::PullRequest {
            mpc: "urn:layersec:mpc:bob".into(),
        },
        Signal::Error(vec![EbmsError::new("EBMS:0006").with_ref("m@x")]),
    ] {
        let built = message::build(Outgoing {
            messaging: Messaging {
                user_messages: vec![],
                signals: vec![SignalMessage {
                    info: info(),
                    signal: signal.clone(),
                }],
            },
            payloads: vec![],
            signer: &p.bob,
            encrypt_for: None,
            soap: SoapVersion::Soap12,
        })
        .unwrap();
        assert!(built.content_type.starts_with("application/soap+xml"));
        let opts = ReadOptions {
            policy: VerifyPolicy {
                signer: Some(p.bob.certificate()),
                ..Default::default()
            },
            ..Default::default()
        };
        let got = message::read(&built.content_type, &built.body, &opts).unwrap();
        assert_eq!(got.messaging.signals[0].signal, signal);
    }
}

fn replace_once(body: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = body
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    let mut v = body[..at].to_vec();
    v.extend_from_slice(to);
    v.extend_from_slice(&body[at + from.len()..]);
    v
}

#[test]
fn rejections() {
    let p = parties();
    let sent = send(&p, true);
    let read = |body: &[u8], opts: &ReadOptions| {
        message::read(&sent.content_type, body, opts)
            .map(|_| ())
            .unwrap_err()
    };

    // Altered ebMS header (who it is from).
    let e = read(
        &replace_once(&sent.body, b">alice<", b">mallo<"),
        &bob_reads(&p),
    );
    assert_eq!(e.code(), ErrorCode::DigestMismatch, "{e}");
    // Not for us.
    let carol = id("carol");
    let opts = ReadOptions {
        recipient: Some(&carol),
        ..bob_reads(&p)
    };
    assert_eq!(read(&sent.body, &opts).code(), ErrorCode::NotARecipient);
    // Signed by someone else than expected.
    let opts = ReadOptions {
        policy: VerifyPolicy {
            signer: Some(carol.certificate()),
            ..Default::default()
        },
        ..bob_reads(&p)
    };
    assert_eq!(read(&sent.body, &opts).code(), ErrorCode::SignerMismatch);
    // An unknown mustUnderstand header.
    let extra = b"<x:Routing xmlns:x=\"urn:x\" xmlns:S12=\"http://www.w3.org/2003/05/soap-envelope\" S12:mustUnderstand=\"true\"/>";
    let mut with = b"<S12:Header>".to_vec();
    with.extend_from_slice(extra);
    let e = read(
        &replace_once(&sent.body, b"<S12:Header>", &with),
        &bob_reads(&p),
    );
    assert_eq!(e.code(), ErrorCode::MustUnderstand, "{e}");
    // No signature at all.
    let plain = send(&p, false);
    let s = String::from_utf8_lossy(&plain.body).into_owned();
    let a = s.find("<ds:Signature").unwrap();
    let b = s.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let unsigned = format!("{}{}", &s[..a], &s[b..]);
    let e = message::read(&plain.content_type, unsigned.as_bytes(), &bob_reads(&p)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::SignatureRequired, "{e}");
    // Signature wrapping: the signed Messaging moved out of the header, a forged one in its place.
    let m_start = s.find("<eb:Messaging").unwrap();
    let m_end = s.find("</eb:Messaging>").unwrap() + "</eb:Messaging>".len();
    let signed_messaging = &s[m_start..m_end];
    let forged = signed_messaging
        .replace(">alice<", ">mallory<")
        .replace("wsu:Id=\"", "wsu:Id=\"x");
    let wrapped = format!("{}{}{}", &s[..m_start], forged, &s[m_end..]).replacen(
        "</S12:Body>",
        &format!("<w:Wrapper xmlns:w=\"urn:w\">{signed_messaging}</w:Wrapper></S12:Body>"),
        1,
    );
    let e = message::read(&plain.content_type, wrapped.as_bytes(), &bob_reads(&p)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::SignatureWrapping, "{e}");
    // A tampered (unencrypted) attachment: one byte of the PDF part.
    let pdf_at = plain
        .body
        .windows(4)
        .position(|w| w == [7, 14, 21, 28])
        .unwrap();
    let mut t = plain.body.clone();
    t[pdf_at] ^= 0xff;
    let e = message::read(&plain.content_type, &t, &bob_reads(&p)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::DigestMismatch, "{e}");
    // A tampered encrypted attachment fails its GCM tag.
    let ct_at = sent.body.len() - 200;
    let mut t = sent.body.clone();
    t[ct_at] ^= 1;
    let e = message::read(&sent.content_type, &t, &bob_reads(&p)).unwrap_err();
    assert!(
        matches!(
            e.code(),
            ErrorCode::DecryptFailed | ErrorCode::MalformedMime
        ),
        "{e}"
    );
}

#[test]
fn an_extra_unsigned_attachment_is_refused() {
    let p = parties();
    let sent = send(&p, false);
    let ct = sent.content_type.clone();
    let boundary = ls_core::mime::param(&ct, "boundary").unwrap();
    let s = sent.body.clone();
    let end = format!("--{boundary}--");
    let at = s
        .windows(end.len())
        .position(|w| w == end.as_bytes())
        .unwrap();
    let mut t = s[..at].to_vec();
    t.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-ID: <smuggled@x>\r\nContent-Type: text/plain\r\n\r\nextra\r\n"
        )
        .as_bytes(),
    );
    t.extend_from_slice(&s[at..]);
    let e = message::read(&ct, &t, &bob_reads(&p)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnsignedPart, "{e}");
}

#[test]
fn older_peers_rsa_oaep_mgf1p_key_transport_is_accepted() {
    // Holodeck-era senders wrap the payload key with `xmlenc#rsa-oaep-mgf1p` (OAEP with SHA-1 and
    // MGF1-SHA-1). Re-wrap the key of one of our messages that way: it must still open.
    use openssl::pkey_ctx::PkeyCtx;
    let p = parties();
    let sent = send(&p, true);
    let body = &sent.body;
    let find = |pat: &[u8], from: usize| {
        body[from..]
            .windows(pat.len())
            .position(|w| w == pat)
            .map(|i| i + from)
            .unwrap()
    };
    let cv_start = find(b"<xenc:CipherValue>", 0) + "<xenc:CipherValue>".len();
    let cv_end = find(b"</xenc:CipherValue>", cv_start);
    let wrapped =
        openssl::base64::decode_block(std::str::from_utf8(&body[cv_start..cv_end]).unwrap())
            .unwrap();
    let bob_key = openssl::pkey::PKey::private_key_from_pem(&p.bob_key_pem).unwrap();
    let mut ctx = PkeyCtx::new(&bob_key).unwrap();
    ctx.decrypt_init().unwrap();
    ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
        .unwrap();
    ctx.set_rsa_oaep_md(openssl::md::Md::sha256()).unwrap();
    ctx.set_rsa_mgf1_md(openssl::md::Md::sha256()).unwrap();
    let mut cek = Vec::new();
    ctx.decrypt_to_vec(&wrapped, &mut cek).unwrap();
    let mut ctx = PkeyCtx::new(&bob_key).unwrap();
    ctx.encrypt_init().unwrap();
    ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
        .unwrap();
    let mut sha1_wrapped = Vec::new();
    ctx.encrypt_to_vec(&cek, &mut sha1_wrapped).unwrap();
    let method_start = find(
        b"<xenc:EncryptionMethod Algorithm=\"http://www.w3.org/2009/xmlenc11#rsa-oaep\">",
        0,
    );
    let method_end =
        find(b"</xenc:EncryptionMethod>", method_start) + "</xenc:EncryptionMethod>".len();
    let mut old = body[..method_start].to_vec();
    old.extend_from_slice(
        b"<xenc:EncryptionMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p\"/>",
    );
    old.extend_from_slice(&body[method_end..cv_start]);
    old.extend_from_slice(openssl::base64::encode_block(&sha1_wrapped).as_bytes());
    old.extend_from_slice(&body[cv_end..]);
    let got = message::read(&sent.content_type, &old, &bob_reads(&p)).unwrap();
    assert_eq!(got.payloads[0].data, payloads()[0].data);
}

#[test]
fn duplicate_ids_are_refused() {
    let p = parties();
    let plain = send(&p, false);
    let s = String::from_utf8_lossy(&plain.body).into_owned();
    let id_at = s.find("<eb:Messaging").unwrap();
    let id = s[id_at..]
        .split("wsu:Id=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let dup = s.replacen(
        "</S12:Body>",
        &format!("<x:Decoy xmlns:x=\"urn:x\" xmlns:wsu=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd\" wsu:Id=\"{id}\"/></S12:Body>"),
        1,
    );
    let e = message::read(&plain.content_type, dup.as_bytes(), &bob_reads(&p)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::SignatureWrapping, "{e}");
}

#[test]
fn deep_nesting_in_a_signed_body_is_refused_not_a_crash() {
    // Found by fuzzing: nesting that ends in text once escaped the depth limit and overflowed the
    // stack in C14N, before any signer check.
    let p = parties();
    let plain = send(&p, false);
    let s = String::from_utf8_lossy(&plain.body).into_owned();
    let deep = "<a>".repeat(45_000) + "x" + &"</a>".repeat(45_000);
    let body_end = s.find("</S12:Body>").unwrap();
    let t = format!("{}{}{}", &s[..body_end], deep, &s[body_end..]);
    let opts = ReadOptions {
        limits: ls_core::as4::xml::Limits {
            max_envelope: 8 << 20,
            ..Default::default()
        },
        ..bob_reads(&p)
    };
    let e = message::read(&plain.content_type, t.as_bytes(), &opts).unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooDeep, "{e}");
}

#[test]
fn ecdsa_signer_and_partner_store() {
    // An EC P-256 sender signs with ECDSA-SHA256 (r‖s signature values); the receiver checks the
    // signer against its partner store instead of one pinned certificate.
    let p = parties();
    let carol = Identity::generate("carol", KeyType::EcP256, 30, None)
        .unwrap()
        .identity;
    let built = message::build(Outgoing {
        messaging: Messaging {
            user_messages: vec![user_message("carol", "bob")],
            signals: vec![],
        },
        payloads: payloads(),
        signer: &carol,
        encrypt_for: Some(p.bob.certificate()),
        soap: SoapVersion::Soap12,
    })
    .unwrap();
    assert!(String::from_utf8_lossy(&built.body).contains("xmldsig-more#ecdsa-sha256"));
    let mut store = CertStore::new();
    store.add_partner(p.alice.certificate().clone(), Some("alice"));
    store.add_partner(carol.certificate().clone(), Some("carol"));
    let opts = ReadOptions {
        recipient: Some(&p.bob),
        policy: VerifyPolicy {
            partners: Some(&store),
            ..Default::default()
        },
        ..Default::default()
    };
    let got = message::read(&built.content_type, &built.body, &opts).unwrap();
    assert_eq!(got.verified.unwrap().signer, *carol.certificate());
    assert_eq!(got.payloads[1].data, payloads()[1].data);
    // A store that does not know carol.
    let mut others = CertStore::new();
    others.add_partner(p.alice.certificate().clone(), Some("alice"));
    let opts = ReadOptions {
        policy: VerifyPolicy {
            partners: Some(&others),
            ..Default::default()
        },
        ..opts
    };
    let e = message::read(&built.content_type, &built.body, &opts).unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnknownSigner, "{e}");
}

#[test]
fn owned_buffers_give_the_same_results() {
    // `read_owned` / `Package::parse_owned` and `Package::into_mime` reuse buffers instead of
    // copying large payloads; they must agree with the borrowing forms.
    use ls_core::as4::package::Package;
    let p = parties();
    for encrypt in [true, false] {
        let sent = send(&p, encrypt);
        let a = message::read(&sent.content_type, &sent.body, &bob_reads(&p)).unwrap();
        let b = message::read_owned(&sent.content_type, sent.body.clone(), &bob_reads(&p)).unwrap();
        assert_eq!(a.payloads.len(), b.payloads.len());
        for (x, y) in a.payloads.iter().zip(&b.payloads) {
            assert_eq!(x.data, y.data);
            assert_eq!(x.content_id, y.content_id);
        }
        let limits = ls_core::as4::xml::Limits::default();
        let pkg = Package::parse(&sent.content_type, &sent.body, &limits).unwrap();
        let owned = Package::parse_owned(&sent.content_type, sent.body.clone(), &limits).unwrap();
        assert_eq!(pkg, owned);
        let (ct, body) = pkg.clone().into_mime().unwrap();
        let again = Package::parse(&ct, &body, &limits).unwrap();
        assert_eq!(again.soap, pkg.soap);
        assert_eq!(again.attachments.len(), pkg.attachments.len());
        for (x, y) in again.attachments.iter().zip(&pkg.attachments) {
            assert_eq!((&x.content_id, &x.data), (&y.content_id, &y.data));
        }
    }
}

#[test]
fn comments_in_signed_values_are_not_read() {
    // XML comment injection (the SAML-library bug class): exclusive C14N without comments leaves
    // comments out of the digest, so text read from a comment would be unsigned. A comment-only
    // edit keeps the signature valid and must not change any value we return.
    let p = parties();
    let plain = send(&p, false);
    let body = replace_once(&plain.body, b">Deliver<", b">Deliver<!--AndDelete--><");
    let body = replace_once(&body, b">conv-42<", b"><!--hijacked-->conv-42<");
    let got = message::read(&plain.content_type, &body, &bob_reads(&p)).unwrap();
    let um = &got.messaging.user_messages[0];
    assert_eq!(um.action, "Deliver");
    assert_eq!(um.conversation_id, "conv-42");
}
