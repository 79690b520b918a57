//! Enrolment codes: issued for one party id of a subscriber, stored as a keyed hash, used
//! once to register the certificate of a new installation.

use super::accounts::{add_certificate, get_party, party_id};
use super::payloads::{io_err, new_private_file};
use super::*;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use zeroize::Zeroizing;

/// The file of the key of the codes' keyed hashes, in the store's folder.
pub const ENROLMENT_KEY_FILE: &str = "enrolment.key";
const KEY_LEN: usize = 32;

const COLS: &str = "id, subscriber_id, ptype, pid, created_at, expires_at, used_at, \
     used_fingerprint, revoked_at FROM enrolment_codes";

fn record_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EnrolmentRecord> {
    Ok(EnrolmentRecord {
        id: r.get(0)?,
        subscriber_id: r.get(1)?,
        key: PartyKey {
            ptype: r.get(2)?,
            id: r.get(3)?,
        },
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        used_at: r.get(6)?,
        used_fingerprint: r.get(7)?,
        revoked_at: r.get(8)?,
    })
}

fn record(tx: &Transaction<'_>, id: i64) -> StoreResult<Option<EnrolmentRecord>> {
    let sql = format!("SELECT {COLS} WHERE id = ?1");
    Ok(tx
        .prepare_cached(&sql)?
        .query_row([id], record_row)
        .optional()?)
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

pub(super) fn issue(
    store: &SqliteStore,
    e: &NewEnrolment<'_>,
    now: Unix,
) -> StoreResult<EnrolmentRecord> {
    check_hash(e.code_hash)?;
    e.check(now)?;
    store.write(|tx| {
        let status: Option<AccountStatus> = tx
            .prepare_cached("SELECT status FROM subscribers WHERE id = ?1")?
            .query_row([e.subscriber_id], |r| r.get(0))
            .optional()?;
        e.check_account(status)?;
        e.check_party(get_party(tx, e.key)?.as_ref())?;
        let other: Option<i64> = tx
            .prepare_cached(
                "SELECT subscriber_id FROM enrolment_codes WHERE ptype = ?1 AND pid = ?2 \
                 AND subscriber_id <> ?3 AND used_at IS NULL AND revoked_at IS NULL \
                 AND expires_at > ?4 LIMIT 1",
            )?
            .query_row(params![e.key.ptype, e.key.id, e.subscriber_id, now], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(other) = other {
            return Err(StoreError::Conflict(format!(
                "party id {} has an outstanding enrolment code of another account (subscriber \
                 {other})",
                e.key
            )));
        }
        // One outstanding code per party: a new one replaces the earlier.
        tx.prepare_cached(
            "UPDATE enrolment_codes SET revoked_at = ?3 WHERE ptype = ?1 AND pid = ?2 \
             AND used_at IS NULL AND revoked_at IS NULL",
        )?
        .execute(params![e.key.ptype, e.key.id, now])?;
        tx.prepare_cached(
            "INSERT INTO enrolment_codes (subscriber_id, ptype, pid, code_hash, created_at, \
             expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            e.subscriber_id,
            e.key.ptype,
            e.key.id,
            e.code_hash,
            now,
            e.expires_at
        ])?;
        let id = tx.last_insert_rowid();
        record(tx, id)?.ok_or_else(|| StoreError::Backend("the code vanished".into()))
    })
}

pub(super) fn list(store: &SqliteStore, subscriber_id: i64) -> StoreResult<Vec<EnrolmentRecord>> {
    store.read(|tx| {
        let sql = format!("SELECT {COLS} WHERE subscriber_id = ?1 ORDER BY id DESC");
        let mut stmt = tx.prepare_cached(&sql)?;
        let rows = stmt.query_map([subscriber_id], record_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })
}

pub(super) fn revoke(
    store: &SqliteStore,
    subscriber_id: i64,
    id: i64,
    now: Unix,
) -> StoreResult<EnrolmentRecord> {
    store.write(|tx| {
        let r = record(tx, id)?
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
        tx.prepare_cached(
            "UPDATE enrolment_codes SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        )?
        .execute(params![id, now])?;
        record(tx, id)?.ok_or_else(|| StoreError::Backend("the code vanished".into()))
    })
}

pub(super) fn account(store: &SqliteStore, key: &PartyKey) -> StoreResult<Option<i64>> {
    store.read(|tx| {
        if let Some(s) = accounts::party_subscriber(tx, key)? {
            return Ok(Some(s));
        }
        Ok(tx
            .prepare_cached(
                "SELECT subscriber_id FROM enrolment_codes WHERE ptype = ?1 AND pid = ?2 \
                 ORDER BY id DESC LIMIT 1",
            )?
            .query_row(params![key.ptype, key.id], |r| r.get(0))
            .optional()?)
    })
}

pub(super) fn enrol(
    store: &SqliteStore,
    e: &Enrolment<'_>,
    now: Unix,
) -> StoreResult<EnrolOutcome> {
    check_hash(e.code_hash)?;
    if e.cert_der.is_empty() || e.mpc.is_empty() || e.key.id.is_empty() {
        return Err(StoreError::Invalid(
            "an enrolment needs a party, an MPC and a certificate".into(),
        ));
    }
    if e.max_document_bytes == 0 || i64::try_from(e.max_document_bytes).is_err() {
        return Err(StoreError::Invalid(format!(
            "max_document_bytes = {}: expected 1 to {}",
            e.max_document_bytes,
            i64::MAX
        )));
    }
    let fingerprint = normalize_fingerprint(e.fingerprint)?;
    let refused = |r| Ok(EnrolOutcome::Refused(r));
    store.write(|tx| {
        let sql = format!("SELECT {COLS} WHERE code_hash = ?1");
        let code = tx
            .prepare_cached(&sql)?
            .query_row([e.code_hash], record_row)
            .optional()?;
        // A code of another party answers as no code at all.
        let Some(code) = code.filter(|c| c.key == *e.key) else {
            return refused(EnrolRefusal::InvalidCode);
        };
        if code.used_at.is_some() {
            if code.used_fingerprint.as_deref() == Some(fingerprint.as_str()) {
                if let Some(p) = get_party(tx, e.key)? {
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
        let status: AccountStatus = tx
            .prepare_cached("SELECT status FROM subscribers WHERE id = ?1")?
            .query_row([code.subscriber_id], |r| r.get(0))?;
        if status == AccountStatus::Suspended {
            return refused(EnrolRefusal::PartyNotActive(
                "the account is suspended".into(),
            ));
        }
        let owners: Vec<PartyKey> = tx
            .prepare_cached(
                "SELECT DISTINCT p.ptype, p.pid FROM certificates c \
                 JOIN parties p ON p.id = c.party_id WHERE c.fingerprint = ?1",
            )?
            .query_map([&fingerprint], |r| {
                Ok(PartyKey {
                    ptype: r.get(0)?,
                    id: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        if let Some(other) = owners.into_iter().find(|k| k != e.key) {
            return refused(EnrolRefusal::CertificateInUse { party: other });
        }
        let replaced = match get_party(tx, e.key)? {
            Some(p) if p.subscriber_id != code.subscriber_id => {
                return refused(EnrolRefusal::PartyNotActive(
                    "the party id belongs to another account".into(),
                ))
            }
            Some(p) if p.status == PartyStatus::Revoked => {
                return refused(EnrolRefusal::PartyNotActive("the party is revoked".into()))
            }
            Some(_) => {
                let (party, _) = party_id(tx, e.key)?
                    .ok_or_else(|| StoreError::Backend("the party vanished".into()))?;
                add_certificate(tx, party, e.cert_der, &fingerprint, now, Some(now))?;
                true
            }
            None => {
                let mpc_taken = tx
                    .prepare_cached("SELECT 1 FROM parties WHERE mpc = ?1")?
                    .exists([e.mpc])?;
                if mpc_taken {
                    return refused(EnrolRefusal::PartyNotActive(format!(
                        "the MPC {} is in use",
                        e.mpc
                    )));
                }
                tx.prepare_cached(
                    "INSERT INTO parties (subscriber_id, ptype, pid, mpc, status, created_at, \
                     max_document_bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    code.subscriber_id,
                    e.key.ptype,
                    e.key.id,
                    e.mpc,
                    PartyStatus::Active,
                    now,
                    i64::try_from(e.max_document_bytes).unwrap_or(i64::MAX)
                ])?;
                let party = tx.last_insert_rowid();
                add_certificate(tx, party, e.cert_der, &fingerprint, now, None)?;
                false
            }
        };
        tx.prepare_cached(
            "UPDATE enrolment_codes SET used_at = ?2, used_fingerprint = ?3 WHERE id = ?1",
        )?
        .execute(params![code.id, now, fingerprint])?;
        let p = get_party(tx, e.key)?
            .ok_or_else(|| StoreError::Backend(format!("party {} vanished", e.key)))?;
        Ok(if replaced {
            EnrolOutcome::Replaced(p)
        } else {
            EnrolOutcome::Registered(p)
        })
    })
}

/// The key of the codes' keyed hashes: `<store>/enrolment.key`, made (32 random bytes, `0600`)
/// by the first process that needs it — another process making it at the same time is
/// harmless: the file is linked into place only if absent, and both then read the one there.
pub(super) fn key(store: &SqliteStore) -> StoreResult<Zeroizing<Vec<u8>>> {
    if let Some(k) = store.enrolment_key.get() {
        return Ok(k.clone());
    }
    let path = store.dir.join(ENROLMENT_KEY_FILE);
    let read = |path: &Path| -> StoreResult<Option<Zeroizing<Vec<u8>>>> {
        match fs::read(path) {
            Ok(k) if k.len() == KEY_LEN => Ok(Some(Zeroizing::new(k))),
            Ok(mut k) => {
                zeroize::Zeroize::zeroize(&mut k);
                Err(StoreError::Backend(format!(
                    "{} is damaged (not {KEY_LEN} bytes); outstanding enrolment codes cannot \
                     be checked without it (remove it and issue new codes)",
                    path.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("read {}", path.display()), e)),
        }
    };
    let key = match read(&path)? {
        Some(k) => k,
        None => {
            let mut k = Zeroizing::new(vec![0u8; KEY_LEN]);
            openssl::rand::rand_bytes(&mut k)
                .map_err(|e| StoreError::Backend(format!("random: {e}")))?;
            static N: AtomicU64 = AtomicU64::new(0);
            let tmp = store.dir.join(format!(
                ".{ENROLMENT_KEY_FILE}.{}-{}.tmp",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let written = new_private_file(&tmp)
                .and_then(|mut f| f.write_all(&k).and_then(|()| f.sync_all()))
                .map_err(|e| io_err(format!("write {}", tmp.display()), e))
                .and_then(|()| match fs::hard_link(&tmp, &path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                    Err(e) => Err(io_err(format!("link {}", path.display()), e)),
                });
            let _ = fs::remove_file(&tmp);
            written?;
            sync_dir(&store.dir)?;
            read(&path)?
                .ok_or_else(|| StoreError::Backend(format!("{} vanished", path.display())))?
        }
    };
    Ok(store.enrolment_key.get_or_init(|| key).clone())
}
