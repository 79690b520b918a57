//! `layersec`: the Layer Security command line — generate identities, seal documents for partners,
//! open what partners sent, and inspect any CMS/S-MIME object.
//!
//! Exit codes, JSON shapes and password sources are documented in `docs/CLI.md` and `--help`.

mod cli;
mod fsio;

use clap::Parser;
use cli::{Cli, Command, InspectArgs, KeyKind, KeygenArgs, OpenArgs, PassArgs, SealArgs};
use fsio::{io_err, is_dash, print_stdout, read_input, usage, write_atomic, write_stdout};
use ls_core::{
    CertStore, Certificate, Compression, ContentCipher, Error, ErrorCode, Identity, Json, KeyType,
    OpenOptions, OutputFormat, SealOptions, SignatureScheme,
};
use serde_json::json;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The default limit on an opened document (the core's default).
const DEFAULT_MAX_SIZE: u64 = 1 << 30;

/// The process exit status for a failure of the given code.
pub fn exit_code(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::Io => 3,
        ErrorCode::BadPassword | ErrorCode::UnsupportedKey => 7,
        _ => match code.family() {
            "argument" => 2,
            "crypto" => 4,
            "certificate" => 5,
            "format" => 6,
            "protocol" => 8,
            _ => 70,
        },
    }
}

fn error_json(code: ErrorCode, message: &str) -> String {
    serde_json::to_string_pretty(&json!({
        "error": {
            "code": code.as_i32(),
            "name": code.to_string(),
            "family": code.family(),
            "message": message,
            "exit_code": exit_code(code),
        }
    }))
    .unwrap_or_default()
}

/// Text from a message (file names, MIME headers, ...) made safe for a terminal: control and
/// bidirectional-override characters are shown escaped instead of being interpreted.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let invisible = c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        if invisible {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

fn stderr_line(line: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{line}");
}

/// Report a failure on stderr (and as JSON on stdout when asked) and give its exit status.
fn report(code: ErrorCode, message: &str, json: bool) -> u8 {
    stderr_line(&format!("layersec: error[{code}]: {}", printable(message)));
    if json {
        let _ = print_stdout(&error_json(code, message));
    }
    exit_code(code)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => return ExitCode::from(clap_error(e, &args)),
    };
    let json = cli.json || matches!(cli.command, Command::Inspect(_));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&cli)));
    let status = match result {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => report(e.code(), &e.to_string(), json),
        Err(_) => report(
            ErrorCode::Panic,
            "internal error: unexpected failure (this is a bug, please report it)",
            json,
        ),
    };
    ExitCode::from(status)
}

/// clap's help and version go out as clap prints them; usage errors get our error line first
/// (and the JSON error object with --json), then clap's usage and hints.
fn clap_error(e: clap::Error, args: &[OsString]) -> u8 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return 0;
    }
    let json = args.iter().skip(1).any(|a| a == "--json" || a == "inspect");
    let rendered = e.render().to_string();
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or("invalid usage");
    let first = first.strip_prefix("error: ").unwrap_or(first).to_string();
    let rest: Vec<&str> = lines.collect();
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
    } else {
        stderr_line(&format!(
            "layersec: error[{}]: {first}",
            ErrorCode::InvalidArgument
        ));
        let rest = rest.join("\n");
        let rest = rest.trim_matches('\n');
        if !rest.is_empty() {
            stderr_line(&format!("\n{rest}"));
        }
    }
    if json {
        let _ = print_stdout(&error_json(ErrorCode::InvalidArgument, &first));
    }
    2
}

fn run(cli: &Cli) -> Result<u8, Error> {
    match &cli.command {
        Command::Keygen(a) => keygen(a, cli).map(|_| 0),
        Command::Seal(a) => seal(a, cli).map(|_| 0),
        Command::Open(a) => open(a, cli).map(|_| 0),
        Command::Inspect(a) => inspect(a, cli),
    }
}

fn info(cli: &Cli, msg: &str) {
    if !cli.quiet {
        stderr_line(&format!("layersec: {}", printable(msg)));
    }
}

fn display(p: &Path) -> String {
    if is_dash(p) {
        "-".into()
    } else {
        p.display().to_string()
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Our identity from a PEM key (+ certificate) or a PKCS#12 file.
fn load_identity(
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
            if memfind(&data, b"-----BEGIN") && !memfind(&data, b"-----BEGIN CERTIFICATE") {
                return Err(usage(format!(
                    "{} is a PEM private key without its certificate: give {cert_option} CERT",
                    key.display()
                )));
            }
        }
    }
    Identity::load(key, cert, pw.as_ref().map(|p| p.as_str()))
}

fn load_partners(dir: &Path) -> Result<CertStore, Error> {
    let store = CertStore::load_dir(dir)?;
    if store.partners().next().is_none() && store.anchors().is_empty() {
        return Err(usage(format!(
            "the partner folder {} holds no certificates (*.pem, *.crt, *.cer, *.der, or anchors/)",
            dir.display()
        )));
    }
    Ok(store)
}

fn cert_json(c: &Certificate) -> serde_json::Value {
    json!({
        "subject": c.subject(),
        "serial": c.serial_hex(),
        "fingerprint": c.sha256_fingerprint(),
    })
}

// ---------------------------------------------------------------------------------------------
// keygen

fn keygen(a: &KeygenArgs, cli: &Cli) -> Result<(), Error> {
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
    let mut done: Vec<PathBuf> = Vec::new();
    for s in staged {
        let dest = s.dest().to_path_buf();
        if let Err(e) = s.commit() {
            if !a.force {
                for d in &done {
                    let _ = std::fs::remove_file(d);
                }
            }
            return Err(e);
        }
        done.push(dest);
    }

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

// ---------------------------------------------------------------------------------------------
// seal

fn seal(a: &SealArgs, cli: &Cli) -> Result<(), Error> {
    if a.to.is_empty() && !a.encrypt_to_self {
        return Err(usage(
            "seal needs at least one --to RECIPIENT_CERT (or --encrypt-to-self)",
        ));
    }
    let to_stdout = is_dash(&a.output);
    if to_stdout && cli.json {
        return Err(usage(
            "--json prints on stdout, so OUT cannot be `-`; write the sealed message to a file",
        ));
    }
    let output = if a.smime {
        OutputFormat::Smime
    } else if a.pem {
        OutputFormat::Pem
    } else {
        OutputFormat::Der
    };
    if to_stdout && output == OutputFormat::Der && std::io::stdout().is_terminal() {
        return Err(usage(
            "refusing to write binary DER to a terminal; redirect stdout, or use --pem or --smime",
        ));
    }
    let id = load_identity(&a.sign_key, a.sign_cert.as_deref(), &a.pass, "--sign-cert")?;
    if a.pss && id.is_ec() {
        return Err(usage(
            "--pss applies to RSA keys; an EC key always signs with ECDSA",
        ));
    }
    let recipients =
        a.to.iter()
            .map(Certificate::load)
            .collect::<Result<Vec<_>, _>>()?;
    let doc = read_input(&a.input, None, "document")?;
    let filename = match &a.filename {
        Some(f) => Some(f.clone()),
        None if is_dash(&a.input) => None,
        None => a
            .input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
    };
    let opts = SealOptions {
        filename: filename.clone(),
        mime_type: a.mime_type.clone(),
        compression: if a.no_compress {
            Compression::Never
        } else {
            Compression::Auto
        },
        cipher: if a.cbc {
            ContentCipher::Aes256Cbc
        } else {
            ContentCipher::Aes256Gcm
        },
        signature: if a.pss {
            SignatureScheme::RsaPss
        } else {
            SignatureScheme::Pkcs1v15
        },
        output,
        encrypt_to_self: a.encrypt_to_self,
        ..Default::default()
    };
    let sealed = ls_core::seal(&doc, &id, &recipients, &opts)?;
    if to_stdout {
        write_stdout(&sealed)?;
    } else {
        write_atomic(&a.output, &sealed, 0o666)?;
    }

    let mut rcpts: Vec<serde_json::Value> = recipients.iter().map(cert_json).collect();
    if a.encrypt_to_self && !recipients.contains(id.certificate()) {
        rcpts.push(cert_json(id.certificate()));
    }
    if cli.json {
        print_stdout(
            &serde_json::to_string_pretty(&json!({
                "output": display(&a.output),
                "size": sealed.len(),
                "document_size": doc.len(),
                "filename": filename,
                "format": match output {
                    OutputFormat::Der => "der",
                    OutputFormat::Smime => "smime",
                    OutputFormat::Pem => "pem",
                },
                "cipher": if a.cbc { "aes-256-cbc" } else { "aes-256-gcm" },
                "signature": if id.is_ec() { "ecdsa-sha256" }
                    else if a.pss { "rsassa-pss-sha256" } else { "rsa-pkcs1v15-sha256" },
                "signer": cert_json(id.certificate()),
                "recipients": rcpts,
            }))
            .unwrap_or_default(),
        )?;
    } else {
        let names: Vec<&str> = rcpts.iter().filter_map(|r| r["subject"].as_str()).collect();
        info(
            cli,
            &format!(
                "sealed {} ({} bytes) for {} into {} ({} bytes)",
                filename.as_deref().unwrap_or("the document"),
                doc.len(),
                names.join("; "),
                display(&a.output),
                sealed.len()
            ),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// open

fn open(a: &OpenArgs, cli: &Cli) -> Result<(), Error> {
    if a.from.is_none() && a.partners.is_none() && !a.allow_unsigned {
        return Err(usage(
            "open needs to know whom to expect: give --from SENDER_CERT or --partners DIR \
             (or --allow-unsigned for a message that is not signed)",
        ));
    }
    let to_stdout = is_dash(&a.output);
    if to_stdout && cli.json {
        return Err(usage(
            "--json prints on stdout, so OUT cannot be `-`; write the document to a file",
        ));
    }
    let identity = match &a.key {
        Some(k) => Some(load_identity(k, a.cert.as_deref(), &a.pass, "--cert")?),
        None => None,
    };
    let sender = a.from.as_ref().map(Certificate::load).transpose()?;
    let store = a.partners.as_deref().map(load_partners).transpose()?;
    let max = a.max_size.unwrap_or(DEFAULT_MAX_SIZE);
    // A sealed message is at most ~4/3 of its document (base64) plus headers.
    let input_limit = max.saturating_mul(2).saturating_add(1 << 20);
    let data = read_input(&a.input, Some(input_limit), "sealed message")?;
    let opts = OpenOptions {
        recipient: identity.as_ref(),
        sender: sender.as_ref(),
        partners: store.as_ref(),
        allow_unsigned: a.allow_unsigned,
        allow_expired: a.allow_expired,
        allow_legacy_ciphers: !a.reject_legacy,
        allow_sha1: a.allow_sha1,
        max_output: max,
        ..Default::default()
    };
    // The core bounds every buffer and the document by `max_output`.
    let opened = ls_core::open(&data, &opts)?;
    drop(data);
    if to_stdout {
        write_stdout(&opened.document)?;
    } else {
        write_atomic(&a.output, &opened.document, 0o600)?;
    }

    let signing_time = opened.signing_time.map(ls_core::time::iso8601);
    if cli.json {
        print_stdout(
            &serde_json::to_string_pretty(&json!({
                "output": display(&a.output),
                "filename": opened.filename,
                "safe_filename": opened.safe_filename(),
                "mime_type": opened.mime_type,
                "size": opened.document.len(),
                "signer": opened.signer.as_ref().map(cert_json),
                "signing_time": signing_time,
                "encrypted": opened.encrypted,
                "layers": opened.layers,
            }))
            .unwrap_or_default(),
        )?;
    } else {
        let who = match &opened.signer {
            Some(c) => format!(
                "signed by {}{}",
                c.subject(),
                signing_time
                    .as_deref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default()
            ),
            None => "NOT signed".into(),
        };
        info(
            cli,
            &format!(
                "opened {} ({} bytes, {}), {}, {} -> {}",
                opened.filename.as_deref().unwrap_or("a document"),
                opened.document.len(),
                opened.mime_type,
                who,
                if opened.encrypted {
                    "was encrypted"
                } else {
                    "was NOT encrypted"
                },
                display(&a.output)
            ),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// inspect

fn json_code(err: &Json) -> Option<(ErrorCode, String)> {
    let code = match err.get("code")? {
        Json::Num(n) => ErrorCode::from_i32(*n as i32).unwrap_or(ErrorCode::Internal),
        _ => return None,
    };
    let msg = match err.get("message") {
        Some(Json::Str(s)) => s.clone(),
        _ => String::new(),
    };
    Some((code, msg))
}

fn inspect(a: &InspectArgs, cli: &Cli) -> Result<u8, Error> {
    let identity = match &a.key {
        Some(k) => Some(load_identity(k, a.cert.as_deref(), &a.pass, "--cert")?),
        None => None,
    };
    let sender = a.from.as_ref().map(Certificate::load).transpose()?;
    let max = a.max_size.unwrap_or(DEFAULT_MAX_SIZE);
    let data = read_input(
        &a.file,
        Some(max.saturating_mul(2).saturating_add(1 << 20)),
        "input",
    )?;
    // An AS4 message (SOAP envelope, multipart/related) or a CMS/S-MIME object?
    if ls_core::as4::inspect::is_as4(&data, a.content_type.as_deref()) {
        return inspect_as4(a, cli, &data, sender.as_ref(), identity.as_ref(), max);
    }
    let store = a.partners.as_deref().map(load_partners).transpose()?;
    let opts = OpenOptions {
        recipient: identity.as_ref(),
        sender: sender.as_ref(),
        partners: store.as_ref(),
        allow_sha1: a.allow_sha1,
        max_output: max,
        ..Default::default()
    };
    let j = ls_core::inspect(&data, &opts);
    let layers: Vec<Json> = match j.get("layers") {
        Some(Json::Arr(l)) => l.clone(),
        _ => Vec::new(),
    };
    let verification_error = layers
        .iter()
        .find_map(|l| l.get("verification_error").and_then(json_code));
    print_stdout(&j.to_pretty())?;

    let asked = sender.is_some() || store.is_some();
    // The first failed verification decides; then an error that ended the walk.
    let failure = if let Some(v) = verification_error {
        Some(v)
    } else if let Some(e) = j.get("error").and_then(json_code) {
        Some(e)
    } else if j.get("verified") == Some(&Json::Bool(false)) {
        Some((
            ErrorCode::BadSignature,
            "the signature does not verify".into(),
        ))
    } else if asked
        && j.get("complete") == Some(&Json::Bool(true))
        && j.get("signed") == Some(&Json::Bool(false))
    {
        Some((
            ErrorCode::Unsigned,
            "the document is not signed, so the given certificate cannot verify it".into(),
        ))
    } else {
        if asked && j.get("verified") == Some(&Json::Null) {
            info(
                cli,
                "note: no signature could be checked (encrypted for someone else? give --key)",
            );
        }
        None
    };
    Ok(match failure {
        Some((code, msg)) => {
            stderr_line(&format!("layersec: error[{code}]: {}", printable(&msg)));
            exit_code(code)
        }
        None => 0,
    })
}

/// `inspect` of an AS4 message: the core's AS4 description, and the exit status of the first
/// failure among verification, reading and decryption.
fn inspect_as4(
    a: &InspectArgs,
    cli: &Cli,
    data: &[u8],
    sender: Option<&Certificate>,
    identity: Option<&Identity>,
    max: u64,
) -> Result<u8, Error> {
    if a.partners.is_some() {
        return Err(usage(
            "--partners applies to CMS objects; for an AS4 message give the partner's \
             certificate with --verify-with CERT",
        ));
    }
    if a.allow_sha1 {
        return Err(usage(
            "--allow-sha1 applies to CMS objects (AS4 signatures with SHA-1 are always refused)",
        ));
    }
    let limits = ls_core::as4::xml::Limits {
        max_part: max,
        ..Default::default()
    };
    let j =
        ls_core::as4::inspect::inspect(data, a.content_type.as_deref(), sender, identity, &limits);
    print_stdout(&j.to_pretty())?;
    let section_error = |section: &str| {
        j.get(section)
            .and_then(|s| s.get("error"))
            .and_then(json_code)
    };
    let failure = section_error("verification")
        .or_else(|| j.get("error").and_then(json_code))
        .or_else(|| section_error("decryption"))
        .or_else(|| {
            (j.get("verified") == Some(&Json::Bool(false))).then(|| {
                (
                    ErrorCode::BadSignature,
                    "the signature does not verify".to_string(),
                )
            })
        });
    if failure.is_none() && sender.is_some() && j.get("verified") == Some(&Json::Null) {
        // Say why, from the first reference that was not checked.
        let why = match j.get("verification").and_then(|v| v.get("references")) {
            Some(Json::Arr(refs)) => refs.iter().find_map(|r| match r.get("result") {
                Some(Json::Str(s)) if s != "ok" => Some(format!(
                    "{}: {}",
                    match r.get("uri") {
                        Some(Json::Str(u)) => u.as_str(),
                        _ => "?",
                    },
                    s.trim_start_matches("not checked: ")
                )),
                _ => None,
            }),
            _ => None,
        };
        info(
            cli,
            &format!(
                "note: not every signed reference could be checked ({}); \"verified\" is null",
                why.unwrap_or_default()
            ),
        );
    }
    Ok(match failure {
        Some((code, msg)) => {
            stderr_line(&format!("layersec: error[{code}]: {}", printable(&msg)));
            exit_code(code)
        }
        None => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_documented_exit_status() {
        for &c in ErrorCode::ALL {
            let want = match c.as_i32() {
                100 | 101 => 2,
                102 => 3,
                103 | 104 => 7,
                200..=299 => 4,
                300..=399 => 5,
                400..=499 => 6,
                500..=599 => 8,
                _ => 70,
            };
            assert_eq!(exit_code(c), want, "{c}");
        }
    }
}
