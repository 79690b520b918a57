//! Messages: push → pull → receipt, duplicates and MessageId conflicts, bodies inline, in
//! memory and spooled; the recipient's limit and the account quota; co-ordination messages
//! (refusal notices, receipts, certificate updates and their answers).

use super::super::*;

/// Push → pull → receipt, duplicates, a reused MessageId, another sender's MessageId, a lease
/// that runs out and one given up early, bodies inline, in memory and spooled (several
/// chunks), FIFO per MPC.
pub fn round_trip(open: Open<'_>) {
    let s = &*open();
    let (a, b) = setup(s);
    let c = PartyKey::new("", "C");
    let sc = subscriber(s, "gamma");
    register(s, sc.id, &c, "mpc-c", b"cert-c", &fp(3)).unwrap();
    let small = b"hello".to_vec();
    let m1 = msg(&a, &b, "mpc-b", "m1", &small, 10);
    assert_eq!(s.accept(&m1, &NONE).unwrap(), Accepted::Stored);
    // The same again (from another node too): the first receipt.
    for again in [s.accept(&m1, &NONE), open().accept(&m1, &NONE)] {
        assert_eq!(
            again.unwrap(),
            Accepted::Duplicate {
                receipt_content_type: "application/soap+xml".into(),
                receipt: b"receipt for m1".to_vec()
            }
        );
    }
    // Other content or another recipient: refused; another sender's id for B: a conflict.
    let mut reused = m1.clone();
    reused.content_sha256 = "ff".repeat(32);
    assert_eq!(
        refused(s.accept(&reused, &NONE)),
        Refused::MessageIdReused {
            first_recipient: b.clone()
        }
    );
    assert_eq!(
        refused(s.accept(&msg(&a, &c, "mpc-c", "m1", &small, 10), &NONE)),
        Refused::MessageIdReused {
            first_recipient: b.clone()
        }
    );
    assert!(matches!(
        s.accept(&msg(&c, &b, "mpc-b", "m1", &small, 10), &NONE),
        Err(StoreError::Conflict(_))
    ));
    // ... but another recipient may have it from another sender.
    s.accept(&msg(&c, &a, "mpc-a", "m1", &small, 10), &NONE)
        .unwrap();
    // An unknown recipient.
    assert!(matches!(
        s.accept(
            &msg(&a, &PartyKey::new("", "x"), "mpc-x", "m9", &small, 10),
            &NONE
        ),
        Err(StoreError::NotFound(_))
    ));
    // A big body in memory and one spooled: 2.5 MiB each.
    let big: Vec<u8> = (0..(5u32 << 19)).map(|i| (i % 251) as u8).collect();
    s.accept(&msg(&a, &b, "mpc-b", "m2", &big, 11), &NONE)
        .unwrap();
    let (mut spool, mut f) = s.new_spool().unwrap();
    std::io::Write::write_all(&mut f, &big).unwrap();
    drop(f);
    spool.len = big.len() as u64;
    let spooled = NewMessage {
        body: MessageBody::Spooled(Arc::new(spool)),
        ..msg(&a, &b, "mpc-b", "m3", b"", 12)
    };
    assert_eq!(s.accept(&spooled, &NONE).unwrap(), Accepted::Stored);
    // Nothing waits in an unknown MPC.
    assert!(s.claim_next("mpc-x", 20, 60).unwrap().is_none());
    assert!(matches!(
        s.claim_next("mpc-b", 20, -1),
        Err(StoreError::Invalid(_))
    ));

    // FIFO, leased; nothing more to claim while leased (not from another node either).
    let c1 = s.claim_next("mpc-b", 20, 60).unwrap().unwrap();
    assert_eq!(
        (
            c1.message_id.as_str(),
            c1.attempt,
            &c1.sender,
            &c1.recipient
        ),
        ("m1", 1, &a, &b)
    );
    assert_eq!(c1.content_type, "multipart/related; boundary=x");
    assert_eq!(c1.body.to_vec().unwrap(), small);
    let c2 = s.claim_next("mpc-b", 20, 60).unwrap().unwrap();
    assert_eq!(
        (c2.message_id.as_str(), c2.body.len()),
        ("m2", big.len() as u64)
    );
    assert_eq!(c2.body.into_bytes().unwrap(), big);
    let c3 = open().claim_next("mpc-b", 20, 60).unwrap().unwrap();
    assert_eq!(c3.message_id, "m3");
    assert_eq!(c3.body.into_bytes().unwrap(), big);
    assert!(s.claim_next("mpc-b", 20, 60).unwrap().is_none());
    assert!(open().claim_next("mpc-b", 79, 60).unwrap().is_none());
    // Receipts; a repeated one; an unknown one; one from another recipient.
    assert_eq!(
        s.mark_delivered(&b, "m1", b"r", 30).unwrap(),
        Delivery::Delivered
    );
    assert_eq!(
        open().mark_delivered(&b, "m1", b"r", 31).unwrap(),
        Delivery::AlreadyDelivered
    );
    assert_eq!(
        s.mark_delivered(&b, "nope", b"r", 31).unwrap(),
        Delivery::Unknown
    );
    assert_eq!(
        s.mark_delivered(&c, "m2", b"r", 31).unwrap(),
        Delivery::Unknown
    );
    assert_eq!(s.recipients_of("m1").unwrap(), vec![b.clone(), a.clone()]);
    assert_eq!(s.recipients_of("m2").unwrap(), vec![b.clone()]);
    assert!(s.recipients_of("nope").unwrap().is_empty());
    // m2's lease runs out at 80: offered again, attempt 2; m3 released early; releasing a
    // message that is not leased changes nothing.
    s.release_claim(&b, "m3", 79).unwrap();
    s.release_claim(&b, "m1", 79).unwrap();
    s.release_claim(&b, "nope", 79).unwrap();
    let again = s.claim_next("mpc-b", 79, 60).unwrap().unwrap();
    assert_eq!((again.message_id.as_str(), again.attempt), ("m3", 2));
    let again = s.claim_next("mpc-b", 80, 60).unwrap().unwrap();
    assert_eq!((again.message_id.as_str(), again.attempt), ("m2", 2));
    assert_eq!(
        s.mark_delivered(&b, "m2", b"r", 90).unwrap(),
        Delivery::Delivered
    );
    let r = record(s, &a, "m2");
    assert_eq!(
        (
            r.state.as_str(),
            r.attempts,
            r.delivered_at,
            r.size,
            r.received_at
        ),
        ("delivered", 2, Some(90), big.len() as u64, 11)
    );
    assert_eq!(record(s, &a, "m3").state, "leased");
    // The message from C to A waits in A's MPC.
    assert_eq!(claim_all(s, "mpc-a", 100), ["m1"]);
}

/// The recipient's limit (refused before anything is written) and the account's quota over
/// all its parties (freed by delivery; refusal notices exempt, receipts not); the free-space
/// reserve where the store can tell its free space.
pub fn limits_and_quotas(open: Open<'_>) {
    let s = &*open();
    let (a, b) = setup(s);
    s.set_party_limit(&b, 10).unwrap();
    let max = coordination::message_limit_for(10);
    let over = vec![0u8; usize::try_from(max).unwrap() + 1];
    assert_eq!(
        refused(s.accept(&msg(&a, &b, "mpc-b", "big", &over, 10), &NONE)),
        Refused::RecipientLimit {
            recipient: b.clone(),
            size: max + 1,
            max_message_bytes: max,
            max_document_bytes: 10
        }
    );
    assert!(s.messages(None, 10).unwrap().is_empty());
    s.set_party_limit(&b, coordination::DEFAULT_MAX_DOCUMENT_BYTES)
        .unwrap();

    let a2 = PartyKey::new("", "A2");
    let alpha = s.party(&a).unwrap().unwrap().subscriber_id;
    let beta = s.party(&b).unwrap().unwrap().subscriber_id;
    register(s, alpha, &a2, "mpc-a2", b"cert-a2", &fp(9)).unwrap();
    let limits = AcceptLimits {
        min_free_bytes: 0,
        max_queued_bytes_per_subscriber: 100,
    };
    s.accept(&msg(&a, &b, "mpc-b", "m1", &[0; 60], 10), &limits)
        .unwrap();
    s.accept(&msg(&a2, &b, "mpc-b", "m2", &[0; 40], 10), &limits)
        .unwrap();
    assert_eq!(
        refused(s.accept(&msg(&a2, &b, "mpc-b", "m3", &[0; 1], 10), &limits)),
        Refused::QuotaExceeded {
            subscriber_id: alpha,
            queued: 100,
            size: 1,
            quota: 100
        }
    );
    // A duplicate is answered before the quota is looked at.
    assert!(matches!(
        s.accept(&msg(&a2, &b, "mpc-b", "m2", &[0; 40], 10), &limits),
        Ok(Accepted::Duplicate { .. })
    ));
    // Other accounts are not concerned; 0 means no quota.
    s.accept(&msg(&b, &a, "mpc-a", "n1", &[0; 100], 10), &limits)
        .unwrap();
    s.accept(&msg(&a, &b, "mpc-b", "m4", &[0; 1000], 10), &NONE)
        .unwrap();
    assert_eq!(s.queued_bytes().unwrap(), vec![(alpha, 1100), (beta, 100)]);
    // Delivering frees the quota; leased messages still count.
    s.claim_next("mpc-b", 20, 60).unwrap().unwrap();
    s.mark_delivered(&b, "m4", b"r", 30).unwrap();
    assert!(matches!(
        refused(s.accept(&msg(&a, &b, "mpc-b", "m5", &[0; 1], 40), &limits)),
        Refused::QuotaExceeded { queued: 100, .. }
    ));
    s.mark_delivered(&b, "m1", b"r", 30).unwrap();
    s.accept(&msg(&a, &b, "mpc-b", "m5", &[0; 60], 40), &limits)
        .unwrap();
    // A refusal notice is exempt: it frees its message's bytes.
    let tight = AcceptLimits {
        min_free_bytes: 0,
        max_queued_bytes_per_subscriber: 1,
    };
    s.accept(&notice(&b, &a2, "mpc-a2", "n2", "m2"), &tight)
        .unwrap();
    assert_eq!(s.queued_bytes().unwrap()[0], (alpha, 60));
    // A receipt is not: B's account has 100 + 6 bytes waiting (n1, n2).
    let r = NewMessage {
        body: vec![1u8; 60].into(),
        ..receipt(&b, &a, "mpc-a", "r1", "m5", 50)
    };
    assert_eq!(
        refused(s.accept(&r, &limits)),
        Refused::QuotaExceeded {
            subscriber_id: beta,
            queued: 106,
            size: 60,
            quota: 100
        }
    );
    if let Some(free) = s.free_bytes().unwrap() {
        let reserve = AcceptLimits {
            min_free_bytes: free.saturating_mul(2),
            max_queued_bytes_per_subscriber: 0,
        };
        assert!(matches!(
            s.accept(&r, &reserve),
            Err(StoreError::LowSpace { .. })
        ));
    }
    assert_eq!(record(s, &a, "m5").receipt_returned, None);
    assert_eq!(s.accept(&r, &NONE).unwrap(), Accepted::ReceiptStored);
}

/// A refusal notice fails the refused message (leased, waiting or expired: its body gone,
/// never offered again) or records itself on a delivered one; it waits for the refused
/// message's sender; it must name a message its sender received from its recipient, once.
pub fn refusal_notices(open: Open<'_>) {
    let s = &*open();
    let (a, b) = setup(s);
    let body = vec![5u8; INLINE_MAX * 3];
    s.accept(&msg(&a, &b, "mpc-b", "m1", &body, 10), &NONE)
        .unwrap();
    s.accept(&msg(&a, &b, "mpc-b", "m2", b"two", 11), &NONE)
        .unwrap();
    assert_eq!(
        s.claim_next("mpc-b", 20, 60).unwrap().unwrap().message_id,
        "m1"
    );
    assert_eq!(
        s.accept(&notice(&b, &a, "mpc-a", "n1", "m1"), &NONE)
            .unwrap(),
        Accepted::NoticeStored(NoticeEffect::Failed)
    );
    let r = record(s, &a, "m1");
    assert_eq!(r.state, "failed");
    assert_eq!(
        r.refusal,
        Some(RefusalRecord {
            class: "cannot_open".into(),
            notice_id: "n1".into(),
            at: 500
        })
    );
    // m1 is never offered again; m2 is.
    assert_eq!(claim_all(s, "mpc-b", 1000), ["m2"]);
    assert_eq!(claim_all(s, "mpc-b", 5000), ["m2"]);
    assert!(s.queue_depths().unwrap().contains(&(b.clone(), 1)));
    assert_eq!(s.recipients_of("m1").unwrap(), Vec::<PartyKey>::new());
    // The notice waits for A like any message.
    let c = s.claim_next("mpc-a", 20, 60).unwrap().unwrap();
    assert_eq!(
        (c.message_id.as_str(), &c.body.to_vec().unwrap()[..]),
        ("n1", &b"notice"[..])
    );
    // A receipt for the failed message changes nothing.
    assert_eq!(
        s.mark_delivered(&b, "m1", b"r", 30).unwrap(),
        Delivery::Unknown
    );
    // The same notice again is a duplicate; another one for m1 is refused.
    assert!(matches!(
        s.accept(&notice(&b, &a, "mpc-a", "n1", "m1"), &NONE),
        Ok(Accepted::Duplicate { .. })
    ));
    assert_eq!(
        refused(s.accept(&notice(&b, &a, "mpc-a", "n2", "m1"), &NONE)),
        Refused::AlreadyRefused {
            message_id: "m1".into(),
            notice_id: "n1".into()
        }
    );
    // A notice for a message the notice's sender did not receive, or not to its sender.
    assert_eq!(
        refused(s.accept(&notice(&b, &a, "mpc-a", "n3", "nope"), &NONE)),
        Refused::RefusedMessageUnknown {
            message_id: "nope".into()
        }
    );
    assert_eq!(
        refused(s.accept(&notice(&a, &b, "mpc-b", "n4", "m2"), &NONE)),
        Refused::RefusedMessageUnknown {
            message_id: "m2".into()
        }
    );
    let c3 = PartyKey::new("", "C");
    let gamma = subscriber(s, "gamma");
    register(s, gamma.id, &c3, "mpc-c", b"cert-c", &fp(3)).unwrap();
    assert_eq!(
        refused(s.accept(&notice(&b, &c3, "mpc-c", "n5", "m2"), &NONE)),
        Refused::RefusedMessageOtherSender {
            message_id: "m2".into(),
            sender: a.clone()
        }
    );
    // After delivery: the state stays, the refusal is recorded, the notice goes to A.
    assert_eq!(
        s.mark_delivered(&b, "m2", b"r", 40).unwrap(),
        Delivery::Delivered
    );
    assert_eq!(
        s.accept(&notice(&b, &a, "mpc-a", "n6", "m2"), &NONE)
            .unwrap(),
        Accepted::NoticeStored(NoticeEffect::AfterDelivery)
    );
    let r = record(s, &a, "m2");
    assert_eq!(r.state, "delivered");
    assert_eq!(r.refusal.unwrap().notice_id, "n6");
    // An expired message can be refused too.
    s.accept(&msg(&a, &b, "mpc-b", "m3", b"three", 50), &NONE)
        .unwrap();
    assert_eq!(
        s.purge(0, 60).unwrap(),
        Purged {
            delivered: 0,
            expired: 1
        }
    );
    assert_eq!(
        s.accept(&notice(&b, &a, "mpc-a", "n7", "m3"), &NONE)
            .unwrap(),
        Accepted::NoticeStored(NoticeEffect::Failed)
    );
    assert_eq!(record(s, &a, "m3").state, "failed");
    // Notices count as co-ordination messages sent, not as documents; the refused ones were
    // not received.
    let u = s.usage(0, 1000).unwrap();
    assert_eq!((u[1].sent_messages, u[1].received_messages), (0, 1));
    assert_eq!(
        (
            u[1].coordination_sent_messages,
            u[1].coordination_sent_bytes
        ),
        (3, 3 * b"notice".len() as u64)
    );
    // Nothing refused was stored.
    for id in ["n2", "n3", "n4", "n5"] {
        assert!(s
            .messages(None, 100)
            .unwrap()
            .iter()
            .all(|r| r.message_id != id));
    }
}

/// A receipt records itself on the receipted document (once; not on a refused one or a
/// co-ordination message) and waits for the document's sender; a certificate update's answer
/// records itself on the update (once). A co-ordination message must say what it is, and
/// only one may.
pub fn receipts_and_answers(open: Open<'_>) {
    let s = &*open();
    let (a, b) = setup(s);
    for id in ["m1", "m2", "m3"] {
        s.accept(&msg(&a, &b, "mpc-b", id, b"document", 10), &NONE)
            .unwrap();
    }
    assert_eq!(record(s, &a, "m1").receipt_returned, None);
    let r1 = receipt(&b, &a, "mpc-a", "r1", "m1", 600);
    assert_eq!(s.accept(&r1, &NONE).unwrap(), Accepted::ReceiptStored);
    let r = record(s, &a, "m1");
    assert_eq!(
        r.receipt_returned,
        Some(ReceiptReturned {
            receipt_id: "r1".into(),
            at: 600
        })
    );
    assert_eq!((r.state.as_str(), r.refusal), ("waiting", None));
    let c = s.claim_next("mpc-a", 610, 60).unwrap().unwrap();
    assert_eq!(
        (c.message_id.as_str(), &c.body.to_vec().unwrap()[..]),
        ("r1", &b"receipt"[..])
    );
    assert!(matches!(
        s.accept(&receipt(&b, &a, "mpc-a", "r1", "m1", 620), &NONE),
        Ok(Accepted::Duplicate { .. })
    ));
    assert_eq!(
        refused(s.accept(&receipt(&b, &a, "mpc-a", "r2", "m1", 620), &NONE)),
        Refused::AlreadyReceipted {
            message_id: "m1".into(),
            receipt_id: "r1".into()
        }
    );
    assert_eq!(
        refused(s.accept(&receipt(&b, &a, "mpc-a", "r3", "nope", 620), &NONE)),
        Refused::ReceiptedMessageUnknown {
            message_id: "nope".into()
        }
    );
    assert_eq!(
        refused(s.accept(&receipt(&a, &b, "mpc-b", "r4", "m2", 620), &NONE)),
        Refused::ReceiptedMessageUnknown {
            message_id: "m2".into()
        }
    );
    let c3 = PartyKey::new("", "C");
    let gamma = subscriber(s, "gamma");
    register(s, gamma.id, &c3, "mpc-c", b"cert-c", &fp(3)).unwrap();
    assert_eq!(
        refused(s.accept(&receipt(&b, &c3, "mpc-c", "r5", "m2", 620), &NONE)),
        Refused::ReceiptedMessageOtherSender {
            message_id: "m2".into(),
            sender: a.clone()
        }
    );
    assert_eq!(
        refused(s.accept(&receipt(&a, &b, "mpc-b", "r6", "r1", 620), &NONE)),
        Refused::ReceiptForCoordination {
            message_id: "r1".into()
        }
    );
    s.accept(&notice(&b, &a, "mpc-a", "n1", "m2"), &NONE)
        .unwrap();
    assert_eq!(
        refused(s.accept(&receipt(&b, &a, "mpc-a", "r7", "m2", 620), &NONE)),
        Refused::ReceiptForRefused {
            message_id: "m2".into(),
            notice_id: "n1".into()
        }
    );
    assert_eq!(
        s.mark_delivered(&b, "m3", b"r", 630).unwrap(),
        Delivery::Delivered
    );
    s.accept(&notice(&b, &a, "mpc-a", "n2", "m3"), &NONE)
        .unwrap();
    assert!(matches!(
        refused(s.accept(&receipt(&b, &a, "mpc-a", "r8", "m3", 640), &NONE)),
        Refused::ReceiptForRefused { .. }
    ));
    // A refusal notice after a receipt is recorded as before.
    assert_eq!(
        s.accept(&notice(&b, &a, "mpc-a", "n3", "m1"), &NONE)
            .unwrap(),
        Accepted::NoticeStored(NoticeEffect::Failed)
    );
    let r = record(s, &a, "m1");
    assert_eq!(
        (
            r.state.as_str(),
            r.receipt_returned.unwrap().receipt_id.as_str()
        ),
        ("failed", "r1")
    );

    // A certificate update from A to B and B's answer, once.
    let update = NewMessage {
        service: coordination::SERVICE.into(),
        action: coordination::ACTION_CERTIFICATE_UPDATE.into(),
        coordination: Some(Coordination::CertificateUpdate),
        ..msg(&a, &b, "mpc-b", "u1", b"update", 700)
    };
    assert_eq!(s.accept(&update, &NONE).unwrap(), Accepted::Stored);
    let answer = |id: &str, of: &str| NewMessage {
        service: coordination::SERVICE.into(),
        action: coordination::ACTION_CERTIFICATE_UPDATE_ANSWER.into(),
        coordination: Some(Coordination::UpdateAnswer {
            message_id: of.into(),
        }),
        ..msg(&b, &a, "mpc-a", id, b"", 710)
    };
    assert_eq!(
        refused(s.accept(&answer("x0", "m3"), &NONE)),
        Refused::AnsweredUpdateUnknown {
            message_id: "m3".into()
        }
    );
    assert_eq!(
        s.accept(&answer("x1", "u1"), &NONE).unwrap(),
        Accepted::Stored
    );
    assert_eq!(
        record(s, &a, "u1").receipt_returned,
        Some(ReceiptReturned {
            receipt_id: "x1".into(),
            at: 710
        })
    );
    assert_eq!(
        refused(s.accept(&answer("x2", "u1"), &NONE)),
        Refused::AlreadyAnswered {
            message_id: "u1".into(),
            answer_id: "x1".into()
        }
    );
    assert!(matches!(
        s.accept(&answer("x1", "u1"), &NONE),
        Ok(Accepted::Duplicate { .. })
    ));
    // A receipt for an update: receipts are for documents.
    assert_eq!(
        refused(s.accept(&receipt(&b, &a, "mpc-a", "r9", "u1", 720), &NONE)),
        Refused::ReceiptForCoordination {
            message_id: "u1".into()
        }
    );
    // Saying nothing, or saying it of a document: invalid.
    let unsaid = NewMessage {
        coordination: None,
        ..receipt(&b, &a, "mpc-a", "r10", "m3", 800)
    };
    assert!(matches!(
        s.accept(&unsaid, &NONE),
        Err(StoreError::Invalid(_))
    ));
    let document = NewMessage {
        service: "svc".into(),
        ..receipt(&b, &a, "mpc-a", "r10", "m3", 800)
    };
    assert!(matches!(
        s.accept(&document, &NONE),
        Err(StoreError::Invalid(_))
    ));
    // Nothing refused was stored.
    let ids: Vec<String> = s
        .messages(None, 100)
        .unwrap()
        .into_iter()
        .map(|r| r.message_id)
        .collect();
    for id in [
        "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "x0", "x2",
    ] {
        assert!(!ids.iter().any(|i| i == id), "{id} was stored");
    }
}
