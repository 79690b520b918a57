//! Co-ordination messages (refusal notices, receipts, answers to certificate updates): the
//! message each one names, checked and marked in the transaction that stores it.
//!
//! The named message's row is locked (`FOR UPDATE`) in that transaction, so when two nodes
//! take notices, receipts or answers for one message at once, the second waits for the first
//! to commit and then sees what it recorded (READ COMMITTED re-reads a row it waited for):
//! the message is refused, receipted or answered once.

use super::*;
use ::postgres::GenericClient;

/// The message with id `message_id` that the co-ordination message `m`'s sender received
/// (whatever its state, while its record is kept; at most one: `messages_recipient_message_id`),
/// its row locked when `lock` (not in a read-only transaction). `exclude`: `m`'s own row.
fn named_row(
    c: &mut impl GenericClient,
    m: &NewMessage,
    message_id: &str,
    exclude: i64,
    lock: bool,
) -> StoreResult<Option<Named>> {
    let sql = format!(
        "SELECT seq, sender_ptype, sender_id, state, service, failure_notice_id, \
         receipt_message_id, action FROM messages \
         WHERE recipient_ptype = $1 AND recipient_id = $2 AND message_id = $3 AND seq <> $4{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    c.query_opt(
        &sql,
        &[&m.sender.ptype, &m.sender.id, &message_id, &exclude],
    )?
    .map(|r| {
        Ok(Named {
            seq: r.try_get(0)?,
            sender: PartyKey {
                ptype: r.try_get(1)?,
                id: r.try_get(2)?,
            },
            state: r.try_get(3)?,
            service: r.try_get(4)?,
            notice_id: r.try_get(5)?,
            receipt_id: r.try_get(6)?,
            action: r.try_get(7)?,
        })
    })
    .transpose()
}

/// Check that the co-ordination message `m` (row `seq`, or -1 before it is stored) may be
/// stored: the message it names exists and may be refused, receipted or answered by it.
/// With `lock`, the named row stays locked until the transaction ends.
pub(super) fn check(
    c: &mut impl GenericClient,
    m: &NewMessage,
    seq: i64,
    lock: bool,
) -> StoreResult<Option<Named>> {
    Ok(Some(match &m.coordination {
        Some(Coordination::Refusal(r)) => {
            Named::refused(named_row(c, m, &r.message_id, seq, lock)?, m, r)?
        }
        Some(Coordination::Receipt { message_id }) => {
            Named::receipted(named_row(c, m, message_id, seq, lock)?, m, message_id)?
        }
        Some(Coordination::UpdateAnswer { message_id }) => {
            Named::answered(named_row(c, m, message_id, seq, lock)?, m, message_id)?
        }
        Some(Coordination::CertificateUpdate) | None => return Ok(None),
    }))
}

/// Record `m` on the message it names (`named`, checked and locked by [`check`]): a refusal
/// fails a message not yet delivered and removes its body (its chunks, under the row lock
/// held) or records itself on a delivered one; a receipt or an answer records itself.
pub(super) fn mark(
    c: &mut impl GenericClient,
    m: &NewMessage,
    named: &Named,
) -> StoreResult<Accepted> {
    match &m.coordination {
        Some(Coordination::Refusal(r)) => {
            if matches!(named.state.as_str(), "delivered" | "purged") {
                c.execute(
                    "UPDATE messages SET failure_class = $2, failure_notice_id = $3, \
                     failed_at = $4 WHERE seq = $1",
                    &[&named.seq, &r.class, &m.message_id, &m.received_at],
                )?;
                return Ok(Accepted::NoticeStored(NoticeEffect::AfterDelivery));
            }
            c.execute(
                "UPDATE messages SET state = 'failed', body = NULL, chunked = FALSE, \
                 lease_until = NULL, failure_class = $2, failure_notice_id = $3, \
                 failed_at = $4 WHERE seq = $1",
                &[&named.seq, &r.class, &m.message_id, &m.received_at],
            )?;
            c.execute(
                "DELETE FROM payload_chunks WHERE message_seq = $1",
                &[&named.seq],
            )?;
            Ok(Accepted::NoticeStored(NoticeEffect::Failed))
        }
        Some(Coordination::Receipt { .. } | Coordination::UpdateAnswer { .. }) => {
            c.execute(
                "UPDATE messages SET receipt_message_id = $2, receipt_returned_at = $3 \
                 WHERE seq = $1",
                &[&named.seq, &m.message_id, &m.received_at],
            )?;
            Ok(
                if matches!(m.coordination, Some(Coordination::Receipt { .. })) {
                    Accepted::ReceiptStored
                } else {
                    Accepted::Stored
                },
            )
        }
        Some(Coordination::CertificateUpdate) | None => Ok(Accepted::Stored),
    }
}
