//! Issue 9 at the service, end to end over TLS against real `layersec-server` processes:
//! refusal notices, what an outsider learns from refusals, reused MessageIds, CA certificates.

mod common;

use common::*;
use ls_core::as4::coordination::{self, FailureClass};
use ls_core::as4::message::{self, ReadOptions};
use ls_core::as4::wss::VerifyPolicy;
use ls_core::transport::Transport;
use std::time::Duration;

/// The state and failure class of the message `id` in `admin messages`.
fn state(s: &Server, id: &str) -> (String, Option<String>) {
    let all = s.admin(&["messages"]);
    let m = all
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == id)
        .unwrap_or_else(|| panic!("no record of {id}: {all}"));
    (
        m["state"].as_str().unwrap().to_string(),
        m["failure_class"].as_str().map(str::to_string),
    )
}

#[test]
fn a_refusal_notice_fails_the_message_and_reaches_its_sender() {
    let mut s = Server::init("notice", |c| {
        c.replace("redeliver_after_secs = 300", "redeliver_after_secs = 1")
    });
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let carol = s.party("carol");
    let t = s.transport();
    let svc = s.service_cert();
    let m1 = alice.message("bob", b"bob cannot open this");
    let m2 = alice.message("bob", b"the next one");
    alice.exchange(&t, &svc).push(&m1).unwrap();
    alice.exchange(&t, &svc).push(&m2).unwrap();

    let bx = bob.exchange(&t, &svc);
    let first = bx.pull(&bob.mpc()).unwrap().unwrap();
    assert_eq!(first.body, m1.body);
    // bob refuses m1 for good: the service answers with its usual signed receipt (checked
    // against the notice by `push`).
    let notice = bob.refusal_notice("alice", &m1.message_id, FailureClass::CannotOpen);
    bx.push(&notice).expect("the notice is accepted");
    assert_eq!(
        state(&s, &m1.message_id),
        ("failed".into(), Some("cannot_open".into()))
    );
    // The admin API shows the same.
    let (st, body) = admin_call(&s, "GET", "/admin/messages?party=bob", "");
    assert_eq!(st, 200, "{body}");
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rec = api
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == m1.message_id.as_str())
        .unwrap();
    assert_eq!(rec["state"], "failed");
    assert_eq!(rec["failure_class"], "cannot_open");
    assert_eq!(rec["refusal_notice_id"], notice.message_id.as_str());

    // m1 is never offered again, and does not block m2: m2 comes, then (its lease run out
    // without a receipt, as m1's, older, would have first) m2 again, never m1.
    let next = bx.pull(&bob.mpc()).unwrap().unwrap();
    assert_eq!(next.body, m2.body);
    let mut again = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            again = bx.pull(&bob.mpc()).unwrap();
            again.is_some()
        }),
        "m2 is offered again after its lease"
    );
    let again = again.unwrap();
    assert_eq!(again.body, m2.body);

    // alice pulls the notice byte for byte as bob signed it, and verifies bob's signature.
    let ax = alice.exchange(&t, &svc);
    let got = ax
        .pull(&alice.mpc())
        .unwrap()
        .expect("the notice waits for alice");
    assert_eq!(got.body, notice.body);
    assert_eq!(got.content_type, notice.content_type);
    let read = message::read(
        &got.content_type,
        &got.body,
        &ReadOptions {
            recipient: None,
            policy: VerifyPolicy {
                signer: Some(bob.identity.certificate()),
                ..Default::default()
            },
            limits: Default::default(),
        },
    )
    .unwrap();
    let um = &read.messaging.user_messages[0];
    let n = coordination::read_refusal(um).unwrap().unwrap();
    assert_eq!(n.message_id, m1.message_id);
    assert_eq!(n.class, FailureClass::CannotOpen);
    let receipt = message::build_receipt(&read, &alice.identity, "test.example").unwrap();
    ax.post_receipt(&receipt).unwrap();
    assert_eq!(state(&s, &notice.message_id).0, "delivered");

    // The same notice again (journalled bytes) is a duplicate; another one for m1 is refused.
    bx.push(&notice)
        .expect("a repeated notice gets the first receipt");
    let e = bx
        .push(&bob.refusal_notice("alice", &m1.message_id, FailureClass::Policy))
        .unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0004", "{e}");
    assert!(ebms_message(&e).contains("already refused"), "{e}");
    // carol cannot refuse a message that was not sent to her.
    let e = carol
        .exchange(&t, &svc)
        .push(&carol.refusal_notice("alice", &m2.message_id, FailureClass::TooLarge))
        .unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0004", "{e}");
    // bob's notice must go to the message's sender, not to carol.
    let e = bx
        .push(&bob.refusal_notice("carol", &m2.message_id, FailureClass::TooLarge))
        .unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0004", "{e}");
    assert!(ebms_message(&e).contains("alice"), "{e}");
    // A malformed notice (no FailureClass).
    let bad = bob.refusal_notice_with("alice", &m2.message_id, FailureClass::Policy, |um| {
        um.properties
            .retain(|p| p.name != coordination::PROP_FAILURE_CLASS)
    });
    assert_eq!(ebms_code(&bx.push(&bad).unwrap_err()), "EBMS:0009");
    assert_eq!(state(&s, &m2.message_id).0, "leased");

    // After a receipt, a notice is still handed to the sender; the message stays delivered.
    let (_, r) = bob.read_pulled(&again, alice.identity.certificate());
    bx.post_receipt(&r).unwrap();
    bx.push(&bob.refusal_notice("alice", &m2.message_id, FailureClass::Policy))
        .unwrap();
    assert_eq!(
        state(&s, &m2.message_id),
        ("delivered".into(), Some("policy".into()))
    );
    assert!(ax.pull(&alice.mpc()).unwrap().is_some());

    let m = metrics(&s);
    assert_eq!(
        metric(&m, "layersec_refusal_notices_total{class=\"cannot_open\"}"),
        1.0
    );
    assert_eq!(
        metric(&m, "layersec_refusal_notices_total{class=\"policy\"}"),
        1.0
    );
    assert!(s
        .logs()
        .iter()
        .any(|l| l.contains("\"event\":\"refused_by_recipient\"")));
}

/// Every way an unauthenticated request can be refused gets the same answer: same code, same
/// descriptions, RefToMessageId the request's own MessageId. The reasons are in the metrics.
#[test]
fn until_a_signature_verifies_every_refusal_is_the_same() {
    let mut s = Server::init("outsider", |c| c);
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let carol = s.party("carol");
    let dave = s.party("dave");
    let t = s.transport();
    let svc = s.service_cert();
    let held = alice.message("bob", b"held");
    alice.exchange(&t, &svc).push(&held).unwrap();
    s.admin(&["party", "revoke", "carol"]);
    s.admin(&["subscriber", "suspend", &dave.subscriber.to_string()]);
    let mallory = Party::new("mallory");
    let domain = "test.example";
    let soap = ls_core::as4::envelope::SoapVersion::Soap12;
    let pull = |p: &Party, mpc: &str| {
        ls_core::as4::exchange::pull_request(soap, mpc, &p.identity, domain).unwrap()
    };
    // A receipt signed by `by` for the message `id` (a receipt built for `held`, pointed at
    // `id`).
    let receipt = |by: &Party, id: &str| {
        let inc = message::read(
            &held.content_type,
            &held.body,
            &ReadOptions {
                recipient: None,
                policy: VerifyPolicy {
                    signer: Some(alice.identity.certificate()),
                    ..Default::default()
                },
                limits: Default::default(),
            },
        )
        .unwrap();
        let mut inc = inc;
        inc.messaging.user_messages[0].info.message_id = id.to_string();
        message::build_receipt(&inc, &by.identity, domain).unwrap()
    };
    let cases = [
        ("push from an unknown party", mallory.message("bob", b"x")),
        ("push from a revoked party", carol.message("bob", b"x")),
        ("push from a suspended account", dave.message("bob", b"x")),
        (
            "push in a registered name, signed by someone else",
            alice.message_signed_by("bob", b"x", &mallory.identity),
        ),
        ("pull of someone else's MPC", pull(&mallory, &bob.mpc())),
        (
            "pull of an MPC nobody owns",
            pull(&mallory, &ls_core::as4::exchange::party_mpc("nobody")),
        ),
        ("pull by a revoked party", pull(&carol, &carol.mpc())),
        (
            "receipt by a stranger for a held message",
            receipt(&mallory, &held.message_id),
        ),
        (
            "receipt by a stranger for no message",
            receipt(&mallory, "no-such-message@test.example"),
        ),
    ];
    let mut seen = Vec::new();
    for (what, built) in &cases {
        let e = refusal(&t, &svc, &built.content_type, &built.body);
        assert_eq!(
            e.ref_to_message_in_error.as_deref(),
            Some(built.message_id.as_str()),
            "{what}"
        );
        seen.push((
            what,
            (
                e.code,
                e.severity,
                e.short_description,
                e.description,
                e.category,
                e.origin,
                e.error_detail,
            ),
        ));
    }
    // Malformed input has no MessageId to refer to; otherwise the same answer.
    let junk = refusal(&t, &svc, "application/soap+xml", b"<not-soap/>");
    assert_eq!(junk.ref_to_message_in_error, None);
    seen.push((
        &"malformed",
        (
            junk.code,
            junk.severity,
            junk.short_description,
            junk.description,
            junk.category,
            junk.origin,
            junk.error_detail,
        ),
    ));
    let first = &seen[0].1;
    assert_eq!(first.0, "EBMS:0101");
    assert_eq!(
        first.3.as_deref(),
        Some("the message could not be authenticated")
    );
    for (what, answer) in &seen {
        assert_eq!(answer, first, "{what} is answered differently");
    }
    // The reasons are told apart where the operator looks.
    let m = metrics(&s);
    for reason in [
        "unknown_party",
        "party_not_active",
        "authentication",
        "pull_unknown_mpc",
        "receipt_unknown_message",
        "malformed",
    ] {
        assert!(
            metric(
                &m,
                &format!("layersec_messages_rejected_total{{reason=\"{reason}\"}}")
            ) >= 1.0,
            "{reason}"
        );
    }
    let logs = s.logs().join("\n");
    assert!(logs.contains("is not registered"), "the log has the reason");
    // The held message is untouched.
    let bx = bob.exchange(&t, &svc);
    assert_eq!(bx.pull(&bob.mpc()).unwrap().unwrap().body, held.body);
}

#[test]
fn a_reused_message_id_is_refused_but_a_retry_is_not() {
    let mut s = Server::init("reuse", |c| c);
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let _carol = s.party("carol");
    let t = s.transport();
    let svc = s.service_cert();
    let ax = alice.exchange(&t, &svc);
    let id = "invoice-42@alice.example";
    let first = alice.message_with_id("bob", id, b"invoice 42: 100 EUR", "doc@alice");
    let r1 = ax.push(&first).unwrap();
    // A byte-identical retry: the first receipt.
    let r2 = ax.push(&first).unwrap();
    assert_eq!(
        r1.messaging.signals[0].info.message_id,
        r2.messaging.signals[0].info.message_id
    );
    // The same content signed again (new timestamp, signature, MIME boundary, Content-ID), as a
    // gateway retrying does: also the first receipt.
    let resigned = alice.message_with_id("bob", id, b"invoice 42: 100 EUR", "retry@alice");
    assert_ne!(resigned.body, first.body);
    let answer = t.post(&resigned.content_type, &resigned.body).unwrap();
    let answer = message::read(
        &answer.content_type,
        &answer.body,
        &ReadOptions {
            recipient: None,
            policy: VerifyPolicy {
                signer: Some(&svc),
                ..Default::default()
            },
            limits: Default::default(),
        },
    )
    .unwrap();
    assert!(
        matches!(
            answer.messaging.signals[0].signal,
            ls_core::as4::model::Signal::Receipt { .. }
        ),
        "{:?}",
        answer.messaging.signals[0]
    );
    assert_eq!(
        answer.messaging.signals[0].info.message_id, r1.messaging.signals[0].info.message_id,
        "the first receipt"
    );
    // Other content under the same MessageId: refused with LS:0003.
    let other = alice.message_with_id("bob", id, b"invoice 42: 999 EUR", "doc@alice");
    let e = ax.push(&other).unwrap_err();
    assert_eq!(
        ebms_code(&e),
        coordination::errors::MESSAGE_ID_REUSED,
        "{e}"
    );
    assert!(ebms_message(&e).contains("other content"), "{e}");
    // The same content to another recipient: refused too.
    let e = ax
        .push(&alice.message_with_id("carol", id, b"invoice 42: 100 EUR", "doc@alice"))
        .unwrap_err();
    assert_eq!(
        ebms_code(&e),
        coordination::errors::MESSAGE_ID_REUSED,
        "{e}"
    );

    // bob gets the first message, once.
    let bx = bob.exchange(&t, &svc);
    let p = bx.pull(&bob.mpc()).unwrap().unwrap();
    assert_eq!(p.body, first.body);
    assert!(bx.pull(&bob.mpc()).unwrap().is_none());
    let m = metrics(&s);
    assert_eq!(
        metric(
            &m,
            "layersec_messages_rejected_total{reason=\"message_id_reused\"}"
        ),
        2.0
    );
    assert_eq!(metric(&m, "layersec_messages_duplicate_total"), 2.0);
}

/// `openssl req -x509` makes CA certificates by default; they are refused as party signing
/// certificates unless the operator forces it.
#[test]
fn ca_certificates_are_refused_unless_forced() {
    let mut s = Server::init("ca-cert", |c| c);
    s.serve();
    let _bob = s.party("bob");
    let key = s.dir.join("ca-party.key");
    let crt = s.dir.join("ca-party.crt");
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "30"])
        .args(["-subj", "/CN=ca-party", "-keyout", path_str(&key)])
        .args(["-out", path_str(&crt)])
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sub = s.admin(&["subscriber", "add", "--organisation", "CA Ltd"]);
    let sub = sub["id"].to_string();
    let add = |extra: &[&str]| {
        let mut args = vec![
            "party",
            "add",
            "--subscriber",
            &sub,
            "--party",
            "ca-party",
            "--certificate",
            path_str(&crt),
        ];
        args.extend_from_slice(extra);
        outcome(&s.admin_raw(&args))
    };
    let (code, _, err) = add(&[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("CA certificate")
            && err.contains("basicConstraints CA:TRUE")
            && err.contains("--allow-ca-certificate")
            && err.contains("end-entity"),
        "{err}"
    );
    // The admin API says the same.
    let pem = std::fs::read_to_string(&crt).unwrap();
    let req = serde_json::json!({
        "subscriber_id": sub.parse::<i64>().unwrap(), "party_id": "ca-party",
        "certificate_pem": pem,
    });
    let (st, body) = admin_call(&s, "POST", "/admin/parties", &req.to_string());
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("allow_ca_certificate"), "{body}");
    // Forced.
    let (code, out, err) = add(&["--allow-ca-certificate"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"ca-party\""), "{out}");
    // Replacing a certificate: the same rule.
    let alice = s.party("alice");
    let (code, _, err) = outcome(&s.admin_raw(&[
        "party",
        "replace-certificate",
        "alice",
        "--certificate",
        path_str(&crt),
    ]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--allow-ca-certificate"), "{err}");
    // An end-entity certificate (what `layersec keygen` makes) is registered as before.
    let t = s.transport();
    let svc = s.service_cert();
    alice
        .exchange(&t, &svc)
        .push(&alice.message("bob", b"x"))
        .unwrap();
    // And the API accepts the forced registration of another party's CA certificate.
    let other = s.dir.join("ca-other.crt");
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "30"])
        .args([
            "-subj",
            "/CN=ca-other",
            "-keyout",
            path_str(&s.dir.join("o.key")),
        ])
        .args(["-out", path_str(&other)])
        .output()
        .unwrap();
    assert!(out.status.success());
    let req = serde_json::json!({
        "subscriber_id": sub.parse::<i64>().unwrap(), "party_id": "ca-other",
        "certificate_pem": std::fs::read_to_string(&other).unwrap(),
        "allow_ca_certificate": true,
    });
    let (st, body) = admin_call(&s, "POST", "/admin/parties", &req.to_string());
    assert_eq!(st, 201, "{body}");
    let req = serde_json::json!({
        "subscriber_id": 1, "party_id": "x", "certificate_pem": "x",
        "allow_ca_certificate": "yes",
    });
    let (st, body) = admin_call(&s, "POST", "/admin/parties", &req.to_string());
    assert_eq!(st, 400, "{body}");
}
