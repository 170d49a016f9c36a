//! Merging a COW file: into a new sparse image ([`merge_to`], like `uml_moo COW OUT`) or into
//! its backing file ([`merge_in_place`], like `uml_moo -d COW`).
//!
//! Both produce the bytes `uml_moo` produces, but work in chunks of 4 MiB with one read per
//! run of sectors instead of one `pread` per 512-byte sector, and skip holes of the backing
//! file (`SEEK_DATA`). A new image gets exactly the sectors `uml_moo` writes (non-zero ones,
//! and always the last), so it is sparse in the same places.
//!
//! `uml_moo` drops a trailing partial sector (its loop runs over `size / 512` whole
//! sectors), so its image of a disk whose size is not a multiple of 512 is shorter than the
//! disk. We copy that partial sector too: the image always has the disk's size.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::reader::Runs;
use super::{
    CowError, CowFile, CowReader, SECTOR, absolutize, backing_size, default_uml_dir,
    ensure_not_held,
};

/// Sectors handled per step: 4 MiB of data, 1 KiB of bitmap.
const CHUNK_SECTORS: u64 = 8192;
const CHUNK_BYTES: usize = (CHUNK_SECTORS * SECTOR) as usize;

/// What a merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeStats {
    /// Disk size in bytes.
    pub size: u64,
    /// Sectors taken from the COW file.
    pub sectors_from_cow: u64,
    /// Bytes written to the target.
    pub bytes_written: u64,
    /// An interrupted in-place merge was completed.
    pub resumed: bool,
}

fn read_err(path: &Path) -> impl Fn(io::Error) -> CowError + '_ {
    move |source| CowError::Read {
        path: path.to_owned(),
        source,
    }
}

fn write_err(path: &Path) -> impl Fn(io::Error) -> CowError + '_ {
    move |source| CowError::Write {
        path: path.to_owned(),
        source,
    }
}

fn is_zero(buf: &[u8]) -> bool {
    // A fold without early exit vectorises well; sectors are only 512 bytes.
    buf.iter().fold(0u8, |acc, &b| acc | b) == 0
}

fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Whether ranges of a file are holes, asked with `SEEK_DATA` and remembered while the
/// caller moves forward.
struct Holes<'a> {
    file: &'a File,
    asked_at: u64,
    next_data: u64,
}

impl<'a> Holes<'a> {
    fn new(file: &'a File) -> Holes<'a> {
        Holes {
            file,
            asked_at: u64::MAX,
            next_data: 0,
        }
    }

    /// True if `start..end` holds no data (reads as zeros).
    fn is_hole(&mut self, start: u64, end: u64) -> bool {
        if self.asked_at <= start && self.next_data >= end {
            return true;
        }
        let Ok(at) = i64::try_from(start) else {
            return false;
        };
        match nix::unistd::lseek(self.file, at, nix::unistd::Whence::SeekData) {
            Ok(off) => {
                self.asked_at = start;
                self.next_data = u64::try_from(off).unwrap_or(0);
            }
            Err(nix::errno::Errno::ENXIO) => {
                self.asked_at = start;
                self.next_data = u64::MAX;
            }
            // A file system without SEEK_DATA: read everything.
            Err(_) => return false,
        }
        self.next_data >= end
    }
}

/// The temporary file a new image is written to; removed unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    file: File,
    done: bool,
}

impl TempFile {
    fn create(dir: &Path, name: &std::ffi::OsStr) -> Result<TempFile, CowError> {
        let mut last = None;
        for n in 0..100u32 {
            let mut tmp = OsString::from(".");
            tmp.push(name);
            tmp.push(format!(".uml-merge-{}-{n}", std::process::id()));
            let path = dir.join(tmp);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file,
                        done: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(source) => return Err(CowError::Open { path, source }),
            }
        }
        Err(CowError::Open {
            path: dir.to_owned(),
            source: last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)),
        })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn sync_dir(dir: &Path) {
    // Makes a rename or unlink durable; failure only weakens crash safety.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Write the non-zero sectors of `data` (disk bytes from `start`) to `out`, coalesced into
/// runs; the sector ending at `disk_end` is written even if it is zero (as `uml_moo` does,
/// which gives the image its length).
fn write_nonzero(
    out: &File,
    out_path: &Path,
    data: &[u8],
    start: u64,
    disk_end: u64,
) -> Result<u64, CowError> {
    let mut written = 0u64;
    let mut run: Option<usize> = None;
    let sectors = data.chunks(SECTOR as usize);
    let count = sectors.len();
    for (i, sector) in sectors.enumerate() {
        let off = start + (i as u64) * SECTOR;
        let keep = !is_zero(sector) || (i + 1 == count && off + sector.len() as u64 == disk_end);
        match (keep, run) {
            (true, None) => run = Some(i),
            (false, Some(r)) => {
                written += write_run(out, out_path, data, start, r, i)?;
                run = None;
            }
            _ => {}
        }
    }
    if let Some(r) = run {
        written += write_run(out, out_path, data, start, r, count)?;
    }
    Ok(written)
}

fn write_run(
    out: &File,
    out_path: &Path,
    data: &[u8],
    start: u64,
    from: usize,
    to: usize,
) -> Result<u64, CowError> {
    let s = SECTOR as usize;
    let bytes = data
        .get(from * s..(to * s).min(data.len()))
        .unwrap_or_default();
    out.write_all_at(bytes, start + (from * s) as u64)
        .map_err(write_err(out_path))?;
    Ok(bytes.len() as u64)
}

/// Read the bitmap bytes of sectors `first..first + n` (`first` a multiple of 8) into `bm`,
/// clearing bits past the end of the disk.
fn read_bitmap(
    info: &CowFile,
    cow: &File,
    bm: &mut [u8],
    first: u64,
    n: u64,
) -> Result<(), CowError> {
    cow.read_exact_at(bm, info.bitmap_offset() + first / 8)
        .map_err(read_err(info.path()))?;
    if !n.is_multiple_of(8)
        && let Some(last) = bm.last_mut()
    {
        *last &= (1u8 << (n % 8)) - 1;
    }
    Ok(())
}

/// Write the disk that `cow` and its backing file make (`backing_override` replaces the
/// header's backing path, like `uml_moo -b`) as a new sparse image `out`, which is replaced
/// if it exists. The image is written to a temporary file in `out`'s directory, synced, and
/// renamed to `out` only when complete. `progress(done, total)` is called after each chunk.
///
/// # Errors
/// A mismatching backing file, a guest holding the COW file (or writing to the backing
/// file or `out`), `out` being one of the inputs, or an I/O error.
pub fn merge_to(
    cow: &Path,
    backing_override: Option<&Path>,
    out: &Path,
    progress: &dyn Fn(u64, u64),
) -> Result<MergeStats, CowError> {
    let reader = CowReader::open(cow, backing_override)?;
    let uml_dir = default_uml_dir();
    ensure_not_held(cow, &uml_dir, false)?;
    ensure_not_held(reader.backing_path(), &uml_dir, true)?;
    ensure_not_held(out, &uml_dir, false)?;
    if let Ok(out_meta) = fs::metadata(out) {
        for input in [cow, reader.backing_path()] {
            if fs::metadata(input).is_ok_and(|m| same_file(&m, &out_meta)) {
                return Err(CowError::SameFile {
                    a: out.to_owned(),
                    b: input.to_owned(),
                });
            }
        }
    }
    let name = out.file_name().ok_or_else(|| CowError::Open {
        path: out.to_owned(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    let dir = parent_dir(out);
    let mut tmp = TempFile::create(dir, name)?;

    let info = reader.cow();
    let (cow_file, backing) = (reader.cow_handle(), reader.backing_handle());
    let size = info.size();
    let total = info.sectors();
    let mut stats = MergeStats {
        size,
        ..MergeStats::default()
    };
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut bitmap = vec![0u8; (CHUNK_SECTORS / 8) as usize];
    let mut holes = Holes::new(backing);
    let mut first = 0u64;
    while first < total {
        let n = CHUNK_SECTORS.min(total - first);
        let start = first * SECTOR;
        let end = ((first + n) * SECTOR).min(size);
        let bm = bitmap.get_mut(..n.div_ceil(8) as usize).unwrap_or_default();
        read_bitmap(info, cow_file, bm, first, n)?;
        let all_cow = n.is_multiple_of(8) && bm.iter().all(|&b| b == 0xFF);
        let no_cow = bm.iter().all(|&b| b == 0);
        let hole = holes.is_hole(start, end);
        let last_chunk = end == size;
        if !(no_cow && hole && !last_chunk) {
            let data = buf.get_mut(..(end - start) as usize).unwrap_or_default();
            if hole {
                data.fill(0);
            } else if !all_cow {
                backing
                    .read_exact_at(data, start)
                    .map_err(read_err(reader.backing_path()))?;
            }
            if !no_cow {
                for run in Runs::new(bm, first, first, first + n).filter(|r| r.in_cow) {
                    let a = run.start * SECTOR;
                    let b = (run.end * SECTOR).min(end);
                    let dst = data
                        .get_mut((a - start) as usize..(b - start) as usize)
                        .unwrap_or_default();
                    cow_file
                        .read_exact_at(dst, info.data_offset() + a)
                        .map_err(read_err(cow))?;
                    stats.sectors_from_cow += run.end - run.start;
                }
            }
            stats.bytes_written += write_nonzero(&tmp.file, &tmp.path, data, start, size)?;
        }
        first += n;
        progress(end, size);
    }
    tmp.file.sync_all().map_err(write_err(&tmp.path))?;
    fs::rename(&tmp.path, out).map_err(write_err(out))?;
    tmp.done = true;
    sync_dir(dir);
    tracing::info!(cow = %cow.display(), out = %out.display(), ?stats, "merged COW file into a new image");
    Ok(stats)
}

/// The marker file an in-place merge of `cow` keeps while it writes to the backing file.
fn marker_path(cow: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(cow.file_name().unwrap_or_default());
    name.push(".uml-merge-in-place");
    parent_dir(cow).join(name)
}

/// If an in-place merge of `cow` was interrupted, the marker file that records it (running
/// [`merge_in_place`] again completes that merge).
pub fn interrupted_merge(cow: &Path) -> Option<PathBuf> {
    let marker = marker_path(cow);
    marker.exists().then_some(marker)
}

/// The marker: "<size> <mtime>\n<backing path bytes>", the state the backing file had when
/// the merge began.
fn marker_bytes(size: u64, mtime: u32, backing: &Path) -> Vec<u8> {
    let mut bytes = format!("{size} {mtime}\n").into_bytes();
    bytes.extend_from_slice(backing.as_os_str().as_bytes());
    bytes
}

fn read_marker(marker: &Path) -> Result<Option<Vec<u8>>, CowError> {
    match File::open(marker) {
        Ok(f) => {
            let mut bytes = Vec::new();
            f.take(8192)
                .read_to_end(&mut bytes)
                .map_err(read_err(marker))?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CowError::Open {
            path: marker.to_owned(),
            source,
        }),
    }
}

/// Write the sectors held in `cow` into its backing file (`backing_override` replaces the
/// header's path, like `uml_moo -d -b`), so the backing file becomes the merged disk.
///
/// This changes the backing file's mtime, so every COW file based on it (this one too) no
/// longer passes the kernel's check afterwards; [`cows_on_backing`](super::cows_on_backing)
/// finds some of them.
///
/// Crash safety: the COW file is only read. Before the first write a marker file next to the
/// COW file records the backing file's size and mtime; it is removed after the backing file
/// is synced. Writing the same sectors again gives the same result, so when a marker exists
/// (the merge was killed, and the backing file's mtime has already changed) the mtime check
/// is waived and the merge simply runs again.
///
/// # Errors
/// A mismatching backing file, a marker from another merge, a guest holding either file, or
/// an I/O error.
pub fn merge_in_place(
    cow: &Path,
    backing_override: Option<&Path>,
    progress: &dyn Fn(u64, u64),
) -> Result<MergeStats, CowError> {
    let cow_file = File::open(cow).map_err(|source| CowError::Open {
        path: cow.to_owned(),
        source,
    })?;
    let info = CowFile::from_file(cow, &cow_file)?.ok_or_else(|| CowError::NotCow {
        path: cow.to_owned(),
    })?;
    let backing_path = absolutize(backing_override.unwrap_or(info.backing_path()))?;
    let marker = marker_path(cow);
    let expected = marker_bytes(info.size(), info.mtime(), &backing_path);
    let resumed = match read_marker(&marker)? {
        Some(found) if found == expected => {
            let meta = fs::metadata(&backing_path).map_err(|source| CowError::StatBacking {
                path: backing_path.clone(),
                source,
            })?;
            let actual = backing_size(&backing_path, &meta)?;
            if actual != info.size() {
                return Err(CowError::SizeMismatch {
                    header: info.size(),
                    actual,
                    backing: backing_path,
                });
            }
            tracing::info!(marker = %marker.display(), "completing an interrupted in-place merge");
            true
        }
        Some(_) => {
            return Err(CowError::MarkerMismatch {
                marker,
                backing: backing_path,
                size: info.size(),
                mtime: info.mtime(),
            });
        }
        None => {
            info.check_backing(&backing_path)?;
            false
        }
    };
    let uml_dir = default_uml_dir();
    ensure_not_held(cow, &uml_dir, false)?;
    ensure_not_held(&backing_path, &uml_dir, false)?;
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&backing_path)
        .map_err(|source| CowError::Open {
            path: backing_path.clone(),
            source,
        })?;
    if !resumed {
        let m = File::create(&marker).map_err(write_err(&marker))?;
        m.write_all_at(&expected, 0)
            .and_then(|()| m.sync_all())
            .map_err(write_err(&marker))?;
        sync_dir(parent_dir(&marker));
    }

    let size = info.size();
    let total = info.sectors();
    let mut stats = MergeStats {
        size,
        resumed,
        ..MergeStats::default()
    };
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut old = vec![0u8; CHUNK_BYTES];
    let mut bitmap = vec![0u8; (CHUNK_SECTORS / 8) as usize];
    let mut first = 0u64;
    while first < total {
        let n = CHUNK_SECTORS.min(total - first);
        let end = ((first + n) * SECTOR).min(size);
        let bm = bitmap.get_mut(..n.div_ceil(8) as usize).unwrap_or_default();
        read_bitmap(&info, &cow_file, bm, first, n)?;
        for run in Runs::new(bm, first, first, first + n).filter(|r| r.in_cow) {
            let a = run.start * SECTOR;
            let b = (run.end * SECTOR).min(end);
            let data = buf.get_mut(..(b - a) as usize).unwrap_or_default();
            cow_file
                .read_exact_at(data, info.data_offset() + a)
                .map_err(read_err(cow))?;
            stats.sectors_from_cow += run.end - run.start;
            stats.bytes_written += write_run_in_place(&backing, &backing_path, data, a, &mut old)?;
        }
        first += n;
        progress(end, size);
    }
    backing.sync_all().map_err(write_err(&backing_path))?;
    fs::remove_file(&marker).map_err(write_err(&marker))?;
    sync_dir(parent_dir(&marker));
    tracing::info!(cow = %cow.display(), backing = %backing_path.display(), ?stats, "merged COW file in place");
    Ok(stats)
}

/// Write COW data `data` at disk offset `at` into the backing file. Like `uml_moo -d`, a zero
/// sector is written only where the backing file's sector is not already zero, so holes stay
/// holes.
fn write_run_in_place(
    backing: &File,
    path: &Path,
    data: &[u8],
    at: u64,
    old: &mut [u8],
) -> Result<u64, CowError> {
    if !data.chunks(SECTOR as usize).any(is_zero) {
        backing.write_all_at(data, at).map_err(write_err(path))?;
        return Ok(data.len() as u64);
    }
    let old = old.get_mut(..data.len()).unwrap_or_default();
    backing.read_exact_at(old, at).map_err(read_err(path))?;
    let s = SECTOR as usize;
    let mut written = 0;
    let mut run: Option<usize> = None;
    let count = data.len().div_ceil(s);
    for i in 0..=count {
        let differs = i < count
            && data.get(i * s..((i + 1) * s).min(data.len()))
                != old.get(i * s..((i + 1) * s).min(old.len()));
        match (differs, run) {
            (true, None) => run = Some(i),
            (false, Some(r)) => {
                let bytes = data.get(r * s..(i * s).min(data.len())).unwrap_or_default();
                backing
                    .write_all_at(bytes, at + (r * s) as u64)
                    .map_err(write_err(path))?;
                written += bytes.len() as u64;
                run = None;
            }
            _ => {}
        }
    }
    Ok(written)
}
