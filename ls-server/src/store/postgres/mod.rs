//! The shared store: PostgreSQL, for several service nodes on one database (issue 15).
//!
//! Client: the synchronous `postgres` crate (rust-postgres) with `postgres-openssl`, so OpenSSL
//! stays the only TLS library and the store's calls block like the SQLite store's (handlers run
//! on the blocking pool; rust-postgres drives its connection on a small runtime of its own).
//! `r2d2_postgres` was not taken: [`pool::Pool`] (bounded connections, a wait for a free one,
//! a broken connection dropped and a new one made on the next call) is a page of code, and
//! r2d2 would add `r2d2`, `scheduled-thread-pool`, `parking_lot` and `log`.
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
//! Methods not implemented yet answer `StoreError::Backend("not implemented on PostgreSQL yet:
//! <method>")` (see [`not_yet`]).

use super::*;
use ::postgres::{Client, Transaction};
use ls_core::as4::coordination;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod accounts;
mod messages;
pub mod pool;
pub mod schema;

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

/// Whether a connection string carries a password (refused: it belongs in an environment
/// variable or a file).
pub fn url_has_password(url: &str) -> Result<bool, String> {
    let cfg: ::postgres::Config = url
        .parse()
        .map_err(|e| format!("not a PostgreSQL connection string: {e}"))?;
    Ok(cfg.get_password().is_some())
}

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> StoreError {
        StoreError::Backend(format!("postgres: {e}"))
    }
}

/// The answer of a method not written yet: an error, never a panic or a wrong answer.
pub(super) fn not_yet<T>(method: &str) -> StoreResult<T> {
    Err(StoreError::Backend(format!(
        "not implemented on PostgreSQL yet: {method}"
    )))
}

/// The PostgreSQL [`Store`]. `Send + Sync`; share it behind an `Arc`.
pub struct PostgresStore {
    pool: pool::Pool,
    spool_dir: PathBuf,
    inline_max: usize,
    enrolment_key: OnceLock<zeroize::Zeroizing<Vec<u8>>>,
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
        })
    }

    /// Run `f` in one transaction, committed when it succeeds (rolled back otherwise).
    fn write<T>(&self, f: impl FnOnce(&mut Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.transaction()?;
        let v = f(&mut tx)?;
        tx.commit()?;
        Ok(v)
    }

    /// As [`Self::write`], committed without waiting for the WAL flush (leases, delivery
    /// marks: safe to lose on a database crash, see the module's documentation).
    fn write_unsynced<T>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.write(|tx| {
            tx.batch_execute("SET LOCAL synchronous_commit = off")?;
            f(tx)
        })
    }

    /// Run `f` in one read-only transaction.
    fn read<T>(&self, f: impl FnOnce(&mut Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.build_transaction().read_only(true).start()?;
        let v = f(&mut tx)?;
        tx.commit()?;
        Ok(v)
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

    fn set_party_limit(&self, _key: &PartyKey, _max_document_bytes: u64) -> StoreResult<()> {
        not_yet("set_party_limit")
    }

    fn set_party_mail_address(
        &self,
        _key: &PartyKey,
        _mail_address: Option<&str>,
    ) -> StoreResult<()> {
        not_yet("set_party_mail_address")
    }

    fn mail_parties(&self) -> StoreResult<Vec<Party>> {
        not_yet("mail_parties")
    }

    fn replace_certificate(
        &self,
        _key: &PartyKey,
        _cert_der: &[u8],
        _fingerprint: &str,
        _overlap_until: Unix,
        _now: Unix,
    ) -> StoreResult<()> {
        not_yet("replace_certificate")
    }

    fn revoke_party(&self, _key: &PartyKey, _now: Unix) -> StoreResult<()> {
        not_yet("revoke_party")
    }

    fn reinstate_party(
        &self,
        _key: &PartyKey,
        _new_cert: Option<(&[u8], &str)>,
        _now: Unix,
    ) -> StoreResult<()> {
        not_yet("reinstate_party")
    }

    fn party(&self, key: &PartyKey) -> StoreResult<Option<Party>> {
        accounts::party(self, key)
    }

    fn party_by_mpc(&self, mpc: &str) -> StoreResult<Option<Party>> {
        accounts::party_by_mpc(self, mpc)
    }

    fn parties_by_fingerprint(&self, _fingerprint: &str) -> StoreResult<Vec<Party>> {
        not_yet("parties_by_fingerprint")
    }

    fn certificates(&self, key: &PartyKey) -> StoreResult<Vec<PartyCert>> {
        accounts::certificates(self, key)
    }

    fn parties(&self, subscriber_id: Option<i64>) -> StoreResult<Vec<Party>> {
        accounts::parties(self, subscriber_id)
    }

    fn issue_enrolment(&self, _e: &NewEnrolment<'_>, _now: Unix) -> StoreResult<EnrolmentRecord> {
        not_yet("issue_enrolment")
    }

    fn enrolments(&self, _subscriber_id: i64) -> StoreResult<Vec<EnrolmentRecord>> {
        not_yet("enrolments")
    }

    fn revoke_enrolment(
        &self,
        _subscriber_id: i64,
        _id: i64,
        _now: Unix,
    ) -> StoreResult<EnrolmentRecord> {
        not_yet("revoke_enrolment")
    }

    fn enrolment_account(&self, _key: &PartyKey) -> StoreResult<Option<i64>> {
        not_yet("enrolment_account")
    }

    fn enrol(&self, _e: &Enrolment<'_>, _now: Unix) -> StoreResult<EnrolOutcome> {
        not_yet("enrol")
    }

    fn enrolment_key(&self) -> StoreResult<zeroize::Zeroizing<Vec<u8>>> {
        if let Some(k) = self.enrolment_key.get() {
            return Ok(k.clone());
        }
        not_yet("enrolment_key")
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

    fn purge(&self, _delivered_before: Unix, _undelivered_before: Unix) -> StoreResult<Purged> {
        not_yet("purge")
    }

    fn prune_records(&self, _received_before: Unix) -> StoreResult<u64> {
        not_yet("prune_records")
    }

    fn recipients_of(&self, message_id: &str) -> StoreResult<Vec<PartyKey>> {
        messages::recipients_of(self, message_id)
    }

    fn queue_depths(&self) -> StoreResult<Vec<(PartyKey, u64)>> {
        not_yet("queue_depths")
    }

    fn queued_bytes(&self) -> StoreResult<Vec<(i64, u64)>> {
        not_yet("queued_bytes")
    }

    /// The database's disk is PostgreSQL's to watch: the store cannot tell.
    fn free_bytes(&self) -> StoreResult<Option<u64>> {
        Ok(None)
    }

    fn messages(&self, _party: Option<&PartyKey>, _limit: u32) -> StoreResult<Vec<MessageRecord>> {
        not_yet("messages")
    }

    fn usage(&self, _from: Unix, _to: Unix) -> StoreResult<Vec<Usage>> {
        not_yet("usage")
    }
}
