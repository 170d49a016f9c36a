//! The notify listener: the socket a kernel started with `mconsole=notify:<path>` reports to.
//!
//! The kernel sends to a **filesystem** path only: it passes a 110-byte address with
//! uninitialised bytes after the NUL (`mconsole_notify` in `mconsole_user.c`), so an abstract
//! name can never match. The listener removes its socket file when dropped, but only if the
//! file at the path is still the one it bound (someone may have replaced it).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::client::RECV_BUFFER;
use super::{Error, Notification};

/// The socket file a listener owns; removed on drop if it is still the same inode.
#[derive(Debug)]
pub(super) struct SocketFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl SocketFile {
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let current = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if current.is_some()
            && current == self.identity
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), "cannot remove notify socket: {e}");
        }
    }
}

pub(super) fn bind_notify_socket(path: &Path) -> Result<(UnixDatagram, SocketFile), Error> {
    let socket = UnixDatagram::bind(path).map_err(|source| Error::Bind {
        path: path.to_owned(),
        source,
    })?;
    let identity = std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    Ok((
        socket,
        SocketFile {
            path: path.to_owned(),
            identity,
        },
    ))
}

/// A blocking listener for kernel notifications.
///
/// ```no_run
/// # fn main() -> Result<(), uml::mconsole::Error> {
/// use std::time::Duration;
/// let listener = uml::mconsole::NotifyListener::bind("/tmp/uml-notify".as_ref())?;
/// // start `linux ... mconsole=notify:/tmp/uml-notify`, then:
/// if let Some(event) = listener.recv(Duration::from_secs(30))? {
///     println!("{event:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct NotifyListener {
    socket: UnixDatagram,
    file: SocketFile,
}

impl NotifyListener {
    /// Bind a datagram socket at `path` (pass it to the kernel as `mconsole=notify:<path>`).
    ///
    /// # Errors
    /// [`Error::Bind`], for example when `path` already exists or is over 107 bytes.
    pub fn bind(path: &Path) -> Result<NotifyListener, Error> {
        let (socket, file) = bind_notify_socket(path)?;
        Ok(NotifyListener { socket, file })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Wait up to `timeout` for one notification; `Ok(None)` when none came.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a datagram that is not a notification (the listener stays
    /// usable); [`Error::NotifyReceive`] when the socket fails.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Notification>, Error> {
        // A zero timeout means "block forever" to SO_RCVTIMEO; the smallest real one is 1 µs.
        let timeout = timeout.max(Duration::from_micros(1));
        self.socket
            .set_read_timeout(Some(timeout))
            .map_err(Error::NotifyReceive)?;
        let mut buf = [0u8; RECV_BUFFER];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) => return Ok(Some(Notification::parse(buf.get(..n).unwrap_or_default())?)),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::NotifyReceive(e)),
            }
        }
    }
}
