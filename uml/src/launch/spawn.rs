//! Starting the kernel: the instance and runtime directories, the notify socket, the boot log,
//! the process group, and the user it runs as.

use super::*;

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
        if let Some(existing) = crate::instance::find_existing(&self.uml_dir, &self.umid)
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
        // Made before the fork: the child only hands it to the kernel.
        let cpu_set = self
            .cpu
            .filter(|&cpu| cpu < usize::try_from(libc::CPU_SETSIZE).unwrap_or(0))
            .map(|cpu| {
                // SAFETY: cpu_set_t is a plain bit array, valid all zeros; CPU_SET sets one bit
                // within it (the number was checked against its size).
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    set
                }
            });
        let aslr_off = self.aslr_off;
        // SAFETY: between fork and exec only sigemptyset(3), pthread_sigmask(2), dup2(2),
        // fcntl(2), sched_setaffinity(2) and personality(2) run, all async-signal-safe, on a
        // local sigset, a CPU set made before the fork and plain descriptors. They give the
        // kernel an empty signal mask (the launcher blocks SIGINT/SIGTERM for its signal
        // thread, and a blocked SIGTERM would make the kernel unstoppable), make the log file
        // its descriptor 3 (the boot log channel) without close-on-exec, confine it to its
        // CPU, and turn randomization off for a kernel that would re-exec itself to do so.
        // `log_fd` stays open in the parent until spawn returns.
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
                // Inherited by every thread and process the kernel starts. A CPU that went
                // offline since it was chosen leaves the kernel where the host puts it.
                if let Some(set) = &cpu_set {
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set);
                }
                if aslr_off {
                    // PER_LINUX (0) with ADDR_NO_RANDOMIZE, what the kernel itself asks for.
                    libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong);
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
        tracing::info!(kernel = %self.kernel.display(), ?args, host_cpu = ?self.cpu, "starting UML kernel");
        command.spawn().map_err(|source| LaunchError::Kernel {
            kernel: self.kernel.clone(),
            source,
        })
    }
}
