//! Read-only positional reads of the disk that a COW file and its backing file make together,
//! and the bitmap walk that merges share.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{CowError, CowFile, SECTOR, open_backing, open_disk};

/// The merged disk: sectors whose bit is set come from the COW file, the rest from the
/// backing file. Opens both files read-only, never writes and never locks, so it can look at
/// the disk of a running guest (reading the bitmap afresh on every call).
#[derive(Debug)]
pub struct CowReader {
    info: CowFile,
    cow: File,
    backing_path: PathBuf,
    backing: File,
}

impl CowReader {
    /// Open `cow` and its backing file (the header's, or `backing_override`), which must pass
    /// the kernel's size and mtime check.
    ///
    /// # Errors
    /// Not a COW file, a damaged header, a mismatching or missing backing file.
    pub fn open(cow: &Path, backing_override: Option<&Path>) -> Result<CowReader, CowError> {
        let file = open_disk(cow, false)?;
        let info = CowFile::from_file(cow, &file)?.ok_or_else(|| CowError::NotCow {
            path: cow.to_owned(),
        })?;
        let backing_path = backing_override
            .map(Path::to_owned)
            .unwrap_or_else(|| info.backing_path().to_owned());
        let backing = open_backing(&backing_path, false)?;
        info.check_backing_file(&backing_path, &backing)?;
        Ok(CowReader {
            info,
            cow: file,
            backing_path,
            backing,
        })
    }

    /// The COW file's header.
    pub fn cow(&self) -> &CowFile {
        &self.info
    }

    pub fn backing_path(&self) -> &Path {
        &self.backing_path
    }

    pub(crate) fn cow_handle(&self) -> &File {
        &self.cow
    }

    pub(crate) fn backing_handle(&self) -> &File {
        &self.backing
    }

    /// Size of the disk in bytes.
    pub fn size(&self) -> u64 {
        self.info.size()
    }

    /// Read disk bytes at `offset` into `buf`, like `pread`: returns how many were read,
    /// 0 at or past the end of the disk.
    ///
    /// # Errors
    /// A read of either file fails or comes up short (a file shrank since it was opened).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let size = self.info.size();
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let len = (size - offset).min(buf.len() as u64);
        let end = offset + len;
        let first = offset / SECTOR;
        let last = (end - 1) / SECTOR;
        let base = first / 8 * 8;
        let mut bitmap =
            vec![0u8; usize::try_from(last / 8 - first / 8 + 1).map_err(io::Error::other)?];
        self.cow
            .read_exact_at(&mut bitmap, self.info.bitmap_offset() + first / 8)?;
        for run in Runs::new(&bitmap, base, first, last + 1) {
            let a = (run.start * SECTOR).max(offset);
            let b = (run.end * SECTOR).min(end);
            let Some(dst) = buf.get_mut((a - offset) as usize..(b - offset) as usize) else {
                break;
            };
            if run.in_cow {
                self.cow.read_exact_at(dst, self.info.data_offset() + a)?;
            } else {
                self.backing.read_exact_at(dst, a)?;
            }
        }
        Ok(len as usize)
    }
}

/// A run of consecutive sectors `start..end` that are all in the COW file or all not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub in_cow: bool,
    pub start: u64,
    pub end: u64,
}

/// The runs of sectors `start..end`, given the bitmap bytes that begin at sector `base`
/// (a multiple of 8).
pub(crate) struct Runs<'a> {
    bitmap: &'a [u8],
    base: u64,
    pos: u64,
    end: u64,
}

impl<'a> Runs<'a> {
    pub fn new(bitmap: &'a [u8], base: u64, start: u64, end: u64) -> Runs<'a> {
        Runs {
            bitmap,
            base,
            pos: start,
            end,
        }
    }

    fn bit(&self, sector: u64) -> bool {
        CowFile::sector_in_cow(self.bitmap, sector - self.base)
    }
}

impl Iterator for Runs<'_> {
    type Item = Run;

    fn next(&mut self) -> Option<Run> {
        if self.pos >= self.end {
            return None;
        }
        let start = self.pos;
        let in_cow = self.bit(start);
        let whole = if in_cow { 0xFF } else { 0x00 };
        let mut s = start + 1;
        while s < self.end {
            let rel = s - self.base;
            // Skip whole bytes of equal bits.
            if rel.is_multiple_of(8)
                && s + 8 <= self.end
                && usize::try_from(rel / 8)
                    .ok()
                    .and_then(|i| self.bitmap.get(i))
                    == Some(&whole)
            {
                s += 8;
                continue;
            }
            if self.bit(s) != in_cow {
                break;
            }
            s += 1;
        }
        self.pos = s;
        Some(Run {
            in_cow,
            start,
            end: s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_follow_the_bitmap_lsb_first() {
        let bitmap = [0b0000_0110u8, 0xFF, 0x00, 0x01];
        let runs: Vec<_> = Runs::new(&bitmap, 0, 0, 32)
            .map(|r| (r.in_cow, r.start, r.end))
            .collect();
        assert_eq!(
            runs,
            vec![
                (false, 0, 1),
                (true, 1, 3),
                (false, 3, 8),
                (true, 8, 16),
                (false, 16, 24),
                (true, 24, 25),
                (false, 25, 32)
            ]
        );
        let runs: Vec<_> = Runs::new(&bitmap[1..], 8, 10, 20)
            .map(|r| (r.in_cow, r.start, r.end))
            .collect();
        assert_eq!(runs, vec![(true, 10, 16), (false, 16, 20)]);
    }
}
