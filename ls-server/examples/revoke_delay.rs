//! How long a revoke made through one node takes to be enforced by another (for
//! `scripts/bench-cluster.sh`): two stores on one migrated PostgreSQL database, as two nodes;
//! the "serving" one caches parties and listens for changes (`start_directory_cache`), the
//! other revokes and reinstates a party `rounds` times; each time, the delay from the revoke's
//! commit to the serving node's first lookup that sees it (looked up in a tight loop).
//!
//! usage: revoke_delay <postgres url> <password file> <rounds>
//!
//! Prints one JSON line: the delays' p50, p99 and max in milliseconds, and how many rounds the
//! cache answered at all before the change (it must be every round, or the delay measured is
//! a database read's).

use ls_server::store::postgres::{PgOptions, PostgresStore, TlsMode};
use ls_server::store::{NewParty, NewSubscriber, PartyKey, Store};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: revoke_delay <postgres url> <password file> <rounds>");
        std::process::exit(2);
    }
    let password = std::fs::read_to_string(&args[2]).expect("the password file");
    let rounds: usize = args[3].parse().expect("rounds");
    let spool = std::env::temp_dir().join(format!("revoke-delay-{}", std::process::id()));
    let o = PgOptions {
        url: args[1].clone(),
        password: Some(password.trim_end().to_string().into()),
        tls: TlsMode::Disable,
        ca_file: None,
        max_connections: 2,
        spool_dir: spool.clone(),
        inline_max: 256 * 1024,
    };
    let serving = PostgresStore::open(&o).expect("open (is the schema applied?)");
    let admin = PostgresStore::open(&o).expect("open");
    serving.start_directory_cache().expect("listen");
    let now = ls_core::time::now_unix();
    let sub = admin
        .create_subscriber(
            &NewSubscriber {
                organisation: "revoke-delay".into(),
                contact: String::new(),
                contract_ref: String::new(),
                plan: String::new(),
            },
            now,
        )
        .expect("subscriber");
    let id = format!("revoke-delay-{}-{now}", std::process::id());
    let key = PartyKey::new("", &id);
    admin
        .register_party(
            &NewParty {
                subscriber_id: sub.id,
                key: &key,
                mpc: &format!("urn:layersec:mpc:{id}"),
                cert_der: &[0x30, 0x00],
                fingerprint: &format!("{:064x}", now),
                max_document_bytes: 1 << 20,
                mail_address: None,
            },
            now,
        )
        .expect("party");
    let t = Instant::now();
    while !serving.directory_cache().is_live() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the listener did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let usable = |s: &PostgresStore| s.party(&key).expect("lookup").expect("party").is_usable();
    let mut delays = Vec::new();
    let mut cached_before = 0;
    for _ in 0..rounds {
        // Cached and usable on the serving node.
        while !usable(&serving) {}
        let before = serving.directory_cache().notified();
        if usable(&serving) && serving.directory_cache().is_live() {
            cached_before += 1;
        }
        let started = Instant::now();
        admin.revoke_party(&key, now).expect("revoke");
        let committed = Instant::now();
        while usable(&serving) {
            assert!(started.elapsed() < Duration::from_secs(30), "never seen");
        }
        delays.push(committed.elapsed().as_secs_f64() * 1000.0);
        assert!(serving.directory_cache().notified() > before);
        admin.reinstate_party(&key, None, now).expect("reinstate");
    }
    delays.sort_by(f64::total_cmp);
    let pct = |p: f64| delays[((delays.len() - 1) as f64 * p).round() as usize];
    println!(
        "{{\"bench\":\"revoke_delay\",\"rounds\":{rounds},\"cached_before\":{cached_before},\
         \"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2}}}",
        pct(0.5),
        pct(0.99),
        delays[delays.len() - 1]
    );
    let _ = std::fs::remove_dir_all(spool);
}
