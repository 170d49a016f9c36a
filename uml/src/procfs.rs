//! What umlkit reads of a host process in `/proc`: its stat fields, its argv and when it
//! started. Every read is bounded; a process that is gone (or never was) reads as `None` or
//! empty, never as an error, since a kernel may exit between any two reads.

use std::fs;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

/// The most of `/proc/<pid>/cmdline` that is read (a UML kernel's argv is well under it).
const CMDLINE_MAX: u64 = 64 * 1024;

/// The most of `/proc/<pid>/stat` and `/proc/stat` read: the fields used come first.
const STAT_MAX: u64 = 64 * 1024;

/// The fields of `/proc/<pid>/stat` (proc(5)) that umlkit uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// R, S, D, Z, X, t, T, …
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// `starttime`: clock ticks after the host booted.
    pub start_ticks: u64,
    /// `processor`: the CPU it last ran on (field 39; `None` in a line cut short).
    pub processor: Option<u32>,
    /// `policy`: its scheduling policy (field 41: 0 SCHED_OTHER, 5 SCHED_IDLE, …).
    pub policy: Option<u32>,
}

impl Stat {
    /// Reads `/proc/<pid>/stat` (a thread's id reads that thread's); `None` when the process
    /// is gone or the file is malformed. A name that is not UTF-8 is read lossily: the fields
    /// that follow it are ASCII.
    pub fn read(pid: u32) -> Option<Stat> {
        if pid == 0 {
            return None;
        }
        Stat::parse(&read_bounded(&format!("/proc/{pid}/stat"), STAT_MAX)?)
    }

    /// Parses the text of a `/proc/<pid>/stat` file.
    pub fn parse(text: &str) -> Option<Stat> {
        // The command name may hold spaces and parentheses: the fields start after the last ")".
        let (_, rest) = text.rsplit_once(") ")?;
        // state(3) ppid(4) pgrp(5) … utime(14) stime(15) … starttime(22), counted from 1 with
        // pid and comm; `rest` starts at field 3.
        let f: Vec<&str> = rest.split_whitespace().take(39).collect();
        let num = |i: usize| f.get(i)?.parse::<u64>().ok();
        let small = |i: usize| f.get(i)?.parse::<u32>().ok();
        Some(Stat {
            state: f.first()?.chars().next()?,
            ppid: f.get(1)?.parse().ok()?,
            pgrp: f.get(2)?.parse().ok()?,
            cpu_ticks: num(11)?.saturating_add(num(12)?),
            start_ticks: num(19)?,
            processor: small(36),
            policy: small(38),
        })
    }

    /// Every process on the host, with its stat.
    pub fn all() -> impl Iterator<Item = (u32, Stat)> {
        fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| Some((pid, Stat::read(pid)?)))
    }

    /// A zombie or a dead process: it no longer runs, whatever its pid says.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// The parent of `pid`.
pub fn parent(pid: u32) -> Option<u32> {
    Stat::read(pid).map(|s| s.ppid)
}

/// Whether `pid` has exited but is not reaped yet (or is being reaped).
pub fn is_zombie(pid: u32) -> bool {
    Stat::read(pid).is_some_and(|s| s.is_dead())
}

/// `/proc/<pid>/cmdline` as words, at most its first 64 KiB; empty when the process is gone.
pub fn command_line(pid: u32) -> Vec<String> {
    if pid == 0 {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if let Ok(f) = fs::File::open(format!("/proc/{pid}/cmdline")) {
        let _ = f.take(CMDLINE_MAX).read_to_end(&mut bytes);
    }
    split_command_line(&bytes)
}

/// The NUL-separated words of a `cmdline` file.
pub fn split_command_line(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

/// When process `pid` started, in microseconds since the epoch (`starttime` in
/// `/proc/<pid>/stat` counts clock ticks since the host booted; `btime` in `/proc/stat` is
/// then). Never later than now, which guards against a bogus `btime`.
pub fn start_time_us(pid: u32) -> Option<u64> {
    let ticks = Stat::read(pid)?.start_ticks;
    let btime = host_boot_time()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|h| u64::try_from(h).ok())
        .filter(|&h| h > 0)?;
    let us = btime
        .saturating_mul(1_000_000)
        .saturating_add(ticks.saturating_mul(1_000_000) / hz);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_micros()).ok())?;
    Some(us.min(now))
}

/// When the host booted, in seconds since the epoch (`btime` in `/proc/stat`).
pub fn host_boot_time() -> Option<u64> {
    read_bounded("/proc/stat", STAT_MAX)?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// At most `max` bytes of `path`, lossily as text: a process chooses its own name.
fn read_bounded(path: &str, max: u64) -> Option<String> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .ok()?
        .take(max)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis_of_the_name() {
        let text = "4123 (linux (x) y) S 4100 4123 4123 0 -1 4194560 1 0 0 0 7 5 0 0 20 0 1 0 \
                    98765 1000 10 18446744073709551615\n";
        let s = Stat::parse(text).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 4100);
        assert_eq!(s.pgrp, 4123);
        assert_eq!(s.cpu_ticks, 12);
        assert_eq!(s.start_ticks, 98765);
        assert!(!s.is_dead());
        assert_eq!((s.processor, s.policy), (None, None), "a line cut short");
        let rest: Vec<String> = (4..=52).map(|i| i.to_string()).collect();
        let full = Stat::parse(&format!("7 (a) b) S {}\n", rest.join(" "))).unwrap();
        assert_eq!(
            (full.ppid, full.processor, full.policy),
            (4, Some(39), Some(41))
        );
        assert!(Stat::parse("1 (x) Z 0 1 1").is_none(), "truncated");
        assert!(Stat::parse("garbage").is_none());
    }

    /// A thread named with bytes that are not UTF-8, `)` and a newline is read all the same,
    /// with the CPU it runs on.
    #[test]
    fn a_thread_with_any_name_is_read() {
        let (comm, stat) = std::thread::spawn(|| {
            // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes from the
            // pointer, which points at a static string.
            unsafe { libc::prctl(libc::PR_SET_NAME, c"\xff)\n(x".as_ptr()) };
            let comm = fs::read("/proc/thread-self/comm").unwrap();
            (comm, Stat::read(nix::unistd::gettid().as_raw() as u32))
        })
        .join()
        .unwrap();
        assert_eq!(comm, b"\xff)\n(x\n");
        let stat = stat.expect("a thread with an odd name");
        assert!(stat.processor.is_some(), "{stat:?}");
        assert_eq!(stat.policy, Some(0));
    }

    #[test]
    fn own_process_has_a_parent_a_start_time_and_a_command_line() {
        let pid = std::process::id();
        assert_eq!(parent(pid), Some(nix::unistd::getppid().as_raw() as u32));
        assert!(start_time_us(pid).is_some_and(|t| t > 0));
        assert!(!command_line(pid).is_empty());
        assert!(!is_zombie(pid));
        assert!(command_line(0).is_empty());
        assert_eq!(
            split_command_line(b"linux\0mem=64M\0\0umid=a\0"),
            ["linux", "mem=64M", "umid=a"]
        );
    }
}
