//! Whether a running guest is paused.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use super::*;

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
/// be read or `socket` is no socket.
///
/// The socket the kernel waits on is identified only when it waits on one: by the file it is
/// bound to (the kernel's socket diagnostics, an exact query), else through the namespace's
/// socket table, read then and once. A running guest costs five small reads, where each look
/// read the whole table (with 2,000 sockets on the host, about a millisecond per guest, twice
/// a second for every guest umld follows).
fn blocked_on_mconsole(pid: u32, socket: &Path) -> Option<bool> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let file = fs::symlink_metadata(socket).ok()?;
    if !file.file_type().is_socket() {
        return None;
    }
    let want = (
        nix::sys::stat::major(file.dev()),
        nix::sys::stat::minor(file.dev()),
        file.ino(),
    );
    let mut table: Option<HashSet<u64>> = None;
    let mut is_mconsole = |inode: u64| {
        // A stacking filesystem (overlayfs) may number the file one way in `stat` and another
        // in the socket's: no match is checked against the table.
        if procfs::same_netns(pid) == Some(true) && sock_diag::bound_file_of(inode) == Some(want) {
            return true;
        }
        table
            .get_or_insert_with(|| {
                let sockets = UnixSockets::read();
                let sockets = sockets.seen_by(pid);
                sockets.inodes_of(socket).iter().copied().collect()
            })
            .contains(&inode)
    };
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
            if inode.is_some_and(&mut is_mconsole) {
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
