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
                            let res = seal(&doc, signer, std::slice::from_ref(rcpt_c), &so);
                            if signer.is_ec() && signature == SignatureScheme::RsaPss {
                                assert_eq!(res.unwrap_err().code(), ErrorCode::InvalidArgument);
                                continue;
                            }
                            let sealed = res.unwrap();
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

/// After a key rollover, a document sealed for our old certificate (a partner that had not
/// taken the new one yet) still opens, with the old key among our earlier identities.
#[test]
fn earlier_identities_open_what_was_sealed_for_them() {
    let (alice, alice_c) = id("alice", KeyType::EcP256);
    for (old_kt, new_kt) in [
        (KeyType::Rsa(2048), KeyType::EcP256),
        (KeyType::EcP256, KeyType::Rsa(2048)),
    ] {
        let (old, old_c) = id("bob", old_kt);
        let (new, new_c) = id("bob", new_kt);
        let (stranger, _) = id("bob", KeyType::EcP256);
        let to_old = seal(
            b"for the old key",
            &alice,
            &[old_c],
            &SealOptions::default(),
        )
        .unwrap();
        let to_new = seal(
            b"for the new key",
            &alice,
            &[new_c],
            &SealOptions::default(),
        )
        .unwrap();
        let earlier = [stranger.clone(), old.clone()];
        let o = OpenOptions {
            earlier_recipients: &earlier,
            ..opts(&new, &alice_c)
        };
        assert_eq!(open(&to_old, &o).unwrap().document, b"for the old key");
        assert_eq!(open(&to_new, &o).unwrap().document, b"for the new key");
        // Without the old key: not for us, naming our current identity.
        let e = open(&to_old, &opts(&new, &alice_c)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::NotARecipient);
        let e = open(
            &to_old,
            &OpenOptions {
                earlier_recipients: std::slice::from_ref(&stranger),
                ..opts(&new, &alice_c)
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::NotARecipient);
    }
}

#[test]
fn rejections_have_their_own_codes() {
    let (alice, alice_c) = id("alice", KeyType::Rsa(2048));
    let (bob, bob_c) = id("bob", KeyType::Rsa(2048));
    let (mallory, mallory_c) = id("mallory", KeyType::Rsa(2048));
    let doc = invoice(4000);
    let sealed = seal(
        &doc,
        &alice,
        std::slice::from_ref(&bob_c),
        &SealOptions::default(),
    )
    .unwrap();

    // Wrong recipient.
    let e = open(&sealed, &opts(&mallory, &alice_c)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotARecipient, "{e}");
    // Someone else signed (validly) for bob.
    let forged = seal(
        &doc,
        &mallory,
        std::slice::from_ref(&bob_c),
        &SealOptions::default(),
    )
    .unwrap();
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

/// A self-signed certificate for `key` valid from `from` to `to` (Unix seconds), serial 4242:
/// the same key, issuer and serial again and again, at other times.
fn dated_cert(
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
    name: &str,
    from: i64,
    to: i64,
) -> Certificate {
    ls_core::CertificateBuilder::new(name, ls_core::CertPurpose::Party)
        .key(key.clone())
        .serial(4242)
        .validity(from, to)
        .build(None)
        .unwrap()
        .identity
        .certificate()
        .clone()
}

fn rsa_key() -> openssl::pkey::PKey<openssl::pkey::Private> {
    openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap()
}

#[test]
fn expired_and_not_yet_valid_certificates() {
    let day = 86400;
    let now = ls_core::time::now_unix();
    let (bob, bob_c) = id("bob", KeyType::Rsa(2048));

    // We refuse to sign with, or encrypt to, a certificate outside its validity.
    let k = rsa_key();
    let old = Identity::new(
        k.clone(),
        dated_cert(&k, "old", now - 400 * day, now - 30 * day),
        vec![],
    )
    .unwrap();
    let e = seal(
        b"x",
        &old,
        std::slice::from_ref(&bob_c),
        &SealOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::CertExpired, "{e}");
    let future_c = dated_cert(&k, "future", now + 30 * day, now + 400 * day);
    let e = seal(b"x", &bob, &[future_c], &SealOptions::default()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::CertNotYetValid, "{e}");

    // Alice signed while her certificate was valid; the receiver's copy of her certificate (same
    // key, issuer and serial) has since expired: refused unless explicitly allowed.
    let k = rsa_key();
    let alice = Identity::new(
        k.clone(),
        dated_cert(&k, "alice", now - 10 * day, now + 10 * day),
        vec![],
    )
    .unwrap();
    let sealed = seal(
        b"doc",
        &alice,
        std::slice::from_ref(&bob_c),
        &SealOptions::default(),
    )
    .unwrap();
    let alice_expired = dated_cert(&k, "alice", now - 400 * day, now - day);
    let e = open(&sealed, &opts(&bob, &alice_expired)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::CertExpired, "{e}");
    let o = open(
        &sealed,
        &OpenOptions {
            allow_expired: true,
            ..opts(&bob, &alice_expired)
        },
    )
    .unwrap();
    assert_eq!(o.document, b"doc");

    // We refuse to state a signing time outside our own certificate's validity…
    let e = seal(
        b"doc",
        &alice,
        std::slice::from_ref(&bob_c),
        &SealOptions {
            signing_time: Some(now - 20 * day),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::CertNotYetValid, "{e}");
    // …and a receiver refuses a signing time before the validity of its copy of the certificate
    // (here: re-issued with the same key, issuer and serial, valid from two days ago).
    let sealed = seal(
        b"doc",
        &alice,
        std::slice::from_ref(&bob_c),
        &SealOptions {
            signing_time: Some(now - 5 * day),
            ..Default::default()
        },
    )
    .unwrap();
    let alice_recent = dated_cert(&k, "alice", now - 2 * day, now + 10 * day);
    let e = open(&sealed, &opts(&bob, &alice_recent)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::CertNotYetValid, "{e}");
}

#[test]
fn pkcs1_and_pkcs8_pem_keys_load() {
    let g = Identity::generate("legacy", KeyType::Rsa(2048), 30, None).unwrap();
    let key = openssl::pkey::PKey::private_key_from_pem(&g.key_pem).unwrap();
    let pkcs1 = key.rsa().unwrap().private_key_to_pem().unwrap();
    assert!(String::from_utf8_lossy(&pkcs1).contains("BEGIN RSA PRIVATE KEY"));
    let id = Identity::from_pem(&pkcs1, Some(&g.cert_pem), None).unwrap();
    assert_eq!(id.certificate(), g.identity.certificate());
    // Key and certificate in one file, certificate first.
    let mut combined = g.cert_pem.clone();
    combined.extend_from_slice(&g.key_pem);
    assert_eq!(
        Identity::from_pem(&combined, None, None)
            .unwrap()
            .certificate(),
        g.identity.certificate()
    );
}

#[test]
fn cbc_is_refused_when_not_allowed_and_gcm_is_not() {
    let (alice, alice_c) = id("alice", KeyType::EcP256);
    let (bob, bob_c) = id("bob", KeyType::EcP256);
    let doc = invoice(2_000);
    for cipher in [ContentCipher::Aes256Cbc, ContentCipher::Aes256Gcm] {
        let so = SealOptions {
            cipher,
            ..Default::default()
        };
        let sealed = seal(&doc, &alice, std::slice::from_ref(&bob_c), &so).unwrap();
        // Accepted by default.
        assert_eq!(open(&sealed, &opts(&bob, &alice_c)).unwrap().document, doc);
        let strict = OpenOptions {
            policy: cms::InboundPolicy {
                accept_cbc: false,
                ..cms::InboundPolicy::ANY
            },
            ..opts(&bob, &alice_c)
        };
        match cipher {
            ContentCipher::Aes256Cbc => {
                let e = open(&sealed, &strict).unwrap_err();
                assert_eq!(e.code(), ErrorCode::WeakAlgorithm, "{e}");
                assert!(e.to_string().contains("CBC"), "{e}");
            }
            _ => assert_eq!(open(&sealed, &strict).unwrap().document, doc),
        }
    }
}

#[test]
fn compressed_round_trips_around_every_chunk_boundary() {
    // The compressor cuts the MIME entity (a header of ~100 bytes, then the document) into
    // chunks of deflate::CHUNK compressed on all cores; documents around the boundaries, at
    // two levels and in both signature formats, come back byte for byte.
    let (alice, alice_c) = id("alice", KeyType::EcP256);
    let (bob, bob_c) = id("bob", KeyType::EcP256);
    let chunk = ls_core::deflate::CHUNK;
    let text = invoice(3 * chunk + 1);
    for n in [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 1] {
        for (level, signature_format) in [
            (1, ls_core::cms::SignatureFormat::Opaque),
            (6, ls_core::cms::SignatureFormat::Opaque),
            (6, ls_core::cms::SignatureFormat::MultipartSigned),
        ] {
            let so = SealOptions {
                compression: Compression::Always,
                compression_level: level,
                signature_format,
                ..Default::default()
            };
            let sealed = seal(&text[..n], &alice, std::slice::from_ref(&bob_c), &so).unwrap();
            let o = open(&sealed, &opts(&bob, &alice_c)).unwrap();
            assert!(
                o.document == text[..n],
                "{n} bytes, level {level}, {signature_format:?}"
            );
            assert!(o.layers.iter().any(|l| l.starts_with("compressedData")));
        }
    }
}
