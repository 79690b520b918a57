//! The Messaging Service end to end: real `layersec-server` processes over TLS on loopback.

mod common;

use common::*;
use ls_core::as4::exchange::{party_mpc, Exchange, Pulled};
use ls_core::as4::message::Built;
use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

/// The service's queue depth for a party, read from /metrics.
fn depth(s: &Server, party: &str) -> f64 {
    let m = metrics(s);
    metric(&m, &format!("layersec_queue_depth{{party=\"{party}\"}}"))
}

#[test]
fn push_pull_receipt_between_two_parties() {
    let mut s = Server::init("basic", |c| c);
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let t = s.transport();
    let svc = s.service_cert();

    let doc = b"<Invoice>42</Invoice>".repeat(50);
    let sent = alice.message("bob", &doc);
    let receipt = alice.exchange(&t, &svc).push(&sent).expect("push");
    // The service signed the receipt; it acknowledges what alice signed (checked by push).
    assert!(receipt.verified.is_some());
    assert_eq!(depth(&s, "bob"), 1.0);

    // bob pulls: the message is byte for byte what alice sent.
    let ex = bob.exchange(&t, &svc);
    let pulled = ex.pull(&bob.mpc()).unwrap().expect("a message waits");
    assert_eq!(pulled.body, sent.body);
    assert_eq!(pulled.content_type, sent.content_type);
    let (inc, rcpt) = bob.read_pulled(&pulled, alice.identity.certificate());
    assert_eq!(inc.payloads[0].data, doc);
    ex.post_receipt(&rcpt).expect("receipt accepted");
    // A repeated receipt is harmless.
    ex.post_receipt(&rcpt).expect("repeated receipt");
    assert!(ex.pull(&bob.mpc()).unwrap().is_none(), "nothing else waits");
    // alice's MPC is empty too.
    assert!(alice
        .exchange(&t, &svc)
        .pull(&alice.mpc())
        .unwrap()
        .is_none());

    let m = metrics(&s);
    // Not on the public AS4 port (it names every party), and not without the token.
    assert_eq!(https_get(&s, "/metrics").0, 404);
    assert_eq!(admin_get(&s, "/metrics", None).0, 401);
    assert_eq!(metric(&m, "layersec_messages_accepted_total"), 1.0);
    assert_eq!(metric(&m, "layersec_messages_delivered_total"), 1.0);
    assert_eq!(metric(&m, "layersec_pulls_empty_total"), 2.0);
    assert_eq!(depth(&s, "bob"), 0.0);
    assert_eq!(https_get(&s, "/health").0, 200);

    let msgs = s.admin(&["messages", "--party", "bob"]);
    assert_eq!(msgs[0]["state"], "delivered");
    assert_eq!(msgs[0]["message_id"], sent.message_id);

    // Logs are structured and never carry the payload.
    let logs = s.logs().join("\n");
    assert!(logs.contains("\"event\":\"accepted\""));
    assert!(logs.contains(&sent.message_id));
    assert!(!logs.contains("Invoice"), "payload in the logs");
}

#[test]
fn every_refusal_gets_its_ebms_error_and_nothing_is_stored() {
    let mut s = Server::init("refusals", |c| c);
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let carol = s.party("carol");
    let dave = s.party("dave");
    let t = s.transport();
    let svc = s.service_cert();
    let push = |p: &Party, b: &Built| p.exchange(&t, &svc).push(b).map(|_| ()).unwrap_err();

    // Unknown sender.
    let mallory = Party::new("mallory");
    assert_eq!(
        ebms_code(&push(&mallory, &mallory.message("bob", b"x"))),
        "EBMS:0101"
    );
    // Signed by someone else than the registered party (carol's key, alice's name).
    let forged = alice.message_signed_by("bob", b"x", &carol.identity);
    assert_eq!(ebms_code(&push(&alice, &forged)), "EBMS:0101");
    // Signed by an unregistered key.
    let forged = alice.message_signed_by("bob", b"x", &mallory.identity);
    assert_eq!(ebms_code(&push(&alice, &forged)), "EBMS:0101");
    // Altered in transit (the payload's digest no longer matches).
    let mut tampered = alice.message("bob", b"pay 100 EUR");
    let at = ls_core::bytes::find(&tampered.body, b"pay 100 EUR").unwrap() + 4;
    tampered.body[at] = b'9';
    assert_eq!(ebms_code(&push(&alice, &tampered)), "EBMS:0101");
    // Unregistered recipient.
    assert_eq!(
        ebms_code(&push(&alice, &alice.message("nobody", b"x"))),
        "EBMS:0003"
    );
    // Malformed: nothing verified, so the uniform refusal (the reason is in the metrics).
    let junk = Built {
        content_type: "application/soap+xml".into(),
        body: b"<not-soap/>".to_vec(),
        message_id: "x".into(),
        ref_to_message_id: None,
        references: Vec::new(),
    };
    assert_eq!(ebms_code(&push(&alice, &junk)), "EBMS:0101");
    // Unsigned: the security header removed.
    let signed = alice.message("bob", b"x");
    let text = String::from_utf8_lossy(&signed.body).into_owned();
    let start = text.find("<wsse:Security").unwrap();
    let end = text.find("</wsse:Security>").unwrap() + "</wsse:Security>".len();
    let unsigned = Built {
        body: format!("{}{}", &text[..start], &text[end..]).into_bytes(),
        ..signed.clone()
    };
    assert_eq!(ebms_code(&push(&alice, &unsigned)), "EBMS:0101");

    // Revoked sender.
    s.admin(&["party", "revoke", "carol"]);
    assert_eq!(
        ebms_code(&push(&carol, &carol.message("bob", b"x"))),
        "EBMS:0101"
    );
    // Revoked recipient.
    assert_eq!(
        ebms_code(&push(&alice, &alice.message("carol", b"x"))),
        "EBMS:0003"
    );
    // Suspended account: its party can neither send nor pull.
    s.admin(&["subscriber", "suspend", &dave.subscriber.to_string()]);
    assert_eq!(
        ebms_code(&push(&dave, &dave.message("bob", b"x"))),
        "EBMS:0101"
    );
    let e = dave.exchange(&t, &svc).pull(&dave.mpc()).unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0101");

    // Nothing was stored.
    assert!(s.admin(&["messages"]).as_array().unwrap().is_empty());
    assert!(bob.exchange(&t, &svc).pull(&bob.mpc()).unwrap().is_none());
    let m = metrics(&s);
    assert_eq!(metric(&m, "layersec_messages_accepted_total"), 0.0);
    for reason in [
        "authentication",
        "unknown_recipient",
        "unknown_party",
        "party_not_active",
        "malformed",
        "policy",
    ] {
        assert!(
            m.contains(&format!(
                "layersec_messages_rejected_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {m}"
        );
    }

    // Resumed: dave can send again.
    s.admin(&["subscriber", "resume", &dave.subscriber.to_string()]);
    dave.exchange(&t, &svc)
        .push(&dave.message("bob", b"x"))
        .unwrap();
}

#[test]
fn a_party_cannot_pull_another_partys_mpc() {
    let mut s = Server::init("mpc", |c| c);
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let t = s.transport();
    let svc = s.service_cert();
    alice
        .exchange(&t, &svc)
        .push(&alice.message("bob", b"for bob only"))
        .unwrap();

    // alice (registered, validly signed) asks for bob's MPC.
    let e = alice.exchange(&t, &svc).pull(&bob.mpc()).unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0101");
    // A stranger too; and an MPC nobody owns.
    let mallory = Party::new("mallory");
    assert_eq!(
        ebms_code(&mallory.exchange(&t, &svc).pull(&bob.mpc()).unwrap_err()),
        "EBMS:0101"
    );
    assert_eq!(
        ebms_code(
            &alice
                .exchange(&t, &svc)
                .pull(&party_mpc("nobody"))
                .unwrap_err()
        ),
        "EBMS:0101"
    );
    // bob still gets it.
    assert!(bob.exchange(&t, &svc).pull(&bob.mpc()).unwrap().is_some());
}

#[test]
fn a_repeated_push_is_stored_once_and_answered_with_the_same_receipt() {
    let mut s = Server::init("dup", |c| c);
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let t = s.transport();
    let svc = s.service_cert();
    let m = alice.message("bob", b"once");
    let r1 = alice.exchange(&t, &svc).push(&m).unwrap();
    let r2 = alice.exchange(&t, &svc).push(&m).unwrap();
    assert_eq!(
        r1.messaging.signals[0].info.message_id, r2.messaging.signals[0].info.message_id,
        "the first receipt is returned again"
    );
    let ex = bob.exchange(&t, &svc);
    assert!(ex.pull(&bob.mpc()).unwrap().is_some());
    // The unreceipted copy is leased; nothing else waits.
    assert!(ex.pull(&bob.mpc()).unwrap().is_none());
    let metrics = metrics(&s);
    assert_eq!(metric(&metrics, "layersec_messages_duplicate_total"), 1.0);
    assert_eq!(metric(&metrics, "layersec_messages_accepted_total"), 1.0);
}

/// Pull until a message is offered (a lease running out), polling every 100 ms; the bound only
/// detects a hang.
fn pull_until_offered(ex: &Exchange<'_>, mpc: &str) -> Pulled {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(p) = ex.pull(mpc).unwrap() {
            return p;
        }
        assert!(Instant::now() < end, "nothing offered again within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pulled_id(p: &Pulled) -> &str {
    &p.messaging.user_messages[0].info.message_id
}

#[test]
fn a_pulled_message_without_receipt_is_offered_again() {
    let mut s = Server::init("redeliver", |c| {
        c.replace("redeliver_after_secs = 300", "redeliver_after_secs = 2")
    });
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let t = s.transport();
    let svc = s.service_cert();
    let m = alice.message("bob", b"again");
    alice.exchange(&t, &svc).push(&m).unwrap();
    let ex = bob.exchange(&t, &svc);
    let first = ex.pull(&bob.mpc()).unwrap().unwrap();
    assert!(
        ex.pull(&bob.mpc()).unwrap().is_none(),
        "leased, not offered twice at once"
    );
    let again = pull_until_offered(&ex, &bob.mpc());
    assert_eq!(
        pulled_id(&again),
        m.message_id,
        "offered again after the lease"
    );
    assert_eq!(again.body, first.body);
    let (_, rcpt) = bob.read_pulled(&again, alice.identity.certificate());
    ex.post_receipt(&rcpt).unwrap();
    // Delivered: never offered again, even once its lease would have run out. The clock is a
    // second message, pulled after that receipt and not receipted: when it is offered again,
    // the lease taken before it has run out too, and only the clock came back.
    let clock = alice.message("bob", b"clock");
    alice.exchange(&t, &svc).push(&clock).unwrap();
    let c = ex.pull(&bob.mpc()).unwrap().expect("the clock message");
    assert_eq!(pulled_id(&c), clock.message_id);
    let c = pull_until_offered(&ex, &bob.mpc());
    assert_eq!(
        pulled_id(&c),
        clock.message_id,
        "delivered: never offered again"
    );
    assert!(
        ex.pull(&bob.mpc()).unwrap().is_none(),
        "delivered: never offered again"
    );
    let msgs = s.admin(&["messages"]);
    let rec = msgs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["message_id"] == m.message_id.as_str())
        .unwrap_or_else(|| panic!("{msgs}"));
    assert_eq!(rec["attempts"], 2);
    assert_eq!(rec["state"], "delivered");
}

#[test]
fn sigkill_right_after_the_receipt_loses_nothing() {
    let mut s = Server::init("kill", |c| c);
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let svc = s.service_cert();
    let big = vec![0x5au8; 600 * 1024]; // kept in a payload file (inline_max is 256 KiB)
    let small = alice.message("bob", b"small");
    let large = alice.message("bob", &big);
    {
        let t = s.transport();
        alice.exchange(&t, &svc).push(&small).unwrap();
        alice.exchange(&t, &svc).push(&large).unwrap();
    }
    s.stop();
    s.serve();
    let t = s.transport();
    let ex = bob.exchange(&t, &svc);
    let mut got = Vec::new();
    while let Some(p) = ex.pull(&bob.mpc()).unwrap() {
        let (inc, rcpt) = bob.read_pulled(&p, alice.identity.certificate());
        ex.post_receipt(&rcpt).unwrap();
        got.push((
            inc.messaging.user_messages[0].info.message_id.clone(),
            inc.payloads[0].data.len(),
        ));
    }
    assert_eq!(
        got,
        vec![
            (small.message_id.clone(), 5),
            (large.message_id.clone(), big.len())
        ]
    );

    // Killed again after the receipts: still delivered exactly once.
    s.stop();
    s.serve();
    let t = s.transport();
    assert!(bob.exchange(&t, &svc).pull(&bob.mpc()).unwrap().is_none());
}

#[test]
fn two_hundred_messages_from_concurrent_senders_are_delivered_exactly_once() {
    let mut s = Server::init("load", |c| c);
    s.serve();
    let bob = s.party("bob");
    let senders: Vec<Party> = (0..4).map(|i| s.party(&format!("sender{i}"))).collect();
    let svc = s.service_cert();
    let sent: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = senders
            .iter()
            .map(|p| {
                let s = &s;
                let svc = &svc;
                sc.spawn(move || {
                    let t = s.transport();
                    (0..50)
                        .map(|i| {
                            let m = p.message("bob", format!("{} #{i}", p.id).as_bytes());
                            p.exchange(&t, svc).push(&m).unwrap();
                            m.message_id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(sent.len(), 200);
    // Two pullers at once on bob's MPC: every message once.
    let got: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let s = &s;
                let bob = &bob;
                let svc = &svc;
                let senders = &senders;
                sc.spawn(move || {
                    let t = s.transport();
                    let ex = bob.exchange(&t, svc);
                    let mut ids = Vec::new();
                    while let Some(p) = ex.pull(&bob.mpc()).unwrap() {
                        let from = &p.messaging.user_messages[0].from.ids[0].value;
                        let sender = senders.iter().find(|x| &x.id == from).unwrap();
                        let (inc, rcpt) = bob.read_pulled(&p, sender.identity.certificate());
                        ex.post_receipt(&rcpt).unwrap();
                        ids.push(inc.messaging.user_messages[0].info.message_id.clone());
                    }
                    ids
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(got.len(), 200, "each message delivered once");
    let a: HashSet<_> = sent.iter().collect();
    let b: HashSet<_> = got.iter().collect();
    assert_eq!(a, b);
    let m = metrics(&s);
    assert_eq!(metric(&m, "layersec_messages_delivered_total"), 200.0);
}

#[test]
fn a_silent_client_does_not_delay_the_others() {
    // The handshake deadline is far away: a push that waited for the silent connections to be
    // cut would hang (until the transport's 60 s timeout), not merely be slow.
    let mut s = Server::init("silent", |c| {
        c.replace("header_timeout_secs = 10", "header_timeout_secs = 600")
    });
    s.serve();
    let alice = s.party("alice");
    let _bob = s.party("bob");
    let hostport = s.hostport().to_string();
    // Ten connections that say nothing (no TLS handshake), and one that starts a request and stops.
    let silent: Vec<_> = (0..10)
        .map(|_| std::net::TcpStream::connect(&hostport).unwrap())
        .collect();
    let mut slow = std::net::TcpStream::connect(&hostport).unwrap();
    slow.write_all(&[0x16, 0x03, 0x01]).unwrap(); // the first bytes of a ClientHello, then nothing
    assert!(
        wait_until(Duration::from_secs(30), || {
            metric(&metrics(&s), "layersec_http_connections_open") >= 11.0
        }),
        "the silent connections were not accepted"
    );
    let t = s.transport();
    let svc = s.service_cert();
    for i in 0..5 {
        alice
            .exchange(&t, &svc)
            .push(&alice.message("bob", format!("{i}").as_bytes()))
            .unwrap();
    }
    // Done while the silent connections are all still open: none was cut for a timeout.
    let m = metrics(&s);
    assert_eq!(metric(&m, "layersec_http_timeouts_total"), 0.0, "{m}");
    assert!(
        metric(&m, "layersec_http_connections_open") >= 11.0,
        "the silent connections are still open: {m}"
    );
    drop(silent);
    drop(slow);
}

#[test]
fn certificate_replacement_with_overlap() {
    let mut s = Server::init("rollover", |c| c);
    s.serve();
    let alice = s.party("alice");
    let _bob = s.party("bob");
    let t = s.transport();
    let svc = s.service_cert();
    let new = Party::new("alice");
    let new_crt = s.dir.join("alice-new.crt");
    std::fs::write(&new_crt, new.identity.certificate().to_pem()).unwrap();
    // With an overlap both keys work.
    s.admin(&[
        "party",
        "replace-certificate",
        "alice",
        "--certificate",
        path_str(&new_crt),
        "--overlap-hours",
        "1",
    ]);
    alice
        .exchange(&t, &svc)
        .push(&alice.message("bob", b"old key"))
        .unwrap();
    new.exchange(&t, &svc)
        .push(&new.message("bob", b"new key"))
        .unwrap();
    // Without: only the new one.
    let newer = Party::new("alice");
    let newer_crt = s.dir.join("alice-newer.crt");
    std::fs::write(&newer_crt, newer.identity.certificate().to_pem()).unwrap();
    s.admin(&[
        "party",
        "replace-certificate",
        "alice",
        "--certificate",
        path_str(&newer_crt),
        "--overlap-hours",
        "0",
    ]);
    let e = new
        .exchange(&t, &svc)
        .push(&new.message("bob", b"retired key"))
        .unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0101");
    newer
        .exchange(&t, &svc)
        .push(&newer.message("bob", b"newest key"))
        .unwrap();
    let shown = s.admin(&["party", "show", "alice"]);
    assert_eq!(shown["certificates"].as_array().unwrap().len(), 3);
}

/// `init` and `admin party show` print fingerprints as `sha256sum` prints them (lower-case hex
/// of the DER's SHA-256, no separators), the form the client prints too.
#[test]
fn fingerprints_are_printed_as_sha256sum_prints_them() {
    let dir = ls_tests::tempdir("init-fingerprints");
    let (code, out, err) = run(&["init", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for (key, file) in [
        ("tls_certificate_sha256", "tls/server.crt"),
        ("service_certificate_sha256", "identity/service.crt"),
    ] {
        let cert = ls_core::Certificate::load(dir.join(file)).unwrap();
        assert_eq!(v[key], ls_core::bytes::sha256_hex(cert.der()), "{key}: {v}");
    }
    std::fs::remove_dir_all(&dir).unwrap();

    let s = Server::init("fingerprints", |c| c);
    let p = s.party("alice");
    let shown = s.admin(&["party", "show", "alice"]);
    assert_eq!(
        shown["certificates"][0]["sha256"],
        ls_core::bytes::sha256_hex(p.identity.certificate().der())
    );
}

#[test]
fn admin_cli_refuses_bad_input() {
    let s = Server::init("admin-cli", |c| c);
    let sub = s.admin(&["subscriber", "add", "--organisation", "Acme"]);
    let id = sub["id"].as_i64().unwrap().to_string();
    // A file that is not a certificate.
    let junk = s.dir.join("junk.crt");
    std::fs::write(&junk, b"not a certificate").unwrap();
    let (code, _, err) = outcome(&s.admin_raw(&[
        "party",
        "add",
        "--subscriber",
        &id,
        "--party",
        "p",
        "--certificate",
        path_str(&junk),
    ]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("certificate"), "{err}");
    // The same party twice.
    let p = Party::new("p");
    let crt = s.dir.join("p.crt");
    std::fs::write(&crt, p.identity.certificate().to_pem()).unwrap();
    s.admin(&[
        "party",
        "add",
        "--subscriber",
        &id,
        "--party",
        "p",
        "--certificate",
        path_str(&crt),
    ]);
    let (code, _, err) = outcome(&s.admin_raw(&[
        "party",
        "add",
        "--subscriber",
        &id,
        "--party",
        "p",
        "--certificate",
        path_str(&crt),
    ]));
    assert_eq!(code, 3, "{err}");
    // Unknown subscriber.
    let (code, _, _) = outcome(&s.admin_raw(&[
        "party",
        "add",
        "--subscriber",
        "999",
        "--party",
        "q",
        "--certificate",
        path_str(&crt),
    ]));
    assert_eq!(code, 3);
    // Unknown party.
    let (code, _, _) = outcome(&s.admin_raw(&["party", "revoke", "nobody"]));
    assert_eq!(code, 3);
    // A bad configuration names the file and the key.
    let bad = s.dir.join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("kind = \"sqlite\"", "kind = \"oracle\""),
    )
    .unwrap();
    let (code, _, err) = run(&["admin", "--config", path_str(&bad), "subscriber", "list"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.toml") && err.contains("store.kind"),
        "{err}"
    );
}

/// The admin HTTP API, its token, and the usage report.
#[test]
fn admin_api_and_usage_report() {
    use std::io::Read;
    let mut s = Server::init("admin-api", |c| c);
    s.serve();
    let admin = s.admin_addr.clone();
    let token = s.admin_token();
    let call = |method: &str, path: &str, body: &str, token: &str| -> (u16, String) {
        let mut c = std::net::TcpStream::connect(&admin).unwrap();
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        (status, out.split_once("\r\n\r\n").unwrap().1.to_string())
    };
    // Every error body is the one error object of Layer Security, beside the HTTP status.
    let error_of = |body: &str| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let e = v["error"].clone();
        assert!(e["code"].is_i64(), "{body}");
        for k in ["name", "family", "message"] {
            assert!(e[k].is_string(), "{k}: {body}");
        }
        assert!(e["transient"].is_boolean(), "{body}");
        e
    };
    let (st, body) = call("GET", "/admin/subscribers", "", "wrong-token");
    assert_eq!(st, 401);
    let e = error_of(&body);
    assert_eq!(e["code"], 103, "{body}");
    assert_eq!(e["name"], "LS_ERR_BAD_PASSWORD");
    assert_eq!(e["family"], "argument");
    assert_eq!(e["message"], "a valid admin token is required");
    assert_eq!(call("GET", "/admin/subscribers", "", "").0, 401);
    let (st, body) = call("GET", "/admin/nothing-here", "", &token);
    assert_eq!(st, 404);
    assert_eq!(error_of(&body)["name"], "LS_ERR_INVALID_ARGUMENT", "{body}");
    let (st, body) = call(
        "POST",
        "/admin/subscribers",
        r#"{"organisation":"Acme","contact":"a@acme.example","contract_ref":"K-1","plan":"gold"}"#,
        &token,
    );
    assert_eq!(st, 201, "{body}");
    let acme: serde_json::Value = serde_json::from_str(&body).unwrap();
    let acme_id = acme["id"].as_i64().unwrap();
    let (st, body) = call(
        "POST",
        "/admin/subscribers",
        r#"{"organisation":"Globex"}"#,
        &token,
    );
    assert_eq!(st, 201, "{body}");
    let globex_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap();
    let a = Party::new("acme");
    let g = Party::new("globex");
    for (p, sub) in [(&a, acme_id), (&g, globex_id)] {
        let req = serde_json::json!({
            "subscriber_id": sub, "party_id": p.id, "party_type": "",
            "certificate_pem": String::from_utf8(p.identity.certificate().to_pem()).unwrap(),
        });
        let (st, body) = call("POST", "/admin/parties", &req.to_string(), &token);
        assert_eq!(st, 201, "{body}");
    }
    let (st, body) = call(
        "POST",
        "/admin/parties",
        r#"{"subscriber_id":1,"party_id":"x","certificate_pem":"junk"}"#,
        &token,
    );
    assert_eq!(st, 400);
    let e = error_of(&body);
    assert_eq!(e["code"], 101, "{body}");
    assert_eq!(e["family"], "argument");
    assert_eq!(e["transient"], false);
    let (st, body) = call("GET", "/admin/parties", "", &token);
    assert_eq!(st, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Traffic: acme sends two messages to globex, globex receipts one.
    let t = s.transport();
    let svc = s.service_cert();
    let m1 = a.message("globex", &[1u8; 1000]);
    let m2 = a.message("globex", &[2u8; 3000]);
    a.exchange(&t, &svc).push(&m1).unwrap();
    a.exchange(&t, &svc).push(&m2).unwrap();
    let ex = g.exchange(&t, &svc);
    let p = ex.pull(&g.mpc()).unwrap().unwrap();
    let (_, r) = g.read_pulled(&p, a.identity.certificate());
    ex.post_receipt(&r).unwrap();

    let today = ls_core::time::now_unix() / 86400 * 86400;
    let (y, mo, d, ..) = ls_core::time::parts_from_unix(today);
    let (y2, mo2, d2, ..) = ls_core::time::parts_from_unix(today + 86400);
    let from = format!("{y:04}-{mo:02}-{d:02}");
    let to = format!("{y2:04}-{mo2:02}-{d2:02}");
    let (st, body) = call(
        "GET",
        &format!("/admin/usage?from={from}&to={to}"),
        "",
        &token,
    );
    assert_eq!(st, 200, "{body}");
    let u: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = |id: i64| {
        u["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["subscriber_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(row(acme_id)["sent_messages"], 2);
    assert_eq!(
        row(acme_id)["sent_bytes"],
        (m1.body.len() + m2.body.len()) as u64
    );
    assert_eq!(row(acme_id)["received_messages"], 0);
    assert_eq!(row(globex_id)["received_messages"], 1);
    assert_eq!(row(globex_id)["received_bytes"], m1.body.len() as u64);
    let (st, csv) = call(
        "GET",
        &format!("/admin/usage?from={from}&to={to}&format=csv"),
        "",
        &token,
    );
    assert_eq!(st, 200);
    assert!(csv.starts_with("subscriber_id,organisation,"), "{csv}");
    assert!(csv.contains(&format!("{acme_id},\"Acme\",")), "{csv}");
    // The CLI gives the same report.
    let cli = s.admin(&["usage", "--from", &from, "--to", &to]);
    assert_eq!(cli["accounts"], u["accounts"]);
    // Suspend over the API.
    let (st, body) = call(
        "POST",
        "/admin/subscribers/suspend",
        &format!("{{\"id\":{acme_id}}}"),
        &token,
    );
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("suspended"));
    let e = a
        .exchange(&t, &svc)
        .push(&a.message("globex", b"x"))
        .unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0101");
}

#[test]
fn retention_purges_delivered_and_expires_undelivered() {
    let mut s = Server::init("retention", |c| {
        c.replace("keep_delivered_hours = 168", "keep_delivered_hours = 0")
            .replace(
                "expire_undelivered_hours = 720",
                "expire_undelivered_hours = 0",
            )
            .replace("purge_interval_secs = 600", "purge_interval_secs = 1")
    });
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let carol = s.party("carol");
    let t = s.transport();
    let svc = s.service_cert();
    // Expiry counts whole seconds: wait until a message is old enough in the retention thread.
    alice
        .exchange(&t, &svc)
        .push(&alice.message("bob", b"delivered"))
        .unwrap();
    let ex = bob.exchange(&t, &svc);
    let p = ex.pull(&bob.mpc()).unwrap().unwrap();
    let (_, r) = bob.read_pulled(&p, alice.identity.certificate());
    ex.post_receipt(&r).unwrap();
    alice
        .exchange(&t, &svc)
        .push(&alice.message("carol", b"never pulled"))
        .unwrap();
    let states = || -> Vec<String> {
        let mut v: Vec<String> = s
            .admin(&["messages"])
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["state"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert!(
        wait_until(Duration::from_secs(10), || states()
            == ["expired", "purged"]),
        "states: {:?}",
        states()
    );
    // The expired message is no longer offered; its record stays.
    assert!(carol
        .exchange(&t, &svc)
        .pull(&carol.mpc())
        .unwrap()
        .is_none());
    assert!(s
        .logs()
        .iter()
        .any(|l| l.contains("\"event\":\"retention\"")));
}

#[test]
fn oversized_requests_are_refused_before_they_are_read() {
    let mut s = Server::init("oversize", |c| {
        c.replace(
            &format!(
                "max_message_bytes = {}",
                ls_server::config::default_max_message()
            ),
            "max_message_bytes = 65536",
        )
    });
    s.serve();
    let alice = s.party("alice");
    let _bob = s.party("bob");
    let t = s.transport();
    let svc = s.service_cert();
    let e = alice
        .exchange(&t, &svc)
        .push(&alice.message("bob", &vec![7u8; 200_000]))
        .unwrap_err();
    // The client reads the early 413 as the service's permanent refusal (not a broken pipe).
    match e {
        ls_core::Error::Refused(m) if m.starts_with("HTTP 413") => {}
        other => panic!("expected HTTP 413, got {other:?}"),
    }
    // Small messages still pass.
    alice
        .exchange(&t, &svc)
        .push(&alice.message("bob", b"small"))
        .unwrap();
}

#[test]
fn client_certificates_when_the_service_requires_them() {
    // The client's own self-signed certificate is the CA the service trusts for mTLS.
    let client = Party::new("mtls-client");
    let mut s = Server::init("mtls", |c| {
        c.replace(
            "# client_ca = \"tls/client-ca.pem\"",
            "client_ca = \"tls/client-ca.pem\"",
        )
        .replace(
            "# require_client_certificate = false",
            "require_client_certificate = true",
        )
    });
    std::fs::write(
        s.dir.join("tls/client-ca.pem"),
        client.identity.certificate().to_pem(),
    )
    .unwrap();
    s.serve();
    let alice = s.party("alice");
    let _bob = s.party("bob");
    let svc = s.service_cert();
    // Without a client certificate: no TLS session.
    let t = s.transport();
    let e = alice
        .exchange(&t, &svc)
        .push(&alice.message("bob", b"x"))
        .unwrap_err();
    assert!(
        matches!(
            e.code(),
            ls_core::ErrorCode::TlsFailed | ls_core::ErrorCode::ConnectFailed
        ),
        "{e}"
    );
    // With it.
    let mut c = ls_core::transport::HttpsConfig::new(&s.url);
    c.ca_pem = Some(s.tls_ca());
    c.client = Some(client.identity.clone());
    let t = ls_core::transport::HttpsTransport::new(c).unwrap();
    alice
        .exchange(&t, &svc)
        .push(&alice.message("bob", b"x"))
        .unwrap();
}

#[test]
fn a_replayed_pull_request_gets_nothing() {
    use ls_core::as4::envelope::SoapVersion;
    use ls_core::transport::Transport;
    let mut s = Server::init("replay", |c| c);
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let t = s.transport();
    let svc = s.service_cert();
    alice
        .exchange(&t, &svc)
        .push(&alice.message("bob", b"one"))
        .unwrap();
    alice
        .exchange(&t, &svc)
        .push(&alice.message("bob", b"two"))
        .unwrap();
    let req = ls_core::as4::exchange::pull_request(
        SoapVersion::Soap12,
        &bob.mpc(),
        &bob.identity,
        "test.example",
    )
    .unwrap();
    let first = t.post(&req.content_type, &req.body).unwrap();
    let m = ls_core::as4::exchange::peek(&first.content_type, &first.body, &Default::default())
        .unwrap();
    assert_eq!(m.user_messages.len(), 1, "the first request gets a message");
    // The same signed request again (captured and replayed): refused, the second message stays.
    let again = t.post(&req.content_type, &req.body).unwrap();
    let m = ls_core::as4::exchange::peek(&again.content_type, &again.body, &Default::default())
        .unwrap();
    assert!(m.user_messages.is_empty());
    match &m.signals[0].signal {
        ls_core::as4::model::Signal::Error(e) => assert_eq!(e[0].code, "EBMS:0101"),
        other => panic!("{other:?}"),
    }
    assert!(bob.exchange(&t, &svc).pull(&bob.mpc()).unwrap().is_some());
}

#[test]
fn message_ids_receipts_and_certificates_cannot_be_borrowed() {
    let mut s = Server::init("borrow", |c| c);
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let carol = s.party("carol");
    let t = s.transport();
    let svc = s.service_cert();
    // carol reuses alice's MessageId for bob: refused (a receipt names only the MessageId).
    let m = alice.message("bob", b"alice's");
    alice.exchange(&t, &svc).push(&m).unwrap();
    let mut um = ls_core::as4::exchange::user_message(
        "carol",
        "bob",
        "urn:layersec:test",
        "Deliver",
        "",
        "test.example",
    )
    .unwrap();
    um.info.message_id = m.message_id.clone();
    let reused = ls_core::as4::message::build(ls_core::as4::message::Outgoing {
        messaging: ls_core::as4::model::Messaging {
            user_messages: vec![um],
            signals: Vec::new(),
        },
        payloads: Vec::new(),
        signer: &carol.identity,
        encrypt_for: None,
        soap: ls_core::as4::envelope::SoapVersion::Soap12,
    })
    .unwrap();
    assert_eq!(
        ebms_code(&carol.exchange(&t, &svc).push(&reused).unwrap_err()),
        "EBMS:0003"
    );

    // carol (registered, but not the recipient) cannot receipt bob's message.
    let ex = bob.exchange(&t, &svc);
    let p = ex.pull(&bob.mpc()).unwrap().unwrap();
    let (inc, _) = bob.read_pulled(&p, alice.identity.certificate());
    let carols_receipt =
        ls_core::as4::message::build_receipt(&inc, &carol.identity, "test.example").unwrap();
    assert_eq!(
        ebms_code(
            &carol
                .exchange(&t, &svc)
                .post_receipt(&carols_receipt)
                .unwrap_err()
        ),
        "EBMS:0101"
    );
    assert_ne!(
        s.admin(&["messages", "--party", "bob"])[0]["state"],
        "delivered"
    );

    // One certificate, one party.
    let crt = s.dir.join("alice-again.crt");
    std::fs::write(&crt, alice.identity.certificate().to_pem()).unwrap();
    let sub = s.admin(&["subscriber", "add", "--organisation", "Copycat"]);
    let out = s.admin_raw(&[
        "party",
        "add",
        "--subscriber",
        &sub["id"].to_string(),
        "--party",
        "copycat",
        "--certificate",
        path_str(&crt),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("alice"));
}
