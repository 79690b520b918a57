use super::*;

#[test]
fn usage_report() {
    let dir = TempDir::new("usage");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, b) = setup(&store);
    let idle = subscriber(&store, "idle");
    store
        .accept(
            &msg(&a, &b, "mpc-b", "m1", &[0; 10], 100),
            &AcceptLimits::default(),
        )
        .unwrap();
    store
        .accept(
            &msg(&a, &b, "mpc-b", "m2", &[0; 200], 150),
            &AcceptLimits::default(),
        )
        .unwrap();
    store
        .accept(
            &msg(&a, &b, "mpc-b", "m3", &[0; 3000], 250),
            &AcceptLimits::default(),
        )
        .unwrap();
    store
        .accept(
            &msg(&b, &a, "mpc-a", "n1", &[0; 7], 120),
            &AcceptLimits::default(),
        )
        .unwrap();
    // Duplicates are not counted.
    store
        .accept(
            &msg(&a, &b, "mpc-b", "m1", &[0; 10], 160),
            &AcceptLimits::default(),
        )
        .unwrap();
    store.mark_delivered(&b, "m1", b"r", 180).unwrap();
    store.mark_delivered(&b, "m1", b"r", 181).unwrap(); // repeated: not counted
    store.mark_delivered(&b, "m3", b"r", 260).unwrap();
    store.mark_delivered(&a, "n1", b"r", 199).unwrap();

    let u = store.usage(100, 200).unwrap();
    assert_eq!(u.len(), 3);
    assert_eq!(
        u[0],
        Usage {
            subscriber_id: u[0].subscriber_id,
            organisation: "alpha".into(),
            sent_messages: 2,
            sent_bytes: 210,
            received_messages: 1,
            received_bytes: 7,
            ..Usage::default()
        }
    );
    assert_eq!(
        (
            u[1].organisation.as_str(),
            u[1].sent_messages,
            u[1].sent_bytes
        ),
        ("beta", 1, 7)
    );
    assert_eq!((u[1].received_messages, u[1].received_bytes), (1, 10));
    assert_eq!(
        u[2],
        Usage {
            subscriber_id: idle.id,
            organisation: "idle".into(),
            ..Usage::default()
        }
    );
    // [from, to): 250 is in the next period.
    let u = store.usage(200, 300).unwrap();
    assert_eq!((u[0].sent_messages, u[0].sent_bytes), (1, 3000));
    assert_eq!((u[1].received_messages, u[1].received_bytes), (1, 3000));
    let u = store.usage(0, 100).unwrap();
    assert!(u
        .iter()
        .all(|x| x.sent_messages == 0 && x.received_messages == 0));
    // Purging messages does not change the ledger.
    store.purge(i64::MAX, i64::MAX).unwrap();
    assert_eq!(store.usage(100, 200).unwrap()[0].sent_bytes, 210);
    assert_eq!(store.usage(0, i64::MAX).unwrap()[1].received_bytes, 3010);
}

/// Co-ordination messages (receipts, refusal notices) are counted apart from documents, sent at
/// acceptance and received at their recipient's AS4 receipt, bytes as pushed.
#[test]
fn coordination_messages_are_metered_apart() {
    let dir = TempDir::new("usage-coord");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, b) = setup(&store);
    store
        .accept(&msg(&a, &b, "mpc-b", "m1", &[0; 100], 100), &NONE)
        .unwrap();
    store
        .accept(&msg(&a, &b, "mpc-b", "m2", &[0; 200], 100), &NONE)
        .unwrap();
    store.mark_delivered(&b, "m1", b"r", 110).unwrap();
    store
        .accept(&receipt(&b, &a, "mpc-a", "r1", "m1", &[1; 33], 120), &NONE)
        .unwrap();
    store
        .accept(&notice(&b, &a, "mpc-a", "n1", "m2"), &NONE) // 6 bytes, at 500
        .unwrap();
    store.mark_delivered(&a, "r1", b"r", 130).unwrap();
    let u = store.usage(0, 1000).unwrap();
    let alpha = &u[0];
    let beta = &u[1];
    assert_eq!(
        (
            alpha.sent_messages,
            alpha.sent_bytes,
            alpha.received_messages
        ),
        (2, 300, 0)
    );
    assert_eq!(
        (
            alpha.coordination_sent_messages,
            alpha.coordination_received_messages,
            alpha.coordination_received_bytes
        ),
        (0, 1, 33)
    );
    assert_eq!(
        (
            beta.sent_messages,
            beta.received_messages,
            beta.received_bytes
        ),
        (0, 1, 100)
    );
    assert_eq!(
        (
            beta.coordination_sent_messages,
            beta.coordination_sent_bytes,
            beta.coordination_received_messages
        ),
        (2, 39, 0)
    );
}
