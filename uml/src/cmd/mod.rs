//! Subcommands of the `uml` binary. Each file holds one command group's clap arguments and a
//! `run` function that calls the library.

pub mod check;
pub mod control;
pub mod cow;
pub mod doctor;
pub mod generate;
pub mod image;
pub mod instances;
pub mod kernel;
pub mod run;
pub mod switch;
pub mod uplink;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use uml::options::complete::Hook;

/// User-mode Linux from the host: check, run and control UML guests.
#[derive(Debug, Parser)]
#[command(name = "uml", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// What `uml`'s arguments complete to beyond clap's own completion, by clap argument id (see
/// `uml::options::complete::Hook`).
pub const COMPLETION_HOOKS: &[(&str, Hook)] = &[
    // The target of the control commands, `console`, `wait`, `shutdown`, …
    ("umid", Hook::Umid),
    // `config DEVICE[=SPEC]`, `remove DEVICE`.
    ("device", Hook::Device),
    // `console UMID LINE`.
    ("line", Hook::Line),
    // `check [KERNEL_ARG]…`, `run --arg WORD`, for the kernel of --kernel or --kernel-version.
    ("words", Hook::KernelWords),
    ("kernel_args", Hook::KernelWords),
    ("kernel", Hook::Kernel),
    ("kernel_version", Hook::KernelVersion),
    ("uml_dir", Hook::UmlDir),
];

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
    /// Boot a guest over the host's / with a shell, or run one command in a fresh guest
    Run(run::Args),
    /// Validate a UML kernel command line and explain what the kernel would do with it
    Check(check::Args),
    /// List the instances in the uml_dir with their state, memory, uptime and kernel
    #[command(visible_alias = "ls")]
    List(instances::ListArgs),
    /// Remove the directories that dead guests left in the uml_dir (never a live one)
    Clean(instances::CleanArgs),
    /// Wait until a guest has booted (answers on its mconsole), or with --exited, has exited
    Wait(instances::WaitArgs),
    /// Stop a guest: ctrl-alt-del, then halt, then a signal, each after a timeout
    Shutdown(instances::ShutdownArgs),
    /// Print the guest kernel's version (mconsole `version`)
    Version(control::Plain),
    /// Halt the guest at once, without syncing its disks (mconsole `halt`)
    Halt(control::Plain),
    /// Restart the guest kernel at once (mconsole `reboot`)
    Reboot(control::Plain),
    /// Send ctrl-alt-del to the guest (mconsole `cad`)
    Cad(control::Plain),
    /// Run a SysRq key in the guest and print its output (mconsole `sysrq`)
    Sysrq(control::SysrqArgs),
    /// Freeze the whole guest (mconsole `stop`)
    Pause(control::Plain),
    /// Resume a paused guest (mconsole `go`)
    Resume(control::Plain),
    /// Query a device's configuration, or hot-add or change one (mconsole `config`)
    Config(control::ConfigArgs),
    /// Hot-remove a device (mconsole `remove`)
    Remove(control::RemoveArgs),
    /// Write text into the guest's kernel log (mconsole `log`)
    Log(control::LogArgs),
    /// Print a file of the guest's /proc (mconsole `proc`)
    Proc(control::ProcArgs),
    /// Print the kernel stack of a guest process (mconsole `stack`)
    Stack(control::StackArgs),
    /// Send raw mconsole commands, or talk to the guest at a prompt like uml_mconsole
    Mconsole(control::MconsoleArgs),
    /// Attach this terminal to a guest console or serial line backed by a host pty
    Console(control::ConsoleArgs),
    /// Create, inspect, merge and rebase COW disk files
    Cow(cow::Args),
    /// Build a bootable guest disk image of a distribution, without root
    Image(image::Args),
    /// A userspace Ethernet switch for the `daemon` (6.x) and `bess` (7.x) network transports
    Switch(switch::Args),
    /// Join a switch's guests to a guest on another host, over an l2tpv3 tunnel
    Uplink(uplink::Args),
    /// Which UML kernel runs, which are built, and build one from source
    Kernel(kernel::Args),
    /// Check that this host and the kernel can run guests, and say how to fix what cannot
    Doctor(doctor::Args),
    /// Write the man pages and shell completions (for packaging; see scripts/generate)
    #[command(hide = true)]
    Generate(generate::Args),
}

impl Command {
    /// Does the command only read and print (so that being cut off by a closed pipe loses
    /// nothing)?
    pub fn only_reports(&self) -> bool {
        match self {
            Command::Check(_)
            | Command::List(_)
            | Command::Version(_)
            | Command::Proc(_)
            | Command::Stack(_) => true,
            Command::Kernel(k) => !matches!(k.command, kernel::Sub::Build(_) | kernel::Sub::Use(_)),
            _ => false,
        }
    }
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = cli.global;
    match cli.command {
        Command::Run(args) => run::run(args, &global),
        Command::Check(args) => check::run(args, &global),
        Command::List(args) => instances::list(args, &global),
        Command::Clean(args) => instances::clean(args, &global),
        Command::Wait(args) => instances::wait(args, &global),
        Command::Shutdown(args) => instances::shutdown(args, &global),
        Command::Version(a) => control::plain(control::Op::Version, a, &global),
        Command::Halt(a) => control::plain(control::Op::Halt, a, &global),
        Command::Reboot(a) => control::plain(control::Op::Reboot, a, &global),
        Command::Cad(a) => control::plain(control::Op::Cad, a, &global),
        Command::Pause(a) => control::plain(control::Op::Pause, a, &global),
        Command::Resume(a) => control::plain(control::Op::Resume, a, &global),
        Command::Sysrq(a) => control::sysrq(a, &global),
        Command::Config(a) => control::config(a, &global),
        Command::Remove(a) => control::remove(a, &global),
        Command::Log(a) => control::log(a, &global),
        Command::Proc(a) => control::proc_file(a, &global),
        Command::Stack(a) => control::stack(a, &global),
        Command::Mconsole(a) => control::mconsole(a, &global),
        Command::Console(a) => control::console(a, &global),
        Command::Cow(args) => cow::run(args, &global),
        Command::Image(args) => image::run(args, &global),
        Command::Switch(args) => switch::run(args, &global),
        Command::Uplink(args) => uplink::run(args, &global),
        Command::Kernel(args) => kernel::run(args, &global),
        Command::Doctor(args) => doctor::run(args, &global),
        Command::Generate(args) => generate::run(args),
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
    // Nothing to show: skip building a subscriber (it costs a noticeable part of a one-shot
    // command like `uml version`).
    if verbose == 0 && std::env::var_os("RUST_LOG").is_none() {
        return;
    }
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
