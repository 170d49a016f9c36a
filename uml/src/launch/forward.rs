//! Passing a guest's notifications on to the user's forward socket, where umld listens.

use super::*;

/// The file name of the forward socket inside its directory.
const FORWARD_NAME: &str = "umld.notify";

/// Where a launcher forwards its guests' notify datagrams, unchanged: one well-known socket
/// per user, `$XDG_RUNTIME_DIR/umlkit/umld.notify`, or `/tmp/umlkit-<uid>/umld.notify` when
/// `XDG_RUNTIME_DIR` is unset, empty or not absolute (the XDG base directory specification
/// says to ignore a relative one), or when the result would be longer than a unix socket path
/// may be (107 bytes). Whoever watches the user's guests binds it (the desktop service does,
/// by default), and so learns of boots, panics and `/proc/mconsole` messages of guests it did
/// not start. This only computes the path; it never creates or binds anything.
pub fn forward_socket() -> PathBuf {
    let fallback =
        || PathBuf::from(format!("/tmp/umlkit-{}", nix::unistd::getuid())).join(FORWARD_NAME);
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if PathBuf::from(&dir).is_absolute() => {
            let path = PathBuf::from(dir).join("umlkit").join(FORWARD_NAME);
            if path.as_os_str().len() <= 107 {
                path
            } else {
                fallback()
            }
        }
        _ => fallback(),
    }
}

/// A forward socket is used only in a directory that is this user's alone: the fallback under
/// /tmp is predictable, and another user could have made it to read our guests' messages.
fn private_dir(socket: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    socket
        .parent()
        .and_then(|d| std::fs::symlink_metadata(d).ok())
        .is_some_and(|m| {
            m.is_dir() && m.uid() == nix::unistd::getuid().as_raw() && m.mode() & 0o022 == 0
        })
}

/// Passes the guest's notifications on to the user's forward socket ([`forward_socket`])
/// when someone listens there, so the desktop service learns of boots, panics and
/// `/proc/mconsole` messages of guests that `uml run` started. The service attributes a
/// datagram from the kernel's parent (this process) to that kernel's machine.
#[derive(Debug)]
pub(super) struct Forward {
    socket: Option<std::os::unix::net::UnixDatagram>,
    target: PathBuf,
}

impl Forward {
    pub(super) fn new() -> Forward {
        Forward {
            socket: std::os::unix::net::UnixDatagram::unbound().ok(),
            target: forward_socket(),
        }
    }

    pub(super) fn send(&self, n: &Notification) {
        // Our own boot marker is an internal detail of the built-in guest.
        if matches!(n, Notification::User { data } if data == BOOTED_MESSAGE) {
            return;
        }
        let Some(socket) = &self.socket else { return };
        if !self.target.exists() || !private_dir(&self.target) {
            return;
        }
        match n.encode() {
            // Nobody listening, or a full queue: the service is an observer, never a gate.
            Ok(datagram) => {
                let _ = socket.send_to(&datagram, &self.target);
            }
            Err(e) => tracing::debug!("cannot re-encode a notification: {e}"),
        }
    }
}
