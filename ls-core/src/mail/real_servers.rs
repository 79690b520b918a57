//! The mail clients against real servers: a private Postfix + Dovecot on loopback
//! (`ls_tests::mail::MailServers`; skipped where they are not installed).

use super::smtp::SmtpClient;
use super::{open_mailbox, Account, MailTrust, MailUrl};
use crate::error::ErrorCode;
use ls_tests::mail::MailServers;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

fn account(url: &str, user: &str, password: &str, ca: &std::path::Path) -> Account {
    Account {
        url: MailUrl::parse(url).unwrap(),
        username: user.into(),
        password: Zeroizing::new(password.into()),
        trust: MailTrust {
            ca_pem: Some(std::fs::read(ca).unwrap()),
            pinned_sha256: None,
        },
        timeout: Duration::from_secs(10),
    }
}

fn mail(subject: &str, body_lines: usize) -> Vec<u8> {
    let mut m = format!(
        "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@example.test>\r\n\r\n"
    )
    .into_bytes();
    for i in 0..body_lines {
        m.extend_from_slice(format!(".line {i} of the body\r\n").as_bytes());
    }
    m
}

#[test]
fn smtp_imap_pop3_against_postfix_and_dovecot() {
    let Some(servers) = MailServers::start() else {
        return;
    };
    let ca = servers.ca_pem_path();
    let alice = servers.address("alice");
    let bob = servers.address("bob");

    // Submission: STARTTLS and implicit TLS.
    for (url, subject) in [(servers.smtp_url(), "one"), (servers.smtps_url(), "two")] {
        SmtpClient::new(account(&url, &alice, "alice-pw", &ca))
            .unwrap()
            .send(&alice, &[&bob], &mail(subject, 3))
            .unwrap_or_else(|e| panic!("{url}: {e}\n{}", servers.log()));
    }
    servers.wait_for_mail("bob", 2, Duration::from_secs(20));

    // Refusals.
    let smtp = SmtpClient::new(account(&servers.smtp_url(), &alice, "alice-pw", &ca)).unwrap();
    let e = smtp
        .send(&alice, &["nobody@example.test"], &mail("x", 1))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Refused, "{e}");
    assert!(e.to_string().contains("550"), "{e}");
    let e = SmtpClient::new(account(&servers.smtp_url(), &alice, "wrong-pw", &ca))
        .unwrap()
        .send(&alice, &[&bob], &mail("x", 1))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::LoginFailed, "{e}");
    assert!(!e.to_string().contains("wrong-pw"));
    let e = SmtpClient::new(account(
        &servers.smtps_url(),
        &alice,
        "alice-pw",
        &servers.other_ca_path(),
    ))
    .unwrap()
    .send(&alice, &[&bob], &mail("x", 1))
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TlsFailed, "{e}");

    // IMAP, STARTTLS: list, fetch, set aside, delete, IDLE.
    let mut mb = open_mailbox(&account(&servers.imap_url(), &bob, "bob-pw", &ca))
        .unwrap_or_else(|e| panic!("{e}\n{}", servers.log()));
    assert!(mb.uidvalidity().is_some());
    assert!(mb.can_idle());
    let list = mb.list().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let first = mb.fetch(&list[0], 1 << 20).unwrap();
    assert!(first.windows(12).any(|w| w == b"Subject: one"));
    assert!(first.windows(14).any(|w| w == b"\r\n.line 2 of t"));
    assert_eq!(list[0].size, first.len() as u64);
    assert_eq!(
        mb.fetch(&list[0], 10).unwrap_err().code(),
        ErrorCode::TooLarge
    );
    mb.set_aside(&list[1], "Junk").unwrap();
    mb.delete(&list[0]).unwrap();
    assert!(mb.list().unwrap().is_empty());
    // Nothing new: wait ends at max; then a mail arrives while waiting.
    let stop = AtomicBool::new(false);
    assert!(!mb.wait(Duration::from_millis(600), &stop).unwrap());
    let sender = {
        let smtp = SmtpClient::new(account(&servers.smtps_url(), &alice, "alice-pw", &ca)).unwrap();
        let bob = bob.clone();
        let alice = alice.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            smtp.send(&alice, &[&bob], &mail("three", 1))
        })
    };
    let t0 = Instant::now();
    assert!(mb.wait(Duration::from_secs(30), &stop).unwrap());
    assert!(t0.elapsed() < Duration::from_secs(25));
    sender.join().unwrap().unwrap();
    assert_eq!(mb.list().unwrap().len(), 1);
    mb.close().unwrap();

    // The mail set aside is in Junk.
    let mut acc = account(&servers.imaps_url(), &bob, "bob-pw", &ca);
    acc.url.folder = Some("Junk".into());
    let mut junk = open_mailbox(&acc).unwrap();
    let l = junk.list().unwrap();
    assert_eq!(l.len(), 1);
    assert!(junk
        .fetch(&l[0], 1 << 20)
        .unwrap()
        .windows(12)
        .any(|w| w == b"Subject: two"));
    junk.close().unwrap();

    // A wrong password.
    let e = open_mailbox(&account(&servers.imaps_url(), &bob, "nope", &ca))
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::LoginFailed, "{e}");

    // POP3, STLS and implicit: list, fetch, delete at QUIT.
    let mut mb = open_mailbox(&account(&servers.pop3_url(), &bob, "bob-pw", &ca))
        .unwrap_or_else(|e| panic!("{e}\n{}", servers.log()));
    let list = mb.list().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let m = mb.fetch(&list[0], 1 << 20).unwrap();
    assert!(m.windows(14).any(|w| w == b"Subject: three"));
    assert!(m.windows(7).any(|w| w == b"\r\n.line"));
    assert_eq!(
        mb.fetch(&list[0], 10).unwrap_err().code(),
        ErrorCode::TooLarge
    );
    mb.delete(&list[0]).unwrap();
    mb.close().unwrap();
    let mut mb = open_mailbox(&account(&servers.pop3s_url(), &bob, "bob-pw", &ca)).unwrap();
    assert!(mb.list().unwrap().is_empty());
    mb.close().unwrap();
    let e = open_mailbox(&account(&servers.pop3s_url(), &bob, "nope", &ca))
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::LoginFailed, "{e}");

    // The size limit: announced in EHLO, refused before DATA, the limit named.
    servers.set_message_size_limit(2000);
    let e = SmtpClient::new(account(&servers.smtp_url(), &alice, "alice-pw", &ca))
        .unwrap()
        .send(&alice, &[&bob], &mail("big", 200))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Refused, "{e}");
    assert!(e.to_string().contains("2000 bytes"), "{e}");
}
