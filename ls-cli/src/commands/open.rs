//! `layersec open`: decrypt, verify the expected sender, decompress.

use super::{load_identity, load_partners, DEFAULT_MAX_SIZE};
use crate::cli::{Cli, OpenArgs};
use crate::fsio::{anonymous_file, is_dash, open_input, print_stdout, stage_with, usage, Existing};
use crate::output::{cert_json, display, info};
use ls_core::cms::{InboundPolicy, Profile};
use ls_core::{Certificate, Error, OpenOptions};
use serde_json::json;

pub fn run(a: &OpenArgs, cli: &Cli) -> Result<(), Error> {
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
    // Read as a stream (a file or a pipe): the core bounds every layer and the document by
    // `max_output` as the bytes pass.
    let mut input = open_input(&a.input, "sealed message")?;
    let mut policy = a
        .profile
        .map_or(InboundPolicy::ANY, |p| Profile::from(p).inbound_policy());
    if a.reject_legacy {
        policy.accept_3des = false;
        policy.accept_rsa_pkcs1v15 = false;
    }
    if a.reject_3des {
        policy.accept_3des = false;
    }
    let opts = OpenOptions {
        recipient: identity.as_ref(),
        sender: sender.as_ref(),
        partners: store.as_ref(),
        allow_unsigned: a.allow_unsigned,
        allow_expired: a.allow_expired,
        policy,
        allow_sha1: a.allow_sha1,
        max_output: max,
        ..Default::default()
    };
    // Nothing reaches OUT before the signature and the authentication tag verified: the
    // document goes to a temporary file first (renamed into place, or copied to standard
    // output, once `open_stream` returned Ok).
    let opened = if to_stdout {
        let mut tmp = anonymous_file()?;
        let opened = {
            let mut w = std::io::BufWriter::with_capacity(256 * 1024, &mut tmp);
            let opened = ls_core::open_stream(&mut input, &mut w, &opts)?;
            // All of it in the temporary file before any of it goes out (a failed flush would
            // otherwise truncate the document silently).
            std::io::Write::flush(&mut w).map_err(|e| {
                crate::fsio::io_err("cannot write the document to a temporary file", e)
            })?;
            opened
        };
        use std::io::{Seek, Write};
        let ctx = |e| crate::fsio::io_err("cannot write to standard output", e);
        tmp.seek(std::io::SeekFrom::Start(0)).map_err(ctx)?;
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        std::io::copy(&mut tmp, &mut lock).map_err(ctx)?;
        lock.flush().map_err(ctx)?;
        opened
    } else {
        let (staged, opened) = stage_with(&a.output, 0o600, true, Existing::Replace, |w| {
            ls_core::open_stream(&mut input, w, &opts)
        })?;
        staged.commit()?;
        opened
    };

    let signing_time = opened.signing_time.map(ls_core::time::iso8601);
    if cli.json {
        print_stdout(
            &serde_json::to_string_pretty(&json!({
                "output": display(&a.output),
                "filename": opened.filename,
                "safe_filename": opened.safe_filename(),
                "mime_type": opened.mime_type,
                "size": opened.size,
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
                opened.size,
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
