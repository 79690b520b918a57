//! What the admin commands and the metrics read: queue depths, queued bytes, message records,
//! usage per account (from the ledger). Text is ordered byte-wise (`COLLATE "C"`), as SQLite
//! orders it, whatever the database's collation.

use super::*;

pub(super) fn queue_depths(store: &PostgresStore) -> StoreResult<Vec<(PartyKey, u64)>> {
    store.read(|tx| {
        // Every registered party (0 when nothing waits, so gauges fall back to 0), and any
        // other recipient with messages waiting.
        tx.query(
            "SELECT ptype, pid, SUM(n)::BIGINT FROM ( \
               SELECT ptype, pid, 0::BIGINT AS n FROM parties \
               UNION ALL \
               SELECT recipient_ptype, recipient_id, COUNT(*) FROM messages \
               WHERE state IN ('waiting', 'leased') GROUP BY recipient_ptype, recipient_id \
             ) q GROUP BY ptype, pid ORDER BY ptype COLLATE \"C\", pid COLLATE \"C\"",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok((
                PartyKey {
                    ptype: r.try_get(0)?,
                    id: r.try_get(1)?,
                },
                to_u64(r.try_get(2)?),
            ))
        })
        .collect()
    })
}

pub(super) fn queued_bytes(store: &PostgresStore) -> StoreResult<Vec<(i64, u64)>> {
    store.read(|tx| {
        tx.query(
            "SELECT s.id, COALESCE(SUM(m.size), 0)::BIGINT FROM subscribers s \
             LEFT JOIN parties p ON p.subscriber_id = s.id \
             LEFT JOIN messages m ON m.sender_ptype = p.ptype AND m.sender_id = p.pid \
               AND m.state IN ('waiting', 'leased') \
             GROUP BY s.id ORDER BY s.id",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.try_get(0)?, to_u64(r.try_get(1)?))))
        .collect()
    })
}

fn to_u32(n: i32) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

fn record(r: &::postgres::Row) -> StoreResult<MessageRecord> {
    Ok(MessageRecord {
        message_id: r.try_get(0)?,
        sender: PartyKey {
            ptype: r.try_get(1)?,
            id: r.try_get(2)?,
        },
        recipient: PartyKey {
            ptype: r.try_get(3)?,
            id: r.try_get(4)?,
        },
        state: r.try_get(5)?,
        size: to_u64(r.try_get(6)?),
        received_at: r.try_get(7)?,
        attempts: to_u32(r.try_get(8)?),
        delivered_at: r.try_get(9)?,
        refusal: match (r.try_get(10)?, r.try_get(11)?, r.try_get(12)?) {
            (Some(class), Some(notice_id), Some(at)) => Some(RefusalRecord {
                class,
                notice_id,
                at,
            }),
            _ => None,
        },
        receipt_returned: match (r.try_get(13)?, r.try_get(14)?) {
            (Some(receipt_id), Some(at)) => Some(ReceiptReturned { receipt_id, at }),
            _ => None,
        },
    })
}

pub(super) fn messages(
    store: &PostgresStore,
    party: Option<&PartyKey>,
    limit: u32,
) -> StoreResult<Vec<MessageRecord>> {
    const COLS: &str = "message_id, sender_ptype, sender_id, recipient_ptype, recipient_id, \
                        state, size, received_at, attempts, delivered_at, failure_class, \
                        failure_notice_id, failed_at, receipt_message_id, receipt_returned_at \
                        FROM messages";
    let limit = i64::from(limit);
    store.read(|tx| {
        let rows = match party {
            Some(key) => {
                let sql = format!(
                    "SELECT {COLS} WHERE (sender_ptype = $1 AND sender_id = $2) \
                     OR (recipient_ptype = $1 AND recipient_id = $2) \
                     ORDER BY seq DESC LIMIT $3"
                );
                tx.query(&sql, &[&key.ptype, &key.id, &limit])?
            }
            None => {
                let sql = format!("SELECT {COLS} ORDER BY seq DESC LIMIT $1");
                tx.query(&sql, &[&limit])?
            }
        };
        rows.iter().map(record).collect()
    })
}

pub(super) fn usage(store: &PostgresStore, from: Unix, to: Unix) -> StoreResult<Vec<Usage>> {
    store.read(|tx| {
        tx.query(
            "SELECT s.id, s.organisation, \
               COUNT(CASE WHEN u.kind = 'sent' AND NOT u.coordination THEN 1 END), \
               COALESCE(SUM(CASE WHEN u.kind = 'sent' AND NOT u.coordination \
                 THEN u.bytes END), 0)::BIGINT, \
               COUNT(CASE WHEN u.kind = 'received' AND NOT u.coordination THEN 1 END), \
               COALESCE(SUM(CASE WHEN u.kind = 'received' AND NOT u.coordination \
                 THEN u.bytes END), 0)::BIGINT, \
               COUNT(CASE WHEN u.kind = 'sent' AND u.coordination THEN 1 END), \
               COALESCE(SUM(CASE WHEN u.kind = 'sent' AND u.coordination \
                 THEN u.bytes END), 0)::BIGINT, \
               COUNT(CASE WHEN u.kind = 'received' AND u.coordination THEN 1 END), \
               COALESCE(SUM(CASE WHEN u.kind = 'received' AND u.coordination \
                 THEN u.bytes END), 0)::BIGINT \
             FROM subscribers s LEFT JOIN usage_ledger u \
               ON u.subscriber_id = s.id AND u.at >= $1 AND u.at < $2 \
             GROUP BY s.id ORDER BY s.id",
            &[&from, &to],
        )?
        .iter()
        .map(|r| {
            Ok(Usage {
                subscriber_id: r.try_get(0)?,
                organisation: r.try_get(1)?,
                sent_messages: to_u64(r.try_get(2)?),
                sent_bytes: to_u64(r.try_get(3)?),
                received_messages: to_u64(r.try_get(4)?),
                received_bytes: to_u64(r.try_get(5)?),
                coordination_sent_messages: to_u64(r.try_get(6)?),
                coordination_sent_bytes: to_u64(r.try_get(7)?),
                coordination_received_messages: to_u64(r.try_get(8)?),
                coordination_received_bytes: to_u64(r.try_get(9)?),
            })
        })
        .collect()
    })
}
