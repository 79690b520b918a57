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
        coordination::DEFAULT_MAX_DOCUMENT_BYTES
    );
    assert_eq!(state_of(&store, "old1"), "delivered");
    let c = store.claim_next("mpc-b", 20, 60).unwrap().unwrap();
    assert_eq!(
        (c.message_id.as_str(), c.body.as_slice()),
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

/// The default document limit written by the migration is the contract's.
#[test]
fn migration_default_is_the_contracts() {
    assert!(SCHEMA_V2.contains(&format!(
        "DEFAULT {}",
        coordination::DEFAULT_MAX_DOCUMENT_BYTES
    )));
}
