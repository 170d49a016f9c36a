//! Directories: linear entry blocks, inline directories, and htree (hashed index) lookups.
//!
//! Listing is always a linear scan (it finds every name, also in indexed directories) and is
//! resumable: each entry carries the cookie to continue after it. Lookups use the htree when
//! the directory has one and fall back to a linear scan on any inconsistency.

use std::sync::Arc;

use super::bytes::{le16, le32};
use super::error::ExtError;
use super::hash::dx_hash;
use super::inode::{FL_CASEFOLD, FL_ENCRYPT, FL_INDEX, FileType, Inode};
use super::mapping::Run;
use super::superblock::{COMPAT_DIR_INDEX, INCOMPAT_FILETYPE, INCOMPAT_LARGEDIR};
use super::{BlockSource, Filesystem};

/// Superblock `s_flags` bit: directory hashes treat name bytes as unsigned.
const FLAG_UNSIGNED_HASH: u32 = 0x2;

/// Largest directory the reader accepts (ext4 allows 2 GiB, 4 GiB with `large_dir` and 1 KiB
/// blocks): a larger `i_size` is corruption or a bomb.
pub(crate) const MAX_DIR_BYTES: u64 = 1 << 32;
/// Directory bytes one request may walk (blocks parsed plus holes mapped, counted in blocks of
/// this size). A listing that reaches it returns what it found so far (the kernel asks again
/// from the last cookie); a lookup or a listing that found nothing is an error. Bounds the work
/// of a request whatever the extent tree maps, so every request ends.
pub(crate) const SCAN_BUDGET_BYTES: u64 = 64 << 20;

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The guest's inode number.
    pub ino: u64,
    pub name: Vec<u8>,
    /// The type recorded in the entry (`Unknown` without the `filetype` feature).
    pub file_type: FileType,
    /// Cookie to pass to [`Filesystem::read_dir`] to continue after this entry.
    pub next_offset: u64,
}

struct RawEntry<'a> {
    off: usize,
    ino: u32,
    rec_len: usize,
    name: &'a [u8],
    ftype: u8,
}

/// Walk the entries of one directory block (or inline area); `f` returns false to stop.
/// Returns whether the walk ran to the end.
fn parse_entries(
    ino: u64,
    blk: &[u8],
    big_blocks: bool,
    mut f: impl FnMut(RawEntry<'_>) -> bool,
) -> Result<bool, ExtError> {
    let corrupt = |reason| ExtError::CorruptDirectory { ino, reason };
    let mut off = 0usize;
    while off < blk.len() {
        if off + 8 > blk.len() {
            return Err(corrupt("a directory entry crosses the end of its block"));
        }
        let raw = le16(blk, off + 4);
        // 64 KiB blocks cannot store 65536 in 16 bits (fs/ext4/ext4.h ext4_rec_len_from_disk).
        let rec_len = if big_blocks {
            if raw == 65535 || raw == 0 {
                65536
            } else {
                usize::from(raw & 0xFFFC) | (usize::from(raw & 3) << 16)
            }
        } else {
            usize::from(raw)
        };
        if rec_len < 8 || rec_len % 4 != 0 || off + rec_len > blk.len() {
            return Err(corrupt("a directory entry has a bad record length"));
        }
        let eino = le32(blk, off);
        let name_len = usize::from(blk[off + 6]);
        if eino != 0 {
            if name_len == 0 || 8 + name_len > rec_len {
                return Err(corrupt("a directory entry's name does not fit its record"));
            }
            let entry = RawEntry {
                off,
                ino: eino,
                rec_len,
                name: &blk[off + 8..off + 8 + name_len],
                ftype: blk[off + 7],
            };
            if !f(entry) {
                return Ok(false);
            }
        }
        off += rec_len;
    }
    Ok(true)
}

impl<S: BlockSource> Filesystem<S> {
    /// List directory `dir` from cookie `offset` (0 = start, else an entry's `next_offset`),
    /// calling `f` for each entry until it returns false. "." and ".." are included.
    /// One call walks at most 64 MiB of the directory (`SCAN_BUDGET_BYTES`): a listing that
    /// stops there returns Ok after its last entry, to be continued from that entry's cookie.
    ///
    /// # Errors
    /// `NotADirectory`, `Encrypted`, a corrupt directory block, or a read error.
    pub fn read_dir(
        &self,
        dir: u64,
        offset: u64,
        f: impl FnMut(DirEntry) -> bool,
    ) -> Result<(), ExtError> {
        let inode = self.dir_inode(dir)?;
        self.scan_dir(&inode, offset, f).map(|_| ())
    }

    /// Find `name` in directory `dir`; returns its inode number.
    ///
    /// # Errors
    /// `NotADirectory`, `Encrypted`, a corrupt directory block, or a read error.
    pub fn lookup(&self, dir: u64, name: &[u8]) -> Result<Option<u64>, ExtError> {
        let inode = self.dir_inode(dir)?;
        if name.is_empty() || name.len() > 255 {
            return Ok(None);
        }
        if name == b"." {
            return Ok(Some(dir));
        }
        let indexed = inode.flags & FL_INDEX != 0
            && self.sb.has_compat(COMPAT_DIR_INDEX)
            && inode.flags & (FL_CASEFOLD | FL_ENCRYPT) == 0
            && !inode.is_inline()
            && name != b"..";
        if indexed {
            match self.htree_lookup(&inode, name) {
                Ok(found) => return Ok(found),
                Err(reason) => {
                    tracing::debug!(
                        dir,
                        reason,
                        "htree lookup failed; scanning the directory linearly"
                    );
                }
            }
        }
        let mut found = None;
        let complete = self.scan_dir(&inode, 0, |e| {
            if e.name == name {
                found = Some(e.ino);
                false
            } else {
                true
            }
        })?;
        if found.is_none() && !complete {
            return Err(ExtError::TooLarge {
                what: "the directory area a lookup may scan",
                ino: dir,
                size: inode.size,
                limit: SCAN_BUDGET_BYTES,
            });
        }
        Ok(found)
    }

    fn dir_inode(&self, dir: u64) -> Result<Inode, ExtError> {
        let inode = self.inode(dir)?;
        if inode.file_type != FileType::Directory {
            return Err(ExtError::NotADirectory { ino: dir });
        }
        if inode.flags & FL_ENCRYPT != 0 {
            return Err(ExtError::Encrypted { ino: dir });
        }
        if inode.size > MAX_DIR_BYTES {
            return Err(ExtError::TooLarge {
                what: "the directory",
                ino: dir,
                size: inode.size,
                limit: MAX_DIR_BYTES,
            });
        }
        Ok(inode)
    }

    /// Directory blocks one request may walk.
    fn scan_budget(&self) -> u64 {
        (SCAN_BUDGET_BYTES / self.bs).max(16)
    }

    fn entry_type(&self, t: u8) -> FileType {
        if self.sb.has_incompat(INCOMPAT_FILETYPE) {
            FileType::from_dirent(t)
        } else {
            FileType::Unknown
        }
    }

    fn dir_blocks(&self, inode: &Inode) -> u64 {
        inode.size.div_ceil(self.bs)
    }

    fn scan_dir(
        &self,
        inode: &Inode,
        offset: u64,
        mut f: impl FnMut(DirEntry) -> bool,
    ) -> Result<bool, ExtError> {
        let big = self.bs >= 65536;
        if inode.is_inline() {
            // Inline directories have no "." / ".." entries; i_block[0] is the parent
            // (fs/ext4/inline.c). Cookies: 0 ".", 1 "..", else the byte position of the
            // entry in i_block (4..60) followed by the system.data area (60..).
            let parent = u64::from(le32(&inode.i_block, 0));
            if offset == 0 && !f(self.synth(b".", inode.ino, 1)) {
                return Ok(true);
            }
            if offset <= 1 && !f(self.synth(b"..", parent, 4)) {
                return Ok(true);
            }
            let extra = self.inline_extra(inode)?;
            let areas: [(u64, &[u8]); 2] =
                [(4, inode.i_block.get(4..).unwrap_or(&[])), (60, &extra)];
            for (base, area) in areas {
                let more = parse_entries(inode.ino, area, big, |e| {
                    let pos = base + e.off as u64;
                    if pos < offset {
                        return true;
                    }
                    f(DirEntry {
                        ino: u64::from(e.ino),
                        name: e.name.to_vec(),
                        file_type: self.entry_type(e.ftype),
                        next_offset: pos + e.rec_len as u64,
                    })
                })?;
                if !more {
                    return Ok(true);
                }
            }
            return Ok(true);
        }
        let nblocks = self.dir_blocks(inode);
        let mut lblk = offset / self.bs;
        let mut budget = self.scan_budget();
        let mut emitted = false;
        while lblk < nblocks {
            if budget == 0 {
                if emitted {
                    // The caller continues from the last entry's cookie in a new request.
                    return Ok(false);
                }
                return Err(ExtError::TooLarge {
                    what: "the directory area walked by one request without finding an entry",
                    ino: inode.ino,
                    size: (lblk * self.bs).saturating_sub(offset),
                    limit: SCAN_BUDGET_BYTES,
                });
            }
            budget -= 1;
            let (pblk, len) = match self.map_run(inode, lblk)? {
                Run::Zero { len } => {
                    lblk = lblk.saturating_add(len);
                    continue;
                }
                Run::Mapped { pblk, len } => (pblk, len.min(nblocks - lblk).min(budget + 1)),
            };
            for k in 0..len {
                let blk = self.meta_block(pblk + k)?;
                let base = (lblk + k) * self.bs;
                let more = parse_entries(inode.ino, &blk, big, |e| {
                    let pos = base + e.off as u64;
                    if pos < offset {
                        return true;
                    }
                    emitted = true;
                    f(DirEntry {
                        ino: u64::from(e.ino),
                        name: e.name.to_vec(),
                        file_type: self.entry_type(e.ftype),
                        next_offset: pos + e.rec_len as u64,
                    })
                })?;
                if !more {
                    return Ok(true);
                }
            }
            budget = budget.saturating_sub(len.saturating_sub(1));
            lblk += len;
        }
        Ok(true)
    }

    fn synth(&self, name: &[u8], ino: u64, next: u64) -> DirEntry {
        DirEntry {
            ino,
            name: name.to_vec(),
            file_type: FileType::Directory,
            next_offset: next,
        }
    }

    fn dir_lblock(&self, inode: &Inode, lblk: u64) -> Result<Arc<[u8]>, &'static str> {
        if lblk >= self.dir_blocks(inode) {
            return Err("an index points past the end of the directory");
        }
        match self.map_run(inode, lblk) {
            Ok(Run::Mapped { pblk, .. }) => self
                .meta_block(pblk)
                .map_err(|_| "an index block cannot be read"),
            Ok(Run::Zero { .. }) => Err("an index points at a hole"),
            Err(_) => Err("the directory's block mapping is corrupt"),
        }
    }

    /// htree lookup (fs/ext4/namei.c dx_probe / ext4_htree_next_block). Any inconsistency
    /// returns Err with the reason, and the caller scans linearly.
    fn htree_lookup(&self, inode: &Inode, name: &[u8]) -> Result<Option<u64>, &'static str> {
        let bs = self.bs as usize;
        let root = self.dir_lblock(inode, 0)?;
        if le16(&root, 4) != 12 || root.get(0x1D) != Some(&8) {
            return Err("the index root is malformed");
        }
        let levels = usize::from(*root.get(0x1E).ok_or("short root")?);
        let max_levels = if self.sb.has_incompat(INCOMPAT_LARGEDIR) {
            3
        } else {
            2
        };
        if levels >= max_levels {
            return Err("the index is deeper than allowed");
        }
        let mut version = *root.get(0x1C).ok_or("short root")?;
        if version <= 2 && self.sb.flags & FLAG_UNSIGNED_HASH != 0 {
            version += 3;
        }
        let (h, _) = dx_hash(name, version, self.sb.hash_seed).ok_or("unknown hash version")?;
        let hash_at =
            |b: &[u8], eoff: usize, i: usize| if i == 0 { 0 } else { le32(b, eoff + 8 * i) };
        let child_at =
            |b: &[u8], eoff: usize, i: usize| u64::from(le32(b, eoff + 8 * i + 4) & 0x0FFF_FFFF);
        // path[level] = (block, entries offset, count, chosen index)
        let mut path: Vec<(Arc<[u8]>, usize, usize, usize)> = Vec::with_capacity(levels + 1);
        let mut block = root;
        let mut eoff = 0x20;
        let check_node = |b: &[u8], eoff: usize| -> Result<usize, &'static str> {
            let limit = usize::from(le16(b, eoff));
            let count = usize::from(le16(b, eoff + 2));
            if count == 0 || count > limit || eoff + limit * 8 > bs {
                return Err("an index node's count or limit is invalid");
            }
            Ok(count)
        };
        let mut leaf;
        loop {
            let count = check_node(&block, eoff)?;
            let (mut lo, mut hi) = (1usize, count);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if hash_at(&block, eoff, mid) <= h {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let idx = lo - 1;
            leaf = child_at(&block, eoff, idx);
            path.push((block.clone(), eoff, count, idx));
            if path.len() > levels {
                break;
            }
            block = self.dir_lblock(inode, leaf)?;
            if le32(&block, 0) != 0 {
                return Err("an index node is not an empty directory block");
            }
            eoff = 8;
        }
        let big = self.bs >= 65536;
        for _ in 0..self.dir_blocks(inode).min(self.scan_budget()) {
            let blk = self.dir_lblock(inode, leaf)?;
            let mut found = None;
            parse_entries(inode.ino, &blk, big, |e| {
                if e.name == name {
                    found = Some(u64::from(e.ino));
                    false
                } else {
                    true
                }
            })
            .map_err(|_| "a leaf block is corrupt")?;
            if found.is_some() {
                return Ok(found);
            }
            // Continue into the next leaf only while it holds the same hash (a collision
            // chain split over several leaves).
            let Some(level) = path.iter().rposition(|(_, _, count, idx)| idx + 1 < *count) else {
                return Ok(None);
            };
            path.truncate(level + 1);
            let (b, eo, _, idx) = path.last_mut().ok_or("empty path")?;
            *idx += 1;
            if hash_at(b, *eo, *idx) & !1 != h {
                return Ok(None);
            }
            let mut next = child_at(b, *eo, *idx);
            while path.len() <= levels {
                let node = self.dir_lblock(inode, next)?;
                let count = check_node(&node, 8)?;
                next = child_at(&node, 8, 0);
                path.push((node, 8, count, 0));
            }
            leaf = next;
        }
        Err("the index chain does not end")
    }
}
