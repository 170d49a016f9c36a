//! FUSE over io_uring: the kernel's per-CPU request queues (Linux 6.14 and later, when the
//! `fuse` module's `enable_uring` parameter is set; fs/fuse/dev_uring.c).
//!
//! Over `/dev/fuse`, a request made on one CPU wakes whichever umlfs thread waits, often on
//! another CPU, and its reply wakes the caller back across CPUs: two cross-CPU wake-ups per
//! request, the whole cost of a cold `ls -lR` on a VM whose idle CPUs halt. Over io_uring the
//! kernel puts a request on the queue of the CPU it was made on, and each queue here is
//! served by a thread that runs on that CPU: the caller sleeps, the thread runs on the same
//! CPU, answers, and the caller runs again.
//!
//! INIT, FORGET and INTERRUPT still come through `/dev/fuse` (fuser's threads). Every other
//! request comes here, decoded and answered with the same [`crate::fuse`] helpers that the
//! fuser adapter uses, so both paths answer alike; a test compares them on one image.
//!
//! Setup order matters: once INIT negotiates `FUSE_OVER_IO_URING`, the kernel holds every
//! request until each CPU's queue has registered its entries. So the rings and threads exist
//! before INIT is answered (`Slot::prepare`, from `init`), and only wait for the device
//! ([`Slot::start`]). A failed registration makes the kernel fall back to `/dev/fuse`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use crate::fuse::{self as f, XattrAnswer};
use crate::view::View;

/// `struct fuse_uring_req_header`: the in/out header, the opcode's own header, and
/// `struct fuse_uring_ent_in_out`.
const IN_OUT: usize = 0;
const OP_IN: usize = 128;
const ENT_IN_OUT: usize = 256;
const HEADERS_LEN: usize = 256 + 32;

const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;

/// Ring entries per queue: each holds one request at a time. One thread serves a queue, so
/// more entries only let the kernel hand over background reads (readahead) without waiting.
const ENTRIES_PER_QUEUE: usize = 2;

/// How long a queue thread waits for the device before it gives up (the session failed).
const START_WAIT: Duration = Duration::from_secs(30);

// Opcodes (include/uapi/linux/fuse.h).
const LOOKUP: u32 = 1;
const GETATTR: u32 = 3;
const READLINK: u32 = 5;
const READ: u32 = 15;
const STATFS: u32 = 17;
const RELEASE: u32 = 18;
const GETXATTR: u32 = 22;
const LISTXATTR: u32 = 23;
const READDIR: u32 = 28;
const RELEASEDIR: u32 = 29;
const READDIRPLUS: u32 = 44;

/// Who may use the mount besides its owner, as fuser's `SessionACL` (checked the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Owner,
    RootAndOwner,
    All,
}

/// Where `init` leaves the queue threads it negotiated, for [`Slot::start`] once the session
/// exists.
#[derive(Debug)]
pub struct Slot {
    access: Access,
    senders: Mutex<Vec<mpsc::Sender<Arc<OwnedFd>>>>,
}

/// What a queue thread needs to answer requests.
#[derive(Debug)]
struct Answerer {
    view: Arc<View>,
    access: Access,
    owner: u32,
}

impl Slot {
    /// A slot for a mount that `access` says who may use (fuser's `SessionACL`).
    pub fn new(access: Access) -> Arc<Slot> {
        Arc::new(Slot {
            access,
            senders: Mutex::new(Vec::new()),
        })
    }

    /// One thread per possible CPU, each with its own io_uring, confined to its CPU where it
    /// may be, waiting for [`Slot::start`]. Fails, and nothing may be negotiated, when a ring
    /// or thread cannot be made (io_uring disabled, too many processes); the threads made so
    /// far then end.
    pub(crate) fn prepare(&self, view: Arc<View>, payload: usize) -> io::Result<()> {
        let cpus = possible_cpus()?;
        let answerer = Arc::new(Answerer {
            view,
            access: self.access,
            owner: nix::unistd::geteuid().as_raw(),
        });
        let mut senders = Vec::with_capacity(cpus);
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        for qid in 0..cpus {
            let (tx, rx) = mpsc::channel();
            let a = answerer.clone();
            let ready = ready_tx.clone();
            std::thread::Builder::new()
                .name(format!("umlfs-ring-{qid}"))
                .spawn(move || serve_queue(qid as u16, ready, rx, &a, payload))?;
            senders.push(tx);
        }
        drop(ready_tx);
        for _ in 0..cpus {
            match ready_rx.recv_timeout(START_WAIT) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("a queue thread did not start")),
            }
        }
        *self.senders.lock().unwrap_or_else(|p| p.into_inner()) = senders;
        Ok(())
    }

    /// Hand the session's FUSE device to every prepared queue thread, which registers its
    /// entries. False when nothing was prepared.
    pub fn start(&self, dev: BorrowedFd<'_>) -> io::Result<bool> {
        let senders = std::mem::take(&mut *self.senders.lock().unwrap_or_else(|p| p.into_inner()));
        if senders.is_empty() {
            return Ok(false);
        }
        let fd = Arc::new(dev.try_clone_to_owned()?);
        for tx in senders {
            let _ = tx.send(fd.clone());
        }
        Ok(true)
    }
}

/// The number of possible CPUs: the kernel makes one queue per possible CPU and waits for
/// all of them.
fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut n = 0usize;
    for part in text.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.trim().parse().map_err(io::Error::other)?,
            b.trim().parse().map_err(io::Error::other)?,
        );
        n += b
            .checked_sub(a)
            .ok_or_else(|| io::Error::other("bad CPU range"))?
            + 1;
    }
    if n == 0 || n > 8192 {
        return Err(io::Error::other(format!("{n} possible CPUs")));
    }
    Ok(n)
}

/// One ring entry's buffers: the kernel writes a request into them and reads the reply back.
struct Entry {
    headers: Box<[u8; HEADERS_LEN]>,
    payload: Vec<u8>,
    /// Header and payload, as REGISTER hands them to the kernel.
    iov: Box<[libc::iovec; 2]>,
    done: bool,
}

impl Entry {
    fn new(payload: usize) -> Entry {
        let mut headers = Box::new([0u8; HEADERS_LEN]);
        let mut payload = vec![0u8; payload];
        let iov = Box::new([
            libc::iovec {
                iov_base: headers.as_mut_ptr().cast(),
                iov_len: HEADERS_LEN,
            },
            libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: payload.len(),
            },
        ]);
        Entry {
            headers,
            payload,
            iov,
            done: false,
        }
    }
}

/// A FUSE io_uring command for queue `qid`; REGISTER also carries the entry's two buffers.
fn command(
    dev: i32,
    op: u32,
    qid: u16,
    commit_id: u64,
    iov: Option<&[libc::iovec; 2]>,
) -> squeue::Entry128 {
    let mut cmd = [0u8; 80];
    cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
    cmd[16..18].copy_from_slice(&qid.to_ne_bytes());
    let mut c = opcode::UringCmd80::new(types::Fd(dev), op).cmd(cmd);
    if let Some(iov) = iov {
        c = c.addr(Some(iov.as_ptr() as u64));
    }
    let sqe = c.build();
    if iov.is_none() {
        return sqe;
    }
    // The kernel wants the iovec count in the SQE's `len`, which io-uring's UringCmd80 does
    // not set.
    // SAFETY: squeue::Entry128 is #[repr(C)] (Entry, [u8; 64]) and Entry is #[repr(C)] over
    // the kernel's 64-byte struct io_uring_sqe: 128 bytes of integers and unions of integers
    // with no padding, so every byte is initialized and any byte pattern is a valid value.
    // `len` is the u32 at offset 24 of struct io_uring_sqe.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute::<squeue::Entry128, [u8; 128]>(sqe) };
    raw[24..28].copy_from_slice(&2u32.to_ne_bytes());
    // SAFETY: as above, in the other direction.
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
}

/// Keep the calling thread on `cpu`, where the requests of its queue are made (a CPU this
/// process may not use is left to the scheduler), and make it a SCHED_IDLE thread.
///
/// SCHED_IDLE is what keeps the caller on its CPU. The answer wakes the caller while this
/// thread still runs; to the scheduler a CPU that runs only SCHED_IDLE threads is as good as
/// idle (kernel/sched/fair.c select_idle_sibling, sched_idle_cpu), so the caller wakes where
/// it slept. With a normal thread here, that CPU is busy at that instant, the caller is moved
/// to an idle CPU, and its next request goes to that CPU's queue: every answer then crossed
/// CPUs, and a cold `ls -lR` of 20,000 files took 0.62–0.77 s where SCHED_IDLE takes 0.16 s
/// (0.39 s over /dev/fuse). Under load it still wins: with six busy-looping processes on
/// this 2-CPU host, 0.35–0.37 s against 0.36–2.5 s over /dev/fuse and 0.38–0.49 s for the
/// kernel's ext4. Lowering one's own scheduling class needs no privilege.
fn pin_to(cpu: usize) {
    crate::near::confine(cpu);
    crate::near::set_policy(libc::SCHED_IDLE);
}

/// The ring of a queue thread: its task work (a request being copied in) runs only when
/// the thread waits for completions, and only this thread submits.
fn new_ring() -> io::Result<IoUring<squeue::Entry128, cqueue::Entry>> {
    let n = 2 * ENTRIES_PER_QUEUE as u32;
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(n)
        .or_else(|_| IoUring::builder().build(n))
}

fn serve_queue(
    qid: u16,
    ready: mpsc::Sender<io::Result<()>>,
    rx: mpsc::Receiver<Arc<OwnedFd>>,
    answerer: &Answerer,
    payload: usize,
) {
    pin_to(qid as usize);
    // A request this thread makes on the mount (it never should) is refused, not awaited.
    f::register_handler_thread();
    let mut ring = match new_ring() {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    let Ok(dev) = rx.recv() else {
        return;
    };
    let fd = dev.as_raw_fd();
    let mut entries: Vec<Entry> = (0..ENTRIES_PER_QUEUE)
        .map(|_| Entry::new(payload))
        .collect();
    for (i, e) in entries.iter().enumerate() {
        let sqe = command(fd, CMD_REGISTER, qid, 0, Some(&e.iov)).user_data(i as u64);
        // SAFETY: the SQE points at `e.iov` and its buffers, which are never freed (see the
        // end of this function).
        if unsafe { ring.submission().push(&sqe) }.is_err() {
            return;
        }
    }
    let mut out = Vec::with_capacity(64 << 10);
    let mut cqes: Vec<(u64, i32)> = Vec::with_capacity(ENTRIES_PER_QUEUE);
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => {
                tracing::warn!("io_uring queue {qid}: {e}");
                break;
            }
        }
        cqes.clear();
        cqes.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        for &(i, res) in &cqes {
            let Some(e) = entries.get_mut(i as usize) else {
                continue;
            };
            if res < 0 {
                // The connection ended (unmount, abort) or the kernel refused the entry; a
                // refused REGISTER turns io_uring off for the connection (fs/fuse/dev_uring.c
                // fuse_uring_cmd), and requests go through /dev/fuse.
                tracing::debug!(
                    "io_uring queue {qid} entry {i}: {}",
                    io::Error::from_raw_os_error(-res)
                );
                e.done = true;
                continue;
            }
            let commit_id = answerer.answer(e, &mut out);
            let sqe = command(fd, CMD_COMMIT_AND_FETCH, qid, commit_id, None).user_data(i);
            // SAFETY: as for REGISTER: the entry's buffers outlive the ring's use of them.
            if unsafe { ring.submission().push(&sqe) }.is_err() {
                e.done = true;
            }
        }
        if entries.iter().all(|e| e.done) {
            break;
        }
    }
    // The buffers are never freed: a command still in flight (the wait above failed) may
    // be written to after the ring is closed, until io_uring's exit work cancels it. The
    // thread ends with the mount, and the process soon after.
    drop(ring);
    std::mem::forget(entries);
}

/// Little-endian-free field access: the kernel's structs are in native byte order.
fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_ne_bytes)
}

/// A name argument: the payload up to its NUL.
fn name_arg(payload: &[u8]) -> &[u8] {
    match payload.iter().position(|&b| b == 0) {
        Some(n) => &payload[..n],
        None => payload,
    }
}

/// `(seconds, nanoseconds)` of a time, before 1970 too, as fuser encodes it.
fn time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                (-secs, 0)
            } else {
                (-secs - 1, 1_000_000_000 - d.subsec_nanos())
            }
        }
    }
}

/// `struct fuse_attr` (88 bytes).
fn put_attr(out: &mut Vec<u8>, a: &fuser::FileAttr) {
    let (at, atn) = time(a.atime);
    let (mt, mtn) = time(a.mtime);
    let (ct, ctn) = time(a.ctime);
    for v in [a.ino.0, a.size, a.blocks] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    for v in [at, mt, ct] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    let mode = mode_kind(a.kind) | u32::from(a.perm);
    for v in [
        atn, mtn, ctn, mode, a.nlink, a.uid, a.gid, a.rdev, a.blksize, 0,
    ] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
}

/// `struct fuse_entry_out` (128 bytes): the node, its generation, and one time-to-live for
/// the entry and its attributes.
fn put_entry(out: &mut Vec<u8>, a: &fuser::FileAttr, generation: u64, ttl: Duration) {
    for v in [a.ino.0, generation, ttl.as_secs(), ttl.as_secs()] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    for v in [ttl.subsec_nanos(), ttl.subsec_nanos()] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    put_attr(out, a);
}

/// Append one `struct fuse_dirent` (after `head`, a `fuse_entry_out` for READDIRPLUS) and the
/// name, padded to 8 bytes; false (and nothing appended) when it would pass `max`.
fn put_dirent(
    out: &mut Vec<u8>,
    max: usize,
    head: &[u8],
    ino: u64,
    off: u64,
    typ: u32,
    name: &[u8],
) -> bool {
    let len = head.len() + 24 + name.len();
    let padded = len.next_multiple_of(8);
    if out.len() + padded > max {
        return false;
    }
    out.extend_from_slice(head);
    out.extend_from_slice(&ino.to_ne_bytes());
    out.extend_from_slice(&off.to_ne_bytes());
    out.extend_from_slice(&(name.len() as u32).to_ne_bytes());
    out.extend_from_slice(&typ.to_ne_bytes());
    out.extend_from_slice(name);
    out.resize(out.len() + padded - len, 0);
    true
}

/// The `S_IFMT` bits of a file type.
fn mode_kind(kind: fuser::FileType) -> u32 {
    use fuser::FileType as T;
    match kind {
        T::NamedPipe => libc::S_IFIFO,
        T::CharDevice => libc::S_IFCHR,
        T::BlockDevice => libc::S_IFBLK,
        T::Directory => libc::S_IFDIR,
        T::RegularFile => libc::S_IFREG,
        T::Symlink => libc::S_IFLNK,
        T::Socket => libc::S_IFSOCK,
    }
}

/// A request's header fields and its opcode's own header.
struct Request<'a> {
    opcode: u32,
    node: u64,
    uid: u32,
    pid: u32,
    op: &'a [u8; 128],
}

/// Where a successful answer is: in the `out` buffer, or already in the payload buffer.
enum Reply {
    Out,
    Written(usize),
}

impl Answerer {
    /// Answer the request in entry `e`: the reply goes into its buffers. Returns the commit
    /// id the kernel gave the request.
    fn answer(&self, e: &mut Entry, out: &mut Vec<u8>) -> u64 {
        let h = &e.headers[..];
        let opcode = u32_at(h, IN_OUT + 4);
        let unique = u64_at(h, IN_OUT + 8);
        let node = u64_at(h, IN_OUT + 16);
        let uid = u32_at(h, IN_OUT + 24);
        let pid = u32_at(h, IN_OUT + 32);
        let commit_id = u64_at(h, ENT_IN_OUT + 8);
        let payload_len = (u32_at(h, ENT_IN_OUT + 16) as usize).min(e.payload.len());
        let mut op = [0u8; 128];
        op.copy_from_slice(&h[OP_IN..OP_IN + 128]);
        out.clear();
        let max = e.payload.len();
        let req = Request {
            opcode,
            node,
            uid,
            pid,
            op: &op,
        };
        let (err, len) = match self.dispatch(&req, &mut e.payload, payload_len, out) {
            Ok(Reply::Written(n)) if n <= max => (0, n),
            Ok(Reply::Out) if out.len() <= max => {
                e.payload[..out.len()].copy_from_slice(out);
                (0, out.len())
            }
            Ok(_) => (libc::EIO, 0),
            Err(errno) => (errno, 0),
        };
        let h = &mut e.headers[..];
        h[IN_OUT..IN_OUT + 4].copy_from_slice(&(16 + len as u32).to_ne_bytes());
        h[IN_OUT + 4..IN_OUT + 8].copy_from_slice(&(-err).to_ne_bytes());
        h[IN_OUT + 8..IN_OUT + 16].copy_from_slice(&unique.to_ne_bytes());
        h[ENT_IN_OUT + 16..ENT_IN_OUT + 20].copy_from_slice(&(len as u32).to_ne_bytes());
        commit_id
    }

    /// The answer to `req`, whose other arguments are the first `len` bytes of `payload`:
    /// the reply is put in `out`, or, for READ, straight into `payload`. Err: the errno.
    fn dispatch(
        &self,
        req: &Request<'_>,
        payload: &mut [u8],
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<Reply, i32> {
        let &Request {
            opcode,
            node,
            uid,
            pid,
            op,
        } = req;
        let max = payload.len();
        let args = &payload[..len];
        // fuser's check for a mount without allow_other (fuser's request.rs): the kernel
        // already keeps other users out; this is the same second line.
        let stranger = match self.access {
            Access::All => false,
            Access::Owner => uid != self.owner,
            Access::RootAndOwner => uid != self.owner && uid != 0,
        };
        if stranger && !matches!(opcode, READ | READDIR | READDIRPLUS | RELEASE | RELEASEDIR) {
            return Err(libc::EACCES);
        }
        let answers = matches!(
            opcode,
            LOOKUP
                | GETATTR
                | READLINK
                | READ
                | READDIR
                | READDIRPLUS
                | STATFS
                | GETXATTR
                | LISTXATTR
        );
        if answers && f::from_own_pid(pid) {
            return Err(libc::EIO);
        }
        let view = &*self.view;
        let code = |e: nix::errno::Errno| e as i32;
        match opcode {
            LOOKUP => {
                let name = std::ffi::OsStr::from_bytes(name_arg(args));
                let a = f::lookup(view, node, name).map_err(code)?;
                put_entry(out, &f::file_attr(&a), a.generation, f::ttl(view, a.ino));
            }
            GETATTR => {
                let a = view.attr(node).map_err(code)?;
                let ttl = f::ttl(view, a.ino);
                out.extend_from_slice(&ttl.as_secs().to_ne_bytes());
                out.extend_from_slice(&ttl.subsec_nanos().to_ne_bytes());
                out.extend_from_slice(&0u32.to_ne_bytes());
                put_attr(out, &f::file_attr(&a));
            }
            READLINK => out.extend_from_slice(&view.readlink(node).map_err(code)?),
            READ => {
                // Straight into the payload buffer: a 1 MiB READ is copied once, by the
                // kernel, to the caller's pages.
                let (offset, size) = (u64_at(op, 8), (u32_at(op, 16) as usize).min(max));
                let n = view
                    .read_into(node, offset, &mut payload[..size])
                    .map_err(code)?;
                return Ok(Reply::Written(n));
            }
            READDIR | READDIRPLUS => {
                let (offset, size) = (u64_at(op, 8), (u32_at(op, 16) as usize).min(max));
                let plus = opcode == READDIRPLUS;
                let dir_attr = if plus {
                    view.attr(node)
                } else {
                    Err(nix::errno::Errno::ENOENT)
                };
                let mut head = Vec::with_capacity(128);
                view.list(node, offset, plus, |next, name, id, kind, attr| {
                    let name = name.as_bytes();
                    if !plus {
                        let typ = mode_kind(f::ftype(kind)) >> 12;
                        return put_dirent(out, size, &[], id, next, typ, name);
                    }
                    let Some((a, g)) = f::plus_attr(attr, &dir_attr) else {
                        return false;
                    };
                    let fa = f::file_attr(&a);
                    head.clear();
                    put_entry(&mut head, &fa, g, f::ttl(view, a.ino));
                    let typ = mode_kind(fa.kind) >> 12;
                    put_dirent(out, size, &head, fa.ino.0, next, typ, name)
                })
                .map_err(code)?;
            }
            STATFS => {
                let (n, s) = f::statfs(view, node);
                for v in n {
                    out.extend_from_slice(&v.to_ne_bytes());
                }
                for v in [s[0], s[1], s[2], 0, 0, 0, 0, 0, 0, 0] {
                    out.extend_from_slice(&v.to_ne_bytes());
                }
            }
            GETXATTR | LISTXATTR => {
                let size = u32_at(op, 0);
                let answer = if opcode == GETXATTR {
                    f::getxattr(view, node, name_arg(args), size)
                } else {
                    f::listxattr(view, node, size)
                };
                match answer.map_err(|e| e.code())? {
                    XattrAnswer::Size(n) => {
                        out.extend_from_slice(&n.to_ne_bytes());
                        out.extend_from_slice(&0u32.to_ne_bytes());
                    }
                    XattrAnswer::Data(v) => out.extend_from_slice(&v),
                }
            }
            RELEASE | RELEASEDIR => {}
            // As the fuser adapter: ENOSYS to OPEN and OPENDIR makes the kernel stop sending
            // them and keep its caches; FLUSH has nothing to flush; the rest (writes, locks,
            // ioctl...) is not supported.
            _ => return Err(libc::ENOSYS),
        }
        Ok(Reply::Out)
    }
}
