//! Stopping a guest, gently first, and killing what is left of it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// How [`shutdown`] ended. Every step is told from facts: the kernel's process is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownStep {
    /// The guest powered off after ctrl-alt-del.
    CtrlAltDel,
    /// The guest's init turned ctrl-alt-del into a reboot (systemd does; so does the kernel
    /// when init does not take ctrl-alt-del over) and the kernel restarted in the same
    /// process. It was stopped at the restart: its disks were synced and unmounted by then,
    /// and the new boot had not mounted them again.
    Rebooted,
    /// The guest ignored ctrl-alt-del and stopped after mconsole `halt`.
    Halt,
    /// It did not answer; SIGTERM to the kernel made it clean up and exit.
    Terminate,
    /// Nothing else worked; its whole process group was killed.
    Kill,
}

/// One process for good: a pid and when it started (a pid is reused, the pair is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Process {
    pid: u32,
    start_ticks: u64,
}

impl Process {
    fn of(pid: u32) -> Option<Process> {
        let stat = ProcStat::read(pid)?;
        (!stat.is_dead()).then_some(Process {
            pid,
            start_ticks: stat.start_ticks,
        })
    }

    /// Whether this very process still runs (a zombie does not).
    fn alive(&self) -> bool {
        ProcStat::read(self.pid).is_some_and(|s| !s.is_dead() && s.start_ticks == self.start_ticks)
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Ok(pid) = i32::try_from(self.pid)
            && pid > 1
            && self.alive()
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }
}

/// What the kernel did while [`shutdown`] waited.
enum Outcome {
    Gone,
    /// Same process, but its instance directory or socket was made anew: the kernel
    /// re-executed itself for a reboot.
    Restarted,
    StillThere,
}

/// (st_dev, st_ino) of a file.
type FileId = (u64, u64);

/// The [`FileId`] of a file, without following a symlink.
fn identity(path: &Path) -> Option<FileId> {
    fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Waits at most `timeout` for `kernel` to exit, watching for a restart: the same process
/// with a new instance directory or a new mconsole socket (`before`: the identities of both
/// when the shutdown started). A kernel removes its directory at any exit (umid.c), so the
/// directory going away alone tells nothing; coming back with another inode does.
fn watch_exit(
    instance: &Instance,
    kernel: Process,
    before: (Option<FileId>, Option<FileId>),
    timeout: Duration,
) -> Outcome {
    let deadline = Instant::now() + timeout;
    let socket = instance.mconsole_path();
    let changed = |now: Option<FileId>, then: Option<FileId>| now.is_some() && now != then;
    // A file system may give the new socket the old one's inode number: then only the gap
    // between the two tells (the socket is gone, then there again).
    let mut socket_went = false;
    loop {
        if !kernel.alive() {
            return Outcome::Gone;
        }
        let now = identity(&socket);
        if changed(identity(&instance.dir), before.0)
            || changed(now, before.1)
            || (socket_went && now.is_some())
        {
            return Outcome::Restarted;
        }
        socket_went |= now.is_none();
        if Instant::now() >= deadline {
            return Outcome::StillThere;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `kernel` has exited, at most `timeout`.
fn wait_exit(kernel: Process, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while kernel.alive() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Stops a guest, gently first: `cad` and up to `grace` for it to exit; then `halt` and a few
/// seconds; then SIGTERM to the kernel (it cleans up and exits); then SIGKILL to its process
/// group (the kernel's helper processes survive a SIGKILL of the main pid alone).
/// A paused guest is resumed first, since a stopped UML cannot run ctrl-alt-del.
///
/// A guest that reboots instead of powering off (its kernel restarts in the same process) is
/// stopped at the restart: `halt` to the new boot's mconsole, or SIGTERM.
///
/// Every request has a deadline, so a guest that does not read its mconsole socket costs a
/// few seconds before the signals. Signals go only to the process proven to serve this
/// instance when the shutdown started (the same pid and start time, holding the instance's
/// mconsole socket), never to whatever a pid file names.
///
/// # Errors
/// [`InstanceError::NotRunning`] when it was not proven running to begin with;
/// [`InstanceError::StillRunning`] when even SIGKILL did not end it.
pub fn shutdown(instance: &Instance, grace: Duration) -> Result<ShutdownStep, InstanceError> {
    let not_running = |reason: String| InstanceError::NotRunning {
        umid: instance.umid.clone(),
        reason,
    };
    // Prove it now, whatever the caller was told earlier.
    let now = instance.refresh();
    let pid = now
        .pid
        .filter(|_| now.is_running() && instance.pid.is_none_or(|p| Some(p) == now.pid))
        .ok_or_else(|| not_running(now.liveness_text()))?;
    let kernel = Process::of(pid).ok_or_else(|| not_running(format!("pid {pid} exited")))?;
    let short = Duration::from_secs(2);
    let before = (identity(&now.dir), identity(&now.mconsole_path()));
    // A guest that does not take a request within its deadline (stopped by a signal, or not
    // reading its socket) gets no more: the signals follow at once.
    let deaf = |r: &Result<(), mconsole::Error>| matches!(r, Err(mconsole::Error::Timeout { .. }));
    if let Ok(client) = now.client(short) {
        // A stopped UML answers every command inline but runs nothing else; resume it.
        if deaf(&client.go()) {
            return signal_and_wait(instance, kernel, grace);
        }
        if client.cad().is_ok() {
            match watch_exit(&now, kernel, before, grace) {
                Outcome::Gone => return Ok(ShutdownStep::CtrlAltDel),
                Outcome::Restarted => return stop_restarted(&now, kernel),
                Outcome::StillThere => {}
            }
        }
        let again = now.refresh();
        if again.pid == Some(pid)
            && let Ok(client) = again.client(short)
        {
            let _ = client.go();
            if !deaf(&client.halt()) && wait_exit(kernel, Duration::from_secs(5)) {
                return Ok(ShutdownStep::Halt);
            }
        }
    }
    signal_and_wait(instance, kernel, grace)
}

/// The kernel restarted (a reboot): halt the new boot through its mconsole as soon as it
/// answers, else SIGTERM; it has synced its disks before the restart, and the new boot has
/// not mounted them yet.
fn stop_restarted(instance: &Instance, kernel: Process) -> Result<ShutdownStep, InstanceError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while kernel.alive() && Instant::now() < deadline {
        let again = instance.refresh();
        if again.pid == Some(kernel.pid)
            && let Ok(client) = again.client(Duration::from_secs(1))
            && client.halt().is_ok()
        {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    if wait_exit(kernel, Duration::from_secs(5)) {
        return Ok(ShutdownStep::Rebooted);
    }
    signal_and_wait(instance, kernel, Duration::from_secs(5)).map(|step| match step {
        ShutdownStep::Terminate => ShutdownStep::Rebooted,
        other => other,
    })
}

/// SIGTERM (and SIGCONT, for a kernel someone stopped) to the kernel, then SIGKILL to its
/// process group.
fn signal_and_wait(
    instance: &Instance,
    kernel: Process,
    grace: Duration,
) -> Result<ShutdownStep, InstanceError> {
    use nix::sys::signal::Signal;
    kernel.signal(Signal::SIGTERM);
    kernel.signal(Signal::SIGCONT);
    if wait_exit(kernel, Duration::from_secs(5)) {
        return Ok(ShutdownStep::Terminate);
    }
    if kernel.alive() {
        kill_group(kernel.pid);
    }
    if wait_exit(kernel, Duration::from_secs(5)) {
        return Ok(ShutdownStep::Kill);
    }
    Err(InstanceError::StillRunning {
        umid: instance.umid.clone(),
        pid: kernel.pid,
        after: grace,
    })
}

/// SIGKILL to the process group of a UML kernel (its pid: the kernel calls `setsid()`).
/// False when the group has no process left, not even a zombie (ESRCH).
pub fn kill_group(pid: u32) -> bool {
    match i32::try_from(pid) {
        Ok(p) if p > 1 => {
            nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            ) != Err(nix::errno::Errno::ESRCH)
        }
        _ => false,
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
        // An empty group (the usual end of a guest) needs no scan of every process.
        if !kill_group(pgid) || !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}
