//! The embedded store: SQLite (WAL, `synchronous=FULL`) for accounts, parties, certificates,
//! message records, small bodies and the usage ledger; bodies larger than `inline_max` bytes in
//! files under `payloads/`.
//!
//! Layout of `dir`: `layersec.db` (with its `-wal` and `-shm` files) and `payloads/`. The
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

use super::*;
use ls_core::as4::coordination;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The database file in the store's directory.
pub const DB_FILE: &str = "layersec.db";
/// The directory of payload files in the store's directory.
pub const PAYLOAD_DIR: &str = "payloads";
/// How long a writer waits for another connection's (or process's) write lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Unreferenced payload files younger than this are left alone by the orphan sweep: they may
/// belong to an `accept` (of this or another process) that has not committed yet.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

const BODY_EXT: &str = ".body";
const TMP_EXT: &str = ".tmp";

/// Schema migrations: `MIGRATIONS[i]` takes `PRAGMA user_version` from `i` to `i + 1`. Append
/// only; never edit a released entry.
const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2];

/// The schema version this program writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const SCHEMA_V1: &str = "
CREATE TABLE subscribers (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    organisation  TEXT    NOT NULL,
    contact       TEXT    NOT NULL,
    contract_ref  TEXT    NOT NULL,
    plan          TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at    INTEGER NOT NULL
);

CREATE TABLE parties (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber_id  INTEGER NOT NULL REFERENCES subscribers(id),
    ptype          TEXT    NOT NULL,
    pid            TEXT    NOT NULL,
    mpc            TEXT    NOT NULL UNIQUE,
    status         TEXT    NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    UNIQUE (ptype, pid)
);
CREATE INDEX parties_subscriber ON parties(subscriber_id);

CREATE TABLE certificates (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    party_id       INTEGER NOT NULL REFERENCES parties(id),
    der            BLOB    NOT NULL,
    fingerprint    TEXT    NOT NULL,
    registered_at  INTEGER NOT NULL,
    retired_at     INTEGER
);
CREATE INDEX certificates_party ON certificates(party_id);
CREATE INDEX certificates_fingerprint ON certificates(fingerprint);

CREATE TABLE messages (
    seq                   INTEGER PRIMARY KEY AUTOINCREMENT,
    sender_ptype          TEXT    NOT NULL,
    sender_id             TEXT    NOT NULL,
    recipient_ptype       TEXT    NOT NULL,
    recipient_id          TEXT    NOT NULL,
    mpc                   TEXT    NOT NULL,
    message_id            TEXT    NOT NULL,
    conversation_id       TEXT    NOT NULL,
    service               TEXT    NOT NULL,
    action                TEXT    NOT NULL,
    content_type          TEXT    NOT NULL,
    size                  INTEGER NOT NULL,
    body                  BLOB,
    body_file             TEXT,
    receipt_content_type  TEXT    NOT NULL,
    receipt               BLOB    NOT NULL,
    state                 TEXT    NOT NULL
        CHECK (state IN ('waiting', 'leased', 'delivered', 'expired', 'purged')),
    received_at           INTEGER NOT NULL,
    lease_until           INTEGER,
    attempts              INTEGER NOT NULL DEFAULT 0,
    delivered_at          INTEGER,
    recipient_receipt     BLOB,
    CHECK (body IS NULL OR body_file IS NULL),
    UNIQUE (sender_ptype, sender_id, message_id)
);
-- claim_next: the pending messages of an MPC in FIFO order (only pending rows are indexed).
CREATE INDEX messages_claim ON messages(mpc, seq) WHERE state IN ('waiting', 'leased');
-- queue_depths
CREATE INDEX messages_pending_recipient ON messages(recipient_ptype, recipient_id)
    WHERE state IN ('waiting', 'leased');
-- mark_delivered, messages(party)
CREATE INDEX messages_recipient ON messages(recipient_ptype, recipient_id, message_id);
-- recipients_of
CREATE INDEX messages_message_id ON messages(message_id);
-- purge
CREATE INDEX messages_pending_age ON messages(received_at) WHERE state IN ('waiting', 'leased');
CREATE INDEX messages_delivered_age ON messages(delivered_at) WHERE state = 'delivered';
-- orphan sweep
CREATE INDEX messages_body_file ON messages(body_file) WHERE body_file IS NOT NULL;

-- Billing: one row per message accepted ('sent', at acceptance) or delivered ('received', at
-- the recipient's receipt). Independent of the messages table, which is purged.
CREATE TABLE usage_ledger (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber_id  INTEGER,
    party_ptype    TEXT    NOT NULL,
    party_id       TEXT    NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN ('sent', 'received')),
    at             INTEGER NOT NULL,
    bytes          INTEGER NOT NULL,
    message_seq    INTEGER
);
CREATE INDEX usage_ledger_subscriber_at ON usage_ledger(subscriber_id, at);
";

/// Version 2 (issue 9): a document limit per party (existing parties get
/// `coordination::DEFAULT_MAX_DOCUMENT_BYTES`, 100 MiB, as of this migration); messages get the
/// state `failed` with the refusal's class, notice and time, and the content fingerprint that
/// tells a retry from a reused MessageId (NULL for older rows: then only the recipient is
/// compared). SQLite cannot change a CHECK constraint, so `messages` is copied into a new table
/// (once; its AUTOINCREMENT counter is carried over, so `usage_ledger.message_seq` never names
/// two messages).
const SCHEMA_V2: &str = "
ALTER TABLE parties ADD COLUMN max_document_bytes INTEGER NOT NULL DEFAULT 104857600
    CHECK (max_document_bytes > 0);

CREATE TABLE messages_v2 (
    seq                   INTEGER PRIMARY KEY AUTOINCREMENT,
    sender_ptype          TEXT    NOT NULL,
    sender_id             TEXT    NOT NULL,
    recipient_ptype       TEXT    NOT NULL,
    recipient_id          TEXT    NOT NULL,
    mpc                   TEXT    NOT NULL,
    message_id            TEXT    NOT NULL,
    conversation_id       TEXT    NOT NULL,
    service               TEXT    NOT NULL,
    action                TEXT    NOT NULL,
    content_type          TEXT    NOT NULL,
    size                  INTEGER NOT NULL,
    body                  BLOB,
    body_file             TEXT,
    receipt_content_type  TEXT    NOT NULL,
    receipt               BLOB    NOT NULL,
    state                 TEXT    NOT NULL
        CHECK (state IN ('waiting', 'leased', 'delivered', 'expired', 'purged', 'failed')),
    received_at           INTEGER NOT NULL,
    lease_until           INTEGER,
    attempts              INTEGER NOT NULL DEFAULT 0,
    delivered_at          INTEGER,
    recipient_receipt     BLOB,
    content_sha256        TEXT,
    failure_class         TEXT,
    failure_notice_id     TEXT,
    failed_at             INTEGER,
    CHECK (body IS NULL OR body_file IS NULL),
    UNIQUE (sender_ptype, sender_id, message_id)
);
INSERT INTO messages_v2 (seq, sender_ptype, sender_id, recipient_ptype, recipient_id, mpc,
    message_id, conversation_id, service, action, content_type, size, body, body_file,
    receipt_content_type, receipt, state, received_at, lease_until, attempts, delivered_at,
    recipient_receipt)
SELECT seq, sender_ptype, sender_id, recipient_ptype, recipient_id, mpc,
    message_id, conversation_id, service, action, content_type, size, body, body_file,
    receipt_content_type, receipt, state, received_at, lease_until, attempts, delivered_at,
    recipient_receipt
FROM messages ORDER BY seq;
DELETE FROM sqlite_sequence WHERE name = 'messages_v2';
INSERT INTO sqlite_sequence (name, seq) SELECT 'messages_v2', seq FROM sqlite_sequence
    WHERE name = 'messages';
DROP TABLE messages;
ALTER TABLE messages_v2 RENAME TO messages;

CREATE INDEX messages_claim ON messages(mpc, seq) WHERE state IN ('waiting', 'leased');
CREATE INDEX messages_pending_recipient ON messages(recipient_ptype, recipient_id)
    WHERE state IN ('waiting', 'leased');
CREATE INDEX messages_recipient ON messages(recipient_ptype, recipient_id, message_id);
CREATE INDEX messages_message_id ON messages(message_id);
CREATE INDEX messages_pending_age ON messages(received_at) WHERE state IN ('waiting', 'leased');
CREATE INDEX messages_delivered_age ON messages(delivered_at) WHERE state = 'delivered';
CREATE INDEX messages_body_file ON messages(body_file) WHERE body_file IS NOT NULL;
-- the sender's account quota: undelivered bytes per sending party (covering)
CREATE INDEX messages_pending_sender ON messages(sender_ptype, sender_id, size)
    WHERE state IN ('waiting', 'leased');
-- prune_records
CREATE INDEX messages_finished_age ON messages(received_at)
    WHERE state IN ('purged', 'expired', 'failed');
";

/// Room a stored message needs besides its body: its row, the receipt and WAL pages.
const ROW_SLACK: u64 = 64 * 1024;
/// Records removed per transaction by [`Store::prune_records`], so that a large backlog does
/// not hold the write lock for long.
const PRUNE_BATCH: i64 = 5000;

/// The embedded [`Store`]. `Send + Sync`; share it behind an `Arc`.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The store's folder (the database).
    dir: PathBuf,
    payloads: PathBuf,
    inline_max: usize,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("payloads", &self.payloads)
            .field("inline_max", &self.inline_max)
            .finish_non_exhaustive()
    }
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

    fn payload_path(&self, name: &str) -> StoreResult<PathBuf> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(StoreError::Backend(format!(
                "bad payload file name {name:?} in the database"
            )));
        }
        Ok(self.payloads.join(name))
    }

    /// Write `body` to a new payload file, synced and renamed into place, the directory synced.
    /// Returns the file's name.
    fn write_payload(&self, body: &[u8]) -> StoreResult<String> {
        let mut attempts = 0;
        loop {
            let name = payload_name();
            let tmp = self.payloads.join(format!("{name}{TMP_EXT}"));
            let fin = self.payloads.join(format!("{name}{BODY_EXT}"));
            let mut file = match new_private_file(&tmp) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 3 => {
                    attempts += 1;
                    continue;
                }
                Err(e) => return Err(io_err(format!("create {}", tmp.display()), e)),
            };
            let written = file
                .write_all(body)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_err(format!("write {}", tmp.display()), e))
                .and_then(|()| {
                    drop(file);
                    fs::rename(&tmp, &fin)
                        .map_err(|e| io_err(format!("rename {}", tmp.display()), e))
                })
                .and_then(|()| sync_dir(&self.payloads));
            return match written {
                Ok(()) => Ok(format!("{name}{BODY_EXT}")),
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    let _ = fs::remove_file(&fin);
                    Err(e)
                }
            };
        }
    }

    /// Refuse (`LowSpace`) a body of `size` bytes that would leave less than `reserve` bytes
    /// free. An inline body goes through the WAL into the database (twice its size at worst,
    /// less the database's free pages); a file body needs its size on the payloads' file system.
    fn check_space(&self, size: u64, inline: bool, reserve: u64) -> StoreResult<()> {
        if reserve == 0 {
            return Ok(());
        }
        let (available, needed) = if inline {
            let reusable = self.read(db_free_bytes)?;
            (
                fs_available(&self.dir)?.saturating_add(reusable),
                size.saturating_mul(2).saturating_add(ROW_SLACK),
            )
        } else {
            (
                fs_available(&self.payloads)?,
                size.saturating_add(ROW_SLACK),
            )
        };
        if available < needed.saturating_add(reserve) {
            return Err(StoreError::LowSpace {
                available,
                needed,
                reserve,
            });
        }
        Ok(())
    }

    fn remove_payload(&self, name: &str) {
        if let Ok(path) = self.payload_path(name) {
            // A failure leaves an orphan for the sweep in `purge`.
            let _ = fs::remove_file(path);
        }
    }

    /// Remove payload files that no row names and that are older than [`ORPHAN_GRACE`]
    /// (crash leftovers). Best effort.
    fn sweep_orphans(&self) -> StoreResult<()> {
        let Some(cutoff) = SystemTime::now().checked_sub(ORPHAN_GRACE) else {
            return Ok(());
        };
        let entries = fs::read_dir(&self.payloads)
            .map_err(|e| io_err(format!("read {}", self.payloads.display()), e))?;
        let mut old = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !(name.ends_with(BODY_EXT) || name.ends_with(TMP_EXT)) {
                continue;
            }
            let modified = entry.metadata().and_then(|m| m.modified());
            if matches!(modified, Ok(t) if t < cutoff) {
                old.push(name);
            }
        }
        if old.is_empty() {
            return Ok(());
        }
        let orphans = self.read(|tx| {
            let mut stmt = tx.prepare_cached("SELECT 1 FROM messages WHERE body_file = ?1")?;
            let mut orphans = Vec::new();
            for name in old {
                if name.ends_with(TMP_EXT) || !stmt.exists([&name])? {
                    orphans.push(name);
                }
            }
            Ok(orphans)
        })?;
        for name in orphans {
            self.remove_payload(&name);
        }
        Ok(())
    }
}

// --- schema

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "the database has schema version {version}; this program knows up to {SCHEMA_VERSION}"
        )));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    for sql in &MIGRATIONS[version.max(0) as usize..] {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

// --- files

fn io_err(context: String, source: std::io::Error) -> StoreError {
    StoreError::Io { context, source }
}

fn create_private_dir(dir: &Path) -> StoreResult<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| io_err(format!("create {}", dir.display()), e))
}

fn new_private_file(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Create an empty database file readable by the owner only (SQLite gives its `-wal` and
/// `-shm` files the database file's permissions), unless it exists.
fn create_private_file(path: &Path) -> StoreResult<()> {
    match new_private_file(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(format!("create {}", path.display()), e)),
    }
}

/// Bytes an unprivileged process may still write on the file system of `path`.
fn fs_available(path: &Path) -> StoreResult<u64> {
    let st = rustix::fs::statvfs(path)
        .map_err(|e| io_err(format!("statvfs {}", path.display()), e.into()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Bytes of free pages inside the database (reused before the file grows).
fn db_free_bytes(tx: &Transaction<'_>) -> StoreResult<u64> {
    let pages: i64 = tx.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = tx.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(to_u64(pages).saturating_mul(to_u64(size)))
}

fn sync_dir(dir: &Path) -> StoreResult<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(format!("sync {}", dir.display()), e))
}

/// A name no other payload file has: time, process and a per-process counter.
fn payload_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{n:x}", std::process::id())
}

// --- conversions

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            if f.code == rusqlite::ErrorCode::ConstraintViolation
                && (f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
            {
                return StoreError::Conflict(e.to_string());
            }
        }
        StoreError::Backend(e.to_string())
    }
}

fn unknown_value(what: &str, v: &str) -> FromSqlError {
    FromSqlError::Other(format!("unknown {what} {v:?}").into())
}

impl FromSql for AccountStatus {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        match v.as_str()? {
            "active" => Ok(AccountStatus::Active),
            "suspended" => Ok(AccountStatus::Suspended),
            other => Err(unknown_value("account status", other)),
        }
    }
}

impl ToSql for AccountStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for PartyStatus {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        match v.as_str()? {
            "active" => Ok(PartyStatus::Active),
            "revoked" => Ok(PartyStatus::Revoked),
            other => Err(unknown_value("party status", other)),
        }
    }
}

impl ToSql for PartyStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn to_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

// --- rows

const SUBSCRIBER_COLS: &str =
    "id, organisation, contact, contract_ref, plan, status, created_at FROM subscribers";

fn subscriber_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Subscriber> {
    Ok(Subscriber {
        id: r.get(0)?,
        organisation: r.get(1)?,
        contact: r.get(2)?,
        contract_ref: r.get(3)?,
        plan: r.get(4)?,
        status: r.get(5)?,
        created_at: r.get(6)?,
    })
}

const PARTY_COLS: &str = "p.ptype, p.pid, p.subscriber_id, p.status, s.status, p.mpc, \
     p.created_at, p.revoked_at, p.max_document_bytes \
     FROM parties p JOIN subscribers s ON s.id = p.subscriber_id";

fn party_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Party> {
    Ok(Party {
        key: PartyKey {
            ptype: r.get(0)?,
            id: r.get(1)?,
        },
        subscriber_id: r.get(2)?,
        status: r.get(3)?,
        account_status: r.get(4)?,
        mpc: r.get(5)?,
        created_at: r.get(6)?,
        revoked_at: r.get(7)?,
        max_document_bytes: to_u64(r.get(8)?),
    })
}

fn get_party(tx: &Transaction<'_>, key: &PartyKey) -> StoreResult<Option<Party>> {
    let sql = format!("SELECT {PARTY_COLS} WHERE p.ptype = ?1 AND p.pid = ?2");
    Ok(tx
        .prepare_cached(&sql)?
        .query_row(params![key.ptype, key.id], party_row)
        .optional()?)
}

/// The party's row id and status.
fn party_id(tx: &Transaction<'_>, key: &PartyKey) -> StoreResult<Option<(i64, PartyStatus)>> {
    Ok(tx
        .prepare_cached("SELECT id, status FROM parties WHERE ptype = ?1 AND pid = ?2")?
        .query_row(params![key.ptype, key.id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// The subscriber of a party, `None` when the party is not registered.
fn party_subscriber(tx: &Transaction<'_>, key: &PartyKey) -> StoreResult<Option<i64>> {
    Ok(tx
        .prepare_cached("SELECT subscriber_id FROM parties WHERE ptype = ?1 AND pid = ?2")?
        .query_row(params![key.ptype, key.id], |r| r.get(0))
        .optional()?)
}

fn add_usage(
    tx: &Transaction<'_>,
    party: &PartyKey,
    kind: &str,
    at: Unix,
    bytes: i64,
    seq: i64,
) -> StoreResult<()> {
    let subscriber = party_subscriber(tx, party)?;
    tx.prepare_cached(
        "INSERT INTO usage_ledger (subscriber_id, party_ptype, party_id, kind, at, bytes, \
         message_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        subscriber,
        party.ptype,
        party.id,
        kind,
        at,
        bytes,
        seq
    ])?;
    Ok(())
}

/// A limit as SQLite stores it (INTEGER is signed).
fn limit_to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Whether `m` may be stored: `Some(Duplicate)` when its sender already sent it (the first
/// receipt), `None` when it may be stored, or the refusal. Run before the body is written (in a
/// read transaction) and again in the write transaction that inserts it.
fn admit(
    tx: &Transaction<'_>,
    m: &NewMessage,
    limits: &AcceptLimits,
) -> StoreResult<Option<Accepted>> {
    let first = tx
        .prepare_cached(
            "SELECT recipient_ptype, recipient_id, content_sha256, receipt_content_type, receipt \
             FROM messages WHERE sender_ptype = ?1 AND sender_id = ?2 AND message_id = ?3",
        )?
        .query_row(params![m.sender.ptype, m.sender.id, m.message_id], |r| {
            Ok((
                PartyKey {
                    ptype: r.get(0)?,
                    id: r.get(1)?,
                },
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        })
        .optional()?;
    if let Some((recipient, content, receipt_content_type, receipt)) = first {
        // Rows from before schema version 2 have no fingerprint: the recipient must match.
        let same = recipient == m.recipient
            && match content.as_deref() {
                None => true,
                Some(c) => c.eq_ignore_ascii_case(&m.content_sha256),
            };
        if !same {
            return Err(StoreError::Refused(Refused::MessageIdReused {
                first_recipient: recipient,
            }));
        }
        return Ok(Some(Accepted::Duplicate {
            receipt_content_type,
            receipt,
        }));
    }
    // A MessageId another sender already used for this recipient: a receipt names only the
    // MessageId, so it could not tell the two apart.
    let taken: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE recipient_ptype = ?1 \
             AND recipient_id = ?2 AND message_id = ?3)",
        )?
        .query_row(
            params![m.recipient.ptype, m.recipient.id, m.message_id],
            |r| r.get(0),
        )?;
    if taken {
        return Err(StoreError::Conflict(format!(
            "MessageId {} is already used by another sender for this recipient",
            m.message_id
        )));
    }
    let size = m.body.len() as u64;
    let max_document_bytes: i64 = tx
        .prepare_cached("SELECT max_document_bytes FROM parties WHERE ptype = ?1 AND pid = ?2")?
        .query_row(params![m.recipient.ptype, m.recipient.id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("recipient party {}", m.recipient)))?;
    let max_document_bytes = to_u64(max_document_bytes);
    let max_message_bytes = coordination::message_limit_for(max_document_bytes);
    if size > max_message_bytes {
        return Err(StoreError::Refused(Refused::RecipientLimit {
            recipient: m.recipient.clone(),
            size,
            max_message_bytes,
            max_document_bytes,
        }));
    }
    match &m.refuses {
        Some(r) => {
            refused_row(tx, m, r)?;
        }
        None if limits.max_queued_bytes_per_subscriber > 0 => {
            let subscriber = party_subscriber(tx, &m.sender)?
                .ok_or_else(|| StoreError::NotFound(format!("sender party {}", m.sender)))?;
            let queued: i64 = tx
                .prepare_cached(
                    "SELECT COALESCE(SUM(m.size), 0) FROM parties p JOIN messages m \
                     ON m.sender_ptype = p.ptype AND m.sender_id = p.pid \
                     AND m.state IN ('waiting', 'leased') WHERE p.subscriber_id = ?1",
                )?
                .query_row([subscriber], |r| r.get(0))?;
            let queued = to_u64(queued);
            let quota = limits.max_queued_bytes_per_subscriber;
            if queued.saturating_add(size) > quota {
                return Err(StoreError::Refused(Refused::QuotaExceeded {
                    subscriber_id: subscriber,
                    queued,
                    size,
                    quota,
                }));
            }
        }
        None => {}
    }
    Ok(None)
}

/// The row a refusal notice `m` refuses (`seq`, state): a message with that id sent by the
/// notice's recipient to the notice's sender, not yet refused.
fn refused_row(tx: &Transaction<'_>, m: &NewMessage, r: &RefusalOf) -> StoreResult<(i64, String)> {
    let row = tx
        .prepare_cached(
            "SELECT seq, sender_ptype, sender_id, state, failure_notice_id FROM messages \
             WHERE recipient_ptype = ?1 AND recipient_id = ?2 AND message_id = ?3",
        )?
        .query_row(params![m.sender.ptype, m.sender.id, r.message_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                PartyKey {
                    ptype: r.get(1)?,
                    id: r.get(2)?,
                },
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })
        .optional()?;
    let Some((seq, sender, state, notice)) = row else {
        return Err(StoreError::Refused(Refused::RefusedMessageUnknown {
            message_id: r.message_id.clone(),
        }));
    };
    if sender != m.recipient {
        return Err(StoreError::Refused(Refused::RefusedMessageOtherSender {
            message_id: r.message_id.clone(),
            sender,
        }));
    }
    if let Some(notice_id) = notice {
        return Err(StoreError::Refused(Refused::AlreadyRefused {
            message_id: r.message_id.clone(),
            notice_id,
        }));
    }
    Ok((seq, state))
}

/// Record the refusal `m` (a notice) on the message it refuses: a message not yet delivered
/// becomes `failed` and loses its body (returned: a payload file to remove after the commit);
/// a delivered one keeps its state.
fn mark_refused(
    tx: &Transaction<'_>,
    m: &NewMessage,
    r: &RefusalOf,
) -> StoreResult<(NoticeEffect, Option<String>)> {
    let (seq, state) = refused_row(tx, m, r)?;
    if matches!(state.as_str(), "delivered" | "purged") {
        tx.prepare_cached(
            "UPDATE messages SET failure_class = ?2, failure_notice_id = ?3, failed_at = ?4 \
             WHERE seq = ?1",
        )?
        .execute(params![seq, r.class, m.message_id, m.received_at])?;
        return Ok((NoticeEffect::AfterDelivery, None));
    }
    let file: Option<String> = tx
        .prepare_cached("SELECT body_file FROM messages WHERE seq = ?1")?
        .query_row([seq], |r| r.get(0))?;
    tx.prepare_cached(
        "UPDATE messages SET state = 'failed', body = NULL, body_file = NULL, \
         lease_until = NULL, failure_class = ?2, failure_notice_id = ?3, failed_at = ?4 \
         WHERE seq = ?1",
    )?
    .execute(params![seq, r.class, m.message_id, m.received_at])?;
    Ok((NoticeEffect::Failed, file))
}

/// A party's document limit: at least 1 byte, and what SQLite's INTEGER holds.
fn check_document_limit(n: u64) -> StoreResult<()> {
    if n == 0 || i64::try_from(n).is_err() {
        return Err(StoreError::Invalid(format!(
            "max_document_bytes = {n}: expected 1 to {}",
            i64::MAX
        )));
    }
    Ok(())
}

/// The fingerprint as stored: lower-case hex SHA-256 (the trait's form). Also accepted: upper
/// case and colon-separated pairs (`AB:CD:…`, what `Certificate::sha256_fingerprint` gives).
fn normalize_fingerprint(fingerprint: &str) -> StoreResult<String> {
    let hex: String = fingerprint
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(StoreError::Invalid(
            "a certificate fingerprint is the hex SHA-256 of its DER".into(),
        ))
    }
}

impl Store for SqliteStore {
    fn create_subscriber(&self, s: &NewSubscriber, now: Unix) -> StoreResult<Subscriber> {
        if s.organisation.trim().is_empty() {
            return Err(StoreError::Invalid("organisation is empty".into()));
        }
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO subscribers (organisation, contact, contract_ref, plan, status, \
                 created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                s.organisation,
                s.contact,
                s.contract_ref,
                s.plan,
                AccountStatus::Active,
                now
            ])?;
            Ok(Subscriber {
                id: tx.last_insert_rowid(),
                organisation: s.organisation.clone(),
                contact: s.contact.clone(),
                contract_ref: s.contract_ref.clone(),
                plan: s.plan.clone(),
                status: AccountStatus::Active,
                created_at: now,
            })
        })
    }

    fn subscriber(&self, id: i64) -> StoreResult<Option<Subscriber>> {
        self.read(|tx| {
            let sql = format!("SELECT {SUBSCRIBER_COLS} WHERE id = ?1");
            Ok(tx
                .prepare_cached(&sql)?
                .query_row([id], subscriber_row)
                .optional()?)
        })
    }

    fn subscribers(&self) -> StoreResult<Vec<Subscriber>> {
        self.read(|tx| {
            let sql = format!("SELECT {SUBSCRIBER_COLS} ORDER BY id");
            let mut stmt = tx.prepare_cached(&sql)?;
            let rows = stmt.query_map([], subscriber_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn set_account_status(&self, id: i64, status: AccountStatus) -> StoreResult<()> {
        self.write(|tx| {
            let n = tx
                .prepare_cached("UPDATE subscribers SET status = ?2 WHERE id = ?1")?
                .execute(params![id, status])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("subscriber {id}")));
            }
            Ok(())
        })
    }

    fn register_party(&self, p: &NewParty<'_>, now: Unix) -> StoreResult<Party> {
        let NewParty {
            subscriber_id,
            key,
            mpc,
            cert_der,
            fingerprint,
            max_document_bytes,
        } = *p;
        if key.id.is_empty() {
            return Err(StoreError::Invalid("party id is empty".into()));
        }
        if mpc.is_empty() {
            return Err(StoreError::Invalid("MPC is empty".into()));
        }
        if cert_der.is_empty() {
            return Err(StoreError::Invalid("certificate is empty".into()));
        }
        check_document_limit(max_document_bytes)?;
        let fingerprint = normalize_fingerprint(fingerprint)?;
        self.write(|tx| {
            let subscriber_exists = tx
                .prepare_cached("SELECT 1 FROM subscribers WHERE id = ?1")?
                .exists([subscriber_id])?;
            if !subscriber_exists {
                return Err(StoreError::NotFound(format!("subscriber {subscriber_id}")));
            }
            if let Some((_, status)) = party_id(tx, key)? {
                return Err(StoreError::Conflict(match status {
                    PartyStatus::Active => format!("party {key} exists"),
                    PartyStatus::Revoked => format!(
                        "party {key} exists and is revoked; `party reinstate` makes it active again"
                    ),
                }));
            }
            let mpc_taken = tx
                .prepare_cached("SELECT 1 FROM parties WHERE mpc = ?1")?
                .exists([mpc])?;
            if mpc_taken {
                return Err(StoreError::Conflict(format!("MPC {mpc:?} is in use")));
            }
            tx.prepare_cached(
                "INSERT INTO parties (subscriber_id, ptype, pid, mpc, status, created_at, \
                 max_document_bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                subscriber_id,
                key.ptype,
                key.id,
                mpc,
                PartyStatus::Active,
                now,
                limit_to_i64(max_document_bytes)
            ])?;
            let party = tx.last_insert_rowid();
            tx.prepare_cached(
                "INSERT INTO certificates (party_id, der, fingerprint, registered_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![party, cert_der, fingerprint, now])?;
            get_party(tx, key)?.ok_or_else(|| StoreError::Backend(format!("party {key} vanished")))
        })
    }

    fn set_party_limit(&self, key: &PartyKey, max_document_bytes: u64) -> StoreResult<()> {
        check_document_limit(max_document_bytes)?;
        self.write(|tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE parties SET max_document_bytes = ?3 WHERE ptype = ?1 AND pid = ?2",
                )?
                .execute(params![key.ptype, key.id, limit_to_i64(max_document_bytes)])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("party {key}")));
            }
            Ok(())
        })
    }

    fn replace_certificate(
        &self,
        key: &PartyKey,
        cert_der: &[u8],
        fingerprint: &str,
        overlap_until: Unix,
        now: Unix,
    ) -> StoreResult<()> {
        if cert_der.is_empty() {
            return Err(StoreError::Invalid("certificate is empty".into()));
        }
        let fingerprint = normalize_fingerprint(fingerprint)?;
        if overlap_until < now {
            return Err(StoreError::Invalid(
                "the overlap must not end before now".into(),
            ));
        }
        self.write(|tx| {
            let (party, status) =
                party_id(tx, key)?.ok_or_else(|| StoreError::NotFound(format!("party {key}")))?;
            if status == PartyStatus::Revoked {
                return Err(StoreError::Conflict(format!("party {key} is revoked")));
            }
            // Current certificates are retired at the end of the overlap; certificates still in
            // an earlier, longer overlap are cut short to it too (so an emergency replacement
            // with `overlap_until = now` ends every older certificate).
            tx.prepare_cached(
                "UPDATE certificates SET retired_at = ?2 \
                 WHERE party_id = ?1 AND (retired_at IS NULL OR retired_at > ?2)",
            )?
            .execute(params![party, overlap_until])?;
            tx.prepare_cached(
                "INSERT INTO certificates (party_id, der, fingerprint, registered_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![party, cert_der, fingerprint, now])?;
            Ok(())
        })
    }

    fn revoke_party(&self, key: &PartyKey, now: Unix) -> StoreResult<()> {
        self.write(|tx| {
            let (party, status) =
                party_id(tx, key)?.ok_or_else(|| StoreError::NotFound(format!("party {key}")))?;
            // Revoking again keeps the first revocation time.
            if status == PartyStatus::Active {
                tx.prepare_cached("UPDATE parties SET status = ?2, revoked_at = ?3 WHERE id = ?1")?
                    .execute(params![party, PartyStatus::Revoked, now])?;
            }
            Ok(())
        })
    }

    fn reinstate_party(
        &self,
        key: &PartyKey,
        new_cert: Option<(&[u8], &str)>,
        now: Unix,
    ) -> StoreResult<()> {
        let new_cert = match new_cert {
            Some(([], _)) => return Err(StoreError::Invalid("certificate is empty".into())),
            Some((der, fp)) => Some((der, normalize_fingerprint(fp)?)),
            None => None,
        };
        self.write(|tx| {
            let (party, status) =
                party_id(tx, key)?.ok_or_else(|| StoreError::NotFound(format!("party {key}")))?;
            if status == PartyStatus::Active {
                return Err(StoreError::Conflict(format!("party {key} is not revoked")));
            }
            tx.prepare_cached("UPDATE parties SET status = ?2, revoked_at = NULL WHERE id = ?1")?
                .execute(params![party, PartyStatus::Active])?;
            if let Some((der, fingerprint)) = &new_cert {
                tx.prepare_cached(
                    "UPDATE certificates SET retired_at = ?2 \
                     WHERE party_id = ?1 AND (retired_at IS NULL OR retired_at > ?2)",
                )?
                .execute(params![party, now])?;
                tx.prepare_cached(
                    "INSERT INTO certificates (party_id, der, fingerprint, registered_at) \
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![party, der, fingerprint, now])?;
            }
            Ok(())
        })
    }

    fn party(&self, key: &PartyKey) -> StoreResult<Option<Party>> {
        self.read(|tx| get_party(tx, key))
    }

    fn party_by_mpc(&self, mpc: &str) -> StoreResult<Option<Party>> {
        self.read(|tx| {
            let sql = format!("SELECT {PARTY_COLS} WHERE p.mpc = ?1");
            Ok(tx
                .prepare_cached(&sql)?
                .query_row([mpc], party_row)
                .optional()?)
        })
    }

    fn parties_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Vec<Party>> {
        let fingerprint = normalize_fingerprint(fingerprint)?;
        self.read(|tx| {
            let sql = format!(
                "SELECT {PARTY_COLS} WHERE p.id IN \
                 (SELECT party_id FROM certificates WHERE fingerprint = ?1) ORDER BY p.id"
            );
            let mut stmt = tx.prepare_cached(&sql)?;
            let rows = stmt.query_map([fingerprint], party_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn certificates(&self, key: &PartyKey) -> StoreResult<Vec<PartyCert>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT c.der, c.fingerprint, c.registered_at, c.retired_at \
                 FROM certificates c JOIN parties p ON p.id = c.party_id \
                 WHERE p.ptype = ?1 AND p.pid = ?2 ORDER BY c.id DESC",
            )?;
            let rows = stmt.query_map(params![key.ptype, key.id], |r| {
                Ok(PartyCert {
                    der: r.get(0)?,
                    fingerprint: r.get(1)?,
                    registered_at: r.get(2)?,
                    retired_at: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn parties(&self, subscriber_id: Option<i64>) -> StoreResult<Vec<Party>> {
        self.read(|tx| {
            let sql = format!(
                "SELECT {PARTY_COLS} WHERE ?1 IS NULL OR p.subscriber_id = ?1 ORDER BY p.id"
            );
            let mut stmt = tx.prepare_cached(&sql)?;
            let rows = stmt.query_map([subscriber_id], party_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn accept(&self, m: &NewMessage, limits: &AcceptLimits) -> StoreResult<Accepted> {
        // Duplicates and refusals are looked for first, so that nothing is written for them (a
        // resent big message is not written again); then the free space is checked and a body
        // for a file is written and synced, outside the lock.
        if let Some(duplicate) = self.read(|tx| admit(tx, m, limits))? {
            return Ok(duplicate);
        }
        let to_file = m.body.len() > self.inline_max;
        if m.refuses.is_none() {
            self.check_space(m.body.len() as u64, !to_file, limits.min_free_bytes)?;
        }
        let file = if to_file {
            Some(self.write_payload(&m.body)?)
        } else {
            None
        };
        let mut freed = None;
        let result = self.write(|tx| {
            // Checked again inside the write transaction: a concurrent accept (this process or
            // another) may have committed meanwhile.
            if let Some(duplicate) = admit(tx, m, limits)? {
                return Ok(duplicate);
            }
            let inline: Option<&[u8]> = if file.is_none() { Some(&m.body) } else { None };
            let size = to_i64(m.body.len());
            tx.prepare_cached(
                "INSERT INTO messages (sender_ptype, sender_id, recipient_ptype, recipient_id, \
                 mpc, message_id, conversation_id, service, action, content_type, size, body, \
                 body_file, receipt_content_type, receipt, state, received_at, content_sha256) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                 'waiting', ?16, ?17)",
            )?
            .execute(params![
                m.sender.ptype,
                m.sender.id,
                m.recipient.ptype,
                m.recipient.id,
                m.mpc,
                m.message_id,
                m.conversation_id,
                m.service,
                m.action,
                m.content_type,
                size,
                inline,
                file,
                m.receipt_content_type,
                m.receipt,
                m.received_at,
                m.content_sha256
            ])?;
            let seq = tx.last_insert_rowid();
            add_usage(tx, &m.sender, "sent", m.received_at, size, seq)?;
            match &m.refuses {
                Some(r) => {
                    let (effect, file) = mark_refused(tx, m, r)?;
                    freed = file;
                    Ok(Accepted::NoticeStored(effect))
                }
                None => Ok(Accepted::Stored),
            }
        });
        let stored = matches!(result, Ok(Accepted::Stored | Accepted::NoticeStored(_)));
        if let Some(name) = &file {
            if !stored {
                self.remove_payload(name);
            }
        }
        if let (true, Some(name)) = (stored, &freed) {
            self.remove_payload(name);
        }
        result
    }

    fn claim_next(&self, mpc: &str, now: Unix, lease_secs: i64) -> StoreResult<Option<Claimed>> {
        if lease_secs < 0 {
            return Err(StoreError::Invalid("negative lease".into()));
        }
        self.write_unsynced(|tx| {
            let row = tx
                .prepare_cached(
                    "SELECT seq, message_id, sender_ptype, sender_id, recipient_ptype, \
                     recipient_id, content_type, body, body_file, attempts FROM messages \
                     WHERE mpc = ?1 AND state IN ('waiting', 'leased') \
                     AND (state = 'waiting' OR lease_until <= ?2) ORDER BY seq LIMIT 1",
                )?
                .query_row(params![mpc, now], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        Claimed {
                            message_id: r.get(1)?,
                            sender: PartyKey {
                                ptype: r.get(2)?,
                                id: r.get(3)?,
                            },
                            recipient: PartyKey {
                                ptype: r.get(4)?,
                                id: r.get(5)?,
                            },
                            content_type: r.get(6)?,
                            body: r.get::<_, Option<Vec<u8>>>(7)?.unwrap_or_default(),
                            attempt: 0,
                        },
                        r.get::<_, Option<String>>(8)?,
                        r.get::<_, i64>(9)?,
                    ))
                })
                .optional()?;
            let Some((seq, mut claimed, file, attempts)) = row else {
                return Ok(None);
            };
            if let Some(name) = file {
                // Read inside the transaction: a purge cannot remove the file meanwhile.
                let path = self.payload_path(&name)?;
                claimed.body =
                    fs::read(&path).map_err(|e| io_err(format!("read {}", path.display()), e))?;
            }
            let attempt = attempts.saturating_add(1);
            tx.prepare_cached(
                "UPDATE messages SET state = 'leased', lease_until = ?2, attempts = ?3 \
                 WHERE seq = ?1",
            )?
            .execute(params![seq, now.saturating_add(lease_secs), attempt])?;
            claimed.attempt = to_u32(attempt);
            Ok(Some(claimed))
        })
    }

    fn mark_delivered(
        &self,
        recipient: &PartyKey,
        message_id: &str,
        receipt: &[u8],
        now: Unix,
    ) -> StoreResult<Delivery> {
        self.write_unsynced(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, state, size FROM messages \
                 WHERE recipient_ptype = ?1 AND recipient_id = ?2 AND message_id = ?3",
            )?;
            let found = stmt
                .query_map(params![recipient.ptype, recipient.id, message_id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            let mut delivered = 0;
            let mut already = false;
            for (seq, state, size) in found {
                match state.as_str() {
                    // (One row at most: `accept` refuses a MessageId another sender already
                    // used for the same recipient.)
                    "waiting" | "leased" => {
                        tx.prepare_cached(
                            "UPDATE messages SET state = 'delivered', delivered_at = ?2, \
                             lease_until = NULL, recipient_receipt = ?3 WHERE seq = ?1",
                        )?
                        .execute(params![seq, now, receipt])?;
                        add_usage(tx, recipient, "received", now, size, seq)?;
                        delivered += 1;
                    }
                    "delivered" | "purged" => already = true,
                    // Expired before the receipt came: not delivered.
                    _ => {}
                }
            }
            Ok(if delivered > 0 {
                Delivery::Delivered
            } else if already {
                Delivery::AlreadyDelivered
            } else {
                Delivery::Unknown
            })
        })
    }

    fn purge(&self, delivered_before: Unix, undelivered_before: Unix) -> StoreResult<Purged> {
        let (purged, files) = self.write(|tx| {
            let mut files = Vec::new();
            {
                let mut stmt = tx.prepare_cached(
                    "SELECT body_file FROM messages WHERE state = 'delivered' \
                     AND delivered_at < ?1 AND body_file IS NOT NULL",
                )?;
                for f in stmt.query_map([delivered_before], |r| r.get::<_, String>(0))? {
                    files.push(f?);
                }
                let mut stmt = tx.prepare_cached(
                    "SELECT body_file FROM messages WHERE state IN ('waiting', 'leased') \
                     AND received_at < ?1 AND body_file IS NOT NULL",
                )?;
                for f in stmt.query_map([undelivered_before], |r| r.get::<_, String>(0))? {
                    files.push(f?);
                }
            }
            let delivered = tx
                .prepare_cached(
                    "UPDATE messages SET state = 'purged', body = NULL, body_file = NULL \
                     WHERE state = 'delivered' AND delivered_at < ?1",
                )?
                .execute([delivered_before])?;
            let expired = tx
                .prepare_cached(
                    "UPDATE messages SET state = 'expired', body = NULL, body_file = NULL, \
                     lease_until = NULL \
                     WHERE state IN ('waiting', 'leased') AND received_at < ?1",
                )?
                .execute([undelivered_before])?;
            Ok((
                Purged {
                    delivered: delivered as u64,
                    expired: expired as u64,
                },
                files,
            ))
        })?;
        for name in &files {
            self.remove_payload(name);
        }
        // Best effort: the purge itself is committed.
        let _ = self.sweep_orphans();
        Ok(purged)
    }

    fn prune_records(&self, received_before: Unix) -> StoreResult<u64> {
        let mut total = 0u64;
        loop {
            let n = self.write(|tx| {
                Ok(tx
                    .prepare_cached(
                        "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages \
                         WHERE state IN ('purged', 'expired', 'failed') AND received_at < ?1 \
                         LIMIT ?2)",
                    )?
                    .execute(params![received_before, PRUNE_BATCH])?)
            })?;
            total += n as u64;
            if (n as i64) < PRUNE_BATCH {
                return Ok(total);
            }
        }
    }

    fn recipients_of(&self, message_id: &str) -> StoreResult<Vec<PartyKey>> {
        // Every recipient whose receipt for this id means something: a first receipt
        // (waiting, leased) or a repeated one (delivered, purged), so that `mark_delivered`
        // can answer `AlreadyDelivered` to the latter. Expired messages are left out.
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT DISTINCT recipient_ptype, recipient_id FROM messages \
                 WHERE message_id = ?1 AND state IN ('waiting', 'leased', 'delivered', 'purged') \
                 ORDER BY recipient_ptype, recipient_id",
            )?;
            let rows = stmt.query_map([message_id], |r| {
                Ok(PartyKey {
                    ptype: r.get(0)?,
                    id: r.get(1)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn queue_depths(&self) -> StoreResult<Vec<(PartyKey, u64)>> {
        self.read(|tx| {
            // Every registered party (0 when nothing waits, so gauges fall back to 0), and any
            // other recipient with messages waiting.
            let mut stmt = tx.prepare_cached(
                "SELECT ptype, pid, SUM(n) FROM ( \
                   SELECT ptype, pid, 0 AS n FROM parties \
                   UNION ALL \
                   SELECT recipient_ptype, recipient_id, COUNT(*) FROM messages \
                   WHERE state IN ('waiting', 'leased') GROUP BY recipient_ptype, recipient_id \
                 ) GROUP BY ptype, pid ORDER BY ptype, pid",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    PartyKey {
                        ptype: r.get(0)?,
                        id: r.get(1)?,
                    },
                    to_u64(r.get(2)?),
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn queued_bytes(&self) -> StoreResult<Vec<(i64, u64)>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT s.id, COALESCE(SUM(m.size), 0) FROM subscribers s \
                 LEFT JOIN parties p ON p.subscriber_id = s.id \
                 LEFT JOIN messages m ON m.sender_ptype = p.ptype AND m.sender_id = p.pid \
                   AND m.state IN ('waiting', 'leased') \
                 GROUP BY s.id ORDER BY s.id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, to_u64(r.get(1)?))))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn free_bytes(&self) -> StoreResult<Option<u64>> {
        fs_available(&self.payloads).map(Some)
    }

    fn messages(&self, party: Option<&PartyKey>, limit: u32) -> StoreResult<Vec<MessageRecord>> {
        const COLS: &str = "message_id, sender_ptype, sender_id, recipient_ptype, recipient_id, \
                            state, size, received_at, attempts, delivered_at, failure_class, \
                            failure_notice_id, failed_at FROM messages";
        fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRecord> {
            Ok(MessageRecord {
                message_id: r.get(0)?,
                sender: PartyKey {
                    ptype: r.get(1)?,
                    id: r.get(2)?,
                },
                recipient: PartyKey {
                    ptype: r.get(3)?,
                    id: r.get(4)?,
                },
                state: r.get(5)?,
                size: to_u64(r.get(6)?),
                received_at: r.get(7)?,
                attempts: to_u32(r.get(8)?),
                delivered_at: r.get(9)?,
                refusal: match (r.get(10)?, r.get(11)?, r.get(12)?) {
                    (Some(class), Some(notice_id), Some(at)) => Some(RefusalRecord {
                        class,
                        notice_id,
                        at,
                    }),
                    _ => None,
                },
            })
        }
        self.read(|tx| {
            let rows = match party {
                Some(key) => {
                    let sql = format!(
                        "SELECT {COLS} WHERE (sender_ptype = ?1 AND sender_id = ?2) \
                         OR (recipient_ptype = ?1 AND recipient_id = ?2) \
                         ORDER BY seq DESC LIMIT ?3"
                    );
                    let mut stmt = tx.prepare_cached(&sql)?;
                    let rows = stmt.query_map(params![key.ptype, key.id, limit], record)?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                }
                None => {
                    let sql = format!("SELECT {COLS} ORDER BY seq DESC LIMIT ?1");
                    let mut stmt = tx.prepare_cached(&sql)?;
                    let rows = stmt.query_map([limit], record)?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                }
            };
            Ok(rows)
        })
    }

    fn usage(&self, from: Unix, to: Unix) -> StoreResult<Vec<Usage>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT s.id, s.organisation, \
                   COUNT(CASE WHEN u.kind = 'sent' THEN 1 END), \
                   COALESCE(SUM(CASE WHEN u.kind = 'sent' THEN u.bytes END), 0), \
                   COUNT(CASE WHEN u.kind = 'received' THEN 1 END), \
                   COALESCE(SUM(CASE WHEN u.kind = 'received' THEN u.bytes END), 0) \
                 FROM subscribers s LEFT JOIN usage_ledger u \
                   ON u.subscriber_id = s.id AND u.at >= ?1 AND u.at < ?2 \
                 GROUP BY s.id ORDER BY s.id",
            )?;
            let rows = stmt.query_map(params![from, to], |r| {
                Ok(Usage {
                    subscriber_id: r.get(0)?,
                    organisation: r.get(1)?,
                    sent_messages: to_u64(r.get(2)?),
                    sent_bytes: to_u64(r.get(3)?),
                    received_messages: to_u64(r.get(4)?),
                    received_bytes: to_u64(r.get(5)?),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Barrier};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir().join(format!(
                "ls-store-{name}-{}-{nanos:x}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    impl SqliteStore {
        /// `register_party` with the default document limit.
        fn register(
            &self,
            subscriber_id: i64,
            key: &PartyKey,
            mpc: &str,
            cert_der: &[u8],
            fingerprint: &str,
            now: Unix,
        ) -> StoreResult<Party> {
            self.register_party(
                &NewParty {
                    subscriber_id,
                    key,
                    mpc,
                    cert_der,
                    fingerprint,
                    max_document_bytes: coordination::DEFAULT_MAX_DOCUMENT_BYTES,
                },
                now,
            )
        }
    }

    fn fp(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn subscriber(store: &SqliteStore, org: &str) -> Subscriber {
        store
            .create_subscriber(
                &NewSubscriber {
                    organisation: org.into(),
                    contact: format!("ops@{org}.example"),
                    contract_ref: "C-1".into(),
                    plan: "standard".into(),
                },
                1000,
            )
            .unwrap()
    }

    /// Subscribers "alpha" (party A, MPC "mpc-a") and "beta" (party B, MPC "mpc-b").
    fn setup(store: &SqliteStore) -> (PartyKey, PartyKey) {
        let a = PartyKey::new("urn:oasis:names:tc:ebcore:partyid-type:iso6523:0088", "A");
        let b = PartyKey::new("", "B");
        let sa = subscriber(store, "alpha");
        let sb = subscriber(store, "beta");
        store
            .register(sa.id, &a, "mpc-a", b"cert-a", &fp(1), 1000)
            .unwrap();
        store
            .register(sb.id, &b, "mpc-b", b"cert-b", &fp(2), 1000)
            .unwrap();
        (a, b)
    }

    fn msg(
        from: &PartyKey,
        to: &PartyKey,
        mpc: &str,
        id: &str,
        body: &[u8],
        at: Unix,
    ) -> NewMessage {
        NewMessage {
            sender: from.clone(),
            recipient: to.clone(),
            mpc: mpc.into(),
            message_id: id.into(),
            conversation_id: "conv".into(),
            service: "svc".into(),
            action: "act".into(),
            content_type: "multipart/related; boundary=x".into(),
            body: body.to_vec(),
            receipt_content_type: "application/soap+xml".into(),
            receipt: format!("receipt for {id}").into_bytes(),
            received_at: at,
            content_sha256: format!("{:064x}", body.len()),
            refuses: None,
        }
    }

    fn payload_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir.join(PAYLOAD_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn state_of(store: &SqliteStore, id: &str) -> String {
        store
            .messages(None, 10_000)
            .unwrap()
            .into_iter()
            .find(|r| r.message_id == id)
            .unwrap()
            .state
    }

    #[test]
    fn send_sync_and_object_safe() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SqliteStore>();
        let dir = TempDir::new("dyn");
        let _store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.0, 16).unwrap());
    }

    #[test]
    fn open_creates_layout_with_private_permissions() {
        let dir = TempDir::new("open");
        let store = SqliteStore::open(&dir.0.join("nested"), 16).unwrap();
        drop(store);
        let root = dir.0.join("nested");
        assert!(root.join(DB_FILE).is_file());
        assert!(root.join(PAYLOAD_DIR).is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&root), 0o700);
            assert_eq!(mode(&root.join(PAYLOAD_DIR)), 0o700);
            assert_eq!(mode(&root.join(DB_FILE)), 0o600);
        }
        let conn = Connection::open(root.join(DB_FILE)).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = TempDir::new("newer");
        drop(SqliteStore::open(&dir.0, 16).unwrap());
        let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = SqliteStore::open(&dir.0, 16).unwrap_err();
        assert!(matches!(err, StoreError::Backend(_)), "{err}");
    }

    #[test]
    fn subscriber_party_certificate_lifecycle() {
        let dir = TempDir::new("parties");
        let store = SqliteStore::open(&dir.0, 16).unwrap();
        let s = subscriber(&store, "alpha");
        assert_eq!(s.status, AccountStatus::Active);
        assert_eq!(
            store.subscriber(s.id).unwrap().unwrap().organisation,
            "alpha"
        );
        assert!(store.subscriber(s.id + 100).unwrap().is_none());
        let s2 = subscriber(&store, "beta");
        let all: Vec<i64> = store.subscribers().unwrap().iter().map(|s| s.id).collect();
        assert_eq!(all, vec![s.id, s2.id]);

        let key = PartyKey::new("t", "p1");
        let party = store
            .register(s.id, &key, "mpc-1", b"der-1", &fp(1), 2000)
            .unwrap();
        assert_eq!(party.key, key);
        assert_eq!(party.subscriber_id, s.id);
        assert_eq!(party.status, PartyStatus::Active);
        assert_eq!(party.account_status, AccountStatus::Active);
        assert_eq!(party.mpc, "mpc-1");
        assert_eq!(party.created_at, 2000);
        assert!(party.is_usable());

        // Conflicts and unknown subscriber.
        let e = store.register(s.id, &key, "mpc-x", b"d", &fp(9), 2000);
        assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
        let e = store.register(
            s2.id,
            &PartyKey::new("t", "p2"),
            "mpc-1",
            b"d",
            &fp(9),
            2000,
        );
        assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
        let e = store.register(999, &PartyKey::new("t", "p3"), "mpc-3", b"d", &fp(9), 2000);
        assert!(matches!(e, Err(StoreError::NotFound(_))), "{e:?}");
        let e = store.register(s.id, &PartyKey::new("t", "p4"), "mpc-4", b"d", "ABC", 2000);
        assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
        // Same id with another type is another party.
        store
            .register(
                s2.id,
                &PartyKey::new("", "p1"),
                "mpc-2",
                b"der-2",
                &fp(2),
                2000,
            )
            .unwrap();

        assert_eq!(store.party_by_mpc("mpc-1").unwrap().unwrap().key, key);
        assert!(store.party_by_mpc("nope").unwrap().is_none());
        assert_eq!(store.parties(None).unwrap().len(), 2);
        assert_eq!(store.parties(Some(s.id)).unwrap().len(), 1);
        assert_eq!(
            store.parties(Some(s2.id)).unwrap()[0].key,
            PartyKey::new("", "p1")
        );

        // Replace with an overlap until 3000, then an emergency replacement at 2600.
        store
            .replace_certificate(&key, b"der-1b", &fp(3), 3000, 2500)
            .unwrap();
        let certs = store.certificates(&key).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].der, b"der-1b");
        assert_eq!(certs[0].fingerprint, fp(3));
        assert_eq!(certs[0].registered_at, 2500);
        assert_eq!(certs[0].retired_at, None);
        assert_eq!(certs[1].der, b"der-1");
        assert_eq!(certs[1].retired_at, Some(3000));
        assert!(certs[1].is_current(2999));
        assert!(!certs[1].is_current(3000));
        store
            .replace_certificate(&key, b"der-1c", &fp(4), 2600, 2600)
            .unwrap();
        let certs = store.certificates(&key).unwrap();
        let retired: Vec<Option<Unix>> = certs.iter().map(|c| c.retired_at).collect();
        assert_eq!(retired, vec![None, Some(2600), Some(2600)]);
        let e = store.replace_certificate(&key, b"d", &fp(5), 100, 2600);
        assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
        let e = store.replace_certificate(&PartyKey::new("t", "zz"), b"d", &fp(5), 3000, 2600);
        assert!(matches!(e, Err(StoreError::NotFound(_))), "{e:?}");
        assert!(store
            .certificates(&PartyKey::new("t", "zz"))
            .unwrap()
            .is_empty());

        // Fingerprints in the `AB:CD:…` form are stored lower-case, plain hex.
        let colons = PartyKey::new("t", "colons");
        let upper = ["AB"; 32].join(":");
        store
            .register(s2.id, &colons, "mpc-c", b"der-c", &upper, 2600)
            .unwrap();
        assert_eq!(
            store.certificates(&colons).unwrap()[0].fingerprint,
            "ab".repeat(32)
        );
        assert_eq!(store.parties_by_fingerprint(&upper).unwrap()[0].key, colons);
        assert_eq!(
            store.parties_by_fingerprint(&"ab".repeat(32)).unwrap()[0].key,
            colons
        );
        assert!(matches!(
            store.parties_by_fingerprint("nope"),
            Err(StoreError::Invalid(_))
        ));

        // Fingerprint lookup finds old and new certificates.
        assert_eq!(store.parties_by_fingerprint(&fp(1)).unwrap()[0].key, key);
        assert_eq!(store.parties_by_fingerprint(&fp(4)).unwrap()[0].key, key);
        assert!(store.parties_by_fingerprint(&fp(7)).unwrap().is_empty());

        // Suspended account.
        store
            .set_account_status(s.id, AccountStatus::Suspended)
            .unwrap();
        let p = store.party(&key).unwrap().unwrap();
        assert_eq!(p.account_status, AccountStatus::Suspended);
        assert_eq!(p.status, PartyStatus::Active);
        assert!(!p.is_usable());
        assert!(matches!(
            store.set_account_status(999, AccountStatus::Active),
            Err(StoreError::NotFound(_))
        ));
        store
            .set_account_status(s.id, AccountStatus::Active)
            .unwrap();
        assert!(store.party(&key).unwrap().unwrap().is_usable());

        // Revocation.
        store.revoke_party(&key, 4000).unwrap();
        let p = store.party(&key).unwrap().unwrap();
        assert_eq!(p.status, PartyStatus::Revoked);
        assert_eq!(p.revoked_at, Some(4000));
        assert!(!p.is_usable());
        store.revoke_party(&key, 5000).unwrap();
        assert_eq!(store.party(&key).unwrap().unwrap().revoked_at, Some(4000));
        let e = store.replace_certificate(&key, b"d", &fp(6), 5000, 5000);
        assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
        let e = store.register(s.id, &key, "mpc-9", b"d", &fp(6), 5000);
        assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
        assert!(matches!(
            store.revoke_party(&PartyKey::new("t", "zz"), 1),
            Err(StoreError::NotFound(_))
        ));
        // Revoked parties are still found by fingerprint.
        assert_eq!(store.parties_by_fingerprint(&fp(1)).unwrap().len(), 1);
    }

    #[test]
    fn accept_duplicate_and_roundtrip_inline_and_file() {
        let dir = TempDir::new("accept");
        let store = SqliteStore::open(&dir.0, 16).unwrap();
        let (a, b) = setup(&store);

        let small: Vec<u8> = (0u8..16).collect(); // == inline_max: inline
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let empty: Vec<u8> = Vec::new();
        assert_eq!(
            store
                .accept(
                    &msg(&a, &b, "mpc-b", "m1", &small, 10),
                    &AcceptLimits::default()
                )
                .unwrap(),
            Accepted::Stored
        );
        assert_eq!(
            store
                .accept(
                    &msg(&a, &b, "mpc-b", "m2", &big, 11),
                    &AcceptLimits::default()
                )
                .unwrap(),
            Accepted::Stored
        );
        assert_eq!(
            store
                .accept(
                    &msg(&a, &b, "mpc-b", "m3", &empty, 12),
                    &AcceptLimits::default()
                )
                .unwrap(),
            Accepted::Stored
        );
        assert_eq!(payload_files(&dir.0).len(), 1);
        assert!(payload_files(&dir.0)[0].ends_with(BODY_EXT));

        // Duplicates return the first receipt, whatever the new message says, and store nothing.
        for (id, body) in [("m1", &small), ("m2", &big)] {
            let mut again = msg(&a, &b, "mpc-b", id, body, 20);
            again.receipt = b"another receipt".to_vec();
            again.body.push(1);
            assert_eq!(
                store.accept(&again, &AcceptLimits::default()).unwrap(),
                Accepted::Duplicate {
                    receipt_content_type: "application/soap+xml".into(),
                    receipt: format!("receipt for {id}").into_bytes(),
                }
            );
        }
        assert_eq!(payload_files(&dir.0).len(), 1);
        assert_eq!(store.messages(None, 100).unwrap().len(), 3);
        // The same MessageId from another sender is another message.
        assert_eq!(
            store
                .accept(
                    &msg(&b, &a, "mpc-a", "m1", &small, 13),
                    &AcceptLimits::default()
                )
                .unwrap(),
            Accepted::Stored
        );

        let c1 = store.claim_next("mpc-b", 100, 60).unwrap().unwrap();
        assert_eq!(c1.message_id, "m1");
        assert_eq!(c1.body, small);
        assert_eq!(c1.sender, a);
        assert_eq!(c1.recipient, b);
        assert_eq!(c1.content_type, "multipart/related; boundary=x");
        assert_eq!(c1.attempt, 1);
        let c2 = store.claim_next("mpc-b", 100, 60).unwrap().unwrap();
        assert_eq!(c2.message_id, "m2");
        assert!(c2.body == big, "file body differs");
        let c3 = store.claim_next("mpc-b", 100, 60).unwrap().unwrap();
        assert_eq!(c3.message_id, "m3");
        assert!(c3.body.is_empty());
        assert!(store.claim_next("mpc-b", 100, 60).unwrap().is_none());
        assert_eq!(
            store.claim_next("mpc-a", 100, 60).unwrap().unwrap().sender,
            b
        );

        let records = store.messages(Some(&a), 100).unwrap();
        let ids: Vec<&str> = records.iter().map(|r| r.message_id.as_str()).collect();
        assert_eq!(ids, vec!["m1", "m3", "m2", "m1"]); // newest first
        assert_eq!(records[2].size, big.len() as u64);
        assert_eq!(records[2].state, "leased");
        assert_eq!(records[2].attempts, 1);
        assert_eq!(store.messages(None, 2).unwrap().len(), 2);
        assert!(store
            .messages(Some(&PartyKey::new("", "x")), 10)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn claim_is_fifo_per_mpc() {
        let dir = TempDir::new("fifo");
        let store = SqliteStore::open(&dir.0, 1024).unwrap();
        let (a, b) = setup(&store);
        // Received-at times out of order: the order of acceptance counts.
        for (i, at) in [(0, 50), (1, 10), (2, 30), (3, 20)] {
            store
                .accept(
                    &msg(&a, &b, "mpc-b", &format!("b{i}"), b"x", at),
                    &AcceptLimits::default(),
                )
                .unwrap();
            store
                .accept(
                    &msg(&b, &a, "mpc-a", &format!("a{i}"), b"y", at),
                    &AcceptLimits::default(),
                )
                .unwrap();
        }
        for i in 0..4 {
            let c = store.claim_next("mpc-b", 100, 60).unwrap().unwrap();
            assert_eq!(c.message_id, format!("b{i}"));
        }
        assert!(store.claim_next("mpc-b", 100, 60).unwrap().is_none());
        assert_eq!(
            store
                .claim_next("mpc-a", 100, 60)
                .unwrap()
                .unwrap()
                .message_id,
            "a0"
        );
        assert!(store.claim_next("mpc-none", 100, 60).unwrap().is_none());
    }

    #[test]
    fn claim_uses_the_pending_index() {
        let dir = TempDir::new("plan");
        drop(SqliteStore::open(&dir.0, 16).unwrap());
        let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
        let mut stmt = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT seq FROM messages \
                 WHERE mpc = ?1 AND state IN ('waiting', 'leased') \
                 AND (state = 'waiting' OR lease_until <= ?2) ORDER BY seq LIMIT 1",
            )
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map(params!["m", 1], |r| r.get::<_, String>(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("messages_claim"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[test]
    fn lease_expiry_offers_again() {
        let dir = TempDir::new("lease");
        let store = SqliteStore::open(&dir.0, 16).unwrap();
        let (a, b) = setup(&store);
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m1", b"one", 10),
                &AcceptLimits::default(),
            )
            .unwrap();
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m2", b"two", 11),
                &AcceptLimits::default(),
            )
            .unwrap();

        let c = store.claim_next("mpc-b", 100, 30).unwrap().unwrap();
        assert_eq!((c.message_id.as_str(), c.attempt), ("m1", 1));
        // While m1 is leased the next one is offered.
        let c = store.claim_next("mpc-b", 110, 30).unwrap().unwrap();
        assert_eq!((c.message_id.as_str(), c.attempt), ("m2", 1));
        assert!(store.claim_next("mpc-b", 129, 30).unwrap().is_none());
        // Lease of m1 ends at 130.
        let c = store.claim_next("mpc-b", 130, 30).unwrap().unwrap();
        assert_eq!((c.message_id.as_str(), c.attempt), ("m1", 2));
        assert_eq!(c.body, b"one");
        let c = store.claim_next("mpc-b", 140, 30).unwrap().unwrap();
        assert_eq!((c.message_id.as_str(), c.attempt), ("m2", 2));
        // Delivered messages are not offered again.
        assert_eq!(
            store.mark_delivered(&b, "m1", b"r", 150).unwrap(),
            Delivery::Delivered
        );
        let c = store.claim_next("mpc-b", 1000, 30).unwrap().unwrap();
        assert_eq!((c.message_id.as_str(), c.attempt), ("m2", 3));
        assert!(store.claim_next("mpc-b", 1000, 30).unwrap().is_none());
        assert!(matches!(
            store.claim_next("mpc-b", 1000, -1),
            Err(StoreError::Invalid(_))
        ));
    }

    /// 200 messages, claimed by 4 threads over two stores (two connections, as two processes
    /// would be): every message is handed out exactly once while the leases run.
    #[test]
    fn concurrent_claims_hand_out_each_message_once() {
        let dir = TempDir::new("claims");
        let store1 = Arc::new(SqliteStore::open(&dir.0, 8).unwrap());
        let store2 = Arc::new(SqliteStore::open(&dir.0, 8).unwrap());
        let (a, b) = setup(&store1);
        const N: usize = 200;
        for i in 0..N {
            // Every third body goes to a file.
            let body = if i % 3 == 0 {
                format!("a larger body number {i}")
            } else {
                format!("b{i}")
            };
            store1
                .accept(
                    &msg(&a, &b, "mpc-b", &format!("m{i}"), body.as_bytes(), 10),
                    &AcceptLimits::default(),
                )
                .unwrap();
        }
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let store = if t % 2 == 0 {
                    store1.clone()
                } else {
                    store2.clone()
                };
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut got = Vec::new();
                    while let Some(c) = store.claim_next("mpc-b", 100, 3600).unwrap() {
                        assert_eq!(c.attempt, 1);
                        let i: usize = c.message_id[1..].parse().unwrap();
                        let expect = if i % 3 == 0 {
                            format!("a larger body number {i}")
                        } else {
                            format!("b{i}")
                        };
                        assert_eq!(c.body, expect.as_bytes());
                        got.push(c.message_id);
                    }
                    got
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().unwrap());
        }
        assert_eq!(all.len(), N);
        let unique: HashSet<&String> = all.iter().collect();
        assert_eq!(unique.len(), N);
        assert!(store2.claim_next("mpc-b", 100, 3600).unwrap().is_none());
    }

    /// Two threads (on two connections) accept the same message at once: one stores it, the
    /// other gets the duplicate's receipt, and no payload file is left behind.
    #[test]
    fn concurrent_accept_of_one_message_stores_it_once() {
        let dir = TempDir::new("dup");
        let store1 = Arc::new(SqliteStore::open(&dir.0, 8).unwrap());
        let store2 = Arc::new(SqliteStore::open(&dir.0, 8).unwrap());
        let (a, b) = setup(&store1);
        for round in 0..20 {
            let body: &[u8] = if round % 2 == 0 {
                b"small"
            } else {
                b"a body for a file"
            };
            let m = msg(&a, &b, "mpc-b", &format!("race{round}"), body, 10);
            let barrier = Arc::new(Barrier::new(2));
            let handles: Vec<_> = [store1.clone(), store1.clone(), store2.clone()]
                .into_iter()
                .skip(if round % 4 < 2 { 0 } else { 1 })
                .take(2)
                .map(|store| {
                    let m = m.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        store.accept(&m, &AcceptLimits::default()).unwrap()
                    })
                })
                .collect();
            let results: Vec<Accepted> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let stored = results.iter().filter(|r| **r == Accepted::Stored).count();
            assert_eq!(stored, 1, "round {round}: {results:?}");
            assert!(results
                .iter()
                .any(|r| matches!(r, Accepted::Duplicate { receipt, .. }
                if *receipt == format!("receipt for race{round}").into_bytes())));
        }
        assert_eq!(store1.messages(None, 100).unwrap().len(), 20);
        // Only the ten file bodies, no temporary or orphan files.
        let files = payload_files(&dir.0);
        assert_eq!(files.len(), 10, "{files:?}");
        assert!(files.iter().all(|f| f.ends_with(BODY_EXT)));
        let usage = store1.usage(0, 100).unwrap();
        assert_eq!(usage[0].sent_messages, 20);
    }

    #[test]
    fn mark_delivered_outcomes() {
        let dir = TempDir::new("deliver");
        let store = SqliteStore::open(&dir.0, 16).unwrap();
        let (a, b) = setup(&store);
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m1", b"one", 10),
                &AcceptLimits::default(),
            )
            .unwrap();
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m2", b"two", 11),
                &AcceptLimits::default(),
            )
            .unwrap();
        store.claim_next("mpc-b", 20, 60).unwrap().unwrap();

        assert_eq!(
            store.mark_delivered(&b, "nope", b"r", 30).unwrap(),
            Delivery::Unknown
        );
        // Only the recipient's receipt counts.
        assert_eq!(
            store.mark_delivered(&a, "m1", b"r", 30).unwrap(),
            Delivery::Unknown
        );
        assert_eq!(
            store.mark_delivered(&b, "m1", b"r1", 30).unwrap(),
            Delivery::Delivered
        );
        assert_eq!(state_of(&store, "m1"), "delivered");
        assert_eq!(
            store.mark_delivered(&b, "m1", b"r1", 31).unwrap(),
            Delivery::AlreadyDelivered
        );
        let rec = store
            .messages(Some(&b), 10)
            .unwrap()
            .into_iter()
            .find(|r| r.message_id == "m1")
            .unwrap();
        assert_eq!(rec.delivered_at, Some(30));
        // The receipt is stored (checked directly, the trait does not return it).
        {
            let conn = store.conn();
            let r: Vec<u8> = conn
                .query_row(
                    "SELECT recipient_receipt FROM messages WHERE message_id = 'm1'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(r, b"r1");
        }
        // A waiting (not yet claimed) message may be receipted too.
        assert_eq!(
            store.mark_delivered(&b, "m2", b"r2", 32).unwrap(),
            Delivery::Delivered
        );
        // After the body is purged a repeated receipt is still recognised.
        store.purge(100, 0).unwrap();
        assert_eq!(state_of(&store, "m1"), "purged");
        assert_eq!(
            store.mark_delivered(&b, "m1", b"r1", 200).unwrap(),
            Delivery::AlreadyDelivered
        );
        // An expired message is not delivered.
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m3", b"three", 50),
                &AcceptLimits::default(),
            )
            .unwrap();
        store.purge(0, 60).unwrap();
        assert_eq!(state_of(&store, "m3"), "expired");
        assert_eq!(
            store.mark_delivered(&b, "m3", b"r3", 200).unwrap(),
            Delivery::Unknown
        );
    }

    #[test]
    fn purge_and_expire_remove_bodies_and_files() {
        let dir = TempDir::new("purge");
        let store = SqliteStore::open(&dir.0, 4).unwrap();
        let (a, b) = setup(&store);
        // d1 (file) and d2 (inline) delivered at 100 and 200; w1 (file) waiting since 50; w2
        // (file) leased since 300; w3 (inline) waiting since 40.
        store
            .accept(
                &msg(&a, &b, "mpc-b", "d1", b"delivered one", 10),
                &AcceptLimits::default(),
            )
            .unwrap();
        store
            .accept(
                &msg(&a, &b, "mpc-b", "d2", b"d2", 20),
                &AcceptLimits::default(),
            )
            .unwrap();
        store
            .accept(
                &msg(&a, &b, "mpc-b", "w3", b"w3", 40),
                &AcceptLimits::default(),
            )
            .unwrap();
        store
            .accept(
                &msg(&a, &b, "mpc-b", "w1", b"waiting one", 50),
                &AcceptLimits::default(),
            )
            .unwrap();
        store
            .accept(
                &msg(&a, &b, "mpc-b", "w2", b"waiting two", 300),
                &AcceptLimits::default(),
            )
            .unwrap();
        assert_eq!(
            store.mark_delivered(&b, "d1", b"r", 100).unwrap(),
            Delivery::Delivered
        );
        assert_eq!(
            store.mark_delivered(&b, "d2", b"r", 200).unwrap(),
            Delivery::Delivered
        );
        assert_eq!(payload_files(&dir.0).len(), 3);

        // Nothing old enough.
        assert_eq!(store.purge(100, 40).unwrap(), Purged::default());
        assert_eq!(payload_files(&dir.0).len(), 3);

        let p = store.purge(150, 60).unwrap();
        assert_eq!(
            p,
            Purged {
                delivered: 1,
                expired: 2
            }
        );
        assert_eq!(state_of(&store, "d1"), "purged");
        assert_eq!(state_of(&store, "d2"), "delivered");
        assert_eq!(state_of(&store, "w1"), "expired");
        assert_eq!(state_of(&store, "w3"), "expired");
        assert_eq!(state_of(&store, "w2"), "waiting");
        assert_eq!(payload_files(&dir.0).len(), 1); // w2's

        // Expired messages are not offered; the leased one is expired later.
        let c = store.claim_next("mpc-b", 400, 60).unwrap().unwrap();
        assert_eq!(c.message_id, "w2");
        assert!(store.claim_next("mpc-b", 450, 60).unwrap().is_none());
        let p = store.purge(1000, 1000).unwrap();
        assert_eq!(
            p,
            Purged {
                delivered: 1,
                expired: 1
            }
        );
        assert_eq!(state_of(&store, "w2"), "expired");
        assert!(store.claim_next("mpc-b", 2000, 60).unwrap().is_none());
        assert!(payload_files(&dir.0).is_empty());
        {
            let conn = store.conn();
            let bodies: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM messages WHERE body IS NOT NULL OR body_file IS NOT NULL",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(bodies, 0);
        }
        // Records stay, and a resent purged message is still a duplicate.
        assert_eq!(store.messages(None, 100).unwrap().len(), 5);
        assert!(matches!(
            store
                .accept(
                    &msg(&a, &b, "mpc-b", "d1", b"delivered one", 3000),
                    &AcceptLimits::default()
                )
                .unwrap(),
            Accepted::Duplicate { .. }
        ));
        assert!(payload_files(&dir.0).is_empty());
        assert_eq!(store.purge(5000, 5000).unwrap(), Purged::default());
    }

    #[test]
    fn purge_sweeps_old_orphan_files_only() {
        let dir = TempDir::new("orphans");
        let store = SqliteStore::open(&dir.0, 4).unwrap();
        let (a, b) = setup(&store);
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m1", b"file body", 10),
                &AcceptLimits::default(),
            )
            .unwrap();
        let kept = payload_files(&dir.0)[0].clone();
        let payloads = dir.0.join(PAYLOAD_DIR);
        let old = SystemTime::now() - ORPHAN_GRACE - Duration::from_secs(60);
        for name in [
            "old-orphan.body",
            "old-crash.tmp",
            "new-orphan.body",
            "unrelated.txt",
        ] {
            fs::write(payloads.join(name), b"x").unwrap();
        }
        for name in [
            "old-orphan.body",
            "old-crash.tmp",
            "unrelated.txt",
            kept.as_str(),
        ] {
            let f = fs::File::options()
                .write(true)
                .open(payloads.join(name))
                .unwrap();
            f.set_modified(old).unwrap();
        }
        assert_eq!(store.purge(0, 0).unwrap(), Purged::default());
        let mut expect = vec![
            kept.clone(),
            "new-orphan.body".into(),
            "unrelated.txt".into(),
        ];
        expect.sort();
        assert_eq!(payload_files(&dir.0), expect);
        assert_eq!(
            store.claim_next("mpc-b", 20, 60).unwrap().unwrap().body,
            b"file body"
        );
    }

    #[test]
    fn recipients_of_held_messages() {
        let dir = TempDir::new("recipients");
        let store = SqliteStore::open(&dir.0, 16).unwrap();
        let (a, b) = setup(&store);
        let c = PartyKey::new("", "C");
        let s = subscriber(&store, "gamma");
        store
            .register(s.id, &c, "mpc-c", b"cert-c", &fp(3), 1000)
            .unwrap();
        assert!(store.recipients_of("x").unwrap().is_empty());
        // The same MessageId to two recipients; a second sender cannot reuse it for B (a
        // receipt names only the MessageId).
        store
            .accept(
                &msg(&a, &b, "mpc-b", "x", b"1", 10),
                &AcceptLimits::default(),
            )
            .unwrap();
        assert!(matches!(
            store.accept(
                &msg(&c, &b, "mpc-b", "x", b"2", 10),
                &AcceptLimits::default()
            ),
            Err(StoreError::Conflict(_))
        ));
        store
            .accept(
                &msg(&b, &c, "mpc-c", "x", b"3", 10),
                &AcceptLimits::default(),
            )
            .unwrap();
        store
            .accept(
                &msg(&a, &b, "mpc-b", "y", b"4", 10),
                &AcceptLimits::default(),
            )
            .unwrap();
        assert_eq!(
            store.recipients_of("x").unwrap(),
            vec![b.clone(), c.clone()]
        );
        // Delivered (and purged) messages still count: a repeated receipt must be recognised.
        assert_eq!(
            store.mark_delivered(&c, "x", b"r", 20).unwrap(),
            Delivery::Delivered
        );
        store.purge(30, 0).unwrap();
        assert_eq!(
            store.recipients_of("x").unwrap(),
            vec![b.clone(), c.clone()]
        );
        // Expired ones do not.
        store.purge(0, 100).unwrap();
        assert_eq!(store.recipients_of("x").unwrap(), vec![c.clone()]);
        assert!(store.recipients_of("y").unwrap().is_empty());
    }

    #[test]
    fn queue_depths_per_recipient() {
        let dir = TempDir::new("depths");
        let store = SqliteStore::open(&dir.0, 16).unwrap();
        let (a, b) = setup(&store);
        for i in 0..3 {
            store
                .accept(
                    &msg(&a, &b, "mpc-b", &format!("m{i}"), b"x", 10),
                    &AcceptLimits::default(),
                )
                .unwrap();
        }
        store.claim_next("mpc-b", 20, 60).unwrap().unwrap(); // leased still counts
        store
            .accept(
                &msg(&b, &a, "mpc-a", "n0", b"x", 10),
                &AcceptLimits::default(),
            )
            .unwrap();
        store.mark_delivered(&a, "n0", b"r", 30).unwrap();
        let depths = store.queue_depths().unwrap();
        let get = |k: &PartyKey| depths.iter().find(|(p, _)| p == k).map(|(_, n)| *n);
        assert_eq!(get(&b), Some(3));
        assert_eq!(get(&a), Some(0));
        store.mark_delivered(&b, "m1", b"r", 30).unwrap();
        store.purge(0, 1000).unwrap();
        let depths = store.queue_depths().unwrap();
        assert!(depths.iter().all(|(_, n)| *n == 0), "{depths:?}");
        assert_eq!(depths.len(), 2);
    }

    #[test]
    fn usage_report() {
        let dir = TempDir::new("usage");
        let store = SqliteStore::open(&dir.0, 16).unwrap();
        let (a, b) = setup(&store);
        let idle = subscriber(&store, "idle");
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m1", &[0; 10], 100),
                &AcceptLimits::default(),
            )
            .unwrap();
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m2", &[0; 200], 150),
                &AcceptLimits::default(),
            )
            .unwrap();
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m3", &[0; 3000], 250),
                &AcceptLimits::default(),
            )
            .unwrap();
        store
            .accept(
                &msg(&b, &a, "mpc-a", "n1", &[0; 7], 120),
                &AcceptLimits::default(),
            )
            .unwrap();
        // Duplicates are not counted.
        store
            .accept(
                &msg(&a, &b, "mpc-b", "m1", &[0; 10], 160),
                &AcceptLimits::default(),
            )
            .unwrap();
        store.mark_delivered(&b, "m1", b"r", 180).unwrap();
        store.mark_delivered(&b, "m1", b"r", 181).unwrap(); // repeated: not counted
        store.mark_delivered(&b, "m3", b"r", 260).unwrap();
        store.mark_delivered(&a, "n1", b"r", 199).unwrap();

        let u = store.usage(100, 200).unwrap();
        assert_eq!(u.len(), 3);
        assert_eq!(
            u[0],
            Usage {
                subscriber_id: u[0].subscriber_id,
                organisation: "alpha".into(),
                sent_messages: 2,
                sent_bytes: 210,
                received_messages: 1,
                received_bytes: 7,
            }
        );
        assert_eq!(
            (
                u[1].organisation.as_str(),
                u[1].sent_messages,
                u[1].sent_bytes
            ),
            ("beta", 1, 7)
        );
        assert_eq!((u[1].received_messages, u[1].received_bytes), (1, 10));
        assert_eq!(
            u[2],
            Usage {
                subscriber_id: idle.id,
                organisation: "idle".into(),
                ..Usage::default()
            }
        );
        // [from, to): 250 is in the next period.
        let u = store.usage(200, 300).unwrap();
        assert_eq!((u[0].sent_messages, u[0].sent_bytes), (1, 3000));
        assert_eq!((u[1].received_messages, u[1].received_bytes), (1, 3000));
        let u = store.usage(0, 100).unwrap();
        assert!(u
            .iter()
            .all(|x| x.sent_messages == 0 && x.received_messages == 0));
        // Purging messages does not change the ledger.
        store.purge(i64::MAX, i64::MAX).unwrap();
        assert_eq!(store.usage(100, 200).unwrap()[0].sent_bytes, 210);
        assert_eq!(store.usage(0, i64::MAX).unwrap()[1].received_bytes, 3010);
    }

    #[test]
    fn everything_survives_reopen() {
        let dir = TempDir::new("reopen");
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let (a, b);
        {
            let store = SqliteStore::open(&dir.0, 64).unwrap();
            (a, b) = setup(&store);
            store
                .replace_certificate(&a, b"cert-a2", &fp(5), 5000, 1500)
                .unwrap();
            store
                .accept(
                    &msg(&a, &b, "mpc-b", "m1", &big, 10),
                    &AcceptLimits::default(),
                )
                .unwrap();
            store
                .accept(
                    &msg(&a, &b, "mpc-b", "m2", b"small", 11),
                    &AcceptLimits::default(),
                )
                .unwrap();
            assert_eq!(
                store
                    .claim_next("mpc-b", 20, 60)
                    .unwrap()
                    .unwrap()
                    .message_id,
                "m1"
            );
        }
        let store = SqliteStore::open(&dir.0, 64).unwrap();
        assert_eq!(store.subscribers().unwrap().len(), 2);
        assert_eq!(store.parties(None).unwrap().len(), 2);
        assert_eq!(store.party_by_mpc("mpc-b").unwrap().unwrap().key, b);
        assert_eq!(store.certificates(&a).unwrap().len(), 2);
        assert!(matches!(
            store
                .accept(
                    &msg(&a, &b, "mpc-b", "m1", &big, 30),
                    &AcceptLimits::default()
                )
                .unwrap(),
            Accepted::Duplicate { .. }
        ));
        // m1's lease (until 80) still holds after the reopen.
        let c = store.claim_next("mpc-b", 30, 60).unwrap().unwrap();
        assert_eq!((c.message_id.as_str(), c.attempt), ("m2", 1));
        let c = store.claim_next("mpc-b", 80, 60).unwrap().unwrap();
        assert_eq!((c.message_id.as_str(), c.attempt), ("m1", 2));
        assert!(c.body == big);
        assert_eq!(
            store.mark_delivered(&b, "m1", b"r", 90).unwrap(),
            Delivery::Delivered
        );
        drop(store);
        let store = SqliteStore::open(&dir.0, 64).unwrap();
        assert_eq!(
            store.mark_delivered(&b, "m1", b"r", 91).unwrap(),
            Delivery::AlreadyDelivered
        );
        assert_eq!(
            store.usage(0, 100).unwrap()[1].received_bytes,
            big.len() as u64
        );
    }

    const NONE: AcceptLimits = AcceptLimits {
        min_free_bytes: 0,
        max_queued_bytes_per_subscriber: 0,
    };

    fn refused(r: StoreResult<Accepted>) -> Refused {
        match r {
            Err(StoreError::Refused(r)) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn record(store: &SqliteStore, sender: &PartyKey, id: &str) -> MessageRecord {
        store
            .messages(None, 10_000)
            .unwrap()
            .into_iter()
            .find(|r| r.message_id == id && r.sender == *sender)
            .unwrap()
    }

    fn notice(from: &PartyKey, to: &PartyKey, mpc: &str, id: &str, refused: &str) -> NewMessage {
        NewMessage {
            refuses: Some(RefusalOf {
                message_id: refused.into(),
                class: "cannot_open".into(),
            }),
            ..msg(from, to, mpc, id, b"notice", 500)
        }
    }

    /// A database written by schema version 1 is migrated: parties get the default document
    /// limit, messages keep their rows and sequence numbers, and the new state works.
    #[test]
    fn schema_v1_is_migrated() {
        let dir = TempDir::new("migrate");
        fs::create_dir_all(&dir.0).unwrap();
        {
            let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
            conn.execute_batch(SCHEMA_V1).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute_batch(
                "INSERT INTO subscribers VALUES (1, 'alpha', '', '', '', 'active', 1);
                 INSERT INTO subscribers VALUES (2, 'beta', '', '', '', 'active', 1);
                 INSERT INTO parties VALUES (1, 1, '', 'A', 'mpc-a', 'active', 1, NULL);
                 INSERT INTO parties VALUES (2, 2, '', 'B', 'mpc-b', 'active', 1, NULL);",
            )
            .unwrap();
            for (seq, id, state) in [(1, "old1", "delivered"), (7, "old2", "waiting")] {
                conn.execute(
                    "INSERT INTO messages (seq, sender_ptype, sender_id, recipient_ptype, \
                     recipient_id, mpc, message_id, conversation_id, service, action, \
                     content_type, size, body, receipt_content_type, receipt, state, \
                     received_at) VALUES (?1, '', 'A', '', 'B', 'mpc-b', ?2, 'c', 's', 'a', \
                     'text/plain', 3, X'616263', 'r', X'72', ?3, 10)",
                    params![seq, id, state],
                )
                .unwrap();
            }
            // A sequence ahead of the rows (as after rows were removed): kept.
            conn.execute(
                "UPDATE sqlite_sequence SET seq = 9 WHERE name = 'messages'",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&dir.0, 16).unwrap();
        let (a, b) = (PartyKey::new("", "A"), PartyKey::new("", "B"));
        assert_eq!(
            store.party(&a).unwrap().unwrap().max_document_bytes,
            coordination::DEFAULT_MAX_DOCUMENT_BYTES
        );
        assert_eq!(state_of(&store, "old1"), "delivered");
        let c = store.claim_next("mpc-b", 20, 60).unwrap().unwrap();
        assert_eq!(
            (c.message_id.as_str(), c.body.as_slice()),
            ("old2", &b"abc"[..])
        );
        // A migrated row has no fingerprint: the same recipient is a duplicate whatever the
        // content, another recipient is a reused MessageId.
        assert!(matches!(
            store.accept(&msg(&a, &b, "mpc-b", "old1", b"other", 30), &NONE),
            Ok(Accepted::Duplicate { .. })
        ));
        assert!(matches!(
            refused(store.accept(&msg(&a, &a, "mpc-a", "old1", b"abc", 30), &NONE)),
            Refused::MessageIdReused { .. }
        ));
        store
            .accept(&msg(&a, &b, "mpc-b", "new", b"x", 40), &NONE)
            .unwrap();
        let seq: i64 = store
            .conn()
            .query_row(
                "SELECT seq FROM messages WHERE message_id = 'new'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(seq, 10, "the AUTOINCREMENT counter is carried over");
        // The new state is allowed.
        store
            .accept(&notice(&b, &a, "mpc-a", "n1", "old2"), &NONE)
            .unwrap();
        assert_eq!(state_of(&store, "old2"), "failed");
        let version: i64 = store
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// The default document limit written by the migration is the contract's.
    #[test]
    fn migration_default_is_the_contracts() {
        assert!(SCHEMA_V2.contains(&format!(
            "DEFAULT {}",
            coordination::DEFAULT_MAX_DOCUMENT_BYTES
        )));
    }

    #[test]
    fn a_message_above_the_recipients_limit_is_refused_before_it_is_written() {
        let dir = TempDir::new("limit");
        let store = SqliteStore::open(&dir.0, 16).unwrap();
        let (a, b) = setup(&store);
        assert_eq!(
            store.party(&b).unwrap().unwrap().max_document_bytes,
            coordination::DEFAULT_MAX_DOCUMENT_BYTES
        );
        // A limit of 1 byte: messages of up to 1 + MESSAGE_OVERHEAD bytes.
        store.set_party_limit(&b, 1).unwrap();
        assert_eq!(store.party(&b).unwrap().unwrap().max_document_bytes, 1);
        let max = coordination::message_limit_for(1) as usize;
        let r = refused(store.accept(&msg(&a, &b, "mpc-b", "big", &vec![0; max + 1], 10), &NONE));
        assert_eq!(
            r,
            Refused::RecipientLimit {
                recipient: b.clone(),
                size: max as u64 + 1,
                max_message_bytes: max as u64,
                max_document_bytes: 1,
            }
        );
        let text = r.to_string();
        assert!(
            text.contains(&(max + 1).to_string())
                && text.contains("B")
                && text.contains(&max.to_string()),
            "{text}"
        );
        assert!(payload_files(&dir.0).is_empty(), "nothing written");
        assert!(store.messages(None, 10).unwrap().is_empty());
        assert_eq!(
            store
                .accept(&msg(&a, &b, "mpc-b", "fits", &vec![0; max], 10), &NONE)
                .unwrap(),
            Accepted::Stored
        );
        // Limits are checked per recipient; invalid limits are refused.
        assert!(matches!(
            store.set_party_limit(&b, 0),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store.set_party_limit(&b, u64::MAX),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store.set_party_limit(&PartyKey::new("", "nobody"), 5),
            Err(StoreError::NotFound(_))
        ));
        // A message accepted before the limit was lowered is still answered as a duplicate.
        store.set_party_limit(&a, 1).unwrap();
        store.set_party_limit(&b, 1 << 30).unwrap();
        let big = msg(&a, &b, "mpc-b", "before", &vec![1; max + 10], 10);
        store.accept(&big, &NONE).unwrap();
        store.set_party_limit(&b, 1).unwrap();
        assert!(matches!(
            store.accept(&big, &NONE),
            Ok(Accepted::Duplicate { .. })
        ));
    }

    #[test]
    fn a_reused_message_id_is_refused_and_a_retry_is_a_duplicate() {
        let dir = TempDir::new("reuse");
        let store = SqliteStore::open(&dir.0, 4).unwrap();
        let (a, b) = setup(&store);
        let first = msg(&a, &b, "mpc-b", "m1", b"first body", 10);
        store.accept(&first, &NONE).unwrap();
        // The same content signed again (other bytes, same fingerprint): a duplicate.
        let resigned = NewMessage {
            body: b"first body, signed again".to_vec(),
            ..first.clone()
        };
        assert!(matches!(
            store.accept(&resigned, &NONE),
            Ok(Accepted::Duplicate { .. })
        ));
        // Other content.
        let other = NewMessage {
            content_sha256: "ff".repeat(32),
            ..first.clone()
        };
        assert_eq!(
            refused(store.accept(&other, &NONE)),
            Refused::MessageIdReused {
                first_recipient: b.clone()
            }
        );
        // Another recipient, same content.
        assert!(matches!(
            refused(store.accept(&msg(&a, &a, "mpc-a", "m1", b"first body", 10), &NONE)),
            Refused::MessageIdReused { .. }
        ));
        // Nothing was stored or left behind.
        assert_eq!(store.messages(None, 10).unwrap().len(), 1);
        assert_eq!(payload_files(&dir.0).len(), 1);
    }

    #[test]
    fn the_account_quota_counts_undelivered_bytes_of_all_its_parties() {
        let dir = TempDir::new("quota");
        let store = SqliteStore::open(&dir.0, 16).unwrap();
        let (a, b) = setup(&store);
        // A second party of alpha's account.
        let a2 = PartyKey::new("", "A2");
        let alpha = store.party(&a).unwrap().unwrap().subscriber_id;
        store
            .register(alpha, &a2, "mpc-a2", b"cert-a2", &fp(9), 1000)
            .unwrap();
        let limits = AcceptLimits {
            min_free_bytes: 0,
            max_queued_bytes_per_subscriber: 100,
        };
        store
            .accept(&msg(&a, &b, "mpc-b", "m1", &[0; 60], 10), &limits)
            .unwrap();
        store
            .accept(&msg(&a2, &b, "mpc-b", "m2", &[0; 40], 10), &limits)
            .unwrap();
        let r = refused(store.accept(&msg(&a2, &b, "mpc-b", "m3", &[0; 1], 10), &limits));
        assert_eq!(
            r,
            Refused::QuotaExceeded {
                subscriber_id: alpha,
                queued: 100,
                size: 1,
                quota: 100
            }
        );
        // Other accounts are not concerned; 0 means no quota.
        store
            .accept(&msg(&b, &a, "mpc-a", "n1", &[0; 100], 10), &limits)
            .unwrap();
        store
            .accept(&msg(&a, &b, "mpc-b", "m4", &[0; 1000], 10), &NONE)
            .unwrap();
        let q = store.queued_bytes().unwrap();
        let beta = store.party(&b).unwrap().unwrap().subscriber_id;
        assert_eq!(q, vec![(alpha, 1100), (beta, 100)]);
        // Delivering (and expiring) frees the quota; leased messages still count.
        store.claim_next("mpc-b", 20, 60).unwrap().unwrap();
        store.mark_delivered(&b, "m4", b"r", 30).unwrap();
        assert!(matches!(
            refused(store.accept(&msg(&a, &b, "mpc-b", "m5", &[0; 1], 40), &limits)),
            Refused::QuotaExceeded { queued: 100, .. }
        ));
        store.mark_delivered(&b, "m1", b"r", 30).unwrap();
        store
            .accept(&msg(&a, &b, "mpc-b", "m5", &[0; 60], 40), &limits)
            .unwrap();
        // A refusal notice is exempt: it frees its message's bytes.
        store
            .accept(
                &notice(&b, &a2, "mpc-a2", "n2", "m2"),
                &AcceptLimits {
                    min_free_bytes: 0,
                    max_queued_bytes_per_subscriber: 1,
                },
            )
            .unwrap();
        assert_eq!(store.queued_bytes().unwrap()[0], (alpha, 60));
    }

    /// The quota's sum uses the partial covering index, not a scan of all messages.
    #[test]
    fn the_quota_sum_uses_the_pending_sender_index() {
        let dir = TempDir::new("quota-plan");
        drop(SqliteStore::open(&dir.0, 16).unwrap());
        let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT COALESCE(SUM(m.size), 0) FROM parties p JOIN \
                 messages m ON m.sender_ptype = p.ptype AND m.sender_id = p.pid \
                 AND m.state IN ('waiting', 'leased') WHERE p.subscriber_id = ?1",
            )
            .unwrap()
            .query_map([1], |r| r.get::<_, String>(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("messages_pending_sender"), "{plan}");
    }

    #[test]
    fn too_little_free_space_refuses_a_push_before_anything_is_written() {
        let dir = TempDir::new("space");
        let store = SqliteStore::open(&dir.0, 4).unwrap();
        let (a, b) = setup(&store);
        let free = store.free_bytes().unwrap().unwrap();
        assert!(free > 0);
        let all = AcceptLimits {
            min_free_bytes: free.saturating_mul(2),
            max_queued_bytes_per_subscriber: 0,
        };
        for body in [&b"big body for a file"[..], b"tiny"] {
            match store.accept(&msg(&a, &b, "mpc-b", "m1", body, 10), &all) {
                Err(StoreError::LowSpace {
                    available,
                    needed,
                    reserve,
                }) => {
                    assert!(available > 0 && needed >= body.len() as u64);
                    assert_eq!(reserve, free * 2);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(payload_files(&dir.0).is_empty());
        assert!(store.messages(None, 10).unwrap().is_empty());
        // A modest reserve lets it through; a duplicate is answered even without room.
        let some = AcceptLimits {
            min_free_bytes: 1024,
            ..all
        };
        let m = msg(&a, &b, "mpc-b", "m1", b"big body for a file", 10);
        assert_eq!(store.accept(&m, &some).unwrap(), Accepted::Stored);
        assert!(matches!(
            store.accept(&m, &all),
            Ok(Accepted::Duplicate { .. })
        ));
        // Claims and receipts are not held to the reserve.
        assert!(store.claim_next("mpc-b", 20, 60).unwrap().is_some());
        assert_eq!(
            store.mark_delivered(&b, "m1", b"r", 30).unwrap(),
            Delivery::Delivered
        );
    }

    #[test]
    fn a_refusal_notice_fails_the_refused_message_and_waits_for_its_sender() {
        let dir = TempDir::new("notice");
        let store = SqliteStore::open(&dir.0, 8).unwrap(); // "notice" inline, "file body one" not
        let (a, b) = setup(&store);
        store
            .accept(&msg(&a, &b, "mpc-b", "m1", b"file body one", 10), &NONE)
            .unwrap();
        store
            .accept(&msg(&a, &b, "mpc-b", "m2", b"two", 11), &NONE)
            .unwrap();
        assert_eq!(payload_files(&dir.0).len(), 1);
        assert_eq!(
            store
                .claim_next("mpc-b", 20, 60)
                .unwrap()
                .unwrap()
                .message_id,
            "m1"
        );
        // B refuses m1 (leased): m1 is failed, its body gone, never offered again; m2 is.
        assert_eq!(
            store
                .accept(&notice(&b, &a, "mpc-a", "n1", "m1"), &NONE)
                .unwrap(),
            Accepted::NoticeStored(NoticeEffect::Failed)
        );
        let r = record(&store, &a, "m1");
        assert_eq!(r.state, "failed");
        assert_eq!(
            r.refusal,
            Some(RefusalRecord {
                class: "cannot_open".into(),
                notice_id: "n1".into(),
                at: 500
            })
        );
        assert!(
            payload_files(&dir.0).is_empty(),
            "the refused body is removed"
        );
        assert_eq!(
            store
                .claim_next("mpc-b", 1000, 60)
                .unwrap()
                .unwrap()
                .message_id,
            "m2"
        );
        assert!(store
            .claim_next("mpc-b", 5000, 60)
            .unwrap()
            .is_some_and(|c| c.message_id == "m2"));
        assert!(store.queue_depths().unwrap().contains(&(b.clone(), 1)));
        // The notice waits for A like any message.
        let c = store.claim_next("mpc-a", 20, 60).unwrap().unwrap();
        assert_eq!(
            (c.message_id.as_str(), c.body.as_slice()),
            ("n1", &b"notice"[..])
        );
        // A receipt for the failed message changes nothing.
        assert_eq!(
            store.mark_delivered(&b, "m1", b"r", 30).unwrap(),
            Delivery::Unknown
        );
        // The same notice again is a duplicate; another one for m1 is refused.
        assert!(matches!(
            store.accept(&notice(&b, &a, "mpc-a", "n1", "m1"), &NONE),
            Ok(Accepted::Duplicate { .. })
        ));
        assert_eq!(
            refused(store.accept(&notice(&b, &a, "mpc-a", "n2", "m1"), &NONE)),
            Refused::AlreadyRefused {
                message_id: "m1".into(),
                notice_id: "n1".into()
            }
        );
        // A notice for a message the notice's sender did not receive, or not to its sender.
        assert_eq!(
            refused(store.accept(&notice(&b, &a, "mpc-a", "n3", "nope"), &NONE)),
            Refused::RefusedMessageUnknown {
                message_id: "nope".into()
            }
        );
        assert_eq!(
            refused(store.accept(&notice(&a, &b, "mpc-b", "n4", "m2"), &NONE)),
            Refused::RefusedMessageUnknown {
                message_id: "m2".into()
            }
        );
        let c3 = PartyKey::new("", "C");
        let gamma = subscriber(&store, "gamma");
        store
            .register(gamma.id, &c3, "mpc-c", b"cert-c", &fp(3), 1000)
            .unwrap();
        assert_eq!(
            refused(store.accept(&notice(&b, &c3, "mpc-c", "n5", "m2"), &NONE)),
            Refused::RefusedMessageOtherSender {
                message_id: "m2".into(),
                sender: a.clone()
            }
        );
        // After delivery: the state stays, the refusal is recorded, the notice goes to A.
        assert_eq!(
            store.mark_delivered(&b, "m2", b"r", 40).unwrap(),
            Delivery::Delivered
        );
        assert_eq!(
            store
                .accept(&notice(&b, &a, "mpc-a", "n6", "m2"), &NONE)
                .unwrap(),
            Accepted::NoticeStored(NoticeEffect::AfterDelivery)
        );
        let r = record(&store, &a, "m2");
        assert_eq!(r.state, "delivered");
        assert_eq!(r.refusal.unwrap().notice_id, "n6");
        // An expired message can be refused too.
        store
            .accept(&msg(&a, &b, "mpc-b", "m3", b"three", 50), &NONE)
            .unwrap();
        store.purge(0, 60).unwrap();
        assert_eq!(
            store
                .accept(&notice(&b, &a, "mpc-a", "n7", "m3"), &NONE)
                .unwrap(),
            Accepted::NoticeStored(NoticeEffect::Failed)
        );
        assert_eq!(state_of(&store, "m3"), "failed");
        // Refusals do not count as received in the usage ledger; notices count as sent.
        let u = store.usage(0, 1000).unwrap();
        assert_eq!((u[1].sent_messages, u[1].received_messages), (3, 1));
    }

    #[test]
    fn records_of_finished_messages_are_pruned_and_the_ledger_stays() {
        let dir = TempDir::new("prune");
        let store = SqliteStore::open(&dir.0, 16).unwrap();
        let (a, b) = setup(&store);
        for (id, at) in [
            ("d1", 10),
            ("d2", 10),
            ("x1", 10),
            ("w1", 10),
            ("late", 300),
        ] {
            store
                .accept(&msg(&a, &b, "mpc-b", id, b"body", at), &NONE)
                .unwrap();
        }
        store.mark_delivered(&b, "d1", b"r", 20).unwrap();
        store.mark_delivered(&b, "d2", b"r", 20).unwrap();
        store.mark_delivered(&b, "late", b"r", 310).unwrap();
        store
            .accept(&notice(&b, &a, "mpc-a", "n1", "x1"), &NONE)
            .unwrap();
        store.purge(25, 5).unwrap(); // d1, d2 purged; nothing expired
        let before = store.usage(0, 1000).unwrap();
        // Records received before 100 and finished go: d1, d2 (purged), x1 (failed). w1 waits,
        // the notice n1 (received at 500) and late are kept.
        assert_eq!(store.prune_records(100).unwrap(), 3);
        let mut left: Vec<String> = store
            .messages(None, 100)
            .unwrap()
            .into_iter()
            .map(|r| r.message_id)
            .collect();
        left.sort();
        assert_eq!(left, ["late", "n1", "w1"]);
        assert_eq!(store.usage(0, 1000).unwrap(), before);
        assert_eq!(store.prune_records(100).unwrap(), 0);
        // A message re-sent after its record is gone is a new message (documented).
        assert_eq!(
            store
                .accept(&msg(&a, &b, "mpc-b", "d1", b"body", 400), &NONE)
                .unwrap(),
            Accepted::Stored
        );
        // Batches: more records than one transaction removes.
        let n = PRUNE_BATCH as usize + 7;
        {
            let conn = store.conn();
            let mut stmt = conn
                .prepare(
                    "INSERT INTO messages (sender_ptype, sender_id, recipient_ptype, \
                     recipient_id, mpc, message_id, conversation_id, service, action, \
                     content_type, size, receipt_content_type, receipt, state, received_at) \
                     VALUES ('', 'A', '', 'B', 'mpc-b', ?1, 'c', 's', 'a', 't', 1, 'r', X'00', \
                     'expired', 1)",
                )
                .unwrap();
            for i in 0..n {
                stmt.execute([format!("bulk{i}")]).unwrap();
            }
        }
        assert_eq!(store.prune_records(100).unwrap(), n as u64);
    }

    #[test]
    fn a_revoked_party_can_be_reinstated() {
        let dir = TempDir::new("reinstate");
        let store = SqliteStore::open(&dir.0, 16).unwrap();
        let (a, _) = setup(&store);
        assert!(matches!(
            store.reinstate_party(&a, None, 2000),
            Err(StoreError::Conflict(_))
        ));
        store.revoke_party(&a, 2000).unwrap();
        let sub = store.party(&a).unwrap().unwrap().subscriber_id;
        match store.register(sub, &a, "mpc-x", b"d", &fp(7), 2100) {
            Err(StoreError::Conflict(m)) => assert!(m.contains("reinstate"), "{m}"),
            other => panic!("{other:?}"),
        }
        store.reinstate_party(&a, None, 2200).unwrap();
        let p = store.party(&a).unwrap().unwrap();
        assert!(p.is_usable());
        assert_eq!(p.revoked_at, None);
        assert_eq!(store.certificates(&a).unwrap().len(), 1);
        // With a new certificate, the old ones end at once.
        store.revoke_party(&a, 2300).unwrap();
        store
            .reinstate_party(&a, Some((b"new-der", &fp(8))), 2400)
            .unwrap();
        let certs = store.certificates(&a).unwrap();
        assert_eq!(certs[0].fingerprint, fp(8));
        assert_eq!(certs[0].retired_at, None);
        assert_eq!(certs[1].retired_at, Some(2400));
        assert!(matches!(
            store.reinstate_party(&PartyKey::new("", "nobody"), None, 1),
            Err(StoreError::NotFound(_))
        ));
    }
}
