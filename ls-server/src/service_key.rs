//! The service's own signing key (receipts, signals, enrolment, rollover and directory
//! answers) and its rollover: `layersec-server admin service rollover` ([`start_rollover`]).
//!
//! A rollover makes a new key and certificate beside the configured ones (`next.key`,
//! `next.crt` in the identity folder, the key `0600`, encrypted like the configured one) and
//! records it in `service-rollover.json` there. Every active party is told with a certificate
//! update (`ls_core::rollover`) from the service (PartyId [`SERVICE_PARTY`]), signed by the
//! **old** key and counter-signed by the new one, queued for its MPC like any message; its
//! client checks it against the service certificate it holds and then accepts receipts signed
//! by either. The service keeps signing with the old key for the overlap, so that every client
//! can learn the new one first; at its end [`SigningKey::get`] (checked at most once a second)
//! puts the new identity into the configured files and signs with it. Clients keep accepting
//! the old certificate for another overlap (a duplicate push is answered with the receipt made
//! when the message was first taken).
//!
//! With the signing key on a PKCS#11 token (`[identity] pkcs11_uri`) the new key is generated
//! on the same token (non-extractable, label `layersec-service-<unix time>`), its URI recorded
//! in the state (`next_pkcs11_uri`) and only `next.crt` written; at the switch the certificate
//! file gets the new certificate, and from then on the key whose certificate that file holds is
//! loaded ([`token_uri`]): the state's new URI until the configuration names it.

use crate::config::Config;
use crate::store::{content_fingerprint, AcceptLimits, Coordination, NewMessage, PartyKey, Store};
use ls_core::as4::coordination::{self, UpdateHeader, SERVICE_PARTY};
use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::message::{self, Outgoing, Payload};
use ls_core::as4::model::{Messaging, PartyId};
use ls_core::rollover::{self as contract, CertificateUpdate};
use ls_core::time::{iso8601, now_unix};
use ls_core::{Certificate, Identity, KeyType};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The record of a rollover of the service's key, in the identity folder.
const STATE: &str = "service-rollover.json";
const NEXT_KEY: &str = "next.key";
const NEXT_CERT: &str = "next.crt";
/// How often a switch that is due is looked for.
const SWITCH_CHECK: Duration = Duration::from_secs(1);
/// After a switch failed: the first wait, doubled after each failure up to the last.
const SWITCH_RETRY_FIRST: Duration = Duration::from_secs(10);
const SWITCH_RETRY_MAX: Duration = Duration::from_secs(300);

/// A rollover of the service's key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceRollover {
    pub old_certificate_sha256: String,
    pub new_certificate_sha256: String,
    /// Unix seconds.
    pub started_at: i64,
    /// When the service signs with the new key (the end of the overlap).
    pub switch_at: i64,
    /// Until when clients accept the old certificate (another overlap after the switch).
    pub old_valid_until: i64,
    /// The parties told (`type:id` or `id`).
    pub announced: Vec<String>,
    /// When the service began to sign with the new key.
    pub switched_at: Option<i64>,
    /// With the key on a PKCS#11 token: the new key's URI (on the same token; the query of
    /// the configured URI kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_pkcs11_uri: Option<String>,
}

fn identity_dir(key_path: &Path) -> PathBuf {
    key_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn read_state(dir: &Path) -> Option<ServiceRollover> {
    std::fs::read(dir.join(STATE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = identity_dir(path);
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f")
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()
}

/// The service's signing identity, which a rollover changes while the service runs.
pub struct SigningKey {
    current: RwLock<Arc<Identity>>,
    /// The key file; with the key on a token, the certificate file (its folder holds the
    /// rollover's files); empty for a fixed identity.
    key_path: PathBuf,
    cert_path: PathBuf,
    password: Option<Zeroizing<String>>,
    /// With the key on a token: the module and PIN to load the rollover's new key with.
    token: Option<TokenAccess>,
    /// When the switch was last checked, and how long until the next check.
    checked: Mutex<Option<(Instant, Duration)>>,
}

/// How the service reaches its token: the configured module and the PIN (wiped when dropped).
pub struct TokenAccess {
    pub module: Option<PathBuf>,
    pub pin: Option<Zeroizing<String>>,
}

impl SigningKey {
    pub fn new(
        identity: Identity,
        key_path: PathBuf,
        cert_path: PathBuf,
        password: Option<Zeroizing<String>>,
    ) -> SigningKey {
        SigningKey {
            current: RwLock::new(Arc::new(identity)),
            key_path,
            cert_path,
            password,
            token: None,
            checked: Mutex::new(None),
        }
    }

    /// The key on a PKCS#11 token with its certificate file `cert_path` (whose folder holds a
    /// rollover's files): a rollover's switch loads the new key with `token`.
    pub fn on_token(identity: Identity, cert_path: PathBuf, token: TokenAccess) -> SigningKey {
        SigningKey {
            current: RwLock::new(Arc::new(identity)),
            key_path: cert_path.clone(),
            cert_path,
            password: None,
            token: Some(token),
            checked: Mutex::new(None),
        }
    }

    /// A fixed identity (tests).
    pub fn fixed(identity: Identity) -> SigningKey {
        SigningKey::new(identity, PathBuf::new(), PathBuf::new(), None)
    }

    /// What the service signs with now.
    pub fn get(&self) -> Arc<Identity> {
        self.maybe_switch();
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The certificates a request may name as the service's: the current one and, during a
    /// rollover, the next.
    pub fn certificates(&self) -> Vec<Certificate> {
        let mut v = vec![self.get().certificate().clone()];
        if self.key_path.as_os_str().is_empty() {
            // A fixed identity (on a token, or in tests): no rollover beside it.
            return v;
        }
        let dir = identity_dir(&self.key_path);
        if read_state(&dir).is_some_and(|s| s.switched_at.is_none()) {
            if let Ok(c) = Certificate::load(dir.join(NEXT_CERT)) {
                v.push(c);
            }
        }
        v
    }

    /// At most once a second: when a rollover's overlap is over, the new identity goes into
    /// the configured files and is used from now on.
    fn maybe_switch(&self) {
        if self.key_path.as_os_str().is_empty() {
            return;
        }
        {
            let mut c = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            if c.is_some_and(|(t, every)| t.elapsed() < every) {
                return;
            }
            let every = c.map_or(SWITCH_CHECK, |(_, every)| every);
            *c = Some((Instant::now(), every));
        }
        let password = self.password.as_deref().map(String::as_str);
        let switched = match &self.token {
            Some(t) => switch_if_due_on_token(&self.cert_path, t).map_err(|e| e.to_string()),
            None => switch_if_due(&self.key_path, &self.cert_path, password),
        };
        // A failed switch (the token away, the new key not loadable) is tried again after
        // 10 s, doubling up to 5 minutes, and logged at each try: not once a second.
        let every = {
            let mut c = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            let last = c.map_or(SWITCH_CHECK, |(_, every)| every);
            let every = match &switched {
                Ok(_) => SWITCH_CHECK,
                Err(_) => (last * 2).clamp(SWITCH_RETRY_FIRST, SWITCH_RETRY_MAX),
            };
            if let Some((_, e)) = c.as_mut() {
                *e = every;
            }
            every
        };
        let next = match switched {
            Ok(Some(next)) => next,
            Ok(None) => return,
            Err(e) => {
                crate::log::error(
                    "service_key_switch_failed",
                    &[
                        ("error", crate::log::V::S(&e)),
                        ("retry_in_secs", crate::log::V::N(every.as_secs())),
                    ],
                );
                return;
            }
        };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
    }
}

/// When a rollover of the service's key is due (its overlap is over) and not done yet: put the
/// new key and certificate into the configured files, mark it done, and return the new
/// identity. Idempotent, so that start-up finishes a switch a crash interrupted (between the
/// two files, say: a new key beside the old certificate would not load).
pub fn switch_if_due(
    key_path: &Path,
    cert_path: &Path,
    password: Option<&str>,
) -> Result<Option<Identity>, String> {
    let dir = identity_dir(key_path);
    let Some(mut st) = read_state(&dir) else {
        return Ok(None);
    };
    let now = now_unix();
    if st.switched_at.is_some() || now < st.switch_at || !dir.join(NEXT_KEY).exists() {
        return Ok(None);
    }
    let next = Identity::load(dir.join(NEXT_KEY), Some(&dir.join(NEXT_CERT)), password)
        .map_err(|e| e.to_string())?;
    std::fs::read(dir.join(NEXT_KEY))
        .map(Zeroizing::new)
        .and_then(|k| write_file(key_path, &k, 0o600))
        .and_then(|()| write_file(cert_path, &next.certificate().to_pem(), 0o644))
        .map_err(|e| e.to_string())?;
    st.switched_at = Some(now);
    write_file(
        &dir.join(STATE),
        &serde_json::to_vec_pretty(&st).unwrap_or_default(),
        0o600,
    )
    .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(dir.join(NEXT_KEY));
    crate::log::info(
        "service_key_switched",
        &[(
            "certificate_sha256",
            crate::log::V::S(&next.certificate().sha256_fingerprint()),
        )],
    );
    Ok(Some(next))
}

/// [`switch_if_due`] for a key on a PKCS#11 token: the new key is on the token already (its
/// URI in the state), so only the certificate file changes. Idempotent as well.
pub fn switch_if_due_on_token(
    cert_path: &Path,
    token: &TokenAccess,
) -> Result<Option<Identity>, crate::config::TokenLoadError> {
    use crate::config::TokenLoadError;
    let dir = identity_dir(cert_path);
    let Some(mut st) = read_state(&dir) else {
        return Ok(None);
    };
    let now = now_unix();
    let Some(uri) = st.next_pkcs11_uri.clone() else {
        return Ok(None);
    };
    if st.switched_at.is_some() || now < st.switch_at {
        return Ok(None);
    }
    let cert = std::fs::read(dir.join(NEXT_CERT))
        .map_err(|e| TokenLoadError::Config(format!("{}: {e}", dir.join(NEXT_CERT).display())))?;
    let next = Identity::from_pkcs11(
        &uri,
        token.module.as_deref(),
        token.pin.as_deref().map(String::as_str),
        Some(&cert),
    )
    .map_err(|e| {
        let msg = format!(
            "the new key {}: {e} (LS_{})",
            crate::config::without_query(&uri),
            e.code().name()
        );
        TokenLoadError::Token(msg, e)
    })?;
    write_file(cert_path, &next.certificate().to_pem(), 0o644)
        .map_err(|e| TokenLoadError::Config(format!("{}: {e}", cert_path.display())))?;
    st.switched_at = Some(now);
    write_file(
        &dir.join(STATE),
        &serde_json::to_vec_pretty(&st).unwrap_or_default(),
        0o600,
    )
    .map_err(|e| TokenLoadError::Config(format!("{}: {e}", dir.join(STATE).display())))?;
    crate::log::info(
        "service_key_switched",
        &[
            (
                "certificate_sha256",
                crate::log::V::S(&next.certificate().sha256_fingerprint()),
            ),
            ("key", crate::log::V::S(&crate::config::without_query(&uri))),
        ],
    );
    Ok(Some(next))
}

/// The URI of the service's key on its token: the configured one, or, once a rollover on the
/// token has switched and the certificate file holds its new certificate, the new key's
/// (until the configuration is changed to name it; `serve` warns meanwhile).
pub fn token_uri(c: &Config) -> String {
    let configured = c.identity.pkcs11_uri.clone().unwrap_or_default();
    let Some(cert) = &c.identity.certificate else {
        return configured;
    };
    let cert = c.path(cert);
    let Some(st) = read_state(&identity_dir(&cert)) else {
        return configured;
    };
    match (&st.next_pkcs11_uri, st.switched_at) {
        (Some(next), Some(_))
            if Certificate::load(&cert)
                .is_ok_and(|x| x.sha256_fingerprint() == st.new_certificate_sha256) =>
        {
            next.clone()
        }
        _ => configured,
    }
}

/// The service's key on its token as [`token_uri`] names it, with the certificate file (or the
/// token's certificate object when none is configured).
pub fn load_token(c: &Config) -> Result<Identity, crate::config::TokenLoadError> {
    c.load_token_identity_at(&token_uri(c), c.identity.certificate.as_deref())
}

/// `uri` (a `pkcs11:` URI) naming the private key labelled `label` on the same token: its
/// `object` and `id` replaced, its other attributes and its query kept.
fn uri_with_label(uri: &str, label: &str) -> String {
    let uri = uri.trim();
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    };
    let rest = path.get("pkcs11:".len()..).unwrap_or("");
    let mut attrs: Vec<String> = rest
        .split(';')
        .filter(|a| {
            let name = a.split('=').next().unwrap_or("").to_ascii_lowercase();
            !a.is_empty() && name != "object" && name != "id" && name != "type"
        })
        .map(str::to_string)
        .collect();
    attrs.push(format!("object={label}"));
    attrs.push("type=private".into());
    let mut out = format!("pkcs11:{}", attrs.join(";"));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The state of the service key's rollover, for `admin service show`.
pub fn show(c: &Config) -> Result<Value, String> {
    if c.key_on_token() {
        return show_token(c);
    }
    let key_path = c.path(&c.identity.key);
    let cert = c
        .identity
        .certificate
        .as_ref()
        .map(|p| c.path(p))
        .ok_or("identity.certificate: not set")?;
    let cert = Certificate::load(&cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok(json!({
        "key_location": c.key_location(),
        "certificate_sha256": cert.sha256_fingerprint(),
        "not_after": iso8601(cert.not_after()),
        "rollover": read_state(&identity_dir(&key_path)),
    }))
}

/// `show` with the key on a PKCS#11 token: where the key is (the URI without its query), the
/// certificate file, or else the token's certificate object (which needs the token and its
/// PIN: one login), and the rollover.
fn show_token(c: &Config) -> Result<Value, String> {
    let (cert, rollover) = match &c.identity.certificate {
        Some(p) => {
            let p = c.path(p);
            let cert = Certificate::load(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            (cert, read_state(&identity_dir(&p)))
        }
        None => (
            c.load_token_identity()
                .map_err(|e| e.to_string())?
                .certificate()
                .clone(),
            None,
        ),
    };
    Ok(json!({
        "key_location": crate::config::without_query(&token_uri(c)),
        "certificate_sha256": cert.sha256_fingerprint(),
        "not_after": iso8601(cert.not_after()),
        "rollover": rollover,
    }))
}

/// The old and the new identity of a rollover: both from files, or both on the token.
struct Keys {
    old: Identity,
    new: Identity,
}

/// A new key for a rollover and the files it writes: `next.key` (encrypted like the configured
/// key) and `next.crt`, or on the token the key (its URI returned) and `next.crt`.
fn new_key(
    c: &Config,
    old: &Identity,
    key_type: Option<KeyType>,
    dir: &Path,
    now: i64,
) -> Result<(Identity, Option<String>), String> {
    let kt = key_type
        .or_else(|| old.key_type())
        .unwrap_or(KeyType::EcP256);
    let name = old
        .certificate()
        .common_name()
        .unwrap_or("Layer Security service")
        .to_string();
    let builder = ls_core::keys::builder::CertificateBuilder::new(
        &name,
        ls_core::keys::builder::CertPurpose::Party,
    )
    .key_type(kt)
    .valid_days(825);
    if !c.key_on_token() {
        let password = c.identity_password()?;
        let pw = password.as_deref().map(String::as_str);
        let g = builder
            .build(pw)
            .map_err(|e| format!("cannot make a key: {e}"))?;
        write_file(&dir.join(NEXT_KEY), &g.key_pem, 0o600).map_err(|e| e.to_string())?;
        write_file(&dir.join(NEXT_CERT), &g.cert_pem, 0o644).map_err(|e| e.to_string())?;
        return Ok((g.identity, None));
    }
    // On the same token as the current key, non-extractable; a label of its own. The
    // configuration must name the current key first (the state of the last rollover, which
    // names it meanwhile, is replaced now).
    let current = token_uri(c);
    if Some(current.trim()) != c.identity.pkcs11_uri.as_deref().map(str::trim) {
        return Err(format!(
            "identity.pkcs11_uri names the key before the last rollover; change it to {} \
             (the key the service signs with) before the next rollover",
            crate::config::without_query(&current)
        ));
    }
    let pin = c.pin()?.ok_or(
        "identity.pin_env / identity.pin_file: a rollover on the token needs the token's PIN",
    )?;
    let uri = uri_with_label(&current, &format!("layersec-service-{now}"));
    let module = c.identity.module.as_ref().map(|m| c.path(m));
    let key = ls_core::keys::pkcs11::Pkcs11Key::generate(&uri, module.as_deref(), &pin, kt)
        .map_err(|e| {
            format!(
                "identity.pkcs11_uri: cannot make the new key {} on the token: {e} (LS_{})",
                crate::config::without_query(&uri),
                e.code().name()
            )
        })?;
    let g = builder
        .private_key(Arc::new(key))
        .build(None)
        .map_err(|e| format!("cannot make the new key's certificate: {e}"))?;
    write_file(&dir.join(NEXT_CERT), &g.cert_pem, 0o644).map_err(|e| e.to_string())?;
    Ok((g.identity, Some(uri)))
}

/// The current key and the rollover's new one (`next.key` or the state's URI on the token).
fn keys_under_way(
    c: &Config,
    key_path: &Path,
    cert_path: &Path,
    dir: &Path,
    st: &ServiceRollover,
) -> Result<Keys, String> {
    if let Some(uri) = &st.next_pkcs11_uri {
        let old = load_token(c).map_err(|e| e.to_string())?;
        let next_cert = dir.join(NEXT_CERT);
        let new = c
            .load_token_identity_at(uri, Some(&next_cert))
            .map_err(|e| format!("the new key: {e}"))?;
        return Ok(Keys { old, new });
    }
    let password = c.identity_password()?;
    let pw = password.as_deref().map(String::as_str);
    let old = Identity::load(key_path, Some(cert_path), pw)
        .map_err(|e| format!("identity: {}: {e}", key_path.display()))?;
    let new = Identity::load(dir.join(NEXT_KEY), Some(&dir.join(NEXT_CERT)), pw)
        .map_err(|e| format!("the new key: {e}"))?;
    Ok(Keys { old, new })
}

/// `admin service rollover`: a new signing key, announced to every active party with an update
/// signed by the old key; the service switches after `overlap_secs`.
pub fn start_rollover(
    c: &Config,
    store: &dyn Store,
    overlap_secs: u64,
    key_type: Option<KeyType>,
) -> Result<Value, String> {
    let cert_path = c
        .identity
        .certificate
        .as_ref()
        .map(|p| c.path(p))
        .ok_or("identity.certificate: a rollover writes the key and the certificate apart")?;
    // The rollover's files go beside the key file, or beside the certificate with the key on
    // a token.
    let key_path = if c.key_on_token() {
        cert_path.clone()
    } else {
        c.path(&c.identity.key)
    };
    let dir = identity_dir(&key_path);
    let now = now_unix();
    if let Some(mut s) = read_state(&dir) {
        if s.switched_at.is_none() && now < s.switch_at {
            // Under way: run again, it tells the parties not told yet — registered since, or
            // whose announcement failed — and changes nothing else.
            return announce_missing(c, store, &key_path, &cert_path, &dir, &mut s);
        }
        if s.switched_at.is_none() || now < s.old_valid_until {
            return Err(format!(
                "a rollover of the service key is under way (started {}, switch at {}, the old \
                 certificate accepted by clients until {}): one at a time",
                iso8601(s.started_at),
                iso8601(s.switch_at),
                iso8601(s.old_valid_until)
            ));
        }
    }
    // Clients hear of the new key an overlap before the switch and keep the old one an
    // overlap after it: twice the overlap must be one they accept (at most 90 days).
    if overlap_secs > contract::MAX_OVERLAP_SECS / 2 {
        return Err(
            "--overlap-hours: at most 1080 (45 days) for the service's key: clients \
                    accept its old key for twice the overlap"
                .into(),
        );
    }
    let old = if c.key_on_token() {
        load_token(c).map_err(|e| e.to_string())?
    } else {
        let password = c.identity_password()?;
        Identity::load(
            &key_path,
            Some(&cert_path),
            password.as_deref().map(String::as_str),
        )
        .map_err(|e| format!("identity: {}: {e}", key_path.display()))?
    };
    let (new, next_pkcs11_uri) = new_key(c, &old, key_type, &dir, now)?;
    let switch_at = now.saturating_add(overlap_secs as i64);
    let old_valid_until = switch_at.saturating_add(overlap_secs as i64);
    let mut st = ServiceRollover {
        old_certificate_sha256: old.certificate().sha256_fingerprint(),
        new_certificate_sha256: new.certificate().sha256_fingerprint(),
        started_at: now,
        switch_at,
        old_valid_until,
        announced: Vec::new(),
        switched_at: None,
        next_pkcs11_uri,
    };
    let save = |st: &ServiceRollover| {
        write_file(
            &dir.join(STATE),
            &serde_json::to_vec_pretty(st).unwrap_or_default(),
            0o600,
        )
        .map_err(|e| e.to_string())
    };
    save(&st)?;
    let parties = store.parties(None).map_err(|e| e.to_string())?;
    let mut failed = Vec::new();
    for p in parties.iter().filter(|p| p.is_usable()) {
        match announce(c, store, &old, &new, &p.key, &p.mpc, old_valid_until) {
            Ok(()) => st.announced.push(p.key.to_string()),
            Err(e) => failed.push(json!({"party": p.key.to_string(), "error": e})),
        }
    }
    save(&st)?;
    Ok(json!({
        "old_certificate_sha256": st.old_certificate_sha256,
        "new_certificate_sha256": st.new_certificate_sha256,
        "new_certificate": dir.join(NEXT_CERT).display().to_string(),
        "switch_at": iso8601(switch_at),
        "old_valid_until": iso8601(old_valid_until),
        "announced": st.announced,
        "failed": failed,
    }))
}

/// Queue the certificate update for one party.
/// Announce a rollover under way to the usable parties not told yet.
fn announce_missing(
    c: &Config,
    store: &dyn Store,
    key_path: &Path,
    cert_path: &Path,
    dir: &Path,
    st: &mut ServiceRollover,
) -> Result<Value, String> {
    let Keys { old, new } = keys_under_way(c, key_path, cert_path, dir, st)?;
    let parties = store.parties(None).map_err(|e| e.to_string())?;
    let (mut now_told, mut failed) = (Vec::new(), Vec::new());
    for p in parties.iter().filter(|p| p.is_usable()) {
        let name = p.key.to_string();
        if st.announced.contains(&name) {
            continue;
        }
        match announce(c, store, &old, &new, &p.key, &p.mpc, st.old_valid_until) {
            Ok(()) => {
                st.announced.push(name.clone());
                now_told.push(name);
            }
            Err(e) => failed.push(json!({"party": name, "error": e})),
        }
    }
    write_file(
        &dir.join(STATE),
        &serde_json::to_vec_pretty(&*st).unwrap_or_default(),
        0o600,
    )
    .map_err(|e| e.to_string())?;
    Ok(json!({
        "under_way": true,
        "old_certificate_sha256": st.old_certificate_sha256,
        "new_certificate_sha256": st.new_certificate_sha256,
        "switch_at": iso8601(st.switch_at),
        "old_valid_until": iso8601(st.old_valid_until),
        "announced_now": now_told,
        "announced": st.announced,
        "failed": failed,
    }))
}

fn announce(
    c: &Config,
    store: &dyn Store,
    old: &Identity,
    new: &Identity,
    to: &PartyKey,
    mpc: &str,
    old_valid_until: i64,
) -> Result<(), String> {
    let now = now_unix();
    let u = CertificateUpdate::new(
        SERVICE_PARTY,
        &to.id,
        old.certificate(),
        new.certificate(),
        now,
        old_valid_until,
    )
    .map_err(|e| e.to_string())?;
    let header = UpdateHeader {
        new_certificate_sha256: u.new_certificate_sha256.clone(),
        old_valid_until: u.old_valid_until.clone(),
    };
    let mut um =
        coordination::certificate_update_message(SERVICE_PARTY, &to.id, &header, &c.service.domain)
            .map_err(|e| e.to_string())?;
    if !to.ptype.is_empty() {
        um.to.ids = vec![PartyId {
            value: to.id.clone(),
            r#type: Some(to.ptype.clone()),
        }];
    }
    let conversation_id = um.conversation_id.clone();
    let fingerprint_header = um.clone();
    let built = message::build(Outgoing {
        messaging: Messaging {
            user_messages: vec![um],
            signals: Vec::new(),
        },
        payloads: vec![Payload {
            content_id: format!("service-certificate@{}", c.service.domain),
            mime_type: contract::UPDATE_CONTENT_TYPE.into(),
            data: u.sign(new).map_err(|e| e.to_string())?,
            compress: false,
            properties: Vec::new(),
        }],
        signer: old,
        encrypt_for: None,
        soap: SoapVersion::Soap12,
    })
    .map_err(|e| e.to_string())?;
    store
        .accept(
            &NewMessage {
                sender: PartyKey::new("", SERVICE_PARTY),
                recipient: to.clone(),
                mpc: mpc.to_string(),
                message_id: built.message_id.clone(),
                conversation_id,
                service: coordination::SERVICE.into(),
                action: coordination::ACTION_CERTIFICATE_UPDATE.into(),
                content_type: built.content_type.clone(),
                content_sha256: content_fingerprint(to, &fingerprint_header, &built.references),
                body: built.body.into(),
                receipt_content_type: String::new(),
                receipt: Vec::new(),
                received_at: now,
                coordination: Some(Coordination::CertificateUpdate),
            },
            &AcceptLimits {
                min_free_bytes: 0,
                max_queued_bytes_per_subscriber: 0,
            },
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_that_fails_is_tried_again_with_back_off_not_every_second() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("service.key");
        let cert = dir.path().join("service.crt");
        let me = Identity::generate("svc", KeyType::EcP256, 30, None).unwrap();
        std::fs::write(&key, &me.key_pem).unwrap();
        std::fs::write(&cert, &me.cert_pem).unwrap();
        // A switch that is due, whose new key cannot be loaded.
        std::fs::write(dir.path().join(NEXT_KEY), "not a key").unwrap();
        std::fs::write(dir.path().join(NEXT_CERT), "not a certificate").unwrap();
        let now = now_unix();
        let st = ServiceRollover {
            old_certificate_sha256: "a".into(),
            new_certificate_sha256: "b".into(),
            started_at: now - 100,
            switch_at: now - 10,
            old_valid_until: now + 100,
            announced: Vec::new(),
            switched_at: None,
            next_pkcs11_uri: None,
        };
        std::fs::write(dir.path().join(STATE), serde_json::to_vec(&st).unwrap()).unwrap();
        let sk = SigningKey::new(me.identity, key, cert, None);
        let every = |sk: &SigningKey| sk.checked.lock().unwrap().unwrap().1;
        let age = |sk: &SigningKey, secs: u64| {
            let mut c = sk.checked.lock().unwrap();
            let (t, e) = c.unwrap();
            *c = Some((t - Duration::from_secs(secs), e));
        };
        let old = sk.get().certificate().sha256_fingerprint();
        assert_eq!(
            every(&sk),
            SWITCH_RETRY_FIRST,
            "the first failure waits 10 s"
        );
        // Asked again at once: not tried (the wait stays), the old key still signs.
        sk.get();
        assert_eq!(every(&sk), SWITCH_RETRY_FIRST);
        age(&sk, 11);
        sk.get();
        assert_eq!(
            every(&sk),
            2 * SWITCH_RETRY_FIRST,
            "doubled after the second failure"
        );
        for _ in 0..10 {
            age(&sk, 400);
            sk.get();
        }
        assert_eq!(every(&sk), SWITCH_RETRY_MAX, "at most 5 minutes");
        assert_eq!(sk.get().certificate().sha256_fingerprint(), old);
    }

    #[test]
    fn the_new_keys_uri_names_the_same_token_and_a_label_of_its_own() {
        assert_eq!(
            uri_with_label(
                "pkcs11:token=ls;object=svc;type=private",
                "layersec-service-7"
            ),
            "pkcs11:token=ls;object=layersec-service-7;type=private"
        );
        // The id and the object go (the id would select the old key), the token's other
        // attributes and the query stay.
        assert_eq!(
            uri_with_label(
                " pkcs11:model=SoftHSM%20v2;id=%01%02;token=ls;Object=svc?module-path=/x.so ",
                "n"
            ),
            "pkcs11:model=SoftHSM%20v2;token=ls;object=n;type=private?module-path=/x.so"
        );
    }
}
