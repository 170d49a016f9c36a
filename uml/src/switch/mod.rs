//! A userspace Ethernet switch for the kernel's `daemon` network transport
//! (`eth<n>=daemon,<mac>,unix,<control socket>`, 6.x kernels), compatible with uml_switch,
//! and for the vector driver's `bess` transport (`vec<n>:transport=bess,src=PATH,dst=<bess
//! socket>`, the only rootless network 7.x kernels have). Both kinds of port are on one switch.
//!
//! A `bess` client connects to the bess socket (a filesystem `SOCK_SEQPACKET` socket,
//! [`bess`]); the connection is its port and each message one Ethernet frame, both ways. The
//! switch records the peer's `SO_PEERCRED` (logged with the port) and never sends to an
//! address a peer names, because a bess peer names none.
//!
//! A client (the UML kernel, `daemon_user.c`) connects to the control socket (a filesystem
//! `SOCK_STREAM` socket), sends a port request naming its own abstract `SOCK_DGRAM` address
//! ([`request`]), and reads back the switch's data address. From then on every datagram is one
//! Ethernet frame, and the port lives as long as the control connection. The address must be
//! the peer's own (`SO_PEERCRED` on the control connection against the socket file's owner,
//! or the peer's pid in an abstract name: [`access`]); the control socket's mode decides who
//! may be a peer.
//!
//! Unlike uml_switch, which receives every port's frames on one data socket, each port gets a
//! data socket of its own, connected to the client, and its address is what the reply
//! carries (the kernel sends to whatever address it is told). A connected receiver is not
//! limited by `net.unix.max_dgram_qlen` (10 datagrams by default) for frames from its peer,
//! it accepts frames from that client only, and `poll` reports it writable exactly when the
//! client's receive queue has room again.
//!
//! Abstract `AF_UNIX` names belong to a network namespace: the switch and its guests must run
//! in the same one (the control socket, a filesystem path, is reachable from any).
//!
//! Guarantees:
//! * Learning switch with 100 s aging, or a hub ([`SwitchOptions::hub`]); a host tap device
//!   can be a port; every frame can be captured to a pcap file.
//! * Memory is bounded: by default a port that never reads pins at most 512 KiB of kernel
//!   memory plus 256 queued frames, and all ports together at most 256 MiB
//!   ([`SwitchOptions::memory_budget`]); `uml switch list` shows what each port holds.
//! * A frame is never dropped because a receiver's queue is momentarily full: it waits in a
//!   bounded per-port queue until the receiver's socket is writable again (the switch goes on
//!   serving the other ports meanwhile). Frames dropped anyway (queue full, receiver gone,
//!   over [`MAX_FRAME_LEN`], from an unregistered sender) are counted in [`SwitchStats`].
//! * `bess` ports: empty and oversized messages are dropped and counted, a port that sends
//!   64 malformed messages in a row is closed, and at most 64 ports that have not yet sent a
//!   valid frame exist at once (a new connection closes the oldest), so connections that
//!   say nothing cannot lock out a guest.
//! * The same for `daemon` clients: past 64 control connections that have not sent their
//!   request, a new one closes the oldest (the kernel sends its request as it connects); and
//!   a full port table (1024) closes the oldest port, of either kind, that never sent a
//!   valid frame. Only 1024 ports that all talk turn a new one away.
//! * Untrusted input never crashes or blocks it: malformed requests are refused, a client
//!   that says nothing is dropped after [`SwitchOptions::request_timeout`], and stray bytes
//!   after registration end that client's port (as in uml_switch).
//! * It never takes over a control socket that a live switch serves, replaces a stale one,
//!   never deletes a path that is not a socket, and removes its socket file when it stops.
//! * With [`SwitchOptions::exit_when_idle`] it stops once no guest has been attached or
//!   connected for the grace, never while a connection waits in its listen queue; with
//!   [`SwitchOptions::stats`] its counters and ports are in a JSON file ([`status`]). The
//!   named switches of `uml run --net switch:NAME` use both ([`named`]).
//! * Frames are read from a `bess` port 64 at a time (`recvmmsg`) and sent on at once, each
//!   as it comes; a backlog queued for a port leaves 64 frames a call (`sendmmsg`).
//!
//! ```no_run
//! use uml::switch::{Switch, SwitchOptions};
//! let switch = Switch::bind("/tmp/lab.ctl".as_ref(), SwitchOptions::default())?;
//! let handle = switch.handle();
//! let thread = std::thread::spawn(move || switch.serve());
//! // ... guests run with eth0=daemon,,unix,/tmp/lab.ctl ...
//! handle.stop();
//! let stats = thread.join().unwrap()?;
//! println!("{} frames dropped", stats.dropped());
//! # Ok::<(), uml::switch::SwitchError>(())
//! ```

pub mod access;
pub mod bess;
mod control;
mod engine;
pub mod named;
pub mod pcap;
pub mod request;
pub mod socket;
pub mod status;
mod table;
pub mod tap;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

pub use control::is_served;
pub use engine::{Switch, SwitchHandle, SwitchStats};
pub use request::{PeerAddr, Request, RequestVersion};
pub use socket::DataSocket;
pub use table::MAX_AGE;

/// The longest frame forwarded: 1514 (MTU 1500 + Ethernet header) plus an 802.1Q tag.
/// uml_switch cuts frames at 1514; we drop and count longer ones instead of passing on a
/// corrupted frame.
pub const MAX_FRAME_LEN: usize = 1518;
/// The shortest frame forwarded: an Ethernet header.
pub const MIN_FRAME_LEN: usize = 14;
/// uml_switch's default control socket.
pub const DEFAULT_CONTROL_SOCKET: &str = "/tmp/uml.ctl";

/// How a switch behaves.
#[derive(Debug, Clone)]
pub struct SwitchOptions {
    /// Flood every frame to every other port instead of learning addresses.
    pub hub: bool,
    /// A host tap device to attach as a port (`IFF_TAP | IFF_NO_PI`).
    pub tap: Option<String>,
    /// Also listen for `bess` clients (7.x kernels' vector transport) on this path.
    pub bess: Option<PathBuf>,
    /// Capture every frame the switch receives into this pcap file.
    pub pcap: Option<PathBuf>,
    /// How long a new client may take to send its complete request.
    pub request_timeout: Duration,
    /// Frames that may wait for one receiver whose socket is full; past this they are dropped.
    pub queue_frames: usize,
    /// The most socket buffer a port's socket gets (asked with `SO_SNDBUF`; the kernel
    /// doubles it for its bookkeeping, and that doubled amount is what a receiver that never
    /// reads can pin). Ports get less when [`memory_budget`](Self::memory_budget) is shared
    /// by many.
    pub socket_buffer: usize,
    /// The most memory the switch lets ports pin: half for the kernel send buffers of all
    /// ports together (each port's share, never under 32 KiB, is set again as ports come and
    /// go), half for frames waiting in the switch's own per-port queues.
    pub memory_budget: usize,
    /// Access mode for the control socket file (Debian's uml_switch makes it 0777).
    pub control_mode: Option<u32>,
    /// Stop once no guest port has existed (and no connection has come) for this long.
    /// The switch then holds a lock on its control socket's directory ([`named::DirLock`])
    /// while it makes sure no connection is queued and removes its sockets, so a `uml run`
    /// that holds the same lock while it probes never joins a switch that is going away.
    pub exit_when_idle: Option<Duration>,
    /// Write the counters and ports as JSON ([`status::Status`]) to this file, at most once
    /// a second while they change; removed when the switch stops.
    pub stats: Option<PathBuf>,
}

impl Default for SwitchOptions {
    fn default() -> Self {
        SwitchOptions {
            hub: false,
            tap: None,
            bess: None,
            pcap: None,
            request_timeout: Duration::from_secs(2),
            queue_frames: 256,
            socket_buffer: 256 << 10,
            memory_budget: 256 << 20,
            control_mode: None,
            exit_when_idle: None,
            stats: None,
        }
    }
}

/// Why a switch cannot start or stopped.
#[derive(Debug, Error)]
pub enum SwitchError {
    #[error("the socket {0} is served by another switch")]
    AlreadyServed(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("cannot tell whether a switch serves {path}")]
    Probe {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove the stale socket {path}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on the socket {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set the mode of the socket {path}")]
    Chmod {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the switch's data socket")]
    DataSocket(#[source] io::Error),
    #[error("cannot attach the tap device {name}")]
    Tap {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the capture file {path}")]
    Pcap {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the switch's stop channel")]
    StopChannel(#[source] io::Error),
    #[error("waiting for traffic failed")]
    Poll(#[source] io::Error),
}
