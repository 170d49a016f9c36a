//! Whether this host and a kernel can do what umlkit needs (`uml doctor`).
//!
//! Every check ends in a [`Finding`]: OK, or the problem and what to do about it. An
//! [`Status::Error`] means `uml run` cannot work; a [`Status::Warning`] means a part of umlkit
//! (umlfs, umld) cannot, or may fail later.
//!
//! The kernel is judged by a real guest ([`probe`]): the mconsole socket answers before init
//! runs, and a kernel that boots can still kill its first process (the XSAVE/AMX failure of
//! kernels before 7.0, see [`crate::kernel::diagnosis`]), so only a process inside the guest
//! that prints a marker proves the kernel works here.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::kernel::diagnosis::Diagnosis;
use crate::kernel::{self, Profile};
use crate::launch::{Console, Launch, LaunchError};

/// How long a probe guest may take from start to a running init. A 7.2 guest gets there in
/// about a second; the bound is for a loaded host.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The guest memory `uml run` gives by default; the memory directory must hold it.
pub const DEFAULT_MEM_BYTES: u64 = 256 << 20;

/// What the probe guest's init prints once it runs.
const MARKER: &str = "umlkit-doctor: init runs";

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works.
    Ok,
    /// For information only (other kernels).
    Info,
    /// A part of umlkit (umlfs, umld) cannot work, or a guest may fail later.
    Warning,
    /// `uml run` cannot work.
    Error,
}

/// The result of one check.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// A short stable name: `kernel`, `probe`, `other-kernels`, `ptrace`, `memory`, `cpu`,
    /// `fuse`, `dbus`, `umld`.
    pub check: &'static str,
    pub status: Status,
    /// What was found, in a sentence.
    pub summary: String,
    /// What to do, when something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The known incompatibility a failed probe's boot log shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
    /// Further lines (one per other kernel, the tail of a boot log).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl Finding {
    fn new(check: &'static str, status: Status, summary: impl Into<String>) -> Finding {
        Finding {
            check,
            status,
            summary: summary.into(),
            fix: None,
            diagnosis: None,
            details: Vec::new(),
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// Everything `uml doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No error: `uml run` works with this kernel on this host (the exit status of `uml
    /// doctor` is 0).
    pub ok: bool,
    /// The profile of the kernel that was checked, when it is a UML kernel.
    pub kernel: Option<Profile>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn count(&self, status: Status) -> usize {
        self.findings.iter().filter(|f| f.status == status).count()
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct Options {
    /// The kernel, as `--kernel` takes it (see [`kernel::resolve`]).
    pub kernel: Option<String>,
    /// The bound of each probe guest.
    pub probe_timeout: Duration,
    /// Also boot the other kernels found (`uml kernel list`, `linux` on PATH).
    pub probe_others: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            kernel: None,
            probe_timeout: PROBE_TIMEOUT,
            probe_others: true,
        }
    }
}

/// Runs every check.
pub fn examine(options: &Options) -> Report {
    let mut findings = Vec::new();
    let (kernel_finding, profile) = check_kernel(options.kernel.as_deref());
    findings.push(kernel_finding);
    let mut probe_ok = None;
    if let Some(profile) = &profile {
        let finding = check_probe(profile, options.probe_timeout);
        probe_ok = Some(finding.status == Status::Ok);
        findings.push(finding);
    }
    if let Some(finding) = check_other_kernels(profile.as_ref(), probe_ok, options) {
        findings.push(finding);
    }
    let host = [check_ptrace(), check_memory()];
    // A probe that failed for a reason of the host: point at that reason.
    let host_errors: Vec<&str> = host
        .iter()
        .filter(|f| f.status == Status::Error)
        .map(|f| f.check)
        .collect();
    if let Some(probe) = findings.iter_mut().find(|f| f.check == "probe")
        && probe.status == Status::Error
        && probe.diagnosis.is_none()
        && !host_errors.is_empty()
    {
        probe.fix = Some(format!(
            "fix the {} error below first: the kernel needs it",
            host_errors.join(" and ")
        ));
    }
    findings.extend(host);
    findings.push(check_cpu(read_halt_poll()));
    findings.push(check_fuse(read_enable_uring()));
    let (bus, address) = check_dbus();
    findings.push(bus);
    findings.push(check_umld(address.as_deref()));
    Report {
        ok: findings.iter().all(|f| f.status != Status::Error),
        kernel: profile,
        findings,
    }
}

fn check_kernel(wanted: Option<&str>) -> (Finding, Option<Profile>) {
    let path = match kernel::resolve(wanted) {
        Ok(path) => path,
        Err(err) => {
            return (
                Finding::new("kernel", Status::Error, chain(&err)).fix(
                    "install the user-mode-linux package, or build a kernel with `uml kernel build`",
                ),
                None,
            );
        }
    };
    match Profile::read(&path) {
        Ok(profile) => {
            let summary = format!(
                "{} is UML kernel {}; network: {}",
                profile.path.display(),
                profile.release,
                network_drivers(&profile)
            );
            (Finding::new("kernel", Status::Ok, summary), Some(profile))
        }
        Err(err) => (
            Finding::new("kernel", Status::Error, chain(&err)).fix(
                "pass --kernel with a UML kernel binary (a path, a release built by `uml kernel build`, or a command on PATH)",
            ),
            None,
        ),
    }
}

/// An error and its causes, joined by ": ".
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The network drivers a kernel has, as users name them.
pub fn network_drivers(profile: &Profile) -> String {
    let mut names: Vec<&str> = Vec::new();
    if profile.has("UML_NET_VECTOR") {
        names.push("vector (vecN: tap, raw, bess, fd, …)");
    }
    for (name, symbol) in [
        ("daemon", "UML_NET_DAEMON"),
        ("mcast", "UML_NET_MCAST"),
        ("tuntap", "UML_NET_TUNTAP"),
        ("vde", "UML_NET_VDE"),
        ("slirp", "UML_NET_SLIRP"),
        ("pcap", "UML_NET_PCAP"),
    ] {
        if profile.has("UML_NET") && profile.has(symbol) {
            names.push(name);
        }
    }
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// How a probe guest ended.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// A process ran inside the guest.
    pub ran: bool,
    /// From start to the marker (when it ran) or to the failure.
    pub elapsed: Duration,
    /// Why it did not run: the launch error, in a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
    /// The last lines of the boot log, when it failed without a known diagnosis.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log_tail: String,
}

/// A private directory for one probe, removed on drop (also when the probe fails).
struct Scratch(PathBuf);

impl Scratch {
    fn create() -> io::Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        // The guest sees the host's / through hostfs, so any host directory works for the init
        // script; a short one keeps the notify and mconsole socket paths within 107 bytes.
        // $TMPDIR may be what is wrong (the memory check says so); the probe then still runs,
        // from /tmp, and shows what the kernel makes of that $TMPDIR.
        let mut base = std::env::temp_dir();
        if base.as_os_str().len() > 40 || !base.is_absolute() || !base.is_dir() {
            base = PathBuf::from("/tmp");
        }
        let mut last = None;
        for n in 0..100u32 {
            let dir = base.join(format!("umlkit-doctor-{}-{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(Scratch(dir)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free directory name")))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Boots `kernel` with the host's `/` as a read-only hostfs root and an init script that
/// prints a marker, reports to the launcher through `/proc/mconsole` and powers off. The
/// guest is bounded by `timeout`; its whole process group is killed afterwards, and its
/// directory (init, log, uml_dir, notify socket) removed.
pub fn probe(kernel: &Path, timeout: Duration) -> Probe {
    let start = Instant::now();
    let failed = |failure: String| Probe {
        ran: false,
        elapsed: start.elapsed(),
        failure: Some(failure),
        diagnosis: None,
        log_tail: String::new(),
    };
    let scratch = match Scratch::create() {
        Ok(s) => s,
        Err(e) => return failed(format!("cannot create a directory for the probe: {e}")),
    };
    let dir = &scratch.0;
    let init = dir.join("init");
    let log = dir.join("log");
    let script = format!(
        "#!/bin/sh\n# `uml doctor`'s probe: proves that the guest runs a process\n\
         echo '{MARKER}'\n\
         mount -t proc proc /proc 2>/dev/null\n\
         printf '{}' > /proc/mconsole 2>/dev/null\n\
         poweroff -f >/dev/null 2>&1\n\
         echo o > /proc/sysrq-trigger\n",
        String::from_utf8_lossy(crate::launch::BOOTED_MESSAGE).replace('\n', "\\n")
    );
    let written = std::fs::write(&init, script).and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))
    });
    if let Err(e) = written {
        return failed(format!("cannot write {}: {e}", init.display()));
    }
    let umid = format!("doctor-{}", std::process::id());
    let uml_dir = dir.join("uml");
    let launch = Launch {
        kernel: kernel.to_owned(),
        args: vec![
            "mem=64M".into(),
            "root=/dev/root".into(),
            "rootfstype=hostfs".into(),
            "rootflags=/".into(),
            "ro".into(),
            format!("init={}", init.display()),
            "con=null".into(),
            "con0=null,fd:1".into(),
            "console=tty0".into(),
            format!("umid={umid}"),
            format!("uml_dir={}", uml_dir.display()),
        ],
        umid,
        uml_dir,
        console: Console::Log { log: log.clone() },
        cwd: dir.clone(),
        notify_socket: dir.join("notify"),
        cpu: None,
        aslr_off: false,
    };
    let mut running = match launch.spawn() {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    let booted = running.wait_booted(timeout, true);
    let elapsed = start.elapsed();
    // Give init a moment to power off; whatever is left is killed.
    if booted.is_ok() && !matches!(running.wait_timeout(Duration::from_secs(5)), Ok(Some(_))) {
        running.kill();
    }
    crate::instance::kill_group_and_wait(running.pid, Duration::from_secs(3));
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    match booted {
        // The marker is the evidence a person can check in a log; /proc/mconsole is the one
        // the launcher waits for. Both come from the same init.
        Ok(()) => Probe {
            ran: true,
            elapsed,
            failure: None,
            diagnosis: None,
            log_tail: String::new(),
        },
        Err(err) => {
            let diagnosis = err.diagnosis().cloned();
            let failure = match &err {
                LaunchError::Panicked { message, .. } => format!("the guest panicked: {message}"),
                LaunchError::ExitedEarly { status, .. } => {
                    format!("the kernel exited ({status}) before init ran")
                }
                LaunchError::BootTimeout { after, .. } if log_text.contains(MARKER) => {
                    format!("init ran but did not report within {after:?}")
                }
                LaunchError::BootTimeout { after, .. } => {
                    format!("no process ran within {after:?}")
                }
                other => other.to_string(),
            };
            let log_tail = if diagnosis.is_some() {
                String::new()
            } else {
                let lines: Vec<&str> = log_text.lines().collect();
                lines[lines.len().saturating_sub(10)..].join("\n")
            };
            Probe {
                ran: false,
                elapsed,
                failure: Some(failure),
                diagnosis,
                log_tail,
            }
        }
    }
}

fn check_probe(profile: &Profile, timeout: Duration) -> Finding {
    let result = probe(&profile.path, timeout);
    if result.ran {
        return Finding::new(
            "probe",
            Status::Ok,
            format!(
                "a guest of kernel {} runs a process (init ran after {:.1} s)",
                profile.release,
                result.elapsed.as_secs_f64()
            ),
        );
    }
    let failure = result.failure.unwrap_or_default();
    let mut finding = Finding::new(
        "probe",
        Status::Error,
        format!(
            "a guest of kernel {} cannot run a process: {failure}",
            profile.release
        ),
    );
    match result.diagnosis {
        Some(d) => {
            finding.fix = Some(d.fix.clone());
            finding.diagnosis = Some(d);
        }
        None => {
            finding.fix = Some(
                "the end of the boot log above shows where the kernel stopped; try another kernel with --kernel"
                    .into(),
            );
            finding.details = result.log_tail.lines().map(str::to_owned).collect();
        }
    }
    finding
}

/// The other kernels umlkit could use, with whether each runs a process here.
fn check_other_kernels(
    checked: Option<&Profile>,
    checked_ran: Option<bool>,
    options: &Options,
) -> Option<Finding> {
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    let mut candidates: Vec<PathBuf> = Vec::new();
    let env = std::env::var_os("UML_KERNEL")
        .filter(|v| !v.is_empty())
        .and_then(|v| kernel::resolve(Some(&v.to_string_lossy())).ok());
    let listed = env
        .into_iter()
        .chain(kernel::on_path("linux"))
        .chain(kernel::packaged())
        .chain(kernel::installed().into_iter().map(|k| k.path));
    for path in listed {
        let is_checked = checked.is_some_and(|p| same(&p.path, &path));
        if !is_checked && !candidates.iter().any(|c| same(c, &path)) {
            candidates.push(path);
        }
    }
    if candidates.is_empty() {
        return None;
    }
    let mut details = Vec::new();
    let mut working = Vec::new();
    for path in candidates.iter().take(8) {
        let Ok(profile) = Profile::read(path) else {
            details.push(format!("{}: not a UML kernel", path.display()));
            continue;
        };
        let name = format!("{} ({})", profile.release, path.display());
        if !options.probe_others {
            details.push(format!("{name}: not probed"));
            continue;
        }
        let result = probe(path, options.probe_timeout);
        if result.ran {
            details.push(format!("{name}: runs a process"));
            working.push(profile);
        } else {
            let why = match &result.diagnosis {
                Some(d) => format!("cannot run a process ({}: {})", d.id, d.line),
                None => format!(
                    "cannot run a process ({})",
                    result.failure.unwrap_or_default()
                ),
            };
            details.push(format!("{name}: {why}"));
        }
    }
    let mut finding = Finding::new(
        "other-kernels",
        Status::Info,
        format!("{} other kernel(s) found", details.len()),
    );
    finding.details = details;
    if checked_ran != Some(true)
        && let Some(good) = working.first()
    {
        let built = kernel::installed()
            .iter()
            .any(|k| same(&k.path, &good.path));
        let arg = if built {
            good.release.clone()
        } else {
            good.path.display().to_string()
        };
        finding.fix = Some(format!(
            "kernel {} works here: `uml kernel use {arg}` makes it the default (or pass --kernel {arg}, or set UML_KERNEL={arg})",
            good.release
        ));
    }
    Some(finding)
}

/// UML traces its own processes: each guest process is a host child that calls
/// `PTRACE_TRACEME` and stops itself (`userspace_tramp` in `arch/um/os-Linux/skas/process.c`).
/// This does the same in a forked child.
fn traceme_works() -> Result<(), String> {
    // SAFETY: between fork and _exit the child calls only ptrace(2), raise(3) and _exit(2), all
    // async-signal-safe, and touches no memory shared with the parent.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork failed: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; the child never returns.
        unsafe {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                libc::_exit(3);
            }
            libc::raise(libc::SIGSTOP);
            libc::_exit(0);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut status = 0;
    let outcome = loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::WUNTRACED) };
        if r == pid {
            break if libc::WIFSTOPPED(status) {
                Ok(())
            } else if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3 {
                Err("PTRACE_TRACEME was refused".to_owned())
            } else {
                Err(format!(
                    "the test child ended unexpectedly (status {status:#x})"
                ))
            };
        }
        if r < 0 {
            break Err(format!("waitpid failed: {}", io::Error::last_os_error()));
        }
        if Instant::now() >= deadline {
            break Err("the test child did not stop within 2 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // SAFETY: kill and reap our own child (stopped, traced or not).
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
    outcome
}

fn has_cap_sys_ptrace() -> bool {
    const CAP_SYS_PTRACE: u32 = 19;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_PTRACE) != 0)
}

fn check_ptrace() -> Finding {
    // Yama (Documentation/admin-guide/LSM/Yama.rst): 0 and 1 allow a child's PTRACE_TRACEME,
    // 2 only with CAP_SYS_PTRACE, 3 never (and cannot be lowered until reboot).
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let scope_text = match scope {
        Some(s) => format!("Yama ptrace_scope {s}"),
        None => "no Yama".to_owned(),
    };
    let cap = has_cap_sys_ptrace();
    match traceme_works() {
        Ok(()) => Finding::new(
            "ptrace",
            Status::Ok,
            format!("a child process can be traced ({scope_text})"),
        ),
        Err(why) => {
            let fix = match scope {
                Some(3) => "ptrace_scope 3 cannot be lowered until the host reboots; boot with kernel.yama.ptrace_scope=1".to_owned(),
                Some(2) if !cap => "run as a user with CAP_SYS_PTRACE, or `sysctl kernel.yama.ptrace_scope=1`".to_owned(),
                _ => "in a container, allow ptrace (CAP_SYS_PTRACE, or a seccomp profile that permits ptrace)".to_owned(),
            };
            Finding::new(
                "ptrace",
                Status::Error,
                format!("UML cannot trace its processes: {why} ({scope_text})"),
            )
            .fix(fix)
        }
    }
}

/// The directory the kernel maps guest memory from, chosen as the kernel does
/// (`arch/um/os-Linux/mem.c`, boot log "Checking environment variables for a tempdir...",
/// "Checking if /dev/shm is on tmpfs..."): `$TMPDIR`, `$TMP` or `$TEMP`, else `/dev/shm` when
/// it is a tmpfs, else `/tmp`.
pub fn memory_dir() -> (PathBuf, String) {
    for var in ["TMPDIR", "TMP", "TEMP"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return (PathBuf::from(v), format!("${var}"));
        }
    }
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let shm = Path::new("/dev/shm");
    let on_tmpfs =
        nix::sys::statfs::statfs(shm).is_ok_and(|s| s.filesystem_type().0 == TMPFS_MAGIC);
    if on_tmpfs {
        (shm.to_owned(), "/dev/shm is a tmpfs".to_owned())
    } else {
        (
            PathBuf::from("/tmp"),
            "no tempdir variable, /dev/shm is not a tmpfs".to_owned(),
        )
    }
}

/// What the kernel does with its memory file: create it in `dir`, unlink it, size it and map
/// it executable ("Checking PROT_EXEC mmap in …").
fn map_exec_in(dir: &Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let path = dir.join(format!(".umlkit-doctor-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("cannot create a file there: {e}"))?;
    let _ = std::fs::remove_file(&path);
    file.set_len(4096)
        .map_err(|e| format!("cannot size a file there: {e}"))?;
    // SAFETY: a fresh shared mapping of our own 4 KiB file, unmapped at once; nothing reads it.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        if addr == libc::MAP_FAILED {
            return Err(format!(
                "cannot map a file there executable: {}",
                io::Error::last_os_error()
            ));
        }
        libc::munmap(addr, 4096);
    }
    Ok(())
}

fn check_memory() -> Finding {
    let (dir, why) = memory_dir();
    let shown = format!("{} ({why})", dir.display());
    if !dir.is_dir() {
        return Finding::new(
            "memory",
            Status::Error,
            format!("guest memory goes to {shown}, which is not a directory"),
        )
        .fix("set TMPDIR to a writable directory on a tmpfs, or create it");
    }
    let noexec = nix::sys::statvfs::statvfs(&dir)
        .map(|s| {
            (
                s.flags().contains(nix::sys::statvfs::FsFlags::ST_NOEXEC),
                s.blocks_available() * s.fragment_size(),
            )
        })
        .ok();
    if let Err(e) = map_exec_in(&dir) {
        let mounted = if noexec.is_some_and(|(n, _)| n) {
            " (it is mounted noexec)"
        } else {
            ""
        };
        return Finding::new(
            "memory",
            Status::Error,
            format!("guest memory goes to {shown}: {e}{mounted}"),
        )
        .fix("set TMPDIR to a writable directory that is not mounted noexec, e.g. on a tmpfs");
    }
    let free = noexec.map(|(_, f)| f).unwrap_or(0);
    if free < DEFAULT_MEM_BYTES {
        return Finding::new(
            "memory",
            Status::Warning,
            format!(
                "guest memory goes to {shown}, which has {} MiB free, less than the {} MiB of a default guest: a guest that uses its memory dies of SIGBUS",
                free >> 20,
                DEFAULT_MEM_BYTES >> 20
            ),
        )
        .fix("free space there, set TMPDIR to a larger directory, or give guests less --mem");
    }
    Finding::new(
        "memory",
        Status::Ok,
        format!(
            "guest memory goes to {shown}: writable, executable mappings allowed, {} MiB free",
            free >> 20
        ),
    )
}

/// The haltpoll cpuidle governor's `guest_halt_poll_ns` (how long an idle vCPU of a virtual
/// machine polls before it halts), when this host is such a guest.
fn read_halt_poll() -> Option<u64> {
    let driver = std::fs::read_to_string("/sys/devices/system/cpu/cpuidle/current_driver").ok()?;
    if driver.trim() != "haltpoll" {
        return None;
    }
    std::fs::read_to_string("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Where guests run: each on one of the CPUs this process may use (`uml::launch::guest_cpu`),
/// and, in a VM whose idle vCPUs halt without polling (`halt_poll_ns` 0), what that costs the
/// wake-ups that cross CPUs: guests left to the host's scheduler, FUSE requests to umlfs from
/// processes working side by side.
fn check_cpu(halt_poll_ns: Option<u64>) -> Finding {
    let cpus = crate::launch::allowed_cpus().unwrap_or_default();
    let list = cpus
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let placement = match cpus.len() {
        0 => {
            return Finding::new(
                "cpu",
                Status::Info,
                "cannot read which CPUs this process may use",
            );
        }
        1 => format!(
            "one CPU usable ({list}): guests share it with everything else this process runs"
        ),
        n => format!(
            "each guest runs on one of the {n} usable CPUs ({list}), `uml run --cpu` to choose"
        ),
    };
    match halt_poll_ns {
        Some(0) => Finding::new(
            "cpu",
            Status::Info,
            format!(
                "{placement}; idle CPUs of this VM halt at once (haltpoll guest_halt_poll_ns is 0), so a \
                 wake-up across CPUs waits for a halted CPU: a guest run with --cpu any pays it at each of \
                 its system calls, and umlfs over /dev/fuse at each request of processes that use one \
                 mount at the same time (see the fuse check)"
            ),
        )
        .fix(
            "as root, `echo 200000 > /sys/module/haltpoll/parameters/guest_halt_poll_ns` (the \
             kernel's default, 200 µs of polling; it costs the host some CPU time while idle)",
        ),
        _ => Finding::new("cpu", Status::Ok, placement),
    }
}

/// The fuse module's `enable_uring` switch (FUSE over io_uring, Linux 6.14 and later); `None`
/// when the kernel has no FUSE over io_uring.
fn read_enable_uring() -> Option<bool> {
    let v = std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring").ok()?;
    Some(matches!(v.trim(), "Y" | "y" | "1"))
}

/// Whether umlfs can mount (`/dev/fuse`, `fusermount3` for users), and whether the kernel lets
/// it serve requests over io_uring (`uring`: the fuse module's `enable_uring`, `None` when the
/// kernel has no such thing).
fn check_fuse(uring: Option<bool>) -> Finding {
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse");
    if let Err(e) = dev {
        let fix = match e.kind() {
            io::ErrorKind::NotFound => {
                "load the fuse module (`modprobe fuse`), or in a container pass --device /dev/fuse"
            }
            _ => "make /dev/fuse readable and writable for this user (mode 0666 is usual)",
        };
        return Finding::new(
            "fuse",
            Status::Warning,
            format!("umlfs cannot mount: cannot open /dev/fuse: {e}"),
        )
        .fix(fix);
    }
    let root = nix::unistd::geteuid().is_root();
    let mounts = match kernel::on_path("fusermount3") {
        Some(p) => format!("/dev/fuse opens; {} mounts for users", p.display()),
        None if root => "/dev/fuse opens; running as root, no fusermount3 needed".to_owned(),
        None => {
            return Finding::new(
                "fuse",
                Status::Warning,
                "umlfs cannot mount as a user: no fusermount3 on PATH",
            )
            .fix("install the fuse3 package");
        }
    };
    match uring {
        Some(true) => Finding::new(
            "fuse",
            Status::Ok,
            format!("{mounts}; FUSE over io_uring is on: umlfs answers each CPU's requests on that CPU"),
        ),
        Some(false) => Finding::new(
            "fuse",
            Status::Info,
            format!(
                "{mounts}; FUSE over io_uring is off: umlfs answers a process that walks a mount on \
                 that process's own CPU, but processes that use a mount at the same time across CPUs \
                 (on a 2-vCPU VM two `ls -lR` of 10,000 files each took 0.55 s together, 0.11 s over \
                 io_uring)"
            ),
        )
        .fix(
            "as root, `echo Y > /sys/module/fuse/parameters/enable_uring` (mounts made after it use \
             it; at boot: fuse.enable_uring=1 on the kernel command line)",
        ),
        None => Finding::new("fuse", Status::Ok, mounts),
    }
}

/// The session bus address: `$DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus` (the
/// default of sd-bus and zbus).
fn session_bus_address() -> Option<(String, &'static str)> {
    if let Ok(a) = std::env::var("DBUS_SESSION_BUS_ADDRESS")
        && !a.is_empty()
    {
        return Some((a, "$DBUS_SESSION_BUS_ADDRESS"));
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")?;
    let bus = Path::new(&runtime).join("bus");
    bus.exists().then(|| {
        (
            format!("unix:path={}", bus.display()),
            "$XDG_RUNTIME_DIR/bus",
        )
    })
}

/// Connects to the first `unix:` entry of a D-Bus address (`path=` or `abstract=`).
fn connect_bus(address: &str) -> Result<(), String> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixStream};
    let mut last = format!("no unix: transport in {address:?}");
    for entry in address.split(';') {
        let Some(params) = entry.strip_prefix("unix:") else {
            continue;
        };
        for kv in params.split(',') {
            let addr = if let Some(p) = kv.strip_prefix("path=") {
                SocketAddr::from_pathname(unescape(p))
            } else if let Some(a) = kv.strip_prefix("abstract=") {
                SocketAddr::from_abstract_name(unescape(a).as_os_str().as_bytes())
            } else {
                continue;
            };
            match addr.and_then(|a| UnixStream::connect_addr(&a)) {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("cannot connect to {kv}: {e}"),
            }
        }
    }
    Err(last)
}

/// D-Bus address values escape bytes as `%XX`.
fn unescape(value: &str) -> PathBuf {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(<std::ffi::OsStr as OsStrExt>::from_bytes(&out).to_owned())
}

fn check_dbus() -> (Finding, Option<String>) {
    let Some((address, from)) = session_bus_address() else {
        return (
            Finding::new(
                "dbus",
                Status::Warning,
                "no D-Bus session bus: $DBUS_SESSION_BUS_ADDRESS is not set and there is no $XDG_RUNTIME_DIR/bus; umld cannot serve (uml run does not need it)",
            )
            .fix("log in through a session that starts a bus, or run `dbus-run-session -- SHELL`"),
            None,
        );
    };
    match connect_bus(&address) {
        Ok(()) => (
            Finding::new(
                "dbus",
                Status::Ok,
                format!("the session bus answers at {address} ({from})"),
            ),
            Some(address),
        ),
        Err(e) => (
            Finding::new(
                "dbus",
                Status::Warning,
                format!("the session bus of {from} does not answer: {e}; umld cannot serve"),
            )
            .fix(
                "start a session bus (`dbus-run-session -- SHELL`) or fix DBUS_SESSION_BUS_ADDRESS",
            ),
            None,
        ),
    }
}

/// Runs a command with no input, bounded in time; its stdout when it exits 0.
fn run_bounded(command: &mut Command, timeout: Duration) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = child.wait();
                return Err(format!("no answer within {timeout:?}"));
            }
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    if status.success() {
        Ok(out)
    } else {
        Err(err.trim().to_owned())
    }
}

fn check_umld(address: Option<&str>) -> Finding {
    const NAME: &str = "org.umlkit.uml1";
    let Some(address) = address else {
        return Finding::new(
            "umld",
            Status::Warning,
            "umld cannot be reached without a session bus",
        );
    };
    let Some(busctl) = kernel::on_path("busctl") else {
        return Finding::new(
            "umld",
            Status::Warning,
            "cannot ask the bus for umld: no busctl on PATH",
        )
        .fix("install systemd's busctl, or check by hand that org.umlkit.uml1 answers");
    };
    let timeout = Duration::from_secs(3);
    let call = |args: &[&str]| {
        run_bounded(
            Command::new(&busctl)
                .arg(format!("--address={address}"))
                .arg("--timeout=3")
                .arg("call")
                .args(args),
            timeout + Duration::from_secs(1),
        )
    };
    let bus = [
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
    ];
    let owned = call(&[bus[0], bus[1], bus[2], "NameHasOwner", "s", NAME]);
    match owned.as_deref().map(str::trim) {
        Ok("b true") => {
            match call(&[
                NAME,
                "/org/umlkit/uml1",
                "org.freedesktop.DBus.Peer",
                "Ping",
            ]) {
                Ok(_) => Finding::new("umld", Status::Ok, format!("umld answers as {NAME}")),
                Err(e) => Finding::new(
                    "umld",
                    Status::Warning,
                    format!("{NAME} is on the bus but does not answer: {e}"),
                )
                .fix("restart umld (`systemctl --user restart umld`)"),
            }
        }
        Ok(_) => {
            let activatable = call(&[bus[0], bus[1], bus[2], "ListActivatableNames"])
                .is_ok_and(|out| out.split_whitespace().any(|w| w.trim_matches('"') == NAME));
            if activatable {
                Finding::new(
                    "umld",
                    Status::Ok,
                    format!("umld is not running; the bus starts it on the first call to {NAME}"),
                )
            } else {
                Finding::new(
                    "umld",
                    Status::Warning,
                    format!("umld is not running and the bus cannot start it: nothing owns {NAME}"),
                )
                .fix("install umlkit's D-Bus service file (org.umlkit.uml1.service), or run `umld &`")
            }
        }
        Err(e) => Finding::new(
            "umld",
            Status::Warning,
            format!("cannot ask the bus whether umld runs: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_check_names_the_usable_cpus_and_a_vm_that_halts_without_polling() {
        let usable = crate::launch::allowed_cpus().unwrap();
        let plain = check_cpu(None);
        assert_eq!(plain.status, Status::Ok, "{plain:?}");
        assert!(plain.fix.is_none());
        let last = usable.last().unwrap().to_string();
        assert!(plain.summary.contains(&last), "{plain:?} {usable:?}");
        if usable.len() > 1 {
            assert!(
                plain
                    .summary
                    .contains(&format!("{} usable CPUs", usable.len())),
                "{plain:?}"
            );
        }
        let polling = check_cpu(Some(200_000));
        assert_eq!(polling.status, Status::Ok, "{polling:?}");
        let halting = check_cpu(Some(0));
        assert_eq!(halting.status, Status::Info, "{halting:?}");
        assert!(
            halting.summary.contains("guest_halt_poll_ns is 0")
                && halting.fix.as_deref().is_some_and(|f| f.contains("200000")),
            "{halting:?}"
        );
    }

    #[test]
    fn the_fuse_check_says_whether_umlfs_may_use_io_uring_and_how_to_allow_it() {
        let off = check_fuse(Some(false));
        assert_eq!(off.status, Status::Info, "{off:?}");
        assert!(off.summary.contains("io_uring is off"), "{off:?}");
        assert!(
            off.fix
                .as_deref()
                .is_some_and(|f| f.contains("enable_uring")),
            "{off:?}"
        );
        let on = check_fuse(Some(true));
        assert_eq!(on.status, Status::Ok, "{on:?}");
        assert!(
            on.summary.contains("io_uring is on") && on.fix.is_none(),
            "{on:?}"
        );
        let none = check_fuse(None);
        assert_eq!(none.status, Status::Ok, "{none:?}");
        assert!(!none.summary.contains("io_uring"), "{none:?}");
    }

    #[test]
    fn bus_addresses_unescape() {
        assert_eq!(
            unescape("/run/user/1000/bus"),
            Path::new("/run/user/1000/bus")
        );
        assert_eq!(unescape("/tmp/a%2cb"), Path::new("/tmp/a,b"));
        assert_eq!(unescape("/tmp/100%"), Path::new("/tmp/100%"));
    }

    #[test]
    fn a_bus_address_without_a_unix_transport_is_refused() {
        assert!(connect_bus("tcp:host=localhost,port=1").is_err());
        assert!(connect_bus("unix:path=/nonexistent/umlkit-bus").is_err());
    }

    #[test]
    fn this_process_can_be_traced_or_says_why_not() {
        // Whatever the host allows, the check ends within its bound and leaves no child.
        let start = Instant::now();
        let _ = traceme_works();
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn the_memory_directory_follows_the_kernel_rules() {
        let (dir, why) = memory_dir();
        assert!(dir.is_absolute(), "{} ({why})", dir.display());
    }
}
