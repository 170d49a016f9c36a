//! The switch itself: one thread polling the control socket, the data socket, the `bess`
//! socket, the tap device and every client, forwarding frames between ports.

use std::collections::{HashMap, VecDeque};
use std::io::{self, PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::access;
use super::bess::{SeqPacket, peer_cred};
use super::control::{BessSocket, ControlSocket};
use super::named::DirLock;
use super::pcap::PcapWriter;
use super::request::{self, MAX_REQUEST_LEN, Parse, PeerAddr};
use super::socket::{DataSocket, send_batch, unread_bytes};
use super::status::{PortStatus, Status};
use super::table::{Learned, MacTable, PortId, is_multicast};
use super::tap::Tap;
use super::{MAX_FRAME_LEN, MIN_FRAME_LEN, SwitchError, SwitchOptions};

/// How often aged MAC entries are swept (uml_switch: every 2 s).
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);
/// Most clients waiting to finish their request at once; more are turned away.
const MAX_PENDING: usize = 64;
/// Most ports (clients plus the tap).
const MAX_PORTS: usize = 1024;
/// Most `bess` ports that have not sent a valid frame yet. A new connection past this closes
/// the oldest of them, so connections that say nothing can never fill the switch and lock
/// out a guest that talks.
const MAX_SILENT: usize = 64;
/// Malformed messages (empty, runt, oversized) in a row after which a `bess` port is closed.
const MAX_BAD_RUN: u32 = 64;
/// The least send buffer a port gets however many share the budget: room for a burst of
/// full-size frames (each takes about 2.3 KiB of kernel memory).
const MIN_PORT_BUFFER: usize = 32 << 10;
/// Frames taken from one source before looking at the others again.
const BATCH: usize = 64;
/// The counters (switch-wide, then per port: received, sent, dropped, queued and unread
/// bytes) last written to the
/// status file; it is rewritten only when they change.
type Written = (SwitchStats, Vec<[u64; 5]>);

/// How often the status file is rewritten while the counters change.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest a captured frame may sit in the pcap buffer.
const PCAP_FLUSH: Duration = Duration::from_millis(100);
/// Receive buffer: big enough to see (and refuse) any datagram up to 64 KiB thanks to
/// MSG_TRUNC, without copying more than the longest frame we forward.
const RX_BUF: usize = 2048;

#[derive(Debug, Default)]
struct Counters {
    frames_received: AtomicU64,
    frames_sent: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_port_error: AtomicU64,
    dropped_oversize: AtomicU64,
    dropped_runt: AtomicU64,
    dropped_unknown_sender: AtomicU64,
    ports_registered: AtomicU64,
    ports_removed: AtomicU64,
    requests_refused: AtomicU64,
    ports_evicted: AtomicU64,
    ports: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Counters of a switch, read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SwitchStats {
    /// Frames accepted from ports (and captured, with `--pcap`).
    pub frames_received: u64,
    /// Frame copies handed to receivers.
    pub frames_sent: u64,
    /// Copies dropped because a receiver's queue stayed full past the per-port backlog.
    pub dropped_queue_full: u64,
    /// Copies dropped because sending failed (the receiver is gone).
    pub dropped_port_error: u64,
    /// Frames longer than [`MAX_FRAME_LEN`](super::MAX_FRAME_LEN).
    pub dropped_oversize: u64,
    /// Datagrams shorter than an Ethernet header.
    pub dropped_runt: u64,
    /// Frames from an address no client registered.
    pub dropped_unknown_sender: u64,
    pub ports_registered: u64,
    pub ports_removed: u64,
    /// Control connections closed without a port: malformed, unsupported, silent, naming a
    /// data address that is not the peer's, or closed as the oldest of too many silent ones;
    /// and connections turned away because all 1,024 ports (`MAX_PORTS`) talk.
    pub requests_refused: u64,
    /// Ports that never sent a valid frame, closed to make room for a new one.
    pub ports_evicted: u64,
    /// Ports attached now.
    pub ports: u64,
}

impl SwitchStats {
    /// Every frame or frame copy the switch did not deliver.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
            + self.dropped_port_error
            + self.dropped_oversize
            + self.dropped_runt
            + self.dropped_unknown_sender
    }
}

/// Stops a serving switch and reads its counters; cheap to clone and `Send`.
#[derive(Debug, Clone)]
pub struct SwitchHandle {
    counters: Arc<Counters>,
    stopped: Arc<AtomicBool>,
    wake: Arc<PipeWriter>,
}

impl SwitchHandle {
    /// Ask the switch to stop; [`Switch::serve`] returns soon after.
    pub fn stop(&self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            let _ = (&*self.wake).write(&[1]);
        }
    }

    pub fn stats(&self) -> SwitchStats {
        snapshot(&self.counters)
    }
}

fn snapshot(c: &Counters) -> SwitchStats {
    {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SwitchStats {
            frames_received: get(&c.frames_received),
            frames_sent: get(&c.frames_sent),
            dropped_queue_full: get(&c.dropped_queue_full),
            dropped_port_error: get(&c.dropped_port_error),
            dropped_oversize: get(&c.dropped_oversize),
            dropped_runt: get(&c.dropped_runt),
            dropped_unknown_sender: get(&c.dropped_unknown_sender),
            ports_registered: get(&c.ports_registered),
            ports_removed: get(&c.ports_removed),
            requests_refused: get(&c.requests_refused),
            ports_evicted: get(&c.ports_evicted),
            ports: get(&c.ports),
        }
    }
}

enum Link {
    /// A `daemon` client: its control stream and a datagram socket connected to its address.
    Client {
        ctl: UnixStream,
        addr: PeerAddr,
        tx: DataSocket,
    },
    /// A `bess` client: one seqpacket connection, one message per frame, both ways. Its
    /// peer credentials are in the port's label.
    Bess {
        conn: SeqPacket,
    },
    Tap,
}

struct Port {
    link: Link,
    /// Frames waiting for the receiver's socket to have room, oldest first.
    queue: VecDeque<Box<[u8]>>,
    label: String,
    /// When it was attached; and whether it has sent a valid frame since.
    attached: Instant,
    talked: bool,
    /// Malformed messages since its last valid frame.
    bad_run: u32,
    rx_frames: u64,
    tx_frames: u64,
    dropped: u64,
}

impl Port {
    fn new(link: Link, label: String, now: Instant) -> Port {
        Port {
            link,
            queue: VecDeque::new(),
            label,
            attached: now,
            talked: false,
            bad_run: 0,
            rx_frames: 0,
            tx_frames: 0,
            dropped: 0,
        }
    }
}

struct Pending {
    stream: UnixStream,
    buf: Vec<u8>,
    deadline: Instant,
}

/// A bound switch, ready to [`serve`](Switch::serve).
///
/// Binding creates the sockets but starts no thread, so a process may fork (to go into the
/// background) between [`Switch::bind`] and [`Switch::serve`].
#[derive(Debug)]
pub struct Switch {
    control: ControlSocket,
    bess: Option<BessSocket>,
    data: DataSocket,
    data_addr: PeerAddr,
    tap: Option<Tap>,
    pcap: Option<PcapWriter>,
    opts: SwitchOptions,
    handle: SwitchHandle,
    wake: PipeReader,
}

impl Switch {
    /// Listen on the control socket `ctl` and bind the data socket.
    ///
    /// # Errors
    /// A live switch already serves `ctl` ([`SwitchError::AlreadyServed`]), `ctl` is not a
    /// socket, the sockets cannot be created, the tap device cannot be attached, or the pcap
    /// file cannot be created.
    pub fn bind(ctl: &Path, opts: SwitchOptions) -> Result<Switch, SwitchError> {
        // The bess socket first: once the control socket answers (what `uml run` probes for
        // a named switch), both are there.
        let bess = match &opts.bess {
            Some(path) => {
                let bess = BessSocket::bind(path)?;
                if let Some(mode) = opts.control_mode {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
                        |source| SwitchError::Chmod {
                            path: path.clone(),
                            source,
                        },
                    )?;
                }
                Some(bess)
            }
            None => None,
        };
        let control = ControlSocket::bind(ctl)?;
        if let Some(mode) = opts.control_mode {
            std::fs::set_permissions(ctl, std::fs::Permissions::from_mode(mode)).map_err(
                |source| SwitchError::Chmod {
                    path: ctl.to_owned(),
                    source,
                },
            )?;
        }
        let (data, data_addr) = bind_data_socket().map_err(SwitchError::DataSocket)?;
        data.raise_buffers(opts.socket_buffer);
        let tap = match &opts.tap {
            Some(name) => Some(Tap::open(name).map_err(|source| SwitchError::Tap {
                name: name.clone(),
                source,
            })?),
            None => None,
        };
        let pcap = match &opts.pcap {
            Some(path) => Some(
                PcapWriter::create(path).map_err(|source| SwitchError::Pcap {
                    path: path.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        let (wake, wake_tx) = io::pipe().map_err(SwitchError::StopChannel)?;
        set_nonblocking(wake.as_raw_fd());
        set_nonblocking(wake_tx.as_raw_fd());
        let handle = SwitchHandle {
            counters: Arc::default(),
            stopped: Arc::default(),
            wake: Arc::new(wake_tx),
        };
        Ok(Switch {
            control,
            bess,
            data,
            data_addr,
            tap,
            pcap,
            opts,
            handle,
            wake,
        })
    }

    pub fn control_path(&self) -> &Path {
        self.control.path()
    }

    /// The `bess` socket guests connect to with `vec<n>:transport=bess,dst=<this>`, if any.
    pub fn bess_path(&self) -> Option<&Path> {
        self.bess.as_ref().map(BessSocket::path)
    }

    /// The shared data address. v1 and v3 clients are told their own per-port address in
    /// the reply; only clients that get no reply (v0) send here.
    pub fn data_address(&self) -> PeerAddr {
        self.data_addr
    }

    pub fn handle(&self) -> SwitchHandle {
        self.handle.clone()
    }

    /// Keep the control socket file when this value is dropped (a parent process that forked
    /// the serving child calls this before it exits).
    pub fn disown_control_file(&mut self) {
        self.control.disown();
        if let Some(bess) = &mut self.bess {
            bess.disown();
        }
    }

    /// Forward frames until [`SwitchHandle::stop`]; then remove the control socket file and
    /// return the final counters.
    ///
    /// # Errors
    /// Only if waiting for events itself fails; client misbehaviour is never an error.
    pub fn serve(mut self) -> Result<SwitchStats, SwitchError> {
        tracing::info!(
            ctl = %self.control.path().display(),
            bess = ?self.bess_path(),
            data = %self.data_addr.describe(),
            hub = self.opts.hub,
            "switch serving"
        );
        let mut engine = Engine {
            table: MacTable::default(),
            ports: Vec::new(),
            by_addr: HashMap::new(),
            pending: Vec::new(),
            counters: self.handle.counters.clone(),
            hub: self.opts.hub,
            queue_frames: self.opts.queue_frames.max(1),
            socket_buffer: self.opts.socket_buffer,
            memory_budget: self.opts.memory_budget,
            port_buffer: 0,
            queued_bytes: 0,
            request_timeout: self.opts.request_timeout,
            pcap: self.pcap.take(),
            pcap_dirty_since: None,
            tap: self.tap.take(),
            tap_port: None,
            now: Instant::now(),
            last_activity: Instant::now(),
            own_uid: nix::unistd::geteuid().as_raw(),
        };
        if let Some(tap) = &engine.tap {
            let label = format!("tap {}", tap.name());
            engine.tap_port = Some(engine.add_port(Port::new(Link::Tap, label, engine.now)));
        }
        let result = engine.run(&self);
        if let Some(path) = &self.opts.stats {
            let _ = std::fs::remove_file(path);
        }
        if let Some(pcap) = &mut engine.pcap
            && let Err(e) = pcap.flush()
        {
            tracing::warn!("cannot write the capture file: {e}");
        }
        self.control.remove_file();
        if let Some(bess) = &mut self.bess {
            bess.remove_file();
        }
        let stats = self.handle.stats();
        tracing::info!(?stats, "switch stopped");
        // An idle switch's directory lock (in `result`) is released only now that its
        // sockets are gone.
        result.map(|_lock| stats)
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

/// A data socket on a fresh address shaped like uml_switch's `{0, pad, pid, usec}`; the
/// second word counts up from the start time so that every socket of every switch in this
/// process gets its own name.
fn bind_data_socket() -> io::Result<(DataSocket, PeerAddr)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let start = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_micros();
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for _ in 0..64 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) as u32;
        let addr = PeerAddr::abstract_from_pid(pid, start.wrapping_add(n));
        match DataSocket::bind(&addr) {
            Ok(sock) => return Ok((sock, addr)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// What a `pollfd` entry belongs to.
#[derive(Clone, Copy)]
enum Source {
    Wake,
    Listener,
    BessListener,
    Data,
    Tap,
    Pending(usize),
    Control(PortId),
    /// A client port's own data socket.
    Port(PortId),
    /// A `bess` port's connection.
    Bess(PortId),
}

struct Engine {
    table: MacTable,
    ports: Vec<Option<Port>>,
    by_addr: HashMap<PeerAddr, PortId>,
    pending: Vec<Pending>,
    counters: Arc<Counters>,
    hub: bool,
    queue_frames: usize,
    socket_buffer: usize,
    memory_budget: usize,
    /// The send buffer every port's socket has now: its share of half the budget.
    port_buffer: usize,
    /// Bytes of frames in all per-port queues together (at most half the budget).
    queued_bytes: usize,
    request_timeout: Duration,
    pcap: Option<PcapWriter>,
    pcap_dirty_since: Option<Instant>,
    tap: Option<Tap>,
    tap_port: Option<PortId>,
    now: Instant,
    /// The switch's effective uid: peers with it may name any data address ([`access`]).
    own_uid: u32,
    /// The last moment a guest port existed or a connection came (for `exit_when_idle`).
    last_activity: Instant,
}

impl Engine {
    /// Serve until stopped, or until idle past `exit_when_idle`: then the lock on the
    /// control socket's directory is returned, to be held until the sockets are removed.
    fn run(&mut self, sw: &Switch) -> Result<Option<DirLock>, SwitchError> {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut sources: Vec<Source> = Vec::new();
        let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
        let mut next_status = Instant::now();
        let mut written: Option<Written> = None;
        let mut reported_drops = 0u64;
        let mut rx = vec![0u8; RX_BUF];
        let mut rx_many = vec![0u8; RX_BUF * BATCH];
        let mut lens = [0usize; BATCH];
        while !sw.handle.stopped.load(Ordering::SeqCst) {
            fds.clear();
            sources.clear();
            let mut watch = |fd: RawFd, events: libc::c_short, src: Source| {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                sources.push(src);
            };
            watch(sw.wake.as_raw_fd(), libc::POLLIN, Source::Wake);
            watch(
                sw.control.listener.as_raw_fd(),
                libc::POLLIN,
                Source::Listener,
            );
            watch(sw.data.as_raw_fd(), libc::POLLIN, Source::Data);
            if let Some(bess) = &sw.bess {
                watch(
                    bess.listener.as_raw_fd(),
                    libc::POLLIN,
                    Source::BessListener,
                );
            }
            if let Some(tap) = &self.tap {
                let mut ev = libc::POLLIN;
                if self
                    .tap_port
                    .and_then(|id| self.port(id))
                    .is_some_and(|p| !p.queue.is_empty())
                {
                    ev |= libc::POLLOUT;
                }
                watch(tap.as_raw_fd(), ev, Source::Tap);
            }
            for (i, p) in self.pending.iter().enumerate() {
                watch(p.stream.as_raw_fd(), libc::POLLIN, Source::Pending(i));
            }
            for (id, port) in self.ports.iter().enumerate() {
                let Some(port) = port else { continue };
                let mut ev = libc::POLLIN;
                if !port.queue.is_empty() {
                    ev |= libc::POLLOUT;
                }
                match &port.link {
                    Link::Client { ctl, tx, .. } => {
                        watch(ctl.as_raw_fd(), libc::POLLIN, Source::Control(id));
                        watch(tx.as_raw_fd(), ev, Source::Port(id));
                    }
                    Link::Bess { conn, .. } => {
                        watch(conn.as_raw_fd(), ev | libc::POLLRDHUP, Source::Bess(id));
                    }
                    Link::Tap => {}
                }
            }

            let now = Instant::now();
            let mut timeout = next_sweep.saturating_duration_since(now);
            if let Some(first) = self.pending.iter().map(|p| p.deadline).min() {
                timeout = timeout.min(first.saturating_duration_since(now));
            }
            if let Some(since) = self.pcap_dirty_since {
                timeout = timeout.min((since + PCAP_FLUSH).saturating_duration_since(now));
            }
            if let Some(grace) = sw.opts.exit_when_idle {
                timeout = timeout.min((self.last_activity + grace).saturating_duration_since(now));
            }
            if sw.opts.stats.is_some() {
                timeout = timeout.min(next_status.saturating_duration_since(now));
            }
            poll(&mut fds, timeout).map_err(SwitchError::Poll)?;
            self.now = Instant::now();

            let mut pending_events = Vec::new();
            let mut control_events = Vec::new();
            for (fd, src) in fds.iter().zip(&sources) {
                if fd.revents == 0 {
                    continue;
                }
                match *src {
                    Source::Wake => {}
                    Source::Listener => self.accept(&sw.control),
                    Source::BessListener => {
                        if let Some(bess) = &sw.bess {
                            self.accept_bess(bess);
                        }
                    }
                    Source::Bess(id) => {
                        if fd.revents & libc::POLLOUT != 0 {
                            self.flush_queue(id);
                        }
                        if fd.revents & !libc::POLLOUT != 0 {
                            self.receive_bess(id, &mut rx_many, &mut lens);
                        }
                    }
                    Source::Data => self.receive_data(&sw.data, &mut rx),
                    Source::Tap => {
                        if fd.revents & libc::POLLOUT != 0
                            && let Some(id) = self.tap_port
                        {
                            self.flush_queue(id);
                        }
                        if fd.revents & libc::POLLIN != 0 {
                            self.receive_tap(&mut rx);
                        }
                    }
                    Source::Pending(i) => pending_events.push(i),
                    Source::Control(id) => control_events.push(id),
                    Source::Port(id) => {
                        if fd.revents & libc::POLLOUT != 0 {
                            self.flush_queue(id);
                        }
                        if fd.revents & !libc::POLLOUT != 0 {
                            self.receive_port(id, &mut rx);
                        }
                    }
                }
            }
            for id in control_events {
                self.control_readable(id);
            }
            // Highest index first, so removing one does not shift the others.
            pending_events.sort_unstable();
            for i in pending_events.into_iter().rev() {
                self.pending_readable(i);
            }
            self.expire_pending();

            if self.now >= next_sweep {
                let gone = self.table.expire(self.now);
                if gone > 0 {
                    tracing::debug!(gone, "aged out MAC entries");
                }
                next_sweep = self.now + SWEEP_INTERVAL;
                let drops = snapshot(&self.counters).dropped();
                if drops > reported_drops {
                    tracing::warn!(
                        new = drops - reported_drops,
                        total = drops,
                        "frames dropped"
                    );
                    reported_drops = drops;
                }
            }
            self.maybe_flush_pcap(false);
            if let Some(path) = &sw.opts.stats
                && self.now >= next_status
            {
                next_status = self.now + STATUS_INTERVAL;
                self.write_status(sw, path, &mut written);
            }
            if let Some(grace) = sw.opts.exit_when_idle
                && let Some(lock) = self.idle_exit(sw, grace)
            {
                self.maybe_flush_pcap(true);
                return Ok(Some(lock));
            }
        }
        self.maybe_flush_pcap(true);
        Ok(None)
    }

    /// Whether a guest (a `daemon` or `bess` client, not the tap) is attached or connecting.
    fn has_guests(&self) -> bool {
        !self.pending.is_empty()
            || self
                .ports
                .iter()
                .flatten()
                .any(|p| !matches!(p.link, Link::Tap))
    }

    /// After `grace` without guests or connections: take the lock on the control socket's
    /// directory, take any connection that came meanwhile (then go on serving), else return
    /// the lock, held while the sockets are removed.
    fn idle_exit(&mut self, sw: &Switch, grace: Duration) -> Option<DirLock> {
        if self.has_guests() {
            self.last_activity = self.now;
            return None;
        }
        if self.now < self.last_activity + grace {
            return None;
        }
        let dir = sw.control.path().parent().unwrap_or(Path::new("/"));
        let lock = match DirLock::acquire(dir) {
            Ok(lock) => lock,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "cannot lock the switch's directory, not stopping: {e}");
                self.last_activity = self.now;
                return None;
            }
        };
        // A client that connected before the lock was ours (uml run's probe, a guest) is in
        // a listen queue now.
        self.accept(&sw.control);
        if let Some(bess) = &sw.bess {
            self.accept_bess(bess);
        }
        if self.has_guests() {
            self.last_activity = self.now;
            return None;
        }
        tracing::info!(grace = ?grace, "no guest for the idle grace; stopping");
        Some(lock)
    }

    fn write_status(&self, sw: &Switch, path: &Path, written: &mut Option<Written>) {
        let stats = snapshot(&self.counters);
        let per_port: Vec<[u64; 5]> = self
            .ports
            .iter()
            .flatten()
            .map(|p| {
                let queued: usize = p.queue.iter().map(|f| f.len()).sum();
                let unread = p.link.fd().map(unread_bytes).unwrap_or(0);
                [
                    p.rx_frames,
                    p.tx_frames,
                    p.dropped,
                    queued as u64,
                    unread as u64,
                ]
            })
            .collect();
        let now = Some((stats, per_port));
        if *written == now {
            return;
        }
        let status = Status {
            pid: std::process::id(),
            control: sw.control.path().to_owned(),
            bess: sw.bess_path().map(Path::to_owned),
            stats,
            ports: self
                .ports
                .iter()
                .enumerate()
                .filter_map(|(id, p)| {
                    let p = p.as_ref()?;
                    let kind = match p.link {
                        Link::Client { .. } => "daemon",
                        Link::Bess { .. } => "bess",
                        Link::Tap => "tap",
                    };
                    Some(PortStatus {
                        id,
                        kind: kind.into(),
                        peer: p.label.clone(),
                        rx_frames: p.rx_frames,
                        tx_frames: p.tx_frames,
                        dropped: p.dropped,
                        queued: p.queue.len(),
                        queued_bytes: p.queue.iter().map(|f| f.len()).sum(),
                        unread_bytes: p.link.fd().map(unread_bytes).unwrap_or(0),
                        socket_buffer: self.port_buffer,
                    })
                })
                .collect(),
        };
        match status.write(path) {
            Ok(()) => *written = now,
            Err(e) => tracing::warn!(path = %path.display(), "cannot write the status file: {e}"),
        }
    }

    fn port(&self, id: PortId) -> Option<&Port> {
        self.ports.get(id).and_then(Option::as_ref)
    }

    fn add_port(&mut self, port: Port) -> PortId {
        let id = match self.ports.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.ports.push(None);
                self.ports.len() - 1
            }
        };
        if let Link::Client { addr, .. } = &port.link {
            self.by_addr.insert(*addr, id);
        }
        tracing::info!(port = id, peer = %port.label, "port attached");
        self.ports[id] = Some(port);
        bump(&self.counters.ports_registered);
        bump(&self.counters.ports);
        self.share_budget();
        id
    }

    /// Give every port's socket its share of half the memory budget, when the share changed.
    /// A smaller limit takes effect as the receiver reads what is already queued.
    fn share_budget(&mut self) {
        let ports = self.ports.iter().flatten().count().max(1);
        let share = (self.memory_budget / 2 / ports)
            // The kernel doubles what is asked for.
            .div_euclid(2)
            .clamp(MIN_PORT_BUFFER, self.socket_buffer.max(MIN_PORT_BUFFER));
        if share == self.port_buffer {
            return;
        }
        self.port_buffer = share;
        for port in self.ports.iter().flatten() {
            match &port.link {
                Link::Client { tx, .. } => tx.raise_buffers(share),
                Link::Bess { conn } => conn.raise_buffers(share),
                Link::Tap => {}
            }
        }
        tracing::debug!(share, ports, "port socket buffers set");
    }

    fn remove_port(&mut self, id: PortId, why: &str) {
        let Some(port) = self.ports.get_mut(id).and_then(Option::take) else {
            return;
        };
        if let Link::Client { addr, .. } = &port.link {
            self.by_addr.remove(addr);
        }
        self.queued_bytes -= port.queue.iter().map(|f| f.len()).sum::<usize>();
        self.table.forget_port(id);
        tracing::info!(port = id, peer = %port.label, why, "port removed");
        bump(&self.counters.ports_removed);
        self.counters.ports.fetch_sub(1, Ordering::Relaxed);
        self.share_budget();
    }

    fn accept(&mut self, control: &ControlSocket) {
        for _ in 0..16 {
            match control.listener.accept() {
                Ok((stream, _)) => {
                    // The kernel writes its request as soon as it connects, so the oldest
                    // connection still silent is the least likely to be a guest: close it
                    // rather than turn the new one away.
                    if self.pending.len() >= MAX_PENDING
                        && let Some(oldest) =
                            (0..self.pending.len()).min_by_key(|&i| self.pending[i].deadline)
                    {
                        self.pending.swap_remove(oldest);
                        tracing::warn!("too many silent control connections; closed the oldest");
                        bump(&self.counters.requests_refused);
                    }
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.last_activity = self.now;
                    self.pending.push(Pending {
                        stream,
                        buf: Vec::with_capacity(MAX_REQUEST_LEN),
                        deadline: self.now + self.request_timeout,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("accept on the control socket failed: {e}");
                    break;
                }
            }
        }
    }

    fn live_ports(&self) -> usize {
        self.ports.iter().flatten().count()
    }

    /// Make room for one more port when the table is full, by closing the oldest port that
    /// never sent a valid frame; false when every port talks.
    fn make_room(&mut self) -> bool {
        self.live_ports() < MAX_PORTS || self.evict_oldest_silent(|link| !matches!(link, Link::Tap))
    }

    /// Close the port attached longest ago among those matching `kind` that never sent a
    /// valid frame; false when there is none.
    fn evict_oldest_silent(&mut self, kind: impl Fn(&Link) -> bool) -> bool {
        let oldest = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(id, p)| {
                let p = p.as_ref()?;
                (kind(&p.link) && !p.talked).then_some((p.attached, id))
            })
            .min();
        let Some((_, id)) = oldest else {
            return false;
        };
        bump(&self.counters.ports_evicted);
        self.remove_port(id, "evicted: never sent a frame, and a new port came");
        true
    }

    fn refuse(&mut self, i: usize, why: &dyn std::fmt::Display) {
        if i < self.pending.len() {
            let p = self.pending.swap_remove(i);
            tracing::warn!("refusing a control connection: {why}");
            bump(&self.counters.requests_refused);
            drop(p);
        }
    }

    fn pending_readable(&mut self, i: usize) {
        let Some(p) = self.pending.get_mut(i) else {
            return;
        };
        let mut chunk = [0u8; MAX_REQUEST_LEN];
        let room = MAX_REQUEST_LEN - p.buf.len().min(MAX_REQUEST_LEN);
        let n = match p.stream.read(&mut chunk[..room.max(1)]) {
            Ok(0) => return self.refuse(i, &"the client hung up before its request was complete"),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(e) => return self.refuse(i, &e),
        };
        p.buf.extend_from_slice(&chunk[..n]);
        let (request, len) = match request::parse(&p.buf) {
            Ok(Parse::Complete { request, len }) => (request, len),
            Ok(Parse::Incomplete { .. }) if p.buf.len() < MAX_REQUEST_LEN => return,
            Ok(Parse::Incomplete { need }) => {
                let got = p.buf.len();
                return self.refuse(i, &format!("the request is {got} bytes, {need} are needed"));
            }
            Err(e) => return self.refuse(i, &e),
        };
        let garbage = p.buf.len() > len;
        let p = self.pending.swap_remove(i);
        if !self.make_room() {
            tracing::warn!(peer = %request.addr.describe(), "refusing a port: {MAX_PORTS} ports, all of them talking");
            bump(&self.counters.requests_refused);
            return;
        }
        let target = peer_cred(p.stream.as_fd())
            .map_err(|e| format!("the peer's credentials cannot be read: {e}"))
            .and_then(|cred| access::check(&request.addr, &cred, self.own_uid).map(|t| (t, cred)));
        let (target, cred) = match target {
            Ok(x) => x,
            Err(why) => {
                tracing::warn!(peer = %request.addr.describe(), "refusing a port: {why}");
                bump(&self.counters.requests_refused);
                return;
            }
        };
        // Each port gets its own data socket, connected to the client: its receive queue
        // (net.unix.max_dgram_qlen datagrams, 10 by default) is not shared with other senders,
        // it only takes frames from that client, and poll reports it writable exactly when the
        // client's own queue has room again.
        let port_socket = bind_data_socket().and_then(|(sock, local)| {
            match target.proc_path() {
                Some(path) => sock.connect_path(&path)?,
                None => sock.connect_to(&request.addr)?,
            }
            Ok((sock, local))
        });
        let (tx, local) = match port_socket {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(
                    peer = %request.addr.describe(),
                    "refusing a port: its data address cannot be reached: {e}"
                );
                bump(&self.counters.requests_refused);
                return;
            }
        };
        tx.raise_buffers(self.port_buffer.max(MIN_PORT_BUFFER));
        if self.by_addr.contains_key(&request.addr) {
            tracing::warn!(peer = %request.addr.describe(), "refusing a second port for one address");
            bump(&self.counters.requests_refused);
            return;
        }
        let mut ctl = p.stream;
        if request.wants_reply() {
            // The kernel reads exactly 110 bytes (daemon_user.c); a fresh stream always has
            // room for them, so a short write means the client is broken.
            match ctl.write(&local.to_sockaddr()) {
                Ok(request::REPLY_LEN) => {}
                other => {
                    tracing::warn!("cannot send the reply to a new client: {other:?}");
                    bump(&self.counters.requests_refused);
                    return;
                }
            }
        }
        let label = format!(
            "{:?} {} pid {} uid {}",
            request.version,
            request.addr.describe(),
            cred.pid,
            cred.uid
        );
        let link = Link::Client {
            ctl,
            addr: request.addr,
            tx,
        };
        let id = self.add_port(Port::new(link, label, self.now));
        if garbage {
            // uml_switch ends a port on any byte after its request; so do we.
            self.remove_port(id, "bytes after the request");
        }
    }

    fn expire_pending(&mut self) {
        let now = self.now;
        let before = self.pending.len();
        self.pending.retain(|p| p.deadline > now);
        let expired = before - self.pending.len();
        for _ in 0..expired {
            tracing::warn!("closing a control connection that sent no complete request in time");
            bump(&self.counters.requests_refused);
        }
    }

    fn control_readable(&mut self, id: PortId) {
        let Some(Port {
            link: Link::Client { ctl, .. },
            ..
        }) = self.ports.get_mut(id).and_then(Option::as_mut)
        else {
            return;
        };
        let mut buf = [0u8; 256];
        match ctl.read(&mut buf) {
            Ok(0) => self.remove_port(id, "disconnect"),
            Ok(_) => self.remove_port(id, "bad request after registration"),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.remove_port(id, &e.to_string()),
        }
    }

    fn receive_data(&mut self, data: &DataSocket, rx: &mut [u8]) {
        for _ in 0..BATCH {
            let (n, from) = match data.recv_from(rx) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("receiving on the data socket failed: {e}");
                    return;
                }
            };
            let Some(&ingress) = self.by_addr.get(&from) else {
                bump(&self.counters.dropped_unknown_sender);
                tracing::debug!(sender = %from.describe(), "frame from an unregistered sender dropped");
                continue;
            };
            if self.forward(ingress, rx, n)
                && let Some(port) = self.ports.get_mut(ingress).and_then(Option::as_mut)
            {
                port.talked = true;
            }
        }
    }

    fn receive_port(&mut self, id: PortId, rx: &mut [u8]) {
        for _ in 0..BATCH {
            let Some(Port {
                link: Link::Client { tx, .. },
                ..
            }) = self.port(id)
            else {
                return;
            };
            let n = match tx.recv_from(rx) {
                Ok((n, _)) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The socket is connected to the client, so an error means it is gone.
                    self.remove_port(id, &format!("data socket error: {e}"));
                    return;
                }
            };
            if self.forward(id, rx, n)
                && let Some(port) = self.ports.get_mut(id).and_then(Option::as_mut)
            {
                port.talked = true;
            }
        }
    }

    fn accept_bess(&mut self, bess: &BessSocket) {
        for _ in 0..16 {
            let conn = match bess.listener.accept() {
                Ok(conn) => conn,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("accept on the bess socket failed: {e}");
                    return;
                }
            };
            let cred = match conn.peer_cred() {
                Ok(cred) => cred,
                Err(e) => {
                    tracing::warn!("refusing a bess connection without peer credentials: {e}");
                    bump(&self.counters.requests_refused);
                    continue;
                }
            };
            let label = match conn.peer_path() {
                Some(path) => format!("bess pid {} uid {} {path}", cred.pid, cred.uid),
                None => format!("bess pid {} uid {}", cred.pid, cred.uid),
            };
            let silent_bess = self
                .ports
                .iter()
                .flatten()
                .filter(|p| matches!(p.link, Link::Bess { .. }) && !p.talked)
                .count();
            if silent_bess >= MAX_SILENT {
                self.evict_oldest_silent(|link| matches!(link, Link::Bess { .. }));
            }
            if !self.make_room() {
                tracing::warn!(peer = %label, "{MAX_PORTS} ports, all of them talking; closing a new bess connection");
                bump(&self.counters.requests_refused);
                continue;
            }
            conn.raise_buffers(self.port_buffer.max(MIN_PORT_BUFFER));
            self.last_activity = self.now;
            self.add_port(Port::new(Link::Bess { conn }, label, self.now));
        }
    }

    /// Take up to [`BATCH`] messages from a `bess` port in one call (`recvmmsg`) and
    /// forward them.
    fn receive_bess(&mut self, id: PortId, rx: &mut [u8], lens: &mut [usize]) {
        let Some(Port {
            link: Link::Bess { conn, .. },
            ..
        }) = self.port(id)
        else {
            return;
        };
        let count = loop {
            match conn.recv_many(rx, RX_BUF, lens) {
                Ok(Some(n)) => break n,
                Ok(None) => return self.remove_port(id, "disconnect"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.remove_port(id, &format!("connection error: {e}")),
            }
        };
        for (i, &n) in lens[..count].iter().enumerate() {
            let valid = self.forward(id, &rx[i * RX_BUF..(i + 1) * RX_BUF], n);
            let Some(port) = self.ports.get_mut(id).and_then(Option::as_mut) else {
                return;
            };
            if valid {
                port.talked = true;
                port.bad_run = 0;
            } else {
                port.bad_run += 1;
                if port.bad_run >= MAX_BAD_RUN {
                    let why = format!(
                        "{MAX_BAD_RUN} malformed messages in a row (the last {n} bytes; frames are {MIN_FRAME_LEN} to {MAX_FRAME_LEN})"
                    );
                    return self.remove_port(id, &why);
                }
            }
        }
    }

    fn receive_tap(&mut self, rx: &mut [u8]) {
        let Some(ingress) = self.tap_port else { return };
        for _ in 0..BATCH {
            let Some(tap) = &self.tap else { return };
            let n = match tap.recv(rx) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("reading the tap device failed: {e}");
                    return;
                }
            };
            self.forward(ingress, rx, n);
        }
    }

    /// Forward the frame of real length `len` held in `rx` (cut at `rx.len()` if longer).
    /// Returns false when it was dropped as malformed.
    fn forward(&mut self, ingress: PortId, rx: &[u8], len: usize) -> bool {
        if len > MAX_FRAME_LEN || len > rx.len() {
            bump(&self.counters.dropped_oversize);
            tracing::debug!(len, port = ingress, "oversized frame dropped");
            return false;
        }
        if len < MIN_FRAME_LEN {
            bump(&self.counters.dropped_runt);
            return false;
        }
        let frame = &rx[..len];
        bump(&self.counters.frames_received);
        if let Some(port) = self.ports.get_mut(ingress).and_then(Option::as_mut) {
            port.rx_frames += 1;
        }
        if let Some(pcap) = &mut self.pcap {
            if let Err(e) = pcap.write_frame(SystemTime::now(), frame) {
                tracing::warn!("cannot write the capture file, capture stopped: {e}");
                self.pcap = None;
            } else if self.pcap_dirty_since.is_none() {
                self.pcap_dirty_since = Some(self.now);
            }
        }
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&frame[0..6]);
        src.copy_from_slice(&frame[6..12]);
        match self.table.learn(src, ingress, self.now) {
            Learned::New => tracing::debug!(mac = %fmt_mac(&src), port = ingress, "learned"),
            Learned::Moved { from } => {
                tracing::debug!(mac = %fmt_mac(&src), port = ingress, from, "moved");
            }
            Learned::Refreshed | Learned::TableFull => {}
        }
        let target = if self.hub || is_multicast(&dst) {
            None
        } else {
            self.table.lookup(&dst, self.now)
        };
        match target {
            // A known address on the ingress port: the receiver already has the frame.
            Some(port) if port == ingress => {}
            Some(port) => self.send(port, frame),
            None => {
                for port in 0..self.ports.len() {
                    if port != ingress && self.ports[port].is_some() {
                        self.send(port, frame);
                    }
                }
            }
        }
        true
    }

    /// Send `frame` to the port now, or queue a copy when its socket is full (or frames
    /// already wait), or drop it when the queue is full too.
    fn send(&mut self, id: PortId, frame: &[u8]) {
        let tap = self.tap.as_ref();
        let Some(port) = self.ports.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if port.queue.is_empty() {
            match transmit(&port.link, tap, frame) {
                Ok(()) => {
                    bump(&self.counters.frames_sent);
                    port.tx_frames += 1;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    bump(&self.counters.dropped_port_error);
                    port.dropped += 1;
                    tracing::debug!(port = id, "sending a frame failed: {e}");
                    return;
                }
            }
        }
        if port.queue.len() >= self.queue_frames
            || self.queued_bytes + frame.len() > self.memory_budget / 2
        {
            bump(&self.counters.dropped_queue_full);
            port.dropped += 1;
            tracing::debug!(port = id, "receiver queue full, frame dropped");
            return;
        }
        port.queue.push_back(frame.into());
        self.queued_bytes += frame.len();
    }

    /// Send what waits in the port's queue, as much as its socket takes: up to [`BATCH`]
    /// frames a call (`sendmmsg`) on sockets, one at a time to the tap.
    fn flush_queue(&mut self, id: PortId) {
        let tap = self.tap.as_ref();
        let Some(port) = self.ports.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        while !port.queue.is_empty() {
            let result = match port.link.fd() {
                Some(fd) => {
                    let frames: Vec<&[u8]> =
                        port.queue.iter().take(BATCH).map(|f| &f[..]).collect();
                    send_batch(fd, &frames)
                }
                None => port
                    .queue
                    .front()
                    .map_or(Ok(0), |f| transmit(&port.link, tap, f).map(|()| 1)),
            };
            let (sent, failed) = match result {
                Ok(0) => return,
                Ok(n) => (n, false),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(port = id, "sending a queued frame failed: {e}");
                    (1, true)
                }
            };
            for _ in 0..sent {
                if let Some(frame) = port.queue.pop_front() {
                    self.queued_bytes -= frame.len();
                }
            }
            if failed {
                bump(&self.counters.dropped_port_error);
                port.dropped += 1;
            } else {
                self.counters
                    .frames_sent
                    .fetch_add(sent as u64, Ordering::Relaxed);
                port.tx_frames += sent as u64;
            }
        }
    }

    fn maybe_flush_pcap(&mut self, force: bool) {
        let Some(since) = self.pcap_dirty_since else {
            return;
        };
        if force || self.now.saturating_duration_since(since) >= PCAP_FLUSH {
            if let Some(pcap) = &mut self.pcap
                && let Err(e) = pcap.flush()
            {
                tracing::warn!("cannot write the capture file, capture stopped: {e}");
                self.pcap = None;
            }
            self.pcap_dirty_since = None;
        }
    }
}

impl Link {
    /// The socket frames for this port are sent on (not the tap's: it is no socket).
    fn fd(&self) -> Option<RawFd> {
        match self {
            Link::Client { tx, .. } => Some(tx.as_raw_fd()),
            Link::Bess { conn } => Some(conn.as_raw_fd()),
            Link::Tap => None,
        }
    }
}

fn transmit(link: &Link, tap: Option<&Tap>, frame: &[u8]) -> io::Result<()> {
    match link {
        Link::Client { tx, .. } => tx.send(frame).map(drop),
        Link::Bess { conn, .. } => conn.send(frame).map(drop),
        Link::Tap => match tap {
            Some(tap) => tap.send(frame).map(drop),
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        },
    }
}

fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<()> {
    // Round up so a deadline is never polled for 0 ms before it is due.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: fds is a valid, writable slice of pollfd for its whole length.
    let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if ret < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}
