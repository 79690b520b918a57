//! Retention (purge, expiry, pruning records) and what admin and metrics read: queue depths,
//! queued bytes, message records, usage.

use super::super::*;

fn state_of(s: &dyn Store, sender: &PartyKey, id: &str) -> String {
    record(s, sender, id).state
}

/// Purge removes delivered messages' bodies after the retention time, expires undelivered
/// ones (leased too: their bodies go, they are not offered again, a late receipt is unknown);
/// records and duplicates stay until `prune_records` removes finished records (in batches),
/// keeping the usage ledger.
pub fn purge_and_prune(open: Open<'_>) {
    let s = &*open();
    let (a, b) = setup(s);
    let big = vec![3u8; INLINE_MAX * 2];
    // d1 (big) and d2 delivered at 100 and 200; w1 (big) waiting since 50; w2 (big) since 300,
    // w3 since 40.
    for (id, body, at) in [
        ("d1", &big[..], 10),
        ("d2", &b"d2"[..], 20),
        ("w3", &b"w3"[..], 40),
        ("w1", &big[..], 50),
        ("w2", &big[..], 300),
    ] {
        s.accept(&msg(&a, &b, "mpc-b", id, body, at), &NONE)
            .unwrap();
    }
    assert_eq!(
        s.mark_delivered(&b, "d1", b"r", 100).unwrap(),
        Delivery::Delivered
    );
    assert_eq!(
        s.mark_delivered(&b, "d2", b"r", 200).unwrap(),
        Delivery::Delivered
    );
    // Nothing old enough.
    assert_eq!(s.purge(100, 40).unwrap(), Purged::default());
    assert_eq!(
        s.purge(150, 60).unwrap(),
        Purged {
            delivered: 1,
            expired: 2
        }
    );
    let states: Vec<String> = ["d1", "d2", "w1", "w3", "w2"]
        .iter()
        .map(|id| state_of(s, &a, id))
        .collect();
    assert_eq!(
        states,
        ["purged", "delivered", "expired", "expired", "waiting"]
    );
    // Expired messages are not offered; a leased one expires too, and its receipt then is
    // unknown; a purged one's receipt is a repeat.
    let c = s.claim_next("mpc-b", 400, 60).unwrap().unwrap();
    assert_eq!(
        (c.message_id.as_str(), c.body.len()),
        ("w2", big.len() as u64)
    );
    assert!(s.claim_next("mpc-b", 450, 60).unwrap().is_none());
    assert_eq!(
        s.purge(1000, 1000).unwrap(),
        Purged {
            delivered: 1,
            expired: 1
        }
    );
    // The claim taken before keeps its whole body.
    assert_eq!(c.body.into_bytes().unwrap(), big);
    assert_eq!(state_of(s, &a, "w2"), "expired");
    assert!(s.claim_next("mpc-b", 2000, 60).unwrap().is_none());
    assert_eq!(
        s.mark_delivered(&b, "w2", b"r", 2000).unwrap(),
        Delivery::Unknown
    );
    assert_eq!(
        s.mark_delivered(&b, "d1", b"r", 2000).unwrap(),
        Delivery::AlreadyDelivered
    );
    assert_eq!(s.recipients_of("d1").unwrap(), vec![b.clone()]);
    assert!(s.recipients_of("w2").unwrap().is_empty());
    // Records stay, and a resent purged message is still a duplicate.
    assert_eq!(s.messages(None, 100).unwrap().len(), 5);
    assert!(matches!(
        s.accept(&msg(&a, &b, "mpc-b", "d1", &big, 3000), &NONE)
            .unwrap(),
        Accepted::Duplicate { .. }
    ));
    assert_eq!(s.purge(5000, 5000).unwrap(), Purged::default());

    // Pruning: finished records received before the time go (purged, expired, failed), the
    // ledger stays.
    for (id, at) in [("x1", 10), ("live", 10), ("late", 300)] {
        s.accept(&msg(&a, &b, "mpc-b", id, b"body", at), &NONE)
            .unwrap();
    }
    s.mark_delivered(&b, "late", b"r", 310).unwrap();
    s.accept(&notice(&b, &a, "mpc-a", "n1", "x1"), &NONE)
        .unwrap();
    let before = s.usage(0, 10_000).unwrap();
    // d1, d2 (purged), w1, w3 (expired), x1 (failed); not "live" (waiting), w2 (expired,
    // received at 300), "late" nor the notice n1 (received at 500).
    assert_eq!(s.prune_records(100).unwrap(), 5);
    let mut left: Vec<String> = s
        .messages(None, 100)
        .unwrap()
        .into_iter()
        .map(|r| r.message_id)
        .collect();
    left.sort();
    assert_eq!(left, ["late", "live", "n1", "w2"]);
    assert_eq!(s.usage(0, 10_000).unwrap(), before);
    assert_eq!(s.prune_records(100).unwrap(), 0);
    // A message re-sent after its record is gone is a new message.
    assert_eq!(
        s.accept(&msg(&a, &b, "mpc-b", "d1", b"body", 400), &NONE)
            .unwrap(),
        Accepted::Stored
    );
    // More records than one batch of PostgreSQL's purge and prune (1000 per transaction;
    // SQLite prunes 5000 per transaction, its own tests cross that).
    for i in 0..1007 {
        s.accept(&msg(&a, &b, "mpc-b", &format!("bulk{i}"), b"b", 1), &NONE)
            .unwrap();
    }
    assert_eq!(
        s.purge(0, 2).unwrap(),
        Purged {
            delivered: 0,
            expired: 1007
        }
    );
    assert_eq!(s.prune_records(100).unwrap(), 1007);
}

/// Queue depths per recipient (every party, 0 when nothing waits, byte-wise order), queued
/// bytes per account (every account), message records per party (newest first, limited), and
/// usage per account and period (documents and co-ordination messages apart, duplicates and
/// repeated receipts not counted, unchanged by purges).
pub fn reports(open: Open<'_>) {
    let s = &*open();
    let (a, b) = setup(s);
    let idle = subscriber(s, "idle");
    let z = PartyKey::new("", "Z");
    let lower = PartyKey::new("", "b");
    register(s, idle.id, &z, "mpc-z", b"z", &fp(5)).unwrap();
    register(s, idle.id, &lower, "mpc-lb", b"lb", &fp(6)).unwrap();
    assert_eq!(
        s.queue_depths().unwrap(),
        [
            (b.clone(), 0),
            (z.clone(), 0),
            (lower.clone(), 0),
            (a.clone(), 0)
        ]
    );
    for (from, to, mpc, id, n, at) in [
        (&a, &b, "mpc-b", "m1", 10, 100),
        (&a, &b, "mpc-b", "m2", 200, 150),
        (&a, &b, "mpc-b", "m3", 3000, 250),
        (&b, &a, "mpc-a", "n1", 7, 120),
        (&a, &b, "mpc-b", "m1", 10, 160), // a duplicate: not counted
    ] {
        s.accept(&msg(from, to, mpc, id, &vec![0; n], at), &NONE)
            .unwrap();
    }
    assert_eq!(
        s.queue_depths().unwrap(),
        [
            (b.clone(), 3),
            (z.clone(), 0),
            (lower.clone(), 0),
            (a.clone(), 1)
        ]
    );
    let sa = s.party(&a).unwrap().unwrap().subscriber_id;
    let sb = s.party(&b).unwrap().unwrap().subscriber_id;
    assert_eq!(
        s.queued_bytes().unwrap(),
        [(sa, 3210), (sb, 7), (idle.id, 0)]
    );
    s.mark_delivered(&b, "m1", b"r", 180).unwrap();
    s.mark_delivered(&b, "m1", b"r", 181).unwrap(); // repeated: not counted
    s.mark_delivered(&b, "m3", b"r", 260).unwrap();
    s.mark_delivered(&a, "n1", b"r", 199).unwrap();
    assert_eq!(s.queue_depths().unwrap()[0], (b.clone(), 1));
    assert_eq!(s.queued_bytes().unwrap()[0], (sa, 200));
    // A receipt for m2: a co-ordination message from B.
    s.accept(&receipt(&b, &a, "mpc-a", "r2", "m2", 170), &NONE)
        .unwrap();
    s.mark_delivered(&a, "r2", b"r", 190).unwrap();

    // Records: newest first, limited, by party (sent or received).
    let ids = |party: Option<&PartyKey>, limit| -> Vec<String> {
        s.messages(party, limit)
            .unwrap()
            .into_iter()
            .map(|r| r.message_id)
            .collect()
    };
    assert_eq!(ids(None, 100), ["r2", "n1", "m3", "m2", "m1"]);
    assert_eq!(ids(None, 2), ["r2", "n1"]);
    assert_eq!(ids(Some(&a), 100), ["r2", "n1", "m3", "m2", "m1"]);
    assert_eq!(ids(Some(&z), 100), Vec::<String>::new());
    let m1 = record(s, &a, "m1");
    assert_eq!(
        (
            m1.sender,
            m1.recipient,
            m1.size,
            m1.received_at,
            m1.delivered_at,
            m1.attempts
        ),
        (a.clone(), b.clone(), 10, 100, Some(180), 0)
    );
    assert_eq!(
        record(s, &a, "m2").receipt_returned,
        Some(ReceiptReturned {
            receipt_id: "r2".into(),
            at: 170
        })
    );

    // Usage in [100, 200).
    let u = s.usage(100, 200).unwrap();
    assert_eq!(u.len(), 3);
    assert_eq!(
        u[0],
        Usage {
            subscriber_id: sa,
            organisation: "alpha".into(),
            sent_messages: 2,
            sent_bytes: 210,
            received_messages: 1,
            received_bytes: 7,
            coordination_sent_messages: 0,
            coordination_sent_bytes: 0,
            coordination_received_messages: 1,
            coordination_received_bytes: 7,
        }
    );
    assert_eq!(
        u[1],
        Usage {
            subscriber_id: sb,
            organisation: "beta".into(),
            sent_messages: 1,
            sent_bytes: 7,
            received_messages: 1,
            received_bytes: 10,
            coordination_sent_messages: 1,
            coordination_sent_bytes: 7,
            coordination_received_messages: 0,
            coordination_received_bytes: 0,
        }
    );
    assert_eq!(
        u[2],
        Usage {
            subscriber_id: idle.id,
            organisation: "idle".into(),
            ..Usage::default()
        }
    );
    // [from, to): 250 is in the next period.
    let u = s.usage(200, 300).unwrap();
    assert_eq!((u[0].sent_messages, u[0].sent_bytes), (1, 3000));
    assert_eq!((u[1].received_messages, u[1].received_bytes), (1, 3000));
    assert!(s
        .usage(0, 100)
        .unwrap()
        .iter()
        .all(|x| x.sent_messages == 0 && x.received_messages == 0));
    // Purging does not change the ledger; another store reads the same.
    s.purge(i64::MAX, i64::MAX).unwrap();
    assert_eq!(open().usage(100, 200).unwrap()[0].sent_bytes, 210);
    assert_eq!(s.usage(0, i64::MAX).unwrap()[1].received_bytes, 3010);
}
