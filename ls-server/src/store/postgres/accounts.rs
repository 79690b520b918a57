//! Subscribers, parties and their certificates. A change to a party locks its row
//! (`FOR UPDATE`), so changes made on two nodes at once apply one after the other.

use super::*;
use ::postgres::{GenericClient, Row};

const SUBSCRIBER_COLS: &str =
    "id, organisation, contact, contract_ref, plan, status, created_at FROM subscribers";

fn account_status(s: &str) -> StoreResult<AccountStatus> {
    match s {
        "active" => Ok(AccountStatus::Active),
        "suspended" => Ok(AccountStatus::Suspended),
        _ => Err(StoreError::Backend(format!("unknown account status {s:?}"))),
    }
}

fn party_status(s: &str) -> StoreResult<PartyStatus> {
    match s {
        "active" => Ok(PartyStatus::Active),
        "revoked" => Ok(PartyStatus::Revoked),
        _ => Err(StoreError::Backend(format!("unknown party status {s:?}"))),
    }
}

fn subscriber_row(r: &Row) -> StoreResult<Subscriber> {
    Ok(Subscriber {
        id: r.try_get(0)?,
        organisation: r.try_get(1)?,
        contact: r.try_get(2)?,
        contract_ref: r.try_get(3)?,
        plan: r.try_get(4)?,
        status: account_status(r.try_get(5)?)?,
        created_at: r.try_get(6)?,
    })
}

const PARTY_COLS: &str = "p.ptype, p.pid, p.subscriber_id, p.status, s.status, p.mpc, \
     p.created_at, p.revoked_at, p.max_document_bytes, p.mail_address \
     FROM parties p JOIN subscribers s ON s.id = p.subscriber_id";

fn party_row(r: &Row) -> StoreResult<Party> {
    Ok(Party {
        key: PartyKey {
            ptype: r.try_get(0)?,
            id: r.try_get(1)?,
        },
        subscriber_id: r.try_get(2)?,
        status: party_status(r.try_get(3)?)?,
        account_status: account_status(r.try_get(4)?)?,
        mpc: r.try_get(5)?,
        created_at: r.try_get(6)?,
        revoked_at: r.try_get(7)?,
        max_document_bytes: to_u64(r.try_get(8)?),
        mail_address: r.try_get(9)?,
    })
}

pub(super) fn get_party(c: &mut impl GenericClient, key: &PartyKey) -> StoreResult<Option<Party>> {
    let sql = format!("SELECT {PARTY_COLS} WHERE p.ptype = $1 AND p.pid = $2");
    c.query_opt(&sql, &[&key.ptype, &key.id])?
        .map(|r| party_row(&r))
        .transpose()
}

/// The subscriber of a party, `None` when the party is not registered.
pub(super) fn party_subscriber(
    c: &mut impl GenericClient,
    key: &PartyKey,
) -> StoreResult<Option<i64>> {
    Ok(c.query_opt(
        "SELECT subscriber_id FROM parties WHERE ptype = $1 AND pid = $2",
        &[&key.ptype, &key.id],
    )?
    .map(|r| r.get(0)))
}

pub(super) fn create_subscriber(
    store: &PostgresStore,
    s: &NewSubscriber,
    now: Unix,
) -> StoreResult<Subscriber> {
    if s.organisation.trim().is_empty() {
        return Err(StoreError::Invalid("organisation is empty".into()));
    }
    store.write(|tx| {
        let id: i64 = tx
            .query_one(
                "INSERT INTO subscribers (organisation, contact, contract_ref, plan, status, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &s.organisation,
                    &s.contact,
                    &s.contract_ref,
                    &s.plan,
                    &AccountStatus::Active.as_str(),
                    &now,
                ],
            )?
            .get(0);
        Ok(Subscriber {
            id,
            organisation: s.organisation.clone(),
            contact: s.contact.clone(),
            contract_ref: s.contract_ref.clone(),
            plan: s.plan.clone(),
            status: AccountStatus::Active,
            created_at: now,
        })
    })
}

pub(super) fn subscriber(store: &PostgresStore, id: i64) -> StoreResult<Option<Subscriber>> {
    store.read(|tx| {
        let sql = format!("SELECT {SUBSCRIBER_COLS} WHERE id = $1");
        tx.query_opt(&sql, &[&id])?
            .map(|r| subscriber_row(&r))
            .transpose()
    })
}

pub(super) fn subscribers(store: &PostgresStore) -> StoreResult<Vec<Subscriber>> {
    store.read(|tx| {
        let sql = format!("SELECT {SUBSCRIBER_COLS} ORDER BY id");
        tx.query(&sql, &[])?.iter().map(subscriber_row).collect()
    })
}

pub(super) fn set_account_status(
    store: &PostgresStore,
    id: i64,
    status: AccountStatus,
) -> StoreResult<()> {
    store.write(|tx| {
        let n = tx.execute(
            "UPDATE subscribers SET status = $2 WHERE id = $1",
            &[&id, &status.as_str()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("subscriber {id}")));
        }
        Ok(())
    })
}

pub(super) fn register_party(
    store: &PostgresStore,
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
        if tx
            .query_opt("SELECT 1 FROM subscribers WHERE id = $1", &[&subscriber_id])?
            .is_none()
        {
            return Err(StoreError::NotFound(format!("subscriber {subscriber_id}")));
        }
        // The unique constraints decide a race between two nodes registering the same party
        // or MPC: the loser's INSERT inserts nothing.
        let inserted = tx.query_opt(
            "INSERT INTO parties (subscriber_id, ptype, pid, mpc, status, created_at, \
             max_document_bytes, mail_address) VALUES ($1, $2, $3, $4, 'active', $5, $6, $7) \
             ON CONFLICT DO NOTHING RETURNING id",
            &[
                &subscriber_id,
                &key.ptype,
                &key.id,
                &mpc,
                &now,
                &to_i64(max_document_bytes),
                &mail_address,
            ],
        )?;
        let Some(row) = inserted else {
            let status: Option<String> = tx
                .query_opt(
                    "SELECT status FROM parties WHERE ptype = $1 AND pid = $2",
                    &[&key.ptype, &key.id],
                )?
                .map(|r| r.get(0));
            return Err(StoreError::Conflict(match status.as_deref() {
                Some("revoked") => format!(
                    "party {key} exists and is revoked; `party reinstate` makes it active again"
                ),
                Some(_) => format!("party {key} exists"),
                None => format!("MPC {mpc:?} is in use"),
            }));
        };
        let party: i64 = row.get(0);
        add_certificate(&mut **tx, party, cert_der, &fingerprint, now, None)?;
        get_party(&mut **tx, key)?
            .ok_or_else(|| StoreError::Backend(format!("party {key} vanished")))
    })
}

pub(super) fn party(store: &PostgresStore, key: &PartyKey) -> StoreResult<Option<Party>> {
    store.read(|tx| get_party(&mut **tx, key))
}

pub(super) fn party_by_mpc(store: &PostgresStore, mpc: &str) -> StoreResult<Option<Party>> {
    store.read(|tx| {
        let sql = format!("SELECT {PARTY_COLS} WHERE p.mpc = $1");
        tx.query_opt(&sql, &[&mpc])?
            .map(|r| party_row(&r))
            .transpose()
    })
}

pub(super) fn certificates(store: &PostgresStore, key: &PartyKey) -> StoreResult<Vec<PartyCert>> {
    store.read(|tx| {
        tx.query(
            "SELECT c.der, c.fingerprint, c.registered_at, c.retired_at \
             FROM certificates c JOIN parties p ON p.id = c.party_id \
             WHERE p.ptype = $1 AND p.pid = $2 ORDER BY c.id DESC",
            &[&key.ptype, &key.id],
        )?
        .iter()
        .map(|r| {
            Ok(PartyCert {
                der: r.try_get(0)?,
                fingerprint: r.try_get(1)?,
                registered_at: r.try_get(2)?,
                retired_at: r.try_get(3)?,
            })
        })
        .collect()
    })
}

pub(super) fn parties(
    store: &PostgresStore,
    subscriber_id: Option<i64>,
) -> StoreResult<Vec<Party>> {
    store.read(|tx| {
        let sql = format!(
            "SELECT {PARTY_COLS} WHERE $1::BIGINT IS NULL OR p.subscriber_id = $1 ORDER BY p.id"
        );
        tx.query(&sql, &[&subscriber_id])?
            .iter()
            .map(party_row)
            .collect()
    })
}

/// The party's row id and status, its row locked (`FOR UPDATE`) until the transaction ends, so
/// that a revoke, reinstatement or certificate change on another node waits for this one.
pub(super) fn lock_party(
    c: &mut impl GenericClient,
    key: &PartyKey,
) -> StoreResult<Option<(i64, PartyStatus)>> {
    c.query_opt(
        "SELECT id, status FROM parties WHERE ptype = $1 AND pid = $2 FOR UPDATE",
        &[&key.ptype, &key.id],
    )?
    .map(|r| Ok((r.try_get(0)?, party_status(r.try_get(1)?)?)))
    .transpose()
}

/// Register `der` for the party (row id `party`) from `now`; with `retire_others_at`, the
/// party's other certificates end then (those that would end later are cut short to it).
pub(super) fn add_certificate(
    c: &mut impl GenericClient,
    party: i64,
    der: &[u8],
    fingerprint: &str,
    now: Unix,
    retire_others_at: Option<Unix>,
) -> StoreResult<()> {
    if let Some(at) = retire_others_at {
        c.execute(
            "UPDATE certificates SET retired_at = $2 \
             WHERE party_id = $1 AND (retired_at IS NULL OR retired_at > $2)",
            &[&party, &at],
        )?;
    }
    c.execute(
        "INSERT INTO certificates (party_id, der, fingerprint, registered_at) \
         VALUES ($1, $2, $3, $4)",
        &[&party, &der, &fingerprint, &now],
    )?;
    Ok(())
}

pub(super) fn set_party_limit(
    store: &PostgresStore,
    key: &PartyKey,
    max_document_bytes: u64,
) -> StoreResult<()> {
    check_document_limit(max_document_bytes)?;
    store.write(|tx| {
        let n = tx.execute(
            "UPDATE parties SET max_document_bytes = $3 WHERE ptype = $1 AND pid = $2",
            &[&key.ptype, &key.id, &to_i64(max_document_bytes)],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("party {key}")));
        }
        Ok(())
    })
}

pub(super) fn set_party_mail_address(
    store: &PostgresStore,
    key: &PartyKey,
    mail_address: Option<&str>,
) -> StoreResult<()> {
    if let Some(a) = mail_address {
        check_mail_address(a).map_err(StoreError::Invalid)?;
    }
    store.write(|tx| {
        let n = tx.execute(
            "UPDATE parties SET mail_address = $3 WHERE ptype = $1 AND pid = $2",
            &[&key.ptype, &key.id, &mail_address],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("party {key}")));
        }
        Ok(())
    })
}

/// Usable parties (active, of an active account) that have a mail address.
pub(super) fn mail_parties(store: &PostgresStore) -> StoreResult<Vec<Party>> {
    store.read(|tx| {
        let sql = format!(
            "SELECT {PARTY_COLS} WHERE p.mail_address IS NOT NULL AND p.status = 'active' \
             AND s.status = 'active' ORDER BY p.id"
        );
        tx.query(&sql, &[])?.iter().map(party_row).collect()
    })
}

pub(super) fn replace_certificate(
    store: &PostgresStore,
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
        let (party, status) = lock_party(&mut **tx, key)?
            .ok_or_else(|| StoreError::NotFound(format!("party {key}")))?;
        if status == PartyStatus::Revoked {
            return Err(StoreError::Conflict(format!("party {key} is revoked")));
        }
        // Current certificates are retired at the end of the overlap; certificates still in
        // an earlier, longer overlap are cut short to it too (so an emergency replacement
        // with `overlap_until = now` ends every older certificate).
        add_certificate(
            &mut **tx,
            party,
            cert_der,
            &fingerprint,
            now,
            Some(overlap_until),
        )
    })
}

pub(super) fn revoke_party(store: &PostgresStore, key: &PartyKey, now: Unix) -> StoreResult<()> {
    store.write(|tx| {
        let (party, status) = lock_party(&mut **tx, key)?
            .ok_or_else(|| StoreError::NotFound(format!("party {key}")))?;
        // Revoking again keeps the first revocation time.
        if status == PartyStatus::Active {
            tx.execute(
                "UPDATE parties SET status = 'revoked', revoked_at = $2 WHERE id = $1",
                &[&party, &now],
            )?;
        }
        Ok(())
    })
}

pub(super) fn reinstate_party(
    store: &PostgresStore,
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
        let (party, status) = lock_party(&mut **tx, key)?
            .ok_or_else(|| StoreError::NotFound(format!("party {key}")))?;
        if status == PartyStatus::Active {
            return Err(StoreError::Conflict(format!("party {key} is not revoked")));
        }
        tx.execute(
            "UPDATE parties SET status = 'active', revoked_at = NULL WHERE id = $1",
            &[&party],
        )?;
        if let Some((der, fingerprint)) = &new_cert {
            add_certificate(&mut **tx, party, der, fingerprint, now, Some(now))?;
        }
        Ok(())
    })
}

pub(super) fn parties_by_fingerprint(
    store: &PostgresStore,
    fingerprint: &str,
) -> StoreResult<Vec<Party>> {
    let fingerprint = normalize_fingerprint(fingerprint)?;
    store.read(|tx| {
        let sql = format!(
            "SELECT {PARTY_COLS} WHERE p.id IN \
             (SELECT party_id FROM certificates WHERE fingerprint = $1) ORDER BY p.id"
        );
        tx.query(&sql, &[&fingerprint])?
            .iter()
            .map(party_row)
            .collect()
    })
}
