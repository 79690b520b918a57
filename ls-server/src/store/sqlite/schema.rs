//! The schema and its migrations (`PRAGMA user_version`).

use super::*;

/// Schema migrations: `MIGRATIONS[i]` takes `PRAGMA user_version` from `i` to `i + 1`. Append
/// only; never edit a released entry.
const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5];

/// The schema version this program writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) const SCHEMA_V1: &str = "
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
/// 100 MiB, `coordination::DEFAULT_MAX_DOCUMENT_BYTES` as of this migration (4 GiB since)); messages get the
/// state `failed` with the refusal's class, notice and time, and the content fingerprint that
/// tells a retry from a reused MessageId (NULL for older rows: then only the recipient is
/// compared). SQLite cannot change a CHECK constraint, so `messages` is copied into a new table
/// (once; its AUTOINCREMENT counter is carried over, so `usage_ledger.message_seq` never names
/// two messages).
pub(super) const SCHEMA_V2: &str = "
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

/// Version 3 (issue 11): a message records the signed receipt that went back to its sender
/// (the receipt's MessageId and when the service accepted it), and the usage ledger tells
/// co-ordination messages (Service `urn:layersec:coordination`: refusal notices, receipts) from
/// documents. Ledger rows whose message record is still kept are marked from it; rows of
/// co-ordination messages whose records were already pruned stay counted as documents.
pub(super) const SCHEMA_V3: &str = "
ALTER TABLE messages ADD COLUMN receipt_message_id TEXT;
ALTER TABLE messages ADD COLUMN receipt_returned_at INTEGER;

ALTER TABLE usage_ledger ADD COLUMN coordination INTEGER NOT NULL DEFAULT 0
    CHECK (coordination IN (0, 1));
UPDATE usage_ledger SET coordination = 1 WHERE message_seq IN
    (SELECT seq FROM messages WHERE service = 'urn:layersec:coordination');
";

/// Version 4 (issue 12): enrolment codes. A code is stored as its keyed hash (never the code),
/// for one party id of one subscriber, with its expiry, and once used the time and the
/// certificate it enrolled (a retry with the same certificate is recognised); or revoked.
pub(super) const SCHEMA_V4: &str = "
CREATE TABLE enrolment_codes (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber_id     INTEGER NOT NULL REFERENCES subscribers(id),
    ptype             TEXT    NOT NULL,
    pid               TEXT    NOT NULL,
    code_hash         TEXT    NOT NULL UNIQUE,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    used_at           INTEGER,
    used_fingerprint  TEXT,
    revoked_at        INTEGER,
    CHECK (used_at IS NULL OR revoked_at IS NULL)
);
CREATE INDEX enrolment_codes_party ON enrolment_codes(ptype, pid);
CREATE INDEX enrolment_codes_subscriber ON enrolment_codes(subscriber_id);
";

/// Version 5 (SOAP over e-mail): a party may have a mail address; the service's e-mail gateway
/// submits the messages waiting for it by SMTP to that address, and mails the answers to its
/// pushes by mail there. NULL: the party pulls over HTTPS (every party before this version).
pub(super) const SCHEMA_V5: &str = "
ALTER TABLE parties ADD COLUMN mail_address TEXT;
CREATE INDEX parties_mail_address ON parties(mail_address) WHERE mail_address IS NOT NULL;
";

pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
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
