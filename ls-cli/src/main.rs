//! `layersec`: the Layer Security command line — generate identities, seal documents for partners,
//! open what partners sent, inspect any CMS/S-MIME object or AS4 message, and exchange documents
//! through a Messaging Service (`init`, `send`, `poll`, `run`, `status`, `partners`).
//!
//! Exit codes, JSON shapes and password sources are documented in `docs/CLI.md` and `--help`.

mod cli;
mod fsio;

use clap::Parser;
use cli::{
    Cli, Command, InitArgs, InitKeyType, InspectArgs, KeyKind, KeygenArgs, OpenArgs,
    PartnersCommand, PassArgs, SealArgs, SendArgs,
};
use fsio::{io_err, is_dash, print_stdout, read_input, usage, write_atomic, write_stdout};
use ls_client::{
    Client, Config, Event, JobsReport, PollReport, Received, SendOptions, Sent, Status,
    TemplateOptions,
};
use ls_core::transport::{HttpResponse, Transport};
use ls_core::{
    CertStore, Certificate, Compression, ContentCipher, Error, ErrorCode, Identity, Json, KeyType,
    OpenOptions, OutputFormat, SealOptions, SignatureScheme,
};
use serde_json::json;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The default limit on an opened document: the client's default `[limits] max_document_bytes`
/// (100 MiB), so that `open` takes what `poll` takes.
const DEFAULT_MAX_SIZE: u64 = ls_core::as4::coordination::DEFAULT_MAX_DOCUMENT_BYTES;

/// The exit status of a document queued for retry by `send` (and of the service unreachable).
const EXIT_UNREACHABLE: u8 = 9;

/// The process exit status for a failure of the given code.
pub fn exit_code(code: ErrorCode) -> u8 {
    use ErrorCode as C;
    match code {
        // Configuration problems are usage problems.
        C::NullArgument | C::InvalidArgument | C::ConfigInvalid => 2,
        C::Io => 3,
        C::BadPassword | C::UnsupportedKey => 7,
        // The service could not be reached or answered with a (possibly passing) failure.
        C::ConnectFailed | C::Timeout | C::TlsFailed | C::HttpStatus | C::BadResponse => {
            EXIT_UNREACHABLE
        }
        // Refused by the service or the partner, for good.
        C::EbmsError | C::Refused => 10,
        // The client's journal is busy or damaged.
        C::StateCorrupt | C::StateLocked => 11,
        C::Internal | C::Panic => 70,
        _ => match code.family() {
            "crypto" => 4,
            "certificate" => 5,
            "format" => 6,
            "protocol" => 8,
            _ => 70,
        },
    }
}

/// How an error is printed on stdout besides stderr.
#[derive(Clone, Copy, PartialEq, Eq)]
enum JsonOut {
    No,
    /// One pretty-printed object (the commands with one result).
    Pretty,
    /// One line (the commands that print a stream of JSON lines).
    Line,
}

fn error_json(code: ErrorCode, message: &str, style: JsonOut) -> String {
    let v = json!({
        "error": {
            "code": code.as_i32(),
            "name": code.to_string(),
            "family": code.family(),
            "message": message,
            "exit_code": exit_code(code),
        }
    });
    if style == JsonOut::Line {
        serde_json::to_string(&v).unwrap_or_default()
    } else {
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }
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
fn report(code: ErrorCode, message: &str, json: JsonOut) -> u8 {
    stderr_line(&format!("layersec: error[{code}]: {}", printable(message)));
    if json != JsonOut::No {
        let _ = print_stdout(&error_json(code, message, json));
    }
    exit_code(code)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => return ExitCode::from(clap_error(e, &args)),
    };
    let json = if !(cli.json || matches!(cli.command, Command::Inspect(_))) {
        JsonOut::No
    } else if cli.command.streams() {
        JsonOut::Line
    } else {
        JsonOut::Pretty
    };
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
        let _ = print_stdout(&error_json(
            ErrorCode::InvalidArgument,
            &first,
            JsonOut::Pretty,
        ));
    }
    2
}

fn run(cli: &Cli) -> Result<u8, Error> {
    if cli.config.is_some() && !cli.command.is_client() {
        return Err(usage(if matches!(cli.command, Command::Init(_)) {
            "init writes DIR/layersec.toml: give the folder with --dir DIR (--config names the \
             file the other client commands read)"
        } else {
            "--config applies to the client commands (send, poll, run, status, partners)"
        }));
    }
    match &cli.command {
        Command::Keygen(a) => keygen(a, cli).map(|_| 0),
        Command::Seal(a) => seal(a, cli).map(|_| 0),
        Command::Open(a) => open(a, cli).map(|_| 0),
        Command::Inspect(a) => inspect(a, cli),
        Command::Init(a) => init(a, cli).map(|_| 0),
        Command::Send(a) => send(a, cli),
        Command::Poll(_) => poll(cli).map(|_| 0),
        Command::Run(_) => daemon(cli).map(|_| 0),
        Command::Status(_) => status(cli).map(|_| 0),
        Command::Partners(p) => match &p.command {
            PartnersCommand::Add(a) => partners_add(&a.party, &a.cert, cli).map(|_| 0),
            PartnersCommand::List(_) => partners_list(cli).map(|_| 0),
        },
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

// ---------------------------------------------------------------------------------------------
// The client commands: init, send, poll, run, status, partners

/// Documents from this size on show their stages on a terminal.
const PROGRESS_MIN: u64 = 1 << 20;

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

fn load_config(cli: &Cli) -> Result<Config, Error> {
    let (path, named) = config_path(cli);
    Config::load(&path).map_err(|e| match e {
        Error::ConfigInvalid(m) if !named && !path.exists() => Error::ConfigInvalid(format!(
            "{m} (name the configuration file with --config FILE or LAYERSEC_CONFIG, or create \
             one with `layersec init`)"
        )),
        other => other,
    })
}

fn load_client(cli: &Cli) -> Result<Client, Error> {
    Client::from_config(&load_config(cli)?)
}

fn iso(t: i64) -> String {
    ls_core::time::iso8601(t)
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
}

/// Print one JSON value on one line (the streams of `poll` and `run`).
fn print_json_line(v: &serde_json::Value) -> Result<(), Error> {
    print_stdout(&serde_json::to_string(v).unwrap_or_default())
}

fn print_json_pretty(v: &serde_json::Value) -> Result<(), Error> {
    print_stdout(&serde_json::to_string_pretty(v).unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// init

fn init(a: &InitArgs, cli: &Cli) -> Result<(), Error> {
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

// ---------------------------------------------------------------------------------------------
// send

/// A transport that says on stderr when the built message goes out: the stage after sealing and
/// signing, before the receipt is checked.
struct Progress<T> {
    inner: T,
}

impl<T: Transport> Transport for Progress<T> {
    fn post(&self, content_type: &str, body: &[u8]) -> ls_core::Result<HttpResponse> {
        stderr_line(&format!(
            "layersec: pushing {} to the service …",
            mib(body.len() as u64)
        ));
        let t = Instant::now();
        let r = self.inner.post(content_type, body);
        if r.is_ok() {
            stderr_line(&format!(
                "layersec: pushed in {:.1} s; checking the receipt …",
                t.elapsed().as_secs_f64()
            ));
        }
        r
    }
}

fn sent_json(s: &Sent) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_else(|_| json!({}));
    v["delivered"] = json!(s.is_delivered());
    v["next_attempt_at"] = json!(s.next_attempt.map(iso));
    v
}

fn send(a: &SendArgs, cli: &Cli) -> Result<u8, Error> {
    let cfg = load_config(cli)?;
    let size = std::fs::metadata(&a.file)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let progress =
        !cli.quiet && size.is_some_and(|n| n >= PROGRESS_MIN) && std::io::stderr().is_terminal();
    let client = if progress {
        let inner = Client::https_transport(&cfg)?;
        Client::with_transport(&cfg, Box::new(Progress { inner }))?
    } else {
        Client::from_config(&cfg)?
    };
    let name = a
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if progress {
        info(
            cli,
            &format!(
                "sealing and signing {name} ({}) for {} …",
                mib(size.unwrap_or(0)),
                a.to
            ),
        );
    }
    let opts = SendOptions {
        service: a.service.clone(),
        action: a.action.clone(),
        conversation: a.conversation.clone(),
    };
    let started = Instant::now();
    let sent = client.send_file(&a.file, &a.to, &opts)?;
    if cli.json {
        print_json_pretty(&sent_json(&sent))?;
    } else {
        print_stdout(&sent.message_id)?;
    }
    if sent.is_delivered() {
        let rid = sent.receipt_message_id.as_deref().unwrap_or_default();
        if progress {
            info(
                cli,
                &format!(
                    "receipt verified ({rid}); {name} delivered to {} in {:.1} s",
                    a.to,
                    started.elapsed().as_secs_f64()
                ),
            );
        } else {
            info(
                cli,
                &format!(
                    "{} delivered to {} (MessageId {}, receipt {rid} verified)",
                    sent.name, sent.to, sent.message_id
                ),
            );
        }
        return Ok(0);
    }
    // Queued: the journal keeps the built message and pushes the same bytes again.
    let why = sent
        .last_error
        .as_ref()
        .map(|p| format!("[{}] {}", p.code, p.message))
        .unwrap_or_else(|| "the service could not be reached".into());
    stderr_line(&format!(
        "layersec: queued for retry: {} to {} (MessageId {}) was not delivered now: {}; \
         `layersec run` (or the next `layersec poll`) sends it{}",
        printable(&sent.name),
        printable(&sent.to),
        sent.message_id,
        printable(&why),
        sent.next_attempt
            .map(|t| format!(" (next attempt at {})", iso(t)))
            .unwrap_or_default()
    ));
    Ok(EXIT_UNREACHABLE)
}

// ---------------------------------------------------------------------------------------------
// poll

/// What a run over the queued sends did, on stderr.
fn report_jobs(r: &JobsReport, cli: &Cli) {
    for s in &r.sent {
        info(
            cli,
            &format!(
                "sent {} to {} (MessageId {}, receipt {} verified)",
                s.name,
                s.to,
                s.message_id,
                s.receipt_message_id.as_deref().unwrap_or_default()
            ),
        );
    }
    for s in &r.retrying {
        stderr_line(&format!(
            "layersec: still queued: {} to {} (MessageId {}): {}{}",
            printable(&s.name),
            printable(&s.to),
            s.message_id,
            printable(
                &s.last_error
                    .as_ref()
                    .map(|p| p.message.clone())
                    .unwrap_or_default()
            ),
            s.next_attempt
                .map(|t| format!("; next attempt at {}", iso(t)))
                .unwrap_or_default()
        ));
    }
    for f in &r.failed {
        stderr_line(&format!(
            "layersec: could not send {} to {} (MessageId {}): {}; moved to {} (see {})",
            printable(&f.name),
            printable(&f.to),
            f.message_id,
            printable(&f.error.message),
            f.path.display(),
            f.reason_file.display()
        ));
    }
    for e in &r.errors {
        stderr_line(&format!(
            "layersec: a queued send could not be handled: [{}] {}",
            e.code,
            printable(&e.message)
        ));
    }
}

fn received_json(r: &Received) -> serde_json::Value {
    json!({
        "path": r.path.display().to_string(),
        "name": r.name,
        "original_name": r.original_name,
        "size": r.size,
        "sha256": r.sha256,
        "mime_type": r.mime_type,
        "sender": r.sender,
        "message_id": r.message_id,
        "conversation_id": r.conversation_id,
        "service": r.service,
        "action": r.action,
        "signing_time": r.signing_time.map(iso),
        "received_at": iso(r.received_at),
    })
}

fn poll_summary(report: &PollReport, resumed: &JobsReport) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap_or_else(|_| json!({}));
    v["resumed"] = serde_json::to_value(resumed).unwrap_or_default();
    json!({ "summary": v })
}

fn poll(cli: &Cli) -> Result<(), Error> {
    let client = load_client(cli)?;
    // First what an earlier run left: due sends, inbox writes.
    let resumed = client.resume()?;
    report_jobs(&resumed, cli);
    let mut write_error: Option<Error> = None;
    let report = client.poll(|r| {
        let line = if cli.json {
            serde_json::to_string(&received_json(r)).unwrap_or_default()
        } else {
            format!(
                "{}\t{}\t{}",
                printable(&r.path.display().to_string()),
                printable(&r.sender),
                printable(&r.message_id)
            )
        };
        if write_error.is_none() {
            write_error = print_stdout(&line).err();
        }
    })?;
    for f in &report.failed {
        stderr_line(&match f.refused {
            Some(class) => format!(
                "layersec: refused: message {} from {}: [{}] {}; the sender is told \"{class}\" \
                 in a signed notice{}",
                printable(&f.message_id),
                printable(&f.sender),
                f.code,
                printable(&f.error),
                if f.notice_sent {
                    " and the service no longer offers it"
                } else {
                    " (sent at the next poll)"
                }
            ),
            None => format!(
                "layersec: not accepted: message {} from {}: [{}] {} (attempt {}; not \
                 receipted, the service offers it again)",
                printable(&f.message_id),
                printable(&f.sender),
                f.code,
                printable(&f.error),
                f.attempts
            ),
        });
    }
    for r in &report.refused_by_partners {
        stderr_line(&format!(
            "layersec: {}; its signed notice is {}",
            printable(&r.summary()),
            r.notice_file.display()
        ));
    }
    for e in &report.receipt_errors {
        stderr_line(&format!(
            "layersec: the service refused a receipt (the document is in the inbox): [{}] {}",
            e.code,
            printable(&e.message)
        ));
    }
    if let Some(e) = write_error {
        return Err(e);
    }
    if cli.json {
        print_json_line(&poll_summary(&report, &resumed))?;
    } else {
        let mut parts = vec![format!("{} received", report.received.len())];
        if report.duplicates > 0 {
            parts.push(format!(
                "{} received before (receipted again)",
                report.duplicates
            ));
        }
        if !report.failed.is_empty() {
            parts.push(format!("{} not accepted", report.failed.len()));
        }
        if !report.refused_by_partners.is_empty() {
            parts.push(format!(
                "{} of ours refused by partners",
                report.refused_by_partners.len()
            ));
        }
        if report.limited {
            parts.push("more waiting (limits of one poll reached)".into());
        }
        if !resumed.sent.is_empty() || !resumed.retrying.is_empty() || !resumed.failed.is_empty() {
            parts.push(format!(
                "queued sends: {} sent, {} still queued, {} failed",
                resumed.sent.len(),
                resumed.retrying.len(),
                resumed.failed.len()
            ));
        }
        info(
            cli,
            &format!(
                "poll: {} message(s) pulled; {}",
                report.pulled,
                parts.join(", ")
            ),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// run

fn event_text(ev: &Event) -> String {
    let err = |p: &Option<ls_client::Problem>| {
        p.as_ref()
            .map(|p| format!("[{}] {}", p.code, p.message))
            .unwrap_or_default()
    };
    match ev {
        Event::Started { party_id } => format!("started: party {party_id}"),
        Event::Sent(s) => format!(
            "sent {} to {} (MessageId {}, receipt {} verified)",
            s.name,
            s.to,
            s.message_id,
            s.receipt_message_id.as_deref().unwrap_or_default()
        ),
        Event::Retrying(s) => format!(
            "not delivered now, retrying: {} to {} (MessageId {}, attempt {}): {}{}",
            s.name,
            s.to,
            s.message_id,
            s.attempts,
            err(&s.last_error),
            s.next_attempt
                .map(|t| format!("; next attempt at {}", iso(t)))
                .unwrap_or_default()
        ),
        Event::SendFailed(f) => format!(
            "could not send {} to {} (MessageId {}): [{}] {}; moved to {} (see {})",
            f.name,
            f.to,
            f.message_id,
            f.error.code,
            f.error.message,
            f.path.display(),
            f.reason_file.display()
        ),
        Event::Received(r) => format!(
            "received {} from {} (MessageId {})",
            r.path.display(),
            r.sender,
            r.message_id
        ),
        Event::ReceiveFailed(f) => match f.refused {
            Some(class) => format!(
                "refused: message {} from {}: [{}] {}; the sender was told \"{class}\"{}",
                f.message_id,
                f.sender,
                f.code,
                f.error,
                if f.notice_sent {
                    ""
                } else {
                    " (the notice goes out at the next poll)"
                }
            ),
            None => format!(
                "not accepted: message {} from {}: [{}] {} (attempt {}; offered again later)",
                f.message_id, f.sender, f.code, f.error, f.attempts
            ),
        },
        Event::RefusedByPartner(r) => format!(
            "{}; its signed notice is {}",
            r.summary(),
            r.notice_file.display()
        ),
        Event::Ignored { path, reason } => format!("ignored {path}: {reason}"),
        Event::Unreachable {
            error,
            retry_in_secs,
        } => format!(
            "the service cannot be reached: [{}] {}; next try in {retry_in_secs} s",
            error.code, error.message
        ),
        Event::Reachable => "the service is reachable again".into(),
        Event::Error { context, error } => {
            format!("error while {context}: [{}] {}", error.code, error.message)
        }
        Event::Stopped => "stopped".into(),
    }
}

fn daemon(cli: &Cli) -> Result<(), Error> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // The handlers first: a signal while the client loads stops it cleanly right after.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        // The first signal asks for a clean stop; a second one (the flag already set) ends the
        // process at once, with status 1.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)))
            .map_err(|e| io_err("cannot install the signal handlers", e))?;
    }
    let client = load_client(cli)?;
    let json = cli.json;
    client.run(&stop, |ev| {
        let line = if json {
            serde_json::to_string(ev).unwrap_or_default()
        } else {
            format!(
                "{} {}",
                iso(ls_core::time::now_unix()),
                printable(&event_text(ev))
            )
        };
        // Each event is flushed as it happens; a closed stdout does not stop the daemon.
        let _ = print_stdout(&line);
    })?;
    debug_assert!(stop.load(Ordering::Relaxed));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// status

fn status_text(st: &Status) -> String {
    let mut o = String::new();
    let mut line = |l: String| {
        o.push_str(&printable(&l));
        o.push('\n');
    };
    line(format!("party:          {}", st.party_id));
    line(format!("service:        {}", st.service_url));
    line(format!(
        "last poll:      {}",
        match &st.last_poll {
            None => "never".to_string(),
            Some(p) => format!(
                "{}{}{}",
                iso(p.at),
                match &p.error {
                    Some(e) if !p.ok => format!(", failed: {e}"),
                    _ => ", ok".to_string(),
                },
                match p.last_ok_at {
                    Some(t) if !p.ok => format!(" (last reached {})", iso(t)),
                    None if !p.ok => " (never reached)".to_string(),
                    _ => String::new(),
                }
            ),
        }
    ));
    line(format!("queued sends:   {}", st.pending.len()));
    for j in &st.pending {
        line(format!(
            "  {} to {} (MessageId {}): {} attempt(s), next at {}{}",
            j.name,
            j.to,
            j.message_id,
            j.attempts,
            iso(j.next_attempt),
            j.last_error
                .as_ref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        ));
    }
    line(format!("sent:           {}", st.sent));
    line(format!("failed:         {}", st.failed));
    line(format!("inbox:          {}", st.inbox));
    line(format!("not accepted:   {}", st.incoming_failures.len()));
    for f in &st.incoming_failures {
        line(format!(
            "  message {} from {}: [{}] {} ({} attempt(s), last {}){}",
            f.message_id,
            f.sender,
            f.code,
            f.error,
            f.attempts,
            iso(f.last_seen),
            match f.refused {
                Some(c) if f.notice_sent => format!("; refused as \"{c}\", the sender was told"),
                Some(c) => format!("; refused as \"{c}\", the notice is not sent yet"),
                None => String::new(),
            }
        ));
    }
    line(format!(
        "refused by partners: {}",
        st.refused_by_partners.len()
    ));
    for r in &st.refused_by_partners {
        line(format!(
            "  {} refused {}{} ({}): {}",
            r.partner,
            r.message_id,
            r.document
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            r.class,
            r.reason
        ));
    }
    if !st.last_errors.is_empty() {
        line("recent problems:".into());
        for e in &st.last_errors {
            line(format!("  {e}"));
        }
    }
    o.truncate(o.trim_end().len());
    o
}

fn status(cli: &Cli) -> Result<(), Error> {
    let client = load_client(cli)?;
    let st = client.status()?;
    if cli.json {
        print_stdout(&st.to_json())
    } else {
        print_stdout(&status_text(&st))
    }
}

// ---------------------------------------------------------------------------------------------
// partners

fn partners_add(party: &str, cert: &Path, cli: &Cli) -> Result<(), Error> {
    let client = load_client(cli)?;
    let p = client.partners_add(party, cert)?;
    let file = client.config().partners.dir.join(format!("{party}.crt"));
    if cli.json {
        let mut v = serde_json::to_value(&p).unwrap_or_else(|_| json!({}));
        v["file"] = json!(file.display().to_string());
        print_json_pretty(&v)
    } else {
        print_stdout(&format!(
            "partner:      {}\nfile:         {}\nsubject:      {}\nserial:       {}\n\
             valid:        {} to {}\nfingerprint:  SHA256 {}",
            printable(&p.party_id),
            printable(&file.display().to_string()),
            printable(&p.subject),
            p.serial,
            p.not_before,
            p.not_after,
            p.sha256
        ))
    }
}

fn partners_list(cli: &Cli) -> Result<(), Error> {
    let client = load_client(cli)?;
    let list = client.partners_list()?;
    if cli.json {
        return print_json_pretty(&json!({ "partners": list }));
    }
    if list.is_empty() {
        info(
            cli,
            &format!(
                "no partners in {} yet: add one with `layersec partners add ID CERT`",
                client.config().partners.dir.display()
            ),
        );
        return Ok(());
    }
    let lines: Vec<String> = list
        .iter()
        .map(|p| {
            format!(
                "{}\t{}\tvalid until {}{}\tSHA256 {}",
                printable(&p.party_id),
                printable(&p.subject),
                p.not_after,
                if p.valid_now { "" } else { " (NOT valid now)" },
                p.sha256
            )
        })
        .collect();
    print_stdout(&lines.join("\n"))
}

/// Commit staged files in order; when one fails (and we were not replacing files on purpose),
/// the ones already committed are removed again, so a half-written set is not left behind.
fn commit_all(staged: Vec<fsio::Staged>, force: bool) -> Result<(), Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code of the core, one by one: a new code fails this test until its exit status is
    /// decided here (and in `exit_codes!`, docs/CLI.md and README.md).
    #[test]
    fn every_code_has_its_documented_exit_status() {
        for &c in ErrorCode::ALL {
            let want = match c.as_i32() {
                // usage, argument, configuration
                100 | 101 | 701 => 2,
                102 => 3,
                103 | 104 => 7,
                200..=208 => 4,
                300..=307 => 5,
                400..=406 => 6,
                500..=504 => 8,
                // the service refused (an ebMS error, or a permanent HTTP status)
                505 | 605 => 10,
                // the service unreachable or failing for now
                600..=604 => 9,
                // the client's state busy or damaged
                700 | 702 => 11,
                900 | 901 => 70,
                other => panic!("{c} ({other}) has no exit status decided: add it here"),
            };
            assert_eq!(exit_code(c), want, "{c}");
        }
    }
}
