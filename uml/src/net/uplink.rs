//! A switch's uplink to a tunnel: relays frames between a bess port of a `uml switch` and an
//! L2TPv3-over-UDP peer, which is the UML kernel of a guest on another host started with the
//! mirror of this end's spec (`--net l2tpv3:REMOTE:LOCAL[:…]` there). Every guest on the
//! switch then shares one Ethernet with that guest.
//!
//! It is a port like any guest's: it connects to the switch's bess socket (one frame per
//! message) and needs nothing of the switch beyond that, nor any privilege.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::Tunnel;
use super::l2tpv3::{Codec, CodecError};
use crate::switch::bess::SeqPacket;

/// Why an uplink cannot start.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("the tunnel cannot be relayed")]
    Tunnel(#[from] CodecError),
    #[error("cannot bind the tunnel's local end {addr}")]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to the switch's bess socket {path}")]
    Switch {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Frames relayed by an [`Uplink`], each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UplinkStats {
    pub to_tunnel: u64,
    pub from_tunnel: u64,
    /// Datagrams of another session or cookie, or too short.
    pub dropped: u64,
}

/// A running uplink; stopped (and its thread joined) on drop or by [`Uplink::stop`].
#[derive(Debug)]
pub struct Uplink {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<UplinkStats>>>,
}

impl Uplink {
    /// Connects the switch at `bess` to the l2tpv3 `tunnel` (over UDP) and starts relaying.
    ///
    /// # Errors
    /// [`UplinkError`] when the tunnel is not UDP, its local end cannot be bound, or the
    /// switch does not answer.
    pub fn l2tpv3(bess: &Path, tunnel: &Tunnel) -> Result<Uplink, UplinkError> {
        let codec = Codec::from_keys(&tunnel.keys)?;
        let port = |key: &str| {
            tunnel
                .keys
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.parse::<u16>().ok())
                .unwrap_or(1701)
        };
        let local = (tunnel.local, port("srcport"));
        let remote = (tunnel.remote, port("dstport"));
        let bind_err = |source| UplinkError::Bind {
            addr: format!("{}:{}", local.0, local.1),
            source,
        };
        let udp = UdpSocket::bind(local).map_err(bind_err)?;
        udp.connect(remote).map_err(bind_err)?;
        udp.set_nonblocking(true).map_err(bind_err)?;
        let switch = SeqPacket::connect(bess, None).map_err(|source| UplinkError::Switch {
            path: bess.display().to_string(),
            source,
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("uml-uplink".into())
            .spawn(move || relay(&switch, &udp, codec, &flag))
            .map_err(|source| UplinkError::Switch {
                path: bess.display().to_string(),
                source,
            })?;
        Ok(Uplink {
            stop,
            thread: Some(thread),
        })
    }

    /// Whether the relay has ended by itself (the switch closed the port, or an I/O error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops relaying and returns what was relayed.
    ///
    /// # Errors
    /// The I/O error that ended the relay early, if one did.
    pub fn stop(mut self) -> io::Result<UplinkStats> {
        self.finish()
    }

    fn finish(&mut self) -> io::Result<UplinkStats> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the uplink thread panicked")),
            None => Ok(UplinkStats::default()),
        }
    }
}

impl Drop for Uplink {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Moves frames both ways until `stop` is set or the switch closes the port.
fn relay(
    switch: &SeqPacket,
    udp: &UdpSocket,
    mut codec: Codec,
    stop: &AtomicBool,
) -> io::Result<UplinkStats> {
    let mut stats = UplinkStats::default();
    // A frame of the largest MTU the vector driver takes (65534) plus the longest header.
    let mut buf = vec![0u8; 65536 + 32];
    let mut out = Vec::with_capacity(buf.len());
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [
            libc::pollfd {
                fd: switch.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: udp.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid, writable array of two pollfds during the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[0].revents != 0 {
            loop {
                match switch.recv(&mut buf) {
                    Ok(None) => return Ok(stats),
                    Ok(Some(n)) if n <= buf.len() => {
                        out.clear();
                        codec.encode(&buf[..n], &mut out);
                        // A peer that is not there yet refuses (ECONNREFUSED): drop the frame.
                        if udp.send(&out).is_ok() {
                            stats.to_tunnel += 1;
                        }
                    }
                    Ok(Some(_)) => stats.dropped += 1,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if fds[1].revents != 0 {
            loop {
                match udp.recv(&mut buf) {
                    Ok(n) => match codec.decode(&buf[..n]) {
                        Some(frame) => {
                            if switch.send(frame).is_ok() {
                                stats.from_tunnel += 1;
                            }
                        }
                        None => stats.dropped += 1,
                    },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // The ICMP of an earlier send to a peer that was not listening yet.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(stats)
}
