//! One AS4 message = one mail: what `mail::layout::compose` writes is read back by
//! `mail::layout::read` into the body the AS4 readers take (in memory and through the spooler),
//! and verifies as the message sent over HTTPS does; an altered mail does not.

use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::message::{self, Outgoing, Payload, ReadOptions};
use ls_core::as4::model::*;
use ls_core::as4::spool::Spooler;
use ls_core::as4::wss::VerifyPolicy;
use ls_core::as4::xml::Limits;
use ls_core::mail::layout::{self, Content};
use ls_core::*;

fn id(name: &str) -> Identity {
    // RSA: WS-Security payload encryption (AS4 1.x) needs an RSA recipient.
    Identity::generate(name, KeyType::Rsa(2048), 30, None)
        .unwrap()
        .identity
}

fn party(v: &str) -> Party {
    Party {
        ids: vec![PartyId {
            value: v.into(),
            r#type: Some("urn:layersec:party".into()),
        }],
        role: "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/initiator".into(),
    }
}

fn build(alice: &Identity, bob: &Identity, encrypt: bool, data: Vec<u8>) -> message::Built {
    message::build(Outgoing {
        messaging: Messaging {
            user_messages: vec![UserMessage {
                info: MessageInfo {
                    timestamp: timestamp_now(),
                    message_id: new_message_id("acme.example").unwrap(),
                    ref_to_message_id: None,
                },
                mpc: None,
                from: party("alice"),
                to: party("bob"),
                agreement_ref: None,
                service: Service {
                    value: "urn:layersec:documents".into(),
                    r#type: None,
                },
                action: "Deliver".into(),
                conversation_id: "c1".into(),
                properties: vec![],
                payloads: vec![],
            }],
            signals: vec![],
        },
        payloads: vec![Payload {
            content_id: "doc@layersec".into(),
            mime_type: "application/pkcs7-mime".into(),
            data,
            compress: false,
            properties: vec![],
        }],
        signer: alice,
        encrypt_for: encrypt.then(|| bob.certificate()),
        soap: SoapVersion::Soap12,
    })
    .unwrap()
}

fn opts<'a>(alice: &'a Identity, bob: &'a Identity) -> ReadOptions<'a> {
    ReadOptions {
        recipient: Some(bob),
        policy: VerifyPolicy {
            signer: Some(alice.certificate()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn unmail(raw: &[u8]) -> (String, Vec<u8>, Option<String>) {
    match layout::read(raw, &Limits::default()) {
        Content::As4 {
            content_type,
            body,
            message_id,
        } => (content_type, body, message_id),
        other => panic!("not read as AS4: {other:?}"),
    }
}

#[test]
fn a_user_message_survives_the_mail_layout_and_verifies() {
    let (alice, bob) = (id("alice"), id("bob"));
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 256) as u8).collect();
    for encrypt in [false, true] {
        let sent = build(&alice, &bob, encrypt, data.clone());
        let mail = layout::compose(
            &sent.content_type,
            &sent.body,
            "alice@example.test",
            "service@example.test",
            &Limits::default(),
        )
        .unwrap();
        // A mail relays take as it is: 7-bit lines, none over 998 characters.
        assert!(mail.is_ascii());
        assert!(mail.split(|&b| b == b'\n').all(|l| l.len() <= 998));
        let text = String::from_utf8_lossy(&mail[..2000]);
        assert!(
            text.contains(&format!("Message-ID: <{}>", sent.message_id)),
            "{text}"
        );
        assert!(text.contains("Auto-Submitted: auto-generated"));
        assert!(text.contains("Subject: AS4 Deliver (urn:layersec:documents) from alice"));
        let (ct, body, mid) = unmail(&mail);
        assert_eq!(mid.as_deref(), Some(sent.message_id.as_str()));
        // In memory ...
        let got = message::read(&ct, &body, &opts(&alice, &bob)).unwrap();
        assert_eq!(got.payloads[0].data, data);
        // ... and through the spooler, as a client's pull receives it.
        let dir = ls_tests::tempdir("mail-layout");
        let path = dir.join("spool");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let mut sp = Spooler::new(&ct, file, &Limits::default()).unwrap();
        for piece in body.chunks(7919) {
            sp.feed(piece).unwrap();
        }
        let (pkg, _) = sp.finish().unwrap();
        let got = message::read_spooled(&pkg, &path, &opts(&alice, &bob)).unwrap();
        let payload = &got.payloads[0];
        assert_eq!(payload.data, data, "encrypt={encrypt}");

        // One base64 character of the payload changed: the signature no longer verifies.
        let mut bad = mail.clone();
        let at = bad.len() - 400;
        bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
        let (ct, body, _) = unmail(&bad);
        let e = message::read(&ct, &body, &opts(&alice, &bob)).unwrap_err();
        assert!(
            matches!(
                e.code(),
                ErrorCode::DigestMismatch | ErrorCode::DecryptFailed | ErrorCode::BadSignature
            ),
            "{e}"
        );
    }
}

#[test]
fn a_receipt_is_one_base64_part_that_replies_to_its_message() {
    let (alice, bob) = (id("alice"), id("bob"));
    let sent = build(&alice, &bob, false, b"hello".to_vec());
    let got = message::read(&sent.content_type, &sent.body, &opts(&alice, &bob)).unwrap();
    let receipt = message::build_receipt(&got, &bob, "bob.example").unwrap();
    assert_eq!(
        receipt.ref_to_message_id.as_deref(),
        Some(sent.message_id.as_str()),
        "a built receipt names the message it answers"
    );
    let mail = layout::compose(
        &receipt.content_type,
        &receipt.body,
        "service@example.test",
        "alice@example.test",
        &Limits::default(),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&mail);
    let reply = format!("<{}>", sent.message_id);
    assert!(text.contains(&format!("In-Reply-To: {reply}")), "{text}");
    assert!(text.contains(&format!("References: {reply}")), "{text}");
    assert!(text.contains("Subject: AS4 Receipt for "), "{text}");
    let (ct, body, _) = unmail(&mail);
    assert_eq!(body, receipt.body, "the envelope comes back byte for byte");
    let r = message::read(
        &ct,
        &body,
        &ReadOptions {
            recipient: None,
            policy: VerifyPolicy {
                signer: Some(bob.certificate()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    message::check_receipt(&r, &sent).unwrap();
}

#[test]
fn addresses_that_could_inject_a_header_are_refused() {
    let (alice, bob) = (id("alice"), id("bob"));
    let sent = build(&alice, &bob, false, b"x".to_vec());
    for (from, to) in [
        ("alice@example.test\r\nBcc: eve@evil.test", "s@example.test"),
        ("alice@example.test", "s@example.test>, <eve@evil.test"),
    ] {
        let e = layout::compose(&sent.content_type, &sent.body, from, to, &Limits::default())
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
    }
}
