//! Our rollover when `[identity]` is on a PKCS#11 token: the new key pair is made on the same
//! token (sensitive, never extractable), and the configuration is never rewritten — the
//! configured URI names the key by its label (`object=`), and the switch moves labels:
//!
//! - `<label>.next`: the new key until the switch (its URI in `rollover/new.uri`, its
//!   certificate in `rollover/new.crt.pem`, beside the configured certificate). It already
//!   opens what partners that took the new certificate seal for us.
//! - At the switch, the old key pair becomes `<label>.previous-<first 16 hex digits of its
//!   certificate's SHA-256>` (its URI in `previous/<sha256>.uri`, its certificate in
//!   `previous/<sha256>.crt.pem`: it still opens what was sealed for it), then `<label>.next`
//!   becomes `<label>`, then the new certificate goes into the configured file. Each step is
//!   decided by what the token holds, so a crash anywhere is finished by the next run
//!   ([`install_pending`], from `Client::build` in the `Switching` phase).
//!
//! Previous keys stay on the token when their certificate expires (their files are removed):
//! removing keys from a token is left to its owner.

use super::keys::{identity_dir, previous_dir, write_cert};
use crate::config::Config;
use crate::fsutil::{self, io_err};
use ls_core::cert::Certificate;
use ls_core::error::{Error, Result};
use ls_core::keys::pkcs11::{Pkcs11Key, Pkcs11Uri};
use ls_core::keys::private::PrivateKey;
use ls_core::keys::{Identity, KeyType};
use ls_core::{CertPurpose, CertificateBuilder};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The configured URI and its label; refused (naming the setting) when the URI does not name
/// the key by its label or there is no certificate file: both are needed to roll over.
fn configured(cfg: &Config) -> Result<(String, String)> {
    let uri = cfg
        .identity
        .pkcs11_uri
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let invalid = |key: &str, why: &str| {
        Error::ConfigInvalid(format!("{}: {key}: {why}", cfg.file.display()))
    };
    let label = Pkcs11Uri::parse(&uri)?.object.ok_or_else(|| {
        invalid(
            "identity.pkcs11_uri",
            "a rollover on a token names the keys by their label: the URI must have object= \
             (the key's label)",
        )
    })?;
    if cfg.identity.certificate.is_none() {
        return Err(invalid(
            "identity.certificate",
            "a rollover on a token replaces the certificate file: name one",
        ));
    }
    Ok((uri, label))
}

/// Check, before a rollover starts, that it can be done on the token.
pub(crate) fn check(cfg: &Config) -> Result<()> {
    configured(cfg).map(|_| ())
}

/// `uri` with its `object=` set to `label` (percent-encoded), the rest as it was.
fn with_label(uri: &str, label: &str) -> String {
    let rest = uri.strip_prefix("pkcs11:").unwrap_or(uri);
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let enc = ls_core::bytes::percent_encode(label, b"-._~");
    let mut attrs: Vec<String> = path
        .split(';')
        .filter(|a| !a.is_empty() && !a.starts_with("object="))
        .map(str::to_string)
        .collect();
    attrs.push(format!("object={enc}"));
    let mut out = format!("pkcs11:{}", attrs.join(";"));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The URI of the new key until the switch.
fn next_uri(cfg: &Config) -> Result<String> {
    let (uri, label) = configured(cfg)?;
    Ok(with_label(&uri, &format!("{label}.next")))
}

/// The URI a key signing with the certificate `sha256` gets when it becomes previous.
fn previous_uri(cfg: &Config, sha256: &str) -> Result<String> {
    let (uri, label) = configured(cfg)?;
    let short = sha256.get(..16).unwrap_or(sha256);
    Ok(with_label(&uri, &format!("{label}.previous-{short}")))
}

/// `rollover/new.uri`: where the new key is until the switch.
pub(crate) fn pending_uri_path(cfg: &Config) -> PathBuf {
    identity_dir(cfg).join("rollover").join("new.uri")
}

/// The key `uri` on the configured token, with the certificate in `cert`.
fn load(cfg: &Config, uri: &str, cert: &Path) -> Result<Identity> {
    let pin = cfg.pin()?;
    let pem = std::fs::read(cert).map_err(|e| io_err("cannot read", cert, e))?;
    Identity::from_pkcs11(
        uri,
        cfg.identity.module.as_deref(),
        pin.as_deref().map(String::as_str),
        Some(&pem),
    )
}

fn read_uri(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .map_err(|e| io_err("cannot read", path, e))?
        .trim()
        .to_string())
}

/// The new identity of a rollover under way (`None` when its files are not there, or once it
/// was installed: it has the configured label and certificate then, and no key is left under
/// its pending URI).
pub(crate) fn load_pending(cfg: &Config) -> Result<Option<Identity>> {
    let (u, c) = (pending_uri_path(cfg), super::keys::pending_paths(cfg).1);
    if !u.exists() || !c.exists() {
        return Ok(None);
    }
    let installed = cfg
        .identity
        .certificate
        .as_deref()
        .and_then(|f| Certificate::load(f).ok())
        .zip(Certificate::load(&c).ok())
        .is_some_and(|(current, new)| current == new);
    if installed {
        return Ok(None);
    }
    // Fatal, unlike a previous key that cannot be loaded: without the new key a document
    // sealed for the new certificate would be refused as not ours, for good, when the fault
    // may be passing.
    load(cfg, &read_uri(&u)?, &c)
        .map(Some)
        .map_err(|e| match e {
            Error::KeyNotFound(m) => Error::KeyNotFound(format!(
                "the new key of the rollover under way (recorded in {}): {m}",
                u.display()
            )),
            e => e,
        })
}

/// Our previous identities on the token, from `previous/<sha256>.uri` and `.crt.pem`; those
/// whose certificate expired more than `keep_after_expiry` seconds ago lose their files.
pub(crate) fn load_previous(cfg: &Config, now: i64, keep_after_expiry: i64) -> Vec<Identity> {
    let dir = previous_dir(cfg);
    let mut out = Vec::new();
    for (name, path, md) in crate::fsutil::list_dir(&dir).unwrap_or_default() {
        let Some(sha) = name.strip_suffix(".uri") else {
            continue;
        };
        if !md.is_file() || name.starts_with('.') {
            continue;
        }
        let cert_path = dir.join(format!("{sha}.crt.pem"));
        let expired = Certificate::load(&cert_path)
            .is_ok_and(|c| c.not_after().saturating_add(keep_after_expiry) < now);
        if expired {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(&cert_path);
            continue;
        }
        // A previous key that cannot be loaded opens nothing (and says so when a document
        // needs it).
        if let Ok(id) = read_uri(&path).and_then(|u| load(cfg, &u, &cert_path)) {
            out.push(id);
        }
    }
    out
}

/// A new key pair of `key_type` on the token as `<label>.next` and a self-signed certificate
/// for `party` valid `days`, signed by it; its URI written to `rollover/new.uri` (the caller
/// writes the certificate). A `<label>.next` key already there is refused (a rollover that
/// crashed before it was recorded: remove it from the token).
pub(crate) fn generate_pending(
    cfg: &Config,
    party: &str,
    key_type: KeyType,
    days: u32,
) -> Result<Identity> {
    let uri = next_uri(cfg)?;
    let pin = cfg.pin()?;
    let pin = pin.as_deref().map(String::as_str).ok_or_else(|| {
        Error::ConfigInvalid(format!(
            "{}: identity.pin_env: a new key is made on the token only with its PIN \
             (pin_env or pin_file)",
            cfg.file.display()
        ))
    })?;
    let key =
        Pkcs11Key::generate(&uri, cfg.identity.module.as_deref(), pin, key_type).map_err(|e| {
            match e {
                Error::InvalidArgument(m) if m.contains("already") => {
                    Error::InvalidArgument(format!(
                "{m}: a new key of an earlier rollover that was not recorded; remove it from \
                 the token, then roll over again"
            ))
                }
                other => other,
            }
        })?;
    let key = Arc::new(key);
    let built = CertificateBuilder::new(party, CertPurpose::Party)
        .private_key(key.clone())
        .valid_days(days)
        .build(None)
        .and_then(|g| {
            let p = pending_uri_path(cfg);
            super::keys::ensure_dir(fsutil::parent_of(&p))?;
            fsutil::write_atomic_mode(&p, uri.as_bytes(), super::keys::KEY_MODE)?;
            Ok(g.identity)
        });
    if built.is_err() {
        let _ = key.destroy();
    }
    built
}

/// Record the configured identity among the previous ones (once): its certificate and the URI
/// its key will have after the switch.
pub(crate) fn keep_current_as_previous(cfg: &Config, cert: &Certificate) -> Result<()> {
    let dir = previous_dir(cfg);
    let sha = cert.sha256_fingerprint();
    let uri_path = dir.join(format!("{sha}.uri"));
    let cert_path = dir.join(format!("{sha}.crt.pem"));
    if uri_path.exists() && cert_path.exists() {
        return Ok(());
    }
    write_cert(&cert_path, cert)?;
    super::keys::ensure_dir(&dir)?;
    fsutil::write_atomic_mode(
        &uri_path,
        previous_uri(cfg, &sha)?.as_bytes(),
        super::keys::KEY_MODE,
    )
}

/// The switch on the token, each step decided by what is there (so a crash anywhere is
/// finished by running it again): while the new key is still `<label>.next` (and is the new
/// certificate's key), the old key pair (labelled `<label>`) becomes `<label>.previous-…`;
/// then `<label>.next` becomes `<label>` (the private key first); then, once the configured
/// URI names the new certificate's key, the new certificate goes into the configured file.
///
/// Needs the PIN: without a login the token hides its private keys, and the new key would
/// look renamed already. When the configured URI does not name the new key at the end (the
/// new key was removed from the token), this is [`Error::KeyNotFound`] and the certificate file
/// is not written: it stays the certificate of the key `<label>` names.
pub(crate) fn install_pending(cfg: &Config) -> Result<()> {
    let (uri, label) = configured(cfg)?;
    let cert_file = cfg.identity.certificate.clone().unwrap_or_default();
    let new_cert = Certificate::load(super::keys::pending_paths(cfg).1)?;
    let current = Certificate::load(&cert_file)?;
    if current == new_cert {
        return Ok(());
    }
    let next = read_uri(&pending_uri_path(cfg))?;
    let module = cfg.identity.module.as_deref();
    let pin = cfg.pin()?;
    let pin = pin.as_deref().map(String::as_str).ok_or_else(|| {
        Error::ConfigInvalid(format!(
            "{}: identity.pin_env: the switch to the new key on the token needs the token's \
             PIN (pin_env or pin_file); nothing was changed",
            cfg.file.display()
        ))
    })?;
    let new_key = new_cert.public_key()?;
    let describe = |u: &str| {
        Pkcs11Uri::parse(u)
            .map(|p| p.describe())
            .unwrap_or_default()
    };
    if Pkcs11Key::exists(&next, module, Some(pin))? {
        let key = Pkcs11Key::open(&next, module, Some(pin))?;
        if !key.public_key().public_eq(&new_key) {
            return Err(Error::KeyNotFound(format!(
                "the key {} on the token is not the key of the new certificate {}: nothing \
                 was renamed and the certificate file {} is unchanged",
                describe(&next),
                super::keys::pending_paths(cfg).1.display(),
                cert_file.display()
            )));
        }
        let previous = previous_uri(cfg, &current.sha256_fingerprint())?;
        let previous_label = Pkcs11Uri::parse(&previous)?.object.unwrap_or_default();
        Pkcs11Key::relabel(&uri, module, Some(pin), &previous_label)?;
    }
    // 0 renamed: done before this run (a crash after it), or the new key is not there; what
    // `<label>` names now decides.
    Pkcs11Key::relabel(&next, module, Some(pin), &label)?;
    let named = match Pkcs11Key::open(&uri, module, Some(pin)) {
        Ok(k) => k.public_key().public_eq(&new_key),
        Err(Error::KeyNotFound(_)) => false,
        Err(e) => return Err(e),
    };
    if !named {
        return Err(Error::KeyNotFound(format!(
            "the new key of the rollover ({}, then {}) is not on the token: the switch cannot \
             finish, and the certificate file {} is left as it was",
            describe(&next),
            describe(&uri),
            cert_file.display()
        )));
    }
    fsutil::write_atomic(&cert_file, &new_cert.to_pem())
}

/// Remove the pending files; the new key too while it is still `<label>.next` (a rollover
/// the service refused; after the switch it is `<label>` and stays).
pub(crate) fn drop_pending(cfg: &Config) -> Result<()> {
    let u = pending_uri_path(cfg);
    if u.exists() {
        let next = read_uri(&u)?;
        let module = cfg.identity.module.as_deref();
        let pin = cfg.pin()?;
        let pin = pin.as_deref().map(String::as_str);
        if Pkcs11Key::exists(&next, module, pin)? {
            Pkcs11Key::open(&next, module, pin)?.destroy()?;
        }
        match std::fs::remove_file(&u) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot remove", &u, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_label;

    #[test]
    fn labels_in_uris() {
        assert_eq!(
            with_label("pkcs11:token=t;object=acme;type=private", "acme.next"),
            "pkcs11:token=t;type=private;object=acme.next"
        );
        assert_eq!(
            with_label(
                "pkcs11:token=t;object=a%20b?module-path=/x.so",
                "a b.previous-0a"
            ),
            "pkcs11:token=t;object=a%20b.previous-0a?module-path=/x.so"
        );
    }
}
