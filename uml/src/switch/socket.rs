//! `AF_UNIX` datagram sockets addressed the way the `daemon` transport needs: bound, connected
//! and sent to with the full 110-byte `sockaddr_un` length.
//!
//! Abstract names include every byte up to the address length, so a socket bound with a
//! shorter length has a different name, and a switch bound that way silently receives nothing
//! (uml-spec §4.1). std's `UnixDatagram` trims abstract names to the given bytes, which is why
//! these few calls go to libc directly.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::request::{PeerAddr, SOCKADDR_LEN, SUN_PATH_LEN};

const SO_SNDBUFFORCE: libc::c_int = 32;
const SO_RCVBUFFORCE: libc::c_int = 33;

/// A non-blocking `AF_UNIX` `SOCK_DGRAM` socket.
#[derive(Debug)]
pub struct DataSocket {
    fd: OwnedFd,
}

fn sockaddr(addr: &PeerAddr) -> libc::sockaddr_un {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in sun.sun_path.iter_mut().zip(addr.path_bytes()) {
        *dst = *src as libc::c_char;
    }
    sun
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_len(ret: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

impl DataSocket {
    /// A new unbound socket.
    pub fn new() -> io::Result<Self> {
        // SAFETY: socket(2) takes no pointers; the returned fd is checked before use.
        let fd = check(unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: fd is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(DataSocket { fd })
    }

    /// A socket bound to `addr` with the full 110-byte length.
    pub fn bind(addr: &PeerAddr) -> io::Result<Self> {
        let sock = Self::new()?;
        let sun = sockaddr(addr);
        // SAFETY: sun is a valid sockaddr_un that lives across the call; 110 is its size.
        check(unsafe {
            libc::bind(
                sock.fd.as_raw_fd(),
                (&raw const sun).cast::<libc::sockaddr>(),
                SOCKADDR_LEN as libc::socklen_t,
            )
        })?;
        Ok(sock)
    }

    /// A socket connected to `addr` (110-byte length), so that `poll` reports it writable
    /// only when the peer's receive queue has room.
    pub fn connect(addr: &PeerAddr) -> io::Result<Self> {
        let sock = Self::new()?;
        sock.connect_to(addr)?;
        Ok(sock)
    }

    /// Connect this socket to `addr` (110-byte length): it then only receives from `addr`, and
    /// `poll` reports it writable only when `addr`'s receive queue has room.
    pub fn connect_to(&self, addr: &PeerAddr) -> io::Result<()> {
        let sun = sockaddr(addr);
        // SAFETY: sun is a valid sockaddr_un that lives across the call; 110 is its size.
        check(unsafe {
            libc::connect(
                self.fd.as_raw_fd(),
                (&raw const sun).cast::<libc::sockaddr>(),
                SOCKADDR_LEN as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// Connect this socket to the filesystem socket `path` (such as `/proc/self/fd/N` for a
    /// socket file held open with `O_PATH`).
    pub fn connect_path(&self, path: &std::path::Path) -> io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        if bytes.len() >= SUN_PATH_LEN || bytes.contains(&0) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let mut path_bytes = [0u8; SUN_PATH_LEN];
        path_bytes[..bytes.len()].copy_from_slice(bytes);
        self.connect_to(&PeerAddr::from_path_bytes(path_bytes))
    }

    /// Send one datagram to `addr` (110-byte length). Never blocks.
    pub fn send_to(&self, frame: &[u8], addr: &PeerAddr) -> io::Result<usize> {
        let sun = sockaddr(addr);
        // SAFETY: frame and sun are valid for the given lengths during the call.
        check_len(unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                (&raw const sun).cast::<libc::sockaddr>(),
                SOCKADDR_LEN as libc::socklen_t,
            )
        })
    }

    /// Send one datagram to the connected peer. Never blocks.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: frame is valid for frame.len() bytes during the call.
        check_len(unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        })
    }

    /// Receive one datagram into `buf`. Returns the datagram's real length (which is larger
    /// than `buf` when it was cut) and the sender's address. Never blocks.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, PeerAddr)> {
        // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
        let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        let mut len = SOCKADDR_LEN as libc::socklen_t;
        // SAFETY: buf, sun and len are valid and writable for the sizes passed.
        let n = check_len(unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                (&raw mut sun).cast::<libc::sockaddr>(),
                &mut len,
            )
        })?;
        let mut path = [0u8; SUN_PATH_LEN];
        let path_len = (len as usize).saturating_sub(2).min(SUN_PATH_LEN);
        for (dst, src) in path.iter_mut().zip(&sun.sun_path[..path_len]) {
            *dst = *src as u8;
        }
        Ok((n, PeerAddr::from_path_bytes(path)))
    }

    /// Raise the send and receive buffers to `bytes`, past the system limit when allowed
    /// (`SO_*BUFFORCE` needs CAP_NET_ADMIN); failures are ignored, the defaults still work.
    pub fn raise_buffers(&self, bytes: usize) {
        raise_buffers(self.fd.as_raw_fd(), bytes);
    }
}

/// [`DataSocket::raise_buffers`] for any socket.
pub(super) fn raise_buffers(fd: RawFd, bytes: usize) {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (force, plain) in [
        (SO_SNDBUFFORCE, libc::SO_SNDBUF),
        (SO_RCVBUFFORCE, libc::SO_RCVBUF),
    ] {
        if setsockopt_int(fd, force, value).is_err() {
            let _ = setsockopt_int(fd, plain, value);
        }
    }
}

/// Send `frames` on the connected socket `fd`, one message each, in as few `sendmmsg` calls
/// as it takes; stops at the first that does not fit. Returns how many were sent, or the
/// error of the first when none was.
pub(super) fn send_batch(fd: RawFd, frames: &[&[u8]]) -> io::Result<usize> {
    const MAX: usize = 64;
    let mut sent = 0;
    while sent < frames.len() {
        let chunk = &frames[sent..frames.len().min(sent + MAX)];
        let mut iovs: [libc::iovec; MAX] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX];
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
        for (i, frame) in chunk.iter().enumerate() {
            iovs[i] = libc::iovec {
                iov_base: frame.as_ptr().cast_mut().cast(),
                iov_len: frame.len(),
            };
            msgs[i].msg_hdr.msg_iov = &raw mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: msgs[..chunk.len()] point at iovecs that point at frames, all alive and
        // unmoved for the duration of the call; the kernel only reads them.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                msgs.as_mut_ptr(),
                chunk.len() as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if sent == 0 { Err(e) } else { Ok(sent) };
        }
        sent += n as usize;
        if (n as usize) < chunk.len() {
            break;
        }
    }
    Ok(sent)
}

/// Up to `lens.len()` messages from `fd` into `bufs` (`lens.len()` slices of `stride` bytes),
/// with one `recvmmsg`; each length is the message's real one (`MSG_TRUNC`), larger than
/// `stride` when it was cut. Returns how many were received.
pub(super) fn recv_batch(
    fd: RawFd,
    bufs: &mut [u8],
    stride: usize,
    lens: &mut [usize],
) -> io::Result<usize> {
    const MAX: usize = 64;
    let count = lens.len().min(MAX).min(bufs.len() / stride.max(1));
    let mut iovs: [libc::iovec; MAX] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX];
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
    let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
    for (i, chunk) in bufs.chunks_exact_mut(stride).take(count).enumerate() {
        iovs[i] = libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: stride,
        };
        msgs[i].msg_hdr.msg_iov = &raw mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: msgs[..count] point at iovecs covering disjoint, writable parts of bufs, alive
    // for the duration of the call.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    for (len, msg) in lens.iter_mut().zip(&msgs[..n as usize]) {
        *len = msg.msg_len as usize;
    }
    Ok(n as usize)
}

/// Bytes sent on `fd` that its receiver has not read yet (`SIOCOUTQ`; for `AF_UNIX`, the
/// send buffer in use).
pub(super) fn unread_bytes(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int to the pointer, which is valid and writable.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &raw mut n) };
    if ret < 0 { 0 } else { n.max(0) as usize }
}

fn setsockopt_int(fd: RawFd, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: value lives across the call and its size is passed.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

impl AsFd for DataSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for DataSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_length_abstract_names_reach_each_other() {
        let a = PeerAddr::abstract_from_pid(std::process::id(), 0xabc001);
        let b = PeerAddr::abstract_from_pid(std::process::id(), 0xabc002);
        let sa = DataSocket::bind(&a).unwrap();
        let sb = DataSocket::bind(&b).unwrap();
        sa.send_to(b"hello", &b).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = sb.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, a);
        let c = DataSocket::connect(&a).unwrap();
        c.send(b"x").unwrap();
        assert_eq!(sa.recv_from(&mut buf).unwrap().0, 1);
    }

    #[test]
    fn oversized_datagrams_report_their_real_length() {
        let a = PeerAddr::abstract_from_pid(std::process::id(), 0xabc003);
        let sa = DataSocket::bind(&a).unwrap();
        let c = DataSocket::new().unwrap();
        c.send_to(&[7u8; 3000], &a).unwrap();
        let mut buf = [0u8; 1600];
        assert_eq!(sa.recv_from(&mut buf).unwrap().0, 3000);
    }
}
