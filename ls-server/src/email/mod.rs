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
//! [`LOGIN_BACKOFF`] (one [`LoginGuard`] for the account's logins on both servers; after the
//! back-off one attempt at a time), other connection failures after a back-off that doubles up
//! to [`MAX_BACKOFF`]. Nor does one mail or party hold up the others: a mail the mailbox server
//! refuses to hand over or move is skipped for [`SKIP_REFUSED`], a mail whose answer could not
//! be submitted is handled again after a back-off from [`ANSWER_RETRY`] while the round goes on,
//! and a party whose address the SMTP server refuses is passed over until the lease of the
//! refused message ends. Rounds are at least [`MIN_ROUND_GAP`] apart. Logs carry mail UIDs,
//! MessageIds, parties and addresses, never bodies or passwords.

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
use ls_core::mail::imap;
use ls_core::mail::layout::{self, Content};
use ls_core::mail::smtp::{SendError, SmtpClient};
use ls_core::mail::{Account, MailRef, MailTrust, MailUrl, Mailbox};
use ls_core::Error;
use std::collections::{HashMap, HashSet};
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
/// The shortest time between two intake rounds (a server announcing new mail all the time
/// cannot make the intake list the mailbox in a loop; short enough not to delay a message that
/// follows another).
pub const MIN_ROUND_GAP: Duration = Duration::from_millis(200);
/// The longest IMAP IDLE (servers drop an IDLE after 30 minutes, RFC 2177).
pub const MAX_IDLE: Duration = Duration::from_secs(29 * 60);
/// A mail the mailbox server refused to fetch, move or remove (its command answered NO, or
/// the mail cannot be named to it) is looked at again after this long (the others go on).
pub const SKIP_REFUSED: Duration = Duration::from_secs(3600);
/// A mail whose answer could not be submitted is handled again after this long, doubling up
/// to [`MAX_BACKOFF`].
pub const ANSWER_RETRY: Duration = Duration::from_secs(30);
/// The most mails remembered as skipped (the oldest-due forgotten first).
const MAX_SKIPPED: usize = 10_000;

/// Submits mails (SMTP in the service; the tests capture them).
pub trait Submitter: Send + Sync {
    /// Submit `mail` (a whole RFC 5322 mail) from envelope sender `from` to `to`. Errors as
    /// [`SmtpClient::send_detailed`]'s: `Refused` for good, `LoginFailed`, others transient;
    /// [`SendError::recipient`] when the server refused the address `to` (not the session).
    fn submit(&self, from: &str, to: &str, mail: &[u8]) -> Result<(), SendError>;
}

impl Submitter for SmtpClient {
    fn submit(&self, from: &str, to: &str, mail: &[u8]) -> Result<(), SendError> {
        self.send_detailed(from, &[to], mail)
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

/// The logins of one account (user name): once a server refused the password, no login is
/// tried for the back-off; then exactly one (the probe) at a time until one succeeds. Shared by
/// the intake mailbox and the SMTP submissions of both threads when they use the same user
/// name (`[email]` has one): retries cannot lock the account.
#[derive(Debug)]
pub struct LoginGuard {
    state: Mutex<GuardState>,
    cv: Condvar,
    backoff: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GuardState {
    /// No refusal known: logins are tried (by both threads at once).
    Fine,
    /// The password was refused then: nothing is tried before the back-off.
    Refused(Instant),
    /// The back-off is over and one attempt is under way; the others wait for its outcome.
    Probing,
}

impl LoginGuard {
    pub fn new(backoff: Duration) -> LoginGuard {
        LoginGuard {
            state: Mutex::new(GuardState::Fine),
            cv: Condvar::new(),
            backoff,
        }
    }

    /// May a login be tried now (`what`: the server, for the message)? `Ok(probe)`: yes (it
    /// is the probe after a refusal if `probe`), and [`LoginGuard::end`] must follow; `Err`:
    /// not now (`LoginFailed` in the back-off; `MailStatus` if the probe did not end in
    /// [`MAIL_TIMEOUT`]).
    pub fn begin(&self, what: &str) -> Result<bool, Error> {
        let give_up = Instant::now() + MAIL_TIMEOUT;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match *s {
                GuardState::Fine => return Ok(false),
                GuardState::Refused(t) if t.elapsed() < self.backoff => {
                    return Err(Error::LoginFailed(format!(
                        "the password of this account was refused less than {} s ago; {what} \
                         is not tried again yet",
                        self.backoff.as_secs()
                    )))
                }
                GuardState::Refused(_) => {
                    *s = GuardState::Probing;
                    return Ok(true);
                }
                GuardState::Probing => {
                    let now = Instant::now();
                    if now >= give_up {
                        return Err(Error::MailStatus {
                            code: 0,
                            message: format!(
                                "another login with this account is under way; {what} is \
                                 tried later"
                            ),
                        });
                    }
                    s = match self.cv.wait_timeout(s, give_up - now) {
                        Ok((g, _)) => g,
                        Err(e) => e.into_inner().0,
                    };
                }
            }
        }
    }

    /// The attempt [`LoginGuard::begin`] allowed is over; `refused`: the server refused the
    /// password.
    pub fn end(&self, refused: bool) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = if refused {
            GuardState::Refused(Instant::now())
        } else {
            GuardState::Fine
        };
        self.cv.notify_all();
    }
}

/// A [`Submitter`] that, once the password was refused, refuses every submission without
/// connecting for the [`LoginGuard`]'s back-off (both threads share it, and the intake
/// mailbox with the same user name: the account is not locked by retries).
pub struct GuardedSubmitter {
    inner: Arc<dyn Submitter>,
    guard: Arc<LoginGuard>,
}

impl GuardedSubmitter {
    /// With a guard of its own.
    pub fn new(inner: Arc<dyn Submitter>, backoff: Duration) -> GuardedSubmitter {
        GuardedSubmitter::with_guard(inner, Arc::new(LoginGuard::new(backoff)))
    }

    /// With the guard of its account (shared with the mailbox's).
    pub fn with_guard(inner: Arc<dyn Submitter>, guard: Arc<LoginGuard>) -> GuardedSubmitter {
        GuardedSubmitter { inner, guard }
    }
}

impl Submitter for GuardedSubmitter {
    fn submit(&self, from: &str, to: &str, mail: &[u8]) -> Result<(), SendError> {
        self.guard.begin("the SMTP server")?;
        let r = self.inner.submit(from, to, mail);
        self.guard.end(matches!(
            r,
            Err(SendError {
                error: Error::LoginFailed(_),
                ..
            })
        ));
        r
    }
}

/// A [`MailboxOpener`] whose logins go through the account's [`LoginGuard`].
pub struct GuardedOpener {
    inner: Arc<dyn MailboxOpener>,
    guard: Arc<LoginGuard>,
}

impl GuardedOpener {
    pub fn new(inner: Arc<dyn MailboxOpener>, guard: Arc<LoginGuard>) -> GuardedOpener {
        GuardedOpener { inner, guard }
    }
}

impl MailboxOpener for GuardedOpener {
    fn open(&self) -> ls_core::Result<Box<dyn Mailbox>> {
        self.guard.begin("the mailbox")?;
        let r = self.inner.open();
        self.guard.end(matches!(r, Err(Error::LoginFailed(_))));
        r
    }
    fn server(&self) -> String {
        self.inner.server()
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
    /// Submissions that failed, by reason (`refused`, `recipient`: the address refused for
    /// now, `login`, `transient`, `too_large`, `compose`).
    pub submission_failures: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Delivery-status notifications (bounces) found in the intake mailbox.
    pub bounces: AtomicU64,
    /// Mails left in the mailbox for the next round (the store could not take them).
    pub deferred: AtomicU64,
    /// Failures to reach or use the intake mailbox (each followed by a reconnection).
    pub mailbox_errors: AtomicU64,
    /// Mails left in the intake mailbox and skipped for a while after a failure of their own,
    /// by reason (`mailbox_refused`: the server refused to fetch, move or remove it;
    /// `answer_later`: its answer could not be submitted).
    pub skipped: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl MailMetrics {
    fn set_aside(&self, reason: &'static str) {
        let mut m = self.set_aside.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(reason).or_default() += 1;
    }

    fn skipped(&self, reason: &'static str) {
        let mut m = self.skipped.lock().unwrap_or_else(|e| e.into_inner());
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
        labelled(
            o,
            "layersec_mail_skipped_total",
            "Mails left in the intake mailbox for a while after a failure of their own, by reason.",
            "reason",
            &self.skipped,
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
    /// Handled, but its answer could not be submitted now (SMTP unavailable, or the sender's
    /// address refused for now): leave it and go on with the other mails; it is handled again
    /// after a back-off ([`ANSWER_RETRY`], doubling): a duplicate, answered with the same
    /// receipt.
    AnswerLater,
}

/// What an intake round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntakeRound {
    pub mails: usize,
    pub deleted: usize,
    pub set_aside: usize,
    pub left: usize,
    /// Left and not looked at: skipped for a while after a failure of their own.
    pub skipped: usize,
}

/// What a delivery round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryRound {
    pub submitted: usize,
    /// A party had more messages than [`MAX_PER_PARTY_ROUND`]: another round at once.
    pub more: bool,
    /// Submissions failed for a while (SMTP unavailable, login refused): pause.
    pub paused: bool,
    /// Parties whose address the SMTP server refused in this round (their other messages
    /// wait).
    pub refused_parties: usize,
}

/// A mail of the intake skipped for a while.
#[derive(Clone, Copy, Debug)]
struct Skip {
    until: Instant,
    failures: u32,
}

/// What the gateway remembers between rounds (in memory only).
#[derive(Debug, Default)]
pub struct GatewayState {
    intake: Mutex<IntakeMemory>,
    /// Parties whose address was refused, by MPC: not offered again before this time (unix).
    refused_until: Mutex<HashMap<String, i64>>,
}

#[derive(Debug, Default)]
struct IntakeMemory {
    /// The UIDVALIDITY the UIDs below belong to.
    uidvalidity: Option<u64>,
    skipped: HashMap<String, Skip>,
    /// Answers are not submitted before this (the SMTP server failed).
    smtp_until: Option<Instant>,
    smtp_backoff: Duration,
}

impl IntakeMemory {
    /// A new round on a mailbox of `uidvalidity` listing `uids`: what was skipped and is gone
    /// is forgotten (all of it when the UIDVALIDITY changed).
    fn begin(&mut self, uidvalidity: Option<u64>, uids: &HashSet<&str>) {
        if self.uidvalidity != uidvalidity {
            self.skipped.clear();
            self.uidvalidity = uidvalidity;
        }
        self.skipped.retain(|uid, _| uids.contains(uid.as_str()));
    }

    fn skipping(&self, uid: &str, now: Instant) -> bool {
        self.skipped.get(uid).is_some_and(|s| s.until > now)
    }

    /// Skip `uid` until `pause(failures)` from `now` (at least until `floor`); returns the
    /// pause.
    fn skip(
        &mut self,
        uid: &str,
        now: Instant,
        pause: impl Fn(u32) -> Duration,
        floor: Option<Instant>,
    ) -> Duration {
        let failures = self.skipped.get(uid).map_or(0, |s| s.failures) + 1;
        let mut until = now + pause(failures);
        if let Some(f) = floor {
            until = until.max(f);
        }
        if self.skipped.len() >= MAX_SKIPPED && !self.skipped.contains_key(uid) {
            // Full: the one due first is forgotten (looked at again at once).
            if let Some(first) = self
                .skipped
                .iter()
                .min_by_key(|(_, s)| s.until)
                .map(|(u, _)| u.clone())
            {
                self.skipped.remove(&first);
            }
        }
        self.skipped
            .insert(uid.to_string(), Skip { until, failures });
        until - now
    }

    fn done(&mut self, uid: &str) {
        self.skipped.remove(uid);
    }
}

/// The pause before the `failures`-th retry: `first`, doubling, at most `max`.
fn doubling(first: Duration, max: Duration, failures: u32) -> Duration {
    first
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(max)
}

/// The e-mail gateway of a service.
pub struct Gateway {
    pub service: Arc<Service>,
    pub submitter: Arc<dyn Submitter>,
    pub format: Arc<dyn MailFormat>,
    pub settings: Settings,
    /// Wakes the intake's pauses (to stop).
    pub intake_wake: Arc<Wake>,
    /// What is remembered between rounds: mails skipped, answers and parties paused.
    pub state: GatewayState,
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

    fn memory(&self) -> std::sync::MutexGuard<'_, IntakeMemory> {
        self.state.intake.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One look at the mailbox: every mail in it is handled and removed, set aside or left.
    /// A mail the server refuses to fetch, move or remove (a command answered NO, a UID or
    /// folder it cannot be given) is skipped for [`SKIP_REFUSED`] and the round goes on; a
    /// mail whose answer could not be submitted is skipped for a back-off. Only a failure of
    /// the session itself (the connection lost, a timeout) ends the round (the caller
    /// reconnects).
    pub fn intake_round(&self, mb: &mut dyn Mailbox) -> ls_core::Result<IntakeRound> {
        let mut round = IntakeRound::default();
        let list = mb.list()?;
        {
            let uids: HashSet<&str> = list.iter().map(|m| m.uid.as_str()).collect();
            self.memory().begin(mb.uidvalidity(), &uids);
        }
        for mail in &list {
            if self.intake_wake.stopped() {
                break;
            }
            round.mails += 1;
            if self.memory().skipping(&mail.uid, Instant::now()) {
                round.skipped += 1;
                continue;
            }
            match self.intake_mail(mb, mail) {
                Ok(d) => {
                    match d {
                        Disposition::Delete => round.deleted += 1,
                        Disposition::SetAside(_) => round.set_aside += 1,
                        Disposition::Leave => round.left += 1,
                        Disposition::AnswerLater => {
                            round.left += 1;
                            continue;
                        }
                    }
                    self.memory().done(&mail.uid);
                }
                Err(e) if imap::leaves_session_usable(&e) => {
                    // This mail's own failure: the others are not held up by it.
                    let pause =
                        self.memory()
                            .skip(&mail.uid, Instant::now(), |_| SKIP_REFUSED, None);
                    self.metrics().skipped("mailbox_refused");
                    log::warn(
                        "mail_skipped",
                        &[
                            ("uid", V::S(&mail.uid)),
                            ("error", V::S(&short(&e.to_string()))),
                            ("retry_secs", pause.as_secs().into()),
                            (
                                "effect",
                                "left in the mailbox; the other mails are handled, this one \
                                 is looked at again later"
                                    .into(),
                            ),
                        ],
                    );
                    round.skipped += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(round)
    }

    /// Fetch, handle and dispose of one mail. `Err`: the mailbox failed (for this mail, or
    /// the session: see [`imap::leaves_session_usable`]).
    fn intake_mail(&self, mb: &mut dyn Mailbox, mail: &MailRef) -> ls_core::Result<Disposition> {
        let raw = match mb.fetch(mail, self.settings.max_mail_bytes) {
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
                self.set_aside(mb, mail, "too_large")?;
                return Ok(Disposition::SetAside("too_large"));
            }
            Err(e) => return Err(e),
        };
        self.metrics().received.fetch_add(1, Relaxed);
        log::debug(
            "mail_received",
            &[("uid", V::S(&mail.uid)), ("size", raw.len().into())],
        );
        let d = self.process(&mail.uid, &raw);
        drop(raw);
        match d {
            Disposition::Delete => mb.delete(mail)?,
            Disposition::SetAside(reason) => self.set_aside(mb, mail, reason)?,
            Disposition::Leave => {}
            Disposition::AnswerLater => {
                let mut memory = self.memory();
                let floor = memory.smtp_until;
                let pause = memory.skip(
                    &mail.uid,
                    Instant::now(),
                    |n| doubling(ANSWER_RETRY, MAX_BACKOFF, n),
                    floor,
                );
                drop(memory);
                self.metrics().skipped("answer_later");
                log::info(
                    "mail_deferred",
                    &[
                        ("uid", V::S(&mail.uid)),
                        ("reason", "answer_later".into()),
                        ("retry_secs", pause.as_secs().into()),
                        (
                            "effect",
                            "taken, its answer not submitted: left in the mailbox and handled \
                             again later (a duplicate, answered with the same receipt)"
                                .into(),
                        ),
                    ],
                );
            }
        }
        Ok(d)
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
        if self.memory().smtp_until.is_some_and(|t| t > Instant::now()) {
            // The SMTP server failed a moment ago: not asked again for each mail.
            return Disposition::AnswerLater;
        }
        match self
            .submitter
            .submit(&self.settings.address, &address, &mail)
        {
            Ok(()) => {
                {
                    let mut m = self.memory();
                    m.smtp_until = None;
                    m.smtp_backoff = Duration::ZERO;
                }
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
            Err(SendError {
                error: e @ Error::Refused(_),
                ..
            }) => {
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
            Err(SendError {
                error,
                recipient: true,
            }) => {
                // This address, for now (a 4xx to RCPT TO): the server works, other answers
                // go on.
                self.metrics().failure("recipient");
                log::warn(
                    "mail_not_answered",
                    &[
                        ("uid", V::S(uid)),
                        ("message_id", V::S(message_id)),
                        ("to", V::S(&address)),
                        ("error", V::S(&error.to_string())),
                        (
                            "effect",
                            "the address refused for now: answered later".into(),
                        ),
                    ],
                );
                Disposition::AnswerLater
            }
            Err(SendError { error, .. }) => {
                self.submission_failed(&error);
                let mut m = self.memory();
                m.smtp_backoff = if m.smtp_backoff.is_zero() {
                    FIRST_BACKOFF
                } else {
                    (m.smtp_backoff * 2).min(MAX_BACKOFF)
                };
                m.smtp_until = Some(Instant::now() + m.smtp_backoff);
                Disposition::AnswerLater
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
    /// mail address are claimed and submitted. A party whose address the SMTP server refused
    /// is passed over (its other messages wait) until the refused message's lease ends; the
    /// other parties go on. A failure of the server itself ends the round (`paused`).
    pub fn delivery_round(&self, now: i64) -> Result<DeliveryRound, crate::store::StoreError> {
        let mut round = DeliveryRound::default();
        let parties = self.service.store.mail_parties()?;
        {
            let mut r = self
                .state
                .refused_until
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            r.retain(|mpc, until| *until > now && parties.iter().any(|p| &p.mpc == mpc));
        }
        for party in parties {
            let Some(address) = party.mail_address.as_deref() else {
                continue;
            };
            let refused = self
                .state
                .refused_until
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&party.mpc);
            if refused {
                continue;
            }
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
                    Delivered::AddressRefused => {
                        round.refused_parties += 1;
                        self.state
                            .refused_until
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(
                                party.mpc.clone(),
                                now.saturating_add(self.settings.redeliver_after_secs),
                            );
                        break;
                    }
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
            Err(SendError {
                error,
                recipient: true,
            }) => {
                // The party's address (a reply to RCPT TO): the server works. This message
                // stays leased; the party's others wait until its lease ends; the other
                // parties go on.
                let permanent = matches!(error, Error::Refused(_));
                self.metrics()
                    .failure(if permanent { "refused" } else { "recipient" });
                log::warn(
                    "mail_not_delivered",
                    &[
                        ("message_id", V::S(&message_id)),
                        ("to", V::S(&recipient.to_string())),
                        ("address", V::S(address)),
                        ("error", V::S(&error.to_string())),
                        (
                            "effect",
                            "the address refused by the SMTP server: offered again after the \
                             lease (the party's other messages wait until then), until it \
                             expires"
                                .into(),
                        ),
                    ],
                );
                Delivered::AddressRefused
            }
            Err(SendError {
                error: e @ Error::Refused(_),
                ..
            }) => {
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
            Err(SendError { error, .. }) => {
                self.submission_failed(&error);
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
            let mut last_round: Option<Instant> = None;
            let failed = loop {
                if let Some(t) = last_round {
                    // Not more than five rounds a second, whatever the server announces.
                    let since = t.elapsed();
                    if since < MIN_ROUND_GAP {
                        wake.wait(wake.generation(), MIN_ROUND_GAP - since);
                        if wake.stopped() {
                            break None;
                        }
                    }
                }
                last_round = Some(Instant::now());
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
                    if let Err(e) = mb.wait(self.settings.poll.min(MAX_IDLE), wake.stop_flag()) {
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
    /// The SMTP server refused the party's address: it stays leased, and the party's other
    /// messages wait; the round goes on with the other parties.
    AddressRefused,
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
    // One user name on both servers: one guard for its logins.
    let guard = Arc::new(LoginGuard::new(LOGIN_BACKOFF));
    let opener = GuardedOpener::new(
        Arc::new(AccountMailbox(account("mailbox_url", &e.mailbox_url)?)),
        guard.clone(),
    );
    let settings = Settings {
        address: e.address.clone(),
        set_aside_folder: e.set_aside_folder.clone(),
        max_mail_bytes: e.max_mail_bytes(),
        redeliver_after_secs: i64::try_from(e.redeliver_after_secs).unwrap_or(i64::MAX),
        poll: Duration::from_secs(e.poll_secs),
        login_backoff: LOGIN_BACKOFF,
    };
    let gateway = Gateway {
        service,
        submitter: Arc::new(GuardedSubmitter::with_guard(Arc::new(smtp), guard)),
        format: Arc::new(CoreLayout),
        settings,
        intake_wake: Arc::new(Wake::default()),
        state: GatewayState::default(),
    };
    Ok((Arc::new(gateway), Arc::new(opener)))
}
