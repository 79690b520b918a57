//! A partner's certificate update (its rollover), as we receive it.
//!
//! The update's AS4 signature was verified against the certificates we accept from the
//! partner; [`ls_core::rollover::verify_update`] checks that it was the one we hold as its
//! current certificate, that the statement names the partner and us and is counter-signed by
//! the new certificate's key, and that the new certificate is valid. A statement whose nonce
//! was applied before is a replay. Accepted, the new certificate becomes the partner's current one
//! and the old one stays accepted until the overlap ends (`partners::set_current`, source
//! `rollover`); rejected, nothing changes. Either way the decision is recorded in
//! `state/rollover-in/<partner>.json` first, then our signed answer is built and journalled
//! (`state/rollover-in/<key>.answer`), pushed, and the update receipted. The same update
//! offered again (a lost receipt) is answered again as recorded, not judged twice.
//!
//! An update whose AS4 signature verifies against no certificate we hold for the partner
//! (signed by the new key alone, by someone else) cannot be answered as the partner's: it is
//! recorded as rejected (`unknown_signer`) and refused with a signed refusal notice, as any
//! message a known partner signed wrongly.

use super::{Client, IN};
use crate::fsutil::{read_json, to_json, write_atomic};
use crate::incoming::delivery_key;
use crate::notices::{self, PendingNotice};
use crate::partners::{self, Source};
use ls_core::as4::coordination::{self, UpdateAnswer};
use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange::{Exchange, Pulled};
use ls_core::as4::message::{self, Incoming, Outgoing, ReadOptions};
use ls_core::as4::model::Messaging;
use ls_core::cert::Certificate;
use ls_core::error::Result;
use ls_core::rollover::{self as contract, CertificateUpdate, UpdateReason, UpdateRefused};
use ls_core::time;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Records kept per partner (the newest).
const MAX_RECORDS: usize = 200;

/// A partner's certificate update, as we judged it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpdateRecord {
    pub partner: String,
    /// The update's MessageId.
    pub message_id: String,
    /// Its nonce (empty when the statement could not be read).
    pub nonce: String,
    pub old_certificate_sha256: String,
    pub new_certificate_sha256: String,
    /// ISO 8601, as the statement says.
    pub valid_from: String,
    pub old_valid_until: String,
    /// `accepted` or `rejected`.
    pub decision: String,
    /// Why it was rejected (an [`UpdateReason`]).
    pub reason: Option<String>,
    /// What was checked, for people.
    pub message: String,
    /// Unix seconds.
    pub received_at: i64,
    /// Our answer's MessageId (a signed `CertificateUpdateAnswer`; for an update we could not
    /// authenticate, a refusal notice).
    pub answer_message_id: Option<String>,
}

impl UpdateRecord {
    /// The record of an update not judged yet: what its statement says, read without checking
    /// (empty where it cannot be read), `rejected` until it is judged.
    fn of(sender: &str, message_id: String, payload: &[u8], now: i64) -> UpdateRecord {
        let u = CertificateUpdate::peek(payload).ok();
        let field =
            |f: fn(&CertificateUpdate) -> &String| u.as_ref().map(f).cloned().unwrap_or_default();
        UpdateRecord {
            partner: sender.to_string(),
            message_id,
            nonce: field(|u| &u.nonce),
            old_certificate_sha256: field(|u| &u.old_certificate_sha256),
            new_certificate_sha256: field(|u| &u.new_certificate_sha256),
            valid_from: field(|u| &u.valid_from),
            old_valid_until: field(|u| &u.old_valid_until),
            decision: coordination::DECISION_REJECTED.into(),
            reason: None,
            message: String::new(),
            received_at: now,
            answer_message_id: None,
        }
    }
}

fn records_path(c: &Client, partner: &str) -> PathBuf {
    c.state(IN).join(format!(
        "{}.json",
        ls_core::bytes::sha256_hex(partner.as_bytes())
    ))
}

fn answer_path(c: &Client, key: &str) -> PathBuf {
    c.state(IN).join(format!("{key}.answer"))
}

impl Client {
    fn update_records(&self, partner: &str) -> Result<Vec<UpdateRecord>> {
        Ok(read_json(&records_path(self, partner))?.unwrap_or_default())
    }

    /// Whether an update with this nonce from `sender` was applied before: a replay. (Not one
    /// refused: whoever holds a key we no longer take, or the new key alone, could otherwise
    /// send a copy of the real update first and have it refused as a replay.)
    fn applied_before(&self, sender: &str, nonce: &str) -> Result<bool> {
        Ok(!nonce.is_empty()
            && self
                .update_records(sender)?
                .iter()
                .any(|r| r.nonce == nonce && r.decision == coordination::DECISION_ACCEPTED))
    }

    fn add_update_record(&self, r: &UpdateRecord) -> Result<()> {
        let dir = self.state(IN);
        std::fs::create_dir_all(&dir)
            .map_err(|e| crate::fsutil::io_err("cannot create folder", &dir, e))?;
        let mut v = self.update_records(&r.partner)?;
        v.retain(|x| x.message_id != r.message_id);
        v.push(r.clone());
        if v.len() > MAX_RECORDS {
            let cut = v.len() - MAX_RECORDS;
            v.drain(..cut);
        }
        write_atomic(&records_path(self, &r.partner), &to_json(&v))
    }

    /// A certificate update from `sender`, its AS4 signature verified: judged, applied when
    /// good, recorded, answered, receipted. Returns the record (also when it was judged
    /// before).
    pub(crate) fn take_certificate_update(
        &self,
        ex: &Exchange,
        incoming: &Incoming,
        sender: &str,
    ) -> Result<UpdateRecord> {
        let um = &incoming.messaging.user_messages[0];
        let message_id = um.info.message_id.clone();
        let key = delivery_key(sender, &message_id);
        let payload = incoming
            .payloads
            .first()
            .map(|p| &p.data[..])
            .unwrap_or_default();
        if let Some(mut r) = self
            .update_records(sender)?
            .into_iter()
            .find(|r| r.message_id == message_id)
        {
            // Offered again (our receipt was lost, or we stopped half-way): what was decided
            // stands; finish what a crash may have interrupted — applying an accepted update,
            // journalling the answer — and answer as before.
            if r.decision == coordination::DECISION_ACCEPTED {
                self.finish_applying(sender, &r, payload)?;
            }
            if r.answer_message_id.is_none() {
                self.journal_answer(um, sender, &key, payload, &mut r)?;
            }
            self.flush_answer(ex, &key)?;
            return Ok(r);
        }
        let now = time::now_unix();
        let mut record = UpdateRecord::of(sender, message_id.clone(), payload, now);
        let seen = self.applied_before(sender, &record.nonce)?;
        let judged = if seen {
            Err(UpdateRefused::new(
                UpdateReason::Replayed,
                "an update with this nonce was received before".to_string(),
            ))
        } else {
            match incoming.verified.as_ref() {
                Some(v) => {
                    let current = self
                        .partners
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .current(sender);
                    contract::verify_update(
                        payload,
                        sender,
                        &self.cfg.party.id,
                        &v.signer,
                        &current,
                        now,
                    )
                }
                None => Err(UpdateRefused::new(
                    UpdateReason::UnknownSigner,
                    "the update is not signed".to_string(),
                )),
            }
        };
        match judged {
            Ok(v) => {
                record.decision = coordination::DECISION_ACCEPTED.into();
                record.message = format!(
                    "{sender}'s certificate is now {} (valid until {}); the old one {} is \
                     accepted until {}",
                    v.new_certificate.sha256_fingerprint(),
                    time::iso8601(v.new_certificate.not_after()),
                    v.update.old_certificate_sha256,
                    v.update.old_valid_until
                );
                // Recorded before it is applied: a crash in between applies it again when the
                // update is offered again (setting the same certificate twice is harmless).
                self.add_update_record(&record)?;
                self.fail_at("update:after-record")?;
                partners::set_current(
                    &self.cfg.partners.dir,
                    sender,
                    &v.new_certificate,
                    Source::Rollover,
                    Some(v.old_valid_until),
                    &[],
                )?;
                self.reload_partners()?;
            }
            Err(refused) => {
                record.reason = Some(refused.reason.as_str().into());
                record.message = refused.message;
                self.add_update_record(&record)?;
            }
        }
        self.journal_answer(um, sender, &key, payload, &mut record)?;
        self.flush_answer(ex, &key)?;
        Ok(record)
    }

    /// Apply an update recorded as accepted whose certificate is not the partner's yet (a
    /// crash came between recording and applying it): the certificate is the one the update
    /// carries, checked against the fingerprint recorded when it was verified.
    fn finish_applying(&self, sender: &str, r: &UpdateRecord, payload: &[u8]) -> Result<()> {
        let current = self
            .partners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .current(sender);
        if current
            .iter()
            .any(|c| c.sha256_fingerprint() == r.new_certificate_sha256)
        {
            return Ok(());
        }
        let (Ok(u), Some(until)) = (
            CertificateUpdate::peek(payload),
            time::parse_date_time(&r.old_valid_until),
        ) else {
            return Ok(());
        };
        let cert = Certificate::from_pem(u.new_certificate_pem.as_bytes())?;
        if cert.sha256_fingerprint() != r.new_certificate_sha256 {
            return Ok(());
        }
        partners::set_current(
            &self.cfg.partners.dir,
            sender,
            &cert,
            Source::Rollover,
            Some(until),
            &[],
        )?;
        self.reload_partners()
    }

    /// Build our signed answer to an update as `record` decided it, journal it (pushed by
    /// [`Client::flush_answer`]) and note its MessageId on the record.
    fn journal_answer(
        &self,
        um: &ls_core::as4::model::UserMessage,
        sender: &str,
        key: &str,
        payload: &[u8],
        record: &mut UpdateRecord,
    ) -> Result<()> {
        let message_id = um.info.message_id.clone();
        let answer = UpdateAnswer {
            message_id: message_id.clone(),
            payload_sha256: ls_core::bytes::sha256_hex(payload),
            new_certificate_sha256: if record.new_certificate_sha256.len() == 64 {
                record.new_certificate_sha256.clone()
            } else {
                "0".repeat(64)
            },
            decision: record.decision.clone(),
            reason: record.reason.clone().unwrap_or_default(),
        };
        let mut aum =
            coordination::update_answer_message(&self.cfg.party.id, sender, &answer, &self.domain)?;
        if !um.from.ids.is_empty() {
            aum.to.ids = um.from.ids.clone();
        }
        let me = self.me();
        let built = message::build(Outgoing {
            messaging: Messaging {
                user_messages: vec![aum],
                signals: Vec::new(),
            },
            payloads: Vec::new(),
            signer: &me,
            encrypt_for: None,
            soap: SoapVersion::Soap12,
        })?;
        let pending = PendingNotice::of(built);
        record.answer_message_id = Some(pending.message_id.clone());
        notices::save_pending(&answer_path(self, key), &pending)?;
        self.add_update_record(record)
    }

    /// An update of the service's own signing key (from [`coordination::SERVICE_PARTY`]), its
    /// AS4 signature verified against the service certificate we hold: checked like a
    /// partner's; accepted, the new certificate becomes `[service] service_certificate` and the
    /// old one stays accepted (`state/service-previous.json`) until the time the update names.
    /// Recorded; not answered (the service is no party).
    pub(crate) fn take_service_update(&self, incoming: &Incoming) -> Result<UpdateRecord> {
        let sender = coordination::SERVICE_PARTY;
        let um = &incoming.messaging.user_messages[0];
        let message_id = um.info.message_id.clone();
        if let Some(r) = self
            .update_records(sender)?
            .into_iter()
            .find(|r| r.message_id == message_id)
        {
            return Ok(r);
        }
        let payload = incoming
            .payloads
            .first()
            .map(|p| &p.data[..])
            .unwrap_or_default();
        let now = time::now_unix();
        let mut record = UpdateRecord::of(sender, message_id, payload, now);
        let seen = self.applied_before(sender, &record.nonce)?;
        let current = [self.keys().service];
        let judged = if seen {
            Err(UpdateRefused::new(
                UpdateReason::Replayed,
                "an update with this nonce was received before".to_string(),
            ))
        } else {
            match incoming.verified.as_ref() {
                Some(v) => contract::verify_update(
                    payload,
                    sender,
                    &self.cfg.party.id,
                    &v.signer,
                    &current,
                    now,
                ),
                None => Err(UpdateRefused::new(
                    UpdateReason::UnknownSigner,
                    "the update is not signed".to_string(),
                )),
            }
        };
        match judged {
            Ok(v) => {
                record.decision = coordination::DECISION_ACCEPTED.into();
                record.message = format!(
                    "the service's certificate is now {}; the old one {} is accepted until {}",
                    v.new_certificate.sha256_fingerprint(),
                    v.update.old_certificate_sha256,
                    v.update.old_valid_until
                );
                // Applied first, then recorded: a record says accepted only of what was
                // applied (a certificate file we cannot write fails the poll, and the update is
                // taken again at the next).
                let path = self.state(super::keys::SERVICE_PREVIOUS);
                let mut prev: Vec<super::keys::ServicePrevious> =
                    read_json(&path)?.unwrap_or_default();
                prev.retain(|p| p.until > now);
                prev.push(super::keys::ServicePrevious {
                    certificate_pem: String::from_utf8_lossy(&current[0].to_pem()).into_owned(),
                    until: v.old_valid_until,
                });
                write_atomic(&path, &to_json(&prev))?;
                write_atomic(
                    &self.cfg.service.service_certificate,
                    &v.new_certificate.to_pem(),
                )?;
                self.refresh_keys(true)?;
                self.add_update_record(&record)?;
            }
            // Applied before a crash kept us from recording it: the service's message is now
            // signed by a certificate we keep as previous, and ours is the one it names.
            Err(refused)
                if refused.reason == UpdateReason::NotCurrent
                    && record.new_certificate_sha256 == current[0].sha256_fingerprint() =>
            {
                record.decision = coordination::DECISION_ACCEPTED.into();
                record.message = format!(
                    "the service's certificate is {} already (applied before a restart)",
                    record.new_certificate_sha256
                );
                self.add_update_record(&record)?;
            }
            Err(refused) => {
                record.reason = Some(refused.reason.as_str().into());
                record.message = refused.message;
                self.add_update_record(&record)?;
            }
        }
        Ok(record)
    }

    /// An update from `sender` whose AS4 signature verifies against no certificate we hold for
    /// it: recorded as rejected (`unknown_signer`); the caller refuses it with a notice.
    pub(crate) fn record_unauthenticated_update(
        &self,
        pulled: &Pulled,
        sender: &str,
        message_id: &str,
        why: &str,
    ) -> Result<()> {
        if self
            .update_records(sender)?
            .iter()
            .any(|r| r.message_id == message_id)
        {
            return Ok(());
        }
        let payload =
            ls_core::as4::package::Package::parse(&pulled.content_type, &pulled.body, &self.limits)
                .ok()
                .and_then(|p| p.attachments.first().map(|a| a.data.to_vec()))
                .unwrap_or_default();
        let peeked = CertificateUpdate::peek(&payload).ok();
        self.add_update_record(&UpdateRecord {
            partner: sender.to_string(),
            message_id: message_id.to_string(),
            nonce: peeked.as_ref().map(|u| u.nonce.clone()).unwrap_or_default(),
            old_certificate_sha256: peeked
                .as_ref()
                .map(|u| u.old_certificate_sha256.clone())
                .unwrap_or_default(),
            new_certificate_sha256: peeked
                .as_ref()
                .map(|u| u.new_certificate_sha256.clone())
                .unwrap_or_default(),
            valid_from: peeked
                .as_ref()
                .map(|u| u.valid_from.clone())
                .unwrap_or_default(),
            old_valid_until: peeked
                .as_ref()
                .map(|u| u.old_valid_until.clone())
                .unwrap_or_default(),
            decision: coordination::DECISION_REJECTED.into(),
            reason: Some(UpdateReason::UnknownSigner.as_str().into()),
            message: format!(
                "the update is not signed with a certificate we hold for {sender} (signed by the \
                 new key alone, or by someone else): {why}"
            ),
            received_at: time::now_unix(),
            answer_message_id: None,
        })
    }

    /// Whether a message of `sender` that verifies against no certificate we accept from it is
    /// signed by a previous certificate of its record whose time is over — after a rollover's
    /// overlap, the old key. Returns until when that certificate was accepted. (A certificate
    /// replaced without a time, `partners add --replace`, is not one: what it signed waits, in
    /// case the operator takes it back.)
    pub(crate) fn signed_by_retired(&self, pulled: &Pulled, sender: &str) -> Option<i64> {
        let now = time::now_unix();
        let accepted = self.partner_certs(sender);
        if accepted.is_empty() {
            return None;
        }
        let retired: Vec<Certificate> = {
            let folder = self.partners.read().unwrap_or_else(|e| e.into_inner());
            folder
                .get(sender)?
                .previous
                .iter()
                .filter(|p| p.until <= now && !accepted.contains(&p.certificate))
                .map(|p| p.certificate.clone())
                .collect()
        };
        if retired.is_empty() {
            return None;
        }
        let (one, store) = crate::partner_policy(&retired);
        let read = pulled
            .read(&ReadOptions {
                recipient: None,
                policy: crate::verify_policy(one, store.as_ref()),
                limits: self.limits.clone(),
            })
            .ok()?;
        let signer = read.verified?.signer;
        let folder = self.partners.read().unwrap_or_else(|e| e.into_inner());
        let until = folder
            .get(sender)
            .and_then(|p| p.previous.iter().find(|x| x.certificate == signer))
            .map_or(now, |x| x.until);
        Some(until)
    }

    /// Push our journalled answer to update `key`, if one waits.
    fn flush_answer(&self, ex: &Exchange, key: &str) -> Result<()> {
        let path = answer_path(self, key);
        let Some(p) = notices::load_pending(&path)? else {
            return Ok(());
        };
        match ex.push(&p.built()) {
            Ok(_) => notices::remove_pending(&path),
            // By e-mail: handed over, the service's answer comes later (the next poll).
            Err(ls_core::Error::ReceiptPending(_)) => Ok(()),
            Err(e) if e.is_transient() || crate::is_unreachable(&e) => Err(e),
            // Refused for good (the update's record pruned at the service): dropped.
            Err(_) => notices::remove_pending(&path),
        }
    }

    /// Every answer that waits (a poll that could not reach the service).
    pub(crate) fn flush_answers(&self, ex: &Exchange) -> Result<()> {
        for (name, _, md) in crate::fsutil::list_dir(&self.state(IN))? {
            if let Some(key) = name.strip_suffix(".answer") {
                if md.is_file() {
                    self.flush_answer(ex, key)?;
                }
            }
        }
        Ok(())
    }
}
