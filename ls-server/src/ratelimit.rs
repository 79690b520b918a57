//! Counting failures and locking out who fails too often: a key (a client address, an account)
//! that failed `max` times within `window` of its first counted failure is locked out until
//! that window ends. Kept in memory: the state of the one node of a SQLite store
//! ([`crate::store::shared::LocalState`]); nodes on PostgreSQL count in the database.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked at most; beyond it, keys whose window passed are forgotten first, then every
/// key that is not locked out.
pub const MAX_KEYS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    since: Instant,
}

/// Failures per key within a window; see the module.
#[derive(Debug)]
pub struct FailureLimiter<K> {
    max: u32,
    window: Duration,
    entries: Mutex<HashMap<K, Entry>>,
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    /// `max` failures (at least 1) within `window` lock a key out for the rest of it.
    pub fn new(max: u32, window: Duration) -> FailureLimiter<K> {
        FailureLimiter {
            max: max.max(1),
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How long `key` stays locked out, `None` when it may try.
    pub fn locked(&self, key: &K) -> Option<Duration> {
        self.locked_at(key, Instant::now())
    }

    /// Count a failure of `key`; how long it is locked out from now on, if this made it so.
    pub fn fail(&self, key: &K) -> Option<Duration> {
        self.fail_at(key, Instant::now())
    }

    /// Count an attempt of `key` as a failure before it is made, in one step with the check:
    /// `Err(wait)` when `key` is locked out (nothing counted); `Ok(Some(wait))` when this
    /// attempt, should it fail, locks it out; `Ok(None)` otherwise. An attempt that succeeds
    /// (or fails for a reason that does not count) is taken back with [`Self::release`]. So
    /// attempts made at the same time cannot pass the check together beyond `max`.
    pub fn reserve(&self, key: &K) -> Result<Option<Duration>, Duration> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(wait) = entries.get(key).and_then(|e| self.left(e, now)) {
            return Err(wait);
        }
        Ok(self.count(&mut entries, key, now))
    }

    /// How long an entry keeps its key locked out at `now`.
    fn left(&self, e: &Entry, now: Instant) -> Option<Duration> {
        let left = self
            .window
            .checked_sub(now.saturating_duration_since(e.since))?;
        (e.failures >= self.max && !left.is_zero()).then_some(left)
    }

    /// Take back an attempt counted by [`Self::reserve`].
    pub fn release(&self, key: &K) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entries.get_mut(key) {
            e.failures = e.failures.saturating_sub(1);
        }
    }

    fn locked_at(&self, key: &K, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.left(entries.get(key)?, now)
    }

    fn fail_at(&self, key: &K, now: Instant) -> Option<Duration> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.count(&mut entries, key, now)
    }

    fn count(&self, entries: &mut HashMap<K, Entry>, key: &K, now: Instant) -> Option<Duration> {
        if entries.len() >= MAX_KEYS && !entries.contains_key(key) {
            let window = self.window;
            entries.retain(|_, e| now.saturating_duration_since(e.since) < window);
            if entries.len() >= MAX_KEYS {
                let max = self.max;
                entries.retain(|_, e| e.failures >= max);
            }
        }
        let e = entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            since: now,
        });
        if now.saturating_duration_since(e.since) >= self.window {
            *e = Entry {
                failures: 0,
                since: now,
            };
        }
        e.failures = e.failures.saturating_add(1);
        let left = self
            .window
            .saturating_sub(now.saturating_duration_since(e.since));
        (e.failures >= self.max && !left.is_zero()).then_some(left)
    }

    /// Keys tracked now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_failures_in_a_window_lock_out_until_it_ends() {
        let l = FailureLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        assert_eq!(l.locked_at(&"a", t0), None);
        assert_eq!(l.fail_at(&"a", t0), None);
        assert_eq!(l.fail_at(&"a", s(10)), None);
        assert_eq!(l.locked_at(&"a", s(10)), None);
        // The third locks "a" out for the rest of the window (from its first failure).
        assert_eq!(l.fail_at(&"a", s(20)), Some(Duration::from_secs(40)));
        assert_eq!(l.locked_at(&"a", s(30)), Some(Duration::from_secs(30)));
        assert_eq!(l.locked_at(&"b", s(30)), None);
        // Then it may try again, and failures count anew.
        assert_eq!(l.locked_at(&"a", s(60)), None);
        assert_eq!(l.fail_at(&"a", s(61)), None);
        assert_eq!(l.locked_at(&"a", s(62)), None);
        // Failures spread wider than the window never lock.
        let l = FailureLimiter::new(2, Duration::from_secs(10));
        for i in 0..10 {
            assert_eq!(l.fail_at(&"c", s(11 * i)), None);
        }
        // max 0 is max 1.
        let l = FailureLimiter::new(0, Duration::from_secs(10));
        assert!(l.fail_at(&1u8, t0).is_some());
    }

    #[test]
    fn the_table_is_bounded_and_keeps_the_locked_out() {
        let l = FailureLimiter::new(2, Duration::from_secs(600));
        let t0 = Instant::now();
        l.fail_at(&u64::MAX, t0);
        l.fail_at(&u64::MAX, t0);
        for k in 0..MAX_KEYS as u64 + 10 {
            l.fail_at(&k, t0);
        }
        assert!(l.len() <= MAX_KEYS);
        assert!(l.locked_at(&u64::MAX, t0).is_some());
    }

    #[test]
    fn attempts_made_at_the_same_time_cannot_pass_the_limit_together() {
        let l = std::sync::Arc::new(FailureLimiter::<u8>::new(5, Duration::from_secs(60)));
        let passed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let threads: Vec<_> = (0..64)
            .map(|_| {
                let (l, passed) = (l.clone(), passed.clone());
                std::thread::spawn(move || {
                    if l.reserve(&1).is_ok() {
                        passed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(passed.load(std::sync::atomic::Ordering::Relaxed), 5);
        assert!(l.locked(&1).is_some());
        // An attempt that succeeds is taken back: the key may try again.
        let l = FailureLimiter::<u8>::new(2, Duration::from_secs(60));
        assert_eq!(l.reserve(&1), Ok(None));
        l.release(&1);
        assert_eq!(l.reserve(&1), Ok(None));
        assert!(
            l.reserve(&1).unwrap().is_some(),
            "the second counts to the limit"
        );
        assert!(l.reserve(&1).is_err());
    }
}
