//! Waiting for a process to end without polling it: a pidfd (pidfd_open(2), Linux 5.3), which
//! becomes readable when the process exits, watched by tokio. Where pidfds are unavailable
//! (older hosts, seccomp filters), [`exited`] falls back to looking four times a second.
//!
//! A pidfd refers to the process, not to the number: once open, a reused pid cannot fool it.
//! Between learning a pid and opening its pidfd the pid could be reused; callers open it right
//! after learning the pid, as every user of pidfd_open does.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// How often [`exited`] looks at a process it has no pidfd for.
const POLL: Duration = Duration::from_millis(250);

/// A descriptor that refers to one process.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// Opens a pidfd for `pid`.
    ///
    /// # Errors
    /// ESRCH when no such process exists; ENOSYS where the kernel has no pidfd_open.
    pub fn open(pid: u32) -> io::Result<PidFd> {
        let pid = libc::pid_t::try_from(pid)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1; no
        // memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("descriptor out of range"))?;
        // SAFETY: the descriptor was just returned by pidfd_open and is owned by nothing else.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Waits until the process has exited (it may still be a zombie, not yet reaped).
    ///
    /// # Errors
    /// When the descriptor cannot be registered with tokio's reactor (outside a tokio
    /// runtime).
    pub async fn exited(self) -> io::Result<()> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other("not inside a tokio runtime"));
        }
        // SAFETY: the AsyncFd owns the pidfd, which stays open and unchanged until the
        // AsyncFd is dropped.
        let afd = unsafe { tokio::io::unix::AsyncFd::register(self.0) }?;
        let _ready = afd.readable().await?;
        Ok(())
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Waits until `pid` has exited: through a pidfd, or by polling where none can be had. Returns
/// at once when no such process exists.
pub async fn exited(pid: u32) {
    match PidFd::open(pid) {
        Ok(fd) => {
            if fd.exited().await.is_ok() {
                return;
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return,
        Err(_) => {}
    }
    while crate::instance::pid_alive(pid) && !crate::procfs::is_zombie(pid) {
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exited_returns_when_a_child_ends_and_at_once_for_no_process() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut child = std::process::Command::new("sleep")
                .arg("0.2")
                .spawn()
                .unwrap();
            let pid = child.id();
            let fd = PidFd::open(pid).unwrap();
            tokio::time::timeout(Duration::from_secs(10), fd.exited())
                .await
                .expect("the pidfd became readable")
                .unwrap();
            assert!(child.try_wait().unwrap().is_some(), "exited means reapable");
            tokio::time::timeout(Duration::from_secs(10), exited(pid))
                .await
                .expect("a reaped pid is gone at once");
        });
    }
}
