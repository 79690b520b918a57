//! Retention: purging bodies, expiring undelivered messages, pruning finished records.

use super::*;

/// Records removed per transaction by [`Store::prune_records`], so that a large backlog does
/// not hold the write lock for long.
pub(super) const PRUNE_BATCH: i64 = 5000;

pub(super) fn purge(
    store: &SqliteStore,
    delivered_before: Unix,
    undelivered_before: Unix,
) -> StoreResult<Purged> {
    let (purged, files) = store.write(|tx| {
        let mut files = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT body_file FROM messages WHERE state = 'delivered' \
                 AND delivered_at < ?1 AND body_file IS NOT NULL",
            )?;
            for f in stmt.query_map([delivered_before], |r| r.get::<_, String>(0))? {
                files.push(f?);
            }
            let mut stmt = tx.prepare_cached(
                "SELECT body_file FROM messages WHERE state IN ('waiting', 'leased') \
                 AND received_at < ?1 AND body_file IS NOT NULL",
            )?;
            for f in stmt.query_map([undelivered_before], |r| r.get::<_, String>(0))? {
                files.push(f?);
            }
        }
        let delivered = tx
            .prepare_cached(
                "UPDATE messages SET state = 'purged', body = NULL, body_file = NULL \
                 WHERE state = 'delivered' AND delivered_at < ?1",
            )?
            .execute([delivered_before])?;
        let expired = tx
            .prepare_cached(
                "UPDATE messages SET state = 'expired', body = NULL, body_file = NULL, \
                 lease_until = NULL \
                 WHERE state IN ('waiting', 'leased') AND received_at < ?1",
            )?
            .execute([undelivered_before])?;
        Ok((
            Purged {
                delivered: delivered as u64,
                expired: expired as u64,
            },
            files,
        ))
    })?;
    for name in &files {
        store.remove_payload(name);
    }
    // Best effort: the purge itself is committed.
    let _ = store.sweep_orphans();
    Ok(purged)
}

pub(super) fn prune_records(store: &SqliteStore, received_before: Unix) -> StoreResult<u64> {
    let mut total = 0u64;
    loop {
        let n = store.write(|tx| {
            Ok(tx
                .prepare_cached(
                    "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages \
                     WHERE state IN ('purged', 'expired', 'failed') AND received_at < ?1 \
                     LIMIT ?2)",
                )?
                .execute(params![received_before, PRUNE_BATCH])?)
        })?;
        total += n as u64;
        if (n as i64) < PRUNE_BATCH {
            return Ok(total);
        }
    }
}
