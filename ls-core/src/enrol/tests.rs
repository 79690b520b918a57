//! Tests of the enrolment contract.

use super::*;
use crate::KeyType;
use openssl::pkey::PKey;

fn identity(kt: KeyType) -> Identity {
    Identity::generate("acme", kt, 30, None).unwrap().identity
}

#[test]
fn codes_have_120_bits_and_are_read_as_typed() {
    let c = new_code().unwrap();
    assert_eq!(c.len(), 29, "{}", c.as_str());
    assert_eq!(c.matches('-').count(), 5);
    let n = normalize_code(&c).unwrap();
    assert_eq!(n.len(), CODE_SYMBOLS);
    assert_eq!(*format_code(&n), *c);
    assert_ne!(*new_code().unwrap(), *c);
    // As people type it.
    let code = "7K2Q-M9XD-0A1B-CDEF-GHJK-MNPZ";
    let want = "7K2QM9XD0A1BCDEFGHJKMNPZ";
    for typed in [
        code,
        "7k2q-m9xd-0a1b-cdef-ghjk-mnpz",
        "7K2Q M9XD OA1B CDEF GHJK MNPZ",
        "7K2QM9XD0AIBCDEFGHJKMNPZ",
        "7K2QM9XD0AlBCDEFGHJKMNPZ",
    ] {
        assert_eq!(
            normalize_code(typed).as_deref().map(|s| s.as_str()),
            Some(want),
            "{typed}"
        );
    }
    for bad in [
        "",
        "7K2Q-M9XD-0A1B-CDEF-GHJK",
        "7K2Q-M9XD-0A1B-CDEF-GHJK-MNPZ-0",
        "7K2Q-M9XD-0A1B-CDEF-GHJK-MNPU",
        "7K2Q_M9XD-0A1B-CDEF-GHJK-MNPZ",
        "7K2Q-M9XD-0A1B-CDEF-GHJK-MNPÉ",
        &"-".repeat(1000),
    ] {
        assert!(normalize_code(bad).is_none(), "{bad}");
    }
    // Every symbol appears over many codes (the bits are spread over the alphabet).
    let mut seen = std::collections::HashSet::new();
    for _ in 0..64 {
        seen.extend(normalize_code(&new_code().unwrap()).unwrap().chars());
    }
    assert_eq!(seen.len(), 32);
}

#[test]
fn the_enrolment_url_replaces_the_last_segment() {
    for (url, want) in [
        (
            "https://ls.example:8443/as4",
            "https://ls.example:8443/enrol",
        ),
        (
            "https://ls.example/ls/as4?x=1#f",
            "https://ls.example/ls/enrol",
        ),
        ("https://ls.example", "https://ls.example/enrol"),
        ("https://ls.example/", "https://ls.example/enrol"),
        ("http://127.0.0.1:1/as4", "http://127.0.0.1:1/enrol"),
    ] {
        assert_eq!(enrolment_url(url).unwrap(), want, "{url}");
    }
    for bad in ["ls.example/as4", "https:///as4", "https://é/as4"] {
        assert!(enrolment_url(bad).is_err(), "{bad}");
    }
}

fn claims(service: &Identity) -> RequestClaims {
    RequestClaims::new(
        "acme",
        "7K2Q-M9XD-0A1B-CDEF-GHJK-MNPZ",
        service.certificate(),
        1 << 20,
    )
    .unwrap()
}

#[test]
fn requests_and_answers_round_trip_ec_and_rsa() {
    for (kt, alg) in [(KeyType::EcP256, "ES256"), (KeyType::Rsa(2048), "PS256")] {
        let me = identity(kt);
        let service = identity(KeyType::EcP256);
        let c = claims(&service);
        let body = build_request(&me, &c).unwrap();
        let v = verify_request(&body, time::now_unix()).unwrap();
        assert_eq!(v.claims, c);
        assert_eq!(v.certificate, *me.certificate());
        let jws: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &bytes::base64url_decode(jws["protected"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], alg);
        assert_eq!(header["typ"], REQUEST_TYPE);
        // The code is in the request (over TLS), never in Debug output.
        assert!(!format!("{v:?}").contains("M9XD"));

        let enrolled = Enrolled {
            party_id: "acme".into(),
            party_type: String::new(),
            mpc: "urn:layersec:mpc:acme".into(),
            subscriber_id: 7,
            certificate_sha256: me.certificate().sha256_fingerprint(),
            max_document_bytes: 1 << 20,
            outcome: "registered".into(),
            registered_at: time::iso8601(time::now_unix()),
            nonce: c.nonce.clone(),
            service_certificate_sha256: service.certificate().sha256_fingerprint(),
        };
        let answer = build_response(&service, &enrolled).unwrap();
        assert_eq!(
            verify_response(&answer, service.certificate(), &c, me.certificate()).unwrap(),
            enrolled
        );
        // Signed by another key, or answering another request: refused.
        let other = identity(KeyType::EcP256);
        let e = verify_response(&answer, other.certificate(), &c, me.certificate()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::SignerMismatch);
        let e = verify_response(
            &answer,
            service.certificate(),
            &claims(&service),
            me.certificate(),
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadResponse);
        // A request is not an answer, nor the other way round.
        assert!(verify_response(&body, me.certificate(), &c, me.certificate()).is_err());
        assert_eq!(
            verify_request(&answer, time::now_unix())
                .unwrap_err()
                .reason,
            Refusal::Malformed
        );
    }
}

/// Re-sign `body`'s header and payload after `edit`, with `key`'s identity.
fn tamper(
    body: &[u8],
    edit: impl FnOnce(&mut serde_json::Value, &mut serde_json::Value),
) -> Vec<u8> {
    let jws: serde_json::Value = serde_json::from_slice(body).unwrap();
    let d = |k: &str| -> serde_json::Value {
        serde_json::from_slice(&bytes::base64url_decode(jws[k].as_str().unwrap()).unwrap()).unwrap()
    };
    let (mut h, mut p) = (d("protected"), d("payload"));
    edit(&mut h, &mut p);
    let e = |v: &serde_json::Value| bytes::base64url_encode(&serde_json::to_vec(v).unwrap());
    serde_json::to_vec(&serde_json::json!({
        "protected": e(&h), "payload": e(&p), "signature": jws["signature"]
    }))
    .unwrap()
}

#[test]
fn requests_without_proof_or_of_the_wrong_form_are_refused() {
    let me = identity(KeyType::EcP256);
    let service = identity(KeyType::EcP256);
    let c = claims(&service);
    let body = build_request(&me, &c).unwrap();
    let now = time::now_unix();
    let reason = |b: &[u8]| verify_request(b, now).unwrap_err().reason;

    // Another certificate in x5c (the signature is by `me`): no proof of possession.
    let other = identity(KeyType::EcP256);
    let swapped = tamper(&body, |h, _| {
        h["x5c"] = serde_json::json!([bytes::base64_encode(other.certificate().der())]);
    });
    assert_eq!(reason(&swapped), Refusal::BadProof);
    // Claims changed after signing.
    let edited = tamper(&body, |_, p| p["party_id"] = "mallory".into());
    assert_eq!(reason(&edited), Refusal::BadProof);
    // Algorithms outside the profile, or that do not fit the key.
    for alg in ["none", "HS256", "ES384", "RS256", "PS256", ""] {
        let b = tamper(&body, |h, _| h["alg"] = alg.into());
        assert_eq!(reason(&b), Refusal::BadProof, "{alg}");
    }
    // The signature flipped, truncated, or not base64url.
    let mut jws: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut sig = bytes::base64url_decode(jws["signature"].as_str().unwrap()).unwrap();
    sig[10] ^= 1;
    jws["signature"] = bytes::base64url_encode(&sig).into();
    assert_eq!(
        reason(&serde_json::to_vec(&jws).unwrap()),
        Refusal::BadProof
    );
    jws["signature"] = bytes::base64url_encode(&sig[..63]).into();
    assert_eq!(
        reason(&serde_json::to_vec(&jws).unwrap()),
        Refusal::BadProof
    );
    jws["signature"] = "!!".into();
    assert_eq!(
        reason(&serde_json::to_vec(&jws).unwrap()),
        Refusal::Malformed
    );
    // Form: not JSON, other members, another typ, header parameters outside the profile,
    // no certificate, too many, not a certificate.
    for b in [
        &b""[..],
        b"{}",
        b"[1,2]",
        b"\xff\xfe",
        &tamper(&body, |h, _| h["typ"] = RESPONSE_TYPE.into()),
        &tamper(&body, |h, _| h["crit"] = serde_json::json!(["exp"])),
        &tamper(&body, |h, _| h["x5c"] = serde_json::json!([])),
        &tamper(&body, |h, _| h["x5c"] = serde_json::json!(vec!["AAAA"; 5])),
        &tamper(&body, |h, _| h["x5c"] = serde_json::json!(["AAAA"])),
        &tamper(&body, |h, _| h["x5c"] = serde_json::json!(["not base64"])),
    ] {
        assert_eq!(
            reason(b),
            Refusal::Malformed,
            "{}",
            String::from_utf8_lossy(b)
        );
    }
    let mut extra: serde_json::Value = serde_json::from_slice(&body).unwrap();
    extra["header"] = serde_json::json!({"kid": "x"});
    assert_eq!(
        reason(&serde_json::to_vec(&extra).unwrap()),
        Refusal::Malformed
    );
    // Too large.
    let big = vec![b' '; MAX_REQUEST_BYTES as usize + 1];
    assert_eq!(reason(&big), Refusal::Malformed);
    // Stale either way.
    assert_eq!(
        verify_request(&body, now + FRESHNESS_SECS + 5)
            .unwrap_err()
            .reason,
        Refusal::Stale
    );
    assert_eq!(
        verify_request(&body, now - FRESHNESS_SECS - 5)
            .unwrap_err()
            .reason,
        Refusal::Stale
    );
    // Claims of the wrong shape, properly signed.
    let bad_claims = |edit: fn(&mut RequestClaims)| {
        let mut c = claims(&service);
        edit(&mut c);
        verify_request(&build_request(&me, &c).unwrap(), now)
            .unwrap_err()
            .reason
    };
    assert_eq!(
        bad_claims(|c| c.party_id = String::new()),
        Refusal::Malformed
    );
    assert_eq!(
        bad_claims(|c| c.party_id = " acme".into()),
        Refusal::Malformed
    );
    assert_eq!(
        bad_claims(|c| c.party_id = "a\nb".into()),
        Refusal::Malformed
    );
    assert_eq!(
        bad_claims(|c| c.party_id = "a".repeat(256)),
        Refusal::Malformed
    );
    assert_eq!(bad_claims(|c| c.code = String::new()), Refusal::Malformed);
    assert_eq!(bad_claims(|c| c.nonce = "abc".into()), Refusal::Malformed);
    assert_eq!(
        bad_claims(|c| c.service_certificate_sha256 = "x".into()),
        Refusal::Malformed
    );
    assert_eq!(bad_claims(|c| c.max_document_bytes = 0), Refusal::Malformed);
    assert_eq!(
        bad_claims(|c| c.max_document_bytes = u64::MAX),
        Refusal::Malformed
    );
    // A weak key: a valid proof, a certificate the service does not take.
    let weak = {
        let key = PKey::from_rsa(openssl::rsa::Rsa::generate(1024).unwrap()).unwrap();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "weak").unwrap();
        let name = name.build();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        let cert = Certificate::from_der(&b.build().to_der().unwrap()).unwrap();
        Identity::new(key, cert, Vec::new()).unwrap()
    };
    let b = build_request(&weak, &claims(&service)).unwrap();
    let e = verify_request(&b, now).unwrap_err();
    assert_eq!(e.reason, Refusal::CertificateRefused);
    assert!(e.message.contains("1024"), "{}", e.message);
}

#[test]
fn refusals_are_bodies_and_client_errors() {
    for &r in Refusal::ALL {
        assert_eq!(Refusal::parse(r.as_str()), Some(r));
        let body = serde_json::to_vec(&Refused::new(r, "why").body()).unwrap();
        let e = refusal_error(r.http_status(), &body);
        assert_eq!(e.is_transient(), r.is_transient(), "{r}");
        assert_eq!(
            e.code(),
            if r.is_transient() {
                ErrorCode::HttpStatus
            } else {
                ErrorCode::Refused
            }
        );
        assert!(e.to_string().contains(r.as_str()), "{e}");
        assert!(e.to_string().contains(r.hint()), "{e}");
    }
    assert_eq!(Refusal::parse("nope"), None);
    // Not our body: by the status.
    assert_eq!(
        refusal_error(413, b"too large\n").code(),
        ErrorCode::Refused
    );
    assert!(refusal_error(503, b"").is_transient());
}

#[test]
fn service_info_states_its_fingerprint() {
    let service = identity(KeyType::EcP256);
    let info = ServiceInfo::new(service.certificate());
    let body = serde_json::to_vec(&info).unwrap();
    let (back, cert) = ServiceInfo::read(&body).unwrap();
    assert_eq!(back, info);
    assert_eq!(cert, *service.certificate());
    let mut lying = info.clone();
    lying.service_certificate_sha256 = identity(KeyType::EcP256).certificate().sha256_fingerprint();
    assert!(ServiceInfo::read(&serde_json::to_vec(&lying).unwrap()).is_err());
    let mut other = info;
    other.protocol = "layersec-enrol/9".into();
    assert!(ServiceInfo::read(&serde_json::to_vec(&other).unwrap()).is_err());
    assert!(ServiceInfo::read(b"<html>").is_err());
}

/// Refusal messages are logged by the service: they never quote what the request held.
#[test]
fn refusal_messages_quote_no_values() {
    let me = identity(KeyType::EcP256);
    let service = identity(KeyType::EcP256);
    let c = serde_json::to_value(claims(&service)).unwrap();
    let code = "7K2Q-M9XD-0A1B-CDEF-GHJK-MNPZ";
    let signed = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut p = c.clone();
        edit(&mut p);
        super::jws::sign_jws(&me, REQUEST_TYPE, &serde_json::to_vec(&p).unwrap()).unwrap()
    };
    let now = time::now_unix();
    let body = build_request(&me, &claims(&service)).unwrap();
    for b in [
        signed(&|p| p["max_document_bytes"] = code.into()),
        signed(&|p| p["iat"] = code.into()),
        signed(&|p| p["code"] = serde_json::json!([code])),
        signed(&|p| {
            p.as_object_mut().unwrap().remove("nonce");
        }),
        tamper(&body, |h, _| h["alg"] = serde_json::json!([code])),
        format!(r#"{{"protected": "{code}", "payload": 1, "signature": ""}}"#).into_bytes(),
    ] {
        let r = verify_request(&b, now).unwrap_err();
        assert_eq!(r.reason, Refusal::Malformed, "{}", r.message);
        assert!(!r.message.contains("M9XD"), "{}", r.message);
    }
}
