//! `layersec partners add` and `layersec partners list`.

use super::load_client;
use crate::cli::Cli;
use crate::fsio::print_stdout;
use crate::output::{info, print_json_pretty, printable};
use ls_core::Error;
use serde_json::json;
use std::path::Path;

pub fn add(party: &str, cert: &Path, cli: &Cli) -> Result<(), Error> {
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

pub fn list(cli: &Cli) -> Result<(), Error> {
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
