//! `layersec partners add`, `layersec partners fetch` and `layersec partners list`.

use super::load_client;
use crate::cli::{Cli, PartnersAddArgs, PartnersFetchArgs};
use crate::fsio::print_stdout;
use crate::output::{info, print_json_pretty, printable, stderr_line};
use ls_client::{AddOptions, FetchOutcome};
use ls_core::Error;
use std::io::{BufRead, IsTerminal, Write};

/// The exit status of `partners fetch` when the directory's certificate is not the one we
/// have (ours is kept).
pub const EXIT_CHANGED: u8 = 12;

pub fn add(a: &PartnersAddArgs, cli: &Cli) -> Result<(), Error> {
    let client = load_client(cli)?;
    let r = client.partners_add_with(
        &a.party,
        &a.cert,
        &AddOptions {
            replace: a.replace,
            keep_previous_hours: a.keep_previous_hours,
        },
    )?;
    if cli.json {
        return print_json_pretty(&r);
    }
    let p = &r.certificate;
    let mut text = format!(
        "partner:      {}\nfile:         {}\nsubject:      {}\nserial:       {}\n\
         valid:        {} to {}\nfingerprint:  SHA256 {}",
        printable(&p.party_id),
        printable(&r.file),
        printable(&p.subject),
        p.serial,
        p.not_before,
        p.not_after,
        p.sha256
    );
    for old in &r.replaced {
        text.push_str(&format!("\nreplaced:     SHA256 {old}"));
        match &r.previous_until {
            Some(t) => text.push_str(&format!(" (still accepted until {t})")),
            None => text.push_str(" (no longer accepted)"),
        }
    }
    if r.outcome == "known" {
        info(
            cli,
            "this certificate is the partner's already: nothing changed",
        );
    }
    print_stdout(&text)
}

/// Whether to ask before adding a new partner's certificate: on a terminal, unless `--yes`.
/// Without a terminal (a script) it is added without asking: the service is trusted.
fn interactive(a: &PartnersFetchArgs) -> bool {
    !a.yes && std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The operator's answer on the terminal.
fn ask(party: &str) -> bool {
    let mut e = std::io::stderr().lock();
    let _ = write!(
        e,
        "Add this certificate for {}? Compare the fingerprint with the partner. [y/N] ",
        printable(party)
    );
    let _ = e.flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

pub fn fetch(a: &PartnersFetchArgs, cli: &Cli) -> Result<u8, Error> {
    let client = load_client(cli)?;
    let entry = client.directory_lookup(&a.party)?;
    let c = &entry.certificate;
    let shown = |what: &str| {
        format!(
            "partner:      {}\nsubject:      {}\nserial:       {}\nvalid:        {} to {}\n\
             fingerprint:  SHA256 {}\n{what}",
            printable(&a.party),
            printable(c.subject()),
            c.serial_hex(),
            ls_core::time::iso8601(c.not_before()),
            ls_core::time::iso8601(c.not_after()),
            c.sha256_fingerprint(),
        )
    };
    // Called only for a partner we have no certificate of.
    let r = client.partners_adopt(&a.party, &entry, |_| {
        if !interactive(a) {
            return true;
        }
        stderr_line(&shown("(from the service's directory)"));
        ask(&a.party)
    })?;
    if r.outcome == FetchOutcome::Changed {
        stderr_line(&format!(
            "layersec: warning: the service's directory has another certificate for {} (SHA256 \
             {}) than ours (SHA256 {}); ours is kept. If {} changed its certificate, compare the \
             new fingerprint with it out of band, then `layersec partners add {} CERT --replace`",
            printable(&a.party),
            r.certificate.sha256,
            r.kept.as_deref().unwrap_or("?"),
            printable(&a.party),
            printable(&a.party),
        ));
    }
    let status = if r.changed { EXIT_CHANGED } else { 0 };
    if cli.json {
        print_json_pretty(&r)?;
        return Ok(status);
    }
    let what = match r.outcome {
        FetchOutcome::Added => format!(
            "added:        {} (trust on first use: compare the fingerprint with the partner)",
            printable(r.file.as_deref().unwrap_or(""))
        ),
        FetchOutcome::Known => "known:        the certificate we have".to_string(),
        FetchOutcome::Changed => format!(
            "changed:      NOT the certificate we have; ours is kept (SHA256 {})",
            r.kept.as_deref().unwrap_or("?")
        ),
        FetchOutcome::Declined => "declined:     not added".to_string(),
    };
    print_stdout(&shown(&what))?;
    Ok(status)
}

pub fn list(cli: &Cli) -> Result<(), Error> {
    let client = load_client(cli)?;
    let list = client.partners_list()?;
    if cli.json {
        return print_json_pretty(&serde_json::json!({ "partners": list }));
    }
    if list.is_empty() {
        info(
            cli,
            &format!(
                "no partners in {} yet: add one with `layersec partners fetch ID` or \
                 `layersec partners add ID CERT`",
                client.config().partners.dir.display()
            ),
        );
        return Ok(());
    }
    let lines: Vec<String> = list
        .iter()
        .map(|p| {
            let previous = if p.previous.is_empty() {
                "previous: none".to_string()
            } else {
                let v: Vec<String> = p
                    .previous
                    .iter()
                    .map(|x| match (&x.until, x.accepted) {
                        (Some(t), true) => format!("{} until {t}", x.sha256),
                        (Some(t), false) => format!("{} (ended {t})", x.sha256),
                        (None, _) => format!("{} (in the certificate file)", x.sha256),
                    })
                    .collect();
                format!("previous: {}", v.join(", "))
            };
            format!(
                "{}\t{}\tvalid until {}{}\tSHA256 {}\tprofile {}\treceipts {}\t{}",
                printable(&p.party_id),
                printable(&p.subject),
                p.not_after,
                if p.valid_now { "" } else { " (NOT valid now)" },
                p.sha256,
                p.profile,
                if p.receipts { "on" } else { "off" },
                previous
            )
        })
        .collect();
    print_stdout(&lines.join("\n"))
}
