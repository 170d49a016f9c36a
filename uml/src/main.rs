//! The `uml` command: parses arguments, calls the `uml` library, maps errors to exit codes.

mod cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    cmd::init_tracing(cli.global.verbose);
    match cmd::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("uml: {}", cmd::error_chain(&err));
            ExitCode::from(1)
        }
    }
}
