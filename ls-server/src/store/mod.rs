//! Storage of accounts, parties, certificates and messages.
//!
//! [`Store`] is what the service needs from a store; [`sqlite::SqliteStore`] is the embedded
//! default. The trait is written so that a store shared by several service nodes (PostgreSQL)
//! fits it: every operation is one transaction, and [`Store::claim_next`] must hand a message to
//! at most one puller even when two nodes claim from the same MPC at once (PostgreSQL:
//! `SELECT … FOR UPDATE SKIP LOCKED`; SQLite: one writer at a time).

pub mod sqlite;

use std::fmt;

/// Seconds since the Unix epoch.
pub type Unix = i64;

/// Store failures. `Conflict` and `NotFound` are the caller's fault; `Backend` and `Io` are the
/// store's and are reported to clients as a transient (HTTP 503) failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("store: {0}")]
    Backend(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// A party as ebMS names it: `PartyId` text and its optional `type` attribute ("" when absent).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartyKey {
    pub ptype: String,
    pub id: String,
}

impl PartyKey {
    pub fn new(ptype: &str, id: &str) -> PartyKey {
        PartyKey {
            ptype: ptype.to_string(),
            id: id.to_string(),
        }
    }
}

impl fmt::Display for PartyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ptype.is_empty() {
            f.write_str(&self.id)
        } else {
            write!(f, "{}::{}", self.ptype, self.id)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    Suspended,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
        }
    }
}

#[derive(Clone, Debug)]
pub struct NewSubscriber {
    pub organisation: String,
    pub contact: String,
    pub contract_ref: String,
    pub plan: String,
}

#[derive(Clone, Debug)]
pub struct Subscriber {
    pub id: i64,
    pub organisation: String,
    pub contact: String,
    pub contract_ref: String,
    pub plan: String,
    pub status: AccountStatus,
    pub created_at: Unix,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartyStatus {
    Active,
    Revoked,
}

impl PartyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PartyStatus::Active => "active",
            PartyStatus::Revoked => "revoked",
        }
    }
}

/// A registered party (an "installation").
#[derive(Clone, Debug)]
pub struct Party {
    pub key: PartyKey,
    pub subscriber_id: i64,
    /// The status of the party itself; its account may still be suspended.
    pub status: PartyStatus,
    pub account_status: AccountStatus,
    /// Where messages to this party wait.
    pub mpc: String,
    pub created_at: Unix,
    pub revoked_at: Option<Unix>,
}

impl Party {
    /// Active party of an active account.
    pub fn is_usable(&self) -> bool {
        self.status == PartyStatus::Active && self.account_status == AccountStatus::Active
    }
}

/// A certificate registered for a party.
#[derive(Clone, Debug)]
pub struct PartyCert {
    pub der: Vec<u8>,
    /// Lower-case hex SHA-256 of the DER.
    pub fingerprint: String,
    pub registered_at: Unix,
    /// Set when the certificate was replaced: it is still accepted until then (the overlap).
    pub retired_at: Option<Unix>,
}

impl PartyCert {
    pub fn is_current(&self, now: Unix) -> bool {
        !matches!(self.retired_at, Some(t) if now >= t)
    }
}

/// A message accepted by the push endpoint, with the receipt the service returned for it.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub sender: PartyKey,
    pub recipient: PartyKey,
    /// The recipient's MPC at acceptance.
    pub mpc: String,
    pub message_id: String,
    pub conversation_id: String,
    pub service: String,
    pub action: String,
    /// The HTTP Content-Type and body exactly as received (what the sender signed).
    pub content_type: String,
    pub body: Vec<u8>,
    /// The signed receipt returned to the sender (returned again for a duplicate).
    pub receipt_content_type: String,
    pub receipt: Vec<u8>,
    pub received_at: Unix,
}

/// What `accept` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Stored, committed and synced.
    Stored,
    /// The same sender already sent this MessageId: nothing stored, here is the first receipt.
    Duplicate {
        receipt_content_type: String,
        receipt: Vec<u8>,
    },
}

/// A message handed to a puller.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub message_id: String,
    pub sender: PartyKey,
    pub recipient: PartyKey,
    pub content_type: String,
    pub body: Vec<u8>,
    /// 1 for the first offer, 2 when offered again after the lease ran out, …
    pub attempt: u32,
}

/// What [`Store::mark_delivered`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Now delivered.
    Delivered,
    /// Was already delivered (a repeated receipt).
    AlreadyDelivered,
    /// No message with that id waits for that recipient.
    Unknown,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Delivered messages whose bodies were removed after the retention time.
    pub delivered: u64,
    /// Undelivered messages that expired (their record stays, state `expired`).
    pub expired: u64,
}

/// Usage of one account in a period (for billing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub subscriber_id: i64,
    pub organisation: String,
    /// Messages accepted from the account's parties, and their bytes.
    pub sent_messages: u64,
    pub sent_bytes: u64,
    /// Messages delivered to the account's parties (receipted by them), and their bytes.
    pub received_messages: u64,
    pub received_bytes: u64,
}

/// A message's record, for administration (no body).
#[derive(Clone, Debug)]
pub struct MessageRecord {
    pub message_id: String,
    pub sender: PartyKey,
    pub recipient: PartyKey,
    pub state: String,
    pub size: u64,
    pub received_at: Unix,
    pub attempts: u32,
    pub delivered_at: Option<Unix>,
}

/// The storage the Messaging Service runs on. Every method is one transaction; methods that
/// change messages are durable (committed and synced) when they return `Ok`.
pub trait Store: Send + Sync {
    // --- accounts and installations
    fn create_subscriber(&self, s: &NewSubscriber, now: Unix) -> StoreResult<Subscriber>;
    fn subscriber(&self, id: i64) -> StoreResult<Option<Subscriber>>;
    fn subscribers(&self) -> StoreResult<Vec<Subscriber>>;
    fn set_account_status(&self, id: i64, status: AccountStatus) -> StoreResult<()>;
    /// Register a party with its first certificate. `Conflict` when the party exists (even revoked).
    fn register_party(
        &self,
        subscriber_id: i64,
        key: &PartyKey,
        mpc: &str,
        cert_der: &[u8],
        fingerprint: &str,
        now: Unix,
    ) -> StoreResult<Party>;
    /// Add a new certificate; the current ones are retired at `overlap_until` (≥ now).
    fn replace_certificate(
        &self,
        key: &PartyKey,
        cert_der: &[u8],
        fingerprint: &str,
        overlap_until: Unix,
        now: Unix,
    ) -> StoreResult<()>;
    fn revoke_party(&self, key: &PartyKey, now: Unix) -> StoreResult<()>;
    fn party(&self, key: &PartyKey) -> StoreResult<Option<Party>>;
    fn party_by_mpc(&self, mpc: &str) -> StoreResult<Option<Party>>;
    /// Parties (any status) that have or had a certificate with this fingerprint.
    fn parties_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Vec<Party>>;
    /// Every certificate ever registered for the party, newest first.
    fn certificates(&self, key: &PartyKey) -> StoreResult<Vec<PartyCert>>;
    fn parties(&self, subscriber_id: Option<i64>) -> StoreResult<Vec<Party>>;

    // --- messages
    /// Store a pushed message unless the same sender already sent its MessageId.
    fn accept(&self, m: &NewMessage) -> StoreResult<Accepted>;
    /// Hand out the oldest message of `mpc` that waits, or whose previous offer was not
    /// receipted before its lease ran out; it is leased until `now + lease_secs`.
    fn claim_next(&self, mpc: &str, now: Unix, lease_secs: i64) -> StoreResult<Option<Claimed>>;
    /// The recipient's receipt for `message_id` arrived.
    fn mark_delivered(
        &self,
        recipient: &PartyKey,
        message_id: &str,
        receipt: &[u8],
        now: Unix,
    ) -> StoreResult<Delivery>;
    /// Remove bodies of messages delivered before `delivered_before`; expire (drop body, keep
    /// record) messages received before `undelivered_before` and still not delivered.
    fn purge(&self, delivered_before: Unix, undelivered_before: Unix) -> StoreResult<Purged>;
    /// The recipients of messages with this MessageId (from any sender) that are still held.
    fn recipients_of(&self, message_id: &str) -> StoreResult<Vec<PartyKey>>;
    /// Messages waiting or leased, per recipient party.
    fn queue_depths(&self) -> StoreResult<Vec<(PartyKey, u64)>>;
    /// Records of messages sent by or to a party, newest first.
    fn messages(&self, party: Option<&PartyKey>, limit: u32) -> StoreResult<Vec<MessageRecord>>;
    /// Usage per account for messages accepted / delivered in `[from, to)`.
    fn usage(&self, from: Unix, to: Unix) -> StoreResult<Vec<Usage>>;
}
