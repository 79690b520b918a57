//! Enrolment codes: issued, used once, expired, revoked, replaced; accounts and existing
//! parties; the key of their hashes, the same for every store on one database.

use super::super::*;

fn h(n: u8) -> String {
    format!("{:02x}", 0xa0 + n).repeat(32)
}

fn issue(s: &dyn Store, sub: i64, key: &PartyKey, n: u8, expires_at: Unix) -> EnrolmentRecord {
    try_issue(s, sub, key, n, expires_at).unwrap()
}

fn try_issue(
    s: &dyn Store,
    sub: i64,
    key: &PartyKey,
    n: u8,
    expires_at: Unix,
) -> StoreResult<EnrolmentRecord> {
    s.issue_enrolment(
        &NewEnrolment {
            subscriber_id: sub,
            key,
            code_hash: &h(n),
            expires_at,
        },
        1000,
    )
}

fn enrolment<'a>(n: &'a str, key: &'a PartyKey, mpc: &'a str, fp: &'a str) -> Enrolment<'a> {
    Enrolment {
        code_hash: n,
        key,
        mpc,
        cert_der: b"der-new",
        fingerprint: fp,
        max_document_bytes: 4096,
    }
}

fn refusal(o: StoreResult<EnrolOutcome>) -> EnrolRefusal {
    match o.unwrap() {
        EnrolOutcome::Refused(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A code registers a new party once (a retry with the same certificate is `Again`); other
/// parties' names and other codes are invalid; codes expire, are revoked by a newer one or
/// by the operator, and a used one cannot be revoked.
pub fn codes(open: Open<'_>) {
    let s = &*open();
    let sub = subscriber(s, "alpha");
    let key = PartyKey::new("", "acme");
    let r1 = issue(s, sub.id, &key, 1, 5000);
    assert_eq!((r1.state(1000), r1.state(5000)), ("outstanding", "expired"));
    assert_eq!(
        (
            r1.subscriber_id,
            r1.key.clone(),
            r1.created_at,
            r1.expires_at
        ),
        (sub.id, key.clone(), 1000, 5000)
    );
    assert_eq!(s.enrolment_account(&key).unwrap(), Some(sub.id));
    assert_eq!(s.enrolment_account(&PartyKey::new("", "x")).unwrap(), None);
    let other = PartyKey::new("", "other");
    assert_eq!(
        refusal(s.enrol(&enrolment(&h(1), &other, "mpc-o", &fp(7)), 2000)),
        EnrolRefusal::InvalidCode
    );
    assert_eq!(
        refusal(s.enrol(&enrolment(&h(9), &key, "mpc-acme", &fp(7)), 2000)),
        EnrolRefusal::InvalidCode
    );
    let typed = PartyKey::new("t", "acme");
    assert_eq!(
        refusal(s.enrol(&enrolment(&h(1), &typed, "mpc-acme", &fp(7)), 2000)),
        EnrolRefusal::InvalidCode
    );
    assert!(matches!(
        s.enrol(&enrolment("short", &key, "mpc-acme", &fp(7)), 2000),
        Err(StoreError::Invalid(_))
    ));
    let EnrolOutcome::Registered(p) = s
        .enrol(&enrolment(&h(1), &key, "mpc-acme", &fp(7)), 2000)
        .unwrap()
    else {
        panic!("not registered")
    };
    assert_eq!(
        (p.subscriber_id, p.max_document_bytes, p.mpc.as_str()),
        (sub.id, 4096, "mpc-acme")
    );
    assert!(p.is_usable());
    let certs = s.certificates(&key).unwrap();
    assert_eq!((certs.len(), certs[0].fingerprint.clone()), (1, fp(7)));
    let used = &s.enrolments(sub.id).unwrap()[0];
    assert_eq!(
        (
            used.state(2000),
            used.used_at,
            used.used_fingerprint.clone()
        ),
        ("used", Some(2000), Some(fp(7)))
    );
    // A retry (another node, too): nothing changes; another certificate: used.
    assert!(matches!(
        open()
            .enrol(&enrolment(&h(1), &key, "mpc-acme", &fp(7)), 2100)
            .unwrap(),
        EnrolOutcome::Again(_)
    ));
    assert_eq!(
        refusal(s.enrol(&enrolment(&h(1), &key, "mpc-acme", &fp(8)), 2100)),
        EnrolRefusal::CodeUsed
    );
    assert_eq!(s.certificates(&key).unwrap().len(), 1);
    assert!(matches!(
        s.revoke_enrolment(sub.id, used.id, 2200),
        Err(StoreError::Conflict(_))
    ));

    // Expired, replaced by a newer code, revoked by the operator.
    let key2 = PartyKey::new("", "acme2");
    issue(s, sub.id, &key2, 2, 3000);
    assert_eq!(
        refusal(s.enrol(&enrolment(&h(2), &key2, "mpc-2", &fp(9)), 3000)),
        EnrolRefusal::CodeExpired
    );
    issue(s, sub.id, &key2, 3, 9000);
    let r4 = issue(s, sub.id, &key2, 4, 9000);
    assert_eq!(
        refusal(s.enrol(&enrolment(&h(3), &key2, "mpc-2", &fp(9)), 2000)),
        EnrolRefusal::CodeRevoked
    );
    let listed = s.enrolments(sub.id).unwrap();
    assert_eq!(
        listed.iter().map(|r| r.state(2000)).collect::<Vec<_>>(),
        ["outstanding", "revoked", "revoked", "used"]
    );
    let rev = s.revoke_enrolment(sub.id, r4.id, 2500).unwrap();
    assert_eq!(rev.revoked_at, Some(2500));
    assert_eq!(
        s.revoke_enrolment(sub.id, r4.id, 2600).unwrap().revoked_at,
        Some(2500)
    );
    assert!(matches!(
        s.revoke_enrolment(sub.id + 1, r4.id, 2600),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.revoke_enrolment(sub.id, r4.id + 100, 2600),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        refusal(s.enrol(&enrolment(&h(4), &key2, "mpc-2", &fp(9)), 2700)),
        EnrolRefusal::CodeRevoked
    );
    assert!(s.party(&key2).unwrap().is_none());
    assert!(s.enrolments(sub.id + 1).unwrap().is_empty());
    // A hash already in use is a conflict.
    assert!(matches!(
        try_issue(s, sub.id, &PartyKey::new("", "z"), 4, 9000),
        Err(StoreError::Conflict(_))
    ));
}

/// Codes respect accounts (suspended, another account's party or outstanding code) and
/// existing parties (a re-installation replaces the certificate; a revoked party is not
/// active); a certificate of another party is refused; a refused code stays usable.
pub fn accounts_and_parties(open: Open<'_>) {
    let s = &*open();
    let (a, b) = setup(s);
    let sa = s.party(&a).unwrap().unwrap().subscriber_id;
    let sb = s.party(&b).unwrap().unwrap().subscriber_id;
    let conflict = |r: StoreResult<EnrolmentRecord>| matches!(r, Err(StoreError::Conflict(_)));
    assert!(conflict(try_issue(s, sb, &a, 1, 9000)));
    assert!(matches!(
        try_issue(s, 999, &PartyKey::new("", "n"), 1, 9000),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.issue_enrolment(
            &NewEnrolment {
                subscriber_id: sa,
                key: &a,
                code_hash: "ABC",
                expires_at: 9000
            },
            1000
        ),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        try_issue(s, sa, &a, 1, 1000),
        Err(StoreError::Invalid(_))
    ));
    // A new party id with an outstanding code of one account is not given to another.
    let n = PartyKey::new("", "new");
    try_issue(s, sa, &n, 2, 9000).unwrap();
    assert!(conflict(try_issue(s, sb, &n, 3, 9000)));
    assert_eq!(s.enrolment_account(&n).unwrap(), Some(sa));
    assert_eq!(s.enrolment_account(&b).unwrap(), Some(sb));

    // Re-installing an existing party of the account: the certificate replaces the old at once.
    try_issue(s, sa, &a, 4, 9000).unwrap();
    let EnrolOutcome::Replaced(p) = s
        .enrol(&enrolment(&h(4), &a, "mpc-a", &fp(7)), 2000)
        .unwrap()
    else {
        panic!("not replaced")
    };
    assert_eq!(p.mpc, "mpc-a");
    let certs = s.certificates(&a).unwrap();
    assert_eq!(certs.len(), 2);
    assert!(certs[0].is_current(2000) && !certs[1].is_current(2000));

    // The certificate of another party: refused.
    try_issue(s, sa, &n, 5, 9000).unwrap();
    assert_eq!(
        refusal(s.enrol(&enrolment(&h(5), &n, "mpc-n", &fp(2)), 2000)),
        EnrolRefusal::CertificateInUse { party: b.clone() }
    );
    // A suspended account, a revoked party: not active, and no new codes.
    s.set_account_status(sa, AccountStatus::Suspended).unwrap();
    assert!(matches!(
        refusal(s.enrol(&enrolment(&h(5), &n, "mpc-n", &fp(8)), 2000)),
        EnrolRefusal::PartyNotActive(_)
    ));
    assert!(conflict(try_issue(s, sa, &n, 6, 9000)));
    s.set_account_status(sa, AccountStatus::Active).unwrap();
    try_issue(s, sb, &b, 7, 9000).unwrap();
    s.revoke_party(&b, 1500).unwrap();
    assert!(matches!(
        refusal(s.enrol(&enrolment(&h(7), &b, "mpc-b", &fp(9)), 2000)),
        EnrolRefusal::PartyNotActive(_)
    ));
    assert!(conflict(try_issue(s, sb, &b, 8, 9000)));
    // A new party whose MPC is taken: not active.
    let m = PartyKey::new("", "m");
    try_issue(s, sa, &m, 10, 9000).unwrap();
    assert!(matches!(
        refusal(s.enrol(&enrolment(&h(10), &m, "mpc-b", &fp(10)), 2000)),
        EnrolRefusal::PartyNotActive(_)
    ));
    // The code stays unused after a refusal: it works once the cause is gone.
    assert!(matches!(
        s.enrol(&enrolment(&h(5), &n, "mpc-n", &fp(8)), 2000)
            .unwrap(),
        EnrolOutcome::Registered(_)
    ));
}

/// The key of the codes' hashes: 32 bytes, made once, the same for every store on the
/// database (several processes or nodes), also when they make it at once.
pub fn key(open: Open<'_>) {
    let stores: Vec<Box<dyn Store>> = (0..4).map(|_| open()).collect();
    let keys: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .map(|s| scope.spawn(move || s.enrolment_key().unwrap().to_vec()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(keys[0].len(), 32);
    assert!(keys.windows(2).all(|w| w[0] == w[1]), "one key for all");
    assert_eq!(*stores[0].enrolment_key().unwrap(), keys[0]);
    drop(stores);
    assert_eq!(*open().enrolment_key().unwrap(), keys[0]);
}
