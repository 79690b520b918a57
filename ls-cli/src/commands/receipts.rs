//! `layersec receipts`: the partners' signed receipts of what we sent.

use super::load_client;
use crate::cli::{Cli, ReceiptsArgs};
use crate::fsio::print_stdout;
use crate::output::{print_json_pretty, printable};
use ls_core::Error;

pub fn run(a: &ReceiptsArgs, cli: &Cli) -> Result<(), Error> {
    let client = load_client(cli)?;
    let list = client.receipts(a.waiting)?;
    if cli.json {
        return print_json_pretty(&serde_json::json!({ "receipts": list }));
    }
    let mut out = String::new();
    for r in &list {
        let state = match &r.class {
            Some(c) => format!("{} ({c})", r.state),
            None => r.state.clone(),
        };
        out.push_str(&printable(&format!(
            "{state}\t{}\t{}\t{}",
            r.document, r.to, r.message_id
        )));
        out.push('\n');
    }
    print_stdout(out.trim_end())
}
