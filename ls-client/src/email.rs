//! SOAP over e-mail: the client's mail carrier (`[transport] kind = "email"`).
//!
//! The same signed AS4 messages as over HTTPS, one per mail (`ls_core::mail::layout`):
//! submitted by SMTP to the service's address, received from our mailbox by IMAP or POP3. The
//! service answers a message by mail, later; the answers are kept in the state folder until the
//! journal that sent the message asks for them ([`Carrier::send`] of the same message again),
//! so the journal, receipts and exactly-once guarantees above are those of HTTPS.
//!
//! State (`state/mail/`):
//! - `answers/<h>`: the service's answer (receipt or error signal) to our message `h` =
//!   SHA-256(eb:MessageId), its content type on the first line; kept once its signature by the
//!   service verified (a forged mail cannot fail or complete a send).
//! - `submitted/<h>.json`: how often and when the message was submitted; `bounces/<h>.json`:
//!   a delivery-status notification for it (unsigned: it only makes the next attempt submit
//!   again, and is the reason of a send that runs out of attempts).
//! - `mailbox.json`: the IMAP folder's UIDVALIDITY and the last UID classified; the POP3
//!   UIDLs of mails that are not ours (POP3 cannot move them aside).
//!
//! A mail is removed from the mailbox only once what it carries is durable: an answer or a
//! bounce once recorded (fsynced); a message once our receipt (or error) for it is submitted,
//! which the client does only after the document is in the inbox. A crash in between offers
//! the mail again, and the journal writes it once.

use crate::config::{Config, EmailConfig};
use crate::fsutil::{io_err, read_json, read_opt, to_json, write_atomic};
use ls_core::as4::exchange;
use ls_core::as4::message::{self, Built, ReadOptions};
use ls_core::as4::model::Signal;
use ls_core::as4::wss::VerifyPolicy;
use ls_core::as4::xml::Limits;
use ls_core::cert::{CertStore, Certificate};
use ls_core::mail::layout::{self, Content};
use ls_core::mail::smtp::SmtpClient;
use ls_core::mail::{open_mailbox, Account, MailRef, MailTrust, MailUrl, Mailbox, Scheme};
use ls_core::time::now_unix;
use ls_core::transport::{Carrier, HttpResponse, Outbound, Pending, StreamingResponse};
use ls_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// The state folder's subfolder of the mail carrier.
pub(crate) const MAIL: &str = "mail";

#[derive(Default, Serialize, Deserialize)]
struct Submitted {
    submissions: u32,
    last: i64,
    /// A bounce of the last submission was reported to the sender of the message (the next
    /// attempt submits again).
    #[serde(default)]
    bounce_reported: bool,
}

#[derive(Serialize, Deserialize)]
struct BounceRecord {
    reason: String,
    at: i64,
}

#[derive(Default, Serialize, Deserialize)]
struct MailboxState {
    uidvalidity: Option<u64>,
    /// IMAP: the highest UID classified; the ones at or below it still in the folder are
    /// messages for us (answers, bounces and mails not ours are removed or moved).
    last_uid: u64,
    /// POP3: UIDLs of the mails classified (messages for us and mails not ours).
    known: Vec<String>,
    /// POP3: of those, the mails that are not ours (skipped for good).
    not_ours: Vec<String>,
}

/// What a mail turned out to be.
enum Kind {
    /// A message for us: handed to the caller.
    Message {
        content_type: String,
        body: Vec<u8>,
        eb_id: String,
    },
    /// Taken care of (recorded and removed, or set aside).
    Done,
}

#[derive(Default)]
struct Session {
    mailbox: Option<Box<dyn Mailbox>>,
    /// The mails of this round still to look at.
    queue: VecDeque<MailRef>,
    /// Whether the queue was filled in this round (a round ends when it is empty again).
    listed: bool,
    /// Messages handed out, by eb:MessageId: removed once our receipt or error for them went.
    handed: HashMap<String, MailRef>,
    /// Mails the server would not fetch or move in this session (a NO): skipped until the
    /// session ends, so that one of them does not hold back the others.
    skipped: HashSet<String>,
}

/// Whether a failure on one mail leaves the session usable (the server refused that command:
/// the mail is skipped), rather than ending it.
fn per_mail(e: &Error) -> bool {
    matches!(
        e,
        Error::MailStatus { .. } | Error::InvalidArgument(_) | Error::TooLarge(_)
    )
}

/// The client's carrier over e-mail.
pub struct MailCarrier {
    smtp: SmtpClient,
    mailbox_account: Account,
    address: String,
    service_address: String,
    resubmit_after: i64,
    set_aside_folder: String,
    max_mail_bytes: u64,
    idle: bool,
    /// Messages signed longer ago than this are set aside: the journal may have forgotten
    /// that it took them (a mail can be replayed by anyone who kept a copy).
    max_age_secs: i64,
    limits: Limits,
    dir: PathBuf,
    /// The service's certificates (current and previous): its answers must verify.
    service: RwLock<Vec<Certificate>>,
    session: Mutex<Session>,
}

impl std::fmt::Debug for MailCarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailCarrier")
            .field("smtp", &self.smtp)
            .field("mailbox", &self.mailbox_account)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

fn key(message_id: &str) -> String {
    ls_core::bytes::hex(&openssl::sha::sha256(message_id.as_bytes()))
}

impl MailCarrier {
    /// The carrier of `cfg`'s `[email]` section; answers must verify against `service`.
    pub fn new(cfg: &Config, service: Vec<Certificate>, limits: Limits) -> Result<MailCarrier> {
        let e: &EmailConfig = cfg
            .email
            .as_ref()
            .ok_or_else(|| Error::ConfigInvalid("an [email] section is expected".into()))?;
        let invalid = |key: &str, err: Error| {
            Error::ConfigInvalid(format!("{}: email.{key}: {err}", cfg.file.display()))
        };
        let trust = MailTrust {
            ca_pem: match &e.ca_file {
                Some(p) => {
                    Some(std::fs::read(p).map_err(|err| io_err("cannot read ca_file", p, err))?)
                }
                None => None,
            },
            pinned_sha256: e.pinned_sha256.clone(),
        };
        let password = cfg.email_password()?;
        let account = |url: &str, key: &str| -> Result<Account> {
            Ok(Account {
                url: MailUrl::parse(url).map_err(|err| invalid(key, err))?,
                username: e.username.clone(),
                password: password.clone(),
                trust: trust.clone(),
                timeout: Duration::from_secs(e.timeout_secs),
            })
        };
        let smtp = SmtpClient::new(account(&e.smtp_url, "smtp_url")?)
            .map_err(|err| invalid("smtp_url", err))?;
        let mailbox_account = account(&e.mailbox_url, "mailbox_url")?;
        let dir = cfg.folders.state.join(MAIL);
        for sub in ["answers", "submitted", "bounces"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|err| io_err("cannot create folder", &d, err))?;
        }
        Ok(MailCarrier {
            smtp,
            mailbox_account,
            address: e.address.clone(),
            service_address: e.service_address.clone(),
            resubmit_after: e.resubmit_after_secs as i64,
            set_aside_folder: e.set_aside_folder.clone(),
            max_mail_bytes: e.max_mail_bytes,
            idle: e.idle,
            max_age_secs: (cfg.limits.remember_delivered_hours as i64)
                .saturating_mul(3600)
                .saturating_sub(86_400)
                .max(86_400),
            limits,
            dir,
            service: RwLock::new(service),
            session: Mutex::new(Session::default()),
        })
    }

    /// The service's certificates changed (its rollover).
    pub fn set_service_certificates(&self, certs: Vec<Certificate>) {
        if let Ok(mut s) = self.service.write() {
            *s = certs;
        }
    }

    fn answer_path(&self, id: &str) -> PathBuf {
        self.dir.join("answers").join(key(id))
    }
    fn submitted_path(&self, id: &str) -> PathBuf {
        self.dir.join("submitted").join(format!("{}.json", key(id)))
    }
    fn bounce_path(&self, id: &str) -> PathBuf {
        self.dir.join("bounces").join(format!("{}.json", key(id)))
    }
    fn mailbox_state_path(&self) -> PathBuf {
        self.dir.join("mailbox.json")
    }

    fn read_answer(&self, id: &str) -> Result<Option<HttpResponse>> {
        let Some(raw) = read_opt(&self.answer_path(id))? else {
            return Ok(None);
        };
        let nl = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
        let ct = String::from_utf8_lossy(&raw[..nl]).into_owned();
        let body = raw.get(nl + 1..).unwrap_or_default().to_vec();
        Ok(Some(HttpResponse::new(200, ct, body)))
    }

    fn is_pop3(&self) -> bool {
        matches!(
            self.mailbox_account.url.scheme,
            Scheme::Pop3 | Scheme::Pop3s
        )
    }

    /// Submit `body` to the service by mail.
    fn submit(&self, content_type: &str, body: &[u8]) -> Result<()> {
        let mail = layout::compose(
            content_type,
            body,
            &self.address,
            &self.service_address,
            &self.limits,
        )?;
        if mail.len() as u64 > self.max_mail_bytes {
            return Err(Error::Refused(format!(
                "the message is {} bytes as a mail, more than e-mail carries here ([email] \
                 max_mail_bytes = {})",
                mail.len(),
                self.max_mail_bytes
            )));
        }
        self.smtp
            .send(&self.address, &[&self.service_address], &mail)
    }

    /// The mailbox session, logged in.
    fn mailbox<'s>(&self, s: &'s mut Session) -> Result<&'s mut Box<dyn Mailbox>> {
        if s.mailbox.is_none() {
            s.mailbox = Some(open_mailbox(&self.mailbox_account)?);
            s.handed.clear();
        }
        Ok(s.mailbox.as_mut().expect("just opened"))
    }

    /// End the session (POP3: QUIT makes the deletions take effect).
    fn close(&self, s: &mut Session) -> Result<()> {
        s.queue.clear();
        s.listed = false;
        s.handed.clear();
        s.skipped.clear();
        match s.mailbox.take() {
            Some(m) => m.close(),
            None => Ok(()),
        }
    }

    /// Run `f` on the session; a failure ends the session (the next call logs in again).
    fn with_session<T>(&self, f: impl FnOnce(&mut Session) -> Result<T>) -> Result<T> {
        let mut s = self
            .session
            .lock()
            .map_err(|_| Error::Internal("the mail session lock is poisoned".into()))?;
        let r = f(&mut s);
        if r.is_err() {
            if let Some(m) = s.mailbox.take() {
                drop(m);
            }
            s.queue.clear();
            s.listed = false;
            s.handed.clear();
            s.skipped.clear();
        }
        r
    }

    fn load_state(&self) -> MailboxState {
        read_json(&self.mailbox_state_path())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn save_state(&self, st: &MailboxState) -> Result<()> {
        write_atomic(&self.mailbox_state_path(), &to_json(st))
    }

    /// List the mailbox; with `only_new`, the mails not classified before (their kind is
    /// known: messages for us, left for the next round).
    fn list(&self, s: &mut Session, only_new: bool) -> Result<Vec<MailRef>> {
        let pop3 = self.is_pop3();
        let mb = self.mailbox(s)?;
        let all = mb.list()?;
        let validity = mb.uidvalidity();
        let mut st = self.load_state();
        if st.uidvalidity != validity {
            // Another folder or a rebuilt one: every mail is new to us.
            st = MailboxState {
                uidvalidity: validity,
                ..Default::default()
            };
            self.save_state(&st)?;
        }
        let not_ours: HashSet<&String> = st.not_ours.iter().collect();
        let known: HashSet<&String> = st.known.iter().collect();
        let skipped = &s.skipped;
        Ok(all
            .into_iter()
            .filter(|m| !skipped.contains(&m.uid))
            .filter(|m| {
                if pop3 {
                    !not_ours.contains(&m.uid) && (!only_new || !known.contains(&m.uid))
                } else {
                    !only_new || m.uid.parse::<u64>().map_or(true, |u| u > st.last_uid)
                }
            })
            .collect())
    }

    /// Remember that a mail was classified.
    fn classified(&self, m: &MailRef, not_ours: bool) -> Result<()> {
        let mut st = self.load_state();
        if self.is_pop3() {
            if !st.known.contains(&m.uid) {
                st.known.push(m.uid.clone());
            }
            if not_ours && !st.not_ours.contains(&m.uid) {
                st.not_ours.push(m.uid.clone());
            }
            // Bounded: the oldest entries go (a mail still there would be looked at again).
            for v in [&mut st.known, &mut st.not_ours] {
                if v.len() > 10_000 {
                    let cut = v.len() - 10_000;
                    v.drain(..cut);
                }
            }
        } else if let Ok(u) = m.uid.parse::<u64>() {
            if u <= st.last_uid {
                return Ok(());
            }
            st.last_uid = u;
        }
        self.save_state(&st)
    }

    /// Look at one mail: record and remove an answer or a bounce, set aside what is not ours,
    /// hand out a message (unless `only_answers`: then it is left in place).
    fn classify(&self, s: &mut Session, m: &MailRef, only_answers: bool) -> Result<Kind> {
        let max = self.max_mail_bytes;
        let raw = {
            let mb = self.mailbox(s)?;
            match mb.fetch(m, max) {
                Ok(r) => r,
                Err(Error::TooLarge(_)) => {
                    self.move_aside(s, m, "larger than [email] max_mail_bytes")?;
                    return Ok(Kind::Done);
                }
                Err(e) => return Err(e),
            }
        };
        match layout::read(&raw, &self.limits) {
            Content::As4 {
                content_type, body, ..
            } => {
                let messaging = match exchange::peek(&content_type, &body, &self.limits) {
                    Ok(x) => x,
                    Err(_) => {
                        self.move_aside(s, m, "an unreadable ebMS header")?;
                        return Ok(Kind::Done);
                    }
                };
                if let Some(um) = messaging.user_messages.first() {
                    let signed_at = ls_core::time::parse_date_time(&um.info.timestamp);
                    if signed_at.is_some_and(|t| now_unix().saturating_sub(t) > self.max_age_secs) {
                        self.move_aside(
                            s,
                            m,
                            "a message signed longer ago than the journal remembers (a replay?)",
                        )?;
                        return Ok(Kind::Done);
                    }
                    self.classified(m, false)?;
                    if only_answers {
                        return Ok(Kind::Done);
                    }
                    return Ok(Kind::Message {
                        content_type,
                        body,
                        eb_id: um.info.message_id.clone(),
                    });
                }
                // An answer is a receipt or an error (other than "nothing to pull", which answers
                // a pull request) for a message we submitted.
                let answer_to = messaging.signals.first().and_then(|sig| match &sig.signal {
                    Signal::Receipt { .. } => sig.info.ref_to_message_id.clone(),
                    Signal::Error(errs) if !errs.iter().any(|e| e.code == "EBMS:0006") => {
                        sig.info.ref_to_message_id.clone()
                    }
                    _ => None,
                });
                let is_receipt = messaging
                    .signals
                    .first()
                    .is_some_and(|sig| matches!(sig.signal, Signal::Receipt { .. }));
                let Some(to) = answer_to.filter(|id| self.submitted_path(id).exists()) else {
                    self.move_aside(s, m, "a signal that answers nothing we sent")?;
                    return Ok(Kind::Done);
                };
                if let Err(e) = self.verify_answer(&content_type, &body) {
                    // Not the service's: it neither completes nor fails anything.
                    self.move_aside(
                        s,
                        m,
                        &format!("an answer that does not verify ({})", e.code()),
                    )?;
                    return Ok(Kind::Done);
                }
                let path = self.answer_path(&to);
                // A receipt takes the place of an error kept before (the job checks a receipt
                // against what it sent, and discards one that is not its own).
                let replace = match self.read_answer(&to)? {
                    None => true,
                    Some(old) => {
                        is_receipt
                            && !exchange::peek(&old.content_type, &old.body, &self.limits)
                                .is_ok_and(|m| {
                                    m.signals
                                        .first()
                                        .is_some_and(|x| matches!(x.signal, Signal::Receipt { .. }))
                                })
                    }
                };
                if replace {
                    let mut data = content_type.replace(['\r', '\n'], " ").into_bytes();
                    data.push(b'\n');
                    data.extend_from_slice(&body);
                    write_atomic(&path, &data)?;
                }
                self.classified(m, false)?;
                self.mailbox(s)?.delete(m)?;
                Ok(Kind::Done)
            }
            Content::Bounce(b) => {
                let ours = b
                    .message_id
                    .as_deref()
                    .filter(|id| self.submitted_path(id).exists());
                match ours {
                    Some(id) if b.is_failure() => {
                        write_atomic(
                            &self.bounce_path(id),
                            &to_json(&BounceRecord {
                                reason: b.reason(),
                                at: now_unix(),
                            }),
                        )?;
                        self.classified(m, false)?;
                        self.mailbox(s)?.delete(m)?;
                    }
                    Some(_) => {
                        // A delay notice: nothing to do.
                        self.classified(m, false)?;
                        self.mailbox(s)?.delete(m)?;
                    }
                    None => self.move_aside(s, m, "a bounce of a mail we did not send")?,
                }
                Ok(Kind::Done)
            }
            Content::NotOurs(why) => {
                self.move_aside(s, m, &why)?;
                Ok(Kind::Done)
            }
        }
    }

    fn move_aside(&self, s: &mut Session, m: &MailRef, why: &str) -> Result<()> {
        let folder = self.set_aside_folder.clone();
        self.mailbox(s)?.set_aside(m, &folder)?;
        self.classified(m, true)?;
        self.log_set_aside(m, why);
        Ok(())
    }

    /// One line per mail set aside in `state/mail/set-aside.jsonl` (the previous MiB kept as
    /// `.1`): nothing is taken out of the way without a trace.
    fn log_set_aside(&self, m: &MailRef, why: &str) {
        use std::io::Write;
        let path = self.dir.join("set-aside.jsonl");
        if std::fs::metadata(&path).is_ok_and(|md| md.len() > 1 << 20) {
            let _ = std::fs::rename(&path, self.dir.join("set-aside.jsonl.1"));
        }
        let line = serde_json::json!({
            "at": ls_core::time::iso8601(now_unix()),
            "uid": layout::printable(&m.uid),
            "size": m.size,
            "why": layout::printable(why),
        });
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Whether an answer mail is the service's: its signature verifies with the service's
    /// certificate.
    fn verify_answer(&self, content_type: &str, body: &[u8]) -> Result<()> {
        let certs = self
            .service
            .read()
            .map_err(|_| Error::Internal("lock poisoned".into()))?
            .clone();
        let mut store = CertStore::new();
        for c in &certs {
            store.add_partner(c.clone(), None);
        }
        message::read(
            content_type,
            body,
            &ReadOptions {
                recipient: None,
                policy: VerifyPolicy {
                    partners: Some(&store),
                    ..Default::default()
                },
                limits: self.limits.clone(),
            },
        )
        .map(|_| ())
    }

    /// Look at the mails that came since the last look, for answers and bounces only.
    fn collect_answers(&self) -> Result<()> {
        self.with_session(|s| {
            let new = self.list(s, true)?;
            for m in new {
                match self.classify(s, &m, true) {
                    Ok(_) => {}
                    Err(e) if per_mail(&e) => {
                        s.skipped.insert(m.uid.clone());
                    }
                    Err(e) => return Err(e),
                }
            }
            if self.is_pop3() {
                // A POP3 session sees the maildrop as it was at login.
                self.close(s)?;
            }
            Ok(())
        })
    }
}

/// `MailStatus` code of a delivery-status notification (not an SMTP reply).
pub(crate) const BOUNCE: u16 = 0;

/// The message to be submitted, at most `max` bytes (a mail in base64 is about 4/3 of it).
fn read_body(body: &mut dyn Read, len: u64, max: u64) -> Result<Vec<u8>> {
    if len > max {
        return Err(Error::Refused(format!(
            "the message of {len} bytes is larger than e-mail carries here ([email] \
             max_mail_bytes = {max})"
        )));
    }
    let mut v = Vec::new();
    body.take(max.saturating_add(1))
        .read_to_end(&mut v)
        .map_err(|e| Error::io("cannot read the message", e))?;
    Ok(v)
}

impl Carrier for MailCarrier {
    fn send(&self, out: Outbound<'_>) -> Result<Option<HttpResponse>> {
        if let Some(ref_to) = out.ref_to {
            let body = read_body(out.body, out.len, self.max_mail_bytes)?;
            // Our receipt or error for a message we received: handed over, then that
            // message's mail can go.
            self.submit(out.content_type, &body)?;
            self.with_session(|s| {
                if let Some(m) = s.handed.remove(ref_to) {
                    if let Some(mb) = s.mailbox.as_mut() {
                        mb.delete(&m)?;
                    }
                }
                Ok(())
            })?;
            return Ok(None);
        }
        let id = out.message_id;
        if let Some(a) = self.read_answer(id)? {
            return Ok(Some(a));
        }
        let sub_path = self.submitted_path(id);
        let mut sub: Submitted = read_json(&sub_path)?.unwrap_or_default();
        let now = now_unix();
        let bounce: Option<BounceRecord> = read_json(&self.bounce_path(id))?;
        let bounced = bounce.filter(|b| sub.submissions > 0 && b.at >= sub.last);
        if let Some(b) = &bounced {
            if !sub.bounce_reported {
                // Unsigned, so a hint only: the sender's next attempt submits again.
                sub.bounce_reported = true;
                write_atomic(&sub_path, &to_json(&sub))?;
                return Err(Error::MailStatus {
                    code: BOUNCE,
                    message: b.reason.clone(),
                });
            }
        }
        if bounced.is_none()
            && sub.submissions > 0
            && now.saturating_sub(sub.last) < self.resubmit_after
        {
            return Err(Error::ReceiptPending(format!(
                "submitted by e-mail to {} {} s ago; the service's receipt has not come yet",
                self.service_address,
                now.saturating_sub(sub.last)
            )));
        }
        let body = read_body(out.body, out.len, self.max_mail_bytes)?;
        self.submit(out.content_type, &body)?;
        sub.submissions += 1;
        sub.last = now;
        sub.bounce_reported = false;
        write_atomic(&sub_path, &to_json(&sub))?;
        let _ = std::fs::remove_file(self.bounce_path(id));
        Err(Error::ReceiptPending(format!(
            "submitted by e-mail to {}; the service's receipt has not come yet",
            self.service_address
        )))
    }

    fn receive(
        &self,
        _pull_request: &dyn Fn() -> Result<Built>,
    ) -> Result<Option<StreamingResponse>> {
        self.with_session(|s| loop {
            let Some(m) = s.queue.pop_front() else {
                if s.listed {
                    // The round is over; POP3 ends its session so its deletions take effect.
                    s.listed = false;
                    if self.is_pop3() {
                        self.close(s)?;
                    }
                    return Ok(None);
                }
                let all = self.list(s, false)?;
                s.queue = all.into();
                s.listed = true;
                continue;
            };
            match self.classify(s, &m, false) {
                Ok(Kind::Message {
                    content_type,
                    body,
                    eb_id,
                }) => {
                    s.handed.insert(eb_id, m);
                    let len = body.len() as u64;
                    return Ok(Some(StreamingResponse {
                        status: 200,
                        content_type,
                        headers: Vec::new(),
                        content_length: Some(len),
                        body: Box::new(std::io::Cursor::new(body)),
                        oversized: None,
                    }));
                }
                Ok(Kind::Done) => continue,
                Err(e) if per_mail(&e) => {
                    // The server would not fetch or move this one: the others go on.
                    if s.skipped.len() < 10_000 {
                        s.skipped.insert(m.uid.clone());
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
        })
    }

    fn pending(&self, message_id: &str) -> Option<Pending> {
        let sub: Submitted = read_json(&self.submitted_path(message_id))
            .ok()
            .flatten()
            .unwrap_or_default();
        let bounce: Option<BounceRecord> = read_json(&self.bounce_path(message_id)).ok().flatten();
        let bounced = bounce.filter(|b| sub.submissions > 0 && b.at >= sub.last);
        Some(Pending {
            submissions: sub.submissions,
            last_submitted: (sub.submissions > 0).then_some(sub.last),
            answered: self.answer_path(message_id).exists(),
            due: sub.submissions == 0
                || bounced.is_some()
                || now_unix().saturating_sub(sub.last) >= self.resubmit_after,
            bounced: bounced.map(|b| b.reason),
        })
    }

    fn await_answer(&self, message_id: &str, max: Duration, stop: &AtomicBool) -> Result<bool> {
        let deadline = Instant::now() + max;
        let mut pause = Duration::from_secs(1);
        loop {
            if self.answer_path(message_id).exists() {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            self.collect_answers()?;
            if self.answer_path(message_id).exists() {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let woke = self.wait(left.min(Duration::from_secs(5)), stop)?;
            if !woke {
                // Without IDLE: a look every 1, 2, 4, 5, 5 … s (a POP3 look is a login).
                let pause = left.min(pause);
                std::thread::sleep(pause);
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    fn wait(&self, max: Duration, stop: &AtomicBool) -> Result<bool> {
        if self.is_pop3() || !self.idle {
            return Ok(false);
        }
        self.with_session(|s| {
            // Only on a session a poll opened: never a login of its own (a wrong password
            // would otherwise be tried at every turn of the daemon, past the poll's back-off).
            let Some(mb) = s.mailbox.as_mut() else {
                return Ok(false);
            };
            if !mb.can_idle() {
                return Ok(false);
            }
            mb.wait(max, stop)
        })
    }

    fn authenticates_origin(&self) -> bool {
        false
    }

    fn set_aside(&self, message_id: &str, why: &str) -> Result<()> {
        self.with_session(|s| {
            let Some(m) = s.handed.remove(message_id) else {
                return Ok(());
            };
            self.move_aside(s, &m, why)
        })
    }

    fn discard_answer(&self, message_id: &str) {
        let _ = std::fs::remove_file(self.answer_path(message_id));
    }

    fn forget(&self, message_id: &str) {
        for p in [
            self.answer_path(message_id),
            self.submitted_path(message_id),
            self.bounce_path(message_id),
        ] {
            let _ = std::fs::remove_file(p);
        }
    }

    fn end_round(&self) -> Result<()> {
        if !self.is_pop3() {
            return Ok(());
        }
        self.with_session(|s| self.close(s))
    }
}
