//! Bad and hostile input: every case fails closed with its own error code and nothing panics.

use ls_core::asn1;
use ls_core::*;

fn id(name: &str) -> (Identity, Certificate) {
    let g = Identity::generate(name, KeyType::Rsa(2048), 30, None).unwrap();
    let c = g.identity.certificate().clone();
    (g.identity, c)
}

fn opts<'a>(me: &'a Identity, sender: &'a Certificate) -> OpenOptions<'a> {
    OpenOptions {
        recipient: Some(me),
        sender: Some(sender),
        ..Default::default()
    }
}

#[test]
fn decompression_bomb_stops_at_the_limit() {
    let (alice, alice_c) = id("alice");
    let (bob, bob_c) = id("bob");
    // 64 MiB of zeros compress to about 64 KiB.
    let bomb = vec![0u8; 64 << 20];
    let sealed = seal(
        &bomb,
        &alice,
        &[bob_c],
        &SealOptions {
            compression: Compression::Always,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(sealed.len() < 1 << 20, "bomb is {} bytes", sealed.len());
    let e = open(
        &sealed,
        &OpenOptions {
            max_output: 8 << 20,
            ..opts(&bob, &alice_c)
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::ExpansionTooLarge, "{e}");
    assert!(e.to_string().contains("decompression bomb"), "{e}");
    // Within the (default, 1 GiB) limit it opens.
    assert_eq!(
        open(&sealed, &opts(&bob, &alice_c)).unwrap().document.len(),
        64 << 20
    );
}

/// `levels` nested S/MIME entities, each carrying a ContentInfo(data) with the next inside.
fn nested(levels: usize) -> Vec<u8> {
    let mut inner = b"Content-Type: text/plain\r\n\r\nhello".to_vec();
    for _ in 0..levels {
        let ci = asn1::seq(&[
            &asn1::tlv(
                asn1::tag::OID,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01],
            ),
            &asn1::tlv(asn1::tag::ctx(0), &asn1::octet_string(&inner)),
        ]);
        let mut e = b"Content-Type: application/pkcs7-mime; smime-type=data\r\nContent-Transfer-Encoding: binary\r\n\r\n".to_vec();
        e.extend_from_slice(&ci);
        inner = e;
    }
    inner
}

#[test]
fn deep_nesting_is_refused() {
    let ok = OpenOptions {
        allow_unsigned: true,
        ..Default::default()
    };
    assert_eq!(open(&nested(3), &ok).unwrap().document, b"hello");
    let e = open(&nested(40), &ok).unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooDeep, "{e}");
}

#[test]
fn unknown_content_cipher_is_named() {
    let (alice, alice_c) = id("alice");
    let (bob, bob_c) = id("bob");
    let mut sealed = seal(b"doc", &alice, &[bob_c], &SealOptions::default()).unwrap();
    // aes256-GCM is 2.16.840.1.101.3.4.1.46: turn it into the unknown ...4.1.127.
    let gcm = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2e];
    let at = sealed.windows(gcm.len()).position(|w| w == gcm).unwrap();
    sealed[at + 8] = 0x7f;
    let e = open(&sealed, &opts(&bob, &alice_c)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnsupportedAlgorithm, "{e}");
    assert!(e.to_string().contains("2.16.840.1.101.3.4.1.127"), "{e}");
}

#[test]
fn garbage_and_truncation() {
    let (alice, alice_c) = id("alice");
    let (bob, bob_c) = id("bob");
    let sealed = seal(b"doc", &alice, &[bob_c], &SealOptions::default()).unwrap();
    let mut trailing = sealed.clone();
    trailing.extend_from_slice(b"trailing junk");
    assert_eq!(
        open(&trailing, &opts(&bob, &alice_c)).unwrap_err().code(),
        ErrorCode::Malformed
    );
    for cut in [1, 2, 10, sealed.len() / 3, sealed.len() - 1] {
        let e = open(&sealed[..cut], &opts(&bob, &alice_c)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Truncated, "cut at {cut}: {e}");
    }
    // A length that claims more than exists.
    let e = open(
        &[0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x06],
        &opts(&bob, &alice_c),
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Truncated, "{e}");
    // Bad base64 in an S/MIME entity.
    let e = open(
        b"Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!",
        &opts(&bob, &alice_c),
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::MalformedMime, "{e}");
}

#[test]
fn random_mutations_never_panic_nor_pass_altered_content() {
    let (alice, alice_c) = id("alice");
    let (bob, bob_c) = id("bob");
    let doc = b"<Invoice><Amount>100.00</Amount></Invoice>".repeat(50);
    for output in [OutputFormat::Der, OutputFormat::Smime] {
        for cipher in [ContentCipher::Aes256Gcm, ContentCipher::Aes256Cbc] {
            let sealed = seal(
                &doc,
                &alice,
                std::slice::from_ref(&bob_c),
                &SealOptions {
                    output,
                    cipher,
                    ..Default::default()
                },
            )
            .unwrap();
            let mut state: u64 = 0x9e3779b97f4a7c15;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            for _ in 0..300 {
                let mut m = sealed.clone();
                for _ in 0..(next() % 3 + 1) {
                    let i = (next() as usize) % m.len();
                    m[i] ^= 1 << (next() % 8);
                }
                if let Ok(o) = open(&m, &opts(&bob, &alice_c)) {
                    // Only bytes no signature covers may change (e.g. S/MIME headers): the
                    // document itself must be the one Alice signed.
                    assert_eq!(o.document, doc);
                }
            }
        }
    }
}

#[test]
fn key_usage_is_enforced() {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::x509::extension::KeyUsage;
    use openssl::x509::{X509Builder, X509NameBuilder};
    let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let mut n = X509NameBuilder::new().unwrap();
    n.append_entry_by_text("CN", "sign-only").unwrap();
    let n = n.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&n).unwrap();
    b.set_issuer_name(&n).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(10).unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let sign_only = Certificate::from_x509(b.build()).unwrap();
    let (alice, _) = id("alice");
    let e = seal(b"x", &alice, &[sign_only], &SealOptions::default()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::CertKeyUsage, "{e}");
}

#[test]
fn wrong_key_for_the_named_recipient() {
    // The message names Bob, but the key given is not Bob's: the identity itself refuses to exist.
    let g = Identity::generate("bob", KeyType::Rsa(2048), 30, None).unwrap();
    let other = Identity::generate("eve", KeyType::Rsa(2048), 30, None).unwrap();
    let e = Identity::from_pem(&other.key_pem, Some(&g.cert_pem), None).unwrap_err();
    assert_eq!(e.code(), ErrorCode::KeyCertMismatch, "{e}");
}

#[test]
fn output_limit_applies_without_compression_too() {
    let (alice, alice_c) = id("alice");
    let (bob, bob_c) = id("bob");
    let doc: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let sealed = seal(
        &doc,
        &alice,
        &[bob_c],
        &SealOptions {
            compression: Compression::Never,
            ..Default::default()
        },
    )
    .unwrap();
    let e = open(
        &sealed,
        &OpenOptions {
            max_output: 50_000,
            ..opts(&bob, &alice_c)
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
    assert_eq!(
        open(
            &sealed,
            &OpenOptions {
                max_output: 200_000,
                ..opts(&bob, &alice_c)
            }
        )
        .unwrap()
        .document,
        doc
    );
}

#[test]
fn the_limit_is_the_documents_and_is_checked_before_decrypting() {
    let (alice, alice_c) = id("alice");
    let (bob, bob_c) = id("bob");
    let (carol, _) = id("carol");
    let limit = 300_000usize;
    for compression in [Compression::Never, Compression::Always] {
        let doc: Vec<u8> = (0..limit).map(|i| (i % 251) as u8).collect();
        let sealed = seal(
            &doc,
            &alice,
            std::slice::from_ref(&bob_c),
            &SealOptions {
                compression,
                filename: Some("exact.bin".into()),
                ..Default::default()
            },
        )
        .unwrap();
        // Exactly the limit opens, although the layers around it are larger.
        let o = OpenOptions {
            max_output: limit as u64,
            ..opts(&bob, &alice_c)
        };
        assert_eq!(open(&sealed, &o).unwrap().document, doc, "{compression:?}");
        let e = open(
            &sealed,
            &OpenOptions {
                max_output: limit as u64 - 1,
                ..opts(&bob, &alice_c)
            },
        )
        .unwrap_err();
        assert!(
            matches!(e.code(), ErrorCode::TooLarge | ErrorCode::ExpansionTooLarge),
            "{e}"
        );
    }
    // Encrypted content that cannot hold a document within the limit is refused before any
    // key is tried: a stranger (not a recipient) is told it is too large.
    let big = vec![7u8; 2 << 20];
    let sealed = seal(
        &big,
        &alice,
        &[bob_c],
        &SealOptions {
            compression: Compression::Never,
            ..Default::default()
        },
    )
    .unwrap();
    let e = open(
        &sealed,
        &OpenOptions {
            max_output: 1 << 20,
            ..opts(&carol, &alice_c)
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
    assert!(e.to_string().contains("encrypted content"), "{e}");
}

#[test]
fn inspect_summary_reports_a_failed_verification() {
    let (alice, _) = id("alice");
    let (bob, bob_c) = id("bob");
    let (_, carol_c) = id("carol");
    let sealed = seal(b"doc", &alice, &[bob_c], &SealOptions::default()).unwrap();
    let j = inspect(
        &sealed,
        &OpenOptions {
            recipient: Some(&bob),
            sender: Some(&carol_c),
            ..Default::default()
        },
    );
    assert_eq!(j.verified, Some(false), "{}", j.to_json_pretty());
    assert_eq!(j.signed, Some(true), "{}", j.to_json_pretty());
    assert_eq!(
        j.verification_error().map(|e| e.code),
        Some(ErrorCode::SignerMismatch),
        "{}",
        j.to_json_pretty()
    );
    let j = inspect(
        &sealed,
        &OpenOptions {
            recipient: Some(&bob),
            ..Default::default()
        },
    );
    assert_eq!(j.verified, None);
}

#[test]
fn pss_with_an_ec_key_is_refused() {
    let g = Identity::generate("ec", KeyType::EcP256, 30, None).unwrap();
    let (_, bob_c) = id("bob");
    let e = seal(
        b"x",
        &g.identity,
        &[bob_c],
        &SealOptions {
            signature: SignatureScheme::RsaPss,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    let e = Identity::from_pem(&g.key_pem, None, None).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
}
