//! `layersec rollover`: our new key and certificate, registered at the service and sent to
//! every partner ([`ls_client::Client::rollover`]).

use super::{load_client, load_identity};
use crate::cli::{Cli, RolloverArgs};
use crate::fsio::print_stdout;
use crate::output::{iso, print_json_pretty, printable};
use ls_client::{Rollover, RolloverOptions};
use ls_core::Error;

pub fn run(a: &RolloverArgs, cli: &Cli) -> Result<(), Error> {
    let client = load_client(cli)?;
    let identity = match (&a.key, &a.cert) {
        (Some(k), Some(c)) => Some(load_identity(k, Some(c), &a.pass, "--cert")?),
        _ => None,
    };
    let r = client.rollover(&RolloverOptions {
        overlap_secs: a.overlap_hours,
        identity,
        days: a.days,
        automatic: false,
    })?;
    if cli.json {
        return print_json_pretty(&r);
    }
    print_stdout(&rollover_text(&r))
}

/// The state of a rollover for people (also `status`).
pub fn rollover_text(r: &Rollover) -> String {
    let mut o = String::new();
    let mut line = |l: String| {
        o.push_str(&printable(&l));
        o.push('\n');
    };
    line(format!(
        "new certificate:  SHA256 {} (valid until {})",
        r.new_certificate_sha256,
        iso(r.new_not_after)
    ));
    line(format!(
        "old certificate:  SHA256 {} (valid until {})",
        r.old_certificate_sha256,
        iso(r.old_valid_until)
    ));
    line(format!(
        "service:          {}",
        match r.service.as_str() {
            "accepted" => "registered the new certificate".to_string(),
            other => match &r.service_error {
                Some(e) => format!(
                    "{other}: {} (`layersec run` or `rollover` tries again)",
                    e.message
                ),
                None => other.to_string(),
            },
        }
    ));
    line(format!("partners:         {}", r.partners.len()));
    for p in &r.partners {
        let detail = match p.state.as_str() {
            "accepted" | "rejected" => format!(
                "{}{}",
                p.answered_at
                    .map(|t| format!(" at {}", iso(t)))
                    .unwrap_or_default(),
                p.reason
                    .as_deref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default()
            ),
            "pending" => p
                .sent_at
                .map(|t| format!(" (update sent {})", iso(t)))
                .unwrap_or_default(),
            "sending" => p
                .error
                .as_ref()
                .map(|e| format!(" (not sent yet: {})", e.message))
                .unwrap_or_default(),
            _ => String::new(),
        };
        line(format!("  {:<15} {}{detail}", p.partner, p.state));
    }
    line(format!(
        "signing with:     {}",
        match (r.switched_at, r.switched_because.as_deref()) {
            (Some(t), Some("accepted")) => format!(
                "the new key since {} (the service and every partner accepted it)",
                iso(t)
            ),
            (Some(t), _) => format!("the new key since {} (the overlap was nearly over)", iso(t)),
            (None, _) => format!(
                "the old key until the service and every partner accepted the new one, at the \
                 latest until {}",
                iso(r.switch_at())
            ),
        }
    ));
    o.truncate(o.trim_end().len());
    o
}
