//! The client's configuration: one TOML file (see [`Config::template`] for every setting).
//!
//! Paths are relative to the folder of the configuration file. Passwords are never in the
//! file: `password_env` names an environment variable, `password_file` a file whose first
//! line is the password. Every problem is reported as [`Error::ConfigInvalid`] with the
//! message `<file>: <key>: <what is expected>`.

use ls_core::cms::{Compression, ContentCipher, InboundPolicy};
use ls_core::error::{Error, Result};
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The default ebMS Service of documents sent by the client.
pub const DEFAULT_SERVICE: &str = "urn:layersec:service:document";
/// The default ebMS Action of documents sent by the client.
pub const DEFAULT_ACTION: &str = "Deliver";

/// The whole configuration, with every path absolute.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The configuration file this was loaded from.
    #[serde(skip)]
    pub file: PathBuf,
    pub party: PartyConfig,
    pub identity: IdentityConfig,
    pub service: ServiceConfig,
    #[serde(default)]
    pub partners: PartnersConfig,
    #[serde(default)]
    pub defaults: DefaultsConfig,
    #[serde(default)]
    pub folders: FoldersConfig,
    #[serde(default)]
    pub polling: PollingConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub receipts: ReceiptsConfig,
    #[serde(default)]
    pub transport: TransportConfig,
    /// `[email]`: SOAP over e-mail (with `[transport] kind = "email"`).
    #[serde(default)]
    pub email: Option<EmailConfig>,
}

/// `[transport]`: how messages travel to and from the service.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportConfig {
    #[serde(default)]
    pub kind: TransportKind,
}

/// `https` (push and pull, the default) or `email` (SMTP out, IMAP or POP3 in).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    #[default]
    Https,
    Email,
}

/// `[email]`: the mail accounts of SOAP over e-mail.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtps://host:port` (TLS from the start) or `smtp://host:port` (STARTTLS required).
    pub smtp_url: String,
    /// `imaps://host:port[/folder]`, `imap://…` (STARTTLS required), `pop3s://host:port` or
    /// `pop3://…` (STLS required).
    pub mailbox_url: String,
    /// Our mail address: the sender of our mails, where the service sends us messages.
    pub address: String,
    /// The service's mail address, where our messages go.
    pub service_address: String,
    /// The login of both accounts (SMTP AUTH and the mailbox).
    pub username: String,
    /// The environment variable that holds the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file whose first line is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Only to refuse it with a clear message.
    #[serde(default)]
    password: Option<IgnoredAny>,
    /// Trust these CA certificates for the mail servers' TLS instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Or: the SHA-256 of the mail servers' TLS certificate.
    #[serde(default)]
    pub pinned_sha256: Option<String>,
    /// How long `send` waits for the service's receipt before it exits with
    /// "submitted, receipt pending" (12); `run` completes the send when the receipt comes.
    #[serde(default = "default_receipt_wait")]
    pub receipt_wait_secs: u64,
    /// A message without the service's answer is submitted again after this long.
    #[serde(default = "default_resubmit_after")]
    pub resubmit_after_secs: u64,
    /// The IMAP folder mails that are not ours are moved to (POP3: they are left and skipped).
    #[serde(default = "default_set_aside_folder")]
    pub set_aside_folder: String,
    /// The longest mail we send or read (a message in base64 is about 4/3 of its size).
    #[serde(default = "default_max_mail_bytes")]
    pub max_mail_bytes: u64,
    /// The connect limit and the longest wait for a mail server's answer.
    #[serde(default = "default_mail_timeout")]
    pub timeout_secs: u64,
    /// `run` waits on the mailbox with IMAP IDLE where the server offers it (a new mail is
    /// received at once); `false`: it lists the mailbox every `[polling] interval_secs` only.
    #[serde(default = "default_idle")]
    pub idle: bool,
}

fn default_idle() -> bool {
    true
}

fn default_receipt_wait() -> u64 {
    60
}
fn default_resubmit_after() -> u64 {
    900
}
fn default_set_aside_folder() -> String {
    "layersec-not-ours".into()
}
fn default_max_mail_bytes() -> u64 {
    64 << 20
}
fn default_mail_timeout() -> u64 {
    30
}

/// `[party]`: who we are at the service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyConfig {
    /// Our party id (the From of what we send; our MPC is `urn:layersec:mpc:<id>`).
    pub id: String,
    /// The right-hand side of our MessageIds (default: derived from the party id).
    #[serde(default)]
    pub domain: Option<String>,
}

/// `[identity]`: our signing and decryption key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// PEM private key, or a PKCS#12 file (then `certificate` is not needed). Empty when the
    /// key is on a PKCS#11 token (`pkcs11_uri`); then it must be left out.
    #[serde(default)]
    pub key: PathBuf,
    /// The key on a PKCS#11 token: an RFC 7512 `pkcs11:` URI (a `pin-value` in it is refused
    /// by the core). Instead of `key` and the password settings.
    #[serde(default)]
    pub pkcs11_uri: Option<String>,
    /// The PKCS#11 module (wins over a `module-path` in the URI).
    #[serde(default)]
    pub module: Option<PathBuf>,
    /// The environment variable that holds the token's PIN.
    #[serde(default)]
    pub pin_env: Option<String>,
    /// A file whose first line is the token's PIN.
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// Only to refuse it with a clear message: a PIN is never kept in this file.
    #[serde(default)]
    pin: Option<IgnoredAny>,
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// The environment variable that holds the key's password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file whose first line is the key's password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Only to refuse it with a clear message: passwords are never kept in this file.
    #[serde(default)]
    password: Option<IgnoredAny>,
    /// `status` warns this many days before our certificate expires (and no rollover is
    /// under way).
    #[serde(default = "default_expiry_warning_days")]
    pub expiry_warning_days: u32,
    /// `run` starts a rollover by itself this many days before our certificate expires (0:
    /// never).
    #[serde(default)]
    pub auto_rollover_days: u32,
    /// How long the old certificate stays valid in a rollover (`layersec rollover` without
    /// `--overlap-hours`, and an automatic one), in hours.
    #[serde(default = "default_rollover_overlap_hours")]
    pub rollover_overlap_hours: u64,
}

fn default_expiry_warning_days() -> u32 {
    30
}

fn default_rollover_overlap_hours() -> u64 {
    ls_core::rollover::DEFAULT_OVERLAP_HOURS
}

/// `[service]`: the Messaging Service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// `https://host[:port]/as4`. With `[transport] kind = "email"` it may be left out: then
    /// what only HTTPS does (enrolment, the partner directory, registering a rollover) cannot
    /// be used.
    #[serde(default)]
    pub url: String,
    /// Further nodes of the same service (behind the same TLS trust, signing with the same
    /// service certificate), `https://…` each: the client fails over to the next when one is
    /// down (`ls_core::transport::failover`). Given without `url`, its first entry is the
    /// primary (and becomes `url` once loaded).
    #[serde(default)]
    pub urls: Vec<String>,
    /// The service's signing certificate: its receipts and signals must verify against it.
    pub service_certificate: PathBuf,
    /// Trust these CA (or self-signed server) certificates for TLS instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Or: the SHA-256 of the server's TLS certificate (hex, `:` allowed).
    #[serde(default)]
    pub pinned_sha256: Option<String>,
    /// Mutual TLS: our TLS client certificate and key (the key's password is the identity's).
    #[serde(default)]
    pub client_certificate: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Allow `http://` (tests and local demonstrations only).
    #[serde(default)]
    pub allow_plain_http: bool,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// The idle limit of an exchange with the service: the longest wait for progress (the TLS
    /// handshake, the service taking more of what we send, its answer starting, more of it).
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    /// Deprecated: the old name of `idle_timeout_secs` (it bounded a whole request once; a
    /// 4 GiB document on a slow line would then be cut and sent again whole at every retry).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// The slowest a message may go up or come down, on average, once `min_rate_grace_secs`
    /// have passed (0: no minimum); slower is a timeout (retried).
    #[serde(default = "default_min_rate")]
    pub min_rate_bytes_per_sec: u64,
    #[serde(default = "default_min_rate_grace")]
    pub min_rate_grace_secs: u64,
}

impl ServiceConfig {
    /// Every node of the service, the primary (`url`) first, then `urls`; none with
    /// `[transport] kind = "email"` and no URL.
    pub fn nodes(&self) -> Vec<&str> {
        std::iter::once(self.url.as_str())
            .chain(self.urls.iter().map(String::as_str))
            .filter(|u| !u.trim().is_empty())
            .collect()
    }

    /// `idle_timeout_secs`, or the deprecated `timeout_secs`, or 60.
    pub fn idle_timeout_secs(&self) -> u64 {
        self.idle_timeout_secs
            .or(self.timeout_secs)
            .unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS)
    }

    /// The minimum transfer rate of `[service]`.
    pub fn min_rate(&self) -> ls_core::transport::MinRate {
        ls_core::transport::MinRate {
            bytes_per_sec: self.min_rate_bytes_per_sec,
            grace: std::time::Duration::from_secs(self.min_rate_grace_secs),
        }
    }
}

fn default_connect_timeout() -> u64 {
    10
}
/// The default of `[service] idle_timeout_secs`.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
fn default_min_rate() -> u64 {
    16 * 1024
}
fn default_min_rate_grace() -> u64 {
    30
}

/// `[partners]`: partner certificates, `<dir>/<party id>.crt` (or `.pem`, `.cer`, `.der`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnersConfig {
    pub dir: PathBuf,
}

impl Default for PartnersConfig {
    fn default() -> Self {
        PartnersConfig {
            dir: "partners".into(),
        }
    }
}

/// `[defaults]`: the ebMS header of what we send unless the caller says otherwise.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultsConfig {
    pub service: String,
    pub action: String,
    pub agreement_ref: Option<String>,
}

impl Default for DefaultsConfig {
    fn default() -> Self {
        DefaultsConfig {
            service: DEFAULT_SERVICE.into(),
            action: DEFAULT_ACTION.into(),
            agreement_ref: None,
        }
    }
}

/// `[folders]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FoldersConfig {
    /// Documents to send: `outbox/<partner id>/<file>`.
    pub outbox: PathBuf,
    /// Sent documents, each with `<name>.sent.json`.
    pub sent: PathBuf,
    /// Documents that could not be sent, each with `<name>.reason.txt`.
    pub failed: PathBuf,
    /// Received documents, each with `<name>.meta.json`.
    pub inbox: PathBuf,
    /// The client's journal.
    pub state: PathBuf,
    /// Documents are written `0600` in `0700` folders; with this set, `0640` in `2750` folders
    /// (set-group-ID, so files take the folder's group: `chgrp` the folders to the group that
    /// must read them).
    pub group_readable: bool,
}

impl Default for FoldersConfig {
    fn default() -> Self {
        FoldersConfig {
            outbox: "outbox".into(),
            sent: "sent".into(),
            failed: "failed".into(),
            inbox: "inbox".into(),
            state: "state".into(),
            group_readable: false,
        }
    }
}

/// `[polling]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollingConfig {
    pub interval_secs: u64,
    /// Each wait (polling and retries) is varied by up to this many percent.
    pub jitter_percent: u8,
}

impl Default for PollingConfig {
    fn default() -> Self {
        PollingConfig {
            interval_secs: 60,
            jitter_percent: 10,
        }
    }
}

/// `[retry]`: back-off of sends that failed for a reason that may pass.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub initial_secs: u64,
    pub max_secs: u64,
    /// After this many failed attempts the document goes to `failed/`.
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_secs: 30,
            max_secs: 3600,
            max_attempts: 48,
        }
    }
}

/// `[receipts]`: signed end-to-end receipts (RFC 2634) of what we send.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiptsConfig {
    /// Ask partners for a signed receipt of each document (`send --no-receipt` for one).
    pub request: bool,
    /// `status` counts documents still without a receipt after this many hours.
    pub warn_after_hours: u64,
    /// Partners whose software never answers: no receipt is asked of them.
    pub not_from: Vec<String>,
}

impl Default for ReceiptsConfig {
    fn default() -> Self {
        ReceiptsConfig {
            request: true,
            warn_after_hours: 24,
            not_from: Vec::new(),
        }
    }
}

/// `[limits]`: what we take from partners and from the service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// The largest document we accept, as it is once opened (decompressed). Also our party's
    /// receive limit in its registration at the service, which then refuses larger messages
    /// at push time; a pull response may be this plus the message overhead
    /// ([`ls_core::as4::coordination::MESSAGE_OVERHEAD`]).
    pub max_document_bytes: u64,
    /// One poll takes at most this many messages…
    pub max_messages_per_poll: u32,
    /// …and at most this many bytes of messages; the rest waits for the next poll.
    pub max_bytes_per_poll: u64,
    /// How long the journal remembers a received message (`state/delivered/`), so that one
    /// offered again is receipted, not written twice. At least the service's
    /// `expire_undelivered_hours` (720 by default).
    pub remember_delivered_hours: u64,
    /// At most this many records of messages we could not accept
    /// (`state/incoming-failed/`); the oldest go first.
    pub max_refused_records: u32,
    /// A message from a sender that is not our partner (no certificate of it) is left with
    /// the service this long after we first saw it — the partner may be added meanwhile —
    /// then refused for good with a signed `not_trusted` notice, so that its sender learns it
    /// will not be delivered. 0: refused at once. A known partner's message signed by a key we
    /// hold no valid certificate for (a rollover not seen yet) is not refused: it waits.
    pub refuse_unknown_after_hours: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_document_bytes: ls_core::as4::coordination::DEFAULT_MAX_DOCUMENT_BYTES,
            max_messages_per_poll: 1000,
            // Two documents of the default limit.
            max_bytes_per_poll: 8 << 30,
            remember_delivered_hours: 60 * 24,
            max_refused_records: 10_000,
            refuse_unknown_after_hours: 72,
        }
    }
}

/// Whether to compress documents before sealing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressChoice {
    #[default]
    Auto,
    Never,
    Always,
}

/// The content cipher of sealed documents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum CipherChoice {
    #[default]
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
    /// For partners that cannot read AuthEnvelopedData.
    #[serde(rename = "aes-256-cbc")]
    Aes256Cbc,
}

/// `[policy]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Accept documents that partners encrypted with legacy ciphers: AES-CBC or 3DES content
    /// encryption (EnvelopedData) or RSA PKCS#1 v1.5 key transport. Off (the default): only
    /// AuthEnvelopedData (AES-GCM), with RSA-OAEP or ECDH, is opened.
    pub accept_legacy_ciphers: bool,
    pub compress: CompressChoice,
    pub cipher: CipherChoice,
}

impl PolicyConfig {
    pub fn compression(&self) -> Compression {
        match self.compress {
            CompressChoice::Auto => Compression::Auto,
            CompressChoice::Never => Compression::Never,
            CompressChoice::Always => Compression::Always,
        }
    }
    /// What is opened from partners: with `accept_legacy_ciphers`, everything legacy
    /// ([`InboundPolicy::ANY`]); without, only AuthEnvelopedData with RSA-OAEP or ECDH. A
    /// multipart/signed entity is accepted either way, as it always was here (a partner's
    /// profile will decide it: `ls_core::cms::Profile::inbound_policy`).
    pub fn inbound_policy(&self) -> InboundPolicy {
        if self.accept_legacy_ciphers {
            InboundPolicy::ANY
        } else {
            InboundPolicy {
                accept_multipart_signed: true,
                ..InboundPolicy::MODERN
            }
        }
    }
    pub fn content_cipher(&self) -> ContentCipher {
        match self.cipher {
            CipherChoice::Aes256Gcm => ContentCipher::Aes256Gcm,
            CipherChoice::Aes256Cbc => ContentCipher::Aes256Cbc,
        }
    }
}

/// `text` (read from `path`) as TOML of `T`; an error names the file, the key (with its
/// table) and the line: `<file>: <key>: <what is wrong> (line N)`. One reading of TOML for the
/// configuration and the partner records.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T> {
    let shown = path.display();
    toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().to_string();
        let at = e.span().map(|s| s.start);
        let key = match (missing_field(&msg), at) {
            // A missing key: serde points at the table that lacks it.
            (Some(f), Some(at)) => {
                let table = key_at(text, at);
                if table == "(top level)" || table.contains('.') {
                    f.to_string()
                } else {
                    format!("{table}.{f}")
                }
            }
            (Some(f), None) => f.to_string(),
            (None, Some(at)) => key_at(text, at),
            (None, None) => "(file)".into(),
        };
        let line = at.map(|a| text[..a.min(text.len())].matches('\n').count() + 1);
        match line {
            Some(l) => Error::ConfigInvalid(format!("{shown}: {key}: {msg} (line {l})")),
            None => Error::ConfigInvalid(format!("{shown}: {key}: {msg}")),
        }
    })
}

/// The dotted key (`section.key`) at a byte offset of a TOML text: the key of the line (if it
/// is a `key = value` line) under the last `[section]` header before it.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[line_start..line_end].trim();
    let header = |l: &str| -> Option<String> {
        let l = l.trim();
        let inner = l.strip_prefix('[')?;
        let end = inner.find(']')?;
        Some(inner[..end].trim().trim_matches('[').trim().to_string())
    };
    if let Some(h) = header(line) {
        return h;
    }
    let section = text[..line_start].lines().rev().find_map(header);
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('#'));
    match (section, key) {
        (Some(s), Some(k)) => format!("{s}.{k}"),
        (None, Some(k)) => k,
        (Some(s), None) => s,
        (None, None) => "(top level)".into(),
    }
}

/// `missing field `x`` → `x`.
fn missing_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("missing field `")?;
    rest.split('`').next()
}

impl Config {
    fn invalid(&self, key: &str, what: impl std::fmt::Display) -> Error {
        Error::ConfigInvalid(format!("{}: {key}: {what}", self.file.display()))
    }

    /// Read, check and resolve a configuration file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::ConfigInvalid(format!("{shown}: (file): cannot read the file: {e}"))
        })?;
        Self::parse(&text, path)
    }

    /// Parse `text` as if read from `path` (relative paths resolve against its folder).
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut cfg: Config = parse_toml(text, path)?;
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        cfg.file = abs.clone();
        let base = abs.parent().map(Path::to_path_buf).unwrap_or_default();
        cfg.resolve(&base);
        cfg.check()?;
        if cfg.service.url.trim().is_empty() && !cfg.service.urls.is_empty() {
            // `urls` alone: its first entry is the primary.
            cfg.service.url = cfg.service.urls.remove(0);
        }
        Ok(cfg)
    }

    fn resolve(&mut self, base: &Path) {
        let r = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if !self.identity.key.as_os_str().is_empty() {
            r(&mut self.identity.key);
        }
        for p in [&mut self.identity.module, &mut self.identity.pin_file]
            .into_iter()
            .flatten()
        {
            r(p);
        }
        if let Some(p) = &mut self.identity.certificate {
            r(p);
        }
        if let Some(p) = &mut self.identity.password_file {
            r(p);
        }
        r(&mut self.service.service_certificate);
        if let Some(e) = &mut self.email {
            for p in [&mut e.password_file, &mut e.ca_file].into_iter().flatten() {
                r(p);
            }
        }
        for p in [
            &mut self.service.ca_file,
            &mut self.service.client_certificate,
            &mut self.service.client_key,
        ]
        .into_iter()
        .flatten()
        {
            r(p);
        }
        r(&mut self.partners.dir);
        let f = &mut self.folders;
        for p in [
            &mut f.outbox,
            &mut f.sent,
            &mut f.failed,
            &mut f.inbox,
            &mut f.state,
        ] {
            r(p);
        }
    }

    fn check(&self) -> Result<()> {
        let id = &self.party.id;
        if id.trim().is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
            return Err(self.invalid(
                "party.id",
                "a party id of 1 to 255 printable characters is expected",
            ));
        }
        if let Some(d) = &self.party.domain {
            if d.is_empty()
                || !d
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                return Err(self.invalid(
                    "party.domain",
                    "a domain of letters, digits, '.' and '-' is expected",
                ));
            }
        }
        let max_hours = ls_core::rollover::MAX_OVERLAP_SECS / 3600;
        if self.identity.rollover_overlap_hours > max_hours {
            return Err(self.invalid(
                "identity.rollover_overlap_hours",
                format!("0 to {max_hours} hours (90 days) is expected"),
            ));
        }
        self.check_email()?;
        if self.service.url.trim().is_empty()
            && self.service.urls.is_empty()
            && self.transport.kind == TransportKind::Https
        {
            return Err(self.invalid(
                "service.url",
                "missing: https://host[:port]/as4 is expected (it may be left out only with \
                 [transport] kind = \"email\", or given as the first of service.urls)",
            ));
        }
        if self.identity.password.is_some() {
            return Err(self.invalid(
                "identity.password",
                "passwords are never kept in the configuration file: name an environment \
                 variable with password_env or a file with password_file",
            ));
        }
        if self.identity.password_env.is_some() && self.identity.password_file.is_some() {
            return Err(self.invalid(
                "identity.password_env",
                "either password_env or password_file is expected, not both",
            ));
        }
        if let Some(v) = &self.identity.password_env {
            if v.is_empty() || v.contains('=') || v.contains('\0') {
                return Err(self.invalid(
                    "identity.password_env",
                    "the name of an environment variable is expected",
                ));
            }
        }
        let must_exist = |key: &str, p: &Path| -> Result<()> {
            if p.is_file() {
                Ok(())
            } else {
                Err(self.invalid(key, format!("{} is not a readable file", p.display())))
            }
        };
        self.check_token_identity()?;
        if self.identity.pkcs11_uri.is_none() {
            if self.identity.key.as_os_str().is_empty() {
                return Err(self.invalid(
                    "identity.key",
                    "missing: a PEM or PKCS#12 key file is expected (or the key on a token \
                     with pkcs11_uri)",
                ));
            }
            must_exist("identity.key", &self.identity.key)?;
        }
        if let Some(p) = &self.identity.certificate {
            must_exist("identity.certificate", p)?;
        }
        if let Some(p) = &self.identity.password_file {
            must_exist("identity.password_file", p)?;
        }
        let url = self.service.url.trim().to_ascii_lowercase();
        let no_url_needed =
            self.transport.kind == TransportKind::Email || !self.service.urls.is_empty();
        if !(url.is_empty() && no_url_needed) {
            self.check_service_url("service.url", &self.service.url)?;
        }
        let mut seen = vec![url];
        for (i, u) in self.service.urls.iter().enumerate() {
            let key = format!("service.urls[{i}]");
            self.check_service_url(&key, u)?;
            let lower = u.trim().to_ascii_lowercase();
            if let Some(j) = seen.iter().position(|s| *s == lower) {
                return Err(self.invalid(
                    &key,
                    format!(
                        "{} is named already (as {}): urls names each further node once",
                        ls_core::transport::https::redact_userinfo(u.trim()),
                        if j == 0 {
                            "service.url".to_string()
                        } else {
                            format!("service.urls[{}]", j - 1)
                        }
                    ),
                ));
            }
            seen.push(lower);
        }
        must_exist(
            "service.service_certificate",
            &self.service.service_certificate,
        )?;
        if let Some(p) = &self.service.ca_file {
            must_exist("service.ca_file", p)?;
        }
        if let Some(pin) = &self.service.pinned_sha256 {
            if ls_core::bytes::parse_sha256(pin).is_none() {
                return Err(self.invalid(
                    "service.pinned_sha256",
                    "64 hex digits (the SHA-256 of the server's certificate, ':' allowed) are \
                     expected",
                ));
            }
        }
        match (&self.service.client_certificate, &self.service.client_key) {
            (Some(_), None) => {
                return Err(self.invalid(
                    "service.client_key",
                    "the key of client_certificate is expected too",
                ))
            }
            (c, Some(k)) => {
                must_exist("service.client_key", k)?;
                if let Some(c) = c {
                    must_exist("service.client_certificate", c)?;
                }
            }
            (None, None) => {}
        }
        if self.service.connect_timeout_secs == 0 || self.service.idle_timeout_secs() == 0 {
            return Err(self.invalid(
                if self.service.connect_timeout_secs == 0 {
                    "service.connect_timeout_secs"
                } else if self.service.idle_timeout_secs.is_some() {
                    "service.idle_timeout_secs"
                } else {
                    "service.timeout_secs"
                },
                "a number of seconds of at least 1 is expected",
            ));
        }
        // Deadlines are instants: an unbounded grace would overflow them.
        if self.service.min_rate_grace_secs > 86_400 {
            return Err(self.invalid(
                "service.min_rate_grace_secs",
                "at most 86400 seconds (a day) is expected",
            ));
        }
        if let (Some(new), Some(old)) = (self.service.idle_timeout_secs, self.service.timeout_secs)
        {
            if new != old {
                return Err(self.invalid(
                    "service.timeout_secs",
                    "the deprecated name of service.idle_timeout_secs: give only one",
                ));
            }
        }
        if self.defaults.service.trim().is_empty() {
            return Err(self.invalid("defaults.service", "a non-empty ebMS Service is expected"));
        }
        if self.defaults.action.trim().is_empty() {
            return Err(self.invalid("defaults.action", "a non-empty ebMS Action is expected"));
        }
        if self.polling.interval_secs == 0 {
            return Err(self.invalid(
                "polling.interval_secs",
                "a number of seconds of at least 1 is expected",
            ));
        }
        if self.polling.jitter_percent > 100 {
            return Err(self.invalid(
                "polling.jitter_percent",
                "a percentage from 0 to 100 is expected",
            ));
        }
        if self.retry.initial_secs == 0 {
            return Err(self.invalid(
                "retry.initial_secs",
                "a number of seconds of at least 1 is expected",
            ));
        }
        if self.retry.max_secs < self.retry.initial_secs {
            return Err(self.invalid(
                "retry.max_secs",
                "a number of seconds no smaller than initial_secs is expected",
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(self.invalid("retry.max_attempts", "at least 1 is expected"));
        }
        let l = &self.limits;
        if l.max_document_bytes < 1024 {
            return Err(self.invalid(
                "limits.max_document_bytes",
                "a number of bytes of at least 1024 is expected",
            ));
        }
        if l.max_messages_per_poll == 0 {
            return Err(self.invalid("limits.max_messages_per_poll", "at least 1 is expected"));
        }
        if l.max_bytes_per_poll < l.max_document_bytes {
            return Err(self.invalid(
                "limits.max_bytes_per_poll",
                "a number of bytes no smaller than max_document_bytes is expected",
            ));
        }
        if l.remember_delivered_hours < 24 {
            return Err(self.invalid(
                "limits.remember_delivered_hours",
                "at least 24 hours (and no less than the service's expire_undelivered_hours) \
                 is expected",
            ));
        }
        if l.max_refused_records == 0 {
            return Err(self.invalid("limits.max_refused_records", "at least 1 is expected"));
        }
        let f = &self.folders;
        let named = [
            ("folders.outbox", &f.outbox),
            ("folders.sent", &f.sent),
            ("folders.failed", &f.failed),
            ("folders.inbox", &f.inbox),
            ("folders.state", &f.state),
            ("partners.dir", &self.partners.dir),
        ];
        for (i, (k, p)) in named.iter().enumerate() {
            for (k2, p2) in &named[..i] {
                if p == p2 {
                    return Err(self.invalid(k, format!("a folder other than {k2}'s is expected")));
                }
            }
        }
        Ok(())
    }

    /// `[identity]` with the key on a PKCS#11 token: `pkcs11_uri` excludes `key` and the
    /// password settings, the PIN comes from `pin_env` or `pin_file` (never this file), and
    /// what needs the key in a file (a TLS client key, whose password is the identity's) is
    /// refused. Without `pkcs11_uri`, the token settings are refused.
    fn check_token_identity(&self) -> Result<()> {
        let id = &self.identity;
        self.token_settings()
            .check()
            .map_err(|e| self.invalid(e.key, e.message))?;
        if id.pkcs11_uri.is_none() {
            return Ok(());
        }
        if id.auto_rollover_days > 0 {
            return Err(self.invalid(
                "identity.auto_rollover_days",
                "the daemon does not roll over a key on a PKCS#11 token (pkcs11_uri) by \
                 itself: leave auto_rollover_days out or 0, and run `layersec rollover`",
            ));
        }
        if self.service.client_key.is_some() {
            return Err(self.invalid(
                "service.client_key",
                "a TLS client key needs the identity's key in a file (its password is the \
                 identity's); with the identity on a PKCS#11 token (pkcs11_uri), TLS client \
                 keys are not supported (TLS keys stay in files, and OpenSSL's PKCS#11 provider \
                 is not available)",
            ));
        }
        Ok(())
    }

    /// A node's URL (`url`, or an entry of `urls`, named by `key`): `https://` (or `http://`
    /// with `allow_plain_http`), a host, no password in it. The message never repeats one.
    fn check_service_url(&self, key: &str, url: &str) -> Result<()> {
        let u = url.trim();
        let lower = u.to_ascii_lowercase();
        let rest = if let Some(r) = lower.strip_prefix("https://") {
            r
        } else if let (Some(r), true) =
            (lower.strip_prefix("http://"), self.service.allow_plain_http)
        {
            r
        } else {
            return Err(self.invalid(
                key,
                if lower.starts_with("http://") {
                    "an https:// URL is expected (http:// only with allow_plain_http = true)"
                } else {
                    "an https:// URL is expected"
                },
            ));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if userinfo.contains(':') {
                return Err(self.invalid(
                    key,
                    "a password in the URL is refused: passwords are never kept in the \
                     configuration file",
                ));
            }
        }
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if host.is_empty() || host.starts_with(':') || u.chars().any(char::is_whitespace) {
            return Err(self.invalid(
                key,
                "https://host[:port]/path is expected (a host, no spaces)",
            ));
        }
        Ok(())
    }

    fn check_email(&self) -> Result<()> {
        use ls_core::mail::{MailUrl, Scheme};
        let Some(e) = &self.email else {
            if self.transport.kind == TransportKind::Email {
                return Err(self.invalid(
                    "email",
                    "an [email] section is expected with [transport] kind = \"email\"",
                ));
            }
            return Ok(());
        };
        match MailUrl::parse(&e.smtp_url) {
            Ok(u) if matches!(u.scheme, Scheme::Smtp | Scheme::Smtps) => {}
            Ok(_) => {
                return Err(self.invalid(
                    "email.smtp_url",
                    "smtps://host:port or smtp://host:port (STARTTLS) is expected",
                ))
            }
            Err(err) => return Err(self.invalid("email.smtp_url", err)),
        }
        match MailUrl::parse(&e.mailbox_url) {
            Ok(u) if !matches!(u.scheme, Scheme::Smtp | Scheme::Smtps) => {}
            Ok(_) => {
                return Err(self.invalid(
                    "email.mailbox_url",
                    "imaps://, imap:// (STARTTLS), pop3s:// or pop3:// (STLS) is expected",
                ))
            }
            Err(err) => return Err(self.invalid("email.mailbox_url", err)),
        }
        for (key, a) in [
            ("email.address", &e.address),
            ("email.service_address", &e.service_address),
        ] {
            if !ls_core::mail::layout::is_address(a) {
                return Err(self.invalid(key, "a mail address local@domain is expected"));
            }
        }
        if e.username.is_empty() || e.username.chars().any(char::is_control) {
            return Err(self.invalid("email.username", "a user name is expected"));
        }
        if e.password.is_some() {
            return Err(self.invalid(
                "email.password",
                "passwords are never kept in the configuration file: name an environment \
                 variable with password_env or a file with password_file",
            ));
        }
        if e.password_env.is_some() == e.password_file.is_some() {
            return Err(self.invalid(
                "email.password_env",
                "one of password_env or password_file is expected",
            ));
        }
        if e.set_aside_folder.is_empty()
            || !e.set_aside_folder.is_ascii()
            || e.set_aside_folder.chars().any(|c| c.is_control())
        {
            return Err(self.invalid(
                "email.set_aside_folder",
                "a folder name of printable ASCII characters is expected",
            ));
        }
        if !(60..=7 * 86_400).contains(&e.resubmit_after_secs) {
            return Err(self.invalid(
                "email.resubmit_after_secs",
                "60 to 604800 seconds (7 days) is expected",
            ));
        }
        if e.receipt_wait_secs > 86_400 {
            return Err(self.invalid("email.receipt_wait_secs", "0 to 86400 seconds is expected"));
        }
        if e.timeout_secs == 0 || e.max_mail_bytes < 64 * 1024 {
            return Err(self.invalid(
                "email.timeout_secs",
                "timeout_secs above 0 and max_mail_bytes of at least 64 KiB are expected",
            ));
        }
        Ok(())
    }

    /// The password of the mail accounts (`[email] password_env` or `password_file`).
    pub fn email_password(&self) -> Result<Zeroizing<String>> {
        let e = self
            .email
            .as_ref()
            .ok_or_else(|| self.invalid("email", "an [email] section is expected"))?;
        if let Some(var) = &e.password_env {
            return std::env::var(var).map(Zeroizing::new).map_err(|_| {
                self.invalid(
                    "email.password_env",
                    format!("the environment variable {var} is expected to hold the password"),
                )
            });
        }
        let p = e
            .password_file
            .as_ref()
            .ok_or_else(|| self.invalid("email.password_file", "a password file is expected"))?;
        let s = Zeroizing::new(std::fs::read_to_string(p).map_err(|err| {
            self.invalid(
                "email.password_file",
                format!("{} is not readable: {err}", p.display()),
            )
        })?);
        Ok(Zeroizing::new(s.lines().next().unwrap_or("").to_string()))
    }

    /// The password of our key: from `password_env` or `password_file`, `None` without either.
    /// Wiped from memory when dropped.
    pub fn password(&self) -> Result<Option<Zeroizing<String>>> {
        if let Some(var) = &self.identity.password_env {
            return match std::env::var(var) {
                Ok(v) => Ok(Some(Zeroizing::new(v))),
                Err(_) => Err(self.invalid(
                    "identity.password_env",
                    format!("the environment variable {var} is expected to hold the password"),
                )),
            };
        }
        if let Some(p) = &self.identity.password_file {
            let s = Zeroizing::new(std::fs::read_to_string(p).map_err(|e| {
                self.invalid(
                    "identity.password_file",
                    format!("{} is not readable: {e}", p.display()),
                )
            })?);
            return Ok(Some(Zeroizing::new(
                s.lines().next().unwrap_or("").to_string(),
            )));
        }
        Ok(None)
    }

    /// Whether our key is on a PKCS#11 token (`[identity] pkcs11_uri`).
    pub fn key_on_token(&self) -> bool {
        self.identity.pkcs11_uri.is_some()
    }

    /// Where our key is, for `status`: the key file, or the token URI without its query (no
    /// module path, never a PIN).
    pub fn key_location(&self) -> String {
        match &self.identity.pkcs11_uri {
            Some(uri) => ls_core::keys::pkcs11::without_query(uri),
            None => self.identity.key.display().to_string(),
        }
    }

    /// The token's PIN: from `pin_env` or `pin_file`, `None` without either (a token that
    /// needs no login). Wiped from memory when dropped.
    pub fn pin(&self) -> Result<Option<Zeroizing<String>>> {
        self.token_settings()
            .pin()
            .map_err(|e| self.invalid(e.key, e.message))
    }

    /// `[identity]`'s settings of a key on a token, for the rules and the PIN the client and
    /// the service share (`ls_core::keys::pkcs11::TokenSettings`).
    fn token_settings(&self) -> ls_core::keys::pkcs11::TokenSettings<'_> {
        let id = &self.identity;
        ls_core::keys::pkcs11::TokenSettings {
            pkcs11_uri: id.pkcs11_uri.as_deref(),
            module: id.module.as_deref(),
            pin_env: id.pin_env.as_deref(),
            pin_file: id.pin_file.as_deref(),
            pin_given: id.pin.is_some(),
            key_given: !id.key.as_os_str().is_empty(),
            password_env_given: id.password_env.is_some(),
            password_file_given: id.password_file.is_some(),
        }
    }

    /// Our identity as configured: the key file (opened with `password`), or the key on the
    /// PKCS#11 token (logged in with the PIN of `pin_env`/`pin_file`; one login per token for
    /// the process, the core's registry) with `certificate` or else the token's certificate.
    pub fn load_identity(&self, password: Option<&str>) -> Result<ls_core::keys::Identity> {
        let id = &self.identity;
        let Some(uri) = &id.pkcs11_uri else {
            return ls_core::keys::Identity::load(&id.key, id.certificate.as_deref(), password);
        };
        let pin = self.pin()?;
        let cert = match &id.certificate {
            Some(p) => Some(std::fs::read(p).map_err(|e| {
                self.invalid(
                    "identity.certificate",
                    format!("{} is not readable: {e}", p.display()),
                )
            })?),
            None => None,
        };
        ls_core::keys::Identity::from_pkcs11(
            uri.trim(),
            id.module.as_deref(),
            pin.as_deref().map(String::as_str),
            cert.as_deref(),
        )
    }

    /// The domain of our MessageIds.
    pub fn domain(&self) -> String {
        if let Some(d) = &self.party.domain {
            return d.clone();
        }
        let d: String = self
            .party
            .id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let d = d.trim_matches(['.', '-']).to_string();
        if d.is_empty() {
            "layersec.client".into()
        } else {
            format!("{d}.layersec")
        }
    }

    /// The commented configuration file `layersec init` writes.
    pub fn template(t: &TemplateOptions) -> String {
        let q = toml_string;
        let opt = |key: &str, v: &Option<String>, example: &str| match v {
            Some(v) => format!("{key} = {}\n", q(v)),
            None => format!("# {key} = {}\n", q(example)),
        };
        let mut s = String::new();
        s.push_str(&format!(
            "# Layer Security client ({}).\n\
             # Relative paths are relative to the folder of this file.\n\
             # Passwords are never written here: see [identity].\n\n",
            ls_core::VERSION
        ));
        s.push_str(&format!(
            "[party]\n\
             # Our party id at the Messaging Service: the From of what we send. Partners drop\n\
             # documents for us under this id, and we pull them from urn:layersec:mpc:<id>.\n\
             id = {}\n\
             # The right-hand side of our MessageIds (default: derived from the id).\n\
             # domain = \"example.com\"\n\n",
            q(&t.party_id)
        ));
        let key_lines = match &t.token {
            None => format!(
                "# Our private key (PEM, or a PKCS#12 file without a separate certificate) and\n\
                 # certificate. They sign what we send and open what partners seal for us.\n\
                 key = {}\n\
                 certificate = {}\n\
                 # The key's password: the name of an environment variable, or a file whose\n\
                 # first line is the password. Leave both out for a key without password.\n\
                 {}\
                 # password_file = \"secrets/key-password\"\n\
                 # Or the key on a PKCS#11 token (an HSM, a smart card), instead of key and\n\
                 # the password settings: an RFC 7512 URI (no pin-value in it), the module\n\
                 # (wins over a module-path in the URI), and the token's PIN from an environment\n\
                 # variable or a file's first line, never here. certificate may then be left\n\
                 # out: the token's certificate object with the key's label or id is used.\n\
                 # `layersec rollover` makes the new key on the same token (the URI must name\n\
                 # the key by object= and certificate be given); auto_rollover_days and a TLS\n\
                 # client key ([service] client_key) are not available with a token.\n\
                 # pkcs11_uri = \"pkcs11:token=layersec;object=signing-key;type=private\"\n\
                 # module = \"/usr/lib/softhsm/libsofthsm2.so\"\n\
                 # pin_env = \"LAYERSEC_TOKEN_PIN\"\n\
                 # pin_file = \"secrets/token-pin\"\n",
                q(&t.key),
                q(&t.certificate),
                opt("password_env", &t.password_env, "LAYERSEC_KEY_PASSWORD"),
            ),
            Some(k) => format!(
                "# Our private key, on a PKCS#11 token (an HSM, a smart card; made there, never\n\
                 # extractable): its RFC 7512 URI (no pin-value in it) and the token's module\n\
                 # (wins over a module-path in the URI). With our certificate it signs what we\n\
                 # send and opens what partners seal for us.\n\
                 pkcs11_uri = {}\n\
                 module = {}\n\
                 certificate = {}\n\
                 # The token's PIN: the name of an environment variable, or a file whose first\n\
                 # line is the PIN; never here. `layersec rollover` makes the new key on the\n\
                 # same token and moves the label to it (the URI must name the key by object=);\n\
                 # auto_rollover_days and a TLS client key ([service] client_key) are not\n\
                 # available with a token.\n\
                 {}{}",
                q(&k.pkcs11_uri),
                q(&k.module),
                q(&t.certificate),
                opt("pin_env", &k.pin_env, "LAYERSEC_TOKEN_PIN"),
                opt("pin_file", &k.pin_file, "secrets/token-pin"),
            ),
        };
        s.push_str(&format!(
            "[identity]\n\
             {key_lines}\
             # `layersec status` warns this many days before the certificate expires.\n\
             # expiry_warning_days = 30\n\
             # `layersec run` rolls over to a new key by itself this many days before the\n\
             # certificate expires (0: never; see `layersec rollover`).\n\
             # auto_rollover_days = 0\n\
             # How long the old certificate stays valid in a rollover, in hours.\n\
             # rollover_overlap_hours = 168\n\n",
        ));
        s.push_str(&format!(
            "[service]\n\
             # The Messaging Service's AS4 endpoint.\n\
             url = {}\n\
             # Further nodes of the same service (same TLS trust, same service certificate):\n\
             # when the node in use is down, the next is tried, round the list.\n\
             # urls = [\"https://node2.example/as4\", \"https://node3.example/as4\"]\n\
             # The service's signing certificate: its receipts must verify against it.\n\
             service_certificate = {}\n\
             # TLS trust: the CA (or the server's self-signed certificate) to trust instead of\n\
             # the system's, or the SHA-256 of the server's certificate. Neither: the system's\n\
             # trust store.\n\
             {}{}\
             # Mutual TLS, if the service asks for it (the key's password is the identity's).\n\
             # client_certificate = \"tls/client.crt\"\n\
             # client_key = \"tls/client.key\"\n\
             # connect_timeout_secs = 10\n\
             # Transfers are held to progress, not to a total time: a pause of more than\n\
             # idle_timeout_secs, or an average below min_rate_bytes_per_sec once\n\
             # min_rate_grace_secs have passed (0: no minimum), is a timeout (retried).\n\
             # (timeout_secs, the old name of idle_timeout_secs, is still read.)\n\
             # idle_timeout_secs = 60\n\
             # min_rate_bytes_per_sec = 16384\n\
             # min_rate_grace_secs = 30\n\n",
            q(&t.service_url),
            q(&t.service_certificate),
            opt("ca_file", &t.ca_file, "service/ca.crt"),
            opt(
                "pinned_sha256",
                &t.pinned_sha256,
                "0000000000000000000000000000000000000000000000000000000000000000"
            ),
        ));
        s.push_str(
            "[partners]\n\
             # Partner certificates: <dir>/<party id>.crt (or .pem, .cer, .der). The file name\n\
             # is the partner's party id: partners/bob.crt is party \"bob\".\n\
             # `layersec partners add <id> <certificate>` puts one there.\n\
             dir = \"partners\"\n\n",
        );
        s.push_str(&format!(
            "[defaults]\n\
             # The ebMS Service and Action of what we send, unless given for one document.\n\
             service = {}\n\
             action = {}\n\
             # agreement_ref = \"urn:example:agreement\"\n\n",
            q(DEFAULT_SERVICE),
            q(DEFAULT_ACTION)
        ));
        s.push_str(
            "[folders]\n\
             # Put a document in outbox/<partner id>/ to send it to that partner (write it\n\
             # under a name starting with '.' or ending in .tmp or .part, then rename it).\n\
             outbox = \"outbox\"\n\
             # Sent documents, each with <name>.sent.json (MessageId, receipt).\n\
             sent = \"sent\"\n\
             # Documents that could not be sent, each with <name>.reason.txt.\n\
             failed = \"failed\"\n\
             # Received documents, opened and verified, each with <name>.meta.json.\n\
             inbox = \"inbox\"\n\
             # The client's journal: keep it (and keep it on the same file system as outbox).\n\
             state = \"state\"\n\
             # Documents are written readable by us only (0600, folders 0700). With true: also\n\
             # by the folders' group (0640, folders 2750): chgrp the folders to that group.\n\
             group_readable = false\n\n\
             [polling]\n\
             # How often to pull documents for us from the service.\n\
             interval_secs = 60\n\
             # Waits are varied by up to this many percent.\n\
             jitter_percent = 10\n\n\
             [retry]\n\
             # A send that failed for a passing reason (service unreachable, HTTP 5xx) is\n\
             # retried after initial_secs, doubling up to max_secs; after max_attempts the\n\
             # document goes to failed/.\n\
             initial_secs = 30\n\
             max_secs = 3600\n\
             max_attempts = 48\n\n\
             [policy]\n\
             # Accept documents partners encrypted with legacy ciphers (AES-CBC, 3DES, RSA\n\
             # PKCS#1 v1.5 key transport). false: AES-GCM only, other documents are refused.\n\
             accept_legacy_ciphers = false\n\
             # Compress documents before sealing: \"auto\" (unless already compressed),\n\
             # \"never\" or \"always\".\n\
             compress = \"auto\"\n\
             # \"aes-256-gcm\", or \"aes-256-cbc\" for partners that cannot read it (a Layer\n\
             # Security partner then needs accept_legacy_ciphers = true).\n\
             cipher = \"aes-256-gcm\"\n\n\
             [limits]\n\
             # The largest document we accept (as opened, after decompression). Give the same\n\
             # number to the service's operator: it is part of our registration there, and\n\
             # the service refuses larger messages for us when they are sent.\n\
             max_document_bytes = 4294967296\n\
             # One poll takes at most this many messages and bytes; the rest comes next poll.\n\
             max_messages_per_poll = 1000\n\
             max_bytes_per_poll = 8589934592\n\
             # How long received messages are remembered, so that one offered again is not\n\
             # written twice: at least the service's expire_undelivered_hours.\n\
             remember_delivered_hours = 1440\n\
             # Records kept of messages we could not accept (the oldest go first).\n\
             max_refused_records = 10000\n\
             # A message from a sender that is not our partner waits with the service this\n\
             # long (add the partner meanwhile and it is delivered), then its sender is told,\n\
             # in a signed refusal notice, that it will not be. 0: at once.\n\
             refuse_unknown_after_hours = 72\n\n\
             [receipts]\n\
             # Ask partners for a signed receipt of each document we send (RFC 2634): their end\n\
             # system signs that it received, verified and stored exactly what we sent.\n\
             request = true\n\
             # `layersec status` counts documents still without a receipt after this long.\n\
             warn_after_hours = 24\n\
             # Partners whose software never answers receipts: none is asked of them.\n\
             not_from = []\n",
        );
        s
    }
}

/// What [`Config::template`] fills in. Paths as they should appear in the file (relative to
/// it, or absolute).
#[derive(Clone, Debug)]
pub struct TemplateOptions {
    pub party_id: String,
    pub service_url: String,
    pub key: String,
    pub certificate: String,
    pub service_certificate: String,
    pub password_env: Option<String>,
    pub ca_file: Option<String>,
    pub pinned_sha256: Option<String>,
    /// The key on a PKCS#11 token instead of `key` and `password_env` (`layersec init
    /// --pkcs11`).
    pub token: Option<TokenTemplate>,
}

/// `[identity]` naming a key on a PKCS#11 token, for [`TemplateOptions::token`].
#[derive(Clone, Debug, Default)]
pub struct TokenTemplate {
    pub pkcs11_uri: String,
    pub module: String,
    /// The environment variable of the PIN, or else
    pub pin_env: Option<String>,
    /// the file whose first line is the PIN.
    pub pin_file: Option<String>,
}

impl TemplateOptions {
    /// A template for `party_id` at `service_url` with the usual file names (`identity/key.pem`,
    /// `identity/cert.pem`, `service/service.crt`), a key without password and the system's
    /// TLS trust.
    pub fn new(party_id: &str, service_url: &str) -> TemplateOptions {
        TemplateOptions {
            party_id: party_id.into(),
            service_url: service_url.into(),
            key: "identity/key.pem".into(),
            certificate: "identity/cert.pem".into(),
            service_certificate: "service/service.crt".into(),
            password_env: None,
            ca_file: None,
            pinned_sha256: None,
            token: None,
        }
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if c.is_control() => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::random_hex;
    use std::fs;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn setup() -> Dir {
        let d = std::env::temp_dir().join(format!("ls-cfg-{}", random_hex(6)));
        fs::create_dir_all(d.join("identity")).unwrap();
        fs::create_dir_all(d.join("service")).unwrap();
        for f in [
            "identity/key.pem",
            "identity/cert.pem",
            "service/service.crt",
        ] {
            fs::write(d.join(f), "x").unwrap();
        }
        Dir(d)
    }

    fn minimal() -> String {
        "[party]\nid = \"alice\"\n\n[identity]\nkey = \"identity/key.pem\"\n\
         certificate = \"identity/cert.pem\"\n\n[service]\nurl = \"https://svc.example/as4\"\n\
         service_certificate = \"service/service.crt\"\n"
            .to_string()
    }

    fn err(d: &Dir, text: &str) -> String {
        let p = d.0.join("client.toml");
        fs::write(&p, text).unwrap();
        let e = Config::load(&p).unwrap_err();
        assert_eq!(e.code(), ls_core::ErrorCode::ConfigInvalid, "{e}");
        let m = e.to_string();
        assert!(m.contains(&p.display().to_string()), "{m}");
        m
    }

    fn email(extra: &str) -> String {
        format!(
            "{}\n[transport]\nkind = \"email\"\n\n[email]\nsmtp_url = \"smtps://127.0.0.1:2465\"\n\
             mailbox_url = \"imaps://127.0.0.1:1993/INBOX\"\naddress = \"alice@example.test\"\n\
             service_address = \"service@example.test\"\nusername = \"alice\"\n{extra}",
            minimal().replace("url = \"https://svc.example/as4\"\n", "")
        )
    }

    #[test]
    fn email_settings_are_checked() {
        let d = setup();
        let p = d.0.join("ok.toml");
        fs::write(
            &p,
            email("password_file = \"mail.pw\"\nca_file = \"ca.pem\"\n"),
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.transport.kind, TransportKind::Email);
        let e = c.email.as_ref().unwrap();
        assert_eq!(
            e.password_file.as_deref(),
            Some(d.0.join("mail.pw").as_path())
        );
        assert_eq!(e.ca_file.as_deref(), Some(d.0.join("ca.pem").as_path()));
        assert_eq!(e.receipt_wait_secs, 60);
        assert!(c.service.url.is_empty(), "no HTTPS URL is needed by e-mail");
        for (extra, key) in [
            ("", "email.password_env"),
            (
                "password_env = \"P\"\npassword_file = \"f\"\n",
                "email.password_env",
            ),
            (
                "password = \"hunter2\"\npassword_env = \"P\"\n",
                "email.password",
            ),
        ] {
            let m = err(&d, &email(extra));
            assert!(m.contains(key), "{m}");
            assert!(!m.contains("hunter2"), "{m}");
        }
        let m = err(
            &d,
            &email("password_env = \"P\"\n").replace("smtps://", "imaps://"),
        );
        assert!(m.contains("email.smtp_url"), "{m}");
        let m = err(
            &d,
            &email("password_env = \"P\"\n").replace("imaps://127.0.0.1:1993/INBOX", "smtp://h"),
        );
        assert!(m.contains("email.mailbox_url"), "{m}");
        let m = err(
            &d,
            &email("password_env = \"P\"\n").replace("alice@example.test", "alice"),
        );
        assert!(m.contains("email.address"), "{m}");
        let m = err(
            &d,
            &email("password_env = \"P\"\n").replace("smtps://127.0.0.1", "smtps://u:pw@127.0.0.1"),
        );
        assert!(m.contains("email.smtp_url") && !m.contains("pw@"), "{m}");
        let m = err(&d, &(minimal() + "\n[transport]\nkind = \"email\"\n"));
        assert!(m.contains("email: an [email] section"), "{m}");
        let m = err(&d, &(minimal() + "\n[transport]\nkind = \"pigeon\"\n"));
        assert!(m.contains("transport.kind"), "{m}");
    }

    #[test]
    fn further_service_nodes_are_checked_like_the_url() {
        let d = setup();
        let p = d.0.join("ok.toml");
        let with =
            |urls: &str| minimal().replace("[service]\n", &format!("[service]\nurls = {urls}\n"));
        fs::write(
            &p,
            with(r#"["https://b.example/as4", "https://c.example:8443/as4"]"#),
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(
            c.service.nodes(),
            [
                "https://svc.example/as4",
                "https://b.example/as4",
                "https://c.example:8443/as4"
            ]
        );
        // Without `urls`: the one node.
        fs::write(&p, minimal()).unwrap();
        assert_eq!(
            Config::load(&p).unwrap().service.nodes(),
            ["https://svc.example/as4"]
        );
        // `urls` alone: its first is the primary.
        let alone = with(r#"["https://a.example/as4", "https://b.example/as4"]"#)
            .replace("url = \"https://svc.example/as4\"\n", "");
        fs::write(&p, &alone).unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.service.url, "https://a.example/as4");
        assert_eq!(c.service.urls, ["https://b.example/as4"]);
        assert_eq!(c.service.nodes().len(), 2);
        for (urls, key, what) in [
            (
                r#"["https://b/as4", "http://c/as4"]"#,
                "service.urls[1]",
                "an https:// URL",
            ),
            (r#"["ftp://b/as4"]"#, "service.urls[0]", "an https:// URL"),
            (
                r#"["https://u:hunter2@b/as4"]"#,
                "service.urls[0]",
                "password",
            ),
            (r#"["https:///as4"]"#, "service.urls[0]", "a host"),
            (
                r#"["https://b/as4", "https://B/as4"]"#,
                "service.urls[1]",
                "service.urls[0]",
            ),
            (
                r#"["https://svc.example/as4"]"#,
                "service.urls[0]",
                "service.url",
            ),
            (r#"[""]"#, "service.urls[0]", "an https:// URL"),
            (r#""https://b/as4""#, "service.urls", "sequence"),
        ] {
            let m = err(&d, &with(urls));
            assert!(
                m.contains(&format!("{key}:")) && m.contains(what),
                "{urls}: {m}"
            );
            assert!(!m.contains("hunter2"), "{m}");
        }
        // The primary is held to the same rules.
        let m = err(
            &d,
            &minimal().replace("https://svc", "https://u:hunter2@svc"),
        );
        assert!(m.contains("service.url:") && !m.contains("hunter2"), "{m}");
        // Plain http only with allow_plain_http, for every node.
        let plain = with(r#"["http://b/as4"]"#)
            .replace("[service]\n", "[service]\nallow_plain_http = true\n");
        fs::write(&p, plain).unwrap();
        assert_eq!(Config::load(&p).unwrap().service.nodes().len(), 2);
        // E-mail needs none.
        fs::write(&p, email("password_env = \"P\"\n")).unwrap();
        assert!(Config::load(&p).unwrap().service.nodes().is_empty());
    }

    #[test]
    fn the_minimum_rates_grace_is_bounded() {
        let d = setup();
        let m = err(
            &d,
            &format!("{}min_rate_grace_secs = 18446744073709551615\n", minimal()),
        );
        assert!(m.contains("min_rate_grace_secs"), "{m}");
        let p = d.0.join("ok.toml");
        fs::write(&p, format!("{}min_rate_grace_secs = 86400\n", minimal())).unwrap();
        assert_eq!(
            Config::load(&p).unwrap().service.min_rate_grace_secs,
            86_400
        );
    }

    #[test]
    fn template_loads_and_paths_are_relative_to_the_file() {
        let d = setup();
        let p = d.0.join("client.toml");
        let mut t = TemplateOptions::new("alice \"A\"", "https://svc.example/as4");
        t.pinned_sha256 = Some("ab".repeat(32));
        fs::write(&p, Config::template(&t)).unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.party.id, "alice \"A\"");
        assert_eq!(c.identity.key, d.0.join("identity/key.pem"));
        assert_eq!(c.folders.outbox, d.0.join("outbox"));
        assert_eq!(c.partners.dir, d.0.join("partners"));
        assert_eq!(c.defaults.service, DEFAULT_SERVICE);
        assert_eq!(c.retry.max_attempts, 48);
        // The template states the defaults.
        let d0 = LimitsConfig::default();
        assert_eq!(c.limits.max_document_bytes, d0.max_document_bytes);
        assert_eq!(c.limits.max_messages_per_poll, d0.max_messages_per_poll);
        assert_eq!(c.limits.max_bytes_per_poll, d0.max_bytes_per_poll);
        assert_eq!(
            c.limits.remember_delivered_hours,
            d0.remember_delivered_hours
        );
        assert_eq!(c.limits.max_refused_records, d0.max_refused_records);
        assert_eq!(c.policy.compression(), Compression::Auto);
        assert!(!c.policy.accept_legacy_ciphers);
        assert_eq!(c.service.pinned_sha256.as_deref(), Some(&*"ab".repeat(32)));
        assert!(c.password().unwrap().is_none());
        assert_eq!(c.domain(), "alice--a.layersec");
        // Minimal file: defaults everywhere.
        fs::write(&p, minimal()).unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.polling.interval_secs, 60);
        assert_eq!(c.policy.content_cipher(), ContentCipher::Aes256Gcm);
        assert_eq!(
            c.limits.max_document_bytes,
            ls_core::as4::coordination::DEFAULT_MAX_DOCUMENT_BYTES
        );
        assert!(!c.folders.group_readable);
    }

    #[test]
    fn a_pin_is_taken_as_printed_by_us_or_by_openssl() {
        let d = setup();
        let p = d.0.join("client.toml");
        let with_pin = |pin: &str| {
            minimal().replace(
                "[service]\n",
                &format!("[service]\npinned_sha256 = \"{pin}\"\n"),
            )
        };
        let ours = "ef45".repeat(16);
        let openssl = ["EF", "45"].repeat(16).join(":");
        for pin in [&ours, &openssl] {
            fs::write(&p, with_pin(pin)).unwrap();
            let c = Config::load(&p).unwrap();
            assert_eq!(c.service.pinned_sha256.as_deref(), Some(pin.as_str()));
        }
        for bad in ["abcd", &"zz".repeat(32), &"ab".repeat(33)] {
            let m = err(&d, &with_pin(bad));
            assert!(m.contains("service.pinned_sha256"), "{m}");
        }
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let d = setup();
        let m = err(&d, &(minimal() + "\n[polling]\ninterval = 5\n"));
        assert!(
            m.contains("polling.interval") && m.contains("unknown field"),
            "{m}"
        );
        let m = err(&d, &(minimal() + "\n[polling]\ninterval_secs = \"soon\"\n"));
        assert!(m.contains("polling.interval_secs"), "{m}");
        let m = err(
            &d,
            &minimal().replace("url = \"https://svc.example/as4\"\n", ""),
        );
        assert!(m.contains("service.url") && m.contains("missing"), "{m}");
        let m = err(&d, &minimal().replace("https://", "http://"));
        assert!(m.contains("service.url: an https:// URL"), "{m}");
        let m = err(&d, &minimal().replace("[service]", "[servce]"));
        assert!(m.contains("servce"), "{m}");
        let m = err(
            &d,
            &minimal().replace("[service]", "password = \"hunter2\"\n[service]"),
        );
        assert!(m.contains("identity.password:"), "{m}");
        assert!(!m.contains("hunter2"), "{m}");
        let m = err(
            &d,
            &minimal().replace("identity/key.pem", "identity/nope.pem"),
        );
        assert!(m.contains("identity.key:") && m.contains("nope.pem"), "{m}");
        let m = err(
            &d,
            &(minimal() + "\n[retry]\ninitial_secs = 60\nmax_secs = 10\n"),
        );
        assert!(m.contains("retry.max_secs"), "{m}");
        let m = err(&d, &(minimal() + "\n[folders]\ninbox = \"outbox\"\n"));
        assert!(m.contains("folders.inbox"), "{m}");
        let m = err(&d, &(minimal() + "\n[policy]\ncipher = \"des\"\n"));
        assert!(m.contains("policy.cipher"), "{m}");
        let m = err(&d, &(minimal() + "\n[limits]\nmax_document_bytes = 10\n"));
        assert!(m.contains("limits.max_document_bytes"), "{m}");
        let m = err(
            &d,
            &(minimal()
                + "\n[limits]\nmax_document_bytes = 2000000\nmax_bytes_per_poll = 1000000\n"),
        );
        assert!(m.contains("limits.max_bytes_per_poll"), "{m}");
        let m = err(
            &d,
            &(minimal() + "\n[limits]\nremember_delivered_hours = 1\n"),
        );
        assert!(m.contains("limits.remember_delivered_hours"), "{m}");
        let m = err(&d, "[party\nid = 1");
        assert!(m.contains("line"), "{m}");
        let p = d.0.join("missing.toml");
        let e = Config::load(&p).unwrap_err();
        assert!(e.to_string().contains("missing.toml"), "{e}");
    }

    /// `minimal()` with the key on a token: `extra` goes into `[identity]`.
    fn token(extra: &str) -> String {
        minimal().replace(
            "key = \"identity/key.pem\"\n",
            &format!(
                "pkcs11_uri = \"pkcs11:token=t1;object=k1;type=private?module-path=/x.so\"\n\
                 module = \"lib/p11.so\"\n{extra}"
            ),
        )
    }

    #[test]
    fn identity_on_a_token() {
        let d = setup();
        fs::create_dir_all(d.0.join("lib")).unwrap();
        fs::write(d.0.join("lib/p11.so"), "x").unwrap();
        let p = d.0.join("client.toml");
        let var = format!("LS_TEST_PIN_{}", random_hex(4).to_uppercase());
        fs::write(&p, token(&format!("pin_env = \"{var}\"\n"))).unwrap();
        let c = Config::load(&p).unwrap();
        assert!(c.key_on_token());
        assert!(c.identity.key.as_os_str().is_empty(), "no key file");
        assert_eq!(
            c.identity.module.as_deref(),
            Some(d.0.join("lib/p11.so").as_path())
        );
        assert_eq!(c.key_location(), "pkcs11:token=t1;object=k1;type=private");
        assert!(c.password().unwrap().is_none());
        // A missing PIN variable: a clear error naming the file, the key and the variable.
        let e = c.pin().unwrap_err();
        assert_eq!(e.code(), ls_core::ErrorCode::ConfigInvalid, "{e}");
        let m = e.to_string();
        assert!(
            m.contains(&p.display().to_string())
                && m.contains("identity.pin_env")
                && m.contains(&var),
            "{m}"
        );
        // Loading the identity stops at the missing PIN, before the module is opened.
        let e = c.load_identity(None).unwrap_err();
        assert!(e.to_string().contains("identity.pin_env"), "{e}");
        std::env::set_var(&var, "123456");
        assert_eq!(
            c.pin().unwrap().as_deref().map(String::as_str),
            Some("123456")
        );
        std::env::remove_var(&var);
        // The PIN from a file's first line; certificate may be left out.
        fs::write(d.0.join("pin"), "654321\nignored\n").unwrap();
        fs::write(
            &p,
            token("pin_file = \"pin\"\n").replace("certificate = \"identity/cert.pem\"\n", ""),
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert!(c.identity.certificate.is_none());
        assert_eq!(
            c.pin().unwrap().as_deref().map(String::as_str),
            Some("654321")
        );
        // The file form is unchanged, and says where its key is.
        fs::write(&p, minimal()).unwrap();
        let c = Config::load(&p).unwrap();
        assert!(!c.key_on_token());
        assert!(c.pin().unwrap().is_none());
        assert_eq!(
            c.key_location(),
            d.0.join("identity/key.pem").display().to_string()
        );
    }

    #[test]
    fn token_settings_are_checked() {
        // The rules shared with the service are ls-core's (`TokenSettings`, tested there);
        // here, that the client applies them, with paths from its folder and messages naming
        // the file and key, and its own (rollover, TLS client key).
        let d = setup();
        fs::create_dir_all(d.0.join("lib")).unwrap();
        fs::write(d.0.join("lib/p11.so"), "x").unwrap();
        fs::write(d.0.join("pin"), "1\n").unwrap();
        for (text, key, says) in [
            (
                token("pin_env = \"P\"\nkey = \"identity/key.pem\"\n"),
                "identity.key:",
                "not both",
            ),
            (token("pin = \"hunter2\"\n"), "identity.pin:", "never kept"),
            (
                token("pin_file = \"nope\"\n"),
                "identity.pin_file:",
                "not a readable file",
            ),
            (
                token("pin_env = \"P\"\n").replace("pkcs11:token", "pkcs12:token"),
                "identity.pkcs11_uri:",
                "pkcs11:",
            ),
            (
                token("pin_env = \"P\"\nauto_rollover_days = 30\n"),
                "identity.auto_rollover_days:",
                "layersec rollover",
            ),
            (
                token("pin_env = \"P\"\n").replace(
                    "service_certificate",
                    "client_certificate = \"identity/cert.pem\"\nclient_key = \
                     \"identity/key.pem\"\nservice_certificate",
                ),
                "service.client_key:",
                "PKCS#11",
            ),
            (
                minimal().replace("[service]", "module = \"lib/p11.so\"\n[service]"),
                "identity.module:",
                "only with pkcs11_uri",
            ),
            (
                minimal().replace("key = \"identity/key.pem\"\n", ""),
                "identity.key:",
                "missing",
            ),
        ] {
            let m = err(&d, &text);
            assert!(m.contains(key) && m.contains(says), "{key}: {m}");
            assert!(!m.contains("hunter2"), "{m}");
        }
    }

    #[test]
    fn password_from_env_or_file() {
        let d = setup();
        let p = d.0.join("client.toml");
        let var = format!("LS_TEST_PW_{}", random_hex(4).to_uppercase());
        fs::write(
            &p,
            minimal().replace("[service]", &format!("password_env = \"{var}\"\n[service]")),
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        let e = c.password().unwrap_err();
        assert!(e.to_string().contains(&var), "{e}");
        std::env::set_var(&var, "s3cret");
        assert_eq!(
            c.password().unwrap().as_deref().map(String::as_str),
            Some("s3cret")
        );
        fs::write(d.0.join("pw"), "filepw\nignored\n").unwrap();
        fs::write(
            &p,
            minimal().replace("[service]", "password_file = \"pw\"\n[service]"),
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(
            c.password().unwrap().as_deref().map(String::as_str),
            Some("filepw")
        );
    }
}
