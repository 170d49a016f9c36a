//! The switch's listening socket files (the `daemon` control socket and the `bess` socket):
//! binding them, telling a live switch from a stale socket file, and removing them again only
//! if they are still the ones this switch bound.

use std::io;
use std::os::linux::fs::MetadataExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::SwitchError;
use super::bess::{SeqPacket, SeqPacketListener};

/// Whether a switch (ours, uml_switch, anything listening) accepts connections on `ctl`.
///
/// The probe connects and hangs up at once; a switch sees a client that said nothing.
pub fn is_served(ctl: &Path) -> bool {
    UnixStream::connect(ctl).is_ok()
}

/// A bound, listening, non-blocking control socket (`SOCK_STREAM`) and its file.
#[derive(Debug)]
pub struct ControlSocket {
    pub listener: UnixListener,
    file: SocketFile,
}

impl ControlSocket {
    /// Bind `path`. A socket file nobody serves (connect gives `ECONNREFUSED`) is stale and
    /// replaced; a live one is refused; a path that is not a socket is never touched.
    pub fn bind(path: &Path) -> Result<ControlSocket, SwitchError> {
        let (listener, file) = SocketFile::bind(
            path,
            |p| {
                let l = UnixListener::bind(p)?;
                l.set_nonblocking(true)?;
                Ok(l)
            },
            |p| UnixStream::connect(p).map(drop),
        )?;
        Ok(ControlSocket { listener, file })
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Remove the socket file, unless something else has replaced it since it was bound.
    pub fn remove_file(&mut self) {
        self.file.remove();
    }

    /// Forget the file without removing it (for a parent process that hands the socket to a
    /// forked child).
    pub fn disown(&mut self) {
        self.file.identity = None;
    }
}

/// A bound, listening, non-blocking `bess` socket (`SOCK_SEQPACKET`) and its file, with the
/// same stale-file rules as [`ControlSocket`].
#[derive(Debug)]
pub struct BessSocket {
    pub listener: SeqPacketListener,
    file: SocketFile,
}

impl BessSocket {
    pub fn bind(path: &Path) -> Result<BessSocket, SwitchError> {
        let (listener, file) = SocketFile::bind(path, SeqPacketListener::bind, |p| {
            SeqPacket::connect(p, None).map(drop)
        })?;
        Ok(BessSocket { listener, file })
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    pub fn remove_file(&mut self) {
        self.file.remove();
    }

    pub fn disown(&mut self) {
        self.file.identity = None;
    }
}

/// A socket file this process bound, known by its device and inode.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl SocketFile {
    /// Bind `path` with `bind`. When the path is taken, `probe` (a connect) tells a live
    /// listener (refused) from a stale file (`ECONNREFUSED`: replaced).
    fn bind<T>(
        path: &Path,
        bind: impl Fn(&Path) -> io::Result<T>,
        probe: impl Fn(&Path) -> io::Result<()>,
    ) -> Result<(T, SocketFile), SwitchError> {
        let bind_err = |source| SwitchError::Bind {
            path: path.to_owned(),
            source,
        };
        let bound = match bind(path) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                Self::remove_if_stale(path, probe)?;
                bind(path).map_err(bind_err)?
            }
            Err(source) => return Err(bind_err(source)),
        };
        let identity = std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.st_dev(), m.st_ino()));
        let file = SocketFile {
            path: path.to_owned(),
            identity,
        };
        Ok((bound, file))
    }

    fn remove_if_stale(
        path: &Path,
        probe: impl Fn(&Path) -> io::Result<()>,
    ) -> Result<(), SwitchError> {
        let meta = std::fs::symlink_metadata(path).map_err(|source| SwitchError::Bind {
            path: path.to_owned(),
            source,
        })?;
        if !meta.file_type().is_socket() {
            return Err(SwitchError::NotASocket(path.to_owned()));
        }
        match probe(path) {
            Ok(()) => Err(SwitchError::AlreadyServed(path.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(path = %path.display(), "replacing a stale socket");
                std::fs::remove_file(path).map_err(|source| SwitchError::RemoveStale {
                    path: path.to_owned(),
                    source,
                })
            }
            Err(source) => Err(SwitchError::Probe {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn remove(&mut self) {
        let Some(identity) = self.identity.take() else {
            return;
        };
        let current = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.st_dev(), m.st_ino()));
        if current == Some(identity)
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), "cannot remove the socket file: {e}");
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.remove();
    }
}
