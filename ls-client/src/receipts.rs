//! Signed end-to-end receipts (RFC 2634 ESS), both ways.
//!
//! - As a recipient: a document whose sender asked for a receipt (a ReceiptRequest on its
//!   signature) is answered, once it is durably in `inbox/`, with a co-ordination message
//!   (Action `Receipt`) carrying an ESS signed receipt of the sender's SignedData, and in its
//!   signed header the MessageId, the payload's SHA-256, the disposition `processed` and the
//!   time stored. It is built and journalled in `state/receipts-out/<key>.pending` (+ `.bin`)
//!   together with the document's temporary files, and pushed only once the document is in
//!   the inbox and the service has our AS4 receipt; it is pushed again, the very same bytes,
//!   until the service has it, so the sender gets it exactly once.
//! - As a sender: a partner's receipt is checked against our SignedData as signed
//!   (`sent/<name>.signed.p7m`) and the partner's certificate — the signature, msgSigDigest,
//!   the quoted signature and content identifier, the payload digest in the header — and kept
//!   beside the document (`sent/<name>.receipt.p7m`, as received), with what it says in
//!   `<name>.sent.json` (`partner_receipt`). A receipt that fails a check, or a second,
//!   different receipt for the same document (a replay), is refused: kept in
//!   `state/receipts-in/` with why, and the record is not changed.

use super::fsutil::{self, io_err, list_dir, read_json, read_opt, to_json, write_atomic};
use super::notices::{self, PendingNotice};
use super::outgoing::{RECEIPT_SUFFIX, SIGNED_SUFFIX};
use super::Client;
use ls_core::as4::coordination::{self, ReceiptHeader, DISPOSITION_PROCESSED};
use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange::{Exchange, Pulled};
use ls_core::as4::message::{self, Incoming, Outgoing, Payload};
use ls_core::as4::model::{Messaging, UserMessage};
use ls_core::cms::receipt::{self, ReceiptOptions};
use ls_core::error::{Error, ErrorReport, Result};
use ls_core::time;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// `state/receipts-out/`: our receipts waiting to be pushed.
pub(super) const RECEIPTS_OUT: &str = "receipts-out";
/// `state/receipts-in/`: partners' receipts we could not take (refused, or for a document no
/// longer in `sent/`).
pub(super) const RECEIPTS_IN: &str = "receipts-in";
const PENDING_SUFFIX: &str = ".pending";

/// A partner's receipt of a document we sent, as checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartnerReceipt {
    pub partner: String,
    /// Our document's MessageId.
    pub message_id: String,
    /// Our document's name in `sent/`, when its record was found there.
    pub document: Option<String>,
    /// `processed`.
    pub disposition: String,
    /// Whether every check passed (the record then says `processed`); `error` says why not.
    pub verified: bool,
    pub error: Option<ErrorReport>,
    /// When the partner stored the document, as its signed header says.
    pub received_at: String,
    /// The signing time of the receipt (Unix seconds).
    pub signing_time: Option<i64>,
    pub signer_subject: Option<String>,
    pub signer_sha256: Option<String>,
    /// Whether the payload digest the partner signed is the one we sent.
    pub payload_matches: Option<bool>,
    /// The receipt's own MessageId.
    pub receipt_message_id: String,
    /// The ESS receipt as received, beside the document (`sent/<name>.receipt.p7m`), or in
    /// `state/receipts-in/` when it was not taken.
    pub receipt_file: Option<PathBuf>,
    /// When we checked it (Unix seconds).
    pub checked_at: i64,
}

/// A sent document and its partner's receipt, for `layersec receipts`.
#[derive(Clone, Debug, Serialize)]
pub struct ReceiptState {
    /// The document's name in `sent/`.
    pub document: String,
    pub to: String,
    pub message_id: String,
    /// When the service's receipt was checked (the document sent), Unix seconds.
    pub sent_at: Option<i64>,
    /// `waiting`, `processed`, `failed` (the partner refused it: see `class`) or
    /// `not_requested`.
    pub state: String,
    /// The refusal's class when `failed`.
    pub class: Option<String>,
    /// What the partner's receipt says, when `processed`.
    pub receipt: Option<PartnerReceipt>,
}

impl PartnerReceipt {
    /// One line for people.
    pub fn summary(&self) -> String {
        let doc = self
            .document
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        match &self.error {
            None => format!(
                "{} signed that it received our message {}{}: {}, stored {}",
                self.partner, self.message_id, doc, self.disposition, self.received_at
            ),
            Some(e) => format!(
                "a receipt from {} for our message {}{} was refused: [{}] {}",
                self.partner, self.message_id, doc, e.code, e.message
            ),
        }
    }
}

fn pending_path(client: &Client, key: &str) -> PathBuf {
    client
        .state(RECEIPTS_OUT)
        .join(format!("{key}{PENDING_SUFFIX}"))
}

impl Client {
    /// Our signed receipt of a document just opened, when its sender asked for one: built and
    /// journalled (`state/receipts-out/<key>.pending`), pushed later by [`Client::flush_receipt`]
    /// once the document is in the inbox. `Ok(false)` when no receipt was asked for.
    pub(super) fn journal_receipt(
        &self,
        pulled: &Pulled,
        incoming: &Incoming,
        sender: &str,
        key: &str,
        opened: &ls_core::Opened,
        stored_at: i64,
    ) -> Result<bool> {
        let (Some(_), Some(signed)) = (&opened.receipt_request, &opened.signed_data) else {
            return Ok(false);
        };
        let um = &incoming.messaging.user_messages[0];
        let me = self.me();
        let ess = receipt::sign_receipt(signed, &me, &ReceiptOptions::default())?;
        let header = ReceiptHeader {
            message_id: um.info.message_id.clone(),
            payload_sha256: notices::payload_sha256(self, pulled),
            disposition: DISPOSITION_PROCESSED.into(),
            received_at: time::iso8601(stored_at),
        };
        let mut rum =
            coordination::receipt_message(&self.cfg.party.id, sender, &header, &self.domain)?;
        // Addressed to the sender as it named itself (a typed PartyId too).
        if !um.from.ids.is_empty() {
            rum.to.ids = um.from.ids.clone();
        }
        let built = message::build(Outgoing {
            messaging: Messaging {
                user_messages: vec![rum],
                signals: Vec::new(),
            },
            payloads: vec![Payload {
                content_id: format!("receipt@{}", self.domain),
                mime_type: coordination::RECEIPT_CONTENT_TYPE.into(),
                data: ess,
                compress: false,
                properties: Vec::new(),
            }],
            signer: &me,
            encrypt_for: None,
            soap: SoapVersion::Soap12,
        })?;
        let dir = self.state(RECEIPTS_OUT);
        fs::create_dir_all(&dir).map_err(|e| io_err("cannot create folder", &dir, e))?;
        notices::save_pending(&pending_path(self, key), &PendingNotice::of(built))?;
        Ok(true)
    }

    /// Push our journalled receipt of message `key`, once the document is in the inbox. A
    /// service that cannot be reached is an `Err` (the receipt waits for the next poll); a
    /// service that refuses it drops it (its reason is returned).
    pub(super) fn flush_receipt(&self, ex: &Exchange, key: &str) -> Result<Option<Error>> {
        let path = pending_path(self, key);
        if !path.exists() || !self.delivered(key)? {
            return Ok(None);
        }
        let Some(p) = notices::load_pending(&path)? else {
            return Ok(None);
        };
        let refused = match ex.push(&p.built()) {
            Ok(_) => None,
            // By e-mail: handed over, the service's answer comes later (the next poll).
            Err(Error::ReceiptPending(_)) => return Ok(None),
            Err(e) if e.is_transient() || super::is_unreachable(&e) => return Err(e),
            Err(e) => Some(e),
        };
        notices::remove_pending(&path)?;
        Ok(refused)
    }

    /// Every journalled receipt whose document is in the inbox.
    pub(super) fn flush_receipts(&self, ex: &Exchange) -> Result<Vec<Error>> {
        let mut refused = Vec::new();
        for (name, _, md) in list_dir(&self.state(RECEIPTS_OUT))? {
            if let Some(key) = name.strip_suffix(PENDING_SUFFIX) {
                if md.is_file() {
                    refused.extend(self.flush_receipt(ex, key)?);
                }
            }
        }
        Ok(refused)
    }

    /// A partner's receipt (a verified co-ordination message): checked against what we sent
    /// and recorded. Never `Err` for a bad receipt (it is recorded as refused); `Err` only when
    /// our disk fails. `None` while our send of the document is still being finished.
    pub(super) fn record_partner_receipt(
        &self,
        partner: &str,
        header: &ReceiptHeader,
        um: &UserMessage,
        ess: &[u8],
    ) -> Result<Option<PartnerReceipt>> {
        let now = time::now_unix();
        let mut r = PartnerReceipt {
            partner: partner.to_string(),
            message_id: header.message_id.clone(),
            document: None,
            disposition: header.disposition.clone(),
            verified: false,
            error: None,
            received_at: header.received_at.clone(),
            signing_time: None,
            signer_subject: None,
            signer_sha256: None,
            payload_matches: None,
            receipt_message_id: um.info.message_id.clone(),
            receipt_file: None,
            checked_at: now,
        };
        let (found, shas) = self.find_sent(&header.message_id)?;
        let evidence = found
            .as_ref()
            .map(|(doc, _)| self.cfg.folders.sent.join(format!("{doc}{SIGNED_SUFFIX}")));
        if !evidence.is_some_and(|p| p.exists()) && self.still_sending(&header.message_id)? {
            // The receipt came before our send of the document was finished (a crash in
            // between): it waits with the service until the record and evidence are in place.
            return Ok(None);
        }
        let checked = match &found {
            None => Err(Error::ReceiptMismatch(format!(
                "no document sent as {} is in {} (moved away?): the receipt cannot be checked",
                header.message_id,
                self.cfg.folders.sent.display()
            ))),
            Some((doc, record)) => {
                r.document = Some(doc.clone());
                self.check_receipt(partner, header, ess, doc, record, &shas, &mut r)
            }
        };
        match checked {
            Ok(()) => {
                r.verified = true;
                let (doc, record) = found.as_ref().expect("checked above");
                let dir = &self.cfg.folders.sent;
                let file = dir.join(format!("{doc}{RECEIPT_SUFFIX}"));
                self.write_private(&file, ess)?;
                self.fail_at("receipt:after-evidence")?;
                r.receipt_file = Some(file);
                set_partner_receipt(record, "processed", &r)?;
            }
            Err(e) => {
                // Refused: kept with why, the record unchanged.
                r.error = Some(ErrorReport::from(&e));
                let dir = self.state(RECEIPTS_IN);
                fs::create_dir_all(&dir).map_err(|e| io_err("cannot create folder", &dir, e))?;
                let base = ls_core::bytes::sha256_hex(um.info.message_id.as_bytes());
                let file = dir.join(format!("{base}.p7m"));
                self.write_private(&file, ess)?;
                r.receipt_file = Some(file);
                write_atomic(&dir.join(format!("{base}.json")), &to_json(&r))?;
            }
        }
        Ok(Some(r))
    }

    #[allow(clippy::too_many_arguments)]
    fn check_receipt(
        &self,
        partner: &str,
        header: &ReceiptHeader,
        ess: &[u8],
        doc: &str,
        record: &Path,
        shas: &[String],
        r: &mut PartnerReceipt,
    ) -> Result<()> {
        let v: serde_json::Value = read_json(record)?.unwrap_or_default();
        if v.get("to").and_then(|t| t.as_str()) != Some(partner) {
            return Err(Error::SignerMismatch(format!(
                "{doc} was sent to {}, not to {partner}",
                v.get("to").and_then(|t| t.as_str()).unwrap_or("?")
            )));
        }
        let signed_path = self.cfg.folders.sent.join(format!("{doc}{SIGNED_SUFFIX}"));
        let signed = read_opt(&signed_path)?.ok_or_else(|| {
            Error::ReceiptMismatch(format!(
                "{} is missing: no receipt was asked for {doc}, or the evidence was moved away",
                signed_path.display()
            ))
        })?;
        let certs = self.partner_certs(partner);
        let verified = receipt::verify_receipt(ess, &signed, &certs)?;
        r.signing_time = verified.signing_time;
        r.signer_subject = Some(verified.signer.subject().to_string());
        r.signer_sha256 = Some(verified.signer.sha256_fingerprint());
        let matches = shas
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&header.payload_sha256));
        r.payload_matches = Some(matches);
        if !matches {
            return Err(Error::ReceiptMismatch(format!(
                "the payload digest the receipt names ({}) is not that of what we sent",
                header.payload_sha256
            )));
        }
        // One receipt per document: the same one again is harmless, another is a replay.
        // What is there already counts only if it verifies: an empty or cut-off file (what an
        // earlier version, writing it in place, left when it was killed in between) is none.
        let seen = self.cfg.folders.sent.join(format!("{doc}{RECEIPT_SUFFIX}"));
        if let Some(prev) = read_opt(&seen)? {
            if prev != ess && receipt::verify_receipt(&prev, &signed, &certs).is_ok() {
                return Err(Error::ReceiptMismatch(format!(
                    "{doc} has a receipt already; this is another one (a replay?)"
                )));
            }
        }
        Ok(())
    }

    /// Whether message `key`'s document is durably in the inbox.
    fn delivered(&self, key: &str) -> Result<bool> {
        Ok(
            fsutil::read_opt(&self.state(super::incoming::DELIVERED).join(key))?.is_some()
                && !self.inbox_pending(key),
        )
    }

    /// The receipt state of the document we sent as `message_id`, while it is in `sent/`.
    pub fn receipt_state(&self, message_id: &str) -> Result<Option<ReceiptState>> {
        Ok(self
            .receipts(false)?
            .into_iter()
            .find(|r| r.message_id == message_id))
    }

    /// Sent documents and their receipt state, newest first; `waiting_only` keeps those still
    /// waiting.
    pub fn receipts(&self, waiting_only: bool) -> Result<Vec<ReceiptState>> {
        let mut v = Vec::new();
        for (name, path, md) in list_dir(&self.cfg.folders.sent)? {
            let Some(doc) = name.strip_suffix(".sent.json") else {
                continue;
            };
            if !md.is_file() || name.starts_with('.') {
                continue;
            }
            let Some(rec) = read_json::<serde_json::Value>(&path)? else {
                continue;
            };
            let s = |k: &str| {
                rec.get(k)
                    .and_then(|x| x.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            let pr = rec.get("partner_receipt");
            let state = pr
                .and_then(|p| p.get("state"))
                .and_then(|x| x.as_str())
                .unwrap_or("not_requested")
                .to_string();
            let receipt = pr
                .and_then(|p| p.get("receipt"))
                .and_then(|x| serde_json::from_value::<PartnerReceipt>(x.clone()).ok());
            let class = pr
                .and_then(|p| p.get("refusal"))
                .and_then(|r| r.get("class"))
                .and_then(|x| x.as_str())
                .map(str::to_string);
            if waiting_only && state != "waiting" {
                continue;
            }
            v.push(ReceiptState {
                document: doc.to_string(),
                to: s("to"),
                message_id: s("message_id"),
                sent_at: rec
                    .get("receipt_checked_at")
                    .and_then(|x| x.as_str())
                    .and_then(time::parse_date_time),
                state,
                class,
                receipt,
            });
        }
        v.sort_by_key(|r| std::cmp::Reverse(r.sent_at));
        Ok(v)
    }
}

/// Record `partner_receipt` in a `.sent.json`: its state and, for a receipt, what it says.
pub(super) fn set_partner_receipt(record: &Path, state: &str, r: &impl Serialize) -> Result<()> {
    let Some(mut v) = read_json::<serde_json::Value>(record)? else {
        return Ok(());
    };
    let Some(o) = v.as_object_mut() else {
        return Ok(());
    };
    let entry = o
        .entry("partner_receipt")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(e) = entry.as_object_mut() {
        e.insert("state".into(), state.into());
        let key = if state == "failed" {
            "refusal"
        } else {
            "receipt"
        };
        e.insert(key.into(), serde_json::to_value(r).unwrap_or_default());
    }
    write_atomic(record, &to_json(&v))
}
