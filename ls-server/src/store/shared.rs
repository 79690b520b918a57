//! State every node of one store shares: what the endpoints remember between requests — nonces
//! and MessageIds already used (replays), requests counted per minute, failures counted towards
//! a lockout. One node on SQLite keeps it in memory ([`LocalState`]); nodes on PostgreSQL keep
//! it in the database, so a request replayed to another node is still a replay and a lockout
//! holds on every node (`store::postgres::shared`).
//!
//! What is remembered is small and short-lived (minutes): a restart of the one SQLite node
//! forgets it, as before; PostgreSQL keeps it until it runs out (expired rows are deleted
//! now and then by whichever node writes).

use super::{StoreResult, Unix};
use crate::ratelimit::FailureLimiter;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Whose memory a key belongs to (keys of different scopes never meet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// MessageIds of pull requests.
    Pull,
    /// Nonces of partner-directory requests.
    Directory,
    /// Partner-directory requests per asking party and minute.
    DirectoryRate,
    /// Nonces of enrolment requests.
    Enrol,
    /// Failed enrolments per client address.
    EnrolAddress,
    /// Failed enrolments per account.
    EnrolAccount,
    /// Nonces of certificate rollover requests.
    Rollover,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Pull => "pull",
            Scope::Directory => "directory",
            Scope::DirectoryRate => "directory_rate",
            Scope::Enrol => "enrol",
            Scope::EnrolAddress => "enrol_address",
            Scope::EnrolAccount => "enrol_account",
            Scope::Rollover => "rollover",
        }
    }
}

/// `max` failures within `window_secs` of the first lock a key out for the rest of the window.
#[derive(Clone, Copy, Debug)]
pub struct Lockout {
    pub max: u32,
    pub window_secs: u64,
}

/// See the module. Errors are the store's (a node answers 503: it cannot tell a replay).
pub trait SharedState: Send + Sync {
    /// Remember `key` for `keep_secs` from `now`: `true` when it was not remembered (its
    /// first use), `false` when it was (a replay). Atomic across nodes: of two uses at the
    /// same time exactly one is the first.
    fn first_use(&self, scope: Scope, key: &str, now: Unix, keep_secs: i64) -> StoreResult<bool>;

    /// Count one request of `key` in its window of `window_secs` (which starts with the first
    /// request counted): `Some(seconds until the window ends)` when `limit` requests were
    /// counted in it already.
    fn over_limit(
        &self,
        scope: Scope,
        key: &str,
        now: Unix,
        window_secs: i64,
        limit: u32,
    ) -> StoreResult<Option<i64>>;

    /// Count an attempt of `key` as a failure before it is made, in one step with the check
    /// ([`FailureLimiter::reserve`]): `Err(wait)` when `key` is locked out (nothing counted),
    /// `Ok(Some(wait))` when this attempt, should it fail, locks it out, `Ok(None)` otherwise.
    /// An attempt that succeeds is taken back with [`SharedState::release_failure`].
    fn reserve_failure(
        &self,
        scope: Scope,
        key: &str,
        now: Unix,
        limit: Lockout,
    ) -> StoreResult<Result<Option<Duration>, Duration>>;

    /// Take back an attempt counted by [`SharedState::reserve_failure`].
    fn release_failure(&self, scope: Scope, key: &str) -> StoreResult<()>;
}

/// Keys remembered at most per map before expired ones are dropped (then, should that not be
/// enough, all of them: a flood must not grow the memory without bound).
const MAX_ENTRIES: usize = 100_000;

/// The one node's memory (SQLite): maps behind mutexes, forgotten at a restart.
#[derive(Default)]
pub struct LocalState {
    /// (scope, key) → remembered until.
    once: Mutex<HashMap<(Scope, String), Unix>>,
    /// (scope, key) → (start of its window, requests counted in it).
    windows: Mutex<HashMap<(Scope, String), (Unix, u32)>>,
    failures: Mutex<HashMap<Scope, Arc<FailureLimiter<String>>>>,
}

impl LocalState {
    fn limiter(&self, scope: Scope, limit: Lockout) -> Arc<FailureLimiter<String>> {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.entry(scope)
            .or_insert_with(|| {
                Arc::new(FailureLimiter::new(
                    limit.max,
                    Duration::from_secs(limit.window_secs),
                ))
            })
            .clone()
    }
}

impl SharedState for LocalState {
    fn first_use(&self, scope: Scope, key: &str, now: Unix, keep_secs: i64) -> StoreResult<bool> {
        let mut once = self.once.lock().unwrap_or_else(|e| e.into_inner());
        if once.len() >= MAX_ENTRIES {
            once.retain(|_, until| *until >= now);
            if once.len() >= MAX_ENTRIES {
                once.clear();
            }
        }
        let k = (scope, key.to_string());
        match once.get(&k) {
            Some(until) if *until >= now => Ok(false),
            _ => {
                once.insert(k, now.saturating_add(keep_secs));
                Ok(true)
            }
        }
    }

    fn over_limit(
        &self,
        scope: Scope,
        key: &str,
        now: Unix,
        window_secs: i64,
        limit: u32,
    ) -> StoreResult<Option<i64>> {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let k = (scope, key.to_string());
        if w.len() >= MAX_ENTRIES && !w.contains_key(&k) {
            w.retain(|_, (start, _)| now - *start < window_secs);
        }
        let e = w.entry(k).or_insert((now, 0));
        if now - e.0 >= window_secs {
            *e = (now, 0);
        }
        if e.1 >= limit {
            return Ok(Some((window_secs - (now - e.0)).max(1)));
        }
        e.1 += 1;
        Ok(None)
    }

    fn reserve_failure(
        &self,
        scope: Scope,
        key: &str,
        _now: Unix,
        limit: Lockout,
    ) -> StoreResult<Result<Option<Duration>, Duration>> {
        Ok(self.limiter(scope, limit).reserve(&key.to_string()))
    }

    fn release_failure(&self, scope: Scope, key: &str) -> StoreResult<()> {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = f.get(&scope) {
            l.release(&key.to_string());
        }
        Ok(())
    }
}

/// One set of checks for any [`SharedState`] starting empty: the behaviour every
/// implementation has (run on [`LocalState`] here and on PostgreSQL by the store's
/// conformance tests). Panics on a difference.
#[doc(hidden)]
pub fn check(s: &dyn SharedState) {
    // Once per key and scope, until it runs out.
    assert!(s.first_use(Scope::Pull, "m1", 1000, 600).unwrap());
    assert!(!s.first_use(Scope::Pull, "m1", 1001, 600).unwrap());
    assert!(s.first_use(Scope::Directory, "m1", 1001, 600).unwrap());
    assert!(!s.first_use(Scope::Pull, "m1", 1600, 600).unwrap());
    assert!(s.first_use(Scope::Pull, "m1", 1601, 600).unwrap());
    // Requests per window.
    for i in 0..3 {
        assert_eq!(
            s.over_limit(Scope::DirectoryRate, "a", 2000 + i, 60, 3)
                .unwrap(),
            None
        );
    }
    assert_eq!(
        s.over_limit(Scope::DirectoryRate, "a", 2010, 60, 3)
            .unwrap(),
        Some(50)
    );
    assert_eq!(
        s.over_limit(Scope::DirectoryRate, "b", 2010, 60, 3)
            .unwrap(),
        None
    );
    assert_eq!(
        s.over_limit(Scope::DirectoryRate, "a", 2060, 60, 3)
            .unwrap(),
        None
    );
    // Failures: two reserved (the second would lock out), one taken back.
    let l = Lockout {
        max: 2,
        window_secs: 300,
    };
    let now = ls_core::time::now_unix();
    assert_eq!(
        s.reserve_failure(Scope::EnrolAddress, "ip", now, l)
            .unwrap(),
        Ok(None)
    );
    assert!(matches!(
        s.reserve_failure(Scope::EnrolAddress, "ip", now, l)
            .unwrap(),
        Ok(Some(_))
    ));
    s.release_failure(Scope::EnrolAddress, "ip").unwrap();
    assert!(matches!(
        s.reserve_failure(Scope::EnrolAddress, "ip", now, l)
            .unwrap(),
        Ok(Some(_))
    ));
    // Two failures counted: locked out, nothing more counted.
    let wait = s
        .reserve_failure(Scope::EnrolAddress, "ip", now, l)
        .unwrap()
        .unwrap_err();
    assert!(wait > Duration::from_secs(290) && wait <= Duration::from_secs(300));
    assert_eq!(
        s.reserve_failure(Scope::EnrolAccount, "ip", now, l)
            .unwrap(),
        Ok(None)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_state_behaves() {
        check(&LocalState::default());
    }
}
