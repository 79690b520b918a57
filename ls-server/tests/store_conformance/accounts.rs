//! Subscribers, parties, mail addresses, certificates: replace, revoke, reinstate.

use super::super::*;

fn keys(parties: &[Party]) -> Vec<PartyKey> {
    parties.iter().map(|p| p.key.clone()).collect()
}

/// Subscribers and parties: creation, look-ups, listings, limits, mail addresses, and the
/// errors of each.
pub fn accounts(open: Open<'_>) {
    let s = &*open();
    let alpha = subscriber(s, "alpha");
    let beta = subscriber(s, "beta");
    let ids: Vec<i64> = s.subscribers().unwrap().iter().map(|x| x.id).collect();
    assert_eq!(ids, vec![alpha.id, beta.id]);
    let got = s.subscriber(alpha.id).unwrap().unwrap();
    assert_eq!(
        (
            got.organisation.as_str(),
            got.contact.as_str(),
            got.status,
            got.created_at
        ),
        ("alpha", "ops@alpha.example", AccountStatus::Active, 1000)
    );
    assert!(s.subscriber(alpha.id + beta.id + 1).unwrap().is_none());
    let empty = NewSubscriber {
        organisation: " ".into(),
        contact: "c".into(),
        contract_ref: "r".into(),
        plan: "p".into(),
    };
    assert!(matches!(
        s.create_subscriber(&empty, 1),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.set_account_status(9999, AccountStatus::Suspended),
        Err(StoreError::NotFound(_))
    ));

    let a = PartyKey::new("urn:t", "A");
    let b = PartyKey::new("", "B");
    let c = PartyKey::new("", "C");
    let pa = register(s, alpha.id, &a, "mpc-a", b"cert-a", &fp(1)).unwrap();
    assert_eq!(
        (
            pa.key.clone(),
            pa.subscriber_id,
            pa.mpc.as_str(),
            pa.created_at
        ),
        (a.clone(), alpha.id, "mpc-a", 1000)
    );
    assert!(pa.is_usable() && pa.revoked_at.is_none() && pa.mail_address.is_none());
    assert_eq!(
        pa.max_document_bytes,
        coordination::DEFAULT_MAX_DOCUMENT_BYTES
    );
    register(s, beta.id, &b, "mpc-b", b"cert-b", &fp(2)).unwrap();
    // An unknown subscriber, an existing party, an MPC in use, bad input.
    let conflict = |r: StoreResult<Party>| matches!(r, Err(StoreError::Conflict(_)));
    let invalid = |r: StoreResult<Party>| matches!(r, Err(StoreError::Invalid(_)));
    assert!(matches!(
        register(s, 9999, &c, "mpc-c", b"cert-c", &fp(3)),
        Err(StoreError::NotFound(_))
    ));
    assert!(conflict(register(s, beta.id, &a, "mpc-x", b"x", &fp(3))));
    assert!(conflict(register(s, alpha.id, &c, "mpc-a", b"x", &fp(3))));
    assert!(invalid(register(
        s,
        alpha.id,
        &PartyKey::new("", ""),
        "m",
        b"x",
        &fp(3)
    )));
    assert!(invalid(register(s, alpha.id, &c, "", b"x", &fp(3))));
    assert!(invalid(register(s, alpha.id, &c, "mpc-c", b"", &fp(3))));
    assert!(invalid(register(s, alpha.id, &c, "mpc-c", b"x", "abc")));
    let with = |max_document_bytes: u64, mail_address: Option<&str>| {
        s.register_party(
            &NewParty {
                subscriber_id: alpha.id,
                key: &c,
                mpc: "mpc-c",
                cert_der: b"cert-c",
                fingerprint: &fp(3),
                max_document_bytes,
                mail_address,
            },
            1000,
        )
    };
    assert!(invalid(with(0, None)));
    assert!(invalid(with(100, Some("not an address"))));
    // A fingerprint in upper case is stored in lower case.
    let pc = with(100, Some("c@example.org")).unwrap();
    assert_eq!(pc.mail_address.as_deref(), Some("c@example.org"));
    assert!(
        s.party(&PartyKey::new("", "A")).unwrap().is_none(),
        "types differ"
    );
    assert_eq!(s.party_by_mpc("mpc-b").unwrap().unwrap().key, b);
    assert!(s.party_by_mpc("mpc-x").unwrap().is_none());
    assert_eq!(
        keys(&s.parties(None).unwrap()),
        [a.clone(), b.clone(), c.clone()]
    );
    assert_eq!(
        keys(&s.parties(Some(alpha.id)).unwrap()),
        [a.clone(), c.clone()]
    );
    assert!(s.parties(Some(9999)).unwrap().is_empty());

    // Document limits.
    s.set_party_limit(&a, 5000).unwrap();
    assert_eq!(s.party(&a).unwrap().unwrap().max_document_bytes, 5000);
    assert!(matches!(
        s.set_party_limit(&a, 0),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.set_party_limit(&PartyKey::new("", "nope"), 5),
        Err(StoreError::NotFound(_))
    ));

    // Mail addresses: the usable parties that have one.
    assert_eq!(keys(&s.mail_parties().unwrap()), vec![c.clone()]);
    s.set_party_mail_address(&b, Some("b@example.org")).unwrap();
    s.set_party_mail_address(&a, Some("a@example.org")).unwrap();
    assert_eq!(
        keys(&s.mail_parties().unwrap()),
        [a.clone(), b.clone(), c.clone()]
    );
    assert!(matches!(
        s.set_party_mail_address(&a, Some("a@b@c")),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.set_party_mail_address(&PartyKey::new("", "nope"), None),
        Err(StoreError::NotFound(_))
    ));
    s.set_account_status(beta.id, AccountStatus::Suspended)
        .unwrap();
    let pb = s.party(&b).unwrap().unwrap();
    assert_eq!(
        (pb.status, pb.account_status, pb.is_usable()),
        (PartyStatus::Active, AccountStatus::Suspended, false)
    );
    assert_eq!(
        s.subscriber(beta.id).unwrap().unwrap().status,
        AccountStatus::Suspended
    );
    assert_eq!(keys(&s.mail_parties().unwrap()), [a.clone(), c.clone()]);
    s.set_account_status(beta.id, AccountStatus::Active)
        .unwrap();
    s.set_party_mail_address(&a, None).unwrap();
    s.revoke_party(&c, 1100).unwrap();
    assert_eq!(keys(&s.mail_parties().unwrap()), vec![b.clone()]);
    assert_eq!(s.party(&a).unwrap().unwrap().mail_address, None);

    // Parties by fingerprint, in any case and with colons.
    let upper = fp(1).to_uppercase();
    assert_eq!(
        keys(&s.parties_by_fingerprint(&upper).unwrap()),
        vec![a.clone()]
    );
    let colons: Vec<String> = (0..32).map(|_| "02".to_string()).collect();
    assert_eq!(
        keys(&s.parties_by_fingerprint(&colons.join(":")).unwrap()),
        vec![b.clone()]
    );
    assert!(s.parties_by_fingerprint(&fp(9)).unwrap().is_empty());
    assert!(matches!(
        s.parties_by_fingerprint("xyz"),
        Err(StoreError::Invalid(_))
    ));
    // Another store on the same database sees all of it.
    let other = open();
    assert_eq!(other.parties(None).unwrap().len(), 3);
}

/// Certificates: replaced with an overlap (and cut short by an emergency replacement),
/// parties revoked (once) and reinstated (with or without a new certificate).
pub fn certificates(open: Open<'_>) {
    let s = &*open();
    let (a, b) = setup(s);
    s.replace_certificate(&a, b"cert-a2", &fp(11), 2000, 1500)
        .unwrap();
    let certs = s.certificates(&a).unwrap();
    let summary = |certs: &[PartyCert]| -> Vec<(String, Unix, Option<Unix>)> {
        certs
            .iter()
            .map(|c| (c.fingerprint.clone(), c.registered_at, c.retired_at))
            .collect()
    };
    assert_eq!(
        summary(&certs),
        [(fp(11), 1500, None), (fp(1), 1000, Some(2000))]
    );
    assert_eq!(certs[0].der, b"cert-a2");
    assert!(certs[1].is_current(1999) && !certs[1].is_current(2000));
    assert!(matches!(
        s.replace_certificate(&a, b"x", &fp(12), 1499, 1500),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.replace_certificate(&a, b"", &fp(12), 1500, 1500),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.replace_certificate(&PartyKey::new("", "x"), b"x", &fp(12), 1500, 1500),
        Err(StoreError::NotFound(_))
    ));
    // An emergency replacement ends every older certificate now.
    s.replace_certificate(&a, b"cert-a3", &fp(12), 1600, 1600)
        .unwrap();
    assert_eq!(
        summary(&s.certificates(&a).unwrap()),
        [
            (fp(12), 1600, None),
            (fp(11), 1500, Some(1600)),
            (fp(1), 1000, Some(1600))
        ]
    );
    assert_eq!(s.parties_by_fingerprint(&fp(11)).unwrap()[0].key, a);
    assert!(s.certificates(&PartyKey::new("", "x")).unwrap().is_empty());

    // Revoked once: revoking again keeps the first time.
    s.revoke_party(&a, 1700).unwrap();
    s.revoke_party(&a, 1800).unwrap();
    let pa = s.party(&a).unwrap().unwrap();
    assert_eq!(
        (pa.status, pa.revoked_at),
        (PartyStatus::Revoked, Some(1700))
    );
    assert!(!pa.is_usable());
    assert!(matches!(
        s.revoke_party(&PartyKey::new("", "x"), 1700),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.replace_certificate(&a, b"x", &fp(13), 1800, 1800),
        Err(StoreError::Conflict(_))
    ));
    let sa = pa.subscriber_id;
    match register(s, sa, &a, "mpc-a2", b"x", &fp(13)) {
        Err(StoreError::Conflict(e)) => assert!(e.contains("reinstate"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Reinstated: only a revoked party; without a certificate the old ones stay.
    assert!(matches!(
        s.reinstate_party(&b, None, 1900),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.reinstate_party(&PartyKey::new("", "x"), None, 1900),
        Err(StoreError::NotFound(_))
    ));
    s.reinstate_party(&a, None, 1900).unwrap();
    let pa = s.party(&a).unwrap().unwrap();
    assert_eq!((pa.status, pa.revoked_at), (PartyStatus::Active, None));
    assert_eq!(s.certificates(&a).unwrap().len(), 3);
    // With a certificate: it replaces every earlier one at once.
    s.revoke_party(&a, 2000).unwrap();
    assert!(matches!(
        s.reinstate_party(&a, Some((b"", &fp(13))), 2100),
        Err(StoreError::Invalid(_))
    ));
    s.reinstate_party(&a, Some((b"cert-a4", &fp(13).to_uppercase())), 2100)
        .unwrap();
    let certs = s.certificates(&a).unwrap();
    assert_eq!(
        summary(&certs),
        [
            (fp(13), 2100, None),
            (fp(12), 1600, Some(2100)),
            (fp(11), 1500, Some(1600)),
            (fp(1), 1000, Some(1600))
        ]
    );
    // Another store (node) sees the change at once.
    assert!(open().party(&a).unwrap().unwrap().is_usable());
}
