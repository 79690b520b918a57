//! The client of a Layer Security Messaging Service: what a business installs so that a
//! document dropped in a folder (or handed to the library) arrives, opened and verified, in the
//! partner's folder.
//!
//! - Sending: the document is sealed with CMS for the partner (signed by us, encrypted for the
//!   partner and to ourselves), carried as the one payload of a signed AS4 UserMessage from us
//!   to the partner, and pushed to the service, whose signed receipt is checked against what we
//!   signed. Put a file in `outbox/<partner id>/` or call [`Client::send_bytes`] /
//!   [`Client::send_file`].
//! - Receiving: [`Client::poll`] pulls from our MPC until it is empty, verifies each message and
//!   its document against the certificate of the partner it comes from, writes the document and
//!   its metadata into `inbox/`, and only then receipts it.
//! - [`Client::run`] does both in a loop.
//!
//! # The journal (`state/`)
//!
//! Sending: every send is a job folder `state/outgoing/<job>/` holding the document, the built
//! message (`message.bin`) and `job.json` (MessageId, partner, name, attempts, next attempt,
//! last error, outcome), all synced before the first push. A job is created under a hidden name
//! and renamed into place with its lock held, so no other process sees it half-made. A resumed
//! job pushes the very same bytes again: the service keeps one copy per sender and MessageId and
//! answers a repeat with the same receipt, so a retry after a crash is harmless. Once the
//! receipt is checked, the outcome is written to `job.json` first; then `sent/<name>.sent.json`
//! is created exclusively (reserving a unique name; it names the job, so a retry after a crash
//! takes its own reservation over), the document is moved next to it without replacing
//! anything, and the job folder is removed. A permanent failure does the same into `failed/`
//! with `<name>.reason.txt`. An outbox file is claimed by renaming it into a new job folder
//! (after `claim.json` says where it came from); a job folder without `job.json` was never
//! pushed and is rebuilt from its claim, or dropped when it came from the API (whose caller got
//! no MessageId). Jobs are locked by a lock file while worked on, so a daemon and a `send` from
//! another process do not push the same job at once.
//!
//! Receiving: the key of a message is `hex(sha256(sender || 0 || MessageId))`. If
//! `state/delivered/<key>` exists the message was written already and is only receipted again.
//! Otherwise the document and its metadata go to `inbox/.tmp-<key>` and `inbox/.tmp-<key>.meta`
//! (synced), then `state/delivered/<key>` records the final name (synced), then both are renamed
//! (metadata first) and the inbox folder synced, and only then the receipt is posted. Temporary
//! files with a journal entry are renamed at the next poll; those without one are removed (the
//! message was not receipted, so the service offers it again). A `kill -9` at any point
//! neither loses nor duplicates a document.

#![forbid(unsafe_code)]

pub mod config;
mod email;
pub mod enrol;
mod fsutil;
mod incoming;
mod nodes;
mod notices;
mod outgoing;
pub mod partners;
mod receipts;
mod rollover;
#[cfg(test)]
mod tests;

pub use config::{Config, TemplateOptions, TokenTemplate};
pub use incoming::{IncomingFailure, PollReport, Received};
pub use nodes::{observe_service_nodes, NodeFailure, NodeStatus, ServiceNodes};
pub use notices::PartnerRefusal;
pub use outgoing::{FailedSend, Ignored, JobStatus, JobsReport, OutboxReport, SendOptions, Sent};
pub use partners::{
    AddOptions, Added, FetchOutcome, Fetched, PartnerEntry, PreviousInfo, Profile, Source,
};
pub use receipts::{PartnerReceipt, ReceiptState};
pub use rollover::{
    CertificateStatus, PartnerUpdate, Phase, Rollover, RolloverOptions, UpdateRecord,
};

use fsutil::{io_err, list_dir, random_unit};
use ls_core::as4::coordination::message_limit_for;
use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange::Exchange;
use ls_core::as4::wss::VerifyPolicy;
use ls_core::as4::xml::Limits;
use ls_core::cert::{CertStore, Certificate};
use ls_core::error::{Error, ErrorCode, Result};
use ls_core::keys::Identity;
use ls_core::time;
use ls_core::transport::{Carrier, Transport};
use partners::PartnerFolder;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// An error as reports and events carry it: the one error object of Layer Security
/// (`{"code": 601, "name": "LS_ERR_TIMEOUT", "family": "transport", "message": "…",
/// "transient": true}`), [`ls_core::ErrorReport`].
pub type Problem = ls_core::error::ErrorReport;

/// A partner certificate in the partners folder.
#[derive(Clone, Debug, Serialize)]
pub struct PartnerInfo {
    pub party_id: String,
    pub subject: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub sha256: String,
    /// Within its validity period now.
    pub valid_now: bool,
}

impl PartnerInfo {
    pub(crate) fn of(party_id: &str, c: &Certificate) -> PartnerInfo {
        PartnerInfo {
            party_id: party_id.to_string(),
            subject: c.subject().to_string(),
            serial: c.serial_hex(),
            not_before: time::iso8601(c.not_before()),
            not_after: time::iso8601(c.not_after()),
            sha256: c.sha256_fingerprint(),
            valid_now: c.check_validity(time::now_unix()).is_ok(),
        }
    }
}

/// The last poll, as `state/status.json` keeps it.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct PollStatus {
    /// Unix seconds.
    pub at: i64,
    pub ok: bool,
    pub error: Option<String>,
    /// The last poll that reached the service (Unix seconds).
    pub last_ok_at: Option<i64>,
}

/// What the client is doing: [`Client::status`].
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub party_id: String,
    pub service_url: String,
    /// Where our key is: the key file, or the PKCS#11 URI without its query (never a PIN).
    pub key_location: String,
    /// How messages travel: `https`, or `email` with [`Status::email`].
    pub transport: &'static str,
    /// By e-mail: our address, the service's, and the servers (never a password).
    pub email: Option<EmailStatus>,
    /// Sends waiting for a (first or next) attempt.
    pub pending: Vec<JobStatus>,
    /// Documents in `sent/`.
    pub sent: usize,
    /// Documents in `failed/`.
    pub failed: usize,
    /// Documents in `inbox/` (not yet taken away).
    pub inbox: usize,
    /// Messages for us that could not be accepted: refused for good (`refused`: the class our
    /// signed notice told the sender; the service no longer offers them) or left with the
    /// service (unknown senders: offered again until they expire).
    pub incoming_failures: Vec<IncomingFailure>,
    /// Partners' signed refusals of documents we sent, newest first.
    pub refused_by_partners: Vec<PartnerRefusal>,
    /// Documents in `sent/` whose partner's signed receipt has not come yet…
    pub receipts_waiting: usize,
    /// …of which sent more than `[receipts] warn_after_hours` ago.
    pub receipts_overdue: usize,
    pub last_poll: Option<PollStatus>,
    /// The nodes of the service (`[service] url`, then `urls`), which is in use and each one's
    /// last failure; empty by e-mail.
    pub service_nodes: Vec<NodeStatus>,
    /// The most recent problems, newest first.
    pub last_errors: Vec<String>,
    /// Our certificate: its validity, and whether it is time to roll over.
    pub certificate: CertificateStatus,
    /// Our rollover (the last one, until the next), with each partner's part.
    pub rollover: Option<Rollover>,
    /// Partners' certificate updates as we judged them, newest first (at most 20).
    pub partner_updates: Vec<UpdateRecord>,
}

/// `status` of the e-mail carrier.
#[derive(Clone, Debug, Serialize)]
pub struct EmailStatus {
    pub address: String,
    pub service_address: String,
    pub smtp: String,
    pub mailbox: String,
}

impl Status {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// What [`Client::run`] reports as it goes.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        party_id: String,
    },
    /// Delivered to the service, receipt checked.
    Sent(Sent),
    /// An attempt failed for a reason that may pass; tried again later.
    Retrying(Sent),
    /// Moved to `failed/`.
    SendFailed(FailedSend),
    /// Written to `inbox/`.
    Received(Received),
    /// A message for us that could not be accepted.
    ReceiveFailed(IncomingFailure),
    /// A partner refused a document we sent (its signed notice).
    RefusedByPartner(PartnerRefusal),
    /// A partner's signed receipt of a document we sent (`verified`: taken; else refused).
    Receipt(PartnerReceipt),
    /// We started a rollover by ourselves (`[identity] auto_rollover_days`).
    RolloverStarted(Rollover),
    /// A partner's certificate update (its rollover), accepted or rejected.
    CertificateUpdate(UpdateRecord),
    /// A partner's answer to our certificate update.
    UpdateAnswer(PartnerUpdate),
    /// We sign with our new key from now on.
    Switched {
        new_certificate_sha256: String,
        because: String,
    },
    /// A file in the outbox that is not in a partner's folder.
    Ignored {
        path: String,
        reason: String,
    },
    /// The service could not be reached; the next try is in `retry_in_secs`.
    Unreachable {
        error: Problem,
        retry_in_secs: u64,
    },
    /// The service is reachable again.
    Reachable,
    /// Something else went wrong (the loop goes on).
    Error {
        context: String,
        error: Problem,
    },
    Stopped,
}

/// How often [`Client::run`] looks at the outbox and the due jobs.
const OUTBOX_SCAN: Duration = Duration::from_secs(2);

/// The stop flag of the operations called on their own.
pub(crate) static NEVER: AtomicBool = AtomicBool::new(false);

/// The client: our identity, our partners, the service and the folders of one configuration.
pub struct Client {
    cfg: Config,
    /// Our keys: what we sign with, and what else opens documents (a rollover's); the
    /// service's certificates.
    keys: RwLock<rollover::keys::Keys>,
    partners: RwLock<PartnerFolder>,
    /// What carries our messages: HTTPS or e-mail ([`Carrier`]).
    transport: Arc<dyn Carrier>,
    /// The e-mail carrier, when it is the one (`[transport] kind = "email"`).
    mail: Option<Arc<email::MailCarrier>>,
    domain: String,
    limits: Limits,
    #[cfg(test)]
    failpoint: std::sync::Mutex<Option<&'static str>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("party", &self.cfg.party.id)
            .field(
                "service",
                &ls_core::transport::https::redact_userinfo(&self.cfg.service.url),
            )
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for a configuration: loads our identity, the partners and the service's
    /// certificate, sets up HTTPS to the service and creates the folders that are missing.
    pub fn from_config(cfg: &Config) -> Result<Client> {
        let password = cfg.password()?;
        if cfg.transport.kind == config::TransportKind::Email {
            return Self::build(cfg.clone(), None, password);
        }
        let transport = Self::https_transport(cfg)?;
        Self::build(cfg.clone(), Some(Arc::new(transport)), password)
    }

    /// The HTTPS transport to the service that [`Client::from_config`] sets up (every node of
    /// `[service]`, failing over between them), for a caller that wraps it (a progress display)
    /// and hands it to [`Client::with_transport`].
    pub fn https_transport(cfg: &Config) -> Result<ServiceNodes> {
        // A pulled message is a document of at most our limit, wrapped; a longer response is
        // read to its end but not kept (the message is refused as too large).
        nodes::https_nodes(
            cfg,
            |url| Ok(url.to_string()),
            message_limit_for(cfg.limits.max_document_bytes),
        )
    }

    /// HTTPS to what `derive` makes of each node's AS4 URL (a path beside it: the directory,
    /// the rollover registration), trusted and authenticated as `[service]` says, reading
    /// responses of at most `max_response_bytes`, failing over between the nodes.
    pub(crate) fn https_to(
        cfg: &Config,
        derive: impl Fn(&str) -> Result<String>,
        max_response_bytes: u64,
    ) -> Result<ServiceNodes> {
        nodes::https_nodes(cfg, derive, max_response_bytes)
    }

    /// A client that reaches the service through `transport` (tests, other carriers).
    pub fn with_transport(cfg: &Config, transport: Box<dyn Transport>) -> Result<Client> {
        let password = cfg.password()?;
        Self::build(cfg.clone(), Some(Arc::new(transport)), password)
    }

    /// A client whose messages go by `carrier` (any implementation of the message-level
    /// contract).
    pub fn with_carrier(cfg: &Config, carrier: Arc<dyn Carrier>) -> Result<Client> {
        let password = cfg.password()?;
        Self::build(cfg.clone(), Some(carrier), password)
    }

    /// With `carrier` `None`, the e-mail carrier of `[email]`.
    fn build(
        cfg: Config,
        carrier: Option<Arc<dyn Carrier>>,
        password: Option<zeroize::Zeroizing<String>>,
    ) -> Result<Client> {
        let state_file = cfg.folders.state.join(rollover::STATE);
        let stamp = rollover::keys::stamp(&cfg);
        let ours: Option<Rollover> = fsutil::read_json(&state_file).unwrap_or(None);
        if ours.as_ref().is_some_and(|r| r.phase == Phase::Switching) {
            // A switch to the new key was interrupted: its files are put in place again (the
            // state is finished at the next poll).
            let _lock = fsutil::Lock::acquire(
                &cfg.folders.state.join("rollover.lock"),
                Duration::from_secs(10),
            )?;
            if rollover::keys::pending_exists(&cfg) {
                rollover::keys::install_pending(&cfg)?;
            }
        }
        let pending = ours.as_ref().is_some_and(Rollover::pending);
        let keys = rollover::keys::load(
            &cfg,
            password.as_deref().map(String::as_str),
            pending,
            stamp,
        )?;
        let f = &cfg.folders;
        // Our folders are ours: 0700 (2750 with group_readable) when we create them. Folders
        // that exist keep the permissions their owner gave them.
        let dir_mode = if f.group_readable { 0o2750 } else { 0o700 };
        let state_subs = [
            outgoing::OUTGOING,
            incoming::DELIVERED,
            incoming::FAILED_IN,
            notices::REFUSED,
        ];
        for d in [
            &f.outbox,
            &f.sent,
            &f.failed,
            &f.inbox,
            &f.state,
            &cfg.partners.dir,
        ]
        .into_iter()
        .cloned()
        .chain(state_subs.iter().map(|s| f.state.join(s)))
        {
            if !d.exists() {
                std::fs::create_dir_all(&d).map_err(|e| io_err("cannot create folder", &d, e))?;
                fsutil::set_mode(&d, dir_mode)?;
            }
        }
        let partners = PartnerFolder::load(&cfg.partners.dir)?;
        let domain = cfg.domain();
        let limits = Limits {
            max_part: message_limit_for(cfg.limits.max_document_bytes),
            ..Limits::default()
        };
        let (transport, mail): (Arc<dyn Carrier>, _) = match carrier {
            Some(c) => (c, None),
            None => {
                let mail = Arc::new(email::MailCarrier::new(
                    &cfg,
                    std::iter::once(keys.service.clone())
                        .chain(keys.service_previous.iter().cloned())
                        .collect(),
                    limits.clone(),
                )?);
                (mail.clone(), Some(mail))
            }
        };
        Ok(Client {
            cfg,
            keys: RwLock::new(keys),
            partners: RwLock::new(partners),
            transport,
            mail,
            domain,
            limits,
            #[cfg(test)]
            failpoint: std::sync::Mutex::new(None),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn party_id(&self) -> &str {
        &self.cfg.party.id
    }

    /// What we sign with now (our configured identity; after a rollover's switch, the new one).
    pub fn identity(&self) -> Arc<Identity> {
        self.me()
    }

    /// Our keys and the service's certificates, as they are now.
    pub(crate) fn keys(&self) -> rollover::keys::Keys {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The service's certificates we accept: the current one first.
    pub(crate) fn service_certs(&self) -> Vec<Certificate> {
        let k = self.keys();
        std::iter::once(k.service)
            .chain(k.service_previous)
            .collect()
    }

    pub(crate) fn me(&self) -> Arc<Identity> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .signer
            .clone()
    }

    /// Our other keys: a rollover's new one before the switch, then previous ones.
    pub(crate) fn other_keys(&self) -> Arc<Vec<Identity>> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .others
            .clone()
    }

    /// Read our keys again when the rollover state changed on disk (another process rolled
    /// over or switched), or always with `force`.
    pub(crate) fn refresh_keys(&self, force: bool) -> Result<()> {
        let path = self.state(rollover::STATE);
        let stamp = rollover::keys::stamp(&self.cfg);
        if !force && stamp == self.keys.read().unwrap_or_else(|e| e.into_inner()).stamp {
            return Ok(());
        }
        let r: Option<Rollover> = fsutil::read_json(&path)?;
        let pending = r.as_ref().is_some_and(Rollover::pending);
        let password = self.cfg.password()?;
        let keys = rollover::keys::load(
            &self.cfg,
            password.as_deref().map(String::as_str),
            pending,
            stamp,
        )?;
        if let Some(m) = &self.mail {
            m.set_service_certificates(
                std::iter::once(keys.service.clone())
                    .chain(keys.service_previous.iter().cloned())
                    .collect(),
            );
        }
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    fn exchange_as<'a>(&'a self, k: &'a rollover::keys::Keys) -> Exchange<'a> {
        Exchange {
            transport: &*self.transport,
            me: &k.signer,
            service: &k.service,
            service_previous: &k.service_previous,
            soap: SoapVersion::Soap12,
            domain: self.domain.clone(),
            limits: self.limits.clone(),
        }
    }

    fn state(&self, sub: &str) -> PathBuf {
        self.cfg.folders.state.join(sub)
    }

    /// A simulated crash point for the tests: returns an error once when armed.
    fn fail_at(&self, point: &'static str) -> Result<()> {
        #[cfg(test)]
        {
            let mut f = self.failpoint.lock().unwrap_or_else(|e| e.into_inner());
            if *f == Some(point) {
                *f = None;
                return Err(Error::Internal(format!("simulated crash at {point}")));
            }
        }
        let _ = point;
        Ok(())
    }

    /// `secs` varied by up to ± `polling.jitter_percent`, at least 1.
    fn jitter(&self, secs: u64) -> u64 {
        let j = f64::from(self.cfg.polling.jitter_percent.min(100)) / 100.0;
        let f = 1.0 + j * (2.0 * random_unit() - 1.0);
        ((secs as f64 * f).round() as u64).max(1)
    }

    /// The wait until the next poll: `polling.interval_secs` varied by up to ±
    /// `polling.jitter_percent`, to the millisecond (so that even a 1 s interval varies, and
    /// two daemons started together drift apart).
    fn poll_wait(&self) -> Duration {
        let j = f64::from(self.cfg.polling.jitter_percent.min(100)) / 100.0;
        let f = 1.0 + j * (2.0 * random_unit() - 1.0);
        let ms = (self.cfg.polling.interval_secs as f64 * 1000.0 * f).round() as u64;
        Duration::from_millis(ms.max(100))
    }

    /// The wait before try number `failures + 1`: `retry.initial_secs` doubling up to
    /// `retry.max_secs`, with jitter.
    fn backoff(&self, failures: u32) -> u64 {
        let r = &self.cfg.retry;
        let shift = failures.saturating_sub(1).min(40);
        let base = r.initial_secs.saturating_mul(1u64 << shift).min(r.max_secs);
        self.jitter(base).min(r.max_secs.max(1))
    }

    // -----------------------------------------------------------------------------------------
    // Partners

    /// The certificates partner `party_id` may sign with now: its current certificate(s) (the
    /// files named after it in the partners folder; several after an earlier version's
    /// rollover) and the previous ones its record still accepts. The subject name is not
    /// looked at: the file name is the party id. For a party not known yet the folder is read
    /// again first (added by another process).
    fn partner_certs(&self, party_id: &str) -> Vec<Certificate> {
        self.partners_with(party_id, |f| f.accepted(party_id, time::now_unix()))
    }

    /// `f` of the partners folder, read again first when it does not know `party_id`.
    fn partners_with<T>(&self, party_id: &str, f: impl Fn(&PartnerFolder) -> T) -> T {
        let known = |p: &PartnerFolder| p.get(party_id).is_some_and(|x| !x.current.is_empty());
        {
            let folder = self.partners.read().unwrap_or_else(|e| e.into_inner());
            if known(&folder) {
                return f(&folder);
            }
        }
        let _ = self.reload_partners();
        f(&self.partners.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Read the partners folder again (certificates added by another process).
    pub fn reload_partners(&self) -> Result<()> {
        let folder = PartnerFolder::load(&self.cfg.partners.dir)?;
        *self.partners.write().unwrap_or_else(|e| e.into_inner()) = folder;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Status and the daemon loop

    /// Pending jobs, counts of the folders, incoming failures and the last problems.
    pub fn status(&self) -> Result<Status> {
        let pending = self.jobs()?;
        let count = |dir: &Path, companion: &str| -> Result<usize> {
            Ok(list_dir(dir)?
                .into_iter()
                .filter(|(n, _, md)| {
                    md.is_file()
                        && !n.starts_with('.')
                        && !n.ends_with(companion)
                        && !n.ends_with(outgoing::SIGNED_SUFFIX)
                        && !n.ends_with(outgoing::RECEIPT_SUFFIX)
                })
                .count())
        };
        let incoming_failures = self.incoming_failures()?;
        let refused_by_partners = self.partner_refusals()?;
        let waiting = self.receipts(true)?;
        let overdue_before =
            time::now_unix() - (self.cfg.receipts.warn_after_hours.saturating_mul(3600) as i64);
        let receipts_overdue = waiting
            .iter()
            .filter(|r| r.sent_at.is_some_and(|t| t <= overdue_before))
            .count();
        let last_poll: Option<PollStatus> = fsutil::read_json(&self.state(incoming::STATUS))?;
        let mut last: Vec<(i64, String)> = Vec::new();
        for j in &pending {
            if let Some(e) = &j.last_error {
                last.push((
                    j.last_attempt.unwrap_or(j.created),
                    format!("sending {} to {}: {}", j.name, j.to, e.message),
                ));
            }
        }
        for f in &incoming_failures {
            last.push((
                f.last_seen,
                format!(
                    "message {} from {}: {}",
                    f.message_id, f.sender, f.error.message
                ),
            ));
        }
        for r in &refused_by_partners {
            last.push((r.received_at, r.summary()));
        }
        if let Some(p) = &last_poll {
            if let Some(e) = &p.error {
                last.push((p.at, format!("polling: {e}")));
            }
        }
        last.sort_by_key(|e| std::cmp::Reverse(e.0));
        let rollover = self.rollover_state()?;
        if let Some(r) = &rollover {
            for p in &r.partners {
                if let (Some(e), true) = (&p.error, p.state == "sending") {
                    last.push((
                        r.started_at,
                        format!("certificate update to {}: {}", p.partner, e.message),
                    ));
                }
            }
        }
        let mut partner_updates = self.partner_updates()?;
        partner_updates.truncate(20);
        Ok(Status {
            certificate: self.certificate_status(),
            rollover,
            partner_updates,
            party_id: self.cfg.party.id.clone(),
            key_location: self.cfg.key_location(),
            service_url: ls_core::transport::https::redact_userinfo(&self.cfg.service.url),
            transport: match self.cfg.transport.kind {
                config::TransportKind::Https => "https",
                config::TransportKind::Email => "email",
            },
            email: self
                .cfg
                .email
                .as_ref()
                .filter(|_| self.mail.is_some())
                .map(|e| EmailStatus {
                    address: e.address.clone(),
                    service_address: e.service_address.clone(),
                    smtp: e.smtp_url.clone(),
                    mailbox: e.mailbox_url.clone(),
                }),
            pending,
            sent: count(&self.cfg.folders.sent, ".sent.json")?,
            failed: count(&self.cfg.folders.failed, ".reason.txt")?,
            inbox: count(&self.cfg.folders.inbox, ".meta.json")?,
            incoming_failures,
            refused_by_partners,
            receipts_waiting: waiting.len(),
            receipts_overdue,
            last_poll,
            service_nodes: match self.cfg.transport.kind {
                config::TransportKind::Https => nodes::status(&self.cfg),
                config::TransportKind::Email => Vec::new(),
            },
            last_errors: last
                .into_iter()
                .take(20)
                .map(|(t, m)| format!("{} {m}", time::iso8601(t)))
                .collect(),
        })
    }

    /// Finish what a previous run left: pending inbox renames and every due send.
    pub fn resume(&self) -> Result<JobsReport> {
        if let Some(_lock) = fsutil::Lock::try_acquire(&self.state(incoming::POLL_LOCK))? {
            self.recover_inbox()?;
        }
        self.run_due_jobs()
    }

    /// The daemon: sends what is in the outbox and due (every 2 s), polls every
    /// `polling.interval_secs` (with jitter), backs off while the service is unreachable
    /// (`retry.initial_secs` doubling up to `retry.max_secs`), and tells `on_event` what
    /// happens. Returns within about 0.1 s once `stop` is set, or once the request under way
    /// (one push, pull or receipt) has ended: `stop` is also checked between jobs and between
    /// pulled messages.
    pub fn run(&self, stop: &AtomicBool, mut on_event: impl FnMut(&Event)) -> Result<()> {
        on_event(&Event::Started {
            party_id: self.cfg.party.id.clone(),
        });
        let mut ignored_seen = std::collections::HashSet::new();
        let mut next_outbox = Instant::now();
        let mut next_poll = Instant::now();
        let mut poll_failures = 0u32;
        let mut unreachable = false;
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next_outbox {
                match self.process_outbox_until(stop) {
                    Ok(r) => {
                        for i in &r.ignored {
                            if ignored_seen.insert(i.path.clone()) {
                                on_event(&Event::Ignored {
                                    path: i.path.clone(),
                                    reason: i.reason.clone(),
                                });
                            }
                        }
                        emit_jobs(&r.jobs, &mut on_event);
                    }
                    Err(e) => on_event(&Event::Error {
                        context: "sending".into(),
                        error: (&e).into(),
                    }),
                }
                next_outbox = Instant::now() + OUTBOX_SCAN;
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if Instant::now() >= next_poll {
                // New certificates of known partners (a rollover) are picked up here; unknown
                // partners are looked up again when they are needed.
                if let Err(e) = self.reload_partners() {
                    on_event(&Event::Error {
                        context: "reading the partners folder".into(),
                        error: (&e).into(),
                    });
                }
                match self.auto_rollover() {
                    Ok(Some(r)) => on_event(&Event::RolloverStarted(r)),
                    Ok(None) => {}
                    Err(e) => on_event(&Event::Error {
                        context: "starting a rollover ([identity] auto_rollover_days)".into(),
                        error: (&e).into(),
                    }),
                }
                let result = self.poll_until(|r| on_event(&Event::Received(r.clone())), stop);
                let wait = match result {
                    Ok(report) => {
                        for f in &report.failed {
                            on_event(&Event::ReceiveFailed(f.clone()));
                        }
                        for r in &report.refused_by_partners {
                            on_event(&Event::RefusedByPartner(r.clone()));
                        }
                        for r in &report.receipts {
                            on_event(&Event::Receipt(r.clone()));
                        }
                        for u in &report.certificate_updates {
                            on_event(&Event::CertificateUpdate(u.clone()));
                        }
                        for a in &report.update_answers {
                            on_event(&Event::UpdateAnswer(a.clone()));
                        }
                        if report.switched {
                            if let Ok(Some(r)) = self.rollover_state() {
                                on_event(&Event::Switched {
                                    new_certificate_sha256: r.new_certificate_sha256,
                                    because: r.switched_because.unwrap_or_default(),
                                });
                            }
                        }
                        for e in &report.receipt_errors {
                            on_event(&Event::Error {
                                context: "posting a receipt".into(),
                                error: e.clone(),
                            });
                        }
                        if unreachable {
                            on_event(&Event::Reachable);
                        }
                        unreachable = false;
                        poll_failures = 0;
                        if report.limited {
                            // More is waiting: the next poll soon, after the outbox.
                            Duration::from_secs(1)
                        } else {
                            self.poll_wait()
                        }
                    }
                    Err(e) if e.code() == ErrorCode::StateLocked => {
                        on_event(&Event::Error {
                            context: "polling".into(),
                            error: (&e).into(),
                        });
                        self.poll_wait()
                    }
                    Err(e) => {
                        poll_failures += 1;
                        let wait = self.backoff(poll_failures);
                        if is_unreachable(&e) {
                            unreachable = true;
                            on_event(&Event::Unreachable {
                                error: (&e).into(),
                                retry_in_secs: wait,
                            });
                        } else {
                            on_event(&Event::Error {
                                context: "polling".into(),
                                error: (&e).into(),
                            });
                        }
                        Duration::from_secs(wait)
                    }
                };
                next_poll = Instant::now() + wait;
            }
            let until = next_outbox.min(next_poll);
            // A carrier that can be told of new messages (IMAP IDLE) waits on it: a new one
            // is received at once, not at the next poll.
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() && !stop.load(Ordering::Relaxed) {
                if let Ok(true) = self.transport.wait(left, stop) {
                    next_poll = Instant::now();
                }
            }
            while !stop.load(Ordering::Relaxed) && Instant::now() < until.min(next_poll) {
                std::thread::sleep(
                    until
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(100)),
                );
            }
        }
        on_event(&Event::Stopped);
        Ok(())
    }
}

/// Failures that mean the service cannot be reached (rather than that it refused something).
/// (A message handed over by e-mail whose answer has not come is not: the service was
/// reached.)
fn is_unreachable(e: &Error) -> bool {
    let bounce = matches!(e, Error::MailStatus { code, .. } if *code == email::BOUNCE);
    (e.is_transient() && e.code() != ErrorCode::ReceiptPending && !bounce)
        || matches!(
            e.code(),
            ErrorCode::ConnectFailed | ErrorCode::Timeout | ErrorCode::TlsFailed
        )
}

fn emit_jobs(r: &JobsReport, on_event: &mut impl FnMut(&Event)) {
    for s in &r.sent {
        on_event(&Event::Sent(s.clone()));
    }
    for s in &r.retrying {
        on_event(&Event::Retrying(s.clone()));
    }
    for f in &r.failed {
        on_event(&Event::SendFailed(f.clone()));
    }
    for e in &r.errors {
        on_event(&Event::Error {
            context: "a send job".into(),
            error: e.clone(),
        });
    }
}

/// How to verify what comes from a partner with these certificates: the one certificate, or
/// (during a rollover) a store of just these.
fn partner_policy(certs: &[Certificate]) -> (Option<&Certificate>, Option<CertStore>) {
    if certs.len() == 1 {
        (Some(&certs[0]), None)
    } else {
        let mut s = CertStore::new();
        for c in certs {
            s.add_partner(c.clone(), None);
        }
        (None, Some(s))
    }
}

fn verify_policy<'a>(
    signer: Option<&'a Certificate>,
    store: Option<&'a CertStore>,
) -> VerifyPolicy<'a> {
    VerifyPolicy {
        signer,
        partners: store,
        ..Default::default()
    }
}

/// The partner certificate to seal for: the one valid now that expires last.
pub(crate) fn best_cert(certs: &[Certificate]) -> Option<&Certificate> {
    let now = time::now_unix();
    certs
        .iter()
        .max_by_key(|c| (c.check_validity(now).is_ok(), c.not_after()))
}
