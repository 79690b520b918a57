//! `layersec`: the Layer Security command line — generate identities, seal documents for partners,
//! open what partners sent, inspect any CMS/S-MIME object or AS4 message, check a partner's
//! signed receipt (`verify-receipt`), and exchange documents
//! through a Messaging Service (`init`, `send`, `poll`, `run`, `status`, `partners`).
//!
//! Exit codes, JSON shapes and password sources are documented in `docs/CLI.md` and `--help`.
//! This file parses and dispatches; each command is a module of `commands/`, and what they share
//! for their output (exit statuses, the error object) is `output.rs`.

mod cli;
mod commands;
mod fsio;
mod output;

use clap::Parser;
use cli::{Cli, Command, PartnersCommand};
use ls_core::{Error, ErrorCode, ErrorReport};
use output::JsonOut;
use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => return ExitCode::from(output::clap_error(e, &args)),
    };
    let json = if !(cli.json || matches!(cli.command, Command::Inspect(_))) {
        JsonOut::No
    } else if cli.command.streams() {
        JsonOut::Line
    } else {
        JsonOut::Pretty
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&cli)));
    let status = match result {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => output::report_error(&e, json),
        Err(_) => output::report(
            ErrorReport::new(
                ErrorCode::Panic,
                "internal error: unexpected failure (this is a bug, please report it)",
            ),
            json,
        ),
    };
    ExitCode::from(status)
}

/// Run the command; `Ok` with its exit status (0, or the status of a failure the command
/// reported itself: `inspect`, a queued `send`), `Err` for every other failure.
fn run(cli: &Cli) -> Result<u8, Error> {
    if cli.config.is_some() && !cli.command.is_client() {
        return Err(fsio::usage(if matches!(cli.command, Command::Init(_)) {
            "init writes DIR/layersec.toml: give the folder with --dir DIR (--config names the \
             file the other client commands read)"
        } else {
            "--config applies to the client commands (send, poll, run, status, receipts, partners, rollover)"
        }));
    }
    if cli.command.is_client() && !cli.quiet {
        // Which node of the service was used or found down, on stderr as it happens.
        ls_client::observe_service_nodes(std::sync::Arc::new(|ev| {
            output::stderr_line(&format!(
                "layersec: {}",
                output::printable(&commands::node_text(ev))
            ))
        }));
    }
    use commands::*;
    match &cli.command {
        Command::Keygen(a) => keygen::run(a, cli).map(|_| 0),
        Command::Seal(a) => seal::run(a, cli).map(|_| 0),
        Command::Open(a) => open::run(a, cli).map(|_| 0),
        Command::Inspect(a) => inspect::run(a, cli),
        Command::VerifyReceipt(a) => verify_receipt::run(a, cli).map(|_| 0),
        Command::Init(a) => init::run(a, cli).map(|_| 0),
        Command::Send(a) => send::run(a, cli),
        Command::Poll(_) => poll::run(cli).map(|_| 0),
        Command::Run(_) => run::run(cli).map(|_| 0),
        Command::Status(_) => status::run(cli).map(|_| 0),
        Command::Receipts(a) => receipts::run(a, cli).map(|_| 0),
        Command::Partners(p) => match &p.command {
            PartnersCommand::Add(a) => partners::add(a, cli).map(|_| 0),
            PartnersCommand::Fetch(a) => partners::fetch(a, cli),
            PartnersCommand::List(_) => partners::list(cli).map(|_| 0),
        },
        Command::Rollover(a) => rollover::run(a, cli).map(|_| 0),
    }
}
