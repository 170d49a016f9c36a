//! What the host's `/proc` tells about UML kernels: process state, sockets, children.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// `/proc/<pid>/stat`, read by the crate's one reader (bounded).
pub(super) use crate::procfs::Stat as ProcStat;

/// Whether `pid` is a live UML kernel started for the instance `umid`: not a zombie, and
/// either its arguments say `umid=<umid>`, or it has no `umid=` argument (the kernel then
/// makes up a random umid) and its executable is called `linux*` or `vmlinux*`. Nothing
/// looser: any program can have an argument that starts with `con` or `mem=`.
pub(super) fn is_kernel_of(pid: u32, umid: &str) -> bool {
    if ProcStat::read(pid).is_none_or(|s| s.is_dead()) {
        return false;
    }
    let mut cmdline = Vec::new();
    if let Ok(f) = fs::File::open(format!("/proc/{pid}/cmdline")) {
        let _ = f.take(64 * 1024).read_to_end(&mut cmdline);
    }
    let mut umids = cmdline
        .split(|&b| b == 0)
        .filter_map(|arg| arg.strip_prefix(b"umid="));
    match umids.next() {
        Some(first) => first == umid.as_bytes() && umids.all(|u| u == umid.as_bytes()),
        None => fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .is_some_and(|n| n.starts_with("linux") || n.starts_with("vmlinux")),
    }
}

/// Which lines of a socket table to keep.
#[derive(Debug, Clone, Copy)]
pub(super) enum Only<'a> {
    All,
    /// Sockets bound to this path.
    Path(&'a Path),
    /// Sockets bound below this directory.
    Under(&'a Path),
}

/// The bound unix sockets of a network namespace (`/proc/net/unix`): path → socket inodes.
#[derive(Debug, Clone)]
pub(super) struct UnixSockets {
    pub(super) known: bool,
    pub(super) by_path: BTreeMap<PathBuf, Vec<u64>>,
}

impl UnixSockets {
    /// The unix sockets of this process's network namespace.
    pub(super) fn read() -> UnixSockets {
        UnixSockets::read_from("/proc/net/unix")
    }

    /// The unix sockets as process `pid` sees them: the table of its network namespace (a
    /// guest started inside `ip netns exec` binds its mconsole socket there, and this
    /// namespace's table does not list it). `None` when `pid` shares this namespace, so the
    /// caller keeps the table it has.
    pub(super) fn of_other_netns(pid: u32) -> Option<UnixSockets> {
        (same_netns(pid) == Some(false)).then(|| UnixSockets::of_netns_of(pid))
    }

    /// The table of `pid`'s network namespace.
    pub(super) fn of_netns_of(pid: u32) -> UnixSockets {
        UnixSockets::read_from(&format!("/proc/{pid}/net/unix"))
    }

    /// [`UnixSockets::read`], or the table of `pid`'s own network namespace where it differs.
    pub(super) fn seen_by(&self, pid: u32) -> std::borrow::Cow<'_, UnixSockets> {
        match UnixSockets::of_other_netns(pid) {
            Some(theirs) => std::borrow::Cow::Owned(theirs),
            None => std::borrow::Cow::Borrowed(self),
        }
    }

    /// The sockets bound to `path` alone, from this network namespace's table, or from that of
    /// `pid`'s where `other_netns`: the same proof as [`UnixSockets::read`] for one socket, at a
    /// fraction of its cost on a host with thousands of sockets (a desktop's D-Bus, X and
    /// systemd have hundreds), since no entry is made for the others.
    pub(super) fn read_for(path: &Path, other_netns: Option<u32>) -> UnixSockets {
        let table = match other_netns {
            Some(pid) => format!("/proc/{pid}/net/unix"),
            None => "/proc/net/unix".to_owned(),
        };
        UnixSockets::read_filtered(&table, Only::Path(path))
    }

    /// The sockets of this network namespace bound below directory `dir` (an absolute path;
    /// anything else reads the whole table): what a scan of a uml_dir needs, without an entry
    /// for every other socket of the host.
    pub(super) fn read_under(dir: &Path) -> UnixSockets {
        if dir.is_absolute() {
            UnixSockets::read_filtered("/proc/net/unix", Only::Under(dir))
        } else {
            UnixSockets::read()
        }
    }

    fn read_from(table: &str) -> UnixSockets {
        UnixSockets::read_filtered(table, Only::All)
    }

    pub(super) fn read_filtered(table: &str, only: Only<'_>) -> UnixSockets {
        use std::io::BufRead;
        use std::os::unix::ffi::OsStrExt;
        // A line is at most about 170 bytes (the path is at most 108); longer ones are no
        // socket's and are skipped. The table is read a line at a time, so its size (other
        // users' sockets count too) never decides an allocation.
        const MAX_LINE: u64 = 512;
        let Ok(file) = fs::File::open(table) else {
            return UnixSockets {
                known: false,
                by_path: BTreeMap::new(),
            };
        };
        let mut reader = std::io::BufReader::with_capacity(64 * 1024, file);
        let mut by_path: BTreeMap<PathBuf, Vec<u64>> = BTreeMap::new();
        // "/dir/" for Under, with its separator once.
        let under = match only {
            Only::Under(dir) => {
                let mut d = dir.as_os_str().as_bytes().to_vec();
                while d.last() == Some(&b'/') {
                    d.pop();
                }
                d.push(b'/');
                Some(d)
            }
            _ => None,
        };
        // Bytes, not UTF-8: an abstract name (a `uml switch` has some) can be any bytes.
        let mut line = Vec::with_capacity(MAX_LINE as usize);
        // Num RefCount Protocol Flags Type St Inode Path
        for number in 0.. {
            line.clear();
            let read = match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) => {
                    return UnixSockets {
                        known: false,
                        by_path: BTreeMap::new(),
                    };
                }
            };
            let complete = line.last() == Some(&b'\n');
            if !complete && read as u64 == MAX_LINE {
                let _ = reader.skip_until(b'\n');
                continue;
            }
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            if number == 0 {
                continue;
            }
            // A line ends with " PATH": others are skipped before any parsing. The fields before
            // the path are numbers, so a path starts at the line's first '/'.
            let keep = match only {
                Only::All => true,
                Only::Path(p) => line
                    .strip_suffix(p.as_os_str().as_bytes())
                    .is_some_and(|head| head.ends_with(b" ")),
                Only::Under(_) => line
                    .iter()
                    .position(|&b| b == b'/')
                    .and_then(|at| line.get(at..))
                    .zip(under.as_deref())
                    .is_some_and(|(path, dir)| path.starts_with(dir)),
            };
            if !keep {
                continue;
            }
            if let Some((inode, path)) = unix_line(line) {
                by_path.entry(path).or_default().push(inode);
            }
        }
        UnixSockets {
            known: true,
            by_path,
        }
    }

    pub(super) fn inodes_of(&self, path: &Path) -> &[u64] {
        self.by_path.get(path).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether process `pid` has an open descriptor on a socket bound to `path`.
    pub(super) fn held_by(&self, path: &Path, pid: u32) -> bool {
        holds_any(pid, self.inodes_of(path))
    }
}

/// Whether process `pid` has an open descriptor on one of the sockets `inodes`.
pub(super) fn holds_any(pid: u32, inodes: &[u64]) -> bool {
    let inodes: HashSet<u64> = inodes.iter().copied().collect();
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

/// The inode and the filesystem path of one `/proc/net/unix` line; `None` for the header, an
/// unbound or abstract socket, and anything that does not parse.
pub(super) fn unix_line(line: &[u8]) -> Option<(u64, PathBuf)> {
    use std::os::unix::ffi::OsStrExt;
    let mut rest = line;
    let mut fields = Vec::with_capacity(7);
    while fields.len() < 7 {
        let start = rest.iter().position(|&b| b != b' ')?;
        rest = rest.get(start..)?;
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        fields.push(rest.get(..end)?);
        rest = rest.get(end..)?;
    }
    let path = rest.strip_prefix(b" ")?;
    if !path.starts_with(b"/") {
        return None;
    }
    let inode = std::str::from_utf8(fields.get(6)?).ok()?.parse().ok()?;
    Some((inode, PathBuf::from(std::ffi::OsStr::from_bytes(path))))
}

/// The socket inode a `/proc/PID/fd/N` link points to (`socket:[INODE]`), if it is a socket.
pub(super) fn socket_inode(fd_link: &Path) -> Option<u64> {
    let target = fs::read_link(fd_link).ok()?;
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
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

pub(super) fn parent_of(pid: u32) -> Option<u32> {
    crate::procfs::parent(pid)
}

/// utime + stime of every process in the process group `pgid` (the kernel and its helpers).
pub(super) fn group_cpu_ticks(pgid: u32) -> u64 {
    ProcStat::all()
        .filter(|(_, s)| s.pgrp == pgid)
        .map(|(_, s)| s.cpu_ticks)
        .sum()
}
/// Whether process `pid` is in this process's network namespace; `None` when either cannot be
/// read (no such process, or no permission).
pub(super) fn same_netns(pid: u32) -> Option<bool> {
    let ours = fs::read_link("/proc/self/ns/net").ok()?;
    let theirs = fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    Some(ours == theirs)
}
