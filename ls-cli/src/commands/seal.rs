//! `layersec seal`: compress, sign and encrypt a document for its recipients.

use super::load_identity;
use crate::cli::{Cli, KeyTransportArg, SealArgs, SignatureFormatArg};
use crate::fsio::{is_dash, open_input, print_stdout, stage_with, usage, Existing};
use crate::output::{cert_json, display, info};
use ls_core::cms::{KeyTransport, Profile, SignatureFormat};
use ls_core::{Certificate, Compression, ContentCipher, Error, OutputFormat, SignatureScheme};
use serde_json::json;
use std::io::IsTerminal;

pub fn run(a: &SealArgs, cli: &Cli) -> Result<(), Error> {
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
    // The document is read as a stream (a file or a pipe), never whole.
    let mut input = open_input(&a.input, "document")?;
    let filename = match &a.filename {
        Some(f) => Some(f.clone()),
        None if is_dash(&a.input) => None,
        None => a
            .input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
    };
    let profile = Profile::from(a.profile);
    let mut opts = profile.seal_options();
    opts.filename = filename.clone();
    opts.mime_type = a.mime_type.clone();
    if a.no_compress {
        opts.compression = Compression::Never;
    }
    if a.cbc {
        opts.cipher = ContentCipher::Aes256Cbc;
    }
    if a.pss {
        opts.signature = SignatureScheme::RsaPss;
    }
    if let Some(k) = a.key_transport {
        opts.key_transport = match k {
            KeyTransportArg::RsaOaepSha256 => KeyTransport::RsaOaepSha256,
            KeyTransportArg::RsaOaepSha1 => KeyTransport::RsaOaepSha1,
            KeyTransportArg::RsaPkcs1v15 => KeyTransport::RsaPkcs1v15,
        };
    }
    if let Some(f) = a.signature_format {
        opts.signature_format = match f {
            SignatureFormatArg::Opaque => SignatureFormat::Opaque,
            SignatureFormatArg::MultipartSigned => SignatureFormat::MultipartSigned,
        };
    }
    opts.output = output;
    opts.encrypt_to_self = a.encrypt_to_self;
    let sealed = if to_stdout {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
        ls_core::seal_stream(&mut input, &mut w, &id, &recipients, &opts)?
    } else {
        let (staged, sealed) = stage_with(&a.output, 0o666, true, Existing::Replace, |w| {
            ls_core::seal_stream(&mut input, w, &id, &recipients, &opts)
        })?;
        staged.commit()?;
        sealed
    };

    let mut rcpts: Vec<serde_json::Value> = recipients.iter().map(cert_json).collect();
    if a.encrypt_to_self && !recipients.contains(id.certificate()) {
        rcpts.push(cert_json(id.certificate()));
    }
    if cli.json {
        print_stdout(
            &serde_json::to_string_pretty(&json!({
                "output": display(&a.output),
                "size": sealed.sealed_size,
                "document_size": sealed.document_size,
                "filename": filename,
                "format": match output {
                    OutputFormat::Der => "der",
                    OutputFormat::Smime => "smime",
                    OutputFormat::Pem => "pem",
                },
                "profile": profile.name(),
                "cipher": match opts.cipher {
                    ContentCipher::Aes256Gcm => "aes-256-gcm",
                    ContentCipher::Aes256Cbc => "aes-256-cbc",
                },
                "key_transport": match opts.key_transport {
                    KeyTransport::RsaOaepSha256 => "rsa-oaep-sha256",
                    KeyTransport::RsaOaepSha1 => "rsa-oaep-sha1",
                    KeyTransport::RsaPkcs1v15 => "rsa-pkcs1v15",
                },
                "signature": if id.is_ec() { "ecdsa-sha256" }
                    else if a.pss { "rsassa-pss-sha256" } else { "rsa-pkcs1v15-sha256" },
                "signature_format": match opts.signature_format {
                    SignatureFormat::Opaque => "opaque",
                    SignatureFormat::MultipartSigned => "multipart-signed",
                },
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
                sealed.document_size,
                names.join("; "),
                display(&a.output),
                sealed.sealed_size
            ),
        );
    }
    Ok(())
}
