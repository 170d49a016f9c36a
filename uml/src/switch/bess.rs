//! `AF_UNIX` `SOCK_SEQPACKET` sockets for the vector driver's `bess` transport
//! (`vec<n>:transport=bess,src=PATH,dst=PATH`, `vector_user.c`: `user_init_unix_fds`).
//!
//! The kernel makes a seqpacket socket, binds `src` if given and connects to `dst` when the
//! interface goes up (`vector_net_open`), and closes it when it goes down. Every message is one
//! Ethernet frame with no header. So a port is one accepted connection: there is no request,
//! no data address the peer names, and nothing the switch sends to anything but the
//! connection itself.
//!
//! std has no seqpacket sockets, so the few calls go to libc directly.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::socket::raise_buffers;

/// Who is at the other end of a connection (`SO_PEERCRED`: the process that connected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// The credentials of the process that made the connection `fd` (a stream or seqpacket
/// socket; `SO_PEERCRED`).
pub fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid and writable for the sizes passed.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    })?;
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn seqpacket_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the returned fd is checked before use.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A filesystem `sockaddr_un` for `path` and its length, or `InvalidInput` if it is longer
/// than `sun_path` (107 bytes and a NUL) or contains a NUL.
fn sockaddr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} does not fit a unix socket address (at most 107 bytes)",
                path.display()
            ),
        ));
    }
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((sun, len as libc::socklen_t))
}

/// A listening, non-blocking seqpacket socket bound to a filesystem path.
#[derive(Debug)]
pub struct SeqPacketListener {
    fd: OwnedFd,
}

impl SeqPacketListener {
    /// Bind `path` and listen. Fails with `AddrInUse` if the path exists.
    pub fn bind(path: &Path) -> io::Result<SeqPacketListener> {
        let fd = seqpacket_socket()?;
        let (sun, len) = sockaddr(path)?;
        // SAFETY: sun is a valid sockaddr_un that lives across the call; len is within it.
        check(unsafe { libc::bind(fd.as_raw_fd(), (&raw const sun).cast(), len) })?;
        // SAFETY: listen(2) takes no pointers.
        check(unsafe { libc::listen(fd.as_raw_fd(), 128) })?;
        Ok(SeqPacketListener { fd })
    }

    /// Accept one waiting connection (non-blocking, close-on-exec).
    pub fn accept(&self) -> io::Result<SeqPacket> {
        // SAFETY: null address pointers are allowed by accept4(2); no memory is passed.
        let fd = check(unsafe {
            libc::accept4(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        })?;
        // SAFETY: fd is a freshly accepted descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(SeqPacket { fd })
    }
}

impl AsRawFd for SeqPacketListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// One connected, non-blocking seqpacket socket: one message is one frame.
#[derive(Debug)]
pub struct SeqPacket {
    fd: OwnedFd,
}

impl SeqPacket {
    /// Connect to the listener at `path`, as the kernel's `bess` transport does (optionally
    /// binding `src` first). The socket is non-blocking.
    pub fn connect(path: &Path, src: Option<&Path>) -> io::Result<SeqPacket> {
        let fd = seqpacket_socket()?;
        if let Some(src) = src {
            let (sun, len) = sockaddr(src)?;
            // SAFETY: sun is a valid sockaddr_un that lives across the call.
            check(unsafe { libc::bind(fd.as_raw_fd(), (&raw const sun).cast(), len) })?;
        }
        let (sun, len) = sockaddr(path)?;
        // SAFETY: sun is a valid sockaddr_un that lives across the call.
        check(unsafe { libc::connect(fd.as_raw_fd(), (&raw const sun).cast(), len) })?;
        Ok(SeqPacket { fd })
    }

    /// Send one message. Never blocks.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: frame is valid for frame.len() bytes during the call.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Receive one message into `buf`. Returns its real length, larger than `buf` when it was
    /// cut (`MSG_TRUNC`). `Ok(None)` is the end of the connection. Never blocks.
    ///
    /// A seqpacket `recv` returns 0 both for an empty message and at the end of the stream;
    /// the end is told apart by the peer's shutdown (`POLLRDHUP`), so an empty message from a
    /// live peer is `Ok(Some(0))`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: buf is valid and writable for buf.len() bytes during the call.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        if n == 0 && self.peer_shut_down() {
            return Ok(None);
        }
        Ok(Some(n))
    }

    /// Receive up to `lens.len()` messages at once into `bufs`, `stride` bytes each (see
    /// [`recv`](Self::recv) for lengths). `Ok(None)` is the end of the connection: a first
    /// message of length 0 from a peer that has shut down. Never blocks.
    pub fn recv_many(
        &self,
        bufs: &mut [u8],
        stride: usize,
        lens: &mut [usize],
    ) -> io::Result<Option<usize>> {
        let n = super::socket::recv_batch(self.fd.as_raw_fd(), bufs, stride, lens)?;
        if n > 0 && lens[0] == 0 && self.peer_shut_down() {
            return Ok(None);
        }
        // At the end of the stream every further message reads as empty: keep those that
        // came before it.
        let n = match lens[..n].iter().position(|l| *l == 0) {
            Some(first_empty) if first_empty > 0 && self.peer_shut_down() => first_empty,
            _ => n,
        };
        Ok(Some(n))
    }

    /// Send `frames`, one message each, in as few calls as it takes; returns how many went
    /// (fewer when the peer's queue filled). Never blocks.
    pub fn send_many(&self, frames: &[&[u8]]) -> io::Result<usize> {
        super::socket::send_batch(self.fd.as_raw_fd(), frames)
    }

    fn peer_shut_down(&self) -> bool {
        let mut fds = [libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        }];
        // SAFETY: fds is a valid, writable array of one pollfd; timeout 0 never blocks.
        let ret = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
        ret > 0 && fds[0].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }

    /// The credentials of the process that made the connection.
    pub fn peer_cred(&self) -> io::Result<PeerCred> {
        peer_cred(self.fd.as_fd())
    }

    /// The path the peer bound (the kernel's `src=`), if it bound one.
    pub fn peer_path(&self) -> Option<String> {
        // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
        let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        // SAFETY: sun and len are valid and writable for the sizes passed.
        let ret =
            unsafe { libc::getpeername(self.fd.as_raw_fd(), (&raw mut sun).cast(), &mut len) };
        let path_len = (len as usize)
            .checked_sub(std::mem::size_of::<libc::sa_family_t>())
            .filter(|_| ret == 0)?
            .min(sun.sun_path.len());
        let bytes: Vec<u8> = sun.sun_path[..path_len]
            .iter()
            .map(|&c| c as u8)
            .take_while(|&b| b != 0)
            .collect();
        (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Raise the send and receive buffers (see [`DataSocket::raise_buffers`]).
    ///
    /// [`DataSocket::raise_buffers`]: super::DataSocket::raise_buffers
    pub fn raise_buffers(&self, bytes: usize) {
        raise_buffers(self.fd.as_raw_fd(), bytes);
    }
}

impl AsFd for SeqPacket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for SeqPacket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Whether something accepts seqpacket connections on `path` (the probe hangs up at once).
pub fn is_served(path: &Path) -> bool {
    SeqPacket::connect(path, None).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (tempfile::TempDir, std::path::PathBuf, SeqPacketListener) {
        let dir = tempfile::Builder::new()
            .prefix("umlkit-bess")
            .tempdir_in("/tmp")
            .unwrap();
        let path = dir.path().join("bess");
        let l = SeqPacketListener::bind(&path).unwrap();
        (dir, path, l)
    }

    #[test]
    fn each_message_is_received_whole_and_oversized_ones_report_their_length() {
        let (dir, path, l) = listener();
        let src = dir.path().join("src");
        let c = SeqPacket::connect(&path, Some(&src)).unwrap();
        let s = l.accept().unwrap();
        c.send(&[1u8; 60]).unwrap();
        c.send(&[2u8; 3000]).unwrap();
        c.send(&[]).unwrap();
        let mut buf = [0u8; 2048];
        assert_eq!(s.recv(&mut buf).unwrap(), Some(60));
        assert_eq!(s.recv(&mut buf).unwrap(), Some(3000));
        assert_eq!(
            s.recv(&mut buf).unwrap(),
            Some(0),
            "an empty message, not the end"
        );
        assert_eq!(
            s.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(s.peer_path().as_deref(), src.to_str());
        let cred = s.peer_cred().unwrap();
        assert_eq!(cred.pid as u32, std::process::id());
        drop(c);
        assert_eq!(s.recv(&mut buf).unwrap(), None);
    }

    #[test]
    fn an_unbound_peer_has_no_path_and_a_probe_sees_the_listener() {
        let (_dir, path, l) = listener();
        assert!(is_served(&path));
        let _c = SeqPacket::connect(&path, None).unwrap();
        let _probe = l.accept().unwrap();
        let s = l.accept().unwrap();
        assert_eq!(s.peer_path(), None);
        drop(l);
        assert!(!is_served(&path));
    }
}
