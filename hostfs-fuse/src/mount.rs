//! From a SOURCE to a ready [`View`]: find the guest, read its mount table and disks, open
//! every image read-only (before the FUSE session exists, so no handler ever resolves a path
//! lazily), and keep the view fresh afterwards.
//!
//! Images are opened `O_RDONLY` and never locked; `F_GETLK` is used only to tell the user that
//! a running guest holds the image.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use uml::cow::CowReader;
use uml::instance::{self, InstanceError};
use uml::mconsole;

use crate::ext::{ExtError, Filesystem};
use crate::options::MountOptions;
use crate::source::{self, MountKind, Source};
use crate::view::{Disk, Image, Presentation, View, ViewError, ViewKind, ViewMount};

/// Why a mount could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error("asking guest \"{umid}\" for {what} failed")]
    Mconsole {
        umid: String,
        what: String,
        #[source]
        source: mconsole::Error,
    },
    #[error("cannot open image {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{disk} is not a filesystem umlfs can read")]
    Ext {
        disk: String,
        #[source]
        source: ExtError,
    },
    #[error("{path} is {kind}, not an image: umlfs reads regular files and block devices only")]
    NotAnImage { path: PathBuf, kind: &'static str },
    #[error("cannot read COW file {path}: {reason}")]
    Cow { path: PathBuf, reason: String },
    #[error("guest \"{umid}\" has no disk ubd{unit} configured")]
    NoDisk { umid: String, unit: u32 },
    #[error(
        "image {image} lies inside the mount point {mountpoint}: serving it would read through the mount itself"
    )]
    ImageInsideMount { image: PathBuf, mountpoint: PathBuf },
    #[error(transparent)]
    View(#[from] ViewError),
}

/// A view ready to be mounted, and what to tell the user.
#[derive(Debug)]
pub struct Prepared {
    pub view: View,
    /// The source column of /proc/mounts.
    pub fsname: String,
    /// One-line notes for stderr (a guest holding the image, snapshot pause time, ...).
    pub notes: Vec<String>,
    /// Whether the view is frozen (snapshot): no freshness thread.
    pub frozen: bool,
    /// For a running guest's tree: what following its mount table needs.
    pub follow: Option<Follow>,
    /// Serve every request through `/dev/fuse`, even where the kernel offers its per-CPU
    /// io_uring queues (`-o nouring`).
    pub nouring: bool,
    /// Answer /dev/fuse requests from any CPU (`-o anycpu`), never from the caller's.
    pub anycpu: bool,
}

/// What the thread following a guest's mount table needs ([`spawn_follower`]).
#[derive(Debug)]
pub struct Follow {
    umid: String,
    uml_dir: PathBuf,
    /// The view's disk index of each ubd unit opened so far.
    units: HashMap<u32, usize>,
    /// The mount table the view shows.
    mountinfo: String,
    /// The view's mount point (canonical): an image under it is never opened.
    mountpoint: PathBuf,
}

/// The pid holding a lock on `file`, if any ([`uml::cow::holder`], `F_GETLK` only: nothing
/// is locked). Asked through our descriptor's /proc link, so it is the file we opened.
fn lock_holder(file: &File) -> Option<i32> {
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    uml::cow::holder(&by_fd).ok().flatten().map(|h| h.pid)
}

/// A COW file read through to its backing file (the bitmap is read afresh on every read,
/// so a running guest's new sectors are seen).
impl crate::ext::BlockSource for CowReader {
    fn read_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
        CowReader::read_at(self, buf, off)
    }

    fn len(&self) -> u64 {
        self.size()
    }
}

/// The message of an error and all its sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// What kind of file `ft` is, for messages.
fn kind_of(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else {
        "not a regular file"
    }
}

/// Open `path` read-only without ever blocking (`O_NONBLOCK`: a FIFO would wait for a writer
/// forever) and refuse anything that is not a regular file or a block device. The type is
/// checked on the open descriptor, so a file swapped in after the check is never read.
fn open_image_file(path: &Path) -> Result<File, MountError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let open_err = |source| MountError::Open {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(open_err)?;
    let ft = file.metadata().map_err(open_err)?.file_type();
    if !(ft.is_file() || ft.is_block_device()) {
        return Err(MountError::NotAnImage {
            path: path.to_owned(),
            kind: kind_of(ft),
        });
    }
    Ok(file)
}

/// Open one image read-only as a block source: a raw image, or a COW file (v1, v2, v3) read
/// through to its backing file (`backing` overrides the header's, as the kernel's
/// `ubdN=cow,backing` does). Returns the source, the image file (for `F_GETLK`) and the
/// files whose changes make a new generation.
fn open_image(
    path: &Path,
    backing: Option<&Path>,
) -> Result<(Image, File, Vec<PathBuf>), MountError> {
    let file = open_image_file(path)?;
    // Whether it is a COW file is the kernel's autodetection, which `uml::cow` implements. It
    // reads through our descriptor (the file checked above), not the path.
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    let cow = uml::cow::CowFile::open(&by_fd).map_err(|e| MountError::Cow {
        path: path.to_owned(),
        reason: chain(&e),
    })?;
    if let Some(cow) = cow {
        // The backing file must be an image too (a FIFO there would hang the open below).
        open_image_file(backing.unwrap_or_else(|| cow.backing_path()))?;
        let reader = CowReader::open(path, backing).map_err(|e| MountError::Cow {
            path: path.to_owned(),
            reason: chain(&e),
        })?;
        let watch = vec![absolute(path), absolute(reader.backing_path())];
        return Ok((Arc::new(reader), file, watch));
    }
    let dup = file.try_clone().map_err(|source| MountError::Open {
        path: path.to_owned(),
        source,
    })?;
    Ok((Arc::new(file), dup, vec![absolute(path)]))
}

/// `path` made absolute, so it still names the file after the daemon leaves its cwd.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Open one disk; `report_lock` (the uml_dir to name a holder from) asks for a note when a
/// running guest holds the image.
fn open_disk(
    name: String,
    path: &Path,
    backing: Option<&Path>,
    report_lock: Option<&Path>,
    notes: &mut Vec<String>,
) -> Result<Disk, MountError> {
    let (src, file, watch) = open_image(path, backing)?;
    if let Some(uml_dir) = report_lock
        && let Some(pid) = lock_holder(&file)
    {
        let umid = instance::umid_of_pid(uml_dir, pid as u32);
        notes.push(match umid {
            Some(u) => format!(
                "{} is in use by pid {pid}, umid {u}: showing its committed state read-only",
                path.display()
            ),
            None => format!(
                "{} is in use by pid {pid}: showing its committed state read-only",
                path.display()
            ),
        });
    }
    let fs = Filesystem::open(src.clone()).map_err(|source| MountError::Ext {
        disk: name.clone(),
        source,
    })?;
    Ok(Disk::new(name, watch, src, fs))
}

/// Prepare the view of `source` for mounting at `mountpoint`.
///
/// # Errors
/// [`MountError`]: no such guest or image, a disk that is not ext2/3/4 (the feature is
/// named), a path missing in the guest's tree, an image inside the mount point.
pub fn prepare(
    source: &Source,
    opts: &MountOptions,
    mountpoint: &Path,
) -> Result<Prepared, MountError> {
    let mut notes = Vec::new();
    let mut pres = Presentation {
        uid: opts.uid,
        gid: opts.gid,
        umask: opts.umask.unwrap_or(0),
        ttl: Duration::from_secs(1),
        // The kernel enforces the guest's modes and ACLs once POSIX ACLs are declared: that
        // changes nothing for root (or where default_permissions was asked for), but would
        // stop a non-root user from reading files the mount used to show them.
        posix_acl: !opts.noxattr
            && (opts.default_permissions || opts.allow_other || nix::unistd::geteuid().is_root()),
        no_xattr: opts.noxattr,
    };

    if opts.snapshot {
        pres.ttl = Duration::from_secs(3600);
    }
    let mut follow = None;
    let (disks, mounts, top, fsname) = match source {
        Source::Image { image, path } => {
            let uml_dir = instance::uml_dir_or_default(opts.uml_dir.as_deref()).ok();
            let disk = open_disk(
                image.display().to_string(),
                image,
                None,
                Some(uml_dir.as_deref().unwrap_or(Path::new("/nonexistent"))),
                &mut notes,
            )?;
            let mounts = vec![ViewMount {
                id: 0,
                point: "/".into(),
                kind: ViewKind::Ext {
                    disk: 0,
                    root_ino: crate::ext::ROOT_INO,
                },
            }];
            let fsname = format!("{}:{path}", absolute(image).display());
            (vec![disk], mounts, path.clone(), fsname)
        }
        Source::Guest { umid, disk, path } => {
            let uml_dir = instance::uml_dir_or_default(opts.uml_dir.as_deref())?;
            let inst = instance::find_running(&uml_dir, umid)?;
            let client = inst.client(Duration::from_secs(5))?;
            let ask = |what: &str, r: Result<String, mconsole::Error>| {
                r.map_err(|source| MountError::Mconsole {
                    umid: umid.clone(),
                    what: what.to_owned(),
                    source,
                })
            };
            let mut table = String::new();
            let (guest_mounts, units): (Vec<source::GuestMount>, Vec<u32>) = match disk {
                Some(unit) => (
                    vec![source::GuestMount {
                        id: 0,
                        point: "/".into(),
                        kind: MountKind::Ubd {
                            unit: *unit,
                            root: "/".into(),
                        },
                    }],
                    vec![*unit],
                ),
                None => {
                    let text = ask("its mount table", client.proc_file("1/mountinfo"))?;
                    let gm = source::guest_mounts(&source::parse_mountinfo(&text));
                    table = text;
                    // The mount table arrives as text: bytes that are not UTF-8 are lost on
                    // the way (U+FFFD), so such a mount cannot be placed where it is.
                    for m in &gm {
                        let host = match &m.kind {
                            MountKind::Host { dir } => dir.to_string_lossy().contains('\u{fffd}'),
                            MountKind::Ubd { root, .. } => root.contains('\u{fffd}'),
                            MountKind::Opaque { .. } => false,
                        };
                        if m.point.contains('\u{fffd}') || host {
                            notes.push(format!(
                                "guest mount at \"{}\" has a path that is not UTF-8: it may be shown \
                                 as the directory it covers",
                                m.point
                            ));
                        }
                    }
                    let mut units: Vec<u32> = gm
                        .iter()
                        .filter_map(|m| match m.kind {
                            MountKind::Ubd { unit, .. } => Some(unit),
                            _ => None,
                        })
                        .collect();
                    units.sort_unstable();
                    units.dedup();
                    (gm, units)
                }
            };
            let mut backings: Vec<(u32, uml::ubd::Backing)> = Vec::new();
            for unit in &units {
                let reply = ask(
                    &format!("the file of ubd{unit}"),
                    client.config_get(&uml::ubd::name(*unit)),
                )?;
                let b = uml::ubd::parse_config(&reply).ok_or(MountError::NoDisk {
                    umid: umid.clone(),
                    unit: *unit,
                })?;
                backings.push((*unit, b));
            }
            let pause = if opts.snapshot {
                // Emergency sync is queued work (drivers/tty/sysrq.c): give it a moment
                // before freezing the guest.
                let _ = ask("an emergency sync", client.sysrq('s'));
                thread::sleep(Duration::from_millis(300));
                ask("to stop", client.stop().map(|()| String::new()))?;
                Some(Instant::now())
            } else {
                None
            };
            let opened = (|| {
                let mut disks = Vec::new();
                let mut index = std::collections::HashMap::new();
                for (unit, b) in &backings {
                    let name = format!("ubd{unit} ({})", b.file.display());
                    let d = open_disk(name, &b.file, b.backing.as_deref(), None, &mut notes)?;
                    index.insert(*unit, disks.len());
                    disks.push(d);
                }
                Ok::<_, MountError>((disks, index))
            })();
            if let Some(at) = pause {
                let resumed = client.go();
                let paused = at.elapsed();
                notes.push(format!(
                    "snapshot of guest \"{umid}\": the guest was paused for {} ms",
                    paused.as_millis()
                ));
                if let Err(e) = resumed {
                    notes.push(format!("resuming guest \"{umid}\" failed: {e}"));
                }
            }
            let (disks, index) = opened?;
            let mounts = view_mounts(guest_mounts, &index, |d| disks[d].fs())?;
            if disk.is_none() && !opts.snapshot {
                follow = Some(Follow {
                    umid: umid.clone(),
                    uml_dir: uml_dir.clone(),
                    units: index,
                    mountinfo: table,
                    mountpoint: PathBuf::new(),
                });
            }
            let fsname = match disk {
                Some(u) => format!("{umid}:ubd{u}:{path}"),
                None => format!("{umid}:{path}"),
            };
            (disks, mounts, path.clone(), fsname)
        }
    };
    let canon_mp = mountpoint
        .canonicalize()
        .unwrap_or_else(|_| mountpoint.to_owned());
    for d in &disks {
        for w in &d.watch {
            let c = w.canonicalize().unwrap_or_else(|_| w.clone());
            if c.starts_with(&canon_mp) {
                return Err(MountError::ImageInsideMount {
                    image: c,
                    mountpoint: canon_mp,
                });
            }
        }
    }
    let mut view = View::new(disks, mounts, &top, pres)?;
    view.set_own_mountpoint(canon_mp.clone());
    if let Some(f) = &mut follow {
        f.mountpoint = canon_mp;
        view.follow();
    }
    if let (Some(ViewKind::Host { dir }), Source::Guest { .. }) = (view.top_kind(), source) {
        notes.push(format!(
            "\"{top}\" is on a hostfs mount of the host's {}: its files are shown read-only from the host",
            dir.display()
        ));
    }
    let opaque = view.opaque_mounts();
    if !opaque.is_empty() {
        let mut list: Vec<String> = opaque
            .iter()
            .take(8)
            .map(|(p, what)| format!("{p} ({what})"))
            .collect();
        if opaque.len() > 8 {
            list.push(format!("and {} more", opaque.len() - 8));
        }
        notes.push(format!(
            "not on a disk, shown as empty directories: {}",
            list.join(", ")
        ));
    }
    Ok(Prepared {
        view,
        fsname: opts.fsname.clone().unwrap_or(fsname),
        notes,
        frozen: opts.snapshot,
        follow,
        nouring: opts.nouring,
        anycpu: opts.anycpu,
    })
}

/// The view's mounts for the guest's mount table `table`: each ubd mount on the disk that
/// `units` names (a unit not opened is left out), hostfs and opaque mounts as they are.
///
/// # Errors
/// [`ViewError::NoSuchPath`] when a bind mount's directory is not on its disk.
fn view_mounts(
    table: Vec<source::GuestMount>,
    units: &HashMap<u32, usize>,
    fs_of: impl Fn(usize) -> Arc<crate::view::ExtFs>,
) -> Result<Vec<ViewMount>, ViewError> {
    let mut mounts = Vec::new();
    for m in table {
        let kind = match m.kind {
            MountKind::Ubd { unit, root } => {
                let Some(&d) = units.get(&unit) else {
                    continue;
                };
                let root_ino =
                    resolve_dir(&*fs_of(d), &root).ok_or_else(|| ViewError::NoSuchPath {
                        path: format!("{root} on ubd{unit}"),
                    })?;
                ViewKind::Ext { disk: d, root_ino }
            }
            MountKind::Host { dir } => ViewKind::Host { dir },
            MountKind::Opaque { what } => ViewKind::Opaque { what },
        };
        mounts.push(ViewMount {
            id: m.id,
            point: m.point,
            kind,
        });
    }
    Ok(mounts)
}

/// How often the guest's mount table is read.
const FOLLOW_EVERY: Duration = Duration::from_millis(400);

/// Follow the guest's mount table: read it every 400 ms over mconsole, open the disks of new
/// mounts, show new mounts and hide gone ones, and make the kernel forget what changed. Ends
/// when the guest is gone (the view keeps what it showed last).
pub fn spawn_follower(
    view: Arc<View>,
    mut follow: Follow,
    notifier: fuser::Notifier,
) -> std::io::Result<()> {
    thread::Builder::new()
        .name("umlfs-follow".into())
        .spawn(move || {
            let mut client = None;
            loop {
                thread::sleep(FOLLOW_EVERY);
                if client.is_none() {
                    match instance::find_running(&follow.uml_dir, &follow.umid) {
                        Ok(inst) => client = inst.client(Duration::from_secs(2)).ok(),
                        Err(e) => {
                            tracing::info!("no longer following the guest's mounts: {e}");
                            return;
                        }
                    }
                }
                let Some(c) = &client else { continue };
                let text = match c.proc_file("1/mountinfo") {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::debug!("reading the guest's mount table failed: {e}");
                        client = None;
                        continue;
                    }
                };
                if text == follow.mountinfo {
                    continue;
                }
                let table = source::guest_mounts(&source::parse_mountinfo(&text));
                for m in &table {
                    if let MountKind::Ubd { unit, .. } = m.kind
                        && !follow.units.contains_key(&unit)
                    {
                        match open_guest_disk(c, &follow.umid, unit, &follow.mountpoint) {
                            Ok(disk) => {
                                let d = view.add_disk(disk);
                                follow.units.insert(unit, d);
                            }
                            Err(e) => tracing::warn!("ubd{unit} is not shown: {e}"),
                        }
                    }
                }
                let disks = view.disks();
                let mounts = match view_mounts(table, &follow.units, |d| disks[d].fs()) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("the guest's new mount table is not shown: {e}");
                        follow.mountinfo = text;
                        continue;
                    }
                };
                let forget = view.apply_mounts(mounts);
                tracing::debug!(?forget, "the guest's mount table changed");
                for (parent, name) in &forget.entries {
                    let _ = notifier.inval_entry(fuser::INodeNo(*parent), name);
                }
                for id in forget.nodes {
                    let _ = notifier.inval_inode(fuser::INodeNo(id), 0, 0);
                }
                follow.mountinfo = text;
            }
        })?;
    Ok(())
}

/// Open ubd `unit` of a running guest (its file from `config ubdN`), unless it lies under
/// the view's own mount point.
fn open_guest_disk(
    client: &mconsole::Client,
    umid: &str,
    unit: u32,
    mountpoint: &Path,
) -> Result<Disk, MountError> {
    let reply =
        client
            .config_get(&uml::ubd::name(unit))
            .map_err(|source| MountError::Mconsole {
                umid: umid.to_owned(),
                what: format!("the file of ubd{unit}"),
                source,
            })?;
    let b = uml::ubd::parse_config(&reply).ok_or(MountError::NoDisk {
        umid: umid.to_owned(),
        unit,
    })?;
    for f in [Some(&b.file), b.backing.as_ref()].into_iter().flatten() {
        let c = f.canonicalize().unwrap_or_else(|_| f.clone());
        if c.starts_with(mountpoint) {
            return Err(MountError::ImageInsideMount {
                image: c,
                mountpoint: mountpoint.to_owned(),
            });
        }
    }
    let name = format!("ubd{unit} ({})", b.file.display());
    open_disk(name, &b.file, b.backing.as_deref(), None, &mut Vec::new())
}

/// The inode of directory `path` inside `fs` (for bind mounts of a subdirectory).
fn resolve_dir<S: crate::ext::BlockSource>(fs: &Filesystem<S>, path: &str) -> Option<u64> {
    let mut ino = fs.root();
    for c in path.split('/').filter(|c| !c.is_empty()).take(4096) {
        ino = fs.lookup(ino, c.as_bytes()).ok()??;
    }
    Some(ino)
}

/// (mtime in ns, size) of a watched file.
fn stamp(path: &Path) -> Option<(i64, u64)> {
    let md = std::fs::metadata(path).ok()?;
    Some((md.mtime() * 1_000_000_000 + md.mtime_nsec(), md.size()))
}

/// Keep the view fresh: when a disk's image changes (inotify, with a once-a-second check of
/// mtime and size as a fallback), open a new generation and make the kernel forget what
/// changed. Runs until the process exits.
pub fn spawn_freshness(view: Arc<View>, notifier: fuser::Notifier) -> std::io::Result<()> {
    use notify::Watcher;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok() {
            let _ = tx.send(());
        }
    })
    .map_err(std::io::Error::other)?;
    thread::Builder::new()
        .name("umlfs-fresh".into())
        .spawn(move || {
            // Per disk: the watched file's (mtime, size) when its generation was opened.
            let mut seen: Vec<Option<(i64, u64)>> = Vec::new();
            loop {
                // Disks the guest mounted since the last round are watched from now on.
                let disks = view.disks();
                for d in &disks[seen.len()..] {
                    for w in &d.watch {
                        if let Err(e) = watcher.watch(w, notify::RecursiveMode::NonRecursive) {
                            tracing::warn!("cannot watch {}: {e}", w.display());
                        }
                    }
                    seen.push(d.watch.first().and_then(|w| stamp(w)));
                }
                if rx.recv_timeout(Duration::from_secs(1)).is_ok() {
                    // Let a burst of writes settle, then take them as one generation.
                    thread::sleep(Duration::from_millis(50));
                    while rx.try_recv().is_ok() {}
                }
                let tell = |forget: crate::view::Forget| {
                    for (parent, name) in &forget.entries {
                        let _ = notifier.inval_entry(fuser::INodeNo(*parent), name);
                    }
                    for id in forget.nodes {
                        let _ = notifier.inval_inode(fuser::INodeNo(id), 0, 0);
                    }
                };
                let mut refreshed = Vec::new();
                for (i, d) in disks.iter().enumerate() {
                    let now = d.watch.first().and_then(|w| stamp(w));
                    if now == seen[i] {
                        continue;
                    }
                    match view.refresh_disk(i) {
                        Ok(forget) => {
                            seen[i] = now;
                            tracing::debug!(disk = %d.name, changed = forget.nodes.len(), "new generation");
                            tell(forget);
                            refreshed.push(i);
                        }
                        Err(e) => {
                            // Torn by a concurrent write: keep the old generation, retry.
                            tracing::debug!(disk = %d.name, "re-open failed, retrying: {e}");
                        }
                    }
                }
                if !refreshed.is_empty() {
                    // Requests already running on the previous generation may have told the
                    // kernel its attributes after the comparison: compare once more.
                    thread::sleep(Duration::from_millis(100));
                    for i in refreshed {
                        tell(view.recheck_disk(i));
                    }
                }
            }
        })?;
    Ok(())
}

/// Raise the readahead of the FUSE mount at `mountpoint` to 1 MiB so buffered reads arrive
/// as 1 MiB requests (the bdi is per mount: `/sys/class/bdi/0:<minor>`). Best effort.
pub fn raise_readahead(mountpoint: &Path) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let point = mountpoint
        .canonicalize()
        .unwrap_or_else(|_| mountpoint.to_owned());
    let Some(m) = source::parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|m| m.point == point.to_string_lossy() && m.fstype.starts_with("fuse"))
    else {
        return;
    };
    let p = format!("/sys/class/bdi/{}:{}/read_ahead_kb", m.major, m.minor);
    if let Err(e) = std::fs::write(&p, "1024") {
        tracing::debug!("cannot raise readahead ({p}): {e}");
    }
}
