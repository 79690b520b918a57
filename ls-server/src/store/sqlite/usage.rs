//! The usage ledger: what each subscriber sent and received, kept apart from the messages
//! (records are pruned, the ledger is not). Co-ordination messages are counted apart from
//! documents.

use super::accounts::party_subscriber;
use super::convert::to_u64;
use super::*;

/// One row of the ledger: `party` sent (`kind` = `sent`) or received (`received`) the message
/// `seq` of `bytes` bytes at `at`; `coordination` when it is a co-ordination message.
pub(super) fn add_usage(
    tx: &Transaction<'_>,
    party: &PartyKey,
    kind: &str,
    at: Unix,
    bytes: i64,
    seq: i64,
    coordination: bool,
) -> StoreResult<()> {
    let subscriber = party_subscriber(tx, party)?;
    tx.prepare_cached(
        "INSERT INTO usage_ledger (subscriber_id, party_ptype, party_id, kind, at, bytes, \
         message_seq, coordination) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        subscriber,
        party.ptype,
        party.id,
        kind,
        at,
        bytes,
        seq,
        coordination
    ])?;
    Ok(())
}

pub(super) fn usage(store: &SqliteStore, from: Unix, to: Unix) -> StoreResult<Vec<Usage>> {
    store.read(|tx| {
        let mut stmt = tx.prepare_cached(
            "SELECT s.id, s.organisation, \
               COUNT(CASE WHEN u.kind = 'sent' AND u.coordination = 0 THEN 1 END), \
               COALESCE(SUM(CASE WHEN u.kind = 'sent' AND u.coordination = 0 \
                 THEN u.bytes END), 0), \
               COUNT(CASE WHEN u.kind = 'received' AND u.coordination = 0 THEN 1 END), \
               COALESCE(SUM(CASE WHEN u.kind = 'received' AND u.coordination = 0 \
                 THEN u.bytes END), 0), \
               COUNT(CASE WHEN u.kind = 'sent' AND u.coordination = 1 THEN 1 END), \
               COALESCE(SUM(CASE WHEN u.kind = 'sent' AND u.coordination = 1 \
                 THEN u.bytes END), 0), \
               COUNT(CASE WHEN u.kind = 'received' AND u.coordination = 1 THEN 1 END), \
               COALESCE(SUM(CASE WHEN u.kind = 'received' AND u.coordination = 1 \
                 THEN u.bytes END), 0) \
             FROM subscribers s LEFT JOIN usage_ledger u \
               ON u.subscriber_id = s.id AND u.at >= ?1 AND u.at < ?2 \
             GROUP BY s.id ORDER BY s.id",
        )?;
        let rows = stmt.query_map(params![from, to], |r| {
            Ok(Usage {
                subscriber_id: r.get(0)?,
                organisation: r.get(1)?,
                sent_messages: to_u64(r.get(2)?),
                sent_bytes: to_u64(r.get(3)?),
                received_messages: to_u64(r.get(4)?),
                received_bytes: to_u64(r.get(5)?),
                coordination_sent_messages: to_u64(r.get(6)?),
                coordination_sent_bytes: to_u64(r.get(7)?),
                coordination_received_messages: to_u64(r.get(8)?),
                coordination_received_bytes: to_u64(r.get(9)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })
}
