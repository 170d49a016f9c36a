//! `uml switch`: run a switch for the kernel's `daemon` transport (and, with `--bess`, the
//! vector driver's `bess` transport) in the foreground or, with `--daemon`, in the background
//! once its sockets are listening; `uml switch list` and `uml switch stop NAME` for the named
//! switches `uml run --net switch:NAME` starts.
//!
//! The subcommands sit beside uml_switch's options rather than replacing them
//! (`args_conflicts_with_subcommands`): `uml switch --unix PATH ...` and a bare `uml switch`
//! still start a switch, `uml switch list` does not.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use nix::sys::signal::{SigSet, Signal};
use uml::switch::named::{self, NamedSwitch};
use uml::switch::{DEFAULT_CONTROL_SOCKET, Switch, SwitchOptions};

use super::Global;

const AFTER_HELP: &str = "\
Guests attach with eth0=daemon,<mac>,unix,<CTL_SOCKET> (6.x kernels; the guest's interface is
eth0), or with vec0:transport=bess,src=<NEW_PATH>,dst=<BESS_SOCKET> (7.x kernels, which have
no daemon transport; the guest's interface is vec0). Both kinds share one switch.
uml_switch's single-dash options are spelled with two dashes here: -unix is --unix, -hub is
--hub, -tap is --tap, -daemon is --daemon. SIGINT, SIGTERM and SIGHUP stop the switch and
remove its sockets.

`uml switch list` and `uml switch stop NAME` act on the named switches that
`uml run --net switch:NAME` starts in <UML_DIR>/.umlkit.";

/// Arguments of `uml switch`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP, args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<SwitchCommand>,
    /// Control socket that guests connect to (uml_switch's -unix)
    #[arg(long = "unix", value_name = "CTL_SOCKET", default_value = DEFAULT_CONTROL_SOCKET)]
    pub unix: PathBuf,
    /// Also serve 7.x kernels' vector `bess` transport on the seqpacket socket BESS_SOCKET
    #[arg(long, value_name = "BESS_SOCKET")]
    pub bess: Option<PathBuf>,
    /// Be a hub: send every frame to every other port (uml_switch's -hub)
    #[arg(long)]
    pub hub: bool,
    /// Attach the host tap device DEV as a port (uml_switch's -tap)
    #[arg(long, value_name = "DEV")]
    pub tap: Option<String>,
    /// Capture every frame into FILE (classic pcap: tcpdump -r FILE, Wireshark)
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Go into the background once the control socket is listening (uml_switch's -daemon)
    #[arg(long)]
    pub daemon: bool,
    /// Write the switch's pid to FILE; it is removed when the switch stops
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Access mode of the control socket, in octal (Debian's uml_switch service uses 777)
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    pub mode: Option<u32>,
    /// Stop once no guest has been attached (and none has connected) for SECONDS
    #[arg(long, value_name = "SECONDS")]
    pub exit_when_idle: Option<u64>,
    /// Write the counters and ports as JSON to FILE, at most once a second; removed on stop
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
}

/// What `uml switch` does besides serving.
#[derive(Debug, clap::Subcommand)]
pub enum SwitchCommand {
    /// Show the named switches (uml run --net switch:NAME), their ports and traffic counters
    List(ListArgs),
    /// Stop the named switch NAME now, whatever guests are attached
    Stop(StopArgs),
}

/// Arguments of `uml switch list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print JSON: one object per switch, with its status file's contents
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `uml switch stop`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// The switch's name, as in --net switch:NAME
    pub name: String,
    /// Seconds to wait for it to stop
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{s:?} is not an octal mode such as 777 or 0660"))
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    match &args.command {
        Some(SwitchCommand::List(a)) => return list(a, global),
        Some(SwitchCommand::Stop(a)) => return stop(a, global),
        None => {}
    }
    // The daemon changes to `/`, so every path it keeps must be absolute.
    let ctl = std::path::absolute(&args.unix)
        .with_context(|| format!("cannot resolve {}", args.unix.display()))?;
    let bess = args.bess.as_deref().map(std::path::absolute).transpose()?;
    let pid_file = args
        .pid_file
        .as_deref()
        .map(std::path::absolute)
        .transpose()?;
    let opts = SwitchOptions {
        hub: args.hub,
        tap: args.tap.clone(),
        pcap: args.pcap.clone(),
        bess: bess.clone(),
        control_mode: args.mode,
        exit_when_idle: args.exit_when_idle.map(std::time::Duration::from_secs),
        stats: args.stats.as_deref().map(std::path::absolute).transpose()?,
        ..SwitchOptions::default()
    };
    let mut switch = Switch::bind(&ctl, opts)?;
    let mut what = format!("unix socket '{}'", ctl.display());
    if let Some(bess) = &bess {
        what += &format!(" bess socket '{}'", bess.display());
    }
    if let Some(tap) = &args.tap {
        what += &format!(" tap device '{tap}'");
    }
    if args.hub {
        eprintln!("uml switch will be a hub instead of a switch");
    }
    eprintln!("uml switch attached to {what}");

    if args.daemon {
        // Fork before any thread exists: the socket is already listening, so the parent can
        // report success as soon as the child's pid is recorded.
        // SAFETY: the process is single-threaded here (no runtime or thread was started), so
        // the child may run arbitrary code after fork.
        match unsafe { nix::unistd::fork() }.context("cannot fork into the background")? {
            nix::unistd::ForkResult::Parent { child } => {
                switch.disown_control_file();
                if let Some(path) = &pid_file {
                    write_pid(path, child.as_raw() as u32)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            nix::unistd::ForkResult::Child => detach()?,
        }
    } else if let Some(path) = &pid_file {
        write_pid(path, std::process::id())?;
    }

    let handle = switch.handle();
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGHUP);
    signals.thread_block().context("cannot block signals")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                tracing::info!(?sig, "stopping");
            }
            handle.stop();
        })
        .context("cannot start the signal thread")?;

    let result = switch.serve();
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    let stats = result?;
    tracing::info!(
        received = stats.frames_received,
        sent = stats.frames_sent,
        dropped = stats.dropped(),
        "switch stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// The runtime directory holding the named switches of the uml dir.
fn switch_dir(global: &Global) -> anyhow::Result<PathBuf> {
    let uml_dir = uml::instance::uml_dir_or_default(global.uml_dir.as_deref())?;
    Ok(named::runtime_dir(&uml_dir))
}

fn list(args: &ListArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let switches = named::list(&switch_dir(global)?);
    if args.json {
        let items: Vec<serde_json::Value> = switches
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "live": s.running_pid().is_some(),
                    "pid": s.running_pid(),
                    "control": s.control(),
                    "status": s.status(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(ExitCode::SUCCESS);
    }
    if switches.is_empty() {
        eprintln!("no named switches");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:>7} {:<6} {:>5} {:>10} {:>10} {:>8}",
        "NAME", "PID", "STATE", "PORTS", "RX", "TX", "DROPPED"
    );
    for s in &switches {
        // Not `is_live`: its probe connection would keep an idle switch alive.
        let pid = s.running_pid();
        let live = pid.is_some();
        let status = s.status().filter(|_| live);
        let pid = pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let state = if live { "live" } else { "stale" };
        match &status {
            Some(st) => println!(
                "{:<16} {:>7} {:<6} {:>5} {:>10} {:>10} {:>8}",
                s.name,
                pid,
                state,
                st.ports.len(),
                st.stats.frames_received,
                st.stats.frames_sent,
                st.stats.dropped()
            ),
            None => println!(
                "{:<16} {:>7} {:<6} {:>5} {:>10} {:>10} {:>8}",
                s.name, pid, state, "-", "-", "-", "-"
            ),
        }
        for p in status.iter().flat_map(|st| &st.ports) {
            println!(
                "  port {:<3} {:<6} rx {:>10} tx {:>10} dropped {:>8} queued {:>4} pinned {:>5} KiB  {}",
                p.id,
                p.kind,
                p.rx_frames,
                p.tx_frames,
                p.dropped,
                p.queued,
                (p.queued_bytes + p.unread_bytes) >> 10,
                p.peer
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stop(args: &StopArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let switch = NamedSwitch::new(&switch_dir(global)?, &args.name).map_err(anyhow::Error::msg)?;
    switch
        .stop(std::time::Duration::from_secs(args.timeout))
        .map_err(anyhow::Error::msg)?;
    eprintln!("stopped the switch {}", args.name);
    Ok(ExitCode::SUCCESS)
}

fn write_pid(path: &Path, pid: u32) -> anyhow::Result<()> {
    std::fs::write(path, format!("{pid}\n"))
        .with_context(|| format!("cannot write the pid file {}", path.display()))
}

/// Become a session leader in `/` with stdin, stdout and stderr on /dev/null.
fn detach() -> anyhow::Result<()> {
    nix::unistd::setsid().context("setsid failed")?;
    std::env::set_current_dir("/").context("cannot change to /")?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null")?;
    for target in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors only replaces what they refer to; the
        // source descriptor is open for the duration of the call.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), target) } < 0 {
            anyhow::bail!("cannot redirect descriptor {target} to /dev/null");
        }
    }
    Ok(())
}
