//! `layersec keygen`: a party's key, self-signed certificate and certificate request; the key
//! in a file, or made on a PKCS#11 token (`--pkcs11`, [`super::token`]).

use super::{commit_all, token};
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
    let password_option = if a.pass.pass_env.is_some() {
        Some("--pass-env")
    } else if a.pass.pass_file.is_some() {
        Some("--pass-file")
    } else {
        None
    };
    let token = token::plan(&a.token, password_option)?;
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
    // With the key on a token, no key file is written (nor looked at).
    let files: Vec<&std::path::PathBuf> = match &token {
        Some(_) => vec![&cert_path, &csr_path],
        None => vec![&key_path, &cert_path, &csr_path],
    };
    if !a.force {
        for p in files.iter().copied() {
            if std::fs::symlink_metadata(p).is_ok() {
                return Err(fsio::already_exists_error(p));
            }
        }
    }

    // A key made on the token is removed again when anything below fails.
    let (made, g) = match &token {
        Some(t) => {
            let (made, g) = t.generate(party, key_type, a.days)?;
            (Some(made), g)
        }
        None => (
            None,
            Identity::generate(party, key_type, a.days, pw.as_ref().map(|p| p.as_str()))?,
        ),
    };
    // Made once the key is (a module that does not load or a wrong PIN leaves nothing).
    if !a.out.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&a.out)
            .map_err(|e| io_err(format!("cannot create the folder {}", a.out.display()), e))?;
    }
    let existing = if a.force {
        fsio::Existing::Replace
    } else {
        fsio::Existing::Refuse
    };
    // Stage all first, then move them into place; undo on failure.
    let mut staged = Vec::new();
    if made.is_none() {
        staged.push(fsio::stage(&key_path, &g.key_pem, 0o600, false, existing)?);
    }
    staged.push(fsio::stage(
        &cert_path,
        &g.cert_pem,
        0o644,
        false,
        existing,
    )?);
    staged.push(fsio::stage(&csr_path, &g.csr_pem, 0o644, false, existing)?);
    commit_all(staged, a.force)?;
    if let Some(m) = made {
        m.keep();
    }

    let cert = g.identity.certificate();
    let encrypted = pw.is_some();
    let kt = match key_type {
        KeyType::Rsa(b) => format!("rsa-{b}"),
        KeyType::EcP256 => "ec-p256".into(),
    };
    let key_shown = match &token {
        Some(t) => t.describe().to_string(),
        None => key_path.display().to_string(),
    };
    if cli.json {
        print_stdout(
            &serde_json::to_string_pretty(&json!({
                "party": party,
                "key_type": kt,
                "key": key_shown,
                "key_encrypted": encrypted,
                "key_on_token": token.is_some(),
                "module": token.as_ref().map(|t| t.module.display().to_string()),
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
            key_shown,
            if token.is_some() {
                "on the token, not extractable"
            } else if encrypted {
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
    if !encrypted && token.is_none() {
        info(
            cli,
            "warning: the private key is not encrypted; use --pass-env or --pass-file to protect it",
        );
    }
    Ok(())
}
