//! Where the reader gets its bytes from: a positional, thread-safe block source.
//!
//! The reader never seeks and never writes: every read is a `pread`-style call with its own
//! offset, so one source can serve several threads at once.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A read-only byte source holding a filesystem image (a file, or a copy-on-write view).
pub trait BlockSource: Send + Sync {
    /// Read up to `buf.len()` bytes at byte offset `off`; returns how many were read (0 at the
    /// end of the image). Must not move any shared position.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    /// Length of the image in bytes.
    fn len(&self) -> u64;
    /// Whether the image is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl BlockSource for File {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, off)
    }

    fn len(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

impl BlockSource for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        self.as_slice().read_at(buf, off)
    }

    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
}

impl BlockSource for &[u8] {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let Ok(start) = usize::try_from(off) else {
            return Ok(0);
        };
        let Some(rest) = self.get(start..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
}

impl<T: BlockSource + ?Sized> BlockSource for std::sync::Arc<T> {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        (**self).read_at(buf, off)
    }

    fn len(&self) -> u64 {
        (**self).len()
    }
}
