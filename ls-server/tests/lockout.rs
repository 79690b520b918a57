//! Nobody can lock out the service: while 10,000 idle or byte-trickling connections from other
//! loopback addresses are held against the AS4 port of a real `layersec-server`, signed pushes
//! and pulls from 127.0.0.1 still succeed, and the server stays small.

mod common;

use common::attack::{Attack, TRICKLE_EVERY};
use common::*;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Attacking connections held at once, spread over 100 addresses from 127.0.0.2.
const HELD: usize = 10_000;
const PER_ADDRESS: usize = 100;
/// One more address opens this many, over the default per-address limit (128).
const GREEDY: usize = 160;
const PER_ADDRESS_LIMIT: usize = 128;
/// Generous bounds that only detect a hang.
const SETTLE: Duration = Duration::from_secs(600);

fn server_pid(s: &Server) -> u32 {
    let line = s
        .logs()
        .into_iter()
        .find(|l| l.contains("\"event\":\"listening\""))
        .expect("the listening line");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    v["pid"].as_u64().expect("the listening line names the pid") as u32
}

/// The peak resident set of a process (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

#[test]
fn ten_thousand_idle_or_trickling_connections_do_not_lock_out_the_clients() {
    // The test process holds as many sockets as the server.
    let (soft, _) = ls_server::http::raise_open_files_limit(HELD as u64 + 1024).unwrap();
    assert!(
        soft >= HELD as u64 + 1024,
        "the open-files limit of this machine ({soft}) cannot hold the attack"
    );
    // The deadlines are long, so the server keeps every attacking connection for the whole
    // test: the attack at full strength, not cut and reconnected.
    let mut s = Server::init("lockout", |c| {
        c.replace("header_timeout_secs = 10", "header_timeout_secs = 900")
    });
    s.serve();
    let alice = s.party("alice");
    let bob = s.party("bob");
    let svc = s.service_cert();
    let target: SocketAddr = s.hostport().parse().unwrap();
    let pid = server_pid(&s);
    eprintln!(
        "server peak RSS before the attack: {} MiB",
        peak_rss_kib(pid) / 1024
    );

    let attack = Attack::start(
        target,
        HELD,
        Ipv4Addr::new(127, 0, 0, 2),
        PER_ADDRESS,
        Some((Ipv4Addr::new(127, 0, 1, 1), GREEDY)),
    );
    // The connections over the per-address limit are closed at once: a silent TCP one sees
    // the end of the stream, a TLS one fails its handshake.
    let refused = GREEDY - PER_ADDRESS_LIMIT;
    let started = std::time::Instant::now();
    let in_place = wait_until(SETTLE, || {
        attack.settled() && attack.closed_by_server() + attack.failed() >= refused
    });
    eprintln!(
        "attack in place after {:?}: {} held; server peak RSS so far {} MiB",
        started.elapsed(),
        attack.held(),
        peak_rss_kib(pid) / 1024
    );
    assert!(
        in_place,
        "the attack did not settle: {} established, {} failed, {} closed by the server of {}",
        attack.established(),
        attack.failed(),
        attack.closed_by_server(),
        attack.total
    );
    assert_eq!(
        attack.closed_by_server() + attack.failed(),
        refused,
        "only the connections over the per-address limit were refused"
    );
    assert_eq!(attack.held(), HELD + PER_ADDRESS_LIMIT);
    let m = metrics(&s);
    let open = metric(&m, "layersec_http_connections_open") as usize;
    assert_eq!(open, HELD + PER_ADDRESS_LIMIT, "{m}");
    assert_eq!(
        metric(&m, "layersec_http_connections_refused_per_address_total") as usize,
        refused
    );
    assert_eq!(metric(&m, "layersec_http_connections_refused_total"), 0.0);

    // The legitimate clients, from 127.0.0.1: signed pushes, pulls and receipts.
    let t = s.transport();
    for i in 0..10 {
        let doc = format!("<Invoice n=\"{i}\"/>").repeat(100);
        let sent = alice.message("bob", doc.as_bytes());
        alice
            .exchange(&t, &svc)
            .push(&sent)
            .unwrap_or_else(|e| panic!("push {i} under the attack: {e}"));
        let ex = bob.exchange(&t, &svc);
        let pulled = ex
            .pull(&bob.mpc())
            .unwrap_or_else(|e| panic!("pull {i} under the attack: {e}"))
            .expect("the message waits");
        assert_eq!(pulled.body, sent.body);
        let (inc, receipt) = bob.read_pulled(&pulled, alice.identity.certificate());
        assert_eq!(inc.payloads[0].data, doc.as_bytes());
        ex.post_receipt(&receipt).unwrap();
    }
    // A fresh connection from 127.0.0.1 is served too (the client above reused its own).
    assert_eq!(https_get(&s, "/health").0, 200);

    // The attack was held throughout, trickling.
    let trickled_before = attack
        .counters
        .trickled
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(wait_until(TRICKLE_EVERY * 10, || {
        attack
            .counters
            .trickled
            .load(std::sync::atomic::Ordering::Relaxed)
            > trickled_before
    }));
    assert_eq!(attack.held(), HELD + PER_ADDRESS_LIMIT);
    // Once the clients' own kept-alive connections are closed, the server holds the attack.
    drop(t);
    assert!(wait_until(SETTLE, || {
        metric(&metrics(&s), "layersec_http_connections_open") as usize == HELD + PER_ADDRESS_LIMIT
    }));
    assert_eq!(
        metric(&metrics(&s), "layersec_messages_delivered_total"),
        10.0
    );

    let peak_mib = peak_rss_kib(pid) / 1024;
    eprintln!("server peak RSS under {open} held connections: {peak_mib} MiB");
    assert!(peak_mib < 200, "server peak RSS {peak_mib} MiB");

    attack.stop();
    // Every attacking connection is gone from the server too.
    assert!(wait_until(SETTLE, || {
        metric(&metrics(&s), "layersec_http_connections_open") == 0.0
    }));
}
