//! Named switches: the switches `uml run --net switch:NAME` starts and joins, kept as
//! `switch-NAME.{ctl,bess,pid,stats}` in a uml dir's runtime directory (`<uml_dir>/.umlkit`).
//!
//! Guarantees:
//! * A named switch is live while its control socket answers; its files are never removed
//!   while it is ([`remove_stale`] is what `uml clean` calls).
//! * Starting or joining one happens under a [`DirLock`] on the runtime directory, the lock
//!   an idle switch ([`SwitchOptions::exit_when_idle`](super::SwitchOptions)) takes before it
//!   goes away: a `uml run` either sees the switch gone (and starts a new one) or joins one
//!   that has seen its probe and waits for its guest.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::status::Status;

/// An exclusive `flock` on a directory, released on drop.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Wait for the lock on `dir`.
    ///
    /// # Errors
    /// The directory cannot be opened or locked.
    pub fn acquire(dir: &Path) -> io::Result<DirLock> {
        let file = File::open(dir)?;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(DirLock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// The files of the named switch `name` in a runtime directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedSwitch {
    pub name: String,
    pub dir: PathBuf,
}

impl NamedSwitch {
    /// The switch `name` in `dir` (normally `<uml_dir>/.umlkit`).
    ///
    /// # Errors
    /// A message saying what a name may be, when `name` is not 1 to 32 letters, digits, '-'
    /// or '_'.
    pub fn new(dir: &Path, name: &str) -> Result<NamedSwitch, String> {
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "{name:?} is not a switch name: a switch name is 1 to 32 letters, digits, '-' or '_'"
            ));
        }
        Ok(NamedSwitch {
            name: name.to_owned(),
            dir: dir.to_owned(),
        })
    }

    fn file(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("switch-{}.{ext}", self.name))
    }

    pub fn control(&self) -> PathBuf {
        self.file("ctl")
    }

    pub fn bess(&self) -> PathBuf {
        self.file("bess")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.file("pid")
    }

    pub fn stats_file(&self) -> PathBuf {
        self.file("stats")
    }

    /// Whether a switch answers on the control socket.
    pub fn is_live(&self) -> bool {
        super::is_served(&self.control())
    }

    /// The pid in the pid file.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
            .filter(|p| *p > 1)
    }

    /// The pid of the running switch, found without connecting to it (a connection counts as
    /// a guest arriving, which keeps an idle switch another grace).
    pub fn running_pid(&self) -> Option<i32> {
        self.pid().filter(|pid| self.is_switch_process(*pid))
    }

    /// Whether `pid` runs and its command line names this switch's control socket (a pid
    /// file can outlive its process and the pid be reused).
    fn is_switch_process(&self, pid: i32) -> bool {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ctl = self.control();
        let ctl = ctl.as_os_str().as_encoded_bytes();
        running(pid) && cmdline.split(|b| *b == 0).any(|arg| arg == ctl)
    }

    /// What the switch last reported (`--stats`), if it reports.
    pub fn status(&self) -> Option<Status> {
        Status::read(&self.stats_file()).ok()
    }

    /// Stop the switch with SIGTERM and wait until its control socket is gone.
    ///
    /// # Errors
    /// A message when no switch of that name runs, its pid is unknown or is not that switch's,
    /// or it is still there after `timeout`.
    pub fn stop(&self, timeout: Duration) -> Result<(), String> {
        if !self.is_live() {
            return Err(format!(
                "no switch {} runs ({} does not answer)",
                self.name,
                self.control().display()
            ));
        }
        let pid = self
            .pid()
            .ok_or_else(|| format!("the switch {} has no pid file", self.name))?;
        if !self.is_switch_process(pid) {
            return Err(format!(
                "pid {pid} in {} is not the switch {}",
                self.pid_file().display(),
                self.name
            ));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .map_err(|e| format!("cannot stop the switch {} (pid {pid}): {e}", self.name))?;
        let deadline = Instant::now() + timeout;
        while self.is_live() || running(pid) {
            if Instant::now() >= deadline {
                return Err(format!(
                    "the switch {} (pid {pid}) is still running {} s after SIGTERM",
                    self.name,
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// Whether `pid` is a process that has not exited (a zombie has).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// Where the named switches of `uml_dir` keep their files: `<uml_dir>/.umlkit`.
pub fn runtime_dir(uml_dir: &Path) -> PathBuf {
    uml_dir.join(".umlkit")
}

/// The named switches whose control socket is in `dir`, live or not, by name.
pub fn list(dir: &Path) -> Vec<NamedSwitch> {
    let mut found: Vec<NamedSwitch> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name();
            let name = file
                .to_str()?
                .strip_prefix("switch-")?
                .strip_suffix(".ctl")?;
            NamedSwitch::new(dir, name).ok()
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// Whether `file` (a name in a runtime directory) belongs to a named switch, and which.
pub fn owner(file: &str) -> Option<&str> {
    let rest = file.strip_prefix("switch-")?;
    let (name, ext) = rest.rsplit_once('.')?;
    let name = name.strip_suffix(".stats").unwrap_or(name);
    matches!(ext, "ctl" | "bess" | "pid" | "stats" | "tmp").then_some(name)
}

/// Remove the files of named switches in `dir` that no switch serves; returns the names.
/// Files of a live switch are never touched.
pub fn remove_stale(dir: &Path) -> Vec<String> {
    let Ok(_lock) = DirLock::acquire(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| owner(e.file_name().to_str()?).map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    let mut removed = Vec::new();
    for name in names {
        let Ok(switch) = NamedSwitch::new(dir, &name) else {
            continue;
        };
        if switch.is_live() {
            continue;
        }
        for ext in ["ctl", "bess", "pid", "stats", "stats.tmp"] {
            let _ = std::fs::remove_file(switch.file(ext));
        }
        removed.push(name);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_files_are_told_from_guest_files() {
        assert_eq!(owner("switch-lab.ctl"), Some("lab"));
        assert_eq!(owner("switch-lab.stats.tmp"), Some("lab"));
        assert_eq!(owner("switch-a-b.pid"), Some("a-b"));
        assert_eq!(owner("run-abc123.log"), None);
        assert_eq!(owner("switch-lab.log"), None);
    }

    #[test]
    fn names_are_checked() {
        let dir = Path::new("/x");
        assert!(NamedSwitch::new(dir, "lab_1").is_ok());
        assert!(NamedSwitch::new(dir, "").is_err());
        assert!(NamedSwitch::new(dir, "a/b").is_err());
        assert!(NamedSwitch::new(dir, &"x".repeat(33)).is_err());
        assert_eq!(
            NamedSwitch::new(dir, "lab").unwrap().control(),
            Path::new("/x/switch-lab.ctl")
        );
    }

    #[test]
    fn stale_switch_files_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let live = NamedSwitch::new(dir.path(), "live").unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(live.control()).unwrap();
        std::fs::write(live.pid_file(), "1234\n").unwrap();
        let dead = NamedSwitch::new(dir.path(), "dead").unwrap();
        drop(std::os::unix::net::UnixListener::bind(dead.control()).unwrap());
        std::fs::write(dead.pid_file(), "1234\n").unwrap();
        std::fs::write(dir.path().join("run-x.log"), "").unwrap();
        assert_eq!(remove_stale(dir.path()), vec!["dead".to_owned()]);
        assert!(live.control().exists() && live.pid_file().exists());
        assert!(!dead.control().exists() && !dead.pid_file().exists());
        assert!(dir.path().join("run-x.log").exists());
        assert_eq!(list(dir.path()), vec![live]);
    }
}

/// How long a named switch outlives its last guest: long enough for a guest that reboots, or
/// one whose launcher has just started it, to bring its interface up.
pub const IDLE_GRACE: Duration = Duration::from_secs(10);

/// The sockets a guest joins a named switch through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sockets {
    /// The `daemon` transport's control socket (6.x guests).
    pub control: PathBuf,
    /// The seqpacket socket of the vector driver's `bess` transport (7.x guests).
    pub bess: PathBuf,
}

impl Sockets {
    /// The kernel argument of interface `unit` on this switch: a bess port
    /// (`vec<unit>:transport=bess,mac=…,dst=…`) when the kernel has only the vector driver,
    /// else a daemon port (`eth<unit>=daemon,<mac>,unix,<control>`).
    ///
    /// No `src=` for bess: the kernel binds `src` each time the interface goes up and never
    /// removes it (`vector_user.c`, `user_init_unix_fds`), so with it `ip link set vec0 down;
    /// ip link set vec0 up` fails (`EADDRINUSE`) and a crashed guest leaves a socket file
    /// behind. Unbound, the connection still carries the kernel's pid (`SO_PEERCRED`), which
    /// the switch records as the port's identity.
    ///
    /// # Errors
    /// A message when the path is longer than the kernel takes (107 bytes, `MAX_UN_LEN`) or
    /// holds `,` or `=`, at which the kernel splits its arguments.
    pub fn port_arg(&self, unit: usize, mac: &str, bess_only: bool) -> Result<String, String> {
        if !bess_only {
            return Ok(format!(
                "eth{unit}=daemon,{mac},unix,{}",
                self.control.display()
            ));
        }
        let s = self.bess.to_string_lossy();
        if s.len() > 107 || s.contains(',') || s.contains('=') {
            return Err(format!(
                "the bess socket path {s} is longer than 107 bytes or has ',' or '=' in it; use a shorter uml dir"
            ));
        }
        Ok(format!("vec{unit}:transport=bess,mac={mac},dst={s}"))
    }
}

/// The sockets of the switch called `name` in `uml_dir` (`<uml_dir>/.umlkit/switch-<name>.ctl`
/// and `.bess`), served by a `uml switch --daemon` started here with the `uml` binary at
/// `uml` when none serves them yet. The switch stops [`IDLE_GRACE`] after its last guest is
/// gone (`--exit-when-idle`), or with `uml switch stop NAME`; `uml switch list` shows it.
///
/// The probe and the start happen under the [`DirLock`] an idle switch takes before it goes
/// away, so this never joins a switch that is stopping: the switch sees the probe and waits
/// another grace for the guest.
///
/// # Errors
/// A message naming what failed: the name, a socket path too long, the lock, a live switch
/// without the bess socket a vector-only kernel needs, or the start of the switch.
pub fn ensure(uml_dir: &Path, name: &str, bess_only: bool, uml: &Path) -> Result<Sockets, String> {
    let dir = runtime_dir(uml_dir);
    let switch = NamedSwitch::new(&dir, name)?;
    let sockets = Sockets {
        control: switch.control(),
        bess: switch.bess(),
    };
    if sockets.bess.as_os_str().len() > 107 {
        return Err(format!(
            "the socket path {} is longer than a unix socket allows (107 bytes); use a shorter uml dir",
            sockets.bess.display()
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let _lock =
        DirLock::acquire(&dir).map_err(|e| format!("cannot lock {}: {e}", dir.display()))?;
    if switch.is_live() {
        if bess_only && !super::bess::is_served(&sockets.bess) {
            return Err(format!(
                "the switch {name} ({}) serves no bess socket, which this kernel needs; stop it (uml switch stop {name}) so that a new one starts",
                sockets.control.display(),
            ));
        }
        return Ok(sockets);
    }
    let out = std::process::Command::new(uml)
        .arg("switch")
        .arg("--unix")
        .arg(&sockets.control)
        .arg("--bess")
        .arg(&sockets.bess)
        .arg("--daemon")
        .arg("--pid-file")
        .arg(switch.pid_file())
        .arg("--stats")
        .arg(switch.stats_file())
        .arg("--exit-when-idle")
        .arg(IDLE_GRACE.as_secs().to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot start `{} switch`: {e}", uml.display()))?;
    if !out.status.success() && !switch.is_live() {
        return Err(format!(
            "cannot start the switch {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(sockets)
}
