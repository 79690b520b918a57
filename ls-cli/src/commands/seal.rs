//! `layersec seal`: compress, sign and encrypt a document for its recipients.

use super::load_identity;
use crate::cli::{Cli, SealArgs};
use crate::fsio::{is_dash, print_stdout, read_input, usage, write_atomic, write_stdout};
use crate::output::{cert_json, display, info};
use ls_core::{
    Certificate, Compression, ContentCipher, Error, OutputFormat, SealOptions, SignatureScheme,
};
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
