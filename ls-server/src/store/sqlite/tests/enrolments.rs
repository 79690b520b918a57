use super::*;

fn h(n: u8) -> String {
    format!("{:02x}", 0xa0 + n).repeat(32)
}

fn issue(
    store: &SqliteStore,
    sub: i64,
    key: &PartyKey,
    n: u8,
    expires_at: Unix,
) -> EnrolmentRecord {
    store
        .issue_enrolment(
            &NewEnrolment {
                subscriber_id: sub,
                key,
                code_hash: &h(n),
                expires_at,
            },
            1000,
        )
        .unwrap()
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

#[test]
fn a_code_registers_a_new_party_once() {
    let dir = TempDir::new("enrol-new");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let s = subscriber(&store, "alpha");
    let key = PartyKey::new("", "acme");
    let r = issue(&store, s.id, &key, 1, 5000);
    assert_eq!(r.state(1000), "outstanding");
    assert_eq!(r.state(5000), "expired");
    assert_eq!(store.enrolment_account(&key).unwrap(), Some(s.id));
    assert_eq!(
        store.enrolment_account(&PartyKey::new("", "x")).unwrap(),
        None
    );

    // Another party's name with this code, or another code: the same answer.
    let other = PartyKey::new("", "other");
    assert_eq!(
        refusal(store.enrol(&enrolment(&h(1), &other, "mpc-o", &fp(7)), 2000)),
        EnrolRefusal::InvalidCode
    );
    assert_eq!(
        refusal(store.enrol(&enrolment(&h(9), &key, "mpc-acme", &fp(7)), 2000)),
        EnrolRefusal::InvalidCode
    );
    let typed = PartyKey::new("t", "acme");
    assert_eq!(
        refusal(store.enrol(&enrolment(&h(1), &typed, "mpc-acme", &fp(7)), 2000)),
        EnrolRefusal::InvalidCode
    );
    assert!(store.party(&other).unwrap().is_none());

    let EnrolOutcome::Registered(p) = store
        .enrol(&enrolment(&h(1), &key, "mpc-acme", &fp(7)), 2000)
        .unwrap()
    else {
        panic!("not registered")
    };
    assert_eq!(p.subscriber_id, s.id);
    assert_eq!(p.max_document_bytes, 4096);
    assert!(p.is_usable());
    let certs = store.certificates(&key).unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].fingerprint, fp(7));
    let r = &store.enrolments(s.id).unwrap()[0];
    assert_eq!(r.state(2000), "used");
    assert_eq!(r.used_at, Some(2000));
    assert_eq!(r.used_fingerprint.as_deref(), Some(fp(7).as_str()));

    // The same certificate again: a retry, nothing changes; another certificate: used.
    assert!(matches!(
        store
            .enrol(&enrolment(&h(1), &key, "mpc-acme", &fp(7)), 2100)
            .unwrap(),
        EnrolOutcome::Again(_)
    ));
    assert_eq!(
        refusal(store.enrol(&enrolment(&h(1), &key, "mpc-acme", &fp(8)), 2100)),
        EnrolRefusal::CodeUsed
    );
    assert_eq!(store.certificates(&key).unwrap().len(), 1);
    // A used code cannot be revoked.
    assert!(matches!(
        store.revoke_enrolment(s.id, r.id, 2200),
        Err(StoreError::Conflict(_))
    ));
}

#[test]
fn expired_revoked_and_replaced_codes() {
    let dir = TempDir::new("enrol-states");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let s = subscriber(&store, "alpha");
    let key = PartyKey::new("", "acme");
    issue(&store, s.id, &key, 1, 3000);
    assert_eq!(
        refusal(store.enrol(&enrolment(&h(1), &key, "mpc-acme", &fp(7)), 3000)),
        EnrolRefusal::CodeExpired
    );
    // A new code for the party revokes its outstanding one.
    issue(&store, s.id, &key, 2, 9000);
    let r3 = issue(&store, s.id, &key, 3, 9000);
    assert_eq!(
        refusal(store.enrol(&enrolment(&h(2), &key, "mpc-acme", &fp(7)), 2000)),
        EnrolRefusal::CodeRevoked
    );
    let listed = store.enrolments(s.id).unwrap();
    assert_eq!(
        listed.iter().map(|r| r.state(2000)).collect::<Vec<_>>(),
        ["outstanding", "revoked", "revoked"]
    );
    // Revoked by the operator; unknown or another account's code: not found.
    let rev = store.revoke_enrolment(s.id, r3.id, 2500).unwrap();
    assert_eq!(rev.revoked_at, Some(2500));
    assert_eq!(
        store
            .revoke_enrolment(s.id, r3.id, 2600)
            .unwrap()
            .revoked_at,
        Some(2500)
    );
    assert!(matches!(
        store.revoke_enrolment(s.id + 1, r3.id, 2600),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        refusal(store.enrol(&enrolment(&h(3), &key, "mpc-acme", &fp(7)), 2700)),
        EnrolRefusal::CodeRevoked
    );
    assert!(store.party(&key).unwrap().is_none());
}

#[test]
fn codes_respect_accounts_and_existing_parties() {
    let dir = TempDir::new("enrol-accounts");
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    let (a, b) = setup(&store);
    let sa = store.party(&a).unwrap().unwrap().subscriber_id;
    let sb = store.party(&b).unwrap().unwrap().subscriber_id;
    let try_issue = |sub: i64, key: &PartyKey, n: u8| {
        store.issue_enrolment(
            &NewEnrolment {
                subscriber_id: sub,
                key,
                code_hash: &h(n),
                expires_at: 9000,
            },
            1000,
        )
    };
    // Another account's party, an unknown subscriber, a bad hash, an expiry in the past.
    assert!(matches!(try_issue(sb, &a, 1), Err(StoreError::Conflict(_))));
    assert!(matches!(
        try_issue(999, &PartyKey::new("", "n"), 1),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.issue_enrolment(
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
        store.issue_enrolment(
            &NewEnrolment {
                subscriber_id: sa,
                key: &a,
                code_hash: &h(1),
                expires_at: 1000
            },
            1000
        ),
        Err(StoreError::Invalid(_))
    ));
    // A new party id with an outstanding code of one account is not given to another.
    let n = PartyKey::new("", "new");
    try_issue(sa, &n, 2).unwrap();
    assert!(matches!(try_issue(sb, &n, 3), Err(StoreError::Conflict(_))));

    // Re-installing an existing party of the account: the certificate replaces the old at once.
    try_issue(sa, &a, 4).unwrap();
    let EnrolOutcome::Replaced(p) = store
        .enrol(&enrolment(&h(4), &a, "mpc-a", &fp(7)), 2000)
        .unwrap()
    else {
        panic!("not replaced")
    };
    assert_eq!(p.mpc, "mpc-a");
    let certs = store.certificates(&a).unwrap();
    assert_eq!(certs.len(), 2);
    assert!(certs[0].is_current(2000) && !certs[1].is_current(2000));

    // The certificate of another party: refused.
    try_issue(sa, &n, 5).unwrap();
    assert_eq!(
        refusal(store.enrol(&enrolment(&h(5), &n, "mpc-n", &fp(2)), 2000)),
        EnrolRefusal::CertificateInUse { party: b.clone() }
    );
    // A suspended account, a revoked party: not active.
    store
        .set_account_status(sa, AccountStatus::Suspended)
        .unwrap();
    assert!(matches!(
        refusal(store.enrol(&enrolment(&h(5), &n, "mpc-n", &fp(8)), 2000)),
        EnrolRefusal::PartyNotActive(_)
    ));
    assert!(matches!(try_issue(sa, &n, 6), Err(StoreError::Conflict(_))));
    store.set_account_status(sa, AccountStatus::Active).unwrap();
    try_issue(sb, &b, 7).unwrap();
    store.revoke_party(&b, 1500).unwrap();
    assert!(matches!(
        refusal(store.enrol(&enrolment(&h(7), &b, "mpc-b", &fp(9)), 2000)),
        EnrolRefusal::PartyNotActive(_)
    ));
    assert!(matches!(try_issue(sb, &b, 8), Err(StoreError::Conflict(_))));
    // The code stays unused after a refusal: it works once the cause is gone.
    assert!(matches!(
        store
            .enrol(&enrolment(&h(5), &n, "mpc-n", &fp(8)), 2000)
            .unwrap(),
        EnrolOutcome::Registered(_)
    ));
}

#[test]
fn the_hash_key_is_made_once_and_kept() {
    let dir = TempDir::new("enrol-key");
    let k1 = {
        let store = SqliteStore::open(&dir.0, 16).unwrap();
        let k = store.enrolment_key().unwrap();
        assert_eq!(k.len(), 32);
        assert_eq!(*store.enrolment_key().unwrap(), *k);
        k
    };
    use std::os::unix::fs::PermissionsExt;
    let path = dir.0.join(ENROLMENT_KEY_FILE);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Another process (here: another store) reads the same key.
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    assert_eq!(*store.enrolment_key().unwrap(), *k1);
    // Many at once make one key.
    let dir2 = TempDir::new("enrol-key-race");
    // (The database is made first: opening a new store concurrently is another matter.)
    drop(SqliteStore::open(&dir2.0, 16).unwrap());
    let keys: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let d = dir2.0.clone();
                s.spawn(move || {
                    let store = SqliteStore::open(&d, 16).unwrap();
                    store.enrolment_key().unwrap().to_vec()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(keys.windows(2).all(|w| w[0] == w[1]));
    // A damaged key file is an error, not a new key.
    fs::write(&path, b"short").unwrap();
    let store = SqliteStore::open(&dir.0, 16).unwrap();
    assert!(store.enrolment_key().is_err());
}
