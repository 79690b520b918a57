//! `layersec status`: pending sends, folders, failures, the last poll.

use super::load_client;
use crate::cli::Cli;
use crate::fsio::print_stdout;
use crate::output::{iso, printable, stderr_line};
use ls_client::Status;
use ls_core::Error;

fn status_text(st: &Status) -> String {
    let mut o = String::new();
    let mut line = |l: String| {
        o.push_str(&printable(&l));
        o.push('\n');
    };
    line(format!("party:          {}", st.party_id));
    line(format!("our key:        {}", st.key_location));
    match &st.email {
        Some(e) => {
            line(format!(
                "service:        {} by e-mail (SMTP {}, mailbox {})",
                e.service_address, e.smtp, e.mailbox
            ));
            line(format!("our address:    {}", e.address));
        }
        None if st.service_nodes.len() > 1 => {
            line(format!(
                "service:        {} nodes, tried from the one in use on, round the list:",
                st.service_nodes.len()
            ));
            for n in &st.service_nodes {
                line(format!(
                    "  {} {}{}{}",
                    if n.in_use { "*" } else { " " },
                    n.url,
                    if n.in_use { " (in use)" } else { "" },
                    n.last_failure
                        .as_ref()
                        .map(|f| format!("; down at {}: {}", iso(f.at), f.error))
                        .unwrap_or_default()
                ));
            }
        }
        None => line(format!("service:        {}", st.service_url)),
    }
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
    let c = &st.certificate;
    line(format!(
        "certificate:    SHA256 {}, valid until {} ({} days){}",
        c.sha256,
        iso(c.not_after),
        c.days_left,
        if c.expiry_warning {
            " -- WARNING: it expires soon: `layersec rollover`"
        } else {
            ""
        }
    ));
    if let Some(r) = &st.rollover {
        line(format!(
            "rollover:       started {}{}",
            iso(r.started_at),
            if r.automatic { " (automatic)" } else { "" }
        ));
        for l in super::rollover::rollover_text(r).lines() {
            line(format!("  {l}"));
        }
    }
    if !st.partner_updates.is_empty() {
        line("partners' certificate updates:".into());
        for u in &st.partner_updates {
            line(format!(
                "  {} {} {} SHA256 {}{}",
                iso(u.received_at),
                u.partner,
                u.decision,
                u.new_certificate_sha256,
                u.reason
                    .as_deref()
                    .map(|r| format!(" ({r}: {})", u.message))
                    .unwrap_or_default()
            ));
        }
    }
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
                .map(|e| format!("; last error: {}", e.message))
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
            f.error.code,
            f.error.message,
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
        "receipts waiting: {} ({} for longer than [receipts] warn_after_hours)",
        st.receipts_waiting, st.receipts_overdue
    ));
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

pub fn run(cli: &Cli) -> Result<(), Error> {
    let client = load_client(cli)?;
    let st = client.status()?;
    let c = &st.certificate;
    if c.expiry_warning {
        // Also with --quiet and --json: a certificate about to expire stops everything.
        stderr_line(&format!(
            "layersec: warning: our certificate (SHA256 {}) expires on {}, in {} days \
             ([identity] expiry_warning_days = {}): roll over to a new key with `layersec \
             rollover`{}",
            c.sha256,
            iso(c.not_after),
            c.days_left,
            client.config().identity.expiry_warning_days,
            if client.config().identity.auto_rollover_days > 0 {
                " (or let `layersec run` do it: [identity] auto_rollover_days)"
            } else {
                ""
            }
        ));
    }
    if cli.json {
        print_stdout(&st.to_json())
    } else {
        print_stdout(&status_text(&st))
    }
}
