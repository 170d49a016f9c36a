//! The compiled init of `uml run`'s built-in guest.
//!
//! Every exec in a UML guest is expensive (each new address space is a host process the kernel
//! has to build and trace), so a shell-script init that runs `mount`, `stty`, `hostname`,
//! `setsid` and `env` spends most of a short guest's life starting tools. This init does the
//! same work with system calls in one process.
//!
//! The guest's root is the host's `/` over hostfs, so the init is a binary of the host's:
//! `uml-init` ([`INIT_BINARY`]) installed with the `uml` (or `umld`) that launches the guest,
//! else that binary itself. [`DefaultGuest::write_init`](crate::launch::DefaultGuest::write_init)
//! writes a [`Config`] file that starts with `#!/path/to/uml-init __guest-init:BUILD:WRITER`
//! (or `#!/path/to/uml __guest-init`): the kernel's `init=` names that file, and the kernel's
//! script loader (`fs/binfmt_script.c`) runs the binary with that word and the file, which reads
//! the rest of the file and calls [`run`]. No kernel argument changes, and any caller of
//! `write_init` (`uml run`, `umld`) gets the compiled init.
//!
//! The config is a small line format, one record a line (`KEY VALUE`), values escaped so that
//! any path or argument (even with a newline) survives; see [`Config::encode`] and
//! [`Config::parse`].

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::mount::MsFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::termios;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::launch::{BOOTED_MESSAGE, DefaultGuest, Payload, TMPFS_DIRS};

/// The hidden subcommand of the `uml` binary that runs the init: `uml __guest-init CONFIG`.
pub const SUBCOMMAND: &str = "__guest-init";

/// The second line of every config file; a file without it is refused, so a config written by
/// another version of the format is never half understood.
const FORMAT_LINE: &str = "# umlkit guest init 1";

/// The most of a config file the init reads (it holds the command's argv and environment).
const MAX_CONFIG: u64 = 4 << 20;

/// The kernel reads at most this much of a `#!` line (`BINPRM_BUF_SIZE` in `binfmts.h`, 256
/// since 5.1; umlkit's kernels are 6.1 and later); a longer interpreter path would be cut.
const MAX_SHEBANG: usize = 255;

/// The search path of the guest's command, as the shell-script init set it.
const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the guest's init does, as [`DefaultGuest`] describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Directories that get a tmpfs (mode 1777) when they exist.
    pub tmpfs: Vec<PathBuf>,
    /// Host directories mounted read-write at the same path.
    pub writable: Vec<PathBuf>,
    /// Host directories mounted read-only at the same path (the working directory when a tmpfs
    /// hid it).
    pub readonly: Vec<PathBuf>,
    /// Environment of the payload, on top of the kernel's (`HOME`, `TERM`) and `PATH`.
    pub env: Vec<(OsString, OsString)>,
    /// The payload's working directory (`/` when it does not exist in the guest).
    pub cwd: PathBuf,
    /// Input is text from a pipe ended by ^D: no echo, no editing or signal characters.
    pub raw_input: bool,
    /// Output goes to a pipe or file: no `\r` added.
    pub raw_output: bool,
    pub payload: Payload,
}

/// A config file that cannot be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("line {line}: {what}")]
    Syntax { line: usize, what: String },
    #[error("not a umlkit guest init config (no \"{FORMAT_LINE}\" line)")]
    Format,
}

impl Config {
    /// The init's work for `guest`.
    pub fn from_guest(guest: &DefaultGuest) -> Config {
        let hidden = |p: &Path| TMPFS_DIRS.iter().any(|t| p.starts_with(t));
        let mut readonly = Vec::new();
        // The working directory must stay visible when a tmpfs above hid it (a project under
        // /tmp), unless a writable mount already shows it.
        if hidden(&guest.cwd) && !guest.writable.iter().any(|w| guest.cwd.starts_with(w)) {
            readonly.push(guest.cwd.clone());
        }
        Config {
            tmpfs: TMPFS_DIRS.iter().map(PathBuf::from).collect(),
            writable: guest.writable.clone(),
            readonly,
            env: guest
                .env
                .iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            cwd: guest.cwd.clone(),
            raw_input: !guest.stdin_tty,
            raw_output: !guest.stdout_tty,
            payload: guest.payload.clone(),
        }
    }

    /// The config file's text: the `#!` line that makes the kernel run `interpreter`, then one
    /// record a line.
    pub fn encode(&self, interpreter: &Interpreter) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"#!");
        out.extend_from_slice(interpreter.program.as_os_str().as_bytes());
        out.extend_from_slice(format!(" {}\n{FORMAT_LINE}\n", interpreter.word).as_bytes());
        let mut record = |key: &str, value: &[u8]| {
            out.extend_from_slice(key.as_bytes());
            out.push(b' ');
            out.extend_from_slice(&escape(value));
            out.push(b'\n');
        };
        for d in &self.tmpfs {
            record("tmpfs", d.as_os_str().as_bytes());
        }
        for d in &self.writable {
            record("rw", d.as_os_str().as_bytes());
        }
        for d in &self.readonly {
            record("ro", d.as_os_str().as_bytes());
        }
        for (k, v) in &self.env {
            let mut pair = k.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(v.as_bytes());
            record("env", &pair);
        }
        record("cwd", self.cwd.as_os_str().as_bytes());
        if self.raw_input {
            record("raw-input", b"");
        }
        if self.raw_output {
            record("raw-output", b"");
        }
        match &self.payload {
            Payload::Shell => record("run", b"shell"),
            Payload::RespawningShell => record("run", b"respawning-shell"),
            Payload::Command(argv) => {
                record("run", b"command");
                for a in argv {
                    record("arg", a.as_bytes());
                }
            }
        }
        out
    }

    /// Parses a config file's text (the `#!` line, if any, is skipped).
    ///
    /// # Errors
    /// [`ConfigError`] naming the line that is not understood.
    pub fn parse(text: &[u8]) -> Result<Config, ConfigError> {
        let mut lines = text.split(|&b| b == b'\n').enumerate().peekable();
        if lines.peek().is_some_and(|(_, l)| l.starts_with(b"#!")) {
            lines.next();
        }
        match lines.next() {
            Some((_, l)) if l == FORMAT_LINE.as_bytes() => {}
            _ => return Err(ConfigError::Format),
        }
        let mut c = Config {
            tmpfs: Vec::new(),
            writable: Vec::new(),
            readonly: Vec::new(),
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            raw_input: false,
            raw_output: false,
            payload: Payload::Shell,
        };
        let mut run: Option<Vec<u8>> = None;
        let mut argv = Vec::new();
        for (n, line) in lines {
            let line_no = n + 1;
            let syntax = |what: String| ConfigError::Syntax {
                line: line_no,
                what,
            };
            if line.is_empty() {
                continue;
            }
            let (key, raw) = match line.iter().position(|&b| b == b' ') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => (line, &b""[..]),
            };
            let value = unescape(raw).ok_or_else(|| syntax("a bad escape".into()))?;
            let path = || PathBuf::from(OsString::from_vec(value.clone()));
            match key {
                b"tmpfs" => c.tmpfs.push(path()),
                b"rw" => c.writable.push(path()),
                b"ro" => c.readonly.push(path()),
                b"env" => {
                    let eq = value
                        .iter()
                        .position(|&b| b == b'=')
                        .filter(|&i| i > 0)
                        .ok_or_else(|| syntax("env needs NAME=VALUE".into()))?;
                    c.env.push((
                        OsString::from_vec(value[..eq].to_vec()),
                        OsString::from_vec(value[eq + 1..].to_vec()),
                    ));
                }
                b"cwd" => c.cwd = path(),
                b"raw-input" => c.raw_input = true,
                b"raw-output" => c.raw_output = true,
                b"run" => run = Some(value),
                b"arg" => argv.push(String::from_utf8_lossy(&value).into_owned()),
                other => {
                    return Err(syntax(format!(
                        "unknown record {:?}",
                        String::from_utf8_lossy(other)
                    )));
                }
            }
        }
        c.payload = match run.as_deref() {
            Some(b"shell") | None => Payload::Shell,
            Some(b"respawning-shell") => Payload::RespawningShell,
            Some(b"command") if !argv.is_empty() => Payload::Command(argv),
            Some(b"command") => {
                return Err(ConfigError::Syntax {
                    line: 0,
                    what: "run command without any arg".into(),
                });
            }
            Some(other) => {
                return Err(ConfigError::Syntax {
                    line: 0,
                    what: format!(
                        "unknown payload {:?} (shell, respawning-shell or command)",
                        String::from_utf8_lossy(other)
                    ),
                });
            }
        };
        Ok(c)
    }
}

/// `\` as `\\`, newline as `\n`: a value stays on its line.
fn escape(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
    out
}

fn unescape(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        if b == b'\\' {
            match bytes.next()? {
                b'\\' => out.push(b'\\'),
                b'n' => out.push(b'\n'),
                _ => return None,
            }
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// Set by [`serve_if_asked`]: the running binary can be the guest's init.
static CAN_SERVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The build of this library, from a hash of its sources (build.rs): a config names the init
/// of the build that wrote it.
pub const BUILD: &str = env!("UMLKIT_BUILD");

/// The small binary that serves only the init, installed beside `uml` (cargo's target
/// directory, `cargo install`) or in a helper directory of the packages
/// ([`init_binary_beside`]). As a guest's
/// pid 1 it starts 1.6 ms sooner than `uml` (23.6 against 25.2 ms for `uml run -- true`): each
/// page of a program's code the guest touches is a page fault through the UML kernel and a
/// 4 KiB read through hostfs, and the init's code is spread over `uml`'s 4 MB of text where
/// `uml-init` has 0.4 MB.
pub const INIT_BINARY: &str = "uml-init";

/// What a config file's `#!` line names: the program the kernel runs, and its one argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    pub program: PathBuf,
    /// [`SUBCOMMAND`] when the program is the binary that writes the config; for
    /// [`INIT_BINARY`], `SUBCOMMAND:BUILD:WRITER`, so that an `uml-init` of another build
    /// hands the config to the binary that wrote it (see [`serve_if_asked`]).
    pub word: String,
}

/// Runs the guest's init when the binary was started as `BINARY __guest-init CONFIG` (never
/// returns then), and marks the binary as one that can be the init ([`program`]). A binary that
/// launches guests (`uml`, `umld`) calls it first thing in `main`, before parsing arguments, and
/// so does [`INIT_BINARY`].
///
/// `BINARY __guest-init:BUILD:WRITER CONFIG` is how a config names [`INIT_BINARY`]: when BUILD
/// is not this build (an `uml-init` left from another build beside a new `uml`), the config goes
/// to WRITER, the binary that wrote it, as `WRITER __guest-init CONFIG`.
pub fn serve_if_asked() {
    CAN_SERVE.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut args = std::env::args_os();
    let (Some(sub), Some(config), None) = (args.nth(1), args.next(), args.next()) else {
        return;
    };
    if sub != SUBCOMMAND {
        let Some((build, writer)) = split_word(sub.as_bytes()) else {
            return;
        };
        if build != BUILD.as_bytes() {
            hand_over(writer, &config);
        }
    }
    // Anywhere else the init would mount over the host's /proc, /sys and /dev, and power the
    // host off at the end (reboot(2) obeys any process with CAP_SYS_BOOT).
    if std::process::id() != 1 {
        eprintln!(
            "uml guest init: it runs only as a guest's pid 1, started by the kernel through the \
             config file that `uml run` writes"
        );
        std::process::exit(2);
    }
    run(Path::new(&config));
}

/// `SUBCOMMAND:BUILD:WRITER` → (BUILD, WRITER).
fn split_word(word: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = word
        .strip_prefix(SUBCOMMAND.as_bytes())?
        .strip_prefix(b":")?;
    let colon = rest.iter().position(|&b| b == b':')?;
    Some((&rest[..colon], &rest[colon + 1..]))
}

/// Exec `writer __guest-init config`; returns only when that fails (the init then serves the
/// config itself: the format line still refuses one it cannot read).
fn hand_over(writer: &[u8], config: &std::ffi::OsStr) {
    use std::ffi::CString;
    let (Ok(w), Ok(sub), Ok(c)) = (
        CString::new(writer),
        CString::new(SUBCOMMAND),
        CString::new(config.as_bytes()),
    ) else {
        return;
    };
    let Err(e) = nix::unistd::execv(&w, &[w.as_c_str(), sub.as_c_str(), c.as_c_str()]);
    eprintln!(
        "uml guest init: this init is of another build, and {} cannot run: {e}",
        String::from_utf8_lossy(writer)
    );
}

/// The program a config file's `#!` line names: [`INIT_BINARY`] beside the running binary when
/// it is there, else the running binary, when it serves the init ([`serve_if_asked`]) — never
/// another binary of `uml`'s, which could be of another version (an `uml-init` of another
/// build hands the config back). `None` when the running binary does not serve the init, or
/// its path cannot stand in a `#!` line (too long, or with whitespace): the caller then writes
/// a shell-script init.
pub fn program() -> Option<Interpreter> {
    if !CAN_SERVE.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    // The word carries the writer's path as it is: a path that is not UTF-8 keeps the init in
    // the writer.
    if let (Some(init), Some(writer)) = (init_binary_beside(&exe), exe.to_str()) {
        let word = format!("{SUBCOMMAND}:{BUILD}:{writer}");
        if usable_interpreter(&init, &word) {
            return Some(Interpreter {
                program: init,
                word,
            });
        }
    }
    usable_program(&exe).then(|| Interpreter {
        program: exe,
        word: SUBCOMMAND.to_owned(),
    })
}

/// [`INIT_BINARY`] beside `exe` (cargo's target directory, `cargo install`), or where the
/// packages put it from `exe`'s directory: `../libexec/umlkit/` (Debian, Fedora) or
/// `../lib/umlkit/` (Arch). Only a file that no one else could have put or changed there
/// (`only_ours`): a `uml` in /tmp/x/ must not run a /tmp/libexec/umlkit/uml-init that another
/// user planted as its guests' init.
pub fn init_binary_beside(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    let prefix = dir.parent();
    std::iter::once(dir.join(INIT_BINARY))
        .chain(
            prefix.into_iter().flat_map(|p| {
                ["libexec/umlkit", "lib/umlkit"].map(|d| p.join(d).join(INIT_BINARY))
            }),
        )
        .find(|p| p.is_file() && only_ours(p))
}

/// Whether `path` and every directory above it belong to root or to us and are writable by no
/// one else: not by others, and by a group only when it is our own (a user's private group,
/// with umask 002). A root-owned directory with the sticky bit, such as /tmp, may be writable
/// by all: there, no one else can move what is ours.
fn only_ours(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let my_group = nix::unistd::getegid().as_raw();
    let mut at = Some(path);
    while let Some(p) = at {
        let Ok(m) = fs::symlink_metadata(p) else {
            return false;
        };
        let owner_ok = m.uid() == 0 || m.uid() == me;
        let others_write = m.mode() & 0o002 != 0 || (m.mode() & 0o020 != 0 && m.gid() != my_group);
        let sticky_dir = m.is_dir() && m.mode() & 0o1000 != 0 && m.uid() == 0;
        if !owner_ok || (others_write && !sticky_dir) {
            return false;
        }
        at = p.parent().filter(|q| !q.as_os_str().is_empty());
    }
    true
}

/// Can `path` be the interpreter of a `#!` line? An existing file whose path has no whitespace
/// and fits the kernel's line buffer (a shorter buffer on old kernels).
pub fn usable_program(path: &Path) -> bool {
    usable_interpreter(path, SUBCOMMAND)
}

/// [`usable_program`] for `path` followed by the argument `word`.
fn usable_interpreter(path: &Path, word: &str) -> bool {
    let bytes = path.as_os_str().as_bytes();
    path.is_absolute()
        && bytes.len() + word.len() + 4 <= MAX_SHEBANG
        && !bytes.iter().any(|b| b.is_ascii_whitespace())
        && !word.bytes().any(|b| b.is_ascii_whitespace())
        && path.is_file()
}

/// Runs the init described by the config file at `path` as the guest's pid 1; never returns
/// (the guest powers off). Errors go to the init's stderr, the kernel's console (the boot log).
pub fn run(path: &Path) -> ! {
    let config = match read_config(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("uml guest init: {}: {e}", path.display());
            power_off(Some(1));
        }
    };
    Init::start(config).serve()
}

fn read_config(path: &Path) -> Result<Config, Box<dyn std::error::Error>> {
    Ok(Config::parse(&read_small(path, MAX_CONFIG)?)?)
}

/// At most `limit` bytes of the file at `path`, read in one call when its size is known (every
/// system call costs a guest: std's `read_to_end` without a size starts with 32-byte reads).
fn read_small(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = fs::File::open(path)?;
    let size = file.metadata().map_or(0, |m| m.len()).min(limit);
    // /proc files report 0: a page, which holds the kernel command line.
    let capacity = usize::try_from(size).unwrap_or(0).max(4096) + 1;
    let mut text = Vec::with_capacity(capacity);
    file.take(limit).read_to_end(&mut text)?;
    Ok(text)
}

/// Writes the exit status the kernel reports (`/proc/exitcode`), flushes the disks and powers
/// off, as `poweroff -f` does.
fn power_off(status: Option<i32>) -> ! {
    if let Some(status) = status {
        let _ = fs::write("/proc/exitcode", format!("{status}\n"));
    }
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Only reached when the reboot call is refused.
    std::process::exit(status.unwrap_or(0));
}

struct Init {
    config: Config,
    env: Vec<(OsString, OsString)>,
    signals: SigSet,
    /// The console line, held open for the guest's whole life: its input buffer is flushed when
    /// the last opener closes it.
    _tty0: Option<fs::File>,
}

impl Init {
    fn start(config: Config) -> Init {
        mount_system();
        for dir in &config.tmpfs {
            // A directory the host does not have gets none (no stat first: it would double
            // the system calls).
            match mount("tmpfs", dir, "tmpfs", MsFlags::empty(), Some("mode=1777")) {
                Ok(()) | Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => {}
                Err(e) => eprintln!(
                    "uml guest init: cannot mount tmpfs on {}: {e}",
                    dir.display()
                ),
            }
        }
        // hostfs takes the host path as its mount data.
        for (dirs, flags) in [
            (&config.writable, MsFlags::empty()),
            (&config.readonly, MsFlags::MS_RDONLY),
        ] {
            for dir in dirs {
                let _ = fs::create_dir_all(dir);
                match dir.to_str() {
                    Some(data) => mount_or_say("hostfs", dir, "hostfs", flags, Some(data)),
                    None => eprintln!("uml guest init: cannot mount {}: not UTF-8", dir.display()),
                }
            }
        }
        let mut env: Vec<(OsString, OsString)> =
            std::env::vars_os().filter(|(k, _)| k != "PATH").collect();
        set(&mut env, "PATH".into(), GUEST_PATH.into());
        let cmdline = read_small(Path::new("/proc/cmdline"), 64 * 1024).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        rename_network_interfaces(&cmdline, &env);
        apply_host_settings(&cmdline, &env);
        // ctrl-alt-del (mconsole `cad`, `uml shutdown`) becomes SIGINT to init: power off.
        // (`reboot(2)`'s CAD_OFF is what writing 0 to /proc/sys/kernel/ctrl-alt-del does.)
        let _ = nix::sys::reboot::set_cad_enabled(false);
        let mut signals = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGCHLD] {
            signals.add(s);
        }
        // Blocked, then taken with sigwait: pid 1 gets no signal it has no handler for, and a
        // child that ends before the wait leaves its SIGCHLD pending.
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None);
        let tty0 = open_tty("/dev/tty0");
        if let Some(tty) = &tty0
            && (config.raw_input || config.raw_output)
        {
            set_line(tty, config.raw_input, config.raw_output);
            if config.raw_output
                && let Some(tty1) = open_tty("/dev/tty1")
            {
                set_line(&tty1, false, true);
            }
        }
        for (k, v) in &config.env {
            set(&mut env, k.clone(), v.clone());
        }
        let cwd = if nix::unistd::chdir(&config.cwd).is_ok() {
            set(&mut env, "OLDPWD".into(), "/".into());
            config.cwd.clone()
        } else {
            let _ = nix::unistd::chdir("/");
            PathBuf::from("/")
        };
        set(&mut env, "PWD".into(), cwd.into_os_string());
        if let Ok(mut mconsole) = fs::OpenOptions::new().write(true).open("/proc/mconsole") {
            let _ = mconsole.write_all(BOOTED_MESSAGE);
        }
        Init {
            config,
            env,
            signals,
            _tty0: tty0,
        }
    }

    /// Runs the payload until it ends (or, for a respawning shell, until shutdown), then powers
    /// off with its exit status.
    fn serve(self) -> ! {
        loop {
            let child = match self.spawn() {
                Ok(pid) => pid,
                Err(status) if !matches!(self.config.payload, Payload::RespawningShell) => {
                    power_off(Some(status))
                }
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            };
            let status = self.wait_for(child);
            if matches!(self.config.payload, Payload::RespawningShell) {
                // Detaching hangs the line up, which ends the shell; start it again, like a
                // getty.
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            power_off(Some(status));
        }
    }

    /// Starts the payload in a new session on the console; on failure, the exit status a shell
    /// gives (127 not found, 126 not executable) after saying why on the command's stderr.
    fn spawn(&self) -> Result<Pid, i32> {
        let (argv, controlling, stderr_tty): (Vec<OsString>, bool, &str) =
            match &self.config.payload {
                Payload::Shell | Payload::RespawningShell => {
                    let shell = self
                        .env
                        .iter()
                        .find(|(k, _)| k == "SHELL")
                        .map(|(_, v)| PathBuf::from(v))
                        .filter(|s| is_executable(s))
                        .unwrap_or_else(|| "/bin/sh".into());
                    (vec![shell.into_os_string(), "-l".into()], true, "/dev/tty0")
                }
                Payload::Command(argv) => (
                    argv.iter().map(OsString::from).collect(),
                    !self.config.raw_input,
                    "/dev/tty1",
                ),
            };
        let name = argv[0].to_string_lossy().into_owned();
        let fail = |errno: nix::errno::Errno| {
            let message = format!("uml: cannot run {name}: {}\n", errno.desc());
            if let Ok(mut err) = fs::OpenOptions::new().write(true).open(stderr_tty) {
                let _ = err.write_all(message.as_bytes());
            }
            // As a shell reports it: 127 not found, 126 found but not runnable.
            if errno == nix::errno::Errno::ENOENT {
                127
            } else {
                126
            }
        };
        let program = self.find_program(&argv[0]).map_err(fail)?;
        spawn_on_console(&program, &argv, &self.env, controlling, stderr_tty).map_err(fail)
    }

    /// `name` as `execvp` finds it in the payload's PATH (not init's own): a name with a `/`
    /// as it is, else the first executable file of that name in a PATH directory. EACCES (a
    /// shell's 126) when only a file that cannot be run has that name, ENOENT (127) when none.
    fn find_program(&self, name: &OsString) -> Result<PathBuf, nix::errno::Errno> {
        if name.as_bytes().contains(&b'/') {
            return Ok(PathBuf::from(name));
        }
        let path = self
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or_else(|| OsString::from(GUEST_PATH), |(_, v)| v.clone());
        if name.is_empty() {
            return Err(nix::errno::Errno::ENOENT);
        }
        crate::kernel::on_path_in(name, &path).ok_or_else(|| {
            let not_runnable = std::env::split_paths(&path)
                .filter(|dir| dir.is_absolute())
                .any(|dir| dir.join(name).is_file());
            if not_runnable {
                nix::errno::Errno::EACCES
            } else {
                nix::errno::Errno::ENOENT
            }
        })
    }

    /// Reaps children (orphans of the guest included) until `child` ends; its exit status as a
    /// shell reports it (128 + signal for a killed one). SIGINT or SIGTERM to init stops the
    /// payload and powers off.
    fn wait_for(&self, child: Pid) -> i32 {
        loop {
            match self.signals.wait() {
                Ok(Signal::SIGCHLD) | Err(_) => {
                    while let Ok(status) = nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG))
                    {
                        match status {
                            WaitStatus::Exited(pid, code) if pid == child => return code,
                            WaitStatus::Signaled(pid, sig, _) if pid == child => {
                                return 128 + sig as i32;
                            }
                            WaitStatus::StillAlive => break,
                            _ => {}
                        }
                    }
                }
                Ok(_) => {
                    let _ = nix::sys::signal::kill(child, Signal::SIGTERM);
                    power_off(None);
                }
            }
        }
    }
}

/// proc, sysfs, devtmpfs, devpts and a tmpfs on /dev/shm, as a Debian system has them.
fn mount_system() {
    mount_or_say("proc", Path::new("/proc"), "proc", MsFlags::empty(), None);
    mount_or_say("sysfs", Path::new("/sys"), "sysfs", MsFlags::empty(), None);
    // The host's /dev over hostfs has its device nodes, but a guest needs its own; a kernel
    // without devtmpfs keeps the host's.
    let _ = mount(
        "devtmpfs",
        Path::new("/dev"),
        "devtmpfs",
        MsFlags::empty(),
        None,
    );
    let _ = fs::create_dir("/dev/pts");
    let _ = fs::create_dir("/dev/shm");
    let _ = mount(
        "devpts",
        Path::new("/dev/pts"),
        "devpts",
        MsFlags::empty(),
        Some("gid=5,mode=620"),
    );
    let _ = mount(
        "tmpfs",
        Path::new("/dev/shm"),
        "tmpfs",
        MsFlags::empty(),
        None,
    );
}

fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    nix::mount::mount(Some(source), target, Some(fstype), flags, data)
}

fn mount_or_say(source: &str, target: &Path, fstype: &str, flags: MsFlags, data: Option<&str>) {
    if let Err(e) = mount(source, target, fstype, flags, data) {
        eprintln!(
            "uml guest init: cannot mount {fstype} on {}: {e}",
            target.display()
        );
    }
}

fn set(env: &mut Vec<(OsString, OsString)>, key: OsString, value: OsString) {
    match env.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => env.push((key, value)),
    }
}

/// Starts `program` with `argv` and `env` in a session of its own, its input and output on the
/// console (`/dev/tty0`) and its errors on `stderr_tty`; with `controlling`, the console
/// becomes the session's controlling terminal, so that ^C and job control reach it.
///
/// Neither fork and exec nor `posix_spawn`, but what `posix_spawn` does inside, with only the
/// system calls this child needs. Every system call of a guest process is a round trip between
/// two host processes, the guest's and the kernel's (3.5 µs when both run on one host CPU, as
/// `uml run` places them; 50 µs woken across the CPUs of a VM whose idle CPUs halt), so their
/// number is what a short guest's life costs:
/// * fork would have the guest kernel copy init's address space (15 ms of a 85 ms `uml run --
///   true`, measured on 7.2.13); the child here shares it (`CLONE_VM|CLONE_VFORK`, init waits
///   until the child has called execve);
/// * glibc's `posix_spawn` child sets every one of the 64 signals' disposition it might have
///   inherited, 120 `rt_sigaction` calls, and init first tried to open each line, to fall back
///   on /dev/null: 135 system calls, where this child makes 10.
///
/// The console is opened in the child after `setsid`, without `O_NOCTTY`, which is what makes it
/// the controlling terminal (init, pid 1 of the kernel, leads no session, so it never took the
/// console itself). A line that cannot be opened is /dev/null instead: the payload still runs.
/// The child's signal mask is emptied and SIGPIPE, which init ignores, is back to its default.
/// Init catches no signal that another process could send to the child before its execve (as
/// `umld`, Rust's runtime has handlers for SIGSEGV and SIGBUS, faults this child does not
/// make), so no handler runs on init's memory.
fn spawn_on_console(
    program: &Path,
    argv: &[OsString],
    env: &[(OsString, OsString)],
    controlling: bool,
    stderr_tty: &str,
) -> Result<Pid, nix::errno::Errno> {
    use std::ffi::CString;

    let cstring = |bytes: &[u8]| CString::new(bytes).map_err(|_| nix::errno::Errno::EINVAL);
    let args = argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = env
        .iter()
        .map(|(k, v)| cstring(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<Result<Vec<_>, _>>()?;
    let program = cstring(program.as_os_str().as_bytes())?;
    let stderr_tty = cstring(stderr_tty.as_bytes())?;
    let ctty = if controlling { 0 } else { libc::O_NOCTTY };
    let lines = [
        (c"/dev/tty0", libc::O_RDONLY | ctty),
        (c"/dev/tty0", libc::O_WRONLY | libc::O_NOCTTY),
        (stderr_tty.as_c_str(), libc::O_WRONLY | libc::O_NOCTTY),
    ];
    match exec_child(&program, &args, &envp, &lines) {
        // A file the kernel cannot execute by itself (a script without `#!`) runs under
        // /bin/sh, as execvp runs it.
        Err(nix::errno::Errno::ENOEXEC) => {
            let mut shell_args = vec![c"/bin/sh".to_owned(), program.clone()];
            shell_args.extend(args.into_iter().skip(1));
            exec_child(c"/bin/sh", &shell_args, &envp, &lines)
        }
        other => other,
    }
}

/// What the child of [`exec_child`] reads, all of it made before the clone: the child
/// allocates nothing and takes no lock (it runs on init's memory while init waits).
struct ChildPlan {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Descriptors 0, 1 and 2: path and open flags.
    lines: [(*const libc::c_char, libc::c_int); 3],
    /// The errno of the child's failed execve; 0 while it has not failed.
    error: std::sync::atomic::AtomicI32,
}

/// Stack of the child of [`exec_child`]: its few frames, the C library's calls and the kernel's
/// signal frame, with room to spare (glibc's `posix_spawn` gives its child 32 KiB).
const CHILD_STACK: usize = 64 * 1024;

/// Starts `program` in a child that shares init's memory until it calls execve, and returns
/// its pid, or the errno of its failed execve (the child is then reaped).
fn exec_child(
    program: &std::ffi::CStr,
    argv: &[std::ffi::CString],
    envp: &[std::ffi::CString],
    lines: &[(&std::ffi::CStr, libc::c_int); 3],
) -> Result<Pid, nix::errno::Errno> {
    use std::sync::atomic::Ordering;

    let pointers = |v: &[std::ffi::CString]| {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect::<Vec<_>>()
    };
    let argv = pointers(argv);
    let envp = pointers(envp);
    let plan = ChildPlan {
        program: program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        lines: lines.map(|(path, flags)| (path.as_ptr(), flags)),
        error: std::sync::atomic::AtomicI32::new(0),
    };
    let mut stack = vec![0u8; CHILD_STACK];
    // The stack grows down from its end, which the ABI wants 16-byte aligned.
    let top = stack.as_mut_ptr().wrapping_add(CHILD_STACK);
    let top = top.wrapping_sub(top as usize % 16);
    // SAFETY: `child_main` gets a pointer to `plan`, which, like every string and array it
    // points to and the child's stack, lives until this function returns; CLONE_VFORK keeps
    // this thread stopped until the child has called execve or exited, so nothing here runs
    // or moves while the child uses them, and the child changes nothing but `plan.error`, an
    // atomic. The child makes only async-signal-safe C library calls (`child_main`).
    let pid = unsafe {
        libc::clone(
            child_main,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::from_ref(&plan).cast_mut().cast(),
        )
    };
    if pid < 0 {
        return Err(nix::errno::Errno::last());
    }
    let pid = Pid::from_raw(pid);
    match plan.error.load(Ordering::Acquire) {
        0 => Ok(pid),
        errno => {
            let _ = nix::sys::wait::waitpid(pid, None);
            Err(nix::errno::Errno::from_raw(errno))
        }
    }
}

/// The child of [`exec_child`]: a new session, the three lines, SIGPIPE and the signal mask
/// back to their defaults, execve; on failure its errno in the plan, and exit 127.
extern "C" fn child_main(plan: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `plan` is the `ChildPlan` that `exec_child` keeps alive and unchanged until this
    // child has called execve or exited (CLONE_VFORK). Every call below is an async-signal-
    // safe C library call on pointers from the plan (NUL-terminated strings, NULL-terminated
    // arrays of them) or on local values; none allocates or takes a lock.
    unsafe {
        let plan = &*plan.cast::<ChildPlan>();
        libc::setsid();
        for (fd, &(path, flags)) in (0..).zip(&plan.lines) {
            // Descriptors 0-2 of init are open (the kernel gives init its console): closed
            // first, the line opens as the lowest free descriptor, the one it is for.
            libc::close(fd);
            let mut opened = libc::open(path, flags);
            if opened < 0 {
                opened = libc::open(c"/dev/null".as_ptr(), flags & libc::O_ACCMODE);
            }
            if opened >= 0 && opened != fd {
                libc::dup2(opened, fd);
                libc::close(opened);
            }
        }
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGPIPE, &default, std::ptr::null_mut());
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(plan.program, plan.argv, plan.envp);
        plan.error.store(
            *libc::__errno_location(),
            std::sync::atomic::Ordering::Release,
        );
        libc::_exit(127)
    }
}

fn is_executable(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok() && path.is_file()
}

fn open_tty(path: &str) -> Option<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ok()
}

/// The line settings of a console: with `raw_input`, `stty -echo -icrnl -isig -iexten -ixon`
/// and no editing characters (piped text passes unchanged, ended by the ^D the launcher sends);
/// with `raw_output`, `stty -opost` (output bytes pass unchanged, no `\r` before `\n`). One
/// read and one write of the settings.
fn set_line(tty: &fs::File, raw_input: bool, raw_output: bool) {
    use termios::{InputFlags, LocalFlags, SpecialCharacterIndices as C};
    let Ok(mut t) = termios::tcgetattr(tty) else {
        return;
    };
    if raw_input {
        t.local_flags
            .remove(LocalFlags::ECHO | LocalFlags::ISIG | LocalFlags::IEXTEN);
        t.input_flags.remove(InputFlags::ICRNL | InputFlags::IXON);
        for c in [
            C::VERASE,
            C::VKILL,
            C::VWERASE,
            C::VLNEXT,
            C::VREPRINT,
            C::VEOL,
            C::VEOL2,
        ] {
            // _POSIX_VDISABLE on Linux.
            t.control_chars[c as usize] = 0;
        }
    }
    if raw_output {
        t.output_flags.remove(termios::OutputFlags::OPOST);
    }
    let _ = termios::tcsetattr(tty, termios::SetArg::TCSANOW, &t);
}

/// The vector driver names interfaces vec<n>, the legacy one eth<n> (`uml::net`): the same name
/// on every kernel, with the vector name kept as an altname. Renaming needs netlink, which `ip`
/// speaks; a guest without a vector interface starts no process for it, and one whose command
/// line names none (`vec<n>:`) does not even look.
fn rename_network_interfaces(cmdline: &str, env: &[(OsString, OsString)]) {
    let named = cmdline.split_ascii_whitespace().any(|word| {
        word.strip_prefix("vec")
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    });
    if !named {
        return;
    }
    let has_vector = fs::read_dir("/sys/class/net").is_ok_and(|dir| {
        dir.flatten()
            .any(|e| e.file_name().as_bytes().starts_with(b"vec"))
    });
    if !has_vector {
        return;
    }
    let script = "for i in /sys/class/net/vec*; do [ -e \"$i\" ] || continue; n=${i##*/vec}\n\
         if [ -e \"/sys/class/net/eth$n\" ]; then echo \"uml: the guest's vec$n keeps its name: eth$n exists\" >/dev/tty1\n\
         elif ip link set \"vec$n\" name \"eth$n\" 2>/dev/null; then ip link property add dev \"eth$n\" altname \"vec$n\" 2>/dev/null\n\
         else echo \"uml: the guest's vec$n keeps its name: renaming it eth$n needs the ip command (iproute2) on the host\" >/dev/tty1; fi; done\n";
    let _ = Command::new("/bin/sh")
        .args(["-c", script])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .status();
}

/// Host-side settings on the kernel command line, read the way a distribution's init reads
/// them ([`crate::net::HostSettings`]): `systemd.hostname=` (the umid by default, else `uml`)
/// and `ip=ADDR::GW:MASK::IFACE:none` from `uml run --net …,ip=`. The interface named there is
/// the kernel's (`vecN` or `ethN`); after the renaming above, a `vecN` is `ethN`.
fn apply_host_settings(cmdline: &str, env: &[(OsString, OsString)]) {
    let settings = crate::net::HostSettings::from_cmdline(cmdline);
    let _ = nix::unistd::sethostname(settings.hostname.as_deref().unwrap_or("uml"));
    for (iface, address) in &settings.addresses {
        let dev = if Path::new("/sys/class/net").join(iface).exists() {
            iface.clone()
        } else {
            format!("eth{}", iface.trim_start_matches("vec"))
        };
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .status()
                .is_ok_and(|s| s.success())
        };
        let cidr = format!("{}/{}", address.addr, address.prefix);
        if !(ip(&["addr", "add", &cidr, "dev", &dev]) && ip(&["link", "set", &dev, "up"])) {
            eprintln!(
                "uml guest init: cannot give {dev} the address {cidr} (is iproute2 installed on the host?)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Config {
        Config {
            tmpfs: vec!["/tmp".into(), "/run".into()],
            writable: vec!["/home/a b/new\nline".into()],
            readonly: vec!["/tmp/proj".into()],
            env: vec![
                ("HOME".into(), "/root".into()),
                ("X".into(), "a=b\\c".into()),
            ],
            cwd: "/tmp/proj".into(),
            raw_input: true,
            raw_output: false,
            payload: Payload::Command(vec!["sh".into(), "-c".into(), "echo 'hi'\n".into()]),
        }
    }

    #[test]
    fn the_init_binary_is_found_beside_uml_or_in_a_packages_helper_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        let exe = bin.join("uml");
        assert_eq!(init_binary_beside(&exe), None);
        for dir in ["lib/umlkit", "libexec/umlkit", "bin"] {
            let d = tmp.path().join(dir);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join(INIT_BINARY), b"").unwrap();
            // Beside first, then libexec, then lib.
            assert_eq!(init_binary_beside(&exe), Some(d.join(INIT_BINARY)));
        }
        assert_eq!(
            split_word(b"__guest-init:0.1.0-00ff:/usr/bin/uml"),
            Some((&b"0.1.0-00ff"[..], &b"/usr/bin/uml"[..]))
        );
        // One that others could have put there is passed over.
        let shared = tmp.path().join("shared");
        fs::create_dir_all(shared.join("bin")).unwrap();
        fs::create_dir_all(shared.join("libexec/umlkit")).unwrap();
        fs::write(shared.join("libexec/umlkit").join(INIT_BINARY), b"").unwrap();
        let shared_exe = shared.join("bin/uml");
        assert!(init_binary_beside(&shared_exe).is_some());
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(shared.join("libexec"), fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(init_binary_beside(&shared_exe), None);
        fs::set_permissions(shared.join("libexec"), fs::Permissions::from_mode(0o755)).unwrap();
        // Another user's file (only root can make one here; `scripts/test --unit` may run as a
        // user, the whole suite runs as root).
        if nix::unistd::geteuid().is_root() {
            let planted = shared.join("libexec/umlkit").join(INIT_BINARY);
            nix::unistd::chown(&planted, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            assert_eq!(init_binary_beside(&shared_exe), None);
        }
        assert_eq!(split_word(b"__guest-init"), None);
        assert_eq!(split_word(b"__guest-init:nocolon"), None);
        assert_eq!(split_word(b"--help"), None);
    }

    #[test]
    fn a_config_survives_encoding_with_any_bytes_in_its_values() {
        let c = sample();
        let text = c.encode(&Interpreter {
            program: "/usr/bin/uml".into(),
            word: SUBCOMMAND.into(),
        });
        assert!(text.starts_with(b"#!/usr/bin/uml __guest-init\n"));
        assert_eq!(Config::parse(&text).unwrap(), c);
    }

    #[test]
    fn every_payload_round_trips() {
        for payload in [Payload::Shell, Payload::RespawningShell] {
            let c = Config {
                payload,
                ..sample()
            };
            let interpreter = Interpreter {
                program: "/u".into(),
                word: SUBCOMMAND.into(),
            };
            assert_eq!(Config::parse(&c.encode(&interpreter)).unwrap(), c);
        }
    }

    #[test]
    fn a_file_of_another_format_or_with_unknown_records_is_refused() {
        assert!(matches!(
            Config::parse(b"#!/bin/sh\necho hi\n"),
            Err(ConfigError::Format)
        ));
        let err = Config::parse(b"#!/u __guest-init\n# umlkit guest init 1\nbogus x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("bogus"), "{err}");
        let err = Config::parse(b"# umlkit guest init 1\nenv =x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("NAME=VALUE"), "{err}");
        assert!(Config::parse(b"# umlkit guest init 1\ncwd a\\x\n").is_err());
        assert!(Config::parse(b"# umlkit guest init 1\nrun command\n").is_err());
    }

    #[test]
    fn a_program_path_that_cannot_stand_in_a_shebang_line_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let spaced = dir.path().join("a b");
        fs::write(&spaced, "").unwrap();
        assert!(!usable_program(&spaced));
        let long = dir.path().join("x".repeat(250));
        fs::write(&long, "").unwrap();
        assert!(!usable_program(&long));
        assert!(!usable_program(&dir.path().join("missing")));
        let fine = dir.path().join("uml");
        fs::write(&fine, "").unwrap();
        assert!(usable_program(&fine));
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut with_header = FORMAT_LINE.as_bytes().to_vec();
            with_header.push(b'\n');
            with_header.extend_from_slice(&text);
            let _ = Config::parse(&with_header);
        }

        #[test]
        fn escaped_values_round_trip(v in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(unescape(&escape(&v)).unwrap(), v);
        }
    }
}
