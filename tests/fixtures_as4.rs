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
