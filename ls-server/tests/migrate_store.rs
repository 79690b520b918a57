//! `migrate-store`: an SQLite store with waiting, leased, delivered, purged and refused
//! messages moved into PostgreSQL (issue 15), then delivered from there; a second move into
//! the same database and a move from a store a service runs on are refused.
//!
//! PostgreSQL: a throwaway cluster per test (`ls_tests::postgres::PgServer`), skipped visibly
//! when PostgreSQL is not installed and failing then under `LS_REQUIRE_FIXTURES=1`.

use ls_core::as4::coordination;
use ls_server::store::postgres::{PgOptions, PostgresStore, TlsMode};
use ls_server::store::sqlite::{ServiceLock, SqliteStore, DB_FILE, PAYLOAD_DIR};
use ls_server::store::transfer::transfer;
use ls_server::store::*;
use ls_tests::postgres::PgServer;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_layersec-server");
/// The SQLite store keeps bodies up to this in its database, larger ones in files.
const SQLITE_INLINE: usize = 256 * 1024;
/// The PostgreSQL store keeps bodies up to this in the row, larger ones in 1 MiB chunks.
const PG_INLINE: usize = 16 * 1024;

fn pg(spool: &Path) -> Option<(PgServer, PgOptions)> {
    let pg = PgServer::start()?;
    let password = std::fs::read_to_string(pg.password_file()).unwrap();
    let o = PgOptions {
        url: pg.url(),
        password: Some(password.trim_end().to_string().into()),
        tls: TlsMode::Disable,
        ca_file: None,
        max_connections: 4,
        spool_dir: spool.to_path_buf(),
        inline_max: PG_INLINE,
    };
    Some((pg, o))
}

fn message(from: &str, to: &str, id: &str, body: MessageBody, at: Unix) -> NewMessage {
    NewMessage {
        sender: PartyKey::new("", from),
        recipient: PartyKey::new("", to),
        mpc: format!("mpc:{to}"),
        message_id: id.into(),
        conversation_id: "conv".into(),
        service: "svc".into(),
        action: "act".into(),
        content_type: "multipart/related; boundary=x".into(),
        body,
        receipt_content_type: "application/soap+xml".into(),
        receipt: format!("receipt of {id}").into_bytes(),
        received_at: at,
        content_sha256: format!("{:064x}", id.len()),
        coordination: None,
    }
}

fn coordination_message(from: &str, to: &str, id: &str, c: Coordination) -> NewMessage {
    NewMessage {
        service: coordination::SERVICE.into(),
        action: match c {
            Coordination::Refusal(_) => coordination::ACTION_REFUSAL,
            _ => coordination::ACTION_RECEIPT,
        }
        .into(),
        coordination: Some(c),
        ..message(from, to, id, b"<signal/>".to_vec().into(), 40)
    }
}

fn spooled(s: &dyn Store, body: &[u8]) -> MessageBody {
    let (mut spool, mut f) = s.new_spool().unwrap();
    std::io::Write::write_all(&mut f, body).unwrap();
    drop(f);
    spool.len = body.len() as u64;
    MessageBody::Spooled(Arc::new(spool))
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

fn fp(i: u8) -> String {
    format!("{:064x}", u64::from(i) + 1)
}

/// Bodies of the waiting messages to `b`, in the order they are offered.
struct Waiting {
    big: Vec<u8>,
    mid: Vec<u8>,
}

/// Three subscribers (one suspended), parties (one with a mail address and its own limit,
/// one revoked, one enrolled with a code), a replaced certificate, enrolment codes (used,
/// revoked, outstanding), and messages: delivered (one purged), refused, leased, waiting
/// (inline, a 3 MiB spooled file, an inline body PostgreSQL chunks, a small spooled file
/// PostgreSQL keeps in the row) and co-ordination messages (a refusal notice, a receipt).
fn fill(s: &SqliteStore) -> Waiting {
    let sub = |org: &str| {
        s.create_subscriber(
            &NewSubscriber {
                organisation: org.into(),
                contact: format!("ops@{org}.example"),
                contract_ref: format!("C-{org}"),
                plan: "standard".into(),
            },
            1,
        )
        .unwrap()
        .id
    };
    let acme = sub("acme");
    let globex = sub("globex");
    let idle = sub("idle");
    s.set_account_status(idle, AccountStatus::Suspended)
        .unwrap();
    let party = |subscriber: i64, id: &str, i: u8, mail: Option<&str>| {
        s.register_party(
            &NewParty {
                subscriber_id: subscriber,
                key: &PartyKey::new("", id),
                mpc: &format!("mpc:{id}"),
                cert_der: &[0x30, i],
                fingerprint: &fp(i),
                max_document_bytes: 1 << 30,
                mail_address: mail,
            },
            2,
        )
        .unwrap();
    };
    party(acme, "a", 1, None);
    party(acme, "b", 2, None);
    party(globex, "c", 3, Some("c@globex.example"));
    party(globex, "d", 4, None);
    let c = PartyKey::new("", "c");
    s.set_party_limit(&c, 50 << 20).unwrap();
    s.revoke_party(&PartyKey::new("", "d"), 3).unwrap();
    s.replace_certificate(&PartyKey::new("", "a"), &[0x30, 9], &fp(9), 100, 4)
        .unwrap();

    // Enrolment codes: one used (party e registered with it), one revoked (f), one
    // outstanding (g).
    let code = |i: u8| format!("{:064x}", 0xc0de_0000u64 + u64::from(i));
    let e = PartyKey::new("", "e");
    for (i, id) in ["e", "f", "g"].into_iter().enumerate() {
        s.issue_enrolment(
            &NewEnrolment {
                subscriber_id: acme,
                key: &PartyKey::new("", id),
                code_hash: &code(i as u8),
                expires_at: 1_000,
            },
            5,
        )
        .unwrap();
    }
    let enrolled = s
        .enrol(
            &Enrolment {
                code_hash: &code(0),
                key: &e,
                mpc: "mpc:e",
                cert_der: &[0x30, 5],
                fingerprint: &fp(5),
                max_document_bytes: 1 << 20,
            },
            6,
        )
        .unwrap();
    assert!(
        matches!(enrolled, EnrolOutcome::Registered(_)),
        "{enrolled:?}"
    );
    let second = s.enrolments(acme).unwrap()[1].id;
    s.revoke_enrolment(acme, second, 7).unwrap();
    s.enrolment_key().unwrap();

    let limits = AcceptLimits::default();
    let b = PartyKey::new("", "b");
    let accept = |m: NewMessage| assert_eq!(s.accept(&m, &limits).unwrap(), Accepted::Stored);
    // Delivered (then purged), delivered (kept), refused.
    accept(message("a", "b", "m0", b"zero".to_vec().into(), 10));
    accept(message("a", "b", "m1", b"one".to_vec().into(), 11));
    for id in ["m0", "m1"] {
        assert_eq!(
            s.claim_next("mpc:b", 20, 60).unwrap().unwrap().message_id,
            id
        );
        assert_eq!(
            s.mark_delivered(&b, id, format!("ack {id}").as_bytes(), 21)
                .unwrap(),
            Delivery::Delivered
        );
    }
    accept(message("b", "a", "m5", b"refused".to_vec().into(), 12));
    assert_eq!(
        s.accept(
            &coordination_message(
                "a",
                "b",
                "n5",
                Coordination::Refusal(RefusalOf {
                    message_id: "m5".into(),
                    class: "cannot_open".into(),
                }),
            ),
            &limits
        )
        .unwrap(),
        Accepted::NoticeStored(NoticeEffect::Failed)
    );
    // b's signed receipt for m1, back to a.
    assert_eq!(
        s.accept(
            &coordination_message(
                "b",
                "a",
                "r1",
                Coordination::Receipt {
                    message_id: "m1".into()
                },
            ),
            &limits
        )
        .unwrap(),
        Accepted::ReceiptStored
    );
    let purged = s.purge(22, 0).unwrap();
    assert_eq!(purged.delivered, 2);
    // Leased: the notice and c's message to b, claimed and not receipted (the notice's lease
    // released: still leased, claimable).
    accept(message("c", "b", "m4", b"leased".to_vec().into(), 13));
    let leased = s.claim_next("mpc:b", 30, 3600).unwrap().unwrap();
    assert_eq!(leased.message_id, "n5");
    let leased = s.claim_next("mpc:b", 30, 3600).unwrap().unwrap();
    assert_eq!((leased.message_id.as_str(), leased.attempt), ("m4", 1));
    s.release_claim(&b, "n5", 30).unwrap();
    // Waiting: small inline, 3 MiB spooled (a file), 100 KiB inline (chunks on PostgreSQL),
    // 1000 bytes spooled (a file, in the row on PostgreSQL).
    let big = pattern(3 * 1024 * 1024 + 12345, 7);
    let mid = pattern(100 * 1024, 3);
    accept(message("a", "b", "m2", b"two".to_vec().into(), 14));
    accept(message("a", "b", "m3", spooled(s, &big), 15));
    accept(message("c", "b", "m6", mid.clone().into(), 16));
    accept(message("c", "b", "m7", spooled(s, &pattern(1000, 1)), 17));
    // The highest seq, delivered, purged and its record pruned: SQLite never gives seq 11
    // again (its usage rows name it), nor must PostgreSQL.
    accept(message("b", "c", "m8", b"pruned".to_vec().into(), 1));
    assert_eq!(
        s.claim_next("mpc:c", 20, 60).unwrap().unwrap().message_id,
        "m8"
    );
    let c = PartyKey::new("", "c");
    assert_eq!(
        s.mark_delivered(&c, "m8", b"ack", 21).unwrap(),
        Delivery::Delivered
    );
    assert_eq!(s.purge(22, 0).unwrap().delivered, 1);
    assert_eq!(s.prune_records(2).unwrap(), 1);
    Waiting { big, mid }
}

fn sha256_file(p: &Path) -> String {
    ls_core::bytes::hex(&openssl::sha::sha256(&std::fs::read(p).unwrap()))
}

fn dir_listing(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn sqlite_store_moves_to_postgres_and_its_messages_are_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((pg, o)) = pg(&tmp.path().join("spool")) else {
        return;
    };
    let from = tmp.path().join("store");
    let sqlite = SqliteStore::open(&from, SQLITE_INLINE).unwrap();
    let waiting = fill(&sqlite);
    let key = sqlite.enrolment_key().unwrap();
    let subscribers = format!("{:?}", sqlite.subscribers().unwrap());
    let parties = sqlite.parties(None).unwrap();
    let certificates: Vec<String> = parties
        .iter()
        .map(|p| format!("{:?}", sqlite.certificates(&p.key).unwrap()))
        .collect();
    let parties = format!("{parties:?}");
    let enrolments = format!("{:?}", sqlite.enrolments(1).unwrap());
    let records = sqlite.messages(None, 100).unwrap();
    drop(sqlite);
    let db_sha = sha256_file(&from.join(DB_FILE));
    let payload_files = dir_listing(&from.join(PAYLOAD_DIR));
    assert_eq!(payload_files.len(), 2, "{payload_files:?}");

    let report = transfer(&from, &o, 1_000).unwrap();
    println!("{}", report.text());
    let src = &report.source;
    assert_eq!(
        (
            src.subscribers,
            src.parties,
            src.certificates,
            src.enrolment_codes
        ),
        (3, 5, 6, 3)
    );
    let states = |v: &[(&str, u64)]| v.iter().map(|(s, n)| (s.to_string(), *n)).collect();
    assert_eq!(
        src.messages,
        states(&[("failed", 1), ("leased", 2), ("purged", 2), ("waiting", 5)])
    );
    assert_eq!(
        report.destination.messages,
        states(&[("failed", 1), ("purged", 2), ("waiting", 7)])
    );
    assert_eq!(report.leased_made_waiting, 2);
    assert_eq!(src.bodies, 7);
    assert_eq!(report.destination.body_bytes, src.body_bytes);
    assert_eq!(report.destination.bodies_sha256, src.bodies_sha256);
    assert!(src.enrolment_key && report.destination.enrolment_key);
    // m3 (3 MiB + a bit: 4 chunks) and m6 (100 KiB: 1 chunk) in chunks.
    assert_eq!((report.chunked_bodies, report.chunks), (2, 5));
    assert_eq!(report.inline_bodies, 5);
    assert_eq!(report.schema_version_before, 0);

    // The source is as it was.
    assert_eq!(sha256_file(&from.join(DB_FILE)), db_sha);
    assert_eq!(dir_listing(&from.join(PAYLOAD_DIR)), payload_files);

    // Accounts, parties, certificates, enrolments, the key: the same, ids included.
    let p = PostgresStore::open(&o).unwrap();
    assert_eq!(format!("{:?}", p.subscribers().unwrap()), subscribers);
    let pg_parties = p.parties(None).unwrap();
    assert_eq!(format!("{pg_parties:?}"), parties);
    let pg_certificates: Vec<String> = pg_parties
        .iter()
        .map(|q| format!("{:?}", p.certificates(&q.key).unwrap()))
        .collect();
    assert_eq!(pg_certificates, certificates);
    let c = p.party(&PartyKey::new("", "c")).unwrap().unwrap();
    assert_eq!(c.mail_address.as_deref(), Some("c@globex.example"));
    assert_eq!(c.max_document_bytes, 50 << 20);
    // (Store::enrolments and enrolment_key on PostgreSQL are another branch's: checked by SQL.)
    assert_eq!(
        pg.sql(
            "SELECT id, subscriber_id, pid, created_at, expires_at, used_at, used_fingerprint, \
             revoked_at FROM enrolment_codes ORDER BY id"
        ),
        format!(
            "1|1|e|5|1000|6|{}|\n2|1|f|5|1000|||7\n3|1|g|5|1000|||",
            fp(5)
        )
    );
    assert!(enrolments.contains(&fp(5)), "{enrolments}");
    assert_eq!(
        pg.sql("SELECT encode(value, 'hex') FROM service_secrets WHERE name = 'enrolment_key'"),
        ls_core::bytes::hex(&key)
    );
    // The refusal and the receipt records.
    assert_eq!(
        pg.sql(
            "SELECT message_id, state, failure_class, failure_notice_id, receipt_message_id, \
             recipient_receipt IS NOT NULL, body IS NULL FROM messages \
             WHERE message_id IN ('m1', 'm5') ORDER BY seq"
        ),
        "m1|purged|||r1|t|t\nm5|failed|cannot_open|n5||f|t"
    );
    // Eleven messages accepted, three delivered.
    assert_eq!(pg.sql("SELECT COUNT(*) FROM usage_ledger"), "14");

    // Delivery from PostgreSQL: the leased message first (offered again, attempt 2), then
    // the waiting ones in their order, byte for byte.
    let b = PartyKey::new("", "b");
    let mut offered = Vec::new();
    while let Some(m) = p.claim_next("mpc:b", 2_000, 60).unwrap() {
        let body = m.body.into_bytes().unwrap();
        offered.push((m.message_id.clone(), m.attempt, body));
        assert_eq!(
            p.mark_delivered(&b, &m.message_id, b"ack", 2_001).unwrap(),
            Delivery::Delivered
        );
    }
    let ids: Vec<(&str, u32)> = offered
        .iter()
        .map(|(id, attempt, _)| (id.as_str(), *attempt))
        .collect();
    assert_eq!(
        ids,
        [
            ("n5", 2),
            ("m4", 2),
            ("m2", 1),
            ("m3", 1),
            ("m6", 1),
            ("m7", 1)
        ]
    );
    assert_eq!(offered[1].2, b"leased");
    assert_eq!(offered[2].2, b"two");
    assert!(offered[3].2 == waiting.big, "m3's 3 MiB body differs");
    assert!(offered[4].2 == waiting.mid, "m6's body differs");
    assert_eq!(offered[5].2, pattern(1000, 1));
    let r1 = p.claim_next("mpc:a", 2_000, 60).unwrap().unwrap();
    assert_eq!((r1.message_id.as_str(), r1.attempt), ("r1", 1));
    assert!(p.claim_next("mpc:a", 2_000, 60).unwrap().is_none());

    // A delivered (and purged) message pushed again: its first receipt.
    match p
        .accept(
            &message("a", "b", "m1", b"one".to_vec().into(), 3_000),
            &AcceptLimits::default(),
        )
        .unwrap()
    {
        Accepted::Duplicate { receipt, .. } => assert_eq!(receipt, b"receipt of m1"),
        other => panic!("{other:?}"),
    }
    // New rows get new ids, past every id SQLite gave (usage rows name message seqs): m8's
    // seq 11 was pruned, 12 is next.
    assert_eq!(records.len(), 10);
    assert_eq!(report.next_ids["messages"], 12);
    assert_eq!(
        p.accept(
            &message("a", "b", "new", b"after".to_vec().into(), 3_000),
            &AcceptLimits::default()
        )
        .unwrap(),
        Accepted::Stored
    );
    // (A duplicate accepted above may have used a number: sequences have gaps.)
    let seq: i64 = pg
        .sql("SELECT seq FROM messages WHERE message_id = 'new'")
        .parse()
        .unwrap();
    assert!(seq >= 12, "{seq}");
    let s4 = p
        .create_subscriber(
            &NewSubscriber {
                organisation: "new".into(),
                contact: "c".into(),
                contract_ref: "r".into(),
                plan: "p".into(),
            },
            3_000,
        )
        .unwrap();
    assert_eq!(s4.id, 4);

    // Once more into the same database: refused, naming why; nothing changed.
    let e = transfer(&from, &o, 4_000).unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    assert!(e.to_string().contains("not empty"), "{e}");
    assert_eq!(pg.sql("SELECT COUNT(*) FROM subscribers"), "4");
}

/// A store a service runs on is refused (the command's exit status 3, nothing written), and
/// a service does not start on a store being moved; once the service stopped, the command
/// moves it (`--json`).
#[test]
fn a_store_in_use_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((pg, _)) = pg(&tmp.path().join("spool")) else {
        return;
    };
    let mut svc = ls_tests::service::RunningService::init(Path::new(BIN), "migrate-store", |c| c);
    svc.serve();
    svc.admin(&[
        "subscriber",
        "add",
        "--organisation",
        "Acme",
        "--contact",
        "ops@acme.example",
        "--contract",
        "C-1",
    ]);
    let store = svc.dir.join("data");
    // The configuration the nodes on PostgreSQL will run with.
    let pg_config = tmp.path().join("pg.toml");
    let text = std::fs::read_to_string(&svc.config)
        .unwrap()
        .replace("\"identity/", &format!("\"{}/identity/", svc.dir.display()))
        .replace("\"tls/", &format!("\"{}/tls/", svc.dir.display()));
    std::fs::write(&pg_config, pg.service_config(&text)).unwrap();
    let migrate = |extra: &[&str]| {
        let o = Command::new(BIN)
            .args(["migrate-store", "--from"])
            .arg(&store)
            .arg("--config")
            .arg(&pg_config)
            .args(extra)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, _, err) = migrate(&[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("in use by a running service"), "{err}");
    assert_eq!(
        pg.sql("SELECT to_regclass('subscribers') IS NULL"),
        "t",
        "nothing is written to the database before the store is held"
    );

    svc.stop();
    // A service does not start on a store being moved.
    {
        let _held = ServiceLock::exclusive(&store).unwrap();
        let o = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&svc.config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(4), "{err}");
        assert!(err.contains("being moved to PostgreSQL"), "{err}");
    }

    let (code, out, err) = migrate(&["--json"]);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["source"]["subscribers"], 1, "{out}");
    assert_eq!(report["destination"]["subscribers"], 1, "{out}");
    assert_eq!(
        report["destination"]["bodies_sha256"],
        report["source"]["bodies_sha256"]
    );
    assert_eq!(pg.sql("SELECT organisation FROM subscribers"), "Acme");
    // The text report, and a second move refused.
    let (code, _, err) = migrate(&[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("not empty (subscribers: 1)"), "{err}");
    // The old store is marked: a service (or admin command) started on the old configuration
    // refuses it instead of taking messages that would never reach PostgreSQL.
    for args in [&["serve", "--config"][..], &["admin", "--config"][..]] {
        let mut cmd = Command::new(BIN);
        cmd.args(args).arg(&svc.config);
        if args[0] == "admin" {
            cmd.args(["subscriber", "list"]);
        }
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(4), "{args:?}: {err}");
        assert!(err.contains("moved to PostgreSQL"), "{err}");
    }
}

/// A copy that fails half-way (a payload file is missing) leaves nothing in the database but
/// the schema, and names the message.
#[test]
fn a_failed_copy_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((pg, o)) = pg(&tmp.path().join("spool")) else {
        return;
    };
    let from = tmp.path().join("store");
    let s = SqliteStore::open(&from, SQLITE_INLINE).unwrap();
    fill(&s);
    drop(s);
    // m7's small file: the last body copied, after every other row.
    let m7 = dir_listing(&from.join(PAYLOAD_DIR))
        .into_iter()
        .map(|n| from.join(PAYLOAD_DIR).join(n))
        .find(|p| std::fs::metadata(p).unwrap().len() == 1000)
        .unwrap();
    let kept = tmp.path().join("m7.body");
    std::fs::rename(&m7, &kept).unwrap();
    let e = transfer(&from, &o, 1_000).unwrap_err().to_string();
    assert!(e.contains(m7.to_str().unwrap()), "{e}");
    assert_eq!(
        pg.sql(
            "SELECT (SELECT COUNT(*) FROM subscribers) + (SELECT COUNT(*) FROM messages) \
             + (SELECT COUNT(*) FROM payload_chunks) + (SELECT COUNT(*) FROM service_secrets)"
        ),
        "0"
    );
    // With the file back, the same store moves.
    std::fs::rename(&kept, &m7).unwrap();
    let report = transfer(&from, &o, 1_000).unwrap();
    assert_eq!(
        report.schema_version_before,
        ls_server::store::postgres::SCHEMA_VERSION
    );
    assert_eq!(report.destination.bodies, 7);
}
