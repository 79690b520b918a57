//! Refusal notices, both ways (see [`ls_core::as4::coordination`]).
//!
//! - As a recipient: a message refused for good is answered with one signed notice, built
//!   once and journalled in `state/incoming-failed/<key>.notice` (+ `.notice.bin`, the exact
//!   bytes) until the service has taken it, so a retry pushes the very same message.
//! - As a sender: a partner's notice, verified against the partner's certificate, is kept in
//!   `state/refused/<key>.json` with the notice as received (`<key>.notice`, the proof), and
//!   recorded on the sent document's `<name>.sent.json` when that is still in `sent/`.

use super::fsutil::{io_err, list_dir, read_json, read_opt, to_json, write_atomic, write_synced};
use super::outgoing::RefRecord;
use super::Client;
use ls_core::as4::coordination::{self, FailureClass, RefusalNotice};
use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange::Pulled;
use ls_core::as4::message::{self, Built, Outgoing};
use ls_core::as4::model::{Messaging, UserMessage};
use ls_core::as4::package::Package;
use ls_core::as4::wss::SignedRef;
use ls_core::error::{Error, Result};
use ls_core::time;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// `state/refused/`: partners' notices of what we sent.
pub(super) const REFUSED: &str = "refused";

/// A signed co-ordination message (a refusal notice, a receipt) built and waiting to be pushed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct PendingNotice {
    pub message_id: String,
    /// The message it refers to (absent in journals of earlier versions).
    #[serde(default)]
    pub ref_to_message_id: Option<String>,
    pub content_type: String,
    /// What our signature covers (the service's receipt must return it).
    pub references: Vec<RefRecord>,
    #[serde(skip)]
    pub body: Vec<u8>,
}

impl PendingNotice {
    pub fn of(built: Built) -> PendingNotice {
        PendingNotice {
            message_id: built.message_id,
            ref_to_message_id: built.ref_to_message_id,
            content_type: built.content_type,
            references: built.references.iter().map(RefRecord::from).collect(),
            body: built.body,
        }
    }

    pub fn built(&self) -> Built {
        Built {
            content_type: self.content_type.clone(),
            body: self.body.clone(),
            message_id: self.message_id.clone(),
            ref_to_message_id: self.ref_to_message_id.clone(),
            references: self.references.iter().map(SignedRef::from).collect(),
        }
    }
}

fn bin_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".bin");
    PathBuf::from(p)
}

/// Journal a notice: its bytes first (synced), then the record that makes it pending.
pub(super) fn save_pending(path: &Path, n: &PendingNotice) -> Result<()> {
    write_synced(&bin_path(path), &n.body)?;
    write_atomic(path, &to_json(n))
}

/// The pending notice at `path`, if any. Its bytes are removed with it: see [`remove_pending`].
pub(super) fn load_pending(path: &Path) -> Result<Option<PendingNotice>> {
    let Some(mut n) = read_json::<PendingNotice>(path)? else {
        return Ok(None);
    };
    n.body = read_opt(&bin_path(path))?.ok_or_else(|| {
        Error::StateCorrupt(format!(
            "{}: the notice's bytes are missing",
            path.display()
        ))
    })?;
    Ok(Some(n))
}

pub(super) fn remove_pending(path: &Path) -> Result<()> {
    for p in [path.to_path_buf(), bin_path(path)] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot remove", &p, e)),
        }
    }
    Ok(())
}

/// Hex SHA-256 of the payload as it arrived (the first attachment's bytes), or of the whole
/// body when it cannot be split into parts.
pub(super) fn payload_sha256(client: &Client, pulled: &Pulled) -> String {
    if let Some(o) = pulled.oversized {
        return ls_core::bytes::hex(&o.sha256);
    }
    if let Some(s) = &pulled.spooled {
        // Hashed as it arrived (a part in another transfer encoding: decoded).
        use ls_core::as4::spool::SpooledBody;
        return match s.package.attachments.first().map(|a| &a.body) {
            Some(SpooledBody::File { sha256, .. }) => ls_core::bytes::hex(sha256),
            Some(SpooledBody::Memory(d)) => ls_core::bytes::sha256_hex(d),
            None => ls_core::as4::message::PayloadFile {
                path: s.path.clone(),
                offset: 0,
                len: s.package.length,
                sha256: None,
            }
            .sha256()
            .map(|d| ls_core::bytes::hex(&d))
            .unwrap_or_default(),
        };
    }
    let pkg = Package::parse(&pulled.content_type, &pulled.body, &client.limits).ok();
    let data = pkg
        .as_ref()
        .and_then(|p| p.attachments.first())
        .map_or(&pulled.body[..], |a| &a.data[..]);
    ls_core::bytes::sha256_hex(data)
}

/// Our signed refusal notice of `message_id` for its sender.
pub(super) fn build_refusal(
    client: &Client,
    pulled: &Pulled,
    sender: &str,
    message_id: &str,
    class: FailureClass,
) -> Result<PendingNotice> {
    let notice = RefusalNotice {
        message_id: message_id.to_string(),
        payload_sha256: payload_sha256(client, pulled),
        class,
    };
    let mut um =
        coordination::refusal_notice(&client.cfg.party.id, sender, &notice, &client.domain)?;
    // Addressed to the sender exactly as it named itself (a typed PartyId too), so that the
    // service finds the refused message's sender in it.
    if let Some(refused) = pulled.messaging.user_messages.first() {
        if !refused.from.ids.is_empty() {
            um.to.ids = refused.from.ids.clone();
        }
    }
    let me = client.me();
    let built = message::build(Outgoing {
        messaging: Messaging {
            user_messages: vec![um],
            signals: Vec::new(),
        },
        payloads: Vec::new(),
        signer: &me,
        encrypt_for: None,
        soap: SoapVersion::Soap12,
    })?;
    Ok(PendingNotice::of(built))
}

/// A partner's signed refusal of a message we sent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartnerRefusal {
    pub partner: String,
    /// The MessageId of our message.
    pub message_id: String,
    pub class: FailureClass,
    /// What the class means.
    pub reason: String,
    /// The SHA-256 of the payload as the partner received it (of the whole message when it was
    /// too large to split)…
    pub payload_sha256: String,
    /// …and whether it is what we sent (`None` when we no longer know what we sent).
    pub payload_matches: Option<bool>,
    /// The notice's own MessageId and timestamp (as the partner wrote it).
    pub notice_message_id: String,
    pub notice_timestamp: String,
    /// When we received it (Unix seconds).
    pub received_at: i64,
    /// Our document's name in `sent/`, when its record was found there.
    pub document: Option<String>,
    /// The notice exactly as the partner signed it (the proof).
    pub notice_file: PathBuf,
}

impl PartnerRefusal {
    /// One line for people: who refused which of our messages, and why.
    pub fn summary(&self) -> String {
        format!(
            "{} refused our message {}{}: {} ({})",
            self.partner,
            self.message_id,
            self.document
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            self.reason,
            self.class
        )
    }
}

impl Client {
    /// Record a partner's verified refusal notice (idempotent: a notice offered again is
    /// recorded once).
    pub(super) fn record_partner_refusal(
        &self,
        partner: &str,
        notice: &RefusalNotice,
        um: &UserMessage,
        raw: &[u8],
    ) -> Result<Option<PartnerRefusal>> {
        let dir = self.state(REFUSED);
        fs::create_dir_all(&dir).map_err(|e| io_err("cannot create folder", &dir, e))?;
        let key = super::incoming::delivery_key(partner, &notice.message_id);
        let record = dir.join(format!("{key}.json"));
        if let Some(r) = read_json::<PartnerRefusal>(&record)? {
            return Ok(Some(r));
        }
        let (document, sent_sha) = self.find_sent(&notice.message_id)?;
        if document.is_none() && self.still_sending(&notice.message_id)? {
            // The notice came before our send of the document was finished (a crash in
            // between): it waits with the service until the record is in place.
            return Ok(None);
        }
        let notice_file = dir.join(format!("{key}.notice"));
        self.write_private(&notice_file, raw)?;
        let r = PartnerRefusal {
            partner: partner.to_string(),
            message_id: notice.message_id.clone(),
            class: notice.class,
            reason: notice.class.describe().to_string(),
            payload_sha256: notice.payload_sha256.clone(),
            payload_matches: (!sent_sha.is_empty()).then(|| {
                sent_sha
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&notice.payload_sha256))
            }),
            notice_message_id: um.info.message_id.clone(),
            notice_timestamp: um.info.timestamp.clone(),
            received_at: time::now_unix(),
            document: document.as_ref().map(|(name, _)| name.clone()),
            notice_file,
        };
        if let Some((_, path)) = &document {
            // On the sent document's own record too.
            if let Some(mut v) = read_json::<serde_json::Value>(path)? {
                if let Some(o) = v.as_object_mut() {
                    o.insert(
                        "refused".into(),
                        serde_json::to_value(&r).unwrap_or_default(),
                    );
                    write_atomic(path, &to_json(&v))?;
                }
            }
            // The `failed` disposition of the document's receipt state.
            super::receipts::set_partner_receipt(path, "failed", &r)?;
        }
        write_atomic(&record, &to_json(&r))?;
        Ok(Some(r))
    }

    /// The `<name>.sent.json` in `sent/` of our message `message_id`, and the digests it
    /// records (of the payload and of the whole message: a recipient that could not split the
    /// message names the latter).
    #[allow(clippy::type_complexity)]
    pub(super) fn find_sent(
        &self,
        message_id: &str,
    ) -> Result<(Option<(String, PathBuf)>, Vec<String>)> {
        let needle = serde_json::to_string(message_id).unwrap_or_default();
        for (name, path, md) in list_dir(&self.cfg.folders.sent)? {
            let Some(doc) = name.strip_suffix(".sent.json") else {
                continue;
            };
            // Not a temporary file a kill left behind while a record was rewritten.
            if !md.is_file() || name.starts_with('.') {
                continue;
            }
            let Some(bytes) = read_opt(&path)? else {
                continue;
            };
            if !ls_core::bytes::contains(&bytes, needle.as_bytes()) {
                continue;
            }
            let v: serde_json::Value = match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if v.get("message_id").and_then(|m| m.as_str()) == Some(message_id) {
                let shas = ["payload_sha256", "message_sha256"]
                    .iter()
                    .filter_map(|k| v.get(*k).and_then(|s| s.as_str()))
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                return Ok((Some((doc.to_string(), path)), shas));
            }
        }
        Ok((None, Vec::new()))
    }

    /// Partners' refusals of what we sent, newest first.
    pub(super) fn partner_refusals(&self) -> Result<Vec<PartnerRefusal>> {
        let mut v = Vec::new();
        for (name, path, md) in list_dir(&self.state(REFUSED))? {
            if md.is_file() && name.ends_with(".json") && !name.starts_with('.') {
                if let Some(r) = read_json::<PartnerRefusal>(&path)? {
                    v.push(r);
                }
            }
        }
        v.sort_by_key(|r| std::cmp::Reverse(r.received_at));
        Ok(v)
    }
}

/// Forget partners' refusals older than `keep_secs`, and the oldest beyond `max`.
pub(super) fn prune(client: &Client, keep_secs: u64, max: usize) -> Result<()> {
    let now = time::now_unix();
    let all = client.partner_refusals()?;
    for (i, r) in all.iter().enumerate() {
        if i >= max || now.saturating_sub(r.received_at) > keep_secs as i64 {
            let key = super::incoming::delivery_key(&r.partner, &r.message_id);
            let dir = client.state(REFUSED);
            let _ = fs::remove_file(dir.join(format!("{key}.json")));
            let _ = fs::remove_file(dir.join(format!("{key}.notice")));
        }
    }
    Ok(())
}
