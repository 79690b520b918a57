use super::*;

#[test]
fn open_creates_layout_with_private_permissions() {
    let dir = TempDir::new("open");
    let store = SqliteStore::open(&dir.0.join("nested"), 16).unwrap();
    drop(store);
    let root = dir.0.join("nested");
    assert!(root.join(DB_FILE).is_file());
    assert!(root.join(PAYLOAD_DIR).is_dir());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join(PAYLOAD_DIR)), 0o700);
        assert_eq!(mode(&root.join(DB_FILE)), 0o600);
    }
    let conn = Connection::open(root.join(DB_FILE)).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn newer_schema_is_refused() {
    let dir = TempDir::new("newer");
    drop(SqliteStore::open(&dir.0, 16).unwrap());
    let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&dir.0, 16).unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err}");
}

/// A database written by schema version 1 is migrated: parties get the default document
/// limit, messages keep their rows and sequence numbers, and the new state works.
#[test]
fn schema_v1_is_migrated() {
    let dir = TempDir::new("migrate");
    fs::create_dir_all(&dir.0).unwrap();
    {
        let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO subscribers VALUES (1, 'alpha', '', '', '', 'active', 1);
             INSERT INTO subscribers VALUES (2, 'beta', '', '', '', 'active', 1);
             INSERT INTO parties VALUES (1, 1, '', 'A', 'mpc-a', 'active', 1, NULL);
             INSERT INTO parties VALUES (2, 2, '', 'B', 'mpc-b', 'active', 1, NULL);",
        )
        .unwrap();
        for (seq, id, state) in [(1, "old1", "delivered"), (7, "old2", "waiting")] {
            conn.execute(
                "INSERT INTO messages (seq, sender_ptype, sender_id, recipient_ptype, \
                 recipient_id, mpc, message_id, conversation_id, service, action, \
                 content_type, size, body, receipt_content_type, receipt, state, \
                 received_at) VALUES (?1, '', 'A', '', 'B', 'mpc-b', ?2, 'c', 's', 'a', \
                 'text/plain', 3, X'616263', 'r', X'72', ?3, 10)",
                params![seq, id, state],
            )
            .unwrap();
        }
        // A sequence ahead of the rows (as after rows were removed): kept.
        conn.execute(
            "UPDATE sqlite_sequence SET seq = 9 WHERE name = 'messages'",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, b) = (PartyKey::new("", "A"), PartyKey::new("", "B"));
    assert_eq!(
        store.party(&a).unwrap().unwrap().max_document_bytes,
        // What the default was at version 2.
        100 << 20
    );
    assert_eq!(state_of(&store, "old1"), "delivered");
    let c = store.claim_next("mpc-b", 20, 60).unwrap().unwrap();
    assert_eq!(
        (c.message_id.as_str(), &c.body.to_vec().unwrap()[..]),
        ("old2", &b"abc"[..])
    );
    // A migrated row has no fingerprint: the same recipient is a duplicate whatever the
    // content, another recipient is a reused MessageId.
    assert!(matches!(
        store.accept(&msg(&a, &b, "mpc-b", "old1", b"other", 30), &NONE),
        Ok(Accepted::Duplicate { .. })
    ));
    assert!(matches!(
        refused(store.accept(&msg(&a, &a, "mpc-a", "old1", b"abc", 30), &NONE)),
        Refused::MessageIdReused { .. }
    ));
    store
        .accept(&msg(&a, &b, "mpc-b", "new", b"x", 40), &NONE)
        .unwrap();
    let seq: i64 = store
        .conn()
        .query_row(
            "SELECT seq FROM messages WHERE message_id = 'new'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(seq, 10, "the AUTOINCREMENT counter is carried over");
    // The new state is allowed.
    store
        .accept(&notice(&b, &a, "mpc-a", "n1", "old2"), &NONE)
        .unwrap();
    assert_eq!(state_of(&store, "old2"), "failed");
    let version: i64 = store
        .conn()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

/// The default document limit written by the migration is the contract's as of version 2
/// (100 MiB; parties registered since get `coordination::DEFAULT_MAX_DOCUMENT_BYTES`, 4 GiB,
/// unless given one, and a migrated party keeps what its client was configured with then).
#[test]
fn migration_default_is_the_contracts() {
    assert!(SCHEMA_V2.contains(&format!("DEFAULT {}", 100u64 << 20)));
}

/// A database written by schema version 2 is migrated: its usage rows are kept (those of
/// co-ordination messages whose record is kept count as co-ordination from now on), its
/// messages have no receipt recorded, and a receipt can be recorded on them.
#[test]
fn schema_v2_is_migrated_and_keeps_the_usage_ledger() {
    let dir = TempDir::new("migrate-v2");
    fs::create_dir_all(&dir.0).unwrap();
    {
        let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute_batch(SCHEMA_V2).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "INSERT INTO subscribers VALUES (1, 'alpha', '', '', '', 'active', 1);
             INSERT INTO subscribers VALUES (2, 'beta', '', '', '', 'active', 1);
             INSERT INTO parties VALUES (1, 1, '', 'A', 'mpc-a', 'active', 1, NULL, 1000);
             INSERT INTO parties VALUES (2, 2, '', 'B', 'mpc-b', 'active', 1, NULL, 1000);",
        )
        .unwrap();
        // A document A → B (delivered), and B's refusal notice for another one.
        for (seq, from, to, mpc, id, service, state) in [
            (
                1,
                "A",
                "B",
                "mpc-b",
                "doc",
                "urn:layersec:test",
                "delivered",
            ),
            (
                2,
                "A",
                "B",
                "mpc-b",
                "refused",
                "urn:layersec:test",
                "failed",
            ),
            (
                3,
                "B",
                "A",
                "mpc-a",
                "notice",
                coordination::SERVICE,
                "waiting",
            ),
        ] {
            conn.execute(
                "INSERT INTO messages (seq, sender_ptype, sender_id, recipient_ptype, \
                 recipient_id, mpc, message_id, conversation_id, service, action, \
                 content_type, size, body, receipt_content_type, receipt, state, \
                 received_at, content_sha256) VALUES (?1, '', ?2, '', ?3, ?4, ?5, 'c', ?6, \
                 'a', 'text/plain', 3, X'616263', 'r', X'72', ?7, 10, 'f')",
                params![seq, from, to, mpc, id, service, state],
            )
            .unwrap();
        }
        conn.execute_batch(
            "UPDATE messages SET body = NULL, failure_class = 'policy', \
             failure_notice_id = 'notice', failed_at = 20 WHERE seq = 2",
        )
        .unwrap();
        // The ledger: the two documents sent, one received, the notice sent, and a notice
        // whose record was pruned (seq 99): kept, counted as a document.
        for (sub, party, kind, bytes, seq) in [
            (1, "A", "sent", 100, 1),
            (1, "A", "sent", 200, 2),
            (2, "B", "received", 100, 1),
            (2, "B", "sent", 7, 3),
            (2, "B", "sent", 11, 99),
        ] {
            conn.execute(
                "INSERT INTO usage_ledger (subscriber_id, party_ptype, party_id, kind, at, \
                 bytes, message_seq) VALUES (?1, '', ?2, ?3, 50, ?4, ?5)",
                params![sub, party, kind, bytes, seq],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let u = store.usage(0, 100).unwrap();
    assert_eq!(
        u[0],
        Usage {
            subscriber_id: 1,
            organisation: "alpha".into(),
            sent_messages: 2,
            sent_bytes: 300,
            ..Usage::default()
        }
    );
    assert_eq!(
        u[1],
        Usage {
            subscriber_id: 2,
            organisation: "beta".into(),
            sent_messages: 1,
            sent_bytes: 11,
            received_messages: 1,
            received_bytes: 100,
            coordination_sent_messages: 1,
            coordination_sent_bytes: 7,
            ..Usage::default()
        }
    );
    let ledger_rows: i64 = store
        .conn()
        .query_row("SELECT COUNT(*) FROM usage_ledger", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ledger_rows, 5);
    let (a, b) = (PartyKey::new("", "A"), PartyKey::new("", "B"));
    assert_eq!(record(&store, &a, "doc").receipt_returned, None);
    // The new columns work on migrated rows.
    assert_eq!(
        store
            .accept(&receipt(&b, &a, "mpc-a", "r1", "doc", b"ess", 60), &NONE)
            .unwrap(),
        Accepted::ReceiptStored
    );
    assert_eq!(
        record(&store, &a, "doc").receipt_returned,
        Some(ReceiptReturned {
            receipt_id: "r1".into(),
            at: 60
        })
    );
    assert!(matches!(
        refused(store.accept(
            &receipt(&b, &a, "mpc-a", "r2", "refused", b"ess", 60),
            &NONE
        )),
        Refused::ReceiptForRefused { .. }
    ));
    assert_eq!(
        store.usage(0, 100).unwrap()[1].coordination_sent_messages,
        2
    );
    let version: i64 = store
        .conn()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 5);
}

/// The migration marks co-ordination messages by the contract's Service.
#[test]
fn migration_marks_the_contracts_service() {
    assert!(SCHEMA_V3.contains(&format!("service = '{}'", coordination::SERVICE)));
}

/// A database of schema version 4 is migrated to 5: its parties have no mail address, and one
/// can be set.
#[test]
fn schema_v4_is_migrated_to_mail_addresses() {
    let dir = TempDir::new("migrate-v4");
    fs::create_dir_all(&dir.0).unwrap();
    {
        let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
        for sql in [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute_batch(
            "INSERT INTO subscribers VALUES (1, 'alpha', '', '', '', 'active', 1);
             INSERT INTO parties (id, subscriber_id, ptype, pid, mpc, status, created_at)
                 VALUES (1, 1, '', 'A', 'mpc-a', 'active', 1);",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let a = PartyKey::new("", "A");
    assert_eq!(store.party(&a).unwrap().unwrap().mail_address, None);
    store
        .set_party_mail_address(&a, Some("a@a.example"))
        .unwrap();
    assert_eq!(store.mail_parties().unwrap().len(), 1);
    drop(store);
    let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5);
}
