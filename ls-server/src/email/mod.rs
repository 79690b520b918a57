//! The e-mail gateway (SOAP over e-mail): the service's intake mailbox and its deliveries by
//! mail, beside the HTTPS endpoint and through the same handler.
//!
//! - **Intake** (one thread): the intake mailbox (IMAP) is listed; each mail is fetched (at
//!   most `max_mail_bytes`) and read as one AS4 message (`ls_core::mail::layout::read`). An AS4
//!   message is handed to [`Service::handle`] exactly as if it had been POSTed to the AS4 path:
//!   authentication by signature against the registered certificate, routing, duplicate
//!   detection and the durable store are the push path's. The answer to a UserMessage — the
//!   service's signed receipt, or an error signal made after its signature verified — is mailed
//!   to the mail address *registered* for its (authenticated) From party, never to the mail's
//!   own `From`; the uniform refusal of what could not be authenticated is not answered (no
//!   backscatter to forged senders). Signals (a party's receipt of a message it got by mail,
//!   its error signals) go through the same handler and are not answered. A mail is removed
//!   only once it was handled and its answer (if any) submitted; a store that cannot take it
//!   (HTTP 503) leaves it for the next round. Mails that are not AS4 messages, bounces, mails
//!   too large, pull requests (not supported by mail) and what could not be authenticated are
//!   moved to the set-aside folder.
//! - **Delivery** (a second thread): for each usable party with a mail address, its waiting
//!   messages are claimed (leased for `redeliver_after_secs`) and submitted by SMTP, byte for
//!   byte as the sender signed them. A message stays leased until the party's receipt comes
//!   back by mail (intake → handle → `mark_delivered`); otherwise it is submitted again when the
//!   lease ends. The push path wakes the delivery when it accepts a message for such a party.
//!
//! Failures never spin: a mailbox or SMTP server refusing the password is tried again after
//! [`LOGIN_BACKOFF`] (and logged as an error), other connection failures after a back-off that
//! doubles up to [`MAX_BACKOFF`]. Logs carry mail UIDs, MessageIds, parties and addresses, never
//! bodies or passwords.

#[cfg(test)]
mod tests;

use crate::config::Config;
use crate::endpoint::{Service, AS4_PATH, UNAUTHENTICATED, UNAUTHENTICATED_CODE};
use crate::http::{Handler, Request, Response};
use crate::log::{self, V};
use crate::store::{Claimed, Party, PartyKey};
use ls_core::as4::exchange;
use ls_core::as4::model::{Messaging, Signal};
use ls_core::as4::xml::Limits;
use ls_core::mail::layout::{self, Content};
use ls_core::mail::smtp::SmtpClient;
use ls_core::mail::{Account, MailRef, MailTrust, MailUrl, Mailbox};
use ls_core::Error;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// After a mail server refused the user name or password, it is not asked again for this long.
pub const LOGIN_BACKOFF: Duration = Duration::from_secs(300);
/// The longest pause between reconnections after other failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The first pause after a failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// How long the mail servers may take to answer (and to connect).
pub const MAIL_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many messages of one party are submitted per delivery round (then the next
/// party's turn; a round that stopped there is followed by another at once).
pub const MAX_PER_PARTY_ROUND: usize = 64;
/// Room for a mail's header and MIME structure beside its base64 body.
const MAIL_OVERHEAD: u64 = 64 * 1024;

/// Submits mails (SMTP in the service; the tests capture them).
pub trait Submitter: Send + Sync {
    /// Submit `mail` (a whole RFC 5322 mail) from envelope sender `from` to `to`. Errors as
    /// [`SmtpClient::send`]'s: `Refused` for good, `LoginFailed`, others transient.
    fn submit(&self, from: &str, to: &str, mail: &[u8]) -> ls_core::Result<()>;
}

impl Submitter for SmtpClient {
    fn submit(&self, from: &str, to: &str, mail: &[u8]) -> ls_core::Result<()> {
        self.send(from, &[to], mail)
    }
}

/// Opens the intake mailbox (IMAP in the service; the tests use one in memory).
pub trait MailboxOpener: Send + Sync {
    fn open(&self) -> ls_core::Result<Box<dyn Mailbox>>;
    /// The server, for the log.
    fn server(&self) -> String;
}

/// The intake mailbox of an account ([`ls_core::mail::open_mailbox`]).
pub struct AccountMailbox(pub Account);

impl MailboxOpener for AccountMailbox {
    fn open(&self) -> ls_core::Result<Box<dyn Mailbox>> {
        ls_core::mail::open_mailbox(&self.0)
    }
    fn server(&self) -> String {
        self.0.url.to_string()
    }
}

/// How an AS4 message is laid out as one mail ([`ls_core::mail::layout`] in the service).
pub trait MailFormat: Send + Sync {
    fn compose(
        &self,
        content_type: &str,
        body: &[u8],
        from: &str,
        to: &str,
        limits: &Limits,
    ) -> ls_core::Result<Vec<u8>>;
    fn read(&self, raw: &[u8], limits: &Limits) -> Content;
}

/// The layout of docs/EMAIL.md.
pub struct CoreLayout;

impl MailFormat for CoreLayout {
    fn compose(
        &self,
        content_type: &str,
        body: &[u8],
        from: &str,
        to: &str,
        limits: &Limits,
    ) -> ls_core::Result<Vec<u8>> {
        layout::compose(content_type, body, from, to, limits)
    }
    fn read(&self, raw: &[u8], limits: &Limits) -> Content {
        layout::read(raw, limits)
    }
}

/// A [`Submitter`] that, once the server refused the password, refuses every submission
/// without connecting for [`LOGIN_BACKOFF`] (both threads share it: the account is not locked
/// by retries).
pub struct GuardedSubmitter {
    inner: Arc<dyn Submitter>,
    login_failed_at: Mutex<Option<Instant>>,
    backoff: Duration,
}

impl GuardedSubmitter {
    pub fn new(inner: Arc<dyn Submitter>, backoff: Duration) -> GuardedSubmitter {
        GuardedSubmitter {
            inner,
            login_failed_at: Mutex::new(None),
            backoff,
        }
    }
}

impl Submitter for GuardedSubmitter {
    fn submit(&self, from: &str, to: &str, mail: &[u8]) -> ls_core::Result<()> {
        {
            let at = self
                .login_failed_at
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(t) = *at {
                if t.elapsed() < self.backoff {
                    return Err(Error::LoginFailed(format!(
                        "the SMTP server refused the password less than {} s ago; not tried \
                         again yet",
                        self.backoff.as_secs()
                    )));
                }
            }
        }
        let r = self.inner.submit(from, to, mail);
        let mut at = self
            .login_failed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *at = match &r {
            Err(Error::LoginFailed(_)) => Some(Instant::now()),
            _ => None,
        };
        r
    }
}

/// Wakes a sleeping thread of the gateway: when a message for a mail party is accepted (the
/// delivery), or to stop.
#[derive(Debug, Default)]
pub struct Wake {
    /// How many wakes so far.
    generation: Mutex<u64>,
    cv: Condvar,
    stop: AtomicBool,
}

impl Wake {
    /// Wake the thread waiting now (or make its next wait return at once).
    pub fn wake(&self) {
        let mut g = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        *g = g.wrapping_add(1);
        self.cv.notify_all();
    }

    /// Stop: every wait returns at once from now on.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
        self.wake();
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// The stop flag, for [`Mailbox::wait`].
    pub fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }

    /// The current generation: a wait from it returns at once if a wake came since.
    pub fn generation(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleep until `max` passed, a wake came after generation `seen`, or the stop; returns
    /// the generation then.
    pub fn wait(&self, seen: u64, max: Duration) -> u64 {
        let deadline = Instant::now() + max;
        let mut g = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        while *g == seen && !self.stopped() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            g = match self.cv.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        *g
    }
}

/// Counters of the gateway, for `/metrics`.
#[derive(Debug, Default)]
pub struct MailMetrics {
    /// Mails fetched from the intake mailbox.
    pub received: AtomicU64,
    /// Mails moved to the set-aside folder, by reason.
    pub set_aside: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Answers (receipts, error signals) submitted to senders by mail.
    pub answered: AtomicU64,
    /// Messages submitted by mail to their recipients (offers again included).
    pub delivered: AtomicU64,
    /// Submissions that failed, by reason (`refused`, `login`, `transient`, `too_large`,
    /// `compose`).
    pub submission_failures: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Delivery-status notifications (bounces) found in the intake mailbox.
    pub bounces: AtomicU64,
    /// Mails left in the mailbox for the next round (the store could not take them).
    pub deferred: AtomicU64,
    /// Failures to reach or use the intake mailbox (each followed by a reconnection).
    pub mailbox_errors: AtomicU64,
}

impl MailMetrics {
    fn set_aside(&self, reason: &'static str) {
        let mut m = self.set_aside.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(reason).or_default() += 1;
    }

    fn failure(&self, reason: &'static str) {
        let mut m = self
            .submission_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *m.entry(reason).or_default() += 1;
    }

    /// The Prometheus text of these counters.
    pub fn render(&self, o: &mut String) {
        use std::fmt::Write;
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let labelled =
            |o: &mut String,
             name: &str,
             help: &str,
             label: &str,
             m: &Mutex<std::collections::BTreeMap<&'static str, u64>>| {
                let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
                for (k, n) in m.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    let _ = writeln!(o, "{name}{{{label}=\"{k}\"}} {n}");
                }
            };
        counter(
            o,
            "layersec_mail_received_total",
            "Mails fetched from the e-mail gateway's intake mailbox.",
            self.received.load(Relaxed),
        );
        labelled(
            o,
            "layersec_mail_set_aside_total",
            "Mails moved to the set-aside folder, by reason.",
            "reason",
            &self.set_aside,
        );
        counter(
            o,
            "layersec_mail_answered_total",
            "Answers (receipts, error signals) mailed to the senders of messages received by mail.",
            self.answered.load(Relaxed),
        );
        counter(
            o,
            "layersec_mail_delivered_total",
            "Messages submitted by mail to parties registered with a mail address (offers again included).",
            self.delivered.load(Relaxed),
        );
        labelled(
            o,
            "layersec_mail_submission_failures_total",
            "Submissions by SMTP that failed, by reason.",
            "reason",
            &self.submission_failures,
        );
        counter(
            o,
            "layersec_mail_bounces_total",
            "Delivery-status notifications (bounces) found in the intake mailbox.",
            self.bounces.load(Relaxed),
        );
        counter(
            o,
            "layersec_mail_deferred_total",
            "Mails left in the intake mailbox for the next round (the store could not take them).",
            self.deferred.load(Relaxed),
        );
        counter(
            o,
            "layersec_mail_mailbox_errors_total",
            "Failures to reach or use the intake mailbox.",
            self.mailbox_errors.load(Relaxed),
        );
    }
}

/// What the gateway is told by `[email]`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The service's own mail address: the From of its mails.
    pub address: String,
    pub set_aside_folder: String,
    pub max_mail_bytes: u64,
    pub redeliver_after_secs: i64,
    pub poll: Duration,
    /// The pause after a mail server refused the password.
    pub login_backoff: Duration,
}

/// What to do with a mail once it was looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Handled (and answered if it had to be): remove it.
    Delete,
    /// Not for the service, or not acceptable: move it to the set-aside folder.
    SetAside(&'static str),
    /// Not handled (the store could not take it): leave it for the next round.
    Leave,
    /// Handled, but its answer could not be submitted now (SMTP unavailable): leave it, and
    /// end this round (the next round handles it again: a duplicate, answered with the same
    /// receipt).
    LeaveAndPause,
}

/// What an intake round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntakeRound {
    pub mails: usize,
    pub deleted: usize,
    pub set_aside: usize,
    pub left: usize,
}

/// What a delivery round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryRound {
    pub submitted: usize,
    /// A party had more messages than [`MAX_PER_PARTY_ROUND`]: another round at once.
    pub more: bool,
    /// Submissions failed for a while (SMTP unavailable, login refused): pause.
    pub paused: bool,
}

/// The e-mail gateway of a service.
pub struct Gateway {
    pub service: Arc<Service>,
    pub submitter: Arc<dyn Submitter>,
    pub format: Arc<dyn MailFormat>,
    pub settings: Settings,
    /// Wakes the intake's pauses (to stop).
    pub intake_wake: Arc<Wake>,
}

/// The first PartyId of a From/To party.
fn party_key(ids: &[ls_core::as4::model::PartyId]) -> Option<PartyKey> {
    ids.first()
        .map(|p| PartyKey::new(p.r#type.as_deref().unwrap_or(""), &p.value))
}

/// What a mail's AS4 message is, from its (not yet trusted) header.
enum Kind {
    User { from: PartyKey, message_id: String },
    Pull,
    Signal,
    Unreadable,
}

/// Whether `m` is the uniform refusal of what could not be authenticated.
fn is_uniform_refusal(m: &Messaging) -> bool {
    m.signals.iter().any(|s| match &s.signal {
        Signal::Error(errs) => errs.iter().any(|e| {
            e.code == UNAUTHENTICATED_CODE && e.description.as_deref() == Some(UNAUTHENTICATED)
        }),
        _ => false,
    })
}

/// The error codes of an error signal (for the log).
fn error_codes(m: &Messaging) -> String {
    m.signals
        .iter()
        .filter_map(|s| match &s.signal {
            Signal::Error(errs) => Some(errs.iter().map(|e| e.code.as_str()).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect::<Vec<_>>()
        .join(",")
}

/// A short, one-line form of a server's text for the log.
fn short(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    s
}

impl Gateway {
    fn limits(&self) -> &Limits {
        &self.service.limits
    }

    fn metrics(&self) -> &MailMetrics {
        &self.service.metrics.mail
    }

    /// One look at the mailbox: every mail in it is handled and removed, set aside or left.
    /// An error of the mailbox itself ends the round (the caller reconnects).
    pub fn intake_round(&self, mb: &mut dyn Mailbox) -> ls_core::Result<IntakeRound> {
        let mut round = IntakeRound::default();
        for mail in mb.list()? {
            if self.intake_wake.stopped() {
                break;
            }
            round.mails += 1;
            let raw = match mb.fetch(&mail, self.settings.max_mail_bytes) {
                Ok(raw) => raw,
                Err(Error::TooLarge(_)) => {
                    log::warn(
                        "mail_set_aside",
                        &[
                            ("uid", V::S(&mail.uid)),
                            ("reason", "too_large".into()),
                            ("size", mail.size.into()),
                            ("max_mail_bytes", self.settings.max_mail_bytes.into()),
                        ],
                    );
                    self.set_aside(mb, &mail, "too_large")?;
                    round.set_aside += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.metrics().received.fetch_add(1, Relaxed);
            log::debug(
                "mail_received",
                &[("uid", V::S(&mail.uid)), ("size", raw.len().into())],
            );
            match self.process(&mail.uid, &raw) {
                Disposition::Delete => {
                    mb.delete(&mail)?;
                    round.deleted += 1;
                }
                Disposition::SetAside(reason) => {
                    self.set_aside(mb, &mail, reason)?;
                    round.set_aside += 1;
                }
                Disposition::Leave => round.left += 1,
                Disposition::LeaveAndPause => {
                    round.left += 1;
                    break;
                }
            }
        }
        Ok(round)
    }

    fn set_aside(
        &self,
        mb: &mut dyn Mailbox,
        mail: &MailRef,
        reason: &'static str,
    ) -> ls_core::Result<()> {
        mb.set_aside(mail, &self.settings.set_aside_folder)?;
        self.metrics().set_aside(reason);
        Ok(())
    }

    /// What to do with the mail `raw` (UID `uid`), once handled.
    pub fn process(&self, uid: &str, raw: &[u8]) -> Disposition {
        match self.format.read(raw, self.limits()) {
            Content::NotOurs(why) => {
                log::info(
                    "mail_set_aside",
                    &[
                        ("uid", V::S(uid)),
                        ("reason", "not_as4".into()),
                        ("detail", V::S(&short(&why))),
                    ],
                );
                Disposition::SetAside("not_as4")
            }
            Content::Bounce(b) => {
                self.metrics().bounces.fetch_add(1, Relaxed);
                // Unsigned: a hint only. A message mailed to a party stays leased and is
                // submitted again when its lease ends.
                log::warn(
                    "mail_bounce",
                    &[
                        ("uid", V::S(uid)),
                        ("message_id", V::S(b.message_id.as_deref().unwrap_or(""))),
                        ("recipient", V::S(b.recipient.as_deref().unwrap_or(""))),
                        ("action", V::S(b.action.as_deref().unwrap_or(""))),
                        ("status", V::S(b.status.as_deref().unwrap_or(""))),
                        (
                            "diagnostic",
                            V::S(&short(b.diagnostic.as_deref().unwrap_or(""))),
                        ),
                    ],
                );
                Disposition::SetAside("bounce")
            }
            Content::As4 {
                content_type, body, ..
            } => self.as4_mail(uid, content_type, body),
        }
    }

    /// An AS4 message by mail: handled as a push to the AS4 path, its answer mailed.
    fn as4_mail(&self, uid: &str, content_type: String, body: Vec<u8>) -> Disposition {
        let kind = match exchange::peek(&content_type, &body, self.limits()) {
            Ok(m) => match (m.user_messages.first(), m.signals.first()) {
                (Some(um), _) => match party_key(&um.from.ids) {
                    Some(from) => Kind::User {
                        from,
                        message_id: um.info.message_id.clone(),
                    },
                    None => Kind::Unreadable,
                },
                (None, Some(s)) if matches!(s.signal, Signal::PullRequest { .. }) => Kind::Pull,
                (None, Some(_)) => Kind::Signal,
                (None, None) => Kind::Unreadable,
            },
            Err(_) => Kind::Unreadable,
        };
        if let Kind::Pull = kind {
            log::info(
                "mail_set_aside",
                &[
                    ("uid", V::S(uid)),
                    ("reason", "pull_request".into()),
                    (
                        "detail",
                        "pull requests are not taken by mail: parties with a mail address get \
                         their messages by mail"
                            .into(),
                    ),
                ],
            );
            return Disposition::SetAside("pull_request");
        }
        let req = Request {
            method: "POST".into(),
            path: AS4_PATH.into(),
            query: String::new(),
            headers: vec![("content-type".into(), content_type)],
            body,
            body_stream: None,
            peer: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            client_cert: None,
        };
        let resp = self.service.handle(req);
        if resp.status >= 500 {
            self.metrics().deferred.fetch_add(1, Relaxed);
            log::warn(
                "mail_deferred",
                &[
                    ("uid", V::S(uid)),
                    ("status", u64::from(resp.status).into()),
                    (
                        "effect",
                        "left in the mailbox; handled again at the next round".into(),
                    ),
                ],
            );
            return Disposition::Leave;
        }
        // The service's signed answer, if the response is one.
        let answer = if resp.status == 200 && !resp.body.is_empty() {
            exchange::peek(&resp.content_type, &resp.body, self.limits()).ok()
        } else {
            None
        };
        if answer.as_ref().is_some_and(is_uniform_refusal) {
            // Nothing verified: no answer (it would go to whoever the mail claims to be).
            log::info(
                "mail_set_aside",
                &[("uid", V::S(uid)), ("reason", "unauthenticated".into())],
            );
            return Disposition::SetAside("unauthenticated");
        }
        match kind {
            Kind::User { from, message_id } => match answer {
                Some(a) => self.answer(uid, &from, &message_id, &a, &resp),
                None => {
                    log::warn(
                        "mail_not_answered",
                        &[
                            ("uid", V::S(uid)),
                            ("message_id", V::S(&message_id)),
                            ("status", u64::from(resp.status).into()),
                            (
                                "detail",
                                "the service's response is not a signed answer".into(),
                            ),
                        ],
                    );
                    Disposition::SetAside("no_answer")
                }
            },
            Kind::Signal | Kind::Unreadable | Kind::Pull => {
                if resp.status != 200 {
                    log::warn(
                        "mail_set_aside",
                        &[
                            ("uid", V::S(uid)),
                            ("reason", "refused".into()),
                            ("status", u64::from(resp.status).into()),
                        ],
                    );
                    return Disposition::SetAside("refused");
                }
                if let Some(a) = &answer {
                    // An error signal answering a signal (after its signature verified):
                    // logged, not mailed (signals are not answered).
                    log::info(
                        "mail_signal_refused",
                        &[("uid", V::S(uid)), ("ebms_code", V::S(&error_codes(a)))],
                    );
                }
                Disposition::Delete
            }
        }
    }

    /// Mail the service's answer `resp` to the registered mail address of `from`.
    fn answer(
        &self,
        uid: &str,
        from: &PartyKey,
        message_id: &str,
        answer: &Messaging,
        resp: &Response,
    ) -> Disposition {
        let party = match self.service.store.party(from) {
            Ok(p) => p,
            Err(e) => {
                self.metrics().deferred.fetch_add(1, Relaxed);
                log::error(
                    "store_unavailable",
                    &[("kind", "mail".into()), ("error", V::S(&e.to_string()))],
                );
                return Disposition::Leave;
            }
        };
        let Some(address) = party.and_then(|p: Party| p.mail_address) else {
            log::warn(
                "mail_not_answered",
                &[
                    ("uid", V::S(uid)),
                    ("message_id", V::S(message_id)),
                    ("from", V::S(&from.to_string())),
                    (
                        "detail",
                        "the sender has no registered mail address (admin party \
                         set-mail-address)"
                            .into(),
                    ),
                ],
            );
            return Disposition::Delete;
        };
        let mail = match self.format.compose(
            &resp.content_type,
            &resp.body,
            &self.settings.address,
            &address,
            self.limits(),
        ) {
            Ok(m) => m,
            Err(e) => {
                self.metrics().failure("compose");
                log::error(
                    "mail_not_answered",
                    &[
                        ("uid", V::S(uid)),
                        ("message_id", V::S(message_id)),
                        ("error", V::S(&e.to_string())),
                    ],
                );
                return Disposition::SetAside("answer_failed");
            }
        };
        let kind = if answer
            .signals
            .iter()
            .any(|s| matches!(s.signal, Signal::Receipt { .. }))
        {
            "receipt"
        } else {
            "error"
        };
        match self
            .submitter
            .submit(&self.settings.address, &address, &mail)
        {
            Ok(()) => {
                self.metrics().answered.fetch_add(1, Relaxed);
                log::info(
                    "mail_answered",
                    &[
                        ("message_id", V::S(message_id)),
                        ("from", V::S(&from.to_string())),
                        ("to", V::S(&address)),
                        ("answer", kind.into()),
                        ("ebms_code", V::S(&error_codes(answer))),
                    ],
                );
                Disposition::Delete
            }
            Err(e @ Error::Refused(_)) => {
                // For good (the address refused, the size limit): the sender sends again and
                // is answered with the same receipt.
                self.metrics().failure("refused");
                log::warn(
                    "mail_not_answered",
                    &[
                        ("uid", V::S(uid)),
                        ("message_id", V::S(message_id)),
                        ("to", V::S(&address)),
                        ("error", V::S(&e.to_string())),
                    ],
                );
                Disposition::Delete
            }
            Err(e) => {
                self.submission_failed(&e);
                Disposition::LeaveAndPause
            }
        }
    }

    /// Log and count a submission that may succeed later (SMTP unavailable, login refused).
    fn submission_failed(&self, e: &Error) {
        if let Error::LoginFailed(_) = e {
            self.metrics().failure("login");
            log::error(
                "smtp_login_failed",
                &[
                    ("error", V::S(&e.to_string())),
                    (
                        "effect",
                        V::S(&format!(
                            "no submission for {} s; check email.username and the password",
                            self.settings.login_backoff.as_secs()
                        )),
                    ),
                ],
            );
        } else {
            self.metrics().failure("transient");
            log::warn("smtp_unavailable", &[("error", V::S(&e.to_string()))]);
        }
    }

    /// One delivery round at time `now`: the waiting messages of every usable party with a
    /// mail address are claimed and submitted.
    pub fn delivery_round(&self, now: i64) -> Result<DeliveryRound, crate::store::StoreError> {
        let mut round = DeliveryRound::default();
        for party in self.service.store.mail_parties()? {
            let Some(address) = party.mail_address.as_deref() else {
                continue;
            };
            let mut n = 0;
            loop {
                if n == MAX_PER_PARTY_ROUND {
                    round.more = true;
                    break;
                }
                if self.intake_wake.stopped() {
                    return Ok(round);
                }
                let Some(claimed) = self.service.store.claim_next(
                    &party.mpc,
                    now,
                    self.settings.redeliver_after_secs,
                )?
                else {
                    break;
                };
                n += 1;
                match self.deliver(&party, address, claimed, now) {
                    Delivered::Yes => round.submitted += 1,
                    Delivered::No => {}
                    Delivered::Pause => {
                        round.paused = true;
                        return Ok(round);
                    }
                }
            }
        }
        Ok(round)
    }

    fn deliver(&self, party: &Party, address: &str, m: Claimed, now: i64) -> Delivered {
        let max = self.settings.max_mail_bytes;
        let too_large = |size: u64| {
            self.metrics().failure("too_large");
            log::warn(
                "mail_not_delivered",
                &[
                    ("message_id", V::S(&m.message_id)),
                    ("to", V::S(&party.key.to_string())),
                    ("size", size.into()),
                    ("max_mail_bytes", max.into()),
                    (
                        "effect",
                        "larger than email.max_mail_bytes: offered again after the lease, \
                         until it expires"
                            .into(),
                    ),
                ],
            );
            Delivered::No
        };
        let estimate = u128::from(m.body.len()) * 4 / 3 + u128::from(MAIL_OVERHEAD);
        if estimate > u128::from(max) {
            return too_large(m.body.len());
        }
        let (message_id, recipient, sender, attempt, content_type) = (
            m.message_id.clone(),
            m.recipient.clone(),
            m.sender.clone(),
            m.attempt,
            m.content_type.clone(),
        );
        let body = match m.body.into_bytes() {
            Ok(b) => b,
            Err(e) => {
                log::error(
                    "mail_not_delivered",
                    &[
                        ("message_id", V::S(&message_id)),
                        ("to", V::S(&recipient.to_string())),
                        ("error", V::S(&e.to_string())),
                    ],
                );
                self.release(&recipient, &message_id, now);
                return Delivered::Pause;
            }
        };
        let mail = match self.format.compose(
            &content_type,
            &body,
            &self.settings.address,
            address,
            self.limits(),
        ) {
            Ok(mail) if mail.len() as u64 > max => return too_large(mail.len() as u64),
            Ok(mail) => mail,
            Err(e) => {
                self.metrics().failure("compose");
                log::error(
                    "mail_not_delivered",
                    &[
                        ("message_id", V::S(&message_id)),
                        ("to", V::S(&recipient.to_string())),
                        ("error", V::S(&e.to_string())),
                    ],
                );
                return Delivered::No;
            }
        };
        drop(body);
        match self
            .submitter
            .submit(&self.settings.address, address, &mail)
        {
            Ok(()) => {
                self.metrics().delivered.fetch_add(1, Relaxed);
                log::info(
                    "mailed",
                    &[
                        ("message_id", V::S(&message_id)),
                        ("from", V::S(&sender.to_string())),
                        ("to", V::S(&recipient.to_string())),
                        ("address", V::S(address)),
                        ("attempt", u64::from(attempt).into()),
                        ("size", mail.len().into()),
                    ],
                );
                Delivered::Yes
            }
            Err(e @ Error::Refused(_)) => {
                self.metrics().failure("refused");
                log::warn(
                    "mail_not_delivered",
                    &[
                        ("message_id", V::S(&message_id)),
                        ("to", V::S(&recipient.to_string())),
                        ("address", V::S(address)),
                        ("error", V::S(&e.to_string())),
                        (
                            "effect",
                            "refused for good by the SMTP server: offered again after the \
                             lease, until it expires"
                                .into(),
                        ),
                    ],
                );
                Delivered::No
            }
            Err(e) => {
                self.submission_failed(&e);
                self.release(&recipient, &message_id, now);
                Delivered::Pause
            }
        }
    }

    /// Give a claim back (the submission did not happen): offered at the next round.
    fn release(&self, recipient: &PartyKey, message_id: &str, now: i64) {
        if let Err(e) = self.service.store.release_claim(recipient, message_id, now) {
            log::warn(
                "store_unavailable",
                &[("kind", "mail".into()), ("error", V::S(&e.to_string()))],
            );
        }
    }

    /// The intake thread: connect, handle every mail, wait for new ones (IMAP IDLE, or
    /// `poll`), reconnect with a back-off after failures; until the stop.
    fn run_intake(&self, opener: &dyn MailboxOpener) {
        let wake = &self.intake_wake;
        let mut backoff = FIRST_BACKOFF;
        while !wake.stopped() {
            let mut mb = match opener.open() {
                Ok(mb) => mb,
                Err(e) => {
                    self.metrics().mailbox_errors.fetch_add(1, Relaxed);
                    let pause = self.mailbox_failed(opener, &e, &mut backoff);
                    wake.wait(wake.generation(), pause);
                    continue;
                }
            };
            log::info(
                "mailbox_open",
                &[
                    ("server", V::S(&opener.server())),
                    ("idle", V::S(if mb.can_idle() { "yes" } else { "no" })),
                ],
            );
            let failed = loop {
                match self.intake_round(mb.as_mut()) {
                    Ok(r) => {
                        // A session that works: the next failure starts the back-off again.
                        backoff = FIRST_BACKOFF;
                        if r.deleted > 0 {
                            // A message or a receipt came in: deliveries may be due.
                            self.service.mail_wake.wake();
                        }
                    }
                    Err(e) => break Some(e),
                }
                if wake.stopped() {
                    break None;
                }
                if mb.can_idle() {
                    if let Err(e) = mb.wait(self.settings.poll, wake.stop_flag()) {
                        break Some(e);
                    }
                } else {
                    wake.wait(wake.generation(), self.settings.poll);
                }
            };
            match failed {
                None => {
                    let _ = mb.close();
                }
                Some(e) => {
                    // The session is in an unknown state: dropped, not logged out.
                    drop(mb);
                    self.metrics().mailbox_errors.fetch_add(1, Relaxed);
                    let pause = self.mailbox_failed(opener, &e, &mut backoff);
                    wake.wait(wake.generation(), pause);
                }
            }
        }
    }

    /// Log a failure of the mailbox; the pause before the next attempt.
    fn mailbox_failed(
        &self,
        opener: &dyn MailboxOpener,
        e: &Error,
        backoff: &mut Duration,
    ) -> Duration {
        if let Error::LoginFailed(_) = e {
            log::error(
                "mailbox_login_failed",
                &[
                    ("server", V::S(&opener.server())),
                    ("error", V::S(&e.to_string())),
                    (
                        "effect",
                        V::S(&format!(
                            "not tried again for {} s; check email.username and the password",
                            self.settings.login_backoff.as_secs()
                        )),
                    ),
                ],
            );
            return self.settings.login_backoff;
        }
        let pause = *backoff;
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        log::warn(
            "mailbox_unavailable",
            &[
                ("server", V::S(&opener.server())),
                ("error", V::S(&e.to_string())),
                ("retry_secs", pause.as_secs().into()),
            ],
        );
        pause
    }

    /// The delivery thread: a round whenever a message for a mail party is accepted, after
    /// each intake round that took something, and every `poll`; until the stop.
    fn run_delivery(&self) {
        let wake = &self.service.mail_wake;
        let mut backoff = FIRST_BACKOFF;
        while !wake.stopped() {
            let seen = wake.generation();
            let pause = match self.delivery_round(ls_core::time::now_unix()) {
                Ok(r) if r.paused => {
                    // Submissions fail for now: wait, longer each time (the login back-off
                    // is the submitter's).
                    let p = backoff.max(self.settings.poll);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    p
                }
                Ok(r) => {
                    backoff = FIRST_BACKOFF;
                    if r.more {
                        continue;
                    }
                    self.settings.poll
                }
                Err(e) => {
                    log::error(
                        "store_unavailable",
                        &[
                            ("kind", "mail_delivery".into()),
                            ("error", V::S(&e.to_string())),
                        ],
                    );
                    self.settings.poll
                }
            };
            // A wake during a paused round does not cut the pause short.
            let seen = if pause > self.settings.poll {
                wake.generation()
            } else {
                seen
            };
            wake.wait(seen, pause);
        }
    }
}

/// What became of a claimed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivered {
    Yes,
    /// Not submitted; it stays leased (offered again after the lease).
    No,
    /// Not submitted, the claim given back; stop the round.
    Pause,
}

/// The gateway's threads, running.
pub struct Running {
    gateway: Arc<Gateway>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stop both threads (a round in progress finishes its mail) and wait for them at most
    /// `grace`; returns whether they ended.
    pub fn stop(self, grace: Duration) -> bool {
        self.gateway.intake_wake.stop();
        self.gateway.service.mail_wake.stop();
        let until = Instant::now() + grace;
        while Instant::now() < until && self.threads.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let done = self.threads.iter().all(JoinHandle::is_finished);
        if done {
            for t in self.threads {
                let _ = t.join();
            }
        }
        done
    }
}

/// Start the intake and delivery threads.
pub fn start(gateway: Arc<Gateway>, opener: Arc<dyn MailboxOpener>) -> std::io::Result<Running> {
    let g = gateway.clone();
    let intake = std::thread::Builder::new()
        .name("ls-mail-intake".into())
        .spawn(move || g.run_intake(opener.as_ref()))?;
    let g = gateway.clone();
    let delivery = match std::thread::Builder::new()
        .name("ls-mail-delivery".into())
        .spawn(move || g.run_delivery())
    {
        Ok(t) => t,
        Err(e) => {
            gateway.intake_wake.stop();
            return Err(e);
        }
    };
    Ok(Running {
        gateway,
        threads: vec![intake, delivery],
    })
}

/// The gateway `[email]` configures for `service` (its password read, its TLS trust loaded,
/// its URLs checked), and its intake mailbox. `Err` names the key.
pub fn from_config(
    c: &Config,
    service: Arc<Service>,
) -> Result<(Arc<Gateway>, Arc<dyn MailboxOpener>), String> {
    let Some(e) = &c.email else {
        return Err("email: no [email] section".into());
    };
    e.check()?;
    let password = c.email_password()?;
    let trust = MailTrust {
        ca_pem: match &e.ca_file {
            Some(f) => {
                let p = c.path(f);
                Some(
                    std::fs::read(&p)
                        .map_err(|err| format!("email.ca_file: {}: {err}", p.display()))?,
                )
            }
            None => None,
        },
        pinned_sha256: e.pinned_sha256.clone(),
    };
    let account = |key: &str, url: &str| -> Result<Account, String> {
        Ok(Account {
            url: MailUrl::parse(url).map_err(|err| format!("email.{key}: {err}"))?,
            username: e.username.clone(),
            password: password.clone(),
            trust: trust.clone(),
            timeout: MAIL_TIMEOUT,
        })
    };
    let smtp = SmtpClient::new(account("smtp_url", &e.smtp_url)?)
        .map_err(|err| format!("email.smtp_url: {err}"))?;
    let opener = AccountMailbox(account("mailbox_url", &e.mailbox_url)?);
    let settings = Settings {
        address: e.address.clone(),
        set_aside_folder: e.set_aside_folder.clone(),
        max_mail_bytes: e.max_mail_bytes(c.limits.max_message_bytes),
        redeliver_after_secs: i64::try_from(e.redeliver_after_secs).unwrap_or(i64::MAX),
        poll: Duration::from_secs(e.poll_secs),
        login_backoff: LOGIN_BACKOFF,
    };
    let gateway = Gateway {
        service,
        submitter: Arc::new(GuardedSubmitter::new(Arc::new(smtp), LOGIN_BACKOFF)),
        format: Arc::new(CoreLayout),
        settings,
        intake_wake: Arc::new(Wake::default()),
    };
    Ok((Arc::new(gateway), Arc::new(opener)))
}
