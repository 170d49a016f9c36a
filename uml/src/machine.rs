//! What every launcher shares with the desktop machine service (`umld`).
//!
//! `umld` binds one well-known notify socket per user. A launcher that is not `umld` itself
//! (`uml run`, a script) can forward the kernel's notify datagrams there, unchanged, so the
//! service learns of boots, panics and `/proc/mconsole` messages of guests it did not start.
//! This module only computes that path; it never creates or binds anything.

use std::path::PathBuf;

/// The file name of the service's notify socket inside its runtime directory.
pub const SERVICE_NOTIFY_NAME: &str = "umld.notify";

/// The service's well-known notify socket: `$XDG_RUNTIME_DIR/umlkit/umld.notify`, or
/// `/tmp/umlkit-<uid>/umld.notify` when `XDG_RUNTIME_DIR` is unset, empty or not absolute
/// (the XDG base directory specification says to ignore a relative one), or when the result
/// would be longer than a unix socket path may be (107 bytes).
pub fn service_notify_socket() -> PathBuf {
    let fallback = || {
        PathBuf::from(format!("/tmp/umlkit-{}", nix::unistd::getuid())).join(SERVICE_NOTIFY_NAME)
    };
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if PathBuf::from(&dir).is_absolute() => {
            let path = PathBuf::from(dir).join("umlkit").join(SERVICE_NOTIFY_NAME);
            if path.as_os_str().len() <= 107 {
                path
            } else {
                fallback()
            }
        }
        _ => fallback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_lives_in_the_runtime_dir_or_a_per_user_tmp_dir() {
        let path = service_notify_socket();
        assert!(path.ends_with("umld.notify"), "{}", path.display());
        assert!(path.is_absolute());
        assert!(path.as_os_str().len() <= 107);
    }
}
