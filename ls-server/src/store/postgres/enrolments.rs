//! Enrolment codes: issued for one party id of a subscriber, stored as a keyed hash, used
//! once to register the certificate of a new installation; and the key of the hashes, one for
//! every node (`service_secrets`).
//!
//! Races between nodes: `enrol` locks the code's row (`FOR UPDATE`), so a code is used once;
//! `issue_enrolment` and `enrol` take a transaction-level advisory lock on the party id
//! ([`PARTY_CODE_LOCK`]) and `enrol` one on the certificate's fingerprint ([`CERT_LOCK`]),
//! so the checks "one outstanding code per party" (also a partial unique index) and "a
//! certificate of one party only" are not read-then-write races.

use super::accounts::{add_certificate, get_party, lock_party};
use super::*;
use ::postgres::{GenericClient, Row};
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;
/// The name of the codes' hash key in `service_secrets`.
const KEY_NAME: &str = "enrolment_key";

/// The class of the advisory locks on a party id's codes (with `hashtext` of the party key).
pub const PARTY_CODE_LOCK: i32 = 0x4c53_4543; // "LSEC"
/// The class of the advisory locks on a certificate fingerprint being enrolled.
pub const CERT_LOCK: i32 = 0x4c53_4345; // "LSCE"

const COLS: &str = "id, subscriber_id, ptype, pid, created_at, expires_at, used_at, \
     used_fingerprint, revoked_at FROM enrolment_codes";

fn record_row(r: &Row) -> StoreResult<EnrolmentRecord> {
    Ok(EnrolmentRecord {
        id: r.try_get(0)?,
        subscriber_id: r.try_get(1)?,
        key: PartyKey {
            ptype: r.try_get(2)?,
            id: r.try_get(3)?,
        },
        created_at: r.try_get(4)?,
        expires_at: r.try_get(5)?,
        used_at: r.try_get(6)?,
        used_fingerprint: r.try_get(7)?,
        revoked_at: r.try_get(8)?,
    })
}

fn record(c: &mut impl GenericClient, id: i64) -> StoreResult<Option<EnrolmentRecord>> {
    let sql = format!("SELECT {COLS} WHERE id = $1");
    c.query_opt(&sql, &[&id])?
        .map(|r| record_row(&r))
        .transpose()
}

fn check_hash(code_hash: &str) -> StoreResult<()> {
    if code_hash.len() != 64
        || !code_hash
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(StoreError::Invalid(
            "a code hash is 64 lower-case hex digits".into(),
        ));
    }
    Ok(())
}

/// Hold the advisory lock of `key`'s codes until the transaction ends.
fn lock_party_codes(c: &mut impl GenericClient, key: &PartyKey) -> StoreResult<()> {
    c.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2 || ' ' || $3))",
        &[&PARTY_CODE_LOCK, &key.ptype, &key.id],
    )?;
    Ok(())
}

fn account_status_of(c: &mut impl GenericClient, id: i64) -> StoreResult<Option<AccountStatus>> {
    let Some(r) = c.query_opt("SELECT status FROM subscribers WHERE id = $1", &[&id])? else {
        return Ok(None);
    };
    Ok(Some(match r.try_get::<_, &str>(0)? {
        "active" => AccountStatus::Active,
        _ => AccountStatus::Suspended,
    }))
}

pub(super) fn issue(
    store: &PostgresStore,
    e: &NewEnrolment<'_>,
    now: Unix,
) -> StoreResult<EnrolmentRecord> {
    check_hash(e.code_hash)?;
    e.check(now)?;
    store.write(|tx| {
        e.check_account(account_status_of(&mut **tx, e.subscriber_id)?)?;
        lock_party_codes(&mut **tx, e.key)?;
        e.check_party(get_party(&mut **tx, e.key)?.as_ref())?;
        let other: Option<i64> = tx
            .query_opt(
                "SELECT subscriber_id FROM enrolment_codes WHERE ptype = $1 AND pid = $2 \
                 AND subscriber_id <> $3 AND used_at IS NULL AND revoked_at IS NULL \
                 AND expires_at > $4 LIMIT 1",
                &[&e.key.ptype, &e.key.id, &e.subscriber_id, &now],
            )?
            .map(|r| r.get(0));
        if let Some(other) = other {
            return Err(StoreError::Conflict(format!(
                "party id {} has an outstanding enrolment code of another account (subscriber \
                 {other})",
                e.key
            )));
        }
        // One outstanding code per party: a new one replaces the earlier.
        tx.execute(
            "UPDATE enrolment_codes SET revoked_at = $3 WHERE ptype = $1 AND pid = $2 \
             AND used_at IS NULL AND revoked_at IS NULL",
            &[&e.key.ptype, &e.key.id, &now],
        )?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO enrolment_codes (subscriber_id, ptype, pid, code_hash, created_at, \
                 expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &e.subscriber_id,
                    &e.key.ptype,
                    &e.key.id,
                    &e.code_hash,
                    &now,
                    &e.expires_at,
                ],
            )?
            .get(0);
        record(&mut **tx, id)?.ok_or_else(|| StoreError::Backend("the code vanished".into()))
    })
}

pub(super) fn list(store: &PostgresStore, subscriber_id: i64) -> StoreResult<Vec<EnrolmentRecord>> {
    store.read(|tx| {
        let sql = format!("SELECT {COLS} WHERE subscriber_id = $1 ORDER BY id DESC");
        tx.query(&sql, &[&subscriber_id])?
            .iter()
            .map(record_row)
            .collect()
    })
}

pub(super) fn revoke(
    store: &PostgresStore,
    subscriber_id: i64,
    id: i64,
    now: Unix,
) -> StoreResult<EnrolmentRecord> {
    store.write(|tx| {
        // Locked: an enrolment with this code on another node is decided before or after.
        let sql = format!("SELECT {COLS} WHERE id = $1 FOR UPDATE");
        let r = tx
            .query_opt(&sql, &[&id])?
            .map(|r| record_row(&r))
            .transpose()?
            .filter(|r| r.subscriber_id == subscriber_id)
            .ok_or_else(|| {
                StoreError::NotFound(format!("enrolment code {id} of subscriber {subscriber_id}"))
            })?;
        if r.used_at.is_some() {
            return Err(StoreError::Conflict(format!(
                "enrolment code {id} was used; revoke the party instead"
            )));
        }
        // Revoking again keeps the first time.
        tx.execute(
            "UPDATE enrolment_codes SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id, &now],
        )?;
        record(&mut **tx, id)?.ok_or_else(|| StoreError::Backend("the code vanished".into()))
    })
}

pub(super) fn account(store: &PostgresStore, key: &PartyKey) -> StoreResult<Option<i64>> {
    store.read(|tx| {
        if let Some(s) = accounts::party_subscriber(&mut **tx, key)? {
            return Ok(Some(s));
        }
        Ok(tx
            .query_opt(
                "SELECT subscriber_id FROM enrolment_codes WHERE ptype = $1 AND pid = $2 \
                 ORDER BY id DESC LIMIT 1",
                &[&key.ptype, &key.id],
            )?
            .map(|r| r.get(0)))
    })
}

pub(super) fn enrol(
    store: &PostgresStore,
    e: &Enrolment<'_>,
    now: Unix,
) -> StoreResult<EnrolOutcome> {
    check_hash(e.code_hash)?;
    if e.cert_der.is_empty() || e.mpc.is_empty() || e.key.id.is_empty() {
        return Err(StoreError::Invalid(
            "an enrolment needs a party, an MPC and a certificate".into(),
        ));
    }
    check_document_limit(e.max_document_bytes)?;
    let fingerprint = normalize_fingerprint(e.fingerprint)?;
    let refused = |r| Ok(EnrolOutcome::Refused(r));
    store.write(|tx| {
        // The party id's lock first (as `issue` takes it), then the code's row.
        lock_party_codes(&mut **tx, e.key)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&CERT_LOCK, &fingerprint],
        )?;
        let sql = format!("SELECT {COLS} WHERE code_hash = $1 FOR UPDATE");
        let code = tx
            .query_opt(&sql, &[&e.code_hash])?
            .map(|r| record_row(&r))
            .transpose()?;
        // A code of another party answers as no code at all.
        let Some(code) = code.filter(|c| c.key == *e.key) else {
            return refused(EnrolRefusal::InvalidCode);
        };
        if code.used_at.is_some() {
            if code.used_fingerprint.as_deref() == Some(fingerprint.as_str()) {
                if let Some(p) = get_party(&mut **tx, e.key)? {
                    return Ok(EnrolOutcome::Again(p));
                }
            }
            return refused(EnrolRefusal::CodeUsed);
        }
        if code.revoked_at.is_some() {
            return refused(EnrolRefusal::CodeRevoked);
        }
        if now >= code.expires_at {
            return refused(EnrolRefusal::CodeExpired);
        }
        if account_status_of(&mut **tx, code.subscriber_id)? != Some(AccountStatus::Active) {
            return refused(EnrolRefusal::PartyNotActive(
                "the account is suspended".into(),
            ));
        }
        let owners = tx.query(
            "SELECT DISTINCT p.ptype, p.pid FROM certificates c \
             JOIN parties p ON p.id = c.party_id WHERE c.fingerprint = $1",
            &[&fingerprint],
        )?;
        for r in &owners {
            let k = PartyKey {
                ptype: r.try_get(0)?,
                id: r.try_get(1)?,
            };
            if k != *e.key {
                return refused(EnrolRefusal::CertificateInUse { party: k });
            }
        }
        // Locked (when it exists) before it is read: a revoke on another node waits.
        let locked = lock_party(&mut **tx, e.key)?;
        let replaced = match get_party(&mut **tx, e.key)? {
            Some(p) if p.subscriber_id != code.subscriber_id => {
                return refused(EnrolRefusal::PartyNotActive(
                    "the party id belongs to another account".into(),
                ))
            }
            Some(p) if p.status == PartyStatus::Revoked => {
                return refused(EnrolRefusal::PartyNotActive("the party is revoked".into()))
            }
            Some(_) => {
                let (party, _) =
                    locked.ok_or_else(|| StoreError::Backend("the party vanished".into()))?;
                add_certificate(&mut **tx, party, e.cert_der, &fingerprint, now, Some(now))?;
                true
            }
            None => {
                // The unique constraints decide a race with a registration on another node.
                let inserted = tx.query_opt(
                    "INSERT INTO parties (subscriber_id, ptype, pid, mpc, status, created_at, \
                     max_document_bytes) VALUES ($1, $2, $3, $4, 'active', $5, $6) \
                     ON CONFLICT DO NOTHING RETURNING id",
                    &[
                        &code.subscriber_id,
                        &e.key.ptype,
                        &e.key.id,
                        &e.mpc,
                        &now,
                        &to_i64(e.max_document_bytes),
                    ],
                )?;
                let Some(row) = inserted else {
                    if get_party(&mut **tx, e.key)?.is_some() {
                        return Err(StoreError::Conflict(format!(
                            "party {} was registered meanwhile; try again",
                            e.key
                        )));
                    }
                    return refused(EnrolRefusal::PartyNotActive(format!(
                        "the MPC {} is in use",
                        e.mpc
                    )));
                };
                add_certificate(&mut **tx, row.get(0), e.cert_der, &fingerprint, now, None)?;
                false
            }
        };
        tx.execute(
            "UPDATE enrolment_codes SET used_at = $2, used_fingerprint = $3 WHERE id = $1",
            &[&code.id, &now, &fingerprint],
        )?;
        let p = get_party(&mut **tx, e.key)?
            .ok_or_else(|| StoreError::Backend(format!("party {} vanished", e.key)))?;
        Ok(if replaced {
            EnrolOutcome::Replaced(p)
        } else {
            EnrolOutcome::Registered(p)
        })
    })
}

/// The key of the codes' keyed hashes: 32 random bytes in `service_secrets`, made by the
/// first node that needs it (`INSERT … ON CONFLICT DO NOTHING`, then read back), so every node
/// hashes with the same key.
pub(super) fn key(store: &PostgresStore) -> StoreResult<Zeroizing<Vec<u8>>> {
    if let Some(k) = store.enrolment_key.get() {
        return Ok(k.clone());
    }
    let mut fresh = Zeroizing::new(vec![0u8; KEY_LEN]);
    openssl::rand::rand_bytes(&mut fresh)
        .map_err(|e| StoreError::Backend(format!("random: {e}")))?;
    let key = store.write(|tx| {
        tx.execute(
            "INSERT INTO service_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&KEY_NAME, &fresh.as_slice()],
        )?;
        let r = tx.query_one(
            "SELECT value FROM service_secrets WHERE name = $1",
            &[&KEY_NAME],
        )?;
        Ok(Zeroizing::new(r.try_get::<_, Vec<u8>>(0)?))
    })?;
    if key.len() != KEY_LEN {
        return Err(StoreError::Backend(format!(
            "the enrolment key in service_secrets is damaged (not {KEY_LEN} bytes); \
             outstanding enrolment codes cannot be checked without it (delete it and issue \
             new codes)"
        )));
    }
    Ok(store.enrolment_key.get_or_init(|| key).clone())
}
