//! `layersec send`: seal, sign, push and check the receipt now; queued when the service
//! cannot be reached.

use super::load_config;
use crate::cli::{Cli, SendArgs};
use crate::fsio::print_stdout;
use crate::output::{info, iso, mib, print_json_pretty, printable, stderr_line, EXIT_UNREACHABLE};
use ls_client::{Client, SendOptions, Sent};
use ls_core::transport::{HttpResponse, Transport};
use ls_core::Error;
use serde_json::json;
use std::io::IsTerminal;
use std::time::Instant;

/// Documents from this size on show their stages on a terminal.
const PROGRESS_MIN: u64 = 1 << 20;

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

pub fn run(a: &SendArgs, cli: &Cli) -> Result<u8, Error> {
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
        no_receipt: a.no_receipt,
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
    if let Some(p) = sent
        .last_error
        .as_ref()
        .filter(|p| p.code == ls_core::ErrorCode::ReceiptPending)
    {
        stderr_line(&format!(
            "layersec: submitted, receipt pending: {} to {} (MessageId {}) was handed over by \
             e-mail; the service's receipt has not come yet ({}); `layersec run` completes the \
             send when it comes",
            printable(&sent.name),
            printable(&sent.to),
            sent.message_id,
            printable(&p.message)
        ));
        return Ok(crate::output::EXIT_RECEIPT_PENDING);
    }
    if let Some(p) = sent
        .last_error
        .as_ref()
        .filter(|p| p.code == ls_core::ErrorCode::LoginFailed)
    {
        // Not retried at once: the same password again could lock the account.
        stderr_line(&format!(
            "layersec: error[{}]: {}; {} to {} (MessageId {}) is queued: fix the password \
             ([email] password_env or password_file), then `layersec run` sends it",
            p.code,
            printable(&p.message),
            printable(&sent.name),
            printable(&sent.to),
            sent.message_id,
        ));
        return Ok(crate::output::exit_code(p.code));
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
