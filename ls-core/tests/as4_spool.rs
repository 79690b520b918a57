//! Messages whose payload is a file: built without holding the body ([`message::build_file`]),
//! received into a spool ([`spool::Spooler`]) and read or authenticated from there with the
//! digests computed on the way — with the results and errors of the in-memory path.

use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange;
use ls_core::as4::message::{self, FilePayload, Outgoing, OutgoingFile, Payload, ReadOptions};
use ls_core::as4::model::*;
use ls_core::as4::spool::{SpooledBody, SpooledPackage, Spooler};
use ls_core::as4::wss::VerifyPolicy;
use ls_core::as4::xml::Limits;
use ls_core::*;
use std::path::Path;

fn id(name: &str) -> Identity {
    Identity::generate(name, KeyType::EcP256, 30, None)
        .unwrap()
        .identity
}

fn messaging(from: &str, to: &str) -> Messaging {
    Messaging {
        user_messages: vec![exchange::user_message(
            from,
            to,
            "urn:layersec:documents",
            "Deliver",
            "",
            "layersec.test",
        )
        .unwrap()],
        signals: Vec::new(),
    }
}

fn payload_data(n: usize) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Build a message with the payload in a file, write its body to `out`.
fn built(alice: &Identity, dir: &Path, data: &[u8]) -> (message::BuiltFile, Vec<u8>) {
    let p = dir.join("payload.p7m");
    std::fs::write(&p, data).unwrap();
    let b = message::build_file(OutgoingFile {
        messaging: messaging("alice", "bob"),
        payload: FilePayload {
            content_id: "document@layersec.test".into(),
            mime_type: "application/pkcs7-mime".into(),
            path: &p,
            properties: Vec::new(),
        },
        signer: alice,
        soap: SoapVersion::Soap12,
    })
    .unwrap();
    let mut body = Vec::new();
    assert_eq!(b.write_to(&mut body).unwrap(), body.len() as u64);
    assert_eq!(b.len(), body.len() as u64);
    (b, body)
}

/// `body` spooled into `dir/spool` in pieces of `piece` bytes.
fn spooled(ct: &str, body: &[u8], dir: &Path, piece: usize) -> Result<SpooledPackage> {
    let path = dir.join("spool");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let mut s = Spooler::new(ct, file, &Limits::default())?;
    for c in body.chunks(piece) {
        s.feed(c)?;
    }
    Ok(s.finish()?.0)
}

fn reads<'a>(signer: &'a Certificate) -> ReadOptions<'a> {
    ReadOptions {
        recipient: None,
        policy: VerifyPolicy {
            signer: Some(signer),
            ..Default::default()
        },
        limits: Limits::default(),
    }
}

#[test]
fn a_file_payload_goes_through_and_stays_in_the_spool() {
    let dir = ls_tests::tempdir("as4-spool");
    let alice = id("alice");
    let data = payload_data(300_000);
    let (b, body) = built(&alice, dir.path(), &data);
    // The in-memory reader accepts what build_file wrote.
    let got = message::read(&b.content_type, &body, &reads(alice.certificate())).unwrap();
    assert_eq!(got.payloads[0].data, data);
    assert_eq!(got.messaging.user_messages[0].info.message_id, b.message_id);
    for piece in [1000, 65_536, 1 << 20] {
        let pkg = spooled(&b.content_type, &body, dir.path(), piece).unwrap();
        let spool = dir.path().join("spool");
        let inc = message::read_spooled(&pkg, &spool, &reads(alice.certificate())).unwrap();
        let p = &inc.payloads[0];
        assert!(p.data.is_empty());
        let f = p.file.as_ref().expect("the payload stays in the spool");
        assert_eq!(f.path, spool);
        assert_eq!(p.len(), data.len() as u64);
        assert_eq!(p.bytes(u64::MAX).unwrap().as_ref(), &data[..]);
        assert_eq!(f.sha256().unwrap(), openssl::sha::sha256(&data));
        let refs = &inc.verified.as_ref().unwrap().references;
        assert_eq!(refs, &got.verified.as_ref().unwrap().references);
        // The service's side.
        let a = exchange::authenticate_spooled(&pkg, &spool, &Limits::default(), |_| {
            Ok(vec![alice.certificate().clone()])
        })
        .unwrap();
        assert_eq!(a.verified.references, *refs);
        // The receipt a service returns for it is what the sender checks.
        let receipt =
            exchange::receipt_for(a.soap, &a.messaging, &a.verified, &alice, "x").unwrap();
        let r = message::read(
            &receipt.content_type,
            &receipt.body,
            &reads(alice.certificate()),
        )
        .unwrap();
        message::check_receipt_of(&r, &b.message_id, &b.references).unwrap();
    }
}

#[test]
fn tampering_is_refused_with_the_in_memory_paths_error() {
    let dir = ls_tests::tempdir("as4-spool");
    let alice = id("alice");
    let mallory = id("mallory");
    let data = payload_data(100_000);
    let (b, body) = built(&alice, dir.path(), &data);
    let at = b.head.len() + 50_000;
    let mut flipped = body.clone();
    flipped[at] ^= 1;
    let mut shorter = body.clone();
    shorter.remove(at);
    let truncated = body[..at].to_vec();
    let no_close = body[..body.len() - b.tail.len() + 2].to_vec();
    for (what, t) in [
        ("a flipped payload byte", flipped),
        ("a byte removed", shorter),
        ("truncated in the payload", truncated),
        ("without its closing delimiter", no_close),
    ] {
        let want = message::read(&b.content_type, &t, &reads(alice.certificate())).unwrap_err();
        let want_auth = exchange::authenticate(&b.content_type, &t, &Limits::default(), |_| {
            Ok(vec![alice.certificate().clone()])
        })
        .map(|_| ())
        .unwrap_err();
        let spool = dir.path().join("spool");
        let got = spooled(&b.content_type, &t, dir.path(), 4096).and_then(|pkg| {
            message::read_spooled(&pkg, &spool, &reads(alice.certificate())).map(|_| ())
        });
        assert_eq!(got.unwrap_err().code(), want.code(), "{what}: {want}");
        let got_auth = spooled(&b.content_type, &t, dir.path(), 4096).and_then(|pkg| {
            exchange::authenticate_spooled(&pkg, &spool, &Limits::default(), |_| {
                Ok(vec![alice.certificate().clone()])
            })
            .map(|_| ())
        });
        assert_eq!(
            got_auth.unwrap_err().code(),
            want_auth.code(),
            "{what}: {want_auth}"
        );
    }
    // A flipped payload byte is a digest mismatch, after the signature itself verified.
    let mut t = body.clone();
    t[at] ^= 1;
    let pkg = spooled(&b.content_type, &t, dir.path(), 4096).unwrap();
    let e = message::read_spooled(&pkg, &dir.path().join("spool"), &reads(alice.certificate()))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::DigestMismatch, "{e}");
    // Someone else's key.
    let pkg = spooled(&b.content_type, &body, dir.path(), 4096).unwrap();
    let e = message::read_spooled(
        &pkg,
        &dir.path().join("spool"),
        &reads(mallory.certificate()),
    )
    .unwrap_err();
    let want = message::read(&b.content_type, &body, &reads(mallory.certificate())).unwrap_err();
    assert_eq!(e.code(), want.code());
}

#[test]
fn gzipped_and_base64_payloads_are_read_in_memory_as_before() {
    let dir = ls_tests::tempdir("as4-spool");
    let alice = id("alice");
    let built = message::build(Outgoing {
        messaging: messaging("alice", "bob"),
        payloads: vec![Payload {
            content_id: "doc@x".into(),
            mime_type: "application/xml".into(),
            data: b"<Invoice>42</Invoice>".repeat(2000),
            compress: true,
            properties: Vec::new(),
        }],
        signer: &alice,
        encrypt_for: None,
        soap: SoapVersion::Soap12,
    })
    .unwrap();
    let pkg = spooled(&built.content_type, &built.body, dir.path(), 777).unwrap();
    assert!(matches!(pkg.attachments[0].body, SpooledBody::File { .. }));
    let inc = message::read_spooled(&pkg, &dir.path().join("spool"), &reads(alice.certificate()))
        .unwrap();
    assert!(inc.payloads[0].file.is_none());
    assert_eq!(inc.payloads[0].data, b"<Invoice>42</Invoice>".repeat(2000));
}

/// A pulled body the spooler refuses (a boundary with a line end, a second start part) is a
/// fault of that message, known by the header found in its head — not a failure of the pull
/// that would stop the client's poll at every offer.
#[test]
fn a_pulled_message_the_spooler_refuses_is_that_messages_fault() {
    use ls_core::transport::{HttpResponse, StubTransport};
    let dir = ls_tests::tempdir("as4-spool-unreadable");
    let alice = id("alice");
    let bob = id("bob");
    let data = payload_data(10_000);
    let (b, body) = built(&alice, dir.path(), &data);
    let boundary = ls_core::mime::param(&b.content_type, "boundary").unwrap();
    let start = ls_core::mime::param(&b.content_type, "start").unwrap();
    // The same body under a boundary parameter that decodes to "<boundary>\n".
    let bad_boundary = format!(
        "multipart/related; type=\"application/soap+xml\"; start=\"{start}\"; boundary*=UTF-8''{boundary}%0A"
    );
    // A copy of the SOAP part (Content-ID = start) added as a third part.
    let soap_end =
        ls_core::bytes::find(&body[2..], format!("--{boundary}").as_bytes()).unwrap() + 2;
    let mut twice = body[..soap_end].to_vec();
    twice.extend_from_slice(&body[..soap_end]);
    twice.extend_from_slice(&body[soap_end..]);
    for (ct, body, code) in [
        (bad_boundary, body.clone(), ErrorCode::MalformedMime),
        (b.content_type.clone(), twice, ErrorCode::MalformedMime),
    ] {
        let t = StubTransport::new(move |_, _| Ok(HttpResponse::new(200, &ct, body.clone())));
        let ex = exchange::Exchange {
            transport: &t,
            me: &bob,
            service: bob.certificate(),
            service_previous: &[],
            soap: SoapVersion::Soap12,
            domain: "layersec.test".into(),
            limits: Limits::default(),
        };
        let spool = dir.path().join("incoming.spool");
        let pulled = ex
            .pull_to("urn:mpc", &spool)
            .expect("a fault of the message, not of the pull")
            .expect("a message");
        let u = pulled.unreadable.as_ref().expect("marked unreadable");
        assert_eq!(u.code, code, "{}", u.message);
        assert_eq!(u.error().code(), code);
        let um = &pulled.messaging.user_messages[0];
        assert_eq!(um.info.message_id, b.message_id);
        assert_eq!(um.from.ids[0].value, "alice");
        assert!(pulled.spooled.is_none() && !spool.exists());
    }
}

/// A (not yet verified) header that says gzip or WS-Security encryption does not make the
/// reader load a large spooled attachment into memory: refused as too large, nothing read.
#[test]
fn large_gzipped_or_encrypted_spooled_payloads_are_refused_unread() {
    let dir = ls_tests::tempdir("as4-spool-transformed");
    let alice = id("alice");
    let built = message::build(Outgoing {
        messaging: messaging("alice", "bob"),
        payloads: vec![Payload {
            content_id: "doc@x".into(),
            mime_type: "application/xml".into(),
            data: b"<Invoice>42</Invoice>".repeat(20),
            compress: true,
            properties: Vec::new(),
        }],
        signer: &alice,
        encrypt_for: None,
        soap: SoapVersion::Soap12,
    })
    .unwrap();
    let mut pkg = spooled(&built.content_type, &built.body, dir.path(), 777).unwrap();
    // As if the attachment were 200 MiB of the spool (the file is not that long: reading it
    // would fail with an I/O error, not TooLarge).
    let SpooledBody::File { len, .. } = &mut pkg.attachments[0].body else {
        panic!("a binary attachment stays in the spool");
    };
    *len = 200 << 20;
    let e = message::read_spooled(&pkg, &dir.path().join("spool"), &reads(alice.certificate()))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
    assert_eq!(
        ls_core::as4::coordination::MessageFailure::of(&e).class(),
        ls_core::as4::coordination::FailureClass::TooLarge
    );
}
