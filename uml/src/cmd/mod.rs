//! Subcommands of the `uml` binary. Each file holds one command group's clap arguments and a
//! `run` function that calls the library.

pub mod check;
pub mod cow;
pub mod switch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// User-mode Linux from the host: check, run and control UML guests.
#[derive(Debug, Parser)]
#[command(name = "uml", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options that every subcommand accepts.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// Directory that holds the instances' sockets and pid files [default: ~/.uml]
    #[arg(long, global = true, value_name = "DIR", env = "UML_DIR")]
    pub uml_dir: Option<PathBuf>,
    /// Print diagnostics on stderr (-v: info, -vv: debug, -vvv: trace); RUST_LOG also works
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a UML kernel command line and explain what the kernel would do with it
    Check(check::Args),
    /// Create, inspect, merge and rebase COW disk files
    Cow(cow::Args),
    /// A userspace Ethernet switch for the kernel's `daemon` transport
    Switch(switch::Args),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = cli.global;
    match cli.command {
        Command::Check(args) => check::run(args, &global),
        Command::Cow(args) => cow::run(args, &global),
        Command::Switch(args) => switch::run(args, &global),
    }
}

/// One line: the error and each of its causes, joined by ": ".
pub fn error_chain(err: &anyhow::Error) -> String {
    err.chain()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

pub fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "off",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
