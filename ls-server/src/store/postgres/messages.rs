//! Messages: admission (co-ordination messages: `named.rs`), storing (bodies inline or in
//! chunks), claiming under a lease with `FOR UPDATE SKIP LOCKED`, delivery.

use super::accounts::party_subscriber;
use super::named;
use super::*;
use ::postgres::GenericClient;
use std::io::{Read, Seek, Write};

/// The first message of `m`'s sender with `m`'s MessageId, as a duplicate or a refusal.
fn earlier(c: &mut Tx<'_>, m: &NewMessage) -> StoreResult<Option<Accepted>> {
    let Some(r) = c.query_opt_p(
        "SELECT recipient_ptype, recipient_id, content_sha256, receipt_content_type, receipt \
         FROM messages WHERE sender_ptype = $1 AND sender_id = $2 AND message_id = $3",
        &[&m.sender.ptype, &m.sender.id, &m.message_id],
    )?
    else {
        return Ok(None);
    };
    let recipient = PartyKey {
        ptype: r.try_get(0)?,
        id: r.try_get(1)?,
    };
    let content: Option<String> = r.try_get(2)?;
    let same = recipient == m.recipient
        && content
            .as_deref()
            .is_none_or(|c| c.eq_ignore_ascii_case(&m.content_sha256));
    if !same {
        return Err(StoreError::Refused(Refused::MessageIdReused {
            first_recipient: recipient,
        }));
    }
    Ok(Some(Accepted::Duplicate {
        receipt_content_type: r.try_get(3)?,
        receipt: r.try_get(4)?,
    }))
}

fn id_taken(m: &NewMessage) -> StoreError {
    StoreError::Conflict(format!(
        "MessageId {} is already used by another sender for this recipient",
        m.message_id
    ))
}

/// The checks that need no lock: the recipient's limit. Duplicates are decided by the
/// INSERT (unique constraints), the quota under the sender's subscriber row lock.
fn check_limit(c: &mut Tx<'_>, m: &NewMessage) -> StoreResult<()> {
    let size = m.body.len();
    let max_document_bytes: i64 = c
        .query_opt_p(
            "SELECT max_document_bytes FROM parties WHERE ptype = $1 AND pid = $2",
            &[&m.recipient.ptype, &m.recipient.id],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("recipient party {}", m.recipient)))?
        .get(0);
    let max_document_bytes = to_u64(max_document_bytes);
    let max_message_bytes = coordination::message_limit_for(max_document_bytes);
    if size > max_message_bytes {
        return Err(StoreError::Refused(Refused::RecipientLimit {
            recipient: m.recipient.clone(),
            size,
            max_message_bytes,
            max_document_bytes,
        }));
    }
    Ok(())
}

/// The sender's account quota, checked with the subscriber's row locked (`FOR UPDATE`), so two
/// nodes accepting for one account at once cannot both fit under it. `exclude` is the message
/// being accepted (already inserted); `lock: false` for the early check in a read-only
/// transaction (repeated with the lock before the commit).
fn check_quota(
    c: &mut Tx<'_>,
    m: &NewMessage,
    limits: &AcceptLimits,
    exclude: i64,
    lock: bool,
) -> StoreResult<()> {
    // Refusal notices are exempt: they free the refused message's body.
    if limits.max_queued_bytes_per_subscriber == 0
        || matches!(m.coordination, Some(Coordination::Refusal(_)))
    {
        return Ok(());
    }
    // A sender that is no party is the service itself (its own announcements). With `lock`,
    // the account's row is locked in the same statement.
    let subscriber: Option<i64> = if lock {
        c.query_opt_p(
            "SELECT s.id FROM subscribers s JOIN parties p ON p.subscriber_id = s.id \
             WHERE p.ptype = $1 AND p.pid = $2 FOR UPDATE OF s",
            &[&m.sender.ptype, &m.sender.id],
        )?
        .map(|r| r.get(0))
    } else {
        party_subscriber(&mut **c, &m.sender)?
    };
    let Some(subscriber) = subscriber else {
        return Ok(());
    };
    let queued: i64 = c
        .query_one_p(
            "SELECT COALESCE(SUM(m.size), 0)::BIGINT FROM parties p JOIN messages m \
             ON m.sender_ptype = p.ptype AND m.sender_id = p.pid \
             AND m.state IN ('waiting', 'leased') WHERE p.subscriber_id = $1 AND m.seq <> $2",
            &[&subscriber, &exclude],
        )?
        .get(0);
    let queued = to_u64(queued);
    let size = m.body.len();
    let quota = limits.max_queued_bytes_per_subscriber;
    if queued.saturating_add(size) > quota {
        return Err(StoreError::Refused(Refused::QuotaExceeded {
            subscriber_id: subscriber,
            queued,
            size,
            quota,
        }));
    }
    Ok(())
}

fn add_usage(
    c: &mut Tx<'_>,
    party: &PartyKey,
    kind: &str,
    at: Unix,
    bytes: i64,
    seq: i64,
    coordination: bool,
) -> StoreResult<()> {
    c.execute_p(
        "INSERT INTO usage_ledger (subscriber_id, party_ptype, party_id, kind, at, bytes, \
         message_seq, coordination) VALUES ((SELECT subscriber_id FROM parties \
         WHERE ptype = $1 AND pid = $2), $1, $2, $3, $4, $5, $6, $7)",
        &[
            &party.ptype,
            &party.id,
            &kind,
            &at,
            &bytes,
            &seq,
            &coordination,
        ],
    )?;
    Ok(())
}

/// Write the body of message `seq` into `payload_chunks`, [`CHUNK_BYTES`] at a time.
fn write_chunks(
    c: &mut impl GenericClient,
    seq: i64,
    mut next: impl FnMut(&mut Vec<u8>) -> StoreResult<()>,
) -> StoreResult<u64> {
    let stmt =
        c.prepare("INSERT INTO payload_chunks (message_seq, n, data) VALUES ($1, $2, $3)")?;
    let mut buf = Vec::with_capacity(CHUNK_BYTES);
    let mut n: i32 = 0;
    let mut total = 0u64;
    loop {
        buf.clear();
        next(&mut buf)?;
        if buf.is_empty() {
            return Ok(total);
        }
        c.execute(&stmt, &[&seq, &n, &buf.as_slice()])?;
        total += buf.len() as u64;
        n = n
            .checked_add(1)
            .ok_or_else(|| StoreError::Invalid("body too large".into()))?;
    }
}

pub(super) fn accept(
    store: &PostgresStore,
    m: &NewMessage,
    limits: &AcceptLimits,
) -> StoreResult<Accepted> {
    let is_coordination = m.checked_coordination()?;
    let inline = match &m.body {
        MessageBody::Bytes(b) if b.len() <= store.inline_max => Some(b.as_slice()),
        _ => None,
    };
    // A body kept in chunks is checked first without writing: a resent big message is not
    // copied again. An inline body is checked by the writing transaction alone, which makes
    // every one of these checks again (a refusal rolls it back): one transaction per accept
    // instead of two.
    if inline.is_none() {
        let pre = store.read(|tx| {
            if let Some(d) = earlier(tx, m)? {
                return Ok(Some(d));
            }
            check_limit(tx, m)?;
            named::check(&mut **tx, m, -1, false)?;
            check_quota(tx, m, limits, -1, false)?;
            Ok(None)
        })?;
        if let Some(d) = pre {
            return Ok(d);
        }
    }
    store.write(|tx| {
        let size = to_i64(m.body.len());
        let row = tx.query_opt_p(
            "INSERT INTO messages (sender_ptype, sender_id, recipient_ptype, recipient_id, \
             mpc, message_id, conversation_id, service, action, content_type, size, body, \
             chunked, receipt_content_type, receipt, state, received_at, content_sha256) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             'waiting', $16, $17) ON CONFLICT DO NOTHING RETURNING seq",
            &[
                &m.sender.ptype,
                &m.sender.id,
                &m.recipient.ptype,
                &m.recipient.id,
                &m.mpc,
                &m.message_id,
                &m.conversation_id,
                &m.service,
                &m.action,
                &m.content_type,
                &size,
                &inline,
                &inline.is_none(),
                &m.receipt_content_type,
                &m.receipt,
                &m.received_at,
                &m.content_sha256,
            ],
        )?;
        let Some(row) = row else {
            // A unique constraint said no (after any concurrent insert committed): the
            // sender's earlier message, or another sender's for this recipient.
            return match earlier(tx, m)? {
                Some(d) => Ok(d),
                None => Err(id_taken(m)),
            };
        };
        let seq: i64 = row.get(0);
        check_limit(tx, m)?;
        // The message a co-ordination message names: checked again, its row locked.
        let named = named::check(&mut **tx, m, seq, true)?;
        if inline.is_none() {
            let written = match &m.body {
                MessageBody::Bytes(b) => {
                    let mut rest = b.as_slice();
                    write_chunks(&mut **tx, seq, |buf| {
                        let n = rest.len().min(CHUNK_BYTES);
                        buf.extend_from_slice(&rest[..n]);
                        rest = &rest[n..];
                        Ok(())
                    })?
                }
                MessageBody::Spooled(spool) => {
                    let path = &spool.path;
                    let file = std::fs::File::open(path)
                        .map_err(|e| io_err(format!("open {}", path.display()), e))?;
                    let mut file = file.take(spool.len);
                    write_chunks(&mut **tx, seq, |buf| {
                        (&mut file)
                            .take(CHUNK_BYTES as u64)
                            .read_to_end(buf)
                            .map_err(|e| io_err(format!("read {}", path.display()), e))?;
                        Ok(())
                    })?
                }
            };
            if written != m.body.len() {
                return Err(StoreError::Backend(format!(
                    "message {}: {written} bytes of a body of {} stored",
                    m.message_id,
                    m.body.len()
                )));
            }
        }
        check_quota(tx, m, limits, seq, true)?;
        add_usage(
            tx,
            &m.sender,
            "sent",
            m.received_at,
            size,
            seq,
            is_coordination,
        )?;
        match named {
            Some(named) => named::mark(&mut **tx, m, &named),
            None => Ok(Accepted::Stored),
        }
    })
}

pub(super) fn claim_next(
    store: &PostgresStore,
    mpc: &str,
    now: Unix,
    lease_secs: i64,
) -> StoreResult<Option<Claimed>> {
    if lease_secs < 0 {
        return Err(StoreError::Invalid("negative lease".into()));
    }
    // One statement on its own (no transaction around it): the lease is committed as it ends
    // (unsynced), an empty claim costs one round trip.
    let rows = store.statement(
        "UPDATE messages SET state = 'leased', lease_until = $2, attempts = attempts + 1 \
         WHERE seq = (SELECT seq FROM messages WHERE mpc = $1 \
           AND state IN ('waiting', 'leased') \
           AND (state = 'waiting' OR lease_until <= $3) \
           ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING seq, message_id, sender_ptype, sender_id, recipient_ptype, \
           recipient_id, content_type, body, chunked, attempts, size",
        &[&mpc, &now.saturating_add(lease_secs), &now],
    )?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let seq: i64 = r.try_get(0)?;
    let chunked: bool = r.try_get(8)?;
    let attempts: i32 = r.try_get(9)?;
    let size: i64 = r.try_get(10)?;
    let body = if chunked {
        // The chunks are read with the message's row locked again, still leased by this
        // claim: chunks are deleted only by transactions that lock their message's row first
        // and change its state (purged, expired, failed) or delete it (see schema.rs), so a
        // row still leased by this attempt holds them all. Changed meanwhile (expired, say): a
        // transient failure, the message as its new state says.
        store.write_unsynced(|tx| {
            let held = tx.query_opt_p(
                "SELECT 1 FROM messages WHERE seq = $1 AND state = 'leased' AND attempts = $2 \
                 FOR UPDATE",
                &[&seq, &attempts],
            )?;
            if held.is_none() {
                return Err(StoreError::Backend(format!(
                    "message {seq} changed while it was being claimed; try again"
                )));
            }
            read_chunks(store, tx, seq, to_u64(size))
        })?
    } else {
        ClaimedBody::Bytes(r.try_get::<_, Option<Vec<u8>>>(7)?.unwrap_or_default())
    };
    Ok(Some(Claimed {
        message_id: r.try_get(1)?,
        sender: PartyKey {
            ptype: r.try_get(2)?,
            id: r.try_get(3)?,
        },
        recipient: PartyKey {
            ptype: r.try_get(4)?,
            id: r.try_get(5)?,
        },
        content_type: r.try_get(6)?,
        body,
        attempt: u32::try_from(attempts).unwrap_or(0),
    }))
}

/// The chunks of message `seq`, one at a time, into an unlinked file of the spool folder.
fn read_chunks(
    store: &PostgresStore,
    tx: &mut Transaction<'_>,
    seq: i64,
    size: u64,
) -> StoreResult<ClaimedBody> {
    let (path, mut file) = store.spool_file(".claimed")?;
    let _ = std::fs::remove_file(&path);
    let stmt = tx.prepare("SELECT data FROM payload_chunks WHERE message_seq = $1 AND n = $2")?;
    let mut len = 0u64;
    let mut n: i32 = 0;
    while len < size {
        let Some(r) = tx.query_opt(&stmt, &[&seq, &n])? else {
            break;
        };
        let data: &[u8] = r.try_get(0)?;
        file.write_all(data)
            .map_err(|e| io_err("write a claimed body".into(), e))?;
        len += data.len() as u64;
        n += 1;
    }
    if len != size {
        return Err(StoreError::Backend(format!(
            "message {seq}: {len} bytes of a body of {size} found"
        )));
    }
    file.rewind()
        .map_err(|e| io_err("rewind a claimed body".into(), e))?;
    Ok(ClaimedBody::File { file, len })
}

pub(super) fn release_claim(
    store: &PostgresStore,
    recipient: &PartyKey,
    message_id: &str,
    now: Unix,
) -> StoreResult<()> {
    store.write_unsynced(|tx| {
        tx.execute_p(
            "UPDATE messages SET lease_until = $4 WHERE recipient_ptype = $1 \
             AND recipient_id = $2 AND message_id = $3 AND state = 'leased' \
             AND lease_until > $4",
            &[&recipient.ptype, &recipient.id, &message_id, &now],
        )?;
        Ok(())
    })
}

pub(super) fn mark_delivered(
    store: &PostgresStore,
    recipient: &PartyKey,
    message_id: &str,
    receipt: &[u8],
    now: Unix,
) -> StoreResult<Delivery> {
    // One statement on its own (unsynced): at most one row (messages_recipient_message_id);
    // the UPDATE locks it and checks its state after any other node's change committed, so of
    // two nodes taking the same receipt one marks it delivered and counts it in the ledger
    // (in the same statement), the other finds it delivered.
    let marked = store.statement(
        "WITH d AS (UPDATE messages SET state = 'delivered', delivered_at = $4, \
           lease_until = NULL, recipient_receipt = $5 WHERE recipient_ptype = $1 \
           AND recipient_id = $2 AND message_id = $3 AND state IN ('waiting', 'leased') \
           RETURNING seq, size, service) \
         INSERT INTO usage_ledger (subscriber_id, party_ptype, party_id, kind, at, bytes, \
           message_seq, coordination) \
         SELECT (SELECT subscriber_id FROM parties WHERE ptype = $1 AND pid = $2), $1, $2, \
           'received', $4, d.size, d.seq, d.service = $6 FROM d RETURNING message_seq",
        &[
            &recipient.ptype,
            &recipient.id,
            &message_id,
            &now,
            &receipt,
            &coordination::SERVICE,
        ],
    )?;
    if !marked.is_empty() {
        return Ok(Delivery::Delivered);
    }
    let state: Option<String> = store
        .statement(
            "SELECT state FROM messages \
             WHERE recipient_ptype = $1 AND recipient_id = $2 AND message_id = $3",
            &[&recipient.ptype, &recipient.id, &message_id],
        )?
        .first()
        .map(|r| r.try_get(0))
        .transpose()?;
    Ok(match state.as_deref() {
        Some("delivered" | "purged") => Delivery::AlreadyDelivered,
        // Unknown, or expired (or failed) before the receipt came: not delivered.
        _ => Delivery::Unknown,
    })
}

pub(super) fn recipients_of(store: &PostgresStore, message_id: &str) -> StoreResult<Vec<PartyKey>> {
    // A statement of every receipt: on its own (no transaction around it), prepared.
    store
        .statement(
            "SELECT recipient_ptype, recipient_id FROM messages \
             WHERE message_id = $1 AND state IN ('waiting', 'leased', 'delivered', 'purged') \
             GROUP BY recipient_ptype, recipient_id \
             ORDER BY recipient_ptype COLLATE \"C\", recipient_id COLLATE \"C\"",
            &[&message_id],
        )?
        .iter()
        .map(|r| {
            Ok(PartyKey {
                ptype: r.try_get(0)?,
                id: r.try_get(1)?,
            })
        })
        .collect()
}
