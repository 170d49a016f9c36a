//! COW (copy-on-write) disk files of the kernel's ubd driver: read their header, create them,
//! merge them into a new image or into their backing file, and point them at a moved backing
//! file.
//!
//! Guarantees:
//! - Headers of versions 1, 2, 3 and the broken 64-bit version 3 are read ([`header`]); new
//!   files are written as version 3, byte for byte like the kernel and `uml_mkcow`.
//! - Every size, offset and path from a file is checked before use: a damaged file gives a
//!   [`CowError`], never a panic or an allocation sized by the file.
//! - A backing file is used only if its size and mtime pass the kernel's own check
//!   ([`CowFile::check_backing`], with the kernel's messages).
//! - Every file is opened non-blocking and checked on the opened descriptor to be a regular
//!   file or a block device ([`open_disk`]): a FIFO or a device named by a header gives an
//!   error, never a hang.
//! - Nothing here takes a lock. A file that a running guest holds (seen with `F_GETLK`) is not
//!   written, and the error names the guest's pid and umid ([`ensure_not_held`]).
//! - [`merge_to`] writes a temporary file next to its target and renames it when complete;
//!   the image gets the permission bits both inputs have from the start, so a merge never
//!   gives readers more than the inputs did, and a symlink at the target is replaced, not
//!   followed. [`merge_in_place`] leaves the COW file untouched and records its progress in a
//!   marker file, so a merge that was killed is completed by running it again.

pub mod header;
mod merge;
mod reader;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use header::{CowVersion, HeaderError};
pub use merge::{MergeStats, interrupted_merge, merge_in_place, merge_to};
pub use reader::CowReader;

use header::Header;

/// The sector size of the bitmap and of the data area.
pub const SECTOR: u64 = header::SECTOR_SIZE as u64;

/// Things that go wrong with COW files.
#[derive(Debug, Error)]
pub enum CowError {
    #[error("cannot open {}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} has a damaged COW header", .path.display())]
    Header {
        path: PathBuf,
        #[source]
        source: HeaderError,
    },
    #[error(
        "{} is not a COW file (no COW magic number; the kernel would use it as a raw disk)",
        .path.display()
    )]
    NotCow { path: PathBuf },
    #[error(
        "{} is {len} bytes long, but its header needs {need} bytes for the bitmap and the data \
         of the whole disk: the file is truncated",
        .path.display()
    )]
    Truncated { path: PathBuf, len: u64, need: u64 },
    #[error("cannot find backing file {}", .path.display())]
    StatBacking {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is {found}, but a disk file must be a regular file or a block device",
        .path.display()
    )]
    FileType { path: PathBuf, found: &'static str },
    /// The kernel's message (`ubd_kern.c`, `backing_file_mismatch`), with the file named.
    #[error(
        "Size mismatch ({header} vs {actual}) of COW header vs backing file \"{}\"",
        .backing.display()
    )]
    SizeMismatch {
        header: u64,
        actual: u64,
        backing: PathBuf,
    },
    /// The kernel's message (`ubd_kern.c`, `backing_file_mismatch`), with the file named.
    #[error(
        "mtime mismatch ({header} vs {actual}) of COW header vs backing file \"{}\"",
        .backing.display()
    )]
    MtimeMismatch {
        header: i64,
        actual: i64,
        backing: PathBuf,
    },
    #[error("{} already exists (refusing to overwrite it unless forced)", .path.display())]
    Exists { path: PathBuf },
    #[error("{} is already used by pid {pid}{}", .path.display(), instance_suffix(.umid))]
    InUse {
        path: PathBuf,
        pid: i32,
        kind: LockKind,
        umid: Option<String>,
    },
    #[error("{} and {} are the same file", .a.display(), .b.display())]
    SameFile { a: PathBuf, b: PathBuf },
    #[error("cannot make an absolute path of {}", .path.display())]
    Absolutize {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot use {} as backing file", .path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: HeaderError,
    },
    #[error(
        "{} records an interrupted in-place merge of another state (it names {}, size {size}, \
         mtime {mtime}); remove it only if you know that merge is finished",
        .marker.display(), .backing.display()
    )]
    MarkerMismatch {
        marker: PathBuf,
        backing: PathBuf,
        size: u64,
        mtime: u32,
    },
}

fn instance_suffix(umid: &Option<String>) -> String {
    match umid {
        Some(u) => format!(" (uml instance \"{u}\")"),
        None => String::new(),
    }
}

/// An open COW file's header, as the kernel reads it.
#[derive(Debug, Clone)]
pub struct CowFile {
    path: PathBuf,
    header: Header,
    len: u64,
}

impl CowFile {
    /// Read the header of `path`. `Ok(None)`: the file has no COW magic (the kernel uses it
    /// as a raw disk).
    ///
    /// # Errors
    /// The file cannot be read, its header is damaged, or it is shorter than the disk its
    /// header describes.
    ///
    /// A character device (`/dev/null`, say) has no header: the kernel uses it as a raw disk.
    /// A FIFO, socket or directory is an error, since the kernel could not use it either.
    pub fn open(path: &Path) -> Result<Option<CowFile>, CowError> {
        use std::os::unix::fs::FileTypeExt;
        let (file, meta) = open_nonblocking(path, false)?;
        if meta.file_type().is_char_device() {
            return Ok(None);
        }
        check_file_type(path, &meta)?;
        Self::from_file(path, &file)
    }

    pub(crate) fn from_file(path: &Path, file: &File) -> Result<Option<CowFile>, CowError> {
        let read_err = |source| CowError::Read {
            path: path.to_owned(),
            source,
        };
        let mut buf = Vec::with_capacity(header::MAX_HEADER_LEN);
        file.take(header::MAX_HEADER_LEN as u64)
            .read_to_end(&mut buf)
            .map_err(read_err)?;
        let Some(header) = header::parse(&buf).map_err(|source| CowError::Header {
            path: path.to_owned(),
            source,
        })?
        else {
            return Ok(None);
        };
        let len = file.metadata().map_err(read_err)?.len();
        let need = header.data_offset() + header.size;
        if len < need {
            return Err(CowError::Truncated {
                path: path.to_owned(),
                len,
                need,
            });
        }
        Ok(Some(CowFile {
            path: path.to_owned(),
            header,
            len,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn version(&self) -> CowVersion {
        self.header.version
    }

    /// The backing file named in the header.
    pub fn backing_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.header.backing))
    }

    /// The disk size in bytes (the backing file's size when the COW file was made).
    pub fn size(&self) -> u64 {
        self.header.size
    }

    /// The backing file's mtime when the COW file was made, truncated to 32 bits.
    pub fn mtime(&self) -> u32 {
        self.header.mtime
    }

    pub fn sector_size(&self) -> u32 {
        self.header.sector_size
    }

    pub fn alignment(&self) -> u32 {
        self.header.alignment
    }

    pub fn bitmap_offset(&self) -> u64 {
        self.header.bitmap_offset()
    }

    pub fn data_offset(&self) -> u64 {
        self.header.data_offset()
    }

    /// Sectors of the disk (its size in 512-byte sectors, rounded up as the kernel does).
    pub fn sectors(&self) -> u64 {
        self.header.sectors()
    }

    /// Length of the COW file when it was opened.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// The kernel's rule for using `backing` with this COW file: its size must equal the
    /// header's and its `st_mtime` must equal the header's 32-bit mtime.
    ///
    /// # Errors
    /// [`CowError::SizeMismatch`] or [`CowError::MtimeMismatch`] with the kernel's message, or
    /// the backing file cannot be examined.
    pub fn check_backing(&self, backing: &Path) -> Result<(), CowError> {
        let file = open_backing(backing, false)?;
        self.check_backing_file(backing, &file)
    }

    /// [`check_backing`](Self::check_backing) of a backing file already opened (by
    /// [`open_disk`]).
    pub(crate) fn check_backing_file(&self, backing: &Path, file: &File) -> Result<(), CowError> {
        let meta = file.metadata().map_err(|source| CowError::StatBacking {
            path: backing.to_owned(),
            source,
        })?;
        let actual = backing_size(backing, file, &meta)?;
        if actual != self.header.size {
            return Err(CowError::SizeMismatch {
                header: self.header.size,
                actual,
                backing: backing.to_owned(),
            });
        }
        // ubd_kern.c compares the header's 32-bit value with the full 64-bit st_mtime.
        if i64::from(self.header.mtime) != meta.mtime() {
            return Err(CowError::MtimeMismatch {
                header: i64::from(self.header.mtime),
                actual: meta.mtime(),
                backing: backing.to_owned(),
            });
        }
        Ok(())
    }

    /// Whether `sector` is held in the COW file, given the bitmap from its start (bit
    /// `sector % 8`, counted from the least significant, of byte `sector / 8`). Sectors past
    /// the end of `bitmap` are not.
    pub fn sector_in_cow(bitmap: &[u8], sector: u64) -> bool {
        usize::try_from(sector / 8)
            .ok()
            .and_then(|i| bitmap.get(i))
            .is_some_and(|b| b & (1 << (sector % 8)) != 0)
    }

    /// How many sectors of the disk the COW file holds (set bits in its bitmap).
    ///
    /// # Errors
    /// The bitmap cannot be read.
    pub fn sectors_in_cow(&self) -> Result<u64, CowError> {
        let file = open_disk(&self.path, false)?;
        let sectors = self.sectors();
        let mut count = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        let mut first = 0u64;
        while first < sectors {
            let n = (sectors - first).min(buf.len() as u64 * 8);
            let bytes = n.div_ceil(8) as usize;
            let chunk = buf.get_mut(..bytes).unwrap_or_default();
            file.read_exact_at(chunk, self.bitmap_offset() + first / 8)
                .map_err(|source| CowError::Read {
                    path: self.path.clone(),
                    source,
                })?;
            // Bits past the disk's last sector are not part of it.
            if !n.is_multiple_of(8)
                && let Some(last) = chunk.last_mut()
            {
                *last &= (1u8 << (n % 8)) - 1;
            }
            count += chunk.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
            first += n;
        }
        Ok(count)
    }
}

/// [`open_disk`] for a backing file: one that cannot be opened is reported as not found.
pub(crate) fn open_backing(path: &Path, write: bool) -> Result<File, CowError> {
    open_disk(path, write).map_err(|e| match e {
        CowError::Open { path, source } => CowError::StatBacking { path, source },
        e => e,
    })
}

/// Size of an open backing file (`meta` is its metadata): its length, or a block device's
/// size.
fn backing_size(path: &Path, mut file: &File, meta: &fs::Metadata) -> Result<u64, CowError> {
    use std::os::unix::fs::FileTypeExt;
    if meta.file_type().is_block_device() {
        return file
            .seek(SeekFrom::End(0))
            .map_err(|source| CowError::Read {
                path: path.to_owned(),
                source,
            });
    }
    check_file_type(path, meta)?;
    Ok(meta.len())
}

/// Refuse anything but a regular file or a block device, naming what it is.
fn check_file_type(path: &Path, meta: &fs::Metadata) -> Result<(), CowError> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let found = if t.is_file() || t.is_block_device() {
        return Ok(());
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(CowError::FileType {
        path: path.to_owned(),
        found,
    })
}

/// Open a COW file, a backing file or an image (`write`: read-write), refusing anything but
/// a regular file or a block device.
///
/// A header names its backing file, so the path is untrusted: it is opened with `O_NONBLOCK`
/// (opening a FIFO would otherwise wait for a writer forever, and a tty's open may block on
/// carrier) and its type is checked on the opened descriptor, not the path, so a file swapped
/// in between cannot slip through. The descriptor is then made blocking again.
///
/// # Errors
/// [`CowError::Open`], or [`CowError::FileType`] naming what the file is.
pub fn open_disk(path: &Path, write: bool) -> Result<File, CowError> {
    let (file, meta) = open_nonblocking(path, write)?;
    check_file_type(path, &meta)?;
    blocking(path, file)
}

/// Open `path` with `O_NONBLOCK` (and no controlling tty), whatever it is; its metadata.
fn open_nonblocking(path: &Path, write: bool) -> Result<(File, fs::Metadata), CowError> {
    let open_err = |source| CowError::Open {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    Ok((file, meta))
}

/// Make a descriptor opened by [`open_nonblocking`] blocking again.
fn blocking(path: &Path, file: File) -> Result<File, CowError> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    fcntl(file.as_fd(), FcntlArg::F_SETFL(OFlag::empty())).map_err(|e| CowError::Open {
        path: path.to_owned(),
        source: io::Error::from(e),
    })?;
    Ok(file)
}

/// The absolute path the kernel's `absolutize()` (cow_user.c) writes into a header: the
/// file's directory resolved physically (it `chdir`s there and calls `getcwd`), then the
/// file's own name, not resolved. Unlike the kernel, a file directly in `/` works.
pub fn absolutize(path: &Path) -> Result<PathBuf, CowError> {
    let err = |source| CowError::Absolutize {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok(fs::canonicalize(parent).map_err(err)?.join(name))
}

/// Create a version 3 COW file over `backing`, as the kernel and `uml_mkcow` do (same bytes,
/// mode 0644, sparse, length data offset + disk size).
///
/// Unlike `uml_mkcow`, an existing file is refused unless `force`, and when forced it is
/// truncated first so that no old bitmap survives. A COW file a guest holds, or a backing
/// file a guest writes to, is refused.
///
/// # Errors
/// See [`CowError`].
pub fn create(cow: &Path, backing: &Path, force: bool) -> Result<CowFile, CowError> {
    let abs = absolutize(backing)?;
    let backing_file = open_backing(&abs, false)?;
    let meta = backing_file
        .metadata()
        .map_err(|source| CowError::StatBacking {
            path: abs.clone(),
            source,
        })?;
    let size = backing_size(&abs, &backing_file, &meta)?;
    let uml_dir = default_uml_dir();
    ensure_not_held(&abs, uml_dir.as_deref(), true)?;
    let existed = match fs::metadata(cow) {
        Ok(old) => {
            if !force {
                return Err(CowError::Exists {
                    path: cow.to_owned(),
                });
            }
            if old.dev() == meta.dev() && old.ino() == meta.ino() {
                return Err(CowError::SameFile {
                    a: cow.to_owned(),
                    b: abs,
                });
            }
            ensure_not_held(cow, uml_dir.as_deref(), false)?;
            true
        }
        Err(_) => false,
    };
    // write_cow_header() stores htobe32(st_mtime): the low 32 bits.
    let header = Header::new_v3(
        abs.as_os_str().as_bytes().to_vec(),
        meta.mtime() as u32,
        size,
    );
    let bytes = header.encode().map_err(|source| CowError::Encode {
        path: abs.clone(),
        source,
    })?;
    let mut opts = OpenOptions::new();
    opts.write(true).mode(0o644);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let file = opts.open(cow).map_err(|source| match source.kind() {
        io::ErrorKind::AlreadyExists => CowError::Exists {
            path: cow.to_owned(),
        },
        _ => CowError::Open {
            path: cow.to_owned(),
            source,
        },
    })?;
    // Like init_cow_file(): the header, then one zero byte at the very end, which sets the
    // length and leaves the bitmap and data as holes.
    let end = header.data_offset() + size;
    let written = file
        .write_all_at(&bytes, 0)
        .and_then(|()| file.write_all_at(&[0], end - 1));
    if let Err(source) = written {
        if !existed {
            let _ = fs::remove_file(cow);
        }
        return Err(CowError::Write {
            path: cow.to_owned(),
            source,
        });
    }
    tracing::info!(cow = %cow.display(), backing = %abs.display(), size, "created COW file");
    Ok(CowFile {
        path: cow.to_owned(),
        header,
        len: end,
    })
}

/// Point `cow` at `new_backing` (a moved or copied backing file), which must pass the
/// kernel's size and mtime check.
///
/// Only the backing path field is rewritten, in the file's own layout. The kernel, when
/// switching a COW file to another backing file, rewrites the header as version 3 whatever
/// the file's version, which corrupts version 1 and 2 files (their bitmap starts right after
/// their shorter header); keeping the layout avoids that. A version 1 header holds at most
/// 255 bytes of path.
///
/// # Errors
/// Not a COW file, the new backing file does not match, the path does not fit, or a guest
/// holds the COW file.
pub fn rebase(cow: &Path, new_backing: &Path) -> Result<(), CowError> {
    let file = open_disk(cow, true)?;
    let old = CowFile::from_file(cow, &file)?.ok_or_else(|| CowError::NotCow {
        path: cow.to_owned(),
    })?;
    let abs = absolutize(new_backing)?;
    old.check_backing(&abs)?;
    let uml_dir = default_uml_dir();
    ensure_not_held(cow, uml_dir.as_deref(), false)?;
    ensure_not_held(&abs, uml_dir.as_deref(), true)?;
    let mut header = old.header.clone();
    header.backing = abs.as_os_str().as_bytes().to_vec();
    let bytes = header.encode().map_err(|source| CowError::Encode {
        path: abs.clone(),
        source,
    })?;
    let write_err = |source| CowError::Write {
        path: cow.to_owned(),
        source,
    };
    file.write_all_at(&bytes, 0).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    tracing::info!(cow = %cow.display(), backing = %abs.display(), "rebased COW file");
    Ok(())
}

/// Kind of `fcntl` lock a process holds on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// The kernel takes a read lock on a backing file.
    Read,
    /// The kernel takes a write lock on a COW file and on a writable raw disk.
    Write,
}

/// A process holding an `fcntl` lock on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: i32,
    pub kind: LockKind,
}

/// Who holds an `fcntl` lock on `path`, asked with `F_GETLK` (which takes no lock).
///
/// The kernel holds its locks only while the ubd device is open inside the guest (mounted, or
/// opened by a process): `ubd_open()` opens and locks the files, and the last `ubd_release()`
/// closes them (`ubd_kern.c`). A guest that merely has the disk configured holds no lock, so
/// this cannot see it. (Checked on 6.1: a freshly booted guest with an unopened `ubd1=COW,B`
/// holds nothing; `exec 3<>/dev/ubdb` in the guest makes the write lock appear, owned by the
/// kernel's main pid.)
///
/// # Errors
/// The file cannot be opened for reading or `fcntl` fails.
pub fn holder(path: &Path) -> io::Result<Option<LockHolder>> {
    use nix::fcntl::{FcntlArg, fcntl};
    // Non-blocking: opening a FIFO for reading would otherwise wait for a writer forever.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let mut lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    fcntl(file.as_fd(), FcntlArg::F_GETLK(&mut lock)).map_err(io::Error::from)?;
    let kind = match i32::from(lock.l_type) {
        libc::F_RDLCK => LockKind::Read,
        libc::F_WRLCK => LockKind::Write,
        _ => return Ok(None),
    };
    Ok(Some(LockHolder {
        pid: lock.l_pid,
        kind,
    }))
}

/// Refuse `path` if a process holds a lock on it (a read lock is allowed when
/// `readers_ok`). The error names the pid and, when it is a guest of `uml_dir`, its umid.
/// A file that does not exist is not held.
///
/// # Errors
/// [`CowError::InUse`], or the file cannot be opened.
pub fn ensure_not_held(
    path: &Path,
    uml_dir: Option<&Path>,
    readers_ok: bool,
) -> Result<(), CowError> {
    match holder(path) {
        Ok(None) => Ok(()),
        Ok(Some(h)) if readers_ok && h.kind == LockKind::Read => Ok(()),
        Ok(Some(h)) => Err(CowError::InUse {
            path: path.to_owned(),
            pid: h.pid,
            kind: h.kind,
            umid: uml_dir.and_then(|d| umid_of_pid(d, h.pid)),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CowError::Open {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The default `uml_dir` (`$HOME/.uml`), where guests keep their `<umid>/pid` files, if
/// there is one.
pub(crate) fn default_uml_dir() -> Option<PathBuf> {
    crate::instance::default_uml_dir().ok()
}

/// The umid of the guest whose kernel is `pid`, or whose session `pid` belongs to (the
/// kernel calls `setsid()`, and its helper processes share the session).
fn umid_of_pid(uml_dir: &Path, pid: i32) -> Option<String> {
    let by_pid = u32::try_from(pid)
        .ok()
        .and_then(|p| crate::instance::umid_of_pid(uml_dir, p));
    by_pid.or_else(|| {
        let session = u32::try_from(session_of(pid)?).ok()?;
        crate::instance::umid_of_pid(uml_dir, session)
    })
}

/// Session id of a process, from `/proc/<pid>/stat`.
fn session_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // state, ppid, pgrp, session
    rest.split_whitespace().nth(3)?.parse().ok()
}

/// COW files in `dirs` (only their top level) whose header names `backing` (the same file,
/// by device and inode), other than `exclude`. Used to say which COW files an in-place merge
/// into `backing` breaks.
pub fn cows_on_backing(backing: &Path, dirs: &[&Path], exclude: &Path) -> Vec<PathBuf> {
    const MAX_ENTRIES: usize = 10_000;
    let id = |p: &Path| fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let Some(target) = id(backing) else {
        return Vec::new();
    };
    let skip = id(exclude);
    let mut seen_dirs = Vec::new();
    let mut found = Vec::new();
    for dir in dirs {
        let Some(dir_id) = id(dir) else { continue };
        if seen_dirs.contains(&dir_id) {
            continue;
        }
        seen_dirs.push(dir_id);
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.take(MAX_ENTRIES).flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let this = Some((meta.dev(), meta.ino()));
            if !meta.is_file() || this == skip || this == Some(target) {
                continue;
            }
            if let Ok(Some(cow)) = CowFile::open(&path)
                && id(cow.backing_path()) == Some(target)
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
