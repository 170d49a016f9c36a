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
    ensure_not_held, open_backing, open_disk,
};

/// Sectors whose bitmap is read at once: 128 MiB of disk, 32 KiB of bitmap.
const WINDOW_SECTORS: u64 = 1 << 18;
/// Sectors copied per step (small enough to stay in the CPU cache between read and write).
const CHUNK_SECTORS: u64 = 512;
/// Output written between requests to start writing it back.
const WRITEBACK_BYTES: u64 = 8 << 20;
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

/// The data extents of a file (`SEEK_DATA`/`SEEK_HOLE`); holes read as zeros and need not
/// be read at all.
struct Extents<'a> {
    file: &'a File,
}

impl Extents<'_> {
    /// The ranges of `start..end` that hold data (everything, where the file system cannot
    /// say).
    fn data_in(&self, start: u64, end: u64, out: &mut Vec<(u64, u64)>) {
        use nix::unistd::{Whence, lseek};
        out.clear();
        let mut pos = start;
        while pos < end {
            let Ok(at) = i64::try_from(pos) else { break };
            let data = match lseek(self.file, at, Whence::SeekData) {
                Ok(d) => u64::try_from(d).unwrap_or(u64::MAX),
                Err(nix::errno::Errno::ENXIO) => break,
                Err(_) => {
                    out.push((pos, end));
                    break;
                }
            };
            if data >= end {
                break;
            }
            let hole = i64::try_from(data)
                .ok()
                .and_then(|d| lseek(self.file, d, Whence::SeekHole).ok())
                .and_then(|h| u64::try_from(h).ok())
                .unwrap_or(end);
            // A hole offset must lie past the data offset; anything else ends the walk.
            if hole <= data {
                out.push((data, end));
                break;
            }
            out.push((data, hole.min(end)));
            pos = hole;
        }
    }
}

/// The temporary file a new image is written to; removed unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    file: File,
    done: bool,
}

impl TempFile {
    /// Create a new file (never an existing one, never through a symlink) in `dir`, with
    /// permission bits `mode` (less the umask) from the start.
    fn create(dir: &Path, name: &std::ffi::OsStr, mode: u32) -> Result<TempFile, CowError> {
        let mut last = None;
        for n in 0..100u32 {
            let mut tmp = OsString::from(".");
            tmp.push(name);
            tmp.push(format!(".uml-merge-{}-{n}", std::process::id()));
            let path = dir.join(tmp);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(mode)
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

/// Start writing back a range already written, so that disk writes overlap with reading the
/// next chunks and the final fsync has little left to do.
fn start_writeback(file: &File, start: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(n)) = (i64::try_from(start), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range(2) only takes integers; the descriptor stays open for as long
    // as `file` is borrowed. Failure only loses the overlap, so its result is not needed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
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
/// runs. Only sectors marked in `maybe` can hold data (the others are holes of the backing
/// file, and their bytes in `data` are stale). The sector ending at `disk_end` is written
/// even if it is zero, as `uml_moo` does, which gives the image its length.
fn write_nonzero(
    out: &File,
    out_path: &Path,
    data: &mut [u8],
    maybe: &[bool],
    start: u64,
    disk_end: u64,
) -> Result<u64, CowError> {
    let s = SECTOR as usize;
    let count = data.len().div_ceil(s);
    let last_forced = start + data.len() as u64 == disk_end;
    let mut written = 0u64;
    let mut run: Option<usize> = None;
    for i in 0..=count {
        let keep = i < count && {
            let candidate = maybe.get(i).copied().unwrap_or(false);
            let sector = data
                .get(i * s..((i + 1) * s).min(data.len()))
                .unwrap_or_default();
            if candidate && !is_zero(sector) {
                true
            } else if i + 1 == count && last_forced {
                if !candidate && let Some(sector) = data.get_mut(i * s..) {
                    sector.fill(0);
                }
                true
            } else {
                false
            }
        };
        match (keep, run) {
            (true, None) => run = Some(i),
            (false, Some(r)) => {
                written += write_run(out, out_path, data, start, r, i)?;
                run = None;
            }
            _ => {}
        }
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
    ensure_not_held(cow, uml_dir.as_deref(), false)?;
    ensure_not_held(reader.backing_path(), uml_dir.as_deref(), true)?;
    ensure_not_held(out, uml_dir.as_deref(), false)?;
    let cow_meta = reader.cow_handle().metadata().map_err(read_err(cow))?;
    let backing_meta = reader
        .backing_handle()
        .metadata()
        .map_err(read_err(reader.backing_path()))?;
    if let Ok(out_meta) = fs::metadata(out) {
        for (input, meta) in [(cow, &cow_meta), (reader.backing_path(), &backing_meta)] {
            if same_file(meta, &out_meta) {
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
    // The image holds the data of both inputs, so nobody may read it who could not read
    // them: it gets the permission bits both have (root merging a COW file over a 0600
    // backing file writes a 0600 image), never set-id bits.
    let mode = cow_meta.mode() & backing_meta.mode() & 0o777;
    let mut tmp = TempFile::create(dir, name, mode)?;

    let info = reader.cow();
    let (cow_file, backing) = (reader.cow_handle(), reader.backing_handle());
    let size = info.size();
    let total = info.sectors();
    let mut stats = MergeStats {
        size,
        ..MergeStats::default()
    };
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut maybe = vec![false; CHUNK_SECTORS as usize];
    let mut bitmap = vec![0u8; (WINDOW_SECTORS / 8) as usize];
    let extents = Extents { file: backing };
    let mut window_ranges = Vec::new();
    let mut ranges = Vec::new();
    let (mut unsynced, mut synced_to) = (0u64, 0u64);
    let mut wfirst = 0u64;
    while wfirst < total {
        let wn = WINDOW_SECTORS.min(total - wfirst);
        let wbm = bitmap
            .get_mut(..wn.div_ceil(8) as usize)
            .unwrap_or_default();
        read_bitmap(info, cow_file, wbm, wfirst, wn)?;
        let wend = ((wfirst + wn) * SECTOR).min(size);
        extents.data_in(wfirst * SECTOR, wend, &mut window_ranges);
        let mut next_range = 0;
        let mut first = wfirst;
        while first < wfirst + wn {
            let n = CHUNK_SECTORS.min(wfirst + wn - first);
            let start = first * SECTOR;
            let end = ((first + n) * SECTOR).min(size);
            let rel = ((first - wfirst) / 8) as usize;
            let bm = wbm
                .get(rel..rel + n.div_ceil(8) as usize)
                .unwrap_or_default();
            let all_cow = n.is_multiple_of(8) && bm.iter().all(|&b| b == 0xFF);
            let no_cow = bm.iter().all(|&b| b == 0);
            ranges.clear();
            while window_ranges
                .get(next_range)
                .is_some_and(|&(_, b)| b <= start)
            {
                next_range += 1;
            }
            if !all_cow {
                let mut i = next_range;
                while let Some(&(a, b)) = window_ranges.get(i)
                    && a < end
                {
                    ranges.push((a.max(start), b.min(end)));
                    i += 1;
                }
            }
            let last_chunk = end == size;
            if !(no_cow && ranges.is_empty() && !last_chunk) {
                let data = buf.get_mut(..(end - start) as usize).unwrap_or_default();
                maybe.fill(false);
                // Extents are file-system-block aligned except at the end of the file, but a
                // sector that is partly data and partly hole must read the hole as zeros.
                for &(a, b) in &ranges {
                    let head = (a - start) as usize;
                    let tail = (b - start) as usize;
                    let s = SECTOR as usize;
                    if let Some(part) = data.get_mut(head / s * s..head) {
                        part.fill(0);
                    }
                    if let Some(part) = data.get_mut(tail..tail.div_ceil(s) * s) {
                        part.fill(0);
                    }
                }
                for &(a, b) in &ranges {
                    let dst = data
                        .get_mut((a - start) as usize..(b - start) as usize)
                        .unwrap_or_default();
                    backing
                        .read_exact_at(dst, a)
                        .map_err(read_err(reader.backing_path()))?;
                    let sectors =
                        ((a - start) / SECTOR) as usize..(b - start).div_ceil(SECTOR) as usize;
                    if let Some(m) = maybe.get_mut(sectors) {
                        m.fill(true);
                    }
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
                        let sectors = (run.start - first) as usize..(run.end - first) as usize;
                        if let Some(m) = maybe.get_mut(sectors) {
                            m.fill(true);
                        }
                        stats.sectors_from_cow += run.end - run.start;
                    }
                }
                let written = write_nonzero(&tmp.file, &tmp.path, data, &maybe, start, size)?;
                stats.bytes_written += written;
                unsynced += written;
                if unsynced >= WRITEBACK_BYTES {
                    start_writeback(&tmp.file, synced_to, end - synced_to);
                    (unsynced, synced_to) = (0, end);
                }
            }
            first += n;
            progress(end, size);
        }
        wfirst += wn;
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
    fs::symlink_metadata(&marker).is_ok().then_some(marker)
}

/// The marker: "<size> <mtime>\n<backing path bytes>", the state the backing file had when
/// the merge began.
fn marker_bytes(size: u64, mtime: u32, backing: &Path) -> Vec<u8> {
    let mut bytes = format!("{size} {mtime}\n").into_bytes();
    bytes.extend_from_slice(backing.as_os_str().as_bytes());
    bytes
}

/// The marker's bytes, if there is one. It lives in the COW file's directory, which others
/// may be able to write: a symlink or anything but a regular file there is refused.
fn read_marker(marker: &Path) -> Result<Option<Vec<u8>>, CowError> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(marker);
    match opened {
        Ok(f) => {
            let meta = f.metadata().map_err(read_err(marker))?;
            if !meta.is_file() {
                return Err(CowError::Open {
                    path: marker.to_owned(),
                    source: io::Error::other("not a regular file"),
                });
            }
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
    let cow_file = open_disk(cow, false)?;
    let info = CowFile::from_file(cow, &cow_file)?.ok_or_else(|| CowError::NotCow {
        path: cow.to_owned(),
    })?;
    let backing_path = absolutize(backing_override.unwrap_or(info.backing_path()))?;
    let marker = marker_path(cow);
    let expected = marker_bytes(info.size(), info.mtime(), &backing_path);
    let resumed = match read_marker(&marker)? {
        Some(found) if found == expected => {
            let file = open_backing(&backing_path, false)?;
            let meta = file.metadata().map_err(|source| CowError::StatBacking {
                path: backing_path.clone(),
                source,
            })?;
            let actual = backing_size(&backing_path, &file, &meta)?;
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
    ensure_not_held(cow, uml_dir.as_deref(), false)?;
    ensure_not_held(&backing_path, uml_dir.as_deref(), false)?;
    let backing = open_disk(&backing_path, true)?;
    if !resumed {
        // A new file only: a symlink planted at the marker's path is not written through.
        let m = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o644)
            .open(&marker)
            .map_err(write_err(&marker))?;
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
    let mut bitmap = vec![0u8; (WINDOW_SECTORS / 8) as usize];
    let mut wfirst = 0u64;
    while wfirst < total {
        let wn = WINDOW_SECTORS.min(total - wfirst);
        let wend = ((wfirst + wn) * SECTOR).min(size);
        let wbm = bitmap
            .get_mut(..wn.div_ceil(8) as usize)
            .unwrap_or_default();
        read_bitmap(&info, &cow_file, wbm, wfirst, wn)?;
        let mut wrote = false;
        for run in Runs::new(wbm, wfirst, wfirst, wfirst + wn).filter(|r| r.in_cow) {
            stats.sectors_from_cow += run.end - run.start;
            let run_end = (run.end * SECTOR).min(wend);
            let mut a = run.start * SECTOR;
            while a < run_end {
                let b = (a + CHUNK_BYTES as u64).min(run_end);
                let data = buf.get_mut(..(b - a) as usize).unwrap_or_default();
                cow_file
                    .read_exact_at(data, info.data_offset() + a)
                    .map_err(read_err(cow))?;
                stats.bytes_written +=
                    write_run_in_place(&backing, &backing_path, data, a, &mut old)?;
                progress(b, size);
                a = b;
            }
            wrote = true;
        }
        if wrote {
            start_writeback(&backing, wfirst * SECTOR, wend - wfirst * SECTOR);
        }
        wfirst += wn;
        progress(wend, size);
    }
    backing.sync_all().map_err(write_err(&backing_path))?;
    fs::remove_file(&marker).map_err(write_err(&marker))?;
    sync_dir(parent_dir(&marker));
    tracing::info!(cow = %cow.display(), backing = %backing_path.display(), ?stats, "merged COW file in place");
    Ok(stats)
}

/// Write COW data `data` at disk offset `at` into the backing file. Like `uml_moo -d`, zero
/// sectors are written only where the backing file's sector is not already zero, so holes
/// stay holes; only those sectors of the backing file are read.
fn write_run_in_place(
    backing: &File,
    path: &Path,
    data: &[u8],
    at: u64,
    old: &mut [u8],
) -> Result<u64, CowError> {
    let s = SECTOR as usize;
    let count = data.len().div_ceil(s);
    let sector = |i: usize| {
        data.get(i * s..((i + 1) * s).min(data.len()))
            .unwrap_or_default()
    };
    let mut written = 0;
    let mut i = 0;
    while i < count {
        // A run of sectors that are all zero or all not.
        let zero = is_zero(sector(i));
        let mut j = i + 1;
        while j < count && is_zero(sector(j)) == zero {
            j += 1;
        }
        let (from, to) = (i * s, (j * s).min(data.len()));
        let bytes = data.get(from..to).unwrap_or_default();
        if !zero {
            backing
                .write_all_at(bytes, at + from as u64)
                .map_err(write_err(path))?;
            written += bytes.len() as u64;
        } else {
            let was = old.get_mut(..to - from).unwrap_or_default();
            backing
                .read_exact_at(was, at + from as u64)
                .map_err(read_err(path))?;
            if !is_zero(was) {
                // Rare: zeros over data. Writing the whole run is simplest and correct.
                backing
                    .write_all_at(bytes, at + from as u64)
                    .map_err(write_err(path))?;
                written += bytes.len() as u64;
            }
        }
        i = j;
    }
    Ok(written)
}
