//! Per-partner profiles in the document layer: what `legacy-as2` seals (multipart/signed,
//! AES-256-CBC, RSA PKCS#1 v1.5 key transport) opens with our own `open`, each inbound policy
//! refuses what it should, the individual settings work alone, and EC keys are refused where
//! a legacy partner could not use them. (openssl reads the same output in
//! tests/interop_openssl.rs; pyas2lib in ls-cli/tests/interop_pyas2lib.rs.)

use ls_core::cms::inspect::{Layer, Recipient};
use ls_core::cms::receipt::{sign_receipt, verify_receipt};
use ls_core::cms::{seal_with_evidence, InboundPolicy, KeyTransport, Profile, SignatureFormat};
use ls_core::*;
use std::sync::OnceLock;

fn id(name: &str, kt: KeyType) -> Identity {
    Identity::generate(name, kt, 30, None).unwrap().identity
}

/// RSA-2048 and EC identities, made once (RSA key generation is the slow part).
struct Ids {
    alice: Identity,
    bob: Identity,
    alice_ec: Identity,
    bob_ec: Identity,
}

fn ids() -> &'static Ids {
    static IDS: OnceLock<Ids> = OnceLock::new();
    IDS.get_or_init(|| Ids {
        alice: id("alice", KeyType::Rsa(2048)),
        bob: id("bob", KeyType::Rsa(2048)),
        alice_ec: id("alice-ec", KeyType::EcP256),
        bob_ec: id("bob-ec", KeyType::EcP256),
    })
}

fn invoice(n: usize) -> Vec<u8> {
    let mut v = b"<?xml version=\"1.0\"?>\n<Invoices>\n".to_vec();
    let mut i = 0;
    while v.len() < n {
        v.extend_from_slice(
            format!(
                "  <Invoice id=\"{i}\"><Amount>{}.00</Amount></Invoice>\n",
                i * 37 % 1000
            )
            .as_bytes(),
        );
        i += 1;
    }
    v.truncate(n);
    v
}

/// Bytes that do not compress and hold every value (xorshift).
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn opts<'a>(me: &'a Identity, from: &'a Identity, policy: InboundPolicy) -> OpenOptions<'a> {
    OpenOptions {
        recipient: Some(me),
        sender: Some(from.certificate()),
        policy,
        ..Default::default()
    }
}

fn legacy(filename: &str) -> SealOptions {
    SealOptions {
        filename: Some(filename.into()),
        ..Profile::LegacyAs2.seal_options()
    }
}

#[test]
fn legacy_as2_opens_with_its_own_policy_and_says_what_it_is() {
    let i = ids();
    // Text, bytes that do not compress (and hold every byte value: bare CR and LF included,
    // which the canonical form must survive) and an empty document; legacy-as2 compresses
    // them all, --no-compress (Compression::Never) does not.
    let binary = noise(3000);
    for (doc, compressed) in [
        (invoice(20_000), true),
        (binary.clone(), true),
        (Vec::new(), true),
        (binary, false),
        (invoice(2_000), false),
    ] {
        let so = SealOptions {
            compression: if compressed {
                Compression::Always
            } else {
                Compression::Never
            },
            ..legacy("d.bin")
        };
        let sealed = seal(&doc, &i.alice, &[i.bob.certificate().clone()], &so).unwrap();
        let o = open(
            &sealed,
            &opts(&i.bob, &i.alice, Profile::LegacyAs2.inbound_policy()),
        )
        .unwrap();
        assert_eq!(o.document, doc);
        assert_eq!(o.filename.as_deref(), Some("d.bin"));
        assert_eq!(o.signer.as_ref(), Some(i.alice.certificate()));
        assert!(o.encrypted);
        let mut want = vec![
            "envelopedData (aes256-CBC, key transport rsaEncryption)",
            "multipart/signed",
            "signedData (sha256 sha256WithRSAEncryption, by CN=alice)",
        ];
        if compressed {
            want.extend(["S/MIME entity (compressed-data)", "compressedData (zlib)"]);
        }
        assert_eq!(o.layers, want, "{} bytes", doc.len());

        // inspect: EnvelopedData for bob by PKCS#1 v1.5, multipart/signed with sha-256, a
        // detached signature.
        let r = cms::inspect(&sealed, &opts(&i.bob, &i.alice, InboundPolicy::ANY));
        assert!(
            r.complete && r.verified == Some(true),
            "{}",
            r.to_json_pretty()
        );
        let Layer::EnvelopedData(env) = &r.layers[0] else {
            panic!("{}", r.to_json_pretty())
        };
        assert_eq!(env.content_encryption, "aes256-CBC");
        assert!(matches!(&env.recipients[..],
            [Recipient::KeyTransport { algorithm, .. }] if algorithm == "rsaEncryption"));
        assert!(r.layers.iter().any(|l| matches!(l,
            Layer::MultipartSigned { micalg: Some(m), .. } if m == "sha-256")));
        assert!(r
            .layers
            .iter()
            .any(|l| matches!(l, Layer::SignedData(s) if s.detached)));
    }
}

#[test]
fn each_setting_of_the_modern_policy_refuses_its_part_of_legacy_as2() {
    let i = ids();
    let doc = invoice(3000);
    let sealed = seal(
        &doc,
        &i.alice,
        &[i.bob.certificate().clone()],
        &legacy("a.xml"),
    )
    .unwrap();
    let e = open(
        &sealed,
        &opts(&i.bob, &i.alice, Profile::Modern.inbound_policy()),
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::WeakAlgorithm, "{e}");

    // One legacy setting at a time: refused by its own switch, accepted by the others.
    type Refuse = fn(&mut InboundPolicy);
    let cases: [(SealOptions, Refuse, &str); 3] = [
        (
            SealOptions {
                cipher: ContentCipher::Aes256Cbc,
                ..Default::default()
            },
            |p| p.accept_cbc = false,
            "CBC",
        ),
        (
            SealOptions {
                key_transport: KeyTransport::RsaPkcs1v15,
                ..Default::default()
            },
            |p| p.accept_rsa_pkcs1v15 = false,
            "PKCS#1 v1.5",
        ),
        (
            SealOptions {
                signature_format: SignatureFormat::MultipartSigned,
                ..Default::default()
            },
            |p| p.accept_multipart_signed = false,
            "multipart/signed",
        ),
    ];
    for (so, refuse, says) in cases {
        let sealed = seal(&doc, &i.alice, &[i.bob.certificate().clone()], &so).unwrap();
        let mut strict = InboundPolicy::ANY;
        refuse(&mut strict);
        let e = open(&sealed, &opts(&i.bob, &i.alice, strict)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::WeakAlgorithm, "{says}: {e}");
        assert!(e.to_string().contains(says), "{says}: {e}");
        // 3DES alone refused changes nothing here.
        let no_3des = InboundPolicy {
            accept_3des: false,
            ..InboundPolicy::ANY
        };
        assert_eq!(
            open(&sealed, &opts(&i.bob, &i.alice, no_3des))
                .unwrap()
                .document,
            doc
        );
    }
}

#[test]
fn oaep_sha1_key_transport() {
    let i = ids();
    let doc = invoice(500);
    let so = SealOptions {
        key_transport: KeyTransport::RsaOaepSha1,
        ..Profile::LegacyAs2.seal_options()
    };
    let sealed = seal(&doc, &i.alice, &[i.bob.certificate().clone()], &so).unwrap();
    // OAEP is not legacy: the modern policy refuses the CBC and multipart/signed around it,
    // not the key transport.
    let o = open(
        &sealed,
        &opts(
            &i.bob,
            &i.alice,
            InboundPolicy {
                accept_rsa_pkcs1v15: false,
                ..InboundPolicy::ANY
            },
        ),
    )
    .unwrap();
    assert_eq!(o.document, doc);
    assert_eq!(
        o.layers[0],
        "envelopedData (aes256-CBC, key transport id-RSAES-OAEP)"
    );
}

#[test]
fn legacy_needs_rsa_and_says_so() {
    let i = ids();
    let doc = b"<Invoice/>";
    // Our identity is EC.
    let e = seal(
        doc,
        &i.alice_ec,
        &[i.bob.certificate().clone()],
        &legacy("a.xml"),
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(
        e.to_string()
            .contains("legacy-as2 needs an RSA identity (this one is EC P-256)"),
        "{e}"
    );
    // The partner's certificate is EC.
    let e = seal(
        doc,
        &i.alice,
        &[i.bob_ec.certificate().clone()],
        &legacy("a.xml"),
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(
        e.to_string()
            .contains("legacy-as2 needs an RSA certificate (the one of CN=bob-ec is EC P-256)"),
        "{e}"
    );
    // The individual legacy key transports alone: EC recipients have no RSA key to use.
    for (kt, name) in [
        (KeyTransport::RsaPkcs1v15, "RSA PKCS#1 v1.5"),
        (KeyTransport::RsaOaepSha1, "RSA-OAEP-SHA-1"),
    ] {
        let so = SealOptions {
            key_transport: kt,
            ..Default::default()
        };
        let e = seal(doc, &i.alice, &[i.bob_ec.certificate().clone()], &so).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(
            e.to_string().contains(&format!(
                "{name} key transport needs an RSA certificate (the one of CN=bob-ec is EC P-256)"
            )),
            "{e}"
        );
    }
    // Our own copy counts as a recipient too.
    let so = SealOptions {
        encrypt_to_self: true,
        ..legacy("a.xml")
    };
    seal(doc, &i.alice, &[i.bob.certificate().clone()], &so).unwrap();
    // multipart/signed alone is no legacy constraint: ECDSA signs it, ECDH encrypts it.
    let so = SealOptions {
        signature_format: SignatureFormat::MultipartSigned,
        ..Default::default()
    };
    let sealed = seal(doc, &i.alice_ec, &[i.bob_ec.certificate().clone()], &so).unwrap();
    let o = open(&sealed, &opts(&i.bob_ec, &i.alice_ec, InboundPolicy::ANY)).unwrap();
    assert_eq!(o.document, doc);
    assert!(
        o.layers.iter().any(|l| l == "multipart/signed"),
        "{:?}",
        o.layers
    );
}

#[test]
fn the_partner_comes_first_among_recipients() {
    // Some AS2 software (pyas2lib) tries only the first RecipientInfo: ours must not be it,
    // whatever the DER order of the two would be.
    let i = ids();
    let carol = id("carol", KeyType::Rsa(2048));
    for (from, to) in [(&i.alice, &i.bob), (&carol, &i.bob), (&i.bob, &carol)] {
        let so = SealOptions {
            encrypt_to_self: true,
            ..legacy("a.xml")
        };
        let sealed = seal(b"x", from, &[to.certificate().clone()], &so).unwrap();
        let r = cms::inspect(&sealed, &OpenOptions::default());
        let Layer::EnvelopedData(env) = &r.layers[0] else {
            panic!("{}", r.to_json_pretty())
        };
        let ids: Vec<&str> = env
            .recipients
            .iter()
            .map(|r| match r {
                Recipient::KeyTransport { id, .. } => id.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(
            ids[0].contains(to.certificate().subject()),
            "{ids:?} should start with {}",
            to.certificate().subject()
        );
        // Both can open it.
        for me in [from, to] {
            let o = open(&sealed, &opts(me, from, InboundPolicy::ANY)).unwrap();
            assert_eq!(o.document, b"x");
        }
    }
}

#[test]
fn a_signed_receipt_answers_a_multipart_signed_document() {
    let i = ids();
    let so = SealOptions {
        receipt_request: Some(b"MSG-7".to_vec()),
        ..legacy("a.xml")
    };
    let s =
        seal_with_evidence(b"<Invoice/>", &i.alice, &[i.bob.certificate().clone()], &so).unwrap();
    let o = open(&s.sealed, &opts(&i.bob, &i.alice, InboundPolicy::ANY)).unwrap();
    // The evidence is the detached signature, the same on both sides.
    assert_eq!(o.signed_data.as_deref(), Some(s.signed_data.as_slice()));
    assert!(s.signed_data.len() < 4096, "{} bytes", s.signed_data.len());
    assert_eq!(
        o.receipt_request.as_ref().unwrap().content_identifier,
        b"MSG-7"
    );
    let receipt =
        sign_receipt(o.signed_data.as_ref().unwrap(), &i.bob, &Default::default()).unwrap();
    let v = verify_receipt(&receipt, &s.signed_data, &[i.bob.certificate().clone()]).unwrap();
    assert_eq!(v.content_identifier, b"MSG-7");
}

#[test]
fn tampered_legacy_messages_never_open_as_another_document() {
    // AES-CBC has no integrity of its own: a flipped ciphertext bit changes one plaintext byte
    // and garbles the block before it. Wherever that lands (the signed part, the signature,
    // a delimiter, the padding), the signature must catch it or the MIME must break.
    let i = ids();
    let doc = noise(1000);
    let so = SealOptions {
        compression: Compression::Never,
        ..legacy("b.bin")
    };
    let sealed = seal(&doc, &i.alice, &[i.bob.certificate().clone()], &so).unwrap();
    let n = sealed.len();
    for at in (400..n).step_by(97).chain([n - 1, n - 17, n - 33]) {
        let mut t = sealed.clone();
        t[at] ^= 0x01;
        match open(&t, &opts(&i.bob, &i.alice, InboundPolicy::ANY)) {
            Ok(o) => assert_eq!(o.document, doc, "byte {at}: opened as another document"),
            Err(e) => assert_ne!(e.code(), ErrorCode::Internal, "byte {at}: {e}"),
        }
    }
}

#[test]
fn a_bad_pkcs1v15_key_is_not_told_apart_from_bad_content() {
    // RFC 3218 §2.3.2: a PKCS#1 v1.5 padding failure becomes a random content key, so the
    // failure is the content's, not the key's (no Bleichenbacher oracle in the error code).
    // OAEP keeps its own error.
    let i = ids();
    let doc = invoice(4000);
    for (kt, alg_tail, want) in [
        (
            KeyTransport::RsaPkcs1v15,
            &[0x01, 0x01, 0x01, 0x05, 0x00][..],
            None,
        ),
        (
            KeyTransport::RsaOaepSha1,
            &[0x01, 0x01, 0x07, 0x30, 0x00][..],
            Some(ErrorCode::KeyUnwrapFailed),
        ),
    ] {
        let so = SealOptions {
            key_transport: kt,
            ..legacy("a.xml")
        };
        let sealed = seal(&doc, &i.alice, &[i.bob.certificate().clone()], &so).unwrap();
        // The encryptedKey: the 256-byte OCTET STRING after the keyEncryptionAlgorithm.
        let mut pat = alg_tail.to_vec();
        pat.extend_from_slice(&[0x04, 0x82, 0x01, 0x00]);
        let at = sealed
            .windows(pat.len())
            .position(|w| w == pat.as_slice())
            .expect("the encrypted key")
            + pat.len();
        for flip in [0usize, 1, 100, 255] {
            let mut t = sealed.clone();
            t[at + flip] ^= 0x40;
            let e = open(&t, &opts(&i.bob, &i.alice, InboundPolicy::ANY)).unwrap_err();
            match want {
                Some(code) => assert_eq!(e.code(), code, "{kt:?}: {e}"),
                None => assert!(
                    e.code() != ErrorCode::KeyUnwrapFailed && e.code() != ErrorCode::Internal,
                    "{kt:?}: {e}"
                ),
            }
        }
        // Unaltered, it opens.
        assert_eq!(
            open(&sealed, &opts(&i.bob, &i.alice, InboundPolicy::ANY))
                .unwrap()
                .document,
            doc
        );
    }
}
