//! AS4 messages made by real gateways (../shared/fixtures/as4, see its README): their WS-Security
//! signatures verify with ours, and the negative fixtures are refused with the right error.

use ls_core::as4::wss::{self, Covered, VerifyPolicy};
use ls_core::as4::xml::{self, NS_EB, NS_WSSE};
use ls_core::*;
use ls_tests::*;
use std::path::Path;

/// The SOAP envelope's Header children we need, found by namespace.
fn parts<'d, 'i>(
    doc: &'d roxmltree::Document<'i>,
) -> (
    Option<roxmltree::Node<'d, 'i>>,
    Option<roxmltree::Node<'d, 'i>>,
    roxmltree::Node<'d, 'i>,
) {
    let env = doc.root_element();
    let header = env
        .children()
        .find(|n| n.is_element() && n.tag_name().name() == "Header");
    let body = env
        .children()
        .find(|n| n.is_element() && n.tag_name().name() == "Body")
        .unwrap();
    let messaging = header.and_then(|h| xml::child(h, NS_EB, "Messaging"));
    let security = header.and_then(|h| xml::child(h, NS_WSSE, "Security"));
    (messaging, security, body)
}

/// The XML of a fixture: from the first `<` of the SOAP envelope (skipping HTTP headers).
fn soap_text(raw: &str) -> &str {
    let start = raw
        .find("<?xml")
        .or_else(|| raw.find("<S"))
        .or_else(|| raw.find('<'))
        .unwrap();
    &raw[start..]
}

fn verify_file(
    dir: &Path,
    file: &str,
    signer_pem: &str,
    allow_expired: bool,
) -> Result<wss::Verified> {
    let raw = std::fs::read_to_string(dir.join(file)).unwrap();
    let doc = xml::parse(soap_text(&raw), &xml::Limits::default())?;
    let (messaging, security, body) = parts(&doc);
    let signer = Certificate::load(dir.join(signer_pem)).unwrap();
    let policy = VerifyPolicy {
        signer: Some(&signer),
        allow_expired,
        ..Default::default()
    };
    let covered = Covered {
        messaging,
        body,
        attachments: &[],
        partial: false,
    };
    Ok(wss::verify(&doc, security, &covered, &policy)?.expect("required"))
}

#[test]
fn receipts_from_real_gateways_verify() {
    let Some(dir) = fixture_dir("as4") else {
        return;
    };
    for (file, cert, refs) in [
        (
            "derived/helger.soap.xml",
            "derived/helger.signer.cert.pem",
            2,
        ),
        (
            "derived/governikus.soap.xml",
            "derived/governikus.signer.cert.pem",
            2,
        ),
        (
            "derived/dataport1-mustunderstand.soap.xml",
            "derived/dataport1-mustunderstand.signer.cert.pem",
            2,
        ),
        (
            "phase4/testfiles/TestReceipt12.xml",
            "derived/TestReceipt12.signer.cert.pem",
            2,
        ),
        (
            "as4-pypi-generated/as4py-receipt.xml",
            "as4-pypi-generated/PTE000002.cert.pem",
            2,
        ),
    ] {
        // These certificates have expired since (2022): the signature itself must verify…
        let v = verify_file(&dir, file, cert, true).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(v.references.len(), refs, "{file}");
        assert_eq!(v.signature_method, wss::ALG_RSA_SHA256, "{file}");
        // …and without allowing it, expiry is reported as such.
        let signer = Certificate::load(dir.join(cert)).unwrap();
        if signer.check_validity(time::now_unix()).is_err() {
            let e = verify_file(&dir, file, cert, false).unwrap_err();
            assert_eq!(e.code(), ErrorCode::CertExpired, "{file}: {e}");
        }
    }
}

#[test]
fn soap11_receipt_verifies() {
    // SOAP 1.1, one reference (the Body), signed with phase4's dummy key. No eb:Messaging reference.
    let Some(dir) = fixture_dir("as4") else {
        return;
    };
    let raw = std::fs::read_to_string(dir.join("phase4/testfiles/TestReceipt11.xml")).unwrap();
    let doc = xml::parse(soap_text(&raw), &xml::Limits::default()).unwrap();
    let (_, security, body) = parts(&doc);
    let signer = Certificate::load(dir.join("derived/TestReceipt11.signer.cert.pem")).unwrap();
    let policy = VerifyPolicy {
        signer: Some(&signer),
        allow_expired: true,
        ..Default::default()
    };
    let v = wss::verify(
        &doc,
        security,
        &Covered {
            messaging: None,
            body,
            attachments: &[],
            partial: false,
        },
        &policy,
    )
    .unwrap()
    .unwrap();
    assert_eq!(v.references.len(), 1);
}

#[test]
fn holodeck_2017_user_message_headers_verify() {
    // The SOAP part of a signed+encrypted Holodeck UserMessage: Messaging and Body references
    // verify; its attachment is not in the fixture, so it is checked separately for being named.
    let Some(dir) = fixture_dir("as4") else {
        return;
    };
    let raw = std::fs::read_to_string(dir.join("derived/from-holodeck-1.nocomment.xml")).unwrap();
    let doc = xml::parse(soap_text(&raw), &xml::Limits::default()).unwrap();
    let (messaging, security, body) = parts(&doc);
    // Two tokens: the signature names the BST `X509-501d4b2b-…`; the other one (which
    // derived/from-holodeck-1.signer.cert.pem holds) is the encryption recipient's certificate.
    let bst = xml::by_id(&doc, "X509-501d4b2b-2d56884d-91f5-40ca-ba03-a10cd984a737")
        .unwrap()
        .unwrap();
    let signer = wss::bst_certificates(bst).unwrap().pop().unwrap();
    let recipient = Certificate::load(dir.join("derived/from-holodeck-1.signer.cert.pem")).unwrap();
    let wrong = VerifyPolicy {
        signer: Some(&recipient),
        allow_expired: true,
        ..Default::default()
    };
    let e = wss::verify(
        &doc,
        security,
        &Covered {
            messaging,
            body,
            attachments: &[],
            partial: true,
        },
        &wrong,
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::SignerMismatch, "{e}");
    let policy = VerifyPolicy {
        signer: Some(&signer),
        allow_expired: true,
        ..Default::default()
    };
    // Strictly, a signature naming an attachment that is not there fails…
    let e = wss::verify(
        &doc,
        security,
        &Covered {
            messaging,
            body,
            attachments: &[],
            partial: false,
        },
        &policy,
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::SignatureWrapping, "{e}");
    assert!(e.to_string().contains("attachment"), "{e}");
    // …and looked at on its own, the Messaging and Body references and the signature value verify.
    let v = wss::verify(
        &doc,
        security,
        &Covered {
            messaging,
            body,
            attachments: &[],
            partial: true,
        },
        &policy,
    )
    .unwrap()
    .unwrap();
    assert_eq!(v.unchecked.len(), 1, "{:?}", v.unchecked);
    assert!(v.unchecked[0].starts_with("cid:"));
    assert_eq!(v.references.len(), 3);
}

#[test]
fn negative_fixtures_are_refused() {
    let Some(dir) = fixture_dir("as4") else {
        return;
    };
    // Holodeck receipt whose Messaging attribute was hand-edited: digest mismatch.
    let raw = std::fs::read_to_string(dir.join("phase4/verify/dataport1.as4in")).unwrap();
    let doc = xml::parse(soap_text(&raw), &xml::Limits::default()).unwrap();
    let (messaging, security, body) = parts(&doc);
    let signer =
        Certificate::load(dir.join("derived/dataport1-mustunderstand.signer.cert.pem")).unwrap();
    let policy = VerifyPolicy {
        signer: Some(&signer),
        allow_expired: true,
        ..Default::default()
    };
    let e = wss::verify(
        &doc,
        security,
        &Covered {
            messaging,
            body,
            attachments: &[],
            partial: false,
        },
        &policy,
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::DigestMismatch, "{e}");
    // Unknown signature and digest algorithms.
    for file in [
        "phase4/testfiles/WrongSigningAlgorithm.xml",
        "phase4/testfiles/WrongSigningDigestAlgorithm.xml",
    ] {
        let e = verify_file(&dir, file, "derived/TestReceipt12.signer.cert.pem", true).unwrap_err();
        assert_eq!(e.code(), ErrorCode::UnsupportedAlgorithm, "{file}: {e}");
    }
    // A valid signature by someone other than the pinned partner.
    let e = verify_file(
        &dir,
        "derived/helger.soap.xml",
        "derived/governikus.signer.cert.pem",
        true,
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::SignerMismatch, "{e}");
}

#[test]
fn python_as4_user_message_decrypts_and_verifies() {
    // The one fully decryptable fixture: signed (Messaging, Body, attachment) then encrypted
    // (RSA-OAEP xenc11 + MGF1-SHA256, AES-128-GCM) by the Python `as4` package for PTE000002.
    let Some(dir) = fixture_dir("as4/as4-pypi-generated") else {
        return;
    };
    let raw = std::fs::read_to_string(dir.join("as4py-soap.xml")).unwrap();
    let att = std::fs::read(dir.join("as4py-att.bin")).unwrap();
    let doc = xml::parse(soap_text(&raw), &xml::Limits::default()).unwrap();
    let (messaging, security, body) = parts(&doc);
    let cid = doc
        .descendants()
        .find(|n| n.tag_name().name() == "CipherReference")
        .and_then(|n| n.attribute("URI"))
        .and_then(|u| u.strip_prefix("cid:"))
        .unwrap()
        .to_string();
    let receiver = Identity::load(
        dir.join("PTE000002.key.pem"),
        Some(&dir.join("PTE000002.cert.pem")),
        None,
    )
    .unwrap();
    let sender = Certificate::load(dir.join("PTE000001.cert.pem")).unwrap();
    let plain = wss::decrypt_parts(&doc, security.unwrap(), &[(&cid, &att)], &receiver).unwrap();
    assert_eq!(plain.len(), 1);
    assert_eq!(plain[0].content_id, cid);
    let data = &plain[0].data;
    assert_eq!(
        &data[..2],
        b"\x1f\x8b",
        "the payload is gzip (CompressionType)"
    );
    let xml_payload = miniz_oxide::inflate::decompress_to_vec(&data[10..data.len() - 8]).unwrap();
    assert!(String::from_utf8_lossy(&xml_payload).contains("StandardBusinessDocument"));
    // All three references (Messaging, Body, the attachment as sent: gzip octets) verify.
    let policy = VerifyPolicy {
        signer: Some(&sender),
        allow_expired: true,
        ..Default::default()
    };
    let covered = Covered {
        messaging,
        body,
        attachments: &[(&cid, data)],
        partial: false,
    };
    let v = wss::verify(&doc, security, &covered, &policy)
        .unwrap()
        .unwrap();
    assert_eq!(v.references.len(), 3);
    assert!(v.references.iter().any(|r| r.uri == format!("cid:{cid}")));
    // The encrypted bytes do not pass for the signed ones, and a wrong key is told apart.
    let covered = Covered {
        messaging,
        body,
        attachments: &[(&cid, &att)],
        partial: false,
    };
    assert_eq!(
        wss::verify(&doc, security, &covered, &policy)
            .unwrap_err()
            .code(),
        ErrorCode::DigestMismatch
    );
    let other = Identity::load(
        dir.join("PTE000001.key.pem"),
        Some(&dir.join("PTE000001.cert.pem")),
        None,
    )
    .unwrap();
    let e = wss::decrypt_parts(&doc, security.unwrap(), &[(&cid, &att)], &other).unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotARecipient, "{e}");
    let mut tampered = att.clone();
    let n = tampered.len();
    tampered[n / 2] ^= 1;
    let e =
        wss::decrypt_parts(&doc, security.unwrap(), &[(&cid, &tampered)], &receiver).unwrap_err();
    assert_eq!(e.code(), ErrorCode::DecryptFailed, "{e}");
}

#[test]
fn domibus_key_reference_styles_resolve() {
    // Domibus 4.0.2 test messages (pretty-printed, digests edited: structure only). Their
    // signature and encrypted-key KeyInfos name certificates four ways; each resolves to the
    // right one of the well-known blue_gw / red_gw sample certificates.
    let Some(dir) = fixture_dir("as4") else {
        return;
    };
    let blue = Certificate::load(dir.join("derived/blue_gw.cert.pem")).unwrap();
    let red = Certificate::load(dir.join("derived/red_gw.cert.pem")).unwrap();
    // The signer is Domibus' test "LEAF CERTIFICATE" (EU.TEST), carried as a token in the
    // X509v3 message only; the others name it by issuer/serial or SKI.
    let first =
        std::fs::read_to_string(dir.join("domibus/dataset-as4/bst_x509v3_incoming_message.xml"))
            .unwrap();
    let first = xml::parse(soap_text(&first), &xml::Limits::default()).unwrap();
    let (_, first_security, _) = parts(&first);
    let first_sig_ki = xml::child(
        wss::signature_of(first_security).unwrap(),
        xml::NS_DS,
        "KeyInfo",
    )
    .unwrap();
    let leaf = wss::resolve_key(
        &first,
        first_security.unwrap(),
        first_sig_ki,
        &VerifyPolicy::default(),
    )
    .unwrap();
    assert!(
        leaf.subject().contains("LEAF CERTIFICATE"),
        "{}",
        leaf.subject()
    );
    let mut store = CertStore::new();
    store.add_partner(blue.clone(), Some("blue_gw"));
    store.add_partner(red.clone(), Some("red_gw"));
    store.add_partner(leaf.clone(), Some("domibus-test"));
    let policy = VerifyPolicy {
        partners: Some(&store),
        allow_expired: true,
        ..Default::default()
    };
    for (file, style) in [
        ("bst_x509v3_incoming_message.xml", "BST X509v3"),
        (
            "bst_X509PKIPathv1_incoming_message.xml",
            "BST X509PKIPathv1",
        ),
        ("is_incoming_message.xml", "X509IssuerSerial"),
        ("ski_incoming_message.xml", "SubjectKeyIdentifier"),
    ] {
        let raw = std::fs::read_to_string(dir.join("domibus/dataset-as4").join(file)).unwrap();
        let doc = xml::parse(soap_text(&raw), &xml::Limits::default()).unwrap();
        let (messaging, security, _) = parts(&doc);
        assert!(messaging.is_some(), "{file}");
        let security = security.unwrap();
        let sig_ki = xml::child(
            wss::signature_of(Some(security)).unwrap(),
            xml::NS_DS,
            "KeyInfo",
        )
        .unwrap();
        let ek = xml::child(security, xml::NS_XENC, "EncryptedKey").unwrap();
        let ek_ki = xml::child(ek, xml::NS_DS, "KeyInfo").unwrap();
        let signer = wss::resolve_key(&doc, security, sig_ki, &policy)
            .unwrap_or_else(|e| panic!("{file} ({style}) signature: {e}"));
        let recipient = wss::resolve_key(&doc, security, ek_ki, &policy)
            .unwrap_or_else(|e| panic!("{file} ({style}) key: {e}"));
        assert_eq!(signer, leaf, "{file} ({style}): signature key");
        assert_eq!(recipient, red, "{file} ({style}): encryption key");
    }
}

#[test]
fn phase4_user_message_references_verify() {
    // A full Peppol UserMessage as phase4 sends it (MIME, signed, payload encrypted for a key
    // that was not published). Its Messaging and Body references and the signature value verify
    // under the certificate its signature names; the encrypted attachment cannot be checked.
    use ls_core::as4::package::Package;
    let Some(dir) = fixture_dir("as4") else {
        return;
    };
    let raw = std::fs::read(dir.join("phase4/dump-raw.as4out")).unwrap();
    let pkg = Package::parse_http(&raw, &xml::Limits::default()).unwrap();
    assert_eq!(pkg.attachments.len(), 1);
    let doc = xml::parse_bytes(&pkg.soap, &xml::Limits::default()).unwrap();
    let (messaging, security, body) = parts(&doc);
    let security_node = security.unwrap();
    let ki = xml::child(wss::signature_of(security).unwrap(), xml::NS_DS, "KeyInfo").unwrap();
    let signer = wss::resolve_key(&doc, security_node, ki, &VerifyPolicy::default()).unwrap();
    let policy = VerifyPolicy {
        signer: Some(&signer),
        allow_expired: true,
        ..Default::default()
    };
    let covered = Covered {
        messaging,
        body,
        attachments: &[],
        partial: true,
    };
    let v = wss::verify(&doc, security, &covered, &policy)
        .unwrap()
        .unwrap();
    assert_eq!(v.references.len(), 3);
    assert_eq!(
        v.unchecked,
        vec![format!("cid:{}", pkg.attachments[0].content_id)]
    );
    // The encryption key is for someone else: a clear "not for us" with any other identity.
    let me = Identity::generate("x", KeyType::Rsa(2048), 1, None)
        .unwrap()
        .identity;
    let wire = [(
        pkg.attachments[0].content_id.as_str(),
        pkg.attachments[0].data.as_slice(),
    )];
    let e = wss::decrypt_parts(&doc, security_node, &wire, &me).unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotARecipient, "{e}");
}
