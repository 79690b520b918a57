//! The e-mail gateway of a real `layersec-server serve` against a real Postfix + Dovecot
//! (`ls_tests::mail::MailServers`; skipped where they are not installed): a message sent by
//! mail reaches a party that pulls over HTTPS and its sender gets the service's receipt by
//! mail; a message pushed over HTTPS reaches a party registered with a mail address by mail,
//! and that party's receipt by mail marks it delivered.

mod common;

use common::*;
use ls_core::as4::message::{self, Built, ReadOptions};
use ls_core::as4::model::{Messaging, Signal};
use ls_core::as4::wss::VerifyPolicy;
use ls_core::as4::xml::Limits;
use ls_core::mail::layout::{self, Content};
use ls_core::Certificate;
use ls_tests::mail::MailServers;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// The AS4 message (Content-Type, body) a mail in a Maildir carries.
fn as4_of(path: &std::path::Path) -> Option<(String, Vec<u8>)> {
    let raw = std::fs::read(path).unwrap();
    match layout::read(&raw, &Limits::default()) {
        Content::As4 {
            content_type, body, ..
        } => Some((content_type, body)),
        _ => None,
    }
}

/// Read and verify a mailed AS4 message signed by `signer`.
fn verified(ct: &str, body: &[u8], signer: &Certificate, me: &Party) -> message::Incoming {
    message::read(
        ct,
        body,
        &ReadOptions {
            recipient: Some(&me.identity),
            policy: VerifyPolicy {
                signer: Some(signer),
                ..Default::default()
            },
            limits: Limits::default(),
        },
    )
    .unwrap()
}

/// The mails of `user` carrying an AS4 message whose header satisfies `f`.
fn find_mail(
    mail: &MailServers,
    user: &str,
    n: usize,
    f: impl Fn(&Messaging) -> bool,
) -> (String, Vec<u8>) {
    let end = std::time::Instant::now() + WAIT;
    loop {
        for p in mail.messages(user) {
            if let Some((ct, body)) = as4_of(&p) {
                if let Ok(m) = ls_core::as4::exchange::peek(&ct, &body, &Limits::default()) {
                    if f(&m) {
                        return (ct, body);
                    }
                }
            }
        }
        assert!(
            std::time::Instant::now() < end,
            "no such mail for {user} (of {n} expected)\n{}",
            mail.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `built` as a mail from `from` to the service, put into the service's mailbox.
fn mail_to_service(mail: &MailServers, built: &Built, from: &str, service: &str) {
    let raw = layout::compose(
        &built.content_type,
        &built.body,
        from,
        service,
        &Limits::default(),
    )
    .unwrap();
    mail.deliver_raw("as4svc", &raw);
}

#[test]
fn mail_and_https_parties_exchange_through_the_gateway() {
    let Some(mail) = MailServers::start() else {
        return;
    };
    let service_address = mail.add_user("as4svc", "svc-pw");
    let alice_address = mail.address("alice");
    let (smtp, imap, ca) = (
        mail.smtp_url(),
        mail.imap_url(),
        mail.ca_pem_path().display().to_string(),
    );
    let mut server = Server::init("email-gateway", |t| {
        format!(
            "{t}\n[email]\nsmtp_url = \"{smtp}\"\nmailbox_url = \"{imap}\"\n\
             address = \"{service_address}\"\nusername = \"{service_address}\"\n\
             password_file = \"mail.password\"\nca_file = \"{ca}\"\npoll_secs = 1\n"
        )
    });
    std::fs::write(server.dir.join("mail.password"), "svc-pw\n").unwrap();
    let alice = server.party_with("alice", &["--mail-address", &alice_address]);
    let bob = server.party("bob");
    let shown = server.admin(&["party", "show", "alice"]);
    assert_eq!(shown["mail_address"], alice_address.as_str());
    server.serve();
    let t = server.transport();
    let service_cert = server.service_cert();

    // 1. Alice sends by mail to Bob, who pulls over HTTPS. (Alice's mail is put into the
    // service's mailbox directly; the service answers by SMTP to her registered address.)
    let m1 = alice.message("bob", b"by mail, to a party that pulls");
    mail_to_service(&mail, &m1, "someone@elsewhere.test", &service_address);
    let (ct, body) = find_mail(&mail, "alice", 1, |m| {
        m.signals
            .iter()
            .any(|s| s.info.ref_to_message_id.as_deref() == Some(m1.message_id.as_str()))
    });
    let answer = message::read(
        &ct,
        &body,
        &ReadOptions {
            recipient: None,
            policy: VerifyPolicy {
                signer: Some(&service_cert),
                ..Default::default()
            },
            limits: Limits::default(),
        },
    )
    .unwrap();
    assert!(
        matches!(answer.messaging.signals[0].signal, Signal::Receipt { .. }),
        "the service's signed receipt: {:?}",
        answer.messaging.signals[0].signal
    );
    let ex = bob.exchange(&t, &service_cert);
    let pulled = ex.pull(&bob.mpc()).unwrap().expect("m1 waits for bob");
    let (inc, receipt) = bob.read_pulled(&pulled, alice.identity.certificate());
    assert_eq!(
        inc.messaging.user_messages[0].info.message_id,
        m1.message_id
    );
    ex.post_receipt(&receipt).unwrap();

    // 2. Bob pushes over HTTPS to Alice, who gets it by mail and answers with her receipt by
    // mail: the message becomes delivered.
    let m2 = bob.message("alice", b"over HTTPS, to a party by mail");
    ex.push(&m2).unwrap();
    let (ct, body) = find_mail(&mail, "alice", 2, |m| {
        m.user_messages
            .first()
            .is_some_and(|u| u.info.message_id == m2.message_id)
    });
    let inc = verified(&ct, &body, bob.identity.certificate(), &alice);
    let receipt = message::build_receipt(&inc, &alice.identity, "test.example").unwrap();
    mail_to_service(&mail, &receipt, &alice_address, &service_address);
    let delivered = wait_until(WAIT, || {
        server
            .admin(&["messages", "--party", "alice"])
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["message_id"] == m2.message_id.as_str() && r["state"] == "delivered")
    });
    assert!(delivered, "{}", server.logs().join("\n"));

    let text = metrics(&server);
    assert_eq!(metric(&text, "layersec_mail_answered_total"), 1.0, "{text}");
    assert!(
        metric(&text, "layersec_mail_delivered_total") >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "layersec_messages_delivered_total"),
        2.0,
        "{text}"
    );
    let logs = server.logs().join("\n");
    for event in [
        "email_gateway",
        "mailbox_open",
        "mail_answered",
        "mailed",
        "delivered",
    ] {
        assert!(
            logs.contains(&format!("\"event\":\"{event}\"")),
            "{event}: {logs}"
        );
    }
    assert!(!logs.contains("svc-pw"), "never the password");
    // Nothing but mails for the service's mailbox went through it: none set aside.
    assert!(!text.contains("layersec_mail_set_aside_total{"), "{text}");

    // A graceful stop ends the gateway's threads too (the intake waits in IDLE).
    let t0 = std::time::Instant::now();
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?} after {:?}\n{}",
        t0.elapsed(),
        server.logs().join("\n")
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

/// A party's mail address from the command line and the admin API; a bad one is refused.
#[test]
fn mail_addresses_by_the_command_line_and_the_admin_api() {
    let mut server = Server::init("email-admin", |t| t);
    let alice = server.party_with("alice", &["--mail-address", "alice@a.test"]);
    let _ = alice;
    let shown = server.admin(&["party", "show", "alice"]);
    assert_eq!(shown["mail_address"], "alice@a.test");
    let changed = server.admin(&["party", "set-mail-address", "alice", "as4@a.test"]);
    assert_eq!(changed["mail_address"], "as4@a.test");
    let cleared = server.admin(&["party", "set-mail-address", "alice", "--none"]);
    assert!(cleared["mail_address"].is_null());
    let out = server.admin_raw(&[
        "party",
        "set-mail-address",
        "alice",
        "a@b.test\r\nBcc: x@y.test",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = server.admin_raw(&["party", "set-mail-address", "alice"]);
    assert_eq!(out.status.code(), Some(2), "ADDR or --none: {out:?}");
    let out = server.admin_raw(&["party", "set-mail-address", "nobody", "n@b.test"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    server.serve();
    let (status, body) = admin_call(
        &server,
        "POST",
        "/admin/parties/mail-address",
        r#"{"party_id": "alice", "mail_address": "api@a.test"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"mail_address\": \"api@a.test\""), "{body}");
    let (status, body) = admin_call(
        &server,
        "POST",
        "/admin/parties/mail-address",
        r#"{"party_id": "alice"}"#,
    );
    assert_eq!(status, 400, "a missing field never clears: {body}");
    let (status, body) = admin_call(
        &server,
        "POST",
        "/admin/parties/mail-address",
        r#"{"party_id": "alice", "mail_address": "not an address"}"#,
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = admin_call(
        &server,
        "POST",
        "/admin/parties/mail-address",
        r#"{"party_id": "alice", "mail_address": null}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"mail_address\": null"), "{body}");
    let (status, body) = admin_call(&server, "GET", "/admin/parties", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"mail_address\""), "{body}");
    server.stop();
}

/// POP3 cannot be the intake: `serve` refuses the configuration, naming the key.
#[test]
fn a_pop3_intake_is_refused() {
    let mut server = Server::init("email-pop3", |t| {
        format!(
            "{t}\n[email]\nsmtp_url = \"smtp://127.0.0.1:1\"\nmailbox_url = \"pop3s://127.0.0.1:1\"\n\
             address = \"as4@svc.test\"\nusername = \"as4\"\npassword_env = \"LS_NO_SUCH_VAR\"\n"
        )
    });
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config", path_str(&server.config)])
        .output()
        .unwrap();
    let (code, _, err) = outcome(&out);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("email.mailbox_url") && err.contains("POP3"),
        "{err}"
    );
    server.stop();
}
