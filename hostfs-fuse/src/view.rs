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

/// A filesystem image as the reader sees it (a plain file, or a COW view).
pub type Image = Arc<dyn BlockSource>;
/// One generation of an open disk.
pub type ExtFs = Filesystem<Image>;

const HOST_BIT: u64 = 1 << 62;
const SYNTH_BIT: u64 = 1 << 61;
/// Largest directory the hostfs passthrough lists.
const HOST_DIR_LIMIT: usize = 1 << 20;
/// How long the names of a host directory read for a listing's first chunk serve its later
/// chunks, and how many such listings are kept.
const HOST_LIST_KEEP: Duration = Duration::from_secs(5);
const HOST_LISTS: usize = 8;
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
}

/// The kind of a host file.
fn kind_of(ft: fs::FileType) -> FileType {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        FileType::Directory
    } else if ft.is_symlink() {
        FileType::Symlink
    } else if ft.is_char_device() {
        FileType::CharDevice
    } else if ft.is_block_device() {
        FileType::BlockDevice
    } else if ft.is_fifo() {
        FileType::Fifo
    } else if ft.is_socket() {
        FileType::Socket
    } else {
        FileType::Regular
    }
}

/// The xattr `ls -l` asks every file for (through `lgetfilecon`).
const SELINUX: &[u8] = b"security.selinux";

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

/// At most this many mounts are ever shown by one view (a guest mounting and unmounting in
/// a loop stops being followed there).
const MAX_MOUNTS: usize = 4096;

/// The mounts a view composes, replaced as a whole when the guest's mount table changes.
/// Mount indexes are never reused (ext node ids carry them): a mount the guest unmounted
/// stays in `mounts`, inactive, so what the kernel still holds of it keeps working.
#[derive(Debug, Default)]
struct Layout {
    mounts: Vec<ViewMount>,
    active: Vec<bool>,
    /// Per mount: for a hostfs mount, its directory opened (`O_PATH`) before the FUSE
    /// session exists (or by the thread following the guest), and the path its nodes' paths
    /// start with.
    host_roots: Vec<Option<Arc<(OwnedFd, PathBuf)>>>,
    /// Every proper ancestor of an active mount point (under the top) → names leading
    /// towards it.
    below: HashMap<String, BTreeSet<String>>,
}

impl Layout {
    fn new(
        top: &str,
        mounts: Vec<ViewMount>,
        active: Vec<bool>,
        mut host_roots: Vec<Option<Arc<(OwnedFd, PathBuf)>>>,
    ) -> Layout {
        let mut below: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (m, _) in mounts.iter().zip(&active).filter(|(_, a)| **a) {
            if !is_under(&m.point, top) || m.point == top {
                continue;
            }
            let mut cur = m.point.as_str();
            while let Some((parent, name)) = cur.rsplit_once('/') {
                let parent = if parent.is_empty() { "/" } else { parent };
                below
                    .entry(parent.to_owned())
                    .or_default()
                    .insert(name.to_owned());
                if parent == "/" || parent == top {
                    break;
                }
                cur = parent;
            }
        }
        for m in &mounts[host_roots.len()..] {
            host_roots.push(match &m.kind {
                ViewKind::Host { dir } => nix::fcntl::open(
                    dir.as_path(),
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .ok()
                .map(|fd| Arc::new((fd, dir.clone()))),
                _ => None,
            });
        }
        Layout {
            mounts,
            active,
            host_roots,
            below,
        }
    }

    /// The innermost active mount at `path`: the last one in mount order.
    fn mount_at(&self, path: &str) -> Option<usize> {
        (0..self.mounts.len())
            .rev()
            .find(|&i| self.active[i] && self.mounts[i].point == path)
    }
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
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Ext { mount: usize, ino: u64 },
    Host { mount: usize, path: PathBuf },
    Synth { path: String },
}

/// A host file as (view mount, host st_dev, host st_ino).
type HostKey = (usize, u64, u64);

/// Node tables. Every id handed out carries references: one per lookup the kernel was told
/// about (a LOOKUP reply or a READDIRPLUS entry), dropped by FORGET; internal uses take one and
/// give it back at once. An id without references is removed from every table, so the tables
/// hold what the kernel holds, not every name ever looked up.
#[derive(Debug, Default)]
struct Tables {
    /// Guest path of directories seen (only kept when the view has nested mounts).
    dir_paths: HashMap<u64, String>,
    /// Host node id → (mount, host path, its key in `host_rev`).
    host: HashMap<u64, (usize, PathBuf, HostKey)>,
    host_rev: HashMap<HostKey, u64>,
    synth: HashMap<u64, String>,
    synth_rev: HashMap<String, u64>,
    /// Ext node ids the kernel has been told about, to invalidate on a new generation.
    known: HashSet<u64>,
    /// What the kernel was last told about each ext node: a new generation compares against
    /// this (not against the old generation, which may read the image's new bytes).
    stamps: HashMap<u64, Stamp>,
    /// Names the kernel was given in disk directories: directory node → name → child node.
    /// When a directory changes in a new generation, the names that now lead elsewhere are
    /// forgotten by name, so entries can live as long as a generation.
    names: HashMap<u64, HashMap<Vec<u8>, u64>>,
    names_len: usize,
    /// References of every live id (see above).
    refs: HashMap<u64, u64>,
    /// The next host or synthetic id number (never reused, so a forgotten id cannot come
    /// back naming another file).
    next_id: u64,
}

/// The inode fields whose change the kernel must hear of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: crate::ext::Timestamp,
    ctime: crate::ext::Timestamp,
    size: u64,
    nlink: u32,
    mode: u16,
    uid: u32,
    gid: u32,
    generation: u32,
}

impl Stamp {
    fn of(i: &Inode) -> Stamp {
        Stamp {
            mtime: i.mtime,
            ctime: i.ctime,
            size: i.size,
            nlink: i.nlink,
            mode: i.mode,
            uid: i.uid,
            gid: i.gid,
            generation: i.generation,
        }
    }
}

/// At most this many names in disk directories are remembered; past it, entries get the
/// short time-to-live.
const NAMES_MAX: usize = 1 << 20;

impl Tables {
    fn pin(&mut self, id: u64) {
        *self.refs.entry(id).or_insert(0) += 1;
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id = self.next_id.max(2) + 1;
        self.next_id
    }
}

/// The shared state of a mounted view; [`UmlFs`] (the FUSE side) and the freshness thread
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

type HostList = (u64, Instant, Arc<Vec<OsString>>);

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

    /// Track directory paths from now on, as a view that follows the guest's mount table
    /// must (a mount may come below any directory).
    pub fn follow(&mut self) {
        if !self.nested {
            self.nested = true;
            let root = self.root();
            self.remember_dir(root, &self.top.clone());
        }
    }

    fn layout(&self) -> Arc<Layout> {
        self.layout
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
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

    /// The mounts of the view that show nothing (not on a disk, not hostfs), as
    /// (guest path, what it is), for telling the user.
    pub fn opaque_mounts(&self) -> Vec<(String, String)> {
        let l = self.layout();
        l.mounts
            .iter()
            .zip(&l.active)
            .filter(|(m, a)| **a && is_under(&m.point, &self.top))
            .filter_map(|(m, _)| match &m.kind {
                ViewKind::Opaque { what } => Some((m.point.clone(), what.clone())),
                _ => None,
            })
            .collect()
    }

    /// Take the guest's mount table as it is now (`mounts`, in mount order): mounts that
    /// stay keep their nodes, new ones are shown, gone ones are hidden. Returns what the
    /// kernel must forget so that a mount appears and disappears at once.
    pub fn apply_mounts(&self, mounts: Vec<ViewMount>) -> Forget {
        let old = self.layout();
        let mut all = old.mounts.clone();
        let mut active = vec![false; all.len()];
        for m in mounts {
            let same = (0..old.mounts.len()).find(|&i| {
                old.active[i]
                    && !active[i]
                    && old.mounts[i].id == m.id
                    && old.mounts[i].point == m.point
                    && old.mounts[i].kind == m.kind
            });
            match same {
                Some(i) => active[i] = true,
                None if all.len() < MAX_MOUNTS => {
                    all.push(m);
                    active.push(true);
                }
                None => tracing::warn!(
                    point = %m.point,
                    "the guest mounted more than {MAX_MOUNTS} filesystems: not shown"
                ),
            }
        }
        let changed: Vec<String> = (0..all.len())
            .filter(|&i| old.active.get(i).copied().unwrap_or(false) != active[i])
            .map(|i| all[i].point.clone())
            .filter(|p| is_under(p, &self.top))
            .collect();
        let mut forget = Forget::default();
        if changed.is_empty() {
            return forget;
        }
        let layout = Layout::new(&self.top, all, active, old.host_roots.clone());
        *self.layout.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(layout);
        let old_root = self.root();
        match self.resolve_top() {
            Ok(root) if root != old_root => {
                self.root_id.store(root, Ordering::Relaxed);
                forget.nodes.push(1);
                // Every name under the FUSE root may now lead elsewhere.
                let mut names = BTreeSet::new();
                for id in [old_root, root] {
                    let _ = self.list(id, 0, false, |_, name, _, _, _| {
                        if name != "." && name != ".." {
                            names.insert(name.to_owned());
                        }
                        names.len() < NAMES_LIMIT
                    });
                }
                forget.entries.extend(names.into_iter().map(|n| (1, n)));
            }
            Ok(root) => self.unref(root, 1),
            // The top is gone (unmounted, or no longer a directory): keep showing the last.
            Err(e) => tracing::info!("the view's top cannot be reached now: {e}"),
        }
        // The mount point's entry, and every step leading to it from the top (a missing
        // name is cached too, and the way to a new mount may lead through one).
        let mut steps = BTreeSet::new();
        for point in changed {
            let mut cur = point.as_str();
            while cur != self.top && is_under(cur, &self.top) {
                let Some((parent, name)) = cur.rsplit_once('/') else {
                    break;
                };
                let parent = if parent.is_empty() { "/" } else { parent };
                if !name.is_empty() {
                    steps.insert((parent.to_owned(), name.to_owned()));
                }
                cur = parent;
            }
        }
        for (parent, name) in steps {
            for id in self.dirs_at(&parent) {
                forget.entries.push((id, OsString::from(&name)));
                forget.nodes.push(id);
            }
        }
        forget.entries.sort();
        forget.entries.dedup();
        forget.nodes.sort_unstable();
        forget.nodes.dedup();
        forget
    }

    /// The node ids the kernel knows for guest directory `path`.
    fn dirs_at(&self, path: &str) -> Vec<u64> {
        let mut ids: Vec<u64> = {
            let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            t.dir_paths
                .iter()
                .filter(|(_, p)| p.as_str() == path)
                .map(|(id, _)| *id)
                .collect()
        };
        if path == self.top {
            ids.push(1);
        }
        let root = self.root();
        for id in &mut ids {
            if *id == root {
                *id = 1;
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The innermost mount at or above `path`: the last one in mount order.
    fn mount_at(&self, path: &str) -> Option<usize> {
        self.layout().mount_at(path)
    }

    /// Walk from the mount that holds `top` down to it.
    fn resolve_top(&self) -> Result<u64, ViewError> {
        let layout = self.layout();
        let mut best: Option<usize> = None;
        for (i, m) in layout.mounts.iter().enumerate() {
            if layout.active[i]
                && is_under(&self.top, &m.point)
                && best.is_none_or(|b| m.point.len() >= layout.mounts[b].point.len())
            {
                best = Some(i);
            }
        }
        let m = best.ok_or(ViewError::NoRoot)?;
        // A top inside a mount the host cannot see, with nothing mounted below it, would
        // be a silently empty directory.
        if let ViewKind::Opaque { what } = &layout.mounts[m].kind
            && !layout.below.contains_key(&self.top)
        {
            return Err(ViewError::NotOnDisk {
                path: self.top.clone(),
                what: what.clone(),
            });
        }
        let mut id = self.mount_root(m);
        let mut path = layout.mounts[m].point.clone();
        let rest = self.top[path.len()..].to_owned();
        for comp in rest.split('/').filter(|c| !c.is_empty()) {
            let (child, attr) = self.lookup_in(id, &path, OsStr::new(comp)).map_err(|e| {
                if e == Errno::ENOENT {
                    ViewError::NoSuchPath {
                        path: self.top.clone(),
                    }
                } else {
                    ViewError::Read {
                        path: self.top.clone(),
                        reason: format!("errno {e:?}"),
                    }
                }
            })?;
            if attr.kind != FileType::Directory {
                return Err(ViewError::NotADirectory {
                    path: self.top.clone(),
                });
            }
            path = join(&path, comp);
            self.unref(id, 1);
            id = child;
        }
        let attr = self.attr(id).map_err(|e| ViewError::Read {
            path: self.top.clone(),
            reason: format!("errno {e:?}"),
        })?;
        if attr.kind != FileType::Directory {
            return Err(ViewError::NotADirectory {
                path: self.top.clone(),
            });
        }
        self.remember_dir(id, &self.top);
        Ok(id)
    }

    /// The id of synthetic directory `path`, with one reference taken.
    fn synth_id(&self, path: &str) -> u64 {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let id = match t.synth_rev.get(path) {
            Some(id) => *id,
            None => {
                let id = SYNTH_BIT | t.fresh_id();
                t.synth.insert(id, path.to_owned());
                t.synth_rev.insert(path.to_owned(), id);
                id
            }
        };
        t.pin(id);
        id
    }

    /// The id of host file `path`, with one reference taken.
    fn host_id(&self, mount: usize, path: &Path, md: &fs::Metadata) -> u64 {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let key = (mount, md.dev(), md.ino());
        let id = match t.host_rev.get(&key) {
            Some(id) => *id,
            None => {
                let id = HOST_BIT | t.fresh_id();
                t.host.insert(id, (mount, path.to_owned(), key));
                t.host_rev.insert(key, id);
                id
            }
        };
        t.pin(id);
        id
    }

    /// Drop `n` references of `id` (a FORGET, or an internal use ending); at none, the id
    /// leaves every table. The view's root is never dropped.
    pub fn unref(&self, id: u64, n: u64) {
        if id == 1 || id == self.root() {
            return;
        }
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = t.refs.get_mut(&id) else {
            return;
        };
        *c = c.saturating_sub(n);
        if *c > 0 {
            return;
        }
        t.refs.remove(&id);
        if let Some((_, _, key)) = t.host.remove(&id) {
            t.host_rev.remove(&key);
        }
        if let Some(p) = t.synth.remove(&id) {
            t.synth_rev.remove(&p);
        }
        t.known.remove(&id);
        t.stamps.remove(&id);
        if let Some(n) = t.names.remove(&id) {
            t.names_len -= n.len();
        }
        t.dir_paths.remove(&id);
    }

    /// How many node ids the tables hold (for tests and diagnostics).
    pub fn table_len(&self) -> usize {
        let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        t.refs.len()
            + t.host.len()
            + t.synth.len()
            + t.known.len()
            + t.dir_paths.len()
            + t.stamps.len()
            + t.names_len
    }

    fn mount_root(&self, m: usize) -> u64 {
        let layout = self.layout();
        let mount = &layout.mounts[m];
        match &mount.kind {
            ViewKind::Ext { root_ino, .. } => {
                let id = ext_id(m, *root_ino);
                self.remember_ext(id);
                id
            }
            ViewKind::Opaque { .. } => self.synth_id(&mount.point),
            ViewKind::Host { dir } => match self.host_lstat(m, dir) {
                Ok(md) if md.is_dir() => self.host_id(m, dir, &md),
                _ => self.synth_id(&mount.point),
            },
        }
    }

    pub(crate) fn node(&self, id: u64) -> Option<Node> {
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

    pub(crate) fn disk_of(&self, mount: usize) -> Option<Arc<Disk>> {
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

    fn remember_dir(&self, id: u64, path: &str) {
        if self.nested {
            let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            t.dir_paths.entry(id).or_insert_with(|| path.to_owned());
        }
    }

    /// Record an ext id handed out, with one reference taken.
    fn remember_ext(&self, id: u64) {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        t.known.insert(id);
        t.pin(id);
    }

    /// Remember that the kernel was given `name` in disk directory `parent`, leading to
    /// `child`.
    fn remember_name(&self, parent: u64, name: &[u8], child: u64) {
        let parent = if parent == 1 { self.root() } else { parent };
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        if t.names_len >= NAMES_MAX {
            return;
        }
        if t.names
            .entry(parent)
            .or_default()
            .insert(name.to_vec(), child)
            .is_none()
        {
            t.names_len += 1;
        }
    }

    /// Whether entries and attributes of node `id` may live as long as a generation: disk
    /// and synthetic nodes change only with a new generation or mount table, which tell the
    /// kernel what to forget; hostfs files change without telling anyone.
    pub(crate) fn lasts_a_generation(&self, id: u64) -> bool {
        if id & HOST_BIT != 0 {
            return false;
        }
        let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        t.names_len < NAMES_MAX
    }

    pub(crate) fn dir_path(&self, id: u64) -> Option<String> {
        if id == 1 || id == self.root() {
            return Some(self.top.clone());
        }
        if !self.nested {
            return None;
        }
        let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        t.dir_paths.get(&id).cloned()
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
            perm: inode.mode & 0o7777 & !p.umask,
            nlink: inode.nlink,
            uid: p.uid.unwrap_or(inode.uid),
            gid: p.gid.unwrap_or(inode.gid),
            rdev: inode.rdev.map(|(a, b)| encode_dev(a, b)).unwrap_or(0),
            blksize: block_size,
        }
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
        }
    }

    fn host_attr(&self, id: u64, md: &fs::Metadata) -> Attr {
        let t = |s: i64, ns: i64| {
            time(crate::ext::Timestamp {
                sec: s,
                nsec: ns.clamp(0, 999_999_999) as u32,
            })
        };
        let kind = kind_of(md.file_type());
        let rdev = md.rdev();
        Attr {
            ino: id,
            size: md.size(),
            blocks: md.blocks(),
            atime: t(md.atime(), md.atime_nsec()),
            mtime: t(md.mtime(), md.mtime_nsec()),
            ctime: t(md.ctime(), md.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind,
            perm: (md.mode() & 0o7777) as u16 & !self.pres.umask,
            nlink: md.nlink() as u32,
            // uid= / gid= present guest files only: a host file keeps its owner, or
            // allow_other,uid=N would let user N read the host's /etc/shadow through the
            // passthrough of a guest whose root is the host's /.
            uid: md.uid(),
            gid: md.gid(),
            rdev: encode_dev(libc::major(rdev), libc::minor(rdev)),
            blksize: md.blksize() as u32,
        }
    }

    /// Record where this view is mounted, and forget the FUSE mount points seen so far.
    pub fn set_own_mountpoint(&mut self, point: PathBuf) {
        self.own_point = Some(point);
        self.fuse_points
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .0 = None;
    }

    /// Whether `path` is a FUSE mount point of the host (never to be looked at).
    fn is_fuse_point(&self, path: &Path) -> bool {
        if self.own_point.as_deref() == Some(path) {
            return true;
        }
        let mut g = self.fuse_points.lock().unwrap_or_else(|p| p.into_inner());
        if g.0
            .is_none_or(|at| at.elapsed() > Duration::from_millis(500))
        {
            let text = fs::read("/proc/self/mountinfo").unwrap_or_default();
            g.1 = crate::source::fuse_mount_points(&text)
                .into_iter()
                .collect();
            g.0 = Some(Instant::now());
        }
        g.1.contains(path)
    }

    /// Open host path `path` of hostfs mount `mount` relative to the mount's directory
    /// descriptor, beneath it and without following any symlink (openat2 `RESOLVE_BENEATH |
    /// RESOLVE_NO_SYMLINKS`): a directory swapped for a symlink after a lookup gives ELOOP,
    /// never a file elsewhere.
    fn host_open(&self, mount: usize, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
        let exdev = || io::Error::from_raw_os_error(libc::EXDEV);
        let layout = self.layout();
        let (root, dir) = layout
            .host_roots
            .get(mount)
            .and_then(Option::as_ref)
            .map(|r| &**r)
            .ok_or_else(exdev)?;
        let rel = path.strip_prefix(dir).map_err(|_| exdev())?;
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        // openat2 refuses O_PATH with any flag but O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC.
        let extra = if flags.contains(OFlag::O_PATH) {
            OFlag::O_CLOEXEC
        } else {
            OFlag::O_CLOEXEC | OFlag::O_NOCTTY
        };
        let how = OpenHow::new().flags(flags | extra).resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
        openat2(root, rel, how).map_err(io::Error::from)
    }

    fn host_lstat(&self, mount: usize, path: &Path) -> io::Result<fs::Metadata> {
        if self.is_fuse_point(path) {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        // O_PATH | O_NOFOLLOW opens a trailing symlink itself (openat2(2)), to stat it.
        let fd = self.host_open(mount, path, OFlag::O_PATH | OFlag::O_NOFOLLOW)?;
        fs::File::from(fd).metadata()
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

    /// The FUSE generation of a node: the ext inode's `i_generation`, so a reused inode
    /// number is seen as a new file (fs/fuse/inode.c fuse_stale_inode); 0 otherwise.
    pub(crate) fn generation(&self, id: u64) -> u64 {
        match self.node(id) {
            Some(Node::Ext { mount, ino }) => self
                .disk_of(mount)
                .and_then(|d| d.fs().inode(ino).ok())
                .map_or(0, |i| u64::from(i.generation)),
            _ => 0,
        }
    }

    /// The node a guest path shows when something is mounted on it or it leads to a mount.
    fn mounted(&self, path: &str) -> Option<u64> {
        if let Some(m) = self.mount_at(path) {
            return Some(self.mount_root(m));
        }
        None
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
                        let id = self.synth_id(&format!("host-fuse:{key}"));
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

    /// The sorted names of host directory `path` (node `id`). A listing that continues
    /// (offset > 0) reuses the names read for its first chunk, so listing a directory reads
    /// and sorts it once, not once per chunk.
    fn host_names(
        &self,
        id: u64,
        mount: usize,
        path: &Path,
        offset: u64,
    ) -> Result<Arc<Vec<OsString>>, Errno> {
        if offset > 0 {
            let cache = self.host_lists.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, at, names)) = cache.iter().find(|(i, _, _)| *i == id)
                && at.elapsed() < HOST_LIST_KEEP
            {
                return Ok(names.clone());
            }
        }
        let fd = self
            .host_open(
                mount,
                path,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            )
            .map_err(|e| io_errno(&e))?;
        // Listed through the descriptor checked above (its /proc/self/fd link names that very
        // directory, whatever happens to the path meanwhile).
        let by_fd = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let rd = fs::read_dir(&by_fd).map_err(|e| io_errno(&e))?;
        let mut names: Vec<OsString> = rd
            .take(HOST_DIR_LIMIT)
            .flatten()
            .map(|e| e.file_name())
            .collect();
        drop(fd);
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let names = Arc::new(names);
        let mut cache = self.host_lists.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(i, at, _)| *i != id && at.elapsed() < HOST_LIST_KEEP);
        if cache.len() >= HOST_LISTS {
            cache.remove(0);
        }
        cache.push((id, Instant::now(), names.clone()));
        Ok(names)
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
        let real = if id == 1 { self.root() } else { id };
        let size = size.min(MAX_READ) as usize;
        match self.node(real).ok_or(Errno::ENOENT)? {
            Node::Ext { mount, ino } => {
                let fs = self.disk_of(mount).ok_or(Errno::ENOENT)?.fs();
                let mut buf = vec![0u8; size];
                let n = fs.read(ino, offset, &mut buf).map_err(|e| errno(&e))?;
                buf.truncate(n);
                Ok(buf)
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
                let mut buf = vec![0u8; size];
                let mut done = 0;
                while done < size {
                    match FileExt::read_at(&f, &mut buf[done..], offset + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(io_errno(&e)),
                    }
                }
                buf.truncate(done);
                Ok(buf)
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

    /// Start a new generation of disk `d`: re-open its filesystem (the journal is read again)
    /// and return what the kernel must forget: the nodes whose inode changed from what the
    /// kernel was told, and the names in changed directories that now lead elsewhere.
    ///
    /// # Errors
    /// The reader's error when the image cannot be opened now (torn by a concurrent write):
    /// the old generation stays.
    pub fn refresh_disk(&self, d: usize) -> Result<Forget, ExtError> {
        let Some(disk) = self.disks().get(d).cloned() else {
            return Ok(Forget::default());
        };
        let new = Arc::new(Filesystem::open(disk.src.clone())?);
        let old = {
            let mut g = disk.fs.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *g, new.clone())
        };
        disk.generation.fetch_add(1, Ordering::Relaxed);
        disk.labeled.store(is_labeled(&new), Ordering::Relaxed);
        Ok(self.compare(d, Some(&old), &new))
    }

    /// Compare again what the kernel was told about disk `d` with its current generation: a
    /// request served from the previous generation while [`View::refresh_disk`] ran may have
    /// told the kernel old attributes after the comparison.
    pub fn recheck_disk(&self, d: usize) -> Forget {
        match self.disks().get(d) {
            Some(disk) => self.compare(d, None, &disk.fs()),
            None => Forget::default(),
        }
    }

    /// What the kernel must forget of disk `d` now that `new` is its generation (`old` the
    /// previous one, for nodes whose attributes the kernel was never told).
    fn compare(&self, d: usize, old: Option<&ExtFs>, new: &ExtFs) -> Forget {
        let layout = self.layout();
        let mounts: Vec<usize> = layout
            .mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| matches!(m.kind, ViewKind::Ext { disk, .. } if disk == d))
            .map(|(i, _)| i)
            .collect();
        let (known, stamps) = {
            let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            let mut k: Vec<u64> = t.known.iter().chain(t.stamps.keys()).copied().collect();
            for m in &mounts {
                if let ViewKind::Ext { root_ino, .. } = layout.mounts[*m].kind {
                    k.push(ext_id(*m, root_ino));
                }
            }
            k.push(self.root());
            k.sort_unstable();
            k.dedup();
            let stamps: HashMap<u64, Stamp> = k
                .iter()
                .filter_map(|id| Some((*id, *t.stamps.get(id)?)))
                .collect();
            (k, stamps)
        };
        let mut changed = Vec::new();
        let mut entries = Vec::new();
        for id in known {
            let Some(m) = (id >> 32).checked_sub(1) else {
                continue;
            };
            if !mounts.contains(&(m as usize)) {
                continue;
            }
            let ino = id & 0xFFFF_FFFF;
            let same = match (stamps.get(&id), new.inode(ino)) {
                (Some(sent), Ok(b)) => *sent == Stamp::of(&b),
                (Some(_), Err(_)) => false,
                (None, now) => match (old.map(|o| o.inode(ino)), now) {
                    (Some(Ok(a)), Ok(b)) => Stamp::of(&a) == Stamp::of(&b),
                    (Some(Err(_)), Err(_)) | (None, _) => true,
                    _ => false,
                },
            };
            if !same {
                changed.push(id);
                entries.extend(self.renamed(new, m as usize, id));
            }
        }
        if changed.contains(&self.root()) {
            // The FUSE root's own attributes and listing are cached under nodeid 1.
            changed.push(1);
        }
        Forget {
            entries,
            nodes: changed,
        }
    }

    /// The names the kernel was given in disk directory `id` (on mount `mount`) that lead
    /// elsewhere in generation `new`, as (node id the kernel knows the directory by, name);
    /// they are forgotten here too.
    fn renamed(&self, new: &ExtFs, mount: usize, id: u64) -> Vec<(u64, OsString)> {
        use std::os::unix::ffi::OsStringExt;
        let names = {
            let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            let Some(n) = t.names.remove(&id) else {
                return Vec::new();
            };
            t.names_len -= n.len();
            n
        };
        let ino = id & 0xFFFF_FFFF;
        let kernel_id = if id == self.root() { 1 } else { id };
        names
            .into_iter()
            .filter(|(name, child)| {
                let now = new.lookup(ino, name).ok().flatten();
                now.map(|i| ext_id(mount, i)) != Some(*child)
            })
            .map(|(name, _)| (kernel_id, OsString::from_vec(name)))
            .collect()
    }
}

/// At most this many names under the FUSE root are forgotten when the top changes.
const NAMES_LIMIT: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn host_view(dir: &Path, pres: Presentation) -> View {
        let mounts = vec![ViewMount {
            id: 0,
            point: "/".into(),
            kind: ViewKind::Host {
                dir: dir.to_owned(),
            },
        }];
        View::new(Vec::new(), mounts, "/", pres).unwrap()
    }

    #[test]
    fn uid_and_gid_options_leave_host_files_to_their_owners() {
        let tmp = tempfile::tempdir().unwrap();
        let secret = tmp.path().join("shadow");
        fs::write(&secret, b"root:x").unwrap();
        fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let md = fs::symlink_metadata(&secret).unwrap();
        let view = host_view(
            tmp.path(),
            Presentation {
                uid: Some(md.uid() + 4242),
                gid: Some(md.gid() + 4242),
                ..Presentation::default()
            },
        );
        let (_, a) = view.lookup_in(1, "/", OsStr::new("shadow")).unwrap();
        assert_eq!((a.uid, a.gid), (md.uid(), md.gid()));
        assert_eq!(a.perm, 0o600);
        let root = view.attr(1).unwrap();
        assert_eq!(root.uid, fs::metadata(tmp.path()).unwrap().uid());
    }

    fn names(view: &View, id: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        view.list(id, 0, true, |_, name, _, _, _| {
            out.push(name.as_bytes().to_vec());
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn non_utf8_names_are_listed_and_looked_up_on_host_and_ext_nodes() {
        use std::os::unix::ffi::OsStrExt;
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        fs::create_dir(&tree).unwrap();
        let odd = OsStr::from_bytes(b"caf\xe9-\xff");
        fs::write(tree.join(odd), b"odd").unwrap();
        fs::write(tree.join("plain"), b"plain").unwrap();

        // hostfs: the name used to be dropped from listings.
        let view = host_view(&tree, Presentation::default());
        assert!(
            names(&view, 1)
                .iter()
                .any(|n| n.as_slice() == odd.as_bytes())
        );
        let (id, a) = view.lookup_in(1, "/", odd).unwrap();
        assert_eq!(a.size, 3);
        assert_eq!(view.read(id, 0, 100).unwrap(), b"odd");

        // ext: listed, but a lookup gave ENOENT.
        let img = tmp.path().join("fs.img");
        let st = std::process::Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-d"])
            .arg(&tree)
            .arg(&img)
            .arg("8M")
            .status()
            .unwrap();
        assert!(st.success());
        let src: Image = Arc::new(fs::File::open(&img).unwrap());
        let disk = Disk::new(
            "t".into(),
            Vec::new(),
            src.clone(),
            Filesystem::open(src).unwrap(),
        );
        let mounts = vec![ViewMount {
            id: 0,
            point: "/".into(),
            kind: ViewKind::Ext {
                disk: 0,
                root_ino: crate::ext::ROOT_INO,
            },
        }];
        let view = View::new(vec![disk], mounts, "/", Presentation::default()).unwrap();
        assert!(
            names(&view, 1)
                .iter()
                .any(|n| n.as_slice() == odd.as_bytes())
        );
        let (id, _) = view.lookup_in(1, "/", odd).unwrap();
        assert_eq!(view.read(id, 0, 100).unwrap(), b"odd");
    }

    #[test]
    fn a_host_directory_swapped_for_a_symlink_after_lookup_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(root.join("dir")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("dir/file"), b"inside").unwrap();
        fs::write(outside.join("file"), b"SECRET").unwrap();
        let view = host_view(&root, Presentation::default());
        let (dir, _) = view.lookup_in(1, "/", OsStr::new("dir")).unwrap();
        let (file, _) = view.lookup_in(dir, "/dir", OsStr::new("file")).unwrap();
        assert_eq!(view.read(file, 0, 100).unwrap(), b"inside");

        fs::rename(root.join("dir"), root.join("dir.old")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("dir")).unwrap();
        let read = view.read(file, 0, 100);
        assert!(read.is_err(), "read through the swapped symlink: {read:?}");
        assert!(view.attr(file).is_err());
        let mut listed = Vec::new();
        let _ = view.list(dir, 0, false, |_, n, _, _, _| {
            listed.push(n.to_owned());
            true
        });
        assert!(listed.len() <= 2, "listed the symlink's target: {listed:?}");
        // A symlink is shown as itself, its target read with readlink.
        let (link, a) = view.lookup_in(1, "/", OsStr::new("dir")).unwrap();
        assert_eq!(a.kind, FileType::Symlink);
        assert_eq!(view.readlink(link).unwrap(), outside.as_os_str().as_bytes());
    }

    /// Every chunk of a host directory's listing re-read and sorted the whole directory
    /// (quadratic in its size); now the first chunk's names serve the rest.
    #[test]
    fn a_host_directory_listed_in_chunks_is_read_once_and_lists_every_name_once() {
        let tmp = tempfile::tempdir().unwrap();
        let mut want: Vec<String> = (0..3000).map(|i| format!("f{i:05}")).collect();
        for n in &want {
            fs::write(tmp.path().join(n), b"").unwrap();
        }
        let view = host_view(tmp.path(), Presentation::default());
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let mut n = 0;
            view.list(1, offset, false, |next, name, _, _, _| {
                if n == 100 {
                    return false;
                }
                n += 1;
                seen.push(name.to_string_lossy().into_owned());
                offset = next;
                true
            })
            .unwrap();
            if n == 0 {
                break;
            }
            // Created mid-listing: the listing goes on from the names it read at its start.
            fs::write(tmp.path().join("a-late-file"), b"").unwrap();
        }
        let mut all = vec![".".to_owned(), "..".to_owned()];
        all.append(&mut want);
        assert_eq!(seen, all);
        // A new listing (offset 0) reads the directory again.
        assert!(names(&view, 1).iter().any(|n| n == b"a-late-file"));
    }

    /// Entries and attributes live as long as a generation; a new one forgets what changed
    /// from what the kernel was told: the changed nodes, and the names in a changed
    /// directory that now lead elsewhere (here: one unlinked while another stays).
    #[test]
    fn a_new_generation_forgets_changed_nodes_and_names_that_lead_elsewhere() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("gone.txt"), b"gone").unwrap();
        fs::write(src.join("stays.txt"), b"stays").unwrap();
        let img = tmp.path().join("fs.img");
        let run = |args: &[&str]| {
            let st = std::process::Command::new(args[0])
                .args(&args[1..])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "{args:?}");
        };
        let (src_s, img_s) = (src.to_str().unwrap(), img.to_str().unwrap());
        run(&["mke2fs", "-q", "-F", "-t", "ext4", "-d", src_s, img_s, "8M"]);
        let src_img: Image = Arc::new(fs::File::open(&img).unwrap());
        let disk = Disk::new(
            "t".into(),
            Vec::new(),
            src_img.clone(),
            Filesystem::open(src_img).unwrap(),
        );
        let mounts = vec![ViewMount {
            id: 0,
            point: "/".into(),
            kind: ViewKind::Ext {
                disk: 0,
                root_ino: crate::ext::ROOT_INO,
            },
        }];
        let view = View::new(vec![disk], mounts, "/", Presentation::default()).unwrap();
        view.attr(1).unwrap();
        let (gone, _) = view.lookup_in(1, "/", OsStr::new("gone.txt")).unwrap();
        let (stays, _) = view.lookup_in(1, "/", OsStr::new("stays.txt")).unwrap();
        assert!(view.lasts_a_generation(gone));
        // Nothing changed: nothing to forget.
        assert_eq!(view.refresh_disk(0).unwrap(), Forget::default());
        // As a guest kernel would: the name goes, the directory's times change.
        run(&["debugfs", "-w", "-R", "unlink gone.txt", img_s]);
        run(&["debugfs", "-w", "-R", "sif / mtime 20300101000000", img_s]);
        let forget = view.refresh_disk(0).unwrap();
        assert_eq!(forget.entries, vec![(1, OsString::from("gone.txt"))]);
        assert!(forget.nodes.contains(&1), "{forget:?}");
        assert!(!forget.nodes.contains(&stays), "{forget:?}");
        assert!(view.lookup_in(1, "/", OsStr::new("gone.txt")).is_err());
        // Told once: the next comparison finds nothing new.
        view.attr(1).unwrap();
        assert_eq!(view.recheck_disk(0), Forget::default());
    }

    /// The guest mounts something on a directory the kernel has seen, then unmounts it: the
    /// view shows the mount, and says which entry and listing the kernel must forget.
    #[test]
    fn a_mount_coming_and_going_is_shown_and_its_entry_forgotten() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("a")).unwrap();
        fs::write(tmp.path().join("a/host-file"), b"x").unwrap();
        let root = ViewMount {
            id: 1,
            point: "/".into(),
            kind: ViewKind::Host {
                dir: tmp.path().to_owned(),
            },
        };
        let mut view =
            View::new(Vec::new(), vec![root.clone()], "/", Presentation::default()).unwrap();
        view.follow();
        let listing = |view: &View| {
            let (a, _) = view.lookup_in(1, "/", OsStr::new("a")).unwrap();
            let n = names(view, a);
            view.unref(a, 1);
            n
        };
        assert_eq!(listing(&view).len(), 3);
        let (a, _) = view.lookup_in(1, "/", OsStr::new("a")).unwrap();
        let tmpfs = ViewMount {
            id: 7,
            point: "/a".into(),
            kind: ViewKind::Opaque {
                what: "a tmpfs mount".into(),
            },
        };
        let forget = view.apply_mounts(vec![root.clone(), tmpfs.clone()]);
        assert_eq!(forget.entries, vec![(1, OsString::from("a"))]);
        assert_eq!(forget.nodes, vec![1]);
        let (b, attr) = view.lookup_in(1, "/", OsStr::new("a")).unwrap();
        assert_ne!(a, b, "the mount is a new node");
        assert_eq!(attr.kind, FileType::Directory);
        assert_eq!(listing(&view), vec![b".".to_vec(), b"..".to_vec()]);
        assert_eq!(
            view.opaque_mounts(),
            vec![("/a".to_owned(), "a tmpfs mount".to_owned())]
        );
        // The same table again changes nothing.
        assert_eq!(
            view.apply_mounts(vec![root.clone(), tmpfs]),
            Forget::default()
        );
        // Unmounted: the host directory shows again.
        let forget = view.apply_mounts(vec![root]);
        assert_eq!(forget.entries, vec![(1, OsString::from("a"))]);
        assert_eq!(listing(&view).len(), 3);
        assert!(view.opaque_mounts().is_empty());
    }

    #[test]
    fn a_top_on_no_disk_with_nothing_below_is_refused_saying_what_it_is() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("var")).unwrap();
        let mounts = vec![
            ViewMount {
                id: 1,
                point: "/".into(),
                kind: ViewKind::Host {
                    dir: tmp.path().to_owned(),
                },
            },
            ViewMount {
                id: 2,
                point: "/var/log".into(),
                kind: ViewKind::Opaque {
                    what: "a tmpfs mount".into(),
                },
            },
        ];
        let e = View::new(
            Vec::new(),
            mounts.clone(),
            "/var/log",
            Presentation::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"/var/log\" is on a tmpfs mount, not on a disk: the host cannot see its files \
             (umlfs shows ubd disks and hostfs directories)"
        );
        // Its parent is shown, with the tmpfs as an empty directory.
        let view = View::new(Vec::new(), mounts, "/var", Presentation::default()).unwrap();
        assert_eq!(view.opaque_mounts().len(), 1);
    }

    #[test]
    fn tables_hold_only_what_the_kernel_references() {
        let tmp = tempfile::tempdir().unwrap();
        for d in 0..20 {
            let dir = tmp.path().join(format!("d{d}"));
            fs::create_dir(&dir).unwrap();
            for f in 0..50 {
                fs::write(dir.join(format!("f{f}")), b"x").unwrap();
            }
        }
        let view = host_view(tmp.path(), Presentation::default());
        let base = view.table_len();
        for round in 0..3 {
            // A READDIR (no references) and a lookup of every name (one each), then the
            // kernel forgets them all, as after `find` and a cache drop.
            let mut taken = Vec::new();
            for d in 0..20 {
                let (dir, _) = view
                    .lookup_in(1, "/", OsStr::new(&format!("d{d}")))
                    .unwrap();
                let mut n = 0;
                view.list(dir, 0, false, |_, _, _, _, _| {
                    n += 1;
                    true
                })
                .unwrap();
                assert_eq!(n, 52);
                for f in 0..50 {
                    let (id, _) = view
                        .lookup_in(dir, "/", OsStr::new(&format!("f{f}")))
                        .unwrap();
                    taken.push(id);
                }
                taken.push(dir);
            }
            assert!(view.table_len() > base + 1000, "round {round}");
            for id in taken {
                view.unref(id, 1);
            }
            assert_eq!(view.table_len(), base, "round {round}");
        }
        // The root survives any number of forgets.
        view.unref(1, 100);
        assert!(view.attr(1).is_ok());
    }
}
