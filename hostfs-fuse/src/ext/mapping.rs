//! Logical → physical block mapping: extent trees and classic block maps, and mapped reads.
//!
//! A lookup returns a *run*: the physical start and how many following logical blocks map
//! contiguously (or how long a hole is), so a large read costs one lookup and one `pread` per
//! contiguous piece, and a random access costs O(depth).

use super::bytes::{le16, le32};
use super::error::ExtError;
use super::inode::{FL_EXTENTS, Inode};
use super::{BlockSource, Filesystem};

const EXT_MAGIC: u16 = 0xF30A;
/// The kernel refuses extent trees deeper than 5 (EXT4_MAX_EXTENT_DEPTH).
const MAX_DEPTH: u16 = 5;
/// Logical block numbers are 32-bit in extent files.
const LBLK_LIMIT: u64 = 1 << 32;

/// A contiguous piece of a file's logical block space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    /// `len` blocks starting at physical block `pblk`.
    Mapped { pblk: u64, len: u64 },
    /// `len` blocks that read as zeros (a hole or an unwritten extent).
    Zero { len: u64 },
}

impl<S: BlockSource> Filesystem<S> {
    /// Map logical block `lblk` of `inode` to a run.
    pub(crate) fn map_run(&self, inode: &Inode, lblk: u64) -> Result<Run, ExtError> {
        let run = if inode.flags & FL_EXTENTS != 0 {
            self.map_extent(inode, lblk)?
        } else {
            self.map_blockmap(inode, lblk)?
        };
        if let Run::Mapped { pblk, len } = run {
            let end = pblk.checked_add(len);
            if pblk < u64::from(self.sb.first_data_block)
                || end.is_none_or(|e| e > self.sb.blocks_count)
            {
                return Err(ExtError::BlockOutOfRange {
                    ino: inode.ino,
                    block: pblk.saturating_add(len.saturating_sub(1)),
                    blocks_count: self.sb.blocks_count,
                });
            }
        }
        Ok(run)
    }

    fn map_extent(&self, inode: &Inode, lblk: u64) -> Result<Run, ExtError> {
        let corrupt = |reason| ExtError::CorruptMapping {
            ino: inode.ino,
            reason,
        };
        if lblk >= LBLK_LIMIT {
            return Ok(Run::Zero { len: 1 << 32 });
        }
        let mut upper = LBLK_LIMIT;
        // The root lives in the inode; deeper nodes are cached blocks.
        let mut block: Option<std::sync::Arc<[u8]>> = None;
        let mut expect_depth: Option<u16> = None;
        loop {
            let node: &[u8] = match &block {
                Some(b) => b,
                None => &inode.i_block,
            };
            if le16(node, 0) != EXT_MAGIC {
                return Err(corrupt("an extent node has a bad magic number"));
            }
            let entries = usize::from(le16(node, 2));
            let max = usize::from(le16(node, 4));
            let depth = le16(node, 6);
            if entries > max || 12 + 12 * max > node.len() {
                return Err(corrupt("an extent node has more entries than fit"));
            }
            match expect_depth {
                None if depth > MAX_DEPTH => {
                    return Err(corrupt("the extent tree is deeper than 5"));
                }
                Some(d) if d != depth => {
                    return Err(corrupt(
                        "an extent node's depth does not decrease by one per level",
                    ));
                }
                _ => {}
            }
            let key = |i: usize| u64::from(le32(node, 12 + 12 * i));
            // Last entry whose first logical block is <= lblk.
            let (mut lo, mut hi) = (0usize, entries);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if key(mid) <= lblk {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let next_start = if lo < entries {
                key(lo).min(upper)
            } else {
                upper
            };
            if lo == 0 {
                return Ok(Run::Zero {
                    len: next_start.saturating_sub(lblk).max(1),
                });
            }
            let i = lo - 1;
            let e = 12 + 12 * i;
            if depth == 0 {
                let start = key(i);
                let raw_len = le16(node, e + 4);
                let (len, unwritten) = if raw_len > 32768 {
                    (u64::from(raw_len - 32768), true)
                } else {
                    (u64::from(raw_len), false)
                };
                if len == 0 {
                    return Err(corrupt("an extent has length 0"));
                }
                let end = start + len;
                if lblk >= end {
                    return Ok(Run::Zero {
                        len: next_start.saturating_sub(lblk).max(1),
                    });
                }
                let avail = (end - lblk).min(upper.saturating_sub(lblk).max(1));
                if unwritten {
                    return Ok(Run::Zero { len: avail });
                }
                let pstart = u64::from(le32(node, e + 8)) | (u64::from(le16(node, e + 6)) << 32);
                return Ok(Run::Mapped {
                    pblk: pstart + (lblk - start),
                    len: avail,
                });
            }
            upper = next_start;
            let child = u64::from(le32(node, e + 4)) | (u64::from(le16(node, e + 8)) << 32);
            if child >= self.sb.blocks_count || child < u64::from(self.sb.first_data_block) {
                return Err(ExtError::BlockOutOfRange {
                    ino: inode.ino,
                    block: child,
                    blocks_count: self.sb.blocks_count,
                });
            }
            expect_depth = Some(depth - 1);
            block = Some(self.meta_block(child)?);
        }
    }

    fn map_blockmap(&self, inode: &Inode, lblk: u64) -> Result<Run, ExtError> {
        let p = self.bs / 4;
        let ptr = |i: u64| u64::from(le32(&inode.i_block, (i * 4) as usize));
        if lblk < 12 {
            let first = ptr(lblk);
            let mut len = 1;
            while lblk + len < 12 {
                let next = ptr(lblk + len);
                let contiguous = if first == 0 {
                    next == 0
                } else {
                    next == first + len
                };
                if !contiguous {
                    break;
                }
                len += 1;
            }
            return Ok(if first == 0 {
                Run::Zero { len }
            } else {
                Run::Mapped { pblk: first, len }
            });
        }
        let mut rel = lblk - 12;
        let mut span = p;
        for level in 1..=3u32 {
            if rel < span {
                return self.walk_indirect(inode, ptr(11 + u64::from(level)), level, rel);
            }
            rel -= span;
            span = span.saturating_mul(p);
        }
        Ok(Run::Zero { len: 1 << 32 })
    }

    /// Walk `levels` levels of indirect blocks from `blk` to entry `idx` of the subtree.
    fn walk_indirect(
        &self,
        inode: &Inode,
        mut blk: u64,
        levels: u32,
        mut idx: u64,
    ) -> Result<Run, ExtError> {
        let p = self.bs / 4;
        for level in (1..=levels).rev() {
            let span = p.pow(level - 1);
            if blk == 0 {
                // The whole remaining subtree is a hole.
                return Ok(Run::Zero {
                    len: (p.pow(level) - idx).max(1),
                });
            }
            if blk >= self.sb.blocks_count {
                return Err(ExtError::BlockOutOfRange {
                    ino: inode.ino,
                    block: blk,
                    blocks_count: self.sb.blocks_count,
                });
            }
            let data = self.meta_block(blk)?;
            let slot = idx / span;
            idx %= span;
            let at = |s: u64| u64::from(le32(&data, (s * 4) as usize));
            if level == 1 {
                let first = at(slot);
                let mut len = 1;
                while slot + len < p {
                    let next = at(slot + len);
                    let contiguous = if first == 0 {
                        next == 0
                    } else {
                        next == first + len
                    };
                    if !contiguous {
                        break;
                    }
                    len += 1;
                }
                return Ok(if first == 0 {
                    Run::Zero { len }
                } else {
                    Run::Mapped { pblk: first, len }
                });
            }
            blk = at(slot);
        }
        Ok(Run::Zero { len: 1 })
    }

    /// Fill `buf` with file data from byte `offset` (the caller has clipped it to the size).
    pub(crate) fn read_mapped(
        &self,
        inode: &Inode,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), ExtError> {
        let bs = self.bs;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let lblk = pos / bs;
            let within = pos % bs;
            let run = self.map_run(inode, lblk)?;
            let (len, pblk) = match run {
                Run::Mapped { pblk, len } => (len, Some(pblk)),
                Run::Zero { len } => (len, None),
            };
            let avail = len.saturating_mul(bs).saturating_sub(within);
            let chunk = avail.min((buf.len() - done) as u64) as usize;
            let dest = &mut buf[done..done + chunk];
            match pblk {
                Some(p) => self.read_phys(p, within as usize, dest)?,
                None => dest.fill(0),
            }
            done += chunk;
        }
        Ok(())
    }
}
