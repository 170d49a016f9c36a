//! `uml run`: boot the built-in guest, or run one command in a fresh guest.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use uml::launch::{Console, DefaultGuest, Launch, Payload, runtime_dir};

use super::Global;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    uml run                          an interactive shell in a guest over the host's /\n  \
    uml run -- make -C linux test    one command; its output here, its exit status ours\n  \
    uml run --rw $PWD -- ./build.sh  the current directory writable in the guest\n  \
    uml run --detach --umid web1 --disk web1.cow:base.img\n  \
    uml run --detach --umid web1 --root web1.img    boot a `uml image create` image\n  \
    uml run --root web1.cow:base.img --net switch:lab,ip=10.0.0.2/24\n  \
    uml run --net switch:lab -- ip -br addr\n  \
    sudo uml run --net tap:uml0,host=192.0.2.1/24    creates tap uml0, host side 192.0.2.1\n    \
    then in the guest: ip addr add 192.0.2.2/24 dev eth0; ip link set eth0 up\n  \
    uml run --net l2tpv3:198.51.100.1:198.51.100.2:session=7    a guest on the host\n    \
    198.51.100.1, joined to one started with l2tpv3:198.51.100.2:198.51.100.1:session=7 there")]
pub struct Args {
    /// Guest memory (kernel `mem=`): a number with an optional K, M or G suffix
    #[arg(long, short = 'm', value_name = "SIZE", default_value = "256M")]
    pub mem: String,
    /// The instance's name (kernel `umid=`, at most 63 characters) [default: run-XXXXXX]
    #[arg(long, value_name = "NAME")]
    pub umid: Option<String>,
    /// The UML kernel: a path, a release or series built by `uml kernel build` (7.2), or a
    /// command on PATH [default: `linux` on PATH, else the newest built kernel]
    #[arg(long, value_name = "KERNEL", env = "UML_KERNEL")]
    pub kernel: Option<String>,
    /// A disk: FILE, FILE:ro, or COW:BASE (a COW file over a base image; created by the kernel
    /// if missing). The first is ubda (/dev/ubda in the guest), the next ubdb, …
    #[arg(long = "disk", short = 'd', value_name = "SPEC")]
    pub disks: Vec<String>,
    /// Boot this disk image as / with its own init (systemd, sysvinit): FILE, or COW:BASE to
    /// leave BASE untouched (the COW file is created when missing). The image is ubda; --disk
    /// then starts at ubdb. con0 is this terminal (or, with --detach, a host pty for
    /// `uml console NAME`), con1-con14 host ptys once the guest opens them (systemd's getty on
    /// tty1 is con1), the kernel log goes to con15. With --detach, uml run returns once a
    /// login prompt shows on one of the guest's lines.
    #[arg(long, value_name = "IMAGE")]
    pub root: Option<String>,
    /// The guest's hostname (kernel `systemd.hostname=`, which systemd and uml run's own
    /// guest read) [default: the umid]
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// A network interface; the Nth --net is ethN in the guest (first eth0) on every kernel:
    /// switch:NAME, tap:DEV[,host=ADDR/PREFIX][,user=USER], vde[:DIR], raw:IFACE,
    /// l2tpv3:LOCAL:REMOTE[:OPTION,…], gre:LOCAL:REMOTE[:OPTION,…], daemon[:CTL],
    /// mcast[:GROUP[:PORT]]
    ///
    /// switch:NAME is a port of the `uml switch` called NAME, started when none runs. tap:DEV
    /// is the host's tap device DEV; run as root, uml run creates it when it is missing (owned
    /// by USER, with the host address ADDR/PREFIX, up) and removes it when the guest ends.
    /// vde[:DIR] is a port of the vde_switch whose control directory is DIR. raw:IFACE sends
    /// and receives on the host interface IFACE itself (root). l2tpv3: and gre: carry the
    /// guest's Ethernet frames to a peer (another guest's kernel on another host) between the
    /// host addresses LOCAL and REMOTE (IPv6 in brackets); l2tpv3 runs over UDP port 1701 and
    /// needs no privilege, gre needs root. l2tpv3 options: session=N, port=N, cookie=N, ip (no
    /// UDP), or the kernel's own keys (rx_session=N, tx_session=N, srcport=N, dstport=N, …);
    /// gre options: key=N, sequence=1. Both ends must use the same options, mirrored.
    ///
    /// Each spec uses the kernel's legacy driver where the kernel has that transport (6.x:
    /// ethN=…), else its vector driver (vecN:transport=…; 7.x has only this one). uml run's
    /// guest renames a vector interface vecN to ethN and keeps vecN as its altname, so both
    /// names work. A spec the kernel lacks is an error before boot that names what it has.
    ///
    /// Any spec takes `,ip=ADDR/PREFIX` (IPv4): the guest's interface gets that address at
    /// boot, through the kernel command line word `ip=ADDR::…:IFACE:none`, which uml run's own
    /// guest and a `uml image create` image (systemd-network-generator) read.
    #[arg(long = "net", short = 'n', value_name = "SPEC")]
    pub nets: Vec<String>,
    /// A host directory that is writable at the same path in the guest (the root is read-only)
    #[arg(long = "rw", value_name = "DIR")]
    pub writable: Vec<PathBuf>,
    /// An extra kernel argument, passed as it is (repeatable), e.g. --arg loglevel=7
    #[arg(
        long = "arg",
        short = 'a',
        value_name = "WORD",
        allow_hyphen_values = true
    )]
    pub kernel_args: Vec<String>,
    /// Return once the guest has booted and print its umid; the guest keeps running
    #[arg(long)]
    pub detach: bool,
    /// Seconds to wait for the guest to boot before it is killed
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub boot_timeout: u64,
    /// The host CPU the guest runs on: a CPU number, or `any` to let the host's scheduler move
    /// it [default: one that runs the fewest guests of the uml_dir, the one uml starts on if
    /// it is among them]. A one-CPU guest is two host processes taking turns (a guest process
    /// and the kernel), much faster on one CPU than woken across two; a guest with ncpus=
    /// above 1 is never confined
    #[arg(long, value_name = "CPU|any")]
    pub cpu: Option<String>,
    /// Start even if `uml check` finds errors in the kernel command line
    #[arg(long)]
    pub no_check: bool,
    /// Run this command in the guest instead of a shell. Without one: an interactive login
    /// shell on a terminal; with standard input not a terminal (`uml run < script`), the shell
    /// reads its commands from it, with no prompts, and its exit status is ours
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    // Resolved and profiled before anything is prepared: a file that is not a UML kernel (a
    // directory, /bin/true, a truncated copy) is refused at once, not after a boot timeout.
    let kernel = uml::kernel::resolve(args.kernel.as_deref())?;
    let profile = uml::kernel::Profile::read(&kernel)?;
    let uml_dir = uml::instance::uml_dir_or_default(global.uml_dir.as_deref())?;
    let umid = args.umid.clone().unwrap_or_else(uml::launch::fresh_umid);
    if umid.len() > 63 {
        bail!(
            "--umid {umid:?} is {} characters long; the kernel accepts at most 63 (it would silently pick a random one)",
            umid.len()
        );
    }
    if args.root.is_some() && !args.command.is_empty() {
        bail!("--root boots the image's own init; a COMMAND cannot be given with it");
    }
    if args.root.is_some() && !args.writable.is_empty() {
        bail!(
            "--rw makes host directories writable in uml run's own guest over the host's /; it cannot be combined with --root"
        );
    }
    let hostname_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
    let hostname = match &args.hostname {
        Some(h) => {
            if h.is_empty() || h.len() > 64 || !h.bytes().all(hostname_char) {
                bail!("--hostname {h:?}: expected 1-64 letters, digits, '-' or '.'");
            }
            h.clone()
        }
        // The umid, with what a hostname cannot have made '-'.
        None => umid
            .bytes()
            .take(64)
            .map(|b| if hostname_char(b) { b as char } else { '-' })
            .collect(),
    };
    let rt = runtime_dir(&uml_dir, &umid);
    let init = rt.join(format!("{umid}.init"));
    let log = rt.join(format!("{umid}.log"));
    let notify_socket = rt.join(format!("{umid}.notify"));

    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let stdin_tty = std::io::stdin().is_terminal();
    let stdout_tty = std::io::stdout().is_terminal();
    let payload = if args.command.is_empty() && !stdin_tty && !args.detach && args.root.is_none() {
        // Commands on a pipe or in a file, as `ssh host < script` runs them: a shell that
        // reads them from a pipe is not interactive (no prompts, no line editing), and ends at
        // the end of the input. `cat` reads the guest's console line in canonical mode, where
        // the end of the input (^D) is seen; an interactive shell's line editor would take it
        // as a plain byte and wait forever.
        Payload::Command(vec![
            "/bin/sh".into(),
            "-c".into(),
            "cat | \"${SHELL:-/bin/sh}\"".into(),
        ])
    } else if args.command.is_empty() {
        Payload::Shell
    } else {
        Payload::Command(args.command.clone())
    };
    let detached_shell = args.detach && payload == Payload::Shell;
    let payload = if detached_shell {
        Payload::RespawningShell
    } else {
        payload
    };
    let mut env = Vec::new();
    for key in ["HOME", "TERM", "LANG", "LC_ALL", "USER", "LOGNAME", "SHELL"] {
        if let Ok(v) = std::env::var(key) {
            env.push((key.to_owned(), v));
        }
    }
    let writable = args
        .writable
        .iter()
        .map(|d| {
            std::fs::canonicalize(d)
                .with_context(|| format!("--rw {}: no such directory", d.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let guest = DefaultGuest {
        payload,
        cwd,
        env,
        writable,
        // A detached shell's line is a host pty: a terminal.
        stdin_tty: if args.detach {
            detached_shell
        } else {
            stdin_tty
        },
        stdout_tty: if args.detach {
            detached_shell
        } else {
            stdout_tty
        },
    };

    let here = std::env::current_dir().context("cannot read the current directory")?;
    let mut kernel_args = match &args.root {
        Some(root) => uml::launch::DiskGuest {
            root: uml::launch::disk_arg(0, root, Some(&here))
                .map_err(|e| anyhow::anyhow!("--root: {e}"))?,
            hostname: hostname.clone(),
            detached: args.detach,
        }
        .kernel_args(&args.mem, &umid, &uml_dir, &profile),
        None => {
            let mut a = guest.kernel_args(&init, &args.mem, &umid, &uml_dir);
            a.push(format!("systemd.hostname={hostname}"));
            a
        }
    };
    if let Some(root) = &args.root {
        let file = here.join(root.split(':').next().unwrap_or_default());
        if let Ok(Some(uml::cow::LockHolder { pid, .. })) = uml::cow::holder(&file) {
            bail!(
                "--root {root}: {} is in use by pid {pid} (a running guest); stop that guest first, or boot a copy",
                file.display()
            );
        }
    }
    let first_disk = usize::from(args.root.is_some());
    if detached_shell && args.root.is_none() {
        // A detached shell gets a host pty that `uml console` attaches to.
        for a in &mut kernel_args {
            if a.starts_with("con0=") {
                *a = "con0=pts".into();
            }
        }
    }
    for (unit, spec) in args.disks.iter().enumerate() {
        kernel_args.push(disk_arg(first_disk + unit, spec)?);
    }
    // Every spec is parsed and checked against the kernel before anything is started.
    let nets = args
        .nets
        .iter()
        .map(|full| {
            let (spec, address) =
                uml::net::split_guest_address(full).map_err(|e| anyhow::anyhow!("--net {e}"))?;
            let parsed = uml::net::Spec::parse(&spec)?;
            parsed.require(&spec, &profile)?;
            if let uml::net::Spec::L2tpv3(t) | uml::net::Spec::Gre(t) = &parsed {
                t.check_local(&spec)?;
            }
            Ok((spec, parsed, address))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Host tap devices the guest needs, created (as root) when missing and removed when
    // `taps` is dropped: after the guest ends, or when it cannot start.
    let mut taps = Vec::new();
    for (_, parsed, _) in &nets {
        if let uml::net::Spec::Tap(tap) = parsed {
            taps.extend(tap.prepare()?);
        }
    }
    let bess_only = !nets.is_empty() && uml::net::bess_only(&profile);
    for (unit, (spec, parsed, address)) in nets.iter().enumerate() {
        let arg = net_arg(unit, spec, parsed, &profile, &umid, &uml_dir, bess_only)?;
        if let Some(address) = address {
            // The interface as the kernel names it: vecN (vector driver) or ethN (legacy).
            let iface = arg.split(['=', ':']).next().unwrap_or_default().to_owned();
            kernel_args.push(address.kernel_word(&iface));
        }
        kernel_args.push(arg);
    }
    kernel_args.extend(args.kernel_args.iter().cloned());
    // Guest processes under seccomp instead of ptrace boot and run faster. `linux --help` warns
    // that the filter does not stop an untrusted userspace from reaching the kernel's memory;
    // the built-in guest's userspace is the host's own programs, run for this user, who can
    // already reach every file of theirs through hostfs, so there is nothing more to escape to.
    // `auto` falls back to ptrace on a host that refuses seccomp filters.
    // Not for an image's own userspace (`--root`): that is untrusted, the case the warning is for.
    if args.root.is_none()
        && !kernel_args.iter().any(|a| a.starts_with("seccomp="))
        && uml::options::by_name("seccomp=")
            .is_some_and(|s| s.presence(&profile) == uml::options::Presence::Present)
    {
        kernel_args.push("seccomp=auto".into());
    }
    let kernel_args = gate(&kernel_args, args.no_check, &uml_dir, &profile)?;

    // The runtime directory (or its fallback under /tmp, which another user could have made
    // first) must be this user's alone before the init, log and notify socket go there.
    uml::instance::private_dir(&rt)?;
    // Files of earlier guests that have ended (detached ones leave their init and log).
    uml::launch::sweep_runtime_dir(&rt, &uml_dir);
    if args.root.is_none() {
        guest.write_init(&init)?;
    }
    let cpu = match args.cpu.as_deref() {
        None => uml::launch::guest_cpu(&kernel_args, Some(&uml_dir)),
        Some("any") => None,
        Some(n) => Some(host_cpu(n)?),
    };
    let launch = Launch {
        kernel: kernel.clone(),
        args: kernel_args,
        umid: umid.clone(),
        uml_dir: uml_dir.clone(),
        console: if args.detach {
            Console::Log { log: log.clone() }
        } else {
            Console::Terminal {
                log: log.clone(),
                stdin_as_text: !stdin_tty,
            }
        },
        cwd: rt.clone(),
        notify_socket,
        cpu,
        aslr_off: uml::launch::reexecs_without_aslr(&profile),
    };

    let uml_dir_for_cleanup = uml_dir;
    let pid = Arc::new(AtomicU32::new(0));
    let _signals = forward_signals(Arc::clone(&pid));
    let terminal = TerminalState::save();
    let mut running = launch.spawn()?;
    pid.store(running.pid, Ordering::SeqCst);
    let timeout = Duration::from_secs(args.boot_timeout);
    let booted = match (&args.root, args.detach) {
        // The image's own init: up once a getty shows a login prompt on one of its lines.
        (Some(_), true) => running.wait_login(timeout),
        // Its console is this terminal: attach as soon as the kernel runs.
        (Some(_), false) => running.wait_booted(timeout, false),
        (None, _) => running.wait_booted(timeout, true),
    };
    if let Err(e) = booted {
        terminal.restore();
        drop(running);
        // Nothing of a guest that did not boot stays behind.
        uml::instance::remove_if_stale(&uml_dir_for_cleanup, &umid);
        let _ = std::fs::remove_file(&init);
        let _ = std::fs::remove_file(&log);
        return Err(e.into());
    }
    if args.detach {
        for tap in taps {
            eprintln!(
                "uml: the tap device {} stays after the guest ends; remove it with `ip link del {}`",
                tap.name(),
                tap.name()
            );
            tap.keep();
        }
        println!("{umid}");
        running.detach();
        return Ok(ExitCode::SUCCESS);
    }
    running.feed_stdin();
    let outcome = running.wait()?;
    terminal.restore();
    let _ = std::fs::remove_file(&init);
    uml::instance::remove_if_stale(&uml_dir_for_cleanup, &umid);
    if let Some(message) = outcome.panic {
        // The boot log goes with the guest; what matters of it is in the message.
        let diagnosis = uml::launch::diagnose_log(&log, &kernel);
        let tail = uml::launch::read_tail(&log, 20);
        let _ = std::fs::remove_file(&log);
        if let Some(diagnosis) = diagnosis {
            bail!("the guest panicked: {message}\n{diagnosis}");
        }
        bail!("the guest panicked: {message}\n--- last lines of the boot log ---\n{tail}");
    }
    match outcome.code() {
        Some(code) => {
            let _ = std::fs::remove_file(&log);
            Ok(ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)))
        }
        None => {
            let tail = uml::launch::read_tail(&log, 20);
            let _ = std::fs::remove_file(&log);
            bail!(
                "the kernel was {}\n--- last lines of the boot log ---\n{tail}",
                uml::launch::describe_status(outcome.status)
            )
        }
    }
}

/// `FILE`, `FILE:ro`, `COW:BASE`, `COW:BASE:ro` → `ubd<unit>[r]=<abs>[,<abs>]`; relative paths
/// are taken against the current directory ([`uml::launch::disk_arg`]).
fn disk_arg(unit: usize, spec: &str) -> anyhow::Result<String> {
    let cwd = std::env::current_dir()?;
    uml::launch::disk_arg(unit, spec, Some(&cwd)).map_err(|e| anyhow::anyhow!("--{e}"))
}

/// The kernel argument of `--net` number `unit`: [`uml::net::Spec::kernel_arg`], and for
/// `switch:NAME` a port of the named switch (started when missing).
fn net_arg(
    unit: usize,
    spec: &str,
    parsed: &uml::net::Spec,
    profile: &uml::kernel::Profile,
    umid: &str,
    uml_dir: &Path,
    bess_only: bool,
) -> anyhow::Result<String> {
    let mac = uml::net::mac_for(umid, unit);
    if let uml::net::Spec::Switch { name } = parsed {
        let me = std::env::current_exe().context("cannot find the uml binary to start a switch")?;
        let sockets = uml::switch::named::ensure(uml_dir, name, bess_only, &me)
            .map_err(|e| anyhow::anyhow!("--net switch:{name}: {e}"))?;
        return sockets
            .port_arg(unit, &mac, bess_only)
            .map_err(|e| anyhow::anyhow!("--net switch:{name}: {e}"));
    }
    Ok(parsed
        .kernel_arg(spec, unit, &mac, profile)?
        .expect("every spec but switch has a kernel argument"))
}

/// `--cpu N`: a CPU that this process may run on, hence the kernel too.
fn host_cpu(text: &str) -> anyhow::Result<usize> {
    let Some(allowed) = uml::launch::allowed_cpus() else {
        bail!("--cpu {text}: cannot read which CPUs this process may use");
    };
    let list = || {
        allowed
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match text.parse::<usize>() {
        Ok(cpu) if allowed.contains(&cpu) => Ok(cpu),
        Ok(_) => bail!(
            "--cpu {text}: not a CPU this process may run on; expected one of {} or `any`",
            list()
        ),
        Err(_) => bail!(
            "--cpu {text:?}: expected a CPU number ({}) or `any`",
            list()
        ),
    }
}

/// Validates the kernel command line with the option model before anything starts, and
/// renders the argv from it. Errors stop the launch (unless `--no-check`); warnings are shown.
fn gate(
    kernel_args: &[String],
    no_check: bool,
    uml_dir: &Path,
    kernel: &uml::kernel::Profile,
) -> anyhow::Result<Vec<String>> {
    use uml::check::{CheckEnv, Severity};
    let cmdline = uml::cmdline::CommandLine::parse(kernel_args);
    // The kernel that will run (`--kernel`), not the default one.
    let mut env = CheckEnv::from_process_for(kernel.clone());
    env.default_uml_dir = Some(uml_dir.to_owned());
    let report = uml::check::check(&cmdline, &env);
    let mut errors = Vec::new();
    for f in &report.findings {
        let what = f
            .arg
            .as_deref()
            .map(|a| format!("{a}: "))
            .unwrap_or_default();
        match f.severity {
            Severity::Error => errors.push(format!("{what}{}", f.message)),
            Severity::Warning => eprintln!("uml: warning: {what}{}", f.message),
            Severity::Note => tracing::info!("{what}{}", f.message),
        }
    }
    if !errors.is_empty() && !no_check {
        bail!(
            "the kernel command line has {} error(s); nothing was started (--no-check starts anyway):\n  {}",
            errors.len(),
            errors.join("\n  ")
        );
    }
    Ok(cmdline.to_argv())
}

/// The host terminal's settings, restored after the kernel (which makes it raw) exits.
struct TerminalState(Option<nix::sys::termios::Termios>);

impl TerminalState {
    fn save() -> TerminalState {
        TerminalState(nix::sys::termios::tcgetattr(std::io::stdin()).ok())
    }
    fn restore(&self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSADRAIN,
                t,
            );
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP to `uml run` become SIGTERM to the kernel, which cleans up its
/// instance directory and exits; `uml run` then reports and exits itself.
fn forward_signals(pid: Arc<AtomicU32>) -> Option<std::thread::JoinHandle<()>> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    // Blocked here, before any thread starts, so that every thread inherits the mask and only
    // the waiter below takes them. The kernel's child process gets a clean mask from std.
    set.thread_block().ok()?;
    std::thread::Builder::new()
        .name("uml-signals".into())
        .spawn(move || {
            while let Ok(sig) = set.wait() {
                let p = pid.load(Ordering::SeqCst);
                tracing::info!("received {sig}, stopping the guest (pid {p})");
                if p > 1 {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p as i32),
                        Signal::SIGTERM,
                    );
                }
            }
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_specs_become_ubd_arguments() {
        assert_eq!(disk_arg(0, "/dev/null").unwrap(), "ubd0=/dev/null");
        assert_eq!(disk_arg(1, "/dev/null:ro").unwrap(), "ubd1r=/dev/null");
        assert_eq!(
            disk_arg(2, "/x/a.cow:/x/b.img").unwrap(),
            "ubd2=/x/a.cow,/x/b.img"
        );
        assert!(disk_arg(0, "/nonexistent/file.img").is_err());
        assert!(disk_arg(16, "/dev/null").is_err());
        assert!(disk_arg(0, "").is_err());
    }

    /// `uml run --kernel K` checks the command line against K. It used to check against the
    /// default kernel, so a word K has no driver for passed (and was dropped by K at boot), and
    /// one K accepts could be refused.
    #[test]
    fn the_gate_checks_against_the_kernel_that_will_run() {
        use uml::kernel::{Profile, Version};
        let dir = tempfile::tempdir().unwrap();
        let words: Vec<String> = ["mem=64M", "root=/dev/root", "rootfstype=hostfs", "con=null"]
            .iter()
            .map(|w| (*w).to_owned())
            .chain(["eth0=mcast".to_owned()])
            .collect();
        let new = Profile::assumed(Version::new(7, 2, 13));
        let old = Profile::assumed(Version::new(6, 1, 176));
        let refused = gate(&words, false, dir.path(), &new)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("eth0=mcast") && refused.contains("no eth driver"),
            "{refused}"
        );
        let old_verdict = gate(&words, false, dir.path(), &old);
        assert!(old_verdict.is_ok(), "{old_verdict:?}");
    }

    #[test]
    fn net_specs_become_kernel_arguments() {
        let d = Path::new("/tmp");
        let old = uml::kernel::Profile::assumed(uml::kernel::Version::new(6, 1, 176));
        let arg = |unit, spec: &str| {
            let parsed = uml::net::Spec::parse(spec)?;
            net_arg(unit, spec, &parsed, &old, "g", d, false)
        };
        assert!(
            arg(0, "daemon:/tmp/s.ctl")
                .unwrap()
                .starts_with("eth0=daemon,fe:fd:")
        );
        assert!(
            arg(1, "tuntap:tap0")
                .unwrap()
                .starts_with("eth1=tuntap,tap0,fe:fd:")
        );
        use uml::net::mac_for;
        use uml::switch::named::Sockets;
        assert_eq!(mac_for("g", 0), mac_for("g", 0));
        assert_ne!(mac_for("g", 0), mac_for("g", 1));
        let sockets = |bess: &str| Sockets {
            control: "/u/sw.ctl".into(),
            bess: bess.into(),
        };
        assert_eq!(
            sockets("/u/sw.bess")
                .port_arg(1, "fe:fd:00:00:00:01", true)
                .unwrap(),
            "vec1:transport=bess,mac=fe:fd:00:00:00:01,dst=/u/sw.bess"
        );
        assert_eq!(
            sockets("/u/sw.bess").port_arg(1, "m", false).unwrap(),
            "eth1=daemon,m,unix,/u/sw.ctl"
        );
        assert!(sockets("/a,b").port_arg(1, "m", true).is_err());
    }
}
