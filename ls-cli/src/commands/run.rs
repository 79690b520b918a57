//! `layersec run`: the daemon — outbox, retries and polls until SIGTERM or SIGINT.

use super::load_client;
use crate::cli::Cli;
use crate::fsio::{io_err, print_stdout};
use crate::output::{iso, printable};
use ls_client::Event;
use ls_core::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
                f.error.code,
                f.error.message,
                if f.notice_sent {
                    ""
                } else {
                    " (the notice goes out at the next poll)"
                }
            ),
            None => format!(
                "not accepted: message {} from {}: [{}] {} (attempt {}; offered again later)",
                f.message_id, f.sender, f.error.code, f.error.message, f.attempts
            ),
        },
        Event::RefusedByPartner(r) => format!(
            "{}; its signed notice is {}",
            r.summary(),
            r.notice_file.display()
        ),
        Event::Receipt(r) => r.summary(),
        Event::RolloverStarted(r) => format!(
            "our certificate expires soon: rolled over to a new key (SHA256 {}), the old one is \
             valid until {}",
            r.new_certificate_sha256,
            iso(r.old_valid_until)
        ),
        Event::CertificateUpdate(u) => format!(
            "{}'s certificate update to SHA256 {}: {}{}",
            u.partner,
            u.new_certificate_sha256,
            u.decision,
            u.reason
                .as_deref()
                .map(|r| format!(" ({r}: {})", u.message))
                .unwrap_or_default()
        ),
        Event::UpdateAnswer(a) => format!(
            "{} {} our new certificate{}",
            a.partner,
            a.state,
            a.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        Event::Switched {
            new_certificate_sha256,
            because,
        } => format!(
            "signing with our new key (SHA256 {new_certificate_sha256}) from now on: {}",
            if because == "accepted" {
                "the service and every partner accepted it"
            } else {
                "the overlap is nearly over"
            }
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

/// The first wait for a token that is not there, doubled after each try up to
/// [`TOKEN_WAIT_MAX`].
const TOKEN_WAIT_FIRST: Duration = Duration::from_secs(5);
const TOKEN_WAIT_MAX: Duration = Duration::from_secs(300);

/// The client, loaded — or, while our key's token is not there (module not loadable, token
/// removed: `LS_ERR_TOKEN_UNAVAILABLE`, transient), loaded again after a wait that doubles up
/// to five minutes, each wait reported as an event (`waiting_for_token`). Any other failure
/// (a wrong PIN among them: never tried again) ends the daemon. `None`: stopped while waiting.
fn load_client_waiting_for_token(
    cli: &Cli,
    stop: &AtomicBool,
    json: bool,
) -> Result<Option<ls_client::Client>, Error> {
    let mut wait = TOKEN_WAIT_FIRST;
    loop {
        match load_client(cli) {
            Ok(c) => return Ok(Some(c)),
            Err(e @ Error::TokenUnavailable(_)) => {
                let report = ls_core::ErrorReport::from(&e);
                let line = if json {
                    serde_json::json!({
                        "event": "waiting_for_token",
                        "error": report,
                        "retry_in_secs": wait.as_secs(),
                    })
                    .to_string()
                } else {
                    format!(
                        "{} our key's token is not available, trying again in {} s: [{}] {}",
                        iso(ls_core::time::now_unix()),
                        wait.as_secs(),
                        report.code,
                        printable(&report.message)
                    )
                };
                let _ = print_stdout(&line);
                let until = Instant::now() + wait;
                while Instant::now() < until {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                wait = (wait * 2).min(TOKEN_WAIT_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

pub fn run(cli: &Cli) -> Result<(), Error> {
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
    let json = cli.json;
    let Some(client) = load_client_waiting_for_token(cli, &stop, json)? else {
        return Ok(());
    };
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
