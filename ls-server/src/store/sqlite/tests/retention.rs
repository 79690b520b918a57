use super::*;

#[test]
fn purge_and_expire_remove_bodies_and_files() {
    let dir = TempDir::new("purge");
    let store = SqliteStore::open(&dir.0, 4).unwrap();
    let (a, b) = setup(&store);
    // d1 (file) and d2 (inline) delivered at 100 and 200; w1 (file) waiting since 50; w2
    // (file) leased since 300; w3 (inline) waiting since 40.
    store
        .accept(
            &msg(&a, &b, "mpc-b", "d1", b"delivered one", 10),
            &AcceptLimits::default(),
        )
        .unwrap();
    store
        .accept(
            &msg(&a, &b, "mpc-b", "d2", b"d2", 20),
            &AcceptLimits::default(),
        )
        .unwrap();
    store
        .accept(
            &msg(&a, &b, "mpc-b", "w3", b"w3", 40),
            &AcceptLimits::default(),
        )
        .unwrap();
    store
        .accept(
            &msg(&a, &b, "mpc-b", "w1", b"waiting one", 50),
            &AcceptLimits::default(),
        )
        .unwrap();
    store
        .accept(
            &msg(&a, &b, "mpc-b", "w2", b"waiting two", 300),
            &AcceptLimits::default(),
        )
        .unwrap();
    assert_eq!(
        store.mark_delivered(&b, "d1", b"r", 100).unwrap(),
        Delivery::Delivered
    );
    assert_eq!(
        store.mark_delivered(&b, "d2", b"r", 200).unwrap(),
        Delivery::Delivered
    );
    assert_eq!(payload_files(&dir.0).len(), 3);

    // Nothing old enough.
    assert_eq!(store.purge(100, 40).unwrap(), Purged::default());
    assert_eq!(payload_files(&dir.0).len(), 3);

    let p = store.purge(150, 60).unwrap();
    assert_eq!(
        p,
        Purged {
            delivered: 1,
            expired: 2
        }
    );
    assert_eq!(state_of(&store, "d1"), "purged");
    assert_eq!(state_of(&store, "d2"), "delivered");
    assert_eq!(state_of(&store, "w1"), "expired");
    assert_eq!(state_of(&store, "w3"), "expired");
    assert_eq!(state_of(&store, "w2"), "waiting");
    assert_eq!(payload_files(&dir.0).len(), 1); // w2's

    // Expired messages are not offered; the leased one is expired later.
    let c = store.claim_next("mpc-b", 400, 60).unwrap().unwrap();
    assert_eq!(c.message_id, "w2");
    assert!(store.claim_next("mpc-b", 450, 60).unwrap().is_none());
    let p = store.purge(1000, 1000).unwrap();
    assert_eq!(
        p,
        Purged {
            delivered: 1,
            expired: 1
        }
    );
    assert_eq!(state_of(&store, "w2"), "expired");
    assert!(store.claim_next("mpc-b", 2000, 60).unwrap().is_none());
    assert!(payload_files(&dir.0).is_empty());
    {
        let conn = store.conn();
        let bodies: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE body IS NOT NULL OR body_file IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(bodies, 0);
    }
    // Records stay, and a resent purged message is still a duplicate.
    assert_eq!(store.messages(None, 100).unwrap().len(), 5);
    assert!(matches!(
        store
            .accept(
                &msg(&a, &b, "mpc-b", "d1", b"delivered one", 3000),
                &AcceptLimits::default()
            )
            .unwrap(),
        Accepted::Duplicate { .. }
    ));
    assert!(payload_files(&dir.0).is_empty());
    assert_eq!(store.purge(5000, 5000).unwrap(), Purged::default());
}

#[test]
fn purge_sweeps_old_orphan_files_only() {
    let dir = TempDir::new("orphans");
    let store = SqliteStore::open(&dir.0, 4).unwrap();
    let (a, b) = setup(&store);
    store
        .accept(
            &msg(&a, &b, "mpc-b", "m1", b"file body", 10),
            &AcceptLimits::default(),
        )
        .unwrap();
    let kept = payload_files(&dir.0)[0].clone();
    let payloads = dir.0.join(PAYLOAD_DIR);
    let old = SystemTime::now() - ORPHAN_GRACE - Duration::from_secs(60);
    for name in [
        "old-orphan.body",
        "old-crash.tmp",
        "new-orphan.body",
        "unrelated.txt",
    ] {
        fs::write(payloads.join(name), b"x").unwrap();
    }
    for name in [
        "old-orphan.body",
        "old-crash.tmp",
        "unrelated.txt",
        kept.as_str(),
    ] {
        let f = fs::File::options()
            .write(true)
            .open(payloads.join(name))
            .unwrap();
        f.set_modified(old).unwrap();
    }
    assert_eq!(store.purge(0, 0).unwrap(), Purged::default());
    let mut expect = vec![
        kept.clone(),
        "new-orphan.body".into(),
        "unrelated.txt".into(),
    ];
    expect.sort();
    assert_eq!(payload_files(&dir.0), expect);
    assert_eq!(
        store
            .claim_next("mpc-b", 20, 60)
            .unwrap()
            .unwrap()
            .body
            .to_vec()
            .unwrap(),
        b"file body"
    );
}

#[test]
fn records_of_finished_messages_are_pruned_and_the_ledger_stays() {
    let dir = TempDir::new("prune");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, b) = setup(&store);
    for (id, at) in [
        ("d1", 10),
        ("d2", 10),
        ("x1", 10),
        ("w1", 10),
        ("late", 300),
    ] {
        store
            .accept(&msg(&a, &b, "mpc-b", id, b"body", at), &NONE)
            .unwrap();
    }
    store.mark_delivered(&b, "d1", b"r", 20).unwrap();
    store.mark_delivered(&b, "d2", b"r", 20).unwrap();
    store.mark_delivered(&b, "late", b"r", 310).unwrap();
    store
        .accept(&notice(&b, &a, "mpc-a", "n1", "x1"), &NONE)
        .unwrap();
    store.purge(25, 5).unwrap(); // d1, d2 purged; nothing expired
    let before = store.usage(0, 1000).unwrap();
    // Records received before 100 and finished go: d1, d2 (purged), x1 (failed). w1 waits,
    // the notice n1 (received at 500) and late are kept.
    assert_eq!(store.prune_records(100).unwrap(), 3);
    let mut left: Vec<String> = store
        .messages(None, 100)
        .unwrap()
        .into_iter()
        .map(|r| r.message_id)
        .collect();
    left.sort();
    assert_eq!(left, ["late", "n1", "w1"]);
    assert_eq!(store.usage(0, 1000).unwrap(), before);
    assert_eq!(store.prune_records(100).unwrap(), 0);
    // A message re-sent after its record is gone is a new message (documented).
    assert_eq!(
        store
            .accept(&msg(&a, &b, "mpc-b", "d1", b"body", 400), &NONE)
            .unwrap(),
        Accepted::Stored
    );
    // Batches: more records than one transaction removes.
    let n = PRUNE_BATCH as usize + 7;
    {
        let conn = store.conn();
        let mut stmt = conn
            .prepare(
                "INSERT INTO messages (sender_ptype, sender_id, recipient_ptype, \
                 recipient_id, mpc, message_id, conversation_id, service, action, \
                 content_type, size, receipt_content_type, receipt, state, received_at) \
                 VALUES ('', 'A', '', 'B', 'mpc-b', ?1, 'c', 's', 'a', 't', 1, 'r', X'00', \
                 'expired', 1)",
            )
            .unwrap();
        for i in 0..n {
            stmt.execute([format!("bulk{i}")]).unwrap();
        }
    }
    assert_eq!(store.prune_records(100).unwrap(), n as u64);
}
