//! CMS/S-MIME objects made by other implementations (../shared/fixtures/cms, see its README):
//! Mendelson AS2 and IBM Sterling captures, the RFC 9216 / draft-ireland examples, OpenSSL's own
//! AuthEnvelopedData vectors and BouncyCastle's ECDH message. Each test prints SKIPPED and
//! returns when the fixtures are absent (and fails under `LS_REQUIRE_FIXTURES=1`).

use ls_core::*;
use ls_tests::*;
use std::path::Path;

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn unsigned_ok<'a>(me: &'a Identity) -> OpenOptions<'a> {
    OpenOptions {
        recipient: Some(me),
        allow_unsigned: true,
        ..Default::default()
    }
}

// ------------------------------------------------------------------------------------------------
// Mendelson AS2 (pyas2lib captures): 3DES, BER indefinite lengths, multipart/signed,
// compressed inside signed inside encrypted.

struct Mendelson {
    dir: std::path::PathBuf,
    receiver: Identity,
    sender: Certificate,
    payload: Vec<u8>,
}

fn mendelson() -> Option<Mendelson> {
    let dir = fixture_dir("cms/pyas2lib")?;
    // The receiver's key as encrypted PKCS#8 + certificate (password "test").
    let receiver = Identity::from_pem(&read(&dir, "cert_test.pem"), None, Some("test")).unwrap();
    let sender = Certificate::load(dir.join("cert_mecas2_public.pem")).unwrap();
    let payload = read(&dir, "payload.txt");
    Some(Mendelson {
        dir,
        receiver,
        sender,
        payload,
    })
}

#[test]
fn mendelson_pkcs12_with_rc2_loads() {
    let Some(m) = mendelson() else { return };
    let p12 = Identity::from_pkcs12(&read(&m.dir, "cert_test.p12"), "test").unwrap();
    assert_eq!(p12.certificate(), m.receiver.certificate());
    let e = Identity::from_pkcs12(&read(&m.dir, "cert_test.p12"), "wrong").unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadPassword);
}

#[test]
fn mendelson_encrypted_3des_ber() {
    let Some(m) = mendelson() else { return };
    let msg = read(&m.dir, "mecas2_encrypted.as2");
    let o = open(&msg, &unsigned_ok(&m.receiver)).unwrap();
    assert_eq!(o.document, m.payload);
    assert!(o.encrypted && o.signer.is_none());
    assert!(
        o.layers.iter().any(|l| l.contains("des-ede3-cbc")),
        "{:?}",
        o.layers
    );
    // Unsigned is refused unless allowed.
    let e = open(
        &msg,
        &OpenOptions {
            recipient: Some(&m.receiver),
            sender: Some(&m.sender),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unsigned, "{e}");
    // Policy can refuse 3DES (and with it, the RSA PKCS#1 v1.5 key transport all of these
    // use, which is checked after the cipher).
    for policy in [
        cms::InboundPolicy {
            accept_3des: false,
            ..cms::InboundPolicy::ANY
        },
        cms::Profile::Modern.inbound_policy(),
    ] {
        let e = open(
            &msg,
            &OpenOptions {
                policy,
                ..unsigned_ok(&m.receiver)
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::WeakAlgorithm, "{e}");
        assert!(e.to_string().contains("des-ede3-cbc"), "{e}");
    }
    // AES-CBC alone refused: 3DES still opens (its own setting).
    let o = open(
        &msg,
        &OpenOptions {
            policy: cms::InboundPolicy {
                accept_cbc: false,
                ..cms::InboundPolicy::ANY
            },
            ..unsigned_ok(&m.receiver)
        },
    )
    .unwrap();
    assert_eq!(o.document, m.payload);
}

#[test]
fn mendelson_signed_encrypted_verifies_against_mendelson() {
    let Some(m) = mendelson() else { return };
    for name in [
        "mecas2_signed_encrypted.as2",
        "mecas2_compressed_signed_encrypted.as2",
    ] {
        let msg = read(&m.dir, name);
        let o = open(
            &msg,
            &OpenOptions {
                recipient: Some(&m.receiver),
                sender: Some(&m.sender),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(o.document, m.payload, "{name}");
        assert_eq!(o.signer.as_ref(), Some(&m.sender), "{name}");
        assert!(o.signing_time.is_some(), "{name}");
        assert!(
            o.layers.iter().any(|l| l == "multipart/signed"),
            "{name}: {:?}",
            o.layers
        );
        if name.contains("compressed") {
            assert!(
                o.layers.iter().any(|l| l.starts_with("compressedData")),
                "{name}: {:?}",
                o.layers
            );
        }
        // Any other expected partner is refused.
        let e = open(
            &msg,
            &OpenOptions {
                recipient: Some(&m.receiver),
                sender: Some(m.receiver.certificate()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::SignerMismatch, "{name}: {e}");
    }
}

#[test]
fn mendelson_signed_compressed_unencrypted() {
    let Some(m) = mendelson() else { return };
    let msg = read(&m.dir, "mecas2_compressed.as2");
    let o = open(
        &msg,
        &OpenOptions {
            sender: Some(&m.sender),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(o.document, m.payload);
    assert!(!o.encrypted);
    // With a partner store instead of one pinned certificate.
    let mut store = CertStore::new();
    store.add_partner(m.sender.clone(), Some("mecas2"));
    let o = open(
        &msg,
        &OpenOptions {
            partners: Some(&store),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(o.signer.as_ref(), Some(&m.sender));
    // An empty store knows nobody.
    let e = open(
        &msg,
        &OpenOptions {
            partners: Some(&CertStore::new()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnknownSigner, "{e}");
}

#[test]
fn mendelson_signed_capture_with_altered_line_ends_is_rejected() {
    // This stored capture lost the CRs of its signed part (README: it does not verify byte-exact;
    // neither CRLF re-canonicalisation nor re-serialising the part restores the signed bytes).
    // A byte-exact verifier must refuse it as altered content.
    let Some(m) = mendelson() else { return };
    let msg = read(&m.dir, "mecas2_signed.as2");
    let e = open(
        &msg,
        &OpenOptions {
            sender: Some(&m.sender),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::DigestMismatch, "{e}");
}

#[test]
fn mendelson_tampered_payload_is_rejected() {
    let Some(m) = mendelson() else { return };
    let mut msg = read(&m.dir, "mecas2_compressed.as2");
    // Flip a byte inside the signed (compressed) part, well past the headers.
    let sig_at = msg
        .windows(24)
        .rposition(|w| w == b"application/pkcs7-signat")
        .unwrap();
    let at = sig_at - 200;
    msg[at] ^= 0x01;
    let e = open(
        &msg,
        &OpenOptions {
            sender: Some(&m.sender),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::DigestMismatch, "{e}");
}

#[test]
fn sterling_sha1_signature_is_refused_by_default() {
    // IBM Sterling B2Bi: multipart/signed with a SHA-1 digest. SHA-1 is refused unless allowed.
    // (With SHA-1 allowed the signature still fails: the capture stored the binary signature
    // part with altered line ends, and its certificate expired on 2020-06-23.)
    let Some(m) = mendelson() else { return };
    let msg = read(&m.dir, "sb2bi_signed_cmp.msg");
    let sterling = Certificate::load(m.dir.join("cert_sb2bi_public.pem")).unwrap();
    let e = open(
        &msg,
        &OpenOptions {
            sender: Some(&sterling),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::WeakAlgorithm, "{e}");
}

// ------------------------------------------------------------------------------------------------
// draft-ireland-examples-cms with the RFC 9216 keys

struct Lamps {
    dir: std::path::PathBuf,
    alice: Certificate,
    bob: Identity,
}

fn lamps() -> Option<Lamps> {
    let dir = fixture_dir("cms/examples-cms")?;
    let keys = dir.join("certs-and-keys");
    let alice = Certificate::load(keys.join("lamps-alice.crt")).unwrap();
    let bob = Identity::from_pem(
        &read(&keys, "lamps-bob.decrypt.p8.pem"),
        Some(&read(&keys, "lamps-bob.encrypt.crt")),
        None,
    )
    .unwrap();
    Some(Lamps { dir, alice, bob })
}

const SAMPLE: &[u8] = b"This is some sample content.";

#[test]
fn rfc9216_signed_by_alice_rsa_and_pss() {
    let Some(l) = lamps() else { return };
    for name in ["signedByAliceRSA.p7m", "signedByAliceRSAPSS.p7m"] {
        let msg = read(&l.dir.join("binary-files"), name);
        let o = open(
            &msg,
            &OpenOptions {
                sender: Some(&l.alice),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(o.document, SAMPLE, "{name}");
        assert_eq!(o.signer.as_ref(), Some(&l.alice));
        // The PEM form opens the same.
        let pem = read(&l.dir.join("pem-encoded"), &name.replace(".p7m", ".pem"));
        assert_eq!(
            open(
                &pem,
                &OpenOptions {
                    sender: Some(&l.alice),
                    ..Default::default()
                }
            )
            .unwrap()
            .document,
            SAMPLE
        );
    }
}

#[test]
fn rfc9216_two_signers_without_certificates() {
    let Some(l) = lamps() else { return };
    let msg = read(
        &l.dir.join("binary-files"),
        "signedByAliceAndCarlosNoCerts.p7m",
    );
    let o = open(
        &msg,
        &OpenOptions {
            sender: Some(&l.alice),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(o.document, SAMPLE);
}

#[test]
fn rfc9216_ed25519_signature() {
    let Some(l) = lamps() else { return };
    let carlos = Certificate::load(l.dir.join("certs-and-keys/lamps-carlos.crt")).unwrap();
    let msg = read(&l.dir.join("binary-files"), "signedByCarlosEd25519.p7m");
    let o = open(
        &msg,
        &OpenOptions {
            sender: Some(&carlos),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(o.document, SAMPLE);
}

#[test]
fn rfc9216_encrypted_for_bob_oaep() {
    let Some(l) = lamps() else { return };
    for name in [
        "encryptedForBobRSAOaep.p7m",
        "encryptedForBobAndDana.p7m",
        "authEnvelopedForBobChaCha20Poly1305.p7m",
    ] {
        let msg = read(&l.dir.join("binary-files"), name);
        let o = open(&msg, &unsigned_ok(&l.bob)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(o.document, SAMPLE, "{name}");
    }
}

#[test]
fn rfc9216_unsupported_and_unaddressed_are_reported() {
    let Some(l) = lamps() else { return };
    let bin = l.dir.join("binary-files");
    // X25519 + HKDF is eDelivery AS4 2.0 territory: not supported, and said so.
    let e = open(
        &read(&bin, "authEnvelopedForDanaX25519HKDF.p7m"),
        &unsigned_ok(&l.bob),
    )
    .unwrap_err();
    assert!(
        matches!(
            e.code(),
            ErrorCode::NotARecipient | ErrorCode::UnsupportedAlgorithm
        ),
        "{e}"
    );
    // KEK recipient without the KEK.
    let e = open(&read(&bin, "encryptedKekri.p7m"), &unsigned_ok(&l.bob)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotARecipient, "{e}");
}

// ------------------------------------------------------------------------------------------------
// OpenSSL's AuthEnvelopedData vectors: AES-128-GCM, KEK recipient, authenticated attributes.

#[test]
fn openssl_authenveloped_with_kek() {
    let Some(dir) = fixture_dir("cms/openssl") else {
        return;
    };
    let kek = Kek {
        id: vec![0xC0, 0xFE, 0xE0],
        key: (0u8..16).collect(),
    };
    let opts = OpenOptions {
        kek: Some(&kek),
        allow_unsigned: true,
        ..Default::default()
    };
    let o = open(&read(&dir, "authenveloped_attrs.pem"), &opts).unwrap();
    assert_eq!(o.document, b"Hello AuthEnvelopedData world\n");
    let e = open(&read(&dir, "bad_authenveloped_attrs.pem"), &opts).unwrap_err();
    assert_eq!(e.code(), ErrorCode::DecryptFailed, "{e}");
    // A wrong KEK.
    let wrong = Kek {
        id: vec![0xC0, 0xFE, 0xE0],
        key: vec![7; 16],
    };
    let e = open(
        &read(&dir, "authenveloped_attrs.pem"),
        &OpenOptions {
            kek: Some(&wrong),
            ..opts.clone()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::KeyUnwrapFailed, "{e}");
}

// ------------------------------------------------------------------------------------------------
// BouncyCastle: ECDH P-256, sha256 KDF, UKM, recipient by subject key identifier.

#[test]
fn bouncycastle_ecdh_with_ukm() {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::x509::{X509Builder, X509NameBuilder};

    let Some(dir) = fixture_dir("cms/bc-test-data") else {
        return;
    };
    let key_pem = read(&dir, "recipient_p256.pem");
    let key = PKey::private_key_from_pem(&key_pem).unwrap();
    // No certificate ships with the key; the message names its recipient by the subject key
    // identifier 01:02:03:04:05, so build a certificate for the key that carries it.
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "BC recipient").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    let ctx = b.x509v3_context(None, None);
    #[allow(deprecated)]
    let ski = openssl::x509::X509Extension::new(
        None,
        Some(&ctx),
        "subjectKeyIdentifier",
        "01:02:03:04:05",
    )
    .unwrap();
    b.append_extension(ski).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = Certificate::from_x509(b.build()).unwrap();
    let me = Identity::new(key, cert, vec![]).unwrap();
    let o = open(
        &read(&dir, "EnvelopedData_ECDH-SHA256KDF_AES256.pem"),
        &unsigned_ok(&me),
    )
    .unwrap();
    assert_eq!(o.document, b"PKI-C CMS EnvelopedData Sample");
}
