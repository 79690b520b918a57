use super::*;
use crate::keys::builder::{CertPurpose, CertificateBuilder};
use crate::keys::KeyType;

fn id(name: &str) -> Identity {
    Identity::generate(name, KeyType::EcP256, 2, None)
        .unwrap()
        .identity
}

fn rsa(name: &str) -> Identity {
    Identity::generate(name, KeyType::Rsa(2048), 2, None)
        .unwrap()
        .identity
}

fn claims(old: &Identity, new: &Identity, svc: &Identity) -> RequestClaims {
    RequestClaims::new(
        "acme",
        old.certificate(),
        new.certificate(),
        3600,
        svc.certificate(),
    )
    .unwrap()
}

#[test]
fn a_request_signed_by_both_keys_verifies() {
    for (old, new) in [
        (id("acme"), id("acme")),
        (rsa("acme"), id("acme")),
        (id("acme"), rsa("acme")),
    ] {
        let svc = id("service");
        let c = claims(&old, &new, &svc);
        let body = build_request(&old, &new, &c).unwrap();
        let v = verify_request(&body, time::now_unix()).unwrap();
        assert_eq!(v.claims, c);
        assert_eq!(v.old_certificate, *old.certificate());
        assert_eq!(v.new_certificate, *new.certificate());
        // The general serialisation: two signatures, each with its own header.
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(j["signatures"].as_array().unwrap().len(), 2);
        assert!(j.get("protected").is_none());
    }
}

#[test]
fn requests_without_both_proofs_are_refused() {
    let (old, new, other, svc) = (id("acme"), id("acme"), id("mallory"), id("service"));
    let now = time::now_unix();
    let c = claims(&old, &new, &svc);
    let reason = |body: &[u8]| verify_request(body, now).unwrap_err().reason;
    // Signed by the new key only (twice), or by the old key only: the claims name two
    // certificates, and each must sign.
    assert_eq!(
        reason(&build_request(&new, &new, &c).unwrap()),
        Refusal::BadProof
    );
    assert_eq!(
        reason(&build_request(&old, &old, &c).unwrap()),
        Refusal::BadProof
    );
    // In the wrong order, or by another party's key in either place.
    assert_eq!(
        reason(&build_request(&new, &old, &c).unwrap()),
        Refusal::BadProof
    );
    assert_eq!(
        reason(&build_request(&other, &new, &c).unwrap()),
        Refusal::BadProof
    );
    assert_eq!(
        reason(&build_request(&old, &other, &c).unwrap()),
        Refusal::BadProof
    );
    // One signature (the flattened form of enrolment) is not a rollover request.
    let one = sign_jws_general(&[&old], REQUEST_TYPE, &serde_json::to_vec(&c).unwrap()).unwrap();
    assert_eq!(reason(&one), Refusal::Malformed);
    let flat = sign_jws(&old, REQUEST_TYPE, &serde_json::to_vec(&c).unwrap()).unwrap();
    assert_eq!(reason(&flat), Refusal::Malformed);
    // Claims changed after signing: both signatures fail.
    let body = build_request(&old, &new, &c).unwrap();
    let mut j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut changed = c.clone();
    changed.overlap_secs = MAX_OVERLAP_SECS;
    j["payload"] = bytes::base64url_encode(&serde_json::to_vec(&changed).unwrap()).into();
    assert_eq!(reason(&serde_json::to_vec(&j).unwrap()), Refusal::BadProof);
    // One signature's header swapped for another typ.
    let mut j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let enrol = crate::enrol::jws::sign_jws(&new, crate::enrol::REQUEST_TYPE, b"{}").unwrap();
    let enrol: serde_json::Value = serde_json::from_slice(&enrol).unwrap();
    j["signatures"][1]["protected"] = enrol["protected"].clone();
    assert_eq!(reason(&serde_json::to_vec(&j).unwrap()), Refusal::Malformed);
    // The same key again is no rollover.
    let same = claims(&old, &old, &svc);
    assert_eq!(
        reason(&build_request(&old, &old, &same).unwrap()),
        Refusal::CertificateRefused
    );
    // Stale, a too long overlap, not JSON, too large.
    let mut stale = c.clone();
    stale.iat -= FRESHNESS_SECS + 5;
    assert_eq!(
        reason(&build_request(&old, &new, &stale).unwrap()),
        Refusal::Stale
    );
    let mut long = c.clone();
    long.overlap_secs = MAX_OVERLAP_SECS + 1;
    assert_eq!(
        reason(&build_request(&old, &new, &long).unwrap()),
        Refusal::Malformed
    );
    assert_eq!(reason(b"not json"), Refusal::Malformed);
    assert_eq!(
        reason(&vec![b' '; MAX_REQUEST_BYTES as usize + 1]),
        Refusal::Malformed
    );
}

#[test]
fn the_answer_binds_the_request_and_the_service() {
    let (old, new, svc, other) = (id("acme"), id("acme"), id("service"), id("other"));
    let c = claims(&old, &new, &svc);
    let r = Registered {
        party_id: "acme".into(),
        party_type: String::new(),
        old_certificate_sha256: c.old_certificate_sha256.clone(),
        new_certificate_sha256: c.new_certificate_sha256.clone(),
        old_valid_until: 100,
        outcome: "registered".into(),
        registered_at: 50,
        nonce: c.nonce.clone(),
        service_certificate_sha256: svc.certificate().sha256_fingerprint(),
    };
    let body = build_response(&svc, &r).unwrap();
    assert_eq!(verify_response(&body, svc.certificate(), &c).unwrap(), r);
    let e = verify_response(&body, other.certificate(), &c).unwrap_err();
    assert_eq!(e.code(), ErrorCode::SignerMismatch);
    let mut again = c.clone();
    again.nonce = "00".repeat(16);
    assert_eq!(
        verify_response(&body, svc.certificate(), &again)
            .unwrap_err()
            .code(),
        ErrorCode::BadResponse
    );
    let forged = build_response(&other, &r).unwrap();
    assert!(verify_response(&forged, svc.certificate(), &c).is_err());
}

#[test]
fn refusals_round_trip_and_map_to_errors() {
    for r in Refusal::ALL {
        assert_eq!(Refusal::parse(r.as_str()), Some(*r));
        let body = serde_json::to_vec(&Refused::new(*r, "why").body()).unwrap();
        let e = refusal_error(r.http_status(), &body);
        assert_eq!(e.is_transient(), r.is_transient(), "{r}");
        assert!(e.to_string().contains(r.as_str()));
    }
    assert_eq!(refusal_error(502, b"<html>").code(), ErrorCode::HttpStatus);
    assert_eq!(refusal_error(404, b"not found").code(), ErrorCode::Refused);
    assert_eq!(
        rollover_url("https://h:8443/as4").unwrap(),
        "https://h:8443/rollover"
    );
    for r in UpdateReason::ALL {
        assert_eq!(UpdateReason::parse(r.as_str()), Some(r));
    }
}

// ---- the certificate update

fn update(old: &Identity, new: &Identity) -> CertificateUpdate {
    let now = time::now_unix();
    CertificateUpdate::new(
        "acme",
        "globex",
        old.certificate(),
        new.certificate(),
        now,
        now + 3600,
    )
    .unwrap()
}

#[test]
fn an_update_signed_by_the_old_key_and_counter_signed_by_the_new_verifies() {
    let (old, new) = (id("acme"), rsa("acme"));
    let u = update(&old, &new);
    let payload = u.sign(&new).unwrap();
    let now = time::now_unix();
    let current = [old.certificate().clone()];
    let v = verify_update(&payload, "acme", "globex", old.certificate(), &current, now).unwrap();
    assert_eq!(v.update, u);
    assert_eq!(v.new_certificate, *new.certificate());
    assert_eq!(v.old_valid_until - v.valid_from, 3600);
    // An overlap set far in the future would keep the old certificate for as long as the
    // sender likes: refused.
    let later = 300 * 86_400;
    let far = CertificateUpdate::new(
        "acme",
        "globex",
        old.certificate(),
        new.certificate(),
        now + later,
        now + later + 3600,
    )
    .unwrap();
    let far = far.sign(&new).unwrap();
    assert_eq!(
        verify_update(&far, "acme", "globex", old.certificate(), &current, now)
            .unwrap_err()
            .reason,
        UpdateReason::Malformed
    );
    // Only the new certificate's key counter-signs.
    assert!(u.sign(&old).is_err());
}

#[test]
fn forged_and_misdirected_updates_are_refused_with_their_reason() {
    let (old, new, mallory) = (id("acme"), id("acme"), id("mallory"));
    let now = time::now_unix();
    let current = [old.certificate().clone()];
    let reason = |payload: &[u8], signer: &Certificate, from: &str, to: &str| {
        verify_update(payload, from, to, signer, &current, now)
            .unwrap_err()
            .reason
    };
    let u = update(&old, &new);
    let good = u.sign(&new).unwrap();
    // Signed (AS4) only by the new key, or by another party: not a certificate we hold.
    assert_eq!(
        reason(&good, new.certificate(), "acme", "globex"),
        UpdateReason::NotCurrent
    );
    assert_eq!(
        reason(&good, mallory.certificate(), "acme", "globex"),
        UpdateReason::NotCurrent
    );
    // Sent by another party than the statement names, or to another partner.
    assert_eq!(
        reason(&good, old.certificate(), "mallory", "globex"),
        UpdateReason::WrongParty
    );
    assert_eq!(
        reason(&good, old.certificate(), "acme", "initech"),
        UpdateReason::WrongParty
    );
    // The statement names another old certificate (an update older than the current one).
    let mut stale = u.clone();
    stale.old_certificate_sha256 = mallory.certificate().sha256_fingerprint();
    let stale = sign_statement(&serde_json::to_vec(&stale).unwrap(), &new).unwrap();
    assert_eq!(
        reason(&stale, old.certificate(), "acme", "globex"),
        UpdateReason::NotCurrent
    );
    // Counter-signed by another key than the new certificate's: no proof of possession (a
    // thief of the old key rolling over to someone else's certificate).
    let mut theirs = u.clone();
    theirs.new_certificate_pem = String::from_utf8(mallory.certificate().to_pem()).unwrap();
    theirs.new_certificate_sha256 = mallory.certificate().sha256_fingerprint();
    let by_new = sign_statement(&serde_json::to_vec(&theirs).unwrap(), &new).unwrap();
    assert_eq!(
        reason(&by_new, old.certificate(), "acme", "globex"),
        UpdateReason::NoProof
    );
    let not_counter_signed = sign_statement(&serde_json::to_vec(&u).unwrap(), &old).unwrap();
    assert_eq!(
        reason(&not_counter_signed, old.certificate(), "acme", "globex"),
        UpdateReason::NoProof
    );
    // Altered after signing.
    let at = crate::bytes::find(&good, b"old_valid_until").unwrap();
    let mut altered = good.clone();
    altered[at] = b'X';
    assert!(matches!(
        reason(&altered, old.certificate(), "acme", "globex"),
        UpdateReason::NoProof | UpdateReason::Malformed
    ));
    // A certificate that is not valid: expired, or the old key again.
    let expired = CertificateBuilder::new("acme", CertPurpose::Party)
        .key_type(KeyType::EcP256)
        .validity(now - 10 * 86400, now - 86400)
        .build(None)
        .unwrap()
        .identity;
    let e = update(&old, &expired);
    // (Signed at a time it was valid: `sign_statement` itself refuses an expired signer.)
    let p = crate::cms::seal::signed_data(
        &[&serde_json::to_vec(&e).unwrap()],
        &expired,
        &crate::cms::seal::SignSpec {
            econtent_type: crate::oid::DATA,
            scheme: crate::cms::SignatureScheme::Pkcs1v15,
            signing_time: now - 2 * 86400,
            extra_attrs: Vec::new(),
        },
    )
    .unwrap();
    assert_eq!(
        reason(&p, old.certificate(), "acme", "globex"),
        UpdateReason::CertificateInvalid
    );
    let again = update(&old, &old);
    let p = sign_statement(&serde_json::to_vec(&again).unwrap(), &old).unwrap();
    assert_eq!(
        reason(&p, old.certificate(), "acme", "globex"),
        UpdateReason::CertificateInvalid
    );
    // An overlap that ends before it starts, or lasts too long; not a statement at all.
    let mut back = u.clone();
    back.old_valid_until = time::iso8601(now - 7200);
    let p = back.sign(&new).unwrap();
    assert_eq!(
        reason(&p, old.certificate(), "acme", "globex"),
        UpdateReason::Malformed
    );
    let mut long = u.clone();
    long.old_valid_until = time::iso8601(now + MAX_OVERLAP_SECS as i64 + 86400);
    let p = long.sign(&new).unwrap();
    assert_eq!(
        reason(&p, old.certificate(), "acme", "globex"),
        UpdateReason::Malformed
    );
    assert_eq!(
        reason(b"junk", old.certificate(), "acme", "globex"),
        UpdateReason::Malformed
    );
    let mut other_type = u.clone();
    other_type.r#type = "layersec-directory-answer".into();
    let p = other_type.sign(&new).unwrap();
    assert_eq!(
        reason(&p, old.certificate(), "acme", "globex"),
        UpdateReason::Malformed
    );
}
