//! `layersec init`: a client's configuration, identity, service certificates and folders.

use super::commit_all;
use crate::cli::{Cli, InitArgs, InitKeyType, PassArgs};
use crate::fsio::{self, io_err, print_stdout, read_input, usage};
use crate::output::{info, iso, print_json_pretty, printable, stderr_line};
use ls_client::{Config, TemplateOptions};
use ls_core::{Certificate, Error, Identity, KeyType};
use serde_json::json;
use std::path::Path;

pub fn run(a: &InitArgs, cli: &Cli) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    let party = a.party.as_str();
    if party.trim().is_empty() || party.len() > 255 || party.chars().any(char::is_control) {
        return Err(usage(format!(
            "--party {party:?}: a party id of 1 to 255 printable characters is expected"
        )));
    }
    let url = a.service.trim();
    let lower = url.to_ascii_lowercase();
    if !lower.starts_with("https://")
        || lower.len() <= "https://".len()
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(usage(format!(
            "--service {:?}: the https:// URL of the service's AS4 endpoint is expected \
             (e.g. https://ls.example:8443/as4)",
            a.service
        )));
    }
    if let Some(pin) = &a.pin {
        let hex: String = pin.chars().filter(|c| *c != ':').collect();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(usage(
                "--pin: the SHA-256 of the service's TLS certificate is expected (64 hex \
                 digits, ':' allowed)",
            ));
        }
    }
    let password = match &a.pass_env {
        Some(var) => {
            if var.is_empty() || var.contains(['=', '\0']) {
                return Err(usage(format!(
                    "--pass-env {var:?}: the name of an environment variable is expected"
                )));
            }
            match fsio::password(&PassArgs {
                pass_env: Some(var.clone()),
                pass_file: None,
            })? {
                Some(pw) if !pw.as_str().is_empty() => Some(pw),
                _ => {
                    return Err(usage(format!(
                        "--pass-env: the environment variable {var} is empty; set it to the \
                         key's password, or leave --pass-env out for a key without password"
                    )))
                }
            }
        }
        None => None,
    };
    let service_cert = a.service_cert.as_ref().map(Certificate::load).transpose()?;
    let ca_pem = match &a.ca_file {
        Some(p) => {
            let data = read_input(p, Some(16 << 20), "CA file")?;
            let certs = Certificate::all_from_bytes(&data).map_err(|e| match e {
                Error::CertInvalid(m) => Error::CertInvalid(format!("{}: {m}", p.display())),
                other => other,
            })?;
            if certs.is_empty() {
                return Err(Error::CertInvalid(format!(
                    "{}: no certificate in the file",
                    p.display()
                )));
            }
            Some(certs.iter().flat_map(|c| c.to_pem()).collect::<Vec<u8>>())
        }
        None => None,
    };

    let mut t = TemplateOptions::new(party, url);
    t.password_env = a.pass_env.clone();
    t.pinned_sha256 = a.pin.clone();
    if ca_pem.is_some() {
        t.ca_file = Some("service/ca.crt".into());
    }
    let dir = std::path::absolute(&a.dir)
        .map_err(|e| io_err(format!("cannot use the folder {}", a.dir.display()), e))?;
    let config_file = dir.join("layersec.toml");
    let key_file = dir.join(&t.key);
    let cert_file = dir.join(&t.certificate);
    let service_file = dir.join(&t.service_certificate);
    let ca_file = t.ca_file.as_ref().map(|c| dir.join(c));
    let mut targets = vec![&config_file, &key_file, &cert_file];
    if service_cert.is_some() {
        targets.push(&service_file);
    }
    targets.extend(ca_file.as_ref());
    if !a.force {
        for p in &targets {
            if std::fs::symlink_metadata(p).is_ok() {
                return Err(fsio::already_exists_error(p));
            }
        }
    }
    let mkdir = |p: &Path, mode: u32| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(p)
            .map_err(|e| io_err(format!("cannot create the folder {}", p.display()), e))
    };
    mkdir(&dir, 0o755)?;
    // The service's certificate goes into its folder now or later.
    for p in targets.iter().copied().chain([&service_file]) {
        if let Some(parent) = p.parent() {
            // The key's folder is private; the others as usual.
            let private = p == &key_file;
            mkdir(parent, if private { 0o700 } else { 0o755 })?;
        }
    }

    let key_type = match a.key_type {
        InitKeyType::Ec => KeyType::EcP256,
        InitKeyType::Rsa2048 => KeyType::Rsa(2048),
        InitKeyType::Rsa3072 => KeyType::Rsa(3072),
        InitKeyType::Rsa4096 => KeyType::Rsa(4096),
    };
    let g = Identity::generate(
        party,
        key_type,
        a.days,
        password.as_ref().map(|p| p.as_str()),
    )?;
    let existing = if a.force {
        fsio::Existing::Replace
    } else {
        fsio::Existing::Refuse
    };
    let template = Config::template(&t);
    // Stage everything, then move it into place, the configuration last; undo on failure.
    let mut staged = vec![
        fsio::stage(&key_file, &g.key_pem, 0o600, false, existing)?,
        fsio::stage(&cert_file, &g.cert_pem, 0o644, false, existing)?,
    ];
    if let Some(c) = &service_cert {
        staged.push(fsio::stage(
            &service_file,
            &c.to_pem(),
            0o644,
            false,
            existing,
        )?);
    }
    if let (Some(pem), Some(f)) = (&ca_pem, &ca_file) {
        staged.push(fsio::stage(f, pem, 0o644, false, existing)?);
    }
    staged.push(fsio::stage(
        &config_file,
        template.as_bytes(),
        0o644,
        false,
        existing,
    )?);
    commit_all(staged, a.force)?;
    for (f, mode) in [
        ("outbox", 0o755),
        ("sent", 0o755),
        ("failed", 0o755),
        ("inbox", 0o755),
        // The journal holds the documents being sent.
        ("state", 0o700),
        ("partners", 0o755),
    ] {
        mkdir(&dir.join(f), mode)?;
    }
    let service_present = service_file.is_file();
    if service_present {
        // What we wrote must load (the other commands read it).
        Config::load(&config_file)?;
    }

    let cert = g.identity.certificate();
    let mpc = ls_core::as4::exchange::party_mpc(party);
    let pem = String::from_utf8_lossy(&g.cert_pem).into_owned();
    let kt = match key_type {
        KeyType::Rsa(b) => format!("rsa-{b}"),
        KeyType::EcP256 => "ec-p256".into(),
    };
    let missing_note = format!(
        "the service's signing certificate must be placed at {} before `layersec send` or \
         `layersec poll` (ask the provider for it; receipts are checked against it)",
        service_file.display()
    );
    if cli.json {
        print_json_pretty(&json!({
            "config": config_file.display().to_string(),
            "party": party,
            "mpc": mpc,
            "certificate": cert_file.display().to_string(),
            "certificate_sha256": cert.sha256_fingerprint(),
            "certificate_pem": pem,
            "certificate_not_after": iso(cert.not_after()),
            "max_document_bytes": ls_core::as4::coordination::DEFAULT_MAX_DOCUMENT_BYTES,
            "key": key_file.display().to_string(),
            "key_type": kt,
            "key_encrypted": password.is_some(),
            "password_env": a.pass_env,
            "service": url,
            "service_certificate": service_file.display().to_string(),
            "service_certificate_present": service_present,
            "ca_file": ca_file.as_ref().map(|p| p.display().to_string()),
        }))?;
    } else {
        let mut out = format!(
            "configuration:        {}\n\
             party id:             {}\n\
             MPC:                  {mpc}\n\
             private key:          {} ({kt}, {})\n\
             certificate:          {} (valid until {})\n\
             SHA-256 fingerprint:  {}\n\
             service certificate:  {}{}\n",
            config_file.display(),
            printable(party),
            key_file.display(),
            match &a.pass_env {
                Some(v) => format!("encrypted; password from ${v}"),
                None => "NOT encrypted".into(),
            },
            cert_file.display(),
            iso(cert.not_after()),
            cert.sha256_fingerprint(),
            service_file.display(),
            if service_present { "" } else { " (MISSING)" },
        );
        out.push_str(&format!(
            "\nFor the provider, to register party {} (MPC {mpc}, documents up to {} bytes: \
             [limits] max_document_bytes) with this certificate:\n\n{}",
            printable(party),
            ls_core::as4::coordination::DEFAULT_MAX_DOCUMENT_BYTES,
            pem.trim_end()
        ));
        print_stdout(&out)?;
    }
    if !service_present {
        stderr_line(&format!("layersec: note: {missing_note}"));
    }
    if password.is_none() {
        info(
            cli,
            "warning: the private key is not encrypted; use --pass-env VAR to protect it",
        );
    }
    info(
        cli,
        "next: register with the provider, then add partners with `layersec partners add ID CERT`",
    );
    Ok(())
}
