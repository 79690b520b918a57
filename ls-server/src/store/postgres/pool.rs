//! A small bounded pool of PostgreSQL connections: at most `max_connections`, a caller waits
//! up to [`CHECKOUT_WAIT`] for a free one, a connection found closed (the database restarted,
//! the network dropped it) is dropped and a new one made on demand. An idle connection is
//! taken back only when it is not inside a transaction (a panic mid-transaction drops it).

use super::{PgOptions, TlsMode};
use crate::store::{StoreError, StoreResult};
use ::postgres::config::SslMode;
use ::postgres::Client;
use postgres_openssl::MakeTlsConnector;
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

struct Slots {
    idle: Vec<Client>,
    /// Connections in existence (idle or checked out).
    open: usize,
}

pub struct Pool {
    config: ::postgres::Config,
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
        if config.get_options().is_none() {
            config.options(&format!(
                "-c statement_timeout={}",
                STATEMENT_TIMEOUT.as_millis()
            ));
        }
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
        let deadline = Instant::now() + CHECKOUT_WAIT;
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(c) = slots.idle.pop() {
                if !c.is_closed() {
                    return Ok(Conn {
                        pool: self,
                        client: Some(c),
                    });
                }
                slots.open -= 1;
            }
            if slots.open < self.max {
                slots.open += 1;
                drop(slots);
                return match self.config.connect(self.tls.clone()) {
                    Ok(c) => Ok(Conn {
                        pool: self,
                        client: Some(c),
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

    fn put(&self, c: Client) {
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
    client: Option<Client>,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until dropped")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        match self.client.take() {
            // A transaction still open (a panic inside one) or a broken connection: dropped.
            Some(c) if !c.is_closed() && !std::thread::panicking() => self.pool.put(c),
            _ => self.pool.forget(),
        }
    }
}
