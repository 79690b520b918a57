//! The shared store: PostgreSQL, for several service nodes on one database (issue 15).
//!
//! Client: the synchronous `postgres` crate (rust-postgres) with `postgres-openssl`, so OpenSSL
//! stays the only TLS library and the store's calls block like the SQLite store's (handlers run
//! on the blocking pool; rust-postgres drives its connection on a small runtime of its own).
//! `r2d2_postgres` was not taken: [`pool::Pool`] (bounded connections, a wait for a free one,
//! a broken connection dropped and a new one made on the next call) is a page of code, and
//! r2d2 would add `r2d2`, `scheduled-thread-pool` and `log`, and ours keeps what r2d2 could not:
//! each connection's prepared statements and its synced or unsynced session.
//!
//! Schema: `schema.rs`, applied only by [`PostgresStore::migrate`] (`layersec-server init` /
//! `migrate`); [`PostgresStore::open`] refuses an older schema.
//!
//! Bodies: up to `inline_max` bytes in `messages.body`; larger ones in `payload_chunks`, rows of
//! [`CHUNK_BYTES`], written from the spool file and read back into an unlinked local file,
//! one chunk at a time, so no body is ever whole in a node's memory.
//!
//! Claims: `UPDATE … WHERE seq = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1)`, so two nodes never
//! claim the same message and neither waits for the other; a lease that ran out makes the row
//! claimable again. Leases and delivery marks are committed with `synchronous_commit = off`
//! (as the SQLite store's are unsynced): losing one to a crash of the database only offers a
//! message again.
//!
//! Races between nodes are decided by the database: unique constraints (duplicates, MessageId
//! conflicts, parties, the shared enrolment key), row locks (`FOR UPDATE`: a party changed, a
//! message receipted, refused or answered, an enrolment code used) and advisory locks
//! (`migrate`, retention on one node at a time, enrolment checks). Where the pieces are:
//! `schema.rs`, `accounts.rs`, `enrolments.rs`, `messages.rs` (admission, bodies, claims),
//! `named.rs` (what co-ordination messages name), `retention.rs`, `reports.rs`, `pool.rs`.

use super::*;
use ::postgres::{Client, Transaction};
use ls_core::as4::coordination;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod accounts;
pub mod cache;
mod enrolments;
mod messages;
mod named;
pub mod pool;
mod reports;
pub mod retention;
pub mod schema;
mod shared;

pub use schema::SCHEMA_VERSION;

/// The largest `payload_chunks` row. Each chunk is in memory once while it is written or read
/// (and once more in the protocol buffers): a node holds at most about twice this per
/// connection, whatever the document's size.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// TLS to the database (libpq's `sslmode` without the unverified modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP (or a Unix socket).
    Disable,
    /// TLS when the server offers it, verified when used.
    Prefer,
    /// TLS, verified (the server certificate against `ca_file`, or the system's trust store,
    /// and the host name): libpq's `verify-full`.
    Require,
}

impl TlsMode {
    pub fn parse(s: &str) -> Option<TlsMode> {
        Some(match s {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            _ => return None,
        })
    }
}

/// How to reach the database.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/db` (or `host=… user=…`): never with a password.
    pub url: String,
    pub password: Option<zeroize::Zeroizing<String>>,
    pub tls: TlsMode,
    /// PEM CA certificates the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    pub max_connections: usize,
    /// A local folder for spool files (pushed bodies before `accept`) and claimed bodies.
    pub spool_dir: PathBuf,
    /// Bodies up to this size are kept in the message row, larger ones in chunks.
    pub inline_max: usize,
}

impl fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &self.url)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// Whether a connection string names only this machine (a Unix socket or a loopback
/// address): where TLS may be left to `prefer` or `disable` without a warning.
pub fn is_local(url: &str) -> bool {
    use ::postgres::config::Host;
    let Ok(cfg) = url.parse::<::postgres::Config>() else {
        return false;
    };
    !cfg.get_hosts().is_empty()
        && cfg.get_hosts().iter().all(|h| match h {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_matches(|c| c == '[' || c == ']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|a| a.is_loopback())
            }
        })
}

/// Whether a connection string carries a password (refused: it belongs in an environment
/// variable or a file).
pub fn url_has_password(url: &str) -> Result<bool, String> {
    let cfg: ::postgres::Config = url
        .parse()
        .map_err(|e| format!("not a PostgreSQL connection string: {e}"))?;
    Ok(cfg.get_password().is_some())
}

/// A unique constraint that says no is the caller's `Conflict` (as the SQLite store's);
/// anything else is the database's failure.
impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> StoreError {
        if e.code() == Some(&::postgres::error::SqlState::UNIQUE_VIOLATION) {
            return StoreError::Conflict(format!("postgres: {e}"));
        }
        // The server's own words (SQLSTATE and message), which `Display` leaves out.
        match e.as_db_error() {
            Some(db) => {
                StoreError::Backend(format!("postgres: {} ({})", db.message(), db.code().code()))
            }
            None => StoreError::Backend(format!("postgres: {e}")),
        }
    }
}

/// The PostgreSQL [`Store`]. `Send + Sync`; share it behind an `Arc`.
pub struct PostgresStore {
    pool: pool::Pool,
    spool_dir: PathBuf,
    inline_max: usize,
    enrolment_key: OnceLock<zeroize::Zeroizing<Vec<u8>>>,
    /// Parties and certificates as last read, dropped on every change anywhere (only once
    /// [`PostgresStore::start_directory_cache`] was called).
    cache: std::sync::Arc<cache::DirectoryCache>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool)
            .field("spool_dir", &self.spool_dir)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connect and check the schema: a database whose schema is not [`SCHEMA_VERSION`] is
    /// refused (run [`PostgresStore::migrate`]).
    pub fn open(o: &PgOptions) -> StoreResult<PostgresStore> {
        let store = PostgresStore::connect(o)?;
        schema::check(&mut *store.pool.get()?)?;
        Ok(store)
    }

    /// Apply the migrations this program has and the database lacks; returns the version
    /// found before. The only way the schema changes.
    pub fn migrate(o: &PgOptions, now: Unix) -> StoreResult<i64> {
        let store = PostgresStore::connect(o)?;
        let found = schema::migrate(&mut *store.pool.get()?, now)?;
        Ok(found)
    }

    fn connect(o: &PgOptions) -> StoreResult<PostgresStore> {
        if url_has_password(&o.url).map_err(StoreError::Invalid)? {
            return Err(StoreError::Invalid(
                "the connection URL carries a password: give it by password_env or \
                 password_file"
                    .into(),
            ));
        }
        payloads_dir(&o.spool_dir)?;
        let pool = pool::Pool::new(o)?;
        // One connection now, so that a wrong address or password is reported at start.
        drop(pool.get()?);
        Ok(PostgresStore {
            pool,
            spool_dir: o.spool_dir.clone(),
            inline_max: o.inline_max,
            enrolment_key: OnceLock::new(),
            cache: Default::default(),
        })
    }

    /// Cache parties and certificates, dropped on every change notified by the database
    /// ([`cache`]): for a serving node, which reads them on every message.
    pub fn start_directory_cache(&self) -> StoreResult<()> {
        self.cache
            .start(self.pool.connector())
            .map_err(|e| io_err("start the directory cache's listener".into(), e))
    }

    /// The directory cache (for tests and metrics).
    pub fn directory_cache(&self) -> &cache::DirectoryCache {
        &self.cache
    }

    /// Run `f` in one transaction, committed when it succeeds (rolled back otherwise), the
    /// commit waiting for the WAL flush.
    fn write<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.transaction(false, true, f)
    }

    /// Run `f` in one transaction (read-only or not, on a synced session or not). A pooled
    /// connection the database dropped since its last use (a restart, a failover) fails at
    /// `BEGIN`, before anything was done: it is thrown away (with the other idle ones) and the
    /// transaction begun once more on a new one.
    fn transaction<T>(
        &self,
        read_only: bool,
        synced: bool,
        f: impl FnOnce(&mut Tx<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut f = Some(f);
        let mut again = true;
        loop {
            let mut conn = self.pool.get_for(synced)?;
            let (client, statements) = conn.parts();
            let begun = client.build_transaction().read_only(read_only).start();
            let e = match begun {
                Ok(tx) => {
                    let f = f.take().expect("called once: the loop ends here");
                    let mut tx = Tx { tx, statements };
                    let v = f(&mut tx)?;
                    tx.tx.commit()?;
                    return Ok(v);
                }
                Err(e) => e,
            };
            if !(connection_gone(&e) && again) {
                return Err(e.into());
            }
            // The idle ones, as old, are dropped too (this one is given up when it goes out
            // of scope: it is closed).
            again = false;
            self.pool.discard_idle();
        }
    }

    /// As [`Self::write`], committed without waiting for the WAL flush (leases, delivery
    /// marks: safe to lose on a database crash, see the module's documentation).
    fn write_unsynced<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.transaction(false, false, f)
    }

    /// One statement on its own (no transaction around it: a write is committed as it ends,
    /// without waiting for the WAL flush: an unsynced session), prepared once per connection.
    fn statement(
        &self,
        sql: &'static str,
        params: &[&(dyn ::postgres::types::ToSql + Sync)],
    ) -> StoreResult<Vec<::postgres::Row>> {
        let mut again = true;
        loop {
            let mut conn = self.pool.get_for(false)?;
            let (client, statements) = conn.parts();
            let prepared = match statements.get(sql) {
                Some(s) => Ok(s.clone()),
                None => client.prepare(sql),
            };
            let e = match prepared {
                Ok(stmt) => {
                    statements.entry(sql).or_insert_with(|| stmt.clone());
                    match client.query(&stmt, params) {
                        Ok(rows) => return Ok(rows),
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            // Retried only when the connection was gone before the statement ran (a cached
            // statement on a connection the database dropped fails so too).
            if !(connection_gone(&e) && again) {
                return Err(e.into());
            }
            again = false;
            self.pool.discard_idle();
        }
    }

    /// Run `f` in one read-only transaction.
    fn read<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.transaction(true, true, f)
    }

    /// A new private file in the spool folder, unique by a random name.
    fn spool_file(&self, suffix: &str) -> StoreResult<(PathBuf, std::fs::File)> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut r = [0u8; 16];
        openssl::rand::rand_bytes(&mut r).map_err(|e| StoreError::Backend(e.to_string()))?;
        let path = self
            .spool_dir
            .join(format!("{}{suffix}", ls_core::bytes::hex(&r)));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_err(format!("create {}", path.display()), e))?;
        Ok((path, file))
    }
}

/// A transaction of the store, with the statements prepared on its connection
/// ([`Tx::prepared`]); it is a [`Transaction`] for everything else.
pub(super) struct Tx<'a> {
    tx: Transaction<'a>,
    statements: &'a mut std::collections::HashMap<&'static str, ::postgres::Statement>,
}

impl<'a> std::ops::Deref for Tx<'a> {
    type Target = Transaction<'a>;
    fn deref(&self) -> &Transaction<'a> {
        &self.tx
    }
}

impl<'a> std::ops::DerefMut for Tx<'a> {
    fn deref_mut(&mut self) -> &mut Transaction<'a> {
        &mut self.tx
    }
}

type Params<'p> = &'p [&'p (dyn ::postgres::types::ToSql + Sync)];

impl Tx<'_> {
    /// [`Transaction::query_opt`] of `sql` [prepared](Tx::prepared).
    pub fn query_opt_p(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> StoreResult<Option<::postgres::Row>> {
        let st = self.prepared(sql)?;
        Ok(self.tx.query_opt(&st, params)?)
    }

    /// [`Transaction::query_one`] of `sql` [prepared](Tx::prepared).
    pub fn query_one_p(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> StoreResult<::postgres::Row> {
        let st = self.prepared(sql)?;
        Ok(self.tx.query_one(&st, params)?)
    }

    /// [`Transaction::execute`] of `sql` [prepared](Tx::prepared).
    pub fn execute_p(&mut self, sql: &'static str, params: Params<'_>) -> StoreResult<u64> {
        let st = self.prepared(sql)?;
        Ok(self.tx.execute(&st, params)?)
    }

    /// `sql` prepared on this connection (once: parsed and planned by the server once per
    /// connection, then only bound and executed). For the statements of every message.
    pub fn prepared(&mut self, sql: &'static str) -> StoreResult<::postgres::Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}

/// Whether `e` says the connection is gone (closed, or ended by the server: a shutdown or
/// restart, SQLSTATE class 57P; a connection exception, class 08), rather than anything
/// about the statement.
fn connection_gone(e: &::postgres::Error) -> bool {
    e.is_closed()
        || e.code()
            .is_some_and(|c| c.code().starts_with("57P") || c.code().starts_with("08"))
}

fn io_err(context: String, source: std::io::Error) -> StoreError {
    StoreError::Io { context, source }
}

/// The spool folder, made 0700 when missing.
fn payloads_dir(dir: &Path) -> StoreResult<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err(format!("create {}", dir.display()), e))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store for PostgresStore {
    fn create_subscriber(&self, s: &NewSubscriber, now: Unix) -> StoreResult<Subscriber> {
        accounts::create_subscriber(self, s, now)
    }

    fn subscriber(&self, id: i64) -> StoreResult<Option<Subscriber>> {
        accounts::subscriber(self, id)
    }

    fn subscribers(&self) -> StoreResult<Vec<Subscriber>> {
        accounts::subscribers(self)
    }

    fn set_account_status(&self, id: i64, status: AccountStatus) -> StoreResult<()> {
        accounts::set_account_status(self, id, status)
    }

    fn register_party(&self, p: &NewParty<'_>, now: Unix) -> StoreResult<Party> {
        accounts::register_party(self, p, now)
    }

    fn set_party_limit(&self, key: &PartyKey, max_document_bytes: u64) -> StoreResult<()> {
        accounts::set_party_limit(self, key, max_document_bytes)
    }

    fn set_party_mail_address(
        &self,
        key: &PartyKey,
        mail_address: Option<&str>,
    ) -> StoreResult<()> {
        accounts::set_party_mail_address(self, key, mail_address)
    }

    fn mail_parties(&self) -> StoreResult<Vec<Party>> {
        accounts::mail_parties(self)
    }

    fn replace_certificate(
        &self,
        key: &PartyKey,
        cert_der: &[u8],
        fingerprint: &str,
        overlap_until: Unix,
        now: Unix,
    ) -> StoreResult<()> {
        accounts::replace_certificate(self, key, cert_der, fingerprint, overlap_until, now)
    }

    fn revoke_party(&self, key: &PartyKey, now: Unix) -> StoreResult<()> {
        accounts::revoke_party(self, key, now)
    }

    fn reinstate_party(
        &self,
        key: &PartyKey,
        new_cert: Option<(&[u8], &str)>,
        now: Unix,
    ) -> StoreResult<()> {
        accounts::reinstate_party(self, key, new_cert, now)
    }

    fn party(&self, key: &PartyKey) -> StoreResult<Option<Party>> {
        self.cache.party(key, || accounts::party(self, key))
    }

    fn party_by_mpc(&self, mpc: &str) -> StoreResult<Option<Party>> {
        self.cache
            .party_by_mpc(mpc, || accounts::party_by_mpc(self, mpc))
    }

    fn parties_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Vec<Party>> {
        accounts::parties_by_fingerprint(self, fingerprint)
    }

    fn certificates(&self, key: &PartyKey) -> StoreResult<Vec<PartyCert>> {
        self.cache
            .certificates(key, || accounts::certificates(self, key))
    }

    fn parties(&self, subscriber_id: Option<i64>) -> StoreResult<Vec<Party>> {
        accounts::parties(self, subscriber_id)
    }

    fn issue_enrolment(&self, e: &NewEnrolment<'_>, now: Unix) -> StoreResult<EnrolmentRecord> {
        enrolments::issue(self, e, now)
    }

    fn enrolments(&self, subscriber_id: i64) -> StoreResult<Vec<EnrolmentRecord>> {
        enrolments::list(self, subscriber_id)
    }

    fn revoke_enrolment(
        &self,
        subscriber_id: i64,
        id: i64,
        now: Unix,
    ) -> StoreResult<EnrolmentRecord> {
        enrolments::revoke(self, subscriber_id, id, now)
    }

    fn enrolment_account(&self, key: &PartyKey) -> StoreResult<Option<i64>> {
        enrolments::account(self, key)
    }

    fn enrol(&self, e: &Enrolment<'_>, now: Unix) -> StoreResult<EnrolOutcome> {
        enrolments::enrol(self, e, now)
    }

    fn enrolment_key(&self) -> StoreResult<zeroize::Zeroizing<Vec<u8>>> {
        enrolments::key(self)
    }

    fn accept(&self, m: &NewMessage, limits: &AcceptLimits) -> StoreResult<Accepted> {
        messages::accept(self, m, limits)
    }

    fn new_spool(&self) -> StoreResult<(Spool, std::fs::File)> {
        let (path, file) = self.spool_file(".spool")?;
        Ok((Spool { path, len: 0 }, file))
    }

    fn claim_next(&self, mpc: &str, now: Unix, lease_secs: i64) -> StoreResult<Option<Claimed>> {
        messages::claim_next(self, mpc, now, lease_secs)
    }

    fn mark_delivered(
        &self,
        recipient: &PartyKey,
        message_id: &str,
        receipt: &[u8],
        now: Unix,
    ) -> StoreResult<Delivery> {
        messages::mark_delivered(self, recipient, message_id, receipt, now)
    }

    fn release_claim(&self, recipient: &PartyKey, message_id: &str, now: Unix) -> StoreResult<()> {
        messages::release_claim(self, recipient, message_id, now)
    }

    /// Runs on one node at a time: while another node's retention round holds
    /// [`retention::RETENTION_LOCK`], this one does nothing and returns zeros (see
    /// `retention.rs`).
    fn purge(&self, delivered_before: Unix, undelivered_before: Unix) -> StoreResult<Purged> {
        retention::purge(self, delivered_before, undelivered_before)
    }

    /// Runs on one node at a time, as [`Store::purge`]: 0 while another node prunes.
    fn prune_records(&self, received_before: Unix) -> StoreResult<u64> {
        retention::prune_records(self, received_before)
    }

    fn recipients_of(&self, message_id: &str) -> StoreResult<Vec<PartyKey>> {
        messages::recipients_of(self, message_id)
    }

    fn queue_depths(&self) -> StoreResult<Vec<(PartyKey, u64)>> {
        reports::queue_depths(self)
    }

    fn queued_bytes(&self) -> StoreResult<Vec<(i64, u64)>> {
        reports::queued_bytes(self)
    }

    /// The database's disk is PostgreSQL's to watch: the store cannot tell.
    fn free_bytes(&self) -> StoreResult<Option<u64>> {
        Ok(None)
    }

    fn messages(&self, party: Option<&PartyKey>, limit: u32) -> StoreResult<Vec<MessageRecord>> {
        reports::messages(self, party, limit)
    }

    fn usage(&self, from: Unix, to: Unix) -> StoreResult<Vec<Usage>> {
        reports::usage(self, from, to)
    }

    fn shared(&self) -> &dyn super::shared::SharedState {
        self
    }
}
