//! `layersec init`: a client's configuration, identity (the key in a file, or made on a
//! PKCS#11 token with `--pkcs11`), service certificates and folders.

use super::{commit_all, token};
use crate::cli::{Cli, InitArgs, InitKeyType, PassArgs};
use crate::fsio::{self, io_err, print_stdout, read_input, usage};
use crate::output::{info, iso, print_json_pretty, printable, stderr_line};
use ls_client::enrol::{EnrolTarget, Enroller};
use ls_client::{Config, TemplateOptions, TokenTemplate};
use ls_core::{Certificate, Error, Identity, KeyType};
use serde_json::json;
use std::path::Path;
use zeroize::Zeroizing;

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
    // The code is checked for its form before anything else (a mistyped code costs no
    // attempt at the service), and read from stdin for `-`.
    let code = match a.enrol.as_deref() {
        Some(typed) => Some(enrolment_code(typed)?),
        None => None,
    };
    let token = token::plan(&a.token, a.pass_env.as_ref().map(|_| "--pass-env"))?;
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
    t.token = token.as_ref().map(|k| TokenTemplate {
        pkcs11_uri: k.uri.clone(),
        module: k.module.display().to_string(),
        pin_env: k.pin_env.clone(),
        pin_file: k.pin_file.as_ref().map(|f| f.display().to_string()),
    });
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
    let mut targets = vec![&config_file, &cert_file];
    if token.is_none() {
        targets.push(&key_file);
    }
    if service_cert.is_some() || code.is_some() {
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
    // Enrolling: the service's signing certificate, from the service, before the code is sent.
    let enroller = match &code {
        Some(_) => Some(enroller(url, ca_pem.as_deref(), a.pin.as_deref())?),
        None => None,
    };
    let (service_cert, fetched) = match &enroller {
        Some(e) => {
            let fetched = e.service_certificate()?;
            if let Some(given) = &service_cert {
                if *given != fetched {
                    return Err(Error::CertUntrusted(format!(
                        "the service at {} signs with the certificate {} ({}), not with the \
                         one given with --service-cert ({}, {}): nothing was sent or written; \
                         check --service and the certificate with the provider",
                        e.url(),
                        fetched.subject(),
                        fetched.sha256_fingerprint(),
                        given.subject(),
                        given.sha256_fingerprint()
                    )));
                }
            }
            if service_cert.is_none() {
                // Shown before the code is sent, so that a wrong service is noticed in time.
                crate::output::info(
                    cli,
                    &format!(
                        "the service at {} signs with {}, SHA256 {}: compare it with the \
                         fingerprint your provider gave you",
                        e.url(),
                        printable(fetched.subject()),
                        fetched.sha256_fingerprint()
                    ),
                );
            }
            (Some(fetched), true)
        }
        None => (service_cert, false),
    };
    let mkdir = |p: &Path, mode: u32| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(p)
            .map_err(|e| io_err(format!("cannot create the folder {}", p.display()), e))
    };
    // Folders made here, removed again (when still empty) if the enrolment fails.
    let mut made: Vec<std::path::PathBuf> = std::iter::once(dir.as_path())
        .chain(
            targets
                .iter()
                .copied()
                .chain([&service_file])
                .filter_map(|p| p.parent()),
        )
        .filter(|p| !p.exists())
        .map(Path::to_path_buf)
        .collect();
    made.dedup();
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
    // A key made on the token is removed again when anything below fails (a refused
    // enrolment too: the same command can then be run again).
    let (token_key, g) = match &token {
        Some(k) => {
            let (made, g) = k.generate(party, key_type, a.days)?;
            (Some(made), g)
        }
        None => (
            None,
            Identity::generate(
                party,
                key_type,
                a.days,
                password.as_ref().map(|p| p.as_str()),
            )?,
        ),
    };
    let existing = if a.force {
        fsio::Existing::Replace
    } else {
        fsio::Existing::Refuse
    };
    let template = Config::template(&t);
    // Stage everything, then move it into place, the configuration last; undo on failure.
    let mut staged = Vec::new();
    if token_key.is_none() {
        staged.push(fsio::stage(&key_file, &g.key_pem, 0o600, false, existing)?);
    }
    staged.push(fsio::stage(
        &cert_file,
        &g.cert_pem,
        0o644,
        false,
        existing,
    )?);
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
    let enrolled = match (&enroller, &code, &service_cert) {
        (Some(e), Some(code), Some(service)) => Some(
            e.enrol(
                &g.identity,
                party,
                code,
                service,
                ls_core::as4::coordination::DEFAULT_MAX_DOCUMENT_BYTES,
            )
            .map_err(|err| {
                drop(std::mem::take(&mut staged));
                for d in made.iter().rev() {
                    let _ = std::fs::remove_dir(d);
                }
                not_enrolled(err)
            })?,
        ),
        _ => None,
    };
    // (A failed enrolment returned above: the staged files are removed when dropped.)
    commit_all(staged, a.force).map_err(|e| match &enrolled {
        Some(_) => Error::io(
            format!(
                "the service registered our certificate ({}), but the files could not be \
                 written, so its key is lost: fix the cause below and run init again with a \
                 new code from the provider",
                g.identity.certificate().sha256_fingerprint()
            ),
            std::io::Error::other(e.to_string()),
        ),
        None => e,
    })?;
    if let Some(m) = token_key {
        m.keep();
    }
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
    let service_sha256 = service_cert.as_ref().map(Certificate::sha256_fingerprint);
    let enrolment = enrolled.as_ref().map(|e| {
        json!({
            "url": enroller.as_ref().map(|x| x.url().to_string()),
            "outcome": e.outcome,
            "subscriber_id": e.subscriber_id,
            "registered_at": e.registered_at,
            "max_document_bytes": e.max_document_bytes,
            "service_certificate_fetched": fetched,
            "service_certificate_matches_given": a.service_cert.is_some(),
        })
    });
    let key_shown = match &token {
        Some(k) => k.describe().to_string(),
        None => key_file.display().to_string(),
    };
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
            "key": key_shown,
            "key_type": kt,
            "key_encrypted": password.is_some(),
            "key_on_token": token.is_some(),
            "module": token.as_ref().map(|k| k.module.display().to_string()),
            "pin_env": token.as_ref().and_then(|k| k.pin_env.clone()),
            "pin_file": token.as_ref().and_then(|k| k.pin_file.as_ref()).map(|f| f.display().to_string()),
            "password_env": a.pass_env,
            "service": url,
            "service_certificate": service_file.display().to_string(),
            "service_certificate_present": service_present,
            "service_certificate_sha256": service_sha256,
            "ca_file": ca_file.as_ref().map(|p| p.display().to_string()),
            "enrolled": enrolled.is_some(),
            "enrolment": enrolment,
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
            key_shown,
            match (&token, &a.pass_env) {
                (Some(k), _) => format!(
                    "on the token, not extractable; PIN from {}",
                    match (&k.pin_env, &k.pin_file) {
                        (Some(v), _) => format!("${v}"),
                        (None, Some(f)) => f.display().to_string(),
                        (None, None) => "nowhere".into(),
                    }
                ),
                (None, Some(v)) => format!("encrypted; password from ${v}"),
                (None, None) => "NOT encrypted".into(),
            },
            cert_file.display(),
            iso(cert.not_after()),
            cert.sha256_fingerprint(),
            service_file.display(),
            if service_present { "" } else { " (MISSING)" },
        );
        match (&enrolled, &service_sha256) {
            (Some(e), Some(fp)) => {
                out.push_str(&format!(
                    "service SHA-256:      {fp} ({})\n\
                     enrolled:             party {} {} at the service (subscriber {}) at {}\n",
                    if a.service_cert.is_some() {
                        "from the service, the same as --service-cert"
                    } else {
                        "from the service: compare it with the fingerprint the provider gave you"
                    },
                    printable(&e.party_id),
                    match e.outcome.as_str() {
                        "replaced" => "re-installed (its earlier certificates retired)",
                        "already_enrolled" => "was enrolled already with this certificate",
                        _ => "registered",
                    },
                    e.subscriber_id,
                    printable(&e.registered_at),
                ));
            }
            _ => out.push_str(&format!(
                "\nFor the provider, to register party {} (MPC {mpc}, documents up to {} bytes: \
                 [limits] max_document_bytes) with this certificate:\n\n{}",
                printable(party),
                ls_core::as4::coordination::DEFAULT_MAX_DOCUMENT_BYTES,
                pem.trim_end()
            )),
        }
        print_stdout(&out)?;
    }
    if !service_present {
        stderr_line(&format!("layersec: note: {missing_note}"));
    }
    if password.is_none() && token.is_none() {
        info(
            cli,
            "warning: the private key is not encrypted; use --pass-env VAR to protect it",
        );
    }
    if enrolled.is_some() {
        info(
            cli,
            "next: add partners with `layersec partners add ID CERT`; `send` and `poll` work now",
        );
    } else {
        info(
            cli,
            "next: register with the provider, then add partners with `layersec partners add ID CERT`",
        );
    }
    Ok(())
}

/// The code of `--enrol` (from stdin for `-`), checked for its form.
fn enrolment_code(typed: &str) -> Result<Zeroizing<String>, Error> {
    let typed = if typed == "-" {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| io_err("cannot read the enrolment code from stdin", e))?;
        Zeroizing::new(line.trim().to_string())
    } else {
        Zeroizing::new(typed.to_string())
    };
    if ls_core::enrol::normalize_code(&typed).is_none() {
        return Err(usage(format!(
            "--enrol: not an enrolment code: a code is {} letters and digits, in groups of four \
             (XXXX-XXXX-XXXX-XXXX-XXXX-XXXX) as the provider gave it",
            ls_core::enrol::CODE_SYMBOLS
        )));
    }
    Ok(typed)
}

/// The enrolment endpoint of the service at `url`, trusted as the configuration will trust it.
fn enroller(url: &str, ca_pem: Option<&[u8]>, pin: Option<&str>) -> Result<Enroller, Error> {
    let mut t = EnrolTarget::new(url);
    t.ca_pem = ca_pem.map(<[u8]>::to_vec);
    t.pinned_sha256 = pin.map(str::to_string);
    Enroller::new(&t)
}

/// A failed enrolment, saying that nothing was written and that the command can be run again.
fn not_enrolled(e: Error) -> Error {
    let again = format!(
        " (nothing was written: the same command can be run again{})",
        if e.is_transient() { " later" } else { "" }
    );
    match e {
        Error::Refused(m) => Error::Refused(format!("{m}{again}")),
        Error::HttpStatus { status, message } => Error::HttpStatus {
            status,
            message: format!("{message}{again}"),
        },
        Error::ConnectFailed(m) => Error::ConnectFailed(format!("{m}{again}")),
        Error::Timeout(m) => Error::Timeout(format!("{m}{again}")),
        Error::BadResponse(m) => Error::BadResponse(format!("{m}{again}")),
        Error::SignerMismatch(m) => Error::SignerMismatch(format!("{m}{again}")),
        other => other,
    }
}
