//! Instances: the running (and dead) UML kernels that live in a `uml_dir`.
//!
//! An instance is a directory `<uml_dir>/<umid>/` holding `pid` (decimal pid and `\n`) and the
//! `mconsole` datagram socket (`arch/um/os-Linux/umid.c`). The kernel removes the directory on
//! an orderly exit; after a panic or SIGKILL it stays behind. Discovery here never trusts the
//! pid file alone: an instance is *running* only when that pid is alive **and** holds the
//! socket bound at `<dir>/mconsole` (checked through `/proc/net/unix` and `/proc/<pid>/fd`), so
//! a recycled pid is reported as stale, not as a guest.
//!
//! Every part of umlkit (the CLI, umlfs, the D-Bus service) uses this one discovery code and
//! the [`Watcher`] for instances that appear and disappear.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::mconsole;

/// The most bytes read from a `pid` file; a real one holds at most 11.
const PID_FILE_LIMIT: u64 = 64;

/// Errors of discovery and instance control.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot find the default uml_dir: $HOME is not set (pass --uml-dir)")]
    NoHome,
    #[error("cannot read uml_dir {path}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "no UML instance \"{umid}\" in {uml_dir} (running instances: {})",
        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
    )]
    NotFound {
        umid: String,
        uml_dir: PathBuf,
        known: Vec<String>,
    },
    #[error("UML instance \"{umid}\" is not running ({reason})")]
    NotRunning { umid: String, reason: String },
    #[error("UML instance \"{umid}\"")]
    Mconsole {
        umid: String,
        #[source]
        source: mconsole::Error,
    },
    #[error("cannot remove stale instance directory {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot watch {path}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("UML instance \"{umid}\" (pid {pid}) is still running after {after:?}")]
    StillRunning {
        umid: String,
        pid: u32,
        after: Duration,
    },
}

/// The default `uml_dir`, as the kernel computes it: `$HOME/.uml`.
///
/// # Errors
/// [`InstanceError::NoHome`] when `$HOME` is unset or empty (the kernel fails the same way).
pub fn default_uml_dir() -> Result<PathBuf, InstanceError> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".uml")),
        _ => Err(InstanceError::NoHome),
    }
}

/// `dir` if given, else [`default_uml_dir`].
pub fn uml_dir_or_default(dir: Option<&Path>) -> Result<PathBuf, InstanceError> {
    match dir {
        Some(d) => Ok(d.to_owned()),
        None => default_uml_dir(),
    }
}

/// What discovery can tell about an instance without asking the guest anything.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Liveness {
    /// The pid is alive and holds this instance's mconsole socket.
    Running,
    /// The kernel has written its pid but not yet bound its mconsole socket (early boot).
    Starting,
    /// Nothing alive serves this directory: left behind by a panic, SIGKILL or a crash.
    Stale { reason: String },
}

/// One instance directory in a `uml_dir`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Instance {
    pub umid: String,
    pub dir: PathBuf,
    pub pid: Option<u32>,
    #[serde(flatten)]
    pub liveness: Liveness,
}

impl Instance {
    /// `<dir>/mconsole`.
    pub fn mconsole_path(&self) -> PathBuf {
        self.dir.join("mconsole")
    }

    pub fn is_running(&self) -> bool {
        self.liveness == Liveness::Running
    }

    /// A client for this instance's mconsole socket.
    ///
    /// # Errors
    /// [`InstanceError::NotRunning`] for a stale or starting instance; otherwise the client's
    /// connect error.
    pub fn client(&self, timeout: Duration) -> Result<mconsole::Client, InstanceError> {
        if !self.is_running() {
            return Err(InstanceError::NotRunning {
                umid: self.umid.clone(),
                reason: self.liveness_text(),
            });
        }
        mconsole::Client::connect(&self.mconsole_path())
            .map(|c| c.with_timeout(timeout))
            .map_err(|source| self.mconsole_error(source))
    }

    pub(crate) fn mconsole_error(&self, source: mconsole::Error) -> InstanceError {
        InstanceError::Mconsole {
            umid: self.umid.clone(),
            source,
        }
    }

    /// A short description of the liveness, for messages.
    pub fn liveness_text(&self) -> String {
        match &self.liveness {
            Liveness::Running => "running".into(),
            Liveness::Starting => "starting".into(),
            Liveness::Stale { reason } => format!("stale: {reason}"),
        }
    }

    /// Re-read this instance's directory.
    pub fn refresh(&self) -> Instance {
        let sockets = UnixSockets::read();
        inspect(&self.dir, &self.umid, &sockets)
    }
}

/// Every instance directory in `uml_dir`, sorted by umid. A missing `uml_dir` holds none.
///
/// # Errors
/// [`InstanceError::ReadDir`] when the directory exists but cannot be read.
pub fn discover(uml_dir: &Path) -> Result<Vec<Instance>, InstanceError> {
    let entries = match fs::read_dir(uml_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(InstanceError::ReadDir {
                path: uml_dir.to_owned(),
                source,
            });
        }
    };
    let sockets = UnixSockets::read();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if !file_type.is_dir() {
            continue;
        }
        let Some(umid) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // umlkit keeps its own runtime files in dot-directories; the kernel never makes one
        // (a umid is at most 63 bytes, and a random one is [A-Za-z0-9]{6}).
        if umid.starts_with('.') {
            continue;
        }
        found.push(inspect(&entry.path(), &umid, &sockets));
    }
    found.sort_by(|a, b| a.umid.cmp(&b.umid));
    Ok(found)
}

/// The instance `umid` in `uml_dir`, whatever its liveness.
///
/// # Errors
/// [`InstanceError::NotFound`] naming the running instances when there is no such directory.
pub fn find(uml_dir: &Path, umid: &str) -> Result<Instance, InstanceError> {
    let dir = uml_dir.join(umid);
    if umid.is_empty() || umid.contains('/') || !dir.is_dir() {
        let known = discover(uml_dir)
            .unwrap_or_default()
            .into_iter()
            .filter(Instance::is_running)
            .map(|i| i.umid)
            .collect();
        return Err(InstanceError::NotFound {
            umid: umid.to_owned(),
            uml_dir: uml_dir.to_owned(),
            known,
        });
    }
    Ok(inspect(&dir, umid, &UnixSockets::read()))
}

/// The running instance `umid`.
///
/// # Errors
/// As [`find`], plus [`InstanceError::NotRunning`] for a stale or starting one.
pub fn find_running(uml_dir: &Path, umid: &str) -> Result<Instance, InstanceError> {
    let instance = find(uml_dir, umid)?;
    if !instance.is_running() {
        return Err(InstanceError::NotRunning {
            umid: umid.to_owned(),
            reason: instance.liveness_text(),
        });
    }
    Ok(instance)
}

/// The umid of the running instance whose kernel has host pid `pid`, if any.
pub fn umid_of_pid(uml_dir: &Path, pid: u32) -> Option<String> {
    discover(uml_dir)
        .ok()?
        .into_iter()
        .find(|i| i.pid == Some(pid) && i.is_running())
        .map(|i| i.umid)
}

fn inspect(dir: &Path, umid: &str, sockets: &UnixSockets) -> Instance {
    let pid = read_pid_file(&dir.join("pid"));
    let socket = dir.join("mconsole");
    let liveness = match pid {
        None => Liveness::Stale {
            reason: "no readable pid file".into(),
        },
        Some(pid) if !pid_alive(pid) => Liveness::Stale {
            reason: format!("pid {pid} is not running"),
        },
        Some(pid) => {
            if !socket.exists() {
                // The kernel writes the pid file before it binds the socket (umid.c, then
                // the mconsole initcall), so this is a booting guest, unless the pid was
                // recycled by something that is not a UML kernel.
                if is_uml_kernel(pid) {
                    Liveness::Starting
                } else {
                    Liveness::Stale {
                        reason: format!("pid {pid} belongs to another program"),
                    }
                }
            } else if sockets.held_by(&socket, pid) {
                Liveness::Running
            } else if sockets.known && !sockets.inodes_of(&socket).is_empty() {
                Liveness::Stale {
                    reason: format!("pid {pid} does not serve {}", socket.display()),
                }
            } else if !sockets.known && is_uml_kernel(pid) {
                // /proc/net/unix unreadable: fall back to what the process is.
                Liveness::Running
            } else {
                Liveness::Stale {
                    reason: format!("nothing is bound to {}", socket.display()),
                }
            }
        }
    };
    Instance {
        umid: umid.to_owned(),
        dir: dir.to_owned(),
        pid,
        liveness,
    }
}

fn read_pid_file(path: &Path) -> Option<u32> {
    let mut text = String::new();
    fs::File::open(path)
        .ok()?
        .take(PID_FILE_LIMIT)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok().filter(|&p| p > 0)
}

/// Whether a process with this pid exists (the kernel's own test in umid.c: `kill(pid, 0)`
/// succeeds or fails with anything but ESRCH).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        Err(_) => true,
    }
}

/// Whether `pid` runs a UML kernel: a zombie is not; a process whose argv or executable says
/// `linux`/`vmlinux` or which has the kernel's `umid=`/`uml_dir=`-style arguments is.
/// What this module needs of `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy)]
struct ProcStat {
    /// R, S, D, Z, X, t, T, …
    state: char,
    pgrp: u32,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
}

impl ProcStat {
    fn read(pid: u32) -> Option<ProcStat> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: the fields start after the last ")".
        let (_, rest) = stat.rsplit_once(") ")?;
        // state(3) ppid(4) pgrp(5) … utime(14) stime(15), counted from 1 with pid and comm.
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(ProcStat {
            state: f.first()?.chars().next()?,
            pgrp: f.get(2)?.parse().ok()?,
            cpu_ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
        })
    }

    fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// Every process on the host, with its stat.
    fn all() -> impl Iterator<Item = (u32, ProcStat)> {
        fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| Some((pid, ProcStat::read(pid)?)))
    }
}

fn is_uml_kernel(pid: u32) -> bool {
    if ProcStat::read(pid).is_some_and(|s| s.is_dead()) {
        return false;
    }
    let mut cmdline = Vec::new();
    if let Ok(f) = fs::File::open(format!("/proc/{pid}/cmdline")) {
        let _ = f.take(64 * 1024).read_to_end(&mut cmdline);
    }
    cmdline.split(|&b| b == 0).any(|arg| {
        arg.starts_with(b"umid=")
            || arg.starts_with(b"uml_dir=")
            || arg.starts_with(b"mem=")
            || arg.starts_with(b"ubd")
            || arg.starts_with(b"con")
    }) || fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| n.starts_with("linux") || n.starts_with("vmlinux"))
}

/// The bound unix sockets of the host (`/proc/net/unix`): path → socket inodes.
struct UnixSockets {
    known: bool,
    by_path: BTreeMap<PathBuf, Vec<u64>>,
}

impl UnixSockets {
    fn read() -> UnixSockets {
        let Ok(text) = fs::read_to_string("/proc/net/unix") else {
            return UnixSockets {
                known: false,
                by_path: BTreeMap::new(),
            };
        };
        let mut by_path: BTreeMap<PathBuf, Vec<u64>> = BTreeMap::new();
        // Num RefCount Protocol Flags Type St Inode Path
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || !fields[7].starts_with('/') {
                continue;
            }
            if let Ok(inode) = fields[6].parse::<u64>() {
                by_path
                    .entry(PathBuf::from(fields[7..].join(" ")))
                    .or_default()
                    .push(inode);
            }
        }
        UnixSockets {
            known: true,
            by_path,
        }
    }

    fn inodes_of(&self, path: &Path) -> &[u64] {
        self.by_path.get(path).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether process `pid` has an open descriptor on a socket bound to `path`.
    fn held_by(&self, path: &Path, pid: u32) -> bool {
        let inodes: HashSet<u64> = self.inodes_of(path).iter().copied().collect();
        if inodes.is_empty() {
            return false;
        }
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            return false;
        };
        fds.flatten()
            .take(65_536)
            .any(|fd| socket_inode(&fd.path()).is_some_and(|inode| inodes.contains(&inode)))
    }
}

/// The socket inode a `/proc/PID/fd/N` link points to (`socket:[INODE]`), if it is a socket.
fn socket_inode(fd_link: &Path) -> Option<u64> {
    let target = fs::read_link(fd_link).ok()?;
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Removes the stale instance directories of `uml_dir` and returns them. A directory is
/// checked again right before it is removed, and a live instance is never touched.
///
/// # Errors
/// The first directory that could not be removed; those removed before it stay removed.
pub fn clean(uml_dir: &Path) -> Result<Vec<Instance>, InstanceError> {
    let mut removed = Vec::new();
    for instance in discover(uml_dir)? {
        if !matches!(instance.liveness, Liveness::Stale { .. }) {
            continue;
        }
        let again = instance.refresh();
        if !matches!(again.liveness, Liveness::Stale { .. }) {
            continue;
        }
        remove_instance_dir(&again.dir)?;
        removed.push(again);
    }
    Ok(removed)
}

/// What the kernel itself does when it takes over a stale directory (umid.c
/// `remove_files_and_dir`): unlink the files in it, then rmdir. Nothing recursive, so a
/// directory a person put there is never deleted wholesale.
fn remove_instance_dir(dir: &Path) -> Result<(), InstanceError> {
    let err = |source| InstanceError::Remove {
        path: dir.to_owned(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(err)?.flatten() {
        if entry.file_type().map(|t| !t.is_dir()).unwrap_or(false) {
            fs::remove_file(entry.path()).map_err(err)?;
        }
    }
    fs::remove_dir(dir).map_err(err)
}

/// Whether a running guest is paused (`stop` over mconsole) or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Paused,
}

/// Tells a paused guest from a running one without changing its state.
///
/// mconsole `stop` leaves the kernel in `mconsole_stop()` (`mconsole_kern.c`), which makes the
/// mconsole socket blocking and loops in recvfrom(2) on it until `go`. A running kernel reads
/// that socket only when it is readable, from its SIGIO handler, so it is never blocked there.
/// `/proc/PID/syscall` shows which: that is the answer wherever it can be read.
///
/// Reading it needs ptrace access to the kernel (not granted for another user's kernel, nor by
/// Yama's ptrace_scope 1 for one this process did not start). Then the state is inferred from
/// two samples `window` apart: a stopped UML uses no CPU and the guest's idle time (second
/// field of `/proc/uptime`) stops advancing, while a running one either idles (idle time
/// advances) or works (its host processes use CPU). A running guest that waits on the host
/// (a slow disk, a starved CPU) can look stopped for a moment, so "paused" is only said after
/// a second, longer sample agrees.
///
/// # Errors
/// The mconsole error when the guest does not answer.
pub fn run_state(
    instance: &Instance,
    client: &mconsole::Client,
    window: Duration,
) -> Result<RunState, InstanceError> {
    let sample = || -> Result<(f64, u64), InstanceError> {
        let text = client
            .proc_file("uptime")
            .map_err(|e| instance.mconsole_error(e))?;
        let idle = text
            .split_whitespace()
            .nth(1)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0);
        Ok((idle, instance.pid.map(group_cpu_ticks).unwrap_or(0)))
    };
    // A stopped guest answers too (mconsole_stop() serves requests): this only tells that
    // there is a guest to ask.
    let (mut idle0, mut cpu0) = sample()?;
    if let Some(blocked) = instance
        .pid
        .and_then(|pid| blocked_on_mconsole(pid, &instance.mconsole_path()))
    {
        return Ok(if blocked {
            RunState::Paused
        } else {
            RunState::Running
        });
    }
    for wait in [window, window * 6] {
        thread::sleep(wait);
        let (idle1, cpu1) = sample()?;
        // The proc reads themselves cost the host a tick now and then; a paused guest shows
        // no idle progress and at most that.
        if idle1 > idle0 || cpu1.saturating_sub(cpu0) > 2 {
            return Ok(RunState::Running);
        }
        (idle0, cpu0) = (idle1, cpu1);
    }
    Ok(RunState::Paused)
}

/// Whether the kernel `pid` is blocked in recvfrom(2) on the socket bound at `socket` (see
/// [`run_state`]). A few reads a millisecond apart, so that the moments a stopped kernel spends
/// answering a request or a timer signal do not hide it. `None` when `/proc/PID/syscall` cannot
/// be read or the socket is not found.
fn blocked_on_mconsole(pid: u32, socket: &Path) -> Option<bool> {
    let sockets = UnixSockets::read();
    let inodes: HashSet<u64> = sockets.inodes_of(socket).iter().copied().collect();
    if inodes.is_empty() {
        return None;
    }
    for _ in 0..5 {
        // "NR ARG0 … SP PC" while blocked in a system call; "running" or "-1 SP PC" otherwise.
        let text = fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
        let mut fields = text.split_whitespace();
        let nr = fields.next().and_then(|f| f.parse::<i64>().ok());
        if nr == Some(libc::SYS_recvfrom) || nr == Some(libc::SYS_recvmsg) {
            let fd = fields
                .next()
                .and_then(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok());
            let inode = fd.and_then(|fd| socket_inode(Path::new(&format!("/proc/{pid}/fd/{fd}"))));
            if inode.is_some_and(|i| inodes.contains(&i)) {
                return Some(true);
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    Some(false)
}

/// Whether the guest is paused right now (`mconsole stop`, by anyone): its kernel waits for
/// mconsole requests in `mconsole_stop`, blocked in `recvfrom` on its mconsole socket. A cheap
/// host-side look (no mconsole request, a few milliseconds), for services that follow the state
/// of many guests; [`run_state`] is the thorough one. `None` when the guest's
/// `/proc/PID/syscall` or its socket cannot be read.
pub fn paused_now(instance: &Instance) -> Option<bool> {
    blocked_on_mconsole(instance.pid?, &instance.mconsole_path())
}

/// Whether the guest's userspace runs: the kernel `pid` has a guest address space, which is a
/// host child process it traces (named `uml-userspace` by 7.x kernels). Kernel threads, the
/// guest's init before it executes a program among them, run inside the kernel's own host
/// process, and helpers (uml_watchdog, port-helper) are not traced. A host-side look: no
/// mconsole request, and true while the guest is paused too.
pub fn userspace_started(pid: u32) -> bool {
    let children: Vec<u32> = match fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        Ok(text) => text
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .collect(),
        // Without CONFIG_PROC_CHILDREN: every process whose parent is `pid`.
        Err(_) => fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&c| parent_of(c) == Some(pid))
            .collect(),
    };
    children.into_iter().any(|c| {
        let comm = fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
        comm.trim_end() == "uml-userspace"
            || fs::read_to_string(format!("/proc/{c}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("TracerPid:"))
                        .and_then(|t| t.trim().parse::<u32>().ok())
                })
                == Some(pid)
    })
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of every process in the process group `pgid` (the kernel and its helpers).
fn group_cpu_ticks(pgid: u32) -> u64 {
    ProcStat::all()
        .filter(|(_, s)| s.pgrp == pgid)
        .map(|(_, s)| s.cpu_ticks)
        .sum()
}

/// How [`shutdown`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownStep {
    /// The guest powered off after ctrl-alt-del.
    CtrlAltDel,
    /// The guest ignored ctrl-alt-del (or rebooted) and stopped after mconsole `halt`.
    Halt,
    /// It did not answer; SIGTERM to the kernel made it clean up and exit.
    Terminate,
    /// Nothing else worked; its whole process group was killed.
    Kill,
}

/// Stops a guest, gently first: `cad` and up to `grace` for it to exit; then `halt` and a few
/// seconds; then SIGTERM to the kernel (it cleans up and exits); then SIGKILL to its process
/// group (the kernel's helper processes survive a SIGKILL of the main pid alone).
/// A paused guest is resumed first, since a stopped UML cannot run ctrl-alt-del.
///
/// # Errors
/// [`InstanceError::NotRunning`] when it was not running to begin with;
/// [`InstanceError::StillRunning`] when even SIGKILL did not end it.
pub fn shutdown(instance: &Instance, grace: Duration) -> Result<ShutdownStep, InstanceError> {
    let pid = instance
        .pid
        .filter(|_| instance.is_running())
        .ok_or_else(|| InstanceError::NotRunning {
            umid: instance.umid.clone(),
            reason: instance.liveness_text(),
        })?;
    let short = Duration::from_secs(2);
    if let Ok(client) = instance.client(short) {
        // A stopped UML answers every command inline but runs nothing else; resume it.
        let _ = client.go();
        if client.cad().is_ok() && wait_gone(instance, pid, grace) {
            return Ok(ShutdownStep::CtrlAltDel);
        }
        // After cad the kernel may have rebooted (re-exec, same pid, a new socket).
        if let Ok(client) = instance.refresh().client(short) {
            let _ = client.go();
            let _ = client.halt();
            if wait_gone(instance, pid, Duration::from_secs(5)) {
                return Ok(ShutdownStep::Halt);
            }
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    if wait_gone(instance, pid, Duration::from_secs(5)) {
        return Ok(ShutdownStep::Terminate);
    }
    kill_group(pid);
    if wait_gone(instance, pid, Duration::from_secs(5)) {
        return Ok(ShutdownStep::Kill);
    }
    Err(InstanceError::StillRunning {
        umid: instance.umid.clone(),
        pid,
        after: grace,
    })
}

/// SIGKILL to the process group of a UML kernel (its pid: the kernel calls `setsid()`).
pub fn kill_group(pid: u32) {
    if let Ok(p) = i32::try_from(pid)
        && p > 1
    {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Whether a process of the process group `pgid` still runs (zombies do not count: helper
/// processes of a killed kernel are reparented to pid 1, which may be slow to reap them).
pub fn group_alive(pgid: u32) -> bool {
    ProcStat::all().any(|(_, s)| s.pgrp == pgid && !s.is_dead())
}

/// Kills the process group `pgid` and waits, at most `timeout`, until none of it runs.
pub fn kill_group_and_wait(pgid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        kill_group(pgid);
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the process `pid` is gone (or a zombie) and no longer serves this instance.
fn wait_gone(instance: &Instance, pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pid_alive(pid) || !is_uml_kernel(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        let _ = instance;
        thread::sleep(Duration::from_millis(20));
    }
}

/// What [`wait`] waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Until the instance answers on its mconsole socket.
    Booted,
    /// Until its kernel process is gone.
    Exited,
}

/// Waits until the instance `umid` has booted (its mconsole answers `version`) or exited.
/// An instance that does not exist yet is waited for too.
///
/// # Errors
/// [`InstanceError::StillRunning`] / [`InstanceError::NotRunning`] at the deadline.
pub fn wait(
    uml_dir: &Path,
    umid: &str,
    what: WaitFor,
    timeout: Duration,
) -> Result<Instance, InstanceError> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = find(uml_dir, umid);
        match (what, &found) {
            (WaitFor::Booted, Ok(i)) if i.is_running() => {
                if let Ok(c) = i.client(Duration::from_millis(500))
                    && c.version().is_ok()
                {
                    return Ok(i.clone());
                }
            }
            (WaitFor::Exited, Err(InstanceError::NotFound { .. })) => {
                return Ok(Instance {
                    umid: umid.to_owned(),
                    dir: uml_dir.join(umid),
                    pid: None,
                    liveness: Liveness::Stale {
                        reason: "exited".into(),
                    },
                });
            }
            (WaitFor::Exited, Ok(i)) if matches!(i.liveness, Liveness::Stale { .. }) => {
                return Ok(i.clone());
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return match (what, found) {
                (WaitFor::Exited, Ok(i)) => Err(InstanceError::StillRunning {
                    umid: umid.to_owned(),
                    pid: i.pid.unwrap_or(0),
                    after: timeout,
                }),
                (_, Ok(i)) => Err(InstanceError::NotRunning {
                    umid: umid.to_owned(),
                    reason: format!("not booted after {timeout:?} ({})", i.liveness_text()),
                }),
                (_, Err(e)) => Err(e),
            };
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A change in a watched `uml_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceEvent {
    /// A new instance directory, or one whose liveness changed (starting → running, running →
    /// stale).
    Changed(Instance),
    /// The instance directory is gone (an orderly exit, or `uml clean`).
    Removed { umid: String },
}

/// Watches a `uml_dir` for instances that appear, change and disappear.
///
/// Events come from the `notify` crate (inotify) and are confirmed by a rescan, so every event
/// reflects the directory as it is; a periodic rescan (every `poll`) also catches what inotify
/// cannot see: a kernel killed by SIGKILL leaves its directory unchanged while its pid dies.
#[derive(Debug)]
pub struct Watcher {
    _watcher: notify::RecommendedWatcher,
    _stop: mpsc::Sender<()>,
}

impl Watcher {
    /// Starts watching `uml_dir` (created if missing, as the kernel would). Events arrive on
    /// the returned channel; the current instances arrive first as `Changed`.
    ///
    /// # Errors
    /// [`InstanceError::Watch`] when inotify cannot watch the directory.
    pub fn start(
        uml_dir: &Path,
        poll: Duration,
    ) -> Result<(Watcher, mpsc::Receiver<InstanceEvent>), InstanceError> {
        use notify::Watcher as _;
        let _ = fs::create_dir_all(uml_dir);
        let (kick_tx, kick_rx) = mpsc::channel::<()>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (event_tx, event_rx) = mpsc::channel();
        let kick = kick_tx.clone();
        let mut watcher =
            notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
                let _ = kick.send(());
            })
            .map_err(|source| InstanceError::Watch {
                path: uml_dir.to_owned(),
                source,
            })?;
        watcher
            .watch(uml_dir, notify::RecursiveMode::Recursive)
            .map_err(|source| InstanceError::Watch {
                path: uml_dir.to_owned(),
                source,
            })?;
        let dir = uml_dir.to_owned();
        thread::Builder::new()
            .name("uml-dir-watch".into())
            .spawn(move || watch_loop(&dir, poll, &kick_rx, &stop_rx, &event_tx))
            .map_err(|source| InstanceError::Watch {
                path: uml_dir.to_owned(),
                source: notify::Error::io(source),
            })?;
        Ok((
            Watcher {
                _watcher: watcher,
                _stop: stop_tx,
            },
            event_rx,
        ))
    }
}

fn watch_loop(
    dir: &Path,
    poll: Duration,
    kick: &mpsc::Receiver<()>,
    stop: &mpsc::Receiver<()>,
    events: &mpsc::Sender<InstanceEvent>,
) {
    let mut known: BTreeMap<String, Instance> = BTreeMap::new();
    loop {
        if matches!(stop.try_recv(), Err(mpsc::TryRecvError::Disconnected)) {
            return;
        }
        let now: BTreeMap<String, Instance> = discover(dir)
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i.umid.clone(), i))
            .collect();
        for (umid, instance) in &now {
            if known.get(umid) != Some(instance)
                && events
                    .send(InstanceEvent::Changed(instance.clone()))
                    .is_err()
            {
                return;
            }
        }
        for umid in known.keys() {
            if !now.contains_key(umid)
                && events
                    .send(InstanceEvent::Removed { umid: umid.clone() })
                    .is_err()
            {
                return;
            }
        }
        known = now;
        match kick.recv_timeout(poll) {
            Ok(()) => {
                // Coalesce a burst (a boot makes several files) into one rescan.
                thread::sleep(Duration::from_millis(20));
                while kick.try_recv().is_ok() {}
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}
