//! One store conformance suite (issue 15): the same checks, written against `&dyn Store`, run
//! against the SQLite store and against the PostgreSQL store, so both behave alike (same
//! outcomes, same errors, same order). Each check gets a fresh store: a new folder (SQLite) or
//! a new database in one throwaway cluster (PostgreSQL), and may open several stores on it
//! (several processes, or several nodes).
//!
//! PostgreSQL: `ls_tests::postgres::PgServer`, skipped visibly when PostgreSQL is not installed
//! (a failure under `LS_REQUIRE_FIXTURES=1`). Further tests here are about several nodes on
//! one database: claims and retention rounds at once, co-ordination messages taken by two
//! nodes for one message.

use ls_core::as4::coordination;
use ls_server::store::postgres::{PgOptions, PostgresStore, TlsMode, SCHEMA_VERSION};
use ls_server::store::sqlite::SqliteStore;
use ls_server::store::*;
use ls_tests::postgres::PgServer;
use std::path::Path;
use std::sync::{Arc, Barrier};

mod store_conformance {
    pub mod accounts;
    pub mod enrolments;
    pub mod messages;
    pub mod retention;
}
use store_conformance::*;

/// Opens another store on the check's database (another process or node).
pub type Open<'a> = &'a dyn Fn() -> Box<dyn Store>;

/// Bodies larger than this go to files (SQLite) or chunks (PostgreSQL).
pub const INLINE_MAX: usize = 16 * 1024;

/// A check of the suite.
type Check = for<'a> fn(Open<'a>);

/// Every check, by name: each runs on a fresh store of each kind.
const CHECKS: &[(&str, Check)] = &[
    ("accounts", accounts::accounts),
    ("certificates", accounts::certificates),
    ("enrolment_codes", enrolments::codes),
    ("enrolment_accounts", enrolments::accounts_and_parties),
    ("enrolment_key", enrolments::key),
    ("round_trip", messages::round_trip),
    ("limits_and_quotas", messages::limits_and_quotas),
    ("refusal_notices", messages::refusal_notices),
    ("receipts_and_answers", messages::receipts_and_answers),
    ("purge_and_prune", retention::purge_and_prune),
    ("reports", retention::reports),
    ("shared_state", |open| {
        ls_server::store::shared::check(open().shared())
    }),
];

/// Run every check; `fresh(name)` makes a new, empty store's database and returns how to open
/// stores on it.
fn run_checks(mut fresh: impl FnMut(&str) -> Box<dyn Fn() -> Box<dyn Store>>) {
    for (name, check) in CHECKS {
        eprintln!("check {name}");
        let open = fresh(name);
        check(&*open);
    }
}

#[test]
fn conformance_sqlite() {
    let root = tempfile::tempdir().unwrap();
    run_checks(|name| {
        let dir = root.path().join(name);
        Box::new(move || Box::new(SqliteStore::open(&dir, INLINE_MAX).unwrap()) as Box<dyn Store>)
    });
}

#[test]
fn conformance_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pg) = PgServer::start() else { return };
    // A node refuses a database without the schema, naming the command; migrate is
    // idempotent.
    let o = options(&pg, dir.path(), None);
    let e = PostgresStore::open(&o).unwrap_err().to_string();
    assert!(e.contains("layersec-server migrate"), "{e}");
    assert_eq!(PostgresStore::migrate(&o, 1).unwrap(), 0);
    assert_eq!(PostgresStore::migrate(&o, 2).unwrap(), SCHEMA_VERSION);
    run_checks(|name| {
        let o = fresh_database(&pg, dir.path(), name);
        Box::new(move || Box::new(PostgresStore::open(&o).unwrap()) as Box<dyn Store>)
    });
}

/// Options for the database `db` (default: the cluster's own) of `pg`, connecting as the
/// password role, spooling under `spool`.
fn options(pg: &PgServer, spool: &Path, db: Option<&str>) -> PgOptions {
    let password = std::fs::read_to_string(pg.password_file()).unwrap();
    let mut url = pg.url();
    if let Some(db) = db {
        let cut = url.rfind('/').unwrap();
        url = format!("{}/{db}", &url[..cut]);
    }
    PgOptions {
        url,
        password: Some(password.trim_end().to_string().into()),
        tls: TlsMode::Disable,
        ca_file: None,
        max_connections: 8,
        spool_dir: spool.join(db.unwrap_or("default")),
        inline_max: INLINE_MAX,
    }
}

/// A new database `name` in `pg`, migrated.
fn fresh_database(pg: &PgServer, spool: &Path, name: &str) -> PgOptions {
    pg.sql(&format!("CREATE DATABASE {name} OWNER layersec"));
    let o = options(pg, spool, Some(name));
    PostgresStore::migrate(&o, 1).unwrap();
    o
}

// --- helpers shared by the checks

pub fn fp(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

pub fn subscriber(s: &dyn Store, org: &str) -> Subscriber {
    s.create_subscriber(
        &NewSubscriber {
            organisation: org.into(),
            contact: format!("ops@{org}.example"),
            contract_ref: "C-1".into(),
            plan: "standard".into(),
        },
        1000,
    )
    .unwrap()
}

/// `register_party` with the default document limit and no mail address, at 1000.
pub fn register(
    s: &dyn Store,
    subscriber_id: i64,
    key: &PartyKey,
    mpc: &str,
    cert_der: &[u8],
    fingerprint: &str,
) -> StoreResult<Party> {
    s.register_party(
        &NewParty {
            subscriber_id,
            key,
            mpc,
            cert_der,
            fingerprint,
            max_document_bytes: coordination::DEFAULT_MAX_DOCUMENT_BYTES,
            mail_address: None,
        },
        1000,
    )
}

/// Subscribers "alpha" (party A, typed, MPC "mpc-a") and "beta" (party B, MPC "mpc-b").
pub fn setup(s: &dyn Store) -> (PartyKey, PartyKey) {
    let a = PartyKey::new("urn:oasis:names:tc:ebcore:partyid-type:iso6523:0088", "A");
    let b = PartyKey::new("", "B");
    let sa = subscriber(s, "alpha");
    let sb = subscriber(s, "beta");
    register(s, sa.id, &a, "mpc-a", b"cert-a", &fp(1)).unwrap();
    register(s, sb.id, &b, "mpc-b", b"cert-b", &fp(2)).unwrap();
    (a, b)
}

pub const NONE: AcceptLimits = AcceptLimits {
    min_free_bytes: 0,
    max_queued_bytes_per_subscriber: 0,
};

/// A document from `from` to `to` (waiting in `mpc`), received at `at`.
pub fn msg(
    from: &PartyKey,
    to: &PartyKey,
    mpc: &str,
    id: &str,
    body: &[u8],
    at: Unix,
) -> NewMessage {
    NewMessage {
        sender: from.clone(),
        recipient: to.clone(),
        mpc: mpc.into(),
        message_id: id.into(),
        conversation_id: "conv".into(),
        service: "svc".into(),
        action: "act".into(),
        content_type: "multipart/related; boundary=x".into(),
        body: body.to_vec().into(),
        receipt_content_type: "application/soap+xml".into(),
        receipt: format!("receipt for {id}").into_bytes(),
        received_at: at,
        content_sha256: format!("{:064x}", body.len()),
        coordination: None,
    }
}

/// A refusal notice from `from` (the recipient of `refused`) to `to`, at 500.
pub fn notice(from: &PartyKey, to: &PartyKey, mpc: &str, id: &str, refused: &str) -> NewMessage {
    NewMessage {
        service: coordination::SERVICE.into(),
        action: coordination::ACTION_REFUSAL.into(),
        coordination: Some(Coordination::Refusal(RefusalOf {
            message_id: refused.into(),
            class: "cannot_open".into(),
        })),
        ..msg(from, to, mpc, id, b"notice", 500)
    }
}

/// A signed receipt from `from` (the recipient of `receipted`) to `to`, at `at`.
pub fn receipt(
    from: &PartyKey,
    to: &PartyKey,
    mpc: &str,
    id: &str,
    receipted: &str,
    at: Unix,
) -> NewMessage {
    NewMessage {
        service: coordination::SERVICE.into(),
        action: coordination::ACTION_RECEIPT.into(),
        coordination: Some(Coordination::Receipt {
            message_id: receipted.into(),
        }),
        ..msg(from, to, mpc, id, b"receipt", at)
    }
}

pub fn refused(r: StoreResult<Accepted>) -> Refused {
    match r {
        Err(StoreError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The record of `sender`'s message `id`.
pub fn record(s: &dyn Store, sender: &PartyKey, id: &str) -> MessageRecord {
    s.messages(None, 10_000)
        .unwrap()
        .into_iter()
        .find(|r| r.message_id == id && r.sender == *sender)
        .unwrap_or_else(|| panic!("no record of {id} from {sender}"))
}

/// Claim every message waiting in `mpc` at `now`; their ids in order.
pub fn claim_all(s: &dyn Store, mpc: &str, now: Unix) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(c) = s.claim_next(mpc, now, 60).unwrap() {
        got.push(c.message_id);
    }
    got
}

// --- several nodes on one PostgreSQL database

/// A cluster with its database migrated (the one `PgServer::sql` reads), for the tests of
/// several nodes.
fn nodes(spool: &Path) -> Option<(PgServer, PgOptions)> {
    let pg = PgServer::start()?;
    let o = options(&pg, spool, None);
    PostgresStore::migrate(&o, 1).unwrap();
    Some((pg, o))
}

/// 500 messages claimed by 4 threads (each with a store of its own, like 4 nodes): every one
/// exactly once.
#[test]
fn claims_are_exactly_once_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_pg, o)) = nodes(dir.path()) else {
        return;
    };
    let first = PostgresStore::open(&o).unwrap();
    let (a, b) = setup(&first);
    for i in 0..500 {
        let m = msg(&a, &b, "mpc-b", &format!("m{i}"), &[i as u8; 100], 10);
        first.accept(&m, &NONE).unwrap();
    }
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (o, barrier) = (o.clone(), barrier.clone());
            std::thread::spawn(move || {
                let s = PostgresStore::open(&o).unwrap();
                barrier.wait();
                claim_all(&s, "mpc-b", 100)
            })
        })
        .collect();
    let mut all: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(all.len(), 500);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 500, "a message was claimed twice");
}

/// Two nodes purge (and then prune) at once: both succeed, each row is purged once (the counts
/// add up to the messages), no chunk is left, the records are pruned once.
#[test]
fn retention_on_two_nodes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some((pg, o)) = nodes(dir.path()) else {
        return;
    };
    let first = PostgresStore::open(&o).unwrap();
    let (a, b) = setup(&first);
    // 1100 delivered (more than a batch), every third one chunked; 100 left waiting.
    let big = vec![7u8; INLINE_MAX + 1];
    for i in 0..1200 {
        let body: &[u8] = if i % 3 == 0 { &big } else { b"small" };
        first
            .accept(&msg(&a, &b, "mpc-b", &format!("m{i}"), body, 10), &NONE)
            .unwrap();
        if i < 1100 {
            first
                .mark_delivered(&b, &format!("m{i}"), b"r", 20)
                .unwrap();
        }
    }
    assert_eq!(pg.sql("SELECT count(*) FROM payload_chunks"), "400");
    let round = |f: fn(&PostgresStore) -> (u64, u64)| {
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (o, barrier) = (o.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let s = PostgresStore::open(&o).unwrap();
                    barrier.wait();
                    f(&s)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |t, n| (t.0 + n.0, t.1 + n.1))
    };
    let purged = round(|s| {
        let p = s.purge(100, 15).unwrap();
        (p.delivered, p.expired)
    });
    assert_eq!(purged, (1100, 100));
    assert_eq!(pg.sql("SELECT count(*) FROM payload_chunks"), "0");
    assert_eq!(
        pg.sql("SELECT state, count(*) FROM messages GROUP BY state ORDER BY state"),
        "expired|100\npurged|1100"
    );
    let pruned = round(|s| (s.prune_records(100).unwrap(), 0));
    assert_eq!(pruned, (1200, 0));
    assert_eq!(pg.sql("SELECT count(*) FROM messages"), "0");
    // The ledger stays.
    let u = first.usage(0, 100).unwrap();
    assert_eq!((u[0].sent_messages, u[1].received_messages), (1200, 1100));
}

/// Two nodes take a receipt each (different MessageIds) for one document at once, and two
/// refusal notices for another: one of each is stored, the other refused.
#[test]
fn coordination_messages_decide_once_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_pg, o)) = nodes(dir.path()) else {
        return;
    };
    let first = PostgresStore::open(&o).unwrap();
    let (a, b) = setup(&first);
    for i in 0..20 {
        first
            .accept(&msg(&a, &b, "mpc-b", &format!("d{i}"), b"doc", 10), &NONE)
            .unwrap();
    }
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|node| {
            let (o, barrier, a, b) = (o.clone(), barrier.clone(), a.clone(), b.clone());
            std::thread::spawn(move || {
                let s = PostgresStore::open(&o).unwrap();
                barrier.wait();
                let mut outcomes = Vec::new();
                for i in 0..10 {
                    let r = receipt(
                        &b,
                        &a,
                        "mpc-a",
                        &format!("r{i}-{node}"),
                        &format!("d{i}"),
                        50,
                    );
                    outcomes.push(s.accept(&r, &NONE));
                    let d = format!("d{}", 10 + i);
                    let n = notice(&b, &a, "mpc-a", &format!("n{i}-{node}"), &d);
                    outcomes.push(s.accept(&n, &NONE));
                }
                outcomes
            })
        })
        .collect();
    let outcomes: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let stored = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Accepted::ReceiptStored | Accepted::NoticeStored(_))))
        .count();
    let refusals = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                Err(StoreError::Refused(
                    Refused::AlreadyReceipted { .. } | Refused::AlreadyRefused { .. }
                ))
            )
        })
        .count();
    assert_eq!((stored, refusals), (20, 20), "{outcomes:?}");
    for i in 0..10 {
        assert!(record(&first, &a, &format!("d{i}"))
            .receipt_returned
            .is_some());
        assert_eq!(record(&first, &a, &format!("d{}", 10 + i)).state, "failed");
    }
    // Only the stored ones wait for A.
    assert_eq!(claim_all(&first, "mpc-a", 100).len(), 20);
}

/// What the endpoints remember (replays, rate limits, lockouts) behaves on PostgreSQL as in
/// memory, and is shared: a nonce used through one node is a replay through another, and of
/// 8 nodes using one nonce at once exactly one is first.
#[test]
fn shared_state_is_shared_by_the_nodes() {
    use ls_server::store::shared::{self, Scope};
    let dir = tempfile::tempdir().unwrap();
    let Some(pg) = PgServer::start() else { return };
    let o = fresh_database(&pg, dir.path(), "shared");
    let a = PostgresStore::open(&o).unwrap();
    shared::check(a.shared());
    let b = PostgresStore::open(&o).unwrap();
    let now = ls_core::time::now_unix();
    assert!(a
        .shared()
        .first_use(Scope::Rollover, "n1", now, 600)
        .unwrap());
    assert!(!b
        .shared()
        .first_use(Scope::Rollover, "n1", now, 600)
        .unwrap());
    for t in 0..3 {
        let over = a
            .shared()
            .over_limit(Scope::DirectoryRate, "z", 3000 + t, 60, 3);
        assert_eq!(over.unwrap(), None);
    }
    assert_eq!(
        b.shared()
            .over_limit(Scope::DirectoryRate, "z", 3010, 60, 3)
            .unwrap(),
        Some(50),
        "b counts on from a's requests"
    );
    let firsts: usize = (0..8)
        .map(|_| {
            let o = o.clone();
            std::thread::spawn(move || {
                let s = PostgresStore::open(&o).unwrap();
                usize::from(s.shared().first_use(Scope::Pull, "race", now, 600).unwrap())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(firsts, 1);
}

/// A node's cache of parties and certificates drops what it holds on a change made by anyone
/// (here plain SQL, as another node's admin command would be), also after the database
/// restarted (the listener reconnects; while it is down nothing is cached).
#[test]
fn the_directory_cache_follows_changes_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut pg) = PgServer::start() else {
        return;
    };
    let o = fresh_database(&pg, dir.path(), "cache");
    let s = PostgresStore::open(&o).unwrap();
    let (a, _) = setup(&s);
    s.start_directory_cache().unwrap();
    let live = |s: &PostgresStore| {
        let t = std::time::Instant::now();
        while !s.directory_cache().is_live() {
            assert!(t.elapsed().as_secs() < 30, "the listener did not connect");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    live(&s);
    // Within a generous bound (the notification comes at commit; the bound is for a slow CI).
    let wait_until = |s: &PostgresStore, what: &str, f: &dyn Fn(&Party) -> bool| {
        let t = std::time::Instant::now();
        loop {
            if f(&s.party(&a).unwrap().unwrap()) {
                return t.elapsed();
            }
            assert!(t.elapsed().as_secs() < 10, "{what}: not seen within 10 s");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    assert!(s.party(&a).unwrap().unwrap().is_usable());
    assert!(s.party(&a).unwrap().unwrap().is_usable(), "cached");
    pg.sql_in(
        "cache",
        &format!(
            "UPDATE parties SET status = 'revoked' WHERE pid = '{}'",
            a.id
        ),
    );
    let took = wait_until(&s, "a revoke", &|p| !p.is_usable());
    eprintln!("revoke seen after {took:?}");
    assert!(s.directory_cache().notified() >= 1);
    pg.sql_in(
        "cache",
        &format!(
            "UPDATE parties SET status = 'active' WHERE pid = '{}'",
            a.id
        ),
    );
    wait_until(&s, "a reinstatement", &|p| p.is_usable());
    pg.sql_in("cache", "UPDATE subscribers SET status = 'suspended'");
    wait_until(&s, "a suspended account", &|p| !p.is_usable());
    // The database restarts: lookups fail or read it; the listener comes back.
    pg.restart();
    let t = std::time::Instant::now();
    while s.party(&a).is_err() {
        assert!(t.elapsed().as_secs() < 30, "the store did not reconnect");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    live(&s);
    assert!(!s.party(&a).unwrap().unwrap().is_usable());
    pg.sql_in("cache", "UPDATE subscribers SET status = 'active'");
    wait_until(&s, "a change after the restart", &|p| p.is_usable());
}

/// A restart of the database costs no failed call once it is back: the pooled connections it
/// dropped are noticed at `BEGIN` and replaced, before anything is done.
#[test]
fn a_database_restart_costs_no_failed_call_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut pg) = PgServer::start() else {
        return;
    };
    let o = fresh_database(&pg, dir.path(), "restart");
    let s = PostgresStore::open(&o).unwrap();
    let (a, _) = setup(&s);
    // Several idle connections in the pool.
    std::thread::scope(|t| {
        for _ in 0..4 {
            t.spawn(|| {
                for _ in 0..20 {
                    s.party(&a).unwrap();
                }
            });
        }
    });
    pg.restart();
    for i in 0..10 {
        let r = s.party(&a);
        assert!(r.is_ok(), "call {i} after the restart: {:?}", r.err());
    }
}

/// The pool's sessions: synced ones commit durably whatever the server's default (an accepted
/// message is committed before its receipt leaves), unsynced ones do not wait.
#[test]
fn synced_sessions_are_synced_whatever_the_servers_default() {
    use ls_server::store::postgres::pool::Pool;
    let dir = tempfile::tempdir().unwrap();
    let Some(pg) = PgServer::start() else { return };
    let o = fresh_database(&pg, dir.path(), "sessions");
    pg.sql("ALTER SYSTEM SET synchronous_commit = off");
    pg.sql("SELECT pg_reload_conf()");
    let pool = Pool::new(&o).unwrap();
    let show = |synced: bool| -> String {
        let mut c = pool.get_for(synced).unwrap();
        c.query_one("SHOW synchronous_commit", &[]).unwrap().get(0)
    };
    assert_eq!(show(true), "on");
    assert_eq!(show(false), "off");
    // An idle connection of the other kind is switched when none of the kind asked is idle.
    assert_eq!(show(true), "on");
}
