//! `uml switch`: run a switch for the kernel's `daemon` transport (and, with `--bess`, the
//! vector driver's `bess` transport) in the foreground or, with `--daemon`, in the background
//! once its sockets are listening.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use nix::sys::signal::{SigSet, Signal};
use uml::switch::{DEFAULT_CONTROL_SOCKET, Switch, SwitchOptions};

use super::Global;

const AFTER_HELP: &str = "\
Guests attach with eth0=daemon,<mac>,unix,<CTL_SOCKET> (6.x kernels; the guest's interface is
eth0), or with vec0:transport=bess,src=<NEW_PATH>,dst=<BESS_SOCKET> (7.x kernels, which have
no daemon transport; the guest's interface is vec0). Both kinds share one switch.
uml_switch's single-dash options are spelled with two dashes here: -unix is --unix, -hub is
--hub, -tap is --tap, -daemon is --daemon. SIGINT, SIGTERM and SIGHUP stop the switch and
remove its sockets.";

/// Arguments of `uml switch`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
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
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{s:?} is not an octal mode such as 777 or 0660"))
}

pub fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
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
