//! The tokio faces of the mconsole client and the notify listener. They share the wire codec,
//! the reply assembly and the command texts with the blocking ones, so both treat guest input
//! the same way.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::net::UnixDatagram;
use tokio::sync::Mutex;

use super::client::{
    ClientAddress, DISK_DRIVER_RETRY, DISK_DRIVER_WAIT, RECV_BUFFER, REMOVE_OPEN_GRACE,
    REMOVE_OPEN_RETRY, client_socket, disk_open, peer_gone, reconnect,
};
use super::notify::{SocketFile, bind_notify_socket};
use super::{
    DEFAULT_DEADLINE, DEFAULT_REPLY_LIMIT, DEFAULT_TIMEOUT, Error, Notification, Reply,
    ReplyAssembler, command, guest_result, wire,
};

/// A connected client socket, its file, and (st_dev, st_ino) of the guest socket file it is
/// connected to.
#[derive(Debug)]
struct Connection {
    socket: UnixDatagram,
    peer: Option<(u64, u64)>,
    _address: ClientAddress,
}

impl Connection {
    fn open(path: &Path) -> Result<Connection, Error> {
        let peer = super::client::socket_identity(path);
        let (socket, address) = client_socket(path)?;
        Ok(Connection {
            socket: into_tokio(socket)?,
            peer,
            _address: address,
        })
    }

    /// A connection to the socket file `file` (an `O_PATH` descriptor of `path` the caller
    /// checked), through the descriptor.
    fn open_checked(path: &Path, file: &std::os::fd::OwnedFd) -> Result<Connection, Error> {
        let (socket, address, peer) =
            super::client::connect_file(path, file, super::ReplyAddress::File)?;
        Ok(Connection {
            socket: into_tokio(socket)?,
            peer,
            _address: address,
        })
    }

    /// A new connection after the guest replaced its socket; never through a symlink.
    fn reopen(path: &Path) -> Result<Connection, Error> {
        let peer = super::client::socket_identity(path);
        let (socket, address) = reconnect(path)?;
        Ok(Connection {
            socket: into_tokio(socket)?,
            peer,
            _address: address,
        })
    }
}

/// The most stale datagrams thrown away before a request: a guest that keeps sending must
/// not keep the caller draining.
const DRAIN_LIMIT: usize = 1024;

/// Sends one datagram within `within` (the host holds a send while the guest's receive queue
/// is full: a stopped guest, or one that does not read).
async fn send_within(
    socket: &UnixDatagram,
    datagram: &[u8],
    within: Duration,
    command: &str,
) -> Result<(), Error> {
    match tokio::time::timeout(within, socket.send(datagram)).await {
        Err(_elapsed) => Err(Error::Timeout {
            command: command.to_owned(),
            after: within,
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(Error::Send {
            command: command.to_owned(),
            source,
        }),
    }
}

fn into_tokio(socket: std::os::unix::net::UnixDatagram) -> Result<UnixDatagram, Error> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::NoRuntime);
    }
    socket.set_nonblocking(true).map_err(Error::Socket)?;
    UnixDatagram::from_std(socket).map_err(Error::Socket)
}

/// An async client for one guest's mconsole socket; the same operations as
/// [`Client`](super::Client), each receive under `tokio::time::timeout`.
///
/// Requests are serialised: concurrent calls on one client take turns.
#[derive(Debug)]
pub struct AsyncClient {
    path: PathBuf,
    socket: Mutex<Connection>,
    per_receive: Duration,
    deadline: Duration,
    reply_limit: usize,
}

impl AsyncClient {
    /// Bind a client socket (a file in a private directory) and connect it to
    /// the guest's mconsole socket at `socket`.
    ///
    /// # Errors
    /// [`Error::Connect`] when nothing is listening at `socket`; [`Error::NoRuntime`] outside
    /// a tokio runtime.
    pub async fn connect(socket: &Path) -> Result<AsyncClient, Error> {
        Ok(AsyncClient {
            path: socket.to_owned(),
            socket: Mutex::new(Connection::open(socket)?),
            per_receive: DEFAULT_TIMEOUT,
            deadline: DEFAULT_DEADLINE,
            reply_limit: DEFAULT_REPLY_LIMIT,
        })
    }

    /// As [`connect`](AsyncClient::connect), to the socket file `file`: an `O_PATH`
    /// descriptor of `socket` that the caller has checked (as
    /// [`Client::connect_checked`](super::Client::connect_checked)); the connect goes through
    /// the descriptor, so a file swapped in at `socket` since is not reached.
    ///
    /// # Errors
    /// As [`connect`](AsyncClient::connect).
    pub async fn connect_checked(
        socket: &Path,
        file: std::os::fd::OwnedFd,
    ) -> Result<AsyncClient, Error> {
        Ok(AsyncClient {
            path: socket.to_owned(),
            socket: Mutex::new(Connection::open_checked(socket, &file)?),
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

    /// The guest socket this client talks to.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// Send `command` and return the guest's reply as it is (see [`Client::request`]).
    ///
    /// [`Client::request`]: super::Client::request
    pub async fn request(&self, command: &str) -> Result<Reply, Error> {
        let request = wire::Request::new(command.as_bytes())
            .map_err(|_| Error::CommandTooLong { len: command.len() })?;
        let datagram = request.encode();
        let mut guard = self.socket.lock().await;
        // A rebooted guest's new socket file replaces the old one, which its dying helper
        // processes may keep alive (and silent) for a moment: reconnect to the new one.
        let now = super::client::socket_identity(&self.path);
        if now.is_some() && now != guard.peer {
            tracing::debug!(path = %self.path.display(), "mconsole socket replaced, reconnecting");
            *guard = Connection::reopen(&self.path)?;
        }
        let mut buf = [0u8; RECV_BUFFER];
        // Leftovers of an earlier request whose reply we stopped reading; a bounded number.
        for _ in 0..DRAIN_LIMIT {
            if guard.socket.try_recv(&mut buf).is_err() {
                break;
            }
            tracing::debug!("discarded a stale mconsole datagram");
        }
        let started = Instant::now();
        let send_wait = self.per_receive.min(self.deadline);
        match send_within(&guard.socket, &datagram, send_wait, command).await {
            Err(Error::Send { source, .. }) if peer_gone(&source) => {
                tracing::debug!(path = %self.path.display(), "mconsole peer gone, reconnecting");
                *guard = Connection::reopen(&self.path)?;
                let left = send_wait.saturating_sub(started.elapsed());
                send_within(&guard.socket, &datagram, left, command).await?;
            }
            other => other?,
        }
        let mut reply = ReplyAssembler::new(self.reply_limit);
        loop {
            let left = self.deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(Error::Timeout {
                    command: command.to_owned(),
                    after: self.deadline,
                });
            }
            let wait = self.per_receive.min(left);
            let n = match tokio::time::timeout(wait, guard.socket.recv(&mut buf)).await {
                Err(_elapsed) => {
                    return Err(Error::Timeout {
                        command: command.to_owned(),
                        after: wait,
                    });
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(source)) => {
                    return Err(Error::Receive {
                        command: command.to_owned(),
                        source,
                    });
                }
            };
            if reply.push(buf.get(..n).unwrap_or_default())? {
                return Ok(reply.finish());
            }
        }
    }

    /// Send `command`; a reply with non-zero `err` becomes [`Error::Guest`].
    pub async fn run(&self, command: &str) -> Result<String, Error> {
        guest_result(command, self.request(command).await?)
    }

    pub async fn version(&self) -> Result<String, Error> {
        self.run("version").await
    }

    pub async fn help(&self) -> Result<String, Error> {
        self.run("help").await
    }

    pub async fn halt(&self) -> Result<(), Error> {
        self.run("halt").await.map(drop)
    }

    pub async fn reboot(&self) -> Result<(), Error> {
        self.run("reboot").await.map(drop)
    }

    pub async fn cad(&self) -> Result<(), Error> {
        self.run("cad").await.map(drop)
    }

    pub async fn sysrq(&self, key: char) -> Result<String, Error> {
        self.run(&command::sysrq(key)?).await
    }

    pub async fn stop(&self) -> Result<(), Error> {
        self.run("stop").await.map(drop)
    }

    pub async fn go(&self) -> Result<(), Error> {
        self.run("go").await.map(drop)
    }

    pub async fn config_get(&self, dev: &str) -> Result<String, Error> {
        self.run(&command::config_get(dev)?).await
    }

    /// Like [`Client::config_set`](super::Client::config_set), including its wait for a
    /// booting guest's disk driver.
    pub async fn config_set(&self, dev: &str, spec: &str) -> Result<(), Error> {
        let request = command::config_set(dev, spec)?;
        if command::needs_disk_driver(dev) {
            let start = Instant::now();
            while !command::disk_driver_up(&self.proc_file("devices").await?) {
                if start.elapsed() >= DISK_DRIVER_WAIT {
                    return Err(Error::DiskDriverNotUp {
                        dev: dev.to_owned(),
                        waited: DISK_DRIVER_WAIT,
                    });
                }
                tokio::time::sleep(DISK_DRIVER_RETRY).await;
            }
        }
        self.run(&request).await.map(drop)
    }

    /// Like [`Client::remove`](super::Client::remove), including its grace for a disk that a
    /// 7.x kernel still holds open just after hot-adding it.
    pub async fn remove(&self, dev: &str) -> Result<(), Error> {
        let request = command::remove(dev)?;
        let deadline = Instant::now() + REMOVE_OPEN_GRACE;
        loop {
            match self.run(&request).await {
                Err(err) if disk_open(dev, &err) && Instant::now() < deadline => {
                    tokio::time::sleep(REMOVE_OPEN_RETRY).await;
                }
                other => return other.map(drop),
            }
        }
    }

    pub async fn log(&self, text: &str) -> Result<(), Error> {
        for request in command::log(text) {
            self.run(&request).await?;
        }
        Ok(())
    }

    pub async fn proc_file(&self, path: &str) -> Result<String, Error> {
        self.run(&format!("proc {path}"))
            .await
            .map(command::strip_proc_newline)
    }

    pub async fn stack(&self, pid: u32) -> Result<String, Error> {
        self.run(&format!("stack {pid}")).await
    }
}

/// The tokio version of [`NotifyListener`](super::NotifyListener): a datagram socket at a
/// filesystem path, removed again on drop.
#[derive(Debug)]
pub struct AsyncNotifyListener {
    socket: UnixDatagram,
    file: SocketFile,
}

impl AsyncNotifyListener {
    /// Bind the notify socket at `path` (pass it to the kernel as `mconsole=notify:<path>`).
    ///
    /// # Errors
    /// [`Error::Bind`] (for example when `path` exists); [`Error::NoRuntime`] outside a tokio
    /// runtime.
    pub fn bind(path: &Path) -> Result<AsyncNotifyListener, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let (socket, file) = bind_notify_socket(path)?;
        let socket = into_tokio(socket)?;
        Ok(AsyncNotifyListener { socket, file })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Wait for the next notification. Wrap it in `tokio::time::timeout` to bound the wait.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a datagram that is not a notification (the listener stays
    /// usable); [`Error::NotifyReceive`] when the socket fails.
    pub async fn recv(&self) -> Result<Notification, Error> {
        let mut buf = [0u8; RECV_BUFFER];
        loop {
            match self.socket.recv(&mut buf).await {
                Ok(n) => return Ok(Notification::parse(buf.get(..n).unwrap_or_default())?),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::NotifyReceive(e)),
            }
        }
    }
}
