//! SOAP over e-mail end to end, against real Postfix and Dovecot on loopback
//! (`ls_tests::mail::MailServers`), a real `layersec-server` with its e-mail gateway, and
//! `layersec` clients on e-mail (IMAP and POP3) and on HTTPS.

use ls_tests::client::{json, Client};
use ls_tests::mail::MailServers;
use ls_tests::service::{server_bin_beside, RunningService};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const LAYERSEC: &str = env!("CARGO_BIN_EXE_layersec");

/// Real mail servers and a service whose gateway reads `service@example.test`.
struct World {
    mail: MailServers,
    svc: RunningService,
}

fn world(name: &str) -> Option<World> {
    let mail = MailServers::start()?;
    mail.add_user("service", "service-pw");
    let pw = mail.dir.join("service.pw");
    std::fs::write(&pw, "service-pw\n").unwrap();
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let section = format!(
        "\n[email]\nsmtp_url = \"{}\"\nmailbox_url = \"{}\"\naddress = \"{}\"\n\
         username = \"{}\"\npassword_file = \"{}\"\nca_file = \"{}\"\npoll_secs = 1\n\
         redeliver_after_secs = 20\n",
        mail.smtps_url(),
        mail.imaps_url(),
        mail.address("service"),
        mail.address("service"),
        pw.display(),
        mail.ca_pem_path().display()
    );
    let mut svc = RunningService::init(&bin, name, |text| {
        text.replace("redeliver_after_secs = 300", "redeliver_after_secs = 2") + &section
    });
    svc.serve();
    Some(World { mail, svc })
}

/// How a party's client reaches the service.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Https,
    Imap,
    Pop3,
}

type Party = Client;

impl World {
    /// A party's client (`layersec init`), registered at the service (with its mail address
    /// unless on HTTPS), configured for `via`.
    fn party(&self, id: &str, via: Via) -> Party {
        let c = Client::init(Path::new(LAYERSEC), &self.svc, id, &[]);
        if via == Via::Https {
            c.register(&self.svc, &[]);
            return c;
        }
        let pw = format!("{id}-pw");
        let address = self.mail.add_user(id, &pw);
        std::fs::write(c.dir.join("mail.pw"), format!("{pw}\n")).unwrap();
        let mailbox = if via == Via::Imap {
            self.mail.imaps_url()
        } else {
            self.mail.pop3s_url()
        };
        c.edit_config(|t| {
            t + &format!(
                "\n[transport]\nkind = \"email\"\n\n[email]\nsmtp_url = \"{}\"\n\
                 mailbox_url = \"{mailbox}\"\naddress = \"{address}\"\n\
                 service_address = \"{}\"\nusername = \"{address}\"\n\
                 password_file = \"mail.pw\"\nca_file = \"{}\"\nreceipt_wait_secs = 60\n",
                self.mail.smtp_url(),
                self.mail.address("service"),
                self.mail.ca_pem_path().display()
            )
        });
        c.register(&self.svc, &["--mail-address", &address]);
        c
    }
}

impl World {
    /// alice (IMAP) and bob (`bob_via`), each the other's partner.
    fn pair(&self, bob_via: Via) -> (Party, Party) {
        let alice = self.party("alice", Via::Imap);
        let bob = self.party("bob", bob_via);
        alice.trust(&bob);
        bob.trust(&alice);
        (alice, bob)
    }

    /// `alice` sends `data` to bob; the mail the service makes of it, once in bob's mailbox.
    fn mailed_to_bob(&self, alice: &Party, name: &str, data: &[u8]) -> PathBuf {
        let o = alice.send(name, data, "bob");
        exits(&o, 0);
        let mails = self.mail.wait_for_mail("bob", 1, Duration::from_secs(30));
        assert_eq!(mails.len(), 1, "{mails:?}");
        mails[0].clone()
    }
}

/// The command exited with `code` (its stderr shown if not).
fn exits(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// What the tests do with a client besides the shared commands.
trait Ops {
    fn trust(&self, other: &Party);
    fn send(&self, name: &str, data: &[u8], to: &str) -> Output;
    fn poll_until(&self, n: usize, timeout: Duration) -> Vec<PathBuf>;
}

impl Ops for Party {
    fn trust(&self, other: &Party) {
        self.ok(&["partners", "add", &other.id, other.cert.to_str().unwrap()]);
    }

    /// Write `data` as `name` in a work folder and send it; the command's output.
    fn send(&self, name: &str, data: &[u8], to: &str) -> Output {
        let work = self.dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let f = work.join(name);
        std::fs::write(&f, data).unwrap();
        self.cmd(&["send", f.to_str().unwrap(), "--to", to, "--json"])
    }

    /// Poll until `n` documents are in the inbox (or `timeout`).
    fn poll_until(&self, n: usize, timeout: Duration) -> Vec<PathBuf> {
        let t = Instant::now();
        loop {
            let o = self.cmd(&["poll", "--json"]);
            assert!(
                matches!(o.status.code(), Some(0) | Some(9)),
                "poll ({}): exit {:?}: {}",
                self.id,
                o.status.code(),
                String::from_utf8_lossy(&o.stderr)
            );
            let docs = self.documents("inbox");
            if docs.len() >= n || t.elapsed() > timeout {
                return docs;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn document(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.extend_from_slice(&s.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn sent_record(p: &Party, name: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(p.dir.join("sent").join(format!("{name}.sent.json"))).unwrap(),
    )
    .unwrap()
}

#[test]
fn documents_by_mail_to_mail_and_across_https_both_ways() {
    let Some(w) = world("mail-e2e") else { return };
    let alice = w.party("alice", Via::Imap);
    let bob = w.party("bob", Via::Pop3);
    let carol = w.party("carol", Via::Https);
    for (a, b) in [(&alice, &bob), (&alice, &carol), (&bob, &carol)] {
        a.trust(b);
        b.trust(a);
    }
    let small = document(1, 1024);
    let large = document(2, 10 * 1024 * 1024);
    // (sender, recipient, what): mail → mail, mail → HTTPS, HTTPS → mail.
    let routes: [(&Party, &Party); 3] = [(&alice, &bob), (&bob, &carol), (&carol, &alice)];
    for (i, (from, to)) in routes.iter().enumerate() {
        for (j, data) in [&small, &large].into_iter().enumerate() {
            let name = format!("doc-{i}-{j}.bin");
            let o = from.send(&name, data, &to.id);
            assert_eq!(
                o.status.code(),
                Some(0),
                "{} → {}: {}",
                from.id,
                to.id,
                String::from_utf8_lossy(&o.stderr)
            );
            let v = json(&o);
            assert_eq!(v["delivered"], true, "{v}");
            // The service's receipt completed the send: the document is in sent/.
            let rec = sent_record(from, &name);
            assert!(
                rec["receipt_message_id"]
                    .as_str()
                    .is_some_and(|r| !r.is_empty()),
                "{rec}"
            );
        }
    }
    for (i, (from, to)) in routes.iter().enumerate() {
        let want = 2 * (1 + routes[..i].iter().filter(|(_, t)| t.id == to.id).count());
        let docs = to.poll_until(want, Duration::from_secs(90));
        for (j, data) in [&small, &large].into_iter().enumerate() {
            let p = to.dir.join("inbox").join(format!("doc-{i}-{j}.bin"));
            let got = std::fs::read(&p).unwrap_or_else(|e| {
                panic!(
                    "{} → {}: {} missing ({e}); inbox {docs:?}",
                    from.id,
                    to.id,
                    p.display()
                )
            });
            assert!(
                got == *data,
                "{} → {}: document {j} differs",
                from.id,
                to.id
            );
        }
    }
    // The partners' signed receipts come back the same ways.
    for p in [&alice, &bob, &carol] {
        p.ok(&["poll"]);
    }
    std::thread::sleep(Duration::from_secs(2));
    for (i, (from, _)) in routes.iter().enumerate() {
        let t = Instant::now();
        loop {
            from.ok(&["poll"]);
            let rec = sent_record(from, &format!("doc-{i}-0.bin"));
            if rec["partner_receipt"]["state"] == "processed" {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{}: no partner receipt: {rec}",
                from.id
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[test]
fn foreign_mails_and_duplicates_are_not_documents_imap() {
    foreign_mails_and_duplicates(Via::Imap);
}

#[test]
fn foreign_mails_and_duplicates_are_not_documents_pop3() {
    foreign_mails_and_duplicates(Via::Pop3);
}

fn foreign_mails_and_duplicates(via: Via) {
    let Some(w) = world("mail-foreign") else {
        return;
    };
    let (alice, bob) = w.pair(via);
    // The service mails it to bob; a copy of that mail, a person's mail and spam join it.
    let mail = w.mailed_to_bob(&alice, "one.txt", b"the one document");
    let copy = std::fs::read(&mail).unwrap();
    w.mail.deliver_raw("bob", &copy);
    w.mail.deliver_raw(
        "bob",
        b"From: carol@example.test\r\nTo: bob@example.test\r\nSubject: lunch?\r\n\r\nAt noon.\r\n",
    );
    w.mail.deliver_raw(
        "bob",
        b"From: x@spam.test\r\nTo: bob@example.test\r\nSubject: WIN\r\nContent-Type: text/xml\r\n\r\n<win/>\r\n",
    );
    let docs = bob.poll_until(1, Duration::from_secs(30));
    // Once more: nothing new.
    bob.ok(&["poll"]);
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(bob.documents("inbox").len(), 1);
    assert_eq!(std::fs::read(&docs[0]).unwrap(), b"the one document");
    let aside = w.mail.maildir("bob").join(".layersec-not-ours");
    let n = ["new", "cur"]
        .iter()
        .map(|s| {
            std::fs::read_dir(aside.join(s))
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum::<usize>();
    if via == Via::Imap {
        // The two that are not ours were moved aside; the message mails are gone.
        assert_eq!(n, 2, "mails set aside in {}", aside.display());
        assert!(
            w.mail.messages("bob").is_empty(),
            "{:?}",
            w.mail.messages("bob")
        );
    } else {
        // POP3 cannot move them: they are left (and skipped); the message mails are gone.
        assert_eq!(n, 0);
        let left = w.mail.messages("bob");
        assert_eq!(left.len(), 2, "{left:?}");
        for m in left {
            let text = std::fs::read_to_string(&m).unwrap();
            assert!(
                text.contains("Subject: lunch?") || text.contains("Subject: WIN"),
                "{text}"
            );
        }
    }
}

#[test]
fn a_bounce_is_retried_and_only_then_the_reason() {
    let Some(w) = world("mail-bounce") else {
        return;
    };
    let alice = w.party("alice", Via::Imap);
    let bob = w.party("bob", Via::Imap);
    alice.trust(&bob);
    // Alice's mails go to a domain that bounces them.
    let nowhere = format!("service@{}", w.mail.bounce_domain());
    alice.edit_config(|t| {
        t.replace(
            &format!("service_address = \"{}\"", w.mail.address("service")),
            &format!("service_address = \"{nowhere}\""),
        )
        .replace(
            "receipt_wait_secs = 60",
            "receipt_wait_secs = 3\nresubmit_after_secs = 60",
        )
        .replace("max_attempts = 48", "max_attempts = 3")
    });
    let o = alice.send("lost.txt", b"never arrives", "bob");
    assert_eq!(
        o.status.code(),
        Some(13),
        "submitted, receipt pending: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("receipt pending"));
    // The bounce alone fails nothing: the send is retried until its attempts run out.
    let t = Instant::now();
    loop {
        alice.cmd(&["poll"]);
        if !alice.documents("failed").is_empty() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(90), "not failed");
        std::thread::sleep(Duration::from_millis(500));
    }
    let reason = std::fs::read_to_string(alice.dir.join("failed/lost.txt.reason.txt")).unwrap();
    assert!(
        reason.contains("returned undelivered") && reason.contains("5.1.1"),
        "{reason}"
    );
    assert!(reason.contains("3 attempts"), "{reason}");
}

#[test]
fn wrong_password_untrusted_server_and_size_limit_are_clear() {
    let Some(w) = world("mail-refusals") else {
        return;
    };
    let alice = w.party("alice", Via::Imap);
    let bob = w.party("bob", Via::Pop3);
    alice.trust(&bob);
    let st = json(&bob.ok(&["status", "--json"]));
    assert_eq!(st["transport"], "email", "{st}");
    assert!(
        st["email"]["mailbox"]
            .as_str()
            .unwrap()
            .starts_with("pop3s://"),
        "{st}"
    );
    assert_eq!(st["email"]["address"], "bob@example.test", "{st}");
    let text = String::from_utf8_lossy(&bob.ok(&["status"]).stdout).into_owned();
    assert!(
        text.contains("by e-mail") && !text.contains("bob-pw"),
        "{text}"
    );
    // A wrong password: exit 7 at once, the document kept queued.
    std::fs::write(alice.dir.join("mail.pw"), "wrong\n").unwrap();
    let t = Instant::now();
    let o = alice.send("a.txt", b"hello", "bob");
    exits(&o, 7);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("LS_ERR_LOGIN_FAILED") && !err.contains("alice-pw"),
        "{err}"
    );
    exits(&bob.cmd(&["poll"]), 0);
    std::fs::write(bob.dir.join("mail.pw"), "wrong\n").unwrap();
    let o = bob.cmd(&["poll"]);
    exits(&o, 7);
    std::fs::write(bob.dir.join("mail.pw"), "bob-pw\n").unwrap();
    std::fs::write(alice.dir.join("mail.pw"), "alice-pw\n").unwrap();
    // The queued document goes once the password is right.
    let t = Instant::now();
    while alice.documents("sent").is_empty() {
        alice.cmd(&["poll"]);
        assert!(t.elapsed() < Duration::from_secs(60), "not sent");
        std::thread::sleep(Duration::from_millis(300));
    }
    // A server whose certificate we do not trust: refused, exit 9 (TLS), nothing sent.
    let other = w.mail.other_ca_path();
    bob.edit_config(|t| {
        t.replace(
            &w.mail.ca_pem_path().display().to_string(),
            &other.display().to_string(),
        )
    });
    let o = bob.cmd(&["poll"]);
    exits(&o, 9);
    assert!(String::from_utf8_lossy(&o.stderr).contains("LS_ERR_TLS_FAILED"));
    // The SMTP server's size limit: a permanent refusal naming it, exit 10, failed/.
    w.mail.set_message_size_limit(200_000);
    let o = alice.send("big.bin", &document(3, 1 << 20), "bob");
    exits(&o, 10);
    let reason = std::fs::read_to_string(alice.dir.join("failed/big.bin.reason.txt")).unwrap();
    assert!(reason.contains("200000"), "{reason}");
}

#[test]
fn kill_9_during_send_and_receive_loses_nothing_and_writes_nothing_twice() {
    let Some(w) = world("mail-kill") else { return };
    let (alice, bob) = w.pair(Via::Imap);
    const N: usize = 20;
    let outbox = alice.dir.join("outbox/bob");
    std::fs::create_dir_all(&outbox).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    // Each round a document more joins the outbox while both daemons run, and both are killed
    // at random moments: while sending, receiving, receipting, or idle.
    for i in 0..N {
        let tmp = alice.dir.join(format!("work-{i}"));
        std::fs::write(&tmp, document(i as u64 + 10, 2000 + i * 997)).unwrap();
        std::fs::rename(&tmp, outbox.join(format!("doc-{i:02}.bin"))).unwrap();
        let mut a = alice.spawn_run();
        let mut b = bob.spawn_run();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(200 + seed % 1300));
        let _ = a.kill();
        std::thread::sleep(Duration::from_millis(seed % 300));
        let _ = b.kill();
        let _ = a.wait();
        let _ = b.wait();
    }
    let mut a = alice.spawn_run();
    let mut b = bob.spawn_run();
    let t = Instant::now();
    while (bob.documents("inbox").len() < N || alice.documents("sent").len() < N)
        && t.elapsed() < Duration::from_secs(180)
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
    let inbox = bob.documents("inbox");
    assert_eq!(inbox.len(), N, "{inbox:?}");
    for i in 0..N {
        let got = std::fs::read(bob.dir.join(format!("inbox/doc-{i:02}.bin"))).unwrap();
        assert!(
            got == document(i as u64 + 10, 2000 + i * 997),
            "doc {i} differs"
        );
    }
    assert_eq!(
        alice.documents("sent").len(),
        N,
        "{:?}",
        alice.documents("sent")
    );
    assert!(alice.documents("failed").is_empty());
}

#[test]
fn a_forged_copy_is_set_aside_unanswered_and_the_real_one_still_arrives() {
    let Some(w) = world("mail-forged") else {
        return;
    };
    let (alice, bob) = w.pair(Via::Imap);
    // Bob's mail with the real message is taken out of the mailbox; a copy with one payload
    // character changed (same MessageId, From alice) comes first.
    let mail = w.mailed_to_bob(&alice, "real.txt", &document(7, 3000));
    let real = std::fs::read(&mail).unwrap();
    std::fs::remove_file(&mail).unwrap();
    let mut forged = real.clone();
    let at = forged.len() - 300;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    w.mail.deliver_raw("bob", &forged);
    let o = bob.ok(&["poll", "--json"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(bob.documents("inbox").is_empty(), "{out}");
    assert!(out.contains("\"set_aside\":1"), "{out}");
    // Not refused: no failure record, no notice to alice.
    let failed_in = bob.dir.join("state/incoming-failed");
    let records = std::fs::read_dir(&failed_in)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(records, 0, "{}", failed_in.display());
    let log = std::fs::read_to_string(bob.dir.join("state/mail/set-aside.jsonl")).unwrap();
    assert!(log.contains("from alice"), "{log}");
    // The real one, offered after, is written.
    w.mail.deliver_raw("bob", &real);
    let docs = bob.poll_until(1, Duration::from_secs(30));
    assert_eq!(docs.len(), 1);
    assert_eq!(std::fs::read(&docs[0]).unwrap(), document(7, 3000));
}

#[test]
fn a_wrong_password_in_run_is_not_tried_in_a_loop() {
    let Some(w) = world("mail-lockout") else {
        return;
    };
    let bob = w.party("bob", Via::Imap);
    // The daemon's back-off as shipped: 30 s at first, then more.
    bob.edit_config(|t| {
        t.replace("initial_secs = 1", "initial_secs = 30")
            .replace("max_secs = 2", "max_secs = 3600")
    });
    bob.ok(&["poll"]);
    std::fs::write(bob.dir.join("mail.pw"), "wrong\n").unwrap();
    let failures = |log: &str| {
        log.lines()
            .filter(|l| l.contains("bob@example.test") && l.contains("auth failed"))
            .count()
    };
    let before = failures(&w.mail.log());
    let mut run = Command::new(LAYERSEC)
        .args(["run", "--json", "--config", bob.config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(10));
    let _ = run.kill();
    let out = run.wait_with_output().unwrap();
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(events.contains("LS_ERR_LOGIN_FAILED"), "{events}");
    let log = w.mail.log();
    let n = failures(&log) - before;
    // One refused login, then the poll's back-off (30 s): nothing else logs in meanwhile.
    assert!((1..=2).contains(&n), "{n} refused logins in 10 s:\n{log}");
}
