use super::*;

#[test]
fn subscriber_party_certificate_lifecycle() {
    let dir = TempDir::new("parties");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let s = subscriber(&store, "alpha");
    assert_eq!(s.status, AccountStatus::Active);
    assert_eq!(
        store.subscriber(s.id).unwrap().unwrap().organisation,
        "alpha"
    );
    assert!(store.subscriber(s.id + 100).unwrap().is_none());
    let s2 = subscriber(&store, "beta");
    let all: Vec<i64> = store.subscribers().unwrap().iter().map(|s| s.id).collect();
    assert_eq!(all, vec![s.id, s2.id]);

    let key = PartyKey::new("t", "p1");
    let party = store
        .register(s.id, &key, "mpc-1", b"der-1", &fp(1), 2000)
        .unwrap();
    assert_eq!(party.key, key);
    assert_eq!(party.subscriber_id, s.id);
    assert_eq!(party.status, PartyStatus::Active);
    assert_eq!(party.account_status, AccountStatus::Active);
    assert_eq!(party.mpc, "mpc-1");
    assert_eq!(party.created_at, 2000);
    assert!(party.is_usable());

    // Conflicts and unknown subscriber.
    let e = store.register(s.id, &key, "mpc-x", b"d", &fp(9), 2000);
    assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
    let e = store.register(
        s2.id,
        &PartyKey::new("t", "p2"),
        "mpc-1",
        b"d",
        &fp(9),
        2000,
    );
    assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
    let e = store.register(999, &PartyKey::new("t", "p3"), "mpc-3", b"d", &fp(9), 2000);
    assert!(matches!(e, Err(StoreError::NotFound(_))), "{e:?}");
    let e = store.register(s.id, &PartyKey::new("t", "p4"), "mpc-4", b"d", "ABC", 2000);
    assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
    // Same id with another type is another party.
    store
        .register(
            s2.id,
            &PartyKey::new("", "p1"),
            "mpc-2",
            b"der-2",
            &fp(2),
            2000,
        )
        .unwrap();

    assert_eq!(store.party_by_mpc("mpc-1").unwrap().unwrap().key, key);
    assert!(store.party_by_mpc("nope").unwrap().is_none());
    assert_eq!(store.parties(None).unwrap().len(), 2);
    assert_eq!(store.parties(Some(s.id)).unwrap().len(), 1);
    assert_eq!(
        store.parties(Some(s2.id)).unwrap()[0].key,
        PartyKey::new("", "p1")
    );

    // Replace with an overlap until 3000, then an emergency replacement at 2600.
    store
        .replace_certificate(&key, b"der-1b", &fp(3), 3000, 2500)
        .unwrap();
    let certs = store.certificates(&key).unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0].der, b"der-1b");
    assert_eq!(certs[0].fingerprint, fp(3));
    assert_eq!(certs[0].registered_at, 2500);
    assert_eq!(certs[0].retired_at, None);
    assert_eq!(certs[1].der, b"der-1");
    assert_eq!(certs[1].retired_at, Some(3000));
    assert!(certs[1].is_current(2999));
    assert!(!certs[1].is_current(3000));
    store
        .replace_certificate(&key, b"der-1c", &fp(4), 2600, 2600)
        .unwrap();
    let certs = store.certificates(&key).unwrap();
    let retired: Vec<Option<Unix>> = certs.iter().map(|c| c.retired_at).collect();
    assert_eq!(retired, vec![None, Some(2600), Some(2600)]);
    let e = store.replace_certificate(&key, b"d", &fp(5), 100, 2600);
    assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
    let e = store.replace_certificate(&PartyKey::new("t", "zz"), b"d", &fp(5), 3000, 2600);
    assert!(matches!(e, Err(StoreError::NotFound(_))), "{e:?}");
    assert!(store
        .certificates(&PartyKey::new("t", "zz"))
        .unwrap()
        .is_empty());

    // Fingerprints in the `AB:CD:…` form are stored lower-case, plain hex.
    let colons = PartyKey::new("t", "colons");
    let upper = ["AB"; 32].join(":");
    store
        .register(s2.id, &colons, "mpc-c", b"der-c", &upper, 2600)
        .unwrap();
    assert_eq!(
        store.certificates(&colons).unwrap()[0].fingerprint,
        "ab".repeat(32)
    );
    assert_eq!(store.parties_by_fingerprint(&upper).unwrap()[0].key, colons);
    assert_eq!(
        store.parties_by_fingerprint(&"ab".repeat(32)).unwrap()[0].key,
        colons
    );
    assert!(matches!(
        store.parties_by_fingerprint("nope"),
        Err(StoreError::Invalid(_))
    ));

    // Fingerprint lookup finds old and new certificates.
    assert_eq!(store.parties_by_fingerprint(&fp(1)).unwrap()[0].key, key);
    assert_eq!(store.parties_by_fingerprint(&fp(4)).unwrap()[0].key, key);
    assert!(store.parties_by_fingerprint(&fp(7)).unwrap().is_empty());

    // Suspended account.
    store
        .set_account_status(s.id, AccountStatus::Suspended)
        .unwrap();
    let p = store.party(&key).unwrap().unwrap();
    assert_eq!(p.account_status, AccountStatus::Suspended);
    assert_eq!(p.status, PartyStatus::Active);
    assert!(!p.is_usable());
    assert!(matches!(
        store.set_account_status(999, AccountStatus::Active),
        Err(StoreError::NotFound(_))
    ));
    store
        .set_account_status(s.id, AccountStatus::Active)
        .unwrap();
    assert!(store.party(&key).unwrap().unwrap().is_usable());

    // Revocation.
    store.revoke_party(&key, 4000).unwrap();
    let p = store.party(&key).unwrap().unwrap();
    assert_eq!(p.status, PartyStatus::Revoked);
    assert_eq!(p.revoked_at, Some(4000));
    assert!(!p.is_usable());
    store.revoke_party(&key, 5000).unwrap();
    assert_eq!(store.party(&key).unwrap().unwrap().revoked_at, Some(4000));
    let e = store.replace_certificate(&key, b"d", &fp(6), 5000, 5000);
    assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
    let e = store.register(s.id, &key, "mpc-9", b"d", &fp(6), 5000);
    assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
    assert!(matches!(
        store.revoke_party(&PartyKey::new("t", "zz"), 1),
        Err(StoreError::NotFound(_))
    ));
    // Revoked parties are still found by fingerprint.
    assert_eq!(store.parties_by_fingerprint(&fp(1)).unwrap().len(), 1);
}

#[test]
fn a_revoked_party_can_be_reinstated() {
    let dir = TempDir::new("reinstate");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, _) = setup(&store);
    assert!(matches!(
        store.reinstate_party(&a, None, 2000),
        Err(StoreError::Conflict(_))
    ));
    store.revoke_party(&a, 2000).unwrap();
    let sub = store.party(&a).unwrap().unwrap().subscriber_id;
    match store.register(sub, &a, "mpc-x", b"d", &fp(7), 2100) {
        Err(StoreError::Conflict(m)) => assert!(m.contains("reinstate"), "{m}"),
        other => panic!("{other:?}"),
    }
    store.reinstate_party(&a, None, 2200).unwrap();
    let p = store.party(&a).unwrap().unwrap();
    assert!(p.is_usable());
    assert_eq!(p.revoked_at, None);
    assert_eq!(store.certificates(&a).unwrap().len(), 1);
    // With a new certificate, the old ones end at once.
    store.revoke_party(&a, 2300).unwrap();
    store
        .reinstate_party(&a, Some((b"new-der", &fp(8))), 2400)
        .unwrap();
    let certs = store.certificates(&a).unwrap();
    assert_eq!(certs[0].fingerprint, fp(8));
    assert_eq!(certs[0].retired_at, None);
    assert_eq!(certs[1].retired_at, Some(2400));
    assert!(matches!(
        store.reinstate_party(&PartyKey::new("", "nobody"), None, 1),
        Err(StoreError::NotFound(_))
    ));
}

/// A party's mail address (schema version 5): registered with the party or set later, checked,
/// cleared; the gateway's list holds the usable parties that have one.
#[test]
fn mail_addresses_of_parties() {
    let dir = TempDir::new("mail");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, b) = setup(&store);
    assert_eq!(store.party(&a).unwrap().unwrap().mail_address, None);
    assert!(store.mail_parties().unwrap().is_empty());

    store
        .set_party_mail_address(&a, Some("as4@a.example"))
        .unwrap();
    assert_eq!(
        store.party(&a).unwrap().unwrap().mail_address.as_deref(),
        Some("as4@a.example")
    );
    let listed: Vec<PartyKey> = store
        .mail_parties()
        .unwrap()
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(listed, vec![a.clone()]);

    // Registered with one.
    let s = subscriber(&store, "gamma");
    let c = PartyKey::new("", "C");
    let p = store
        .register_party(
            &NewParty {
                subscriber_id: s.id,
                key: &c,
                mpc: "mpc-c",
                cert_der: b"cert-c",
                fingerprint: &fp(3),
                max_document_bytes: 1000,
                mail_address: Some("c@c.example"),
            },
            1000,
        )
        .unwrap();
    assert_eq!(p.mail_address.as_deref(), Some("c@c.example"));
    assert_eq!(store.mail_parties().unwrap().len(), 2);

    // Revoked parties and suspended accounts are not delivered to.
    store.revoke_party(&c, 1001).unwrap();
    assert_eq!(store.mail_parties().unwrap().len(), 1);
    store
        .set_account_status(
            store.party(&a).unwrap().unwrap().subscriber_id,
            AccountStatus::Suspended,
        )
        .unwrap();
    assert!(store.mail_parties().unwrap().is_empty());

    // Checked; cleared; unknown party.
    for bad in [
        "",
        "no-at",
        "a b@c.example",
        "a@b.example\r\nBcc: x@y",
        "<a@b.example>",
        "a@",
        "@b",
        "a@b..c",
        "ä@b.example",
    ] {
        let e = store.set_party_mail_address(&b, Some(bad));
        assert!(matches!(e, Err(StoreError::Invalid(_))), "{bad:?}: {e:?}");
    }
    let long = format!(
        "{}@{}.example",
        "a".repeat(64),
        "b".repeat(63) + "." + &"c".repeat(63) + "." + &"d".repeat(63)
    );
    assert!(long.len() > MAX_MAIL_ADDRESS);
    assert!(store.set_party_mail_address(&b, Some(&long)).is_err());
    store.set_party_mail_address(&a, None).unwrap();
    assert_eq!(store.party(&a).unwrap().unwrap().mail_address, None);
    let e = store.set_party_mail_address(&PartyKey::new("", "nobody"), Some("x@y.example"));
    assert!(matches!(e, Err(StoreError::NotFound(_))), "{e:?}");
}

/// A claim released before its lease ends can be claimed again at once.
#[test]
fn a_released_claim_is_offered_again() {
    let dir = TempDir::new("release");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, b) = setup(&store);
    store
        .accept(
            &msg(&a, &b, "mpc-b", "m1", b"body", 1000),
            &AcceptLimits::default(),
        )
        .unwrap();
    let c = store.claim_next("mpc-b", 1000, 900).unwrap().unwrap();
    assert_eq!(c.message_id, "m1");
    assert!(store.claim_next("mpc-b", 1001, 900).unwrap().is_none());
    store.release_claim(&b, "m1", 1001).unwrap();
    let again = store.claim_next("mpc-b", 1001, 900).unwrap().unwrap();
    assert_eq!((again.message_id.as_str(), again.attempt), ("m1", 2));
    // Not leased any more: nothing to release.
    store.mark_delivered(&b, "m1", b"r", 1002).unwrap();
    store.release_claim(&b, "m1", 1003).unwrap();
    assert!(store.claim_next("mpc-b", 1003, 900).unwrap().is_none());
}
