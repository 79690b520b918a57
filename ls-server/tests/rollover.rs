//! Key rollover at a real `layersec-server`: `POST /rollover` (a request signed by the party's
//! old and new keys registers the new certificate, the old one valid for the overlap), and the
//! certificate update and its answer routed between partners as co-ordination messages.

mod common;

use common::*;
use ls_core::as4::coordination::{self, UpdateAnswer, UpdateHeader};
use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::message::{self, Built, Outgoing, Payload};
use ls_core::as4::model::Messaging;
use ls_core::keys::builder::{CertPurpose, CertificateBuilder};
use ls_core::rollover::{self, CertificateUpdate, Registered, RequestClaims};
use ls_core::transport::{HttpResponse, HttpsConfig, HttpsTransport, Transport};
use ls_core::{Certificate, Identity, KeyType};
use std::time::Duration;

fn post(s: &Server, body: &[u8]) -> HttpResponse {
    let mut c = HttpsConfig::new(rollover::rollover_url(&s.url).unwrap());
    c.ca_pem = Some(s.tls_ca());
    c.idle_timeout = Duration::from_secs(60);
    HttpsTransport::new(c)
        .unwrap()
        .post(rollover::CONTENT_TYPE, body)
        .unwrap()
}

fn reason(r: &HttpResponse) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&r.body)));
    v["reason"].as_str().unwrap_or_default().to_string()
}

fn new_key(id: &str) -> Identity {
    Identity::generate(id, KeyType::EcP256, 30, None)
        .unwrap()
        .identity
}

/// Roll `p` over to `new` with `overlap_secs`: the service's answer, checked.
fn roll(s: &Server, p: &Party, new: &Identity, overlap_secs: u64) -> Registered {
    let svc = s.service_cert();
    let c = RequestClaims::new(
        &p.id,
        p.identity.certificate(),
        new.certificate(),
        overlap_secs,
        &svc,
    )
    .unwrap();
    let r = post(s, &rollover::build_request(&p.identity, new, &c).unwrap());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    rollover::verify_response(&r.body, &svc, &c).unwrap()
}

/// Push a document from `p` to `to` signed by `signer`: Ok (the receipt verified) or the error.
fn push(s: &Server, p: &Party, to: &str, signer: &Identity) -> Result<(), ls_core::Error> {
    let t = s.transport();
    let svc = s.service_cert();
    p.exchange(&t, &svc)
        .push(&p.message_signed_by(to, b"<doc/>", signer))
        .map(|_| ())
}

#[test]
fn a_party_rolls_over_with_both_keys_and_the_old_one_ends_with_the_overlap() {
    let mut s = Server::init("rollover", |c| c);
    s.serve();
    let acme = s.party("acme");
    let globex = s.party("globex");
    let new = new_key("acme");
    let svc = s.service_cert();
    let now = ls_core::time::now_unix();

    let r = roll(&s, &acme, &new, 4);
    assert_eq!(r.outcome, "registered");
    assert!((r.old_valid_until - now - 4).abs() <= 2, "{r:?}");
    let shown = s.admin(&["party", "show", "acme"]);
    let certs = shown["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2, "{shown}");
    assert!(certs.iter().all(|c| c["current"] == true), "{shown}");
    // During the overlap both keys are accepted.
    push(&s, &acme, "globex", &acme.identity).unwrap();
    push(&s, &acme, "globex", &new).unwrap();
    // A retry (its answer lost) is recognised; the very same request is a replay.
    let again = roll(&s, &acme, &new, 3600);
    assert_eq!(again.outcome, "already_registered");
    assert_eq!(again.old_valid_until, r.old_valid_until);
    let c = RequestClaims::new(
        "acme",
        acme.identity.certificate(),
        new.certificate(),
        4,
        &svc,
    )
    .unwrap();
    let body = rollover::build_request(&acme.identity, &new, &c).unwrap();
    assert_eq!(post(&s, &body).status, 200);
    let replay = post(&s, &body);
    assert_eq!((replay.status, reason(&replay)), (400, "replayed".into()));
    // The old key, still accepted during the overlap, cannot roll the party over again (a
    // thief of it would retire the rightful new key).
    let thief = new_key("acme");
    let c = RequestClaims::new(
        "acme",
        acme.identity.certificate(),
        thief.certificate(),
        1,
        &svc,
    )
    .unwrap();
    let r = post(
        &s,
        &rollover::build_request(&acme.identity, &thief, &c).unwrap(),
    );
    assert_eq!((r.status, reason(&r)), (403, "not_registered".into()));
    push(&s, &acme, "globex", &new).unwrap();

    // After the overlap the old key is refused, the new one works.
    assert!(
        wait_until(Duration::from_secs(20), || push(
            &s,
            &acme,
            "globex",
            &acme.identity
        )
        .is_err_and(|e| ebms_code(&e) == "EBMS:0101")),
        "the old key still works after the overlap"
    );
    push(&s, &acme, "globex", &new).unwrap();
    // A rollover signed by the retired key is refused like one by a stranger.
    let newer = new_key("acme");
    let c = RequestClaims::new(
        "acme",
        acme.identity.certificate(),
        newer.certificate(),
        60,
        &svc,
    )
    .unwrap();
    let r = post(
        &s,
        &rollover::build_request(&acme.identity, &newer, &c).unwrap(),
    );
    assert_eq!((r.status, reason(&r)), (403, "not_registered".into()));
    drop(globex);
    let m = metrics(&s);
    assert_eq!(
        metric(&m, "layersec_rollovers_total{result=\"registered\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "layersec_rollovers_total{result=\"again\"}"),
        2.0
    );
    assert_eq!(
        metric(&m, "layersec_rollovers_total{result=\"replayed\"}"),
        1.0
    );
    assert!(s
        .logs()
        .iter()
        .any(|l| l.contains("\"rolled_over\"")
            && l.contains(&new.certificate().sha256_fingerprint())));
}

#[test]
fn rollovers_without_both_keys_or_for_another_party_are_refused() {
    let mut s = Server::init("rollover-refused", |c| c);
    s.serve();
    let acme = s.party("acme");
    let globex = s.party("globex");
    let svc = s.service_cert();
    let new = new_key("acme");
    let claims = |old: &Identity, new: &Identity, party: &str| {
        RequestClaims::new(party, old.certificate(), new.certificate(), 60, &svc).unwrap()
    };
    let refused = |body: Vec<u8>| {
        let r = post(&s, &body);
        (r.status, reason(&r))
    };
    // Signed by the new key only: no authority of the party's registered key.
    let c = claims(&new, &new, "acme");
    assert_eq!(
        refused(rollover::build_request(&new, &new, &c).unwrap()),
        (400, "certificate_refused".into())
    );
    let c = claims(&acme.identity, &new, "acme");
    assert_eq!(
        refused(rollover::build_request(&new, &new, &c).unwrap()),
        (400, "bad_proof".into())
    );
    // A key of its own that is not registered for the party (a stranger, or another party's).
    let stranger = new_key("acme");
    let c = claims(&stranger, &new, "acme");
    assert_eq!(
        refused(rollover::build_request(&stranger, &new, &c).unwrap()),
        (403, "not_registered".into())
    );
    let c = claims(&globex.identity, &new, "acme");
    assert_eq!(
        refused(rollover::build_request(&globex.identity, &new, &c).unwrap()),
        (403, "not_registered".into())
    );
    let c = claims(&acme.identity, &new, "nobody");
    assert_eq!(
        refused(rollover::build_request(&acme.identity, &new, &c).unwrap()),
        (403, "not_registered".into())
    );
    // Another party's certificate as the new one (its key signs too: it is theirs).
    let c = claims(&acme.identity, &globex.identity, "acme");
    assert_eq!(
        refused(rollover::build_request(&acme.identity, &globex.identity, &c).unwrap()),
        (409, "certificate_in_use".into())
    );
    // A CA certificate as the new one.
    let ca = CertificateBuilder::new("acme", CertPurpose::Ca)
        .key_type(KeyType::EcP256)
        .build(None)
        .unwrap()
        .identity;
    let c = claims(&acme.identity, &ca, "acme");
    assert_eq!(
        refused(rollover::build_request(&acme.identity, &ca, &c).unwrap()),
        (400, "certificate_refused".into())
    );
    // Meant for another service; stale.
    let mut c = claims(&acme.identity, &new, "acme");
    c.service_certificate_sha256 = "00".repeat(32);
    assert_eq!(
        refused(rollover::build_request(&acme.identity, &new, &c).unwrap()),
        (400, "wrong_service".into())
    );
    let mut c = claims(&acme.identity, &new, "acme");
    c.iat -= 3600;
    assert_eq!(
        refused(rollover::build_request(&acme.identity, &new, &c).unwrap()),
        (400, "stale".into())
    );
    // A revoked party.
    s.admin(&["party", "revoke", "globex"]);
    let gnew = new_key("globex");
    let c = claims(&globex.identity, &gnew, "globex");
    assert_eq!(
        refused(rollover::build_request(&globex.identity, &gnew, &c).unwrap()),
        (403, "not_registered".into())
    );
    // Too large, not JSON, GET.
    let big = post(&s, &vec![b' '; 70 * 1024]);
    assert_eq!(big.status, 413);
    assert_eq!(refused(b"{}".to_vec()).1, "malformed");
    let (status, _) = https_get(&s, "/rollover");
    assert_eq!(status, 405);
    // Nothing changed.
    let shown = s.admin(&["party", "show", "acme"]);
    assert_eq!(
        shown["certificates"].as_array().unwrap().len(),
        1,
        "{shown}"
    );
}

/// A certificate update from `from` to `to`: signed (AS4) by `signer`, the statement
/// counter-signed by `new`, the header naming `named` as the new certificate.
fn update(from: &Party, to: &str, signer: &Identity, new: &Identity, named: &Certificate) -> Built {
    update_with(from, to, signer, new, named, None)
}

/// As [`update`], with another payload than the statement.
fn update_with(
    from: &Party,
    to: &str,
    signer: &Identity,
    new: &Identity,
    named: &Certificate,
    payload: Option<Vec<u8>>,
) -> Built {
    let now = ls_core::time::now_unix();
    let u = CertificateUpdate::new(
        &from.id,
        to,
        from.identity.certificate(),
        new.certificate(),
        now,
        now + 60,
    )
    .unwrap();
    let h = UpdateHeader {
        new_certificate_sha256: named.sha256_fingerprint(),
        old_valid_until: u.old_valid_until.clone(),
    };
    let um = coordination::certificate_update_message(&from.id, to, &h, "test.example").unwrap();
    message::build(Outgoing {
        messaging: Messaging {
            user_messages: vec![um],
            signals: Vec::new(),
        },
        payloads: vec![Payload {
            content_id: "update@test".into(),
            mime_type: rollover::UPDATE_CONTENT_TYPE.into(),
            data: payload.unwrap_or_else(|| u.sign(new).unwrap()),
            compress: false,
            properties: Vec::new(),
        }],
        signer,
        encrypt_for: None,
        soap: SoapVersion::Soap12,
    })
    .unwrap()
}

fn answer(from: &Party, to: &str, update_id: &str, named: &Certificate) -> Built {
    let a = UpdateAnswer {
        message_id: update_id.into(),
        payload_sha256: "ab".repeat(32),
        new_certificate_sha256: named.sha256_fingerprint(),
        decision: coordination::DECISION_ACCEPTED.into(),
        reason: String::new(),
    };
    let um = coordination::update_answer_message(&from.id, to, &a, "test.example").unwrap();
    message::build(Outgoing {
        messaging: Messaging {
            user_messages: vec![um],
            signals: Vec::new(),
        },
        payloads: Vec::new(),
        signer: &from.identity,
        encrypt_for: None,
        soap: SoapVersion::Soap12,
    })
    .unwrap()
}

fn message_id(b: &Built) -> String {
    let m = ls_core::as4::exchange::peek(&b.content_type, &b.body, &Default::default()).unwrap();
    m.user_messages[0].info.message_id.clone()
}

#[test]
fn certificate_updates_and_their_answers_are_routed_as_coordination_messages() {
    let mut s = Server::init("rollover-update", |c| c);
    s.serve();
    let acme = s.party("acme");
    let globex = s.party("globex");
    let initech = s.party("initech");
    let t = s.transport();
    let svc = s.service_cert();
    let new = new_key("acme");

    // Not registered yet: an update naming the new certificate is refused.
    let early = update(&acme, "globex", &acme.identity, &new, new.certificate());
    let e = acme.exchange(&t, &svc).push(&early).unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0004", "{e}");
    assert!(ebms_message(&e).contains("register it first"), "{e}");

    roll(&s, &acme, &new, 3600);
    let u = update(&acme, "globex", &acme.identity, &new, new.certificate());
    let uid = message_id(&u);
    acme.exchange(&t, &svc).push(&u).unwrap();
    // The partner pulls it like any message and answers it.
    let pulled = globex
        .exchange(&t, &svc)
        .pull(&globex.mpc())
        .unwrap()
        .expect("the update waits");
    let (inc, receipt) = globex.read_pulled(&pulled, acme.identity.certificate());
    let h = coordination::read_certificate_update(&inc.messaging.user_messages[0])
        .unwrap()
        .unwrap();
    assert_eq!(
        h.new_certificate_sha256,
        new.certificate().sha256_fingerprint()
    );
    globex.exchange(&t, &svc).post_receipt(&receipt).unwrap();
    globex
        .exchange(&t, &svc)
        .push(&answer(&globex, "acme", &uid, new.certificate()))
        .unwrap();
    let got = acme.exchange(&t, &svc).pull(&acme.mpc()).unwrap().unwrap();
    let (inc, _) = acme.read_pulled(&got, globex.identity.certificate());
    let a = coordination::read_update_answer(&inc.messaging.user_messages[0])
        .unwrap()
        .unwrap();
    assert_eq!(a.message_id, uid);
    assert!(a.accepted());

    // An update is answered once, by its recipient, and only an update is answered.
    let e = globex
        .exchange(&t, &svc)
        .push(&answer(&globex, "acme", &uid, new.certificate()))
        .unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0004");
    assert!(ebms_message(&e).contains("already answered"), "{e}");
    let e = initech
        .exchange(&t, &svc)
        .push(&answer(&initech, "acme", &uid, new.certificate()))
        .unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0004", "{e}");
    let doc = acme.message("globex", b"<doc/>");
    acme.exchange(&t, &svc).push(&doc).unwrap();
    let e = globex
        .exchange(&t, &svc)
        .push(&answer(
            &globex,
            "acme",
            &message_id(&doc),
            new.certificate(),
        ))
        .unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0004", "{e}");
    // An update naming another party's certificate, or signed only by the new key with the
    // header of another: the service routes only what its sender registered. (That the
    // partner refuses an update signed by the new key alone is the partner's check.)
    let theirs = update(
        &acme,
        "initech",
        &acme.identity,
        &new,
        globex.identity.certificate(),
    );
    let e = acme.exchange(&t, &svc).push(&theirs).unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0004");
    let new_only = update(&acme, "initech", &new, &new, new.certificate());
    acme.exchange(&t, &svc).push(&new_only).unwrap();
    // Too large for a co-ordination message.
    let big = update_with(
        &acme,
        "initech",
        &acme.identity,
        &new,
        new.certificate(),
        Some(vec![7; 300 * 1024]),
    );
    let e = acme.exchange(&t, &svc).push(&big).unwrap_err();
    assert_eq!(ebms_code(&e), "LS:0005");
    let m = metrics(&s);
    assert_eq!(
        metric(
            &m,
            "layersec_coordination_messages_total{action=\"CertificateUpdate\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "layersec_coordination_messages_total{action=\"CertificateUpdateAnswer\"}"
        ),
        1.0
    );
    // Metered as co-ordination, not as documents.
    let day = ls_core::time::now_unix() / 86400 * 86400;
    let today = ls_core::time::iso8601(day)[..10].to_string();
    let tomorrow = ls_core::time::iso8601(day + 86400)[..10].to_string();
    let usage = s.admin(&["usage", "--from", &today, "--to", &tomorrow]);
    let acme_usage = usage["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["subscriber_id"] == acme.subscriber)
        .unwrap_or_else(|| panic!("{usage}"));
    assert_eq!(acme_usage["coordination_sent_messages"], 2, "{usage}");
}

/// A switch of the service's key that a crash interrupted (the new key written, the old
/// certificate still beside it) is finished at the next start.
#[test]
fn an_interrupted_switch_of_the_service_key_is_finished_at_start() {
    let mut s = Server::init("service-key-crash", |c| c);
    let old = s.service_cert();
    let r = s.admin(&["service", "rollover", "--overlap-hours", "0.0003"]);
    let next = s.dir.join("identity/next.crt");
    let new = ls_core::Certificate::load(&next).unwrap_or_else(|e| panic!("{r}: {e}"));
    assert_ne!(new, old);
    std::thread::sleep(Duration::from_secs(2));
    // The crash: the key file replaced, the certificate not yet.
    let key = s.dir.join("identity/service.key");
    std::fs::copy(s.dir.join("identity/next.key"), &key).unwrap();
    s.serve();
    assert_eq!(s.service_cert(), new);
    let shown = s.admin(&["service", "show"]);
    assert!(
        shown.to_string().contains(&new.sha256_fingerprint()),
        "{shown}"
    );
}
