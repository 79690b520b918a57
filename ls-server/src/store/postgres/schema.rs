//! The PostgreSQL schema and its migrations, recorded in a `schema_version` table.
//!
//! Migrations are applied only by an explicit call ([`migrate`]: `layersec-server init` or
//! `layersec-server migrate`), never by a serving node: [`check`] refuses a database whose
//! schema is older (or newer) than this program's, naming the command. Several nodes may run
//! `migrate` at once: it holds a transaction-level advisory lock ([`MIGRATE_LOCK`]).

use super::*;

/// Schema migrations: `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`. Append
/// only; never edit a released entry.
const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2];

/// The schema version this program writes and serves.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock key `migrate` holds (an arbitrary constant: "LSMIGRAT").
pub const MIGRATE_LOCK: i64 = 0x4c53_4d49_4752_4154;

/// Version 2: chunks stored uncompressed (`STORAGE EXTERNAL`: they are sealed, compressed
/// documents); what nodes share beyond the messages (`store::shared`): keys used once
/// (`shared_once`: nonces, pull MessageIds) and counts per window (`shared_counts`: requests
/// per minute, failures towards a lockout); and a notification on the channel
/// [`super::cache::CHANNEL`] after every statement that changes subscribers, parties or
/// certificates, on which nodes drop what they cached of them (`postgres::cache`).
pub(super) const SCHEMA_V2: &str = "
CREATE TABLE shared_once (
    scope       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    keep_until  BIGINT  NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX shared_once_keep_until ON shared_once(keep_until);

CREATE TABLE shared_counts (
    scope        TEXT     NOT NULL,
    key          TEXT     NOT NULL,
    since        BIGINT   NOT NULL,
    window_secs  BIGINT   NOT NULL,
    n            INTEGER  NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX shared_counts_end ON shared_counts((since + window_secs));

-- Chunks are compressed already (sealed documents) or not worth it: stored as they are,
-- without PostgreSQL trying to compress each 1 MiB row.
ALTER TABLE payload_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE FUNCTION layersec_directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('layersec_directory', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER subscribers_changed AFTER INSERT OR UPDATE OR DELETE ON subscribers
    FOR EACH STATEMENT EXECUTE FUNCTION layersec_directory_changed();
CREATE TRIGGER parties_changed AFTER INSERT OR UPDATE OR DELETE ON parties
    FOR EACH STATEMENT EXECUTE FUNCTION layersec_directory_changed();
CREATE TRIGGER certificates_changed AFTER INSERT OR UPDATE OR DELETE ON certificates
    FOR EACH STATEMENT EXECUTE FUNCTION layersec_directory_changed();
";

/// The `service_secrets` row of the enrolment codes' hash key: the one key of every node (the
/// SQLite store keeps it in its `enrolment.key` file; `migrate-store` copies it here).
pub const ENROLMENT_KEY_SECRET: &str = "enrolment_key";

/// Version 1: the tables of SQLite schema version 5 (see `store/sqlite/schema.rs`), with
/// PostgreSQL's types, and the decisions SQLite's store makes in code made by constraints:
/// a sender's MessageId is unique (`messages_sender_message_id`: duplicates and reused
/// MessageIds), and so is a recipient's (`messages_recipient_message_id`: a MessageId another
/// sender already used for the recipient). Bodies up to the store's `inline_max` are kept in
/// `messages.body`; larger ones in `payload_chunks`, rows of at most [`super::CHUNK_BYTES`],
/// removed with their message (a chunk is deleted only by a transaction that holds its
/// message's row lock, so a claim that locked the row reads whole bodies).
pub(super) const SCHEMA_V1: &str = "
CREATE TABLE subscribers (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation  TEXT    NOT NULL,
    contact       TEXT    NOT NULL,
    contract_ref  TEXT    NOT NULL,
    plan          TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at    BIGINT  NOT NULL
);

CREATE TABLE parties (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscriber_id       BIGINT  NOT NULL REFERENCES subscribers(id),
    ptype               TEXT    NOT NULL,
    pid                 TEXT    NOT NULL,
    mpc                 TEXT    NOT NULL UNIQUE,
    status              TEXT    NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at          BIGINT  NOT NULL,
    revoked_at          BIGINT,
    max_document_bytes  BIGINT  NOT NULL CHECK (max_document_bytes > 0),
    mail_address        TEXT,
    UNIQUE (ptype, pid)
);
CREATE INDEX parties_subscriber ON parties(subscriber_id);
CREATE INDEX parties_mail_address ON parties(mail_address) WHERE mail_address IS NOT NULL;

CREATE TABLE certificates (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    party_id       BIGINT  NOT NULL REFERENCES parties(id),
    der            BYTEA   NOT NULL,
    fingerprint    TEXT    NOT NULL,
    registered_at  BIGINT  NOT NULL,
    retired_at     BIGINT
);
CREATE INDEX certificates_party ON certificates(party_id);
CREATE INDEX certificates_fingerprint ON certificates(fingerprint);

CREATE TABLE messages (
    seq                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
    size                  BIGINT  NOT NULL CHECK (size >= 0),
    -- The body when it is small; NULL when it is in payload_chunks or gone.
    body                  BYTEA,
    chunked               BOOLEAN NOT NULL DEFAULT FALSE,
    receipt_content_type  TEXT    NOT NULL,
    receipt               BYTEA   NOT NULL,
    state                 TEXT    NOT NULL CHECK (state IN
        ('waiting', 'leased', 'delivered', 'expired', 'purged', 'failed')),
    received_at           BIGINT  NOT NULL,
    lease_until           BIGINT,
    attempts              INTEGER NOT NULL DEFAULT 0,
    delivered_at          BIGINT,
    recipient_receipt     BYTEA,
    content_sha256        TEXT,
    failure_class         TEXT,
    failure_notice_id     TEXT,
    failed_at             BIGINT,
    receipt_message_id    TEXT,
    receipt_returned_at   BIGINT,
    CHECK (body IS NULL OR NOT chunked),
    CONSTRAINT messages_sender_message_id UNIQUE (sender_ptype, sender_id, message_id),
    CONSTRAINT messages_recipient_message_id UNIQUE (recipient_ptype, recipient_id, message_id)
);
-- claim_next: the pending messages of an MPC in FIFO order (only pending rows are indexed).
CREATE INDEX messages_claim ON messages(mpc, seq) WHERE state IN ('waiting', 'leased');
CREATE INDEX messages_pending_recipient ON messages(recipient_ptype, recipient_id)
    WHERE state IN ('waiting', 'leased');
CREATE INDEX messages_message_id ON messages(message_id);
CREATE INDEX messages_pending_age ON messages(received_at) WHERE state IN ('waiting', 'leased');
CREATE INDEX messages_delivered_age ON messages(delivered_at) WHERE state = 'delivered';
CREATE INDEX messages_pending_sender ON messages(sender_ptype, sender_id, size)
    WHERE state IN ('waiting', 'leased');
CREATE INDEX messages_finished_age ON messages(received_at)
    WHERE state IN ('purged', 'expired', 'failed');

-- Bodies larger than inline_max, in order; each row at most CHUNK_BYTES.
CREATE TABLE payload_chunks (
    message_seq  BIGINT  NOT NULL REFERENCES messages(seq) ON DELETE CASCADE,
    n            INTEGER NOT NULL CHECK (n >= 0),
    data         BYTEA   NOT NULL,
    PRIMARY KEY (message_seq, n)
);

-- Billing: one row per message accepted ('sent') or delivered ('received'); independent of
-- the messages table, which is purged.
CREATE TABLE usage_ledger (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscriber_id  BIGINT,
    party_ptype    TEXT    NOT NULL,
    party_id       TEXT    NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN ('sent', 'received')),
    at             BIGINT  NOT NULL,
    bytes          BIGINT  NOT NULL,
    message_seq    BIGINT,
    coordination   BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX usage_ledger_subscriber_at ON usage_ledger(subscriber_id, at);

CREATE TABLE enrolment_codes (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscriber_id     BIGINT  NOT NULL REFERENCES subscribers(id),
    ptype             TEXT    NOT NULL,
    pid               TEXT    NOT NULL,
    code_hash         TEXT    NOT NULL UNIQUE,
    created_at        BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL,
    used_at           BIGINT,
    used_fingerprint  TEXT,
    revoked_at        BIGINT,
    CHECK (used_at IS NULL OR revoked_at IS NULL)
);
CREATE INDEX enrolment_codes_party ON enrolment_codes(ptype, pid);
-- At most one outstanding (neither used nor revoked) code per party id.
CREATE UNIQUE INDEX enrolment_codes_outstanding ON enrolment_codes(ptype, pid)
    WHERE used_at IS NULL AND revoked_at IS NULL;
CREATE INDEX enrolment_codes_subscriber ON enrolment_codes(subscriber_id);

-- Secrets shared by every node (the enrolment codes' hash key), made once.
CREATE TABLE service_secrets (
    name   TEXT  PRIMARY KEY,
    value  BYTEA NOT NULL
);
";

/// The schema version of the database (0: no schema yet).
pub fn version(c: &mut Client) -> StoreResult<i64> {
    let exists: bool = c
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i64> = c
        .query_one("SELECT MAX(version) FROM schema_version", &[])?
        .get(0);
    Ok(v.unwrap_or(0))
}

/// Bring the schema to [`SCHEMA_VERSION`]; returns the version found before. Refuses a newer
/// schema than this program knows.
pub fn migrate(c: &mut Client, now: Unix) -> StoreResult<i64> {
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version     BIGINT PRIMARY KEY,
             applied_at  BIGINT NOT NULL
         )",
    )?;
    let found: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version",
            &[],
        )?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(newer(found));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
            &[&(i as i64 + 1), &now],
        )?;
    }
    tx.commit()?;
    Ok(found)
}

/// Refuse to serve a database whose schema is not [`SCHEMA_VERSION`].
pub fn check(c: &mut Client) -> StoreResult<()> {
    let v = version(c)?;
    if v > SCHEMA_VERSION {
        return Err(newer(v));
    }
    if v < SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "the PostgreSQL database has schema version {v}; this program needs version \
             {SCHEMA_VERSION}: run `layersec-server migrate --config <file>` first (nodes \
             never migrate on their own)"
        )));
    }
    Ok(())
}

fn newer(v: i64) -> StoreError {
    StoreError::Backend(format!(
        "the PostgreSQL database has schema version {v}; this program knows up to \
         {SCHEMA_VERSION} (upgrade the program)"
    ))
}
