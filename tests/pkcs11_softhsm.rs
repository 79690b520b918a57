//! Keys on a PKCS#11 token (SoftHSM2, `ls_tests::softhsm`) behind the private-key seam: every
//! path works with the key on the token (ECDSA and ECDH, RSA signing), interop with
//! `openssl cms` holding file keys, the key cannot be exported, a wrong PIN is tried once, a
//! missing module or token and an unknown key have their own codes, and RSA-OAEP-SHA-256 on
//! SoftHSM2 2.6 (OAEP with SHA-1 only) is "mechanism not supported".

use ls_core::cms::KeyTransport;
use ls_core::keys::pkcs11::{self, Pkcs11Key};
use ls_core::*;
use ls_tests::softhsm::{
    SoftHsm, EC_TOKEN, PIN, PIN_TOKEN, RELOGIN_TOKEN, RSA_TOKEN, SHARED_TOKEN,
};
use ls_tests::*;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// A party whose key is generated on the token (label `name`) with a self-signed certificate
/// made by the token key through the seam.
fn token_party(hsm: &SoftHsm, token: &str, name: &str, kt: KeyType) -> (Identity, Vec<u8>) {
    let key = Pkcs11Key::generate(&hsm.uri(token, name), Some(hsm.module()), PIN, kt)
        .unwrap_or_else(|e| panic!("generating {name} on {token}: {e}"));
    let g = CertificateBuilder::new(name, CertPurpose::Party)
        .private_key(Arc::new(key))
        .valid_days(30)
        .build(None)
        .unwrap();
    assert!(g.key_pem.is_empty(), "a token key has no PEM");
    // The CSR, signed by the token key, verifies with the certificate's key.
    let csr = openssl::x509::X509Req::from_pem(&g.csr_pem).unwrap();
    assert!(csr
        .verify(&g.identity.certificate().public_key().unwrap())
        .unwrap());
    // So does the self-signed certificate.
    let c = g.identity.certificate().x509();
    assert!(c.verify(&c.public_key().unwrap()).unwrap());
    (g.identity, g.cert_pem)
}

fn open_opts<'a>(me: &'a Identity, sender: &'a Certificate) -> OpenOptions<'a> {
    OpenOptions {
        recipient: Some(me),
        sender: Some(sender),
        ..Default::default()
    }
}

#[test]
fn ec_keys_on_the_token_sign_and_open_and_reload_from_the_uri() {
    let Some(hsm) = SoftHsm::get() else { return };
    let (alice, alice_pem) = token_party(hsm, EC_TOKEN, "alice", KeyType::EcP256);
    let bob = Identity::generate("bob", KeyType::EcP256, 30, None)
        .unwrap()
        .identity;
    let doc = invoice(5_000);

    // The signer's key on the token (ECDSA): bob opens and verifies.
    let sealed = seal(
        &doc,
        &alice,
        &[bob.certificate().clone()],
        &Default::default(),
    )
    .unwrap();
    let opened = open(&sealed, &open_opts(&bob, alice.certificate())).unwrap();
    assert_eq!(opened.document, doc);
    assert_eq!(opened.signer.as_ref(), Some(alice.certificate()));

    // The recipient's key on the token (ECDH): alice opens what bob sealed.
    let sealed = seal(
        &doc,
        &bob,
        &[alice.certificate().clone()],
        &Default::default(),
    )
    .unwrap();
    let opened = open(&sealed, &open_opts(&alice, bob.certificate())).unwrap();
    assert_eq!(opened.document, doc);

    // Loaded again from its URI (a second identity, its own sessions) with the certificate
    // file: it opens what was sealed to the first.
    let again = Identity::from_pkcs11(
        &hsm.uri(EC_TOKEN, "alice"),
        Some(hsm.module()),
        Some(PIN),
        Some(&alice_pem),
    )
    .unwrap();
    assert_eq!(again.certificate(), alice.certificate());
    let opened = open(&sealed, &open_opts(&again, bob.certificate())).unwrap();
    assert_eq!(opened.document, doc);

    // Streaming seal and open go through the same seam.
    let mut out = Vec::new();
    seal_stream(
        &mut &doc[..],
        &mut out,
        &alice,
        &[alice.certificate().clone()],
        &Default::default(),
    )
    .unwrap();
    let mut plain = Vec::new();
    open_stream(
        &mut &out[..],
        &mut plain,
        &open_opts(&alice, alice.certificate()),
    )
    .unwrap();
    assert!(ls_core::bytes::contains(&plain, &doc[..100]));

    // TLS keys stay in files: a token identity is refused with a clear error.
    let e = alice.tls_key().unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnsupportedKey);
    assert!(
        e.to_string().contains("pkcs11:token=ls-ec;object=alice"),
        "{e}"
    );
    // And it cannot be written to a file.
    let e = alice.private_key_pem(None).unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnsupportedKey);
}

/// The tests that count calls in the spy's log run one at a time.
fn spy_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn openssl() -> Command {
    Command::new("openssl")
}

#[test]
fn openssl_cms_with_file_keys_reads_and_writes_for_token_keys() {
    let Some(hsm) = SoftHsm::get() else { return };
    let dir = tempdir("pkcs11-openssl");
    let (carol, carol_pem) = token_party(hsm, EC_TOKEN, "carol", KeyType::EcP256);
    let carol_crt = dir.join("carol.crt");
    std::fs::write(&carol_crt, &carol_pem).unwrap();
    let dave = party(&dir, "dave", KeyType::EcP256);
    let doc = invoice(3_000);

    // Ours (signed on the token, uncompressed) → openssl cms -decrypt (dave's file key), then
    // -verify pinned to carol's certificate.
    let opts = SealOptions {
        filename: Some("invoice.xml".into()),
        compression: Compression::Never,
        ..Default::default()
    };
    let sealed = seal(&doc, &carol, &[dave.identity.certificate().clone()], &opts).unwrap();
    let sealed_path = dir.join("sealed.der");
    std::fs::write(&sealed_path, &sealed).unwrap();
    let inner = dir.join("inner.mime");
    run_ok(
        openssl()
            .args(["cms", "-decrypt", "-inform", "DER", "-in"])
            .arg(&sealed_path)
            .arg("-recip")
            .arg(&dave.cert)
            .arg("-inkey")
            .arg(&dave.key)
            .arg("-out")
            .arg(&inner),
    );
    let signed = dir.join("signed.der");
    std::fs::write(&signed, mime_body(&std::fs::read(&inner).unwrap())).unwrap();
    let content = dir.join("content");
    run_ok(
        openssl()
            .args(["cms", "-verify", "-binary", "-inform", "DER", "-nointern"])
            .args(["-partial_chain", "-in"])
            .arg(&signed)
            .arg("-certfile")
            .arg(&carol_crt)
            .arg("-CAfile")
            .arg(&carol_crt)
            .arg("-out")
            .arg(&content),
    );
    assert_eq!(mime_body(&std::fs::read(&content).unwrap()), &doc[..]);

    // openssl cms (dave's file key signs, ECDH to carol's certificate) → ours, carol's key on
    // the token.
    let doc_path = dir.join("doc.xml");
    std::fs::write(&doc_path, &doc).unwrap();
    let os_signed = dir.join("os-signed.der");
    run_ok(
        openssl()
            .args(["cms", "-sign", "-binary", "-nodetach", "-outform", "DER"])
            .args(["-md", "sha256", "-in"])
            .arg(&doc_path)
            .arg("-signer")
            .arg(&dave.cert)
            .arg("-inkey")
            .arg(&dave.key)
            .arg("-out")
            .arg(&os_signed),
    );
    let os_env = dir.join("os-env.der");
    run_ok(
        openssl()
            .args([
                "cms", "-encrypt", "-binary", "-inform", "DER", "-outform", "DER",
            ])
            .args(["-aes-256-gcm", "-in"])
            .arg(&os_signed)
            .arg("-recip")
            .arg(&carol_crt)
            .arg("-out")
            .arg(&os_env),
    );
    let opened = open(
        &std::fs::read(&os_env).unwrap(),
        &open_opts(&carol, dave.identity.certificate()),
    )
    .unwrap();
    assert_eq!(opened.document, doc);
}

#[test]
fn rsa_on_the_token_signs_and_oaep_sha256_is_mechanism_not_supported() {
    let Some(hsm) = SoftHsm::get() else { return };
    let (erin, _) = token_party(hsm, RSA_TOKEN, "erin", KeyType::Rsa(2048));
    let frank = Identity::generate("frank", KeyType::EcP256, 30, None)
        .unwrap()
        .identity;
    let doc = invoice(2_000);

    // RSA PKCS#1 v1.5 and RSA-PSS signatures on the token verify.
    for signature in [SignatureScheme::Pkcs1v15, SignatureScheme::RsaPss] {
        let opts = SealOptions {
            signature,
            ..Default::default()
        };
        let sealed = seal(&doc, &erin, &[frank.certificate().clone()], &opts).unwrap();
        let opened = open(&sealed, &open_opts(&frank, erin.certificate())).unwrap();
        assert_eq!(opened.document, doc, "{signature:?}");
    }

    // Sealed to erin with RSA-OAEP-SHA-256 (our default): SoftHSM2 2.6 does OAEP with SHA-1
    // only, so the unwrap on the token is "mechanism not supported", not a wrong key.
    let sealed = seal(
        &doc,
        &frank,
        &[erin.certificate().clone()],
        &Default::default(),
    )
    .unwrap();
    let e = open(&sealed, &open_opts(&erin, frank.certificate())).unwrap_err();
    assert_eq!(e.code(), ErrorCode::MechanismUnsupported, "{e}");

    // With OAEP-SHA-1 the same key on the token unwraps (the decryption path works).
    let opts = SealOptions {
        key_transport: KeyTransport::RsaOaepSha1,
        ..Default::default()
    };
    let sealed = seal(&doc, &frank, &[erin.certificate().clone()], &opts).unwrap();
    let opened = open(&sealed, &open_opts(&erin, frank.certificate())).unwrap();
    assert_eq!(opened.document, doc);

    // WS-Security on the token: an AS4 message erin signs there verifies; one whose payload
    // is encrypted for her (RSA-OAEP with SHA-256, the AS4 profile's) reaches the token's
    // decryption and is "mechanism not supported" on SoftHSM2, like CMS.
    use ls_core::as4::{envelope::SoapVersion, exchange, message, model::Messaging, wss};
    let build = |signer: &Identity, to: Option<&Certificate>| {
        let um =
            exchange::user_message("erin", "frank", "urn:t", "Deliver", "", "t.example").unwrap();
        message::build(message::Outgoing {
            messaging: Messaging {
                user_messages: vec![um],
                signals: Vec::new(),
            },
            payloads: vec![message::Payload {
                content_id: "doc@t".into(),
                mime_type: "application/octet-stream".into(),
                data: doc.clone(),
                compress: false,
                properties: Vec::new(),
            }],
            signer,
            encrypt_for: to,
            soap: SoapVersion::Soap12,
        })
        .unwrap()
    };
    let read = |m: &message::Built, me: &Identity, signer: &Certificate| {
        message::read(
            &m.content_type,
            &m.body,
            &message::ReadOptions {
                recipient: Some(me),
                policy: wss::VerifyPolicy {
                    signer: Some(signer),
                    ..Default::default()
                },
                limits: Default::default(),
            },
        )
    };
    let signed = build(&erin, None);
    let got = read(&signed, &frank, erin.certificate()).unwrap();
    assert_eq!(got.payloads[0].data, doc);
    let encrypted = build(&frank, Some(erin.certificate()));
    let e = read(&encrypted, &erin, frank.certificate()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::MechanismUnsupported, "{e}");
}

#[test]
fn the_private_key_cannot_be_exported() {
    let Some(hsm) = SoftHsm::get() else { return };
    let (_grace, _) = token_party(hsm, EC_TOKEN, "grace", KeyType::EcP256);
    hsm.assert_one_locked_key(EC_TOKEN, "grace");
}

#[test]
fn a_wrong_pin_is_tried_once_and_sessions_are_reused() {
    let Some(hsm) = SoftHsm::get() else { return };
    let Some(spy) = hsm.spy() else {
        skip("OpenSC's pkcs11-spy.so is not installed (apt-get install opensc-pkcs11)");
        return;
    };
    let _spy = spy_lock();
    // A key on a token no other test logs in to, made through SoftHSM2 directly.
    let uri = hsm.uri(PIN_TOKEN, "henry");
    Pkcs11Key::generate(&uri, Some(hsm.module()), PIN, KeyType::EcP256).unwrap();

    // Through the spy: one C_Login with the wrong PIN, refused, not tried again.
    let before = hsm.spy_log().matches("C_Login").count();
    let e = Pkcs11Key::open(&uri, Some(spy), Some("0000-wrong")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PinIncorrect, "{e}");
    assert!(!e.is_transient());
    assert!(!e.to_string().contains("0000-wrong"), "{e}");
    let log = hsm.spy_log();
    assert_eq!(log.matches("C_Login").count() - before, 1, "C_Login calls");
    assert!(log.contains("CKR_PIN_INCORRECT"), "the spy saw the refusal");
    // The same wrong PIN again, five times (a caller retrying a load): refused without asking
    // the token, which counts every wrong PIN towards its lock-out.
    for _ in 0..5 {
        let e = Pkcs11Key::open(&uri, Some(spy), Some("0000-wrong")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::PinIncorrect, "{e}");
    }
    assert_eq!(
        hsm.spy_log().matches("C_Login").count() - before,
        1,
        "the same wrong PIN is not sent again"
    );

    // The right PIN then works (not locked), and 20 signatures cost no new login and at most
    // one session beyond the one that holds the login.
    let key = Pkcs11Key::open(&uri, Some(spy), Some(PIN)).unwrap();
    let logins = hsm.spy_log().matches("C_Login").count();
    let opened = hsm.spy_log().matches("C_OpenSession").count();
    use ls_core::keys::private::{Digest, PrivateKey, SigAlg};
    for i in 0..20u8 {
        let sig = key.sign(SigAlg::Ecdsa, Digest::Sha256, &[i]).unwrap();
        let mut v =
            openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), key.public_key())
                .unwrap();
        assert!(v.verify_oneshot(&sig, &[i]).unwrap());
    }
    let log = hsm.spy_log();
    assert_eq!(
        log.matches("C_Login").count(),
        logins,
        "no login per operation"
    );
    assert!(
        log.matches("C_OpenSession").count() - opened <= 1,
        "sessions are reused"
    );
    let signs = log
        .lines()
        .filter(|l| l.trim_end().ends_with("C_Sign"))
        .count();
    assert!(signs >= 20, "{signs} C_Sign calls seen by the spy");
}

#[test]
fn a_lost_login_is_restored_with_one_login_and_a_refused_pin_is_not_tried_again() {
    let Some(hsm) = SoftHsm::get() else { return };
    let Some(spy) = hsm.spy() else {
        skip("OpenSC's pkcs11-spy.so is not installed (apt-get install opensc-pkcs11)");
        return;
    };
    let _spy = spy_lock();
    use cryptoki::session::UserType;
    use ls_core::keys::private::{Digest, PrivateKey, SigAlg};
    let uri = hsm.uri(RELOGIN_TOKEN, "ivy");
    Pkcs11Key::generate(&uri, Some(hsm.module()), PIN, KeyType::EcP256).unwrap();
    let key = Pkcs11Key::open(&uri, Some(spy), Some(PIN)).unwrap();
    key.sign(SigAlg::Ecdsa, Digest::Sha256, b"before").unwrap();

    // Someone logs the process out of the token (as a token removed and put back loses the
    // login): the next operation logs in once and succeeds.
    let ctx = pkcs11::module(spy).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == RELOGIN_TOKEN)
        .unwrap();
    let admin = ctx.open_rw_session(slot).unwrap();
    admin.logout().unwrap();
    let logins = hsm.spy_log().matches("C_Login").count();
    key.sign(SigAlg::Ecdsa, Digest::Sha256, b"after a logout")
        .unwrap();
    assert_eq!(hsm.spy_log().matches("C_Login").count() - logins, 1);

    // The PIN changes on the token and the login goes again: one login with the old PIN,
    // refused; the next operations do not try again.
    let new_pin = "9999-changed";
    admin
        .set_pin(&PIN.to_string().into(), &new_pin.to_string().into())
        .unwrap();
    admin.logout().unwrap();
    let logins = hsm.spy_log().matches("C_Login").count();
    for _ in 0..3 {
        let e = key
            .sign(SigAlg::Ecdsa, Digest::Sha256, b"stale PIN")
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::PinIncorrect, "{e}");
    }
    assert_eq!(
        hsm.spy_log().matches("C_Login").count() - logins,
        1,
        "the old PIN was tried once"
    );
    // Loaded again with the new PIN, the key works.
    let again = Pkcs11Key::open(&uri, Some(spy), Some(new_pin)).unwrap();
    again
        .sign(SigAlg::Ecdsa, Digest::Sha256, b"new PIN")
        .unwrap();
    let _ = admin.login(UserType::User, Some(&new_pin.to_string().into()));
}

#[test]
fn the_keys_of_a_process_share_one_login_per_token() {
    let Some(hsm) = SoftHsm::get() else { return };
    let Some(spy) = hsm.spy() else {
        skip("OpenSC's pkcs11-spy.so is not installed (apt-get install opensc-pkcs11)");
        return;
    };
    let _spy = spy_lock();
    use ls_core::keys::private::{Digest, PrivateKey, SigAlg};
    let logins = || hsm.spy_log().matches("C_Login").count();
    let (uri_a, uri_b) = (hsm.uri(SHARED_TOKEN, "jack"), hsm.uri(SHARED_TOKEN, "kate"));
    Pkcs11Key::generate(&uri_a, Some(hsm.module()), PIN, KeyType::EcP256).unwrap();
    Pkcs11Key::generate(&uri_b, Some(hsm.module()), PIN, KeyType::EcP256).unwrap();
    let a = Arc::new(Pkcs11Key::open(&uri_a, Some(spy), Some(PIN)).unwrap());

    // While the token is logged in for the first key, a wrong PIN for the second is refused
    // without asking the token (it would answer "already logged in" to any PIN).
    let before = logins();
    let e = Pkcs11Key::open(&uri_b, Some(spy), Some("0000-wrong")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PinIncorrect, "{e}");
    assert!(!e.to_string().contains("0000-wrong"), "{e}");
    assert_eq!(logins(), before, "the token was not asked");
    // The right PIN is taken, with no C_Login either.
    let b = Arc::new(Pkcs11Key::open(&uri_b, Some(spy), Some(PIN)).unwrap());
    assert_eq!(logins(), before);
    for k in [&a, &b] {
        k.sign(SigAlg::Ecdsa, Digest::Sha256, b"both").unwrap();
    }

    // The token loses the login (C_Logout): the next operations of both keys, from four
    // threads each, cost exactly one C_Login.
    let ctx = pkcs11::module(spy).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == SHARED_TOKEN)
        .unwrap();
    let admin = ctx.open_rw_session(slot).unwrap();
    admin.logout().unwrap();
    let before = logins();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let k = if i % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || k.sign(SigAlg::Ecdsa, Digest::Sha256, &[i]))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    assert_eq!(
        logins() - before,
        1,
        "one C_Login for both keys and all threads"
    );

    // The PIN changes and the login goes again: one C_Login with the old PIN, refused; then
    // both keys are PIN_INCORRECT without another C_Login.
    let new_pin = "8888-changed";
    admin
        .set_pin(&PIN.to_string().into(), &new_pin.to_string().into())
        .unwrap();
    admin.logout().unwrap();
    let before = logins();
    for _ in 0..3 {
        for k in [&a, &b] {
            let e = k
                .sign(SigAlg::Ecdsa, Digest::Sha256, b"stale PIN")
                .unwrap_err();
            assert_eq!(e.code(), ErrorCode::PinIncorrect, "{e}");
            assert!(!e.to_string().contains("  "), "a run of spaces: {e}");
        }
    }
    assert_eq!(
        logins() - before,
        1,
        "the old PIN was tried once, for both keys"
    );

    // The old PIN given again is refused without asking the token; the new one logs in once
    // and the keys loaded before work again with it.
    let e = Pkcs11Key::open(&uri_a, Some(spy), Some(PIN)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PinIncorrect, "{e}");
    assert_eq!(logins() - before, 1);
    let c = Pkcs11Key::open(&uri_a, Some(spy), Some(new_pin)).unwrap();
    assert_eq!(logins() - before, 2);
    for k in [&*a, &*b, &c] {
        k.sign(SigAlg::Ecdsa, Digest::Sha256, b"new PIN").unwrap();
    }
    assert_eq!(logins() - before, 2);
}

#[test]
fn a_failed_c_decrypt_is_a_failed_unwrap_with_no_login_and_no_second_try() {
    let Some(hsm) = SoftHsm::get() else { return };
    let Some(spy) = hsm.spy() else {
        skip("OpenSC's pkcs11-spy.so is not installed (apt-get install opensc-pkcs11)");
        return;
    };
    let _spy = spy_lock();
    use ls_core::keys::private::{Digest, PrivateKey, RsaDecryption};
    // The wrong-PIN test's token: its keys are gone when this test holds the spy's lock.
    let uri = hsm.uri(PIN_TOKEN, "lena");
    Pkcs11Key::generate(&uri, Some(hsm.module()), PIN, KeyType::Rsa(2048)).unwrap();
    let key = Pkcs11Key::open(&uri, Some(spy), Some(PIN)).unwrap();
    let count = |what: &str| {
        hsm.spy_log()
            .lines()
            .filter(|l| l.trim_end().ends_with(what))
            .count()
    };
    let oaep = RsaDecryption::Oaep {
        hash: Digest::Sha1,
        mgf: Digest::Sha1,
        label: Vec::new(),
    };
    for padding in [RsaDecryption::Pkcs1v15, oaep] {
        let (logins, inits, decrypts) =
            (count("C_Login"), count("C_DecryptInit"), count("C_Decrypt"));
        // 256 bytes of garbage (below the modulus): bad padding either way. SoftHSM2 answers
        // it with CKR_GENERAL_ERROR from the second C_Decrypt (the first asks the length).
        let e = key.decrypt(&padding, &[0x11; 256]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::KeyUnwrapFailed, "{e}");
        assert_eq!(
            count("C_DecryptInit") - inits,
            1,
            "one decryption, not retried"
        );
        assert!(
            count("C_Decrypt") - decrypts <= 2,
            "the length, then the decryption"
        );
        assert_eq!(count("C_Login"), logins);
        // The ciphertext-independent check: the key is usable.
        key.usable().unwrap();
    }
}

#[test]
fn missing_module_token_and_key_have_their_own_codes() {
    let Some(hsm) = SoftHsm::get() else { return };
    let uri = hsm.uri(EC_TOKEN, "nobody");
    let e =
        Pkcs11Key::open(&uri, Some(Path::new("/nonexistent/libnope.so")), Some(PIN)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::TokenUnavailable, "{e}");
    assert!(e.is_transient());
    assert!(e.to_string().contains("/nonexistent/libnope.so"), "{e}");

    // The explicit module wins over the URI's module-path.
    let with_path = format!("{uri}?module-path=/nonexistent/libnope.so");
    let e = Pkcs11Key::open(&with_path, Some(hsm.module()), Some(PIN)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::KeyNotFound, "{e}");
    // Without one, the URI's is used.
    let e = Pkcs11Key::open(&with_path, None, Some(PIN)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::TokenUnavailable, "{e}");

    let e = Pkcs11Key::open(
        &hsm.uri("no-such-token", "k"),
        Some(hsm.module()),
        Some(PIN),
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TokenUnavailable, "{e}");
    assert!(
        e.to_string().contains(EC_TOKEN),
        "lists the tokens present: {e}"
    );

    let e =
        Pkcs11Key::open(&format!("{uri}?pin-value={PIN}"), Some(hsm.module()), None).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    assert!(!e.to_string().contains(PIN));

    // SoftHSM2's tokens need a login: no PIN is refused before anything is tried.
    let e = Pkcs11Key::open(&hsm.uri(EC_TOKEN, "nobody"), Some(hsm.module()), None).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    assert!(e.to_string().contains("needs a PIN"), "{e}");
}
