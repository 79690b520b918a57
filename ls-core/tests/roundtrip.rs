//! Seal/open round trips through every option, and every rejection the document layer promises.

use ls_core::*;

fn id(name: &str, kt: KeyType) -> (Identity, Certificate) {
    let g = Identity::generate(name, kt, 30, None).unwrap();
    let c = g.identity.certificate().clone();
    (g.identity, c)
}

fn invoice(n: usize) -> Vec<u8> {
    let mut v = b"<?xml version=\"1.0\"?>\n<Invoices>\n".to_vec();
    let mut i = 0;
    while v.len() < n {
        v.extend_from_slice(format!("  <Invoice id=\"{i}\"><Amount currency=\"EUR\">{}.{:02}</Amount><Buyer>ACME Ltd</Buyer></Invoice>\n", i * 37 % 1000, i % 100).as_bytes());
        i += 1;
    }
    v.truncate(n);
    v
}

fn opts<'a>(me: &'a Identity, sender: &'a Certificate) -> OpenOptions<'a> {
    OpenOptions {
        recipient: Some(me),
        sender: Some(sender),
        ..Default::default()
    }
}

#[test]
fn round_trip_every_combination() {
    let (alice, alice_c) = id("alice", KeyType::Rsa(2048));
    let (bob, bob_c) = id("bob", KeyType::Rsa(2048));
    let (carol, carol_c) = id("carol", KeyType::EcP256);
    let doc = invoice(50_000);
    for (signer, signer_c) in [(&alice, &alice_c), (&carol, &carol_c)] {
        for (rcpt, rcpt_c) in [(&bob, &bob_c), (&carol, &carol_c)] {
            for cipher in [ContentCipher::Aes256Gcm, ContentCipher::Aes256Cbc] {
                for compression in [Compression::Auto, Compression::Never, Compression::Always] {
                    for output in [OutputFormat::Der, OutputFormat::Smime, OutputFormat::Pem] {
                        for signature in [SignatureScheme::Pkcs1v15, SignatureScheme::RsaPss] {
                            let so = SealOptions {
                                filename: Some("invoice.xml".into()),
                                cipher,
                                compression,
                                output,
                                signature,
                                ..Default::default()
                            };
                            let sealed =
                                seal(&doc, signer, std::slice::from_ref(rcpt_c), &so).unwrap();
                            let o = open(&sealed, &opts(rcpt, signer_c)).unwrap();
                            assert_eq!(o.document, doc);
                            assert_eq!(o.filename.as_deref(), Some("invoice.xml"));
                            assert_eq!(o.mime_type, "application/xml");
                            assert_eq!(o.signer.as_ref(), Some(signer_c));
                            assert!(o.encrypted);
                            assert!(o.signing_time.is_some());
                            let compressed =
                                o.layers.iter().any(|l| l.starts_with("compressedData"));
                            assert_eq!(
                                compressed,
                                compression != Compression::Never,
                                "{:?}",
                                o.layers
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn multiple_recipients_and_self() {
    let (alice, alice_c) = id("alice", KeyType::Rsa(2048));
    let (bob, bob_c) = id("bob", KeyType::Rsa(2048));
    let (carol, carol_c) = id("carol", KeyType::EcP256);
    let so = SealOptions {
        encrypt_to_self: true,
        ..Default::default()
    };
    let sealed = seal(b"hello", &alice, &[bob_c.clone(), carol_c.clone()], &so).unwrap();
    for me in [&alice, &bob, &carol] {
        let o = open(&sealed, &opts(me, &alice_c)).unwrap();
        assert_eq!(o.document, b"hello");
    }
}

#[test]
fn rejections_have_their_own_codes() {
    let (alice, alice_c) = id("alice", KeyType::Rsa(2048));
    let (bob, bob_c) = id("bob", KeyType::Rsa(2048));
    let (mallory, mallory_c) = id("mallory", KeyType::Rsa(2048));
    let doc = invoice(4000);
    let sealed = seal(&doc, &alice, &[bob_c.clone()], &SealOptions::default()).unwrap();

    // Wrong recipient.
    let e = open(&sealed, &opts(&mallory, &alice_c)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotARecipient, "{e}");
    // Someone else signed (validly) for bob.
    let forged = seal(&doc, &mallory, &[bob_c.clone()], &SealOptions::default()).unwrap();
    let e = open(&forged, &opts(&bob, &alice_c)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::SignerMismatch, "{e}");
    // Tampered ciphertext (GCM tag fails).
    let mut t = sealed.clone();
    let n = t.len();
    t[n - 100] ^= 1;
    let e = open(&t, &opts(&bob, &alice_c)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::DecryptFailed, "{e}");
    // Tampered tag.
    let mut t = sealed.clone();
    t[n - 1] ^= 1;
    assert_eq!(
        open(&t, &opts(&bob, &alice_c)).unwrap_err().code(),
        ErrorCode::DecryptFailed
    );
    // Truncated.
    let e = open(&sealed[..n / 2], &opts(&bob, &alice_c)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Truncated, "{e}");
    // Garbage.
    let e = open(b"\x00\x01garbage garbage", &opts(&bob, &alice_c)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Malformed, "{e}");
    let e = open(b"", &opts(&bob, &alice_c)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Truncated, "{e}");
    let _ = mallory_c;
}
