//! A started kernel: its notifications, stdin, and how it ended (boot, panic, exit status),
//! and the boot log read for an error message.

use super::*;

/// A started kernel.
#[derive(Debug)]
pub struct Running {
    pub umid: String,
    pub pid: u32,
    pub(super) kernel: PathBuf,
    pub(super) child: Child,
    pub(super) events: mpsc::Receiver<Notification>,
    pub(super) log: PathBuf,
    pub(super) panic: Option<String>,
    pub(super) booted: bool,
    pub(super) userspace_up: bool,
    pub(super) status: Option<ExitStatus>,
    pub(super) notify_socket: PathBuf,
    pub(super) stdin_pipe: Option<std::process::ChildStdin>,
    pub(super) _listener_stop: mpsc::Sender<()>,
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
