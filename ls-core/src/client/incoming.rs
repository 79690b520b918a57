//! Receiving: pull from our MPC, verify and open each message with its partner's certificate,
//! write the document to `inbox/` through the delivery journal, then receipt it. See the module
//! documentation of `client`.

use super::fsutil::{
    candidate, fsync_dir, hex, io_err, is_free, list_dir, move_no_clobber, read_json, safe_name,
    sha256_hex, to_json, write_atomic, write_synced, Lock,
};
use super::{partner_policy, verify_policy, Client, PollStatus, Problem};
use crate::as4::exchange::{self, party_mpc, Exchange, Pulled};
use crate::as4::message::{self, Incoming, ReadOptions};
use crate::as4::model::EbmsError;
use crate::cms::OpenOptions;
use crate::error::{Error, ErrorCode, Result};
use crate::time;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub(super) const DELIVERED: &str = "delivered";
pub(super) const FAILED_IN: &str = "incoming-failed";
pub(super) const STATUS: &str = "status.json";
pub(super) const POLL_LOCK: &str = "poll.lock";
const TMP_PREFIX: &str = ".tmp-";
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

/// A message for us that could not be accepted; kept in `state/incoming-failed/`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IncomingFailure {
    /// As the (unverified) header names it.
    pub sender: String,
    pub message_id: String,
    pub attempts: u32,
    pub first_seen: i64,
    pub last_seen: i64,
    /// `LS_ERR_…`.
    pub code: String,
    pub error: String,
    /// Whether an ebMS error signal about it was posted to the service.
    pub signalled: bool,
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
    /// Receipts the service refused (the documents are in `inbox/`).
    pub receipt_errors: Vec<Problem>,
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
    /// The message is at fault (unknown sender, bad signature, cannot be opened): record it,
    /// go on with the next.
    Message(Error),
    /// We are (disk, journal) or the service is: stop the poll.
    Stop(Error),
}

/// The journal key of a message: `hex(sha256(sender || 0 || MessageId))`.
pub(super) fn delivery_key(sender: &str, message_id: &str) -> String {
    let mut b = Vec::with_capacity(sender.len() + 1 + message_id.len());
    b.extend_from_slice(sender.as_bytes());
    b.push(0);
    b.extend_from_slice(message_id.as_bytes());
    hex(&openssl::sha::sha256(&b))
}

fn is_key(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The ebMS error code to report a message we could not accept with.
fn ebms_code_of(e: &Error) -> &'static str {
    use ErrorCode as C;
    match e.code() {
        C::BadSignature
        | C::SignerMismatch
        | C::UnknownSigner
        | C::CertUntrusted
        | C::CertExpired
        | C::CertNotYetValid
        | C::CertKeyUsage
        | C::CertInvalid
        | C::DigestMismatch => "EBMS:0101",
        C::DecompressFailed => "EBMS:0303",
        C::SignatureRequired | C::Unsigned | C::UnsignedPart | C::WeakAlgorithm => "EBMS:0103",
        _ => "EBMS:0004",
    }
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

    /// Pull every message waiting for us (until the service answers EBMS:0006), write each
    /// verified document to `inbox/` and receipt it; `on_document` is told of each document
    /// written (at most once: the folder is what counts).
    ///
    /// A message that cannot be accepted (unknown sender, bad signature, cannot be opened) is
    /// not written and not receipted — the service offers it again after its lease — and is
    /// recorded in `state/incoming-failed/`; the poll goes on with the next message. `Err` when
    /// the service cannot be reached or answers wrongly, when our disk fails, or
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
        let mut report = PollReport::default();
        let result = self.poll_locked(&mut on_document, &mut report, stop);
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
        let ex = self.exchange();
        let mpc = party_mpc(&self.cfg.party.id);
        let mut failed_now: HashSet<String> = HashSet::new();
        while !stop.load(Ordering::Relaxed) {
            let Some(pulled) = ex.pull(&mpc)? else { break };
            report.pulled += 1;
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
            match self.handle(
                &ex,
                &pulled,
                &sender,
                &message_id,
                &key,
                on_document,
                report,
            ) {
                Ok(()) => {
                    let _ = fs::remove_file(self.state(FAILED_IN).join(format!("{key}.json")));
                }
                Err(Fault::Message(e)) => {
                    failed_now.insert(key.clone());
                    let f = self.record_failure(&ex, &sender, &message_id, &key, &e)?;
                    report.failed.push(f);
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
        on_document: &mut dyn FnMut(&Received),
        report: &mut PollReport,
    ) -> std::result::Result<(), Fault> {
        // Verify first: a receipt needs the verified references, and a forged repeat of a
        // delivered MessageId must not be receipted.
        let certs = self.partner_certs(sender);
        if certs.is_empty() {
            return Err(Fault::Message(Error::UnknownSigner(format!(
                "the message comes from {sender:?}, who is not a known partner (no certificate \
                 named after it in {})",
                self.cfg.partners.dir.display()
            ))));
        }
        let (one, store) = partner_policy(&certs);
        let incoming = message::read(
            &pulled.content_type,
            &pulled.body,
            &ReadOptions {
                recipient: Some(&self.me),
                policy: verify_policy(one, store.as_ref()),
                limits: self.limits.clone(),
            },
        )
        .map_err(Fault::Message)?;
        let um = incoming
            .messaging
            .user_messages
            .first()
            .ok_or_else(|| Fault::Message(Error::InvalidEbms("no UserMessage".into())))?;
        let from_ok = um.from.ids.first().map(|p| p.value.as_str()) == Some(sender);
        if !from_ok || um.info.message_id != message_id {
            return Err(Fault::Message(Error::InvalidEbms(
                "the verified header differs from the one read first".into(),
            )));
        }
        if !um.to.ids.iter().any(|p| p.value == self.cfg.party.id) {
            return Err(Fault::Message(Error::InvalidEbms(format!(
                "the message is addressed to {:?}, not to us",
                um.to.ids.first().map(|p| p.value.as_str()).unwrap_or("")
            ))));
        }

        let entry_path = self.state(DELIVERED).join(key);
        let entry: Option<DeliveredRecord> = read_json(&entry_path).map_err(Fault::Stop)?;
        if let Some(entry) = entry {
            // Written before: finish its renames if a crash interrupted them, receipt again.
            self.finish_delivery(key, entry).map_err(Fault::Stop)?;
            report.duplicates += 1;
            return self.receipt(ex, &incoming, report);
        }

        if incoming.payloads.len() != 1 {
            return Err(Fault::Message(Error::InvalidEbms(format!(
                "one payload (the sealed document) is expected, the message has {}",
                incoming.payloads.len()
            ))));
        }
        let opened = crate::open(
            &incoming.payloads[0].data,
            &OpenOptions {
                recipient: Some(&self.me),
                sender: one,
                partners: store.as_ref(),
                allow_legacy_ciphers: self.cfg.policy.accept_legacy_ciphers,
                ..Default::default()
            },
        )
        .map_err(Fault::Message)?;

        let now = time::now_unix();
        let original = opened.safe_filename();
        let base = original
            .as_deref()
            .and_then(safe_name)
            .unwrap_or_else(|| format!("document-{}.bin", &key[..16]));
        let sha = sha256_hex(&opened.document);
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
            size: opened.document.len() as u64,
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
        // 1. The document and its metadata under temporary names, synced.
        write_synced(&self.tmp_doc(key), &opened.document).map_err(stop)?;
        write_synced(&self.tmp_meta(key), &to_json(&meta)).map_err(stop)?;
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
            size: opened.document.len() as u64,
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
        // 4. Only now: the receipt.
        self.receipt(ex, &incoming, report)
    }

    fn receipt(
        &self,
        ex: &Exchange,
        incoming: &Incoming,
        report: &mut PollReport,
    ) -> std::result::Result<(), Fault> {
        let receipt =
            message::build_receipt(incoming, &self.me, &self.domain).map_err(Fault::Stop)?;
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
            let clash = (meta_pending && meta.exists()) || (doc_pending && doc.exists());
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
        for (name, path, md) in list_dir(self.inbox())? {
            let Some(rest) = name.strip_prefix(TMP_PREFIX) else {
                continue;
            };
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

    /// Record a message we could not accept; after a few attempts tell the service (once).
    fn record_failure(
        &self,
        ex: &Exchange,
        sender: &str,
        message_id: &str,
        key: &str,
        e: &Error,
    ) -> Result<IncomingFailure> {
        let path = self.state(FAILED_IN).join(format!("{key}.json"));
        let now = time::now_unix();
        let prev: Option<IncomingFailure> = read_json(&path).unwrap_or(None);
        let mut f = prev.unwrap_or(IncomingFailure {
            sender: sender.to_string(),
            message_id: message_id.to_string(),
            attempts: 0,
            first_seen: now,
            last_seen: now,
            code: String::new(),
            error: String::new(),
            signalled: false,
        });
        f.attempts += 1;
        f.last_seen = now;
        f.code = e.code().to_string();
        f.error = e.to_string();
        if f.attempts >= SIGNAL_AFTER && !f.signalled {
            let err = EbmsError::new(ebms_code_of(e))
                .with_ref(message_id)
                // The code's name only: the message may name local paths.
                .with_description(&format!(
                    "the recipient could not accept the message ({})",
                    e.code().name()
                ));
            let sent = exchange::error_signal(
                crate::as4::envelope::SoapVersion::Soap12,
                vec![err],
                Some(message_id),
                &self.me,
                &self.domain,
            )
            .and_then(|b| ex.post_receipt(&b));
            f.signalled = sent.is_ok();
        }
        write_atomic(&path, &to_json(&f))?;
        Ok(f)
    }

    pub(super) fn incoming_failures(&self) -> Result<Vec<IncomingFailure>> {
        let mut v = Vec::new();
        for (name, path, md) in list_dir(&self.state(FAILED_IN))? {
            if md.is_file() && name.ends_with(".json") && !name.starts_with('.') {
                if let Some(f) = read_json::<IncomingFailure>(&path)? {
                    v.push(f);
                }
            }
        }
        v.sort_by_key(|f| std::cmp::Reverse(f.last_seen));
        Ok(v)
    }
}
