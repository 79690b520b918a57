//! `layersec poll`: finish what an earlier run left, then pull every message waiting for us.

use super::load_client;
use crate::cli::Cli;
use crate::fsio::print_stdout;
use crate::output::{info, iso, print_json_line, printable, stderr_line};
use ls_client::{JobsReport, PollReport, Received};
use ls_core::Error;
use serde_json::json;

/// What a run over the queued sends did, on stderr.
pub fn report_jobs(r: &JobsReport, cli: &Cli) {
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

pub fn run(cli: &Cli) -> Result<(), Error> {
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
                f.error.code,
                printable(&f.error.message),
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
                f.error.code,
                printable(&f.error.message),
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
    for r in &report.receipts {
        stderr_line(&format!("layersec: {}", printable(&r.summary())));
    }
    for u in &report.certificate_updates {
        stderr_line(&format!(
            "layersec: {}'s certificate update to SHA256 {}: {}{}",
            printable(&u.partner),
            u.new_certificate_sha256,
            u.decision,
            u.reason
                .as_deref()
                .map(|r| format!(" ({r}: {})", printable(&u.message)))
                .unwrap_or_default()
        ));
    }
    for a in &report.update_answers {
        stderr_line(&format!(
            "layersec: {} {} our new certificate{}",
            printable(&a.partner),
            a.state,
            a.reason
                .as_deref()
                .map(|r| format!(" ({})", printable(r)))
                .unwrap_or_default()
        ));
    }
    if report.switched {
        stderr_line("layersec: we sign with our new key from now on (see `layersec status`)");
    }
    for e in &report.receipt_errors {
        stderr_line(&format!(
            "layersec: a receipt could not be sent (the document is in the inbox): [{}] {}",
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
        if !report.receipts.is_empty() {
            parts.push(format!(
                "{} partner receipt(s) of ours",
                report.receipts.len()
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
