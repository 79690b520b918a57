//! The service's one TOML configuration file. Relative paths are relative to the file's folder.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub service: ServiceSection,
    pub tls: TlsSection,
    pub identity: IdentitySection,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub delivery: DeliverySection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub enrolment: EnrolmentSection,
    /// The e-mail gateway (SOAP over e-mail); absent: none.
    pub email: Option<EmailSection>,
    /// The folder of the configuration file; relative paths start there.
    #[serde(skip)]
    pub base: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// Address of the AS4 endpoint, e.g. "127.0.0.1:8443".
    pub listen: String,
    /// The domain of the MessageIds the service makes (receipts, errors).
    #[serde(default = "default_domain")]
    pub domain: String,
    /// On SIGTERM/SIGINT: how long requests in progress may take to finish before their
    /// connections are cut.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
}

fn default_shutdown_grace() -> u64 {
    30
}

fn default_domain() -> String {
    "layersec.local".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate (chain) and unencrypted PEM key of the endpoint.
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// PEM CA certificates for client certificates (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Refuse connections without a client certificate (needs `client_ca`).
    #[serde(default)]
    pub require_client_certificate: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// The key and certificate that sign receipts and error signals. `key` is empty when the
    /// key is on a PKCS#11 token (`pkcs11_uri`); it must then be left out.
    #[serde(default)]
    pub key: PathBuf,
    /// The certificate file; with `pkcs11_uri` it may be left out, and the token's certificate
    /// object (same label/id as the key) is used.
    pub certificate: Option<PathBuf>,
    /// Environment variable or file holding the key's password (never the password itself).
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// The key on a PKCS#11 token: an RFC 7512 `pkcs11:` URI (a `pin-value` in it is refused
    /// by the core). Instead of `key` and the password settings.
    pub pkcs11_uri: Option<String>,
    /// The PKCS#11 module (wins over a `module-path` in the URI).
    pub module: Option<PathBuf>,
    /// The environment variable that holds the token's PIN.
    pub pin_env: Option<String>,
    /// A file whose first line is the token's PIN.
    pub pin_file: Option<PathBuf>,
    /// Only to refuse it with a clear message: a PIN is never kept in this file.
    #[serde(default)]
    pin: Option<serde::de::IgnoredAny>,
}

/// A `pkcs11:` URI without its query (no module path, never a PIN), for messages.
pub use ls_core::keys::pkcs11::without_query;

/// Why the signing identity on a token could not be loaded.
#[derive(Debug)]
pub enum TokenLoadError {
    /// The configuration (a PIN variable not set, a file not readable): the message names the
    /// key.
    Config(String),
    /// The token's answer (wrong PIN, token absent or module missing, key not found): the
    /// message names `identity.pkcs11_uri`, and the core's error.
    Token(String, ls_core::Error),
}

impl std::fmt::Display for TokenLoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenLoadError::Config(m) | TokenLoadError::Token(m, _) => f.write_str(m),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// "sqlite" (embedded, the default) or "postgres" (several nodes on one database).
    #[serde(default = "default_store_kind")]
    pub kind: String,
    /// Folder of the embedded store; with PostgreSQL, the node's local folder for bodies being
    /// received or handed out (spool files, never the only copy of an accepted message).
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// Bodies up to this size are kept in the message's row, larger ones in synced files
    /// (SQLite) or in chunks of 1 MiB (PostgreSQL).
    #[serde(default = "default_inline_max")]
    pub inline_max_bytes: usize,
    /// PostgreSQL: `postgres://user@host:port/database` (or libpq's `host=… user=…`), never
    /// with a password in it.
    pub url: Option<String>,
    /// PostgreSQL: the environment variable or file holding the password (at most one; none:
    /// a password-less method such as a client certificate or `trust`).
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: "require" (the default), "prefer" (TLS when offered: only for a database on
    /// this machine, a man in the middle can say it offers none) or "disable"; a TLS
    /// connection is always verified (the server's certificate and host name, as libpq's
    /// verify-full).
    #[serde(default = "default_store_tls")]
    pub tls: String,
    /// PostgreSQL: PEM CA certificates the database's certificate must chain to (none: the
    /// system's trust store).
    pub ca_file: Option<PathBuf>,
    /// PostgreSQL: connections this node opens at most.
    #[serde(default = "default_store_connections")]
    pub max_connections: usize,
}

fn default_store_kind() -> String {
    "sqlite".into()
}
fn default_store_path() -> PathBuf {
    "data".into()
}
fn default_inline_max() -> usize {
    256 * 1024
}
fn default_store_tls() -> String {
    "require".into()
}
fn default_store_connections() -> usize {
    16
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            kind: default_store_kind(),
            path: default_store_path(),
            inline_max_bytes: default_inline_max(),
            url: None,
            password_env: None,
            password_file: None,
            tls: default_store_tls(),
            ca_file: None,
            max_connections: default_store_connections(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySection {
    /// A pulled message not receipted within this time is offered again.
    #[serde(default = "default_redeliver")]
    pub redeliver_after_secs: u64,
    /// Delivered messages are purged after this time.
    #[serde(default = "default_keep_delivered")]
    pub keep_delivered_hours: u64,
    /// Undelivered messages expire (with a record) after this time.
    #[serde(default = "default_expire")]
    pub expire_undelivered_hours: u64,
    /// How often retention runs.
    #[serde(default = "default_purge_interval")]
    pub purge_interval_secs: u64,
    /// Records of finished messages (purged, expired or failed) are removed this long after
    /// the message was received. Until then a re-sent message is recognised as a duplicate.
    #[serde(default = "default_keep_records")]
    pub keep_records_hours: u64,
}

fn default_redeliver() -> u64 {
    300
}
fn default_keep_delivered() -> u64 {
    7 * 24
}
fn default_expire() -> u64 {
    30 * 24
}
fn default_purge_interval() -> u64 {
    600
}
fn default_keep_records() -> u64 {
    30 * 24
}

impl Default for DeliverySection {
    fn default() -> Self {
        DeliverySection {
            redeliver_after_secs: default_redeliver(),
            keep_delivered_hours: default_keep_delivered(),
            expire_undelivered_hours: default_expire(),
            purge_interval_secs: default_purge_interval(),
            keep_records_hours: default_keep_records(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: usize,
    #[serde(default = "default_max_message")]
    pub max_message_bytes: u64,
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// The longest wait for more of a request body (the idle limit of a body).
    #[serde(default)]
    pub body_idle_timeout_secs: Option<u64>,
    /// Deprecated: the name `body_idle_timeout_secs` had before bodies were streamed, when it
    /// bounded the whole body. Read as `body_idle_timeout_secs` when that is not given.
    #[serde(default)]
    pub body_timeout_secs: Option<u64>,
    /// The slowest a request body may arrive and a response be taken, on average, once
    /// `min_rate_grace_secs` have passed (0: no minimum).
    #[serde(default = "default_min_rate")]
    pub min_rate_bytes_per_sec: u64,
    #[serde(default = "default_min_rate_grace")]
    pub min_rate_grace_secs: u64,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Free bytes the store's file system keeps: a push that would leave less is refused with
    /// HTTP 503 (transient), so that pulls, receipts and retention, which free space, go on.
    #[serde(default = "default_min_free")]
    pub min_free_bytes: u64,
    /// Bytes of undelivered messages the parties of one subscriber may have waiting (0: no
    /// quota); more is refused with the ebMS error LS:0002.
    #[serde(default = "default_max_queued")]
    pub max_queued_bytes_per_subscriber: u64,
    /// Requests each registered party may make of the partner directory
    /// (`POST /directory/<party id>`) per minute; more get HTTP 429. 0: no directory.
    #[serde(default = "default_directory_per_minute")]
    pub directory_requests_per_minute: u32,
}

fn default_max_connections() -> usize {
    20_000
}
fn default_max_connections_per_address() -> usize {
    128
}
/// A message carrying a document of the clients' default limit: 4 GiB and the overhead.
pub fn default_max_message() -> u64 {
    ls_core::as4::coordination::message_limit_for(
        ls_core::as4::coordination::DEFAULT_MAX_DOCUMENT_BYTES,
    )
}
fn default_header_timeout() -> u64 {
    10
}
/// The default idle limit of a body (`limits.body_idle_timeout_secs`).
pub const DEFAULT_BODY_IDLE_TIMEOUT_SECS: u64 = 60;
/// The largest `limits.min_rate_grace_secs` (a day): deadlines computed from it must not
/// overflow.
pub const MAX_MIN_RATE_GRACE_SECS: u64 = 86_400;
fn default_min_rate() -> u64 {
    16 * 1024
}
fn default_min_rate_grace() -> u64 {
    30
}
fn default_idle_timeout() -> u64 {
    30
}
fn default_min_free() -> u64 {
    256 * 1024 * 1024
}
fn default_max_queued() -> u64 {
    10 * 1024 * 1024 * 1024
}
fn default_directory_per_minute() -> u32 {
    60
}

impl LimitsSection {
    /// `body_idle_timeout_secs`, or the deprecated `body_timeout_secs`, or the default.
    pub fn body_idle_timeout(&self) -> u64 {
        self.body_idle_timeout_secs
            .or(self.body_timeout_secs)
            .unwrap_or(DEFAULT_BODY_IDLE_TIMEOUT_SECS)
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_connections_per_address(),
            max_message_bytes: default_max_message(),
            header_timeout_secs: default_header_timeout(),
            body_idle_timeout_secs: None,
            body_timeout_secs: None,
            min_rate_bytes_per_sec: default_min_rate(),
            min_rate_grace_secs: default_min_rate_grace(),
            idle_timeout_secs: default_idle_timeout(),
            min_free_bytes: default_min_free(),
            max_queued_bytes_per_subscriber: default_max_queued(),
            directory_requests_per_minute: default_directory_per_minute(),
        }
    }
}

/// Installation with enrolment codes (`POST /enrol` on the AS4 port): how many failed attempts
/// lock out a client address or an account, and for how long.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentSection {
    /// Failed attempts from one client address (IPv6: its /64) within `lockout_secs` of the
    /// first; then the address is refused until that time has passed.
    #[serde(default = "default_enrol_per_address")]
    pub max_failures_per_address: u32,
    /// Failed attempts with a wrong, used, expired or revoked code for the party ids of one
    /// account, from anywhere, within `lockout_secs`; then the account's enrolments are refused
    /// until that time has passed.
    #[serde(default = "default_enrol_per_account")]
    pub max_failures_per_account: u32,
    #[serde(default = "default_enrol_lockout")]
    pub lockout_secs: u64,
}

fn default_enrol_per_address() -> u32 {
    10
}
fn default_enrol_per_account() -> u32 {
    20
}
fn default_enrol_lockout() -> u64 {
    900
}

impl Default for EnrolmentSection {
    fn default() -> Self {
        EnrolmentSection {
            max_failures_per_address: default_enrol_per_address(),
            max_failures_per_account: default_enrol_per_account(),
            lockout_secs: default_enrol_lockout(),
        }
    }
}

/// The e-mail gateway: the service reads AS4 messages from its intake mailbox (IMAP) and
/// handles each as a push, mails the answers, and submits by SMTP the messages waiting for
/// parties registered with a mail address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    /// The submission server: `smtp://host[:port]` (STARTTLS required) or `smtps://`.
    pub smtp_url: String,
    /// The intake mailbox: `imap://host[:port][/folder]` (STARTTLS required) or `imaps://`.
    /// POP3 is refused: the intake needs UIDs and moving mails aside.
    pub mailbox_url: String,
    /// The service's own mail address: the From of its mails, where parties send.
    pub address: String,
    /// The user name on both servers.
    pub username: String,
    /// Environment variable or file holding the password (exactly one; never the password
    /// itself).
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Trust for both servers' TLS certificates: a CA file (PEM), or the pinned SHA-256 of the
    /// server's certificate; neither: the system's trust store.
    pub ca_file: Option<PathBuf>,
    pub pinned_sha256: Option<String>,
    /// How often the mailbox is looked at when the server does not announce new mail (IMAP
    /// IDLE), and how often the deliveries by mail are looked for.
    #[serde(default = "default_email_poll")]
    pub poll_secs: u64,
    /// A message submitted by mail stays leased this long waiting for its recipient's receipt
    /// mail; then it is submitted again.
    #[serde(default = "default_email_redeliver")]
    pub redeliver_after_secs: u64,
    /// The folder mails that are not AS4 messages (and bounces) are moved to.
    #[serde(default = "default_set_aside_folder")]
    pub set_aside_folder: String,
    /// The largest mail read or sent (a message in base64, 4/3 of its size, and its header);
    /// default [`DEFAULT_MAIL_BYTES`] (64 MiB), as the client's.
    pub max_mail_bytes: Option<u64>,
}

fn default_email_poll() -> u64 {
    5
}
fn default_email_redeliver() -> u64 {
    900
}
fn default_set_aside_folder() -> String {
    "layersec-not-as4".into()
}

/// The longest `email.poll_secs` (an hour).
pub const MAX_EMAIL_POLL_SECS: u64 = 3600;
/// The smallest `email.max_mail_bytes`: a signed receipt must fit.
pub const MIN_MAIL_BYTES: u64 = 64 * 1024;
/// The default `email.max_mail_bytes` (64 MiB, the client's default too): mail systems rarely
/// take more, and a mail is held in memory whole. Not derived from `limits.max_message_bytes`
/// (4 GiB by default: a mail of that size would be read whole, in base64, several times).
pub const DEFAULT_MAIL_BYTES: u64 = 64 << 20;

impl EmailSection {
    /// Check what can be checked without reading files or the environment. Errors name the
    /// key: `email.<key>: <what is expected>`.
    pub fn check(&self) -> Result<(), String> {
        use ls_core::mail::{MailUrl, Scheme};
        let smtp = MailUrl::parse(&self.smtp_url)
            .map_err(|e| format!("email.smtp_url: {}", core_message(&e)))?;
        if !matches!(smtp.scheme, Scheme::Smtp | Scheme::Smtps) {
            return Err(format!(
                "email.smtp_url = {:?}: expected smtp://host[:port] (STARTTLS) or \
                 smtps://host[:port]",
                self.smtp_url
            ));
        }
        let mailbox = MailUrl::parse(&self.mailbox_url)
            .map_err(|e| format!("email.mailbox_url: {}", core_message(&e)))?;
        match mailbox.scheme {
            Scheme::Imap | Scheme::Imaps => {}
            Scheme::Pop3 | Scheme::Pop3s => {
                return Err(format!(
                    "email.mailbox_url = {:?}: POP3 cannot be the service's intake (it needs \
                     IMAP: stable UIDs, and moving mails that are not AS4 messages aside); use \
                     imap:// or imaps://",
                    self.mailbox_url
                ))
            }
            Scheme::Smtp | Scheme::Smtps => {
                return Err(format!(
                    "email.mailbox_url = {:?}: expected imap://host[:port][/folder] or \
                     imaps://…",
                    self.mailbox_url
                ))
            }
        }
        crate::store::check_mail_address(&self.address)
            .map_err(|e| format!("email.address: {e}"))?;
        if self.username.is_empty() || self.username.chars().any(char::is_control) {
            return Err("email.username: expected the user name on the mail servers".into());
        }
        match (&self.password_env, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err(
                    "email.password_env, email.password_file: give one of them, not both".into(),
                )
            }
            (None, None) => {
                return Err("email.password_env or email.password_file: where the mail \
                            password comes from is required (never the password itself)"
                    .into())
            }
            (Some(v), None) if v.is_empty() => {
                return Err("email.password_env: expected an environment variable's name".into())
            }
            _ => {}
        }
        match (&self.ca_file, &self.pinned_sha256) {
            (Some(_), Some(_)) => {
                return Err("email.ca_file, email.pinned_sha256: give one of them, not both".into())
            }
            (None, Some(pin)) if ls_core::bytes::parse_sha256(pin).is_none() => {
                return Err(format!(
                    "email.pinned_sha256 = {pin:?}: expected the hex SHA-256 of the server's \
                     certificate"
                ))
            }
            _ => {}
        }
        if self.poll_secs == 0 || self.poll_secs > MAX_EMAIL_POLL_SECS {
            return Err(format!("email.poll_secs: 1 to {MAX_EMAIL_POLL_SECS}"));
        }
        if self.redeliver_after_secs == 0 {
            return Err("email.redeliver_after_secs: at least 1".into());
        }
        let f = &self.set_aside_folder;
        // The IMAP client's own rule (printable ASCII): a name it would refuse at each mail
        // is refused here, at start.
        if let Err(e) = ls_core::mail::imap::check_folder_name(f) {
            return Err(format!(
                "email.set_aside_folder = {f:?}: {}",
                core_message(&e)
            ));
        }
        if f.trim().is_empty() || f.len() > 200 {
            return Err(format!(
                "email.set_aside_folder = {f:?}: expected a folder name (printable ASCII, at \
                 most 200 characters)"
            ));
        }
        if matches!(self.max_mail_bytes, Some(n) if n < MIN_MAIL_BYTES) {
            return Err(format!("email.max_mail_bytes: at least {MIN_MAIL_BYTES}"));
        }
        Ok(())
    }

    /// `max_mail_bytes`, or its default [`DEFAULT_MAIL_BYTES`].
    pub fn max_mail_bytes(&self) -> u64 {
        self.max_mail_bytes.unwrap_or(DEFAULT_MAIL_BYTES)
    }
}

/// The message of a core error without its kind's prefix where it is an argument error.
fn core_message(e: &ls_core::Error) -> String {
    match e {
        ls_core::Error::InvalidArgument(m) => m.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address of the admin HTTP API (plain HTTP: keep it on loopback). None: no admin API.
    pub listen: Option<String>,
    /// File holding the bearer token the admin API requires.
    pub token_file: Option<PathBuf>,
}

impl Config {
    /// Read and check the file. Errors name the file and the key.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the configuration: {e}", path.display()))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&text, &base).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Read and check the text of a configuration file in folder `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, String> {
        let mut c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        c.base = base.to_path_buf();
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), String> {
        self.check_store()?;
        self.check_identity()?;
        if self.tls.require_client_certificate && self.tls.client_ca.is_none() {
            return Err("tls.require_client_certificate needs tls.client_ca".into());
        }
        if self.admin.listen.is_some() && self.admin.token_file.is_none() {
            return Err(
                "admin.listen needs admin.token_file (the admin API always asks for a token)"
                    .into(),
            );
        }
        if self.limits.max_connections == 0 {
            return Err("limits.max_connections must be at least 1".into());
        }
        if self.limits.max_connections_per_address == 0 {
            return Err("limits.max_connections_per_address must be at least 1".into());
        }
        if let (Some(new), Some(old)) = (
            self.limits.body_idle_timeout_secs,
            self.limits.body_timeout_secs,
        ) {
            if new != old {
                return Err(format!(
                    "limits.body_timeout_secs = {old} is the deprecated name of \
                     limits.body_idle_timeout_secs = {new}: give only one"
                ));
            }
        }
        if self.limits.body_idle_timeout() == 0 {
            return Err("limits.body_idle_timeout_secs must be at least 1".into());
        }
        // Deadlines are instants: an unbounded grace would overflow them.
        if self.limits.min_rate_grace_secs > MAX_MIN_RATE_GRACE_SECS {
            return Err(format!(
                "limits.min_rate_grace_secs: at most {MAX_MIN_RATE_GRACE_SECS} (a day)"
            ));
        }
        let e = &self.enrolment;
        if e.max_failures_per_address == 0 || e.max_failures_per_account == 0 {
            return Err(
                "enrolment.max_failures_per_address and max_failures_per_account must be at \
                 least 1"
                    .into(),
            );
        }
        if e.lockout_secs == 0 || e.lockout_secs > 7 * 24 * 3600 {
            return Err("enrolment.lockout_secs: 1 to 604800 (a week)".into());
        }
        if self.delivery.redeliver_after_secs == 0 {
            return Err("delivery.redeliver_after_secs must be at least 1".into());
        }
        if let Some(email) = &self.email {
            email.check()?;
        }
        if self.service.domain.is_empty() || self.service.domain.contains(['<', '>', ' ']) {
            return Err(format!(
                "service.domain = {:?}: expected a domain name",
                self.service.domain
            ));
        }
        Ok(())
    }

    /// `p` relative to the configuration's folder.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    pub fn http_limits(&self) -> crate::http::Limits {
        crate::http::Limits {
            max_connections: self.limits.max_connections,
            max_connections_per_address: self.limits.max_connections_per_address,
            max_body_bytes: self.limits.max_message_bytes,
            // The TLS handshake too, as documented.
            handshake_timeout: Duration::from_secs(self.limits.header_timeout_secs),
            header_timeout: Duration::from_secs(self.limits.header_timeout_secs),
            body_idle_timeout: Duration::from_secs(self.limits.body_idle_timeout()),
            min_rate: crate::http::MinRate {
                bytes_per_sec: self.limits.min_rate_bytes_per_sec,
                grace: Duration::from_secs(self.limits.min_rate_grace_secs),
            },
            idle_timeout: Duration::from_secs(self.limits.idle_timeout_secs),
            shutdown_grace: Duration::from_secs(self.service.shutdown_grace_secs),
            ..Default::default()
        }
    }

    /// What pushes are held to besides the recipient's limit.
    pub fn accept_limits(&self) -> crate::store::AcceptLimits {
        crate::store::AcceptLimits {
            min_free_bytes: self.limits.min_free_bytes,
            max_queued_bytes_per_subscriber: self.limits.max_queued_bytes_per_subscriber,
        }
    }

    /// The key's password, from the environment variable or file the configuration names.
    /// The password of the signing key, wiped from memory when dropped.
    pub fn identity_password(&self) -> Result<Option<Zeroizing<String>>, String> {
        if let Some(var) = &self.identity.password_env {
            return std::env::var(var)
                .map(|v| Some(Zeroizing::new(v)))
                .map_err(|_| {
                    format!("identity.password_env: the environment variable {var} is not set")
                });
        }
        if let Some(f) = &self.identity.password_file {
            let p = self.path(f);
            let s = Zeroizing::new(
                std::fs::read_to_string(&p)
                    .map_err(|e| format!("identity.password_file: {}: {e}", p.display()))?,
            );
            return Ok(Some(Zeroizing::new(
                s.trim_end_matches(['\r', '\n']).to_string(),
            )));
        }
        Ok(None)
    }
}

impl Config {
    /// `[identity]`: a key file (`key`, with `password_env`/`password_file` when encrypted) or
    /// a key on a PKCS#11 token (`pkcs11_uri`, `module`, `pin_env`/`pin_file`), never both, and
    /// never a PIN in this file. The same rules and messages as the client's `[identity]`.
    fn check_identity(&self) -> Result<(), String> {
        let pin_file = self.identity.pin_file.as_ref().map(|p| self.path(p));
        self.token_settings(pin_file.as_deref())
            .check()
            .map_err(|e| e.to_string())?;
        if self.identity.pkcs11_uri.is_none() && self.identity.key.as_os_str().is_empty() {
            return Err(
                "identity.key: missing (a key file, or pkcs11_uri for a key on a token)".into(),
            );
        }
        Ok(())
    }

    /// `[identity]`'s settings of a key on a token (`pin_file` resolved by the caller), for the
    /// rules and the PIN the service and the client share
    /// (`ls_core::keys::pkcs11::TokenSettings`).
    fn token_settings<'a>(
        &'a self,
        pin_file: Option<&'a Path>,
    ) -> ls_core::keys::pkcs11::TokenSettings<'a> {
        let id = &self.identity;
        ls_core::keys::pkcs11::TokenSettings {
            pkcs11_uri: id.pkcs11_uri.as_deref(),
            module: id.module.as_deref(),
            pin_env: id.pin_env.as_deref(),
            pin_file,
            pin_given: id.pin.is_some(),
            key_given: !id.key.as_os_str().is_empty(),
            password_env_given: id.password_env.is_some(),
            password_file_given: id.password_file.is_some(),
        }
    }

    /// Whether the service's signing key is on a PKCS#11 token (`[identity] pkcs11_uri`).
    pub fn key_on_token(&self) -> bool {
        self.identity.pkcs11_uri.is_some()
    }

    /// Where the signing key is, for `admin service show` and the start-up log: the key file,
    /// or the token URI without its query (no module path, never a PIN).
    pub fn key_location(&self) -> String {
        match &self.identity.pkcs11_uri {
            Some(uri) => without_query(uri),
            None => self.path(&self.identity.key).display().to_string(),
        }
    }

    /// The token's PIN: from `pin_env` or `pin_file` (its first line), `None` without either
    /// (a token that needs no login). Wiped from memory when dropped.
    pub fn pin(&self) -> Result<Option<Zeroizing<String>>, String> {
        let pin_file = self.identity.pin_file.as_ref().map(|p| self.path(p));
        self.token_settings(pin_file.as_deref())
            .pin()
            .map_err(|e| e.to_string())
    }

    /// The signing identity on the token (`pkcs11_uri`), logged in once with the PIN of
    /// `pin_env`/`pin_file`, with the `certificate` file or else the token's certificate
    /// object. Errors name the configuration key: `Err((key, message))`, and the core's error
    /// when the token answered (wrong PIN, token absent or module missing, key not found).
    pub fn load_token_identity(&self) -> Result<ls_core::Identity, TokenLoadError> {
        let uri = self
            .identity
            .pkcs11_uri
            .as_deref()
            .ok_or_else(|| TokenLoadError::Config("identity.pkcs11_uri: not set".into()))?;
        self.load_token_identity_at(uri, self.identity.certificate.as_deref())
    }

    /// [`Config::load_token_identity`] with the key at `uri` (the configured module and PIN)
    /// and the certificate file `certificate` (relative to the configuration's folder; `None`:
    /// the token's certificate object). A rollover's new key on the token is loaded so.
    pub fn load_token_identity_at(
        &self,
        uri: &str,
        certificate: Option<&Path>,
    ) -> Result<ls_core::Identity, TokenLoadError> {
        let id = &self.identity;
        let pin = self.pin().map_err(TokenLoadError::Config)?;
        let cert = match certificate {
            Some(p) => {
                let p = self.path(p);
                Some(std::fs::read(&p).map_err(|e| {
                    TokenLoadError::Config(format!(
                        "identity.certificate: {} is not readable: {e}",
                        p.display()
                    ))
                })?)
            }
            None => None,
        };
        let module = id.module.as_ref().map(|m| self.path(m));
        ls_core::Identity::from_pkcs11(
            uri.trim(),
            module.as_deref(),
            pin.as_deref().map(String::as_str),
            cert.as_deref(),
        )
        .map_err(|e| {
            TokenLoadError::Token(
                format!(
                    "identity.pkcs11_uri {}: {e} (LS_{})",
                    without_query(uri),
                    e.code().name()
                ),
                e,
            )
        })
    }

    fn check_store(&self) -> Result<(), String> {
        let s = &self.store;
        let pg_keys = [
            ("url", s.url.is_some()),
            ("password_env", s.password_env.is_some()),
            ("password_file", s.password_file.is_some()),
            ("ca_file", s.ca_file.is_some()),
        ];
        match s.kind.as_str() {
            "sqlite" => {
                if let Some((k, _)) = pg_keys.iter().find(|(_, set)| *set) {
                    return Err(format!(
                        "store.{k}: only for kind = \"postgres\" (this store is \"sqlite\")"
                    ));
                }
                Ok(())
            }
            "postgres" => {
                let Some(url) = s.url.as_deref().filter(|u| !u.trim().is_empty()) else {
                    return Err("store.url: required for kind = \"postgres\" (postgres://user@host:port/database)".into());
                };
                if crate::store::postgres::url_has_password(url)
                    .map_err(|e| format!("store.url: {e}"))?
                {
                    return Err(
                        "store.url: holds a password; put it in store.password_env or \
                                store.password_file instead"
                            .into(),
                    );
                }
                if s.password_env.is_some() && s.password_file.is_some() {
                    return Err("store.password_env and store.password_file: name one".into());
                }
                if crate::store::postgres::TlsMode::parse(&s.tls).is_none() {
                    return Err(format!(
                        "store.tls = {:?}: expected \"disable\", \"prefer\" or \"require\"",
                        s.tls
                    ));
                }
                if s.max_connections == 0 {
                    return Err("store.max_connections must be at least 1".into());
                }
                Ok(())
            }
            other => Err(format!(
                "store.kind = {other:?}: expected \"sqlite\" or \"postgres\""
            )),
        }
    }

    /// How to reach the PostgreSQL store, its password read (`None` for SQLite).
    pub fn postgres_options(&self) -> Result<Option<crate::store::postgres::PgOptions>, String> {
        use crate::store::postgres::{PgOptions, TlsMode};
        let s = &self.store;
        if s.kind != "postgres" {
            return Ok(None);
        }
        let password = if let Some(var) = &s.password_env {
            Some(std::env::var(var).map(Zeroizing::new).map_err(|_| {
                format!("store.password_env: the environment variable {var} is not set")
            })?)
        } else if let Some(f) = &s.password_file {
            let p = self.path(f);
            let text = Zeroizing::new(
                std::fs::read_to_string(&p)
                    .map_err(|e| format!("store.password_file: {}: {e}", p.display()))?,
            );
            Some(Zeroizing::new(
                text.trim_end_matches(['\r', '\n']).to_string(),
            ))
        } else {
            None
        };
        Ok(Some(PgOptions {
            url: s.url.clone().unwrap_or_default(),
            password,
            tls: TlsMode::parse(&s.tls).unwrap_or(TlsMode::Require),
            ca_file: s.ca_file.as_ref().map(|p| self.path(p)),
            max_connections: s.max_connections,
            spool_dir: self.path(&s.path),
            inline_max: s.inline_max_bytes,
        }))
    }

    /// The mail password, from the environment variable or file `[email]` names.
    pub fn email_password(&self) -> Result<Zeroizing<String>, String> {
        let Some(e) = &self.email else {
            return Err("email: no [email] section".into());
        };
        if let Some(var) = &e.password_env {
            return std::env::var(var).map(Zeroizing::new).map_err(|_| {
                format!("email.password_env: the environment variable {var} is not set")
            });
        }
        if let Some(f) = &e.password_file {
            let p = self.path(f);
            let s = Zeroizing::new(
                std::fs::read_to_string(&p)
                    .map_err(|e| format!("email.password_file: {}: {e}", p.display()))?,
            );
            return Ok(Zeroizing::new(s.trim_end_matches(['\r', '\n']).to_string()));
        }
        Err("email.password_env or email.password_file: required".into())
    }
}

/// `template`'s text with its `[store]` section naming a PostgreSQL database (`init
/// --store-url`): the password from `password_file` or `password_env`, TLS when the server
/// offers it.
pub fn with_postgres(
    template: &str,
    url: &str,
    password_file: Option<&Path>,
    password_env: Option<&str>,
) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut section = format!(
        "[store]\n\
         # Several service nodes share this PostgreSQL database (docs/SERVER.md, \"A cluster\").\n\
         kind = \"postgres\"\n\
         url = {}\n",
        q(url)
    );
    if let Some(f) = password_file {
        section += &format!("password_file = {}\n", q(&f.display().to_string()));
    }
    if let Some(v) = password_env {
        section += &format!("password_env = {}\n", q(v));
    }
    // TLS required to a database elsewhere (`prefer` falls back to plain text when a man in
    // the middle says the server has none); on this machine, when the server offers it.
    let tls = if crate::store::postgres::is_local(url) {
        "prefer"
    } else {
        "require"
    };
    section +=
        &format!("tls = \"{tls}\"          # disable | prefer | require (always verified)\n");
    section += "# ca_file = \"tls/db-ca.pem\"   # else the system's trust store\n\
                max_connections = 16\n\
                # This node's folder for bodies in transit (spool files).\n\
                path = \"data\"\n\
                inline_max_bytes = 262144  # larger bodies are kept in chunks of 1 MiB\n";
    let start = template
        .find("[store]\n")
        .expect("the template has [store]");
    let end = start
        + template[start..]
            .find("\n\n[")
            .expect("a section follows [store]")
        + 1;
    format!("{}{}{}", &template[..start], section, &template[end..])
}

/// The commented configuration `init` writes.
pub fn template(listen: &str, admin_listen: &str, domain: &str) -> String {
    format!(
        r#"# layersec-server configuration. Relative paths are relative to this file's folder.

[service]
# Where the AS4 endpoint listens (HTTPS). Clients push to and pull from https://<this>/as4
listen = "{listen}"
# Domain of the MessageIds of receipts and errors the service signs.
domain = "{domain}"
# On SIGTERM or SIGINT the service stops accepting, lets requests in progress finish for at
# most this long, then exits 0.
shutdown_grace_secs = 30

[tls]
# The endpoint's certificate (chain) and key, PEM. `init` made a self-signed pair for a first
# run; replace it with one from your CA before clients outside this machine use it.
certificate = "tls/server.crt"
key = "tls/server.key"
# Client certificates (mTLS): trust these CAs, and optionally require a certificate.
# client_ca = "tls/client-ca.pem"
# require_client_certificate = false

[identity]
# The key and certificate that sign receipts and error signals. Clients pin this certificate.
key = "identity/service.key"
certificate = "identity/service.crt"
# For an encrypted key: the password comes from an environment variable or a file, never here.
# password_env = "LAYERSEC_SERVER_KEY_PASSWORD"
# password_file = "identity/password"
# Or the key on a PKCS#11 token (never leaves it), instead of key and the password settings:
# pkcs11_uri = "pkcs11:token=layersec;object=service;type=private"
# module = "/usr/lib/softhsm/libsofthsm2.so"  # wins over a module-path in the URI
# pin_env = "LAYERSEC_SERVER_TOKEN_PIN"        # or pin_file = "token.pin"; never the PIN here
# (certificate left out: the token's certificate object, and no `admin service rollover`)

[store]
kind = "sqlite"          # the embedded store (SQLite, WAL, synced commits)
path = "data"
inline_max_bytes = 262144  # larger bodies are kept in synced files beside the database
# Several service nodes share one PostgreSQL database instead (docs/SERVER.md, "A cluster"):
# kind = "postgres"
# url = "postgres://layersec@db.example:5432/layersec"   # never with the password
# password_file = "store.password"                        # or password_env = "…"
# tls = "require"        # the default; prefer | disable only for a database on this machine
# ca_file = "tls/db-ca.pem"
# max_connections = 16
# (path is then this node's folder for bodies in transit; the schema is applied by
#  `layersec-server migrate --config <this file>`)

[delivery]
redeliver_after_secs = 300       # a pulled message without a receipt is offered again
keep_delivered_hours = 168       # delivered messages are purged after this
expire_undelivered_hours = 720   # undelivered messages expire (the record stays)
keep_records_hours = 720         # records of finished messages are removed after this
purge_interval_secs = 600

[limits]
# Connections are cheap (no thread each); max_connections needs as many open files (the service
# raises its own limit towards the system's hard limit and says so when it cannot).
max_connections = 20000
# From one client IP address (clients behind one NAT share it).
max_connections_per_address = 128
# Larger requests get HTTP 413, which states this limit, before their body is read. The
# default: a document of the clients' default limit (4 GiB) and the message overhead (1 MiB).
# Bodies are streamed to the store, never held whole in memory.
max_message_bytes = {max_message}
header_timeout_secs = 10
# Bodies and responses are held to progress, not to a total time: a pause of more than
# body_idle_timeout_secs (writing a response: 60 s), or an average below
# min_rate_bytes_per_sec once min_rate_grace_secs have passed (0: no minimum), ends the
# request (408). (body_timeout_secs, the old name of body_idle_timeout_secs, is still read.)
body_idle_timeout_secs = 60
min_rate_bytes_per_sec = 16384
min_rate_grace_secs = 30
idle_timeout_secs = 30
# Pushes that would leave less than this free on the store's file system get HTTP 503
# (retry later); pulls and receipts go on.
min_free_bytes = 268435456
# Undelivered bytes the parties of one subscriber may have waiting (0: no quota).
max_queued_bytes_per_subscriber = 10737418240
# Requests each registered party may make of the partner directory (POST /directory/<party>,
# `layersec partners fetch`) per minute; more get HTTP 429. 0: no directory.
directory_requests_per_minute = 60

[enrolment]
# Installation with one-time codes (`admin subscriber enrol`, then `layersec init --enrol`) at
# POST /enrol on the AS4 port. Failed attempts lock out a client address, or all enrolments of
# an account (wrong, used, expired codes for its party ids), until lockout_secs have passed
# since the first failure counted.
max_failures_per_address = 10
max_failures_per_account = 20
lockout_secs = 900

[admin]
# The admin HTTP API (plain HTTP: keep it on loopback). Every call needs
# "Authorization: Bearer <token>" with the token from token_file.
listen = "{admin_listen}"
token_file = "admin.token"

# The e-mail gateway (SOAP over e-mail), off without this section: the service reads AS4
# messages from its intake mailbox (IMAP) and handles each as a push, mails its answers to the
# sender's registered mail address, and submits by SMTP the messages waiting for parties
# registered with a mail address (`admin party add --mail-address`).
# [email]
# smtp_url = "smtp://mail.example:587"         # STARTTLS required; or smtps://mail.example:465
# mailbox_url = "imaps://mail.example:993/INBOX"  # IMAP only (imap:// with STARTTLS, or imaps://)
# address = "as4@ls.example"                  # the service's own address: From of its mails
# username = "as4@ls.example"
# password_env = "LAYERSEC_MAIL_PASSWORD"     # or password_file = "mail.password"; never here
# ca_file = "mail-ca.pem"                     # or pinned_sha256 = "…"; neither: system trust
# poll_secs = 5                               # IMAP IDLE is used when offered; this re-checks
# redeliver_after_secs = 900                  # a mailed message waits this long for its receipt
# set_aside_folder = "layersec-not-as4"       # where mails that are not AS4 messages go
# max_mail_bytes = 67108864                   # largest mail (message in base64 + header): 64 MiB
"#,
        max_message = default_max_message()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(extra_limits: &str) -> Result<(), String> {
        let text = template("127.0.0.1:0", "127.0.0.1:0", "svc.test").replacen(
            "[limits]\n",
            &format!("[limits]\n{extra_limits}\n"),
            1,
        );
        let c: Config = toml::from_str(&text).map_err(|e| e.to_string())?;
        c.check()
    }

    #[test]
    fn the_minimum_rates_grace_is_bounded() {
        check("").unwrap();
        let t = template("127.0.0.1:0", "127.0.0.1:0", "svc.test");
        assert!(
            t.contains("[limits]\n"),
            "the template has a [limits] table"
        );
        let t = t.replace("min_rate_grace_secs = 30", "min_rate_grace_secs = 86400");
        toml::from_str::<Config>(&t).unwrap().check().unwrap();
        let t = t.replace(
            "min_rate_grace_secs = 86400",
            "min_rate_grace_secs = 18446744073709551615",
        );
        let e = toml::from_str::<Config>(&t).unwrap().check().unwrap_err();
        assert!(e.contains("min_rate_grace_secs"), "{e}");
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    /// The template's configuration in `base` with its `[identity]` key lines replaced by
    /// `identity` (the certificate line stays).
    fn with_identity(base: &Path, identity: &str) -> Result<Config, String> {
        let t = template("127.0.0.1:0", "127.0.0.1:0", "svc.test");
        assert!(t.contains("key = \"identity/service.key\"\n"));
        let t = t.replace("key = \"identity/service.key\"\n", identity);
        Config::parse(&t, base)
    }

    const URI: &str = "pkcs11:token=t1;object=svc;type=private";

    fn token(extra: &str) -> String {
        format!("pkcs11_uri = \"{URI}?module-path=/x/p11.so\"\nmodule = \"lib/p11.so\"\n{extra}")
    }

    #[test]
    fn the_signing_key_on_a_token() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("lib")).unwrap();
        std::fs::write(d.path().join("lib/p11.so"), "x").unwrap();
        let var = format!("LS_TEST_SVC_PIN_{}", std::process::id());
        let c = with_identity(d.path(), &token(&format!("pin_env = \"{var}\"\n"))).unwrap();
        assert!(c.key_on_token());
        assert!(c.identity.key.as_os_str().is_empty());
        // Where the key is, for `admin service show`: the URI without its query.
        assert_eq!(c.key_location(), URI);
        // A missing PIN variable: an error naming the key and the variable, before any token.
        let e = c.pin().unwrap_err();
        assert!(e.contains("identity.pin_env") && e.contains(&var), "{e}");
        let e = c.load_token_identity().unwrap_err();
        assert!(matches!(e, TokenLoadError::Config(_)), "{e}");
        assert!(e.to_string().contains("identity.pin_env"), "{e}");
        std::env::set_var(&var, "123456");
        assert_eq!(
            c.pin().unwrap().as_deref().map(String::as_str),
            Some("123456")
        );
        std::env::remove_var(&var);
        // The PIN from a file's first line, relative to the configuration's folder.
        std::fs::write(d.path().join("pin"), "654321\nignored\n").unwrap();
        let c = with_identity(d.path(), &token("pin_file = \"pin\"\n")).unwrap();
        assert_eq!(
            c.pin().unwrap().as_deref().map(String::as_str),
            Some("654321")
        );
        // The file form is unchanged.
        let c = with_identity(d.path(), "key = \"identity/service.key\"\n").unwrap();
        assert!(!c.key_on_token());
        assert!(c.pin().unwrap().is_none());
        assert_eq!(
            c.key_location(),
            d.path().join("identity/service.key").display().to_string()
        );
    }

    #[test]
    fn token_settings_are_checked() {
        // The rules are ls-core's (`TokenSettings`, tested there); here, that the service's
        // configuration applies them, with paths from its folder and messages naming the key.
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("lib")).unwrap();
        std::fs::write(d.path().join("lib/p11.so"), "x").unwrap();
        std::fs::write(d.path().join("pin"), "1\n").unwrap();
        for (text, key, says) in [
            (
                token("pin_env = \"P\"\nkey = \"identity/service.key\"\n"),
                "identity.key:",
                "not both",
            ),
            (token("pin = \"hunter2\"\n"), "identity.pin:", "never kept"),
            (
                "key = \"identity/service.key\"\npin = \"hunter2\"\n".to_string(),
                "identity.pin:",
                "never kept",
            ),
            (
                token("pin_file = \"no-such-pin\"\n"),
                "identity.pin_file:",
                "not a readable file",
            ),
            (
                "pkcs11_uri = \"token=t1\"\npin_env = \"P\"\n".to_string(),
                "identity.pkcs11_uri:",
                "pkcs11:",
            ),
            (
                "key = \"identity/service.key\"\nmodule = \"lib/p11.so\"\n".to_string(),
                "identity.module:",
                "only with pkcs11_uri",
            ),
            (String::new(), "identity.key:", "missing"),
        ] {
            let e = with_identity(d.path(), &text).unwrap_err();
            assert!(e.starts_with(key) && e.contains(says), "{text}: {e}");
            assert!(!e.contains("hunter2"), "the PIN is never echoed: {e}");
        }
    }
}

#[cfg(test)]
mod email_tests {
    use super::*;

    const BASE: &str = r#"
smtp_url = "smtp://mail.test:587"
mailbox_url = "imaps://mail.test/INBOX"
address = "as4@svc.test"
username = "as4"
password_env = "LS_TEST_MAIL_PASSWORD"
"#;

    fn with_email(section: &str) -> Result<Config, String> {
        let text = format!(
            "{}\n[email]\n{section}",
            template("127.0.0.1:0", "127.0.0.1:0", "svc.test")
        );
        let c: Config = toml::from_str(&text).map_err(|e| e.to_string())?;
        c.check()?;
        Ok(c)
    }

    #[test]
    fn the_email_section_is_optional_and_checked() {
        let c =
            toml::from_str::<Config>(&template("127.0.0.1:0", "127.0.0.1:0", "svc.test")).unwrap();
        assert!(c.email.is_none());
        let c = c.check();
        assert!(c.is_ok());
        let c = with_email(BASE).unwrap();
        let e = c.email.as_ref().unwrap();
        assert_eq!(e.poll_secs, 5);
        assert_eq!(e.redeliver_after_secs, 900);
        assert_eq!(e.set_aside_folder, "layersec-not-as4");
        assert_eq!(e.max_mail_bytes(), 64 << 20);
        assert_eq!(
            with_email(&format!("{BASE}max_mail_bytes = 1000000\n"))
                .unwrap()
                .email
                .unwrap()
                .max_mail_bytes(),
            1_000_000
        );

        let refused = |section: String, key: &str| {
            let e = with_email(&section).unwrap_err();
            assert!(e.contains(key), "{section}: {e}");
            e
        };
        let e = refused(
            BASE.replace("imaps://mail.test/INBOX", "pop3s://mail.test"),
            "email.mailbox_url",
        );
        assert!(e.contains("POP3"), "{e}");
        refused(
            BASE.replace("imaps://mail.test/INBOX", "smtp://mail.test"),
            "email.mailbox_url",
        );
        refused(
            BASE.replace("smtp://mail.test:587", "imap://mail.test"),
            "email.smtp_url",
        );
        refused(
            BASE.replace("smtp://mail.test:587", "smtp://u:p@mail.test"),
            "email.smtp_url",
        );
        refused(BASE.replace("as4@svc.test", "as4 svc"), "email.address");
        refused(
            BASE.replace("password_env = \"LS_TEST_MAIL_PASSWORD\"", ""),
            "email.password_env or email.password_file",
        );
        refused(
            format!("{BASE}password_file = \"pw\"\n"),
            "email.password_env, email.password_file",
        );
        refused(
            format!(
                "{BASE}ca_file = \"ca.pem\"\npinned_sha256 = \"{}\"\n",
                "ab".repeat(32)
            ),
            "email.ca_file, email.pinned_sha256",
        );
        refused(
            format!("{BASE}pinned_sha256 = \"xyz\"\n"),
            "email.pinned_sha256",
        );
        refused(format!("{BASE}poll_secs = 0\n"), "email.poll_secs");
        refused(
            format!("{BASE}redeliver_after_secs = 0\n"),
            "email.redeliver_after_secs",
        );
        refused(
            format!("{BASE}set_aside_folder = \"\"\n"),
            "email.set_aside_folder",
        );
        // What the IMAP client would refuse at every mail is refused at start.
        let e = refused(
            format!("{BASE}set_aside_folder = \"Müll\"\n"),
            "email.set_aside_folder",
        );
        assert!(e.contains("ASCII"), "{e}");
        refused(
            format!("{BASE}set_aside_folder = \"a\\tb\"\n"),
            "email.set_aside_folder",
        );
        with_email(&format!("{BASE}set_aside_folder = \"Junk & Co\"\n")).unwrap();
        refused(
            format!("{BASE}max_mail_bytes = 10\n"),
            "email.max_mail_bytes",
        );
        // Never the password itself.
        refused(format!("{BASE}password = \"secret\"\n"), "password");
        with_email(&format!(
            "{BASE}pinned_sha256 = \"{}\"\n",
            "AB:".repeat(31) + "AB"
        ))
        .unwrap();
    }

    #[test]
    fn the_password_comes_from_the_environment_or_a_file() {
        let c = with_email(&BASE.replace("LS_TEST_MAIL_PASSWORD", "LS_TEST_MAIL_PASSWORD_UNSET"))
            .unwrap();
        let e = c.email_password().unwrap_err();
        assert!(e.contains("email.password_env"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let mut c = with_email(&BASE.replace(
            "password_env = \"LS_TEST_MAIL_PASSWORD\"",
            "password_file = \"pw\"",
        ))
        .unwrap();
        c.base = dir.path().to_path_buf();
        assert_eq!(c.email_password().unwrap().as_str(), "s3cret");
    }
}
