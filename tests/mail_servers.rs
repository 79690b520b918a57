//! The real mail servers of the SOAP-over-e-mail tests (`ls_tests::mail::MailServers`, run by
//! `scripts/mail-servers.sh`), checked with independent clients: Python's smtplib, imaplib and
//! poplib (tests/py/mail_client.py), every connection TLS-verified against the instance's CA.
//! Two tests, two instances side by side.

use ls_tests::mail::{MailServers, BOUNCE_DOMAIN};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `actions` through tests/py/mail_client.py: one result object per action.
fn client(actions: Value) -> Vec<Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("py/mail_client.py");
    let mut child = Command::new(ls_tests::python())
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ls_tests::python()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(actions.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mail_client.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().clone()
}

fn one(action: Value) -> Value {
    client(json!([action])).remove(0)
}

fn ok(r: &Value, what: &str, m: &MailServers) {
    assert!(r["ok"] == true, "{what}: {r}\n{}", m.log());
}

#[test]
fn submit_fetch_and_deliver_over_every_port() {
    let t = Instant::now();
    let Some(m) = MailServers::start() else {
        return;
    };
    let started = t.elapsed();
    let ca = m.ca_pem_path();
    let ca = ca.to_str().unwrap();
    let alice = m.address("alice");
    let bob = m.address("bob");

    // AUTH is offered only after STARTTLS; the SIZE limit is announced.
    let r = one(json!({"op": "smtp-ehlo", "url": m.smtp_url(), "ca": ca}));
    ok(&r, "EHLO", &m);
    let before: Vec<&str> = r["before_tls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let after: Vec<&str> = r["after_tls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(before.contains(&"starttls"), "{before:?}");
    assert!(
        !before.iter().any(|f| f.starts_with("auth")),
        "AUTH before TLS: {before:?}"
    );
    assert!(
        after
            .iter()
            .any(|f| f.starts_with("auth") && f.contains("PLAIN")),
        "{after:?}"
    );
    assert!(after.contains(&"size 67108864"), "{after:?}");

    // Submit with STARTTLS (alice → bob) and with implicit TLS (bob → alice).
    let data = format!(
        "From: {alice}\r\nTo: {bob}\r\nSubject: harness\r\nMessage-ID: <harness-1@example.test>\r\n\r\nHello Bob.\r\n"
    );
    let rs = client(json!([
        {"op": "send", "url": m.smtp_url(), "ca": ca, "user": alice, "password": "alice-pw",
         "from": alice, "to": [bob], "data": data},
        {"op": "send", "url": m.smtps_url(), "ca": ca, "user": "bob", "password": "bob-pw",
         "from": bob, "to": [alice], "size": 200_000},
        // An unknown user of the domain: 550 at RCPT TO. Somebody elsewhere: no relaying.
        {"op": "send", "url": m.smtp_url(), "ca": ca, "user": alice, "password": "alice-pw",
         "from": alice, "to": [m.address("nobody")], "data": "Subject: x\r\n\r\nx\r\n"},
        {"op": "send", "url": m.smtp_url(), "ca": ca, "user": alice, "password": "alice-pw",
         "from": alice, "to": ["someone@example.org"], "data": "Subject: x\r\n\r\nx\r\n"},
        // A client trusting another CA refuses the server.
        {"op": "send", "url": m.smtps_url(), "ca": m.other_ca_path().to_str().unwrap(),
         "user": alice, "password": "alice-pw", "from": alice, "to": [bob], "data": "x"},
        {"op": "imap", "url": m.imaps_url(), "ca": m.other_ca_path().to_str().unwrap(),
         "user": bob, "password": "bob-pw"},
    ]));
    ok(&rs[0], "submission with STARTTLS", &m);
    ok(&rs[1], "submission with implicit TLS", &m);
    assert_eq!(rs[2]["code"], 550, "unknown user: {}", rs[2]);
    assert!(
        rs[2]["error"].as_str().unwrap().contains("5.1.1"),
        "{}",
        rs[2]
    );
    assert!(
        rs[3]["ok"] == false && rs[3]["code"].as_i64().unwrap() >= 500,
        "relayed? {}",
        rs[3]
    );
    for r in &rs[4..6] {
        assert!(
            r["ok"] == false
                && r["error"]
                    .as_str()
                    .unwrap()
                    .contains("CERTIFICATE_VERIFY_FAILED"),
            "a server certificate of another CA was accepted: {r}"
        );
    }
    let bobs = m.wait_for_mail("bob", 1, Duration::from_secs(5));
    assert!(std::fs::read_to_string(&bobs[0])
        .unwrap()
        .contains("Hello Bob."));
    m.wait_for_mail("alice", 1, Duration::from_secs(5));

    // A user added while running, a message put straight into a Maildir.
    let carol = m.add_user("carol", "carol-pw");
    assert_eq!(carol, "carol@example.test");
    let raw = b"From: someone@elsewhere.example\r\nTo: carol@example.test\r\nSubject: foreign\r\nMessage-ID: <foreign-1@elsewhere.example>\r\n\r\nnot through SMTP\r\n";
    let p = m.deliver_raw("carol", raw);
    assert!(p.starts_with(m.maildir("carol").join("new")));
    m.deliver_raw("carol", raw); // a duplicate
    let rs = client(json!([
        {"op": "send", "url": m.smtps_url(), "ca": ca, "user": carol, "password": "carol-pw",
         "from": carol, "to": [carol], "data": "Subject: to myself\r\n\r\nme\r\n"},
    ]));
    ok(&rs[0], "the new user submits to herself", &m);
    m.wait_for_mail("carol", 3, Duration::from_secs(5));

    // Fetch over IMAPS, IMAP+STARTTLS, POP3S, POP3+STLS (full address and bare name both log in).
    let rs = client(json!([
        {"op": "imap", "url": m.imaps_url(), "ca": ca, "user": bob, "password": "bob-pw"},
        {"op": "imap", "url": m.imap_url(), "ca": ca, "user": "alice", "password": "alice-pw"},
        {"op": "pop3", "url": m.pop3s_url(), "ca": ca, "user": bob, "password": "bob-pw"},
        {"op": "pop3", "url": m.pop3_url(), "ca": ca, "user": "alice", "password": "alice-pw"},
        {"op": "imap", "url": m.imaps_url(), "ca": ca, "user": carol, "password": "carol-pw"},
        {"op": "pop3", "url": m.pop3s_url(), "ca": ca, "user": carol, "password": "carol-pw"},
    ]));
    for (i, r) in rs.iter().enumerate() {
        ok(r, &format!("fetch {i}"), &m);
    }
    let msgs = rs[0]["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0]
        .as_str()
        .unwrap()
        .contains("Message-ID: <harness-1@example.test>"));
    assert!(rs[1]["messages"][0].as_str().unwrap().len() > 200_000);
    assert_eq!(rs[2]["uidl"].as_array().unwrap().len(), 1);
    assert!(rs[3]["sizes"][0].as_u64().unwrap() > 200_000);
    assert_eq!(rs[4]["messages"].as_array().unwrap().len(), 3);
    let uidl = rs[5]["uidl"].as_array().unwrap();
    assert_eq!(uidl.len(), 3);
    assert_ne!(uidl[0], uidl[1], "a duplicate has a UIDL of its own");

    let mut m = m;
    let t = Instant::now();
    m.stop();
    eprintln!("mail servers: start {started:?}, stop {:?}", t.elapsed());
    assert!(started < Duration::from_secs(10), "start took {started:?}");
}

#[test]
fn wrong_password_size_limit_and_bounces() {
    let Some(m) = MailServers::start() else {
        return;
    };
    let ca = m.ca_pem_path();
    let ca = ca.to_str().unwrap();
    let alice = m.address("alice");
    let bob = m.address("bob");

    // A wrong password is refused quickly, and the next right login is not slowed down.
    let rs = client(json!([
        {"op": "imap", "url": m.imaps_url(), "ca": ca, "user": bob, "password": "wrong"},
        {"op": "imap", "url": m.imaps_url(), "ca": ca, "user": bob, "password": "bob-pw"},
        {"op": "pop3", "url": m.pop3s_url(), "ca": ca, "user": bob, "password": "wrong"},
        {"op": "pop3", "url": m.pop3s_url(), "ca": ca, "user": bob, "password": "bob-pw"},
        {"op": "send", "url": m.smtps_url(), "ca": ca, "user": alice, "password": "wrong",
         "from": alice, "to": [bob], "data": "x"},
        {"op": "send", "url": m.smtps_url(), "ca": ca, "user": alice, "password": "alice-pw",
         "from": alice, "to": [bob], "data": "Subject: after a wrong password\r\n\r\nx\r\n"},
    ]));
    for (i, r) in rs.iter().enumerate() {
        let elapsed = r["elapsed"].as_f64().unwrap();
        if i % 2 == 0 {
            assert!(r["ok"] == false, "a wrong password was accepted: {r}");
            assert!(elapsed < 2.0, "a wrong password took {elapsed} s: {r}");
        } else {
            ok(r, "the right password after a wrong one", &m);
            assert!(
                elapsed < 1.0,
                "the right login after a wrong one took {elapsed} s"
            );
        }
    }
    assert!(
        rs[0]["error"]
            .as_str()
            .unwrap()
            .contains("AUTHENTICATIONFAILED"),
        "{}",
        rs[0]
    );
    assert_eq!(rs[4]["code"], 535, "{}", rs[4]);

    // Over the size limit: 552.
    m.set_message_size_limit(20_000);
    let rs = client(json!([
        {"op": "send", "url": m.smtp_url(), "ca": ca, "user": alice, "password": "alice-pw",
         "from": alice, "to": [bob], "size": 50_000},
        {"op": "send", "url": m.smtp_url(), "ca": ca, "user": alice, "password": "alice-pw",
         "from": alice, "to": [bob], "size": 5_000},
    ]));
    assert_eq!(rs[0]["code"], 552, "{}", rs[0]);
    ok(&rs[1], "a message under the limit", &m);

    // Mail to the bounce domain: accepted, then a DSN (RFC 3464) reaches the sender.
    let before = m.messages("alice").len();
    let to = format!("someone@{BOUNCE_DOMAIN}");
    assert_eq!(m.bounce_domain(), BOUNCE_DOMAIN);
    let r = one(
        json!({"op": "send", "url": m.smtp_url(), "ca": ca, "user": alice,
        "password": "alice-pw", "from": alice, "to": [to],
        "data": "Subject: bounce me\r\nMessage-ID: <bounce-me@example.test>\r\n\r\nx\r\n"}),
    );
    ok(&r, "submission to the bounce domain", &m);
    let t = Instant::now();
    let got = m.wait_for_mail("alice", before + 1, Duration::from_secs(5));
    let dsn = std::fs::read_to_string(got.last().unwrap()).unwrap();
    eprintln!("DSN after {:?}", t.elapsed());
    for needle in [
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Content-Type: message/delivery-status",
        &format!("Final-Recipient: rfc822; {to}"),
        "Action: failed",
        "Status: 5.1.1",
        "Message-ID: <bounce-me@example.test>",
    ] {
        assert!(dsn.contains(needle), "no {needle:?} in the DSN:\n{dsn}");
    }
    let log = m.log();
    assert!(log.contains("status=bounced"), "{log}");
}
