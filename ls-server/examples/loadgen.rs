//! Load generator for `scripts/bench-server.sh`: messages per second through a running
//! `layersec-server` (push with the service's receipt, then pull and the recipient's receipt),
//! and the anchor measured in the same run: plain HTTPS POSTs of the same bytes over the same
//! kept-alive TLS connections, answered by the same server without AS4 processing.
//!
//! usage: loadgen <service dir> <as4 url> <payload bytes> <messages> <client pairs>
//!
//! The service dir is the one `layersec-server init` made (for the TLS and service
//! certificates, and the admin CLI). Parties are registered here, messages are built before
//! the clock starts (building a message is the sender's work, not the service's).

mod common;
use common::register;

use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange::{self, party_mpc, Exchange};
use ls_core::as4::message::{self, Built, Outgoing, Payload, ReadOptions};
use ls_core::as4::model::Messaging;
use ls_core::as4::wss::VerifyPolicy;
use ls_core::as4::xml::Limits;
use ls_core::transport::{HttpsConfig, HttpsTransport, Transport};
use ls_core::{Certificate, Identity};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn transport(url: &str, ca: &[u8]) -> HttpsTransport {
    let mut c = HttpsConfig::new(url);
    c.ca_pem = Some(ca.to_vec());
    c.timeout = Duration::from_secs(120);
    HttpsTransport::new(c).unwrap()
}

fn build(from: &str, to: &str, me: &Identity, data: &[u8]) -> Built {
    let um = exchange::user_message(
        from,
        to,
        "urn:layersec:bench",
        "Deliver",
        "",
        "bench.example",
    )
    .unwrap();
    message::build(Outgoing {
        messaging: Messaging {
            user_messages: vec![um],
            signals: Vec::new(),
        },
        payloads: vec![Payload {
            content_id: "doc@bench".into(),
            mime_type: "application/pkcs7-mime".into(),
            data: data.to_vec(),
            compress: false,
            properties: Vec::new(),
        }],
        signer: me,
        encrypt_for: None,
        soap: SoapVersion::Soap12,
    })
    .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 {
        eprintln!("usage: loadgen <layersec-server binary> <service dir> <as4 url> <payload bytes> <messages> <client pairs>");
        std::process::exit(2);
    }
    let server_bin = PathBuf::from(&args[1]);
    let dir = PathBuf::from(&args[2]);
    let url = args[3].clone();
    let size: usize = args[4].parse().unwrap();
    let total: usize = args[5].parse().unwrap();
    let pairs: usize = args[6].parse().unwrap();
    let ca = std::fs::read(dir.join("tls/server.crt")).unwrap();
    let svc = Certificate::load(dir.join("identity/service.crt")).unwrap();
    let limits = Limits {
        max_part: 256 * 1024 * 1024,
        ..Default::default()
    };

    // Parties and messages, before the clock starts. Random bytes: sealed documents do not
    // compress.
    let run = std::process::id();
    let mut data = vec![0u8; size];
    openssl::rand::rand_bytes(&mut data).unwrap();
    let per_pair = total.div_ceil(pairs);
    let mut work = Vec::new();
    for p in 0..pairs {
        let s_id = format!("s{run}-{p}-{size}");
        let r_id = format!("r{run}-{p}-{size}");
        let s = register(&server_bin, &dir, &s_id);
        let r = register(&server_bin, &dir, &r_id);
        let msgs: Vec<Built> = (0..per_pair)
            .map(|_| build(&s_id, &r_id, &s, &data))
            .collect();
        work.push((s, r, r_id, msgs));
    }
    let n: usize = work.iter().map(|w| w.3.len()).sum();

    // Anchor: the same bodies POSTed over the same kind of connection, answered with 404
    // by the same server (TLS + HTTP + reading the body, no AS4).
    let anchor_url = url.replace("/as4", "/anchor");
    let started = Instant::now();
    std::thread::scope(|sc| {
        for (_, _, _, msgs) in &work {
            let anchor_url = &anchor_url;
            let ca = &ca;
            sc.spawn(move || {
                let t = transport(anchor_url, ca);
                for m in msgs {
                    // push + pull: two requests carry the message.
                    let r = t.post(&m.content_type, &m.body).unwrap();
                    assert_eq!(r.status, 404);
                    let r = t.post(&m.content_type, &m.body).unwrap();
                    assert_eq!(r.status, 404);
                }
            });
        }
    });
    let anchor = n as f64 / started.elapsed().as_secs_f64();

    // The service: each pair pushes its messages and its recipient pulls them as they come.
    let delivered = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|sc| {
        for (s, r, r_id, msgs) in &work {
            let (url, ca, svc, limits, delivered) = (&url, &ca, &svc, &limits, &delivered);
            sc.spawn(move || {
                let t = transport(url, ca);
                let ex = Exchange {
                    transport: &t,
                    me: s,
                    service: svc,
                    soap: SoapVersion::Soap12,
                    domain: "bench.example".into(),
                    limits: limits.clone(),
                };
                for m in msgs {
                    ex.push(m).expect("push");
                }
            });
            sc.spawn(move || {
                let t = transport(url, ca);
                let ex = Exchange {
                    transport: &t,
                    me: r,
                    service: svc,
                    soap: SoapVersion::Soap12,
                    domain: "bench.example".into(),
                    limits: limits.clone(),
                };
                let mpc = party_mpc(r_id);
                let mut got = 0;
                while got < msgs.len() {
                    match ex.pull(&mpc).expect("pull") {
                        Some(p) => {
                            let inc = message::read(
                                &p.content_type,
                                &p.body,
                                &ReadOptions {
                                    recipient: Some(r),
                                    policy: VerifyPolicy {
                                        signer: Some(s.certificate()),
                                        ..Default::default()
                                    },
                                    limits: limits.clone(),
                                },
                            )
                            .expect("read");
                            let rc = message::build_receipt(&inc, r, "bench.example").unwrap();
                            ex.post_receipt(&rc).expect("receipt");
                            got += 1;
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        None => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let rate = delivered.load(Ordering::Relaxed) as f64 / elapsed;
    println!(
        "{{\"payload_bytes\":{size},\"messages\":{n},\"client_pairs\":{pairs},\"seconds\":{elapsed:.3},\"messages_per_second\":{rate:.1},\"anchor_https_post_pairs_per_second\":{anchor:.1},\"ratio_to_anchor\":{:.3}}}",
        rate / anchor
    );
}
