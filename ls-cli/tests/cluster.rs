//! A distributed Messaging Service (issue 15): several `layersec-server serve` nodes sharing one
//! PostgreSQL 15 (a throwaway cluster of the test's own, `ls_tests::postgres::PgServer`), with
//! real `layersec` clients pushing to some nodes and pulling from others over TLS on loopback.
//! Skipped visibly where PostgreSQL is not installed (a failure under LS_REQUIRE_FIXTURES=1).

use ls_tests::client::{json, Client};
use ls_tests::postgres::PgServer;
use ls_tests::service::{server_bin_beside, RunningService};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const LAYERSEC: &str = env!("CARGO_BIN_EXE_layersec");

/// The database and the nodes on it (node 0 was `init`ed; the others are copies of it).
struct Cluster {
    pg: PgServer,
    nodes: Vec<RunningService>,
}

/// `n` nodes on a new PostgreSQL (schema applied by `migrate`), redelivering after 2 s,
/// started; `None` when PostgreSQL is not installed.
fn cluster(name: &str, n: usize) -> Option<Cluster> {
    let pg = PgServer::start()?;
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let first = RunningService::init(&bin, name, |t| {
        pg.service_config(&t)
            .replace("redeliver_after_secs = 300", "redeliver_after_secs = 2")
    });
    // A node refuses a database without the schema, naming the command.
    let mut probe = first.another_node(&format!("{name}-probe"));
    let o = Command::new(&bin)
        .args(["serve", "--config", probe.config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("layersec-server migrate"), "{err}");
    probe.stop();
    let o = Command::new(&bin)
        .args(["migrate", "--config", first.config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["migrated"], true);
    let mut nodes = vec![first];
    for i in 1..n {
        let node = nodes[0].another_node(&format!("{name}-node{i}"));
        nodes.push(node);
    }
    for node in &mut nodes {
        node.serve();
    }
    Some(Cluster { pg, nodes })
}

impl Cluster {
    /// A party's client of node `k` (its `[service] url`), registered (through node 0's
    /// configuration: one store).
    fn party(&self, id: &str, k: usize) -> Client {
        let c = Client::init(Path::new(LAYERSEC), &self.nodes[k], id, &[]);
        c.register(&self.nodes[0], &[]);
        c
    }

    /// Every message the service holds (`admin messages`, through node `k`).
    fn messages(&self, k: usize) -> Vec<serde_json::Value> {
        let v = self.nodes[k].admin(&["messages", "--limit", "10000"]);
        v.as_array().unwrap().clone()
    }
}

fn trust(a: &Client, b: &Client) {
    a.ok(&["partners", "add", &b.id, b.cert.to_str().unwrap()]);
    b.ok(&["partners", "add", &a.id, a.cert.to_str().unwrap()]);
}

/// Deterministic document bytes for (`seed`, `len`).
fn document(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// Put a document into `c`'s outbox for `to` (written aside, then renamed).
fn queue(c: &Client, to: &str, name: &str, data: &[u8]) {
    let out = c.dir.join("outbox").join(to);
    std::fs::create_dir_all(&out).unwrap();
    let tmp = out.join(format!(".{name}.part"));
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, out.join(name)).unwrap();
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f()
}

/// Signed receipts of `c`'s documents that came back processed.
fn processed(c: &Client) -> usize {
    let r = json(&c.ok(&["receipts", "--json"]));
    r["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["state"] == "processed")
        .count()
}

/// SIGTERM and wait (the clients' daemons).
fn stop(children: Vec<Child>) {
    for mut c in children {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The documents that arrived in `c`'s inbox, by name.
fn inbox(c: &Client) -> Vec<PathBuf> {
    c.documents("inbox")
}

/// Three nodes; 4 senders and 2 recipients, each client on a node of its own choosing (senders
/// push to nodes 0, 1, 2, 0; recipients pull from 1 and 2); 200 documents: every one delivered
/// exactly once, byte for byte, and its signed receipt back at its sender.
#[test]
fn three_nodes_deliver_200_documents_exactly_once() {
    let Some(cl) = cluster("three-nodes", 3) else {
        return;
    };
    let senders: Vec<Client> = (0..4)
        .map(|i| cl.party(&format!("s{i}"), [0, 1, 2, 0][i]))
        .collect();
    let recipients: Vec<Client> = (0..2).map(|j| cl.party(&format!("r{j}"), 1 + j)).collect();
    for s in &senders {
        for r in &recipients {
            trust(s, r);
        }
    }
    const PER_SENDER: usize = 50;
    for (i, s) in senders.iter().enumerate() {
        for k in 0..PER_SENDER {
            let r = &recipients[k % 2];
            let seed = (i * 1000 + k) as u64;
            queue(s, &r.id, &format!("s{i}-{k:03}.txt"), &document(seed, 2048));
        }
    }
    let mut daemons: Vec<Child> = senders.iter().map(Client::spawn_run).collect();
    daemons.extend(recipients.iter().map(Client::spawn_run));
    let done = wait_until(Duration::from_secs(400), || {
        recipients.iter().all(|r| inbox(r).len() >= 100)
            && senders.iter().all(|s| processed(s) >= PER_SENDER)
    });
    stop(daemons);
    let counts: Vec<usize> = recipients.iter().map(|r| inbox(r).len()).collect();
    let acks: Vec<usize> = senders.iter().map(processed).collect();
    assert!(done, "inboxes {counts:?}, receipts processed {acks:?}");
    // Exactly once, byte for byte.
    for (j, r) in recipients.iter().enumerate() {
        assert_eq!(inbox(r).len(), 100, "{}", r.id);
        for (i, _) in senders.iter().enumerate() {
            for k in (j..PER_SENDER).step_by(2) {
                let got = std::fs::read(r.dir.join(format!("inbox/s{i}-{k:03}.txt")))
                    .unwrap_or_else(|e| panic!("{}: s{i}-{k:03}.txt: {e}", r.id));
                assert_eq!(got, document((i * 1000 + k) as u64, 2048));
            }
        }
    }
    for s in &senders {
        assert_eq!(s.documents("sent").len(), PER_SENDER, "{}", s.id);
        assert!(s.documents("failed").is_empty(), "{}", s.id);
    }
    // The one store: 200 documents and 200 receipts, each stored once, all delivered; every
    // node answers the same.
    let msgs = cl.messages(2);
    let documents = msgs
        .iter()
        .filter(|m| m["from"].as_str().unwrap().starts_with('s'))
        .count();
    let receipts = msgs
        .iter()
        .filter(|m| m["from"].as_str().unwrap().starts_with('r'))
        .count();
    assert_eq!((documents, receipts), (200, 200));
    assert!(msgs.iter().all(|m| m["state"] == "delivered"));
    assert_eq!(cl.messages(0).len(), msgs.len());
    // Every node took part.
    for (k, n) in cl.nodes.iter().enumerate() {
        let served = n
            .logs()
            .iter()
            .filter(|l| l.contains("\"accepted\""))
            .count();
        eprintln!("node {k}: {served} messages accepted");
    }
}

/// A copy of `c`'s configuration that names node `url` instead (same folders: relative
/// paths start at the configuration's folder), as `layersec-<k>.toml` beside it.
fn config_for(c: &Client, k: usize, url: &str) -> PathBuf {
    let text = std::fs::read_to_string(&c.config).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("url = "))
        .expect("the configuration names the service's url")
        .to_string();
    let p = c.config.with_file_name(format!("layersec-{k}.toml"));
    std::fs::write(&p, text.replace(&line, &format!("url = \"{url}\""))).unwrap();
    p
}

/// `layersec poll` of `c` against the configuration `cfg`: its exit code.
fn poll(cfg: &Path) -> Option<i32> {
    Command::new(LAYERSEC)
        .args(["poll", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap()
        .status
        .code()
}

/// A revoke through one node's configuration, a suspended account, a certificate replaced:
/// every node enforces each within a generous bound (the time it took is printed; the
/// notification reaches the nodes when the change commits).
#[test]
fn a_revoke_anywhere_is_enforced_by_every_node() {
    let Some(cl) = cluster("revoke", 3) else {
        return;
    };
    let alice = cl.party("alice", 0);
    let bob = cl.party("bob", 1);
    trust(&alice, &bob);
    let configs: Vec<PathBuf> = cl
        .nodes
        .iter()
        .enumerate()
        .map(|(k, n)| config_for(&alice, k, &n.url))
        .collect();
    // Every node knows alice (and caches her: asked twice).
    for cfg in configs.iter().chain(configs.iter()) {
        assert_eq!(poll(cfg), Some(0), "{}", cfg.display());
    }
    let refused_everywhere = |what: &str| {
        let t = Instant::now();
        let mut pending: Vec<&PathBuf> = configs.iter().collect();
        while !pending.is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{what}: still accepted by {pending:?} after 20 s"
            );
            pending.retain(|cfg| poll(cfg) == Some(0));
        }
        eprintln!(
            "{what}: refused by all 3 nodes {:?} after the change",
            t.elapsed()
        );
    };
    let accepted_everywhere = |what: &str| {
        let ok = wait_until(Duration::from_secs(20), || {
            configs.iter().all(|cfg| poll(cfg) == Some(0))
        });
        assert!(ok, "{what}: not accepted by every node within 20 s");
    };
    cl.nodes[1].admin(&["party", "revoke", "alice"]);
    refused_everywhere("revoke (through node 1)");
    cl.nodes[2].admin(&["party", "reinstate", "alice"]);
    accepted_everywhere("reinstate (through node 2)");
    let sub = cl.nodes[0].admin(&["party", "show", "alice"]);
    let account = sub["subscriber_id"].to_string();
    cl.nodes[2].admin(&["subscriber", "suspend", &account]);
    refused_everywhere("account suspended (through node 2)");
    cl.nodes[0].admin(&["subscriber", "resume", &account]);
    accepted_everywhere("account resumed (through node 0)");
    // A new certificate with no overlap: alice's old key no longer signs for her anywhere.
    let other = Client::init(Path::new(LAYERSEC), &cl.nodes[0], "alice2", &[]);
    cl.nodes[1].admin(&[
        "party",
        "replace-certificate",
        "alice",
        "--certificate",
        other.cert.to_str().unwrap(),
        "--overlap-hours",
        "0",
    ]);
    refused_everywhere("certificate replaced (through node 1)");
}

/// PostgreSQL restarted while documents flow through two nodes: the nodes answer 503
/// (transient) meanwhile, recover, and every document is delivered exactly once.
#[test]
fn postgres_restarted_under_load_loses_nothing() {
    let Some(mut cl) = cluster("pg-restart", 2) else {
        return;
    };
    let alice = cl.party("alice", 0);
    let bob = cl.party("bob", 1);
    trust(&alice, &bob);
    const N: usize = 40;
    for k in 0..N {
        queue(
            &alice,
            "bob",
            &format!("d{k:02}.bin"),
            &document(k as u64, 4096 + k * 20_000),
        );
    }
    let daemons = vec![alice.spawn_run(), bob.spawn_run()];
    assert!(
        wait_until(Duration::from_secs(120), || !inbox(&bob).is_empty()),
        "nothing arrived before the restart"
    );
    // Down for a while: a node answers 503 (the client's transient exit 9, retried).
    cl.pg.stop();
    let at_restart = inbox(&bob).len();
    let o = bob.cmd(&["poll"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        o.status.code(),
        Some(9),
        "poll while the database is down: {err}"
    );
    assert!(err.contains("503"), "{err}");
    std::thread::sleep(Duration::from_secs(3));
    let restarted_ms = cl.pg.restart();
    let done = wait_until(Duration::from_secs(300), || {
        inbox(&bob).len() >= N && processed(&alice) >= N
    });
    stop(daemons);
    assert!(
        done,
        "inbox {} of {N}, receipts {}",
        inbox(&bob).len(),
        processed(&alice)
    );
    eprintln!("PostgreSQL restarted in {restarted_ms} ms with {at_restart} of {N} documents in");
    for k in 0..N {
        assert_eq!(
            std::fs::read(bob.dir.join(format!("inbox/d{k:02}.bin"))).unwrap(),
            document(k as u64, 4096 + k * 20_000)
        );
    }
    assert_eq!(inbox(&bob).len(), N);
    let msgs = cl.messages(0);
    assert_eq!(msgs.iter().filter(|m| m["from"] == "alice").count(), N);
    assert!(msgs.iter().all(|m| m["state"] == "delivered"), "{msgs:?}");
    // The nodes said they could not reach the store (and went on).
    let unavailable: usize = cl
        .nodes
        .iter()
        .map(|n| {
            n.logs()
                .iter()
                .filter(|l| l.contains("store_unavailable") || l.contains("\"status\":503"))
                .count()
        })
        .sum();
    eprintln!("{unavailable} requests answered 503 while PostgreSQL restarted");
}
