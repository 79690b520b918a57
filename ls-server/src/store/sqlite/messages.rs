//! Messages: admission (duplicates, reused MessageIds, the recipient's limit, the account
//! quota, co-ordination messages: refusal notices and receipts), storing, claiming under a
//! lease, delivery, and what the admin and the metrics read about them.

use super::accounts::party_subscriber;
use super::convert::{to_i64, to_u32, to_u64};
use super::payloads::io_err;
use super::usage::add_usage;
use super::*;

/// Whether `m` may be stored: `Some(Duplicate)` when its sender already sent it (the first
/// receipt), `None` when it may be stored, or the refusal. Run before the body is written (in a
/// read transaction) and again in the write transaction that inserts it.
fn admit(
    tx: &Transaction<'_>,
    m: &NewMessage,
    limits: &AcceptLimits,
) -> StoreResult<Option<Accepted>> {
    let first = tx
        .prepare_cached(
            "SELECT recipient_ptype, recipient_id, content_sha256, receipt_content_type, receipt \
             FROM messages WHERE sender_ptype = ?1 AND sender_id = ?2 AND message_id = ?3",
        )?
        .query_row(params![m.sender.ptype, m.sender.id, m.message_id], |r| {
            Ok((
                PartyKey {
                    ptype: r.get(0)?,
                    id: r.get(1)?,
                },
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        })
        .optional()?;
    if let Some((recipient, content, receipt_content_type, receipt)) = first {
        // Rows from before schema version 2 have no fingerprint: the recipient must match.
        let same = recipient == m.recipient
            && match content.as_deref() {
                None => true,
                Some(c) => c.eq_ignore_ascii_case(&m.content_sha256),
            };
        if !same {
            return Err(StoreError::Refused(Refused::MessageIdReused {
                first_recipient: recipient,
            }));
        }
        return Ok(Some(Accepted::Duplicate {
            receipt_content_type,
            receipt,
        }));
    }
    // A MessageId another sender already used for this recipient: a receipt names only the
    // MessageId, so it could not tell the two apart.
    let taken: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE recipient_ptype = ?1 \
             AND recipient_id = ?2 AND message_id = ?3)",
        )?
        .query_row(
            params![m.recipient.ptype, m.recipient.id, m.message_id],
            |r| r.get(0),
        )?;
    if taken {
        return Err(StoreError::Conflict(format!(
            "MessageId {} is already used by another sender for this recipient",
            m.message_id
        )));
    }
    let size = m.body.len();
    let max_document_bytes: i64 = tx
        .prepare_cached("SELECT max_document_bytes FROM parties WHERE ptype = ?1 AND pid = ?2")?
        .query_row(params![m.recipient.ptype, m.recipient.id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("recipient party {}", m.recipient)))?;
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
    // A co-ordination message must name a message between the same parties, the other way.
    let refusal_notice = match &m.coordination {
        Some(Coordination::Refusal(r)) => {
            Named::refused(named_row(tx, m, &r.message_id)?, m, r)?;
            true
        }
        Some(Coordination::Receipt { message_id }) => {
            Named::receipted(named_row(tx, m, message_id)?, m, message_id)?;
            false
        }
        Some(Coordination::UpdateAnswer { message_id }) => {
            Named::answered(named_row(tx, m, message_id)?, m, message_id)?;
            false
        }
        Some(Coordination::CertificateUpdate) | None => false,
    };
    // Refusal notices are exempt from the quota: they free the refused message's body.
    // (A sender that is no party is the service itself: its own announcements.)
    let sender_subscriber = party_subscriber(tx, &m.sender)?;
    if let (false, true, Some(subscriber)) = (
        refusal_notice,
        limits.max_queued_bytes_per_subscriber > 0,
        sender_subscriber,
    ) {
        let queued: i64 = tx
            .prepare_cached(
                "SELECT COALESCE(SUM(m.size), 0) FROM parties p JOIN messages m \
                 ON m.sender_ptype = p.ptype AND m.sender_id = p.pid \
                 AND m.state IN ('waiting', 'leased') WHERE p.subscriber_id = ?1",
            )?
            .query_row([subscriber], |r| r.get(0))?;
        let queued = to_u64(queued);
        let quota = limits.max_queued_bytes_per_subscriber;
        if queued.saturating_add(size) > quota {
            return Err(StoreError::Refused(Refused::QuotaExceeded {
                subscriber_id: subscriber,
                queued,
                size,
                quota,
            }));
        }
    }
    Ok(None)
}

/// The message with id `message_id` that the co-ordination message `m`'s sender received
/// (whatever its state, while its record is kept). At most one: `admit` refuses a MessageId
/// another sender already used for the same recipient.
fn named_row(tx: &Transaction<'_>, m: &NewMessage, message_id: &str) -> StoreResult<Option<Named>> {
    Ok(tx
        .prepare_cached(
            "SELECT seq, sender_ptype, sender_id, state, service, failure_notice_id, \
             receipt_message_id, action FROM messages \
             WHERE recipient_ptype = ?1 AND recipient_id = ?2 AND message_id = ?3",
        )?
        .query_row(params![m.sender.ptype, m.sender.id, message_id], |r| {
            Ok(Named {
                seq: r.get(0)?,
                sender: PartyKey {
                    ptype: r.get(1)?,
                    id: r.get(2)?,
                },
                state: r.get(3)?,
                service: r.get(4)?,
                notice_id: r.get(5)?,
                receipt_id: r.get(6)?,
                action: r.get(7)?,
            })
        })
        .optional()?)
}

/// Record the refusal `m` (a notice) on the message it refuses: a message not yet delivered
/// becomes `failed` and loses its body (returned: a payload file to remove after the commit);
/// a delivered one keeps its state.
fn mark_refused(
    tx: &Transaction<'_>,
    m: &NewMessage,
    r: &RefusalOf,
) -> StoreResult<(NoticeEffect, Option<String>)> {
    let named = Named::refused(named_row(tx, m, &r.message_id)?, m, r)?;
    let (seq, state) = (named.seq, named.state);
    if matches!(state.as_str(), "delivered" | "purged") {
        tx.prepare_cached(
            "UPDATE messages SET failure_class = ?2, failure_notice_id = ?3, failed_at = ?4 \
             WHERE seq = ?1",
        )?
        .execute(params![seq, r.class, m.message_id, m.received_at])?;
        return Ok((NoticeEffect::AfterDelivery, None));
    }
    let file: Option<String> = tx
        .prepare_cached("SELECT body_file FROM messages WHERE seq = ?1")?
        .query_row([seq], |r| r.get(0))?;
    tx.prepare_cached(
        "UPDATE messages SET state = 'failed', body = NULL, body_file = NULL, \
         lease_until = NULL, failure_class = ?2, failure_notice_id = ?3, failed_at = ?4 \
         WHERE seq = ?1",
    )?
    .execute(params![seq, r.class, m.message_id, m.received_at])?;
    Ok((NoticeEffect::Failed, file))
}

pub(super) fn accept(
    store: &SqliteStore,
    m: &NewMessage,
    limits: &AcceptLimits,
) -> StoreResult<Accepted> {
    let is_coordination = m.checked_coordination()?;
    // Duplicates and refusals are looked for first, so that nothing is written for them (a
    // resent big message is not written again); then the free space is checked and a body
    // for a file is written and synced, outside the lock.
    if let Some(duplicate) = store.read(|tx| admit(tx, m, limits))? {
        return Ok(duplicate);
    }
    // A spooled body is on the disk already (the endpoint checked the reserve before taking
    // it): it is moved into place, whatever its size.
    let file = match &m.body {
        MessageBody::Spooled(spool) => Some(store.keep_spool(spool)?),
        MessageBody::Bytes(body) => {
            let to_file = body.len() > store.inline_max;
            if !matches!(m.coordination, Some(Coordination::Refusal(_))) {
                store.check_space(body.len() as u64, !to_file, limits.min_free_bytes)?;
            }
            if to_file {
                Some(store.write_payload(body)?)
            } else {
                None
            }
        }
    };
    let mut freed = None;
    let result = store.write(|tx| {
        // Checked again inside the write transaction: a concurrent accept (this process or
        // another) may have committed meanwhile.
        if let Some(duplicate) = admit(tx, m, limits)? {
            return Ok(duplicate);
        }
        let inline: Option<&[u8]> = match (&m.body, &file) {
            (MessageBody::Bytes(b), None) => Some(b),
            _ => None,
        };
        let size = to_i64(m.body.len());
        tx.prepare_cached(
            "INSERT INTO messages (sender_ptype, sender_id, recipient_ptype, recipient_id, \
             mpc, message_id, conversation_id, service, action, content_type, size, body, \
             body_file, receipt_content_type, receipt, state, received_at, content_sha256) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
             'waiting', ?16, ?17)",
        )?
        .execute(params![
            m.sender.ptype,
            m.sender.id,
            m.recipient.ptype,
            m.recipient.id,
            m.mpc,
            m.message_id,
            m.conversation_id,
            m.service,
            m.action,
            m.content_type,
            size,
            inline,
            file,
            m.receipt_content_type,
            m.receipt,
            m.received_at,
            m.content_sha256
        ])?;
        let seq = tx.last_insert_rowid();
        add_usage(
            tx,
            &m.sender,
            "sent",
            m.received_at,
            size,
            seq,
            is_coordination,
        )?;
        match &m.coordination {
            Some(Coordination::Refusal(r)) => {
                let (effect, file) = mark_refused(tx, m, r)?;
                freed = file;
                Ok(Accepted::NoticeStored(effect))
            }
            Some(Coordination::Receipt { message_id }) => {
                let receipted = Named::receipted(named_row(tx, m, message_id)?, m, message_id)?.seq;
                tx.prepare_cached(
                    "UPDATE messages SET receipt_message_id = ?2, receipt_returned_at = ?3 \
                     WHERE seq = ?1",
                )?
                .execute(params![receipted, m.message_id, m.received_at])?;
                Ok(Accepted::ReceiptStored)
            }
            Some(Coordination::UpdateAnswer { message_id }) => {
                let answered = Named::answered(named_row(tx, m, message_id)?, m, message_id)?.seq;
                tx.prepare_cached(
                    "UPDATE messages SET receipt_message_id = ?2, receipt_returned_at = ?3 \
                     WHERE seq = ?1",
                )?
                .execute(params![answered, m.message_id, m.received_at])?;
                Ok(Accepted::Stored)
            }
            Some(Coordination::CertificateUpdate) | None => Ok(Accepted::Stored),
        }
    });
    let stored = matches!(
        result,
        Ok(Accepted::Stored | Accepted::NoticeStored(_) | Accepted::ReceiptStored)
    );
    if let Some(name) = &file {
        if !stored {
            store.remove_payload(name);
        }
    }
    if let (true, Some(name)) = (stored, &freed) {
        store.remove_payload(name);
    }
    result
}

pub(super) fn claim_next(
    store: &SqliteStore,
    mpc: &str,
    now: Unix,
    lease_secs: i64,
) -> StoreResult<Option<Claimed>> {
    if lease_secs < 0 {
        return Err(StoreError::Invalid("negative lease".into()));
    }
    store.write_unsynced(|tx| {
        let row = tx
            .prepare_cached(
                "SELECT seq, message_id, sender_ptype, sender_id, recipient_ptype, \
                 recipient_id, content_type, body, body_file, attempts FROM messages \
                 WHERE mpc = ?1 AND state IN ('waiting', 'leased') \
                 AND (state = 'waiting' OR lease_until <= ?2) ORDER BY seq LIMIT 1",
            )?
            .query_row(params![mpc, now], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    Claimed {
                        message_id: r.get(1)?,
                        sender: PartyKey {
                            ptype: r.get(2)?,
                            id: r.get(3)?,
                        },
                        recipient: PartyKey {
                            ptype: r.get(4)?,
                            id: r.get(5)?,
                        },
                        content_type: r.get(6)?,
                        body: ClaimedBody::Bytes(
                            r.get::<_, Option<Vec<u8>>>(7)?.unwrap_or_default(),
                        ),
                        attempt: 0,
                    },
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, i64>(9)?,
                ))
            })
            .optional()?;
        let Some((seq, mut claimed, file, attempts)) = row else {
            return Ok(None);
        };
        if let Some(name) = file {
            // Opened inside the transaction: a purge cannot remove the file meanwhile, and
            // once open it stays readable whatever happens to its name.
            let path = store.payload_path(&name)?;
            let file =
                fs::File::open(&path).map_err(|e| io_err(format!("open {}", path.display()), e))?;
            let len = file
                .metadata()
                .map_err(|e| io_err(format!("stat {}", path.display()), e))?
                .len();
            claimed.body = ClaimedBody::File { file, len };
        }
        let attempt = attempts.saturating_add(1);
        tx.prepare_cached(
            "UPDATE messages SET state = 'leased', lease_until = ?2, attempts = ?3 \
             WHERE seq = ?1",
        )?
        .execute(params![seq, now.saturating_add(lease_secs), attempt])?;
        claimed.attempt = to_u32(attempt);
        Ok(Some(claimed))
    })
}

pub(super) fn release_claim(
    store: &SqliteStore,
    recipient: &PartyKey,
    message_id: &str,
    now: Unix,
) -> StoreResult<()> {
    store.write_unsynced(|tx| {
        tx.prepare_cached(
            "UPDATE messages SET lease_until = ?4 WHERE recipient_ptype = ?1 \
             AND recipient_id = ?2 AND message_id = ?3 AND state = 'leased' \
             AND lease_until > ?4",
        )?
        .execute(params![recipient.ptype, recipient.id, message_id, now])?;
        Ok(())
    })
}

pub(super) fn mark_delivered(
    store: &SqliteStore,
    recipient: &PartyKey,
    message_id: &str,
    receipt: &[u8],
    now: Unix,
) -> StoreResult<Delivery> {
    store.write_unsynced(|tx| {
        let mut stmt = tx.prepare_cached(
            "SELECT seq, state, size, service FROM messages \
             WHERE recipient_ptype = ?1 AND recipient_id = ?2 AND message_id = ?3",
        )?;
        let found = stmt
            .query_map(params![recipient.ptype, recipient.id, message_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(stmt);
        let mut delivered = 0;
        let mut already = false;
        for (seq, state, size, service) in found {
            match state.as_str() {
                // (One row at most: `accept` refuses a MessageId another sender already
                // used for the same recipient.)
                "waiting" | "leased" => {
                    tx.prepare_cached(
                        "UPDATE messages SET state = 'delivered', delivered_at = ?2, \
                         lease_until = NULL, recipient_receipt = ?3 WHERE seq = ?1",
                    )?
                    .execute(params![seq, now, receipt])?;
                    let coordination = service == coordination::SERVICE;
                    add_usage(tx, recipient, "received", now, size, seq, coordination)?;
                    delivered += 1;
                }
                "delivered" | "purged" => already = true,
                // Expired before the receipt came: not delivered.
                _ => {}
            }
        }
        Ok(if delivered > 0 {
            Delivery::Delivered
        } else if already {
            Delivery::AlreadyDelivered
        } else {
            Delivery::Unknown
        })
    })
}

pub(super) fn recipients_of(store: &SqliteStore, message_id: &str) -> StoreResult<Vec<PartyKey>> {
    // Every recipient whose receipt for this id means something: a first receipt
    // (waiting, leased) or a repeated one (delivered, purged), so that `mark_delivered`
    // can answer `AlreadyDelivered` to the latter. Expired messages are left out.
    store.read(|tx| {
        let mut stmt = tx.prepare_cached(
            "SELECT DISTINCT recipient_ptype, recipient_id FROM messages \
             WHERE message_id = ?1 AND state IN ('waiting', 'leased', 'delivered', 'purged') \
             ORDER BY recipient_ptype, recipient_id",
        )?;
        let rows = stmt.query_map([message_id], |r| {
            Ok(PartyKey {
                ptype: r.get(0)?,
                id: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })
}

pub(super) fn queue_depths(store: &SqliteStore) -> StoreResult<Vec<(PartyKey, u64)>> {
    store.read(|tx| {
        // Every registered party (0 when nothing waits, so gauges fall back to 0), and any
        // other recipient with messages waiting.
        let mut stmt = tx.prepare_cached(
            "SELECT ptype, pid, SUM(n) FROM ( \
               SELECT ptype, pid, 0 AS n FROM parties \
               UNION ALL \
               SELECT recipient_ptype, recipient_id, COUNT(*) FROM messages \
               WHERE state IN ('waiting', 'leased') GROUP BY recipient_ptype, recipient_id \
             ) GROUP BY ptype, pid ORDER BY ptype, pid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                PartyKey {
                    ptype: r.get(0)?,
                    id: r.get(1)?,
                },
                to_u64(r.get(2)?),
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })
}

pub(super) fn queued_bytes(store: &SqliteStore) -> StoreResult<Vec<(i64, u64)>> {
    store.read(|tx| {
        let mut stmt = tx.prepare_cached(
            "SELECT s.id, COALESCE(SUM(m.size), 0) FROM subscribers s \
             LEFT JOIN parties p ON p.subscriber_id = s.id \
             LEFT JOIN messages m ON m.sender_ptype = p.ptype AND m.sender_id = p.pid \
               AND m.state IN ('waiting', 'leased') \
             GROUP BY s.id ORDER BY s.id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, to_u64(r.get(1)?))))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })
}

pub(super) fn messages(
    store: &SqliteStore,
    party: Option<&PartyKey>,
    limit: u32,
) -> StoreResult<Vec<MessageRecord>> {
    const COLS: &str = "message_id, sender_ptype, sender_id, recipient_ptype, recipient_id, \
                        state, size, received_at, attempts, delivered_at, failure_class, \
                        failure_notice_id, failed_at, receipt_message_id, receipt_returned_at \
                        FROM messages";
    fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRecord> {
        Ok(MessageRecord {
            message_id: r.get(0)?,
            sender: PartyKey {
                ptype: r.get(1)?,
                id: r.get(2)?,
            },
            recipient: PartyKey {
                ptype: r.get(3)?,
                id: r.get(4)?,
            },
            state: r.get(5)?,
            size: to_u64(r.get(6)?),
            received_at: r.get(7)?,
            attempts: to_u32(r.get(8)?),
            delivered_at: r.get(9)?,
            refusal: match (r.get(10)?, r.get(11)?, r.get(12)?) {
                (Some(class), Some(notice_id), Some(at)) => Some(RefusalRecord {
                    class,
                    notice_id,
                    at,
                }),
                _ => None,
            },
            receipt_returned: match (r.get(13)?, r.get(14)?) {
                (Some(receipt_id), Some(at)) => Some(ReceiptReturned { receipt_id, at }),
                _ => None,
            },
        })
    }
    store.read(|tx| {
        let rows = match party {
            Some(key) => {
                let sql = format!(
                    "SELECT {COLS} WHERE (sender_ptype = ?1 AND sender_id = ?2) \
                     OR (recipient_ptype = ?1 AND recipient_id = ?2) \
                     ORDER BY seq DESC LIMIT ?3"
                );
                let mut stmt = tx.prepare_cached(&sql)?;
                let rows = stmt.query_map(params![key.ptype, key.id, limit], record)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            }
            None => {
                let sql = format!("SELECT {COLS} ORDER BY seq DESC LIMIT ?1");
                let mut stmt = tx.prepare_cached(&sql)?;
                let rows = stmt.query_map([limit], record)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            }
        };
        Ok(rows)
    })
}
