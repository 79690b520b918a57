//! What a serving node caches of the directory (parties, by id and by MPC, and their
//! certificates), read on every message, and how it learns of a change made anywhere.
//!
//! Every statement that changes `subscribers`, `parties` or `certificates` — on any node, by
//! `layersec-server admin`, by an enrolment or a rollover — notifies the channel [`CHANNEL`]
//! (a trigger of schema v2), delivered when its transaction commits. A node LISTENs on a
//! connection of its own ([`DirectoryCache::start`]) and drops everything it cached on each
//! notification: a revoke, a suspended account or a new certificate is enforced by every node
//! within milliseconds of its commit. Notifications sent while the listening connection is
//! down are lost, so while it is down nothing is cached (every lookup reads the database), and
//! when it is up again the cache starts empty; a connection that has not proved alive (a ping
//! answered) within 3 s counts as down. Entries are also read again after
//! [`RECHECK`] whatever happens. A lookup that read the database while a change arrived does
//! not keep what it read (a generation count).
//!
//! A cache that was never started (the admin commands, tools, tests) caches nothing.

use crate::store::{Party, PartyCert, PartyKey, StoreResult};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The notification channel of directory changes.
pub const CHANNEL: &str = "layersec_directory";

/// An entry is read again after this long, notified or not.
pub const RECHECK: Duration = Duration::from_secs(10);

/// How often the listening connection is checked while no notification comes.
const PING_EVERY: Duration = Duration::from_secs(1);

/// The cache is used only while the listening connection proved itself this recently (a ping
/// answered, a notification read): a connection that hangs (the database's host gone without
/// a word) must not keep a cache that no longer hears of changes.
const ALIVE_WITHIN: Duration = Duration::from_secs(3);

/// Entries kept at most per map (then all are dropped).
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
struct Maps {
    /// Bumped by every change notified: a lookup started before keeps nothing.
    generation: u64,
    parties: HashMap<PartyKey, (Option<Party>, Instant)>,
    by_mpc: HashMap<String, (Option<Party>, Instant)>,
    certificates: HashMap<PartyKey, (Vec<PartyCert>, Instant)>,
}

impl Maps {
    fn clear(&mut self) {
        self.generation += 1;
        self.parties.clear();
        self.by_mpc.clear();
        self.certificates.clear();
    }
}

/// See the module.
#[derive(Default)]
pub struct DirectoryCache {
    maps: Mutex<Maps>,
    /// The listening connection is up (only then is anything cached).
    live: AtomicBool,
    /// Changes notified since the start (for tests and the log).
    notified: std::sync::atomic::AtomicU64,
    /// When the listening connection last proved alive, in milliseconds since `epoch`.
    alive_ms: std::sync::atomic::AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl std::fmt::Debug for DirectoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryCache")
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A cached lookup: the entry when fresh, otherwise `read` and keep it unless a change came.
fn lookup<K, V>(
    cache: &DirectoryCache,
    map: impl Fn(&mut Maps) -> &mut HashMap<K, (V, Instant)>,
    key: &K,
    read: impl FnOnce() -> StoreResult<V>,
) -> StoreResult<V>
where
    K: std::hash::Hash + Eq + Clone,
    V: Clone,
{
    if !cache.is_live() {
        return read();
    }
    let generation = {
        let mut m = cache.maps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, at)) = map(&mut m).get(key) {
            if at.elapsed() < RECHECK {
                return Ok(v.clone());
            }
        }
        m.generation
    };
    let v = read()?;
    let mut m = cache.maps.lock().unwrap_or_else(|e| e.into_inner());
    if m.generation == generation && cache.is_live() {
        let map = map(&mut m);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key.clone(), (v.clone(), Instant::now()));
    }
    Ok(v)
}

impl DirectoryCache {
    pub fn party(
        &self,
        key: &PartyKey,
        read: impl FnOnce() -> StoreResult<Option<Party>>,
    ) -> StoreResult<Option<Party>> {
        lookup(self, |m| &mut m.parties, key, read)
    }

    pub fn party_by_mpc(
        &self,
        mpc: &str,
        read: impl FnOnce() -> StoreResult<Option<Party>>,
    ) -> StoreResult<Option<Party>> {
        lookup(self, |m| &mut m.by_mpc, &mpc.to_string(), read)
    }

    pub fn certificates(
        &self,
        key: &PartyKey,
        read: impl FnOnce() -> StoreResult<Vec<PartyCert>>,
    ) -> StoreResult<Vec<PartyCert>> {
        lookup(self, |m| &mut m.certificates, key, read)
    }

    /// Drop everything (a change was notified, or the listener went down or came up).
    pub fn invalidate(&self) {
        self.maps.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Whether entries are kept and used now: the listener is up and proved so lately.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
            && self
                .now_ms()
                .saturating_sub(self.alive_ms.load(Ordering::Acquire))
                < ALIVE_WITHIN.as_millis() as u64
    }

    fn now_ms(&self) -> u64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    /// The listening connection just proved alive.
    fn alive(&self) {
        self.alive_ms.store(self.now_ms(), Ordering::Release);
    }

    /// Changes notified since the start.
    pub fn notified(&self) -> u64 {
        self.notified.load(Ordering::Relaxed)
    }

    fn set_live(&self, live: bool) {
        // Cleared under the lock with the flag changed: nothing read before survives.
        let mut m = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        self.live.store(live, Ordering::Release);
        m.clear();
    }

    /// Start listening for changes with connections from `connect`, on a thread that ends
    /// when the cache is dropped.
    pub fn start(
        self: &Arc<Self>,
        connect: impl Fn() -> StoreResult<::postgres::Client> + Send + 'static,
    ) -> std::io::Result<()> {
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("pg-listen".into())
            .spawn(move || listen(weak, connect))
            .map(|_| ())
    }
}

/// The listener: connect, LISTEN, drop the cache on every notification; on any failure go
/// dark (nothing cached), wait, and connect again.
fn listen(cache: Weak<DirectoryCache>, connect: impl Fn() -> StoreResult<::postgres::Client>) {
    let mut backoff = Duration::from_millis(200);
    let mut reported = false;
    loop {
        let Some(c) = cache.upgrade() else { return };
        let outcome = connect().and_then(|mut client| {
            client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            c.alive();
            c.set_live(true);
            if reported {
                crate::log::info("store_listening", &[("channel", CHANNEL.into())]);
                reported = false;
            }
            drop(c);
            serve(&cache, &mut client)
        });
        let Some(c) = cache.upgrade() else { return };
        if c.is_live() {
            backoff = Duration::from_millis(200);
        }
        c.set_live(false);
        drop(c);
        if let Err(e) = outcome {
            if !reported {
                crate::log::warn(
                    "store_listen_lost",
                    &[
                        ("channel", CHANNEL.into()),
                        ("error", crate::log::V::S(&e.to_string())),
                    ],
                );
                reported = true;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        } else {
            return;
        }
    }
}

/// Wait for notifications on `client` until the cache is dropped (`Ok`) or the connection
/// fails (`Err`).
fn serve(cache: &Weak<DirectoryCache>, client: &mut ::postgres::Client) -> StoreResult<()> {
    let mut last_ping = Instant::now();
    loop {
        use ::postgres::fallible_iterator::FallibleIterator;
        let next = client
            .notifications()
            .timeout_iter(Duration::from_millis(500))
            .next();
        let Some(c) = cache.upgrade() else {
            return Ok(());
        };
        match next {
            Ok(Some(_)) => {
                c.notified.fetch_add(1, Ordering::Relaxed);
                c.invalidate();
                c.alive();
            }
            Err(e) => return Err(e.into()),
            Ok(None) => {
                if last_ping.elapsed() >= PING_EVERY {
                    // Dropped while it runs: a hanging ping must not keep the cache alive.
                    drop(c);
                    client.batch_execute("SELECT 1")?;
                    last_ping = Instant::now();
                    if let Some(c) = cache.upgrade() {
                        c.alive();
                    }
                }
            }
        }
    }
}
