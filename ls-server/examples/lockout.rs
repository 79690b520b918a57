//! Benchmark for `scripts/bench-lockout.sh`: the latency of legitimate push + pull + receipt
//! rounds from 127.0.0.1, and the server's peak RSS, first alone (the anchor) and then while
//! 10,000 idle or byte-trickling connections from 127.0.0.2 and up are held against the AS4
//! port (the attack of `tests/lockout.rs`).
//!
//! usage: lockout <layersec-server binary> <service dir> <as4 url> <server pid> <rounds>
//!        [<held connections>]

mod common;
use common::{build, register};

#[path = "../tests/common/attack.rs"]
mod attack;

use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange::{party_mpc, Exchange};
use ls_core::as4::message::{self, Built, ReadOptions};
use ls_core::as4::wss::VerifyPolicy;
use ls_core::as4::xml::Limits;
use ls_core::transport::{HttpsConfig, HttpsTransport};
use ls_core::{Certificate, Identity};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

struct Party {
    id: String,
    identity: Identity,
}

/// `n` rounds: push (with the service's receipt), pull, the recipient's receipt. The
/// latency of each round, sorted.
fn rounds(
    n: usize,
    t: &HttpsTransport,
    svc: &Certificate,
    from: &Party,
    to: &Party,
    msgs: &[Built],
) -> Vec<Duration> {
    let limits = Limits {
        max_part: 64 * 1024 * 1024,
        ..Default::default()
    };
    fn ex<'a>(
        t: &'a HttpsTransport,
        svc: &'a Certificate,
        me: &'a Party,
        limits: &Limits,
    ) -> Exchange<'a> {
        Exchange {
            transport: t,
            me: &me.identity,
            service: svc,
            service_previous: &[],
            soap: SoapVersion::Soap12,
            domain: "bench.example".into(),
            limits: limits.clone(),
        }
    }
    let (sender, recipient) = (ex(t, svc, from, &limits), ex(t, svc, to, &limits));
    let mpc = party_mpc(&to.id);
    let mut took: Vec<Duration> = (0..n)
        .map(|i| {
            let started = Instant::now();
            sender.push(&msgs[i]).expect("push");
            let p = recipient.pull(&mpc).expect("pull").expect("a message");
            let inc = message::read(
                &p.content_type,
                &p.body,
                &ReadOptions {
                    recipient: Some(&to.identity),
                    policy: VerifyPolicy {
                        signer: Some(from.identity.certificate()),
                        ..Default::default()
                    },
                    limits: limits.clone(),
                },
            )
            .expect("read");
            let rc = message::build_receipt(&inc, &to.identity, "bench.example").unwrap();
            recipient.post_receipt(&rc).expect("receipt");
            started.elapsed()
        })
        .collect();
    took.sort();
    took
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: lockout <layersec-server binary> <service dir> <as4 url> <server pid> <rounds> [<held connections>]");
        std::process::exit(2);
    }
    let server_bin = PathBuf::from(&args[1]);
    let dir = PathBuf::from(&args[2]);
    let url = args[3].clone();
    let pid: u32 = args[4].parse().unwrap();
    let n: usize = args[5].parse().unwrap();
    let held: usize = args.get(6).map_or(10_000, |a| a.parse().unwrap());
    let target: SocketAddr = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    ls_server::http::raise_open_files_limit(held as u64 + 1024).unwrap();

    let ca = std::fs::read(dir.join("tls/server.crt")).unwrap();
    let svc = Certificate::load(dir.join("identity/service.crt")).unwrap();
    let mut c = HttpsConfig::new(&url);
    c.ca_pem = Some(ca);
    c.idle_timeout = Duration::from_secs(120);
    let t = HttpsTransport::new(c).unwrap();
    let run = std::process::id();
    let party = |role: &str| {
        let id = format!("{role}{run}");
        Party {
            identity: register(&server_bin, &dir, &id),
            id,
        }
    };
    let (alice, bob) = (party("alice"), party("bob"));
    // 10 KiB documents, built before the clock starts.
    let mut data = vec![0u8; 10 * 1024];
    openssl::rand::rand_bytes(&mut data).unwrap();
    let msgs: Vec<Built> = (0..2 * n)
        .map(|_| build(&alice.id, &bob.id, &alice.identity, &data))
        .collect();

    let anchor = rounds(n, &t, &svc, &alice, &bob, &msgs[..n]);
    let anchor_rss = peak_rss_kib(pid);

    let started = Instant::now();
    let attack = attack::Attack::start(target, held, Ipv4Addr::new(127, 0, 0, 2), 100, None);
    while !attack.settled() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the attack did not settle"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let setup = started.elapsed().as_secs_f64();
    let in_place = attack.held();
    let loaded = rounds(n, &t, &svc, &alice, &bob, &msgs[n..]);
    let still = attack.held();
    let loaded_rss = peak_rss_kib(pid);
    attack.stop();

    let (a99, l99) = (pct(&anchor, 0.99), pct(&loaded, 0.99));
    println!(
        "{}",
        serde_json::json!({
            "rounds": n,
            "held_connections": in_place,
            "held_after_rounds": still,
            "attack_setup_seconds": (setup * 10.0).round() / 10.0,
            "anchor_p50_ms": pct(&anchor, 0.5) * 1e3,
            "anchor_p99_ms": a99 * 1e3,
            "loaded_p50_ms": pct(&loaded, 0.5) * 1e3,
            "loaded_p99_ms": l99 * 1e3,
            "p99_ratio_to_anchor": l99 / a99,
            "anchor_peak_rss_kib": anchor_rss,
            "loaded_peak_rss_kib": loaded_rss,
            "peak_rss_ratio_to_anchor": loaded_rss as f64 / anchor_rss as f64,
            "target_p99_under_1s": l99 < 1.0,
            "target_peak_rss_under_200mb": (loaded_rss as f64 * 1024.0) < 200e6,
        })
    );
}
