//! The view: a guest's tree composed of its disks (read with [`crate::ext`]),
//! hostfs directories (a read-only passthrough) and opaque mounts (empty directories).
//!
//! Identity (one FUSE mount, one `st_dev`): an ext inode is shown as
//! `st_ino = (mount_index + 1) << 32 | guest_ino`, so the low 32 bits are the guest's inode
//! number, hard links share it, and two guest mounts never collide. hostfs nodes get numbers
//! from a table keyed by (mount, host st_dev, host st_ino) with bit 62 set, synthetic
//! directories (inside opaque mounts, on the way to deeper mount points) with bit 61 set.
//! Neither 0 nor 1 is ever handed out (1 is the FUSE root, fuser's nodeid *is* st_ino).
//! One st_dev means `find -xdev` / `du -x` cross the guest's mount boundaries.
//!
//! Safety: nothing here ever writes; the hostfs passthrough never looks at a FUSE mount point
//! (it would be answered by a FUSE server, possibly this one: a self-deadlock). The fuser
//! adapter ([`crate::fuse`]) refuses requests issued by this process's own handler threads.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

use crate::ext::{BlockSource, ExtError, FileType, Filesystem, Inode};

mod generation;
mod host;
mod layout;
mod tables;
#[cfg(test)]
mod tests;

use host::HostList;
use layout::Layout;
use tables::{Stamp, Tables};

/// A filesystem image as the reader sees it (a plain file, or a COW view).
pub type Image = Arc<dyn BlockSource>;
/// One generation of an open disk.
pub type ExtFs = Filesystem<Image>;

const HOST_BIT: u64 = 1 << 62;
/// The synthetic path prefix of a host FUSE mount point met through hostfs.
const HOST_FUSE_POINT: &str = "host-fuse:";
const SYNTH_BIT: u64 = 1 << 61;
/// Largest read served at once (the kernel sends at most 1 MiB).
const MAX_READ: u32 = 4 << 20;

/// One ubd disk of the view.
pub struct Disk {
    /// How messages name it, e.g. `ubd1 (/srv/web1/data.img)`.
    pub name: String,
    /// The file whose changes start a new generation.
    pub watch: Vec<PathBuf>,
    pub src: Image,
    fs: RwLock<Arc<ExtFs>>,
    generation: AtomicU64,
    /// Whether the filesystem carries SELinux labels (its root directory has one).
    labeled: AtomicBool,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk")
            .field("name", &self.name)
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Disk {
    /// A disk whose filesystem is already open.
    pub fn new(name: String, watch: Vec<PathBuf>, src: Image, fs: ExtFs) -> Disk {
        let labeled = AtomicBool::new(is_labeled(&fs));
        Disk {
            name,
            watch,
            src,
            fs: RwLock::new(Arc::new(fs)),
            generation: AtomicU64::new(1),
            labeled,
        }
    }

    /// The current generation's filesystem.
    pub fn fs(&self) -> Arc<ExtFs> {
        self.fs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many generations this disk has had (1 at mount).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

/// Attributes of a node, as the view presents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// The node id, which is also its `st_ino`.
    pub ino: u64,
    pub size: u64,
    /// 512-byte blocks.
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
    pub kind: FileType,
    /// Permission bits (`0o7777`).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Device number, encoded as Linux's `new_encode_dev`.
    pub rdev: u32,
    pub blksize: u32,
    /// The FUSE generation of the node: a disk inode's `i_generation`, so a reused inode number
    /// is seen as a new file (fs/fuse/inode.c fuse_stale_inode); 0 otherwise.
    pub generation: u64,
}

/// The xattr `ls -l` asks every file for (through `lgetfilecon`).
const SELINUX: &[u8] = b"security.selinux";

/// A file's access ACL.
const POSIX_ACL_ACCESS: &[u8] = b"system.posix_acl_access";

/// Whether a filesystem carries SELinux labels: a labelled filesystem labels its root
/// directory like every other inode.
fn is_labeled(fs: &ExtFs) -> bool {
    matches!(fs.xattr(fs.root(), SELINUX), Ok(Some(_)))
}

/// What one mount of the view shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewKind {
    /// Disk `disk`, from inode `root_ino`.
    Ext { disk: usize, root_ino: u64 },
    /// A host directory, read-only.
    Host { dir: PathBuf },
    /// An empty directory: a mount the host cannot see into, described by `what` (e.g.
    /// `a tmpfs mount`).
    Opaque { what: String },
}

/// One mount of the view, at a guest path.
#[derive(Debug, Clone)]
pub struct ViewMount {
    /// The guest's mount id (mountinfo's first field; 0 when not from a mount table): with
    /// the point and kind, what tells a mount that stays from a new one.
    pub id: u32,
    pub point: String,
    pub kind: ViewKind,
}

/// What the kernel must forget after the guest's mount table changed: directory entries
/// (parent node, name) and nodes (attributes and cached listings).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forget {
    pub entries: Vec<(u64, OsString)>,
    pub nodes: Vec<u64>,
}

/// How files are presented.
#[derive(Debug, Clone, Default)]
pub struct Presentation {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub umask: u16,
    /// Entry and attribute time-to-live.
    pub ttl: Duration,
    /// Declare POSIX ACL support (FUSE_POSIX_ACL): the kernel caches each inode's ACLs and
    /// checks permissions itself, with the guest's modes and ACLs (it implies
    /// `default_permissions`).
    pub posix_acl: bool,
    /// Show no extended attributes (`-o noxattr`): the kernel is told there are none, and
    /// stops asking. A file with an ACL then shows no group or other permission bits, so that
    /// what the mode bits alone allow never exceeds what the guest's ACL allows.
    pub no_xattr: bool,
}

#[derive(Debug, Clone)]
enum Node {
    Ext { mount: usize, ino: u64 },
    Host { mount: usize, path: PathBuf },
    Synth { path: String },
}

/// The shared state of a mounted view; [`crate::fuse::UmlFs`] (the FUSE side) and the freshness thread
/// hold it.
#[derive(Debug)]
pub struct View {
    /// Every disk opened so far (indexes never change meaning).
    disks: RwLock<Vec<Arc<Disk>>>,
    layout: RwLock<Arc<Layout>>,
    /// The guest path shown at the FUSE root.
    top: String,
    /// Whether guest paths of directories are tracked: when mounts lie below the top, or
    /// may come (the view follows the guest's mount table).
    nested: bool,
    pub(crate) pres: Presentation,
    tables: Mutex<Tables>,
    /// The node shown at the FUSE root (nodeid 1).
    root_id: AtomicU64,
    mounted_at: SystemTime,
    /// FUSE mount points of the host, refreshed at most twice a second.
    fuse_points: Mutex<(Option<Instant>, HashSet<PathBuf>)>,
    /// This view's own mount point (canonical), never looked at through hostfs.
    own_point: Option<PathBuf>,
    /// Host directories being listed: (node id, when read, sorted names).
    host_lists: Mutex<Vec<HostList>>,
}

/// Why a view could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("\"{path}\" does not exist in the guest's tree")]
    NoSuchPath { path: String },
    #[error("\"{path}\" in the guest's tree is not a directory")]
    NotADirectory { path: String },
    #[error("reading \"{path}\" in the guest's tree failed: {reason}")]
    Read { path: String, reason: String },
    #[error("the guest has nothing mounted at /")]
    NoRoot,
    #[error(
        "\"{path}\" is on {what}, not on a disk: the host cannot see its files (umlfs shows ubd disks and hostfs directories)"
    )]
    NotOnDisk { path: String, what: String },
}

fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn is_under(path: &str, top: &str) -> bool {
    top == "/" || path == top || path.starts_with(&format!("{top}/"))
}

fn ext_id(mount: usize, ino: u64) -> u64 {
    ((mount as u64 + 1) << 32) | (ino & 0xFFFF_FFFF)
}

/// Map a reader error to an errno for the kernel.
fn errno(e: &ExtError) -> Errno {
    match e {
        ExtError::InodeNotAllocated { .. } | ExtError::InodeOutOfRange { .. } => Errno::ENOENT,
        ExtError::NotADirectory { .. } => Errno::ENOTDIR,
        ExtError::IsADirectory { .. } => Errno::EISDIR,
        ExtError::NotASymlink { .. } => Errno::EINVAL,
        _ => Errno::EIO,
    }
}

fn io_errno(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn time(t: crate::ext::Timestamp) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::new(t.sec.unsigned_abs(), 0))
            .and_then(|s| s.checked_add(Duration::from_nanos(u64::from(t.nsec))))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// Linux's `new_encode_dev` (include/linux/kdev_t.h).
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

impl View {
    /// Compose a view of `mounts` (guest mount order) showing guest path `top`.
    ///
    /// # Errors
    /// [`ViewError`] when `top` cannot be reached or is not a directory.
    pub fn new(
        disks: Vec<Disk>,
        mounts: Vec<ViewMount>,
        top: &str,
        pres: Presentation,
    ) -> Result<View, ViewError> {
        let nested = mounts
            .iter()
            .any(|m| is_under(&m.point, top) && m.point != top);
        let active = vec![true; mounts.len()];
        let layout = Layout::new(top, mounts, active, Vec::new());
        let view = View {
            disks: RwLock::new(disks.into_iter().map(Arc::new).collect()),
            layout: RwLock::new(Arc::new(layout)),
            top: top.to_owned(),
            nested,
            pres,
            tables: Mutex::new(Tables::default()),
            root_id: AtomicU64::new(0),
            mounted_at: SystemTime::now(),
            fuse_points: Mutex::new((None, HashSet::new())),
            own_point: None,
            host_lists: Mutex::new(Vec::new()),
        };
        let root = view.resolve_top()?;
        view.root_id.store(root, Ordering::Relaxed);
        Ok(view)
    }

    pub(crate) fn root(&self) -> u64 {
        self.root_id.load(Ordering::Relaxed)
    }

    /// Every disk opened so far.
    pub fn disks(&self) -> Vec<Arc<Disk>> {
        self.disks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Add a disk (one the guest mounted after the view was made); its index for
    /// [`ViewKind::Ext`].
    pub fn add_disk(&self, disk: Disk) -> usize {
        let mut d = self.disks.write().unwrap_or_else(|p| p.into_inner());
        d.push(Arc::new(disk));
        d.len() - 1
    }

    fn node(&self, id: u64) -> Option<Node> {
        let id = if id == 1 { self.root() } else { id };
        if id & HOST_BIT != 0 {
            let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            let (mount, path, _) = t.host.get(&id)?;
            return Some(Node::Host {
                mount: *mount,
                path: path.clone(),
            });
        }
        if id & SYNTH_BIT != 0 {
            let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            return t.synth.get(&id).map(|p| Node::Synth { path: p.clone() });
        }
        let m = (id >> 32).checked_sub(1)? as usize;
        match self.layout().mounts.get(m)?.kind {
            ViewKind::Ext { .. } => Some(Node::Ext {
                mount: m,
                ino: id & 0xFFFF_FFFF,
            }),
            _ => None,
        }
    }

    fn disk_of(&self, mount: usize) -> Option<Arc<Disk>> {
        match self.layout().mounts.get(mount)?.kind {
            ViewKind::Ext { disk, .. } => self
                .disks
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(disk)
                .cloned(),
            _ => None,
        }
    }

    fn ext_attr(&self, mount: usize, inode: &Inode, block_size: u32) -> Attr {
        {
            let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            t.stamps.insert(ext_id(mount, inode.ino), Stamp::of(inode));
        }
        let p = &self.pres;
        Attr {
            ino: ext_id(mount, inode.ino),
            size: inode.size,
            blocks: inode.blocks,
            atime: time(inode.atime),
            mtime: time(inode.mtime),
            ctime: time(inode.ctime),
            crtime: inode.crtime.map(time).unwrap_or(UNIX_EPOCH),
            kind: inode.file_type,
            perm: inode.mode & 0o7777 & !p.umask & !self.acl_hidden_bits(mount, inode),
            nlink: inode.nlink,
            uid: p.uid.unwrap_or(inode.uid),
            gid: p.gid.unwrap_or(inode.gid),
            rdev: inode.rdev.map(|(a, b)| encode_dev(a, b)).unwrap_or(0),
            blksize: block_size,
            generation: u64::from(inode.generation),
        }
    }

    /// The permission bits an ACL the mount does not show could narrow: group and other, for a
    /// file that has one, when xattrs are not shown; none otherwise. An ACL that cannot be read
    /// counts as one.
    fn acl_hidden_bits(&self, mount: usize, inode: &Inode) -> u16 {
        if !self.pres.no_xattr {
            return 0;
        }
        let has_acl = self
            .disk_of(mount)
            .is_none_or(|disk| !matches!(disk.fs().xattr_of(inode, POSIX_ACL_ACCESS), Ok(None)));
        if has_acl { 0o077 } else { 0 }
    }

    fn synth_attr(&self, id: u64) -> Attr {
        Attr {
            ino: id,
            size: 0,
            blocks: 0,
            atime: self.mounted_at,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
            kind: FileType::Directory,
            perm: 0o755 & !self.pres.umask,
            nlink: 2,
            uid: self.pres.uid.unwrap_or(0),
            gid: self.pres.gid.unwrap_or(0),
            rdev: 0,
            blksize: 4096,
            generation: 0,
        }
    }

    /// Attributes of node `id`.
    pub(crate) fn attr(&self, id: u64) -> Result<Attr, Errno> {
        let real = if id == 1 { self.root() } else { id };
        match self.node(real).ok_or(Errno::ENOENT)? {
            Node::Ext { mount, ino } => {
                let fs = self.disk_of(mount).ok_or(Errno::ENOENT)?.fs();
                let inode = fs.inode(ino).map_err(|e| errno(&e))?;
                Ok(self.ext_attr(mount, &inode, fs.block_size()))
            }
            Node::Synth { .. } => Ok(self.synth_attr(real)),
            Node::Host { mount, path } => match self.host_lstat(mount, &path) {
                Ok(md) => Ok(self.host_attr(real, &md)),
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => Ok(self.synth_attr(real)),
                Err(e) => Err(io_errno(&e)),
            },
        }
    }

    /// The counts of the disk node `id` lies on (`df`); None for hostfs and synthetic nodes.
    pub(crate) fn statfs(&self, id: u64) -> Option<crate::ext::StatFs> {
        match self.node(id)? {
            Node::Ext { mount, .. } => Some(self.disk_of(mount)?.fs().statfs()),
            _ => None,
        }
    }

    /// Look `name` up in directory `parent` (whose guest path is `ppath`, if known). Names are
    /// bytes: one that is not UTF-8 is found like any other (it cannot be a guest mount point,
    /// whose paths come from the guest's mountinfo text).
    pub(crate) fn lookup_in(
        &self,
        parent: u64,
        ppath: &str,
        name: &OsStr,
    ) -> Result<(u64, Attr), Errno> {
        let node = self.node(parent).ok_or(Errno::ENOENT)?;
        let cpath = name.to_str().map(|n| join(ppath, n));
        if self.nested
            && let Some(cpath) = &cpath
        {
            if let Some(id) = self.mounted(cpath) {
                let a = self.attr(id)?;
                self.remember_dir(id, cpath);
                return Ok((id, a));
            }
            if self.layout().below.contains_key(cpath) && matches!(node, Node::Synth { .. }) {
                let id = self.synth_id(cpath);
                self.remember_dir(id, cpath);
                return Ok((id, self.synth_attr(id)));
            }
        }
        match node {
            Node::Ext { mount, ino } => {
                let fs = self.disk_of(mount).ok_or(Errno::ENOENT)?.fs();
                let found = fs
                    .lookup(ino, name.as_bytes())
                    .map_err(|e| errno(&e))?
                    .ok_or(Errno::ENOENT)?;
                let inode = fs.inode(found).map_err(|e| errno(&e))?;
                let attr = self.ext_attr(mount, &inode, fs.block_size());
                let id = attr.ino;
                self.remember_ext(id);
                self.remember_name(parent, name.as_bytes(), id);
                if attr.kind == FileType::Directory
                    && let Some(cpath) = &cpath
                {
                    self.remember_dir(id, cpath);
                }
                Ok((id, attr))
            }
            Node::Synth { .. } => match &cpath {
                Some(cpath) if self.nested && self.layout().below.contains_key(cpath) => {
                    let id = self.synth_id(cpath);
                    self.remember_dir(id, cpath);
                    Ok((id, self.synth_attr(id)))
                }
                _ => Err(Errno::ENOENT),
            },
            Node::Host { mount, path } => {
                let b = name.as_bytes();
                if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
                    return Err(Errno::ENOENT);
                }
                let hpath = path.join(name);
                match self.host_lstat(mount, &hpath) {
                    Ok(md) => {
                        let id = self.host_id(mount, &hpath, &md);
                        if md.is_dir()
                            && let Some(cpath) = &cpath
                        {
                            self.remember_dir(id, cpath);
                        }
                        Ok((id, self.host_attr(id, &md)))
                    }
                    // A FUSE mount point on the host: shown empty, never entered.
                    Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                        let key = String::from_utf8_lossy(hpath.as_os_str().as_bytes());
                        let id = self.synth_id(&format!("{HOST_FUSE_POINT}{key}"));
                        Ok((id, self.synth_attr(id)))
                    }
                    Err(e) => Err(io_errno(&e)),
                }
            }
        }
    }

    /// List directory `id` from `offset`: (next offset, name, node id, attr if wanted).
    pub(crate) fn list(
        &self,
        id: u64,
        offset: u64,
        plus: bool,
        mut emit: impl FnMut(u64, &OsStr, u64, FileType, Option<&Attr>) -> bool,
    ) -> Result<(), Errno> {
        let real = if id == 1 { self.root() } else { id };
        let node = self.node(real).ok_or(Errno::ENOENT)?;
        let dpath = self.dir_path(real);
        let sub = |name: &[u8]| -> Option<u64> {
            let dp = dpath.as_ref()?;
            let n = std::str::from_utf8(name).ok()?;
            self.mounted(&join(dp, n))
        };
        match node {
            Node::Ext { mount, ino } => {
                let fs = self.disk_of(mount).ok_or(Errno::ENOENT)?.fs();
                let bs = fs.block_size();
                let mut err = None;
                fs.read_dir(ino, offset, |e| {
                    let name = OsStr::from_bytes(&e.name);
                    let dot = e.name == b"." || e.name == b"..";
                    // A mount point (its id comes with a reference) or, for READDIRPLUS, the
                    // entry's inode (a reference is taken below).
                    let (cid, kind, attr) = if let Some(m) = (!dot).then(|| sub(&e.name)).flatten()
                    {
                        match self.attr(m) {
                            Ok(a) => (m, a.kind, Some(a)),
                            Err(_) => {
                                self.unref(m, 1);
                                return true;
                            }
                        }
                    } else if plus && !dot {
                        match fs.inode(e.ino) {
                            Ok(i) => {
                                let a = self.ext_attr(mount, &i, bs);
                                (a.ino, a.kind, Some(a))
                            }
                            Err(x) => {
                                err.get_or_insert(errno(&x));
                                return true;
                            }
                        }
                    } else {
                        (ext_id(mount, e.ino), e.file_type, None)
                    };
                    if let Some(a) = &attr {
                        if cid == ext_id(mount, e.ino) {
                            self.remember_ext(cid);
                            self.remember_name(real, &e.name, cid);
                        }
                        if a.kind == FileType::Directory
                            && let Some(dp) = &dpath
                            && let Ok(n) = std::str::from_utf8(&e.name)
                        {
                            self.remember_dir(cid, &join(dp, n));
                        }
                    }
                    let keep = emit(e.next_offset, name, cid, kind, attr.as_ref());
                    // The kernel holds a reference only for a READDIRPLUS entry it took.
                    if attr.is_some() && !(plus && keep) {
                        self.unref(cid, 1);
                    }
                    keep
                })
                .map_err(|e| errno(&e))?;
                let _ = err;
                Ok(())
            }
            Node::Synth { path } => {
                let names: Vec<OsString> = self
                    .layout()
                    .below
                    .get(&path)
                    .map(|s| s.iter().map(OsString::from).collect())
                    .unwrap_or_default();
                self.list_names(real, &path, offset, plus, &names, &mut emit)
            }
            Node::Host { mount, path } => {
                let names = self.host_names(real, mount, &path, offset)?;
                let gp = dpath.unwrap_or_else(|| "/".into());
                self.list_names(real, &gp, offset, plus, &names, &mut emit)
            }
        }
    }

    /// List a directory given by child names (offset = index + 1 after "." and "..").
    fn list_names(
        &self,
        id: u64,
        path: &str,
        offset: u64,
        plus: bool,
        names: &[OsString],
        emit: &mut impl FnMut(u64, &OsStr, u64, FileType, Option<&Attr>) -> bool,
    ) -> Result<(), Errno> {
        let dots = [OsStr::new("."), OsStr::new("..")];
        let all = dots
            .into_iter()
            .chain(names.iter().map(OsString::as_os_str));
        for (i, name) in all
            .enumerate()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        {
            let next = i as u64 + 1;
            let keep = if i < 2 {
                emit(next, name, id, FileType::Directory, None)
            } else {
                match self.lookup_in(id, path, name) {
                    Ok((cid, a)) => {
                        let keep = emit(next, name, cid, a.kind, plus.then_some(&a));
                        if !(plus && keep) {
                            self.unref(cid, 1);
                        }
                        keep
                    }
                    Err(_) => true,
                }
            };
            if !keep {
                break;
            }
        }
        Ok(())
    }

    pub(crate) fn read(&self, id: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; size.min(MAX_READ) as usize];
        let n = self.read_into(id, offset, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Read from `offset` into `buf` (at most [`MAX_READ`] bytes): the number read, short at
    /// the end of the file.
    pub(crate) fn read_into(&self, id: u64, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let real = if id == 1 { self.root() } else { id };
        let size = buf.len().min(MAX_READ as usize);
        let buf = &mut buf[..size];
        match self.node(real).ok_or(Errno::ENOENT)? {
            Node::Ext { mount, ino } => {
                let fs = self.disk_of(mount).ok_or(Errno::ENOENT)?.fs();
                fs.read(ino, offset, buf).map_err(|e| errno(&e))
            }
            Node::Synth { .. } => Err(Errno::EISDIR),
            Node::Host { mount, path } => {
                // O_NONBLOCK: a host FIFO or device must not hold a handler thread.
                let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
                let fd = self
                    .host_open(mount, &path, flags | OFlag::O_NOATIME)
                    .or_else(|_| self.host_open(mount, &path, flags))
                    .map_err(|e| io_errno(&e))?;
                let f = fs::File::from(fd);
                let md = f.metadata().map_err(|e| io_errno(&e))?;
                if md.is_dir() {
                    return Err(Errno::EISDIR);
                }
                if !md.is_file() {
                    return Err(Errno::EINVAL);
                }
                let mut done = 0;
                while done < size {
                    match FileExt::read_at(&f, &mut buf[done..], offset + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(io_errno(&e)),
                    }
                }
                Ok(done)
            }
        }
    }

    pub(crate) fn readlink(&self, id: u64) -> Result<Vec<u8>, Errno> {
        match self.node(id).ok_or(Errno::ENOENT)? {
            Node::Ext { mount, ino } => {
                let fs = self.disk_of(mount).ok_or(Errno::ENOENT)?.fs();
                fs.read_link(ino).map_err(|e| errno(&e))
            }
            Node::Synth { .. } => Err(Errno::EINVAL),
            Node::Host { mount, path } => {
                let fd = self
                    .host_open(mount, &path, OFlag::O_PATH | OFlag::O_NOFOLLOW)
                    .map_err(|e| io_errno(&e))?;
                nix::fcntl::readlinkat(&fd, "")
                    .map(|p| p.as_bytes().to_vec())
                    .map_err(|e| Errno::from_raw(e as i32))
            }
        }
    }

    /// The value of xattr `name` of node `id`: `Ok(None)` when the node has none of that name
    /// (ENODATA), and EOPNOTSUPP for a missing `security.selinux` where nothing carries
    /// labels (a disk whose root has none, a hostfs or synthetic node): what a filesystem
    /// without labels answers, so `ls -l` (which remembers that per device) stops asking
    /// for every file. A label a file does have is always returned.
    pub(crate) fn xattr(&self, id: u64, name: &[u8]) -> Result<Option<Vec<u8>>, Errno> {
        let real = if id == 1 { self.root() } else { id };
        let unlabeled = || {
            if name == SELINUX {
                Err(Errno::EOPNOTSUPP)
            } else {
                Ok(None)
            }
        };
        match self.node(real).ok_or(Errno::ENOENT)? {
            Node::Ext { mount, ino } => {
                let disk = self.disk_of(mount).ok_or(Errno::ENOENT)?;
                let found = disk.fs().xattr(ino, name).map_err(|e| match e {
                    // Over XATTR_SIZE_MAX or the budget: what the kernel says for values
                    // larger than it can pass.
                    ExtError::TooLarge { .. } => Errno::E2BIG,
                    e => errno(&e),
                })?;
                match found {
                    None if !disk.labeled.load(Ordering::Relaxed) => unlabeled(),
                    found => Ok(found),
                }
            }
            _ => unlabeled(),
        }
    }

    pub(crate) fn xattr_names(&self, id: u64) -> Result<Vec<Vec<u8>>, Errno> {
        let real = if id == 1 { self.root() } else { id };
        match self.node(real).ok_or(Errno::ENOENT)? {
            Node::Ext { mount, ino } => {
                let fs = self.disk_of(mount).ok_or(Errno::ENOENT)?.fs();
                fs.xattr_names(ino).map_err(|e| errno(&e))
            }
            _ => Ok(Vec::new()),
        }
    }
}
