//! A small bounded pool of PostgreSQL connections: at most `max_connections`, a caller waits
//! up to [`CHECKOUT_WAIT`] for a free one, a connection found closed (the database restarted,
//! the network dropped it) is dropped and a new one made on demand. An idle connection is
//! taken back only when it is not inside a transaction (a panic mid-transaction drops it).
//!
//! Each connection keeps the statements prepared on it ([`Conn::parts`]: parsed and planned
//! once per connection, not at every call) and its session's `synchronous_commit`: a caller
//! asks for a synced connection (commits wait for the WAL flush: accepted messages, accounts)
//! or an unsynced one (leases, delivery marks, the replay memory), so that no transaction
//! spends a round trip on `SET LOCAL`; an idle connection of the other kind is switched with
//! one `SET` when none of the kind asked for is idle.

use super::{PgOptions, TlsMode};
use crate::store::{StoreError, StoreResult};
use ::postgres::config::SslMode;
use ::postgres::{Client, Statement};
use postgres_openssl::MakeTlsConnector;
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a call waits for a free connection before it fails (transient: HTTP 503).
pub const CHECKOUT_WAIT: Duration = Duration::from_secs(30);
/// How long making a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long data sent to the database may stay unacknowledged before the connection counts as
/// lost.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest statement (the database cancels it; a chunk is 1 MiB, a statement here takes
/// milliseconds).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection and what it keeps.
pub struct Pooled {
    client: Client,
    /// The session's `synchronous_commit` is on.
    synced: bool,
    /// Statements prepared on this connection, by their text.
    statements: HashMap<&'static str, Statement>,
}

struct Slots {
    idle: Vec<Pooled>,
    /// Connections in existence (idle or checked out).
    open: usize,
}

pub struct Pool {
    /// For synced sessions (the database's default `synchronous_commit`, on).
    config: ::postgres::Config,
    /// For unsynced sessions.
    config_unsynced: ::postgres::Config,
    tls: MakeTlsConnector,
    max: usize,
    slots: Mutex<Slots>,
    freed: Condvar,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub fn new(o: &PgOptions) -> StoreResult<Pool> {
        let mut config: ::postgres::Config = o
            .url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("store.url: {e}")))?;
        if let Some(p) = &o.password {
            config.password(p.as_bytes());
        }
        config.ssl_mode(match o.tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require => SslMode::Require,
        });
        config.connect_timeout(CONNECT_TIMEOUT);
        // A database that vanished without closing its connections (a partition, a machine
        // lost) is noticed in seconds, not at the kernel's TCP timeout: calls fail (HTTP 503)
        // instead of hanging.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.keepalives_interval(Duration::from_secs(5));
        config.keepalives_retries(3);
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
        let options = match config.get_options() {
            Some(o) => o.to_string(),
            None => format!("-c statement_timeout={}", STATEMENT_TIMEOUT.as_millis()),
        };
        // Synced sessions say so themselves: a server whose default is `off` must not make an
        // accepted message's commit return before it is durable.
        let mut config_unsynced = config.clone();
        config.options(&format!("{options} -c synchronous_commit=on"));
        config_unsynced.options(&format!("{options} -c synchronous_commit=off"));
        if config.get_application_name().is_none() {
            config.application_name("layersec-server");
        }
        let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client())
            .map_err(|e| StoreError::Backend(format!("TLS: {e}")))?;
        b.set_min_proto_version(Some(openssl::ssl::SslVersion::TLS1_2))
            .map_err(|e| StoreError::Backend(format!("TLS: {e}")))?;
        if let Some(ca) = &o.ca_file {
            b.set_ca_file(ca)
                .map_err(|e| StoreError::Invalid(format!("store.ca_file {}: {e}", ca.display())))?;
        }
        // SslConnector verifies the peer and (through MakeTlsConnector) the host name.
        let tls = MakeTlsConnector::new(b.build());
        Ok(Pool {
            config,
            config_unsynced,
            tls,
            max: o.max_connections.max(1),
            slots: Mutex::new(Slots {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        })
    }

    /// A connection: an idle one, a new one when fewer than the maximum exist, else the
    /// first one given back within [`CHECKOUT_WAIT`].
    pub fn get(&self) -> StoreResult<Conn<'_>> {
        self.get_for(true)
    }

    /// A connection whose session commits synced (`synced`) or not; see the module.
    pub fn get_for(&self, synced: bool) -> StoreResult<Conn<'_>> {
        let deadline = Instant::now() + CHECKOUT_WAIT;
        let mut switches_failed = 0;
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            slots.open -= slots.idle.iter().filter(|c| c.client.is_closed()).count();
            slots.idle.retain(|c| !c.client.is_closed());
            // The most recently used of the kind asked for, else of the other kind.
            let found = slots
                .idle
                .iter()
                .rposition(|c| c.synced == synced)
                .or_else(|| slots.idle.len().checked_sub(1));
            if let Some(i) = found {
                let c = slots.idle.swap_remove(i);
                drop(slots);
                let mut conn = Conn {
                    pool: self,
                    inner: Some(c),
                };
                match conn.set_synced(synced) {
                    Ok(()) => return Ok(conn),
                    // Dropped by the database meanwhile (given up as it is dropped here):
                    // another idle one, or a new one.
                    Err(_) if switches_failed < self.max => {
                        switches_failed += 1;
                        drop(conn);
                    }
                    Err(e) => return Err(e),
                }
                slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                continue;
            }
            if slots.open < self.max {
                slots.open += 1;
                drop(slots);
                let config = if synced {
                    &self.config
                } else {
                    &self.config_unsynced
                };
                return match config.connect(self.tls.clone()) {
                    Ok(client) => Ok(Conn {
                        pool: self,
                        inner: Some(Pooled {
                            client,
                            synced,
                            statements: HashMap::new(),
                        }),
                    }),
                    Err(e) => {
                        self.forget();
                        Err(connect_failed(&e))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Backend(format!(
                    "postgres: all {} connections busy for {} s",
                    self.max,
                    CHECKOUT_WAIT.as_secs()
                )));
            }
            slots = self
                .freed
                .wait_timeout(slots, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// A way to make connections of their own (not counted by the pool), for a thread that
    /// keeps one (the directory cache's listener).
    pub fn connector(&self) -> impl Fn() -> StoreResult<Client> + Send + 'static {
        let config = self.config.clone();
        let tls = self.tls.clone();
        move || config.connect(tls.clone()).map_err(|e| connect_failed(&e))
    }

    /// Close every idle connection (one was found dropped by the database: the others, as
    /// old, are likely dropped too); the next call makes a new one.
    pub fn discard_idle(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let n = slots.idle.len();
        slots.idle.clear();
        slots.open -= n;
        drop(slots);
        self.freed.notify_all();
    }

    /// A connection that is gone: its slot is free.
    fn forget(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.open -= 1;
        drop(slots);
        self.freed.notify_one();
    }

    fn put(&self, c: Pooled) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.idle.push(c);
        drop(slots);
        self.freed.notify_one();
    }
}

/// A failed connection attempt, with the causes `Display` leaves out (a TLS handshake's
/// "certificate verify failed", a refused connection's errno).
fn connect_failed(e: &::postgres::Error) -> StoreError {
    let mut text = format!("postgres: connect: {e}");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text += &format!(": {c}");
        cause = c.source();
    }
    StoreError::Backend(text)
}

/// A checked-out connection, given back when dropped.
pub struct Conn<'a> {
    pool: &'a Pool,
    inner: Option<Pooled>,
}

impl Conn<'_> {
    fn pooled(&mut self) -> &mut Pooled {
        self.inner.as_mut().expect("present until dropped")
    }

    /// The client and the statements prepared on it, apart (for a transaction that prepares).
    pub fn parts(&mut self) -> (&mut Client, &mut HashMap<&'static str, Statement>) {
        let p = self.pooled();
        (&mut p.client, &mut p.statements)
    }

    /// Switch the session's `synchronous_commit` (one statement, when it differs).
    fn set_synced(&mut self, synced: bool) -> StoreResult<()> {
        let p = self.pooled();
        if p.synced != synced {
            p.client.batch_execute(if synced {
                "SET synchronous_commit = on"
            } else {
                "SET synchronous_commit = off"
            })?;
            p.synced = synced;
        }
        Ok(())
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.inner.as_ref().expect("present until dropped").client
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.pooled().client
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        match self.inner.take() {
            // A transaction still open (a panic inside one) or a broken connection: dropped.
            Some(c) if !c.client.is_closed() && !std::thread::panicking() => self.pool.put(c),
            _ => self.pool.forget(),
        }
    }
}
