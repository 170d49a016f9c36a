//! The service's notify socket: kernels started with `mconsole=notify:<path>` (and launchers
//! that forward their datagrams) report boots, panics, hangs and `/proc/mconsole` writes here.
//!
//! The kernel sends from an unbound socket of its own (`mconsole_notify` in
//! `arch/um/drivers/mconsole_user.c`), so the sender address says nothing. The socket has
//! `SO_PASSCRED` set, so each datagram carries the sender's pid and uid: the pid tells which
//! guest sent it, and a datagram from another uid is dropped.

use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg, setsockopt, sockopt,
};
use tokio::io::unix::AsyncFd;
use uml::mconsole::Notification;

/// One notification and who sent it.
#[derive(Debug)]
pub(crate) struct Received {
    pub pid: u32,
    pub uid: u32,
    pub notification: Notification,
}

/// The bound notify socket; its file is removed on drop.
#[derive(Debug)]
pub(crate) struct NotifySocket {
    fd: AsyncFd<UnixDatagram>,
    path: PathBuf,
}

/// Failures of binding the notify socket.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot create the directory of the notify socket {}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot bind the notify socket {} (is another umld running? pass --notify-socket)",
        path.display()
    )]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl NotifySocket {
    /// Binds `path`. A socket file left there by a service that died is replaced; one that
    /// someone still listens on is not.
    pub(crate) fn bind(path: &Path) -> Result<NotifySocket, NotifyError> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| NotifyError::Dir {
                    path: dir.to_owned(),
                    source,
                })?;
        }
        let bind_err = |source| NotifyError::Bind {
            path: path.to_owned(),
            source,
        };
        if let Ok(meta) = std::fs::symlink_metadata(path)
            && meta.file_type().is_socket()
        {
            let probe = UnixDatagram::unbound().map_err(bind_err)?;
            if probe.connect(path).is_err() {
                let _ = std::fs::remove_file(path);
            }
        }
        let socket = UnixDatagram::bind(path).map_err(bind_err)?;
        setsockopt(&socket, sockopt::PassCred, &true).map_err(|e| bind_err(io::Error::from(e)))?;
        socket.set_nonblocking(true).map_err(bind_err)?;
        // SAFETY: the AsyncFd owns the socket, whose descriptor stays open and unchanged
        // until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(|e| bind_err(e.into()))?;
        Ok(NotifySocket {
            fd,
            path: path.to_owned(),
        })
    }

    /// The next well-formed notification. Malformed datagrams and datagrams without
    /// credentials are logged and skipped.
    pub(crate) async fn recv(&self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            let got = guard.try_io(|inner| {
                let mut buf = [0u8; 1024];
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
                    return Ok(Received {
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

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
