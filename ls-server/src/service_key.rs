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
    key_path: PathBuf,
    cert_path: PathBuf,
    password: Option<Zeroizing<String>>,
    checked: Mutex<Option<Instant>>,
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
            if c.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *c = Some(Instant::now());
        }
        let password = self.password.as_deref().map(String::as_str);
        let next = match switch_if_due(&self.key_path, &self.cert_path, password) {
            Ok(Some(next)) => next,
            Ok(None) => return,
            Err(e) => {
                crate::log::error(
                    "service_key_switch_failed",
                    &[("error", crate::log::V::S(&e))],
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

/// `show` with the key on a PKCS#11 token: the certificate file, or else the token's
/// certificate object (which needs the token and its PIN: one login).
fn show_token(c: &Config) -> Result<Value, String> {
    let cert = match &c.identity.certificate {
        Some(p) => {
            let p = c.path(p);
            Certificate::load(&p).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => c
            .load_token_identity()
            .map_err(|e| e.to_string())?
            .certificate()
            .clone(),
    };
    Ok(json!({
        "key_location": c.key_location(),
        "certificate_sha256": cert.sha256_fingerprint(),
        "not_after": iso8601(cert.not_after()),
        "rollover": Value::Null,
    }))
}

/// Why `admin service rollover` refuses a signing key on a PKCS#11 token (exit status 2).
pub const ROLLOVER_ON_TOKEN: &str = "identity.pkcs11_uri: the service's signing key is on a \
    PKCS#11 token; `admin service rollover` makes the next key in a file and is not supported \
    for a key on a token. Generate the next key on the token (e.g. with pkcs11-tool), tell the \
    parties the new certificate, and change identity.pkcs11_uri and identity.certificate \
    (docs/SERVER.md, \"The signing key on a PKCS#11 token\")";

/// `admin service rollover`: a new signing key, announced to every active party with an update
/// signed by the old key; the service switches after `overlap_secs`.
pub fn start_rollover(
    c: &Config,
    store: &dyn Store,
    overlap_secs: u64,
    key_type: Option<KeyType>,
) -> Result<Value, String> {
    if c.key_on_token() {
        return Err(ROLLOVER_ON_TOKEN.into());
    }
    let key_path = c.path(&c.identity.key);
    let cert_path = c
        .identity
        .certificate
        .as_ref()
        .map(|p| c.path(p))
        .ok_or("identity.certificate: a rollover writes the key and the certificate apart")?;
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
    let password = c.identity_password()?;
    let pw = password.as_deref().map(String::as_str);
    let old = Identity::load(&key_path, Some(&cert_path), pw)
        .map_err(|e| format!("identity: {}: {e}", key_path.display()))?;
    let kt = key_type
        .or_else(|| old.key_type())
        .unwrap_or(KeyType::EcP256);
    let g = ls_core::keys::builder::CertificateBuilder::new(
        old.certificate()
            .common_name()
            .unwrap_or("Layer Security service"),
        ls_core::keys::builder::CertPurpose::Party,
    )
    .key_type(kt)
    .valid_days(825)
    .build(pw)
    .map_err(|e| format!("cannot make a key: {e}"))?;
    let new = g.identity;
    write_file(&dir.join(NEXT_KEY), &g.key_pem, 0o600).map_err(|e| e.to_string())?;
    write_file(&dir.join(NEXT_CERT), &g.cert_pem, 0o644).map_err(|e| e.to_string())?;
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
    let password = c.identity_password()?;
    let pw = password.as_deref().map(String::as_str);
    let old = Identity::load(key_path, Some(cert_path), pw)
        .map_err(|e| format!("identity: {}: {e}", key_path.display()))?;
    let new = Identity::load(dir.join(NEXT_KEY), Some(&dir.join(NEXT_CERT)), pw)
        .map_err(|e| format!("the new key: {e}"))?;
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
