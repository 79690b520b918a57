//! `layersec keygen`: a party's key, self-signed certificate and certificate request.

use super::commit_all;
use crate::cli::{Cli, KeyKind, KeygenArgs};
use crate::fsio::{self, io_err, print_stdout, usage};
use crate::output::info;
use ls_core::{Error, Identity, KeyType};
use serde_json::json;

pub fn run(a: &KeygenArgs, cli: &Cli) -> Result<(), Error> {
    let party = a.party.as_str();
    if party.is_empty()
        || party.starts_with('.')
        || party.contains(['/', '\\', '\0'])
        || party.chars().any(|c| c.is_control())
    {
        return Err(usage(format!(
            "--party {party:?}: a party id names the files, so it must not be empty, start with \
             '.', or contain '/', '\\' or control characters"
        )));
    }
    let key_type = match (a.key_type, a.rsa_bits) {
        (KeyKind::Ec, Some(_)) => {
            return Err(usage("--rsa-bits applies to --key-type rsa only"));
        }
        (KeyKind::Ec, None) => KeyType::EcP256,
        (KeyKind::Rsa, bits) => KeyType::Rsa(bits.unwrap_or(3072)),
    };
    let pw = fsio::password(&a.pass)?;
    if pw.as_ref().is_some_and(|p| p.as_str().is_empty()) {
        return Err(usage(
            "the key password is empty; give a non-empty password, or none to write an \
             unencrypted key",
        ));
    }
    let key_path = a.out.join(format!("{party}.key.pem"));
    let cert_path = a.out.join(format!("{party}.cert.pem"));
    let csr_path = a.out.join(format!("{party}.csr.pem"));
    if !a.force {
        for p in [&key_path, &cert_path, &csr_path] {
            if std::fs::symlink_metadata(p).is_ok() {
                return Err(fsio::already_exists_error(p));
            }
        }
    }
    if !a.out.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&a.out)
            .map_err(|e| io_err(format!("cannot create the folder {}", a.out.display()), e))?;
    }

    let g = Identity::generate(party, key_type, a.days, pw.as_ref().map(|p| p.as_str()))?;
    let existing = if a.force {
        fsio::Existing::Replace
    } else {
        fsio::Existing::Refuse
    };
    // Stage all three first, then move them into place; undo on failure.
    let staged = vec![
        fsio::stage(&key_path, &g.key_pem, 0o600, false, existing)?,
        fsio::stage(&cert_path, &g.cert_pem, 0o644, false, existing)?,
        fsio::stage(&csr_path, &g.csr_pem, 0o644, false, existing)?,
    ];
    commit_all(staged, a.force)?;

    let cert = g.identity.certificate();
    let encrypted = pw.is_some();
    let kt = match key_type {
        KeyType::Rsa(b) => format!("rsa-{b}"),
        KeyType::EcP256 => "ec-p256".into(),
    };
    if cli.json {
        print_stdout(
            &serde_json::to_string_pretty(&json!({
                "party": party,
                "key_type": kt,
                "key": key_path.display().to_string(),
                "key_encrypted": encrypted,
                "cert": cert_path.display().to_string(),
                "csr": csr_path.display().to_string(),
                "subject": cert.subject(),
                "serial": cert.serial_hex(),
                "not_before": ls_core::time::iso8601(cert.not_before()),
                "not_after": ls_core::time::iso8601(cert.not_after()),
                "fingerprint": cert.sha256_fingerprint(),
            }))
            .unwrap_or_default(),
        )?;
    } else {
        print_stdout(&format!(
            "private key:  {} ({kt}, {})\ncertificate:  {}\nrequest:      {}\nsubject:      {}\n\
             valid until:  {}\nfingerprint:  SHA256 {}",
            key_path.display(),
            if encrypted {
                "encrypted"
            } else {
                "NOT encrypted"
            },
            cert_path.display(),
            csr_path.display(),
            cert.subject(),
            ls_core::time::iso8601(cert.not_after()),
            cert.sha256_fingerprint()
        ))?;
    }
    if !encrypted {
        info(
            cli,
            "warning: the private key is not encrypted; use --pass-env or --pass-file to protect it",
        );
    }
    Ok(())
}
