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
                        Err(StoreError::Backend(format!("postgres: connect: {e}")))
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
