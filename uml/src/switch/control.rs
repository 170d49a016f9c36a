//! The control socket's file: binding it, telling a live switch from a stale socket file, and
//! removing it again only if it is still the one this switch bound.

use std::io;
use std::os::linux::fs::MetadataExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::SwitchError;

/// Whether a switch (ours, uml_switch, anything listening) accepts connections on `ctl`.
///
/// The probe connects and hangs up at once; a switch sees a client that said nothing.
pub fn is_served(ctl: &Path) -> bool {
    UnixStream::connect(ctl).is_ok()
}

/// A bound, listening, non-blocking control socket and the identity of its file.
#[derive(Debug)]
pub struct ControlSocket {
    pub listener: UnixListener,
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl ControlSocket {
    /// Bind `path`. A socket file nobody serves (connect gives `ECONNREFUSED`) is stale and
    /// replaced; a live one is refused; a path that is not a socket is never touched.
    pub fn bind(path: &Path) -> Result<ControlSocket, SwitchError> {
        let listener = match UnixListener::bind(path) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                Self::remove_if_stale(path)?;
                UnixListener::bind(path).map_err(|source| SwitchError::Bind {
                    path: path.to_owned(),
                    source,
                })?
            }
            Err(source) => {
                return Err(SwitchError::Bind {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        listener
            .set_nonblocking(true)
            .map_err(|source| SwitchError::Bind {
                path: path.to_owned(),
                source,
            })?;
        let identity = std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.st_dev(), m.st_ino()));
        Ok(ControlSocket {
            listener,
            path: path.to_owned(),
            identity,
        })
    }

    fn remove_if_stale(path: &Path) -> Result<(), SwitchError> {
        let meta = std::fs::symlink_metadata(path).map_err(|source| SwitchError::Bind {
            path: path.to_owned(),
            source,
        })?;
        if !meta.file_type().is_socket() {
            return Err(SwitchError::NotASocket(path.to_owned()));
        }
        match UnixStream::connect(path) {
            Ok(_) => Err(SwitchError::AlreadyServed(path.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(path = %path.display(), "replacing a stale control socket");
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

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remove the socket file, unless something else has replaced it since it was bound.
    pub fn remove_file(&mut self) {
        let Some(identity) = self.identity.take() else {
            return;
        };
        let current = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.st_dev(), m.st_ino()));
        if current == Some(identity)
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), "cannot remove the control socket: {e}");
        }
    }

    /// Forget the file without removing it (for a parent process that hands the socket to a
    /// forked child).
    pub fn disown(&mut self) {
        self.identity = None;
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.remove_file();
    }
}
