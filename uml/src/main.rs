//! The `uml` command: parses arguments, calls the `uml` library, maps errors to exit codes.

mod cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    if cli.command.only_reports() {
        // A command that only prints ends quietly when its reader goes away (`uml list | head`),
        // as C tools do, instead of panicking on EPIPE in println!. Commands that act (run,
        // console, switch, shutdown, …) keep Rust's default of ignoring SIGPIPE, so that a closed
        // pipe never kills them halfway through.
        // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    cmd::init_tracing(cli.global.verbose);
    match cmd::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("uml: {}", cmd::error_chain(&err));
            ExitCode::from(1)
        }
    }
}
