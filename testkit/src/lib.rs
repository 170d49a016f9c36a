//! Test support for every umlkit crate: boots a real UML guest with a deadline and always
//! cleans up.
//!
//! A [`Guest`] is a `linux` process with the host's `/` as a read-only hostfs root and a
//! shell script as init. Its `uml_dir` is a fresh temporary directory. Dropping the guest,
//! including while a failing test unwinds, kills the kernel's whole process group (the kernel
//! calls `setsid()`, and a SIGKILL to the main pid alone leaves its helper processes behind)
//! and removes the `uml_dir`. The kernel also gets `PR_SET_PDEATHSIG`, so a test process that
//! is killed outright takes its guests with it. That signal fires when the *thread* that booted
//! the guest ends, so boot a guest from the thread that keeps it (not a short-lived helper
//! thread).
//!
//! ```no_run
//! let guest = testkit::GuestBuilder::new("t-doc").body("echo hello; sleep 1000").boot().unwrap();
//! guest.wait_for_log("hello", std::time::Duration::from_secs(10)).unwrap();
//! ```

mod bus;
mod command;
mod cow;
mod image;

pub use bus::{SessionBus, SessionBusBuilder};
pub use command::{
    RUN_TIMEOUT, output_of, output_within, run, run_failing, show_output, stdout_of, try_run,
};
pub use cow::{CowVersion, write_cow};
pub use image::{TEST_IMAGE_PASSWORD, test_image, test_image_recipe, used_mb};

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use uml::cmdline::{Arg, Channel, Channels, CommandLine};

/// How long a guest may take to reach its mconsole socket before `boot` gives up.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(30);

/// The kernel binary the tests run: `$UML_KERNEL` or `linux` on PATH.
pub fn kernel() -> PathBuf {
    std::env::var_os("UML_KERNEL")
        .map(PathBuf::from)
        .or_else(|| {
            // `linux` on PATH, as a path: callers open it by path (a kernel profile), not
            // only run it.
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|dir| Path::new(dir).join("linux"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("linux"))
}

/// The release of [`kernel`] (`6.1.176`, `7.2.12`): what `linux --version` prints, which is
/// also what a booted guest's mconsole `version` and `uname -r` report. Read once per test
/// process; `--version` answers before the kernel boots, in milliseconds.
///
/// # Panics
/// When the kernel cannot be run or prints no release: every guest test would fail anyway.
pub fn kernel_release() -> &'static str {
    static RELEASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RELEASE.get_or_init(|| {
        let kernel = kernel();
        let out = Command::new(&kernel)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run the UML kernel {}: {e}", kernel.display()));
        let release = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            out.status.success() && !release.is_empty() && !release.contains(char::is_whitespace),
            "{} --version printed {release:?}, not a kernel release",
            kernel.display()
        );
        release
    })
}

/// The kernel arguments of a test guest: `mem=<mem>`, the host's `/` as a read-only hostfs
/// root, `init` as pid 1, con0 on the kernel's stdin and stdout and every other console off.
/// Written with the library's typed command line ([`uml::cmdline`]), so they are the words the
/// launcher writes. A caller adds `umid=` and `uml_dir=` (a [`GuestBuilder`] does).
///
/// ```
/// let argv = testkit::guest_argv("64M", std::path::Path::new("/tmp/init"));
/// assert_eq!(argv[..2], ["mem=64M", "root=/dev/root"]);
/// ```
pub fn guest_argv(mem: &str, init: &Path) -> Vec<String> {
    guest_cmdline(mem, init).to_argv()
}

fn guest_cmdline(mem: &str, init: &Path) -> CommandLine {
    let mut cmdline = CommandLine::new();
    // Parsed from the caller's text, so it reaches the kernel as written.
    cmdline
        .push(Arg::parse(&format!("mem={mem}")))
        .push_hostfs_root("/")
        .push(Arg::word("ro"))
        .push(Arg::Init(init.display().to_string()))
        .push(Arg::Con {
            unit: None,
            channels: Channels::Both(Channel::Null),
        })
        .push(Arg::Con {
            unit: Some(0),
            channels: Channels::Pair(Channel::Fd(0), Channel::Fd(1)),
        });
    cmdline
}

/// A umid unique to this test process: `<prefix>-<pid>-<n>` (at most 63 characters).
pub fn unique_umid(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut umid = format!("{prefix}-{}-{n}", std::process::id());
    umid.truncate(63);
    umid
}

/// What guest to boot.
#[derive(Debug, Clone)]
pub struct GuestBuilder {
    umid: String,
    mem: String,
    body: String,
    args: Vec<String>,
    uml_dir: Option<PathBuf>,
    boot_timeout: Duration,
    wait_for_socket: bool,
}

impl GuestBuilder {
    /// A guest whose umid starts with `prefix` and whose init, after mounting `/proc` and a
    /// tmpfs on `/tmp`, prints `READY` and then sleeps until it is stopped.
    pub fn new(prefix: &str) -> Self {
        GuestBuilder {
            umid: unique_umid(prefix),
            mem: "64M".into(),
            body: "while :; do sleep 1; done".into(),
            args: Vec::new(),
            uml_dir: None,
            boot_timeout: BOOT_TIMEOUT,
            wait_for_socket: true,
        }
    }

    /// Shell commands that init runs after `READY`. After them it powers off with
    /// `poweroff -f`; the guest's exit status is what was written to `/proc/exitcode`.
    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    /// An exact umid instead of the generated one.
    pub fn umid(mut self, umid: &str) -> Self {
        umid.clone_into(&mut self.umid);
        self
    }

    pub fn mem(mut self, mem: &str) -> Self {
        mem.clone_into(&mut self.mem);
        self
    }

    /// An extra kernel argument, such as `ubd1=/path/disk.img` or `mconsole=notify:/path`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Use this `uml_dir` (which the guest does not own) instead of a fresh temporary one.
    pub fn uml_dir(mut self, dir: &Path) -> Self {
        self.uml_dir = Some(dir.to_owned());
        self
    }

    pub fn boot_timeout(mut self, timeout: Duration) -> Self {
        self.boot_timeout = timeout;
        self
    }

    /// Return as soon as the kernel is started, without waiting for its mconsole socket
    /// (for guests that are expected to fail early).
    pub fn no_wait(mut self) -> Self {
        self.wait_for_socket = false;
        self
    }

    /// The full argv after the kernel binary, as it will be run: [`guest_argv`], the umid and
    /// uml_dir, then the extra arguments.
    pub fn argv(&self, init: &Path, uml_dir: &Path) -> Vec<String> {
        let mut cmdline = guest_cmdline(&self.mem, init);
        cmdline
            .push(Arg::Umid(self.umid.clone()))
            .push(Arg::UmlDir(uml_dir.to_owned()));
        let mut argv = cmdline.to_argv();
        argv.extend(self.args.iter().cloned());
        argv
    }

    /// Boot the guest and wait until its mconsole socket exists (it answers requests from then
    /// on), or until the boot timeout. On failure the guest is already cleaned up and the
    /// error holds the tail of its boot log.
    pub fn boot(self) -> Result<Guest, String> {
        let scratch = tempfile::Builder::new()
            .prefix("umlkit-t")
            .tempdir_in("/tmp")
            .map_err(|e| format!("cannot create a scratch directory: {e}"))?;
        let uml_dir = match &self.uml_dir {
            Some(d) => d.clone(),
            None => scratch.path().join("uml"),
        };
        let init = scratch.path().join("init");
        let mut script = String::from("#!/bin/sh\n");
        script.push_str("mount -t proc proc /proc\n");
        script.push_str("mount -t tmpfs tmpfs /tmp\n");
        script.push_str("mount -t sysfs sysfs /sys 2>/dev/null\n");
        script.push_str("echo READY\n");
        let _ = writeln!(script, "{}", self.body);
        script.push_str("poweroff -f\n");
        fs::write(&init, script).map_err(|e| format!("cannot write init script: {e}"))?;
        fs::set_permissions(&init, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("cannot chmod init script: {e}"))?;
        let log_path = scratch.path().join("console.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("cannot create log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot dup log: {e}"))?;

        let argv = self.argv(&init, &uml_dir);
        let mut command = Command::new(kernel());
        command
            .args(&argv)
            .current_dir(scratch.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the
        // parent; it is the only thing run between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", kernel().display()))?;
        let mut guest = Guest {
            umid: self.umid.clone(),
            pid: child.id(),
            child,
            uml_dir,
            owns_uml_dir: self.uml_dir.is_none(),
            log_path,
            argv,
            exited: None,
            _scratch: scratch,
        };
        if self.wait_for_socket {
            guest.wait_for_socket(self.boot_timeout)?;
        }
        Ok(guest)
    }
}

/// A running guest. Dropping it kills the kernel's process group and removes its `uml_dir`.
#[derive(Debug)]
pub struct Guest {
    umid: String,
    pid: u32,
    child: Child,
    uml_dir: PathBuf,
    owns_uml_dir: bool,
    log_path: PathBuf,
    argv: Vec<String>,
    exited: Option<ExitStatus>,
    _scratch: tempfile::TempDir,
}

impl Guest {
    pub fn umid(&self) -> &str {
        &self.umid
    }

    /// The kernel's host pid (also its process group and session id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn uml_dir(&self) -> &Path {
        &self.uml_dir
    }

    /// `<uml_dir>/<umid>`.
    pub fn instance_dir(&self) -> PathBuf {
        self.uml_dir.join(&self.umid)
    }

    pub fn mconsole_path(&self) -> PathBuf {
        self.instance_dir().join("mconsole")
    }

    /// The kernel arguments it was started with.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// Everything the guest wrote to its console (stdout and stderr) so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The last `lines` lines of the console log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Wait until the console log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "guest {} did not print {needle:?} within {timeout:?}; log tail:\n{}",
                    self.umid,
                    self.log_tail(20)
                ));
            }
            sleep(Duration::from_millis(20));
        }
    }

    fn wait_for_socket(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let socket = self.mconsole_path();
        loop {
            if socket.exists() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return Err(format!(
                    "guest {} exited ({status}) before its mconsole socket appeared; log tail:\n{}",
                    self.umid,
                    self.log_tail(20)
                ));
            }
            if Instant::now() >= deadline {
                let tail = self.log_tail(20);
                self.kill();
                return Err(format!(
                    "guest {} did not boot within {timeout:?}; log tail:\n{tail}",
                    self.umid
                ));
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// Wait for the kernel to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = Some(status);
                    return Ok(status);
                }
                Ok(None) => {}
                Err(e) => return Err(format!("waitpid failed: {e}")),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "guest {} still running after {timeout:?}; log tail:\n{}",
                    self.umid,
                    self.log_tail(20)
                ));
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// Whether the kernel process is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exited = Some(status);
                false
            }
            _ => true,
        }
    }

    /// Kill the kernel's whole process group and reap it. Idempotent.
    pub fn kill(&mut self) {
        kill_group(self.pid);
        if self.exited.is_none() {
            self.exited = self.child.wait().ok();
        }
        // Helper processes are reparented to init; give them a moment to die so a following
        // check for leftovers is meaningful.
        let deadline = Instant::now() + Duration::from_secs(2);
        while group_alive(self.pid) && Instant::now() < deadline {
            kill_group(self.pid);
            sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.kill();
        if self.owns_uml_dir {
            let _ = fs::remove_dir_all(&self.uml_dir);
        } else {
            let _ = fs::remove_dir_all(self.instance_dir());
        }
    }
}

/// SIGKILL every process in the process group `pgid`.
pub fn kill_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid only sends a signal; no memory is involved.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Whether a process of the process group `pgid` still runs: the library's check, for which a
/// zombie does not count (a killed kernel's helpers are reparented to pid 1, and a container's
/// pid 1 may take seconds to reap them).
pub fn group_alive(pgid: u32) -> bool {
    uml::instance::group_alive(pgid)
}

/// `program` to be run as user `uid` and group `gid` with no supplementary groups (`setpriv`).
pub fn as_user(uid: u32, gid: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid", &uid.to_string(), "--regid", &gid.to_string()])
        .arg("--clear-groups")
        .arg(program);
    c
}

/// The kernel under test as a file user `uid` (group `gid`) may run: itself when they can,
/// else a copy in `dir` (which they must be able to enter), made once.
pub fn kernel_runnable_by(uid: u32, gid: u32, dir: &Path) -> PathBuf {
    let kernel = fs::canonicalize(kernel()).expect("the kernel under test");
    let runnable = as_user(uid, gid, "test")
        .arg("-x")
        .arg(&kernel)
        .status()
        .is_ok_and(|s| s.success());
    if runnable {
        return kernel;
    }
    let copy = dir.join("linux");
    if !copy.exists() {
        fs::copy(&kernel, &copy).expect("cannot copy the kernel");
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    }
    copy
}

/// A path for a socket or file under a fresh short temporary directory (unix socket paths are
/// limited to 107 bytes, so tests keep them under /tmp).
pub fn short_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("cannot create a temporary directory under /tmp")
}

/// A system account named `name` for tests that act as a second local user (created with
/// `useradd` on first use and kept for later runs): its uid and gid.
///
/// # Panics
/// When not run as root, or when the account cannot be made: such a test cannot mean anything.
pub fn second_user(name: &str) -> (u32, u32) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test acts as a second local user and needs root"
    );
    if nix::unistd::User::from_name(name).ok().flatten().is_none() {
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .status();
    }
    let user = nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("useradd {name} failed"));
    (user.uid.as_raw(), user.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_boots_and_drop_leaves_no_process_or_directory() {
        let guest = GuestBuilder::new("tk").boot().unwrap();
        guest
            .wait_for_log("READY", Duration::from_secs(20))
            .unwrap();
        let pid = guest.pid();
        let dir = guest.uml_dir().to_owned();
        assert!(guest.mconsole_path().exists());
        assert!(group_alive(pid));
        drop(guest);
        assert!(!group_alive(pid), "a process of the guest survived");
        assert!(!dir.exists(), "uml_dir survived");
    }

    #[test]
    fn exit_status_comes_from_proc_exitcode() {
        let mut guest = GuestBuilder::new("tk")
            .body("echo 7 > /proc/exitcode")
            .boot()
            .unwrap();
        let status = guest.wait_exit(Duration::from_secs(20)).unwrap();
        assert_eq!(status.code(), Some(7));
    }

    #[test]
    fn a_guest_argv_is_accepted_by_the_kernel_under_test_without_a_warning() {
        let argv = GuestBuilder::new("tk")
            .arg("mconsole=notify:/tmp/umlkit-n")
            .argv(Path::new("/sbin/init"), Path::new("/tmp/umlkit-u"));
        assert!(argv.contains(&"rootfstype=hostfs".to_owned()), "{argv:?}");
        let mut env = uml::check::CheckEnv::offline();
        env.kernel = uml::kernel::Profile::read(&kernel()).expect("the kernel's profile");
        let report = uml::check::check(&CommandLine::parse(&argv), &env);
        assert_eq!(
            report.worst(),
            Some(uml::check::Severity::Note),
            "{report:#?}"
        );
    }

    #[test]
    fn a_guest_that_cannot_boot_reports_its_log() {
        let err = GuestBuilder::new("tk")
            .arg("mem=1K")
            .boot_timeout(Duration::from_secs(20))
            .boot()
            .unwrap_err();
        assert!(err.contains("log tail"), "{err}");
    }
}

/// A temporary `uml_dir` for guests that a test starts through the `uml` binary (for example
/// `uml run --detach`). Dropping it kills the process group of every kernel whose pid file is
/// in it (also the helper processes of a panicked kernel), then removes the directory.
#[derive(Debug)]
pub struct UmlDir {
    dir: tempfile::TempDir,
    pids: std::sync::Mutex<Vec<u32>>,
}

impl UmlDir {
    pub fn new() -> UmlDir {
        UmlDir {
            dir: short_tempdir("umlkit-d"),
            pids: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Also kill this process group on drop (for a kernel whose pid file is already gone).
    pub fn adopt(&self, pid: u32) {
        if let Ok(mut p) = self.pids.lock() {
            p.push(pid);
        }
    }

    /// The pids in the instance directories' pid files right now.
    pub fn kernel_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        if let Ok(entries) = fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                // As the library reads them: never blocking on a FIFO, never through a symlink.
                if let Some(pid) = uml::instance::read_pid_file(&e.path().join("pid")) {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    /// Remember the current kernels, so they are killed on drop even after their pid files go.
    pub fn remember(&self) {
        for pid in self.kernel_pids() {
            self.adopt(pid);
        }
    }
}

impl Default for UmlDir {
    fn default() -> Self {
        UmlDir::new()
    }
}

impl Drop for UmlDir {
    fn drop(&mut self) {
        let mut pids = self.kernel_pids();
        if let Ok(p) = self.pids.lock() {
            pids.extend(p.iter().copied());
        }
        for pid in &pids {
            kill_group(*pid);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while pids.iter().any(|p| group_alive(*p)) && Instant::now() < deadline {
            sleep(Duration::from_millis(10));
        }
    }
}

/// A temporary directory that a test guest sees at the same path through its hostfs root:
/// under /var/tmp, since a test guest has its own tmpfs on /tmp (and a checkout, with its
/// target directory, may itself live under the host's /tmp).
pub fn guest_visible_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/var/tmp")
        .expect("cannot create a temporary directory under /var/tmp")
}

/// What `BINARY generate all --out-dir DIR` writes (the man pages and completions that
/// `scripts/generate` commits), in a fresh temporary directory; with SOURCE_DATE_EPOCH unset,
/// as `scripts/generate` runs it. Panics if the generator fails.
pub fn generated_by(binary: &str) -> tempfile::TempDir {
    let tmp = tempfile::TempDir::new().expect("a temporary directory");
    let out = Command::new(binary)
        .args(["generate", "all", "--out-dir"])
        .arg(tmp.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
    assert!(
        out.status.success(),
        "{binary} generate all failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tmp
}

/// Does the host CPU have AMX? There Debian's 6.1 and 6.12 UML kernels cannot run a process
/// (their XSAVE buffer is too small for the host's; see `uml::kernel::diagnosis`).
pub fn host_has_amx() -> bool {
    fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|w| w == "amx_tile"))
    })
}
