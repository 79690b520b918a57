//! Signed receipts (RFC 2634 ESS): a receipt made for our sealed message verifies; forged,
//! damaged and misdirected ones are refused with their own codes, and nothing panics.
//! (Receipts forged field by field and correctly signed are unit tests in `cms/receipt.rs`;
//! interoperability with `openssl cms` is `tests/interop_openssl.rs`.)

use ls_core::cms::receipt::{sign_receipt, verify_receipt, ReceiptOptions};
use ls_core::cms::{inspect::Layer, seal_with_evidence, Sealed};
use ls_core::*;

fn id(name: &str, kt: KeyType) -> Identity {
    Identity::generate(name, kt, 30, None).unwrap().identity
}

fn sealed(alice: &Identity, bob: &Identity, request: Option<&[u8]>) -> Sealed {
    seal_with_evidence(
        b"<Invoice id=\"1\"/>",
        alice,
        &[bob.certificate().clone()],
        &SealOptions {
            filename: Some("invoice.xml".into()),
            receipt_request: request.map(<[u8]>::to_vec),
            ..Default::default()
        },
    )
    .unwrap()
}

fn opened(s: &Sealed, alice: &Identity, bob: &Identity) -> Opened {
    open(
        &s.sealed,
        &OpenOptions {
            recipient: Some(bob),
            sender: Some(alice.certificate()),
            ..Default::default()
        },
    )
    .unwrap()
}

fn code(r: Result<impl std::fmt::Debug>) -> ErrorCode {
    r.unwrap_err().code()
}

/// Where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("pattern present")
}

/// id-aa-msgSigDigest as a DER OID.
const MSG_SIG_DIGEST_OID: &[u8] = &[
    0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x05,
];

#[test]
fn a_receipt_for_our_message_verifies() {
    for kt in [KeyType::Rsa(2048), KeyType::EcP256] {
        let alice = id("alice", kt);
        let bob = id("bob", kt);
        let s = sealed(&alice, &bob, Some(b"MSG-1"));
        let o = opened(&s, &alice, &bob);
        assert_eq!(o.document, b"<Invoice id=\"1\"/>");
        let rr = o.receipt_request.as_ref().unwrap();
        assert_eq!(rr.content_identifier, b"MSG-1");
        assert!(rr.from_all);
        assert!(rr.receipts_from.is_empty());
        assert_eq!(rr.receipts_to, ["DirName:CN=alice"]);
        // The SignedData kept is the one sealed, byte for byte.
        assert_eq!(o.signed_data.as_deref(), Some(s.signed_data.as_slice()));

        let t = time::now_unix();
        let receipt = sign_receipt(
            o.signed_data.as_ref().unwrap(),
            &bob,
            &ReceiptOptions {
                signing_time: Some(t),
            },
        )
        .unwrap();
        let carol = id("carol", kt);
        // Any of several partner certificates may be the one.
        let v = verify_receipt(
            &receipt,
            &s.signed_data,
            &[carol.certificate().clone(), bob.certificate().clone()],
        )
        .unwrap();
        assert_eq!(v.signer, *bob.certificate());
        assert_eq!(v.content_identifier, b"MSG-1");
        assert_eq!(v.signing_time, Some(t));
        // PEM is read as well as DER.
        let pem = mime::pem_encode("CMS", &receipt);
        verify_receipt(&pem, &s.signed_data, &[bob.certificate().clone()]).unwrap();
    }
}

#[test]
fn without_a_request_no_receipt_is_offered_or_accepted() {
    let alice = id("alice", KeyType::EcP256);
    let bob = id("bob", KeyType::EcP256);
    let plain = sealed(&alice, &bob, None);
    let o = opened(&plain, &alice, &bob);
    assert!(o.receipt_request.is_none());
    assert!(
        o.signed_data.is_none(),
        "nothing is kept when no receipt is asked for"
    );
    // The sender's evidence exists all the same, but nothing can answer it.
    let e = sign_receipt(&plain.signed_data, &bob, &Default::default()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    // A receipt for another message, checked against the one that asked for nothing.
    let asked = sealed(&alice, &bob, Some(b"MSG-2"));
    let receipt = sign_receipt(&asked.signed_data, &bob, &Default::default()).unwrap();
    let e = verify_receipt(&receipt, &plain.signed_data, &[bob.certificate().clone()]);
    assert_eq!(code(e), ErrorCode::ReceiptMismatch);
    // Not a SignedData at all.
    let e = sign_receipt(&plain.sealed, &bob, &Default::default()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Malformed, "{e}");
    // A content identifier must be given, and be of a sensible size.
    for bad in [Vec::new(), vec![b'x'; 1025]] {
        let e = seal_with_evidence(
            b"x",
            &alice,
            &[bob.certificate().clone()],
            &SealOptions {
                receipt_request: Some(bad),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
    }
}

#[test]
fn forged_and_misdirected_receipts_are_refused() {
    for kt in [KeyType::Rsa(2048), KeyType::EcP256] {
        let alice = id("alice", kt);
        let bob = id("bob", kt);
        let mallory = id("mallory", kt);
        let s1 = sealed(&alice, &bob, Some(b"MSG-1"));
        let s2 = sealed(&alice, &bob, Some(b"MSG-2"));
        let partners = [bob.certificate().clone()];
        let good = sign_receipt(&s1.signed_data, &bob, &Default::default()).unwrap();
        verify_receipt(&good, &s1.signed_data, &partners).unwrap();

        // Signed by a third party (who could read the original).
        let by_mallory = sign_receipt(&s1.signed_data, &mallory, &Default::default()).unwrap();
        let e = verify_receipt(&by_mallory, &s1.signed_data, &partners).unwrap_err();
        assert_eq!(e.code(), ErrorCode::SignerMismatch, "{e}");
        assert!(e.to_string().contains("mallory"), "{e}");
        // No partner given at all.
        let e = verify_receipt(&good, &s1.signed_data, &[]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument);

        // Bob's genuine receipt, but for another message (same content identifier or not).
        assert_eq!(
            code(verify_receipt(&good, &s2.signed_data, &partners)),
            ErrorCode::ReceiptMismatch
        );
        // (Another document under the same identifier: sealing the very same document again
        // in the same second with RSA PKCS#1 v1.5 gives the very same signature, which the
        // receipt rightly answers.)
        let s3 = seal_with_evidence(
            b"<Invoice id=\"3\"/>",
            &alice,
            &[bob.certificate().clone()],
            &SealOptions {
                receipt_request: Some(b"MSG-1".to_vec()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            code(verify_receipt(&good, &s3.signed_data, &partners)),
            ErrorCode::ReceiptMismatch
        );

        // msgSigDigest altered in transit: a signed attribute, so the signature breaks.
        let mut m = good.clone();
        let at = find(&m, MSG_SIG_DIGEST_OID) + MSG_SIG_DIGEST_OID.len() + 4;
        m[at] ^= 0x01;
        assert_eq!(
            code(verify_receipt(&m, &s1.signed_data, &partners)),
            ErrorCode::BadSignature
        );

        // The Receipt content altered in transit (quoted signature, content identifier): the
        // message digest no longer matches.
        let sig_tail = &s1_signature_tail(&s1.signed_data);
        let mut m = good.clone();
        let at = find(&m, sig_tail);
        m[at] ^= 0x01;
        assert_eq!(
            code(verify_receipt(&m, &s1.signed_data, &partners)),
            ErrorCode::DigestMismatch
        );
        let mut m = good.clone();
        let at = find(&m, b"MSG-1");
        m[at + 4] = b'9';
        assert_eq!(
            code(verify_receipt(&m, &s1.signed_data, &partners)),
            ErrorCode::DigestMismatch
        );

        // The signature value itself altered.
        let mut m = good.clone();
        let n = m.len();
        m[n - 5] ^= 0x01;
        assert_eq!(
            code(verify_receipt(&m, &s1.signed_data, &partners)),
            ErrorCode::BadSignature
        );

        // The receipt is not a document.
        let e = open(
            &good,
            &OpenOptions {
                sender: Some(bob.certificate()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::Malformed, "{e}");
    }
}

/// The last 16 bytes of the (first) signature value in a SignedData we made: the signature
/// is the last element of its SignerInfo, which is last in the SignedData.
fn s1_signature_tail(sd: &[u8]) -> Vec<u8> {
    sd[sd.len() - 16..].to_vec()
}

#[test]
fn damaged_receipts_and_originals_fail_closed() {
    let alice = id("alice", KeyType::EcP256);
    let bob = id("bob", KeyType::EcP256);
    let s = sealed(&alice, &bob, Some(b"MSG-1"));
    let partners = [bob.certificate().clone()];
    let good = sign_receipt(&s.signed_data, &bob, &Default::default()).unwrap();
    let allowed = [
        ErrorCode::Malformed,
        ErrorCode::Truncated,
        ErrorCode::TooDeep,
        ErrorCode::BadSignature,
        ErrorCode::DigestMismatch,
        ErrorCode::SignerMismatch,
        ErrorCode::ReceiptMismatch,
        ErrorCode::UnsupportedAlgorithm,
        ErrorCode::WeakAlgorithm,
        ErrorCode::TooLarge,
        ErrorCode::CertExpired,
        ErrorCode::CertNotYetValid,
    ];
    let check = |r: &[u8], o: &[u8], what: &str| match verify_receipt(r, o, &partners) {
        Ok(_) => what.to_string(),
        Err(e) => {
            assert!(allowed.contains(&e.code()), "{what}: {:?} {e}", e.code());
            String::new()
        }
    };
    // Every truncation of the receipt and of the original.
    for n in 0..good.len() {
        let r = check(&good[..n], &s.signed_data, "truncated receipt");
        assert!(r.is_empty(), "a receipt cut at {n} verified");
    }
    for n in (0..s.signed_data.len()).step_by(7) {
        assert!(check(&good, &s.signed_data[..n], "truncated original").is_empty());
        assert!(sign_receipt(&s.signed_data[..n], &bob, &Default::default()).is_err());
    }
    // Every byte of the receipt flipped (some flips land in unsigned, unchecked places, e.g.
    // the certificates carried, and may still verify: what matters is that nothing panics and
    // every failure has its code).
    let mut verified = Vec::new();
    for i in 0..good.len() {
        for x in [0x01u8, 0x80, 0xff] {
            let mut m = good.clone();
            m[i] ^= x;
            if !check(&m, &s.signed_data, "mutated receipt").is_empty() {
                verified.push(i);
            }
        }
    }
    // Those are all in unsigned, informational places: never in the Receipt, the signed
    // attributes or the signature.
    let protected = signed_ranges(&good);
    assert_eq!(protected.len(), 3, "{protected:?}");
    for i in verified {
        assert!(
            !protected.iter().any(|r| r.contains(&i)),
            "a receipt altered at byte {i} (a signed part) verified"
        );
    }
    for i in (0..s.signed_data.len()).step_by(3) {
        let mut m = s.signed_data.clone();
        m[i] ^= 0x80;
        check(&good, &m, "mutated original");
        let _ = sign_receipt(&m, &bob, &Default::default());
    }
    // Garbage.
    for g in [
        &b""[..],
        b"\x30",
        b"\x30\x80",
        b"-----BEGIN CMS-----\n",
        b"hello",
    ] {
        check(g, &s.signed_data, "garbage");
        check(&good, g, "garbage original");
    }
}

/// The byte ranges of a SignedData (ContentInfo) that its signature protects: the
/// encapContentInfo, and each SignerInfo's signed attributes and signature.
fn signed_ranges(ci: &[u8]) -> Vec<std::ops::Range<usize>> {
    use ls_core::asn1::{parse_single, tag};
    let at = |raw: &[u8]| {
        let start = raw.as_ptr() as usize - ci.as_ptr() as usize;
        start..start + raw.len()
    };
    let top = parse_single(ci).unwrap();
    let mut r = top.children().unwrap();
    r.next().unwrap();
    let sd = r
        .next()
        .unwrap()
        .unwrap()
        .children()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let mut r = sd.children().unwrap();
    r.next().unwrap(); // version
    r.next().unwrap(); // digestAlgorithms
    let mut out = vec![at(r.next().unwrap().unwrap().raw)]; // encapContentInfo
    let mut sis = None;
    while let Some(t) = r.next().unwrap() {
        if t.tag == tag::SET {
            sis = Some(t);
        }
    }
    let mut sr = sis.unwrap().children().unwrap();
    while let Some(si) = sr.next().unwrap() {
        let mut f = si.children().unwrap();
        while let Some(x) = f.next().unwrap() {
            if x.tag == tag::ctx(0) || x.tag == tag::OCTET_STRING {
                out.push(at(x.raw));
            }
        }
    }
    out
}

#[test]
fn inspect_describes_receipts_and_requests() {
    let alice = id("alice", KeyType::EcP256);
    let bob = id("bob", KeyType::EcP256);
    let s = sealed(&alice, &bob, Some(b"MSG-1"));
    let r = inspect(
        &s.sealed,
        &OpenOptions {
            recipient: Some(&bob),
            ..Default::default()
        },
    );
    let signer = r
        .layers
        .iter()
        .find_map(|l| match l {
            Layer::SignedData(sd) => Some(sd.signers[0].clone()),
            _ => None,
        })
        .unwrap();
    let rr = signer.receipt_request.expect("the request is shown");
    assert_eq!(rr.content_identifier, bytes::hex(b"MSG-1"));
    assert_eq!(rr.receipts_from, "all");
    assert_eq!(rr.receipts_to, ["DirName:CN=alice"]);

    let receipt = sign_receipt(&s.signed_data, &bob, &Default::default()).unwrap();
    let r = inspect(
        &receipt,
        &OpenOptions {
            sender: Some(bob.certificate()),
            ..Default::default()
        },
    );
    assert_eq!(r.verified, Some(true), "{}", r.to_json_pretty());
    assert!(r.error.is_none(), "{}", r.to_json_pretty());
    let json: serde_json::Value = serde_json::from_str(&r.to_json_pretty()).unwrap();
    assert_eq!(json["layers"][0]["layer"], "signedData");
    assert_eq!(json["layers"][0]["content_type"], "id-ct-receipt");
    assert_eq!(
        json["layers"][0]["signers"][0]["msg_sig_digest"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(json["layers"][1]["layer"], "receipt");
    assert_eq!(json["layers"][1]["content_type"], "id-data");
    assert_eq!(
        json["layers"][1]["content_identifier"],
        bytes::hex(b"MSG-1")
    );
}
