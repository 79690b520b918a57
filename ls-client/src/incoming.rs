//! Receiving: pull from our MPC, verify and open each message with its partner's certificate,
//! write the document to `inbox/` through the delivery journal, then receipt it. See the module
//! documentation of `client`.

use super::fsutil::{
    self, candidate, fsync_dir, io_err, is_free, list_dir, move_no_clobber, read_json, safe_name,
    to_json, write_atomic, write_synced, Lock,
};
use super::notices;
use super::{partner_policy, verify_policy, Client, PollStatus, Problem};
use ls_core::as4::coordination::{self, FailureClass, MessageFailure};
use ls_core::as4::exchange::{self, party_mpc, Exchange, Pulled};
use ls_core::as4::message::{self, Incoming, ReadOptions};
use ls_core::as4::model::EbmsError;
use ls_core::bytes::sha256_hex;
use ls_core::cms::OpenOptions;
use ls_core::error::{Error, ErrorCode, Result};
use ls_core::keys::Identity;
use ls_core::time;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub(super) const DELIVERED: &str = "delivered";
pub(super) const FAILED_IN: &str = "incoming-failed";
pub(super) const QUARANTINE: &str = "quarantine";
pub(super) const STATUS: &str = "status.json";
pub(super) const POLL_LOCK: &str = "poll.lock";
/// The message being verified and opened right now: found at start-up, it names the message
/// a crash (or a kill) interrupted.
const IN_FLIGHT: &str = "incoming-in-flight.json";
/// A message during whose verification and opening the client stopped this many times is set
/// aside in `state/quarantine/` instead of being tried again.
const QUARANTINE_AFTER: u32 = 3;
const TMP_PREFIX: &str = ".tmp-";
/// The suffix of a document being opened (not verified yet) in the inbox: never finished after a
/// crash.
const OPENING_SUFFIX: &str = ".opening";
/// The folder of the state where documents are opened (not verified yet), when it is on the
/// inbox's file system: never finished after a crash.
const OPENING_DIR: &str = "opening";
const TMP_META_SUFFIX: &str = ".meta";
const META_SUFFIX: &str = ".meta.json";
/// After this many failed attempts at a message, an ebMS error signal about it is posted to
/// the service (once), so that the sender's side can see it.
const SIGNAL_AFTER: u32 = 3;

/// A document written to `inbox/`.
#[derive(Clone, Debug, Serialize)]
pub struct Received {
    /// The document in `inbox/`; its metadata is `<path>.meta.json`.
    pub path: PathBuf,
    /// Its name there (the sender's file name, made safe, with `-1`, `-2`… if taken).
    pub name: String,
    /// The file name the sender gave, if any.
    pub original_name: Option<String>,
    pub size: u64,
    pub sha256: String,
    pub mime_type: String,
    /// The sender's party id (verified: the message and the document are signed with its
    /// certificate).
    pub sender: String,
    pub message_id: String,
    pub conversation_id: String,
    pub service: String,
    pub action: String,
    /// The signing time the sender stated (Unix seconds).
    pub signing_time: Option<i64>,
    /// When we wrote it (Unix seconds).
    pub received_at: i64,
}

/// A message for us that could not be accepted (reported by `poll`, `run` and `status`).
#[derive(Clone, Debug, Serialize)]
pub struct IncomingFailure {
    /// As the (unverified) header names it.
    pub sender: String,
    pub message_id: String,
    pub attempts: u32,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Why it was not accepted (the last time).
    pub error: Problem,
    /// Whether an ebMS error signal about it was posted to the service (messages from senders
    /// we do not know, which stay with the service until they expire).
    pub signalled: bool,
    /// Refused for good: the class our signed refusal notice told the sender (the service
    /// then stops offering the message).
    pub refused: Option<FailureClass>,
    /// That notice's MessageId…
    pub notice_message_id: Option<String>,
    /// …and whether the service has taken it (else it is pushed again at the next poll).
    pub notice_sent: bool,
    /// Why the service did not take the notice, if it refused it (its message).
    pub notice_error: Option<String>,
    /// How often the client stopped (crashed, was killed) while verifying or opening it.
    pub crashes: u32,
    /// Where the message was set aside after stopping the client [`QUARANTINE_AFTER`] times.
    pub quarantined: Option<PathBuf>,
}

impl From<&FailureRecord> for IncomingFailure {
    fn from(f: &FailureRecord) -> IncomingFailure {
        IncomingFailure {
            sender: f.sender.clone(),
            message_id: f.message_id.clone(),
            attempts: f.attempts,
            first_seen: f.first_seen,
            last_seen: f.last_seen,
            error: Problem::new(
                ErrorCode::from_name(&f.code).unwrap_or(ErrorCode::Internal),
                f.error.clone(),
            ),
            signalled: f.signalled,
            refused: f.refused,
            notice_message_id: f.notice_message_id.clone(),
            notice_sent: f.notice_sent,
            notice_error: f.notice_error.clone(),
            crashes: f.crashes,
            quarantined: f.quarantined.clone(),
        }
    }
}

/// The journal's record of a message for us that could not be accepted:
/// `state/incoming-failed/<key>.json` (its format is kept as it is: older clients read it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FailureRecord {
    /// As the (unverified) header names it.
    pub sender: String,
    pub message_id: String,
    pub attempts: u32,
    pub first_seen: i64,
    pub last_seen: i64,
    /// `LS_ERR_…`.
    pub code: String,
    pub error: String,
    /// Whether an ebMS error signal about it was posted to the service (messages from senders
    /// we do not know, which stay with the service until they expire).
    pub signalled: bool,
    /// Refused for good: the class our signed refusal notice told the sender (the service
    /// then stops offering the message).
    #[serde(default)]
    pub refused: Option<FailureClass>,
    /// That notice's MessageId…
    #[serde(default)]
    pub notice_message_id: Option<String>,
    /// …and whether the service has taken it (else it is pushed again at the next poll).
    #[serde(default)]
    pub notice_sent: bool,
    /// Why the service did not take the notice, if it refused it.
    #[serde(default)]
    pub notice_error: Option<String>,
    /// How often the client stopped (crashed, was killed) while verifying or opening it.
    #[serde(default)]
    pub crashes: u32,
    /// Where the message was set aside after stopping the client [`QUARANTINE_AFTER`] times.
    #[serde(default)]
    pub quarantined: Option<PathBuf>,
}

/// What one [`Client::poll`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PollReport {
    /// Messages pulled.
    pub pulled: usize,
    /// Documents written to `inbox/`.
    pub received: Vec<Received>,
    /// Messages offered again that were written before: receipted again, not written twice.
    pub duplicates: usize,
    /// Messages not accepted (not written, not receipted).
    pub failed: Vec<IncomingFailure>,
    /// By e-mail: messages whose signature did not verify, set aside unanswered (each with
    /// its reason in `state/mail/set-aside.jsonl`).
    pub set_aside: usize,
    /// Receipts the service refused (the documents are in `inbox/`).
    pub receipt_errors: Vec<Problem>,
    /// Partners' signed refusal notices of messages we sent.
    pub refused_by_partners: Vec<notices::PartnerRefusal>,
    /// Partners' signed receipts of what we sent (checked; `verified` says whether they were
    /// taken).
    pub receipts: Vec<super::receipts::PartnerReceipt>,
    /// The poll stopped at `limits.max_messages_per_poll` or `max_bytes_per_poll`; more may
    /// be waiting.
    pub limited: bool,
    /// Partners' certificate updates (their rollovers), as we judged them.
    pub certificate_updates: Vec<crate::rollover::UpdateRecord>,
    /// Partners' answers to our certificate update.
    pub update_answers: Vec<crate::rollover::PartnerUpdate>,
    /// We began to sign with our new key in this poll.
    pub switched: bool,
}

/// `state/delivered/<key>`: the journal entry of a document written (or being written).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct DeliveredRecord {
    /// The final name in `inbox/`.
    name: String,
    sender: String,
    message_id: String,
    at: i64,
}

/// `inbox/<name>.meta.json`.
#[derive(Serialize)]
struct DocumentMeta<'a> {
    sender: &'a str,
    recipient: &'a str,
    message_id: &'a str,
    conversation_id: &'a str,
    service: &'a str,
    action: &'a str,
    original_name: Option<&'a str>,
    mime_type: &'a str,
    size: u64,
    sha256: &'a str,
    signing_time: Option<String>,
    signing_time_unix: Option<i64>,
    received_at: String,
    received_at_unix: i64,
    signer_subject: String,
    signer_serial: String,
    encrypted: bool,
}

/// Why handling a message stopped.
enum Fault {
    /// Refused for good: the sender is a known partner and the message can never be accepted
    /// as it is. A signed refusal notice tells the sender (and the service stops offering it).
    Refuse(Error, FailureClass),
    /// Not accepted now, but it may be later (an unknown sender, whose certificate may still
    /// be added): record it, leave it with the service, go on with the next.
    Skip(Error),
    /// We are (disk, journal) or the service is at fault: stop the poll.
    Stop(Error),
    /// On a carrier that does not vouch for where a message comes from (e-mail), a message
    /// whose signature did not verify: set aside, not answered (a refusal notice would answer
    /// whoever forged it) and not recorded. The service offers a genuine one again.
    Aside(Error),
}

/// The journal key of a message: `hex(sha256(sender || 0 || MessageId))`.
/// The file a pulled message is received into (`state/incoming.spool`) while it is handled.
pub(crate) const SPOOL: &str = "incoming.spool";

/// Removes a spool file when the message in it has been handled.
struct SpoolGuard(Option<PathBuf>);

impl Drop for SpoolGuard {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

pub(crate) fn delivery_key(sender: &str, message_id: &str) -> String {
    let mut b = Vec::with_capacity(sender.len() + 1 + message_id.len());
    b.extend_from_slice(sender.as_bytes());
    b.push(0);
    b.extend_from_slice(message_id.as_bytes());
    sha256_hex(&b)
}

fn is_key(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The class of a failure to open the sealed document. One class for every step from
/// decryption on (key unwrap, content decryption, padding, the inner signature, the format),
/// so that a sender cannot tell which step failed (no padding or decryption oracle); only a
/// size over our limit is told apart.
/// Whether opening failed on our side: the token of our key is gone, refuses our PIN or lost
/// the key. Nothing is wrong with the message, which stays with the service and is opened
/// again later; no refusal notice goes to the partner.
fn our_key_failed(e: &Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::TokenUnavailable | ErrorCode::PinIncorrect | ErrorCode::KeyNotFound
    )
}

fn class_of_opening_error(e: &Error) -> FailureClass {
    match e.code() {
        ErrorCode::TooLarge | ErrorCode::ExpansionTooLarge => FailureClass::TooLarge,
        _ => FailureClass::CannotOpen,
    }
}

/// Whether the message's signature could not be checked because we hold no valid certificate
/// of its signer (as opposed to a signature that is wrong): a certificate added later may
/// still accept it, so it is not refused for good.
fn lacks_the_signers_certificate(e: &Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::SignerMismatch
            | ErrorCode::UnknownSigner
            | ErrorCode::CertNotFound
            | ErrorCode::CertExpired
            | ErrorCode::CertNotYetValid
            | ErrorCode::CertUntrusted
    )
}

/// What the journal says about the message being handled: `state/incoming-in-flight.json`.
#[derive(Serialize, Deserialize)]
struct InFlight {
    key: String,
    sender: String,
    message_id: String,
    pid: u32,
}

impl Client {
    fn inbox(&self) -> &Path {
        &self.cfg.folders.inbox
    }

    fn tmp_doc(&self, key: &str) -> PathBuf {
        self.inbox().join(format!("{TMP_PREFIX}{key}"))
    }

    fn tmp_meta(&self, key: &str) -> PathBuf {
        self.inbox()
            .join(format!("{TMP_PREFIX}{key}{TMP_META_SUFFIX}"))
    }

    fn failure_path(&self, key: &str) -> PathBuf {
        self.state(FAILED_IN).join(format!("{key}.json"))
    }

    /// Pull every message waiting for us (until the service answers EBMS:0006, or a bound of
    /// `[limits]` is reached), write each verified document to `inbox/` and receipt it;
    /// `on_document` is told of each document written (at most once: the folder is what
    /// counts).
    ///
    /// A message from a known partner that can never be accepted (too large, cannot be opened,
    /// a bad signature, refused by our policy) is answered with a signed refusal notice, after
    /// which the service stops offering it; one from a sender we do not know is left with the
    /// service (it is offered again, and accepted once the partner's certificate is added).
    /// Both are recorded in `state/incoming-failed/`, and the poll goes on with the next
    /// message. Partners' refusal notices of what we sent are recorded on the sent documents.
    /// `Err` when the service cannot be reached or answers wrongly, when our disk fails, or
    /// `StateLocked` when another process is polling with the same state folder.
    pub fn poll(&self, on_document: impl FnMut(&Received)) -> Result<PollReport> {
        self.poll_until(on_document, &super::NEVER)
    }

    /// [`Client::poll`], ending early once `stop` is set: it is checked before each pull, so a
    /// document whose `on_document` sets it is still receipted before the poll returns.
    pub fn poll_until(
        &self,
        mut on_document: impl FnMut(&Received),
        stop: &AtomicBool,
    ) -> Result<PollReport> {
        let lock_path = self.state(POLL_LOCK);
        let _lock = Lock::try_acquire(&lock_path)?.ok_or_else(|| {
            Error::StateLocked(format!(
                "{} is already polling with the state folder {}",
                Lock::holder(&lock_path),
                self.cfg.folders.state.display()
            ))
        })?;
        self.recover_inbox()?;
        self.recover_in_flight()?;
        self.prune_journal()?;
        let mut report = PollReport::default();
        let result = self.poll_locked(&mut on_document, &mut report, stop);
        // A POP3 session ends with the poll: its deletions take effect, its lock goes.
        let result = result.and(self.transport.end_round());
        let now = time::now_unix();
        let prev: Option<PollStatus> = read_json(&self.state(STATUS)).unwrap_or(None);
        let reached = match &result {
            Ok(()) => true,
            // The service answered (it refused or we failed): it was reached.
            Err(e) => !super::is_unreachable(e),
        };
        let status = PollStatus {
            at: now,
            ok: result.is_ok(),
            error: result.as_ref().err().map(|e| e.to_string()),
            last_ok_at: if reached {
                Some(now)
            } else {
                prev.and_then(|p| p.last_ok_at)
            },
        };
        let _ = write_atomic(&self.state(STATUS), &to_json(&status));
        result.map(|()| report)
    }

    fn poll_locked(
        &self,
        on_document: &mut dyn FnMut(&Received),
        report: &mut PollReport,
        stop: &AtomicBool,
    ) -> Result<()> {
        // Keys another process changed (a rollover) are read again first.
        self.refresh_keys(false)?;
        let keys = self.keys();
        let ex = self.exchange_as(&keys);
        // Notices a previous poll could not deliver go first: until the service has them, it
        // offers the refused messages again.
        self.flush_notices(&ex)?;
        // Our rollover and partners' updates: answers and updates that wait, the switch.
        report.switched = self.rollover_tick(&ex)?;
        for refused in self.flush_receipts(&ex)? {
            report.receipt_errors.push((&refused).into());
        }
        let mpc = party_mpc(&self.cfg.party.id);
        let limits = &self.cfg.limits;
        let mut failed_now: HashSet<String> = HashSet::new();
        let (mut count, mut bytes) = (0u32, 0u64);
        while !stop.load(Ordering::Relaxed) {
            if count >= limits.max_messages_per_poll || bytes >= limits.max_bytes_per_poll {
                report.limited = true;
                break;
            }
            // Keys and the service's certificates as they are now: a message of this poll may
            // have changed them (the service's key's rollover, our switch).
            let keys = self.keys();
            let ex = self.exchange_as(&keys);
            // A large message is received into this file, never whole into memory; it is
            // removed when the message has been handled.
            let spool = self.state(SPOOL);
            let Some(pulled) = ex.pull_to(&mpc, &spool)? else {
                break;
            };
            let _spooled = SpoolGuard(pulled.spooled.as_ref().map(|s| s.path.clone()));
            report.pulled += 1;
            count += 1;
            bytes = bytes.saturating_add(pulled.len());
            let um = &pulled.messaging.user_messages[0];
            let sender = um
                .from
                .ids
                .first()
                .map(|p| p.value.clone())
                .unwrap_or_default();
            let message_id = um.info.message_id.clone();
            let key = delivery_key(&sender, &message_id);
            if failed_now.contains(&key) {
                // Offered again within this poll (its lease ran out): try it next time.
                break;
            }
            let prev: Option<FailureRecord> = read_json(&self.failure_path(&key))?;
            if let Some(f) = prev.as_ref().filter(|f| f.refused.is_some()) {
                // Refused already; the service offers it until it has our notice.
                failed_now.insert(key.clone());
                self.flush_notice(&ex, &key)?;
                report.failed.push(f.into());
                continue;
            }
            let crashes = prev.as_ref().map_or(0, |f| f.crashes);
            let verified = std::cell::Cell::new(false);
            let outcome = if crashes >= QUARANTINE_AFTER {
                Err(Fault::Refuse(
                    Error::Internal(format!(
                        "the client stopped {crashes} times while verifying or opening this \
                         message; it was set aside"
                    )),
                    FailureClass::Quarantined,
                ))
            } else {
                // A bug that panics on what a partner sent must not take the daemon down, nor
                // come back at every poll: the message is set aside at once.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.handle(
                        &ex,
                        &pulled,
                        &sender,
                        &message_id,
                        &key,
                        &verified,
                        on_document,
                        report,
                    )
                }))
                .unwrap_or_else(|_| {
                    Err(Fault::Refuse(
                        Error::Internal(
                            "verifying or opening this message panicked; it was set aside".into(),
                        ),
                        FailureClass::Quarantined,
                    ))
                })
            };
            // By e-mail, what did not verify may come from anyone: set aside, no answer.
            let outcome = match outcome {
                Err(Fault::Refuse(e, _) | Fault::Skip(e))
                    if !verified.get() && !self.transport.authenticates_origin() =>
                {
                    Err(Fault::Aside(e))
                }
                other => other,
            };
            // The service is no party: a refusal notice could not reach it. What it sent that we
            // cannot take is left with it (and, after a few offers, an ebMS error tells it).
            let outcome = match outcome {
                Err(Fault::Refuse(e, _)) if sender == coordination::SERVICE_PARTY => {
                    Err(Fault::Skip(e))
                }
                other => other,
            };
            match outcome {
                Ok(()) => {
                    let _ = fs::remove_file(self.failure_path(&key));
                }
                Err(Fault::Refuse(e, class)) => {
                    failed_now.insert(key.clone());
                    let f = self.refuse(&ex, &pulled, &sender, &message_id, &key, &e, class)?;
                    report.failed.push((&f).into());
                }
                Err(Fault::Skip(e)) => {
                    failed_now.insert(key.clone());
                    let first_seen = prev.as_ref().map_or_else(time::now_unix, |f| f.first_seen);
                    let f = if self.gives_up_on(&sender, &e, first_seen) {
                        // A stranger's message, waited for long enough: its sender is told.
                        let e = Error::UnknownSigner(format!(
                            "{e} (refused after limits.refuse_unknown_after_hours = {})",
                            limits.refuse_unknown_after_hours
                        ));
                        self.refuse(
                            &ex,
                            &pulled,
                            &sender,
                            &message_id,
                            &key,
                            &e,
                            FailureClass::NotTrusted,
                        )?
                    } else {
                        self.record_failure(&ex, &sender, &message_id, &key, &e)?
                    };
                    report.failed.push((&f).into());
                }
                Err(Fault::Aside(e)) => {
                    self.clear_in_flight();
                    self.transport
                        .set_aside(&message_id, &format!("from {sender}: {e}"))?;
                    report.set_aside += 1;
                }
                Err(Fault::Stop(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Verify, open, write and receipt one pulled message.
    #[allow(clippy::too_many_arguments)]
    fn handle(
        &self,
        ex: &Exchange,
        pulled: &Pulled,
        sender: &str,
        message_id: &str,
        key: &str,
        verified: &std::cell::Cell<bool>,
        on_document: &mut dyn FnMut(&Received),
        report: &mut PollReport,
    ) -> std::result::Result<(), Fault> {
        // Verify first: a receipt needs the verified references, and a forged repeat of a
        // delivered MessageId must not be receipted. The service itself sends the updates of
        // its own key, signed with the key we hold for it.
        let from_service = sender == coordination::SERVICE_PARTY;
        let certs = if from_service {
            self.service_certs()
        } else {
            self.partner_certs(sender)
        };
        if certs.is_empty() {
            return Err(Fault::Skip(Error::UnknownSigner(format!(
                "the message comes from {sender:?}, who is not a known partner (no certificate \
                 named after it in {})",
                self.cfg.partners.dir.display()
            ))));
        }
        if let Some(o) = &pulled.oversized {
            return Err(Fault::Refuse(
                Error::TooLarge(format!(
                    "the message of {} bytes is larger than we accept ({} bytes: \
                     limits.max_document_bytes {} and the message overhead)",
                    o.length, o.limit, self.cfg.limits.max_document_bytes
                )),
                FailureClass::TooLarge,
            ));
        }
        if let Some(u) = &pulled.unreadable {
            // Its body is not a message we can read (found by the spooler while it arrived):
            // refused like any other malformed message of a partner, the poll goes on.
            let class = match u.code {
                ErrorCode::TooLarge => FailureClass::TooLarge,
                _ => FailureClass::Malformed,
            };
            return Err(Fault::Refuse(u.error(), class));
        }
        let (one, store) = partner_policy(&certs);
        let me = self.me();
        let is_update = pulled.messaging.user_messages.first().is_some_and(|u| {
            coordination::is_coordination(u) && u.action == coordination::ACTION_CERTIFICATE_UPDATE
        });
        // What follows parses, verifies, decrypts and inflates what a partner sent: the
        // journal names the message meanwhile, so that a crash in there is laid at its door.
        self.mark_in_flight(key, sender, message_id)
            .map_err(Fault::Stop)?;
        if self.fail_at("poll:panic").is_err() {
            panic!("a simulated bug while reading a message");
        }
        // A spooled message is verified with the attachment digest computed as it arrived;
        // its payload stays in the spool file.
        let incoming = pulled
            .read(&ReadOptions {
                recipient: Some(&me),
                policy: verify_policy(one, store.as_ref()),
                limits: self.limits.clone(),
            })
            // The class of a failure to read the AS4 message (nothing of the document is decrypted
            // yet: what it reveals is no oracle; payloads WS-Security-encrypted for us are, and a
            // failure there is told as one class with everything else about opening).
            .map_err(|e| {
                if our_key_failed(&e) {
                    return Fault::Stop(e);
                }
                if lacks_the_signers_certificate(&e) && is_update {
                    // A certificate update must be signed by the key we hold for the partner: one
                    // signed by its new key alone, or by anyone else, is refused (and recorded).
                    let recorded = self.record_unauthenticated_update(
                        pulled,
                        sender,
                        message_id,
                        &e.to_string(),
                    );
                    if let Err(r) = recorded {
                        return Fault::Stop(r);
                    }
                    return Fault::Refuse(e, FailureClass::NotTrusted);
                }
                if lacks_the_signers_certificate(&e) {
                    if let Some(until) = self.signed_by_retired(pulled, sender) {
                        // Signed by a certificate of the partner whose overlap is over (a
                        // rollover): refused for good, as the service refuses it now.
                        return Fault::Refuse(
                            Error::CertUntrusted(format!(
                                "the message is signed with a certificate of {sender} that was \
                             replaced and is no longer accepted (since {})",
                                time::iso8601(until)
                            )),
                            FailureClass::NotTrusted,
                        );
                    }
                    // Signed by a key we hold no valid certificate for (yet): the partner's new
                    // certificate during a rollover, or ours of it has expired. Like an unknown
                    // sender, left with the service: once the certificate is added it is accepted.
                    return Fault::Skip(e);
                }
                let class = MessageFailure::of(&e).class();
                Fault::Refuse(e, class)
            })?;
        verified.set(true);
        let um = incoming.messaging.user_messages.first().ok_or_else(|| {
            Fault::Refuse(
                Error::InvalidEbms("no UserMessage".into()),
                FailureClass::Malformed,
            )
        })?;
        let from_ok = um.from.ids.first().map(|p| p.value.as_str()) == Some(sender);
        if !from_ok || um.info.message_id != message_id {
            return Err(Fault::Refuse(
                Error::InvalidEbms("the verified header differs from the one read first".into()),
                FailureClass::Malformed,
            ));
        }
        if !um.to.ids.iter().any(|p| p.value == self.cfg.party.id) {
            return Err(Fault::Refuse(
                Error::InvalidEbms(format!(
                    "the message is addressed to {:?}, not to us",
                    um.to.ids.first().map(|p| p.value.as_str()).unwrap_or("")
                )),
                FailureClass::Policy,
            ));
        }
        if from_service && coordination::read_certificate_update(um).is_none() {
            return Err(Fault::Refuse(
                Error::InvalidEbms(
                    "the service sends certificate updates of its own key only".into(),
                ),
                FailureClass::Policy,
            ));
        }
        if coordination::is_coordination(um) {
            if pulled.spooled.is_some() {
                return Err(Fault::Refuse(
                    Error::TooLarge(format!(
                        "a co-ordination message of {} bytes (at most {})",
                        pulled.len(),
                        coordination::MAX_COORDINATION_BYTES
                    )),
                    FailureClass::TooLarge,
                ));
            }
            self.clear_in_flight();
            return self.coordination(ex, &incoming, sender, &pulled.body, report);
        }

        let entry_path = self.state(DELIVERED).join(key);
        let entry: Option<DeliveredRecord> = read_json(&entry_path).map_err(Fault::Stop)?;
        if let Some(entry) = entry {
            self.clear_in_flight();
            // Written before: finish its renames if a crash interrupted them, receipt again.
            self.finish_delivery(key, entry).map_err(Fault::Stop)?;
            report.duplicates += 1;
            self.receipt(ex, &incoming, report)?;
            return self.send_our_receipt(ex, key, report);
        }

        if incoming.payloads.len() != 1 {
            return Err(Fault::Refuse(
                Error::InvalidEbms(format!(
                    "one payload (the sealed document) is expected, the message has {}",
                    incoming.payloads.len()
                )),
                FailureClass::Policy,
            ));
        }
        let open_with = |me: &Identity, others: &[Identity]| {
            self.open_payload(
                &incoming.payloads[0],
                &OpenOptions {
                    recipient: Some(me),
                    earlier_recipients: others,
                    sender: one,
                    partners: store.as_ref(),
                    policy: self.partner_inbound_policy(sender),
                    max_output: self.cfg.limits.max_document_bytes,
                    ..Default::default()
                },
                key,
            )
        };
        let others = self.other_keys();
        let (opened, sha) = match open_with(&me, &others) {
            // Sealed for a key of ours this process has not read yet (a rollover another
            // process started): read the keys again and try once more.
            Err(e) if e.code() == ErrorCode::NotARecipient => {
                self.refresh_keys(true).map_err(Fault::Stop)?;
                open_with(&self.me(), &self.other_keys())
            }
            other => other,
        }
        .map_err(|e| match e {
            // Reading the spool or writing the document failed here (a full disk): nothing is
            // wrong with the message, which stays with the service and is opened again later.
            Error::Io { .. } => Fault::Stop(e),
            e if our_key_failed(&e) => Fault::Stop(e),
            e => {
                let class = class_of_opening_error(&e);
                Fault::Refuse(e, class)
            }
        })?;
        self.clear_in_flight();

        let now = time::now_unix();
        let original = opened.safe_filename();
        let base = original
            .as_deref()
            .and_then(safe_name)
            .unwrap_or_else(|| format!("document-{}.bin", &key[..16]));
        let signer = opened.signer.as_ref();
        let meta = DocumentMeta {
            sender,
            recipient: &self.cfg.party.id,
            message_id,
            conversation_id: &um.conversation_id,
            service: &um.service.value,
            action: &um.action,
            original_name: opened.filename.as_deref(),
            mime_type: &opened.mime_type,
            size: opened.size,
            sha256: &sha,
            signing_time: opened.signing_time.map(time::iso8601),
            signing_time_unix: opened.signing_time,
            received_at: time::iso8601(now),
            received_at_unix: now,
            signer_subject: signer.map(|c| c.subject().to_string()).unwrap_or_default(),
            signer_serial: signer.map(|c| c.serial_hex()).unwrap_or_default(),
            encrypted: opened.encrypted,
        };
        let stop = Fault::Stop;
        // 0. Our signed receipt, if the sender asked for one: journalled now, pushed only once
        // the document is in the inbox. A receipt we cannot make does not hold the document up.
        match self.journal_receipt(pulled, &incoming, sender, key, &opened, now) {
            Ok(_) => {}
            Err(e) if e.code() == ErrorCode::Io => return Err(stop(e)),
            Err(e) => report.receipt_errors.push((&e).into()),
        }
        // 1. The document (written there as it was opened) and its metadata under temporary
        // names, synced.
        // (A temporary name already, written again after a crash: no second temporary file.)
        let tmp_meta = self.tmp_meta(key);
        let meta_json = to_json(&meta);
        fsutil::write_synced_mode_with(&tmp_meta, Some(self.file_mode()), |out| {
            out.write_all(&meta_json)
                .map_err(|e| io_err("cannot write", &tmp_meta, e))
        })
        .and_then(|_| fsutil::set_mode(&tmp_meta, self.file_mode()))
        .map_err(stop)?;
        fsync_dir(self.inbox()).map_err(stop)?;
        self.fail_at("poll:after-temp").map_err(stop)?;
        // 2. The journal entry with the final name.
        let name = self.free_inbox_name(&base);
        let entry = DeliveredRecord {
            name,
            sender: sender.to_string(),
            message_id: message_id.to_string(),
            at: now,
        };
        write_atomic(&entry_path, &to_json(&entry)).map_err(stop)?;
        self.fail_at("poll:after-journal").map_err(stop)?;
        // 3. The final names.
        let entry = self.finish_delivery(key, entry).map_err(stop)?;
        self.fail_at("poll:after-rename").map_err(stop)?;
        let path = self.inbox().join(&entry.name);
        // Never receipt a document that is not in the inbox (e.g. another process removed the
        // temporary files under us): the message stays with the service and is offered again.
        if !path.is_file() {
            return Err(stop(Error::StateCorrupt(format!(
                "{} was not written to the inbox; the message is not receipted",
                entry.name
            ))));
        }
        let received = Received {
            path,
            name: entry.name,
            original_name: opened.filename.clone(),
            size: opened.size,
            sha256: sha,
            mime_type: opened.mime_type.clone(),
            sender: sender.to_string(),
            message_id: message_id.to_string(),
            conversation_id: um.conversation_id.clone(),
            service: um.service.value.clone(),
            action: um.action.clone(),
            signing_time: opened.signing_time,
            received_at: now,
        };
        on_document(&received);
        report.received.push(received);
        // 4. Only now: the receipt to the service, then ours to the sender.
        self.receipt(ex, &incoming, report)?;
        self.send_our_receipt(ex, key, report)
    }

    /// Push our journalled signed receipt of message `key` to its sender (if one was asked for).
    fn send_our_receipt(
        &self,
        ex: &Exchange,
        key: &str,
        report: &mut PollReport,
    ) -> std::result::Result<(), Fault> {
        if let Some(refused) = self.flush_receipt(ex, key).map_err(Fault::Stop)? {
            report.receipt_errors.push((&refused).into());
        }
        Ok(())
    }

    /// Whether message `key`'s temporary inbox files are still there (not renamed yet).
    pub(super) fn inbox_pending(&self, key: &str) -> bool {
        self.tmp_doc(key).exists() || self.tmp_meta(key).exists()
    }

    /// A co-ordination message from a partner, verified: recorded, then receipted.
    fn coordination(
        &self,
        ex: &Exchange,
        incoming: &Incoming,
        sender: &str,
        raw: &[u8],
        report: &mut PollReport,
    ) -> std::result::Result<(), Fault> {
        let um = &incoming.messaging.user_messages[0];
        match coordination::read_refusal(um) {
            Some(Ok(notice)) => {
                let r = self
                    .record_partner_refusal(sender, &notice, um, raw)
                    .map_err(Fault::Stop)?
                    .ok_or_else(|| {
                        Fault::Skip(Error::ReceiptMismatch(format!(
                            "the refusal of {} came before our send of it was finished; it is \
                             taken at a later poll",
                            notice.message_id
                        )))
                    })?;
                report.refused_by_partners.push(r);
                self.receipt(ex, incoming, report)
            }
            // Not for good: a later version of ours may understand it.
            Some(Err(e)) => Err(Fault::Skip(e)),
            None => match coordination::read_receipt(um) {
                Some(Ok(header)) => {
                    // Checked against what we sent and recorded — or, when a check fails,
                    // kept apart with why; either way it is taken off the service (a receipt
                    // never gets a receipt of its own beyond the service's).
                    let ess = &incoming.payloads[0].data;
                    let r = self
                        .record_partner_receipt(sender, &header, um, ess)
                        .map_err(Fault::Stop)?
                        .ok_or_else(|| {
                            Fault::Skip(Error::ReceiptMismatch(format!(
                                "the receipt of {} came before our send of it was finished; \
                                 it is taken at a later poll",
                                header.message_id
                            )))
                        })?;
                    self.fail_at("receipt:after-record").map_err(Fault::Stop)?;
                    report.receipts.push(r);
                    self.receipt(ex, incoming, report)
                }
                Some(Err(e)) => Err(Fault::Skip(e)),
                None => self.rollover_message(ex, incoming, sender, report),
            },
        }
    }

    /// A certificate update from a partner, or a partner's answer to ours.
    fn rollover_message(
        &self,
        ex: &Exchange,
        incoming: &Incoming,
        sender: &str,
        report: &mut PollReport,
    ) -> std::result::Result<(), Fault> {
        let um = &incoming.messaging.user_messages[0];
        if let Some(h) = coordination::read_certificate_update(um) {
            h.map_err(|e| Fault::Refuse(e, FailureClass::Malformed))?;
            let r = if sender == coordination::SERVICE_PARTY {
                self.take_service_update(incoming)
            } else {
                self.take_certificate_update(ex, incoming, sender)
            }
            .map_err(Fault::Stop)?;
            report.certificate_updates.push(r);
            return self.receipt(ex, incoming, report);
        }
        match coordination::read_update_answer(um) {
            Some(Ok(a)) => {
                if let Some((p, switched)) =
                    self.take_update_answer(sender, &a).map_err(Fault::Stop)?
                {
                    report.switched |= switched;
                    report.update_answers.push(p);
                }
                // An answer to no update of ours is taken off the service all the same.
                self.receipt(ex, incoming, report)
            }
            Some(Err(e)) => Err(Fault::Skip(e)),
            None => Err(Fault::Skip(Error::InvalidEbms(format!(
                "a co-ordination message with the unknown action {:?}",
                um.action
            )))),
        }
    }

    fn receipt(
        &self,
        ex: &Exchange,
        incoming: &Incoming,
        report: &mut PollReport,
    ) -> std::result::Result<(), Fault> {
        let receipt =
            message::build_receipt(incoming, &self.me(), &self.domain).map_err(Fault::Stop)?;
        match ex.post_receipt(&receipt) {
            Ok(()) => Ok(()),
            // The service refused the receipt (e.g. already receipted by another client of
            // ours): the document is in the inbox; note it and go on.
            Err(e @ Error::EbmsError { .. }) => {
                report.receipt_errors.push((&e).into());
                Ok(())
            }
            Err(e) => Err(Fault::Stop(e)),
        }
    }

    /// The first free name for `base` in the inbox (neither it nor its metadata exists).
    fn free_inbox_name(&self, base: &str) -> String {
        let mut n = 0;
        loop {
            let c = candidate(base, n);
            if is_free(self.inbox(), &c, META_SUFFIX) {
                return c;
            }
            n += 1;
        }
    }

    /// Rename the temporary files of a journalled delivery to their final names (metadata
    /// first), never replacing a file; if a name was taken meanwhile, another is chosen and
    /// journalled. Idempotent.
    fn finish_delivery(&self, key: &str, mut entry: DeliveredRecord) -> Result<DeliveredRecord> {
        let inbox = self.inbox().to_path_buf();
        let (tdoc, tmeta) = (self.tmp_doc(key), self.tmp_meta(key));
        for _ in 0..20 {
            let doc = inbox.join(&entry.name);
            let meta = inbox.join(format!("{}{META_SUFFIX}", entry.name));
            let meta_pending = tmeta.exists();
            let doc_pending = tdoc.exists();
            if !meta_pending && !doc_pending {
                return Ok(entry);
            }
            // A name that is the pending file itself (a crash between the link and the unlink
            // of a move) is no clash: the move finishes it. Taken as a clash, the document would
            // be delivered a second time under another name.
            let taken = |tmp: &Path, name: &Path| name.exists() && !fsutil::same_file(tmp, name);
            let clash =
                (meta_pending && taken(&tmeta, &meta)) || (doc_pending && taken(&tdoc, &doc));
            if !clash {
                let r = if meta_pending {
                    move_no_clobber(&tmeta, &meta)
                } else {
                    Ok(())
                }
                .and_then(|()| {
                    if doc_pending {
                        move_no_clobber(&tdoc, &doc)
                    } else {
                        Ok(())
                    }
                });
                match r {
                    Ok(()) => {
                        fsync_dir(&inbox)?;
                        return Ok(entry);
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err("cannot rename into", &inbox, e)),
                }
            }
            // The name was taken meanwhile: choose another, journal it, move what already
            // went to the old name along.
            let old_meta = meta;
            let name = self.free_inbox_name(&entry.name);
            entry.name = name;
            write_atomic(&self.state(DELIVERED).join(key), &to_json(&entry))?;
            if !tmeta.exists() && old_meta.exists() {
                let _ = move_no_clobber(
                    &old_meta,
                    &inbox.join(format!("{}{META_SUFFIX}", entry.name)),
                );
            }
        }
        Err(Error::io(
            format!("cannot find a free name in {}", inbox.display()),
            std::io::Error::new(ErrorKind::AlreadyExists, "names keep being taken"),
        ))
    }

    /// Finish the deliveries a crash interrupted: temporary inbox files with a journal entry are
    /// renamed, those without one removed (that message was not receipted and comes again).
    pub(super) fn recover_inbox(&self) -> Result<()> {
        // Documents a crash interrupted while they were opened: never verified.
        if let Ok(entries) = list_dir(&self.state(OPENING_DIR)) {
            for (_, path, md) in entries {
                if md.is_file() {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        for (name, path, md) in list_dir(self.inbox())? {
            let Some(rest) = name.strip_prefix(TMP_PREFIX) else {
                continue;
            };
            if let Some(key) = rest.strip_suffix(OPENING_SUFFIX) {
                // A document a crash interrupted while it was opened: never verified.
                if md.is_file() && is_key(key) {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            let key = rest.strip_suffix(TMP_META_SUFFIX).unwrap_or(rest);
            if !md.is_file() || !is_key(key) {
                continue;
            }
            let entry: Option<DeliveredRecord> = read_json(&self.state(DELIVERED).join(key))?;
            match entry {
                Some(e) => {
                    self.finish_delivery(key, e)?;
                }
                None => {
                    fs::remove_file(&path).or_else(|e| {
                        if e.kind() == ErrorKind::NotFound {
                            Ok(())
                        } else {
                            Err(io_err("cannot remove", &path, e))
                        }
                    })?;
                }
            }
        }
        Ok(())
    }

    fn new_failure(&self, sender: &str, message_id: &str, key: &str) -> Result<FailureRecord> {
        let now = time::now_unix();
        let prev: Option<FailureRecord> = read_json(&self.failure_path(key)).unwrap_or(None);
        Ok(prev.unwrap_or(FailureRecord {
            sender: sender.to_string(),
            message_id: message_id.to_string(),
            attempts: 0,
            first_seen: now,
            last_seen: now,
            code: String::new(),
            error: String::new(),
            signalled: false,
            refused: None,
            notice_message_id: None,
            notice_sent: false,
            notice_error: None,
            crashes: 0,
            quarantined: None,
        }))
    }

    /// Whether a message left with the service is now refused for good: it comes from a sender
    /// that is not our partner (no certificate of it at all, not a key we lack during a
    /// rollover) and we first saw it `limits.refuse_unknown_after_hours` ago.
    fn gives_up_on(&self, sender: &str, e: &Error, first_seen: i64) -> bool {
        let wait = self.cfg.limits.refuse_unknown_after_hours;
        e.code() == ErrorCode::UnknownSigner
            && self.partner_certs(sender).is_empty()
            && time::now_unix().saturating_sub(first_seen)
                >= i64::try_from(wait.saturating_mul(3600)).unwrap_or(i64::MAX)
    }

    /// Record a message left with the service (an unknown sender); after a few attempts tell
    /// the service (once), with an ebMS error that names no more than that.
    fn record_failure(
        &self,
        ex: &Exchange,
        sender: &str,
        message_id: &str,
        key: &str,
        e: &Error,
    ) -> Result<FailureRecord> {
        let mut f = self.new_failure(sender, message_id, key)?;
        f.attempts += 1;
        f.last_seen = time::now_unix();
        f.code = e.code().to_string();
        f.error = e.to_string();
        if f.attempts >= SIGNAL_AFTER && !f.signalled {
            // The sender is unknown or its message unreadable: the one mapping's code (an
            // unknown sender is EBMS:0101) and, in words, the error's name only.
            let err = EbmsError::new(MessageFailure::of(e).ebms_code())
                .with_ref(message_id)
                // The code's name only: the message may name local paths.
                .with_description(&format!(
                    "the recipient could not accept the message ({})",
                    e.code().name()
                ));
            let sent = exchange::error_signal(
                ls_core::as4::envelope::SoapVersion::Soap12,
                vec![err],
                Some(message_id),
                &self.me(),
                &self.domain,
            )
            .and_then(|b| ex.post_receipt(&b));
            f.signalled = sent.is_ok();
        }
        write_atomic(&self.failure_path(key), &to_json(&f))?;
        Ok(f)
    }

    /// Refuse a message for good: record it, build our signed refusal notice for its sender
    /// (journalled before it is pushed, so that it goes out exactly as built), push it. A
    /// quarantined message is kept in `state/quarantine/` first.
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &self,
        ex: &Exchange,
        pulled: &Pulled,
        sender: &str,
        message_id: &str,
        key: &str,
        e: &Error,
        class: FailureClass,
    ) -> Result<FailureRecord> {
        self.clear_in_flight();
        let mut f = self.new_failure(sender, message_id, key)?;
        f.attempts += 1;
        f.last_seen = time::now_unix();
        f.code = e.code().to_string();
        f.error = e.to_string();
        f.refused = Some(class);
        if class == FailureClass::Quarantined && f.quarantined.is_none() {
            let dir = self.state(QUARANTINE);
            fs::create_dir_all(&dir).map_err(|e| io_err("cannot create folder", &dir, e))?;
            let path = dir.join(format!("{key}.msg"));
            let head = format!("Content-Type: {}\r\n\r\n", pulled.content_type).into_bytes();
            match &pulled.spooled {
                None => {
                    let mut raw = head;
                    raw.extend_from_slice(&pulled.body);
                    self.write_private(&path, &raw)?;
                }
                // Copied in pieces.
                Some(s) => {
                    fsutil::write_synced_mode_with(&path, Some(self.file_mode()), |out| {
                        out.write_all(&head)
                            .and_then(|()| {
                                let mut f = fs::File::open(&s.path)?;
                                std::io::copy(&mut f, out).map(|_| ())
                            })
                            .map_err(|e| io_err("cannot write", &path, e))
                    })?;
                    fsutil::set_mode(&path, self.file_mode())?;
                }
            }
            f.quarantined = Some(path);
        }
        let notice = notices::build_refusal(self, pulled, sender, message_id, class)?;
        f.notice_message_id = Some(notice.message_id.clone());
        notices::save_pending(&self.pending_notice_path(key), &notice)?;
        write_atomic(&self.failure_path(key), &to_json(&f))?;
        self.flush_notice(ex, key)?;
        Ok(read_json(&self.failure_path(key))?.unwrap_or(f))
    }

    /// Open a received payload (verified, decrypted as the policy says). The one place a
    /// payload is read for opening: today the CMS layer opens in memory, so a payload in the
    /// spool file is read into memory (at most the document limit and the CMS layers' share);
    /// opening from the file replaces this alone.
    /// Open the payload of message `key` into its temporary inbox file in constant memory:
    /// the document is written, as the layers are peeled, under a name of its own
    /// (`.tmp-<key>.opening`, private from the start), renamed to the temporary document only
    /// once `open_stream` verified it, and removed otherwise. Returns what was opened and the
    /// document's SHA-256 (hex), taken as it was written.
    fn open_payload(
        &self,
        payload: &ls_core::as4::message::ReceivedPayload,
        opts: &OpenOptions,
        key: &str,
    ) -> Result<(ls_core::cms::Opened, String)> {
        let mut reader: Box<dyn std::io::Read> = match &payload.file {
            Some(f) => Box::new(std::io::BufReader::with_capacity(256 * 1024, f.reader()?)),
            None => Box::new(&payload.data[..]),
        };
        let opening = self.opening_doc(key);
        let mut opened = None;
        let written = fsutil::write_synced_mode_with(&opening, Some(self.file_mode()), |out| {
            opened = Some(ls_core::open_stream(&mut reader, out, opts)?);
            // The tests' stand-in for a full disk while the document is written.
            self.fail_at("poll:opening").map_err(|e| Error::Io {
                context: e.to_string(),
                source: std::io::Error::other("no space left (simulated)"),
            })
        });
        let finish = written.and_then(|(sha, _)| {
            let opened =
                opened.ok_or_else(|| Error::Internal("the payload was not opened".into()))?;
            fs::rename(&opening, self.tmp_doc(key))
                .map_err(|e| io_err("cannot rename", &opening, e))?;
            Ok((opened, ls_core::bytes::hex(&sha)))
        });
        if finish.is_err() {
            let _ = fs::remove_file(&opening);
        }
        finish
    }

    /// Where the document of message `key` is written while it is opened (not yet verified):
    /// in the state folder, out of sight of whatever watches the inbox, when that is on the
    /// inbox's file system (the verified document is renamed from there); else a hidden file of
    /// the inbox.
    fn opening_doc(&self, key: &str) -> PathBuf {
        use std::os::unix::fs::MetadataExt;
        let dir = self.state(OPENING_DIR);
        let same_fs = fs::create_dir_all(&dir).is_ok()
            && matches!(
                (fs::metadata(&dir), fs::metadata(self.inbox())),
                (Ok(a), Ok(b)) if a.dev() == b.dev()
            );
        if same_fs {
            dir.join(key)
        } else {
            self.inbox()
                .join(format!("{TMP_PREFIX}{key}{OPENING_SUFFIX}"))
        }
    }

    fn pending_notice_path(&self, key: &str) -> PathBuf {
        self.state(FAILED_IN).join(format!("{key}.notice"))
    }

    /// Push the journalled refusal notice of message `key`, if one waits. A service that cannot
    /// be reached is an `Err` (the notice waits for the next poll); a service that refuses it is
    /// recorded on the failure, and the notice dropped.
    fn flush_notice(&self, ex: &Exchange, key: &str) -> Result<()> {
        let path = self.pending_notice_path(key);
        let Some(notice) = notices::load_pending(&path)? else {
            return Ok(());
        };
        let result = ex.push(&notice.built());
        if matches!(result, Err(Error::ReceiptPending(_))) {
            // By e-mail: handed over, the service's answer comes later (the next poll).
            return Ok(());
        }
        let mut f: Option<FailureRecord> = read_json(&self.failure_path(key))?;
        match result {
            Ok(_) => {
                if let Some(f) = &mut f {
                    f.notice_sent = true;
                    f.notice_error = None;
                }
            }
            Err(e) if e.is_transient() || super::is_unreachable(&e) => return Err(e),
            Err(e) => {
                if let Some(f) = &mut f {
                    f.notice_error = Some(e.to_string());
                }
            }
        }
        if let Some(f) = &f {
            write_atomic(&self.failure_path(key), &to_json(f))?;
        }
        notices::remove_pending(&path)
    }

    /// Every journalled notice that has not reached the service yet.
    fn flush_notices(&self, ex: &Exchange) -> Result<()> {
        for (name, _, md) in list_dir(&self.state(FAILED_IN))? {
            if let Some(key) = name.strip_suffix(".notice") {
                if md.is_file() && is_key(key) {
                    self.flush_notice(ex, key)?;
                }
            }
        }
        Ok(())
    }

    fn mark_in_flight(&self, key: &str, sender: &str, message_id: &str) -> Result<()> {
        let m = InFlight {
            key: key.to_string(),
            sender: sender.to_string(),
            message_id: message_id.to_string(),
            pid: std::process::id(),
        };
        write_synced(&self.state(IN_FLIGHT), &to_json(&m))
    }

    fn clear_in_flight(&self) {
        let _ = fs::remove_file(self.state(IN_FLIGHT));
    }

    /// A message named in flight at start-up stopped the client while it was verified or
    /// opened: count it against that message.
    fn recover_in_flight(&self) -> Result<()> {
        let path = self.state(IN_FLIGHT);
        let m: Option<InFlight> = read_json(&path).unwrap_or(None);
        if let Some(m) = m.filter(|m| is_key(&m.key)) {
            let mut f = self.new_failure(&m.sender, &m.message_id, &m.key)?;
            f.crashes += 1;
            f.last_seen = time::now_unix();
            f.code = ErrorCode::Internal.to_string();
            f.error = format!(
                "the client stopped while verifying or opening this message ({} time(s))",
                f.crashes
            );
            write_atomic(&self.failure_path(&m.key), &to_json(&f))?;
        }
        self.clear_in_flight();
        Ok(())
    }

    /// Write a file of ours (a receipt, a notice, a quarantined message) readable by us only, or
    /// by the folder's group with `folders.group_readable`, whole or not at all: a temporary
    /// name, synced, then renamed, so that a crash never leaves it empty or cut off (an empty
    /// `sent/<doc>.receipt.p7m` once made the partner's real receipt look like a replay).
    pub(super) fn write_private(&self, path: &Path, data: &[u8]) -> Result<()> {
        fsutil::write_atomic_mode(path, data, self.file_mode())
    }

    pub(super) fn file_mode(&self) -> u32 {
        if self.cfg.folders.group_readable {
            0o640
        } else {
            0o600
        }
    }

    /// Forget what the journal need not remember any more, at most once an hour: received
    /// messages older than `limits.remember_delivered_hours` (the service no longer offers
    /// them), records of messages we could not accept as old (their notices delivered), and
    /// the oldest of those records beyond `limits.max_refused_records`.
    fn prune_journal(&self) -> Result<()> {
        let mark = self.state("pruned-at");
        if fs::metadata(&mark).is_ok() && fsutil::age_secs(&mark) < 3600 {
            return Ok(());
        }
        let keep_secs = self
            .cfg
            .limits
            .remember_delivered_hours
            .saturating_mul(3600);
        for (name, path, md) in list_dir(&self.state(DELIVERED))? {
            if md.is_file() && is_key(&name) && fsutil::age_secs(&path) > keep_secs {
                let _ = fs::remove_file(&path);
            }
        }
        let now = time::now_unix();
        let mut records: Vec<(i64, String)> = Vec::new();
        for (name, path, md) in list_dir(&self.state(FAILED_IN))? {
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            if !md.is_file() || !is_key(key) {
                continue;
            }
            let f: Option<FailureRecord> = read_json(&path).unwrap_or(None);
            let last = f.map_or(0, |f| f.last_seen);
            records.push((last, key.to_string()));
        }
        records.sort();
        let max = self.cfg.limits.max_refused_records as usize;
        let excess = records.len().saturating_sub(max);
        for (i, (last, key)) in records.iter().enumerate() {
            let old = now.saturating_sub(*last) > keep_secs as i64;
            if (i < excess || old) && !self.pending_notice_path(key).exists() {
                let _ = fs::remove_file(self.failure_path(key));
            }
        }
        notices::prune(self, keep_secs, max)?;
        // Receipts of ours whose document never reached the inbox, refused receipts, and the
        // temporary files a kill left in `sent/` while a record was rewritten.
        for (dir, age) in [
            (self.state(super::receipts::RECEIPTS_OUT), keep_secs),
            (self.state(super::receipts::RECEIPTS_IN), keep_secs),
        ] {
            for (_, path, md) in list_dir(&dir)? {
                if md.is_file() && fsutil::age_secs(&path) > age {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        for (name, path, md) in list_dir(&self.cfg.folders.sent)? {
            if md.is_file() && name.starts_with(TMP_PREFIX) && fsutil::age_secs(&path) > 3600 {
                let _ = fs::remove_file(&path);
            }
        }
        write_atomic(&mark, b"")
    }

    pub(super) fn incoming_failures(&self) -> Result<Vec<IncomingFailure>> {
        let mut v: Vec<IncomingFailure> = Vec::new();
        for (name, path, md) in list_dir(&self.state(FAILED_IN))? {
            if md.is_file() && name.ends_with(".json") && !name.starts_with('.') {
                if let Some(f) = read_json::<FailureRecord>(&path)? {
                    v.push((&f).into());
                }
            }
        }
        v.sort_by_key(|f| std::cmp::Reverse(f.last_seen));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_of_our_token_stops_the_poll_instead_of_refusing_the_message() {
        for e in [
            Error::TokenUnavailable("removed".into()),
            Error::PinIncorrect("refused".into()),
            Error::KeyNotFound("gone".into()),
        ] {
            assert!(our_key_failed(&e), "{e}");
        }
        // What the message decides is refused as before, with one class.
        for e in [
            Error::DecryptFailed("x".into()),
            Error::KeyUnwrapFailed("x".into()),
            Error::NotARecipient("x".into()),
            Error::MechanismUnsupported("x".into()),
        ] {
            assert!(!our_key_failed(&e), "{e}");
            assert!(matches!(
                class_of_opening_error(&e),
                FailureClass::CannotOpen
            ));
        }
    }
}
