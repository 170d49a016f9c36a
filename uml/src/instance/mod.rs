//! Instances: the running (and dead) UML kernels that live in a `uml_dir`.
//!
//! An instance is a directory `<uml_dir>/<umid>/` holding `pid` (decimal pid and `\n`) and the
//! `mconsole` datagram socket (`arch/um/os-Linux/umid.c`). The kernel removes the directory on
//! an orderly exit; after a panic or SIGKILL it stays behind. Discovery here never trusts the
//! pid file alone: an instance is *running* only when that pid is alive **and** holds the
//! socket bound at `<dir>/mconsole` (checked through `/proc/net/unix` and `/proc/<pid>/fd`), so
//! a recycled pid is reported as stale, not as a guest.
//!
//! Every part of umlkit (the CLI, umlfs, the D-Bus service) uses this one discovery code and
//! the [`Watcher`] for instances that appear and disappear.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::mconsole;

mod discover;
mod procfs;
mod runtime;
mod shutdown;
mod sock_diag;
mod state;
mod watch;

pub use discover::{
    Sweep, clean, discover, find, find_existing, find_running, pid_alive, read_pid_file,
    remove_if_stale, sweep, umid_of_pid,
};
pub use procfs::userspace_started;
pub use runtime::{create_file, private_dir};
pub use shutdown::{ShutdownStep, group_alive, kill_group, kill_group_and_wait, shutdown};
pub use state::{RunState, paused_now, run_state};
pub use watch::{InstanceEvent, WaitFor, Watcher, wait};

use discover::inspect;
use procfs::{ProcStat, UnixSockets, group_cpu_ticks, is_kernel_of, socket_inode};

/// The most bytes read from a `pid` file; a real one holds at most 11.
const PID_FILE_LIMIT: u64 = 64;

/// Errors of discovery and instance control.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot find the default uml_dir: $HOME is not set (pass --uml-dir)")]
    NoHome,
    #[error("cannot read uml_dir {path}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "no UML instance \"{umid}\" in {uml_dir} (running instances: {})",
        if known.is_empty() { "none".to_owned() } else { crate::text::printable(&known.join(", ")).into_owned() }
    )]
    NotFound {
        umid: String,
        uml_dir: PathBuf,
        known: Vec<String>,
    },
    #[error(
        "UML instance \"{umid}\" is not running ({})",
        crate::text::printable(reason)
    )]
    NotRunning { umid: String, reason: String },
    #[error("UML instance \"{umid}\"")]
    Mconsole {
        umid: String,
        #[source]
        source: mconsole::Error,
    },
    #[error("cannot remove stale instance directory {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot watch {path}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("refusing {path} for runtime files: {reason}")]
    UnsafeRuntimeDir { path: PathBuf, reason: String },
    #[error("cannot write the runtime file {path}")]
    RuntimeFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("UML instance \"{umid}\" (pid {pid}) is still running after {after:?}")]
    StillRunning {
        umid: String,
        pid: u32,
        after: Duration,
    },
}

/// The default `uml_dir`, as the kernel computes it: `$HOME/.uml`.
///
/// # Errors
/// [`InstanceError::NoHome`] when `$HOME` is unset or empty (the kernel fails the same way).
pub fn default_uml_dir() -> Result<PathBuf, InstanceError> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".uml")),
        _ => Err(InstanceError::NoHome),
    }
}

/// `dir` if given, else [`default_uml_dir`].
pub fn uml_dir_or_default(dir: Option<&Path>) -> Result<PathBuf, InstanceError> {
    match dir {
        Some(d) => Ok(d.to_owned()),
        None => default_uml_dir(),
    }
}

/// A client for instance `umid` of `uml_dir`, proven as [`Instance::client`] proves it and
/// with nothing else looked at: for a caller that only asks the guest something (`uml version`
/// in a loop). `None` when the instance is not proven running; [`find`] then says why.
pub fn quick_client(uml_dir: &Path, umid: &str, timeout: Duration) -> Option<mconsole::Client> {
    let dir = discover::instance_dir(uml_dir, umid)?;
    let pid = read_pid_file(&dir.join("pid"))?;
    Instance {
        umid: umid.to_owned(),
        dir,
        pid: Some(pid),
        // Proven by the only proof that counts: the one made on the opened socket.
        liveness: Liveness::Running,
    }
    .client(timeout)
    .ok()
}

/// What discovery can tell about an instance without asking the guest anything.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Liveness {
    /// The pid is alive and holds this instance's mconsole socket.
    Running,
    /// The kernel has written its pid but not yet bound its mconsole socket (early boot).
    Starting,
    /// Nothing alive serves this directory: left behind by a panic, SIGKILL or a crash.
    Stale { reason: String },
}

/// One instance directory in a `uml_dir`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Instance {
    pub umid: String,
    pub dir: PathBuf,
    pub pid: Option<u32>,
    #[serde(flatten)]
    pub liveness: Liveness,
}

impl Instance {
    /// `<dir>/mconsole`.
    pub fn mconsole_path(&self) -> PathBuf {
        self.dir.join("mconsole")
    }

    pub fn is_running(&self) -> bool {
        self.liveness == Liveness::Running
    }

    /// A client for this instance's mconsole socket.
    ///
    /// It talks only to a socket proven to be this instance's: the file at `<dir>/mconsole`
    /// itself (not a symlink), a socket, owned by the user the kernel runs as, and the socket
    /// the connected client sends to is held by the kernel's pid (its peer from the kernel's
    /// socket diagnostics and `/proc/PID/fd`; in another network namespace, a socket bound at
    /// that path in its `/proc/PID/net/unix`). The connect goes through the descriptor of the
    /// file that was checked, so swapping the file afterwards changes nothing.
    ///
    /// # Errors
    /// [`InstanceError::NotRunning`] for a stale or starting instance, or a socket that is
    /// not proven to be its; otherwise the client's connect error.
    pub fn client(&self, timeout: Duration) -> Result<mconsole::Client, InstanceError> {
        let not_running = |reason: String| InstanceError::NotRunning {
            umid: self.umid.clone(),
            reason,
        };
        if !self.is_running() {
            return Err(not_running(self.liveness_text()));
        }
        let path = self.mconsole_path();
        let pid = self.pid.ok_or_else(|| not_running("no pid".into()))?;
        let file = self.socket_file(pid).map_err(not_running)?;
        let same_netns = procfs::same_netns(pid);
        let reply = match same_netns {
            Some(true) => mconsole::ReplyAddress::Abstract,
            _ => mconsole::ReplyAddress::File,
        };
        let served_by_table = || {
            UnixSockets::read_for(&path, (same_netns == Some(false)).then_some(pid))
                .held_by(&path, pid)
        };
        let not_served = || not_running(format!("pid {pid} does not serve {}", path.display()));
        let client = match mconsole::Client::connect_checked_replying(&path, file, reply) {
            Ok(client) => client,
            Err(_) if !served_by_table() => return Err(not_served()),
            Err(source) => return Err(self.mconsole_error(source)),
        };
        // The socket our requests go to (the peer of the connected client, from the kernel's
        // socket diagnostics) is one the kernel holds; else, where diagnostics cannot say
        // (another network namespace), a socket bound at this path is.
        let served = same_netns == Some(true)
            && client
                .own_socket_inode()
                .and_then(sock_diag::peer_of)
                .is_some_and(|peer| procfs::holds_any(pid, &[peer]));
        if !served && !served_by_table() {
            return Err(not_served());
        }
        Ok(client.with_timeout(timeout))
    }

    /// The mconsole socket file, opened `O_PATH`, once it is the file itself (not a symlink), a
    /// socket, and owned by the user the kernel `pid` runs as; otherwise why not.
    fn socket_file(&self, pid: u32) -> Result<std::os::fd::OwnedFd, String> {
        use nix::fcntl::OFlag;
        let path = self.mconsole_path();
        let fd = nix::fcntl::open(
            &path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let st = nix::sys::stat::fstat(&fd)
            .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(format!(
                "{} is not a socket (a symlink or another file)",
                path.display()
            ));
        }
        let kernel_uid = fs::metadata(format!("/proc/{pid}"))
            .map_err(|_| format!("pid {pid} is not running"))?
            .uid();
        if st.st_uid != kernel_uid {
            return Err(format!(
                "{} belongs to uid {}, but its kernel (pid {pid}) runs as uid {kernel_uid}",
                path.display(),
                st.st_uid
            ));
        }
        Ok(fd)
    }

    pub(crate) fn mconsole_error(&self, source: mconsole::Error) -> InstanceError {
        InstanceError::Mconsole {
            umid: self.umid.clone(),
            source,
        }
    }

    /// A short description of the liveness, for messages.
    pub fn liveness_text(&self) -> String {
        match &self.liveness {
            Liveness::Running => "running".into(),
            Liveness::Starting => "starting".into(),
            Liveness::Stale { reason } => format!("stale: {reason}"),
        }
    }

    /// Re-read this instance's directory.
    pub fn refresh(&self) -> Instance {
        let sockets = UnixSockets::read();
        inspect(&self.dir, &self.umid, &sockets)
    }
}

#[cfg(test)]
mod tests {
    use super::procfs::{Only, unix_line};
    use super::*;

    #[test]
    fn a_table_read_for_one_path_holds_that_path_alone() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("unix");
        let overlong = format!(
            "0000000000000000: 00000002 00000000 00000000 0002 01 16 /{}/u/x/mconsole\n",
            "d/".repeat(400)
        );
        std::fs::write(
            &table,
            "Num       RefCount Protocol Flags    Type St Inode Path\n\
             0000000000000000: 00000002 00000000 00000000 0002 01 11 /u/x/mconsole\n\
             0000000000000000: 00000002 00000000 00000000 0002 01 12 /w/u/x/mconsole\n\
             0000000000000000: 00000002 00000000 00000000 0002 01 13 @/u/x/mconsole\n\
             0000000000000000: 00000002 00000000 00000000 0002 01 14 /u/x/mconsole\n\
             0000000000000000: 00000002 00000000 00000000 0002 01 15 /a b/mconsole\n"
                .to_owned()
                + &overlong
                + "0000000000000000: 00000002 00000000 00000000 0002 01 17 /u/x/mconsole\n",
        )
        .unwrap();
        let table = table.to_str().unwrap();
        let one = UnixSockets::read_filtered(table, Only::Path(Path::new("/u/x/mconsole")));
        assert!(one.known);
        // A line longer than any socket's is skipped, and the next one still read.
        assert_eq!(one.inodes_of(Path::new("/u/x/mconsole")), [11, 14, 17]);
        assert_eq!(one.by_path.len(), 1, "{:?}", one.by_path);
        let spaced = UnixSockets::read_filtered(table, Only::Path(Path::new("/a b/mconsole")));
        assert_eq!(spaced.inodes_of(Path::new("/a b/mconsole")), [15]);
        let all = UnixSockets::read_filtered(table, Only::All);
        assert_eq!(all.by_path.len(), 3);
        // A uml_dir's sockets, with or without a trailing slash; not a sibling that only
        // shares the prefix, nor an abstract name.
        for dir in ["/u", "/u/"] {
            let under = UnixSockets::read_filtered(table, Only::Under(Path::new(dir)));
            assert_eq!(under.inodes_of(Path::new("/u/x/mconsole")), [11, 14, 17]);
            assert_eq!(under.by_path.len(), 1, "{:?}", under.by_path);
        }
        let spaced = UnixSockets::read_filtered(table, Only::Under(Path::new("/a b")));
        assert_eq!(spaced.inodes_of(Path::new("/a b/mconsole")), [15]);
        assert!(
            UnixSockets::read_filtered(table, Only::Under(Path::new("/w/u/x/m")))
                .by_path
                .is_empty()
        );
    }

    #[test]
    fn proc_net_unix_lines_are_read_as_bytes() {
        let bound =
            b"0000000000000000: 00000002 00000000 00000000 0002 01 31337 /home/a b/.uml/x/mconsole";
        assert_eq!(
            unix_line(bound),
            Some((31337, PathBuf::from("/home/a b/.uml/x/mconsole")))
        );
        let odd = b"0000000000000000: 00000002 00000000 00000000 0002 01 7 /tmp/\xff\xfe";
        let (inode, path) = unix_line(odd).unwrap();
        assert_eq!(inode, 7);
        assert_eq!(
            std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()),
            b"/tmp/\xff\xfe"
        );
        // Abstract and unbound sockets, the header, and garbage name no path.
        for line in [
            &b"0000000000000000: 00000002 00000000 00000000 0002 01 8 @umlkit-\xff"[..],
            b"0000000000000000: 00000002 00000000 00000000 0002 01 9",
            b"Num       RefCount Protocol Flags    Type St Inode Path",
            b"",
            b"a b c d e f notanumber /x",
        ] {
            assert_eq!(unix_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn a_pid_file_is_a_small_regular_file_with_a_positive_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        for (text, want) in [
            ("1234\n", Some(1234)),
            ("0\n", None),
            ("-5\n", None),
            ("12a\n", None),
            ("99999999999999999999\n", None),
        ] {
            fs::write(&path, text).unwrap();
            assert_eq!(read_pid_file(&path), want, "{text:?}");
        }
        fs::write(&path, format!("1{}\n", " ".repeat(100))).unwrap();
        assert_eq!(read_pid_file(&path), None, "longer than a pid file can be");
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/proc/self/stat", &path).unwrap();
        assert_eq!(read_pid_file(&path), None, "a symlink is not followed");
        fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(read_pid_file(&path), None, "a FIFO is not waited on");
    }
}
