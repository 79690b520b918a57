//! Key rollover, both ways ([`ls_core::rollover`] is the contract).
//!
//! **Ours** ([`Client::rollover`], `layersec rollover`): a new key and certificate (made here,
//! or a CA-issued one given) wait in the identity folder ([`keys`]); the certificate is
//! registered at the service (`POST /rollover`, signed by the old key and the new one), which
//! keeps the old one valid for the overlap; then every partner is sent a certificate update
//! (signed by the old key, its statement counter-signed by the new one), journalled in
//! `state/rollover-out/<partner>.pending` before it is pushed and pushed again until the
//! service has it. Partners answer; `state/rollover.json` keeps the state of each. We keep
//! signing with the old key until the service and every partner accepted — or until the
//! overlap is nearly over (a tenth of it, at most an hour, before its end, so that what we
//! sign with the old key still reaches the service in time) — then switch: the new identity
//! goes into the configured files, the old one to `previous/` (it still opens documents sealed
//! for it). The new key opens documents from the moment it exists. With the key on a PKCS#11
//! token the new key is made on the same token and the switch moves the key labels there
//! ([`token`]); the configuration is not rewritten.
//!
//! **A partner's** (`partner.rs`): an update is checked against the certificate we hold for
//! the partner, applied (the old certificate kept as previous until the overlap ends),
//! recorded in `state/rollover-in/<partner>.json` and answered, signed.
//!
//! One process changes the state at a time (`state/rollover.lock`); others see the change by
//! the state file's modification time and read the keys again.

pub(crate) mod keys;
mod partner;
pub(crate) mod token;

pub use partner::UpdateRecord;

use super::fsutil::{io_err, list_dir, read_json, to_json, write_atomic, Lock};
use super::notices::{self, PendingNotice};
use super::{Client, Problem};
use ls_core::as4::coordination::{self, UpdateAnswer, UpdateHeader};
use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange::Exchange;
use ls_core::as4::message::{self, Outgoing, Payload};
use ls_core::as4::model::Messaging;
use ls_core::cert::{key_usage, Certificate};
use ls_core::error::{Error, Result};
use ls_core::keys::Identity;
use ls_core::rollover::{self as contract, CertificateUpdate, RequestClaims};
use ls_core::time;
use ls_core::transport::Transport;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `state/rollover.json`: our rollover.
pub(crate) const STATE: &str = "rollover.json";
/// `state/rollover.lock`: held while the state changes.
const LOCK: &str = "rollover.lock";
/// `state/rollover-out/`: our certificate updates, journalled until the service has them.
pub(crate) const OUT: &str = "rollover-out";
/// `state/rollover-in/`: partners' updates (records) and our answers waiting to be pushed.
pub(crate) const IN: &str = "rollover-in";
/// The validity of a new certificate made here, in days (as `layersec init`'s default).
pub const DEFAULT_DAYS: u32 = 825;

/// Where our rollover is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The new key exists (and opens documents); the service has not registered it yet.
    Registering,
    /// Registered at the service; partners are told; we still sign with the old key.
    Announcing,
    /// The new identity is being put into the configured files (a crash here is finished at
    /// the next start).
    Switching,
    /// We sign with the new key; the old one still opens what was sealed for it.
    Switched,
}

/// A partner's part in our rollover.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartnerUpdate {
    pub partner: String,
    /// `sending` (the update waits to be pushed: the service could not be reached), `pending`
    /// (with the service; no answer yet), `accepted`, `rejected` (`reason` says why), or
    /// `offline` (the overlap ended without an answer: the partner takes the update when it
    /// next polls; until then it cannot check what we sign with the new key).
    pub state: String,
    /// Our update's MessageId.
    pub message_id: String,
    /// When the service took the update (Unix seconds).
    pub sent_at: Option<i64>,
    /// When the partner's answer came (Unix seconds).
    pub answered_at: Option<i64>,
    /// Why it was rejected: the partner's reason, or the service's refusal of the update.
    pub reason: Option<String>,
    /// The last failure to push the update.
    pub error: Option<Problem>,
}

/// Our rollover, as `state/rollover.json` keeps it (and `layersec status` shows it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rollover {
    pub phase: Phase,
    /// Unix seconds.
    pub started_at: i64,
    /// Started by `[identity] auto_rollover_days`, not by a command.
    pub automatic: bool,
    pub old_certificate_sha256: String,
    pub new_certificate_sha256: String,
    /// When the new certificate expires (Unix seconds).
    pub new_not_after: i64,
    pub overlap_secs: u64,
    /// Until when the old certificate is valid: the service's word once registered, planned
    /// before (Unix seconds).
    pub old_valid_until: i64,
    /// `pending`, `accepted` (registered) or `refused`.
    pub service: String,
    pub registered_at: Option<i64>,
    pub service_error: Option<Problem>,
    pub partners: Vec<PartnerUpdate>,
    /// When we began to sign with the new key, and why: `accepted` (the service and every
    /// partner accepted) or `overlap` (the overlap was nearly over).
    pub switched_at: Option<i64>,
    pub switched_because: Option<String>,
}

impl Rollover {
    /// Whether the service and every partner accepted the new certificate.
    pub fn all_accepted(&self) -> bool {
        self.service == "accepted" && self.partners.iter().all(|p| p.state == "accepted")
    }

    /// When we sign with the new key at the latest: a tenth of the overlap (at most an hour)
    /// before its end.
    pub fn switch_at(&self) -> i64 {
        let margin = (self.overlap_secs / 10).min(3600) as i64;
        self.old_valid_until.saturating_sub(margin)
    }

    /// Whether we sign with the new key.
    pub fn switched(&self) -> bool {
        self.phase == Phase::Switched
    }

    /// The service refused the new certificate: nothing came of this rollover.
    pub fn abandoned(&self) -> bool {
        self.service == "refused"
    }

    /// The new key exists and is not ours to sign with yet.
    pub fn pending(&self) -> bool {
        !self.switched() && !self.abandoned()
    }

    /// Switched, and nothing is left to wait for: every partner answered, or the overlap
    /// ended.
    pub fn finished(&self, now: i64) -> bool {
        self.abandoned()
            || self.switched()
                && (now >= self.old_valid_until
                    || self
                        .partners
                        .iter()
                        .all(|p| matches!(p.state.as_str(), "accepted" | "rejected")))
    }

    fn partner_mut(&mut self, partner: &str) -> Option<&mut PartnerUpdate> {
        self.partners.iter_mut().find(|p| p.partner == partner)
    }
}

/// What to roll over to.
#[derive(Clone, Debug, Default)]
pub struct RolloverOptions {
    /// How long the old certificate stays valid (default `[identity] rollover_overlap_hours`).
    pub overlap_secs: Option<u64>,
    /// A new identity made elsewhere (a CA-issued certificate and its key); `None`: a new key
    /// of the current key's type and a self-signed certificate valid `days`.
    pub identity: Option<Identity>,
    /// Validity of a certificate made here (default [`DEFAULT_DAYS`]).
    pub days: Option<u32>,
    /// Started by the daemon (`[identity] auto_rollover_days`).
    pub automatic: bool,
}

/// Our certificate's validity, for `status`.
#[derive(Clone, Debug, Serialize)]
pub struct CertificateStatus {
    pub sha256: String,
    pub subject: String,
    pub not_after: i64,
    /// Whole days left (negative once expired).
    pub days_left: i64,
    /// Within `[identity] expiry_warning_days` of expiring (and no rollover under way).
    pub expiry_warning: bool,
    /// `[identity] auto_rollover_days` would start a rollover now.
    pub auto_rollover_due: bool,
}

fn state_path(c: &Client) -> PathBuf {
    c.state(STATE)
}

fn out_path(c: &Client, partner: &str) -> PathBuf {
    c.state(OUT).join(format!(
        "{}.pending",
        ls_core::bytes::sha256_hex(partner.as_bytes())
    ))
}

fn save(c: &Client, r: &Rollover) -> Result<()> {
    write_atomic(&state_path(c), &to_json(r))
}

impl Client {
    /// Our rollover, if one was made (finished ones too, until the next).
    pub fn rollover_state(&self) -> Result<Option<Rollover>> {
        read_json(&state_path(self))
    }

    /// Our certificate's validity and whether `status` should warn.
    pub fn certificate_status(&self) -> CertificateStatus {
        let me = self.me();
        let c = me.certificate();
        let now = time::now_unix();
        let days_left = (c.not_after() - now).div_euclid(86_400);
        let under_way = self
            .rollover_state()
            .ok()
            .flatten()
            .is_some_and(|r| r.pending());
        let id = &self.cfg.identity;
        CertificateStatus {
            sha256: c.sha256_fingerprint(),
            subject: c.subject().to_string(),
            not_after: c.not_after(),
            days_left,
            expiry_warning: days_left < i64::from(id.expiry_warning_days) && !under_way,
            auto_rollover_due: id.auto_rollover_days > 0
                && days_left < i64::from(id.auto_rollover_days)
                && !under_way,
        }
    }

    /// Roll our key over: a new key and certificate (or `opts.identity`), registered at the
    /// service, announced to every partner. Returns the state; `Err` when the service could
    /// not be reached (transient: the rollover waits, and `layersec rollover`, `run` or `poll`
    /// continues it) or refused (for good: nothing is left of it).
    pub fn rollover(&self, opts: &RolloverOptions) -> Result<Rollover> {
        let t = Self::https_to(
            &self.cfg,
            contract::rollover_url,
            contract::MAX_RESPONSE_BYTES,
        )?;
        self.rollover_via(&t, opts)
    }

    /// [`Client::rollover`] through `transport` (which reaches the rollover URL).
    pub fn rollover_via(
        &self,
        transport: &dyn Transport,
        opts: &RolloverOptions,
    ) -> Result<Rollover> {
        let _lock = Lock::acquire(&self.state(LOCK), Duration::from_secs(10))?;
        let now = time::now_unix();
        if let Some(r) = self.rollover_state()?.filter(|r| !r.abandoned()) {
            match r.phase {
                // Not registered yet (the service was not reached): go on with it.
                Phase::Registering if opts.identity.is_none() => {
                    return self.continue_rollover(transport, r);
                }
                Phase::Registering => {}
                Phase::Switched if r.finished(now) => {}
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "a rollover to the certificate {} is under way (started {}; the old \
                         certificate is valid until {}): `layersec status` shows it; `layersec \
                         run` or `poll` continues it",
                        r.new_certificate_sha256,
                        time::iso8601(r.started_at),
                        time::iso8601(r.old_valid_until)
                    )))
                }
            }
        }
        let id = &self.cfg.identity;
        let on_token = self.cfg.key_on_token();
        if on_token {
            token::check(&self.cfg)?;
            if opts.identity.is_some() {
                return Err(Error::InvalidArgument(
                    "our key is on a PKCS#11 token: a rollover makes the new key on the same \
                     token; a key file (--key, --cert) cannot replace it"
                        .into(),
                ));
            }
        } else {
            id.certificate.as_deref().ok_or_else(|| {
                Error::ConfigInvalid(format!(
                    "{}: identity.certificate: a rollover replaces the key and certificate \
                     files; a PKCS#12 identity cannot roll over (convert it to a PEM key and \
                     certificate)",
                    self.cfg.file.display()
                ))
            })?;
            let key_bytes =
                std::fs::read(&id.key).map_err(|e| io_err("cannot read", &id.key, e))?;
            if !key_bytes.starts_with(b"-----")
                && !ls_core::bytes::contains(&key_bytes, b"-----BEGIN")
            {
                return Err(Error::ConfigInvalid(format!(
                    "{}: identity.key: a rollover replaces the key file; a PKCS#12 identity \
                     cannot roll over (convert it to a PEM key and certificate)",
                    self.cfg.file.display()
                )));
            }
        }
        let overlap_secs = opts
            .overlap_secs
            .unwrap_or(id.rollover_overlap_hours.saturating_mul(3600));
        if overlap_secs > contract::MAX_OVERLAP_SECS {
            return Err(Error::InvalidArgument(format!(
                "an overlap of {} hours is longer than the {} allowed",
                overlap_secs / 3600,
                contract::MAX_OVERLAP_SECS / 3600
            )));
        }
        let me = self.me();
        let password = self.cfg.password()?;
        let password = password.as_deref().map(String::as_str);
        let (new, key_pem) = match &opts.identity {
            // The key stays on the token (`rollover/new.uri` names it): no key file.
            None if on_token => (
                token::generate_pending(
                    &self.cfg,
                    &self.cfg.party.id,
                    me.key_type().unwrap_or_default(),
                    opts.days.unwrap_or(DEFAULT_DAYS),
                )?,
                Default::default(),
            ),
            Some(given) => (given.clone(), given.private_key_pem(password)?),
            None => {
                let g = Identity::generate(
                    &self.cfg.party.id,
                    me.key_type().unwrap_or_default(),
                    opts.days.unwrap_or(DEFAULT_DAYS),
                    password,
                )?;
                (g.identity, g.key_pem)
            }
        };
        // Checked at the time after it was made: the certificate is valid from the second it
        // was made in, which making the key (an RSA key, a key on a token) can put after `now`.
        if let Err(e) = check_new_certificate(me.certificate(), new.certificate(), time::now_unix())
        {
            if on_token {
                let _ = keys::drop_pending(&self.cfg);
            }
            return Err(e);
        }
        let (kp, cp) = keys::pending_paths(&self.cfg);
        if !on_token {
            keys::write_key(&kp, &key_pem)?;
        }
        keys::write_cert(&cp, new.certificate())?;
        let r = Rollover {
            phase: Phase::Registering,
            started_at: now,
            automatic: opts.automatic,
            old_certificate_sha256: me.certificate().sha256_fingerprint(),
            new_certificate_sha256: new.certificate().sha256_fingerprint(),
            new_not_after: new.certificate().not_after(),
            overlap_secs,
            old_valid_until: now.saturating_add(overlap_secs as i64),
            service: "pending".into(),
            registered_at: None,
            service_error: None,
            partners: Vec::new(),
            switched_at: None,
            switched_because: None,
        };
        // Old updates of an earlier rollover are not sent any more.
        let _ = std::fs::remove_dir_all(self.state(OUT));
        save(self, &r)?;
        // From now on the new key opens what is sealed for it.
        self.refresh_keys(true)?;
        self.continue_rollover(transport, r)
    }

    /// Register (if not yet), announce, switch if everyone accepted.
    fn continue_rollover(&self, transport: &dyn Transport, mut r: Rollover) -> Result<Rollover> {
        if r.phase == Phase::Registering {
            self.register(transport, &mut r)?;
        }
        let keys = self.keys();
        let ex = self.exchange_as(&keys);
        self.flush_updates(&ex, &mut r)?;
        self.check_switch(&mut r)?;
        Ok(r)
    }

    /// The pending identity (the new key and certificate), before the switch.
    fn pending_identity(&self) -> Result<Identity> {
        if self.cfg.key_on_token() {
            return token::load_pending(&self.cfg)?.ok_or_else(|| {
                Error::KeyNotFound("the new key of the rollover is not recorded any more".into())
            });
        }
        let (k, c) = keys::pending_paths(&self.cfg);
        let password = self.cfg.password()?;
        Identity::load(&k, Some(&c), password.as_deref().map(String::as_str))
    }

    /// `POST /rollover`, then the updates for every partner are built and journalled.
    fn register(&self, transport: &dyn Transport, r: &mut Rollover) -> Result<()> {
        let me = self.me();
        let new = self.pending_identity()?;
        let service = self.service_certs();
        let claims = RequestClaims::new(
            &self.cfg.party.id,
            me.certificate(),
            new.certificate(),
            r.overlap_secs,
            &service[0],
        )?;
        let posted = contract::build_request(&me, &new, &claims).and_then(|body| {
            let resp = transport.post(contract::CONTENT_TYPE, &body)?.whole()?;
            if resp.status != 200 {
                return Err(contract::refusal_error(resp.status, &resp.body));
            }
            // Signed by the service's current certificate, or (its own key's rollover) by the
            // one before.
            let mut last = None;
            for c in &service {
                match contract::verify_response(&resp.body, c, &claims) {
                    Ok(reg) => return Ok(reg),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.expect("a service certificate"))
        });
        let registered = match posted {
            Ok(reg) => reg,
            Err(e) if e.is_transient() || super::is_unreachable(&e) => {
                r.service_error = Some((&e).into());
                save(self, r)?;
                return Err(e);
            }
            Err(e) => {
                // Refused for good: the new key is dropped; the state says why.
                r.service = "refused".into();
                r.service_error = Some((&e).into());
                save(self, r)?;
                keys::drop_pending(&self.cfg)?;
                self.refresh_keys(true)?;
                return Err(e);
            }
        };
        r.service = "accepted".into();
        r.service_error = None;
        r.registered_at = Some(registered.registered_at);
        r.old_valid_until = registered.old_valid_until;
        r.phase = Phase::Announcing;
        // One update per partner, built now (signed by the old key, counter-signed by the
        // new) and journalled, then pushed.
        let dir = self.state(OUT);
        std::fs::create_dir_all(&dir).map_err(|e| io_err("cannot create folder", &dir, e))?;
        let partners: Vec<String> = {
            let _ = self.reload_partners();
            let f = self.partners.read().unwrap_or_else(|e| e.into_inner());
            f.iter()
                .filter(|p| !p.current.is_empty() && p.id != self.cfg.party.id)
                .map(|p| p.id.clone())
                .collect()
        };
        let now = time::now_unix();
        for partner in partners {
            let u = CertificateUpdate::new(
                &self.cfg.party.id,
                &partner,
                me.certificate(),
                new.certificate(),
                now,
                r.old_valid_until,
            )?;
            let header = UpdateHeader {
                new_certificate_sha256: u.new_certificate_sha256.clone(),
                old_valid_until: u.old_valid_until.clone(),
            };
            let um = coordination::certificate_update_message(
                &self.cfg.party.id,
                &partner,
                &header,
                &self.domain,
            )?;
            let built = message::build(Outgoing {
                messaging: Messaging {
                    user_messages: vec![um],
                    signals: Vec::new(),
                },
                payloads: vec![Payload {
                    content_id: format!("certificate-update@{}", self.domain),
                    mime_type: contract::UPDATE_CONTENT_TYPE.into(),
                    data: u.sign(&new)?,
                    compress: false,
                    properties: Vec::new(),
                }],
                signer: &me,
                encrypt_for: None,
                soap: SoapVersion::Soap12,
            })?;
            let pending = PendingNotice::of(built);
            notices::save_pending(&out_path(self, &partner), &pending)?;
            r.partners.push(PartnerUpdate {
                partner,
                state: "sending".into(),
                message_id: pending.message_id.clone(),
                sent_at: None,
                answered_at: None,
                reason: None,
                error: None,
            });
        }
        save(self, r)
    }

    /// Push the updates that wait. Unreachable: they wait for the next try (the error is
    /// noted); refused for good: that partner's update is `rejected` with the service's
    /// reason.
    fn flush_updates(&self, ex: &Exchange, r: &mut Rollover) -> Result<()> {
        let mut changed = false;
        for i in 0..r.partners.len() {
            if r.partners[i].state != "sending" {
                continue;
            }
            let path = out_path(self, &r.partners[i].partner);
            let Some(p) = notices::load_pending(&path)? else {
                r.partners[i].state = "rejected".into();
                r.partners[i].reason = Some("the update was lost from the journal".into());
                changed = true;
                continue;
            };
            let p_ = &mut r.partners[i];
            match ex.push(&p.built()) {
                Ok(_) => {
                    p_.state = "pending".into();
                    p_.sent_at = Some(time::now_unix());
                    p_.error = None;
                    notices::remove_pending(&path)?;
                }
                Err(e) if e.is_transient() || super::is_unreachable(&e) => {
                    p_.error = Some((&e).into());
                }
                Err(e) => {
                    p_.state = "rejected".into();
                    p_.reason = Some(format!("the service refused the update: {e}"));
                    p_.error = Some((&e).into());
                    notices::remove_pending(&path)?;
                }
            }
            changed = true;
        }
        if changed {
            save(self, r)?;
        }
        Ok(())
    }

    /// Switch to the new key when the service and every partner accepted it, or the overlap
    /// is nearly over; mark partners that did not answer within the overlap `offline`.
    fn check_switch(&self, r: &mut Rollover) -> Result<bool> {
        let now = time::now_unix();
        let mut changed = false;
        if now >= r.old_valid_until && r.service == "accepted" {
            for p in &mut r.partners {
                if p.state == "pending" || p.state == "sending" {
                    p.state = "offline".into();
                    changed = true;
                }
            }
        }
        let switched = match r.phase {
            Phase::Announcing if r.all_accepted() || now >= r.switch_at() => {
                r.switched_because = Some(
                    if r.all_accepted() {
                        "accepted"
                    } else {
                        "overlap"
                    }
                    .into(),
                );
                self.switch(r)?;
                true
            }
            Phase::Switching => {
                self.switch(r)?;
                true
            }
            _ => false,
        };
        if changed && !switched {
            save(self, r)?;
        }
        Ok(switched)
    }

    /// Sign with the new key: the old identity to `previous/`, the new one into the configured
    /// files, each step redone after a crash.
    fn switch(&self, r: &mut Rollover) -> Result<()> {
        if r.phase == Phase::Announcing {
            keys::keep_current_as_previous(&self.cfg)?;
            r.phase = Phase::Switching;
            save(self, r)?;
        }
        // A crash after the files were installed and before the state was saved finds the
        // pending files gone only once the state says Switched.
        if keys::pending_exists(&self.cfg) {
            keys::install_pending(&self.cfg)?;
        }
        r.phase = Phase::Switched;
        r.switched_at = Some(time::now_unix());
        if r.switched_because.is_none() {
            r.switched_because = Some("overlap".into());
        }
        save(self, r)?;
        keys::drop_pending(&self.cfg)?;
        self.refresh_keys(true)?;
        Ok(())
    }

    /// What a poll does for rollovers first: finish a switch a crash interrupted, register a
    /// rollover the service was not reached for, push updates and answers that wait, switch
    /// when it is time. Returns whether we switched keys now.
    pub(crate) fn rollover_tick(&self, ex: &Exchange) -> Result<bool> {
        self.flush_answers(ex)?;
        if !state_path(self).exists() {
            return Ok(false);
        }
        let Some(_lock) = Lock::try_acquire(&self.state(LOCK))? else {
            return Ok(false);
        };
        let Some(mut r) = self.rollover_state()? else {
            return Ok(false);
        };
        if r.finished(time::now_unix()) {
            return Ok(false);
        }
        if r.phase == Phase::Registering {
            let t = Self::https_to(
                &self.cfg,
                contract::rollover_url,
                contract::MAX_RESPONSE_BYTES,
            )?;
            // Not reached: tried again at the next poll; refused: the state says so. Neither
            // stops the poll.
            if self.register(&t, &mut r).is_err() {
                return Ok(false);
            }
        }
        self.flush_updates(ex, &mut r)?;
        let switched = self.check_switch(&mut r)?;
        Ok(switched)
    }

    /// A partner's answer to our update (its AS4 signature verified): recorded, and we switch
    /// when it was the last one. `Ok(None)` when it answers no update of ours (not ours to
    /// record: a stranger's).
    pub(crate) fn take_update_answer(
        &self,
        sender: &str,
        a: &UpdateAnswer,
    ) -> Result<Option<(PartnerUpdate, bool)>> {
        let _lock = Lock::acquire(&self.state(LOCK), Duration::from_secs(10))?;
        let Some(mut r) = self.rollover_state()? else {
            return Ok(None);
        };
        if a.new_certificate_sha256 != r.new_certificate_sha256 {
            return Ok(None);
        }
        let Some(p) = r
            .partner_mut(sender)
            .filter(|p| p.message_id == a.message_id)
        else {
            return Ok(None);
        };
        if p.answered_at.is_none() || p.state != "accepted" {
            p.state = if a.accepted() { "accepted" } else { "rejected" }.into();
            p.reason = (!a.accepted()).then(|| a.reason.clone());
            p.answered_at = Some(time::now_unix());
        }
        let p = p.clone();
        save(self, &r)?;
        let switched = self.check_switch(&mut r)?;
        Ok(Some((p, switched)))
    }

    /// Start a rollover when `[identity] auto_rollover_days` says it is time (the daemon).
    pub(crate) fn auto_rollover(&self) -> Result<Option<Rollover>> {
        if !self.certificate_status().auto_rollover_due {
            return Ok(None);
        }
        if let Some(r) = self.rollover_state()? {
            let now = time::now_unix();
            // One at a time: not while the last one's overlap runs; one the service refused is
            // not tried again for a day.
            let overlap_runs = !r.abandoned() && now < r.old_valid_until;
            if !r.finished(now) || overlap_runs || (r.abandoned() && now - r.started_at < 86_400) {
                return Ok(None);
            }
        }
        self.rollover(&RolloverOptions {
            automatic: true,
            ..Default::default()
        })
        .map(Some)
    }

    /// Every partner's update records, newest first.
    pub fn partner_updates(&self) -> Result<Vec<UpdateRecord>> {
        let mut v = Vec::new();
        for (name, path, md) in list_dir(&self.state(IN))? {
            if md.is_file() && name.ends_with(".json") && !name.starts_with('.') {
                let recs: Option<Vec<UpdateRecord>> = read_json(&path)?;
                v.extend(recs.unwrap_or_default());
            }
        }
        v.sort_by_key(|r| std::cmp::Reverse(r.received_at));
        Ok(v)
    }
}

/// A new certificate we can roll over to: another key than the old one, valid now (not
/// expiring within a day), allowed to sign, of a key the service registers.
fn check_new_certificate(old: &Certificate, new: &Certificate, now: i64) -> Result<()> {
    let same_key = old
        .public_key()
        .ok()
        .zip(new.public_key().ok())
        .is_some_and(|(a, b)| a.public_eq(&b));
    if old == new || same_key {
        return Err(Error::InvalidArgument(
            "the new certificate has the key we have now: a rollover needs a new key".into(),
        ));
    }
    new.check_validity(now)?;
    if new.not_after() <= now.saturating_add(86_400) {
        return Err(Error::CertExpired(format!(
            "the new certificate expires on {}: roll over to one valid longer",
            time::iso8601(new.not_after())
        )));
    }
    new.check_key_usage(
        key_usage::DIGITAL_SIGNATURE | key_usage::NON_REPUDIATION,
        "signing",
    )?;
    ls_core::enrol::check_key(new)?;
    Ok(())
}
