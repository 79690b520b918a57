//! Load generator for `scripts/bench-server.sh`: messages per second through a running
//! `layersec-server` (push with the service's receipt, then pull and the recipient's receipt),
//! and the anchor measured in the same run: plain HTTPS POSTs of the same bytes over the same
//! kept-alive TLS connections, answered by the same server without AS4 processing.
//!
//! usage: loadgen <server binary> <service dir> <as4 url> <payload bytes> <messages> <client pairs> [receipts]
//!
//! Several nodes of one service (`scripts/bench-cluster.sh`): `<as4 url>` may be a
//! comma-separated list; pair `p` then pushes to URL `p mod n` and pulls (and posts its receipts)
//! from URL `p + 1 mod n`, so each message crosses from one node to another (the anchor goes to
//! the pushing node). `LOADGEN_ANCHOR=0` skips the anchor (its fields are then null);
//! `LOADGEN_MARK`, a shell command, is run (and waited for) right before the service's clock
//! starts, after the parties are registered and the messages built (for a benchmark that
//! counts the database's work of the measured part only). The receipts mode takes one URL.
//!
//! The service dir is the one `layersec-server init` made (for the TLS and service
//! certificates, and the admin CLI). Parties are registered here, messages are built before
//! the clock starts (building a message is the sender's work, not the service's).
//!
//! With `receipts` (for `scripts/bench-receipts.sh`), no anchor: the same client pairs send
//! `<messages>` sealed documents (`<payload bytes>` of random data, sealed for the recipient)
//! without asking for a signed receipt (`off`) and `<messages>` asking for one (`on`, a
//! ReceiptRequest on the document's signature), in four phases of half as many each, in the
//! order off, on, on, off (so that other work on the machine that rises or falls during the
//! run weighs on both alike). Each phase prints documents/s and messages/s through the
//! service; the last line sums them up per mode, with the ratios on/off. With
//! LOADGEN_SERVER_PID set to the server's process id, the server's CPU time per phase too,
//! and per message and per document (from /proc/<pid>/stat), with ours (the clients'). Per
//! pair, in both
//! phases: the sender pushes its documents (built before the clock) and checks each service
//! receipt; the recipient pulls them as they come, verifies each message's signature and posts
//! its AS4 receipt. With receipts on, the recipient then also signs an ESS receipt
//! (`cms::receipt::sign_receipt`) of the document's SignedData, builds and signs the receipt
//! co-ordination message (`coordination::receipt_message`, Action `Receipt`) as the client's
//! `journal_receipt` does, and pushes it; a third thread per pair, the sender's poller, pulls
//! these receipts from the sender's MPC, verifies each message's signature, reads its header,
//! checks the ESS receipt against the SignedData as signed (`verify_receipt`) and posts its AS4
//! receipt. All that client work is inside the clock (it is what each end does in reaction to
//! a pull); the clients run on the same machine as the service. Not done in either phase: the
//! recipient's decryption of the document (the same cost in both phases); the SignedData the
//! recipient's receipt answers is the one kept when the document was sealed, looked up by the
//! pulled MessageId (`open` would return those bytes). A phase's clock runs from its first
//! push to its last document receipted (off) or its last receipt pulled and receipted by its
//! sender (on). documents/s = documents / seconds; messages/s = (documents + signed receipts) /
//! seconds (AS4 receipts and pull requests are not counted as messages). In both modes a
//! puller pulls only when its pair's pusher has pushed more than it has pulled (it waits 1 ms
//! otherwise, without asking the service): an empty pull costs the service a signature check
//! and a signed answer, and a real client makes one per poll interval, not one per message;
//! `empty_pulls` counts pulls that found nothing nevertheless (0 expected).

mod common;
use common::{build, register};

use ls_core::as4::coordination::{self, ReceiptHeader, DISPOSITION_PROCESSED};
use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange::{party_mpc, Exchange, Pulled};
use ls_core::as4::message::{self, Built, Incoming, Outgoing, Payload, ReadOptions};
use ls_core::as4::model::Messaging;
use ls_core::as4::wss::VerifyPolicy;
use ls_core::as4::xml::Limits;
use ls_core::cms::receipt::{self, ReceiptOptions};
use ls_core::cms::{Compression, SealOptions};
use ls_core::transport::{HttpsConfig, HttpsTransport, Transport};
use ls_core::{Certificate, Identity};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn transport(url: &str, ca: &[u8]) -> HttpsTransport {
    let mut c = HttpsConfig::new(url);
    c.ca_pem = Some(ca.to_vec());
    c.idle_timeout = Duration::from_secs(120);
    HttpsTransport::new(c).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let receipts = args.len() == 8 && args[7] == "receipts";
    if args.len() != 7 && !receipts {
        eprintln!("usage: loadgen <layersec-server binary> <service dir> <as4 url[,as4 url…]> <payload bytes> <messages> <client pairs> [receipts]");
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
    if receipts {
        assert!(!url.contains(','), "the receipts mode takes one URL");
        receipts_on_off(
            &server_bin,
            &dir,
            &url,
            size,
            total,
            pairs,
            &ca,
            &svc,
            &limits,
        );
        return;
    }

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
    // Pair p pushes to node p and pulls from node p + 1 (modulo the nodes).
    let urls: Vec<&str> = url.split(',').collect();
    let push_url = |p: usize| urls[p % urls.len()];
    let pull_url = |p: usize| urls[(p + 1) % urls.len()];

    // Anchor: the same bodies POSTed over the same kind of connection, answered with 404
    // by the same server (TLS + HTTP + reading the body, no AS4).
    let anchor = (std::env::var("LOADGEN_ANCHOR").as_deref() != Ok("0")).then(|| {
        let started = Instant::now();
        std::thread::scope(|sc| {
            for (p, (_, _, _, msgs)) in work.iter().enumerate() {
                let anchor_url = push_url(p).replace("/as4", "/anchor");
                let ca = &ca;
                sc.spawn(move || {
                    let t = transport(&anchor_url, ca);
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
        n as f64 / started.elapsed().as_secs_f64()
    });
    if let Ok(mark) = std::env::var("LOADGEN_MARK") {
        let st = std::process::Command::new("sh")
            .args(["-c", &mark])
            .status()
            .unwrap();
        assert!(st.success(), "LOADGEN_MARK failed: {st}");
    }

    // The service: each pair pushes its messages and its recipient pulls them as they come.
    let delivered = AtomicUsize::new(0);
    let empty = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|sc| {
        for (p, (s, r, r_id, msgs)) in work.iter().enumerate() {
            let (ca, svc, limits, delivered, empty) = (&ca, &svc, &limits, &delivered, &empty);
            let (push_to, pull_from) = (push_url(p), pull_url(p));
            sc.spawn(move || {
                let t = transport(push_to, ca);
                let ex = Exchange {
                    transport: &t,
                    me: s,
                    service: svc,
                    service_previous: &[],
                    soap: SoapVersion::Soap12,
                    domain: "bench.example".into(),
                    limits: limits.clone(),
                };
                for m in msgs {
                    ex.push(m).expect("push");
                }
            });
            sc.spawn(move || {
                let t = transport(pull_from, ca);
                let ex = Exchange {
                    transport: &t,
                    me: r,
                    service: svc,
                    service_previous: &[],
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
                        None => {
                            empty.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(5))
                        }
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let rate = delivered.load(Ordering::Relaxed) as f64 / elapsed;
    let or_null =
        |v: Option<f64>, digits: usize| v.map_or("null".into(), |v| format!("{v:.digits$}"));
    println!(
        "{{\"payload_bytes\":{size},\"messages\":{n},\"client_pairs\":{pairs},\"nodes\":{},\"seconds\":{elapsed:.3},\"messages_per_second\":{rate:.1},\"empty_pulls\":{},\"anchor_https_post_pairs_per_second\":{},\"ratio_to_anchor\":{}}}",
        urls.len(),
        empty.load(Ordering::Relaxed),
        or_null(anchor, 1),
        or_null(anchor.map(|a| rate / a), 3)
    );
}

const DOMAIN: &str = "bench.example";

fn exchange<'a>(
    t: &'a HttpsTransport,
    me: &'a Identity,
    svc: &'a Certificate,
    limits: &Limits,
) -> Exchange<'a> {
    Exchange {
        transport: t,
        me,
        service: svc,
        service_previous: &[],
        soap: SoapVersion::Soap12,
        domain: DOMAIN.into(),
        limits: limits.clone(),
    }
}

/// A pulled message read: decrypted if need be, its signature verified against `signer`.
fn read_pulled(p: &Pulled, me: &Identity, signer: &Certificate, limits: &Limits) -> Incoming {
    message::read(
        &p.content_type,
        &p.body,
        &ReadOptions {
            recipient: Some(me),
            policy: VerifyPolicy {
                signer: Some(signer),
                ..Default::default()
            },
            limits: limits.clone(),
        },
    )
    .expect("read")
}

/// One client pair of the receipts benchmark: its parties, the documents its sender pushes,
/// and (receipts on) each document's SignedData as signed, by MessageId.
struct Pair {
    s_id: String,
    r_id: String,
    s: Identity,
    r: Identity,
    msgs: Vec<Built>,
    signed: HashMap<String, Vec<u8>>,
}

/// The documents of a pair: `data` sealed by `s` for `r` (asking for a signed receipt when
/// `ask`), each in a signed UserMessage.
fn documents(p: &Pair, data: &[u8], n: usize, ask: bool) -> (Vec<Built>, HashMap<String, Vec<u8>>) {
    let mut msgs = Vec::with_capacity(n);
    let mut signed = HashMap::new();
    for i in 0..n {
        let opts = SealOptions {
            filename: Some(format!("doc-{i}.bin")),
            mime_type: Some("application/octet-stream".into()),
            compression: Compression::Never,
            receipt_request: ask.then(|| format!("bench-{}-{i}", p.s_id).into_bytes()),
            ..Default::default()
        };
        let sealed =
            ls_core::cms::seal_with_evidence(data, &p.s, &[p.r.certificate().clone()], &opts)
                .unwrap();
        let m = build(&p.s_id, &p.r_id, &p.s, &sealed.sealed);
        if ask {
            signed.insert(m.message_id.clone(), sealed.signed_data);
        }
        msgs.push(m);
    }
    (msgs, signed)
}

/// The recipient's signed receipt of `inc` (a document from `p.s_id`), as the client's
/// `journal_receipt` builds it.
fn signed_receipt(p: &Pair, inc: &Incoming) -> Built {
    let um = &inc.messaging.user_messages[0];
    let original = &p.signed[&um.info.message_id];
    let ess = receipt::sign_receipt(original, &p.r, &ReceiptOptions::default()).unwrap();
    let header = ReceiptHeader {
        message_id: um.info.message_id.clone(),
        payload_sha256: ls_core::bytes::sha256_hex(&inc.payloads[0].data),
        disposition: DISPOSITION_PROCESSED.into(),
        received_at: ls_core::time::iso8601(ls_core::time::now_unix()),
    };
    let rum = coordination::receipt_message(&p.r_id, &p.s_id, &header, DOMAIN).unwrap();
    message::build(Outgoing {
        messaging: Messaging {
            user_messages: vec![rum],
            signals: Vec::new(),
        },
        payloads: vec![Payload {
            content_id: format!("receipt@{DOMAIN}"),
            mime_type: coordination::RECEIPT_CONTENT_TYPE.into(),
            data: ess,
            compress: false,
            properties: Vec::new(),
        }],
        signer: &p.r,
        encrypt_for: None,
        soap: SoapVersion::Soap12,
    })
    .unwrap()
}

/// Whether more has been pushed for a puller than the `got` it pulled; if not, it waits 1 ms
/// (without asking the service). A puller pulls only what it knows is there: an empty pull
/// costs the service a signature check and a signed answer, and a real client makes one per
/// poll interval, not one per message (the same in both modes).
fn waiting(pushed: &AtomicUsize, got: usize) -> bool {
    if pushed.load(Ordering::Acquire) > got {
        return true;
    }
    std::thread::sleep(Duration::from_millis(1));
    false
}

/// The first wait after a pull that found nothing nevertheless, doubled after each further
/// one up to [`IDLE_MAX`].
const IDLE_MIN: Duration = Duration::from_millis(5);
const IDLE_MAX: Duration = Duration::from_millis(80);

fn idle(wait: &mut Duration, empty: &AtomicUsize) {
    empty.fetch_add(1, Ordering::Relaxed);
    std::thread::sleep(*wait);
    *wait = (*wait * 2).min(IDLE_MAX);
}

/// One phase: every pair's documents through the service (and, with `on`, every signed
/// receipt back); (seconds, documents, signed receipts, pulls that found nothing).
fn phase(
    work: &[Pair],
    on: bool,
    url: &str,
    ca: &[u8],
    svc: &Certificate,
    limits: &Limits,
) -> (f64, usize, usize, usize) {
    let docs = AtomicUsize::new(0);
    let rcpts = AtomicUsize::new(0);
    let empty = AtomicUsize::new(0);
    // Per pair: documents pushed, signed receipts pushed (what its pullers may pull).
    let pushed: Vec<(AtomicUsize, AtomicUsize)> = work
        .iter()
        .map(|_| (AtomicUsize::new(0), AtomicUsize::new(0)))
        .collect();
    let started = Instant::now();
    std::thread::scope(|sc| {
        for (p, (pushed_docs, pushed_rcpts)) in work.iter().zip(&pushed) {
            let (docs, rcpts, empty) = (&docs, &rcpts, &empty);
            sc.spawn(move || {
                let t = transport(url, ca);
                let ex = exchange(&t, &p.s, svc, limits);
                for m in &p.msgs {
                    ex.push(m).expect("push");
                    pushed_docs.fetch_add(1, Ordering::Release);
                }
            });
            sc.spawn(move || {
                let t = transport(url, ca);
                let ex = exchange(&t, &p.r, svc, limits);
                let mpc = party_mpc(&p.r_id);
                let (mut got, mut wait) = (0, IDLE_MIN);
                while got < p.msgs.len() {
                    if !waiting(pushed_docs, got) {
                        continue;
                    }
                    let Some(pulled) = ex.pull(&mpc).expect("pull") else {
                        idle(&mut wait, empty);
                        continue;
                    };
                    wait = IDLE_MIN;
                    let inc = read_pulled(&pulled, &p.r, p.s.certificate(), limits);
                    let rc = message::build_receipt(&inc, &p.r, DOMAIN).unwrap();
                    ex.post_receipt(&rc).expect("receipt");
                    if on {
                        ex.push(&signed_receipt(p, &inc))
                            .expect("push signed receipt");
                        pushed_rcpts.fetch_add(1, Ordering::Release);
                    }
                    got += 1;
                    docs.fetch_add(1, Ordering::Relaxed);
                }
            });
            if on {
                sc.spawn(move || {
                    let t = transport(url, ca);
                    let ex = exchange(&t, &p.s, svc, limits);
                    let mpc = party_mpc(&p.s_id);
                    let (mut got, mut wait) = (0, IDLE_MIN);
                    while got < p.msgs.len() {
                        if !waiting(pushed_rcpts, got) {
                            continue;
                        }
                        let Some(pulled) = ex.pull(&mpc).expect("pull receipt") else {
                            idle(&mut wait, empty);
                            continue;
                        };
                        wait = IDLE_MIN;
                        let inc = read_pulled(&pulled, &p.s, p.r.certificate(), limits);
                        let um = &inc.messaging.user_messages[0];
                        let header = coordination::read_receipt(um)
                            .expect("a signed receipt")
                            .expect("its header");
                        let original = &p.signed[&header.message_id];
                        receipt::verify_receipt(
                            &inc.payloads[0].data,
                            original,
                            &[p.r.certificate().clone()],
                        )
                        .expect("the signed receipt verifies");
                        let rc = message::build_receipt(&inc, &p.s, DOMAIN).unwrap();
                        ex.post_receipt(&rc).expect("receipt of the receipt");
                        got += 1;
                        rcpts.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
    });
    (
        started.elapsed().as_secs_f64(),
        docs.load(Ordering::Relaxed),
        rcpts.load(Ordering::Relaxed),
        empty.load(Ordering::Relaxed),
    )
}

/// `loadgen … receipts`: the same pairs, receipts off then on (see the module's comment).
#[allow(clippy::too_many_arguments)]
fn receipts_on_off(
    server_bin: &Path,
    dir: &Path,
    url: &str,
    size: usize,
    total: usize,
    pairs: usize,
    ca: &[u8],
    svc: &Certificate,
    limits: &Limits,
) {
    let run = std::process::id();
    let mut data = vec![0u8; size];
    openssl::rand::rand_bytes(&mut data).unwrap();
    let per_pair = total.div_ceil(pairs);
    let mut work: Vec<Pair> = (0..pairs)
        .map(|p| {
            let s_id = format!("s{run}-{p}-{size}r");
            let r_id = format!("r{run}-{p}-{size}r");
            Pair {
                s: register(server_bin, dir, &s_id),
                r: register(server_bin, dir, &r_id),
                s_id,
                r_id,
                msgs: Vec::new(),
                signed: HashMap::new(),
            }
        })
        .collect();
    // Off, on, on, off, each with half the documents: a load on the machine that rises or
    // falls during the run weighs on both the same.
    let half = per_pair.div_ceil(2);
    let server_pid = std::env::var("LOADGEN_SERVER_PID").ok();
    // (seconds, documents, signed receipts, server CPU seconds, our CPU seconds), off and on.
    let mut sum = [(0.0, 0, 0, 0.0, 0.0); 2];
    for on in [false, true, true, false] {
        // The documents of this phase, before its clock starts.
        for p in work.iter_mut() {
            let (msgs, signed) = documents(p, &data, half, on);
            p.msgs = msgs;
            p.signed = signed;
        }
        let message_bytes = work[0].msgs[0].body.len();
        let cpu0 = (server_pid.as_deref().map(cpu_secs), cpu_secs("self"));
        let (secs, docs, rcpts, empty) = phase(&work, on, url, ca, svc, limits);
        let server_cpu = server_pid.as_deref().map(|p| cpu_secs(p) - cpu0.0.unwrap());
        let own_cpu = cpu_secs("self") - cpu0.1;
        let (dps, mps) = (docs as f64 / secs, (docs + rcpts) as f64 / secs);
        println!(
            "{{\"receipts\":\"{}\",\"payload_bytes\":{size},\"document_message_bytes\":{message_bytes},\"client_pairs\":{pairs},\"documents\":{docs},\"signed_receipts\":{rcpts},\"seconds\":{secs:.3},\"documents_per_second\":{dps:.1},\"messages_per_second\":{mps:.1},\"empty_pulls\":{empty},\"server_cpu_seconds\":{},\"clients_cpu_seconds\":{own_cpu:.2}}}",
            if on { "on" } else { "off" },
            server_cpu.map_or("null".into(), |c| format!("{c:.2}"))
        );
        let t = &mut sum[usize::from(on)];
        t.0 += secs;
        t.1 += docs;
        t.2 += rcpts;
        t.3 += server_cpu.unwrap_or(f64::NAN);
        t.4 += own_cpu;
    }
    let rate = |t: &(f64, usize, usize, f64, f64)| ((t.1 + t.2) as f64 / t.0, t.1 as f64 / t.0);
    let (off, on) = (rate(&sum[0]), rate(&sum[1]));
    let (m, d) = (on.0 / off.0, on.1 / off.1);
    // Server CPU per message and per document, on over off (less sensitive than the wall clock
    // to other work on the machine).
    let cpu_per = |t: &(f64, usize, usize, f64, f64)| (t.3 / (t.1 + t.2) as f64, t.3 / t.1 as f64);
    let (c_off, c_on) = (cpu_per(&sum[0]), cpu_per(&sum[1]));
    let ms = |x: f64| {
        if x.is_nan() {
            "null".to_string()
        } else {
            format!("{:.3}", x * 1000.0)
        }
    };
    println!(
        "{{\"payload_bytes\":{size},\"off\":{{\"seconds\":{:.3},\"documents_per_second\":{:.1},\"messages_per_second\":{:.1},\"server_cpu_ms_per_message\":{},\"server_cpu_ms_per_document\":{},\"clients_cpu_seconds\":{:.2}}},\"on\":{{\"seconds\":{:.3},\"documents_per_second\":{:.1},\"messages_per_second\":{:.1},\"server_cpu_ms_per_message\":{},\"server_cpu_ms_per_document\":{},\"clients_cpu_seconds\":{:.2}}},\"messages_per_second_on_over_off\":{m:.3},\"target_messages\":0.9,\"messages_target_met\":{},\"documents_per_second_on_over_off\":{d:.3},\"target_documents\":0.45,\"documents_target_met\":{}}}",
        sum[0].0,
        off.1,
        off.0,
        ms(c_off.0),
        ms(c_off.1),
        sum[0].4,
        sum[1].0,
        on.1,
        on.0,
        ms(c_on.0),
        ms(c_on.1),
        sum[1].4,
        m >= 0.9,
        d >= 0.45
    );
}

/// User + system CPU seconds of process `pid` (or `self`) so far, from /proc/<pid>/stat.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (in parentheses, which may hold spaces): utime and
    // stime are the 14th and 15th of the line, the 12th and 13th after it.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / clock_ticks()
}

/// The kernel's clock ticks per second (USER_HZ), as `getconf CLK_TCK` says.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
