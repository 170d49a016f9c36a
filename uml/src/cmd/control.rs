//! The mconsole commands: `uml version|halt|reboot|cad|sysrq|pause|resume|config|remove|log|
//! proc|stack UMID …`, `uml mconsole UMID [CMD]` and `uml console UMID [LINE]`.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use uml::instance;
use uml::mconsole::Client;

use super::Global;

/// The target of a command: a umid in the uml_dir, or a path to an mconsole socket.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The instance's umid (or the path of its mconsole socket)
    #[arg(value_name = "UMID")]
    pub umid: String,
    /// Seconds to wait for each reply from the guest
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub reply_timeout: f64,
}

impl Target {
    fn client(&self, global: &Global) -> anyhow::Result<Client> {
        let timeout = Duration::from_secs_f64(self.reply_timeout.clamp(0.01, 3600.0));
        if self.umid.contains('/') {
            return Client::connect(Path::new(&self.umid))
                .map(|c| c.with_timeout(timeout))
                .map_err(Into::into);
        }
        let uml_dir = instance::uml_dir_or_default(global.uml_dir.as_deref())?;
        // Only a socket proven to be served by the instance's kernel: a stale directory's
        // socket file (or a symlink in its place) may lead to another guest.
        let found = instance::find_running(&uml_dir, &self.umid)?;
        Ok(found.client(timeout)?)
    }
}

#[derive(Debug, clap::Args)]
pub struct Plain {
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, clap::Args)]
pub struct SysrqArgs {
    #[command(flatten)]
    pub target: Target,
    /// The SysRq key (h lists them), e.g. s (sync), m (memory), t (tasks), b (reboot)
    pub key: char,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub target: Target,
    /// DEVICE to query it (ubd1, con0, ssl2, …), DEVICE=SPEC to add or change it
    /// (ubd1=/srv/disk.img, con1=pts, eth0=daemon,,unix,/tmp/sw.ctl, mem=+64M). A disk is
    /// added once the guest's disk driver runs, which a booting guest is given 5 s to start
    /// (added earlier, a disk stalls the guest's mconsole and is registered twice)
    #[arg(value_name = "DEVICE[=SPEC]")]
    pub device: String,
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub target: Target,
    /// The device to remove: ubdN, conN, sslN, ethN, vecN
    pub device: String,
}

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    #[command(flatten)]
    pub target: Target,
    /// Text for the guest's kernel log (joined by spaces)
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
    pub text: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ProcArgs {
    #[command(flatten)]
    pub target: Target,
    /// A file under the guest's /proc, e.g. meminfo, cpuinfo, 1/status
    pub file: String,
}

#[derive(Debug, clap::Args)]
pub struct StackArgs {
    #[command(flatten)]
    pub target: Target,
    /// A guest pid
    pub pid: u32,
}

#[derive(Debug, clap::Args)]
pub struct MconsoleArgs {
    #[command(flatten)]
    pub target: Target,
    /// A raw mconsole command; without one, an interactive prompt like uml_mconsole's
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    /// The instance's umid
    #[arg(value_name = "UMID")]
    pub umid: String,
    /// The guest line to attach to: con0-con15 or ssl0-ssl63. con0 is the guest's tty0: the
    /// shell of a detached `uml run`, the getty of a `uml image create` image. In a guest
    /// booted with `uml run --root`, con1-con14 are the guest's tty1-tty14 (systemd runs a
    /// getty on tty1: `uml console NAME con1` is a second login; sysvinit runs them on
    /// tty1-6) and con15 carries the kernel log. A getty's prompt may have been shown before
    /// you attached: press Enter for a fresh one
    #[arg(default_value = "con0")]
    pub line: String,
}

/// Which plain command.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Version,
    Halt,
    Reboot,
    Cad,
    Pause,
    Resume,
}

/// Prints guest text with its control characters made visible ([`uml::text::printable`]).
fn print_reply(text: &str) {
    if text.is_empty() {
        return;
    }
    let text = uml::text::printable(text);
    if text.ends_with('\n') {
        print!("{text}");
    } else {
        println!("{text}");
    }
}

pub fn plain(op: Op, args: Plain, global: &Global) -> anyhow::Result<ExitCode> {
    let client = args.target.client(global)?;
    match op {
        Op::Version => print_reply(&client.version()?),
        Op::Halt => client.halt()?,
        Op::Reboot => client.reboot()?,
        Op::Cad => client.cad()?,
        // `stop` answers "stopped"; the command's success already says so.
        Op::Pause => client.stop()?,
        Op::Resume => client.go()?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sysrq(args: SysrqArgs, global: &Global) -> anyhow::Result<ExitCode> {
    print_reply(&args.target.client(global)?.sysrq(args.key)?);
    Ok(ExitCode::SUCCESS)
}

/// `ubdN[flags]=a[,b]` with relative file names made absolute against our working directory,
/// as uml_mconsole does: the kernel would resolve them against its own.
fn absolutize_config(device: &str) -> String {
    let Some((dev, spec)) = device.split_once('=') else {
        return device.to_owned();
    };
    if !dev.starts_with("ubd") {
        return device.to_owned();
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut fields: Vec<String> = spec.split(',').map(str::to_owned).collect();
    for f in fields.iter_mut().take(2) {
        if !f.is_empty() && !f.starts_with('/') {
            *f = cwd.join(&*f).display().to_string();
        }
    }
    format!("{dev}={}", fields.join(","))
}

pub fn config(args: ConfigArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let client = args.target.client(global)?;
    let device = absolutize_config(&args.device);
    match device.split_once('=') {
        Some((dev, spec)) => client.config_set(dev, spec)?,
        None => print_reply(&client.config_get(&device)?),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn remove(args: RemoveArgs, global: &Global) -> anyhow::Result<ExitCode> {
    args.target.client(global)?.remove(&args.device)?;
    Ok(ExitCode::SUCCESS)
}

pub fn log(args: LogArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let mut text = args.text.join(" ");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    args.target.client(global)?.log(&text)?;
    Ok(ExitCode::SUCCESS)
}

pub fn proc_file(args: ProcArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let file = args
        .file
        .trim_start_matches("/proc/")
        .trim_start_matches('/');
    print_reply(&args.target.client(global)?.proc_file(file)?);
    Ok(ExitCode::SUCCESS)
}

pub fn stack(args: StackArgs, global: &Global) -> anyhow::Result<ExitCode> {
    print_reply(&args.target.client(global)?.stack(args.pid)?);
    Ok(ExitCode::SUCCESS)
}

pub fn mconsole(args: MconsoleArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let client = args.target.client(global)?;
    if !args.command.is_empty() {
        let command = absolutize_config(&args.command.join(" "));
        let reply = client.request(&command)?;
        if reply.is_ok() {
            print_reply(&reply.text);
            return Ok(ExitCode::SUCCESS);
        }
        bail!("{}", uml::text::printable(reply.text.trim_end()));
    }
    // Interactive, like uml_mconsole: a prompt with the umid, OK/ERR per reply.
    let interactive = std::io::stdin().is_terminal();
    let stdin = std::io::stdin();
    let mut failed = false;
    loop {
        if interactive {
            print!("({}) ", args.target.umid);
            std::io::stdout().flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        match line {
            "" => continue,
            "quit" | "exit" => break,
            _ => {}
        }
        match client.request(&absolutize_config(line)) {
            Ok(reply) => {
                let tag = if reply.is_ok() { "OK" } else { "ERR" };
                failed |= !reply.is_ok();
                println!(
                    "{tag} {}",
                    uml::text::printable(reply.text.trim_end_matches('\n'))
                );
            }
            Err(e) => {
                failed = true;
                // The error's causes too, as uml prints every error.
                println!("ERR {}", super::error_chain(&e.into()));
            }
        }
    }
    Ok(if failed && !interactive {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// How long `uml console` waits for the guest to open a line that is closed.
const LINE_OPEN_WAIT: Duration = Duration::from_secs(10);

/// How much of a guest's console log `uml console` reads to find its pty.
const LOG_SCAN_LIMIT: u64 = 4 << 20;

/// The host pty behind a guest line that was configured as `pts` (or `pty`).
///
/// Once the guest has opened the line, the kernel's `config conN` answers `pts:/dev/pts/K`
/// (`chan_kern.c`); before that, and on kernels that answer only `pts`, the device is named in
/// the kernel log (`Virtual console N assigned device '/dev/pts/K'`), which `uml run` keeps;
/// else it is the only one of the kernel's `/dev/ptmx` descriptors. Whatever names it, the
/// device must be one the kernel holds: what the guest prints is not trusted.
fn find_pty(
    uml_dir: &Path,
    target: &instance::Instance,
    line: &str,
    config: &str,
) -> anyhow::Result<PathBuf> {
    let (kind, n) = if let Some(n) = line.strip_prefix("con") {
        ("Virtual console", n)
    } else if let Some(n) = line.strip_prefix("ssl") {
        ("Serial line", n)
    } else {
        bail!("{line}: expected a console (con0-con15) or serial line (ssl0-ssl63)");
    };
    let pid = target.pid.context("the instance has no pid")?;
    let mut held = uml::launch::kernel_ptys(pid);
    if let Some(dev) = config.split(',').find_map(|c| {
        c.trim()
            .strip_prefix("pts:")
            .or(c.trim().strip_prefix("pty:"))
    }) {
        let dev = PathBuf::from(dev);
        if held.contains(&dev) {
            return Ok(dev);
        }
    }
    let log = uml::launch::runtime_dir(uml_dir, &target.umid).join(format!("{}.log", target.umid));
    let needle = format!("{kind} {n} assigned device '");
    // The log is the guest's console output and grows for as long as it runs: read a bounded
    // head, where the line's first open (during boot) is logged.
    let mut head = Vec::new();
    if let Ok(f) = std::fs::File::open(&log) {
        let _ = f.take(LOG_SCAN_LIMIT).read_to_end(&mut head);
    }
    let text = String::from_utf8_lossy(&head);
    if let Some(dev) = text.lines().rev().find_map(|l| {
        l.split_once(&needle)
            .and_then(|(_, r)| r.split('\'').next())
    }) && held.contains(&PathBuf::from(dev))
    {
        return Ok(PathBuf::from(dev));
    }
    match held.len() {
        1 => Ok(held.remove(0)),
        0 => bail!(
            "{line} of {} has no host pty open yet (the guest has not opened it)",
            target.umid
        ),
        _ => bail!(
            "{line} of {}: the guest has not opened {line} yet (the kernel holds ptys for other lines: {})",
            target.umid,
            held.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub fn console(args: ConsoleArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let uml_dir = instance::uml_dir_or_default(global.uml_dir.as_deref())?;
    let target = instance::find_running(&uml_dir, &args.umid)?;
    let client = target.client(Duration::from_secs(5))?;
    // A getty closes and opens its line again between logins (and after a detach hangs it
    // up): the line may be closed for a moment, so wait a little for the guest to open it.
    let deadline = std::time::Instant::now() + LINE_OPEN_WAIT;
    let pty = loop {
        let chans = client.config_get(&args.line)?;
        let chans = chans.trim();
        if !(chans.contains("pts") || chans.contains("pty")) {
            bail!(
                "{} of {} is connected to `{chans}`, not to a host pty; configure it with `uml config {} {}=pts` first",
                args.line,
                args.umid,
                args.umid,
                args.line
            );
        }
        match find_pty(&uml_dir, &target, &args.line, chans) {
            Ok(pty) => break pty,
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let mut device = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pty)
        .with_context(|| format!("cannot open {}", pty.display()))?;
    eprintln!(
        "attached to {} of {} ({}); press Ctrl-] to detach",
        args.line,
        args.umid,
        pty.display()
    );
    let saved = nix::sys::termios::tcgetattr(std::io::stdin()).ok();
    if let Some(t) = &saved {
        let mut raw = t.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &raw,
        );
    }
    let result = relay(&mut device);
    if let Some(t) = &saved {
        let _ =
            nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, t);
    }
    eprintln!();
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Copies stdin to the pty and the pty to stdout until Ctrl-] or, once input has ended, until
/// the guest has been quiet for two seconds (so `echo cmd | uml console` shows the answer).
fn relay(device: &mut std::fs::File) -> anyhow::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut buf = [0u8; 4096];
    let mut input_done = false;
    loop {
        let (in_ready, dev_ready, dev_gone) = {
            let mut fds = [
                PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
                PollFd::new(device.as_fd(), PollFlags::POLLIN),
            ];
            let active = if input_done {
                &mut fds[1..]
            } else {
                &mut fds[..]
            };
            let timeout = if input_done {
                PollTimeout::from(2000u16)
            } else {
                PollTimeout::NONE
            };
            if poll(active, timeout)? == 0 {
                return Ok(());
            }
            let r0 = fds[0].revents().unwrap_or(PollFlags::empty());
            let r1 = fds[1].revents().unwrap_or(PollFlags::empty());
            (
                r0.intersects(PollFlags::POLLIN | PollFlags::POLLHUP),
                r1.contains(PollFlags::POLLIN),
                r1.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)
                    && !r1.contains(PollFlags::POLLIN),
            )
        };
        if dev_ready {
            let n = device.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            stdout.write_all(&buf[..n])?;
            stdout.flush()?;
        } else if dev_gone {
            return Ok(());
        }
        if in_ready && !input_done {
            let n = nix::unistd::read(&stdin, &mut buf)?;
            if n == 0 {
                input_done = true;
                continue;
            }
            if let Some(pos) = buf[..n].iter().position(|&b| b == 0x1d) {
                device.write_all(&buf[..pos])?;
                return Ok(());
            }
            device.write_all(&buf[..n])?;
        }
    }
}
