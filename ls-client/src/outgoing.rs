//! Sending: jobs in `state/outgoing/<job>/`, pushed until the service's receipt is checked,
//! then moved to `sent/` (or `failed/`). See the module documentation of `client`.

use super::fsutil::{
    self, fsync_dir, io_err, list_dir, move_no_clobber, random_hex, read_json, reserve_name,
    safe_name, to_json, write_atomic, write_synced, Lock,
};
use super::{best_cert, Client, Problem};
use ls_core::as4::coordination;
use ls_core::as4::exchange;
use ls_core::as4::message::{self, FilePayload, OutgoingFile};
use ls_core::as4::model::{AgreementRef, Messaging, Signal};
use ls_core::as4::wss::SignedRef;
use ls_core::cms::SealOptions;
use ls_core::error::{Error, ErrorCode, Result};
use ls_core::time;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

pub(super) const OUTGOING: &str = "outgoing";
const JOB: &str = "job.json";
const CLAIM: &str = "claim.json";
const DOCUMENT: &str = "document";
const MESSAGE: &str = "message.bin";
/// The sealed document while the message around it is built (removed once `message.bin` is
/// written).
const PAYLOAD: &str = "payload.p7m";
/// Our SignedData as signed, when a receipt is asked for: what the partner's receipt refers to.
const SIGNED: &str = "signed.p7m";
/// Beside a sent document: the evidence of a receipt.
pub(super) const SIGNED_SUFFIX: &str = ".signed.p7m";
pub(super) const RECEIPT_SUFFIX: &str = ".receipt.p7m";
const LOCK: &str = "lock";
const NEW_PREFIX: &str = ".new-";
/// A finished job's folder is renamed to this prefix before it is removed: another process
/// that tries the job's lock meanwhile must not recreate the lock file in a folder being
/// removed (which then cannot be removed: "Directory not empty").
const DONE_PREFIX: &str = ".done-";
/// An outbox file must not have changed for this long before it is claimed.
const SETTLE: Duration = Duration::from_millis(500);

/// The ebMS header of one send; what is not given comes from `[defaults]`.
#[derive(Clone, Debug, Default)]
pub struct SendOptions {
    pub service: Option<String>,
    pub action: Option<String>,
    /// The ConversationId (a new one, equal to the MessageId, when absent).
    pub conversation: Option<String>,
    /// Do not ask the partner for a signed receipt of this document (`[receipts] request`
    /// asks by default).
    pub no_receipt: bool,
}

/// A send: delivered (the service's receipt checked) or waiting for another attempt.
#[derive(Clone, Debug, Serialize)]
pub struct Sent {
    pub job: String,
    pub message_id: String,
    pub conversation_id: String,
    pub to: String,
    /// The document's name.
    pub name: String,
    pub size: u64,
    /// The MessageId of the service's receipt (`None`: not delivered yet, see `next_attempt`).
    pub receipt_message_id: Option<String>,
    /// The receipt's timestamp, as the service wrote it.
    pub receipt_time: Option<String>,
    /// Where the document is now in `sent/` once delivered.
    pub path: Option<PathBuf>,
    pub attempts: u32,
    /// Unix seconds of the next attempt while not delivered.
    pub next_attempt: Option<i64>,
    pub last_error: Option<Problem>,
}

impl Sent {
    pub fn is_delivered(&self) -> bool {
        self.receipt_message_id.is_some()
    }
}

/// A document moved to `failed/`.
#[derive(Clone, Debug, Serialize)]
pub struct FailedSend {
    pub job: String,
    /// Empty when it failed before a message was built.
    pub message_id: String,
    pub to: String,
    pub name: String,
    /// The document in `failed/` and the reason file next to it.
    pub path: PathBuf,
    pub reason_file: PathBuf,
    pub error: Problem,
}

/// What a run over the jobs did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JobsReport {
    pub sent: Vec<Sent>,
    pub retrying: Vec<Sent>,
    pub failed: Vec<FailedSend>,
    /// Jobs another process (or thread) was working on.
    pub busy: usize,
    /// Jobs that could not be handled (a damaged journal entry, a full disk): left as they are.
    pub errors: Vec<Problem>,
    /// The run stopped early because the service could not be reached; the other due jobs
    /// wait for the next run.
    pub interrupted: Option<Problem>,
}

/// A file of the outbox that is not taken.
#[derive(Clone, Debug, Serialize)]
pub struct Ignored {
    pub path: String,
    pub reason: String,
}

/// What [`Client::process_outbox`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OutboxReport {
    /// Files taken from the outbox.
    pub claimed: usize,
    /// Files not taken (not in a partner's folder).
    pub ignored: Vec<Ignored>,
    pub jobs: JobsReport,
}

/// A waiting send, for [`Client::status`].
#[derive(Clone, Debug, Serialize)]
pub struct JobStatus {
    pub job: String,
    pub message_id: String,
    pub to: String,
    pub name: String,
    pub created: i64,
    pub attempts: u32,
    pub next_attempt: i64,
    pub last_attempt: Option<i64>,
    pub last_error: Option<Problem>,
}

/// A reference our signature covers, as the journal keeps it (a receipt must return it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct RefRecord {
    uri: String,
    transforms: Vec<(String, Option<String>)>,
    digest_method: String,
    digest_value: String,
}

impl From<&SignedRef> for RefRecord {
    fn from(r: &SignedRef) -> RefRecord {
        RefRecord {
            uri: r.uri.clone(),
            transforms: r.transforms.clone(),
            digest_method: r.digest_method.clone(),
            digest_value: r.digest_value.clone(),
        }
    }
}

impl From<&RefRecord> for SignedRef {
    fn from(r: &RefRecord) -> SignedRef {
        SignedRef {
            uri: r.uri.clone(),
            transforms: r.transforms.clone(),
            digest_method: r.digest_method.clone(),
            digest_value: r.digest_value.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Outcome {
    Pending,
    Sent {
        receipt_message_id: String,
        receipt_time: String,
        at: i64,
    },
    Failed {
        code: String,
        error: String,
        transient: bool,
        what_failed: String,
        advice: String,
        at: i64,
    },
}

/// `job.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct JobRecord {
    version: u32,
    job: String,
    message_id: String,
    conversation_id: String,
    to: String,
    name: String,
    service: String,
    action: String,
    size: u64,
    sha256: String,
    /// Of the sealed payload in the message, and of the whole message as pushed (a partner's
    /// refusal notice names one of them).
    #[serde(default)]
    payload_sha256: String,
    #[serde(default)]
    message_sha256: String,
    created: i64,
    /// Of the built message in `message.bin`.
    content_type: String,
    /// What our signature covers: the receipt must return exactly these.
    references: Vec<RefRecord>,
    /// A signed receipt was asked of the partner (the SignedData is in `signed.p7m`), quoting
    /// this signedContentIdentifier.
    #[serde(default)]
    receipt_requested: bool,
    #[serde(default)]
    content_identifier: String,
    attempts: u32,
    next_attempt: i64,
    last_attempt: Option<i64>,
    last_error: Option<StoredProblem>,
    outcome: Outcome,
}

/// An error as `job.json` keeps it (`code` the name, `LS_ERR_…`: the journal's format stays as
/// older clients wrote and read it).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredProblem {
    code: String,
    message: String,
    transient: bool,
}

impl From<&Error> for StoredProblem {
    fn from(e: &Error) -> StoredProblem {
        StoredProblem {
            code: e.code().to_string(),
            message: e.to_string(),
            transient: e.is_transient(),
        }
    }
}

impl StoredProblem {
    fn report(&self) -> Problem {
        stored_report(&self.code, &self.message, self.transient)
    }
}

/// The error object of an error the journal keeps by its code's name.
fn stored_report(code: &str, message: &str, transient: bool) -> Problem {
    Problem {
        transient,
        ..Problem::new(
            ErrorCode::from_name(code).unwrap_or(ErrorCode::Internal),
            message,
        )
    }
}

/// `claim.json`: an outbox file being taken into this job.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ClaimRecord {
    to: String,
    name: String,
    from: String,
    claimed_at: i64,
}

/// `sent/<name>.sent.json`.
#[derive(Serialize)]
struct SentRecord<'a> {
    job: &'a str,
    message_id: &'a str,
    conversation_id: &'a str,
    to: &'a str,
    from: &'a str,
    name: &'a str,
    service: &'a str,
    action: &'a str,
    size: u64,
    sha256: &'a str,
    payload_sha256: &'a str,
    message_sha256: &'a str,
    receipt_message_id: &'a str,
    receipt_time: &'a str,
    receipt_checked_at: String,
    attempts: u32,
    /// The partner's signed receipt: asked for or not, and (filled in when it comes) what it
    /// says. See `notices.rs`.
    partner_receipt: PartnerReceiptState,
}

/// `partner_receipt` in `<name>.sent.json` as the send writes it.
#[derive(Serialize)]
struct PartnerReceiptState {
    /// `waiting` (asked for, not come yet) or `not_requested`; later `processed` or `failed`.
    state: &'static str,
    /// The signedContentIdentifier the receipt must quote (hex text). Our SignedData as signed
    /// is beside the document, `<name>.signed.p7m`.
    content_identifier: Option<String>,
}

/// A document sealed and its message built, not yet journalled.
struct Prepared {
    rec: JobRecord,
    /// Our SignedData as signed, kept when a receipt is asked for.
    signed: Option<Vec<u8>>,
}

/// The sealed payload written into a job folder ([`PAYLOAD`]).
struct SealedPayload {
    path: PathBuf,
    /// Our SignedData as signed, without its content (what a partner's signed receipt refers
    /// to: a few KiB, whatever the document's size).
    signed_data: Vec<u8>,
    /// The document's size and SHA-256 (hex), taken as it was sealed.
    document_size: u64,
    document_sha256: String,
}

/// What became of a job.
enum Attempt {
    Delivered(Sent),
    Retrying(Sent, Error),
    /// With the error when it failed just now (not when a crash interrupted an earlier
    /// failure's finishing).
    Failed(FailedSend, Option<Error>),
    /// Built, not pushed yet.
    Queued,
    /// Handed over by e-mail earlier; the service's answer has not come yet (nothing was done).
    Waiting(Sent),
}

/// How soon a job whose message was handed over by e-mail looks again for the service's
/// answer (a look reads a file; the mailbox is read by the poll).
const PENDING_RECHECK_SECS: i64 = 5;

/// A new job id: sortable by creation time.
/// Seal the document file `doc` for `rcpt` into the file `path` (synced), in constant memory:
/// the document is read and the payload written as it is sealed (`ls_core::seal_stream`), and
/// the document's SHA-256 is taken on the way. The one place a job's payload is made.
fn seal_into(
    path: &Path,
    doc: &Path,
    me: &ls_core::Identity,
    rcpt: &ls_core::Certificate,
    seal: &SealOptions,
) -> Result<SealedPayload> {
    let file = fs::File::open(doc).map_err(|e| io_err("cannot read", doc, e))?;
    let mut src = HashingReader {
        inner: std::io::BufReader::with_capacity(256 * 1024, file),
        sha: openssl::sha::Sha256::new(),
    };
    let mut sealed = None;
    fsutil::write_synced_with(path, |out| {
        sealed = Some(ls_core::seal_stream(
            &mut src,
            out,
            me,
            std::slice::from_ref(rcpt),
            seal,
        )?);
        Ok(())
    })?;
    let sealed = sealed.ok_or_else(|| Error::Internal("the payload was not sealed".into()))?;
    Ok(SealedPayload {
        path: path.to_path_buf(),
        signed_data: sealed.signed_data,
        document_size: sealed.document_size,
        document_sha256: ls_core::bytes::hex(&src.sha.finish()),
    })
}

/// A reader that hashes what passes (the document, as it is sealed).
struct HashingReader<R> {
    inner: R,
    sha: openssl::sha::Sha256,
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
}

fn new_job_id() -> String {
    let (y, mo, d, h, mi, s) = time::parts_from_unix(time::now_unix());
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}-{}", random_hex(5))
}

/// Whether a push failure is final: the service refused the message (an ebMS error), or an
/// HTTP status that no retry changes. Anything else — the service unreachable, TLS, a bad
/// or unverifiable answer — is tried again with the same bytes: the service may have stored
/// the message, and a repeat only gets its receipt.
fn is_final(e: &Error) -> bool {
    match e {
        Error::EbmsError { .. } | Error::Refused(_) => true,
        Error::HttpStatus { .. } => !e.is_transient(),
        _ => false,
    }
}

/// What to do about a failure, for the reason file.
/// How a document came to be sent, for the advice on sending it again.
enum Origin<'a> {
    /// Put in `outbox/<partner>/` (this folder) and taken by `run` or `poll`.
    Outbox(&'a Path),
    /// Handed to `layersec send` or the library's send call.
    Send,
}

/// What to do about a document that could not be sent, and how to send it again.
fn advice(e: &Error, to: &str, origin: Origin) -> String {
    let again = match origin {
        Origin::Outbox(dir) => format!(
            "To send it again, move the document back to the outbox folder {} (it gets a new \
             MessageId).",
            dir.display()
        ),
        Origin::Send => format!(
            "To send it again, send this document again: `layersec send <this file> --to {to}` \
             (or the library's send call; it gets a new MessageId)."
        ),
    };
    let named = match origin {
        Origin::Outbox(_) => "the name of the outbox folder",
        Origin::Send => "the partner given to send",
    };
    let what = match e {
        Error::EbmsError { ebms_code, .. } => match ebms_code.as_str() {
            "EBMS:0101" => "The service did not accept our signature: check that our party id \
                            and our current certificate are registered at the service."
                .to_string(),
            "EBMS:0003" => format!(
                "The service refused the header: check that \"{to}\" ({named}) is the \
                 partner's party id at the service, registered and not revoked there."
            ),
            "EBMS:0103" => "The service's security policy refused the message: ask the \
                            service's operator which algorithms it requires."
                .to_string(),
            "EBMS:0004" => "The service could not process the message: ask its operator; the \
                            detail above says why."
                .to_string(),
            c if c == coordination::errors::RECIPIENT_LIMIT => format!(
                "The document is larger than \"{to}\" accepts (the detail above says how large \
                 each is): send it in parts, or ask the partner to raise its \
                 limits.max_document_bytes and the service's operator its registered limit."
            ),
            c if c == coordination::errors::QUOTA_EXCEEDED => "Our account holds as many \
                 undelivered bytes at the service as it may: wait until partners have fetched \
                 what we sent, or ask the service's operator for a larger quota."
                .to_string(),
            c if c == coordination::errors::MESSAGE_ID_REUSED => "The service already holds \
                 another message of ours with this MessageId."
                .to_string(),
            other => format!("The service refused the message with {other}."),
        },
        Error::Refused(_) => "The service refused the message for good (the detail above says \
                              why; a message larger than the service accepts cannot be sent \
                              through it)."
            .to_string(),
        Error::CertNotFound(_) => format!(
            "Add the partner's certificate with `layersec partners add {to} <certificate file>`."
        ),
        Error::CertExpired(_) | Error::CertNotYetValid(_) => format!(
            "The partner's certificate is not valid now: get its current certificate and add it \
             with `layersec partners add {to} <certificate file>`."
        ),
        Error::Io { .. } => "The document could not be read: check the file and its \
                             permissions."
            .to_string(),
        _ if e.is_transient() => "The service could not be reached for too long: check the \
                                  network and the service URL."
            .to_string(),
        _ => "See the error above.".to_string(),
    };
    format!("{what}\n{again}")
}

impl Client {
    fn outgoing(&self) -> PathBuf {
        self.state(OUTGOING)
    }

    /// Remove a finished job's folder: renamed out of the jobs' names first (atomically; the
    /// lock we hold goes with it), then removed. A crash in between leaves a `.done-` folder,
    /// swept by [`Client::run_jobs`].
    fn retire_job_folder(&self, dir: &Path) -> Result<()> {
        let out = self.outgoing();
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let done = out.join(format!("{DONE_PREFIX}{name}-{}", random_hex(4)));
        match fs::rename(dir, &done) {
            Ok(()) => {}
            // Retired by an earlier try that crashed (or by another process): done.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("cannot retire job folder", dir, e)),
        }
        fsync_dir(&out)?;
        remove_tree(&done)
    }

    /// Whether a job of ours that sent (or sends) `message_id` is not finished yet.
    pub(super) fn still_sending(&self, message_id: &str) -> Result<bool> {
        for (_, path, md) in list_dir(&self.outgoing())? {
            if md.is_dir() {
                if let Some(rec) = read_json::<JobRecord>(&path.join(JOB)).unwrap_or(None) {
                    if rec.message_id == message_id {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    /// A new job folder, created under a hidden name with its lock taken and then renamed into
    /// place, so that no other process sees it without a live lock.
    fn new_job_dir(&self) -> Result<(PathBuf, Lock, String)> {
        let out = self.outgoing();
        let id = new_job_id();
        let tmp = out.join(format!("{NEW_PREFIX}{id}"));
        fs::create_dir(&tmp).map_err(|e| io_err("cannot create job folder", &tmp, e))?;
        let mut lock = Lock::try_acquire(&tmp.join(LOCK))?
            .ok_or_else(|| Error::StateLocked(format!("{} is locked", tmp.display())))?;
        let dir = out.join(&id);
        fs::rename(&tmp, &dir).map_err(|e| io_err("cannot create job folder", &dir, e))?;
        lock.relocate(dir.join(LOCK));
        fsync_dir(&out)?;
        Ok((dir, lock, id))
    }

    /// Seal the job's document (`dir/DOCUMENT`) for `to` into the job folder `dir` and build
    /// the signed AS4 message around it there (`message.bin`, written in pieces and synced:
    /// what every attempt pushes, read in pieces); the job record to go with it. The document
    /// is never read whole.
    fn prepare(
        &self,
        dir: &Path,
        job: &str,
        name: &str,
        to: &str,
        opts: &SendOptions,
    ) -> Result<Prepared> {
        let certs = self.partner_current(to);
        let rcpt = best_cert(&certs).ok_or_else(|| {
            Error::CertNotFound(format!(
                "no certificate for partner {to} in {}",
                self.cfg.partners.dir.display()
            ))
        })?;
        let receipt = !opts.no_receipt && self.partner_wants_receipts(to);
        // The signedContentIdentifier the partner's receipt quotes: unique per document.
        let content_identifier = receipt.then(|| random_hex(16));
        let me = self.me();
        let mut seal = SealOptions {
            filename: Some(name.to_string()),
            compression: self.cfg.policy.compression(),
            cipher: self.cfg.policy.content_cipher(),
            encrypt_to_self: true,
            ..Default::default()
        };
        // A partner whose record names a profile other than `modern` gets what its software
        // reads (legacy-as2: multipart/signed, AES-256-CBC, RSA PKCS#1 v1.5); `modern` partners
        // get `[policy]`'s choices.
        if let Some(p) = self.partners_with(to, |f| f.get(to).cloned()) {
            p.apply_seal(&mut seal);
        }
        seal.receipt_request = content_identifier.as_ref().map(|c| c.as_bytes().to_vec());
        let sealed = seal_into(&dir.join(PAYLOAD), &dir.join(DOCUMENT), &me, rcpt, &seal)?;
        let d = &self.cfg.defaults;
        let service = opts.service.clone().unwrap_or_else(|| d.service.clone());
        let action = opts.action.clone().unwrap_or_else(|| d.action.clone());
        let mut um = exchange::user_message(
            &self.cfg.party.id,
            to,
            &service,
            &action,
            opts.conversation.as_deref().unwrap_or(""),
            &self.domain,
        )?;
        um.agreement_ref = d.agreement_ref.as_ref().map(|a| AgreementRef {
            value: a.clone(),
            r#type: None,
            pmode: None,
        });
        let conversation_id = um.conversation_id.clone();
        let built = message::build_file(OutgoingFile {
            messaging: Messaging {
                user_messages: vec![um],
                signals: Vec::new(),
            },
            payload: FilePayload {
                content_id: format!("document@{}", self.domain),
                mime_type: "application/pkcs7-mime".into(),
                path: &sealed.path,
                properties: Vec::new(),
            },
            signer: &me,
            soap: ls_core::as4::envelope::SoapVersion::Soap12,
        })?;
        let (message_sha256, _) =
            fsutil::write_synced_with(&dir.join(MESSAGE), |out| built.write_to(out).map(|_| ()))?;
        // The message holds the payload now.
        let _ = fs::remove_file(&sealed.path);
        let now = time::now_unix();
        let rec = JobRecord {
            version: 1,
            job: job.to_string(),
            message_id: built.message_id.clone(),
            conversation_id,
            to: to.to_string(),
            name: name.to_string(),
            service,
            action,
            size: sealed.document_size,
            sha256: sealed.document_sha256.clone(),
            payload_sha256: ls_core::bytes::hex(&built.payload_sha256),
            message_sha256: ls_core::bytes::hex(&message_sha256),
            created: now,
            content_type: built.content_type.clone(),
            references: built.references.iter().map(RefRecord::from).collect(),
            receipt_requested: content_identifier.is_some(),
            content_identifier: content_identifier.unwrap_or_default(),
            attempts: 0,
            next_attempt: now,
            last_attempt: None,
            last_error: None,
            outcome: Outcome::Pending,
        };
        Ok(Prepared {
            signed: rec.receipt_requested.then_some(sealed.signed_data),
            rec,
        })
    }

    /// Write our SignedData (when a receipt is asked for) and then `job.json` (the built
    /// message is in `message.bin` already): from here on the job is pushed with exactly these
    /// bytes.
    fn write_job(&self, dir: &Path, p: &Prepared) -> Result<()> {
        if let Some(signed) = &p.signed {
            write_synced(&dir.join(SIGNED), signed)?;
        }
        write_atomic(&dir.join(JOB), &to_json(&p.rec))
    }

    /// Send a document now: seal it for partner `to`, push it and check the service's receipt.
    ///
    /// `Ok` with [`Sent::is_delivered`] once the receipt is checked (the document's copy is in
    /// `sent/`); `Ok` without it when the service could not be reached — the job is kept and
    /// retried by [`Client::run_due_jobs`] (or the daemon) with the same MessageId. `Err` when
    /// nothing was queued (unknown partner, bad name, the document cannot be sealed) or when
    /// the service refused the message (the document is then in `failed/` with its reason).
    pub fn send_bytes(
        &self,
        name: &str,
        data: &[u8],
        to: &str,
        opts: &SendOptions,
    ) -> Result<Sent> {
        self.send_with(name, |doc| write_synced(doc, data), to, opts)
    }

    /// [`Client::send_bytes`] with the document written into the job folder by `put` (a copy
    /// of a file is made in pieces: a document of any size is sent in constant memory).
    fn send_with(
        &self,
        name: &str,
        put: impl FnOnce(&Path) -> Result<()>,
        to: &str,
        opts: &SendOptions,
    ) -> Result<Sent> {
        let name = safe_name(name).ok_or_else(|| {
            Error::InvalidArgument("the document needs a file name (a base name)".into())
        })?;
        let (dir, _lock, id) = self.new_job_dir()?;
        // Nothing is queued unless the message could be built: the folder goes again.
        let p = put(&dir.join(DOCUMENT))
            .and_then(|()| self.prepare(&dir, &id, &name, to, opts))
            .and_then(|p| self.write_job(&dir, &p).map(|()| p));
        let p = match p {
            Ok(p) => p,
            Err(e) => {
                let _ = self.retire_job_folder(&dir);
                return Err(e);
            }
        };
        fsync_dir(&dir)?;
        self.fail_at("send:after-job")?;
        let mut outcome = self.attempt(&dir, p.rec)?;
        if let (Attempt::Retrying(s, Error::ReceiptPending(_)), Some(e)) =
            (&outcome, &self.cfg.email)
        {
            // By e-mail the service's receipt comes later: wait for it a while, then the send
            // is completed now, or by `run`.
            let wait = Duration::from_secs(e.receipt_wait_secs);
            // The message is submitted and journalled: a mailbox that cannot be read now
            // leaves it pending (never an error that would make the caller send it again).
            if self
                .transport
                .await_answer(&s.message_id, wait, &crate::NEVER)
                .unwrap_or(false)
            {
                if let Some(rec) = read_json::<JobRecord>(&dir.join(JOB))? {
                    outcome = self.attempt(&dir, rec)?;
                }
            }
        }
        match outcome {
            Attempt::Delivered(s) | Attempt::Retrying(s, _) | Attempt::Waiting(s) => Ok(s),
            Attempt::Failed(_, Some(e)) => Err(e),
            Attempt::Failed(f, None) => Err(Error::Internal(f.error.message)),
            Attempt::Queued => Err(Error::Internal("the job was not attempted".into())),
        }
    }

    /// [`Client::send_bytes`] with the content and name of a file (the file stays where it is).
    pub fn send_file(&self, path: &Path, to: &str, opts: &SendOptions) -> Result<Sent> {
        let mut src = fs::File::open(path).map_err(|e| io_err("cannot read", path, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let copy = |doc: &Path| {
            fsutil::write_synced_with(doc, |out| {
                std::io::copy(&mut src, out)
                    .map(drop)
                    .map_err(|e| io_err("cannot read", path, e))
            })
            .map(drop)
        };
        self.send_with(&name, copy, to, opts)
    }

    /// Push a job's message once (read in pieces from `message.bin`) and record what became
    /// of it.
    fn attempt(&self, dir: &Path, mut rec: JobRecord) -> Result<Attempt> {
        let path = dir.join(MESSAGE);
        let missing = |e: std::io::Error| {
            Error::StateCorrupt(format!(
                "{}: the built message is missing: {e}",
                dir.display()
            ))
        };
        let mut file = fs::File::open(&path).map_err(missing)?;
        let len = file.metadata().map_err(missing)?.len();
        let references: Vec<SignedRef> = rec.references.iter().map(SignedRef::from).collect();
        let now = time::now_unix();
        // By e-mail: submitted as often as attempts allow and still unanswered when it would be
        // submitted again: failed, with a bounce as the reason if one came.
        let mut before = self.transport.pending(&rec.message_id);
        let gives_up = |p: &Option<ls_core::transport::Pending>| {
            p.as_ref().is_some_and(|p| {
                !p.answered
                    && p.due
                    && p.submissions > 0
                    && rec.attempts >= self.cfg.retry.max_attempts
            })
        };
        if gives_up(&before) {
            // The answer may be in the mailbox, not read yet: a look first.
            let _ = self
                .transport
                .await_answer(&rec.message_id, Duration::ZERO, &crate::NEVER);
            before = self.transport.pending(&rec.message_id);
        }
        if let Some(p) = before.as_ref().filter(|_| gives_up(&before)) {
            let e = match &p.bounced {
                Some(reason) => Error::MailStatus {
                    code: crate::email::BOUNCE,
                    message: reason.clone(),
                },
                None => Error::Timeout(format!(
                    "no receipt from the service for {} submissions by e-mail",
                    p.submissions
                )),
            };
            let what = format!("Gave up after {} attempts.", rec.attempts);
            return self.fail_job(dir, rec, e, what);
        }
        rec.attempts += 1;
        rec.last_attempt = Some(now);
        let keys = self.keys();
        // The same journalled bytes again, for a carrier that hands them to another node of the
        // service when one fails part way: the same message, the same MessageId.
        let reopen = || {
            fs::File::open(&path)
                .map(|f| Box::new(std::io::Read::take(f, len)) as Box<dyn std::io::Read>)
        };
        let pushed = self.exchange_as(&keys).push_reopenable(
            &rec.content_type,
            &mut file,
            len,
            &rec.message_id,
            &references,
            Some(&reopen),
        );
        match pushed {
            Ok(receipt) => {
                self.fail_at("send:after-push")?;
                let info = receipt
                    .messaging
                    .signals
                    .iter()
                    .find(|s| matches!(s.signal, Signal::Receipt { .. }))
                    .map(|s| s.info.clone())
                    .ok_or_else(|| Error::Internal("a checked receipt without a Receipt".into()))?;
                rec.outcome = Outcome::Sent {
                    receipt_message_id: info.message_id,
                    receipt_time: info.timestamp,
                    at: now,
                };
                rec.last_error = None;
                write_atomic(&dir.join(JOB), &to_json(&rec))?;
                self.fail_at("send:after-outcome")?;
                self.finish(dir, &rec)
            }
            Err(e @ Error::ReceiptPending(_)) => {
                // Handed over by e-mail; the answer comes later. Only a submission counts as an
                // attempt; a look for the answer does not.
                let after = self.transport.pending(&rec.message_id);
                let submitted =
                    after.as_ref().map(|p| p.submissions) != before.as_ref().map(|p| p.submissions);
                if !submitted {
                    rec.attempts = rec.attempts.saturating_sub(1);
                }
                rec.last_error = Some((&e).into());
                rec.next_attempt = now + PENDING_RECHECK_SECS;
                write_atomic(&dir.join(JOB), &to_json(&rec))?;
                let sent = self.sent_of(&rec, None);
                Ok(if submitted {
                    Attempt::Retrying(sent, e)
                } else {
                    Attempt::Waiting(sent)
                })
            }
            Err(e) if is_final(&e) || rec.attempts >= self.cfg.retry.max_attempts => {
                let what = if is_final(&e) {
                    "The service refused the message.".to_string()
                } else {
                    format!("Gave up after {} attempts.", rec.attempts)
                };
                self.fail_job(dir, rec, e, what)
            }
            Err(e) => {
                rec.last_error = Some((&e).into());
                rec.next_attempt = now + self.backoff(rec.attempts) as i64;
                write_atomic(&dir.join(JOB), &to_json(&rec))?;
                Ok(Attempt::Retrying(self.sent_of(&rec, None), e))
            }
        }
    }

    fn fail_job(
        &self,
        dir: &Path,
        mut rec: JobRecord,
        e: Error,
        what_failed: String,
    ) -> Result<Attempt> {
        rec.last_error = Some((&e).into());
        // A job claimed from the outbox keeps its claim; one from a send call has none.
        let outbox = self.cfg.folders.outbox.join(&rec.to);
        let origin = if dir.join(CLAIM).exists() {
            Origin::Outbox(&outbox)
        } else {
            Origin::Send
        };
        rec.outcome = Outcome::Failed {
            code: e.code().to_string(),
            error: e.to_string(),
            transient: e.is_transient(),
            what_failed,
            advice: advice(&e, &rec.to, origin),
            at: time::now_unix(),
        };
        write_atomic(&dir.join(JOB), &to_json(&rec))?;
        match self.finish(dir, &rec)? {
            Attempt::Failed(f, _) => Ok(Attempt::Failed(f, Some(e))),
            other => Ok(other),
        }
    }

    fn sent_of(&self, rec: &JobRecord, path: Option<PathBuf>) -> Sent {
        let (rid, rtime) = match &rec.outcome {
            Outcome::Sent {
                receipt_message_id,
                receipt_time,
                ..
            } => (Some(receipt_message_id.clone()), Some(receipt_time.clone())),
            _ => (None, None),
        };
        Sent {
            job: rec.job.clone(),
            message_id: rec.message_id.clone(),
            conversation_id: rec.conversation_id.clone(),
            to: rec.to.clone(),
            name: rec.name.clone(),
            size: rec.size,
            next_attempt: rid.is_none().then_some(rec.next_attempt),
            receipt_message_id: rid,
            receipt_time: rtime,
            path,
            attempts: rec.attempts,
            last_error: rec.last_error.as_ref().map(StoredProblem::report),
        }
    }

    /// Carry out a decided outcome (idempotent, so a crash anywhere in it is finished by the
    /// next run): the record or reason file reserves a unique name, the document moves next to
    /// it, the job folder goes.
    fn finish(&self, dir: &Path, rec: &JobRecord) -> Result<Attempt> {
        let (target_dir, companion, content, marker) = match &rec.outcome {
            Outcome::Pending => {
                return Err(Error::Internal("finishing a pending job".into()));
            }
            Outcome::Sent {
                receipt_message_id,
                receipt_time,
                at,
            } => {
                let r = SentRecord {
                    job: &rec.job,
                    message_id: &rec.message_id,
                    conversation_id: &rec.conversation_id,
                    to: &rec.to,
                    from: &self.cfg.party.id,
                    name: &rec.name,
                    service: &rec.service,
                    action: &rec.action,
                    size: rec.size,
                    sha256: &rec.sha256,
                    payload_sha256: &rec.payload_sha256,
                    message_sha256: &rec.message_sha256,
                    receipt_message_id,
                    receipt_time,
                    receipt_checked_at: time::iso8601(*at),
                    attempts: rec.attempts,
                    partner_receipt: PartnerReceiptState {
                        state: if rec.receipt_requested {
                            "waiting"
                        } else {
                            "not_requested"
                        },
                        content_identifier: rec
                            .receipt_requested
                            .then(|| rec.content_identifier.clone()),
                    },
                };
                (
                    &self.cfg.folders.sent,
                    ".sent.json",
                    to_json(&r),
                    format!(
                        "\"job\": {}",
                        serde_json::to_string(&rec.job).unwrap_or_default()
                    ),
                )
            }
            Outcome::Failed {
                code,
                error,
                what_failed,
                advice,
                at,
                ..
            } => {
                let text = format!(
                    "layersec could not send this document.\n\n\
                     Document:   {}\n\
                     To:         {}\n\
                     MessageId:  {}\n\
                     When:       {}\n\
                     Attempts:   {}\n\
                     Error:      {code}\n\
                     What:       {what_failed} {error}\n\n\
                     {}\n\n\
                     Job:        {}\n",
                    rec.name,
                    rec.to,
                    if rec.message_id.is_empty() {
                        "(none: no message was built)"
                    } else {
                        &rec.message_id
                    },
                    time::iso8601(*at),
                    rec.attempts,
                    advice,
                    rec.job,
                );
                (
                    &self.cfg.folders.failed,
                    ".reason.txt",
                    text.into_bytes(),
                    format!("Job:        {}\n", rec.job),
                )
            }
        };
        let doc = dir.join(DOCUMENT);
        let mut name = String::new();
        for _ in 0..10 {
            name = reserve_name(target_dir, &rec.name, companion, &marker, &content)?;
            match move_no_clobber(&doc, &target_dir.join(&name)) {
                Ok(()) => {
                    // The document keeps no permissions it had in the outbox: ours only (or
                    // the folder's group's).
                    let mode = self.file_mode();
                    fsutil::set_mode(&target_dir.join(&name), mode)?;
                    fsutil::set_mode(&target_dir.join(format!("{name}{companion}")), mode)?;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    // Moved by an earlier try that crashed (or by another process): done.
                    break;
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    // Someone put a file of that name there meanwhile: give the name up.
                    let _ = fs::remove_file(target_dir.join(format!("{name}{companion}")));
                    continue;
                }
                Err(e) => return Err(io_err("cannot move", &doc, e)),
            }
        }
        if matches!(rec.outcome, Outcome::Sent { .. }) {
            // The evidence a receipt will refer to, beside the document.
            let signed = dir.join(SIGNED);
            let to = target_dir.join(format!("{name}{SIGNED_SUFFIX}"));
            match move_no_clobber(&signed, &to) {
                Ok(()) => fsutil::set_mode(&to, self.file_mode())?,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("cannot move", &signed, e)),
            }
        }
        self.fail_at("finish:after-move")?;
        self.retire_job_folder(dir)?;
        // What the carrier kept for the message (e-mail: its answer, submissions, a bounce).
        self.transport.forget(&rec.message_id);
        let path = target_dir.join(&name);
        Ok(match &rec.outcome {
            Outcome::Sent { .. } => Attempt::Delivered(self.sent_of(rec, Some(path))),
            Outcome::Failed {
                code,
                error,
                transient,
                ..
            } => {
                let problem = stored_report(code, error, *transient);
                Attempt::Failed(
                    FailedSend {
                        job: rec.job.clone(),
                        message_id: rec.message_id.clone(),
                        to: rec.to.clone(),
                        name: rec.name.clone(),
                        reason_file: target_dir.join(format!("{name}{companion}")),
                        path,
                        error: problem,
                    },
                    None,
                )
            }
            Outcome::Pending => unreachable!("checked above"),
        })
    }

    /// Take the settled files of `outbox/<partner id>/` into jobs, then run the due jobs.
    pub fn process_outbox(&self) -> Result<OutboxReport> {
        self.process_outbox_until(&super::NEVER)
    }

    pub(super) fn process_outbox_until(&self, stop: &AtomicBool) -> Result<OutboxReport> {
        let mut report = OutboxReport::default();
        let outbox = &self.cfg.folders.outbox;
        for (pname, ppath, md) in list_dir(outbox)? {
            if pname.starts_with('.') {
                continue;
            }
            if !md.is_dir() {
                report.ignored.push(Ignored {
                    path: ppath.display().to_string(),
                    reason: "documents go into a folder named after the partner: \
                             outbox/<partner id>/<file>"
                        .into(),
                });
                continue;
            }
            for (fname, fpath, fmd) in list_dir(&ppath)? {
                if stop.load(Ordering::Relaxed) {
                    return Ok(report);
                }
                let lower = fname.to_ascii_lowercase();
                if fname.starts_with('.')
                    || lower.ends_with(".tmp")
                    || lower.ends_with(".part")
                    || !fmd.is_file()
                    || !settled(&fmd)
                {
                    continue;
                }
                if let Some(()) = self.claim(&fpath, &pname, &fname, &mut report.jobs)? {
                    report.claimed += 1;
                }
            }
        }
        let jobs = self.run_jobs(time::now_unix(), stop)?;
        let j = &mut report.jobs;
        j.sent.extend(jobs.sent);
        j.retrying.extend(jobs.retrying);
        j.failed.extend(jobs.failed);
        j.busy += jobs.busy;
        j.errors.extend(jobs.errors);
        j.interrupted = jobs.interrupted;
        Ok(report)
    }

    /// Move an outbox file into a new job (`None` if someone else took it first) and build
    /// its message; a document that cannot be sent goes to `failed/` at once.
    fn claim(
        &self,
        src: &Path,
        to: &str,
        fname: &str,
        report: &mut JobsReport,
    ) -> Result<Option<()>> {
        let name = safe_name(fname).unwrap_or_else(|| "document".into());
        let (dir, _lock, id) = self.new_job_dir()?;
        let claim = ClaimRecord {
            to: to.to_string(),
            name,
            from: src.display().to_string(),
            claimed_at: time::now_unix(),
        };
        write_atomic(&dir.join(CLAIM), &to_json(&claim))?;
        if let Err(e) = fs::rename(src, dir.join(DOCUMENT)) {
            let _ = fs::remove_dir_all(&dir);
            if e.kind() == ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(Error::io(
                format!(
                    "cannot take {} into the journal (the outbox and the state folder must be \
                     on the same file system)",
                    src.display()
                ),
                e,
            ));
        }
        fsync_dir(&dir)?;
        if let Some(p) = src.parent() {
            fsync_dir(p)?;
        }
        self.fail_at("outbox:after-claim")?;
        if let Attempt::Failed(f, _) = self.init_claimed(&dir, &id, &claim)? {
            report.failed.push(f);
        }
        Ok(Some(()))
    }

    /// Build the message of a claimed document (it is pushed by the run over due jobs):
    /// `Queued`, or `Failed` when the document cannot be sent.
    fn init_claimed(&self, dir: &Path, id: &str, claim: &ClaimRecord) -> Result<Attempt> {
        let prepared = self.prepare(dir, id, &claim.name, &claim.to, &SendOptions::default());
        match prepared {
            Ok(p) => {
                self.write_job(dir, &p)?;
                Ok(Attempt::Queued)
            }
            Err(e) => {
                let rec = JobRecord {
                    version: 1,
                    job: id.to_string(),
                    message_id: String::new(),
                    conversation_id: String::new(),
                    to: claim.to.clone(),
                    name: claim.name.clone(),
                    service: self.cfg.defaults.service.clone(),
                    action: self.cfg.defaults.action.clone(),
                    size: fs::metadata(dir.join(DOCUMENT)).map_or(0, |m| m.len()),
                    sha256: String::new(),
                    payload_sha256: String::new(),
                    message_sha256: String::new(),
                    created: time::now_unix(),
                    content_type: String::new(),
                    references: Vec::new(),
                    receipt_requested: false,
                    content_identifier: String::new(),
                    attempts: 0,
                    next_attempt: 0,
                    last_attempt: None,
                    last_error: None,
                    outcome: Outcome::Pending,
                };
                self.fail_job(
                    dir,
                    rec,
                    e,
                    "The document could not be prepared for sending.".into(),
                )
            }
        }
    }

    /// Push every job that is due (and finish those a crash interrupted). Called at start-up
    /// and by the daemon; a `send` from another process is not disturbed (its job is locked).
    pub fn run_due_jobs(&self) -> Result<JobsReport> {
        self.run_jobs(time::now_unix(), &super::NEVER)
    }

    /// The jobs due at `now` (the tests move the clock).
    #[cfg(test)]
    pub(super) fn run_jobs_at(&self, now: i64) -> Result<JobsReport> {
        self.run_jobs(now, &super::NEVER)
    }

    fn run_jobs(&self, now: i64, stop: &AtomicBool) -> Result<JobsReport> {
        let mut report = JobsReport::default();
        let out = self.outgoing();
        for (name, path, md) in list_dir(&out)? {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if !md.is_dir() {
                continue;
            }
            if name.starts_with(NEW_PREFIX) {
                // A job being created (its lock is live), or a creation that crashed before
                // anything was pushed (left alone for a minute: its creator may be between
                // creating the folder and taking the lock).
                if fsutil::age_secs(&path) > 60 {
                    if let Some(_l) = Lock::try_acquire(&path.join(LOCK))? {
                        let _ = fs::remove_dir_all(&path);
                    }
                }
                continue;
            }
            if name.starts_with(DONE_PREFIX) {
                // A finished job whose removal a crash interrupted (a minute's grace: its
                // finisher may be removing it now).
                if fsutil::age_secs(&path) > 60 {
                    remove_tree(&path)?;
                }
                continue;
            }
            if name.starts_with('.') {
                continue;
            }
            let Some(lock) = Lock::try_acquire(&path.join(LOCK)).or_else(|e| {
                // The folder went away meanwhile (finished by another process).
                if path.exists() {
                    Err(e)
                } else {
                    Ok(None)
                }
            })?
            else {
                if path.exists() {
                    report.busy += 1;
                }
                continue;
            };
            match self.run_job(&path, &name, now) {
                Ok(None) => {}
                Ok(Some(Attempt::Delivered(s))) => report.sent.push(s),
                Ok(Some(Attempt::Failed(f, _))) => report.failed.push(f),
                Ok(Some(Attempt::Queued | Attempt::Waiting(_))) => {}
                Ok(Some(Attempt::Retrying(s, e))) => {
                    // A refused login too: the same password for the next job would be refused
                    // again (and count against the account).
                    let stop = super::is_unreachable(&e) || e.code() == ErrorCode::LoginFailed;
                    report.retrying.push(s);
                    if stop {
                        // The service is unreachable: the other due jobs wait for the next run.
                        report.interrupted = Some((&e).into());
                        drop(lock);
                        break;
                    }
                }
                // A bug (or a simulated crash in the tests): stop.
                Err(e) if e.code() == ErrorCode::Internal => return Err(e),
                Err(e) => report.errors.push(Problem {
                    message: format!("job {name}: {e}"),
                    ..(&e).into()
                }),
            }
            drop(lock);
        }
        Ok(report)
    }

    /// One job folder, locked: finish it, rebuild it, or push it if due. `None`: not due, or
    /// nothing to do.
    fn run_job(&self, dir: &Path, id: &str, now: i64) -> Result<Option<Attempt>> {
        let rec: Option<JobRecord> = read_json(&dir.join(JOB))?;
        let Some(rec) = rec else {
            // Never pushed. Claimed from the outbox: build it now. From the API (whose caller
            // got no MessageId) or a claim whose move did not happen: drop it.
            let claim: Option<ClaimRecord> = read_json(&dir.join(CLAIM))?;
            match claim {
                Some(c) if dir.join(DOCUMENT).exists() => {
                    return match self.init_claimed(dir, id, &c)? {
                        Attempt::Queued => self.run_job(dir, id, now),
                        other => Ok(Some(other)),
                    };
                }
                _ => {
                    fs::remove_dir_all(dir)
                        .map_err(|e| io_err("cannot remove job folder", dir, e))?;
                    fsync_dir(&self.outgoing())?;
                    return Ok(None);
                }
            }
        };
        match rec.outcome {
            Outcome::Sent { .. } | Outcome::Failed { .. } => Ok(Some(self.finish(dir, &rec)?)),
            Outcome::Pending if rec.next_attempt <= now => Ok(Some(self.attempt(dir, rec)?)),
            Outcome::Pending => Ok(None),
        }
    }

    /// The waiting sends.
    pub(super) fn jobs(&self) -> Result<Vec<JobStatus>> {
        let mut v = Vec::new();
        for (name, path, md) in list_dir(&self.outgoing())? {
            if !md.is_dir() || name.starts_with('.') {
                continue;
            }
            let rec: Option<JobRecord> = match read_json(&path.join(JOB)) {
                Ok(r) => r,
                Err(e) => {
                    v.push(JobStatus {
                        job: name.clone(),
                        message_id: String::new(),
                        to: String::new(),
                        name: String::new(),
                        created: 0,
                        attempts: 0,
                        next_attempt: 0,
                        last_attempt: None,
                        last_error: Some((&e).into()),
                    });
                    continue;
                }
            };
            let Some(rec) = rec else {
                let claim: Option<ClaimRecord> = read_json(&path.join(CLAIM)).unwrap_or(None);
                if let Some(c) = claim {
                    v.push(JobStatus {
                        job: name.clone(),
                        message_id: String::new(),
                        to: c.to,
                        name: c.name,
                        created: c.claimed_at,
                        attempts: 0,
                        next_attempt: c.claimed_at,
                        last_attempt: None,
                        last_error: None,
                    });
                }
                continue;
            };
            v.push(JobStatus {
                job: rec.job,
                message_id: rec.message_id,
                to: rec.to,
                name: rec.name,
                created: rec.created,
                attempts: rec.attempts,
                next_attempt: rec.next_attempt,
                last_attempt: rec.last_attempt,
                last_error: rec.last_error.as_ref().map(StoredProblem::report),
            });
        }
        Ok(v)
    }
}

/// Whether an outbox file has not been modified for [`SETTLE`] (a modification time far in
/// the future — a skewed clock — counts as settled).
fn settled(md: &fs::Metadata) -> bool {
    let Ok(m) = md.modified() else { return true };
    match SystemTime::now().duration_since(m) {
        Ok(age) => age >= SETTLE,
        Err(ahead) => ahead.duration() > Duration::from_secs(5),
    }
}

/// `remove_dir_all`, where a tree already gone (or going: removed by another process at the
/// same time) is no error.
fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot remove job folder", path, e)),
    }
}
