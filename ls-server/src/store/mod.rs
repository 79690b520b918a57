//! Storage of accounts, parties, certificates and messages.
//!
//! [`Store`] is what the service needs from a store; [`sqlite::SqliteStore`] is the embedded
//! default. The trait is written so that a store shared by several service nodes (PostgreSQL)
//! fits it: every operation is one transaction, and [`Store::claim_next`] must hand a message to
//! at most one puller even when two nodes claim from the same MPC at once (PostgreSQL:
//! `SELECT … FOR UPDATE SKIP LOCKED`; SQLite: one writer at a time).

pub mod postgres;
pub mod shared;
pub mod sqlite;
pub mod transfer;

use std::fmt;

/// Seconds since the Unix epoch.
pub type Unix = i64;

/// Store failures. `Conflict`, `NotFound`, `Invalid` and `Refused` are the caller's fault;
/// `LowSpace`, `Backend` and `Io` are the store's and are reported to clients as a transient
/// (HTTP 503) failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    /// A pushed message the store does not take, for good (see [`Refused`]).
    #[error("{0}")]
    Refused(Refused),
    /// Storing the message would leave less than the free-space reserve: transient (pulls,
    /// receipts and retention free space).
    #[error(
        "storing {needed} bytes would leave less than the free-space reserve of {reserve} bytes \
         ({available} bytes free)"
    )]
    LowSpace {
        available: u64,
        needed: u64,
        reserve: u64,
    },
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
    /// The largest document the party accepts (its client's `[limits] max_document_bytes`);
    /// messages to it may be [`ls_core::as4::coordination::message_limit_for`] this.
    pub max_document_bytes: u64,
    /// Where the service's e-mail gateway submits the messages waiting for the party (and its
    /// answers to the party's pushes by mail); `None`: the party pulls over HTTPS.
    pub mail_address: Option<String>,
}

/// The longest mail address (RFC 5321 §4.5.3.1.3: a path of 256 octets with its `<>`).
pub const MAX_MAIL_ADDRESS: usize = 254;

/// Why `a` is not a mail address a party can be registered with: one addr-spec
/// `local@domain`, ASCII, at most [`MAX_MAIL_ADDRESS`] characters, no spaces, control
/// characters, `<`, `>`, `,`, `;`, quotes or brackets (nothing that could smuggle a second
/// recipient or a header into a mail), a local part of at most 64 characters and a domain of
/// dot-separated labels.
pub fn check_mail_address(a: &str) -> std::result::Result<(), String> {
    let fail = |why: &str| Err(format!("mail address {a:?}: {why}"));
    if a.is_empty() {
        return fail("empty");
    }
    if a.len() > MAX_MAIL_ADDRESS {
        return fail(&format!("longer than {MAX_MAIL_ADDRESS} characters"));
    }
    if !a.is_ascii() {
        return fail("only ASCII characters");
    }
    if a.bytes()
        .any(|b| b.is_ascii_control() || b" <>,;:\"\\()[]".contains(&b))
    {
        return fail(
            "one address local@domain, without spaces, control characters, <>, commas, \
                     semicolons, colons, quotes, brackets or backslashes",
        );
    }
    let Some((local, domain)) = a.rsplit_once('@') else {
        return fail("expected local@domain");
    };
    if local.is_empty() || local.len() > 64 || local.contains('@') {
        return fail("expected one local part of 1 to 64 characters before the @");
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return fail("the local part neither starts nor ends with a dot nor has two in a row");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if domain.is_empty() || !domain.split('.').all(label_ok) {
        return fail("the domain is dot-separated labels of letters, digits and hyphens");
    }
    Ok(())
}

/// A party to register, with its first certificate.
#[derive(Clone, Copy, Debug)]
pub struct NewParty<'a> {
    pub subscriber_id: i64,
    pub key: &'a PartyKey,
    pub mpc: &'a str,
    pub cert_der: &'a [u8],
    /// Hex SHA-256 of `cert_der`.
    pub fingerprint: &'a str,
    pub max_document_bytes: u64,
    /// See [`Party::mail_address`] (checked with [`check_mail_address`]).
    pub mail_address: Option<&'a str>,
}

impl Party {
    /// Active party of an active account.
    pub fn is_usable(&self) -> bool {
        self.status == PartyStatus::Active && self.account_status == AccountStatus::Active
    }
}

impl NewParty<'_> {
    /// The checks of a registration that need no store (the same for every store): the
    /// fingerprint as stored (lower-case hex SHA-256), or why it is refused.
    pub(crate) fn checked(&self) -> StoreResult<String> {
        if self.key.id.is_empty() {
            return Err(StoreError::Invalid("party id is empty".into()));
        }
        if self.mpc.is_empty() {
            return Err(StoreError::Invalid("MPC is empty".into()));
        }
        if self.cert_der.is_empty() {
            return Err(StoreError::Invalid("certificate is empty".into()));
        }
        check_document_limit(self.max_document_bytes)?;
        if let Some(a) = self.mail_address {
            check_mail_address(a).map_err(StoreError::Invalid)?;
        }
        normalize_fingerprint(self.fingerprint)
    }
}

impl NewMessage {
    /// Whether it is a co-ordination message: exactly those of Service
    /// [`coordination::SERVICE`] say what they are about ([`NewMessage::coordination`]).
    pub(crate) fn checked_coordination(&self) -> StoreResult<bool> {
        let is_coordination = self.service == ls_core::as4::coordination::SERVICE;
        if is_coordination != self.coordination.is_some() {
            return Err(StoreError::Invalid(format!(
                "message {}: a co-ordination message (Service {}) says what it is about, and \
                 only one does",
                self.message_id,
                ls_core::as4::coordination::SERVICE
            )));
        }
        Ok(is_coordination)
    }
}

impl NewEnrolment<'_> {
    /// The checks of a new code that need no store.
    pub(crate) fn check(&self, now: Unix) -> StoreResult<()> {
        if self.key.id.is_empty() {
            return Err(StoreError::Invalid("party id is empty".into()));
        }
        if self.expires_at <= now {
            return Err(StoreError::Invalid("the code must expire after now".into()));
        }
        Ok(())
    }

    /// The account the code is for, by its status (`None`: no such subscriber).
    pub(crate) fn check_account(&self, status: Option<AccountStatus>) -> StoreResult<()> {
        match status {
            None => Err(StoreError::NotFound(format!(
                "subscriber {}",
                self.subscriber_id
            ))),
            Some(AccountStatus::Suspended) => Err(StoreError::Conflict(format!(
                "subscriber {} is suspended; resume it before issuing enrolment codes",
                self.subscriber_id
            ))),
            Some(AccountStatus::Active) => Ok(()),
        }
    }

    /// The party the code is for, if it is registered: of this account and not revoked.
    pub(crate) fn check_party(&self, party: Option<&Party>) -> StoreResult<()> {
        let Some(p) = party else { return Ok(()) };
        if p.subscriber_id != self.subscriber_id {
            return Err(StoreError::Conflict(format!(
                "party {} belongs to another account (subscriber {})",
                self.key, p.subscriber_id
            )));
        }
        if p.status == PartyStatus::Revoked {
            return Err(StoreError::Conflict(format!(
                "party {} is revoked; `party reinstate` makes it active again",
                self.key
            )));
        }
        Ok(())
    }
}

/// The record of a message a co-ordination message names, as a store reads it; what may name
/// it is decided here, the same for every store.
pub(crate) struct Named {
    pub seq: i64,
    pub sender: PartyKey,
    pub state: String,
    pub service: String,
    pub action: String,
    /// The refusal notice that refused it.
    pub notice_id: Option<String>,
    /// The receipt (or update answer) that went back for it.
    pub receipt_id: Option<String>,
}

impl Named {
    /// The message a refusal notice `m` refuses (`found`: the record of that id `m`'s sender
    /// received): sent by the notice's recipient to the notice's sender, not yet refused.
    pub(crate) fn refused(
        found: Option<Named>,
        m: &NewMessage,
        r: &RefusalOf,
    ) -> StoreResult<Named> {
        let Some(named) = found else {
            return Err(StoreError::Refused(Refused::RefusedMessageUnknown {
                message_id: r.message_id.clone(),
            }));
        };
        if named.sender != m.recipient {
            return Err(StoreError::Refused(Refused::RefusedMessageOtherSender {
                message_id: r.message_id.clone(),
                sender: named.sender,
            }));
        }
        if let Some(notice_id) = named.notice_id {
            return Err(StoreError::Refused(Refused::AlreadyRefused {
                message_id: r.message_id.clone(),
                notice_id,
            }));
        }
        Ok(named)
    }

    /// The document a receipt `m` is for: sent by the receipt's recipient to the receipt's
    /// sender, neither refused nor receipted yet.
    pub(crate) fn receipted(
        found: Option<Named>,
        m: &NewMessage,
        message_id: &str,
    ) -> StoreResult<Named> {
        let refused = |r| Err(StoreError::Refused(r));
        let message_id = message_id.to_string();
        let Some(named) = found else {
            return refused(Refused::ReceiptedMessageUnknown { message_id });
        };
        if named.sender != m.recipient {
            return refused(Refused::ReceiptedMessageOtherSender {
                message_id,
                sender: named.sender,
            });
        }
        if named.service == ls_core::as4::coordination::SERVICE {
            return refused(Refused::ReceiptForCoordination { message_id });
        }
        if let Some(notice_id) = named.notice_id {
            return refused(Refused::ReceiptForRefused {
                message_id,
                notice_id,
            });
        }
        if let Some(receipt_id) = named.receipt_id {
            return refused(Refused::AlreadyReceipted {
                message_id,
                receipt_id,
            });
        }
        Ok(named)
    }

    /// The certificate update an answer `m` is for: sent by the answer's recipient to the
    /// answer's sender, not answered yet (an answer is recorded in the columns of a receipt).
    pub(crate) fn answered(
        found: Option<Named>,
        m: &NewMessage,
        message_id: &str,
    ) -> StoreResult<Named> {
        use ls_core::as4::coordination;
        let message_id = message_id.to_string();
        let named = found.filter(|n| {
            n.sender == m.recipient
                && n.service == coordination::SERVICE
                && n.action == coordination::ACTION_CERTIFICATE_UPDATE
        });
        let Some(named) = named else {
            return Err(StoreError::Refused(Refused::AnsweredUpdateUnknown {
                message_id,
            }));
        };
        if let Some(answer_id) = named.receipt_id {
            return Err(StoreError::Refused(Refused::AlreadyAnswered {
                message_id,
                answer_id,
            }));
        }
        Ok(named)
    }
}

/// A document limit a store can keep (1 to `i64::MAX`).
pub(crate) fn check_document_limit(n: u64) -> StoreResult<()> {
    if n == 0 || i64::try_from(n).is_err() {
        return Err(StoreError::Invalid(format!(
            "max_document_bytes = {n}: expected 1 to {}",
            i64::MAX
        )));
    }
    Ok(())
}

/// Lower-case hex SHA-256, as the stores keep fingerprints.
pub(crate) fn normalize_fingerprint(fingerprint: &str) -> StoreResult<String> {
    match ls_core::bytes::parse_sha256(fingerprint) {
        Some(d) => Ok(ls_core::bytes::hex(&d)),
        None => Err(StoreError::Invalid(
            "a certificate fingerprint is the hex SHA-256 of its DER".into(),
        )),
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

/// The body of a pushed message: in memory, or received into a spool file of the store
/// ([`Store::new_spool`]) and moved into place by [`Store::accept`].
#[derive(Clone, Debug)]
pub enum MessageBody {
    Bytes(Vec<u8>),
    Spooled(std::sync::Arc<Spool>),
}

impl MessageBody {
    pub fn len(&self) -> u64 {
        match self {
            MessageBody::Bytes(b) => b.len() as u64,
            MessageBody::Spooled(s) => s.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<u8>> for MessageBody {
    fn from(b: Vec<u8>) -> MessageBody {
        MessageBody::Bytes(b)
    }
}

/// A file a pushed body is received into before the message is accepted, in the store's own
/// folder so that accepting it is a rename. Removed when dropped, unless `accept` moved it.
#[derive(Debug)]
pub struct Spool {
    pub path: std::path::PathBuf,
    /// Bytes written (set by the writer once the body is whole).
    pub len: u64,
}

impl Drop for Spool {
    fn drop(&mut self) {
        // After `accept` renamed it, nothing is there any more (names are never reused).
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A claimed message's body: in memory, or a file opened while the claim held it (so that a
/// purge removing it meanwhile does not take it from the reader).
#[derive(Debug)]
pub enum ClaimedBody {
    Bytes(Vec<u8>),
    File { file: std::fs::File, len: u64 },
}

impl ClaimedBody {
    pub fn len(&self) -> u64 {
        match self {
            ClaimedBody::Bytes(b) => b.len() as u64,
            ClaimedBody::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the body in memory (a file body read whole, without moving its position).
    pub fn to_vec(&self) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        match self {
            ClaimedBody::Bytes(b) => Ok(b.clone()),
            ClaimedBody::File { file, len } => {
                let mut out = vec![0u8; usize::try_from(*len).unwrap_or(0)];
                file.read_exact_at(&mut out, 0)?;
                Ok(out)
            }
        }
    }

    /// The body in memory (a file body read whole).
    pub fn into_bytes(self) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        match self {
            ClaimedBody::Bytes(b) => Ok(b),
            ClaimedBody::File { file, len } => {
                let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
                file.take(len).read_to_end(&mut out)?;
                Ok(out)
            }
        }
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
    pub body: MessageBody,
    /// The signed receipt returned to the sender (returned again for a duplicate).
    pub receipt_content_type: String,
    pub receipt: Vec<u8>,
    pub received_at: Unix,
    /// What makes a re-sent message "the same" (hex SHA-256, see [`content_fingerprint`]): a
    /// push with this sender and MessageId but another fingerprint is
    /// [`Refused::MessageIdReused`].
    pub content_sha256: String,
    /// Set for a co-ordination message (Service `coordination::SERVICE`, and only for one): what
    /// it says about the message it names, which was sent by this message's recipient to this
    /// message's sender and is marked in the same transaction.
    pub coordination: Option<Coordination>,
}

/// What a co-ordination message says about the message it names (its RefToMessageId).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Coordination {
    /// A refusal notice: the message becomes `failed` (or, delivered, has the refusal recorded).
    Refusal(RefusalOf),
    /// A signed receipt: the message records that a receipt went back. Only for a document
    /// that was not refused and has no receipt yet.
    Receipt { message_id: String },
    /// A certificate update (a party's rollover, to a partner): it names no message; the
    /// endpoint checked that the new certificate it names is registered for its sender.
    CertificateUpdate,
    /// A partner's answer to a certificate update: the update records that an answer went
    /// back (in the columns of a receipt). Only for an update sent by the answer's recipient
    /// to its sender, answered once.
    UpdateAnswer { message_id: String },
}

impl Coordination {
    /// The MessageId of the message it names, if it names one.
    pub fn message_id(&self) -> Option<&str> {
        match self {
            Coordination::Refusal(r) => Some(&r.message_id),
            Coordination::Receipt { message_id } | Coordination::UpdateAnswer { message_id } => {
                Some(message_id)
            }
            Coordination::CertificateUpdate => None,
        }
    }
}

/// The message a refusal notice refuses, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusalOf {
    pub message_id: String,
    /// The notice's failure class (`coordination::FailureClass::as_str`).
    pub class: String,
}

/// The fingerprint of what a message says, for telling a retry from a reused MessageId: the
/// recipient, Service, Action, RefToMessageId, the message properties and the signed digests of
/// the attachments (digest method and value of each `cid:` reference, sorted). It survives a
/// byte-identical retry and a gateway that signs the same content again (new timestamp,
/// signature, MIME boundary or Content-IDs), and changes when any of those differs.
pub fn content_fingerprint(
    recipient: &PartyKey,
    um: &ls_core::as4::model::UserMessage,
    references: &[ls_core::as4::wss::SignedRef],
) -> String {
    let mut fields: Vec<&str> = vec![
        &recipient.ptype,
        &recipient.id,
        um.service.r#type.as_deref().unwrap_or(""),
        &um.service.value,
        &um.action,
        um.info.ref_to_message_id.as_deref().unwrap_or(""),
    ];
    let mut props: Vec<(&str, &str, &str)> = um
        .properties
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.r#type.as_deref().unwrap_or(""),
                p.value.as_str(),
            )
        })
        .collect();
    props.sort_unstable();
    let mut digests: Vec<(&str, &str)> = references
        .iter()
        .filter(|r| r.uri.starts_with("cid:"))
        .map(|r| (r.digest_method.as_str(), r.digest_value.as_str()))
        .collect();
    digests.sort_unstable();
    let props_n = props.len().to_string();
    fields.push(&props_n);
    for (n, t, v) in &props {
        fields.push(n);
        fields.push(t);
        fields.push(v);
    }
    for (m, v) in &digests {
        fields.push(m);
        fields.push(v);
    }
    // Each field length-prefixed, so no two lists encode alike.
    let mut h = openssl::sha::Sha256::new();
    for f in fields {
        h.update(&(f.len() as u64).to_be_bytes());
        h.update(f.as_bytes());
    }
    ls_core::bytes::hex(&h.finish())
}

/// What [`Store::accept`] enforces besides duplicates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptLimits {
    /// Free bytes the store's file system must keep after the message is stored (0: none).
    /// Refusal notices are exempt: they free the refused message's body (receipts are not).
    pub min_free_bytes: u64,
    /// The most bytes of undelivered messages the parties of one subscriber may have waiting
    /// (0: no quota). Refusal notices are exempt (receipts are not).
    pub max_queued_bytes_per_subscriber: u64,
}

/// Why [`Store::accept`] refuses a message for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The sender used this MessageId before for another recipient or other content.
    MessageIdReused { first_recipient: PartyKey },
    /// Larger than the recipient's registered limit allows.
    RecipientLimit {
        recipient: PartyKey,
        size: u64,
        max_message_bytes: u64,
        max_document_bytes: u64,
    },
    /// The sender's account would hold more undelivered bytes than its quota.
    QuotaExceeded {
        subscriber_id: i64,
        queued: u64,
        size: u64,
        quota: u64,
    },
    /// A refusal notice for a message its sender did not receive (no message with that id
    /// waits or waited for it).
    RefusedMessageUnknown { message_id: String },
    /// A refusal notice not addressed to the refused message's sender.
    RefusedMessageOtherSender {
        message_id: String,
        sender: PartyKey,
    },
    /// A refusal notice for a message already refused by another notice.
    AlreadyRefused {
        message_id: String,
        notice_id: String,
    },
    /// A receipt for a message its sender did not receive (no message with that id waits or
    /// waited for it).
    ReceiptedMessageUnknown { message_id: String },
    /// A receipt not addressed to the receipted message's sender.
    ReceiptedMessageOtherSender {
        message_id: String,
        sender: PartyKey,
    },
    /// A receipt for a co-ordination message: receipts are for documents (no loops).
    ReceiptForCoordination { message_id: String },
    /// A receipt for a message its recipient refused (a refusal notice names it).
    ReceiptForRefused {
        message_id: String,
        notice_id: String,
    },
    /// A receipt for a message that already has one (another MessageId).
    AlreadyReceipted {
        message_id: String,
        receipt_id: String,
    },
    /// An answer to a certificate update its sender did not receive from its recipient (no
    /// such update, or another message).
    AnsweredUpdateUnknown { message_id: String },
    /// An answer to an update that was answered already.
    AlreadyAnswered {
        message_id: String,
        answer_id: String,
    },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::MessageIdReused { first_recipient } => write!(
                f,
                "this MessageId was already used by the same sender for a message to \
                 {first_recipient} with other content; a new message needs a new MessageId"
            ),
            Refused::RecipientLimit {
                recipient,
                size,
                max_message_bytes,
                max_document_bytes,
            } => write!(
                f,
                "the message is {size} bytes; party {recipient} accepts messages of at most \
                 {max_message_bytes} bytes (documents of at most {max_document_bytes} bytes)"
            ),
            Refused::QuotaExceeded {
                subscriber_id,
                queued,
                size,
                quota,
            } => write!(
                f,
                "the sender's account ({subscriber_id}) has {queued} bytes of undelivered \
                 messages waiting; this message of {size} bytes would exceed its quota of \
                 {quota} bytes"
            ),
            Refused::RefusedMessageUnknown { message_id } => write!(
                f,
                "refusal notice: no message {message_id} was sent to the notice's sender"
            ),
            Refused::RefusedMessageOtherSender { message_id, sender } => write!(
                f,
                "refusal notice: message {message_id} came from {sender}; the notice must be \
                 addressed to it"
            ),
            Refused::AlreadyRefused {
                message_id,
                notice_id,
            } => write!(
                f,
                "refusal notice: message {message_id} was already refused by notice {notice_id}"
            ),
            Refused::ReceiptedMessageUnknown { message_id } => write!(
                f,
                "receipt: no message {message_id} was sent to the receipt's sender"
            ),
            Refused::ReceiptedMessageOtherSender { message_id, sender } => write!(
                f,
                "receipt: message {message_id} came from {sender}; the receipt must be addressed \
                 to it"
            ),
            Refused::ReceiptForCoordination { message_id } => write!(
                f,
                "receipt: message {message_id} is a co-ordination message; receipts are for \
                 documents"
            ),
            Refused::ReceiptForRefused {
                message_id,
                notice_id,
            } => write!(
                f,
                "receipt: message {message_id} was refused by its recipient (notice {notice_id})"
            ),
            Refused::AlreadyReceipted {
                message_id,
                receipt_id,
            } => write!(
                f,
                "receipt: message {message_id} was already receipted by {receipt_id}"
            ),
            Refused::AnsweredUpdateUnknown { message_id } => write!(
                f,
                "certificate update answer: no certificate update {message_id} was sent to the \
                 answer's sender by its recipient"
            ),
            Refused::AlreadyAnswered {
                message_id,
                answer_id,
            } => write!(
                f,
                "certificate update answer: update {message_id} was already answered by \
                 {answer_id}"
            ),
        }
    }
}

/// What `accept` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Stored, committed and synced.
    Stored,
    /// A refusal notice stored, committed and synced, with what became of the message it
    /// refuses.
    NoticeStored(NoticeEffect),
    /// A signed receipt stored, committed and synced, and recorded on the receipted message.
    ReceiptStored,
    /// The same sender already sent this MessageId: nothing stored, here is the first receipt.
    Duplicate {
        receipt_content_type: String,
        receipt: Vec<u8>,
    },
}

/// What a refusal notice did to the message it refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeEffect {
    /// It was waiting, leased or expired: now `failed`, its body removed, never offered again.
    Failed,
    /// It was already delivered (receipted): its state stays, the refusal is recorded on it.
    AfterDelivery,
}

/// A message handed to a puller.
#[derive(Debug)]
pub struct Claimed {
    pub message_id: String,
    pub sender: PartyKey,
    pub recipient: PartyKey,
    pub content_type: String,
    pub body: ClaimedBody,
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

/// Why and when a message was refused by its recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusalRecord {
    pub class: String,
    /// The MessageId of the refusal notice.
    pub notice_id: String,
    pub at: Unix,
}

/// When a signed receipt for a message went back to its sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptReturned {
    /// The MessageId of the receipt (a co-ordination message).
    pub receipt_id: String,
    /// When the service accepted it.
    pub at: Unix,
}

/// Usage of one account in a period (for billing). Documents and co-ordination messages
/// (Service `coordination::SERVICE`: refusal notices, receipts) are counted apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub subscriber_id: i64,
    pub organisation: String,
    /// Documents accepted from the account's parties, and their bytes.
    pub sent_messages: u64,
    pub sent_bytes: u64,
    /// Documents delivered to the account's parties (receipted by them), and their bytes.
    pub received_messages: u64,
    pub received_bytes: u64,
    /// Co-ordination messages accepted from the account's parties, and their bytes.
    pub coordination_sent_messages: u64,
    pub coordination_sent_bytes: u64,
    /// Co-ordination messages delivered to the account's parties, and their bytes.
    pub coordination_received_messages: u64,
    pub coordination_received_bytes: u64,
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
    /// Set when a refusal notice named the message (state `failed`, or still `delivered` /
    /// `purged` when the notice came after the receipt).
    pub refusal: Option<RefusalRecord>,
    /// Set when the recipient's signed receipt (a co-ordination message) went back.
    pub receipt_returned: Option<ReceiptReturned>,
}

/// An enrolment code to issue: only its keyed hash is stored, never the code.
#[derive(Clone, Copy, Debug)]
pub struct NewEnrolment<'a> {
    pub subscriber_id: i64,
    /// The one party id the code may enrol.
    pub key: &'a PartyKey,
    /// Lower-case hex of the keyed hash of the normalised code.
    pub code_hash: &'a str,
    pub expires_at: Unix,
}

/// An enrolment code, as listed (no hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrolmentRecord {
    pub id: i64,
    pub subscriber_id: i64,
    pub key: PartyKey,
    pub created_at: Unix,
    pub expires_at: Unix,
    pub used_at: Option<Unix>,
    /// The certificate enrolled with it.
    pub used_fingerprint: Option<String>,
    pub revoked_at: Option<Unix>,
}

impl EnrolmentRecord {
    /// `used`, `revoked`, `expired` or `outstanding`.
    pub fn state(&self, now: Unix) -> &'static str {
        if self.used_at.is_some() {
            "used"
        } else if self.revoked_at.is_some() {
            "revoked"
        } else if now >= self.expires_at {
            "expired"
        } else {
            "outstanding"
        }
    }
}

/// An enrolment: a code (its keyed hash) and the certificate to register for the party it
/// names.
#[derive(Clone, Copy, Debug)]
pub struct Enrolment<'a> {
    pub code_hash: &'a str,
    pub key: &'a PartyKey,
    pub mpc: &'a str,
    pub cert_der: &'a [u8],
    /// Hex SHA-256 of `cert_der`.
    pub fingerprint: &'a str,
    /// For a new party; an existing party keeps its limit.
    pub max_document_bytes: u64,
}

/// What [`Store::enrol`] did.
#[derive(Clone, Debug)]
pub enum EnrolOutcome {
    /// A new party of the code's account, with the certificate.
    Registered(Party),
    /// An existing party of the code's account: the certificate added, its earlier ones
    /// retired at once.
    Replaced(Party),
    /// This code enrolled this very certificate for this party before (a retry): nothing
    /// changed.
    Again(Party),
    /// Nothing changed.
    Refused(EnrolRefusal),
}

/// Why [`Store::enrol`] changed nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrolRefusal {
    /// No code with that hash for that party (none at all, or one of another party: the same).
    InvalidCode,
    CodeUsed,
    CodeExpired,
    CodeRevoked,
    /// The certificate is registered for another party.
    CertificateInUse {
        party: PartyKey,
    },
    /// The party was revoked, its account suspended, or the party id belongs to another
    /// account now.
    PartyNotActive(String),
}

/// The storage the Messaging Service runs on. Every method is one transaction; methods that
/// change messages are durable (committed and synced) when they return `Ok`.
pub trait Store: Send + Sync {
    // --- accounts and installations
    fn create_subscriber(&self, s: &NewSubscriber, now: Unix) -> StoreResult<Subscriber>;
    fn subscriber(&self, id: i64) -> StoreResult<Option<Subscriber>>;
    fn subscribers(&self) -> StoreResult<Vec<Subscriber>>;
    fn set_account_status(&self, id: i64, status: AccountStatus) -> StoreResult<()>;
    /// Register a party with its first certificate. `Conflict` when the party exists (even
    /// revoked: see [`Store::reinstate_party`]).
    fn register_party(&self, p: &NewParty<'_>, now: Unix) -> StoreResult<Party>;
    /// Change the largest document the party accepts.
    fn set_party_limit(&self, key: &PartyKey, max_document_bytes: u64) -> StoreResult<()>;
    /// Set (checked with [`check_mail_address`], else `Invalid`) or clear the party's mail
    /// address. `NotFound` for an unknown party.
    fn set_party_mail_address(&self, key: &PartyKey, mail_address: Option<&str>)
        -> StoreResult<()>;
    /// The usable parties (active, of an active account) that have a mail address: those the
    /// e-mail gateway delivers to.
    fn mail_parties(&self) -> StoreResult<Vec<Party>>;
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
    /// Make a revoked party active again. With a certificate (DER, fingerprint), that one
    /// replaces every earlier certificate at once (they are retired `now`).
    fn reinstate_party(
        &self,
        key: &PartyKey,
        new_cert: Option<(&[u8], &str)>,
        now: Unix,
    ) -> StoreResult<()>;
    fn party(&self, key: &PartyKey) -> StoreResult<Option<Party>>;
    fn party_by_mpc(&self, mpc: &str) -> StoreResult<Option<Party>>;
    /// Parties (any status) that have or had a certificate with this fingerprint.
    fn parties_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Vec<Party>>;
    /// Every certificate ever registered for the party, newest first.
    fn certificates(&self, key: &PartyKey) -> StoreResult<Vec<PartyCert>>;
    fn parties(&self, subscriber_id: Option<i64>) -> StoreResult<Vec<Party>>;

    // --- enrolment codes (installation by the subscriber)
    /// Store a code's hash for one party id of a subscriber. `NotFound` for an unknown
    /// subscriber; `Conflict` when the account is suspended, the party id belongs to another
    /// account (or has an outstanding code of another account), or the party is revoked. The
    /// party's earlier outstanding codes are revoked.
    fn issue_enrolment(&self, e: &NewEnrolment<'_>, now: Unix) -> StoreResult<EnrolmentRecord>;
    /// A subscriber's codes, newest first.
    fn enrolments(&self, subscriber_id: i64) -> StoreResult<Vec<EnrolmentRecord>>;
    /// Revoke a subscriber's outstanding code (`NotFound` when it has no such code,
    /// `Conflict` when it was used).
    fn revoke_enrolment(
        &self,
        subscriber_id: i64,
        id: i64,
        now: Unix,
    ) -> StoreResult<EnrolmentRecord>;
    /// The account a party id belongs to, for counting failed enrolments: the party's
    /// subscriber, or the subscriber of its latest code.
    fn enrolment_account(&self, key: &PartyKey) -> StoreResult<Option<i64>>;
    /// In one transaction: check the code for the party, register the certificate (a new
    /// party, or a new certificate of the account's party retiring the others), mark the code
    /// used.
    fn enrol(&self, e: &Enrolment<'_>, now: Unix) -> StoreResult<EnrolOutcome>;
    /// The secret key of the codes' keyed hashes (32 bytes), made on first use and kept apart
    /// from the records (the embedded store: a `0600` file beside the database).
    fn enrolment_key(&self) -> StoreResult<zeroize::Zeroizing<Vec<u8>>>;

    // --- messages
    /// Store a pushed message unless the same sender already sent its MessageId (then
    /// `Duplicate`, or `Refused::MessageIdReused` when the content differs). Refuses, before
    /// writing anything, a message larger than its recipient's limit, one that would exceed the
    /// sender's account quota (`Refused`), or one that would leave less free space than the
    /// reserve (`LowSpace`). A co-ordination message (`m.coordination`) must name a message its
    /// recipient sent to its sender (else `Refused`), and marks it in the same transaction: a
    /// refusal notice fails it, a receipt records itself on it. `Invalid` when
    /// `m.coordination` is set for a message of another Service, or not set for one of
    /// `coordination::SERVICE`.
    fn accept(&self, m: &NewMessage, limits: &AcceptLimits) -> StoreResult<Accepted>;
    /// A new, empty file to receive a pushed body into ([`MessageBody::Spooled`]), private to
    /// the service, on the file system where [`Store::accept`] keeps bodies. (A store that
    /// keeps bodies elsewhere — PostgreSQL large objects — copies it there in `accept`.)
    fn new_spool(&self) -> StoreResult<(Spool, std::fs::File)>;
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
    /// Give up a claim of `message_id` for `recipient` before its lease ends (a submission by
    /// mail that failed for a while): it may be claimed again from `now`. Nothing happens when
    /// the message is not leased (delivered meanwhile, or its lease already over).
    fn release_claim(&self, recipient: &PartyKey, message_id: &str, now: Unix) -> StoreResult<()>;
    /// Remove bodies of messages delivered before `delivered_before`; expire (drop body, keep
    /// record) messages received before `undelivered_before` and still not delivered.
    fn purge(&self, delivered_before: Unix, undelivered_before: Unix) -> StoreResult<Purged>;
    /// Remove the records of messages that are finished (purged, expired or failed) and were
    /// received before `received_before`; returns how many. The usage ledger is kept.
    fn prune_records(&self, received_before: Unix) -> StoreResult<u64>;
    /// The recipients of messages with this MessageId (from any sender) that are still held.
    fn recipients_of(&self, message_id: &str) -> StoreResult<Vec<PartyKey>>;
    /// Messages waiting or leased, per recipient party.
    fn queue_depths(&self) -> StoreResult<Vec<(PartyKey, u64)>>;
    /// Bytes of messages waiting or leased, per subscriber of their senders (every subscriber,
    /// 0 when nothing waits).
    fn queued_bytes(&self) -> StoreResult<Vec<(i64, u64)>>;
    /// Bytes free for payloads on the store's file system (`None` when the store cannot tell).
    fn free_bytes(&self) -> StoreResult<Option<u64>>;
    /// Records of messages sent by or to a party, newest first.
    fn messages(&self, party: Option<&PartyKey>, limit: u32) -> StoreResult<Vec<MessageRecord>>;
    /// Usage per account for messages accepted / delivered in `[from, to)`, documents and
    /// co-ordination messages apart.
    fn usage(&self, from: Unix, to: Unix) -> StoreResult<Vec<Usage>>;

    /// What the endpoints remember between requests (replays, rate limits, lockouts), shared
    /// by every node of this store ([`shared`]).
    fn shared(&self) -> &dyn shared::SharedState;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ls_core::as4::model::Property;
    use ls_core::as4::wss::SignedRef;

    fn r(uri: &str, digest: &str) -> SignedRef {
        SignedRef {
            uri: uri.into(),
            transforms: Vec::new(),
            digest_method: "http://www.w3.org/2001/04/xmlenc#sha256".into(),
            digest_value: digest.into(),
        }
    }

    #[test]
    fn the_content_fingerprint_ignores_how_a_message_was_signed() {
        let um = ls_core::as4::exchange::user_message("a", "b", "svc", "act", "", "x").unwrap();
        let to = PartyKey::new("", "b");
        let base = content_fingerprint(
            &to,
            &um,
            &[
                r("#messaging", "m1"),
                r("cid:one", "d1"),
                r("cid:two", "d2"),
            ],
        );
        assert_eq!(base.len(), 64);
        // Signed again: other header digests, other Content-IDs, references in another order.
        let mut again = um.clone();
        again.info.message_id = "other-timestamp-and-id".into();
        again.info.timestamp = "2030-01-01T00:00:00Z".into();
        assert_eq!(
            content_fingerprint(
                &to,
                &again,
                &[r("cid:B", "d2"), r("#m2", "m2"), r("cid:A", "d1")]
            ),
            base
        );
        // What the message says changes it.
        let differs = |to: &PartyKey, um: &ls_core::as4::model::UserMessage, refs: &[SignedRef]| {
            assert_ne!(content_fingerprint(to, um, refs), base);
        };
        let refs = [r("cid:one", "d1"), r("cid:two", "d2")];
        differs(&to, &um, &[r("cid:one", "d1"), r("cid:two", "d3")]);
        differs(&to, &um, &[r("cid:one", "d1")]);
        differs(&PartyKey::new("t", "b"), &um, &refs);
        let mut u = um.clone();
        u.action = "other".into();
        differs(&to, &u, &refs);
        let mut u = um.clone();
        u.info.ref_to_message_id = Some("m0".into());
        differs(&to, &u, &refs);
        let mut u = um.clone();
        u.properties.push(Property::new("FailureClass", "policy"));
        differs(&to, &u, &refs);
        // Fields are length-prefixed: moving a boundary changes the fingerprint.
        let mut u = um.clone();
        u.service.value = "sv".into();
        u.action = "cact".into();
        differs(&to, &u, &refs);
    }
}
