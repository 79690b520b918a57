//! One module per command (as cargo's `src/bin/cargo/commands/`), and what several of them
//! share: loading identities, partners, the client's configuration, staged files.

pub mod init;
pub mod inspect;
pub mod keygen;
pub mod open;
pub mod partners;
pub mod poll;
pub mod receipts;
pub mod rollover;
pub mod run;
pub mod seal;
pub mod send;
pub mod status;
pub mod token;
pub mod verify_receipt;

use crate::cli::{Cli, PassArgs};
use crate::fsio::{self, usage};
use ls_client::{Client, Config};
use ls_core::{bytes, CertStore, Error, Identity};
use std::path::{Path, PathBuf};

/// The default limit on an opened document: the client's default `[limits] max_document_bytes`
/// (4 GiB), so that `open` takes what `poll` takes.
pub const DEFAULT_MAX_SIZE: u64 = ls_core::as4::coordination::DEFAULT_MAX_DOCUMENT_BYTES;

/// Our identity from a PEM key (+ certificate) or a PKCS#12 file.
pub fn load_identity(
    key: &Path,
    cert: Option<&Path>,
    pass: &PassArgs,
    cert_option: &str,
) -> Result<Identity, Error> {
    let pw = fsio::password(pass)?;
    if cert.is_none() {
        // A PEM key alone cannot be used: say which option is missing rather than failing on
        // "no certificate in the PEM text".
        if let Ok(data) = std::fs::read(key) {
            if bytes::contains(&data, b"-----BEGIN")
                && !bytes::contains(&data, b"-----BEGIN CERTIFICATE")
            {
                return Err(usage(format!(
                    "{} is a PEM private key without its certificate: give {cert_option} CERT",
                    key.display()
                )));
            }
        }
    }
    Identity::load(key, cert, pw.as_ref().map(|p| p.as_str()))
}

pub fn load_partners(dir: &Path) -> Result<CertStore, Error> {
    let store = CertStore::load_dir(dir)?;
    if store.partners().next().is_none() && store.anchors().is_empty() {
        return Err(usage(format!(
            "the partner folder {} holds no certificates (*.pem, *.crt, *.cer, *.der, or anchors/)",
            dir.display()
        )));
    }
    Ok(store)
}

/// The configuration file: `--config`, else `$LAYERSEC_CONFIG`, else `./layersec.toml`; and
/// whether it was named (rather than the default).
fn config_path(cli: &Cli) -> (PathBuf, bool) {
    if let Some(p) = &cli.config {
        return (p.clone(), true);
    }
    match std::env::var_os("LAYERSEC_CONFIG") {
        Some(v) if !v.is_empty() => (PathBuf::from(v), true),
        _ => (PathBuf::from("layersec.toml"), false),
    }
}

pub fn load_config(cli: &Cli) -> Result<Config, Error> {
    let (path, named) = config_path(cli);
    Config::load(&path).map_err(|e| match e {
        Error::ConfigInvalid(m) if !named && !path.exists() => Error::ConfigInvalid(format!(
            "{m} (name the configuration file with --config FILE or LAYERSEC_CONFIG, or create \
             one with `layersec init`)"
        )),
        other => other,
    })
}

/// A line of what a failover between the service's nodes did.
pub fn node_text(ev: &ls_core::transport::NodeEvent) -> String {
    match (&ev.failure, &ev.next) {
        (None, _) => format!("using service node {} (it answered)", ev.url),
        (Some(why), Some(next)) => {
            format!("service node {} is down ({why}); trying {next}", ev.url)
        }
        (Some(why), None) => format!("service node {} is down ({why})", ev.url),
    }
}

pub fn load_client(cli: &Cli) -> Result<Client, Error> {
    Client::from_config(&load_config(cli)?)
}

/// Commit staged files in order; when one fails (and we were not replacing files on purpose),
/// the ones already committed are removed again, so a half-written set is not left behind.
pub fn commit_all(staged: Vec<fsio::Staged>, force: bool) -> Result<(), Error> {
    let mut done: Vec<PathBuf> = Vec::new();
    for s in staged {
        let dest = s.dest().to_path_buf();
        if let Err(e) = s.commit() {
            if !force {
                for d in &done {
                    let _ = std::fs::remove_file(d);
                }
            }
            return Err(e);
        }
        done.push(dest);
    }
    Ok(())
}
