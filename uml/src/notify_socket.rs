//! A notify socket that many kernels report to, and that tells them apart: kernels started
//! with `mconsole=notify:<path>` (and launchers that forward their datagrams) send boots,
//! panics, hangs and `/proc/mconsole` writes here.
//!
//! The kernel sends from an unbound socket of its own (`mconsole_notify` in
//! `arch/um/drivers/mconsole_user.c`), so the sender address says nothing. The socket has
//! `SO_PASSCRED` set, so each datagram carries the sender's pid and uid: the pid tells which
//! guest sent it, the uid whether to trust it. A launcher's own private socket is
//! [`crate::mconsole::NotifyListener`]; this one is for a service that watches many guests.
//!
//! The socket file is removed on drop only while it is still the one bound here (the same
//! device and inode): a second service that replaced it keeps its socket.

use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg, setsockopt, sockopt,
};
use tokio::io::unix::AsyncFd;

use crate::mconsole::Notification;

/// The most of a datagram read: a notification (`struct mconsole_notify` in `mconsole.h`) is
/// a 16-byte header and at most 512 bytes of data; a longer datagram is cut here and then
/// refused by the parser.
const DATAGRAM_MAX: usize = 1024;

/// One notification and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub pid: u32,
    pub uid: u32,
    pub notification: Notification,
}

/// Failures of binding a shared notify socket.
#[derive(Debug, thiserror::Error)]
pub enum NotifySocketError {
    #[error("cannot create the directory of the notify socket {}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Someone else could replace the socket, or it is not where it seems.
    #[error("refusing the notify socket directory {}: {why}", path.display())]
    UnsafeDir { path: PathBuf, why: String },
    #[error("cannot bind the notify socket {}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The bound socket (tokio); its file is removed on drop if it is still this socket's.
#[derive(Debug)]
pub struct SharedNotifySocket {
    fd: AsyncFd<UnixDatagram>,
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl SharedNotifySocket {
    /// Binds `path`, creating its directory (mode 0700) when missing. A socket file left
    /// there by a listener that died is replaced; one that someone still listens on is not.
    ///
    /// # Errors
    /// [`NotifySocketError::Bind`] when the path is taken (by a live listener or by a file
    /// that is not a socket) or too long, and outside a tokio runtime.
    pub fn bind(path: &Path) -> Result<SharedNotifySocket, NotifySocketError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| NotifySocketError::Dir {
                    path: dir.to_owned(),
                    source,
                })?;
            trusted_dir(dir)?;
        }
        let bind_err = |source| NotifySocketError::Bind {
            path: path.to_owned(),
            source,
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(bind_err(io::Error::other("not inside a tokio runtime")));
        }
        if let Ok(meta) = std::fs::symlink_metadata(path)
            && meta.file_type().is_socket()
        {
            let probe = UnixDatagram::unbound().map_err(bind_err)?;
            if probe.connect(path).is_err() {
                let _ = std::fs::remove_file(path);
            }
        }
        let socket = UnixDatagram::bind(path).map_err(bind_err)?;
        let identity = std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        setsockopt(&socket, sockopt::PassCred, &true).map_err(|e| bind_err(io::Error::from(e)))?;
        socket.set_nonblocking(true).map_err(bind_err)?;
        // SAFETY: the AsyncFd owns the socket, whose descriptor stays open and unchanged
        // until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(|e| bind_err(e.into()))?;
        Ok(SharedNotifySocket {
            fd,
            path: path.to_owned(),
            identity,
        })
    }

    /// Where the socket is bound.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next well-formed notification and its sender. Malformed datagrams and datagrams
    /// without credentials are logged and skipped.
    ///
    /// # Errors
    /// When the socket fails.
    pub async fn recv(&self) -> io::Result<Sent> {
        loop {
            let mut guard = self.fd.readable().await?;
            let got = guard.try_io(|inner| {
                let mut buf = [0u8; DATAGRAM_MAX];
                let mut cmsg = nix::cmsg_space!(UnixCredentials);
                let mut iov = [IoSliceMut::new(&mut buf)];
                let msg = recvmsg::<()>(
                    inner.get_ref().as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_DONTWAIT,
                )
                .map_err(io::Error::from)?;
                let mut creds = None;
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmCredentials(c) = c {
                            creds = Some((c.pid(), c.uid()));
                        }
                    }
                }
                let len = msg.bytes;
                Ok((
                    creds,
                    buf.get(..len).map(<[u8]>::to_vec).unwrap_or_default(),
                ))
            });
            let (creds, data) = match got {
                Ok(Ok(v)) => v,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            };
            let Some((pid, uid)) = creds else {
                tracing::debug!("dropping a notify datagram without credentials");
                continue;
            };
            match Notification::parse(&data) {
                Ok(notification) => {
                    return Ok(Sent {
                        pid: u32::try_from(pid).unwrap_or(0),
                        uid,
                        notification,
                    });
                }
                Err(e) => tracing::debug!(pid, "dropping a malformed notify datagram: {e}"),
            }
        }
    }
}

impl Drop for SharedNotifySocket {
    fn drop(&mut self) {
        let current = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if current.is_some() && current == self.identity {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The socket's directory must be what it seems and only ours to change: not a symlink, owned
/// by this process's user and writable by nobody else, or sticky (like /tmp, where nobody
/// else may remove our socket). A predictable fallback such as `/tmp/umlkit-<uid>`, planted
/// by another user before umld first ran, is refused here. `bind(2)` then creates the socket
/// exclusively: it never follows a symlink or reuses a file.
fn trusted_dir(dir: &Path) -> Result<(), NotifySocketError> {
    use std::os::unix::fs::MetadataExt;
    let unsafe_dir = |why: String| NotifySocketError::UnsafeDir {
        path: dir.to_owned(),
        why,
    };
    let meta = std::fs::symlink_metadata(dir).map_err(|source| NotifySocketError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir(
            "it is a symlink; remove it, or pass --notify-socket in a directory of your own".into(),
        ));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir("it is not a directory".into()));
    }
    let uid = nix::unistd::getuid().as_raw();
    let mode = meta.mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if meta.uid() != uid && !(sticky && meta.uid() == 0) {
        return Err(unsafe_dir(format!(
            "it belongs to uid {}, not to umld's uid {uid}; remove it, or pass --notify-socket in a directory of your own",
            meta.uid()
        )));
    }
    if mode & 0o022 != 0 && !sticky {
        return Err(unsafe_dir(format!(
            "others may write in it (mode {mode:04o}); make it 0700"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_datagram_comes_with_its_senders_pid_and_uid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/notify");
        runtime().block_on(async {
            let socket = SharedNotifySocket::bind(&path).unwrap();
            let n = Notification::User {
                data: b"hello".to_vec(),
            };
            UnixDatagram::unbound()
                .unwrap()
                .send_to(&n.encode().unwrap(), &path)
                .unwrap();
            let sent = tokio::time::timeout(std::time::Duration::from_secs(10), socket.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(sent.pid, std::process::id());
            assert_eq!(sent.uid, nix::unistd::getuid().as_raw());
            assert_eq!(sent.notification, n);
        });
    }

    #[test]
    fn a_live_socket_is_not_taken_a_dead_one_is_and_a_replaced_one_is_kept_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        runtime().block_on(async {
            let first = SharedNotifySocket::bind(&path).unwrap();
            assert!(matches!(
                SharedNotifySocket::bind(&path),
                Err(NotifySocketError::Bind { .. })
            ));
            drop(first);
            assert!(!path.exists(), "removed on drop");
            // A socket file whose listener died is replaced.
            drop(UnixDatagram::bind(&path).unwrap());
            let second = SharedNotifySocket::bind(&path).unwrap();
            // Someone replaced the file: dropping leaves theirs alone.
            std::fs::remove_file(&path).unwrap();
            let theirs = UnixDatagram::bind(&path).unwrap();
            drop(second);
            assert!(path.exists(), "another listener's socket was removed");
            drop(theirs);
        });
    }
}

#[cfg(test)]
mod directory_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn refused(dir: &Path, naming: &str) {
        let err = SharedNotifySocket::bind(&dir.join("umld.notify")).unwrap_err();
        assert!(matches!(err, NotifySocketError::UnsafeDir { .. }), "{err}");
        assert!(err.to_string().contains(naming), "{err}");
        assert!(!dir.join("umld.notify").exists());
    }

    #[test]
    fn a_planted_symlink_for_the_socket_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let planted = tmp.path().join("umlkit-1000");
        std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
        refused(&planted, "symlink");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn a_socket_directory_others_may_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("open");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        refused(&dir, "0777");
    }

    #[test]
    fn a_socket_directory_of_another_user_is_refused() {
        // Giving the directory away needs root, as the rest of umld's tests do.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("theirs");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        refused(&dir, "uid 65534");
    }

    #[tokio::test]
    async fn a_fresh_directory_is_created_private_and_bound() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("umlkit-new");
        let socket = SharedNotifySocket::bind(&dir.join("umld.notify")).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert!(dir.join("umld.notify").exists());
        drop(socket);
    }
}
