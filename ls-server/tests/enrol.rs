//! Installation with enrolment codes against a real `layersec-server`: `admin subscriber enrol`
//! (and the admin API) issue codes, `POST /enrol` on the AS4 port registers a certificate with
//! one — a good enrolment, then every bad code (wrong, of another party, used, expired,
//! revoked), no proof of possession, stale and replayed requests, another service, refused
//! certificates; brute force locked out per address and per account; the codes never in the
//! service's log.

mod common;

use common::*;
use ls_core::enrol::{self, Enrolled, RefusalBody, RequestClaims};
use ls_core::transport::{HttpsConfig, HttpsTransport, Transport};
use ls_core::{Certificate, Identity, KeyType};
use serde_json::Value;
use std::time::Duration;

/// The enrolment endpoint of `s`, over TLS with the server's certificate as CA.
fn enrol_transport(s: &Server) -> HttpsTransport {
    let mut c = HttpsConfig::new(enrol::enrolment_url(&s.url).unwrap());
    c.ca_pem = Some(s.tls_ca());
    c.idle_timeout = Duration::from_secs(60);
    HttpsTransport::new(c).unwrap()
}

/// `admin subscriber add`: the new subscriber's id.
fn subscriber(s: &Server, org: &str) -> i64 {
    s.admin(&["subscriber", "add", "--organisation", org])["id"]
        .as_i64()
        .unwrap()
}

/// `admin subscriber enrol SUB --party P --json`: the code.
fn code(s: &Server, sub: i64, party: &str) -> String {
    let v = s.admin(&[
        "subscriber",
        "enrol",
        &sub.to_string(),
        "--party",
        party,
        "--json",
    ]);
    assert_eq!(v["party_id"], party);
    assert_eq!(v["state"], "outstanding");
    v["code"].as_str().unwrap().to_string()
}

fn claims(s: &Server, party: &str, code: &str) -> RequestClaims {
    RequestClaims::new(party, code, &s.service_cert(), 1 << 20).unwrap()
}

/// POST a request body: the HTTP status and the body.
fn post(t: &HttpsTransport, body: &[u8]) -> (u16, Vec<u8>) {
    let r = t.post(enrol::CONTENT_TYPE, body).unwrap();
    (r.status, r.body)
}

/// The refusal's reason and message (panics on anything but a refusal body).
fn refused(status: u16, body: &[u8]) -> (String, String) {
    let b: RefusalBody = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "not a refusal ({e}), HTTP {status}: {}",
            String::from_utf8_lossy(body)
        )
    });
    let reason = enrol::Refusal::parse(&b.reason).unwrap();
    assert_eq!(status, reason.http_status(), "{}", b.error.message);
    assert_eq!(b.error.transient, reason.is_transient());
    (b.reason, b.error.message)
}

/// Enrol `identity` for `party` with `code`; the reason of the refusal, or the enrolment.
fn try_enrol(
    s: &Server,
    t: &HttpsTransport,
    identity: &Identity,
    party: &str,
    code: &str,
) -> Result<Enrolled, (String, String)> {
    let c = claims(s, party, code);
    let (status, body) = post(t, &enrol::build_request(identity, &c).unwrap());
    if status == 200 {
        return Ok(
            enrol::verify_response(&body, &s.service_cert(), &c, identity.certificate()).unwrap(),
        );
    }
    Err(refused(status, &body))
}

fn new_identity(party: &str) -> Identity {
    Identity::generate(party, KeyType::EcP256, 30, None)
        .unwrap()
        .identity
}

/// A self-signed certificate of `key` with `ca` set in basicConstraints, as an identity.
fn self_signed(key: openssl::pkey::PKey<openssl::pkey::Private>, ca: bool) -> Identity {
    use openssl::x509::extension::{BasicConstraints, KeyUsage};
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "odd").unwrap();
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
    let mut bc = BasicConstraints::new();
    if ca {
        bc.critical().ca();
    }
    b.append_extension(bc.build().unwrap()).unwrap();
    b.append_extension(KeyUsage::new().digital_signature().build().unwrap())
        .unwrap();
    b.sign(&key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    let cert = Certificate::from_der(&b.build().to_der().unwrap()).unwrap();
    Identity::new(key, cert, Vec::new()).unwrap()
}

/// Re-encode a request with its header or payload changed (the signature kept as it was).
fn tamper(body: &[u8], edit: impl FnOnce(&mut Value, &mut Value)) -> Vec<u8> {
    use ls_core::bytes::{base64url_decode, base64url_encode};
    let mut jws: Value = serde_json::from_slice(body).unwrap();
    let d = |v: &Value| -> Value {
        serde_json::from_slice(&base64url_decode(v.as_str().unwrap()).unwrap()).unwrap()
    };
    let (mut h, mut p) = (d(&jws["protected"]), d(&jws["payload"]));
    edit(&mut h, &mut p);
    jws["protected"] = base64url_encode(&serde_json::to_vec(&h).unwrap()).into();
    jws["payload"] = base64url_encode(&serde_json::to_vec(&p).unwrap()).into();
    serde_json::to_vec(&jws).unwrap()
}

#[test]
fn enrolment_with_a_code_and_every_bad_code() {
    // (Lockouts are the next test's: here every refusal is seen for what it is.)
    let mut s = Server::init("enrol", |c| {
        c.replace(
            "max_failures_per_address = 10",
            "max_failures_per_address = 1000",
        )
        .replace(
            "max_failures_per_account = 20",
            "max_failures_per_account = 1000",
        )
    });
    s.serve();
    let t = enrol_transport(&s);
    let svc = s.service_cert();
    let mut codes: Vec<String> = Vec::new();

    // GET: the service's signing certificate, as `init` fetches it.
    let info = t.get().unwrap();
    assert_eq!(info.status, 200);
    let (_, cert) = enrol::ServiceInfo::read(&info.body).unwrap();
    assert_eq!(cert, svc);

    let acme = subscriber(&s, "Acme");
    let globex = subscriber(&s, "Globex");
    let c_acme = code(&s, acme, "acme");
    codes.push(c_acme.clone());
    assert_eq!(c_acme.len(), 29);

    // A wrong code, and a code of another party, answer the same (but for the party named).
    let c_globex = code(&s, globex, "globex");
    codes.push(c_globex.clone());
    let me = new_identity("acme");
    let wrong = enrol::new_code().unwrap().to_string();
    let (r1, m1) = try_enrol(&s, &t, &me, "acme", &wrong).unwrap_err();
    let (r2, m2) = try_enrol(&s, &t, &me, "acme", &c_globex).unwrap_err();
    assert_eq!((r1.as_str(), r2.as_str()), ("invalid_code", "invalid_code"));
    assert_eq!(m1, m2);
    assert!(m1.contains("a code is valid for one party id only"), "{m1}");
    // Not a code at all: the same.
    let (r, m) = try_enrol(&s, &t, &me, "acme", "not-a-code").unwrap_err();
    assert_eq!((r.as_str(), &m), ("invalid_code", &m1));
    // The code of acme does not enrol globex either.
    let g = new_identity("globex");
    assert_eq!(
        try_enrol(&s, &t, &g, "globex", &c_acme).unwrap_err().0,
        "invalid_code"
    );

    // The good enrolment: typed in lower case without dashes, as people do.
    let typed = c_acme.to_lowercase().replace('-', " ");
    let e = try_enrol(&s, &t, &me, "acme", &typed).unwrap();
    assert_eq!(e.outcome, "registered");
    assert_eq!(e.subscriber_id, acme);
    assert_eq!(e.mpc, "urn:layersec:mpc:acme");
    assert_eq!(e.max_document_bytes, 1 << 20);
    assert_eq!(e.certificate_sha256, me.certificate().sha256_fingerprint());
    // Registered exactly as `admin party add` registers it.
    let shown = s.admin(&["party", "show", "acme"]);
    assert_eq!(shown["subscriber_id"], acme);
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["max_document_bytes"], 1 << 20);
    assert_eq!(
        shown["certificates"][0]["sha256"],
        me.certificate().sha256_fingerprint()
    );
    // The same request again (a retry after a lost answer) is recognised, not a new use.
    assert_eq!(
        try_enrol(&s, &t, &me, "acme", &c_acme).unwrap().outcome,
        "already_enrolled"
    );
    // Used: by another certificate, refused.
    let (r, m) = try_enrol(&s, &t, &new_identity("acme"), "acme", &c_acme).unwrap_err();
    assert_eq!(r, "code_used");
    assert!(m.contains("ask the provider for a new code"), "{m}");

    // The party works at once: it pushes to globex (registered the old way) and pulls.
    let acme_party = Party {
        id: "acme".into(),
        identity: me.clone(),
        subscriber: acme,
    };
    let bob = s.party("bob");
    let at = s.transport();
    let sent = acme_party.message("bob", b"<Invoice/>");
    acme_party.exchange(&at, &svc).push(&sent).expect("push");
    let pulled = bob
        .exchange(&at, &svc)
        .pull(&bob.mpc())
        .unwrap()
        .expect("waits");
    assert_eq!(pulled.body, sent.body);
    let back = bob.message("acme", b"<Order/>");
    bob.exchange(&at, &svc).push(&back).expect("push to acme");
    let got = acme_party
        .exchange(&at, &svc)
        .pull(&acme_party.mpc())
        .unwrap()
        .expect("acme pulls");
    assert_eq!(got.body, back.body);

    // Expired.
    let c_old = code(&s, acme, "acme-2");
    codes.push(c_old.clone());
    let db = s.dir.join("data/layersec.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE enrolment_codes SET expires_at = 1 WHERE pid = 'acme-2'",
            [],
        )
        .unwrap();
    let (r, m) = try_enrol(&s, &t, &new_identity("acme-2"), "acme-2", &c_old).unwrap_err();
    assert_eq!(r, "code_expired", "{m}");
    // Revoked (by the operator, or by issuing a new one for the party).
    let c_rev = code(&s, acme, "acme-3");
    codes.push(c_rev.clone());
    let listed = s.admin(&["subscriber", "enrolments", &acme.to_string()]);
    let id = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["party_id"] == "acme-3")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert!(listed.to_string().find("code\"").is_none(), "{listed}");
    let rev = s.admin(&[
        "subscriber",
        "enrol",
        &acme.to_string(),
        "--revoke",
        &id.to_string(),
    ]);
    assert_eq!(rev["state"], "revoked");
    assert_eq!(
        try_enrol(&s, &t, &new_identity("acme-3"), "acme-3", &c_rev)
            .unwrap_err()
            .0,
        "code_revoked"
    );
    let c_first = code(&s, acme, "acme-4");
    let c_second = code(&s, acme, "acme-4");
    codes.extend([c_first.clone(), c_second.clone()]);
    assert_eq!(
        try_enrol(&s, &t, &new_identity("acme-4"), "acme-4", &c_first)
            .unwrap_err()
            .0,
        "code_revoked"
    );

    // No proof of possession: the certificate of one key, the signature of another.
    let c4 = c_second.clone();
    let other = new_identity("acme-4");
    let body = enrol::build_request(&me, &claims(&s, "acme-4", &c4)).unwrap();
    let swapped = tamper(&body, |h, _| {
        h["x5c"] = serde_json::json!([ls_core::bytes::base64_encode(other.certificate().der())]);
    });
    let (status, b) = post(&t, &swapped);
    assert_eq!(refused(status, &b).0, "bad_proof");
    // The claims changed after signing (another party).
    let edited = tamper(&body, |_, p| p["party_id"] = "acme".into());
    let (status, b) = post(&t, &edited);
    assert_eq!(refused(status, &b).0, "bad_proof");
    // Stale (an hour old), replayed, meant for another service.
    let mut c = claims(&s, "acme-4", &c4);
    c.iat -= 3600;
    let (status, b) = post(&t, &enrol::build_request(&other, &c).unwrap());
    assert_eq!(refused(status, &b).0, "stale");
    let mut c = claims(&s, "acme-4", &c4);
    c.service_certificate_sha256 = me.certificate().sha256_fingerprint();
    let (status, b) = post(&t, &enrol::build_request(&other, &c).unwrap());
    let (r, m) = refused(status, &b);
    assert_eq!(r, "wrong_service");
    assert!(m.contains(&svc.sha256_fingerprint()), "{m}");
    let wrong_code_body =
        enrol::build_request(&other, &claims(&s, "acme-4", &enrol::new_code().unwrap())).unwrap();
    assert_eq!(refused_of(post(&t, &wrong_code_body)), "invalid_code");
    assert_eq!(refused_of(post(&t, &wrong_code_body)), "replayed");
    // Certificates the service does not register: a CA certificate, a weak key, another
    // party's certificate.
    let ca = self_signed(
        openssl::pkey::PKey::from_ec_key(
            openssl::ec::EcKey::generate(
                &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap(),
        true,
    );
    let (r, m) = try_enrol(&s, &t, &ca, "acme-4", &c4).unwrap_err();
    assert_eq!(r, "certificate_refused");
    assert!(m.contains("CA certificate"), "{m}");
    let weak = self_signed(
        openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(1024).unwrap()).unwrap(),
        false,
    );
    let (r, m) = try_enrol(&s, &t, &weak, "acme-4", &c4).unwrap_err();
    assert_eq!(r, "certificate_refused");
    assert!(m.contains("1024"), "{m}");
    let (r, _) = try_enrol(&s, &t, &bob.identity, "acme-4", &c4).unwrap_err();
    assert_eq!(r, "certificate_in_use");
    // Not JSON, and larger than the endpoint reads (413 before the body is read).
    assert_eq!(refused_of(post(&t, b"{\"x\":")), "malformed");
    let r = t.post(enrol::CONTENT_TYPE, &vec![b' '; 70 * 1024]).unwrap();
    assert_eq!(r.status, 413);
    assert!(String::from_utf8_lossy(&r.body).contains("65536 bytes"));
    // After all that, the code still enrols its party (the refusals used nothing).
    assert_eq!(
        try_enrol(&s, &t, &other, "acme-4", &c4).unwrap().outcome,
        "registered"
    );

    // Re-installing an existing party: its certificate replaced at once.
    let c_re = code(&s, acme, "acme");
    codes.push(c_re.clone());
    let me2 = new_identity("acme");
    assert_eq!(
        try_enrol(&s, &t, &me2, "acme", &c_re).unwrap().outcome,
        "replaced"
    );
    let shown = s.admin(&["party", "show", "acme"]);
    assert_eq!(shown["certificates"][0]["current"], true);
    assert_eq!(shown["certificates"][1]["current"], false);
    // Never a code for another account's party.
    let o = s.admin_raw(&[
        "subscriber",
        "enrol",
        &globex.to_string(),
        "--party",
        "acme",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("another account"));

    // The admin API issues, lists and revokes codes too.
    let (status, body) = admin_call(
        &s,
        "POST",
        "/admin/enrolments",
        &format!(r#"{{"subscriber_id": {globex}, "party_id": "globex-2", "expires_hours": 2}}"#),
    );
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let api_code = v["code"].as_str().unwrap().to_string();
    codes.push(api_code.clone());
    let (status, list) = admin_get(
        &s,
        &format!("/admin/enrolments?subscriber={globex}"),
        Some(&s.admin_token()),
    );
    assert_eq!(status, 200);
    assert!(
        list.contains("globex-2") && !list.contains(&api_code),
        "{list}"
    );
    let (status, body) = admin_call(
        &s,
        "POST",
        "/admin/enrolments/revoke",
        &format!(r#"{{"subscriber_id": {globex}, "id": {}}}"#, v["id"]),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin_call(
        &s,
        "POST",
        "/admin/enrolments",
        r#"{"subscriber_id": 999, "party_id": "x"}"#,
    );
    assert_eq!(status, 404, "{body}");

    // Counted by result.
    let m = metrics(&s);
    assert_eq!(
        metric(&m, "layersec_enrolments_total{result=\"registered\"}"),
        2.0
    );
    assert_eq!(
        metric(&m, "layersec_enrolments_total{result=\"invalid_code\"}"),
        5.0
    );

    // No code, in any form, ever reached the log.
    let log = s.logs().join("\n");
    assert!(log.contains("\"event\":\"enrolled\""), "{log}");
    assert!(log.contains("\"event\":\"enrol_refused\""), "{log}");
    for c in &codes {
        let n = enrol::normalize_code(c).unwrap();
        for form in [
            c.clone(),
            n.to_string(),
            n.to_lowercase(),
            c[..9].to_string(),
        ] {
            assert!(
                !log.contains(&form),
                "the code {form} is in the log:\n{log}"
            );
        }
    }
}

fn refused_of((status, body): (u16, Vec<u8>)) -> String {
    refused(status, &body).0
}

#[test]
fn brute_force_is_locked_out_per_address_and_per_account() {
    let mut s = Server::init("enrol-lockout", |c| {
        c.replace(
            "max_failures_per_address = 10",
            "max_failures_per_address = 5",
        )
        .replace(
            "max_failures_per_account = 20",
            "max_failures_per_account = 3",
        )
        .replace("lockout_secs = 900", "lockout_secs = 4")
    });
    s.serve();
    let t = enrol_transport(&s);
    let acme = subscriber(&s, "Acme");
    let globex = subscriber(&s, "Globex");
    let c_acme = code(&s, acme, "acme");
    let c_globex = code(&s, globex, "globex");
    let me = new_identity("acme");

    // Three guesses for acme's account lock it: even the right code is refused for now.
    for _ in 0..3 {
        let guess = enrol::new_code().unwrap();
        assert_eq!(
            try_enrol(&s, &t, &me, "acme", &guess).unwrap_err().0,
            "invalid_code"
        );
    }
    let (status, body) = post(
        &t,
        &enrol::build_request(&me, &claims(&s, "acme", &c_acme)).unwrap(),
    );
    let (r, m) = refused(status, &body);
    assert_eq!(r, "locked_out");
    assert!(m.contains("for this account"), "{m}");
    let r = t
        .post(
            enrol::CONTENT_TYPE,
            &enrol::build_request(&me, &claims(&s, "acme", &c_acme)).unwrap(),
        )
        .unwrap();
    assert_eq!(r.status, 429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=4).contains(&retry), "{retry}");
    // Another account enrols from the same address meanwhile.
    let g = new_identity("globex");
    assert_eq!(
        try_enrol(&s, &t, &g, "globex", &c_globex).unwrap().outcome,
        "registered"
    );

    // Two more failures from this address (party ids of no account) lock the address out:
    // now every enrolment from it is refused, whatever it names.
    for party in ["nobody-1", "nobody-2"] {
        let guess = enrol::new_code().unwrap();
        assert_eq!(
            try_enrol(&s, &t, &me, party, &guess).unwrap_err().0,
            "invalid_code"
        );
    }
    let (r, m) =
        try_enrol(&s, &t, &new_identity("x"), "x", &enrol::new_code().unwrap()).unwrap_err();
    assert_eq!(r, "locked_out");
    assert!(m.contains("from this address"), "{m}");
    // Attempts while locked out count for nothing and learn nothing; once the lockout ends
    // the right code enrols.
    assert!(wait_until(Duration::from_secs(20), || {
        try_enrol(&s, &t, &me, "acme", &c_acme).is_ok()
    }));
    let shown = s.admin(&["party", "show", "acme"]);
    assert_eq!(
        shown["certificates"][0]["sha256"],
        me.certificate().sha256_fingerprint()
    );
    let m = metrics(&s);
    assert!(metric(&m, "layersec_enrolments_total{result=\"locked_out\"}") >= 2.0);
    let log = s.logs().join("\n");
    assert!(log.contains("\"event\":\"enrol_account_locked\""), "{log}");
    for c in [&c_acme, &c_globex] {
        assert!(!log.contains(c.as_str()));
    }
}
