//! The hostfs passthrough: host directories shown read-only, opened beneath their mount's
//! directory descriptor, never through a FUSE mount point.

use super::*;

/// Largest directory the hostfs passthrough lists.
pub(super) const HOST_DIR_LIMIT: usize = 1 << 20;
/// How long the names of a host directory read for a listing's first chunk serve its later
/// chunks, and how many such listings are kept.
pub(super) const HOST_LIST_KEEP: Duration = Duration::from_secs(5);
pub(super) const HOST_LISTS: usize = 8;

/// The kind of a host file.
pub(super) fn kind_of(ft: fs::FileType) -> FileType {
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

pub(super) type HostList = (u64, Instant, Arc<Vec<OsString>>);

impl View {
    pub(super) fn host_attr(&self, id: u64, md: &fs::Metadata) -> Attr {
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
            generation: 0,
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
    pub(super) fn is_fuse_point(&self, path: &Path) -> bool {
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
    pub(super) fn host_open(&self, mount: usize, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
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

    pub(super) fn host_lstat(&self, mount: usize, path: &Path) -> io::Result<fs::Metadata> {
        if self.is_fuse_point(path) {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        // O_PATH | O_NOFOLLOW opens a trailing symlink itself (openat2(2)), to stat it.
        let fd = self.host_open(mount, path, OFlag::O_PATH | OFlag::O_NOFOLLOW)?;
        fs::File::from(fd).metadata()
    }

    /// The sorted names of host directory `path` (node `id`). A listing that continues
    /// (offset > 0) reuses the names read for its first chunk, so listing a directory reads
    /// and sorts it once, not once per chunk.
    pub(super) fn host_names(
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
}
