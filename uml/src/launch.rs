//! Launching and supervising a UML kernel.
//!
//! [`Launch`] spawns the kernel with an argv built by the option model, learns that it booted
//! from its notify socket (`mconsole=notify:`), supervises it and collects its exit status.
//! [`DefaultGuest`] is the built-in guest of `uml run`: the host's `/` as a read-only hostfs
//! root, tmpfs where a shell needs to write, and either an interactive shell or one command
//! whose output and exit status come back to the host.
//!
//! Kernel facts this relies on (checked against the 6.1 kernel):
//! * `main()` calls `setsid()`, so the kernel must not be started as a process-group leader, and
//!   its helper processes share its process group: cleanup kills the group, not the pid.
//! * On a panic it sends SIGTERM to its own process group and aborts (SIGABRT); the instance
//!   directory stays behind.
//! * `/proc/exitcode` sets the exit status of a halt or poweroff.
//! * `conN` is the guest's `/dev/ttyN`; `null,fd:N` is a channel pair with no input that writes to
//!   host descriptor N; `console=ttyN` sends the kernel's own messages (the boot log) there.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::kernel::diagnosis::Diagnosis;
use crate::mconsole::{Notification, NotifyListener};

/// The message the built-in guest's init writes to `/proc/mconsole` once userspace is up.
pub const BOOTED_MESSAGE: &[u8] = b"umlkit: booted\n";

/// The most of a boot log that an error message quotes.
const LOG_TAIL_LINES: usize = 20;

/// Errors of launching and supervising a kernel.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "cannot run the UML kernel {} (install the user-mode-linux package, or pass --kernel PATH)",
        kernel.display()
    )]
    Kernel {
        kernel: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "umid \"{umid}\" is already in use by pid {pid} (choose another --umid, or stop that guest)"
    )]
    UmidInUse { umid: String, pid: u32 },
    #[error("cannot prepare {}", path.display())]
    Prepare {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen for the guest's notifications on {}", path.display())]
    Notify {
        path: PathBuf,
        #[source]
        source: crate::mconsole::Error,
    },
    #[error("the guest panicked: {message}{}", log_text(log_tail, diagnosis.as_deref()))]
    Panicked {
        message: String,
        log_tail: String,
        /// A known incompatibility of kernel and host that the boot log shows.
        diagnosis: Option<Box<Diagnosis>>,
    },
    #[error(
        "the kernel exited ({status}) before the guest booted{}",
        log_text(log_tail, diagnosis.as_deref())
    )]
    ExitedEarly {
        status: String,
        log_tail: String,
        diagnosis: Option<Box<Diagnosis>>,
    },
    #[error(
        "the guest did not boot within {after:?}; it was killed{}",
        log_text(log_tail, diagnosis.as_deref())
    )]
    BootTimeout {
        after: Duration,
        log_tail: String,
        diagnosis: Option<Box<Diagnosis>>,
    },
    #[error(
        "no login prompt showed on any of the guest's console lines within {after:?} (does the image run a getty? without --detach its console is this terminal); it was killed{}",
        log_text(log_tail, diagnosis.as_deref())
    )]
    NoLoginPrompt {
        after: Duration,
        log_tail: String,
        diagnosis: Option<Box<Diagnosis>>,
    },
    #[error("cannot prepare the guest's runtime files")]
    Runtime(#[source] crate::instance::InstanceError),
    #[error("waiting for the kernel failed")]
    Wait(#[source] io::Error),
}

impl LaunchError {
    /// The known incompatibility of kernel and host that made the boot fail, if the boot log
    /// shows one.
    pub fn diagnosis(&self) -> Option<&Diagnosis> {
        match self {
            LaunchError::Panicked { diagnosis, .. }
            | LaunchError::ExitedEarly { diagnosis, .. }
            | LaunchError::BootTimeout { diagnosis, .. }
            | LaunchError::NoLoginPrompt { diagnosis, .. } => diagnosis.as_deref(),
            _ => None,
        }
    }
}

/// What an error quotes of the boot log: the diagnosis and the line that shows it when the log
/// shows a known incompatibility (the tail is then a panic's call trace, which hides the cause),
/// else the last lines.
fn log_text(tail: &str, diagnosis: Option<&Diagnosis>) -> String {
    if let Some(d) = diagnosis {
        return format!("\n{d}");
    }
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- last lines of the boot log ---\n{tail}")
    }
}

/// Where the kernel's console and boot log go.
#[derive(Debug, Clone)]
pub enum Console {
    /// con0 reads and writes the launcher's stdin/stdout, con1 writes its stderr; the boot log
    /// goes to `log` (descriptor 3 of the kernel). With `stdin_as_text`, stdin (not a terminal)
    /// is copied through a pipe and its end is sent as the tty's EOF character (^D), because
    /// the kernel turns end of file on a console channel into a hangup, which a guest command
    /// that opens the line later never sees.
    Terminal { log: PathBuf, stdin_as_text: bool },
    /// Everything goes to `log`; stdin is /dev/null (a detached guest).
    Log { log: PathBuf },
}

impl Console {
    fn log(&self) -> &Path {
        match self {
            Console::Terminal { log, .. } | Console::Log { log } => log,
        }
    }
}

/// How to start one kernel.
#[derive(Debug, Clone)]
pub struct Launch {
    pub kernel: PathBuf,
    /// The kernel's argv (without the binary), as rendered by the option model. The launcher
    /// adds `mconsole=notify:` for its own socket.
    pub args: Vec<String>,
    pub umid: String,
    pub uml_dir: PathBuf,
    pub console: Console,
    /// The kernel's working directory: relative ubd paths resolve against it, and the kernel
    /// opens `root_fs` there by default, so it is a private directory, not the user's.
    pub cwd: PathBuf,
    /// Where the notify socket is bound.
    pub notify_socket: PathBuf,
}

/// The user a kernel runs as ([`Launch::spawn_child_as`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary group among them or not, as the user database says).
    pub groups: Vec<u32>,
}

/// A started kernel.
#[derive(Debug)]
pub struct Running {
    pub umid: String,
    pub pid: u32,
    kernel: PathBuf,
    child: Child,
    events: mpsc::Receiver<Notification>,
    log: PathBuf,
    panic: Option<String>,
    booted: bool,
    userspace_up: bool,
    status: Option<ExitStatus>,
    notify_socket: PathBuf,
    stdin_pipe: Option<std::process::ChildStdin>,
    _listener_stop: mpsc::Sender<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.notify_socket);
    }
}

/// Copies our stdin into the kernel's, then ends it with the EOF character: once after a
/// complete line, twice after a partial one (the first ^D only pushes the partial line).
fn copy_stdin_as_text(mut pipe: std::process::ChildStdin) {
    use std::io::Write;
    let mut stdin = io::stdin().lock();
    let mut buf = [0u8; 16 * 1024];
    let mut last = b'\n';
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                last = buf[n - 1];
                if pipe.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let eof: &[u8] = if last == b'\n' { b"\x04" } else { b"\x04\x04" };
    let _ = pipe.write_all(eof);
    // Keep the pipe open: closing it would hang up the guest's console.
    std::mem::forget(pipe);
}

impl Launch {
    /// Starts the kernel.
    ///
    /// # Errors
    /// [`LaunchError::UmidInUse`] when a live kernel owns the umid (the kernel itself would
    /// silently take a random one); [`LaunchError::Kernel`] when the binary cannot be run.
    pub fn spawn(&self) -> Result<Running, LaunchError> {
        self.check_umid()?;
        fs::create_dir_all(&self.uml_dir).map_err(prepare(&self.uml_dir))?;
        fs::create_dir_all(&self.cwd).map_err(prepare(&self.cwd))?;
        let _ = fs::remove_file(&self.notify_socket);
        let listener =
            NotifyListener::bind(&self.notify_socket).map_err(|source| LaunchError::Notify {
                path: self.notify_socket.clone(),
                source,
            })?;

        let log_path = self.console.log();
        let log = fs::File::create(log_path).map_err(prepare(log_path))?;
        let mut child = self.start(&log)?;
        drop(log);
        let stdin_pipe = child.stdin.take();

        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("uml-notify".into())
            .spawn(move || {
                let listener = listener;
                let forward = Forward::new();
                loop {
                    if matches!(stop_rx.try_recv(), Err(mpsc::TryRecvError::Disconnected)) {
                        return;
                    }
                    match listener.recv(Duration::from_millis(100)) {
                        Ok(Some(n)) => {
                            forward.send(&n);
                            if tx.send(n).is_err() {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => tracing::debug!("ignoring a bad notify datagram: {e}"),
                    }
                }
            })
            .map_err(prepare(&self.notify_socket))?;

        Ok(Running {
            umid: self.umid.clone(),
            pid: child.id(),
            kernel: self.kernel.clone(),
            child,
            events: rx,
            log: log_path.to_owned(),
            panic: None,
            booted: false,
            userspace_up: false,
            status: None,
            notify_socket: self.notify_socket.clone(),
            stdin_pipe,
            _listener_stop: stop_tx,
        })
    }
}

fn prepare(path: &Path) -> impl FnOnce(io::Error) -> LaunchError + '_ {
    move |source| LaunchError::Prepare {
        path: path.to_owned(),
        source,
    }
}

impl Launch {
    /// Starts the kernel for a caller that listens on [`Launch::notify_socket`] itself (a
    /// service that watches many guests on one socket): no listener is bound and nothing is
    /// forwarded. The kernel's output and boot log go to the console's log, stdin is
    /// /dev/null, and the kernel outlives the caller unless the caller kills it (dropping the
    /// child neither kills nor waits for it). The caller reaps the child for its exit status.
    ///
    /// # Errors
    /// As [`Launch::spawn`]: [`LaunchError::UmidInUse`], [`LaunchError::Prepare`],
    /// [`LaunchError::Kernel`].
    pub fn spawn_child(&self) -> Result<Child, LaunchError> {
        self.check_umid()?;
        fs::create_dir_all(&self.uml_dir).map_err(prepare(&self.uml_dir))?;
        fs::create_dir_all(&self.cwd).map_err(prepare(&self.cwd))?;
        let log_path = self.console.log();
        let log = fs::File::create(log_path).map_err(prepare(log_path))?;
        let log_only = Launch {
            console: Console::Log {
                log: log_path.to_owned(),
            },
            ..self.clone()
        };
        log_only.start(&log)
    }

    /// Starts the kernel as [`spawn_child`](Launch::spawn_child) does, but as another user
    /// (a privileged launcher starting a guest for a caller): the kernel gets `user`'s uid,
    /// gid and supplementary groups before it runs, so everything it opens on the host (its
    /// disks, the host files its guest sees through hostfs) is opened with that user's rights.
    /// `log` is the boot log, already open: nothing is created by path here, since the
    /// directories are the user's, who could put a symlink where a privileged process would
    /// write. The uml_dir and `cwd` must exist and be the user's.
    ///
    /// # Errors
    /// As [`spawn_child`](Launch::spawn_child).
    pub fn spawn_child_as(&self, log: fs::File, user: &RunAs) -> Result<Child, LaunchError> {
        self.check_umid()?;
        let log_only = Launch {
            console: Console::Log {
                log: self.console.log().to_owned(),
            },
            ..self.clone()
        };
        log_only.start_as(&log, Some(user))
    }

    /// The kernel itself would silently take a random umid when this one is in use.
    fn check_umid(&self) -> Result<(), LaunchError> {
        if let Ok(existing) = crate::instance::find(&self.uml_dir, &self.umid)
            && let (Some(pid), true) = (
                existing.pid,
                existing.pid.is_some_and(crate::instance::pid_alive),
            )
            && !matches!(existing.liveness, crate::instance::Liveness::Stale { .. })
        {
            return Err(LaunchError::UmidInUse {
                umid: self.umid.clone(),
                pid,
            });
        }
        Ok(())
    }

    /// Runs the kernel with its console set up and `log` as its descriptor 3.
    fn start(&self, log: &fs::File) -> Result<Child, LaunchError> {
        self.start_as(log, None)
    }

    /// [`start`](Launch::start), as `user` when one is given.
    fn start_as(&self, log: &fs::File, user: Option<&RunAs>) -> Result<Child, LaunchError> {
        let log_path = self.console.log();
        let mut args = self.args.clone();
        args.push(format!("mconsole=notify:{}", self.notify_socket.display()));

        let mut command = Command::new(&self.kernel);
        command.args(&args).current_dir(&self.cwd);
        match &self.console {
            Console::Terminal { stdin_as_text, .. } => {
                command
                    .stdin(if *stdin_as_text {
                        Stdio::piped()
                    } else {
                        Stdio::inherit()
                    })
                    .stdout(Stdio::inherit())
                    .stderr(Stdio::inherit());
            }
            Console::Log { .. } => {
                let out = log.try_clone().map_err(prepare(log_path))?;
                let err = log.try_clone().map_err(prepare(log_path))?;
                command.stdin(Stdio::null()).stdout(out).stderr(err);
            }
        }
        let log_fd = std::os::fd::AsRawFd::as_raw_fd(log);
        // SAFETY: between fork and exec only sigemptyset(3), pthread_sigmask(2), dup2(2) and
        // fcntl(2) run, all async-signal-safe, on a local sigset and plain descriptors. They
        // give the kernel an empty signal mask (the launcher blocks SIGINT/SIGTERM for its
        // signal thread, and a blocked SIGTERM would make the kernel unstoppable) and make the
        // log file its descriptor 3 (the boot log channel) without close-on-exec. `log_fd`
        // stays open in the parent until spawn returns.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                if libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if log_fd == 3 {
                    let flags = libc::fcntl(3, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(log_fd, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        if let Some(user) = user {
            let (uid, gid) = (user.uid, user.gid);
            let groups: Vec<libc::gid_t> = user.groups.clone();
            // SAFETY: between fork and exec only setgroups(2), setresgid(2) and setresuid(2)
            // run (as std's own Command::uid does), on memory allocated before the fork that
            // the child only reads. Groups go first and the uid last: each needs the privilege
            // the next one drops. All three ids are set, so none of root's is left to regain.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                        || libc::setresgid(gid, gid, gid) != 0
                        || libc::setresuid(uid, uid, uid) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        tracing::info!(kernel = %self.kernel.display(), ?args, "starting UML kernel");
        command.spawn().map_err(|source| LaunchError::Kernel {
            kernel: self.kernel.clone(),
            source,
        })
    }
}

/// The file name of the forward socket inside its directory.
const FORWARD_NAME: &str = "umld.notify";

/// Where a launcher forwards its guests' notify datagrams, unchanged: one well-known socket
/// per user, `$XDG_RUNTIME_DIR/umlkit/umld.notify`, or `/tmp/umlkit-<uid>/umld.notify` when
/// `XDG_RUNTIME_DIR` is unset, empty or not absolute (the XDG base directory specification
/// says to ignore a relative one), or when the result would be longer than a unix socket path
/// may be (107 bytes). Whoever watches the user's guests binds it (the desktop service does,
/// by default), and so learns of boots, panics and `/proc/mconsole` messages of guests it did
/// not start. This only computes the path; it never creates or binds anything.
pub fn forward_socket() -> PathBuf {
    let fallback =
        || PathBuf::from(format!("/tmp/umlkit-{}", nix::unistd::getuid())).join(FORWARD_NAME);
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if PathBuf::from(&dir).is_absolute() => {
            let path = PathBuf::from(dir).join("umlkit").join(FORWARD_NAME);
            if path.as_os_str().len() <= 107 {
                path
            } else {
                fallback()
            }
        }
        _ => fallback(),
    }
}

/// A forward socket is used only in a directory that is this user's alone: the fallback under
/// /tmp is predictable, and another user could have made it to read our guests' messages.
fn private_dir(socket: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    socket
        .parent()
        .and_then(|d| std::fs::symlink_metadata(d).ok())
        .is_some_and(|m| {
            m.is_dir() && m.uid() == nix::unistd::getuid().as_raw() && m.mode() & 0o022 == 0
        })
}

/// Passes the guest's notifications on to the user's forward socket ([`forward_socket`])
/// when someone listens there, so the desktop service learns of boots, panics and
/// `/proc/mconsole` messages of guests that `uml run` started. The service attributes a
/// datagram from the kernel's parent (this process) to that kernel's machine.
#[derive(Debug)]
struct Forward {
    socket: Option<std::os::unix::net::UnixDatagram>,
    target: PathBuf,
}

impl Forward {
    fn new() -> Forward {
        Forward {
            socket: std::os::unix::net::UnixDatagram::unbound().ok(),
            target: forward_socket(),
        }
    }

    fn send(&self, n: &Notification) {
        // Our own boot marker is an internal detail of the built-in guest.
        if matches!(n, Notification::User { data } if data == BOOTED_MESSAGE) {
            return;
        }
        let Some(socket) = &self.socket else { return };
        if !self.target.exists() || !private_dir(&self.target) {
            return;
        }
        match n.encode() {
            // Nobody listening, or a full queue: the service is an observer, never a gate.
            Ok(datagram) => {
                let _ = socket.send_to(&datagram, &self.target);
            }
            Err(e) => tracing::debug!("cannot re-encode a notification: {e}"),
        }
    }
}

impl Running {
    fn absorb(&mut self, n: Notification) {
        match n {
            Notification::Socket { .. } => self.booted = true,
            Notification::Panic { message } => {
                let message = message.trim_end_matches('\0').trim();
                self.panic = Some(crate::text::printable(message).into_owned());
            }
            Notification::User { data } => {
                if data == BOOTED_MESSAGE {
                    self.userspace_up = true;
                }
            }
            Notification::Hang => {}
        }
    }

    fn drain(&mut self) {
        while let Ok(n) = self.events.try_recv() {
            self.absorb(n);
        }
    }

    /// Waits until the kernel's mconsole is up (the notify socket's first message) and, with
    /// `userspace`, until the built-in guest's init reported [`BOOTED_MESSAGE`].
    ///
    /// # Errors
    /// A panic, an early exit, or the timeout (the guest is then killed); each with the tail
    /// of the boot log.
    pub fn wait_booted(&mut self, timeout: Duration, userspace: bool) -> Result<(), LaunchError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain();
            if let Some(message) = self.panic.clone() {
                self.kill();
                return Err(LaunchError::Panicked {
                    message,
                    log_tail: self.log_tail(),
                    diagnosis: self.diagnosis().map(Box::new),
                });
            }
            if self.booted && (!userspace || self.userspace_up) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait().map_err(LaunchError::Wait)? {
                self.status = Some(status);
                // A panic message may still be on its way.
                if let Ok(n) = self.events.recv_timeout(Duration::from_millis(100)) {
                    self.absorb(n);
                    self.drain();
                }
                if let Some(message) = self.panic.clone() {
                    return Err(LaunchError::Panicked {
                        message,
                        log_tail: self.log_tail(),
                        diagnosis: self.diagnosis().map(Box::new),
                    });
                }
                return Err(LaunchError::ExitedEarly {
                    status: describe_status(status),
                    log_tail: self.log_tail(),
                    diagnosis: self.diagnosis().map(Box::new),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                self.kill();
                return Err(LaunchError::BootTimeout {
                    after: timeout,
                    log_tail: self.log_tail(),
                    diagnosis: self.diagnosis().map(Box::new),
                });
            }
            if let Ok(n) = self
                .events
                .recv_timeout((deadline - now).min(Duration::from_millis(50)))
            {
                self.absorb(n);
            }
        }
    }

    /// Waits until a getty on one of the guest's pty lines shows a login prompt: a guest
    /// with its own init ([`DiskGuest`], detached) has booted to userspace, known without help
    /// from inside the image. Each line the kernel holds a host pty for is read (what is read
    /// there is gone; pressing Enter on the console brings a fresh prompt).
    ///
    /// # Errors
    /// As [`Running::wait_booted`]: a panic, an early exit, or the timeout (the guest is then
    /// killed).
    pub fn wait_login(&mut self, timeout: Duration) -> Result<(), LaunchError> {
        use std::collections::HashMap;
        use std::os::unix::fs::OpenOptionsExt;
        let start = Instant::now();
        self.wait_booted(timeout, false)?;
        let mut lines: HashMap<PathBuf, (fs::File, Vec<u8>)> = HashMap::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                self.kill();
                return Err(LaunchError::NoLoginPrompt {
                    after: timeout,
                    log_tail: self.log_tail(),
                    diagnosis: self.diagnosis().map(Box::new),
                });
            }
            // Still alive, not panicked: the same checks as the boot wait, without waiting.
            self.wait_booted(left, false)?;
            for pty in kernel_ptys(self.pid) {
                if lines.contains_key(&pty) {
                    continue;
                }
                if let Ok(f) = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_NOFOLLOW)
                    .open(&pty)
                {
                    lines.insert(pty, (f, Vec::new()));
                }
            }
            for (pty, (file, tail)) in &mut lines {
                loop {
                    match file.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            tail.extend_from_slice(&buf[..n]);
                            let excess = tail.len().saturating_sub(256);
                            tail.drain(..excess);
                        }
                        Err(_) => break,
                    }
                }
                if shows_login_prompt(tail) {
                    tracing::info!("login prompt on {}", pty.display());
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts copying our stdin to the guest (with [`Console::Terminal`]`{ stdin_as_text }`).
    ///
    /// Call it once the guest holds its console line open ([`Running::wait_booted`] with
    /// `userspace`): the kernel watches a console's input descriptor with edge-triggered epoll
    /// from the moment the line is opened, so input that is already waiting in the pipe then
    /// would never be read.
    pub fn feed_stdin(&mut self) {
        if let Some(pipe) = self.stdin_pipe.take() {
            let spawned = thread::Builder::new()
                .name("uml-stdin".into())
                .spawn(move || copy_stdin_as_text(pipe));
            if let Err(e) = spawned {
                tracing::warn!("cannot copy stdin to the guest: {e}");
            }
        }
    }

    /// Waits for the kernel to exit and returns how it ended.
    ///
    /// # Errors
    /// [`LaunchError::Wait`] when waitpid fails.
    pub fn wait(&mut self) -> Result<Outcome, LaunchError> {
        let status = match self.status {
            Some(s) => s,
            None => {
                let s = self.child.wait().map_err(LaunchError::Wait)?;
                self.status = Some(s);
                s
            }
        };
        // The panic notifier runs before the kernel aborts, so its datagram is already queued;
        // give the listener thread a moment to pass it on, but only when the exit was not clean.
        if status.code().is_none()
            && let Ok(n) = self.events.recv_timeout(Duration::from_millis(50))
        {
            self.absorb(n);
        }
        self.drain();
        // Whatever is left of the process group (helpers of a panicked kernel) goes too.
        crate::instance::kill_group_and_wait(self.pid, Duration::from_secs(3));
        Ok(Outcome {
            status,
            panic: self.panic.clone(),
        })
    }

    /// Sends SIGTERM to the kernel: it cleans up its instance directory and exits.
    pub fn terminate(&self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// Kills the kernel's whole process group and reaps it.
    pub fn kill(&mut self) {
        crate::instance::kill_group(self.pid);
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
        crate::instance::kill_group_and_wait(self.pid, Duration::from_secs(3));
    }

    /// The last lines of the boot log.
    pub fn log_tail(&self) -> String {
        read_tail(&self.log, LOG_TAIL_LINES)
    }

    /// The known incompatibility of kernel and host that the boot log shows, if any.
    pub fn diagnosis(&self) -> Option<Diagnosis> {
        diagnose_log(&self.log, &self.kernel)
    }

    /// Waits at most `timeout` for the kernel to exit; `None` when it still runs.
    ///
    /// # Errors
    /// [`LaunchError::Wait`] when waitpid fails.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<Outcome>, LaunchError> {
        let deadline = Instant::now() + timeout;
        while self.status.is_none() {
            if let Some(status) = self.child.try_wait().map_err(LaunchError::Wait)? {
                self.status = Some(status);
                break;
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.wait().map(Some)
    }

    /// Detaches: the kernel keeps running after this launcher exits.
    /// (Dropping a `Child` neither kills nor waits for it; no one listens on the notify socket
    /// any more, so it is removed.)
    pub fn detach(self) {
        drop(self);
    }
}

/// How a kernel ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: ExitStatus,
    /// The panic message, when the guest panicked.
    pub panic: Option<String>,
}

impl Outcome {
    /// The guest's exit code: what it wrote to `/proc/exitcode` on a clean halt.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// `exit status 3`, `killed by signal 6 (SIGABRT)`.
pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exit status {code}")
    } else if let Some(sig) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        format!("killed by signal {sig} ({name})")
    } else {
        status.to_string()
    }
}

/// The known incompatibility of `kernel` and this host that the boot log at `log` shows, if
/// any (see [`crate::kernel::diagnosis`]). Reads at most the log's last MiB: the line that
/// matters comes shortly before the panic.
pub fn diagnose_log(log: &Path, kernel: &Path) -> Option<Diagnosis> {
    let text = read_last(log, 1 << 20)?;
    // A bare command name (umld's default `linux`) is the one on PATH, as exec found it.
    let kernel = match kernel.to_str() {
        Some(name) if !name.contains('/') => crate::kernel::on_path(name),
        _ => None,
    }
    .unwrap_or_else(|| kernel.to_owned());
    let version = || {
        crate::kernel::Profile::read(&kernel)
            .ok()
            .map(|p| p.version)
    };
    // Profile the kernel only when there is something to name it in.
    crate::kernel::diagnosis::diagnose(&text, None)?;
    crate::kernel::diagnosis::diagnose(&text, version())
}

fn read_last(path: &Path, max: u64) -> Option<String> {
    let mut file = fs::File::open(path).ok()?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    file.seek(SeekFrom::Start(len.saturating_sub(max))).ok()?;
    let mut buf = Vec::new();
    file.take(max).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The last `lines` lines of a file, reading at most its last 64 KiB.
pub fn read_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    // Guest text, for a person's terminal: no escape sequences get through.
    crate::text::printable(&all[all.len().saturating_sub(lines)..].join("\n")).into_owned()
}

/// What the built-in guest runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// An interactive login shell on the user's terminal; the guest powers off when it exits.
    Shell,
    /// A login shell on a host pty that `uml console` attaches to, started again whenever it
    /// exits (detaching hangs the line up, which ends the shell), like a getty: the guest runs
    /// until it is shut down.
    RespawningShell,
    /// One command; its exit status becomes the kernel's.
    Command(Vec<String>),
}

/// The built-in guest of `uml run`: host `/` read-only over hostfs, tmpfs on the directories a
/// shell writes to, proc/sys/dev mounted, the payload in the user's working directory.
#[derive(Debug, Clone)]
pub struct DefaultGuest {
    pub payload: Payload,
    /// The guest command's working directory (the host path, which is the same in the guest).
    pub cwd: PathBuf,
    /// Environment for the payload.
    pub env: Vec<(String, String)>,
    /// Host directories mounted read-write at the same path in the guest.
    pub writable: Vec<PathBuf>,
    /// Whether the host's stdin and stdout are terminals; if not, the guest's tty is made raw
    /// so bytes pass unchanged (no echo of piped input, no `\r` added to output).
    pub stdin_tty: bool,
    pub stdout_tty: bool,
}

/// Directories that get a tmpfs, so a shell and ordinary tools can write.
pub const TMPFS_DIRS: &[&str] = &[
    "/tmp",
    "/run",
    "/var/tmp",
    "/var/log",
    "/var/cache",
    "/var/lib/sudo",
];

/// `'...'` quoting for sh.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=+:,@%".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl DefaultGuest {
    /// The kernel arguments of the built-in guest, before any the user adds.
    pub fn kernel_args(&self, init: &Path, mem: &str, umid: &str, uml_dir: &Path) -> Vec<String> {
        vec![
            format!("mem={mem}"),
            "root=/dev/root".into(),
            "rootfstype=hostfs".into(),
            "rootflags=/".into(),
            "ro".into(),
            format!("init={}", init.display()),
            // Debian's default for con1-15 does not parse; silence the lines we don't use.
            "con=null".into(),
            "con0=fd:0,fd:1".into(),
            "con1=null,fd:2".into(),
            "con2=null,fd:3".into(),
            "console=tty2".into(),
            "quiet".into(),
            format!("umid={umid}"),
            format!("uml_dir={}", uml_dir.display()),
        ]
    }

    /// The init script (runs as the guest's pid 1).
    pub fn init_script(&self) -> String {
        let mut s = String::from("#!/bin/sh\n# init of a guest started by `uml run`\n");
        s.push_str(
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nexport PATH\n",
        );
        s.push_str("mount -t proc proc /proc\nmount -t sysfs sysfs /sys\n");
        s.push_str("mount -t devtmpfs devtmpfs /dev 2>/dev/null\n");
        s.push_str("mkdir -p /dev/pts /dev/shm 2>/dev/null\n");
        s.push_str("mount -t devpts -o gid=5,mode=620 devpts /dev/pts 2>/dev/null\n");
        s.push_str("mount -t tmpfs tmpfs /dev/shm 2>/dev/null\n");
        for dir in TMPFS_DIRS {
            s.push_str(&format!(
                "[ -d {dir} ] && mount -t tmpfs -o mode=1777 tmpfs {dir}\n"
            ));
        }
        // Host directories that must stay visible: the writable ones, and the working
        // directory when a tmpfs above hid it (a project under /tmp). hostfs takes the host
        // path as its mount data.
        let hidden = |p: &Path| TMPFS_DIRS.iter().any(|t| p.starts_with(t));
        for dir in &self.writable {
            let d = sh_quote(&dir.to_string_lossy());
            s.push_str(&format!(
                "mkdir -p {d} 2>/dev/null; mount -t hostfs -o {d} hostfs {d}\n"
            ));
        }
        if hidden(&self.cwd) && !self.writable.iter().any(|w| self.cwd.starts_with(w)) {
            let d = sh_quote(&self.cwd.to_string_lossy());
            s.push_str(&format!(
                "mkdir -p {d} 2>/dev/null; mount -r -t hostfs -o {d} hostfs {d}\n"
            ));
        }
        // The vector driver names interfaces vec<n>, the legacy one eth<n> (uml::net): the
        // same name on every kernel, with the vector name kept as an altname.
        s.push_str(
            "for i in /sys/class/net/vec*; do [ -e \"$i\" ] || continue; n=${i##*/vec}\n\
             if [ -e \"/sys/class/net/eth$n\" ]; then echo \"uml: the guest's vec$n keeps its name: eth$n exists\" >/dev/tty1\n\
             elif ip link set \"vec$n\" name \"eth$n\" 2>/dev/null; then ip link property add dev \"eth$n\" altname \"vec$n\" 2>/dev/null\n\
             else echo \"uml: the guest's vec$n keeps its name: renaming it eth$n needs the ip command (iproute2) on the host\" >/dev/tty1; fi; done\n",
        );
        // Host-side settings on the kernel command line, read the way a distribution's init
        // reads them: `ip=ADDR::GW:MASK::IFACE:none` (uml run --net …,ip=) and
        // `systemd.hostname=` (the umid by default).
        s.push_str(
            "hostname uml 2>/dev/null\n\
             for w in $(cat /proc/cmdline); do case $w in\n\
             systemd.hostname=*) hostname \"${w#*=}\" 2>/dev/null;;\n\
             ip=*) IFS=: read -r a _ gw mask _ dev _ <<EOF\n${w#ip=}\nEOF\n\
             [ -e \"/sys/class/net/$dev\" ] || dev=\"eth${dev#vec}\"\n\
             ip addr add \"$a/$mask\" dev \"$dev\" && ip link set \"$dev\" up;;\n\
             esac; done\n",
        );
        // ctrl-alt-del (mconsole `cad`, `uml shutdown`) becomes SIGINT to init: power off.
        s.push_str("echo 0 > /proc/sys/kernel/ctrl-alt-del\n");
        s.push_str(
            "trap 'kill -TERM $child 2>/dev/null; sync; poweroff -f >/dev/null 2>&1' INT TERM\n",
        );
        // Hold the console line open for the guest's whole life: its input buffer is flushed
        // when the last opener closes it.
        s.push_str("exec 3<>/dev/tty0\n");
        if !self.stdin_tty {
            // Input is text from a pipe, ended by ^D: no echo, no editing characters.
            s.push_str("stty -echo -icrnl -isig -iexten -ixon erase undef kill undef werase undef lnext undef rprnt undef eol undef eol2 undef <&3 2>/dev/null\n");
        }
        if !self.stdout_tty {
            s.push_str(
                "stty -opost < /dev/tty0 2>/dev/null\nstty -opost < /dev/tty1 2>/dev/null\n",
            );
        }
        for (k, v) in &self.env {
            s.push_str(&format!("{k}={}; export {k}\n", sh_quote(v)));
        }
        s.push_str(&format!(
            "cd {} 2>/dev/null || cd /\n",
            sh_quote(&self.cwd.to_string_lossy())
        ));
        s.push_str(&format!(
            "printf '{}' > /proc/mconsole 2>/dev/null\n",
            String::from_utf8_lossy(BOOTED_MESSAGE).replace('\n', "\\n")
        ));
        // The payload runs as an asynchronous list so that init's trap can act on ctrl-alt-del
        // at once; POSIX starts such a list with SIGINT and SIGQUIT ignored, and everything it
        // runs would inherit that (Ctrl-C could not stop a job). `env --default-signal`
        // restores them.
        let run = match &self.payload {
            Payload::Shell => "shell=${SHELL:-/bin/sh}; [ -x \"$shell\" ] || shell=/bin/sh\n\
                 setsid -c -w env --default-signal=INT,QUIT \"$shell\" -l </dev/tty0 >/dev/tty0 2>&1 &\n"
                .to_owned(),
            Payload::RespawningShell => "shell=${SHELL:-/bin/sh}; [ -x \"$shell\" ] || shell=/bin/sh\n\
                 (while :; do setsid -c -w env --default-signal=INT,QUIT \"$shell\" -l </dev/tty0 >/dev/tty0 2>&1; sleep 0.2; done) &\n"
                .to_owned(),
            Payload::Command(argv) => {
                let words: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
                let ctty = if self.stdin_tty { "-c " } else { "" };
                format!(
                    "setsid {ctty}-w env --default-signal=INT,QUIT {} </dev/tty0 >/dev/tty0 2>/dev/tty1 &\n",
                    words.join(" ")
                )
            }
        };
        s.push_str(&run);
        s.push_str("child=$!\nwait $child\nstatus=$?\n");
        s.push_str("echo $status > /proc/exitcode\nsync\npoweroff -f >/dev/null 2>&1\n");
        s
    }

    /// Writes the guest's init, executable, to `path`: the compiled init
    /// ([`crate::guest_init`]) when a `uml` binary can run it ([`crate::guest_init::program`]),
    /// else the init script.
    ///
    /// # Errors
    /// [`LaunchError::Prepare`] when it cannot be written.
    pub fn write_init(&self, path: &Path) -> Result<(), LaunchError> {
        self.write_init_with(path, crate::guest_init::program().as_deref())
    }

    /// Writes the guest's init to `path`: the compiled init run by `program` (a `uml` binary),
    /// or the init script with `None`.
    ///
    /// # Errors
    /// [`LaunchError::Prepare`] when it cannot be written.
    pub fn write_init_with(&self, path: &Path, program: Option<&Path>) -> Result<(), LaunchError> {
        let err = |source| LaunchError::Prepare {
            path: path.to_owned(),
            source,
        };
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return Err(err(io::Error::other("not a file path")));
        };
        let text = match program {
            Some(program) => crate::guest_init::Config::from_guest(self).encode(program),
            None => self.init_script().into_bytes(),
        };
        // In a directory of this user's alone, as a new file: never through a symlink that
        // someone planted where the init goes.
        crate::instance::create_file(dir, name, &text, 0o755).map_err(LaunchError::Runtime)?;
        Ok(())
    }
}

/// The console line that carries a [`DiskGuest`]'s kernel log (`console=tty15`): the highest
/// one, which neither systemd (getty on tty1) nor sysvinit (tty1-6) runs a login on.
pub const DISK_GUEST_LOG_LINE: u32 = 15;

/// A guest that boots a disk image as `/` with the image's own init (systemd, sysvinit):
/// `uml run --root`, umld's Launch `root`.
///
/// Console lines: con0 is the launcher's terminal (or, detached, a host pty that
/// `uml console NAME` attaches to), where a `uml image create` image runs a getty; every other
/// line is a host pty once the guest opens it (systemd's getty on tty1 is con1: a second
/// login with `uml console NAME con1`); the kernel's log goes to con15, kept in the boot log.
#[derive(Debug, Clone)]
pub struct DiskGuest {
    /// The root disk's kernel argument, `ubd0=FILE` or `ubd0=COW,BASE` ([`disk_arg`] unit 0).
    pub root: String,
    /// The guest's hostname (`systemd.hostname=`; the umid unless the user says otherwise).
    pub hostname: String,
    /// con0 on a host pty instead of the launcher's stdin and stdout.
    pub detached: bool,
}

impl DiskGuest {
    /// The kernel arguments, before disks, networks and the user's own. `noreboot` where the
    /// kernel has it (the option table; 6.1.176 and 7.x): a reboot, which is what systemd makes of ctrl-alt-del, then ends
    /// the kernel instead of booting the guest again.
    pub fn kernel_args(
        &self,
        mem: &str,
        umid: &str,
        uml_dir: &Path,
        profile: &crate::kernel::Profile,
    ) -> Vec<String> {
        let mut args = vec![
            format!("mem={mem}"),
            self.root.clone(),
            "root=/dev/ubda".into(),
            "rw".into(),
            "con=pts".into(),
            if self.detached {
                "con0=pts".into()
            } else {
                "con0=fd:0,fd:1".into()
            },
            format!("con{DISK_GUEST_LOG_LINE}=null,fd:3"),
            format!("console=tty{DISK_GUEST_LOG_LINE}"),
            "quiet".into(),
            format!("umid={umid}"),
            format!("uml_dir={}", uml_dir.display()),
            format!("systemd.hostname={}", self.hostname),
        ];
        if crate::options::by_name("noreboot")
            .is_some_and(|o| o.presence(profile) == crate::options::Presence::Present)
        {
            args.push("noreboot".into());
        }
        args
    }
}

/// The pid of a process that holds a lock on `path`: a UML kernel locks every disk file it
/// opens (`os_lock_file`), so a guest cannot boot a disk another guest uses (the kernel would
/// fail with errno 11 and panic at mounting its root).
pub fn disk_locker(path: &Path) -> Option<i32> {
    let file = fs::File::open(path).ok()?;
    let mut lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETLK(&mut lock)).ok()?;
    (lock.l_type != libc::F_UNLCK as libc::c_short).then_some(lock.l_pid)
}

/// The host ptys a running kernel holds (`/dev/ptmx` descriptors): the console and serial
/// lines the guest has opened on `pts` channels. Only these are ever opened on a guest's
/// behalf; a device name a guest prints is not trusted.
pub fn kernel_ptys(pid: u32) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return found;
    };
    for fd in dir.flatten().take(4096) {
        if fs::read_link(fd.path()).ok().as_deref() != Some(Path::new("/dev/ptmx")) {
            continue;
        }
        let info = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        if let Some(idx) = info
            .lines()
            .find_map(|l| l.strip_prefix("tty-index:"))
            .and_then(|i| i.trim().parse::<u32>().ok())
        {
            found.push(PathBuf::from(format!("/dev/pts/{idx}")));
        }
    }
    found
}

/// Whether console output ends in a login prompt (`web1 login: `).
fn shows_login_prompt(tail: &[u8]) -> bool {
    let text = String::from_utf8_lossy(tail);
    text.trim_end_matches([' ', '\0']).ends_with("login:")
}

/// The directory where umlkit keeps a launch's runtime files (init script, boot log, notify
/// socket): `<uml_dir>/.umlkit`, or a directory under /tmp when that would make the notify
/// socket's path longer than a unix socket allows (107 bytes).
pub fn runtime_dir(uml_dir: &Path, umid: &str) -> PathBuf {
    let preferred = uml_dir.join(".umlkit");
    let socket = preferred.join(format!("{umid}.notify"));
    if socket.as_os_str().len() <= 107 {
        preferred
    } else {
        PathBuf::from(format!("/tmp/umlkit-{}", nix::unistd::getuid()))
    }
}

/// Removes the init scripts and boot logs (`UMID.init`, `UMID.log`) in a runtime directory
/// whose guests have ended: a detached guest's stay while it runs. A file is left alone while
/// an instance of its umid is alive or starting, and while it is younger than a minute (a
/// launch that has not started its kernel yet). Symlinks and other files are never touched.
pub fn sweep_runtime_dir(rt: &Path, uml_dir: &Path) {
    let Ok(dir) = fs::read_dir(rt) else { return };
    let now = std::time::SystemTime::now();
    for entry in dir.flatten().take(10_000) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(umid) = name
            .strip_suffix(".init")
            .or_else(|| name.strip_suffix(".log"))
        else {
            continue;
        };
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let young = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_none_or(|age| age < Duration::from_secs(60));
        if !meta.file_type().is_file() || young {
            continue;
        }
        let alive = crate::instance::find(uml_dir, umid).is_ok_and(|i| {
            !matches!(
                i.refresh().liveness,
                crate::instance::Liveness::Stale { .. }
            )
        });
        if !alive {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A umid for a guest that was not given one: `run-` and six characters.
pub fn fresh_umid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let mut n = h.finish();
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::from("run-");
    for _ in 0..6 {
        s.push(alphabet[(n % alphabet.len() as u64) as usize] as char);
        n /= alphabet.len() as u64;
    }
    s
}

/// A disk in `uml run`'s vocabulary, `FILE`, `FILE:ro`, `COW:BASE` or `COW:BASE:ro`, as the
/// kernel argument `ubd<unit>[r]=<file>[,<base>]`. Relative paths are taken against
/// `relative_to`, and refused without one (a service has no meaningful working directory: the
/// kernel would look in its own). The error names the spec and what is wrong with it.
pub fn disk_arg(unit: usize, spec: &str, relative_to: Option<&Path>) -> Result<String, String> {
    if unit > 15 {
        return Err(format!("disk {spec}: at most 16 disks (ubda to ubdp)"));
    }
    let mut fields: Vec<&str> = spec.split(':').collect();
    let read_only = fields.last() == Some(&"ro");
    if read_only || fields.last() == Some(&"rw") {
        fields.pop();
    }
    let absolute = |f: &str| -> Result<PathBuf, String> {
        let p = Path::new(f);
        match (p.is_absolute(), relative_to) {
            (true, _) => Ok(p.to_owned()),
            (false, Some(base)) => Ok(base.join(p)),
            (false, None) => Err(format!(
                "disk {spec:?}: {f} is a relative path; give an absolute one"
            )),
        }
    };
    let files: Vec<PathBuf> = match fields.as_slice() {
        [file] if !file.is_empty() => vec![absolute(file)?],
        [cow, base] if !cow.is_empty() && !base.is_empty() => vec![absolute(cow)?, absolute(base)?],
        _ => {
            return Err(format!(
                "disk {spec:?}: expected FILE, FILE:ro, COW:BASE or COW:BASE:ro"
            ));
        }
    };
    for f in &files {
        let s = f.to_string_lossy();
        if s.contains(',') || s.contains(':') {
            return Err(format!(
                "disk {spec:?}: the kernel splits disk paths at ',' and ':', so {s:?} cannot be used; rename it or use a symlink"
            ));
        }
    }
    // A plain disk must exist (the kernel would fail the open); a COW pair is the kernel's
    // to create or check.
    if let [file] = files.as_slice()
        && !file.exists()
    {
        return Err(format!("disk {spec:?}: {} does not exist", file.display()));
    }
    let flags = if read_only { "r" } else { "" };
    let value: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    Ok(format!("ubd{unit}{flags}={}", value.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_socket_lives_in_the_runtime_dir_or_a_per_user_tmp_dir() {
        let path = forward_socket();
        assert!(path.ends_with("umld.notify"), "{}", path.display());
        assert!(path.is_absolute());
        assert!(path.as_os_str().len() <= 107);
    }

    #[test]
    fn sh_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(sh_quote("make"), "make");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn a_disk_guest_boots_its_image_as_root_with_noreboot_and_the_hostname() {
        use crate::kernel::{Profile, Version};
        let guest = DiskGuest {
            root: "ubd0=/i/web1.img".into(),
            hostname: "web1".into(),
            detached: true,
        };
        let new = guest.kernel_args(
            "256M",
            "web1",
            Path::new("/u"),
            &Profile::assumed(Version::new(7, 2, 13)),
        );
        let old = guest.kernel_args(
            "256M",
            "web1",
            Path::new("/u"),
            &Profile::assumed(Version::new(6, 1, 176)),
        );
        for args in [&new, &old] {
            for want in [
                "ubd0=/i/web1.img",
                "root=/dev/ubda",
                "rw",
                "con0=pts",
                "systemd.hostname=web1",
                "umid=web1",
            ] {
                assert!(
                    args.iter().any(|a| a == want),
                    "{want} missing from {args:?}"
                );
            }
            assert!(!args.iter().any(|a| a.starts_with("init=")), "{args:?}");
        }
        // 6.1.176 has noreboot too (its --help lists it; it leaves the word for init, which
        // systemd as pid 1 ignores).
        assert!(new.iter().any(|a| a == "noreboot"), "{new:?}");
        assert!(old.iter().any(|a| a == "noreboot"), "{old:?}");
    }

    #[test]
    fn fresh_umids_fit_the_kernel_limit_and_differ() {
        let a = fresh_umid();
        let b = fresh_umid();
        assert!(a.len() <= 63);
        assert_ne!(a, b);
    }

    #[test]
    fn runtime_dir_falls_back_when_the_socket_path_would_be_too_long() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(100)));
        assert!(
            runtime_dir(&long, "g")
                .to_string_lossy()
                .starts_with("/tmp/umlkit-")
        );
        assert_eq!(
            runtime_dir(Path::new("/h/.uml"), "g"),
            Path::new("/h/.uml/.umlkit")
        );
    }
}
