//! The whole path through real processes over TLS on loopback: `layersec-server`, and a
//! `layersec` client per party (init, partners, send, poll, run), with real kill -9.

use ls_tests::client::{json, Client};
use ls_tests::peak_rss;
use ls_tests::service::{server_bin_beside, RunningService};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const LAYERSEC: &str = env!("CARGO_BIN_EXE_layersec");

/// `layersec-server` (beside `layersec`) redelivering after 2 s, started.
fn start_service(name: &str) -> RunningService {
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut s = RunningService::init(&bin, name, |text| {
        text.replace("redeliver_after_secs = 300", "redeliver_after_secs = 2")
    });
    s.serve();
    s
}

/// `layersec` clients of the service's parties.
trait Parties {
    fn party(&self, id: &str, register: bool) -> Party {
        self.party_with(id, register, &[])
    }
    fn party_with(&self, id: &str, register: bool, init_args: &[&str]) -> Party;
}

impl Parties for RunningService {
    /// A party's client: `layersec init`, registered at the service with its certificate.
    fn party_with(&self, id: &str, register: bool, init_args: &[&str]) -> Party {
        let c = Client::init(Path::new(LAYERSEC), self, id, init_args);
        if register {
            c.register(self, &[]);
        }
        c
    }
}

type Party = Client;

trait Trust {
    fn trust(&self, other: &Party);
}

impl Trust for Party {
    fn trust(&self, other: &Party) {
        self.ok(&["partners", "add", &other.id, other.cert.to_str().unwrap()]);
    }
}

/// The entry of a JSON list (`admin messages`, `receipts --json`) about message `id`.
fn with_id(list: &serde_json::Value, id: &str) -> serde_json::Value {
    list.as_array()
        .and_then(|a| a.iter().find(|m| m["message_id"] == id))
        .unwrap_or_else(|| panic!("no {id} in {list}"))
        .clone()
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

fn pseudo_random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn document(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        v.extend_from_slice(&pseudo_random(&mut s).to_le_bytes());
    }
    v.truncate(len);
    v
}

fn sigterm(c: &mut Child) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if let Some(st) = c.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    None
}

#[test]
fn documents_of_1_kib_and_20_mib_arrive_opened_and_verified() {
    let svc = start_service("sizes");
    let alice = svc.party("alice", true);
    let bob = svc.party("bob", true);
    alice.trust(&bob);
    bob.trust(&alice);
    let small = document(1, 1024);
    let large = document(2, 20 * 1024 * 1024);
    let work = alice.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("invoice-1k.xml"), &small).unwrap();
    std::fs::write(work.join("archive-20m.bin"), &large).unwrap();
    let mut ids = Vec::new();
    for f in ["invoice-1k.xml", "archive-20m.bin"] {
        let o = alice.ok(&[
            "send",
            work.join(f).to_str().unwrap(),
            "--to",
            "bob",
            "--json",
        ]);
        let v = json(&o);
        assert_eq!(v["delivered"], true);
        ids.push(v["message_id"].as_str().unwrap().to_string());
    }
    let o = bob.ok(&["poll", "--json"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("summary").is_none())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (v, (want, id)) in lines.iter().zip([(&small, &ids[0]), (&large, &ids[1])]) {
        assert_eq!(v["sender"], "alice");
        assert_eq!(v["message_id"], id.as_str());
        let got = std::fs::read(v["path"].as_str().unwrap()).unwrap();
        assert!(got == *want, "document content differs");
    }
    // Metadata beside each document, before the receipt.
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bob.dir.join("inbox/invoice-1k.xml.meta.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["message_id"], ids[0].as_str());
    assert_eq!(meta["sender"], "alice");
    // Delivered at the service; bob's signed receipts wait for alice.
    let msgs = svc.admin(&["messages"]);
    let from = |who: &str| {
        msgs.as_array()
            .unwrap()
            .iter()
            .filter(|m| m["from"] == who)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        from("alice").iter().all(|m| m["state"] == "delivered"),
        "{msgs}"
    );
    assert_eq!(from("bob").len(), 2, "one receipt per document: {msgs}");
    alice.ok(&["poll"]);
    let r = json(&alice.ok(&["receipts", "--json"]));
    assert!(
        r["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["state"] == "processed"),
        "{r}"
    );
    let msgs = svc.admin(&["messages"]);
    assert!(
        msgs.as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "delivered"),
        "{msgs}"
    );
    let o = bob.ok(&["poll", "--json"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("\"path\""));
    // The sender's records.
    assert_eq!(alice.documents("sent").len(), 2);
    let status = json(&alice.ok(&["status", "--json"]));
    assert_eq!(status["sent"], 2, "{status}");
}

#[test]
fn outbox_to_inbox_with_both_daemons() {
    let svc = start_service("daemons");
    let alice = svc.party("alice", true);
    let bob = svc.party("bob", true);
    alice.trust(&bob);
    bob.trust(&alice);
    let mut a = alice.spawn_run();
    let mut b = bob.spawn_run();
    let out = alice.dir.join("outbox/bob");
    std::fs::create_dir_all(&out).unwrap();
    for i in 0..5 {
        // Written under a temporary name, then renamed: the client never takes a half file.
        let tmp = out.join(format!(".doc{i}.tmp"));
        std::fs::write(&tmp, document(10 + i, 4096)).unwrap();
        std::fs::rename(&tmp, out.join(format!("doc{i}.txt"))).unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(60), || bob.documents("inbox").len()
            == 5),
        "inbox: {:?}",
        bob.documents("inbox")
    );
    assert_eq!(
        sigterm(&mut a),
        Some(0),
        "alice's daemon stops cleanly on SIGTERM"
    );
    assert_eq!(
        sigterm(&mut b),
        Some(0),
        "bob's daemon stops cleanly on SIGTERM"
    );
    for i in 0..5 {
        assert_eq!(
            std::fs::read(bob.dir.join(format!("inbox/doc{i}.txt"))).unwrap(),
            document(10 + i, 4096)
        );
    }
    assert_eq!(alice.documents("sent").len(), 5);
    assert!(alice.documents("outbox/bob").is_empty());
}

#[test]
fn every_failure_class() {
    let mut svc = start_service("failures");
    let alice = svc.party("alice", true);
    let bob = svc.party("bob", true);
    let dave = svc.party("dave", false); // has a key, is not registered at the service
    alice.trust(&bob);
    alice.trust(&dave);
    let doc = alice.dir.join("doc.txt");
    std::fs::write(&doc, b"hello").unwrap();

    // A partner whose certificate we do not have: nothing is queued.
    let o = alice.cmd(&["send", doc.to_str().unwrap(), "--to", "carol"]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("carol"));

    // Refused by the service (the recipient is not registered there): permanent, failed/ with a reason.
    let o = alice.cmd(&["send", doc.to_str().unwrap(), "--to", "dave"]);
    assert_eq!(
        o.status.code(),
        Some(10),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("EBMS:0003"));
    let reasons: Vec<_> = std::fs::read_dir(alice.dir.join("failed"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".reason.txt"))
        .collect();
    assert_eq!(reasons.len(), 1);
    let reason = std::fs::read_to_string(reasons[0].path()).unwrap();
    assert!(reason.contains("EBMS:0003"), "{reason}");
    // Who refused: the service, not the partner. Sent with `layersec send`: sent again so.
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the service refused the message: EBMS:0003"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(reason.contains("layersec send"), "{reason}");
    assert!(!reason.contains("outbox"), "{reason}");

    // Authentication refused (the sender's party was revoked at the service): permanent.
    let erin = svc.party("erin", true);
    erin.trust(&bob);
    svc.admin(&["party", "revoke", "erin"]);
    let edoc = erin.dir.join("doc.txt");
    std::fs::write(&edoc, b"from a revoked party").unwrap();
    let o = erin.cmd(&["send", edoc.to_str().unwrap(), "--to", "bob"]);
    assert_eq!(
        o.status.code(),
        Some(10),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("EBMS:0101"));
    assert_eq!(erin.documents("failed").len(), 1);
    // Its pull requests are refused too: exit 10, and the message says the service refused it.
    let o = erin.cmd(&["poll"]);
    assert_eq!(
        o.status.code(),
        Some(10),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("the service refused the pull request: EBMS:0101"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = erin.cmd(&["poll", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["code"], 505, "{v}");
    assert_eq!(v["error"]["name"], "LS_ERR_EBMS_ERROR");
    assert_eq!(v["error"]["family"], "protocol");
    assert_eq!(v["error"]["exit_code"], 10);

    // The service's TLS certificate is not the one the client trusts: no connection, not sent.
    let mallory_ca = svc.dir.join("other-ca.crt");
    std::fs::copy(alice.cert.as_path(), &mallory_ca).unwrap();
    // (erin's folder: the queued send stays in erin's journal, which no daemon runs.)
    let wrong = erin.dir.join("wrong-ca.toml");
    let text = std::fs::read_to_string(&erin.config).unwrap();
    let ca_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("ca_file"))
        .unwrap()
        .to_string();
    std::fs::write(
        &wrong,
        text.replace(
            &ca_line,
            &format!("ca_file = {:?}", mallory_ca.to_str().unwrap()),
        ),
    )
    .unwrap();
    let o = Command::new(LAYERSEC)
        .args([
            "send",
            edoc.to_str().unwrap(),
            "--to",
            "bob",
            "--config",
            wrong.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .to_lowercase()
            .contains("certificate"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The service is down: transient, queued, exit 9; delivered once it is back.
    svc.stop();
    let o = alice.cmd(&["send", doc.to_str().unwrap(), "--to", "bob", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let queued_id = json(&o)["message_id"].as_str().unwrap().to_string();
    let status = json(&alice.ok(&["status", "--json"]));
    assert!(status.to_string().contains(&queued_id), "{status}");
    let o = bob.cmd(&["poll"]);
    assert_eq!(o.status.code(), Some(9), "poll with the service down");
    svc.serve();
    let mut a = alice.spawn_run();
    assert!(
        wait_until(Duration::from_secs(30), || alice.documents("sent").len()
            == 1),
        "the queued document was not sent"
    );
    sigterm(&mut a);

    // The recipient does not know the sender yet: not written, not receipted; offered again later.
    let o = bob.ok(&["poll", "--json"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("\"path\""));
    // The summary's failures carry the one error object (the code a number).
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let f = &summary["summary"]["failed"][0];
    assert_eq!(f["error"]["code"], 303, "{summary}");
    assert_eq!(f["error"]["name"], "LS_ERR_UNKNOWN_SIGNER");
    assert!(f.get("code").is_none(), "{summary}");
    assert!(bob.documents("inbox").is_empty());
    let msgs = svc.admin(&["messages", "--party", "bob"]);
    assert_ne!(msgs[0]["state"], "delivered");
    bob.trust(&alice);
    assert!(
        wait_until(Duration::from_secs(30), || {
            bob.cmd(&["poll"]);
            bob.documents("inbox").len() == 1
        }),
        "the message was not offered again"
    );
    let msgs = svc.admin(&["messages", "--party", "bob"]);
    let queued = with_id(&msgs, &queued_id);
    assert_eq!(queued["state"], "delivered");

    // A bad configuration names the file and the key.
    let bad = alice.dir.join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&alice.config)
            .unwrap()
            .replace("[polling]", "[polling]\nintervall = 3"),
    )
    .unwrap();
    let o = Command::new(LAYERSEC)
        .args(["status", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("bad.toml") && e.contains("intervall"), "{e}");
}

/// kill -9 of both clients at arbitrary moments while documents flow; restart until done.
/// Every document arrives exactly once, none is sent twice to the partner's inbox.
#[test]
fn kill_9_at_any_moment_loses_nothing_and_duplicates_nothing() {
    let svc = start_service("kill9");
    let alice = svc.party("alice", true);
    let bob = svc.party("bob", true);
    alice.trust(&bob);
    bob.trust(&alice);
    const N: u64 = 40;
    let size = |i: u64| 1024 + (i as usize * 80_000);
    let out = alice.dir.join("outbox/bob");
    std::fs::create_dir_all(&out).unwrap();
    for i in 0..N {
        // Sizes from 1 KiB to ~3 MiB so kills land in every phase.
        let len = size(i);
        let tmp = out.join(format!(".d{i}.part"));
        std::fs::write(&tmp, document(100 + i, len)).unwrap();
        std::fs::rename(&tmp, out.join(format!("d{i:02}.bin"))).unwrap();
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let started = Instant::now();
    let mut kills = 0;
    // Rounds whose kill landed while documents were still on their way.
    let mut mid_flight = 0;
    while bob.documents("inbox").len() < N as usize && started.elapsed() < Duration::from_secs(120)
    {
        let mut a = alice.spawn_run();
        let mut b = bob.spawn_run();
        let wait = 100 + pseudo_random(&mut seed) % 500;
        std::thread::sleep(Duration::from_millis(wait));
        // SIGKILL: no chance to clean up.
        let _ = a.kill();
        let _ = b.kill();
        let _ = a.wait();
        let _ = b.wait();
        kills += 1;
        let arrived = bob.documents("inbox").len();
        if arrived > 0 && arrived < N as usize {
            mid_flight += 1;
        }
        if kills >= 20 {
            break;
        }
    }
    assert!(
        mid_flight >= 2,
        "only {mid_flight} of {kills} kills landed mid-flight"
    );
    // Then let them finish undisturbed.
    let mut a = alice.spawn_run();
    let mut b = bob.spawn_run();
    let processed = |p: &Party| {
        let r = json(&p.ok(&["receipts", "--json"]));
        r["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["state"] == "processed")
            .count()
    };
    // Until the service has every message delivered too: one whose acknowledgement a kill
    // cut off is offered again once its lease ends (2 s here) and only then acknowledged, by
    // the recipient that recognises it as delivered already.
    let all_delivered = || {
        let msgs = svc.admin(&["messages", "--limit", "1000"]);
        let msgs = msgs.as_array().unwrap();
        msgs.len() >= 2 * N as usize && msgs.iter().all(|m| m["state"] == "delivered")
    };
    let done = wait_until(Duration::from_secs(120), || {
        bob.documents("inbox").len() >= N as usize
            && alice.documents("sent").len() >= N as usize
            && processed(&alice) >= N as usize
            && all_delivered()
    });
    sigterm(&mut a);
    sigterm(&mut b);
    if !done {
        let msgs = svc.admin(&["messages", "--limit", "1000"]);
        let stuck: Vec<_> = msgs
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["state"] != "delivered")
            .collect();
        let receipts = json(&alice.ok(&["receipts", "--json"]));
        let unprocessed: Vec<_> = receipts["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["state"] != "processed")
            .collect();
        panic!(
            "after {kills} kills: inbox {} sent {}, {} messages at the service ({} not delivered: {stuck:?}), alice's receipts not processed: {unprocessed:?}",
            bob.documents("inbox").len(),
            alice.documents("sent").len(),
            msgs.as_array().unwrap().len(),
            stuck.len()
        );
    }
    // Exactly once, byte for byte.
    let inbox = bob.documents("inbox");
    assert_eq!(inbox.len(), N as usize, "{inbox:?}");
    for i in 0..N {
        let len = size(i);
        assert_eq!(
            std::fs::read(bob.dir.join(format!("inbox/d{i:02}.bin"))).unwrap(),
            document(100 + i, len),
            "d{i:02}"
        );
    }
    assert_eq!(alice.documents("sent").len(), N as usize);
    assert!(alice.documents("failed").is_empty());
    // The service stored each document once (a re-pushed job keeps its MessageId).
    let msgs = svc.admin(&["messages", "--limit", "1000"]);
    let msgs = msgs.as_array().unwrap();
    let documents = msgs.iter().filter(|m| m["from"] == "alice").count();
    assert_eq!(
        documents, N as usize,
        "each document stored once at the service"
    );
    // And exactly one signed receipt of each came back (the service takes one per document),
    // every one of them checked and recorded by alice.
    let receipts = msgs.iter().filter(|m| m["from"] == "bob").count();
    assert_eq!(receipts, N as usize, "one receipt per document");
    assert!(msgs
        .iter()
        .filter(|m| m["from"] == "alice")
        .all(|m| !m["receipt_returned_at"].is_null()));
    assert_eq!(processed(&alice), N as usize);
    assert!(msgs.iter().all(|m| m["state"] == "delivered"), "{msgs:?}");
    eprintln!(
        "kill -9 test: {kills} rounds of kills ({mid_flight} mid-flight) before the final run"
    );
}

/// A document compressed 200:1 inside the sealed message (a CMS CompressedData of ~5 MB that
/// expands to 1 GiB): the recipient refuses it with a limit of 100 MiB (the default was that
/// until documents were streamed; it is 4 GiB now) while holding next to nothing, tells the
/// sender once, and is not offered it again.
#[test]
fn a_decompression_bomb_costs_the_recipient_nothing_and_is_refused_once() {
    let svc = start_service("bomb");
    let alice = svc.party("alice", true);
    let bob = svc.party("bob", true);
    let text = std::fs::read_to_string(&bob.config).unwrap();
    let text = text.replace(
        "max_document_bytes = 4294967296",
        "max_document_bytes = 104857600",
    );
    std::fs::write(&bob.config, text).unwrap();
    alice.trust(&bob);
    bob.trust(&alice);
    let bomb = alice.dir.join("zeros.bin");
    // 1 GiB of zeros (sparse on disk).
    std::fs::File::create(&bomb)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let v = json(&alice.ok(&["send", bomb.to_str().unwrap(), "--to", "bob", "--json"]));
    assert_eq!(v["delivered"], true, "{v}");
    let message_id = v["message_id"].as_str().unwrap().to_string();
    std::fs::remove_file(alice.dir.join("sent/zeros.bin")).unwrap();
    let msgs = svc.admin(&["messages"]);
    let size = msgs[0]["size"].as_u64().unwrap();
    assert!(size < 8 << 20, "the sealed message is {size} bytes");

    let mut poll = Command::new(LAYERSEC);
    poll.args(["poll", "--json", "--config", bob.config.to_str().unwrap()]);
    let (o, kib) = peak_rss(&mut poll, &bob.dir);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        kib <= 64 * 1024,
        "poll peaked at {kib} KiB refusing the bomb (bound 64 MiB)"
    );
    eprintln!("poll refusing a 1 GiB decompression bomb: peak RSS {kib} KiB");
    assert!(stderr.contains("LS_ERR_EXPANSION_TOO_LARGE"), "{stderr}");
    assert!(stderr.contains("too_large"), "{stderr}");
    assert!(bob.documents("inbox").is_empty());
    let st = json(&bob.ok(&["status", "--json"]));
    let f = &st["incoming_failures"][0];
    assert_eq!(f["message_id"], message_id.as_str(), "{st}");
    assert_eq!(f["refused"], "too_large");
    assert_eq!(f["notice_sent"], true);
    // Not offered again, even after the lease (2 s here): the notice made it `failed` at the
    // service (body removed, never claimed again), so the next poll finds nothing.
    let msgs = svc.admin(&["messages"]);
    let rec = with_id(&msgs, &message_id);
    assert_eq!(rec["state"], "failed", "{rec}");
    let v = bob.ok(&["poll", "--json"]);
    let summary: serde_json::Value = String::from_utf8_lossy(&v.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("summary").cloned())
        .unwrap();
    assert_eq!(summary["pulled"], 0, "{summary}");
    // The sender learns it, signed by bob, on its sent record.
    let o = alice.ok(&["poll", "--json"]);
    let st = json(&alice.ok(&["status", "--json"]));
    let r = &st["refused_by_partners"][0];
    assert_eq!(
        r["partner"],
        "bob",
        "{st} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(r["message_id"], message_id.as_str());
    assert_eq!(r["class"], "too_large");
    assert_eq!(r["payload_matches"], true);
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(alice.dir.join("sent/zeros.bin.sent.json")).unwrap())
            .unwrap();
    assert_eq!(rec["refused"]["class"], "too_large");
}

/// A document larger than the service takes is refused for good (exit 10), not queued and
/// re-uploaded, and the reason names its size and the service's limit.
#[test]
fn a_document_over_the_services_limit_fails_at_once_naming_both_sizes() {
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut svc = RunningService::init(&bin, "limit", |text| {
        let default = ls_core::as4::coordination::message_limit_for(
            ls_core::as4::coordination::DEFAULT_MAX_DOCUMENT_BYTES,
        );
        text.replace(
            &format!("max_message_bytes = {default}"),
            "max_message_bytes = 2097152",
        )
    });
    svc.serve();
    let alice = svc.party("alice", true);
    let bob = svc.party("bob", true);
    alice.trust(&bob);
    let doc = alice.dir.join("big.bin");
    std::fs::write(&doc, document(7, 6 << 20)).unwrap();
    let o = alice.cmd(&["send", doc.to_str().unwrap(), "--to", "bob"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(10), "{stderr}");
    assert!(stderr.contains("LS_ERR_REFUSED"), "{stderr}");
    assert!(alice.documents("failed").len() == 1, "{stderr}");
    let reason = std::fs::read_to_string(alice.dir.join("failed/big.bin.reason.txt")).unwrap();
    assert!(reason.contains("413"), "{reason}");
    assert!(reason.contains("2097152"), "{reason}");
    let st = json(&alice.ok(&["status", "--json"]));
    assert_eq!(st["pending"].as_array().unwrap().len(), 0, "{st}");
    // Nothing reached the store.
    assert!(svc.admin(&["messages"]).as_array().unwrap().is_empty());
}

/// Between the old hard-coded 64 MiB response cap and the 100 MiB default limits: delivered.
#[test]
fn a_document_of_70_mib_arrives() {
    let svc = start_service("seventy");
    let alice = svc.party("alice", true);
    let bob = svc.party("bob", true);
    alice.trust(&bob);
    bob.trust(&alice);
    let doc = document(70, 70 << 20);
    let path = alice.dir.join("seventy.bin");
    std::fs::write(&path, &doc).unwrap();
    let v = json(&alice.ok(&["send", path.to_str().unwrap(), "--to", "bob", "--json"]));
    assert_eq!(v["delivered"], true);
    drop(path);
    bob.ok(&["poll"]);
    let got = std::fs::read(bob.dir.join("inbox/seventy.bin")).unwrap();
    assert!(got == doc, "the 70 MiB document differs");
}

/// The recipient's limit is part of its registration: a larger document is refused at push
/// time (exit 10, LS:0001 naming the sizes). A client whose own limit is smaller than its
/// registration refuses the message itself, with a signed notice, and the service stops
/// offering it.
#[test]
fn limits_meet_through_the_registration() {
    let svc = start_service("reg-limit");
    let alice = svc.party("alice", true);
    let bob = svc.party("bob", true);
    alice.trust(&bob);
    bob.trust(&alice);
    svc.admin(&[
        "party",
        "set-limit",
        "bob",
        "--max-document-bytes",
        "1048576",
    ]);
    let doc = alice.dir.join("three.bin");
    std::fs::write(&doc, document(3, 3 << 20)).unwrap();
    let o = alice.cmd(&["send", doc.to_str().unwrap(), "--to", "bob"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(10), "{stderr}");
    let reason = std::fs::read_to_string(alice.dir.join("failed/three.bin.reason.txt")).unwrap();
    assert!(reason.contains("LS:0001"), "{reason}");
    assert!(reason.contains("1048576"), "{reason}");
    assert!(svc.admin(&["messages"]).as_array().unwrap().is_empty());

    // Registered for 100 MiB again, but bob's client takes 1 MiB only.
    svc.admin(&[
        "party",
        "set-limit",
        "bob",
        "--max-document-bytes",
        "104857600",
    ]);
    let text = std::fs::read_to_string(&bob.config).unwrap();
    let text = text.replace(
        "max_document_bytes = 4294967296",
        "max_document_bytes = 1048576",
    );
    std::fs::write(&bob.config, text).unwrap();
    let v = json(&alice.ok(&["send", doc.to_str().unwrap(), "--to", "bob", "--json"]));
    let id = v["message_id"].as_str().unwrap().to_string();
    let o = bob.ok(&["poll"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("too_large"), "{stderr}");
    assert!(bob.documents("inbox").is_empty());
    let msgs = svc.admin(&["messages"]);
    let m = with_id(&msgs, &id);
    assert_eq!(m["state"], "failed", "{m}");
    assert_eq!(m["failure_class"], "too_large", "{m}");
    alice.ok(&["poll"]);
    let st = json(&alice.ok(&["status", "--json"]));
    assert_eq!(
        st["refused_by_partners"][0]["message_id"],
        id.as_str(),
        "{st}"
    );
    assert_eq!(
        st["refused_by_partners"][0]["payload_matches"], true,
        "{st}"
    );
}

/// A document sent, polled and stored comes back with the partner's signed receipt, recorded as
/// `processed` on the sender's side; the evidence verifies with `openssl cms -verify_receipt`.
#[test]
fn a_signed_receipt_comes_back_and_openssl_verifies_the_evidence() {
    let svc = start_service("receipt");
    let alice = svc.party("alice", true);
    let bob = svc.party("bob", true);
    alice.trust(&bob);
    bob.trust(&alice);
    let doc = alice.dir.join("order.xml");
    std::fs::write(&doc, b"<Order n=\"7\"/>\n").unwrap();
    let v = json(&alice.ok(&["send", doc.to_str().unwrap(), "--to", "bob", "--json"]));
    let id = v["message_id"].as_str().unwrap().to_string();
    let state = |p: &Party| {
        let r = json(&p.ok(&["receipts", "--json"]));
        r["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["message_id"] == id.as_str())
            .map(|x| x["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state(&alice).as_deref(), Some("waiting"));
    let mut a = alice.spawn_run();
    let mut b = bob.spawn_run();
    let arrived = wait_until(Duration::from_secs(60), || {
        state(&alice).as_deref() == Some("processed")
    });
    sigterm(&mut a);
    sigterm(&mut b);
    assert!(arrived, "no receipt: {:?}", state(&alice));
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(alice.dir.join("sent/order.xml.sent.json")).unwrap())
            .unwrap();
    let r = &rec["partner_receipt"]["receipt"];
    assert_eq!(r["verified"], true, "{rec}");
    assert_eq!(r["signer_subject"], "CN=bob");
    // The auditor's check, with no client state.
    let receipt = alice.dir.join("sent/order.xml.receipt.p7m");
    let original = alice.dir.join("sent/order.xml.signed.p7m");
    let o = Command::new(LAYERSEC)
        .args([
            "verify-receipt",
            "--receipt",
            receipt.to_str().unwrap(),
            "--original",
            original.to_str().unwrap(),
            "--partner",
            bob.cert.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["verified"], true);
    // And OpenSSL's.
    let o = Command::new("openssl")
        .args([
            "cms",
            "-verify_receipt",
            receipt.to_str().unwrap(),
            "-rctform",
            "DER",
            "-in",
            original.to_str().unwrap(),
            "-inform",
            "DER",
            "-CAfile",
            bob.cert.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl cms -verify_receipt: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The service metered the receipt apart from the documents.
    let msgs = svc.admin(&["messages"]);
    let m = with_id(&msgs, &id);
    assert!(!m["receipt_returned_at"].is_null(), "{m}");
}

/// A document its recipient refuses (here: it does not know the sender and was told to refuse
/// strangers at once) comes back to the sender as the `failed` disposition, signed.
#[test]
fn a_document_the_recipient_refuses_shows_as_failed_on_the_sent_record() {
    let svc = start_service("receipt-failed");
    let alice = svc.party("alice", true);
    let dave = svc.party("dave", true);
    alice.trust(&dave);
    let text = std::fs::read_to_string(&dave.config).unwrap();
    assert!(text.contains("refuse_unknown_after_hours = 72"));
    std::fs::write(
        &dave.config,
        text.replace(
            "refuse_unknown_after_hours = 72",
            "refuse_unknown_after_hours = 0",
        ),
    )
    .unwrap();
    let doc = alice.dir.join("offer.xml");
    std::fs::write(&doc, b"<Offer/>\n").unwrap();
    let v = json(&alice.ok(&["send", doc.to_str().unwrap(), "--to", "dave", "--json"]));
    let id = v["message_id"].as_str().unwrap().to_string();
    let o = dave.ok(&["poll", "--json"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(
        summary["summary"]["failed"][0]["refused"], "not_trusted",
        "{summary}"
    );
    assert!(dave.documents("inbox").is_empty());
    alice.ok(&["poll"]);
    let r = json(&alice.ok(&["receipts", "--json"]));
    let mine = with_id(&r["receipts"], &id);
    assert_eq!(mine["state"], "failed", "{r}");
    assert_eq!(mine["class"], "not_trusted", "{r}");
    // The service offers it no more and says so.
    let msgs = svc.admin(&["messages", "--party", "dave"]);
    let m = with_id(&msgs, &id);
    assert_eq!(m["state"], "failed", "{m}");
}

/// The service's partner directory, end to end: `partners fetch` adds a partner's registered
/// certificate (trust on first use) with the fingerprint the service registered, a document
/// goes to it; when the operator replaces the partner's certificate at the service, `fetch`
/// warns (exit 12) and keeps ours, and only `partners add --replace` takes the new one.
#[test]
fn partners_fetch_trusts_the_directory_once_and_never_silently_after() {
    let svc = start_service("directory");
    let acme = svc.party("acme", true);
    let globex = svc.party("globex", true);
    let registered = |id: &str| -> String {
        let shown = svc.admin(&["party", "show", id]);
        shown["certificates"][0]["sha256"]
            .as_str()
            .unwrap_or_else(|| panic!("{shown}"))
            .to_string()
    };
    let old_fp = registered("globex");

    // First use: added, with the fingerprint the service registered.
    let o = acme.cmd(&["partners", "fetch", "globex", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&o);
    assert_eq!(v["sha256"], old_fp.as_str(), "{v}");
    assert_eq!(v["outcome"], "added");
    assert_eq!(
        (v["added"].as_bool(), v["changed"].as_bool()),
        (Some(true), Some(false))
    );
    assert!(acme.dir.join("partners/globex.crt").is_file());
    let record = std::fs::read_to_string(acme.dir.join("partners/globex.toml")).unwrap();
    assert!(record.contains("source = \"directory\""), "{record}");
    // The text form prints the fingerprint as `init` and `partners add` print it.
    let o = acme.ok(&["partners", "fetch", "globex"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains(&format!("fingerprint:  SHA256 {old_fp}")),
        "{out}"
    );
    assert!(out.contains("known:"), "{out}");

    // A document to the partner fetched from the directory arrives.
    globex.ok(&["partners", "fetch", "acme", "--yes"]);
    let doc = acme.dir.join("order.xml");
    std::fs::write(&doc, b"<Order>1</Order>\n").unwrap();
    let v = json(&acme.ok(&["send", doc.to_str().unwrap(), "--to", "globex", "--json"]));
    assert_eq!(v["delivered"], true);
    globex.ok(&["poll"]);
    assert_eq!(globex.documents("inbox").len(), 1);

    // The operator replaces globex's certificate at the service.
    let keys = svc.dir.join("globex-new");
    let o = Command::new(LAYERSEC)
        .args(["keygen", "--party", "globex", "--key-type", "ec", "--out"])
        .arg(&keys)
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let new_cert = keys.join("globex.cert.pem");
    svc.admin(&[
        "party",
        "replace-certificate",
        "globex",
        "--certificate",
        new_cert.to_str().unwrap(),
    ]);
    let new_fp = registered("globex");
    assert_ne!(new_fp, old_fp);

    // The directory now answers the new one: a warning, ours kept, exit 12.
    let before = std::fs::read(acme.dir.join("partners/globex.crt")).unwrap();
    let o = acme.cmd(&["partners", "fetch", "globex", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(12),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&o);
    assert_eq!(v["changed"], true, "{v}");
    assert_eq!(v["kept"], old_fp.as_str());
    assert_eq!(v["sha256"], new_fp.as_str());
    assert_eq!(v["directory_previous"][0]["sha256"], old_fp.as_str());
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("warning") && err.contains(&old_fp) && err.contains(&new_fp),
        "{err}"
    );
    assert_eq!(
        std::fs::read(acme.dir.join("partners/globex.crt")).unwrap(),
        before
    );
    // Text form: the same warning, the same status.
    let o = acme.cmd(&["partners", "fetch", "globex"]);
    assert_eq!(o.status.code(), Some(12));
    assert!(String::from_utf8_lossy(&o.stdout).contains("changed:"));
    // Documents are still sealed for the certificate we have.
    let list = json(&acme.ok(&["partners", "list", "--json"]));
    assert_eq!(list["partners"][0]["sha256"], old_fp.as_str(), "{list}");

    // A party that meets globex now trusts the one certificate whose fingerprint it was shown,
    // not also the old one the directory lists as still accepted (the overlap).
    let hooli = svc.party("hooli", true);
    let v = json(&hooli.ok(&["partners", "fetch", "globex", "--yes", "--json"]));
    assert_eq!(v["outcome"], "added", "{v}");
    assert_eq!(v["directory_previous"][0]["sha256"], old_fp.as_str(), "{v}");
    let list = json(&hooli.ok(&["partners", "list", "--json"]));
    assert_eq!(list["partners"][0]["sha256"], new_fp.as_str(), "{list}");
    assert!(
        list["partners"][0]["previous"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{list}"
    );

    // A plain `partners add` of the new certificate is refused; `--replace` takes it.
    let o = acme.cmd(&["partners", "add", "globex", new_cert.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&acme.ok(&[
        "partners",
        "add",
        "globex",
        new_cert.to_str().unwrap(),
        "--replace",
        "--json",
    ]));
    assert_eq!(v["outcome"], "replaced");
    assert_eq!(v["replaced"][0], old_fp.as_str());
    let v = json(&acme.ok(&["partners", "fetch", "globex", "--json"]));
    assert_eq!(
        (v["outcome"].as_str(), v["changed"].as_bool()),
        (Some("known"), Some(false))
    );
    let list = json(&acme.ok(&["partners", "list", "--json"]));
    assert_eq!(list["partners"][0]["sha256"], new_fp.as_str(), "{list}");
    assert!(acme
        .dir
        .join(format!("partners/globex.history/{old_fp}.crt"))
        .is_file());

    // An unknown party is not in the directory: exit 5, nothing written.
    let o = acme.cmd(&["partners", "fetch", "initech"]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!acme.dir.join("partners/initech.crt").exists());
}

/// A partner whose record says `legacy-as2` gets multipart/signed, AES-256-CBC and RSA PKCS#1
/// v1.5 from `send`; what it sends back is accepted because its record says so (our
/// `[policy]` alone refuses it); a signed receipt still comes back.
#[test]
fn a_legacy_as2_partner_gets_and_sends_the_legacy_algorithms() {
    let svc = start_service("legacy-as2");
    let rsa = ["--key-type", "rsa2048"];
    let alice = svc.party_with("alice", true, &rsa);
    let bob = svc.party_with("bob", true, &rsa);
    alice.trust(&bob);
    bob.trust(&alice);
    for (p, other) in [(&alice, "bob"), (&bob, "alice")] {
        std::fs::write(
            p.dir.join(format!("partners/{other}.toml")),
            "profile = \"legacy-as2\"\n",
        )
        .unwrap();
    }
    let doc = alice.dir.join("old.xml");
    std::fs::write(&doc, b"<Order kind=\"as2\"/>\n").unwrap();
    let v = json(&alice.ok(&["send", doc.to_str().unwrap(), "--to", "bob", "--json"]));
    let id = v["message_id"].as_str().unwrap().to_string();
    let held = svc.admin(&["messages", "--party", "bob"]);
    assert_eq!(with_id(&held, &id)["state"], "waiting", "{held}");
    let o = bob.ok(&["poll", "--json"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(bob.documents("inbox").len() == 1, "{out}");
    assert_eq!(
        std::fs::read(bob.dir.join("inbox/old.xml")).unwrap(),
        b"<Order kind=\"as2\"/>\n"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bob.dir.join("inbox/old.xml.meta.json")).unwrap())
            .unwrap();
    assert_eq!(meta["sender"], "alice", "{meta}");
    alice.ok(&["poll"]);
    let r = json(&alice.ok(&["receipts", "--json"]));
    assert_eq!(with_id(&r["receipts"], &id)["state"], "processed", "{r}");

    // Bob's record of alice back to modern: her legacy documents are refused (policy).
    std::fs::write(
        bob.dir.join("partners/alice.toml"),
        "profile = \"modern\"\n",
    )
    .unwrap();
    let v = json(&alice.ok(&["send", doc.to_str().unwrap(), "--to", "bob", "--json"]));
    let id2 = v["message_id"].as_str().unwrap().to_string();
    let o = bob.ok(&["poll", "--json"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(
        summary["summary"]["failed"][0]["message_id"],
        id2.as_str(),
        "{summary}"
    );
    // Refused for good by our policy: AES-256-CBC is what alice sealed with, and not what a
    // modern partner may send (the notice's class says no more than cannot_open).
    let f = &summary["summary"]["failed"][0];
    assert_eq!(f["error"]["name"], "LS_ERR_WEAK_ALGORITHM", "{summary}");
    assert!(
        f["error"]["message"]
            .as_str()
            .unwrap()
            .contains("aes256-CBC"),
        "{summary}"
    );
    assert_eq!(f["refused"], "cannot_open", "{summary}");
    assert_eq!(bob.documents("inbox").len(), 1);

    // An EC identity cannot speak legacy-as2: said at once, nothing queued.
    let carol = svc.party("carol", true);
    carol.trust(&bob);
    std::fs::write(
        carol.dir.join("partners/bob.toml"),
        "profile = \"legacy-as2\"\n",
    )
    .unwrap();
    let o = carol.cmd(&["send", doc.to_str().unwrap(), "--to", "bob"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("legacy-as2 needs an RSA identity"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
