//! What `layersec partners` does with the folder: add a certificate (trust on first use),
//! replace one on purpose, list the partners, and look a partner up in the service's directory.

use super::{
    certificate_path, check_party_id, record_path, set_current, PartnerFolder, Profile, Source,
};
use crate::{Client, PartnerInfo};
use ls_core::cert::Certificate;
use ls_core::directory::{self, Answer, Entry, Request};
use ls_core::error::{Error, Result};
use ls_core::time;
use ls_core::transport::Transport;
use serde::Serialize;
use std::path::Path;

/// How [`Client::partners_add_with`] treats a partner we already have a certificate of.
#[derive(Clone, Copy, Debug, Default)]
pub struct AddOptions {
    /// Replace a different current certificate (the operator's explicit action). Without it a
    /// different certificate is refused (`CertUntrusted`, naming both fingerprints).
    pub replace: bool,
    /// With `replace`: keep accepting what the partner signs with the replaced certificate for
    /// this many hours (its messages still on their way). Default: not at all.
    pub keep_previous_hours: Option<u64>,
}

/// What [`Client::partners_add_with`] did.
#[derive(Clone, Debug, Serialize)]
pub struct Added {
    #[serde(flatten)]
    pub certificate: PartnerInfo,
    /// `added` (a new partner), `known` (the same certificate: nothing changed) or `replaced`.
    pub outcome: &'static str,
    /// The fingerprints of the certificates replaced (now in the history folder).
    pub replaced: Vec<String>,
    /// Until when the replaced ones are still accepted (`--keep-previous-hours`), if at all.
    pub previous_until: Option<String>,
    /// The partner's certificate file.
    pub file: String,
}

/// An earlier certificate of a partner, as `partners list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PreviousInfo {
    pub sha256: String,
    pub subject: String,
    pub not_after: String,
    /// Accepted until then (`null`: a further certificate in the partner's certificate file,
    /// accepted as long as it is there).
    pub until: Option<String>,
    /// Whether what the partner signs with it is accepted now.
    pub accepted: bool,
    pub file: String,
}

/// One partner as `partners list` shows it: the certificate we seal for, the record, the
/// earlier certificates.
#[derive(Clone, Debug, Serialize)]
pub struct PartnerEntry {
    pub party_id: String,
    pub subject: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub sha256: String,
    pub valid_now: bool,
    pub profile: &'static str,
    pub receipts: bool,
    /// `directory`, `file`, `rollover`, or `null` (no record says).
    pub source: Option<&'static str>,
    pub added: Option<String>,
    pub file: String,
    /// The record file, when there is one.
    pub record: Option<String>,
    pub previous: Vec<PreviousInfo>,
}

/// What the directory said compared with what we have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchOutcome {
    /// We had no certificate of the partner: the directory's is added (trust on first use).
    Added,
    /// The directory's certificate is the one we have.
    Known,
    /// The directory's certificate is not the one we have: ours is kept.
    Changed,
    /// We had none and were asked not to add it.
    Declined,
}

/// A certificate the service still accepts from the partner, as the directory said.
#[derive(Clone, Debug, Serialize)]
pub struct DirectoryPrevious {
    pub sha256: String,
    pub until: String,
}

/// The result of `layersec partners fetch`.
#[derive(Clone, Debug, Serialize)]
pub struct Fetched {
    /// The directory's certificate.
    #[serde(flatten)]
    pub certificate: PartnerInfo,
    pub certificate_pem: String,
    pub registered_at: String,
    pub answered_at: String,
    /// Certificates the service still accepts from the partner (a replacement's overlap).
    pub directory_previous: Vec<DirectoryPrevious>,
    pub outcome: FetchOutcome,
    /// Whether it was added now.
    pub added: bool,
    /// Whether it differs from the certificate we have (which is kept).
    pub changed: bool,
    /// When changed: the fingerprint of the certificate we keep (the one we seal for).
    pub kept: Option<String>,
    /// The fingerprints of the certificates we have of the partner (before this fetch).
    pub known: Vec<String>,
    /// The partner's certificate file (`null` when declined).
    pub file: Option<String>,
}

fn fingerprints(certs: &[Certificate]) -> Vec<String> {
    certs.iter().map(Certificate::sha256_fingerprint).collect()
}

impl Client {
    /// The partner's current certificates (what we seal for), reading the folder again for a
    /// party not known yet.
    pub fn partner_current(&self, party_id: &str) -> Vec<Certificate> {
        self.partners_with(party_id, |f| f.current(party_id))
    }

    /// The partner's algorithm profile (its record; `modern` without one).
    pub fn partner_profile(&self, party_id: &str) -> Profile {
        self.partners_with(party_id, |f| {
            f.get(party_id).map(|p| p.profile()).unwrap_or_default()
        })
    }

    /// What we accept from the partner (its record's profile and `accept_3des` over
    /// `[policy]`).
    pub fn partner_inbound_policy(&self, party_id: &str) -> ls_core::cms::InboundPolicy {
        let global = self.cfg.policy.inbound_policy();
        self.partners_with(party_id, |f| {
            f.get(party_id).map_or(global, |p| p.inbound_policy(global))
        })
    }

    /// Whether documents for the partner ask for a signed receipt: `[receipts] request`, not
    /// named by `[receipts] not_from`, and not switched off by its record (`receipts = false`).
    pub fn partner_wants_receipts(&self, party_id: &str) -> bool {
        self.cfg.receipts.request
            && !self.cfg.receipts.not_from.iter().any(|p| p == party_id)
            && self.partners_with(party_id, |f| f.get(party_id).is_none_or(|p| p.receipts()))
    }

    /// Add a partner: check that `cert_path` holds a certificate that is valid now and make it
    /// the partner's certificate, `<partners>/<party_id>.crt` — unless we have a different one
    /// (refused: see [`Client::partners_add_with`]).
    pub fn partners_add(&self, party_id: &str, cert_path: &Path) -> Result<PartnerInfo> {
        Ok(self
            .partners_add_with(party_id, cert_path, &AddOptions::default())?
            .certificate)
    }

    /// Add or replace a partner's certificate from a file. A new partner is trusted on first
    /// use; the same certificate again changes nothing; a different one is refused with
    /// `CertUntrusted` naming both fingerprints, unless `opts.replace`: then the old one goes
    /// to the history folder (accepted `keep_previous_hours` longer when asked).
    pub fn partners_add_with(
        &self,
        party_id: &str,
        cert_path: &Path,
        opts: &AddOptions,
    ) -> Result<Added> {
        check_party_id(party_id)?;
        let cert = Certificate::load(cert_path)?;
        cert.check_validity(time::now_unix())?;
        let dir = &self.cfg.partners.dir;
        let folder = PartnerFolder::load(dir)?;
        let known = folder.current(party_id);
        let file = certificate_path(dir, party_id).display().to_string();
        let info = PartnerInfo::of(party_id, &cert);
        if known.is_empty() {
            set_current(dir, party_id, &cert, Source::File, None, &[])?;
            self.reload_partners()?;
            return Ok(Added {
                certificate: info,
                outcome: "added",
                replaced: Vec::new(),
                previous_until: None,
                file,
            });
        }
        if known == [cert.clone()] {
            return Ok(Added {
                certificate: info,
                outcome: "known",
                replaced: Vec::new(),
                previous_until: None,
                file,
            });
        }
        if !opts.replace {
            return Err(Error::CertUntrusted(format!(
                "partner {party_id} has another certificate (SHA256 {}); {} (SHA256 {}) does \
                 not replace it unless asked: compare the new fingerprint with {party_id} out \
                 of band, then `layersec partners add {party_id} CERT --replace`",
                fingerprints(&known).join(", "),
                cert_path.display(),
                cert.sha256_fingerprint()
            )));
        }
        let keep_until = opts
            .keep_previous_hours
            .filter(|h| *h > 0)
            .map(|h| time::now_unix().saturating_add((h.min(24 * 365 * 10) * 3600) as i64));
        let r = set_current(dir, party_id, &cert, Source::File, keep_until, &[])?;
        self.reload_partners()?;
        Ok(Added {
            certificate: info,
            outcome: "replaced",
            replaced: fingerprints(&r.old),
            previous_until: r.accepted_until.map(time::iso8601),
            file,
        })
    }

    /// The partners with a certificate, as the folder holds them now.
    pub fn partners_list(&self) -> Result<Vec<PartnerEntry>> {
        self.reload_partners()?;
        let folder = self.partners.read().unwrap_or_else(|e| e.into_inner());
        let now = time::now_unix();
        let mut out = Vec::new();
        for p in folder.iter() {
            let Some(best) = crate::best_cert(&p.current) else {
                continue;
            };
            let info = PartnerInfo::of(&p.id, best);
            let file_of = |c: &Certificate| {
                p.files
                    .iter()
                    .find(|f| {
                        Certificate::all_from_bytes(&std::fs::read(f).unwrap_or_default())
                            .is_ok_and(|v| v.contains(c))
                    })
                    .or(p.files.first())
                    .map(|f| f.display().to_string())
                    .unwrap_or_default()
            };
            let mut previous: Vec<PreviousInfo> = p
                .current
                .iter()
                .filter(|c| *c != best)
                .map(|c| PreviousInfo {
                    sha256: c.sha256_fingerprint(),
                    subject: c.subject().to_string(),
                    not_after: time::iso8601(c.not_after()),
                    until: None,
                    accepted: true,
                    file: file_of(c),
                })
                .collect();
            previous.extend(p.previous.iter().map(|x| PreviousInfo {
                sha256: x.certificate.sha256_fingerprint(),
                subject: x.certificate.subject().to_string(),
                not_after: time::iso8601(x.certificate.not_after()),
                until: Some(time::iso8601(x.until)),
                accepted: now < x.until,
                file: x.file.display().to_string(),
            }));
            let record = p.record.as_ref();
            out.push(PartnerEntry {
                party_id: info.party_id.clone(),
                subject: info.subject.clone(),
                serial: info.serial.clone(),
                not_before: info.not_before.clone(),
                not_after: info.not_after.clone(),
                sha256: info.sha256.clone(),
                valid_now: info.valid_now,
                profile: p.profile().as_str(),
                receipts: p.receipts(),
                source: record.and_then(|r| r.source).map(Source::as_str),
                added: record.and_then(|r| r.added.clone()),
                file: file_of(best),
                record: record.map(|_| record_path(&folder.dir, &p.id).display().to_string()),
                previous,
            });
        }
        Ok(out)
    }

    /// Ask the service's directory for `party_id`'s registered certificate (a request signed
    /// by us, over HTTPS to the directory beside the service's AS4 URL) and check the answer
    /// against the service certificate we hold. Nothing is added: see
    /// [`Client::partners_adopt`]. `CertNotFound` when the directory has no such party,
    /// `Refused` when the service does not take our request (our party is not registered and
    /// active there, or our certificate is not the one it has), a transient `HttpStatus` when
    /// we asked too often (429); an answer that does not verify or does not answer our request
    /// is `SignerMismatch`, `BadSignature`, `DigestMismatch` or `Malformed`.
    pub fn directory_lookup(&self, party_id: &str) -> Result<Entry> {
        check_party_id(party_id)?;
        let t = Self::https_to(
            &self.cfg,
            |url| directory::directory_url(url, party_id),
            directory::MAX_ANSWER_BYTES,
        )?;
        self.directory_lookup_via(&t, party_id)
    }

    /// [`Client::directory_lookup`] through `transport` (which reaches the directory URL).
    pub fn directory_lookup_via(&self, transport: &dyn Transport, party_id: &str) -> Result<Entry> {
        check_party_id(party_id)?;
        let request = Request::new(&self.cfg.party.id, party_id)?;
        let body = request.sign(&self.me())?;
        let r = transport.post(directory::CONTENT_TYPE, &body)?.whole()?;
        let said = || {
            let t = String::from_utf8_lossy(&r.body[..r.body.len().min(500)]).into_owned();
            t.trim()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
        };
        match r.status {
            200 => {
                // Signed by the service's current certificate, or (its own key's rollover) by
                // the one before.
                let certs = self.service_certs();
                let mut last = None;
                for c in &certs {
                    match Answer::verify(&r.body, c, &request) {
                        Ok(a) => return Ok(a),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.expect("a service certificate"))
            }
            404 => Err(Error::CertNotFound(format!(
                "the service's directory has no party {party_id} (it says: {})",
                said()
            ))),
            403 => Err(Error::Refused(format!(
                "the service refused our directory request ({}): is our party {} registered \
                 and active there, with the certificate we sign with?",
                said(),
                self.cfg.party.id
            ))),
            status @ (408 | 429 | 500..=599) => Err(Error::HttpStatus {
                status,
                message: format!("the directory answered HTTP {status}: {}", said()),
            }),
            status => Err(Error::Refused(format!(
                "the directory answered HTTP {status}: {}",
                said()
            ))),
        }
    }

    /// Take a directory answer for `party_id` (trust on first use): when we have no
    /// certificate of the partner, and `confirm` agrees, the directory's becomes its current
    /// certificate (source `directory`, with the certificates the service still accepts from
    /// it as previous until their times). When we have one, nothing changes, whatever the
    /// directory says: equal is `Known`; different is `Changed` (ours is kept — only
    /// `partners add --replace` or a rollover changes it). The directory's certificate must be
    /// valid now to be added (`CertExpired`, `CertNotYetValid`).
    pub fn partners_adopt(
        &self,
        party_id: &str,
        entry: &Entry,
        confirm: impl FnOnce(&Entry) -> bool,
    ) -> Result<Fetched> {
        check_party_id(party_id)?;
        if entry.party_id != party_id {
            return Err(Error::InvalidArgument(format!(
                "the directory entry is for {}, not {party_id}",
                entry.party_id
            )));
        }
        let dir = &self.cfg.partners.dir;
        let known = PartnerFolder::load(dir)?.current(party_id);
        let cert = &entry.certificate;
        let mut out = Fetched {
            certificate: PartnerInfo::of(party_id, cert),
            certificate_pem: String::from_utf8_lossy(&cert.to_pem()).into_owned(),
            registered_at: time::iso8601(entry.registered_at),
            answered_at: time::iso8601(entry.answered_at),
            directory_previous: entry
                .previous
                .iter()
                .map(|(c, until)| DirectoryPrevious {
                    sha256: c.sha256_fingerprint(),
                    until: time::iso8601(*until),
                })
                .collect(),
            outcome: FetchOutcome::Known,
            added: false,
            changed: false,
            kept: None,
            known: fingerprints(&known),
            file: Some(certificate_path(dir, party_id).display().to_string()),
        };
        if known.is_empty() {
            cert.check_validity(time::now_unix())?;
            if !confirm(entry) {
                out.outcome = FetchOutcome::Declined;
                out.file = None;
                return Ok(out);
            }
            // Trust on first use covers the one certificate whose fingerprint was shown: never
            // also the older ones the directory lists (an operator compares one fingerprint).
            set_current(dir, party_id, cert, Source::Directory, None, &[])?;
            self.reload_partners()?;
            out.outcome = FetchOutcome::Added;
            out.added = true;
        } else if !known.contains(cert) || known.len() > 1 && crate::best_cert(&known) != Some(cert)
        {
            out.outcome = FetchOutcome::Changed;
            out.changed = true;
            out.kept = crate::best_cert(&known).map(Certificate::sha256_fingerprint);
        }
        Ok(out)
    }
}
