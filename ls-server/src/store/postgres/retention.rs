//! Retention: purging bodies, expiring undelivered messages, pruning finished records, on one
//! node at a time.
//!
//! Every batch is one transaction that first takes `pg_try_advisory_xact_lock(`
//! [`RETENTION_LOCK`]`)`: when another node holds it (its retention round is running), the
//! call does nothing more and returns what it did so far (zero for a round that never got the
//! lock); the node holding the lock does the work. Batches keep row locks short: a purge locks
//! (`UPDATE`s) at most [`PURGE_BATCH`] message rows, and deletes their chunks while it holds
//! them, as `schema.rs` requires. Were two rounds to interleave anyway (one node's batch
//! between another's), each row is still changed once: the `UPDATE`s and `DELETE`s re-check
//! the state of a row they waited for.

use super::*;

/// The advisory lock key retention holds (an arbitrary constant: "LSRETAIN").
pub const RETENTION_LOCK: i64 = 0x4c53_5245_5441_494e;
/// Message rows purged or expired per transaction.
pub const PURGE_BATCH: i64 = 1000;
/// Records removed per transaction by `prune_records`.
pub const PRUNE_BATCH: i64 = 5000;

/// Whether this transaction holds the retention lock (until it ends).
fn retention_lock(tx: &mut Transaction<'_>) -> StoreResult<bool> {
    Ok(tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RETENTION_LOCK])?
        .get(0))
}

/// Run `batch` in transactions of its own, each under the retention lock, until it returns
/// fewer than `size` rows or the lock is held elsewhere; the rows it changed in all.
fn batches(
    store: &PostgresStore,
    size: i64,
    mut batch: impl FnMut(&mut Transaction<'_>) -> StoreResult<u64>,
) -> StoreResult<u64> {
    let mut total = 0u64;
    loop {
        let n = store.write(|tx| {
            if !retention_lock(tx)? {
                return Ok(None);
            }
            batch(tx).map(Some)
        })?;
        let Some(n) = n else { return Ok(total) };
        total += n;
        if n < to_u64(size) {
            return Ok(total);
        }
    }
}

/// Set `state` on (at most `limit` of) the rows `which` selects, in `seq` order, drop their
/// bodies and delete their chunks; how many. `which` is a condition on `messages` with `$1`.
fn drop_bodies(
    tx: &mut Transaction<'_>,
    state: &str,
    which: &str,
    before: Unix,
) -> StoreResult<u64> {
    let sql = format!(
        "UPDATE messages SET state = '{state}', body = NULL, chunked = FALSE, \
         lease_until = NULL WHERE seq IN (SELECT seq FROM messages WHERE {which} \
         ORDER BY seq LIMIT {PURGE_BATCH} FOR UPDATE) AND {which} RETURNING seq"
    );
    let seqs: Vec<i64> = tx
        .query(&sql, &[&before])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    if !seqs.is_empty() {
        // The rows are locked by the UPDATE: no claim is reading these chunks.
        tx.execute(
            "DELETE FROM payload_chunks WHERE message_seq = ANY($1)",
            &[&seqs],
        )?;
    }
    Ok(seqs.len() as u64)
}

pub(super) fn purge(
    store: &PostgresStore,
    delivered_before: Unix,
    undelivered_before: Unix,
) -> StoreResult<Purged> {
    let delivered = batches(store, PURGE_BATCH, |tx| {
        drop_bodies(
            tx,
            "purged",
            "state = 'delivered' AND delivered_at < $1",
            delivered_before,
        )
    })?;
    let expired = batches(store, PURGE_BATCH, |tx| {
        drop_bodies(
            tx,
            "expired",
            "state IN ('waiting', 'leased') AND received_at < $1",
            undelivered_before,
        )
    })?;
    Ok(Purged { delivered, expired })
}

pub(super) fn prune_records(store: &PostgresStore, received_before: Unix) -> StoreResult<u64> {
    batches(store, PRUNE_BATCH, |tx| {
        // Finished messages have no chunks left; any would go with the row (ON DELETE
        // CASCADE), under the lock the DELETE takes.
        Ok(tx.execute(
            "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages \
             WHERE state IN ('purged', 'expired', 'failed') AND received_at < $1 \
             ORDER BY seq LIMIT $2 FOR UPDATE) \
             AND state IN ('purged', 'expired', 'failed') AND received_at < $1",
            &[&received_before, &PRUNE_BATCH],
        )?)
    })
}
