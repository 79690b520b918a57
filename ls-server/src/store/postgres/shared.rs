//! [`SharedState`] in the database (schema v2: `shared_once`, `shared_counts`), so every node
//! sees the same replays, request counts and lockouts. Each call is one statement on its own,
//! prepared once per connection (a lockout's reservation: one transaction holding the key's
//! row); the unique key decides which of two nodes used a nonce first. Written with
//! `synchronous_commit = off` (an unsynced session of the pool): a crash of the database
//! may forget the last fraction of a second of them (see docs/SERVER.md, "A cluster").
//! Expired rows are deleted by every [`CLEAN_EVERY`]th write of a node.

use super::*;
use crate::store::shared::{Lockout, Scope, SharedState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A node deletes the expired rows of both tables after this many writes.
const CLEAN_EVERY: u64 = 1000;

/// Writes since the last clean-up, per process.
static WRITES: AtomicU64 = AtomicU64::new(0);

impl PostgresStore {
    /// Delete expired rows now and then.
    fn clean_shared(&self, now: Unix) -> StoreResult<()> {
        if WRITES.fetch_add(1, Ordering::Relaxed) % CLEAN_EVERY == CLEAN_EVERY - 1 {
            self.statement("DELETE FROM shared_once WHERE keep_until < $1", &[&now])?;
            self.statement(
                "DELETE FROM shared_counts WHERE since + window_secs < $1",
                &[&now],
            )?;
        }
        Ok(())
    }
}

impl SharedState for PostgresStore {
    fn first_use(&self, scope: Scope, key: &str, now: Unix, keep_secs: i64) -> StoreResult<bool> {
        let until = now.saturating_add(keep_secs);
        self.clean_shared(now)?;
        // One statement, no transaction around it. A row that ran out is taken over (the key
        // is new again); one still kept is not touched, and no row comes back: a replay.
        let rows = self.statement(
            "INSERT INTO shared_once (scope, key, keep_until) VALUES ($1, $2, $3)
             ON CONFLICT (scope, key) DO UPDATE SET keep_until = EXCLUDED.keep_until
                 WHERE shared_once.keep_until < $4
             RETURNING 1",
            &[&scope.as_str(), &key, &until, &now],
        )?;
        Ok(!rows.is_empty())
    }

    fn over_limit(
        &self,
        scope: Scope,
        key: &str,
        now: Unix,
        window_secs: i64,
        limit: u32,
    ) -> StoreResult<Option<i64>> {
        self.clean_shared(now)?;
        {
            // One statement. Counted on past the limit (the answer is the same until the
            // window ends).
            let rows = self.statement(
                "INSERT INTO shared_counts (scope, key, since, window_secs, n)
                     VALUES ($1, $2, $3, $4, 1)
                 ON CONFLICT (scope, key) DO UPDATE SET
                     since = CASE WHEN shared_counts.since + shared_counts.window_secs <= $3
                                  THEN $3 ELSE shared_counts.since END,
                     n = CASE WHEN shared_counts.since + shared_counts.window_secs <= $3
                              THEN 1 ELSE shared_counts.n + 1 END,
                     window_secs = $4
                 RETURNING since, n",
                &[&scope.as_str(), &key, &now, &window_secs],
            )?;
            let row = rows
                .first()
                .ok_or_else(|| StoreError::Backend("the count came back empty".into()))?;
            let since: i64 = row.get(0);
            let n: i32 = row.get(1);
            Ok((i64::from(n) > i64::from(limit)).then(|| (window_secs - (now - since)).max(1)))
        }
    }

    fn reserve_failure(
        &self,
        scope: Scope,
        key: &str,
        now: Unix,
        limit: Lockout,
    ) -> StoreResult<Result<Option<Duration>, Duration>> {
        let window = to_i64(limit.window_secs);
        let max = i64::from(limit.max.max(1));
        let left = |since: i64| Duration::from_secs(to_u64(window - (now - since)));
        self.clean_shared(now)?;
        self.write_unsynced(|tx| {
            // The row first (two nodes' first failures at once: one inserts, the other
            // waits for it), then held while it is decided.
            tx.execute(
                "INSERT INTO shared_counts (scope, key, since, window_secs, n)
                     VALUES ($1, $2, $3, $4, 0)
                 ON CONFLICT (scope, key) DO NOTHING",
                &[&scope.as_str(), &key, &now, &window],
            )?;
            let r = tx.query_one(
                "SELECT since, n FROM shared_counts WHERE scope = $1 AND key = $2 FOR UPDATE",
                &[&scope.as_str(), &key],
            )?;
            let (since, n): (i64, i32) = (r.get(0), r.get(1));
            let (since, n) = if now - since >= window {
                (now, 1)
            } else if i64::from(n) >= max {
                return Ok(Err(left(since)));
            } else {
                (since, n + 1)
            };
            tx.execute(
                "UPDATE shared_counts SET since = $3, window_secs = $4, n = $5
                 WHERE scope = $1 AND key = $2",
                &[&scope.as_str(), &key, &since, &window, &n],
            )?;
            Ok(Ok(
                (i64::from(n) >= max && now - since < window).then(|| left(since))
            ))
        })
    }

    fn release_failure(&self, scope: Scope, key: &str) -> StoreResult<()> {
        self.write_unsynced(|tx| {
            tx.execute(
                "UPDATE shared_counts SET n = GREATEST(n - 1, 0) WHERE scope = $1 AND key = $2",
                &[&scope.as_str(), &key],
            )?;
            Ok(())
        })
    }
}
