//! Moving an SQLite store into PostgreSQL (`layersec-server migrate-store`).
//!
//! [`transfer`] copies everything an SQLite store holds — subscribers, parties (mail address,
//! document limit), certificates with their history, enrolment codes and the enrolment key,
//! every message record in every state with its receipts and refusal records, the bodies
//! (inline and in payload files) and the usage ledger — into an empty PostgreSQL database, in
//! one PostgreSQL transaction: all of it arrives, or nothing does.
//!
//! - Ids are kept (subscriber, party, certificate, enrolment code, message `seq`, ledger row),
//!   so references between rows and in operators' records stay valid; the identity sequences
//!   are then advanced past the largest id SQLite ever gave (its `sqlite_sequence`, which
//!   remembers the ids of pruned rows, so a ledger row never names two messages).
//! - A leased message becomes waiting, its lease cleared: it is offered again (its attempts
//!   stay counted). Every other state is copied as it is.
//! - Bodies up to `inline_max` bytes go into the message row; larger ones into
//!   `payload_chunks`, [`CHUNK_BYTES`] at a time, read one chunk at a time from the payload
//!   file: no body is ever whole in memory.
//! - The source: held exclusively by the folder's [`ServiceLock`] (refused while a service
//!   runs on it), opened read-only (nothing in it is written; SQLite may create the empty
//!   `-wal`/`-shm` files a reader needs) and read in one read transaction, so the copy is one
//!   snapshot. A write by another process during the copy (an `admin` command) is noticed
//!   (`PRAGMA data_version`) and the copy is rolled back.
//! - The destination: the schema is applied when missing (as `layersec-server migrate`), the
//!   tables are locked against writers, and they must all be empty: nothing is merged.
//! - Before the commit, the copy is checked against the source: rows of every table, messages
//!   per state (leased ones counted as waiting), bodies and their bytes, and a SHA-256 over
//!   every body as read back from PostgreSQL ([`Counts::bodies_sha256`]). A difference rolls
//!   everything back.

use super::postgres::{pool::Pool, schema, url_has_password, PgOptions, CHUNK_BYTES};
use super::sqlite::{self, ServiceLock, DB_FILE, ENROLMENT_KEY_FILE, PAYLOAD_DIR};
use super::{StoreError, StoreResult, Unix};
use ::postgres::types::ToSql;
use ::postgres::Transaction;
use openssl::sha::Sha256;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The advisory lock a transfer holds on the destination ("LSXFER").
pub const TRANSFER_LOCK: i64 = 0x4c53_5846_4552;

/// The destination's tables, which must be empty.
const TABLES: &[&str] = &[
    "subscribers",
    "parties",
    "certificates",
    "enrolment_codes",
    "messages",
    "payload_chunks",
    "usage_ledger",
    "service_secrets",
];

/// Identity columns moved past the copied ids.
const SEQUENCES: &[(&str, &str)] = &[
    ("subscribers", "id"),
    ("parties", "id"),
    ("certificates", "id"),
    ("enrolment_codes", "id"),
    ("messages", "seq"),
    ("usage_ledger", "id"),
];

/// How a column is copied: SQLite's value as PostgreSQL's type (NULL stays NULL).
#[derive(Clone, Copy)]
enum Col {
    /// INTEGER → BIGINT.
    Int,
    /// INTEGER → INTEGER.
    Int4,
    /// INTEGER 0/1 → BOOLEAN.
    Bool,
    Text,
    /// BLOB → BYTEA.
    Bytes,
}

use Col::*;

const SUBSCRIBERS: &[(&str, Col)] = &[
    ("id", Int),
    ("organisation", Text),
    ("contact", Text),
    ("contract_ref", Text),
    ("plan", Text),
    ("status", Text),
    ("created_at", Int),
];

const PARTIES: &[(&str, Col)] = &[
    ("id", Int),
    ("subscriber_id", Int),
    ("ptype", Text),
    ("pid", Text),
    ("mpc", Text),
    ("status", Text),
    ("created_at", Int),
    ("revoked_at", Int),
    ("max_document_bytes", Int),
    ("mail_address", Text),
];

const CERTIFICATES: &[(&str, Col)] = &[
    ("id", Int),
    ("party_id", Int),
    ("der", Bytes),
    ("fingerprint", Text),
    ("registered_at", Int),
    ("retired_at", Int),
];

const ENROLMENT_CODES: &[(&str, Col)] = &[
    ("id", Int),
    ("subscriber_id", Int),
    ("ptype", Text),
    ("pid", Text),
    ("code_hash", Text),
    ("created_at", Int),
    ("expires_at", Int),
    ("used_at", Int),
    ("used_fingerprint", Text),
    ("revoked_at", Int),
];

const USAGE_LEDGER: &[(&str, Col)] = &[
    ("id", Int),
    ("subscriber_id", Int),
    ("party_ptype", Text),
    ("party_id", Text),
    ("kind", Text),
    ("at", Int),
    ("bytes", Int),
    ("message_seq", Int),
    ("coordination", Bool),
];

/// The columns of `messages` copied as they are; `state` and `lease_until` are selected with
/// a leased message made waiting (see [`MESSAGE_SELECT`]); the body is copied apart.
const MESSAGES: &[(&str, Col)] = &[
    ("seq", Int),
    ("sender_ptype", Text),
    ("sender_id", Text),
    ("recipient_ptype", Text),
    ("recipient_id", Text),
    ("mpc", Text),
    ("message_id", Text),
    ("conversation_id", Text),
    ("service", Text),
    ("action", Text),
    ("content_type", Text),
    ("size", Int),
    ("receipt_content_type", Text),
    ("receipt", Bytes),
    ("state", Text),
    ("received_at", Int),
    ("lease_until", Int),
    ("attempts", Int4),
    ("delivered_at", Int),
    ("recipient_receipt", Bytes),
    ("content_sha256", Text),
    ("failure_class", Text),
    ("failure_notice_id", Text),
    ("failed_at", Int),
    ("receipt_message_id", Text),
    ("receipt_returned_at", Int),
];

/// The SQLite expression of each of [`MESSAGES`]' columns (a leased message becomes
/// waiting, its lease cleared), then `body` and `body_file`.
fn message_select() -> String {
    let cols: Vec<&str> = MESSAGES
        .iter()
        .map(|(c, _)| match *c {
            "state" => "CASE state WHEN 'leased' THEN 'waiting' ELSE state END",
            "lease_until" => "CASE state WHEN 'leased' THEN NULL ELSE lease_until END",
            c => c,
        })
        .collect();
    format!(
        "SELECT {}, body, body_file FROM messages ORDER BY seq",
        cols.join(", ")
    )
}

/// What one side holds, compared between source and destination.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub subscribers: u64,
    pub parties: u64,
    pub certificates: u64,
    pub enrolment_codes: u64,
    pub usage_rows: u64,
    /// Message records per state.
    pub messages: BTreeMap<String, u64>,
    /// Messages that have a body (purged, expired and failed ones have none).
    pub bodies: u64,
    pub body_bytes: u64,
    /// Hex SHA-256 over, for every message with a body in `seq` order, its `seq` (8 bytes,
    /// big-endian) and the SHA-256 of its body: the source's from the bytes read from SQLite
    /// and the payload files, the destination's from the bytes read back from PostgreSQL.
    pub bodies_sha256: String,
    /// Whether the enrolment codes' key is there (the SQLite store makes it on first use).
    pub enrolment_key: bool,
}

/// What [`transfer`] did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The SQLite store's folder.
    pub from: String,
    /// The PostgreSQL connection string (it carries no password).
    pub to: String,
    /// The destination's schema version before (0: it had none and was migrated).
    pub schema_version_before: i64,
    pub schema_version: i64,
    /// As found in SQLite.
    pub source: Counts,
    /// As committed in PostgreSQL (checked equal to the source, leased counted as waiting).
    pub destination: Counts,
    /// Leased messages copied as waiting (offered again).
    pub leased_made_waiting: u64,
    /// Bodies kept in message rows and in chunks, and the chunks.
    pub inline_bodies: u64,
    pub chunked_bodies: u64,
    pub chunks: u64,
    /// The id each table gives its next row.
    pub next_ids: BTreeMap<String, i64>,
    pub seconds: f64,
}

impl Report {
    /// The report for people.
    pub fn text(&self) -> String {
        let s = &self.source;
        let d = &self.destination;
        let mut t = String::new();
        let _ = writeln!(t, "Moved the SQLite store {} into {}", self.from, self.to);
        let _ = writeln!(
            t,
            "(schema version {} found, {} now), checked before the commit, in {:.1} s:",
            self.schema_version_before, self.schema_version, self.seconds
        );
        let _ = writeln!(t, "  {:<22} {:>12} {:>12}", "", "SQLite", "PostgreSQL");
        let mut line = |name: &str, a: u64, b: u64| {
            let _ = writeln!(t, "  {name:<22} {a:>12} {b:>12}");
        };
        line("subscribers", s.subscribers, d.subscribers);
        line("parties", s.parties, d.parties);
        line("certificates", s.certificates, d.certificates);
        line("enrolment codes", s.enrolment_codes, d.enrolment_codes);
        line("usage ledger rows", s.usage_rows, d.usage_rows);
        let states: std::collections::BTreeSet<&String> =
            s.messages.keys().chain(d.messages.keys()).collect();
        for state in states {
            line(
                &format!("messages {state}"),
                s.messages.get(state).copied().unwrap_or(0),
                d.messages.get(state).copied().unwrap_or(0),
            );
        }
        line("bodies", s.bodies, d.bodies);
        line("body bytes", s.body_bytes, d.body_bytes);
        line(
            "enrolment key",
            u64::from(s.enrolment_key),
            u64::from(d.enrolment_key),
        );
        let _ = writeln!(t, "  bodies SHA-256 (both)  {}", d.bodies_sha256);
        let _ = writeln!(
            t,
            "Leased messages made waiting (offered again): {}. Bodies in rows: {}, in chunks: \
             {} ({} chunks).",
            self.leased_made_waiting, self.inline_bodies, self.chunked_bodies, self.chunks
        );
        let next: Vec<String> = self
            .next_ids
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(t, "Next ids: {}.", next.join(", "));
        t
    }
}

/// Copy the SQLite store in the folder `from` into the empty PostgreSQL database `to`
/// (its `url`, `password`, `tls`, `ca_file` and `inline_max`; one connection), checked,
/// in one transaction. The schema is applied first when the database lacks it. See the
/// module's documentation.
pub fn transfer(from: &Path, to: &PgOptions, now: Unix) -> StoreResult<Report> {
    let started = Instant::now();
    let db = from.join(DB_FILE);
    if !db.is_file() {
        return Err(StoreError::NotFound(format!(
            "{}: no SQLite store here (no {DB_FILE})",
            from.display()
        )));
    }
    if url_has_password(&to.url).map_err(StoreError::Invalid)? {
        return Err(StoreError::Invalid(
            "the connection URL carries a password: give it in a file".into(),
        ));
    }
    let _lock = ServiceLock::exclusive(from)?;
    let mut src = Connection::open_with_flags(
        &db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(sqlite::BUSY_TIMEOUT)?;
    let version: i64 = src.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version != sqlite::SCHEMA_VERSION {
        return Err(StoreError::Invalid(format!(
            "{}: SQLite schema version {version}; this program moves version {} only (open \
             the store once with this version, e.g. `layersec-server admin … subscriber list`, \
             to bring it up to date)",
            db.display(),
            sqlite::SCHEMA_VERSION
        )));
    }

    let pool = Pool::new(&PgOptions {
        max_connections: 1,
        ..to.clone()
    })?;
    let mut conn = pool.get()?;
    let schema_version_before = schema::migrate(&mut conn, now)?;
    schema::check(&mut conn)?;

    // One snapshot of the source for everything below.
    let snapshot = src.transaction()?;
    let source = source_counts(&snapshot, from)?;
    refuse_recipient_duplicates(&snapshot)?;
    let written_at_start = data_version(&snapshot)?;

    let mut tx = conn.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&TRANSFER_LOCK])?;
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        TABLES.join(", ")
    ))?;
    refuse_nonempty(&mut tx)?;

    let mut copied = Copied::default();
    copy_table(&snapshot, &mut tx, "subscribers", SUBSCRIBERS)?;
    copy_table(&snapshot, &mut tx, "parties", PARTIES)?;
    copy_table(&snapshot, &mut tx, "certificates", CERTIFICATES)?;
    copy_table(&snapshot, &mut tx, "enrolment_codes", ENROLMENT_CODES)?;
    copy_messages(&snapshot, &mut tx, from, to.inline_max, &mut copied)?;
    copy_table(&snapshot, &mut tx, "usage_ledger", USAGE_LEDGER)?;
    copy_enrolment_key(&mut tx, from)?;
    let next_ids = advance_sequences(&snapshot, &mut tx)?;

    snapshot.commit()?;
    if data_version(&src)? != written_at_start {
        return Err(StoreError::Conflict(format!(
            "{}: another process wrote to the store during the copy (an `admin` command?); \
             nothing was committed to PostgreSQL: run migrate-store again with nothing else \
             using the store",
            from.display()
        )));
    }

    let mut destination = destination_counts(&mut tx)?;
    destination.bodies_sha256 = copied.dest_digest.clone();
    let mut expected = source.clone();
    expected.bodies_sha256 = copied.source_digest.clone();
    let leased = expected.messages.remove("leased").unwrap_or(0);
    if leased > 0 {
        *expected.messages.entry("waiting".into()).or_insert(0) += leased;
    }
    if destination != expected {
        return Err(StoreError::Backend(format!(
            "the copy differs from the source (nothing was committed): expected {expected:?}, \
             found {destination:?}"
        )));
    }
    tx.commit()?;

    let mut source = source;
    source.bodies_sha256 = copied.source_digest;
    Ok(Report {
        from: from.display().to_string(),
        to: to.url.clone(),
        schema_version_before,
        schema_version: schema::SCHEMA_VERSION,
        source,
        destination,
        leased_made_waiting: leased,
        inline_bodies: copied.inline,
        chunked_bodies: copied.chunked,
        chunks: copied.chunks,
        next_ids,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn data_version(c: &Connection) -> StoreResult<i64> {
    Ok(c.pragma_query_value(None, "data_version", |r| r.get(0))?)
}

fn count_sqlite(c: &Connection, sql: &str) -> StoreResult<u64> {
    Ok(to_u64(c.query_row(sql, [], |r| r.get::<_, i64>(0))?))
}

fn source_counts(c: &Connection, dir: &Path) -> StoreResult<Counts> {
    let mut messages = BTreeMap::new();
    {
        let mut stmt = c.prepare("SELECT state, COUNT(*) FROM messages GROUP BY state")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            messages.insert(r.get::<_, String>(0)?, to_u64(r.get(1)?));
        }
    }
    let enrolment_key = match std::fs::metadata(dir.join(ENROLMENT_KEY_FILE)) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_err(dir.join(ENROLMENT_KEY_FILE), e)),
    };
    Ok(Counts {
        subscribers: count_sqlite(c, "SELECT COUNT(*) FROM subscribers")?,
        parties: count_sqlite(c, "SELECT COUNT(*) FROM parties")?,
        certificates: count_sqlite(c, "SELECT COUNT(*) FROM certificates")?,
        enrolment_codes: count_sqlite(c, "SELECT COUNT(*) FROM enrolment_codes")?,
        usage_rows: count_sqlite(c, "SELECT COUNT(*) FROM usage_ledger")?,
        messages,
        bodies: count_sqlite(
            c,
            "SELECT COUNT(*) FROM messages WHERE body IS NOT NULL OR body_file IS NOT NULL",
        )?,
        body_bytes: count_sqlite(
            c,
            "SELECT COALESCE(SUM(size), 0) FROM messages \
             WHERE body IS NOT NULL OR body_file IS NOT NULL",
        )?,
        bodies_sha256: String::new(),
        enrolment_key,
    })
}

/// PostgreSQL refuses two records of one MessageId for one recipient (a constraint SQLite's
/// store keeps in code): named here rather than as a constraint violation half-way.
fn refuse_recipient_duplicates(c: &Connection) -> StoreResult<()> {
    let dup: Option<(String, String, String)> = c
        .query_row(
            "SELECT recipient_ptype, recipient_id, message_id FROM messages \
             GROUP BY recipient_ptype, recipient_id, message_id HAVING COUNT(*) > 1 LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    match dup {
        None => Ok(()),
        Some((ptype, id, message_id)) => Err(StoreError::Conflict(format!(
            "the SQLite store holds two messages with MessageId {message_id} for the \
             recipient {}, which PostgreSQL's schema does not allow; nothing was copied",
            super::PartyKey::new(&ptype, &id)
        ))),
    }
}

fn refuse_nonempty(tx: &mut Transaction<'_>) -> StoreResult<()> {
    let mut held = Vec::new();
    for t in TABLES {
        let n: i64 = tx
            .query_one(&format!("SELECT COUNT(*) FROM {t}"), &[])?
            .get(0);
        if n > 0 {
            held.push(format!("{t}: {n}"));
        }
    }
    if held.is_empty() {
        return Ok(());
    }
    Err(StoreError::Conflict(format!(
        "the PostgreSQL database is not empty ({}): migrate-store copies into an empty \
         database only, so that ids stay the same and nothing is merged or copied twice; \
         nothing was written (use a new database, made with `layersec-server migrate`)",
        held.join(", ")
    )))
}

/// SQLite's value of column `i` as a PostgreSQL parameter of the column's type.
fn value(r: &rusqlite::Row<'_>, i: usize, col: Col) -> StoreResult<Box<dyn ToSql + Sync>> {
    Ok(match col {
        Int => Box::new(r.get::<_, Option<i64>>(i)?),
        Int4 => Box::new(
            r.get::<_, Option<i64>>(i)?
                .map(i32::try_from)
                .transpose()
                .map_err(|_| StoreError::Invalid(format!("column {i}: value out of range")))?,
        ),
        Bool => Box::new(r.get::<_, Option<i64>>(i)?.map(|v| v != 0)),
        Text => Box::new(r.get::<_, Option<String>>(i)?),
        Bytes => Box::new(r.get::<_, Option<Vec<u8>>>(i)?),
    })
}

fn insert_sql(table: &str, cols: &[&str]) -> String {
    let marks: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {table} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
        cols.join(", "),
        marks.join(", ")
    )
}

fn params(v: &[Box<dyn ToSql + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    v.iter().map(|b| b.as_ref()).collect()
}

/// Copy `table`'s rows, column for column, in id order.
fn copy_table(
    src: &Connection,
    tx: &mut Transaction<'_>,
    table: &str,
    cols: &[(&str, Col)],
) -> StoreResult<u64> {
    let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
    let insert = tx.prepare(&insert_sql(table, &names))?;
    let mut stmt = src.prepare(&format!(
        "SELECT {} FROM {table} ORDER BY {}",
        names.join(", "),
        names[0]
    ))?;
    let mut rows = stmt.query([])?;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        let v = cols
            .iter()
            .enumerate()
            .map(|(i, (_, col))| value(r, i, *col))
            .collect::<StoreResult<Vec<_>>>()?;
        tx.execute(&insert, &params(&v))
            .map_err(|e| StoreError::Backend(format!("{table}, row {n}: postgres: {e}")))?;
        n += 1;
    }
    Ok(n)
}

#[derive(Default)]
struct Copied {
    inline: u64,
    chunked: u64,
    chunks: u64,
    /// The [`Counts::bodies_sha256`] of what was read from SQLite, and of what was read back.
    source_digest: String,
    dest_digest: String,
}

/// Where a message's body is in the SQLite store.
enum Body {
    None,
    Inline(Vec<u8>),
    File(PathBuf),
}

fn io_err(path: PathBuf, e: std::io::Error) -> StoreError {
    StoreError::Io {
        context: path.display().to_string(),
        source: e,
    }
}

fn copy_messages(
    src: &Connection,
    tx: &mut Transaction<'_>,
    dir: &Path,
    inline_max: usize,
    copied: &mut Copied,
) -> StoreResult<()> {
    let mut names: Vec<&str> = MESSAGES.iter().map(|(c, _)| *c).collect();
    names.extend(["body", "chunked"]);
    let insert = tx.prepare(&insert_sql("messages", &names))?;
    let insert_chunk =
        tx.prepare("INSERT INTO payload_chunks (message_seq, n, data) VALUES ($1, $2, $3)")?;
    let payloads = dir.join(PAYLOAD_DIR);
    let mut source_all = Sha256::new();
    let mut dest_all = Sha256::new();
    let mut stmt = src.prepare(&message_select())?;
    let mut rows = stmt.query([])?;
    let n = MESSAGES.len();
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let size: i64 = r.get(11)?;
        let mut v = MESSAGES
            .iter()
            .enumerate()
            .map(|(i, (_, col))| value(r, i, *col))
            .collect::<StoreResult<Vec<_>>>()?;
        let body = match (
            r.get::<_, Option<Vec<u8>>>(n)?,
            r.get::<_, Option<String>>(n + 1)?,
        ) {
            (Some(b), _) => Body::Inline(b),
            (None, Some(name)) => Body::File(payload_path(&payloads, seq, &name)?),
            (None, None) => Body::None,
        };
        let len = match &body {
            Body::None => None,
            Body::Inline(b) => Some(b.len() as u64),
            Body::File(p) => Some(
                std::fs::metadata(p)
                    .map_err(|e| io_err(p.clone(), e))?
                    .len(),
            ),
        };
        if let Some(len) = len {
            if len != to_u64(size) {
                return Err(StoreError::Backend(format!(
                    "message {seq}: its body has {len} bytes, its record says {size}; nothing \
                     was copied"
                )));
            }
        }
        let chunked = len.is_some_and(|l| l > inline_max as u64);
        // A small file body is read whole: it goes into the row.
        let body = match body {
            Body::File(p) if !chunked => {
                Body::Inline(std::fs::read(&p).map_err(|e| io_err(p.clone(), e))?)
            }
            b => b,
        };
        let row_body: Option<Vec<u8>> = match &body {
            Body::Inline(b) if !chunked => Some(b.clone()),
            _ => None,
        };
        v.push(Box::new(row_body));
        v.push(Box::new(chunked));
        tx.execute(&insert, &params(&v))
            .map_err(|e| StoreError::Backend(format!("message {seq}: postgres: {e}")))?;
        if len.is_none() {
            continue;
        }
        let mut digest = Sha256::new();
        if chunked {
            let mut count: i32 = 0;
            let mut put = |tx: &mut Transaction<'_>, chunk: &[u8]| -> StoreResult<()> {
                digest.update(chunk);
                tx.execute(&insert_chunk, &[&seq, &count, &chunk])?;
                count += 1;
                Ok(())
            };
            match &body {
                Body::Inline(b) => {
                    for chunk in b.chunks(CHUNK_BYTES) {
                        put(tx, chunk)?;
                    }
                }
                Body::File(p) => {
                    let mut file = std::fs::File::open(p).map_err(|e| io_err(p.clone(), e))?;
                    let mut buf = Vec::with_capacity(CHUNK_BYTES);
                    loop {
                        buf.clear();
                        (&mut file)
                            .take(CHUNK_BYTES as u64)
                            .read_to_end(&mut buf)
                            .map_err(|e| io_err(p.clone(), e))?;
                        if buf.is_empty() {
                            break;
                        }
                        put(tx, &buf)?;
                    }
                }
                Body::None => {}
            }
            copied.chunks += count as u64;
            copied.chunked += 1;
        } else {
            if let Body::Inline(b) = &body {
                digest.update(b);
            }
            copied.inline += 1;
        }
        let source = digest.finish();
        let (dest, dest_len) = read_back(tx, seq)?;
        if dest != source || Some(dest_len) != len {
            return Err(StoreError::Backend(format!(
                "message {seq}: the body read back from PostgreSQL differs from the source \
                 ({dest_len} bytes); nothing was committed"
            )));
        }
        source_all.update(&seq.to_be_bytes());
        source_all.update(&source);
        dest_all.update(&seq.to_be_bytes());
        dest_all.update(&dest);
    }
    copied.source_digest = ls_core::bytes::hex(&source_all.finish());
    copied.dest_digest = ls_core::bytes::hex(&dest_all.finish());
    Ok(())
}

/// A payload file's path; the name is checked as the SQLite store checks it.
fn payload_path(payloads: &Path, seq: i64, name: &str) -> StoreResult<PathBuf> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(StoreError::Backend(format!(
            "message {seq}: bad payload file name {name:?} in the database"
        )));
    }
    Ok(payloads.join(name))
}

/// The SHA-256 and length of message `seq`'s body as PostgreSQL holds it, read one chunk at
/// a time.
fn read_back(tx: &mut Transaction<'_>, seq: i64) -> StoreResult<([u8; 32], u64)> {
    let r = tx.query_one("SELECT body, chunked FROM messages WHERE seq = $1", &[&seq])?;
    let mut digest = Sha256::new();
    let mut len = 0u64;
    if r.try_get::<_, bool>(1)? {
        let stmt =
            tx.prepare("SELECT data FROM payload_chunks WHERE message_seq = $1 AND n = $2")?;
        let mut n: i32 = 0;
        while let Some(c) = tx.query_opt(&stmt, &[&seq, &n])? {
            let data: &[u8] = c.try_get(0)?;
            digest.update(data);
            len += data.len() as u64;
            n += 1;
        }
    } else if let Some(b) = r.try_get::<_, Option<&[u8]>>(0)? {
        digest.update(b);
        len = b.len() as u64;
    }
    Ok((digest.finish(), len))
}

/// The enrolment key file, when the SQLite store made one, as the shared secret.
fn copy_enrolment_key(tx: &mut Transaction<'_>, dir: &Path) -> StoreResult<()> {
    let path = dir.join(ENROLMENT_KEY_FILE);
    let key = match std::fs::read(&path) {
        Ok(k) => zeroize::Zeroizing::new(k),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path, e)),
    };
    if key.len() != 32 {
        return Err(StoreError::Backend(format!(
            "{} is damaged (not 32 bytes): the SQLite store refuses it too",
            path.display()
        )));
    }
    tx.execute(
        "INSERT INTO service_secrets (name, value) VALUES ($1, $2)",
        &[&schema::ENROLMENT_KEY_SECRET, &key.as_slice()],
    )?;
    Ok(())
}

/// Move each identity sequence past the largest id SQLite gave (its `sqlite_sequence`, or
/// the largest id present); returns each table's next id.
fn advance_sequences(
    src: &Connection,
    tx: &mut Transaction<'_>,
) -> StoreResult<BTreeMap<String, i64>> {
    let has_sequence: bool = src.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'sqlite_sequence'",
        [],
        |r| r.get(0),
    )?;
    let mut next = BTreeMap::new();
    for (table, col) in SEQUENCES {
        let mut last: i64 = src.query_row(
            &format!("SELECT COALESCE(MAX({col}), 0) FROM {table}"),
            [],
            |r| r.get(0),
        )?;
        if has_sequence {
            let given: Option<i64> = src
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .optional()?;
            last = last.max(given.unwrap_or(0));
        }
        tx.execute(
            "SELECT setval(pg_get_serial_sequence($1, $2), $3, $4)",
            &[table, col, &last.max(1), &(last > 0)],
        )?;
        next.insert(table.to_string(), last + 1);
    }
    Ok(next)
}

fn destination_counts(tx: &mut Transaction<'_>) -> StoreResult<Counts> {
    let mut count = |sql: &str| -> StoreResult<u64> {
        Ok(to_u64(tx.query_one(sql, &[])?.try_get::<_, i64>(0)?))
    };
    let mut c = Counts {
        subscribers: count("SELECT COUNT(*) FROM subscribers")?,
        parties: count("SELECT COUNT(*) FROM parties")?,
        certificates: count("SELECT COUNT(*) FROM certificates")?,
        enrolment_codes: count("SELECT COUNT(*) FROM enrolment_codes")?,
        usage_rows: count("SELECT COUNT(*) FROM usage_ledger")?,
        messages: BTreeMap::new(),
        bodies: count("SELECT COUNT(*) FROM messages WHERE body IS NOT NULL OR chunked")?,
        body_bytes: count(
            "SELECT ((SELECT COALESCE(SUM(length(body)), 0) FROM messages) \
             + (SELECT COALESCE(SUM(length(data)), 0) FROM payload_chunks))::BIGINT",
        )?,
        bodies_sha256: String::new(),
        enrolment_key: count(&format!(
            "SELECT COUNT(*) FROM service_secrets WHERE name = '{}'",
            schema::ENROLMENT_KEY_SECRET
        ))? > 0,
    };
    for r in tx.query("SELECT state, COUNT(*) FROM messages GROUP BY state", &[])? {
        c.messages
            .insert(r.try_get(0)?, to_u64(r.try_get::<_, i64>(1)?));
    }
    Ok(c)
}
