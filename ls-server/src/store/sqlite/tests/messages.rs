use super::*;

#[test]
fn accept_duplicate_and_roundtrip_inline_and_file() {
    let dir = TempDir::new("accept");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, b) = setup(&store);

    let small: Vec<u8> = (0u8..16).collect(); // == inline_max: inline
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let empty: Vec<u8> = Vec::new();
    assert_eq!(
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m1", &small, 10),
                &AcceptLimits::default()
            )
            .unwrap(),
        Accepted::Stored
    );
    assert_eq!(
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m2", &big, 11),
                &AcceptLimits::default()
            )
            .unwrap(),
        Accepted::Stored
    );
    assert_eq!(
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m3", &empty, 12),
                &AcceptLimits::default()
            )
            .unwrap(),
        Accepted::Stored
    );
    assert_eq!(payload_files(&dir.0).len(), 1);
    assert!(payload_files(&dir.0)[0].ends_with(BODY_EXT));

    // Duplicates return the first receipt, whatever the new message says, and store nothing.
    for (id, body) in [("m1", &small), ("m2", &big)] {
        let mut again = msg(&a, &b, "mpc-b", id, body, 20);
        again.receipt = b"another receipt".to_vec();
        let mut changed = body.to_vec();
        changed.push(1);
        again.body = changed.into();
        assert_eq!(
            store.accept(&again, &AcceptLimits::default()).unwrap(),
            Accepted::Duplicate {
                receipt_content_type: "application/soap+xml".into(),
                receipt: format!("receipt for {id}").into_bytes(),
            }
        );
    }
    assert_eq!(payload_files(&dir.0).len(), 1);
    assert_eq!(store.messages(None, 100).unwrap().len(), 3);
    // The same MessageId from another sender is another message.
    assert_eq!(
        store
            .accept(
                &msg(&b, &a, "mpc-a", "m1", &small, 13),
                &AcceptLimits::default()
            )
            .unwrap(),
        Accepted::Stored
    );

    let c1 = store.claim_next("mpc-b", 100, 60).unwrap().unwrap();
    assert_eq!(c1.message_id, "m1");
    assert_eq!(c1.body.to_vec().unwrap(), small);
    assert_eq!(c1.sender, a);
    assert_eq!(c1.recipient, b);
    assert_eq!(c1.content_type, "multipart/related; boundary=x");
    assert_eq!(c1.attempt, 1);
    let c2 = store.claim_next("mpc-b", 100, 60).unwrap().unwrap();
    assert_eq!(c2.message_id, "m2");
    assert!(c2.body.to_vec().unwrap() == big, "file body differs");
    let c3 = store.claim_next("mpc-b", 100, 60).unwrap().unwrap();
    assert_eq!(c3.message_id, "m3");
    assert!(c3.body.is_empty());
    assert!(store.claim_next("mpc-b", 100, 60).unwrap().is_none());
    assert_eq!(
        store.claim_next("mpc-a", 100, 60).unwrap().unwrap().sender,
        b
    );

    let records = store.messages(Some(&a), 100).unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r.message_id.as_str()).collect();
    assert_eq!(ids, vec!["m1", "m3", "m2", "m1"]); // newest first
    assert_eq!(records[2].size, big.len() as u64);
    assert_eq!(records[2].state, "leased");
    assert_eq!(records[2].attempts, 1);
    assert_eq!(store.messages(None, 2).unwrap().len(), 2);
    assert!(store
        .messages(Some(&PartyKey::new("", "x")), 10)
        .unwrap()
        .is_empty());
}

#[test]
fn claim_is_fifo_per_mpc() {
    let dir = TempDir::new("fifo");
    let store = SqliteStore::open(&dir.0, 1024).unwrap();
    let (a, b) = setup(&store);
    // Received-at times out of order: the order of acceptance counts.
    for (i, at) in [(0, 50), (1, 10), (2, 30), (3, 20)] {
        store
            .accept(
                &msg(&a, &b, "mpc-b", &format!("b{i}"), b"x", at),
                &AcceptLimits::default(),
            )
            .unwrap();
        store
            .accept(
                &msg(&b, &a, "mpc-a", &format!("a{i}"), b"y", at),
                &AcceptLimits::default(),
            )
            .unwrap();
    }
    for i in 0..4 {
        let c = store.claim_next("mpc-b", 100, 60).unwrap().unwrap();
        assert_eq!(c.message_id, format!("b{i}"));
    }
    assert!(store.claim_next("mpc-b", 100, 60).unwrap().is_none());
    assert_eq!(
        store
            .claim_next("mpc-a", 100, 60)
            .unwrap()
            .unwrap()
            .message_id,
        "a0"
    );
    assert!(store.claim_next("mpc-none", 100, 60).unwrap().is_none());
}

#[test]
fn claim_uses_the_pending_index() {
    let dir = TempDir::new("plan");
    drop(SqliteStore::open(&dir.0, 16).unwrap());
    let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
    let mut stmt = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT seq FROM messages \
             WHERE mpc = ?1 AND state IN ('waiting', 'leased') \
             AND (state = 'waiting' OR lease_until <= ?2) ORDER BY seq LIMIT 1",
        )
        .unwrap();
    let plan: Vec<String> = stmt
        .query_map(params!["m", 1], |r| r.get::<_, String>(3))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("messages_claim"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
}

#[test]
fn lease_expiry_offers_again() {
    let dir = TempDir::new("lease");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, b) = setup(&store);
    store
        .accept(
            &msg(&a, &b, "mpc-b", "m1", b"one", 10),
            &AcceptLimits::default(),
        )
        .unwrap();
    store
        .accept(
            &msg(&a, &b, "mpc-b", "m2", b"two", 11),
            &AcceptLimits::default(),
        )
        .unwrap();

    let c = store.claim_next("mpc-b", 100, 30).unwrap().unwrap();
    assert_eq!((c.message_id.as_str(), c.attempt), ("m1", 1));
    // While m1 is leased the next one is offered.
    let c = store.claim_next("mpc-b", 110, 30).unwrap().unwrap();
    assert_eq!((c.message_id.as_str(), c.attempt), ("m2", 1));
    assert!(store.claim_next("mpc-b", 129, 30).unwrap().is_none());
    // Lease of m1 ends at 130.
    let c = store.claim_next("mpc-b", 130, 30).unwrap().unwrap();
    assert_eq!((c.message_id.as_str(), c.attempt), ("m1", 2));
    assert_eq!(c.body.to_vec().unwrap(), b"one");
    let c = store.claim_next("mpc-b", 140, 30).unwrap().unwrap();
    assert_eq!((c.message_id.as_str(), c.attempt), ("m2", 2));
    // Delivered messages are not offered again.
    assert_eq!(
        store.mark_delivered(&b, "m1", b"r", 150).unwrap(),
        Delivery::Delivered
    );
    let c = store.claim_next("mpc-b", 1000, 30).unwrap().unwrap();
    assert_eq!((c.message_id.as_str(), c.attempt), ("m2", 3));
    assert!(store.claim_next("mpc-b", 1000, 30).unwrap().is_none());
    assert!(matches!(
        store.claim_next("mpc-b", 1000, -1),
        Err(StoreError::Invalid(_))
    ));
}

/// 200 messages, claimed by 4 threads over two stores (two connections, as two processes
/// would be): every message is handed out exactly once while the leases run.
#[test]
fn concurrent_claims_hand_out_each_message_once() {
    let dir = TempDir::new("claims");
    let store1 = Arc::new(SqliteStore::open(&dir.0, 8).unwrap());
    let store2 = Arc::new(SqliteStore::open(&dir.0, 8).unwrap());
    let (a, b) = setup(&store1);
    const N: usize = 200;
    for i in 0..N {
        // Every third body goes to a file.
        let body = if i % 3 == 0 {
            format!("a larger body number {i}")
        } else {
            format!("b{i}")
        };
        store1
            .accept(
                &msg(&a, &b, "mpc-b", &format!("m{i}"), body.as_bytes(), 10),
                &AcceptLimits::default(),
            )
            .unwrap();
    }
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = if t % 2 == 0 {
                store1.clone()
            } else {
                store2.clone()
            };
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut got = Vec::new();
                while let Some(c) = store.claim_next("mpc-b", 100, 3600).unwrap() {
                    assert_eq!(c.attempt, 1);
                    let i: usize = c.message_id[1..].parse().unwrap();
                    let expect = if i % 3 == 0 {
                        format!("a larger body number {i}")
                    } else {
                        format!("b{i}")
                    };
                    assert_eq!(c.body.to_vec().unwrap(), expect.as_bytes());
                    got.push(c.message_id);
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    assert_eq!(all.len(), N);
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), N);
    assert!(store2.claim_next("mpc-b", 100, 3600).unwrap().is_none());
}

/// Two threads (on two connections) accept the same message at once: one stores it, the
/// other gets the duplicate's receipt, and no payload file is left behind.
#[test]
fn concurrent_accept_of_one_message_stores_it_once() {
    let dir = TempDir::new("dup");
    let store1 = Arc::new(SqliteStore::open(&dir.0, 8).unwrap());
    let store2 = Arc::new(SqliteStore::open(&dir.0, 8).unwrap());
    let (a, b) = setup(&store1);
    for round in 0..20 {
        let body: &[u8] = if round % 2 == 0 {
            b"small"
        } else {
            b"a body for a file"
        };
        let m = msg(&a, &b, "mpc-b", &format!("race{round}"), body, 10);
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = [store1.clone(), store1.clone(), store2.clone()]
            .into_iter()
            .skip(if round % 4 < 2 { 0 } else { 1 })
            .take(2)
            .map(|store| {
                let m = m.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    store.accept(&m, &AcceptLimits::default()).unwrap()
                })
            })
            .collect();
        let results: Vec<Accepted> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let stored = results.iter().filter(|r| **r == Accepted::Stored).count();
        assert_eq!(stored, 1, "round {round}: {results:?}");
        assert!(results
            .iter()
            .any(|r| matches!(r, Accepted::Duplicate { receipt, .. }
            if *receipt == format!("receipt for race{round}").into_bytes())));
    }
    assert_eq!(store1.messages(None, 100).unwrap().len(), 20);
    // Only the ten file bodies, no temporary or orphan files.
    let files = payload_files(&dir.0);
    assert_eq!(files.len(), 10, "{files:?}");
    assert!(files.iter().all(|f| f.ends_with(BODY_EXT)));
    let usage = store1.usage(0, 100).unwrap();
    assert_eq!(usage[0].sent_messages, 20);
}

#[test]
fn mark_delivered_outcomes() {
    let dir = TempDir::new("deliver");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, b) = setup(&store);
    store
        .accept(
            &msg(&a, &b, "mpc-b", "m1", b"one", 10),
            &AcceptLimits::default(),
        )
        .unwrap();
    store
        .accept(
            &msg(&a, &b, "mpc-b", "m2", b"two", 11),
            &AcceptLimits::default(),
        )
        .unwrap();
    store.claim_next("mpc-b", 20, 60).unwrap().unwrap();

    assert_eq!(
        store.mark_delivered(&b, "nope", b"r", 30).unwrap(),
        Delivery::Unknown
    );
    // Only the recipient's receipt counts.
    assert_eq!(
        store.mark_delivered(&a, "m1", b"r", 30).unwrap(),
        Delivery::Unknown
    );
    assert_eq!(
        store.mark_delivered(&b, "m1", b"r1", 30).unwrap(),
        Delivery::Delivered
    );
    assert_eq!(state_of(&store, "m1"), "delivered");
    assert_eq!(
        store.mark_delivered(&b, "m1", b"r1", 31).unwrap(),
        Delivery::AlreadyDelivered
    );
    let rec = store
        .messages(Some(&b), 10)
        .unwrap()
        .into_iter()
        .find(|r| r.message_id == "m1")
        .unwrap();
    assert_eq!(rec.delivered_at, Some(30));
    // The receipt is stored (checked directly, the trait does not return it).
    {
        let conn = store.conn();
        let r: Vec<u8> = conn
            .query_row(
                "SELECT recipient_receipt FROM messages WHERE message_id = 'm1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(r, b"r1");
    }
    // A waiting (not yet claimed) message may be receipted too.
    assert_eq!(
        store.mark_delivered(&b, "m2", b"r2", 32).unwrap(),
        Delivery::Delivered
    );
    // After the body is purged a repeated receipt is still recognised.
    store.purge(100, 0).unwrap();
    assert_eq!(state_of(&store, "m1"), "purged");
    assert_eq!(
        store.mark_delivered(&b, "m1", b"r1", 200).unwrap(),
        Delivery::AlreadyDelivered
    );
    // An expired message is not delivered.
    store
        .accept(
            &msg(&a, &b, "mpc-b", "m3", b"three", 50),
            &AcceptLimits::default(),
        )
        .unwrap();
    store.purge(0, 60).unwrap();
    assert_eq!(state_of(&store, "m3"), "expired");
    assert_eq!(
        store.mark_delivered(&b, "m3", b"r3", 200).unwrap(),
        Delivery::Unknown
    );
}

#[test]
fn recipients_of_held_messages() {
    let dir = TempDir::new("recipients");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, b) = setup(&store);
    let c = PartyKey::new("", "C");
    let s = subscriber(&store, "gamma");
    store
        .register(s.id, &c, "mpc-c", b"cert-c", &fp(3), 1000)
        .unwrap();
    assert!(store.recipients_of("x").unwrap().is_empty());
    // The same MessageId to two recipients; a second sender cannot reuse it for B (a
    // receipt names only the MessageId).
    store
        .accept(
            &msg(&a, &b, "mpc-b", "x", b"1", 10),
            &AcceptLimits::default(),
        )
        .unwrap();
    assert!(matches!(
        store.accept(
            &msg(&c, &b, "mpc-b", "x", b"2", 10),
            &AcceptLimits::default()
        ),
        Err(StoreError::Conflict(_))
    ));
    store
        .accept(
            &msg(&b, &c, "mpc-c", "x", b"3", 10),
            &AcceptLimits::default(),
        )
        .unwrap();
    store
        .accept(
            &msg(&a, &b, "mpc-b", "y", b"4", 10),
            &AcceptLimits::default(),
        )
        .unwrap();
    assert_eq!(
        store.recipients_of("x").unwrap(),
        vec![b.clone(), c.clone()]
    );
    // Delivered (and purged) messages still count: a repeated receipt must be recognised.
    assert_eq!(
        store.mark_delivered(&c, "x", b"r", 20).unwrap(),
        Delivery::Delivered
    );
    store.purge(30, 0).unwrap();
    assert_eq!(
        store.recipients_of("x").unwrap(),
        vec![b.clone(), c.clone()]
    );
    // Expired ones do not.
    store.purge(0, 100).unwrap();
    assert_eq!(store.recipients_of("x").unwrap(), vec![c.clone()]);
    assert!(store.recipients_of("y").unwrap().is_empty());
}

#[test]
fn queue_depths_per_recipient() {
    let dir = TempDir::new("depths");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, b) = setup(&store);
    for i in 0..3 {
        store
            .accept(
                &msg(&a, &b, "mpc-b", &format!("m{i}"), b"x", 10),
                &AcceptLimits::default(),
            )
            .unwrap();
    }
    store.claim_next("mpc-b", 20, 60).unwrap().unwrap(); // leased still counts
    store
        .accept(
            &msg(&b, &a, "mpc-a", "n0", b"x", 10),
            &AcceptLimits::default(),
        )
        .unwrap();
    store.mark_delivered(&a, "n0", b"r", 30).unwrap();
    let depths = store.queue_depths().unwrap();
    let get = |k: &PartyKey| depths.iter().find(|(p, _)| p == k).map(|(_, n)| *n);
    assert_eq!(get(&b), Some(3));
    assert_eq!(get(&a), Some(0));
    store.mark_delivered(&b, "m1", b"r", 30).unwrap();
    store.purge(0, 1000).unwrap();
    let depths = store.queue_depths().unwrap();
    assert!(depths.iter().all(|(_, n)| *n == 0), "{depths:?}");
    assert_eq!(depths.len(), 2);
}

#[test]
fn everything_survives_reopen() {
    let dir = TempDir::new("reopen");
    let big: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
    let (a, b);
    {
        let store = SqliteStore::open(&dir.0, 64).unwrap();
        (a, b) = setup(&store);
        store
            .replace_certificate(&a, b"cert-a2", &fp(5), 5000, 1500)
            .unwrap();
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m1", &big, 10),
                &AcceptLimits::default(),
            )
            .unwrap();
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m2", b"small", 11),
                &AcceptLimits::default(),
            )
            .unwrap();
        assert_eq!(
            store
                .claim_next("mpc-b", 20, 60)
                .unwrap()
                .unwrap()
                .message_id,
            "m1"
        );
    }
    let store = SqliteStore::open(&dir.0, 64).unwrap();
    assert_eq!(store.subscribers().unwrap().len(), 2);
    assert_eq!(store.parties(None).unwrap().len(), 2);
    assert_eq!(store.party_by_mpc("mpc-b").unwrap().unwrap().key, b);
    assert_eq!(store.certificates(&a).unwrap().len(), 2);
    assert!(matches!(
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m1", &big, 30),
                &AcceptLimits::default()
            )
            .unwrap(),
        Accepted::Duplicate { .. }
    ));
    // m1's lease (until 80) still holds after the reopen.
    let c = store.claim_next("mpc-b", 30, 60).unwrap().unwrap();
    assert_eq!((c.message_id.as_str(), c.attempt), ("m2", 1));
    let c = store.claim_next("mpc-b", 80, 60).unwrap().unwrap();
    assert_eq!((c.message_id.as_str(), c.attempt), ("m1", 2));
    assert!(c.body.to_vec().unwrap() == big);
    assert_eq!(
        store.mark_delivered(&b, "m1", b"r", 90).unwrap(),
        Delivery::Delivered
    );
    drop(store);
    let store = SqliteStore::open(&dir.0, 64).unwrap();
    assert_eq!(
        store.mark_delivered(&b, "m1", b"r", 91).unwrap(),
        Delivery::AlreadyDelivered
    );
    assert_eq!(
        store.usage(0, 100).unwrap()[1].received_bytes,
        big.len() as u64
    );
}
