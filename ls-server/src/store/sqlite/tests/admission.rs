use super::*;

#[test]
fn a_message_above_the_recipients_limit_is_refused_before_it_is_written() {
    let dir = TempDir::new("limit");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, b) = setup(&store);
    assert_eq!(
        store.party(&b).unwrap().unwrap().max_document_bytes,
        coordination::DEFAULT_MAX_DOCUMENT_BYTES
    );
    // A limit of 1 byte: messages of up to 1 + MESSAGE_OVERHEAD bytes.
    store.set_party_limit(&b, 1).unwrap();
    assert_eq!(store.party(&b).unwrap().unwrap().max_document_bytes, 1);
    let max = coordination::message_limit_for(1) as usize;
    let r = refused(store.accept(&msg(&a, &b, "mpc-b", "big", &vec![0; max + 1], 10), &NONE));
    assert_eq!(
        r,
        Refused::RecipientLimit {
            recipient: b.clone(),
            size: max as u64 + 1,
            max_message_bytes: max as u64,
            max_document_bytes: 1,
        }
    );
    let text = r.to_string();
    assert!(
        text.contains(&(max + 1).to_string())
            && text.contains("B")
            && text.contains(&max.to_string()),
        "{text}"
    );
    assert!(payload_files(&dir.0).is_empty(), "nothing written");
    assert!(store.messages(None, 10).unwrap().is_empty());
    assert_eq!(
        store
            .accept(&msg(&a, &b, "mpc-b", "fits", &vec![0; max], 10), &NONE)
            .unwrap(),
        Accepted::Stored
    );
    // Limits are checked per recipient; invalid limits are refused.
    assert!(matches!(
        store.set_party_limit(&b, 0),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.set_party_limit(&b, u64::MAX),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.set_party_limit(&PartyKey::new("", "nobody"), 5),
        Err(StoreError::NotFound(_))
    ));
    // A message accepted before the limit was lowered is still answered as a duplicate.
    store.set_party_limit(&a, 1).unwrap();
    store.set_party_limit(&b, 1 << 30).unwrap();
    let big = msg(&a, &b, "mpc-b", "before", &vec![1; max + 10], 10);
    store.accept(&big, &NONE).unwrap();
    store.set_party_limit(&b, 1).unwrap();
    assert!(matches!(
        store.accept(&big, &NONE),
        Ok(Accepted::Duplicate { .. })
    ));
}

#[test]
fn a_reused_message_id_is_refused_and_a_retry_is_a_duplicate() {
    let dir = TempDir::new("reuse");
    let store = SqliteStore::open(&dir.0, 4).unwrap();
    let (a, b) = setup(&store);
    let first = msg(&a, &b, "mpc-b", "m1", b"first body", 10);
    store.accept(&first, &NONE).unwrap();
    // The same content signed again (other bytes, same fingerprint): a duplicate.
    let resigned = NewMessage {
        body: b"first body, signed again".to_vec().into(),
        ..first.clone()
    };
    assert!(matches!(
        store.accept(&resigned, &NONE),
        Ok(Accepted::Duplicate { .. })
    ));
    // Other content.
    let other = NewMessage {
        content_sha256: "ff".repeat(32),
        ..first.clone()
    };
    assert_eq!(
        refused(store.accept(&other, &NONE)),
        Refused::MessageIdReused {
            first_recipient: b.clone()
        }
    );
    // Another recipient, same content.
    assert!(matches!(
        refused(store.accept(&msg(&a, &a, "mpc-a", "m1", b"first body", 10), &NONE)),
        Refused::MessageIdReused { .. }
    ));
    // Nothing was stored or left behind.
    assert_eq!(store.messages(None, 10).unwrap().len(), 1);
    assert_eq!(payload_files(&dir.0).len(), 1);
}

#[test]
fn the_account_quota_counts_undelivered_bytes_of_all_its_parties() {
    let dir = TempDir::new("quota");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, b) = setup(&store);
    // A second party of alpha's account.
    let a2 = PartyKey::new("", "A2");
    let alpha = store.party(&a).unwrap().unwrap().subscriber_id;
    store
        .register(alpha, &a2, "mpc-a2", b"cert-a2", &fp(9), 1000)
        .unwrap();
    let limits = AcceptLimits {
        min_free_bytes: 0,
        max_queued_bytes_per_subscriber: 100,
    };
    store
        .accept(&msg(&a, &b, "mpc-b", "m1", &[0; 60], 10), &limits)
        .unwrap();
    store
        .accept(&msg(&a2, &b, "mpc-b", "m2", &[0; 40], 10), &limits)
        .unwrap();
    let r = refused(store.accept(&msg(&a2, &b, "mpc-b", "m3", &[0; 1], 10), &limits));
    assert_eq!(
        r,
        Refused::QuotaExceeded {
            subscriber_id: alpha,
            queued: 100,
            size: 1,
            quota: 100
        }
    );
    // Other accounts are not concerned; 0 means no quota.
    store
        .accept(&msg(&b, &a, "mpc-a", "n1", &[0; 100], 10), &limits)
        .unwrap();
    store
        .accept(&msg(&a, &b, "mpc-b", "m4", &[0; 1000], 10), &NONE)
        .unwrap();
    let q = store.queued_bytes().unwrap();
    let beta = store.party(&b).unwrap().unwrap().subscriber_id;
    assert_eq!(q, vec![(alpha, 1100), (beta, 100)]);
    // Delivering (and expiring) frees the quota; leased messages still count.
    store.claim_next("mpc-b", 20, 60).unwrap().unwrap();
    store.mark_delivered(&b, "m4", b"r", 30).unwrap();
    assert!(matches!(
        refused(store.accept(&msg(&a, &b, "mpc-b", "m5", &[0; 1], 40), &limits)),
        Refused::QuotaExceeded { queued: 100, .. }
    ));
    store.mark_delivered(&b, "m1", b"r", 30).unwrap();
    store
        .accept(&msg(&a, &b, "mpc-b", "m5", &[0; 60], 40), &limits)
        .unwrap();
    // A refusal notice is exempt: it frees its message's bytes.
    store
        .accept(
            &notice(&b, &a2, "mpc-a2", "n2", "m2"),
            &AcceptLimits {
                min_free_bytes: 0,
                max_queued_bytes_per_subscriber: 1,
            },
        )
        .unwrap();
    assert_eq!(store.queued_bytes().unwrap()[0], (alpha, 60));
}

/// The quota's sum uses the partial covering index, not a scan of all messages.
#[test]
fn the_quota_sum_uses_the_pending_sender_index() {
    let dir = TempDir::new("quota-plan");
    drop(SqliteStore::open(&dir.0, 16).unwrap());
    let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT COALESCE(SUM(m.size), 0) FROM parties p JOIN \
             messages m ON m.sender_ptype = p.ptype AND m.sender_id = p.pid \
             AND m.state IN ('waiting', 'leased') WHERE p.subscriber_id = ?1",
        )
        .unwrap()
        .query_map([1], |r| r.get::<_, String>(3))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("messages_pending_sender"), "{plan}");
}

#[test]
fn too_little_free_space_refuses_a_push_before_anything_is_written() {
    let dir = TempDir::new("space");
    let store = SqliteStore::open(&dir.0, 4).unwrap();
    let (a, b) = setup(&store);
    let free = store.free_bytes().unwrap().unwrap();
    assert!(free > 0);
    let all = AcceptLimits {
        min_free_bytes: free.saturating_mul(2),
        max_queued_bytes_per_subscriber: 0,
    };
    for body in [&b"big body for a file"[..], b"tiny"] {
        match store.accept(&msg(&a, &b, "mpc-b", "m1", body, 10), &all) {
            Err(StoreError::LowSpace {
                available,
                needed,
                reserve,
            }) => {
                assert!(available > 0 && needed >= body.len() as u64);
                assert_eq!(reserve, free * 2);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(payload_files(&dir.0).is_empty());
    assert!(store.messages(None, 10).unwrap().is_empty());
    // A modest reserve lets it through; a duplicate is answered even without room.
    let some = AcceptLimits {
        min_free_bytes: 1024,
        ..all
    };
    let m = msg(&a, &b, "mpc-b", "m1", b"big body for a file", 10);
    assert_eq!(store.accept(&m, &some).unwrap(), Accepted::Stored);
    assert!(matches!(
        store.accept(&m, &all),
        Ok(Accepted::Duplicate { .. })
    ));
    // Claims and receipts are not held to the reserve.
    assert!(store.claim_next("mpc-b", 20, 60).unwrap().is_some());
    assert_eq!(
        store.mark_delivered(&b, "m1", b"r", 30).unwrap(),
        Delivery::Delivered
    );
}

#[test]
fn a_refusal_notice_fails_the_refused_message_and_waits_for_its_sender() {
    let dir = TempDir::new("notice");
    let store = SqliteStore::open(&dir.0, 8).unwrap(); // "notice" inline, "file body one" not
    let (a, b) = setup(&store);
    store
        .accept(&msg(&a, &b, "mpc-b", "m1", b"file body one", 10), &NONE)
        .unwrap();
    store
        .accept(&msg(&a, &b, "mpc-b", "m2", b"two", 11), &NONE)
        .unwrap();
    assert_eq!(payload_files(&dir.0).len(), 1);
    assert_eq!(
        store
            .claim_next("mpc-b", 20, 60)
            .unwrap()
            .unwrap()
            .message_id,
        "m1"
    );
    // B refuses m1 (leased): m1 is failed, its body gone, never offered again; m2 is.
    assert_eq!(
        store
            .accept(&notice(&b, &a, "mpc-a", "n1", "m1"), &NONE)
            .unwrap(),
        Accepted::NoticeStored(NoticeEffect::Failed)
    );
    let r = record(&store, &a, "m1");
    assert_eq!(r.state, "failed");
    assert_eq!(
        r.refusal,
        Some(RefusalRecord {
            class: "cannot_open".into(),
            notice_id: "n1".into(),
            at: 500
        })
    );
    assert!(
        payload_files(&dir.0).is_empty(),
        "the refused body is removed"
    );
    assert_eq!(
        store
            .claim_next("mpc-b", 1000, 60)
            .unwrap()
            .unwrap()
            .message_id,
        "m2"
    );
    assert!(store
        .claim_next("mpc-b", 5000, 60)
        .unwrap()
        .is_some_and(|c| c.message_id == "m2"));
    assert!(store.queue_depths().unwrap().contains(&(b.clone(), 1)));
    // The notice waits for A like any message.
    let c = store.claim_next("mpc-a", 20, 60).unwrap().unwrap();
    assert_eq!(
        (c.message_id.as_str(), &c.body.to_vec().unwrap()[..]),
        ("n1", &b"notice"[..])
    );
    // A receipt for the failed message changes nothing.
    assert_eq!(
        store.mark_delivered(&b, "m1", b"r", 30).unwrap(),
        Delivery::Unknown
    );
    // The same notice again is a duplicate; another one for m1 is refused.
    assert!(matches!(
        store.accept(&notice(&b, &a, "mpc-a", "n1", "m1"), &NONE),
        Ok(Accepted::Duplicate { .. })
    ));
    assert_eq!(
        refused(store.accept(&notice(&b, &a, "mpc-a", "n2", "m1"), &NONE)),
        Refused::AlreadyRefused {
            message_id: "m1".into(),
            notice_id: "n1".into()
        }
    );
    // A notice for a message the notice's sender did not receive, or not to its sender.
    assert_eq!(
        refused(store.accept(&notice(&b, &a, "mpc-a", "n3", "nope"), &NONE)),
        Refused::RefusedMessageUnknown {
            message_id: "nope".into()
        }
    );
    assert_eq!(
        refused(store.accept(&notice(&a, &b, "mpc-b", "n4", "m2"), &NONE)),
        Refused::RefusedMessageUnknown {
            message_id: "m2".into()
        }
    );
    let c3 = PartyKey::new("", "C");
    let gamma = subscriber(&store, "gamma");
    store
        .register(gamma.id, &c3, "mpc-c", b"cert-c", &fp(3), 1000)
        .unwrap();
    assert_eq!(
        refused(store.accept(&notice(&b, &c3, "mpc-c", "n5", "m2"), &NONE)),
        Refused::RefusedMessageOtherSender {
            message_id: "m2".into(),
            sender: a.clone()
        }
    );
    // After delivery: the state stays, the refusal is recorded, the notice goes to A.
    assert_eq!(
        store.mark_delivered(&b, "m2", b"r", 40).unwrap(),
        Delivery::Delivered
    );
    assert_eq!(
        store
            .accept(&notice(&b, &a, "mpc-a", "n6", "m2"), &NONE)
            .unwrap(),
        Accepted::NoticeStored(NoticeEffect::AfterDelivery)
    );
    let r = record(&store, &a, "m2");
    assert_eq!(r.state, "delivered");
    assert_eq!(r.refusal.unwrap().notice_id, "n6");
    // An expired message can be refused too.
    store
        .accept(&msg(&a, &b, "mpc-b", "m3", b"three", 50), &NONE)
        .unwrap();
    store.purge(0, 60).unwrap();
    assert_eq!(
        store
            .accept(&notice(&b, &a, "mpc-a", "n7", "m3"), &NONE)
            .unwrap(),
        Accepted::NoticeStored(NoticeEffect::Failed)
    );
    assert_eq!(state_of(&store, "m3"), "failed");
    // Refusals do not count as received in the usage ledger; notices count as co-ordination
    // messages sent, not as documents.
    let u = store.usage(0, 1000).unwrap();
    assert_eq!((u[1].sent_messages, u[1].received_messages), (0, 1));
    assert_eq!(
        (
            u[1].coordination_sent_messages,
            u[1].coordination_sent_bytes
        ),
        (3, 3 * b"notice".len() as u64)
    );
}

#[test]
fn a_receipt_is_recorded_on_the_receipted_document_and_waits_for_its_sender() {
    let dir = TempDir::new("receipt");
    let store = SqliteStore::open(&dir.0, 1024).unwrap();
    let (a, b) = setup(&store);
    for id in ["m1", "m2", "m3"] {
        store
            .accept(&msg(&a, &b, "mpc-b", id, b"document", 10), &NONE)
            .unwrap();
    }
    assert_eq!(record(&store, &a, "m1").receipt_returned, None);
    // B receipts m1 (still waiting: the receipt does not depend on the AS4 receipt).
    assert_eq!(
        store
            .accept(&receipt(&b, &a, "mpc-a", "r1", "m1", b"ess", 600), &NONE)
            .unwrap(),
        Accepted::ReceiptStored
    );
    let r = record(&store, &a, "m1");
    assert_eq!(
        r.receipt_returned,
        Some(ReceiptReturned {
            receipt_id: "r1".into(),
            at: 600
        })
    );
    assert_eq!(r.state, "waiting");
    assert_eq!(r.refusal, None);
    // The receipt waits for A like any message.
    let c = store.claim_next("mpc-a", 610, 60).unwrap().unwrap();
    assert_eq!(
        (c.message_id.as_str(), &c.body.to_vec().unwrap()[..]),
        ("r1", &b"ess"[..])
    );
    // The same receipt again is a duplicate; another one for m1 is refused.
    assert!(matches!(
        store.accept(&receipt(&b, &a, "mpc-a", "r1", "m1", b"ess", 620), &NONE),
        Ok(Accepted::Duplicate { .. })
    ));
    assert_eq!(
        refused(store.accept(&receipt(&b, &a, "mpc-a", "r2", "m1", b"ess", 620), &NONE)),
        Refused::AlreadyReceipted {
            message_id: "m1".into(),
            receipt_id: "r1".into()
        }
    );
    // Only for a document the receipt's sender received from the receipt's recipient.
    assert_eq!(
        refused(store.accept(&receipt(&b, &a, "mpc-a", "r3", "nope", b"ess", 620), &NONE)),
        Refused::ReceiptedMessageUnknown {
            message_id: "nope".into()
        }
    );
    assert_eq!(
        refused(store.accept(&receipt(&a, &b, "mpc-b", "r4", "m2", b"ess", 620), &NONE)),
        Refused::ReceiptedMessageUnknown {
            message_id: "m2".into()
        }
    );
    let c3 = PartyKey::new("", "C");
    let gamma = subscriber(&store, "gamma");
    store
        .register(gamma.id, &c3, "mpc-c", b"cert-c", &fp(3), 1000)
        .unwrap();
    assert_eq!(
        refused(store.accept(&receipt(&b, &c3, "mpc-c", "r5", "m2", b"ess", 620), &NONE)),
        Refused::ReceiptedMessageOtherSender {
            message_id: "m2".into(),
            sender: a.clone()
        }
    );
    // Not for a co-ordination message (no receipt of a receipt).
    assert_eq!(
        refused(store.accept(&receipt(&a, &b, "mpc-b", "r6", "r1", b"ess", 620), &NONE)),
        Refused::ReceiptForCoordination {
            message_id: "r1".into()
        }
    );
    // Not for a refused message, delivered before or not.
    store
        .accept(&notice(&b, &a, "mpc-a", "n1", "m2"), &NONE)
        .unwrap();
    assert_eq!(
        refused(store.accept(&receipt(&b, &a, "mpc-a", "r7", "m2", b"ess", 620), &NONE)),
        Refused::ReceiptForRefused {
            message_id: "m2".into(),
            notice_id: "n1".into()
        }
    );
    assert_eq!(
        store.mark_delivered(&b, "m3", b"r", 630).unwrap(),
        Delivery::Delivered
    );
    store
        .accept(&notice(&b, &a, "mpc-a", "n2", "m3"), &NONE)
        .unwrap();
    assert!(matches!(
        refused(store.accept(&receipt(&b, &a, "mpc-a", "r8", "m3", b"ess", 640), &NONE)),
        Refused::ReceiptForRefused { .. }
    ));
    // A refusal notice after a receipt is recorded and routed as before.
    assert_eq!(
        store
            .accept(&notice(&b, &a, "mpc-a", "n3", "m1"), &NONE)
            .unwrap(),
        Accepted::NoticeStored(NoticeEffect::Failed)
    );
    let r = record(&store, &a, "m1");
    assert_eq!(r.state, "failed");
    assert_eq!(r.receipt_returned.unwrap().receipt_id, "r1");
    // Nothing refused was stored.
    let ids: HashSet<String> = store
        .messages(None, 100)
        .unwrap()
        .into_iter()
        .map(|r| r.message_id)
        .collect();
    for id in ["r2", "r3", "r4", "r5", "r6", "r7", "r8"] {
        assert!(!ids.contains(id), "{id} was stored");
    }
}

#[test]
fn receipts_are_held_to_the_quota_and_the_reserve_and_say_what_they_are() {
    let dir = TempDir::new("receipt-limits");
    let store = SqliteStore::open(&dir.0, 1024).unwrap();
    let (a, b) = setup(&store);
    store
        .accept(&msg(&a, &b, "mpc-b", "m1", b"document", 10), &NONE)
        .unwrap();
    store
        .accept(&msg(&b, &a, "mpc-a", "own", &[0; 50], 10), &NONE)
        .unwrap();
    // B's account has 50 bytes waiting: a receipt of 60 takes it over a quota of 100.
    let r1 = receipt(&b, &a, "mpc-a", "r1", "m1", &[1; 60], 20);
    let quota = AcceptLimits {
        min_free_bytes: 0,
        max_queued_bytes_per_subscriber: 100,
    };
    assert!(matches!(
        refused(store.accept(&r1, &quota)),
        Refused::QuotaExceeded {
            queued: 50,
            size: 60,
            ..
        }
    ));
    let free = store.free_bytes().unwrap().unwrap();
    assert!(matches!(
        store.accept(
            &r1,
            &AcceptLimits {
                min_free_bytes: free.saturating_mul(2),
                max_queued_bytes_per_subscriber: 0,
            }
        ),
        Err(StoreError::LowSpace { .. })
    ));
    assert_eq!(record(&store, &a, "m1").receipt_returned, None);
    // The store takes a co-ordination message only with what it says, and says it only of one.
    let unsaid = NewMessage {
        coordination: None,
        ..r1.clone()
    };
    assert!(matches!(
        store.accept(&unsaid, &NONE),
        Err(StoreError::Invalid(_))
    ));
    let document = NewMessage {
        service: "svc".into(),
        ..r1.clone()
    };
    assert!(matches!(
        store.accept(&document, &NONE),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.accept(&r1, &NONE).unwrap(), Accepted::ReceiptStored);
}
