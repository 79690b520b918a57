//! Our keys during and after a rollover, in the identity folder (the folder of `[identity]
//! key`), each file `0600` like the key itself:
//!
//! - `[identity] key` and `certificate`: what we sign with. A rollover replaces them (the
//!   switch) once the service and every partner accepted the new certificate, or the overlap
//!   is nearly over.
//! - `rollover/new.key.pem`, `rollover/new.crt.pem`: the new identity until the switch. Its
//!   key already opens what partners that took the new certificate seal for us.
//! - `previous/<sha256>.key.pem`, `previous/<sha256>.crt.pem`: identities we signed with
//!   before, kept to open documents sealed for them (a partner that had not taken the new
//!   certificate yet) until their certificate expires; then removed.
//!
//! Never logged; encrypted with the configured password when there is one. With the key on a
//! PKCS#11 token the keys stay there and the files name them ([`super::token`]).

use crate::config::Config;
use crate::fsutil::{self, io_err, list_dir};
use ls_core::cert::Certificate;
use ls_core::error::{Error, Result};
use ls_core::keys::Identity;
use ls_core::time;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Permission bits of key files.
pub(crate) const KEY_MODE: u32 = 0o600;
/// A previous key is removed this long after its certificate expired (nothing sealed for an
/// expired certificate can come any more).
const KEEP_AFTER_EXPIRY_SECS: i64 = 86_400;

/// The keys a client holds: what it signs with, and what else it opens with; and the
/// service's certificates it accepts.
#[derive(Clone)]
pub(crate) struct Keys {
    pub signer: Arc<Identity>,
    /// The new identity before the switch, then our previous ones (newest first).
    pub others: Arc<Vec<Identity>>,
    /// `[service] service_certificate`.
    pub service: Certificate,
    /// The service's earlier certificates still accepted (its key's rollover).
    pub service_previous: Vec<Certificate>,
    /// The state files' modification times when these were read.
    pub stamp: Stamp,
}

/// The modification times of `state/rollover.json` and `state/service-previous.json`.
pub(crate) type Stamp = (Option<SystemTime>, Option<SystemTime>);

/// `state/service-previous.json`: the service's earlier certificates and until when.
pub(crate) const SERVICE_PREVIOUS: &str = "service-previous.json";

/// An earlier certificate of the service, accepted until a time.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct ServicePrevious {
    pub certificate_pem: String,
    /// Unix seconds.
    pub until: i64,
}

/// The stamp of a client's state folder now.
pub(crate) fn stamp(cfg: &Config) -> Stamp {
    (
        stamp_of(&cfg.folders.state.join(super::STATE)),
        stamp_of(&cfg.folders.state.join(SERVICE_PREVIOUS)),
    )
}

/// The folder of `[identity] key` (of `certificate` with the key on a token).
pub(crate) fn identity_dir(cfg: &Config) -> PathBuf {
    let file = match (cfg.key_on_token(), &cfg.identity.certificate) {
        (true, Some(c)) => c.as_path(),
        _ => cfg.identity.key.as_path(),
    };
    file.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Whether a new identity waits to be installed (its key file, or its key's URI on a token).
pub(crate) fn pending_exists(cfg: &Config) -> bool {
    if cfg.key_on_token() {
        super::token::pending_uri_path(cfg).exists()
    } else {
        pending_paths(cfg).0.exists()
    }
}

/// Where the new identity waits until the switch: (key, certificate).
pub(crate) fn pending_paths(cfg: &Config) -> (PathBuf, PathBuf) {
    let d = identity_dir(cfg).join("rollover");
    (d.join("new.key.pem"), d.join("new.crt.pem"))
}

/// The folder of our previous identities.
pub(crate) fn previous_dir(cfg: &Config) -> PathBuf {
    identity_dir(cfg).join("previous")
}

/// The modification time of `path`, if it exists.
pub(crate) fn stamp_of(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Write a key file (`0600`, atomically; its folder `0700` when made).
pub(crate) fn write_key(path: &Path, pem: &[u8]) -> Result<()> {
    ensure_dir(fsutil::parent_of(path))?;
    fsutil::write_atomic_mode(path, pem, KEY_MODE)
}

/// Write a certificate beside its key (same mode: the folder is ours).
pub(crate) fn write_cert(path: &Path, cert: &Certificate) -> Result<()> {
    ensure_dir(fsutil::parent_of(path))?;
    fsutil::write_atomic_mode(path, &cert.to_pem(), KEY_MODE)
}

pub(crate) fn ensure_dir(d: &Path) -> Result<()> {
    if !d.exists() {
        std::fs::create_dir_all(d).map_err(|e| io_err("cannot create folder", d, e))?;
        fsutil::set_mode(d, 0o700)?;
    }
    Ok(())
}

/// The configured identity, the pending new one (when `pending`) and the previous ones whose
/// certificates are valid (expired ones are removed), for opening.
pub(crate) fn load(
    cfg: &Config,
    password: Option<&str>,
    pending: bool,
    stamp: Stamp,
) -> Result<Keys> {
    let signer = cfg.load_identity(password)?;
    let mut others = Vec::new();
    // A key on a token: the new and previous keys are on the token too.
    let on_token = cfg.key_on_token();
    if pending && on_token {
        if let Some(id) = super::token::load_pending(cfg)? {
            if id.certificate() != signer.certificate() {
                others.push(id);
            }
        }
    }
    if pending && !on_token {
        let (k, c) = pending_paths(cfg);
        if k.exists() && c.exists() {
            let id = Identity::load(&k, Some(&c), password)?;
            if id.certificate() != signer.certificate() {
                others.push(id);
            }
        }
    }
    let now = time::now_unix();
    let dir = previous_dir(cfg);
    let mut previous: Vec<Identity> = Vec::new();
    let listed = if on_token {
        previous.extend(
            super::token::load_previous(cfg, now, KEEP_AFTER_EXPIRY_SECS)
                .into_iter()
                .filter(|id| id.certificate() != signer.certificate()),
        );
        Vec::new()
    } else {
        list_dir(&dir)?
    };
    for (name, path, md) in listed {
        let Some(sha) = name.strip_suffix(".key.pem") else {
            continue;
        };
        if !md.is_file() || name.starts_with('.') {
            continue;
        }
        let cert_path = dir.join(format!("{sha}.crt.pem"));
        let id = match Identity::load(&path, Some(&cert_path), password) {
            Ok(id) => id,
            // Not ours to judge further: a damaged previous key opens nothing, and says so
            // when a document needs it (not a recipient).
            Err(_) => continue,
        };
        if id
            .certificate()
            .not_after()
            .saturating_add(KEEP_AFTER_EXPIRY_SECS)
            < now
        {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(&cert_path);
            continue;
        }
        if id.certificate() != signer.certificate()
            && !others.iter().any(|o| o.certificate() == id.certificate())
        {
            previous.push(id);
        }
    }
    previous.sort_by_key(|i| std::cmp::Reverse(i.certificate().not_after()));
    others.extend(previous);
    let service = Certificate::load(&cfg.service.service_certificate)?;
    let prev: Vec<ServicePrevious> =
        fsutil::read_json(&cfg.folders.state.join(SERVICE_PREVIOUS))?.unwrap_or_default();
    let service_previous = prev
        .iter()
        .filter(|p| now < p.until)
        .filter_map(|p| Certificate::from_pem(p.certificate_pem.as_bytes()).ok())
        .filter(|c| *c != service)
        .collect();
    Ok(Keys {
        signer: Arc::new(signer),
        others: Arc::new(others),
        service,
        service_previous,
        stamp,
    })
}

/// Keep the identity in the configured files among the previous ones (once).
pub(crate) fn keep_current_as_previous(cfg: &Config) -> Result<()> {
    let cert = Certificate::load(cfg.identity.certificate.as_deref().ok_or_else(|| {
        Error::ConfigInvalid("identity.certificate: needed for a rollover".into())
    })?)?;
    if cfg.key_on_token() {
        return super::token::keep_current_as_previous(cfg, &cert);
    }
    let dir = previous_dir(cfg);
    let sha = cert.sha256_fingerprint();
    let key_path = dir.join(format!("{sha}.key.pem"));
    let cert_path = dir.join(format!("{sha}.crt.pem"));
    if key_path.exists() && cert_path.exists() {
        return Ok(());
    }
    let key = zeroize::Zeroizing::new(
        std::fs::read(&cfg.identity.key)
            .map_err(|e| io_err("cannot read", &cfg.identity.key, e))?,
    );
    write_key(&key_path, &key)?;
    write_cert(&cert_path, &cert)
}

/// Put the pending new identity into the configured files (key first; both atomic). Done
/// again after a crash in between: the pending files stay until [`drop_pending`].
pub(crate) fn install_pending(cfg: &Config) -> Result<()> {
    if cfg.key_on_token() {
        return super::token::install_pending(cfg);
    }
    let (k, c) = pending_paths(cfg);
    let key = zeroize::Zeroizing::new(std::fs::read(&k).map_err(|e| io_err("cannot read", &k, e))?);
    let cert = Certificate::load(&c)?;
    let cert_path = cfg.identity.certificate.as_deref().ok_or_else(|| {
        Error::ConfigInvalid("identity.certificate: needed for a rollover".into())
    })?;
    fsutil::write_atomic_mode(&cfg.identity.key, &key, KEY_MODE)?;
    fsutil::write_atomic(cert_path, &cert.to_pem())
}

/// Remove the pending new identity (after the switch, or when a rollover is abandoned).
pub(crate) fn drop_pending(cfg: &Config) -> Result<()> {
    if cfg.key_on_token() {
        super::token::drop_pending(cfg)?;
    }
    let (k, c) = pending_paths(cfg);
    for p in [k, c] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot remove", &p, e)),
        }
    }
    Ok(())
}
