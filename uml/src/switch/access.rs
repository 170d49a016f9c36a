//! Which data address a `daemon` client may have the switch send its frames to.
//!
//! A client names its data address in its request, and the switch (often root) sends every
//! frame for that port there. Unchecked, a local user could point a port at any socket the
//! switch can reach, such as a root guest's mconsole, and have the switch write to it
//! (uml_switch accepts any address). The control connection's `SO_PEERCRED` says who the
//! client is, and the address must be theirs:
//!
//! * A filesystem address must be a socket file (not a symlink to one) owned by the peer's
//!   uid. The file is opened with `O_PATH | O_NOFOLLOW`, checked with `fstat`, and the switch
//!   connects through `/proc/self/fd/N`: the socket checked is the socket connected, whatever
//!   is renamed meanwhile.
//! * An abstract address has no owner to check. It must be the kernel's own shape,
//!   `{0, pad[3], pid, usec}` with zeros after (`daemon_user.c`), carrying the peer's pid:
//!   the name belongs to the process that is connecting. A peer in another pid namespace
//!   (whose pid the switch sees translated) is therefore refused on an abstract address; it
//!   can use a filesystem one.
//! * A peer whose uid is 0 or the switch's own gains nothing by lying and may name any
//!   address.
//!
//! Who may be a peer at all is decided by the control socket's permissions (`--mode`).
//! `bess` ports are not checked here: a bess peer names no address.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::bess::PeerCred;
use super::request::PeerAddr;

/// Where the switch may send a port's frames.
#[derive(Debug)]
pub enum DataTarget {
    /// The peer's own abstract address.
    Abstract,
    /// A socket file owned by the peer, held open (`O_PATH`); connect to [`Self::proc_path`].
    File(OwnedFd),
}

impl DataTarget {
    /// `/proc/self/fd/N` for a [`DataTarget::File`]: connecting there reaches the socket that
    /// was checked.
    pub fn proc_path(&self) -> Option<PathBuf> {
        match self {
            DataTarget::Abstract => None,
            DataTarget::File(fd) => {
                Some(PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())))
            }
        }
    }
}

/// Decide whether a peer with credentials `peer` may have frames sent to `addr`; `own_uid`
/// is the switch's effective uid.
///
/// # Errors
/// Why the address is refused, as a sentence for the log.
pub fn check(addr: &PeerAddr, peer: &PeerCred, own_uid: u32) -> Result<DataTarget, String> {
    let trusted = peer.uid == 0 || peer.uid == own_uid;
    if addr.is_abstract() {
        let bytes = addr.path_bytes();
        let pid = u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let kernel_shape = bytes[1..4] == [0; 3] && bytes[12..].iter().all(|b| *b == 0);
        if trusted || (kernel_shape && i64::from(pid) == i64::from(peer.pid)) {
            return Ok(DataTarget::Abstract);
        }
        return Err(format!(
            "the abstract address {} is not the peer's own (pid {}, uid {})",
            addr.describe(),
            peer.pid,
            peer.uid
        ));
    }
    let bytes = addr.path_bytes();
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let path = OsStr::from_bytes(&bytes[..end]);
    let c_path = std::ffi::CString::new(path.as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the call.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(format!(
            "the data address {} cannot be opened: {}",
            addr.describe(),
            io::Error::last_os_error()
        ));
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: stat is plain old data; all-zero is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open and st is writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(format!(
            "the data address {} cannot be examined: {}",
            addr.describe(),
            io::Error::last_os_error()
        ));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(format!(
            "the data address {} is not a socket",
            addr.describe()
        ));
    }
    if !trusted && st.st_uid != peer.uid {
        return Err(format!(
            "the data address {} belongs to uid {}, not to the peer (pid {}, uid {})",
            addr.describe(),
            st.st_uid,
            peer.pid,
            peer.uid
        ));
    }
    Ok(DataTarget::File(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::request::SUN_PATH_LEN;

    fn peer(pid: i32, uid: u32) -> PeerCred {
        PeerCred { pid, uid, gid: uid }
    }

    fn path_addr(path: &std::path::Path) -> PeerAddr {
        let mut bytes = [0u8; SUN_PATH_LEN];
        let p = path.as_os_str().as_bytes();
        bytes[..p.len()].copy_from_slice(p);
        PeerAddr::from_path_bytes(bytes)
    }

    #[test]
    fn abstract_addresses_must_carry_the_peers_pid() {
        let own = PeerAddr::abstract_from_pid(4242, 17);
        assert!(matches!(
            check(&own, &peer(4242, 1000), 0),
            Ok(DataTarget::Abstract)
        ));
        assert!(check(&own, &peer(4243, 1000), 0).is_err());
        let mut bytes = *own.path_bytes();
        bytes[40] = 1;
        assert!(check(&PeerAddr::from_path_bytes(bytes), &peer(4242, 1000), 0).is_err());
        // root and the switch's own user may name any address.
        assert!(check(&own, &peer(1, 0), 0).is_ok());
        assert!(check(&own, &peer(1, 1000), 1000).is_ok());
    }

    #[test]
    fn file_addresses_must_be_sockets_owned_by_the_peer() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let _bound = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let target = check(&path_addr(&sock), &peer(1, me), u32::MAX).unwrap();
        assert!(target.proc_path().unwrap().starts_with("/proc/self/fd/"));
        assert!(
            check(&path_addr(&sock), &peer(1, me + 1), u32::MAX)
                .unwrap_err()
                .contains(&format!("belongs to uid {me}"))
        );
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(
            check(&path_addr(&file), &peer(1, me), u32::MAX)
                .unwrap_err()
                .contains("not a socket")
        );
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&sock, &link).unwrap();
        assert!(check(&path_addr(&link), &peer(1, me), u32::MAX).is_err());
        assert!(check(&path_addr(&dir.path().join("none")), &peer(1, me), u32::MAX).is_err());
    }
}
