//! Subscribers, parties and their certificates.

use super::convert::to_u64;
use super::*;

const SUBSCRIBER_COLS: &str =
    "id, organisation, contact, contract_ref, plan, status, created_at FROM subscribers";

fn subscriber_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Subscriber> {
    Ok(Subscriber {
        id: r.get(0)?,
        organisation: r.get(1)?,
        contact: r.get(2)?,
        contract_ref: r.get(3)?,
        plan: r.get(4)?,
        status: r.get(5)?,
        created_at: r.get(6)?,
    })
}

const PARTY_COLS: &str = "p.ptype, p.pid, p.subscriber_id, p.status, s.status, p.mpc, \
     p.created_at, p.revoked_at, p.max_document_bytes, p.mail_address \
     FROM parties p JOIN subscribers s ON s.id = p.subscriber_id";

fn party_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Party> {
    Ok(Party {
        key: PartyKey {
            ptype: r.get(0)?,
            id: r.get(1)?,
        },
        subscriber_id: r.get(2)?,
        status: r.get(3)?,
        account_status: r.get(4)?,
        mpc: r.get(5)?,
        created_at: r.get(6)?,
        revoked_at: r.get(7)?,
        max_document_bytes: to_u64(r.get(8)?),
        mail_address: r.get(9)?,
    })
}

pub(super) fn get_party(tx: &Transaction<'_>, key: &PartyKey) -> StoreResult<Option<Party>> {
    let sql = format!("SELECT {PARTY_COLS} WHERE p.ptype = ?1 AND p.pid = ?2");
    Ok(tx
        .prepare_cached(&sql)?
        .query_row(params![key.ptype, key.id], party_row)
        .optional()?)
}

/// The party's row id and status.
pub(super) fn party_id(
    tx: &Transaction<'_>,
    key: &PartyKey,
) -> StoreResult<Option<(i64, PartyStatus)>> {
    Ok(tx
        .prepare_cached("SELECT id, status FROM parties WHERE ptype = ?1 AND pid = ?2")?
        .query_row(params![key.ptype, key.id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// The subscriber of a party, `None` when the party is not registered.
pub(super) fn party_subscriber(tx: &Transaction<'_>, key: &PartyKey) -> StoreResult<Option<i64>> {
    Ok(tx
        .prepare_cached("SELECT subscriber_id FROM parties WHERE ptype = ?1 AND pid = ?2")?
        .query_row(params![key.ptype, key.id], |r| r.get(0))
        .optional()?)
}

/// A limit as SQLite stores it (INTEGER is signed).
fn limit_to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Register `der` for the party (row id `party`) from `now`; with `retire_others_at`, the
/// party's other certificates end then (those that would end later are cut short to it).
pub(super) fn add_certificate(
    tx: &Transaction<'_>,
    party: i64,
    der: &[u8],
    fingerprint: &str,
    now: Unix,
    retire_others_at: Option<Unix>,
) -> StoreResult<()> {
    if let Some(at) = retire_others_at {
        tx.prepare_cached(
            "UPDATE certificates SET retired_at = ?2 \
             WHERE party_id = ?1 AND (retired_at IS NULL OR retired_at > ?2)",
        )?
        .execute(params![party, at])?;
    }
    tx.prepare_cached(
        "INSERT INTO certificates (party_id, der, fingerprint, registered_at) \
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![party, der, fingerprint, now])?;
    Ok(())
}

pub(super) fn create_subscriber(
    store: &SqliteStore,
    s: &NewSubscriber,
    now: Unix,
) -> StoreResult<Subscriber> {
    if s.organisation.trim().is_empty() {
        return Err(StoreError::Invalid("organisation is empty".into()));
    }
    store.write(|tx| {
        tx.prepare_cached(
            "INSERT INTO subscribers (organisation, contact, contract_ref, plan, status, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            s.organisation,
            s.contact,
            s.contract_ref,
            s.plan,
            AccountStatus::Active,
            now
        ])?;
        Ok(Subscriber {
            id: tx.last_insert_rowid(),
            organisation: s.organisation.clone(),
            contact: s.contact.clone(),
            contract_ref: s.contract_ref.clone(),
            plan: s.plan.clone(),
            status: AccountStatus::Active,
            created_at: now,
        })
    })
}

pub(super) fn subscriber(store: &SqliteStore, id: i64) -> StoreResult<Option<Subscriber>> {
    store.read(|tx| {
        let sql = format!("SELECT {SUBSCRIBER_COLS} WHERE id = ?1");
        Ok(tx
            .prepare_cached(&sql)?
            .query_row([id], subscriber_row)
            .optional()?)
    })
}

pub(super) fn subscribers(store: &SqliteStore) -> StoreResult<Vec<Subscriber>> {
    store.read(|tx| {
        let sql = format!("SELECT {SUBSCRIBER_COLS} ORDER BY id");
        let mut stmt = tx.prepare_cached(&sql)?;
        let rows = stmt.query_map([], subscriber_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })
}

pub(super) fn set_account_status(
    store: &SqliteStore,
    id: i64,
    status: AccountStatus,
) -> StoreResult<()> {
    store.write(|tx| {
        let n = tx
            .prepare_cached("UPDATE subscribers SET status = ?2 WHERE id = ?1")?
            .execute(params![id, status])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("subscriber {id}")));
        }
        Ok(())
    })
}

pub(super) fn register_party(
    store: &SqliteStore,
    p: &NewParty<'_>,
    now: Unix,
) -> StoreResult<Party> {
    let NewParty {
        subscriber_id,
        key,
        mpc,
        cert_der,
        fingerprint: _,
        max_document_bytes,
        mail_address,
    } = *p;
    let fingerprint = p.checked()?;
    store.write(|tx| {
        let subscriber_exists = tx
            .prepare_cached("SELECT 1 FROM subscribers WHERE id = ?1")?
            .exists([subscriber_id])?;
        if !subscriber_exists {
            return Err(StoreError::NotFound(format!("subscriber {subscriber_id}")));
        }
        if let Some((_, status)) = party_id(tx, key)? {
            return Err(StoreError::Conflict(match status {
                PartyStatus::Active => format!("party {key} exists"),
                PartyStatus::Revoked => format!(
                    "party {key} exists and is revoked; `party reinstate` makes it active again"
                ),
            }));
        }
        let mpc_taken = tx
            .prepare_cached("SELECT 1 FROM parties WHERE mpc = ?1")?
            .exists([mpc])?;
        if mpc_taken {
            return Err(StoreError::Conflict(format!("MPC {mpc:?} is in use")));
        }
        tx.prepare_cached(
            "INSERT INTO parties (subscriber_id, ptype, pid, mpc, status, created_at, \
             max_document_bytes, mail_address) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            subscriber_id,
            key.ptype,
            key.id,
            mpc,
            PartyStatus::Active,
            now,
            limit_to_i64(max_document_bytes),
            mail_address
        ])?;
        let party = tx.last_insert_rowid();
        add_certificate(tx, party, cert_der, &fingerprint, now, None)?;
        get_party(tx, key)?.ok_or_else(|| StoreError::Backend(format!("party {key} vanished")))
    })
}

pub(super) fn set_party_limit(
    store: &SqliteStore,
    key: &PartyKey,
    max_document_bytes: u64,
) -> StoreResult<()> {
    check_document_limit(max_document_bytes)?;
    store.write(|tx| {
        let n = tx
            .prepare_cached(
                "UPDATE parties SET max_document_bytes = ?3 WHERE ptype = ?1 AND pid = ?2",
            )?
            .execute(params![key.ptype, key.id, limit_to_i64(max_document_bytes)])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("party {key}")));
        }
        Ok(())
    })
}

pub(super) fn set_party_mail_address(
    store: &SqliteStore,
    key: &PartyKey,
    mail_address: Option<&str>,
) -> StoreResult<()> {
    if let Some(a) = mail_address {
        check_mail_address(a).map_err(StoreError::Invalid)?;
    }
    store.write(|tx| {
        let n = tx
            .prepare_cached("UPDATE parties SET mail_address = ?3 WHERE ptype = ?1 AND pid = ?2")?
            .execute(params![key.ptype, key.id, mail_address])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("party {key}")));
        }
        Ok(())
    })
}

/// Usable parties (active, of an active account) that have a mail address.
pub(super) fn mail_parties(store: &SqliteStore) -> StoreResult<Vec<Party>> {
    store.read(|tx| {
        let sql = format!(
            "SELECT {PARTY_COLS} WHERE p.mail_address IS NOT NULL AND p.status = 'active' \
             AND s.status = 'active' ORDER BY p.id"
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        let rows = stmt.query_map([], party_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })
}

pub(super) fn replace_certificate(
    store: &SqliteStore,
    key: &PartyKey,
    cert_der: &[u8],
    fingerprint: &str,
    overlap_until: Unix,
    now: Unix,
) -> StoreResult<()> {
    if cert_der.is_empty() {
        return Err(StoreError::Invalid("certificate is empty".into()));
    }
    let fingerprint = normalize_fingerprint(fingerprint)?;
    if overlap_until < now {
        return Err(StoreError::Invalid(
            "the overlap must not end before now".into(),
        ));
    }
    store.write(|tx| {
        let (party, status) =
            party_id(tx, key)?.ok_or_else(|| StoreError::NotFound(format!("party {key}")))?;
        if status == PartyStatus::Revoked {
            return Err(StoreError::Conflict(format!("party {key} is revoked")));
        }
        // Current certificates are retired at the end of the overlap; certificates still in
        // an earlier, longer overlap are cut short to it too (so an emergency replacement
        // with `overlap_until = now` ends every older certificate).
        add_certificate(tx, party, cert_der, &fingerprint, now, Some(overlap_until))
    })
}

pub(super) fn revoke_party(store: &SqliteStore, key: &PartyKey, now: Unix) -> StoreResult<()> {
    store.write(|tx| {
        let (party, status) =
            party_id(tx, key)?.ok_or_else(|| StoreError::NotFound(format!("party {key}")))?;
        // Revoking again keeps the first revocation time.
        if status == PartyStatus::Active {
            tx.prepare_cached("UPDATE parties SET status = ?2, revoked_at = ?3 WHERE id = ?1")?
                .execute(params![party, PartyStatus::Revoked, now])?;
        }
        Ok(())
    })
}

pub(super) fn reinstate_party(
    store: &SqliteStore,
    key: &PartyKey,
    new_cert: Option<(&[u8], &str)>,
    now: Unix,
) -> StoreResult<()> {
    let new_cert = match new_cert {
        Some(([], _)) => return Err(StoreError::Invalid("certificate is empty".into())),
        Some((der, fp)) => Some((der, normalize_fingerprint(fp)?)),
        None => None,
    };
    store.write(|tx| {
        let (party, status) =
            party_id(tx, key)?.ok_or_else(|| StoreError::NotFound(format!("party {key}")))?;
        if status == PartyStatus::Active {
            return Err(StoreError::Conflict(format!("party {key} is not revoked")));
        }
        tx.prepare_cached("UPDATE parties SET status = ?2, revoked_at = NULL WHERE id = ?1")?
            .execute(params![party, PartyStatus::Active])?;
        if let Some((der, fingerprint)) = &new_cert {
            add_certificate(tx, party, der, fingerprint, now, Some(now))?;
        }
        Ok(())
    })
}

pub(super) fn party(store: &SqliteStore, key: &PartyKey) -> StoreResult<Option<Party>> {
    store.read(|tx| get_party(tx, key))
}

pub(super) fn party_by_mpc(store: &SqliteStore, mpc: &str) -> StoreResult<Option<Party>> {
    store.read(|tx| {
        let sql = format!("SELECT {PARTY_COLS} WHERE p.mpc = ?1");
        Ok(tx
            .prepare_cached(&sql)?
            .query_row([mpc], party_row)
            .optional()?)
    })
}

pub(super) fn parties_by_fingerprint(
    store: &SqliteStore,
    fingerprint: &str,
) -> StoreResult<Vec<Party>> {
    let fingerprint = normalize_fingerprint(fingerprint)?;
    store.read(|tx| {
        let sql = format!(
            "SELECT {PARTY_COLS} WHERE p.id IN \
             (SELECT party_id FROM certificates WHERE fingerprint = ?1) ORDER BY p.id"
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        let rows = stmt.query_map([fingerprint], party_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })
}

pub(super) fn certificates(store: &SqliteStore, key: &PartyKey) -> StoreResult<Vec<PartyCert>> {
    store.read(|tx| {
        let mut stmt = tx.prepare_cached(
            "SELECT c.der, c.fingerprint, c.registered_at, c.retired_at \
             FROM certificates c JOIN parties p ON p.id = c.party_id \
             WHERE p.ptype = ?1 AND p.pid = ?2 ORDER BY c.id DESC",
        )?;
        let rows = stmt.query_map(params![key.ptype, key.id], |r| {
            Ok(PartyCert {
                der: r.get(0)?,
                fingerprint: r.get(1)?,
                registered_at: r.get(2)?,
                retired_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })
}

pub(super) fn parties(store: &SqliteStore, subscriber_id: Option<i64>) -> StoreResult<Vec<Party>> {
    store.read(|tx| {
        let sql =
            format!("SELECT {PARTY_COLS} WHERE ?1 IS NULL OR p.subscriber_id = ?1 ORDER BY p.id");
        let mut stmt = tx.prepare_cached(&sql)?;
        let rows = stmt.query_map([subscriber_id], party_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })
}
