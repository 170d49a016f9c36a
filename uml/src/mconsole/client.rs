//! The blocking mconsole client.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{
    DEFAULT_DEADLINE, DEFAULT_REPLY_LIMIT, DEFAULT_TIMEOUT, Error, Reply, ReplyAssembler, command,
    guest_result, wire,
};

/// How long [`Client::remove`] keeps asking while a `ubd` disk is `currently open`.
pub const REMOVE_OPEN_GRACE: Duration = Duration::from_secs(2);

/// How often [`Client::remove`] asks again during [`REMOVE_OPEN_GRACE`].
pub(super) const REMOVE_OPEN_RETRY: Duration = Duration::from_millis(20);

/// How long [`Client::config_set`] waits for a booting guest's disk driver before it adds a
/// disk (it starts within a second of the kernel's start).
pub const DISK_DRIVER_WAIT: Duration = Duration::from_secs(5);

/// How often it looks during [`DISK_DRIVER_WAIT`].
pub(super) const DISK_DRIVER_RETRY: Duration = Duration::from_millis(50);

/// Did the guest refuse to remove `dev` because the disk is open (`-EBUSY`, `Device is
/// currently open`, ubd_kern.c `ubd_remove`)?
pub(super) fn disk_open(dev: &str, err: &Error) -> bool {
    const EBUSY: u32 = (-libc::EBUSY) as u32;
    matches!(err, Error::Guest { code, message, .. }
        if *code == EBUSY && message.contains("currently open") && dev.starts_with("ubd"))
}

/// Receive buffer: larger than any valid datagram, so an oversized one is caught by the parser
/// (its `len` or trailing bytes) instead of being cut down to something that parses.
pub(super) const RECV_BUFFER: usize = 4096;

/// Where the guest sends its replies back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyAddress {
    /// A socket file in a fresh private directory, removed with the client: reachable from
    /// every network namespace.
    File,
    /// An abstract address the host kernel picks (autobind): no file to make and remove, but
    /// reachable only from this network namespace. Only the guest can send to it, because the
    /// socket is connected to the guest's (a connected unix datagram socket accepts datagrams
    /// from its peer alone), and an abstract address has no owner, so a guest that runs as
    /// another user (root asking a user's guest) can answer without a `chown`.
    Abstract,
}

/// Where a client socket is bound. A file lives in a directory of its own; both are removed on
/// drop.
///
/// A file, not an abstract address, unless the guest is known to share this network namespace
/// ([`ReplyAddress`]): abstract addresses belong to one network namespace, and a guest started
/// in another one (`ip netns exec NS uml run …`) could never send its reply to it, so `uml
/// version` would time out and `uml list` call the guest not responding. A file works across
/// namespaces. The directory is made by `mkdtemp` (mode 0700, a fresh unguessable name, never
/// an existing directory), so no other user can reach or replace the socket.
#[derive(Debug)]
pub(super) enum ClientAddress {
    /// Autobound: nothing to remove.
    Abstract,
    File {
        dir: PathBuf,
    },
}

impl ClientAddress {
    const SOCKET: &'static str = "c";

    /// A fresh private directory under `$TMPDIR` (or /tmp, when `$TMPDIR` would make the socket
    /// path too long for a unix socket).
    fn create() -> Result<ClientAddress, Error> {
        let mut base = std::env::temp_dir();
        // sun_path holds 107 bytes; the name below adds at most 35.
        if base.as_os_str().len() > 70 {
            base = PathBuf::from("/tmp");
        }
        // A process killed by a signal cannot remove its directories: the first client of
        // each process removes those of processes that are gone, so they never pile up.
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(|| sweep_stale(&base));
        let template = format!("{PREFIX}{}-XXXXXX", std::process::id());
        let dir = nix::unistd::mkdtemp(&base.join(template))
            .map_err(|e| Error::Socket(io::Error::from(e)))?;
        Ok(ClientAddress::File { dir })
    }

    /// The socket file and its directory, for a file address.
    fn paths(&self) -> Option<[PathBuf; 2]> {
        match self {
            ClientAddress::Abstract => None,
            ClientAddress::File { dir } => Some([dir.join(Self::SOCKET), dir.clone()]),
        }
    }

    /// Lets the owner of the guest's socket at `peer` send to the client socket, when that is
    /// another user than this process's (root controlling a user's guest): the directory and
    /// the socket are then that user's. The kernel sends replies as the user it runs as.
    fn admit_owner_of(&self, peer: &Path) {
        use std::os::unix::fs::MetadataExt;
        let Some(paths) = self.paths() else {
            return;
        };
        let Ok(meta) = std::fs::metadata(peer) else {
            return;
        };
        let me = nix::unistd::geteuid();
        if meta.uid() == me.as_raw() || !me.is_root() {
            return;
        }
        let owner = Some(nix::unistd::Uid::from_raw(meta.uid()));
        for p in paths {
            if let Err(e) = nix::unistd::chown(&p, owner, None) {
                tracing::debug!("cannot hand {} to uid {}: {e}", p.display(), meta.uid());
            }
        }
    }
}

/// The start of a client directory's name; the pid of the process that made it follows.
const PREFIX: &str = "umlkit-mconsole-";

/// Removes the client directories in `base` that this user's processes left when they died
/// (the pid in the name is no process any more). Only a directory with nothing in it but the
/// socket goes: `remove_dir` refuses any other.
pub(super) fn sweep_stale(base: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me {
            continue;
        }
        // ESRCH: no such process. EPERM means it exists (another user's process).
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if gone {
            let _ = std::fs::remove_file(entry.path().join(ClientAddress::SOCKET));
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

impl Drop for ClientAddress {
    fn drop(&mut self) {
        if let Some([socket, dir]) = self.paths() {
            let _ = std::fs::remove_file(socket);
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Create a datagram socket bound to a fresh [`ClientAddress`] and connected to `path`.
///
/// The kernel answers with `sendto` to the address it received the request from, so the
/// client needs a bound address. Connecting makes the host kernel deliver only the guest
/// socket's datagrams to us and fails fast (ENOENT, ECONNREFUSED) when no guest is behind the
/// path. On any error, nothing is left behind.
pub(super) fn client_socket(path: &Path) -> Result<(UnixDatagram, ClientAddress), Error> {
    client_socket_via(path, path, ReplyAddress::File)
}

/// As [`client_socket`], connecting through `via` (a `/proc/self/fd/N` of the checked file,
/// or `path` itself) and bound as `reply` says; errors name `path`.
fn client_socket_via(
    path: &Path,
    via: &Path,
    reply: ReplyAddress,
) -> Result<(UnixDatagram, ClientAddress), Error> {
    let (socket, address) = match reply {
        ReplyAddress::File => {
            let address = ClientAddress::create()?;
            let [file, _] = address.paths().expect("a file address has paths");
            let socket = UnixDatagram::bind(file).map_err(Error::Socket)?;
            address.admit_owner_of(via);
            (socket, address)
        }
        ReplyAddress::Abstract => {
            let socket = UnixDatagram::unbound().map_err(Error::Socket)?;
            // An address of the family alone: the host kernel binds a fresh abstract name.
            nix::sys::socket::bind(
                socket.as_raw_fd(),
                &nix::sys::socket::UnixAddr::new_unnamed(),
            )
            .map_err(|e| Error::Socket(e.into()))?;
            (socket, ClientAddress::Abstract)
        }
    };
    socket.connect(via).map_err(|source| Error::Connect {
        path: path.to_owned(),
        source,
    })?;
    Ok((socket, address))
}

/// A new connection to the socket at `path` after the guest replaced it (a reboot binds a
/// new one). Only a socket file itself: a symlink put there since is refused, so a client
/// made for one guest never moves on to another through a name.
pub(super) fn reconnect(path: &Path) -> Result<(UnixDatagram, ClientAddress), Error> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => client_socket(path),
        Ok(_) => Err(Error::Connect {
            path: path.to_owned(),
            source: io::Error::other("it is no longer a socket (a symlink or another file)"),
        }),
        Err(source) => Err(Error::Connect {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Sends one datagram, waiting at most `within` for room in the guest's receive queue: a
/// guest that is stopped, or does not read, must not hold the caller forever. The
/// `setsockopt` is skipped when `set` already holds that timeout.
fn send_within(
    socket: &UnixDatagram,
    set: &mut Option<Duration>,
    datagram: &[u8],
    within: Duration,
    command: &str,
) -> Result<(), Error> {
    let timeout = within.max(Duration::from_millis(1));
    if *set != Some(timeout) {
        *set = None;
        socket
            .set_write_timeout(Some(timeout))
            .map_err(Error::Socket)?;
        *set = Some(timeout);
    }
    loop {
        return match socket.send(datagram) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(Error::Timeout {
                    command: command.to_owned(),
                    after: within,
                })
            }
            Err(source) => Err(Error::Send {
                command: command.to_owned(),
                source,
            }),
        };
    }
}

/// Whether a send failed because the socket we connected to is gone (the guest exited or
/// rebooted: a rebooting UML re-execs and binds a new socket at the same path).
pub(super) fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::ENOTCONN | libc::ECONNRESET)
    )
}

/// A blocking client for one guest's mconsole socket.
///
/// Requests are serialised: the client is `Sync`, and two threads sharing it take turns.
///
/// ```no_run
/// # fn main() -> Result<(), uml::mconsole::Error> {
/// let client = uml::mconsole::Client::connect("/home/me/.uml/web1/mconsole".as_ref())?;
/// println!("{}", client.version()?);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    state: Mutex<State>,
    per_receive: Duration,
    deadline: Duration,
    reply_limit: usize,
}

#[derive(Debug)]
struct State {
    socket: UnixDatagram,
    /// Where `socket` is bound; removed with it.
    _address: ClientAddress,
    /// The receive timeout last set on the socket, to skip a setsockopt per receive.
    timeout: Option<Duration>,
    /// The same for the send timeout.
    send_timeout: Option<Duration>,
    /// Whether the last request may have left datagrams behind (it ended before its reply
    /// did): they are drained before the next request, and only then.
    unfinished: bool,
    /// (st_dev, st_ino) of the socket file we connected to.
    peer: Option<(u64, u64)>,
}

/// (st_dev, st_ino) of a socket file.
pub(super) type Identity = (u64, u64);

/// The identity of the socket file at `path`, if any.
pub(super) fn socket_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A socket connected to the file `file` (opened `O_PATH` and checked by the caller) through
/// `/proc/self/fd`, so that whatever is at `path` by then does not matter; its identity.
pub(super) fn connect_file(
    path: &Path,
    file: &std::os::fd::OwnedFd,
    reply: ReplyAddress,
) -> Result<(UnixDatagram, ClientAddress, Option<Identity>), Error> {
    let via = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    let identity = nix::sys::stat::fstat(file)
        .ok()
        .map(|st| (st.st_dev, st.st_ino));
    let (socket, address) = client_socket_via(path, &via, reply)?;
    Ok((socket, address, identity))
}

impl Client {
    /// Bind a client socket (an abstract address where the guest is known to share this
    /// network namespace, else a file in a private directory) and connect it to the guest's
    /// mconsole socket at `socket`.
    ///
    /// # Errors
    /// [`Error::Connect`] when nothing is listening at `socket`; [`Error::Socket`] when the
    /// client socket cannot be created.
    pub fn connect(socket: &Path) -> Result<Client, Error> {
        let (client, address) = client_socket(socket)?;
        Ok(Client {
            path: socket.to_owned(),
            state: Mutex::new(State {
                socket: client,
                _address: address,
                timeout: None,
                send_timeout: None,
                // A connected datagram socket receives from its peer alone: nothing but the
                // guest's replies can be waiting.
                unfinished: false,
                peer: socket_identity(socket),
            }),
            per_receive: DEFAULT_TIMEOUT,
            deadline: DEFAULT_DEADLINE,
            reply_limit: DEFAULT_REPLY_LIMIT,
        })
    }

    /// Connect to the socket file `file`, an `O_PATH` descriptor of `socket` that the caller
    /// has checked (see [`Instance::client`](crate::instance::Instance::client)): the connect
    /// goes through the descriptor, so a file swapped in at `socket` since is not reached.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub fn connect_checked(socket: &Path, file: std::os::fd::OwnedFd) -> Result<Client, Error> {
        Client::connect_checked_replying(socket, file, ReplyAddress::File)
    }

    /// As [`Client::connect_checked`], with the replies sent to `reply`:
    /// [`ReplyAddress::Abstract`] spares a directory and a socket file (a third of `uml
    /// version`'s own time) where the guest is known to share this network namespace.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub fn connect_checked_replying(
        socket: &Path,
        file: std::os::fd::OwnedFd,
        reply: ReplyAddress,
    ) -> Result<Client, Error> {
        let (client, address, peer) = connect_file(socket, &file, reply)?;
        Ok(Client {
            path: socket.to_owned(),
            state: Mutex::new(State {
                socket: client,
                _address: address,
                timeout: None,
                send_timeout: None,
                unfinished: false,
                peer,
            }),
            per_receive: DEFAULT_TIMEOUT,
            deadline: DEFAULT_DEADLINE,
            reply_limit: DEFAULT_REPLY_LIMIT,
        })
    }

    /// How long each receive, and each send, may wait (default 5 s).
    pub fn with_timeout(mut self, per_receive: Duration) -> Self {
        self.per_receive = per_receive.max(Duration::from_millis(1));
        self
    }

    /// How long a whole reply may take, however many chunks it has (default 60 s).
    pub fn with_deadline(mut self, total: Duration) -> Self {
        self.deadline = total.max(Duration::from_millis(1));
        self
    }

    /// The cap on a reply's total size in datagram bytes (default 1 MiB).
    pub fn with_reply_limit(mut self, bytes: usize) -> Self {
        self.reply_limit = bytes;
        self
    }

    /// The inode of this client's own socket (what the kernel's socket diagnostics name it
    /// by), if it can be read.
    pub(crate) fn own_socket_inode(&self) -> Option<u64> {
        nix::sys::stat::fstat(&self.lock().socket)
            .ok()
            .map(|st| st.st_ino)
    }

    /// The guest socket this client talks to.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the socket in a state we rely on: every
        // request drains stale datagrams first.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Send `command` and return the guest's reply as it is: a non-zero `err` is not an error
    /// here.
    ///
    /// # Errors
    /// [`Error::CommandTooLong`], [`Error::Connect`] if the guest is gone, [`Error::Timeout`],
    /// [`Error::ReplyTooLarge`], [`Error::Malformed`], [`Error::VersionZero`].
    pub fn request(&self, command: &str) -> Result<Reply, Error> {
        let request = wire::Request::new(command.as_bytes())
            .map_err(|_| Error::CommandTooLong { len: command.len() })?;
        let datagram = request.encode();
        let mut state = self.lock();
        // A rebooted guest binds a new socket at the same path while the old one may live on
        // for a moment in its dying helper processes (they share the descriptor); a request
        // sent to the old one is never answered. A new file at the path means reconnect.
        let now = socket_identity(&self.path);
        if now.is_some() && now != state.peer {
            tracing::debug!(path = %self.path.display(), "mconsole socket replaced, reconnecting");
            (state.socket, state._address) = reconnect(&self.path)?;
            state.timeout = None;
            state.send_timeout = None;
            state.peer = now;
        }
        if state.unfinished {
            drain(&state.socket);
        }
        // Until the whole reply is in: an early return (timeout, bad datagram) leaves the rest
        // of it, or all of it, to come.
        state.unfinished = true;
        let state = &mut *state;
        // The send has a deadline too: the host blocks it while the guest's receive queue is
        // full (a stopped guest, or one that does not read).
        let started = Instant::now();
        let send_wait = self.per_receive.min(self.deadline);
        match send_within(
            &state.socket,
            &mut state.send_timeout,
            &datagram,
            send_wait,
            command,
        ) {
            Err(Error::Send { source, .. }) if peer_gone(&source) => {
                // The guest may have rebooted and bound a new socket at the same path.
                tracing::debug!(path = %self.path.display(), "mconsole peer gone, reconnecting");
                (state.socket, state._address) = reconnect(&self.path)?;
                state.timeout = None;
                state.send_timeout = None;
                state.peer = socket_identity(&self.path);
                let left = send_wait.saturating_sub(started.elapsed());
                send_within(
                    &state.socket,
                    &mut state.send_timeout,
                    &datagram,
                    left,
                    command,
                )?;
            }
            other => other?,
        }
        let mut reply = ReplyAssembler::new(self.reply_limit);
        let mut buf = [0u8; RECV_BUFFER];
        loop {
            let left = self.deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(Error::Timeout {
                    command: command.to_owned(),
                    after: self.deadline,
                });
            }
            let wait = self.per_receive.min(left);
            if state.timeout != Some(wait) {
                state.socket.set_read_timeout(Some(wait))?;
                state.timeout = Some(wait);
            }
            let n = match state.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Error::Timeout {
                        command: command.to_owned(),
                        after: wait,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Error::Receive {
                        command: command.to_owned(),
                        source,
                    });
                }
            };
            if reply.push(buf.get(..n).unwrap_or_default())? {
                state.unfinished = false;
                return Ok(reply.finish());
            }
        }
    }

    /// Send `command`; a reply with non-zero `err` becomes [`Error::Guest`].
    ///
    /// # Errors
    /// As [`Client::request`], and [`Error::Guest`].
    pub fn run(&self, command: &str) -> Result<String, Error> {
        guest_result(command, self.request(command)?)
    }

    /// The guest kernel's `uname`: sysname, nodename, release, version, machine.
    pub fn version(&self) -> Result<String, Error> {
        self.run("version")
    }

    /// The kernel's mconsole help text.
    pub fn help(&self) -> Result<String, Error> {
        self.run("help")
    }

    /// Halt the guest: it replies, then the kernel exits.
    pub fn halt(&self) -> Result<(), Error> {
        self.run("halt").map(drop)
    }

    /// Reboot the guest: the kernel re-execs itself (or exits with `noreboot`).
    pub fn reboot(&self) -> Result<(), Error> {
        self.run("reboot").map(drop)
    }

    /// Ctrl-Alt-Del: with the kernel default an immediate restart, else SIGINT to init.
    pub fn cad(&self) -> Result<(), Error> {
        self.run("cad").map(drop)
    }

    /// Run the SysRq handler for `key` and return the console output it produced.
    ///
    /// Observed with Debian's 6.1.176 kernel: `t` (dump all tasks) panics it ("Kernel mode
    /// fault at addr 0x8") whichever client asks, and `stack` prints only
    /// "Received SIGSEGV in SIGSEGV handler, aborting stack trace!".
    pub fn sysrq(&self, key: char) -> Result<String, Error> {
        self.run(&command::sysrq(key)?)
    }

    /// Freeze the whole guest. It still answers mconsole requests until [`Client::go`].
    pub fn stop(&self) -> Result<(), Error> {
        self.run("stop").map(drop)
    }

    /// Resume a stopped guest (`Not stopped` otherwise).
    pub fn go(&self) -> Result<(), Error> {
        self.run("go").map(drop)
    }

    /// A device's configuration, e.g. `config_get("ubd1")` gives the backing file, `""` when
    /// the unit is unconfigured (`none` for an unconfigured line).
    pub fn config_get(&self, dev: &str) -> Result<String, Error> {
        self.run(&command::config_get(dev)?)
    }

    /// Hot-add or change a device with command-line syntax: `config_set("ubd1", "/a.img")`.
    /// Relative file names are resolved by the guest kernel, in its own working directory.
    ///
    /// A disk is added only once the guest's disk driver runs: a booting guest is given up to
    /// [`DISK_DRIVER_WAIT`] ([`Error::DiskDriverNotUp`] after that).
    pub fn config_set(&self, dev: &str, spec: &str) -> Result<(), Error> {
        let request = command::config_set(dev, spec)?;
        if command::needs_disk_driver(dev) {
            let start = Instant::now();
            while !command::disk_driver_up(&self.proc_file("devices")?) {
                if start.elapsed() >= DISK_DRIVER_WAIT {
                    return Err(Error::DiskDriverNotUp {
                        dev: dev.to_owned(),
                        waited: DISK_DRIVER_WAIT,
                    });
                }
                std::thread::sleep(DISK_DRIVER_RETRY);
            }
        }
        self.run(&request).map(drop)
    }

    /// Remove a device (`con`/`ssl`: set the line to `none`).
    ///
    /// A `ubd` disk that is busy (`-EBUSY`, `Device is currently open`) is asked again for up
    /// to [`REMOVE_OPEN_GRACE`]: a 7.x kernel answers a `config ubdN=` hot-add before it has
    /// closed the disk again after reading its partition table, and a `remove` sent right
    /// after the add is refused for some tens of milliseconds (observed on 7.2.12: 0 to 3
    /// refusals in a row, 60 ms at most on an idle host; 6.1 closes it before it answers).
    /// A disk the guest really has open is still refused, after the grace.
    pub fn remove(&self, dev: &str) -> Result<(), Error> {
        let request = command::remove(dev)?;
        let deadline = Instant::now() + REMOVE_OPEN_GRACE;
        loop {
            match self.run(&request) {
                Err(err) if disk_open(dev, &err) && Instant::now() < deadline => {
                    std::thread::sleep(REMOVE_OPEN_RETRY);
                }
                other => return other.map(drop),
            }
        }
    }

    /// Write `text` to the guest's kernel log, in requests of at most
    /// [`LOG_CHUNK`](super::LOG_CHUNK) bytes, with a final newline added like `uml_mconsole`.
    pub fn log(&self, text: &str) -> Result<(), Error> {
        for request in command::log(text) {
            self.run(&request)?;
        }
        Ok(())
    }

    /// The contents of `/proc/<path>` in the guest.
    pub fn proc_file(&self, path: &str) -> Result<String, Error> {
        self.run(&format!("proc {path}"))
            .map(command::strip_proc_newline)
    }

    /// The kernel stack of guest task `pid`, as the kernel prints it.
    pub fn stack(&self, pid: u32) -> Result<String, Error> {
        self.run(&format!("stack {pid}"))
    }
}

/// Throw away datagrams left over from an earlier request whose reply we stopped reading
/// (after a timeout or an error), so they are not taken for this request's reply.
fn drain(socket: &UnixDatagram) {
    let mut buf = [0u8; RECV_BUFFER];
    for _ in 0..1024 {
        match nix::sys::socket::recv(
            socket.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => tracing::debug!(bytes = n, "discarded a stale mconsole datagram"),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_of_dead_processes_are_swept_and_live_ones_kept() {
        let base = tempfile::tempdir().unwrap();
        // A pid that is no process: a child that has been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = base.path().join(format!("{PREFIX}{dead}-abcdef"));
        let live = base
            .path()
            .join(format!("{PREFIX}{}-abcdef", std::process::id()));
        let other = base.path().join("unrelated-1-abcdef");
        for d in [&stale, &live, &other] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join(ClientAddress::SOCKET), b"").unwrap();
        }
        sweep_stale(base.path());
        assert!(!stale.exists());
        assert!(live.exists() && other.exists());
    }

    #[test]
    fn a_client_leaves_nothing_behind() {
        let address = ClientAddress::create().unwrap();
        let [socket, dir] = address.paths().unwrap();
        let _socket = UnixDatagram::bind(socket).unwrap();
        assert!(dir.exists());
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o700
        );
        drop(address);
        assert!(!dir.exists());
    }

    /// A guest that answers one request (`version`) from a socket of its own: the reply goes to
    /// wherever the request came from, as the kernel's mconsole does.
    fn one_reply_guest(dir: &Path) -> (PathBuf, std::thread::JoinHandle<()>) {
        let path = dir.join("mconsole");
        let guest = UnixDatagram::bind(&path).unwrap();
        let answer = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (_, from) = guest.recv_from(&mut buf).unwrap();
            let reply = wire::ReplyChunk {
                err: 0,
                more: false,
                data: b"Linux 7.2.13".to_vec(),
            }
            .encode()
            .unwrap();
            guest.send_to_addr(&reply, &from).unwrap();
        });
        (path, answer)
    }

    #[test]
    fn a_client_with_an_abstract_address_makes_no_file_and_gets_its_reply() {
        let dir = tempfile::tempdir().unwrap();
        let (path, guest) = one_reply_guest(dir.path());
        let file = nix::fcntl::open(
            &path,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        let client = Client::connect_checked_replying(&path, file, ReplyAddress::Abstract).unwrap();
        {
            use std::os::linux::net::SocketAddrExt;
            let state = client.state.lock().unwrap();
            assert!(matches!(state._address, ClientAddress::Abstract));
            let local = state.socket.local_addr().unwrap();
            assert!(local.as_abstract_name().is_some(), "{local:?}");
        }
        assert_eq!(client.version().unwrap(), "Linux 7.2.13");
        guest.join().unwrap();
    }
}
