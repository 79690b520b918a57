//! Partners: the partners folder (`[partners] dir`), one partner per party id.
//!
//! - `<party>.crt` (or `.pem`, `.cer`, `.der`): the partner's **current** certificate — what we
//!   seal for and what its messages must be signed with. The file name is the party id. (A
//!   file holding several certificates, left by an earlier version's rollover, counts them all
//!   as current; the one valid now that expires last is sealed for.)
//! - `<party>.toml`, optional: the partner's **record** — its algorithm profile, whether it is
//!   asked for signed receipts, when and from where its certificate came, and earlier
//!   certificates still accepted until a time (a rollover's overlap):
//!
//!   ```toml
//!   # written by layersec; edit with care
//!   profile = "modern"            # or "legacy-as2"
//!   receipts = true               # false: never ask this partner for signed receipts
//!   added = "2026-12-07T07:00:00Z"
//!   source = "directory"          # "directory", "file" or "rollover"
//!   [[previous]]
//!   file = "globex.history/<sha256>.crt"
//!   until = "2027-01-01T00:00:00Z"
//!   ```
//! - `<party>.history/<sha256>.crt`: certificates the partner had, kept when replaced (whether
//!   still accepted is the record's `previous` to say).
//!
//! Certificates are never changed silently: trust on first use, then only an explicit
//! replacement ([`set_current`], `layersec partners add --replace`) or a rollover changes the
//! current one. Writes are atomic (a temporary file synced and renamed, the folder synced); a
//! malformed record is a configuration error naming the file and the key.

mod fetch;
#[cfg(test)]
mod tests;

pub use fetch::{
    AddOptions, Added, DirectoryPrevious, FetchOutcome, Fetched, PartnerEntry, PreviousInfo,
};

use crate::config::parse_toml;
use crate::fsutil::{self, io_err, list_dir};
use ls_core::cert::Certificate;
use ls_core::cms::InboundPolicy;
use ls_core::error::{Error, Result};
use ls_core::time;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The extensions of certificate files, as `CertStore::load_dir` reads them.
const CERT_EXTENSIONS: [&str; 4] = ["crt", "pem", "cer", "der"];
/// The extension of a partner's record.
const RECORD_EXTENSION: &str = "toml";
/// The first line of a record we write.
const RECORD_HEADER: &str = "# written by layersec; edit with care\n";

/// A partner's algorithm profile (what each one does is the sealing's to say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Profile {
    /// Today's algorithms.
    #[default]
    #[serde(rename = "modern")]
    Modern,
    /// For partners whose software speaks the older AS2 algorithms.
    #[serde(rename = "legacy-as2")]
    LegacyAs2,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Modern => "modern",
            Profile::LegacyAs2 => "legacy-as2",
        }
    }

    /// The document layer's profile of this name (what sealing and opening do with it).
    pub fn core(self) -> ls_core::cms::Profile {
        match self {
            Profile::Modern => ls_core::cms::Profile::Modern,
            Profile::LegacyAs2 => ls_core::cms::Profile::LegacyAs2,
        }
    }
}

/// A record's `key_transport`: how the content key is wrapped for an RSA certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyTransportChoice {
    #[serde(rename = "rsa-oaep-sha256")]
    RsaOaepSha256,
    #[serde(rename = "rsa-oaep-sha1")]
    RsaOaepSha1,
    #[serde(rename = "rsa-pkcs1v15")]
    RsaPkcs1v15,
}

/// A record's `signature_format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignatureFormatChoice {
    /// The content inside the SignedData.
    #[serde(rename = "opaque")]
    Opaque,
    /// multipart/signed with a detached signature.
    #[serde(rename = "multipart-signed")]
    MultipartSigned,
}

/// Where a partner's current certificate came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The service's directory (`layersec partners fetch`), trusted on first use.
    Directory,
    /// A file the operator gave (`layersec partners add`).
    File,
    /// A rollover signed by the partner's previous key.
    Rollover,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Directory => "directory",
            Source::File => "file",
            Source::Rollover => "rollover",
        }
    }
}

/// An earlier certificate still accepted from the partner until a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousEntry {
    /// The certificate file, relative to the partners folder.
    pub file: String,
    /// ISO 8601 (UTC): accepted until then.
    pub until: String,
}

fn yes() -> bool {
    true
}

/// A partner's record (`<party>.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The partner's algorithm profile. Absent: `modern` for what we send, `[policy]` for what
    /// we accept; given (`modern` too), it decides both for this partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// Ask this partner for signed receipts (with `[receipts] request`, and unless `[receipts]
    /// not_from` names it).
    #[serde(default = "yes")]
    pub receipts: bool,
    /// Individual settings over the profile, for what we seal for this partner…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<crate::config::CipherChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_transport: Option<KeyTransportChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_format: Option<SignatureFormatChoice>,
    /// …and for what we accept from it, whatever its profile and `[policy]` say (a
    /// `legacy-as2` partner set to AES: `accept_3des = false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_3des: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_cbc: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_rsa_pkcs1v15: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_multipart_signed: Option<bool>,
    /// When the current certificate was added (ISO 8601, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<PreviousEntry>,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            profile: None,
            receipts: true,
            cipher: None,
            key_transport: None,
            signature_format: None,
            accept_3des: None,
            accept_cbc: None,
            accept_rsa_pkcs1v15: None,
            accept_multipart_signed: None,
            added: None,
            source: None,
            previous: Vec::new(),
        }
    }
}

/// A previous certificate as loaded.
#[derive(Clone, Debug)]
pub struct Previous {
    pub certificate: Certificate,
    /// Unix seconds.
    pub until: i64,
    pub file: PathBuf,
}

/// One partner as the folder holds it.
#[derive(Clone, Debug, Default)]
pub struct Partner {
    pub id: String,
    /// The certificates of `<party>.crt` (and `.pem`, `.cer`, `.der`).
    pub current: Vec<Certificate>,
    /// Those files.
    pub files: Vec<PathBuf>,
    /// `<party>.toml`, when there is one.
    pub record: Option<Record>,
    /// The record's previous certificates (expired ones included).
    pub previous: Vec<Previous>,
}

impl Partner {
    /// The certificates its messages may be signed with at `now`: the current ones and the
    /// previous ones whose time has not passed.
    /// None without a current certificate: a record alone does not make a partner.
    pub fn accepted(&self, now: i64) -> Vec<Certificate> {
        if self.current.is_empty() {
            return Vec::new();
        }
        let mut v = self.current.clone();
        for p in &self.previous {
            if now < p.until && !v.contains(&p.certificate) {
                v.push(p.certificate.clone());
            }
        }
        v
    }

    /// Whether to ask it for signed receipts (its record; yes without one).
    pub fn receipts(&self) -> bool {
        self.record.as_ref().is_none_or(|r| r.receipts)
    }

    pub fn profile(&self) -> Profile {
        self.record
            .as_ref()
            .and_then(|r| r.profile)
            .unwrap_or_default()
    }

    /// What we accept from this partner: the profile its record names overrides `global`
    /// (`[policy]`) — `modern` accepts nothing legacy, `legacy-as2` what AS2 software sends —,
    /// a record without one follows `global`; the record's `accept_3des` decides 3DES.
    pub fn inbound_policy(&self, global: InboundPolicy) -> InboundPolicy {
        let mut p = match self.record.as_ref().and_then(|r| r.profile) {
            Some(profile) => profile.core().inbound_policy(),
            None => global,
        };
        if let Some(r) = &self.record {
            for (setting, field) in [
                (r.accept_3des, &mut p.accept_3des),
                (r.accept_cbc, &mut p.accept_cbc),
                (r.accept_rsa_pkcs1v15, &mut p.accept_rsa_pkcs1v15),
                (r.accept_multipart_signed, &mut p.accept_multipart_signed),
            ] {
                if let Some(v) = setting {
                    *field = v;
                }
            }
        }
        p
    }

    /// What we seal this partner's documents with: a profile its record names (other than
    /// `modern`, whose choices `opts` already has from `[policy]`) over `opts`, then the
    /// record's individual settings.
    pub fn apply_seal(&self, opts: &mut ls_core::cms::SealOptions) {
        use ls_core::cms::{ContentCipher, KeyTransport, SignatureFormat};
        let Some(r) = &self.record else { return };
        if let Some(p) = r.profile.filter(|p| *p != Profile::Modern) {
            p.core().apply(opts);
        }
        if let Some(c) = r.cipher {
            opts.cipher = match c {
                crate::config::CipherChoice::Aes256Gcm => ContentCipher::Aes256Gcm,
                crate::config::CipherChoice::Aes256Cbc => ContentCipher::Aes256Cbc,
            };
        }
        if let Some(k) = r.key_transport {
            opts.key_transport = match k {
                KeyTransportChoice::RsaOaepSha256 => KeyTransport::RsaOaepSha256,
                KeyTransportChoice::RsaOaepSha1 => KeyTransport::RsaOaepSha1,
                KeyTransportChoice::RsaPkcs1v15 => KeyTransport::RsaPkcs1v15,
            };
        }
        if let Some(f) = r.signature_format {
            opts.signature_format = match f {
                SignatureFormatChoice::Opaque => SignatureFormat::Opaque,
                SignatureFormatChoice::MultipartSigned => SignatureFormat::MultipartSigned,
            };
        }
    }
}

/// The partners folder, read.
#[derive(Clone, Debug, Default)]
pub struct PartnerFolder {
    pub dir: PathBuf,
    partners: BTreeMap<String, Partner>,
}

impl PartnerFolder {
    /// Read every certificate file and record directly in `dir` (not `anchors/` or the history
    /// folders). A record that does not parse, or names a certificate that cannot be read, is
    /// `ConfigInvalid` naming the file and the key.
    pub fn load(dir: &Path) -> Result<PartnerFolder> {
        let mut partners: BTreeMap<String, Partner> = BTreeMap::new();
        for (name, path, _) in list_dir(dir)? {
            // Hidden files are temporary ones; a symbolic link to a certificate counts.
            let is_file = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
            if !is_file || name.starts_with('.') {
                continue;
            }
            let Some((stem, ext)) = name.rsplit_once('.') else {
                continue;
            };
            let ext = ext.to_ascii_lowercase();
            if stem.is_empty() {
                continue;
            }
            let p = partners.entry(stem.to_string()).or_insert_with(|| Partner {
                id: stem.to_string(),
                ..Default::default()
            });
            if CERT_EXTENSIONS.contains(&ext.as_str()) {
                let data = std::fs::read(&path).map_err(|e| io_err("cannot read", &path, e))?;
                let certs = Certificate::all_from_bytes(&data)
                    .map_err(|e| Error::CertInvalid(format!("{}: {e}", path.display())))?;
                p.current.extend(certs);
                p.files.push(path);
            } else if ext == RECORD_EXTENSION {
                let (record, previous) = read_record(dir, &path)?;
                p.record = Some(record);
                p.previous = previous;
            }
        }
        partners.retain(|_, p| !p.files.is_empty() || p.record.is_some());
        Ok(PartnerFolder {
            dir: dir.to_path_buf(),
            partners,
        })
    }

    pub fn get(&self, party: &str) -> Option<&Partner> {
        self.partners.get(party)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Partner> {
        self.partners.values()
    }

    /// [`Partner::accepted`] of `party` (none for an unknown party).
    pub fn accepted(&self, party: &str, now: i64) -> Vec<Certificate> {
        self.get(party).map(|p| p.accepted(now)).unwrap_or_default()
    }

    /// The current certificates of `party` (what we seal for).
    pub fn current(&self, party: &str) -> Vec<Certificate> {
        self.get(party)
            .map(|p| p.current.clone())
            .unwrap_or_default()
    }
}

/// `<dir>/<party>.toml`.
pub fn record_path(dir: &Path, party: &str) -> PathBuf {
    dir.join(format!("{party}.{RECORD_EXTENSION}"))
}

/// `<dir>/<party>.crt`.
pub fn certificate_path(dir: &Path, party: &str) -> PathBuf {
    dir.join(format!("{party}.crt"))
}

/// The history folder of `party`, relative to the partners folder.
fn history_rel(party: &str) -> String {
    format!("{party}.history")
}

/// A record and its previous certificates, checked.
fn read_record(dir: &Path, path: &Path) -> Result<(Record, Vec<Previous>)> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::ConfigInvalid(format!(
            "{}: (file): cannot read the file: {e}",
            path.display()
        ))
    })?;
    let record: Record = parse_toml(&text, path)?;
    let invalid = |key: String, what: String| {
        Error::ConfigInvalid(format!("{}: {key}: {what}", path.display()))
    };
    if let Some(a) = &record.added {
        if time::parse_date_time(a).is_none() {
            return Err(invalid(
                "added".into(),
                format!("{a:?} is not an ISO 8601 time (e.g. 2026-12-07T07:00:00Z)"),
            ));
        }
    }
    let mut previous = Vec::new();
    for (i, e) in record.previous.iter().enumerate() {
        let until = time::parse_date_time(&e.until).ok_or_else(|| {
            invalid(
                format!("previous[{i}].until"),
                format!(
                    "{:?} is not an ISO 8601 time (e.g. 2027-01-01T00:00:00Z)",
                    e.until
                ),
            )
        })?;
        let rel = Path::new(&e.file);
        if e.file.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(invalid(
                format!("previous[{i}].file"),
                format!(
                    "{:?}: expected a path inside the partners folder (no '..', not absolute)",
                    e.file
                ),
            ));
        }
        let file = dir.join(rel);
        let certificate = Certificate::load(&file).map_err(|err| {
            invalid(
                format!("previous[{i}].file"),
                format!("{}: {err}", file.display()),
            )
        })?;
        previous.push(Previous {
            certificate,
            until,
            file,
        });
    }
    Ok((record, previous))
}

/// The record of `party`, if it has one (checked as [`PartnerFolder::load`] checks it).
pub fn load_record(dir: &Path, party: &str) -> Result<Option<Record>> {
    let path = record_path(dir, party);
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(read_record(dir, &path)?.0))
}

/// Write the record of `party` atomically.
pub fn save_record(dir: &Path, party: &str, record: &Record) -> Result<()> {
    let body = toml::to_string(record)
        .map_err(|e| Error::Internal(format!("cannot write a partner record: {e}")))?;
    let path = record_path(dir, party);
    fsutil::write_atomic(&path, format!("{RECORD_HEADER}{body}").as_bytes())
}

/// Keep `cert` in the history folder of `party` (`<party>.history/<sha256>.crt`, written
/// once); the path relative to the partners folder.
fn keep_in_history(dir: &Path, party: &str, cert: &Certificate) -> Result<String> {
    let rel = format!("{}/{}.crt", history_rel(party), cert.sha256_fingerprint());
    let folder = dir.join(history_rel(party));
    if !folder.exists() {
        std::fs::create_dir_all(&folder).map_err(|e| io_err("cannot create folder", &folder, e))?;
        fsutil::fsync_dir(dir)?;
    }
    let path = dir.join(&rel);
    if !path.exists() {
        fsutil::write_atomic(&path, &cert.to_pem())?;
    }
    Ok(rel)
}

/// What [`set_current`] did.
#[derive(Clone, Debug, Default)]
pub struct Replaced {
    /// The certificates that were current, now in the history folder.
    pub old: Vec<Certificate>,
    /// Those still accepted, until then (Unix seconds).
    pub accepted_until: Option<i64>,
}

/// Make `cert` the current certificate of `party` (a replacement, a rollover or a first
/// certificate): the certificates that were current go to the history folder, and stay
/// accepted until `keep_old_until` when given (as `previous`); `extra_previous` are added as
/// previous too (a directory's certificates in their overlap). The record notes `source` and
/// the time; its profile and receipts stay; expired previous entries are dropped. In this
/// order, each step atomic: history, record, certificate file (a crash in between leaves the
/// old certificate current and is repaired by doing it again).
pub fn set_current(
    dir: &Path,
    party: &str,
    cert: &Certificate,
    source: Source,
    keep_old_until: Option<i64>,
    extra_previous: &[(Certificate, i64)],
) -> Result<Replaced> {
    let now = time::now_unix();
    let folder = PartnerFolder::load(dir)?;
    let existing = folder.get(party).cloned().unwrap_or_default();
    let mut record = existing.record.clone().unwrap_or_default();
    let old: Vec<Certificate> = existing
        .current
        .iter()
        .filter(|c| *c != cert)
        .cloned()
        .collect();
    let mut keep: Vec<(Certificate, i64)> = Vec::new();
    for c in &old {
        let rel = keep_in_history(dir, party, c)?;
        if let Some(until) = keep_old_until.filter(|u| *u > now) {
            keep.push((c.clone(), until));
            record.previous.retain(|p| p.file != rel);
            record.previous.push(PreviousEntry {
                file: rel,
                until: time::iso8601(until),
            });
        }
    }
    for (c, until) in extra_previous {
        if c == cert || *until <= now {
            continue;
        }
        let rel = keep_in_history(dir, party, c)?;
        record.previous.retain(|p| p.file != rel);
        record.previous.push(PreviousEntry {
            file: rel,
            until: time::iso8601(*until),
        });
    }
    // The new current certificate is not also a previous one.
    let new_rel = format!("{}/{}.crt", history_rel(party), cert.sha256_fingerprint());
    record.previous.retain(|p| p.file != new_rel);
    prune(&mut record, now);
    record.source = Some(source);
    record.added = Some(time::iso8601(now));
    save_record(dir, party, &record)?;
    let target = certificate_path(dir, party);
    fsutil::write_atomic(&target, &cert.to_pem())?;
    // Other files of the party (`<party>.pem`…) held the old certificates: they are in the
    // history now.
    for f in &existing.files {
        if *f != target {
            std::fs::remove_file(f).map_err(|e| io_err("cannot remove", f, e))?;
        }
    }
    fsutil::fsync_dir(dir)?;
    Ok(Replaced {
        old,
        accepted_until: keep_old_until.filter(|u| *u > now && !keep.is_empty()),
    })
}

/// Drop the previous entries of a record whose time has passed; how many.
fn prune(record: &mut Record, now: i64) -> usize {
    let before = record.previous.len();
    record
        .previous
        .retain(|p| time::parse_date_time(&p.until).is_none_or(|t| now < t));
    before - record.previous.len()
}

/// Drop the previous certificates of `party` that are no longer accepted at `now` from its
/// record (their files stay in the history folder); how many.
pub fn drop_expired(dir: &Path, party: &str, now: i64) -> Result<usize> {
    let Some(mut record) = load_record(dir, party)? else {
        return Ok(0);
    };
    let n = prune(&mut record, now);
    if n > 0 {
        save_record(dir, party, &record)?;
    }
    Ok(n)
}

/// A party id as the partners folder takes it (it is a file name): 1 to 200 characters, no
/// `/`, `\` or control characters, not starting with `.`.
pub fn check_party_id(party_id: &str) -> Result<()> {
    if party_id.is_empty()
        || party_id.len() > 200
        || party_id.starts_with('.')
        || party_id
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(Error::InvalidArgument(
            "a partner's party id must be 1 to 200 characters without '/', '\\' or control \
             characters, not starting with '.'"
                .into(),
        ));
    }
    Ok(())
}
