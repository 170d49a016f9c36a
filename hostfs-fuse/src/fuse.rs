//! The fuser adapter of a [`View`]: FUSE requests in, view calls, FUSE replies out. Nothing
//! here knows a disk or a guest; what the kernel negotiates (readdirplus, parallel directory
//! operations, POSIX ACLs, zero-message open) and the self-deadlock guard live here.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fuser::{
    Errno, FileHandle, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyXattr, Request,
};

use crate::ext::FileType;
use crate::ring;
use crate::view::{Attr, View};

/// A view's errno as fuser's.
fn errno(e: nix::errno::Errno) -> Errno {
    Errno::from_i32(e as i32)
}

pub(crate) fn ftype(t: FileType) -> fuser::FileType {
    use fuser::FileType as F;
    match t {
        FileType::Regular | FileType::Unknown => F::RegularFile,
        FileType::Directory => F::Directory,
        FileType::Symlink => F::Symlink,
        FileType::CharDevice => F::CharDevice,
        FileType::BlockDevice => F::BlockDevice,
        FileType::Fifo => F::NamedPipe,
        FileType::Socket => F::Socket,
    }
}

/// The `st_blksize` of directories. glibc sizes `readdir`'s buffer by it (32 KiB at least, 1 MiB
/// at most), and the kernel asks for as many entries at once as that buffer holds: with a
/// block-sized hint, a directory of 200 files took three requests, and the entries past the
/// first 32 KiB came without attributes, so `ls -l` looked each up; at 256 KiB a directory of
/// about 1,500 entries is one READDIRPLUS and its end.
const DIR_BLKSIZE: u32 = 256 << 10;

/// A view's attributes as fuser's (the node id is the `st_ino`).
pub(crate) fn file_attr(a: &Attr) -> fuser::FileAttr {
    fuser::FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: ftype(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: if a.kind == FileType::Directory {
            DIR_BLKSIZE
        } else {
            a.blksize
        },
        flags: 0,
    }
}

/// Threads of this process that serve FUSE requests: a request they issue themselves (a
/// handler touching the mount) would wait for a handler, so it is refused at once.
static HANDLER_TIDS: [AtomicU32; 64] = [const { AtomicU32::new(0) }; 64];

thread_local! {
    static REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(crate) fn register_handler_thread() {
    REGISTERED.with(|r| {
        if r.get() {
            return;
        }
        r.set(true);
        let tid = nix::unistd::gettid().as_raw() as u32;
        for slot in &HANDLER_TIDS {
            if slot
                .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    });
}

fn from_own_handler(req: &Request) -> bool {
    from_own_pid(req.pid())
}

/// Whether a request comes from a thread of this process that serves requests (registering
/// the calling thread as one).
pub(crate) fn from_own_pid(pid: u32) -> bool {
    register_handler_thread();
    pid != 0
        && HANDLER_TIDS
            .iter()
            .any(|s| s.load(Ordering::Relaxed) == pid)
}

/// The fuser side of a [`View`].
#[derive(Debug)]
pub struct UmlFs {
    pub view: Arc<View>,
    /// Where [`fuser::Filesystem::init`] leaves the per-CPU io_uring queues it negotiated, for
    /// [`ring::Slot::start`] once the session exists; `None`: never negotiate them.
    pub rings: Option<Arc<ring::Slot>>,
}

/// How long the kernel may keep entries and attributes of nodes that change only with a new
/// generation or mount table ([`View::lasts_a_generation`]).
const GENERATION_TTL: Duration = Duration::from_secs(3600);

/// The entry and attribute time-to-live of node `id`.
pub(crate) fn ttl(view: &View, id: u64) -> Duration {
    if view.lasts_a_generation(id) {
        GENERATION_TTL.max(view.pres.ttl)
    } else {
        view.pres.ttl
    }
}

/// The largest WRITE the kernel may send. Nothing is ever written; the figure sizes the
/// kernel's largest request (with READ's `max_pages`), and so each io_uring payload buffer.
pub(crate) const MAX_WRITE: u32 = 1 << 20;

/// LOOKUP of `name` in directory node `parent`.
pub(crate) fn lookup(view: &View, parent: u64, name: &OsStr) -> Result<Attr, nix::errno::Errno> {
    let ppath = view
        .dir_path(parent)
        .unwrap_or_else(|| "/nonexistent-untracked".into());
    view.lookup_in(parent, &ppath, name).map(|(_, attr)| attr)
}

/// The attributes and generation READDIRPLUS gives an entry: its own, or for "." and ".."
/// (never instantiated by the kernel, fs/fuse/readdir.c fuse_direntplus_link, but they need an
/// attribute record) the directory's with generation 0. `None` ends the listing.
pub(crate) fn plus_attr(
    attr: Option<&Attr>,
    dir_attr: &Result<Attr, nix::errno::Errno>,
) -> Option<(Attr, u64)> {
    match (attr, dir_attr) {
        (Some(a), _) => Some((*a, a.generation)),
        (None, Ok(d)) => Some((*d, 0)),
        (None, Err(_)) => None,
    }
}

/// The answer to GETXATTR or LISTXATTR: the value's size (the caller asked with size 0) or
/// the value.
#[derive(Debug)]
pub(crate) enum XattrAnswer {
    Size(u32),
    Data(Vec<u8>),
}

/// The answer to a value of `len` bytes asked for with a buffer of `size`.
fn sized(v: Vec<u8>, size: u32) -> Result<XattrAnswer, Errno> {
    if size == 0 {
        Ok(XattrAnswer::Size(v.len() as u32))
    } else if v.len() <= size as usize {
        Ok(XattrAnswer::Data(v))
    } else {
        Err(Errno::ERANGE)
    }
}

/// GETXATTR. ENOSYS under `noxattr`: the kernel answers every later query itself
/// (EOPNOTSUPP), without asking.
pub(crate) fn getxattr(
    view: &View,
    ino: u64,
    name: &[u8],
    size: u32,
) -> Result<XattrAnswer, Errno> {
    if view.pres.no_xattr {
        return Err(Errno::ENOSYS);
    }
    match view.xattr(ino, name).map_err(errno)? {
        Some(v) => sized(v, size),
        None => Err(Errno::NO_XATTR),
    }
}

/// LISTXATTR: the names, each ended by a NUL.
pub(crate) fn listxattr(view: &View, ino: u64, size: u32) -> Result<XattrAnswer, Errno> {
    if view.pres.no_xattr {
        return Err(Errno::ENOSYS);
    }
    let mut out = Vec::new();
    for n in &view.xattr_names(ino).map_err(errno)? {
        out.extend_from_slice(n);
        out.push(0);
    }
    sized(out, size)
}

/// STATFS: blocks, free, available, files, free files, block size, longest name, fragment
/// size.
pub(crate) fn statfs(view: &View, ino: u64) -> ([u64; 5], [u32; 3]) {
    match view.statfs(ino) {
        Some(s) => (
            [
                s.blocks,
                s.blocks_free,
                s.blocks_available,
                s.files,
                s.files_free,
            ],
            [s.block_size, s.name_max, s.block_size],
        ),
        None => ([0; 5], [4096, 255, 4096]),
    }
}

impl UmlFs {
    /// The entry and attribute time-to-live of node `id`.
    fn ttl(&self, id: u64) -> Duration {
        ttl(&self.view, id)
    }
}

macro_rules! guard {
    ($req:expr, $reply:expr) => {
        guard!($req, $reply, false)
    };
    ($req:expr, $reply:expr, $bulk:expr) => {
        if from_own_handler($req) {
            $reply.error(Errno::EIO);
            return;
        }
        crate::near::settle($req.pid(), $bulk);
    };
}

impl fuser::Filesystem for UmlFs {
    fn init(&mut self, _req: &Request, cfg: &mut KernelConfig) -> io::Result<()> {
        let want = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS
            // hostfs files change behind our back: a new mtime seen by GETATTR drops their
            // cached pages (ext nodes are also invalidated explicitly per generation).
            | InitFlags::FUSE_AUTO_INVAL_DATA;
        let want = if self.view.pres.posix_acl {
            want | InitFlags::FUSE_POSIX_ACL
        } else {
            want
        };
        let offered = cfg.capabilities();
        cfg.add_capabilities(want & offered)
            .map_err(|u| io::Error::other(format!("{u:?}")))?;
        let _ = cfg.set_max_write(MAX_WRITE);
        if let Some(slot) = &self.rings
            && offered.contains(InitFlags::FUSE_OVER_IO_URING)
        {
            // The largest request is READ's max_pages (from the larger of max_write and the
            // readahead the kernel offers) or max_write: what each payload buffer must hold.
            let readahead = cfg.set_max_readahead(u32::MAX).err().unwrap_or(MAX_WRITE);
            let payload = MAX_WRITE.max(readahead).max(8192) as usize;
            // Queues are set up before they are negotiated: once they are, the kernel holds
            // every request until each CPU's queue is registered.
            match slot.prepare(self.view.clone(), payload) {
                Ok(()) => cfg
                    .add_capabilities(InitFlags::FUSE_OVER_IO_URING)
                    .map_err(|u| io::Error::other(format!("{u:?}")))?,
                Err(e) => tracing::info!("FUSE over io_uring is offered but unusable here: {e}"),
            }
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        guard!(req, reply);
        match lookup(&self.view, parent.0, name) {
            Ok(attr) => {
                let g = Generation(attr.generation);
                reply.entry(&self.ttl(attr.ino), &file_attr(&attr), g);
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    // The kernel dropped `nlookup` references (fuser's default batch_forget calls this for each
    // node); no reply.
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.view.unref(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        guard!(req, reply);
        match self.view.attr(ino.0) {
            Ok(a) => reply.attr(&self.ttl(a.ino), &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        guard!(req, reply);
        match self.view.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        }
    }

    // ENOSYS makes the kernel stop sending OPEN/OPENDIR/RELEASE* and keep the page cache
    // and the readdir cache (fs/fuse/file.c fuse_file_open: no_open implies KEEP_CACHE and
    // CACHE_DIR); the freshness thread invalidates what changed.
    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.error(Errno::ENOSYS);
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.error(Errno::ENOSYS);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock: LockOwner,
        reply: fuser::ReplyEmpty,
    ) {
        // Nothing is ever buffered for writing; ENOSYS stops the kernel from asking again.
        reply.error(Errno::ENOSYS);
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        guard!(req, reply, size >= crate::near::BULK_READ);
        match self.view.read(ino.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        guard!(req, reply);
        let r = self
            .view
            .list(ino.0, offset, false, |next, name, id, kind, _| {
                !reply.add(INodeNo(id), next, ftype(kind), name)
            });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        guard!(req, reply);
        let dir_attr = self.view.attr(ino.0);
        let r = self
            .view
            .list(ino.0, offset, true, |next, name, id, _, attr| {
                let _ = id;
                let Some((a, g)) = plus_attr(attr, &dir_attr) else {
                    return false;
                };
                let fa = file_attr(&a);
                !reply.add(fa.ino, next, name, &self.ttl(a.ino), &fa, Generation(g))
            });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        guard!(req, reply);
        let ([blocks, bfree, bavail, files, ffree], [bsize, namelen, frsize]) =
            statfs(&self.view, ino.0);
        reply.statfs(blocks, bfree, bavail, files, ffree, bsize, namelen, frsize);
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        guard!(req, reply);
        match getxattr(&self.view, ino.0, name.as_bytes(), size) {
            Ok(XattrAnswer::Size(n)) => reply.size(n),
            Ok(XattrAnswer::Data(v)) => reply.data(&v),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        guard!(req, reply);
        match listxattr(&self.view, ino.0, size) {
            Ok(XattrAnswer::Size(n)) => reply.size(n),
            Ok(XattrAnswer::Data(v)) => reply.data(&v),
            Err(e) => reply.error(e),
        }
    }
}
