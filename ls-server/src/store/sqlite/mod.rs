//! The embedded store: SQLite (WAL, `synchronous=FULL`) for accounts, parties, certificates,
//! message records, small bodies and the usage ledger; bodies larger than `inline_max` bytes in
//! files under `payloads/`.
//!
//! Layout of `dir`: `layersec.db` (with its `-wal` and `-shm` files), `payloads/`, and
//! `enrolment.key` (the key of the enrolment codes' keyed hashes, made on first use). The
//! directories are created 0700 and the files 0600 (Unix).
//!
//! Concurrency: one connection behind a mutex per [`SqliteStore`]; several stores (processes,
//! such as the admin command line next to the running service) may open the same directory:
//! every write is a `BEGIN IMMEDIATE` transaction, so writers are serialised by SQLite's lock
//! and wait up to [`BUSY_TIMEOUT`] for it.
//!
//! Payload files: a body is written to `<name>.tmp`, synced, renamed to `<name>.body` and the
//! directory synced *before* the row naming it is committed, so a committed row never names a
//! missing file. The big write happens outside the store's mutex and SQLite's write lock. A
//! crash between the rename and the commit (or between a purge's commit and its unlinks) leaves
//! an orphan; [`Store::purge`] removes files that no row names and that are older than
//! [`ORPHAN_GRACE`].
//!
//! Bodies are never logged; error messages carry SQLite's messages, paths and ids only.
//!
//! Where the pieces are: `schema.rs` (tables, migrations), `accounts.rs` (subscribers, parties,
//! certificates), `messages.rs` (admission, storing, claiming, delivery), `retention.rs`,
//! `usage.rs` (the ledger), `enrolments.rs` (enrolment codes), `payloads.rs` (body files, free space), `convert.rs` (SQLite types),
//! `lock.rs` (the service lock of the folder, which `migrate-store` takes exclusively).

use super::*;
use ls_core::as4::coordination;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

mod accounts;
mod convert;
mod enrolments;
mod lock;
mod messages;
mod payloads;
mod retention;
mod schema;
#[cfg(test)]
mod tests;
mod usage;

pub use enrolments::ENROLMENT_KEY_FILE;
pub use lock::ServiceLock;
pub use schema::SCHEMA_VERSION;

use payloads::{create_private_dir, create_private_file, fs_available, sync_dir};
use schema::migrate;

/// The database file in the store's directory.
pub const DB_FILE: &str = "layersec.db";
/// The directory of payload files in the store's directory.
pub const PAYLOAD_DIR: &str = "payloads";
/// How long a writer waits for another connection's (or process's) write lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Unreferenced payload files younger than this are left alone by the orphan sweep: they may
/// belong to an `accept` (of this or another process) that has not committed yet.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

/// The embedded [`Store`]. `Send + Sync`; share it behind an `Arc`.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The store's folder (the database).
    dir: PathBuf,
    payloads: PathBuf,
    inline_max: usize,
    /// The key of the enrolment codes' keyed hashes, once read.
    enrolment_key: OnceLock<zeroize::Zeroizing<Vec<u8>>>,
    /// The one node's memory of replays, rate limits and lockouts.
    shared: super::shared::LocalState,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("payloads", &self.payloads)
            .field("inline_max", &self.inline_max)
            .finish_non_exhaustive()
    }
}

/// The schema version of the store in `dir` as found (0 when there is none yet), without
/// changing anything.
pub fn schema_version(dir: &Path) -> StoreResult<i64> {
    let db = dir.join(DB_FILE);
    if !db.exists() {
        return Ok(0);
    }
    let conn = Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

impl SqliteStore {
    /// Open (creating when needed) the store in `dir`: `dir/layersec.db` and `dir/payloads/`.
    /// Bodies larger than `inline_max` bytes go to files.
    pub fn open(dir: &Path, inline_max: usize) -> StoreResult<SqliteStore> {
        create_private_dir(dir)?;
        let payloads = dir.join(PAYLOAD_DIR);
        if !payloads.is_dir() {
            create_private_dir(&payloads)?;
            sync_dir(dir)?;
        }
        let db = dir.join(DB_FILE);
        create_private_file(&db)?;

        let mut conn = Connection::open(&db)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{}: cannot use WAL journal mode (got {mode})",
                db.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;

        Ok(SqliteStore {
            conn: Mutex::new(conn),
            dir: dir.to_path_buf(),
            payloads,
            inline_max,
            enrolment_key: OnceLock::new(),
            shared: Default::default(),
        })
    }

    /// The connection; a transaction left open by a thread that panicked is rolled back.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        conn
    }

    /// Run `f` in one `BEGIN IMMEDIATE` transaction, committed and synced when `f` succeeds.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.conn();
        // Re-asserted each time: an unsynced write that panicked may have left NORMAL behind.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let v = f(&tx)?;
        tx.commit()?;
        Ok(v)
    }

    /// As [`Self::write`], but the commit is not synced (`synchronous=NORMAL` for this one
    /// transaction): it survives the process being killed, and the next synced commit or
    /// checkpoint makes it durable. For changes that are safe to lose on power failure —
    /// a lease (the message is offered again) or a delivery mark (the recipient receipts the
    /// offer again and does not write it twice).
    fn write_unsynced<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut conn = self.conn();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        })();
        conn.pragma_update(None, "synchronous", "FULL")?;
        result
    }

    /// Run `f` in one read (deferred) transaction.
    fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let v = f(&tx)?;
        tx.commit()?;
        Ok(v)
    }
}

impl Store for SqliteStore {
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
        accounts::party(self, key)
    }

    fn party_by_mpc(&self, mpc: &str) -> StoreResult<Option<Party>> {
        accounts::party_by_mpc(self, mpc)
    }

    fn parties_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Vec<Party>> {
        accounts::parties_by_fingerprint(self, fingerprint)
    }

    fn certificates(&self, key: &PartyKey) -> StoreResult<Vec<PartyCert>> {
        accounts::certificates(self, key)
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
        SqliteStore::new_spool(self)
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

    fn purge(&self, delivered_before: Unix, undelivered_before: Unix) -> StoreResult<Purged> {
        retention::purge(self, delivered_before, undelivered_before)
    }

    fn prune_records(&self, received_before: Unix) -> StoreResult<u64> {
        retention::prune_records(self, received_before)
    }

    fn recipients_of(&self, message_id: &str) -> StoreResult<Vec<PartyKey>> {
        messages::recipients_of(self, message_id)
    }

    fn queue_depths(&self) -> StoreResult<Vec<(PartyKey, u64)>> {
        messages::queue_depths(self)
    }

    fn queued_bytes(&self) -> StoreResult<Vec<(i64, u64)>> {
        messages::queued_bytes(self)
    }

    fn free_bytes(&self) -> StoreResult<Option<u64>> {
        fs_available(&self.payloads).map(Some)
    }

    fn messages(&self, party: Option<&PartyKey>, limit: u32) -> StoreResult<Vec<MessageRecord>> {
        messages::messages(self, party, limit)
    }

    fn usage(&self, from: Unix, to: Unix) -> StoreResult<Vec<Usage>> {
        usage::usage(self, from, to)
    }

    fn shared(&self) -> &dyn super::shared::SharedState {
        &self.shared
    }
}
