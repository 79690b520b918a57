//! `--pkcs11` of `keygen` and `init`: the key pair made on a PKCS#11 token (non-extractable,
//! sensitive) instead of in a file, and certified by the token key.

use crate::cli::TokenArgs;
use crate::fsio::{self, usage};
use ls_core::keys::pkcs11::{Pkcs11Key, Pkcs11Uri};
use ls_core::{CertPurpose, CertificateBuilder, Error, Generated, KeyType};
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

/// What `--pkcs11` asks for, checked before anything is made or written.
pub struct TokenPlan {
    /// The URI as given (it goes into the configuration of `init`).
    pub uri: String,
    /// The URI without its query: where the key is, for messages.
    pub location: String,
    /// `--module`, absolute.
    pub module: PathBuf,
    pub pin_env: Option<String>,
    /// `--pin-file`, absolute.
    pub pin_file: Option<PathBuf>,
    pin: Zeroizing<String>,
}

/// The token options of `a`, checked: `None` without `--pkcs11` (then `--module`,
/// `--pin-env` and `--pin-file` are refused). With it: a URI the core accepts (no
/// `pin-value`) that names the key with `object=` or `id=`, a module, and a PIN read now from
/// `--pin-env` or `--pin-file`. `password_option` names a password option given too (refused:
/// a key on a token has no password).
pub fn plan(a: &TokenArgs, password_option: Option<&str>) -> Result<Option<TokenPlan>, Error> {
    let Some(uri) = &a.pkcs11 else {
        for (flag, given) in [
            ("--module", a.module.is_some()),
            ("--pin-env", a.pin_env.is_some()),
            ("--pin-file", a.pin_file.is_some()),
        ] {
            if given {
                return Err(usage(format!(
                    "{flag} applies to --pkcs11 only (a key on a PKCS#11 token); a key file's \
                     password is given with --pass-env or --pass-file"
                )));
            }
        }
        return Ok(None);
    };
    if let Some(flag) = password_option {
        return Err(usage(format!(
            "{flag} makes no sense with --pkcs11: the key is made on the token and never \
             written to a file, so it has no password (the token's PIN is given with \
             --pin-env or --pin-file)"
        )));
    }
    let parsed = Pkcs11Uri::parse(uri).map_err(|e| match e {
        Error::InvalidArgument(m) => usage(format!("--pkcs11: {m}")),
        other => other,
    })?;
    if parsed.object.is_none() && parsed.id.is_none() {
        return Err(usage(
            "--pkcs11: the URI must name the new key with object= (its label) or id= \
             (e.g. pkcs11:token=layersec;object=acme-signing;type=private)",
        ));
    }
    let module = a.module.as_ref().ok_or_else(|| {
        usage("--pkcs11 needs --module PATH: the token's PKCS#11 library (e.g. /usr/lib/softhsm/libsofthsm2.so)")
    })?;
    let absolute = |p: &PathBuf, what: &str| {
        std::path::absolute(p)
            .map_err(|e| fsio::io_err(format!("cannot use the {what} {}", p.display()), e))
    };
    let module = absolute(module, "module")?;
    let pin = match (&a.pin_env, &a.pin_file) {
        (Some(var), _) => {
            if var.is_empty() || var.contains(['=', '\0']) {
                return Err(usage(format!(
                    "--pin-env {var:?}: the name of an environment variable is expected"
                )));
            }
            let v = std::env::var_os(var).ok_or_else(|| {
                usage(format!(
                    "--pin-env: the environment variable {var} is not set (it holds the token's PIN)"
                ))
            })?;
            Zeroizing::new(v.into_string().map_err(|_| {
                usage(format!(
                    "--pin-env: the environment variable {var} is not valid UTF-8"
                ))
            })?)
        }
        (None, Some(f)) => {
            let raw = Zeroizing::new(std::fs::read(f).map_err(|e| {
                fsio::io_err(format!("cannot read the PIN file {}", f.display()), e)
            })?);
            let text = std::str::from_utf8(&raw)
                .map_err(|_| usage(format!("the PIN file {} is not valid UTF-8", f.display())))?;
            let first = text.split('\n').next().unwrap_or("");
            Zeroizing::new(first.strip_suffix('\r').unwrap_or(first).to_string())
        }
        (None, None) => {
            return Err(usage(
                "--pkcs11 needs the token's PIN: --pin-env VAR (an environment variable) or \
                 --pin-file FILE (its first line); never on the command line",
            ))
        }
    };
    if pin.is_empty() {
        return Err(usage(
            "the token's PIN is empty (--pin-env/--pin-file): give the user PIN",
        ));
    }
    Ok(Some(TokenPlan {
        uri: uri.clone(),
        location: uri.split('?').next().unwrap_or(uri).to_string(),
        module,
        pin_env: a.pin_env.clone(),
        pin_file: a
            .pin_file
            .as_ref()
            .map(|f| absolute(f, "PIN file"))
            .transpose()?,
        pin,
    }))
}

/// A key made on the token by [`TokenPlan::generate`]; removed from the token again when
/// dropped unless [`MadeKey::keep`] was called (a failure after the key was made leaves the
/// token as it was, so that the same command can be run again).
pub struct MadeKey {
    pub key: Arc<Pkcs11Key>,
    keep: bool,
}

impl MadeKey {
    /// The files were written (and the certificate registered): the key stays on the token.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for MadeKey {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = self.key.destroy() {
                crate::output::stderr_line(&format!(
                    "layersec: warning: the key made on the token could not be removed again \
                     ({e}); remove it before running the command again"
                ));
            }
        }
    }
}

impl TokenPlan {
    /// The key pair of `key_type` made on the token (one login; a key already there with the
    /// URI's label/id is refused, not replaced), and a self-signed certificate (CN = `party`,
    /// `days`) and a CSR signed by it. No key PEM.
    pub fn generate(
        &self,
        party: &str,
        key_type: KeyType,
        days: u32,
    ) -> Result<(MadeKey, Generated), Error> {
        // As `Identity::generate` checks, before anything is made on the token.
        if party.is_empty() || party.len() > 64 || party.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(
                "a party id must be 1 to 64 printable characters".into(),
            ));
        }
        let key = Pkcs11Key::generate(&self.uri, Some(&self.module), &self.pin, key_type).map_err(
            |e| match e {
                Error::InvalidArgument(m) if m.contains("already") => {
                    Error::InvalidArgument(format!(
                        "{m}: nothing was made; choose another object=/id= for the new key, \
                             or use the existing key with [identity] pkcs11_uri"
                    ))
                }
                other => other,
            },
        )?;
        let made = MadeKey {
            key: Arc::new(key),
            keep: false,
        };
        let g = CertificateBuilder::new(party, CertPurpose::Party)
            .private_key(made.key.clone())
            .valid_days(days)
            .build(None)?;
        Ok((made, g))
    }

    /// A description of the key's place for messages: the URI without its query.
    pub fn describe(&self) -> &str {
        &self.location
    }
}
