//! Issue 11 at the service, end to end over TLS against real `layersec-server` processes: signed
//! receipts are co-ordination messages, routed like refusal notices, capped in size, checked
//! against the message they name, recorded on it and metered apart from documents.

mod common;

use common::*;
use ls_core::as4::coordination::{self, FailureClass};
use ls_core::as4::message::{self, ReadOptions};
use ls_core::as4::wss::VerifyPolicy;
use serde_json::Value;

/// What the tests carry as the ESS receipt: a small DER SEQUENCE (the service does not read it).
fn ess() -> Vec<u8> {
    let mut der = vec![0x30, 34, 0x04, 32];
    der.extend([0x5a; 32]);
    der
}

/// The record of the message `id` in `admin messages`.
fn record(s: &Server, id: &str) -> Value {
    let all = s.admin(&["messages"]);
    all.as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == id)
        .unwrap_or_else(|| panic!("no record of {id}: {all}"))
        .clone()
}

/// Whether `admin messages` has a record of `id`.
fn has_record(s: &Server, id: &str) -> bool {
    s.admin(&["messages"])
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["message_id"] == id)
}

/// Today and tomorrow (UTC) as `YYYY-MM-DD`: the usage period that holds now.
fn today() -> (String, String) {
    let day = |t: i64| {
        let (y, m, d, ..) = ls_core::time::parts_from_unix(t);
        format!("{y:04}-{m:02}-{d:02}")
    };
    let today = ls_core::time::now_unix() / 86400 * 86400;
    (day(today), day(today + 86400))
}

/// The account row of `subscriber` in a usage report.
fn account(report: &Value, subscriber: i64) -> Value {
    report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["subscriber_id"] == subscriber)
        .unwrap_or_else(|| panic!("no account {subscriber}: {report}"))
        .clone()
}

/// A document sent, pulled and receipted (AS4), its signed receipt sent back: routed to the
/// sender byte for byte, recorded on the document, counted apart from documents in the usage
/// report (JSON, CSV, API), and in the metrics.
#[test]
fn a_receipt_is_routed_recorded_and_metered_apart() {
    let mut s = Server::init("receipt", |c| c);
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let t = s.transport();
    let svc = s.service_cert();
    let doc = alice.message("bob", &[7u8; 2000]);
    alice.exchange(&t, &svc).push(&doc).unwrap();
    let bx = bob.exchange(&t, &svc);
    let pulled = bx.pull(&bob.mpc()).unwrap().unwrap();
    let (_, r) = bob.read_pulled(&pulled, alice.identity.certificate());
    bx.post_receipt(&r).unwrap();
    assert_eq!(
        record(&s, &doc.message_id)["receipt_returned_at"],
        Value::Null
    );

    // bob's signed receipt: accepted with the service's usual signed receipt (checked against
    // it by `push`).
    let receipt = bob.signed_receipt("alice", &doc.message_id, &ess());
    let before = ls_core::time::now_unix();
    bx.push(&receipt).expect("the receipt is accepted");
    let rec = record(&s, &doc.message_id);
    assert_eq!(rec["state"], "delivered");
    assert_eq!(rec["receipt_message_id"], receipt.message_id.as_str());
    let at = ls_core::time::parse_date_time(rec["receipt_returned_at"].as_str().unwrap())
        .expect("receipt_returned_at is an xsd:dateTime");
    assert!(
        (before - 1..=ls_core::time::now_unix()).contains(&at),
        "{rec}"
    );
    assert_eq!(rec["failure_class"], Value::Null);
    // The admin API shows the same.
    let (st, body) = admin_call(&s, "GET", "/admin/messages?party=alice", "");
    assert_eq!(st, 200, "{body}");
    let api: Value = serde_json::from_str(&body).unwrap();
    let api_rec = api
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == doc.message_id.as_str())
        .unwrap();
    assert_eq!(api_rec["receipt_message_id"], rec["receipt_message_id"]);
    assert_eq!(api_rec["receipt_returned_at"], rec["receipt_returned_at"]);

    // The same receipt again (journalled bytes) gets the first receipt; another one for the
    // same document is refused.
    bx.push(&receipt)
        .expect("a repeated receipt gets the first receipt");
    let e = bx
        .push(&bob.signed_receipt("alice", &doc.message_id, &ess()))
        .unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0004", "{e}");
    assert!(ebms_message(&e).contains("already receipted"), "{e}");

    // alice pulls it byte for byte as bob signed it, verifies bob's signature, receipts it.
    let ax = alice.exchange(&t, &svc);
    let got = ax
        .pull(&alice.mpc())
        .unwrap()
        .expect("the receipt waits for alice");
    assert_eq!(got.body, receipt.body);
    assert_eq!(got.content_type, receipt.content_type);
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
    assert!(coordination::is_coordination(um));
    assert_eq!(um.action, coordination::ACTION_RECEIPT);
    assert_eq!(
        um.info.ref_to_message_id.as_deref(),
        Some(doc.message_id.as_str())
    );
    assert_eq!(read.payloads[0].data, ess());
    let ack = message::build_receipt(&read, &alice.identity, "test.example").unwrap();
    ax.post_receipt(&ack).unwrap();
    assert_eq!(record(&s, &receipt.message_id)["state"], "delivered");
    assert!(ax.pull(&alice.mpc()).unwrap().is_none());

    // The usage report: documents as before, co-ordination messages apart.
    let (from, to) = today();
    let u = s.admin(&["usage", "--from", &from, "--to", &to]);
    let a = account(&u, alice.subscriber);
    let b = account(&u, bob.subscriber);
    let doc_bytes = doc.body.len() as u64;
    let receipt_bytes = receipt.body.len() as u64;
    assert_eq!(
        (&a["sent_messages"], &a["sent_bytes"]),
        (&Value::from(1), &Value::from(doc_bytes))
    );
    assert_eq!(a["received_messages"], 0, "{a}");
    assert_eq!(a["coordination_sent_messages"], 0, "{a}");
    assert_eq!(a["coordination_received_messages"], 1, "{a}");
    assert_eq!(a["coordination_received_bytes"], receipt_bytes, "{a}");
    assert_eq!(
        (&b["sent_messages"], &b["sent_bytes"]),
        (&Value::from(0), &Value::from(0))
    );
    assert_eq!(b["received_messages"], 1, "{b}");
    assert_eq!(b["received_bytes"], doc_bytes, "{b}");
    assert_eq!(b["coordination_sent_messages"], 1, "{b}");
    assert_eq!(b["coordination_sent_bytes"], receipt_bytes, "{b}");
    assert_eq!(b["coordination_received_messages"], 0, "{b}");
    // The API gives the same report.
    let (st, body) = admin_call(&s, "GET", &format!("/admin/usage?from={from}&to={to}"), "");
    assert_eq!(st, 200, "{body}");
    let api: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(api["accounts"], u["accounts"]);
    // CSV: the document columns where they were, the co-ordination ones after them.
    let (code, csv, err) =
        outcome(&s.admin_raw(&["usage", "--from", &from, "--to", &to, "--format", "csv"]));
    assert_eq!(code, 0, "{err}");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "subscriber_id,organisation,period_from,period_to,sent_messages,sent_bytes,\
         received_messages,received_bytes,coordination_sent_messages,coordination_sent_bytes,\
         coordination_received_messages,coordination_received_bytes"
    );
    let row = |sub: i64| -> Vec<String> {
        csv.lines()
            .find(|l| l.starts_with(&format!("{sub},")))
            .unwrap_or_else(|| panic!("no row for {sub}: {csv}"))
            .rsplit(',')
            .take(8)
            .map(str::to_string)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    };
    let n = |v: u64| v.to_string();
    assert_eq!(
        row(alice.subscriber),
        [
            n(1),
            n(doc_bytes),
            n(0),
            n(0),
            n(0),
            n(0),
            n(1),
            n(receipt_bytes)
        ]
    );
    assert_eq!(
        row(bob.subscriber),
        [
            n(0),
            n(0),
            n(1),
            n(doc_bytes),
            n(1),
            n(receipt_bytes),
            n(0),
            n(0)
        ]
    );
    let (st, api_csv) = admin_call(
        &s,
        "GET",
        &format!("/admin/usage?from={from}&to={to}&format=csv"),
        "",
    );
    assert_eq!(st, 200);
    assert_eq!(api_csv, csv);

    let m = metrics(&s);
    assert_eq!(
        metric(
            &m,
            "layersec_coordination_messages_total{action=\"Receipt\"}"
        ),
        1.0
    );
    assert!(s
        .logs()
        .iter()
        .any(|l| l.contains("\"event\":\"receipt_returned\"")));
}

/// A co-ordination message larger than `MAX_COORDINATION_BYTES` is refused with `LS:0005` and
/// not stored; a document of the same size is not concerned.
#[test]
fn a_receipt_larger_than_the_cap_is_refused_with_ls_0005() {
    let mut s = Server::init("receipt-cap", |c| c);
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let t = s.transport();
    let svc = s.service_cert();
    let doc = alice.message("bob", b"a document");
    alice.exchange(&t, &svc).push(&doc).unwrap();
    let bx = bob.exchange(&t, &svc);
    let cap = coordination::MAX_COORDINATION_BYTES as usize;
    let big = bob.signed_receipt("alice", &doc.message_id, &vec![0x5a; cap]);
    assert!(big.body.len() > cap);
    let e = bx.push(&big).unwrap_err();
    assert_eq!(
        ebms_code(&e),
        coordination::errors::COORDINATION_TOO_LARGE,
        "{e}"
    );
    assert_eq!(ebms_code(&e), "LS:0005");
    let text = ebms_message(&e);
    assert!(text.contains("CoordinationTooLarge"), "{text}");
    assert!(text.contains(&cap.to_string()), "{text}");
    assert!(!has_record(&s, &big.message_id));
    assert_eq!(
        record(&s, &doc.message_id)["receipt_returned_at"],
        Value::Null
    );
    assert_eq!(
        metric(
            &metrics(&s),
            "layersec_messages_rejected_total{reason=\"coordination_too_large\"}"
        ),
        1.0
    );
    // Just under the cap is taken.
    let overhead = bob.signed_receipt("alice", &doc.message_id, b"").body.len();
    let fits = bob.signed_receipt("alice", &doc.message_id, &vec![0x5a; cap - overhead - 256]);
    assert!((cap - 1024..=cap).contains(&fits.body.len()));
    bx.push(&fits).expect("a receipt within the cap");
    // A document larger than the cap goes through.
    alice
        .exchange(&t, &svc)
        .push(&alice.message("bob", &vec![1u8; cap + 1024]))
        .expect("documents are not held to the co-ordination cap");
}

/// A receipt must name a document its From party received from its To party, held or held
/// (the record is kept): otherwise `EBMS:0004`, and nothing is stored. Malformed receipts are
/// `EBMS:0009`, unknown co-ordination Actions `EBMS:0001`.
#[test]
fn a_receipt_for_a_message_the_parties_never_exchanged_is_refused() {
    let mut s = Server::init("receipt-unknown", |c| c);
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let carol = s.party("carol");
    let t = s.transport();
    let svc = s.service_cert();
    let to_bob = alice.message("bob", b"for bob");
    let to_carol = alice.message("carol", b"for carol");
    alice.exchange(&t, &svc).push(&to_bob).unwrap();
    alice.exchange(&t, &svc).push(&to_carol).unwrap();
    let bx = bob.exchange(&t, &svc);
    let refused = |who: &Party, built: &ls_core::as4::message::Built, code: &str, what: &str| {
        let e = who.exchange(&t, &svc).push(built).unwrap_err();
        assert_eq!(ebms_code(&e), code, "{what}: {e}");
        assert!(!has_record(&s, &built.message_id), "{what}: stored");
        ebms_message(&e)
    };
    let cases = [
        (
            &bob,
            bob.signed_receipt("alice", "no-such-message@test.example", &ess()),
            "a message nobody sent",
        ),
        (
            &bob,
            bob.signed_receipt("alice", &to_carol.message_id, &ess()),
            "a message sent to someone else",
        ),
        (
            &carol,
            carol.signed_receipt("bob", &to_carol.message_id, &ess()),
            "addressed to someone but the message's sender",
        ),
        (
            &alice,
            alice.signed_receipt("bob", &to_bob.message_id, &ess()),
            "by the message's sender",
        ),
    ];
    for (who, built, what) in &cases {
        let text = refused(who, built, "EBMS:0004", what);
        assert!(text.contains("receipt:"), "{what}: {text}");
    }
    // No receipt of a receipt (no loops).
    let receipt = bob.signed_receipt("alice", &to_bob.message_id, &ess());
    bx.push(&receipt).unwrap();
    let text = refused(
        &alice,
        &alice.signed_receipt("bob", &receipt.message_id, &ess()),
        "EBMS:0004",
        "a receipt for a receipt",
    );
    assert!(text.contains("co-ordination message"), "{text}");
    // Malformed receipts.
    use ls_core::as4::model::Property;
    let other = carol.signed_receipt("alice", &to_carol.message_id, &ess());
    let malformed = [
        (
            carol.signed_receipt_with("alice", &to_carol.message_id, &ess(), |um, _| {
                um.properties
                    .retain(|p| p.name != coordination::PROP_DISPOSITION);
                um.properties
                    .push(Property::new(coordination::PROP_DISPOSITION, "failed"));
            }),
            "a failed disposition",
        ),
        (
            carol.signed_receipt_with("alice", &to_carol.message_id, &ess(), |_, p| p.clear()),
            "no payload",
        ),
        (
            carol.signed_receipt_with("alice", &to_carol.message_id, &ess(), |um, _| {
                um.info.ref_to_message_id = None
            }),
            "no RefToMessageId",
        ),
        (
            carol.signed_receipt_with("alice", &to_carol.message_id, &ess(), |um, _| {
                um.properties
                    .retain(|p| p.name != coordination::PROP_RECEIVED_AT)
            }),
            "no ReceivedAt",
        ),
    ];
    for (built, what) in &malformed {
        refused(&carol, built, "EBMS:0009", what);
    }
    let unknown = carol.signed_receipt_with("alice", &to_carol.message_id, &ess(), |um, _| {
        um.action = "Acknowledgement".into()
    });
    refused(
        &carol,
        &unknown,
        "EBMS:0001",
        "an unknown co-ordination Action",
    );
    // The well-formed one is taken.
    carol.exchange(&t, &svc).push(&other).unwrap();
    let m = metrics(&s);
    assert_eq!(
        metric(
            &m,
            "layersec_messages_rejected_total{reason=\"invalid_receipt\"}"
        ),
        (cases.len() + 1 + malformed.len()) as f64
    );
    assert_eq!(
        metric(
            &m,
            "layersec_messages_rejected_total{reason=\"unknown_coordination_action\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "layersec_coordination_messages_total{action=\"Receipt\"}"
        ),
        2.0
    );
}

/// A receipt for a message its recipient refused is refused; a refusal notice for a message
/// that has a receipt is recorded and routed as before.
#[test]
fn a_receipt_for_a_refused_message_is_refused() {
    let mut s = Server::init("receipt-refused", |c| c);
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let t = s.transport();
    let svc = s.service_cert();
    let ax = alice.exchange(&t, &svc);
    let bx = bob.exchange(&t, &svc);
    let m1 = alice.message("bob", b"refused");
    let m2 = alice.message("bob", b"receipted, then refused");
    ax.push(&m1).unwrap();
    ax.push(&m2).unwrap();

    let notice = bob.refusal_notice("alice", &m1.message_id, FailureClass::CannotOpen);
    bx.push(&notice).unwrap();
    assert_eq!(record(&s, &m1.message_id)["state"], "failed");
    let late = bob.signed_receipt("alice", &m1.message_id, &ess());
    let e = bx.push(&late).unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0004", "{e}");
    assert!(ebms_message(&e).contains("refused"), "{e}");
    assert!(!has_record(&s, &late.message_id));
    assert_eq!(
        record(&s, &m1.message_id)["receipt_returned_at"],
        Value::Null
    );

    // m2: receipt first, then a notice: both recorded, both go to alice.
    let receipt = bob.signed_receipt("alice", &m2.message_id, &ess());
    bx.push(&receipt).unwrap();
    let notice2 = bob.refusal_notice("alice", &m2.message_id, FailureClass::Policy);
    bx.push(&notice2)
        .expect("a notice after a receipt is taken");
    let rec = record(&s, &m2.message_id);
    assert_eq!(rec["state"], "failed");
    assert_eq!(rec["failure_class"], "policy");
    assert_eq!(rec["receipt_message_id"], receipt.message_id.as_str());
    let mut got = Vec::new();
    while let Some(p) = ax.pull(&alice.mpc()).unwrap() {
        got.push(p.body);
    }
    assert_eq!(got, [notice.body, receipt.body, notice2.body]);
    let m = metrics(&s);
    assert_eq!(
        metric(
            &m,
            "layersec_coordination_messages_total{action=\"RefusalNotice\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            "layersec_coordination_messages_total{action=\"Receipt\"}"
        ),
        1.0
    );
}
