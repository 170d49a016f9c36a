//! A read-only ext2/ext3/ext4 reader with in-memory journal replay.
//!
//! Guarantees:
//! * **Never writes.** The image is only read through a [`BlockSource`] (positional reads, no
//!   locks, no shared seek position). A dirty journal is replayed into an in-memory overlay
//!   (filesystem block → journal copy), so a running guest's committed changes are visible.
//! * **Untrusted input.** Every length, pointer, loop and allocation is bounded; a corrupt or
//!   truncated image gives an [`ExtError`], never a panic, a hang or a read outside the image.
//! * **Concurrent.** [`Filesystem`] is `Send + Sync`; reads from many threads share a small
//!   sharded cache of metadata blocks. Random access inside a file costs O(tree depth), and
//!   contiguous file blocks are read with one `pread`.
//!
//! * **A point in time.** The journal overlay and the superblock are read at open, and
//!   metadata blocks are cached: a guest that keeps writing is seen as of the moment of
//!   [`Filesystem::open`]. Open again to see later commits.
//!
//! Layouts follow the ext4 on-disk format; kernel quirks are noted where they are handled.

mod bytes;
mod cache;
mod checksum;
mod dir;
mod error;
mod hash;
mod inode;
mod journal;
mod mapping;
mod source;
mod superblock;
mod xattr;

use std::collections::HashMap;
use std::sync::Arc;

pub use dir::DirEntry;
pub use error::{ExtError, JournalError};
pub use inode::{FileType, Inode, Timestamp};
pub use journal::JournalReplayInfo;
pub use source::BlockSource;
pub use superblock::Features;
pub use xattr::Xattr;

use cache::{BlockCache, DescMemo};
use inode::FL_ENCRYPT;
use superblock::{
    BG_INODE_UNINIT, COMPAT_HAS_JOURNAL, GroupDesc, INCOMPAT_RECOVER, RO_COMPAT_GDT_CSUM,
    RO_COMPAT_METADATA_CSUM, Superblock,
};

/// The root directory's inode number.
pub const ROOT_INO: u64 = 2;

/// Longest group descriptor table `statfs` sums free counts over (2 TiB of 4 KiB blocks with
/// 64-byte descriptors); beyond it the superblock's counts are shown.
const MAX_STATFS_DESC_BLOCKS: u64 = 256;

/// How a filesystem is opened.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Replay a dirty journal in memory (default). When false, a filesystem that needs
    /// recovery is read as its stale on-disk metadata.
    pub replay_journal: bool,
    /// Upper bound of the metadata block cache in bytes.
    pub cache_bytes: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            replay_journal: true,
            cache_bytes: 8 << 20,
        }
    }
}

/// Filesystem-wide counts, as `statfs` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub block_size: u32,
    pub blocks: u64,
    pub blocks_free: u64,
    /// Free blocks minus the blocks reserved for root.
    pub blocks_available: u64,
    pub files: u64,
    pub files_free: u64,
    pub name_max: u32,
}

/// Where the current copy of a replayed block lives: an image block of the journal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OverlayBlock {
    pub phys: u64,
    pub escape: bool,
}

/// An open ext2/ext3/ext4 filesystem image, read-only.
#[derive(Debug)]
pub struct Filesystem<S: BlockSource> {
    src: S,
    image_len: u64,
    sb: Superblock,
    bs: u64,
    /// Free (blocks, inodes) summed over the descriptors, computed at the first `statfs`.
    free_counts: std::sync::OnceLock<Option<(u64, u64)>>,
    overlay: HashMap<u64, OverlayBlock>,
    cache: BlockCache,
    descs: DescMemo<GroupDesc>,
    journal: Option<JournalReplayInfo>,
    /// EA-inode value bytes materialised by requests in flight (bounded, see xattr.rs).
    xattr_inflight: std::sync::atomic::AtomicU64,
}

impl<S: BlockSource> Filesystem<S> {
    /// Open an image, replaying a dirty journal in memory.
    ///
    /// # Errors
    /// A missing or corrupt superblock or descriptor table, an incompatible feature this reader
    /// does not handle (named in the error), or a journal that needs replay but cannot be.
    pub fn open(src: S) -> Result<Self, ExtError> {
        Self::open_with(src, OpenOptions::default())
    }

    /// Open an image with explicit options.
    ///
    /// # Errors
    /// As [`Filesystem::open`].
    pub fn open_with(src: S, opts: OpenOptions) -> Result<Self, ExtError> {
        let image_len = src.len();
        let fs = Self::assemble(src, image_len, HashMap::new(), opts.cache_bytes)?;
        if !fs.sb.has_compat(COMPAT_HAS_JOURNAL) {
            return Ok(fs);
        }
        let needs_recovery = fs.sb.has_incompat(INCOMPAT_RECOVER);
        if !needs_recovery || !opts.replay_journal {
            if needs_recovery {
                tracing::warn!(
                    "journal replay disabled: reading stale metadata of a dirty filesystem"
                );
            }
            let mut fs = fs;
            fs.journal = Some(JournalReplayInfo::clean(needs_recovery));
            return Ok(fs);
        }
        let replay = journal::replay(&fs)?;
        let Filesystem { src, .. } = fs;
        let mut fs = Self::assemble(src, image_len, replay.overlay, opts.cache_bytes)?;
        fs.journal = Some(replay.info);
        Ok(fs)
    }

    fn assemble(
        src: S,
        image_len: u64,
        overlay: HashMap<u64, OverlayBlock>,
        cache_bytes: usize,
    ) -> Result<Self, ExtError> {
        let mut raw = vec![0u8; 1024];
        read_exact(&src, image_len, &mut raw, 1024)?;
        let mut sb = Superblock::parse(&raw)?;
        let mut fs = Filesystem {
            src,
            image_len,
            bs: u64::from(sb.block_size),
            cache: BlockCache::new(cache_bytes, sb.block_size as usize),
            descs: DescMemo::new(),
            sb: sb.clone(),
            free_counts: std::sync::OnceLock::new(),
            overlay,
            journal: None,
            xattr_inflight: std::sync::atomic::AtomicU64::new(0),
        };
        if fs.overlay.contains_key(&sb.sb_block()) {
            let blk = fs.read_block(sb.sb_block())?;
            let start = (1024 % fs.bs) as usize;
            let replayed = Superblock::parse(blk.get(start..start + 1024).unwrap_or(&[]))?;
            if replayed.block_size != sb.block_size {
                return Err(ExtError::BadSuperblock {
                    field: "s_log_block_size after journal replay",
                    value: replayed.block_size.into(),
                    accepted: "the block size of the on-disk superblock",
                });
            }
            sb = replayed;
            fs.sb = sb.clone();
        }
        sb.check_features()?;
        let groups = u64::from(sb.group_count);
        let desc_bytes = groups * u64::from(sb.desc_size);
        if desc_bytes > image_len {
            return Err(ExtError::BadSuperblock {
                field: "block group count",
                value: groups,
                accepted: "a descriptor table that fits in the image",
            });
        }
        // Descriptors are read when an inode of their group is (through the block cache),
        // so memory and time follow what is used, not what the superblock declares. The first
        // one is checked now: every filesystem has group 0.
        fs.group(0)?;
        Ok(fs)
    }

    /// Descriptor of group `g`, read through the block cache.
    fn group(&self, g: u64) -> Result<GroupDesc, ExtError> {
        let sb = &self.sb;
        if g >= u64::from(sb.group_count) {
            return Err(ExtError::BadSuperblock {
                field: "block group number",
                value: g,
                accepted: "below the group count",
            });
        }
        let per_block = u64::from(sb.block_size / sb.desc_size);
        let b = sb.desc_block(g / per_block);
        if b >= sb.blocks_count {
            return Err(ExtError::BadSuperblock {
                field: "group descriptor block",
                value: b,
                accepted: "a block inside the filesystem",
            });
        }
        if let Some(d) = self.descs.get(g) {
            return Ok(d);
        }
        let blk = self.meta_block(b)?;
        let off = ((g % per_block) * u64::from(sb.desc_size)) as usize;
        let d = blk.get(off..off + sb.desc_size as usize).unwrap_or(&[]);
        let d = GroupDesc::parse(sb, g as u32, d);
        self.descs.put(g, d);
        Ok(d)
    }

    /// Free blocks and inodes summed over the group descriptors, when the table is at most
    /// [`MAX_STATFS_DESC_BLOCKS`] blocks long (None otherwise, or when one cannot be read).
    fn summed_free_counts(&self) -> Option<(u64, u64)> {
        let sb = &self.sb;
        let groups = u64::from(sb.group_count);
        let per_block = u64::from(sb.block_size / sb.desc_size);
        if groups.div_ceil(per_block) > MAX_STATFS_DESC_BLOCKS {
            return None;
        }
        let (mut blocks, mut inodes) = (0u64, 0u64);
        for g in 0..groups {
            let d = self.group(g).ok()?;
            blocks += u64::from(d.free_blocks);
            inodes += u64::from(d.free_inodes);
        }
        Some((blocks, inodes))
    }

    /// The root directory's inode number (2).
    pub fn root(&self) -> u64 {
        ROOT_INO
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.sb.block_size
    }

    /// The feature words of the (replayed) superblock.
    pub fn features(&self) -> Features {
        self.sb.features
    }

    /// The filesystem UUID.
    pub fn uuid(&self) -> [u8; 16] {
        self.sb.uuid
    }

    /// The volume label, without padding.
    pub fn volume_name(&self) -> Vec<u8> {
        let n = self
            .sb
            .volume_name
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(16);
        self.sb.volume_name.get(..n).unwrap_or(&[]).to_vec()
    }

    /// What the journal replay did; `None` when the filesystem has no journal.
    pub fn journal_info(&self) -> Option<&JournalReplayInfo> {
        self.journal.as_ref()
    }

    /// Filesystem-wide counts. Free counts are summed from the group descriptors, which the
    /// kernel keeps current (the superblock's copies are only refreshed at unmount).
    pub fn statfs(&self) -> StatFs {
        let (free_blocks, free_inodes) = self
            .free_counts
            .get_or_init(|| self.summed_free_counts())
            .unwrap_or((
                self.sb.free_blocks_count,
                u64::from(self.sb.free_inodes_count),
            ));
        let free_blocks = free_blocks.min(self.sb.blocks_count);
        StatFs {
            block_size: self.sb.block_size,
            blocks: self.sb.blocks_count,
            blocks_free: free_blocks,
            blocks_available: free_blocks.saturating_sub(self.sb.r_blocks_count),
            files: u64::from(self.sb.inodes_count),
            files_free: free_inodes.min(u64::from(self.sb.inodes_count)),
            name_max: 255,
        }
    }

    /// Read an inode's attributes.
    ///
    /// # Errors
    /// `InodeOutOfRange`, `InodeNotAllocated`, `CorruptInode`, or an I/O error.
    pub fn inode(&self, ino: u64) -> Result<Inode, ExtError> {
        let sb = &self.sb;
        if ino == 0 || ino > u64::from(sb.inodes_count) {
            return Err(ExtError::InodeOutOfRange {
                ino,
                count: sb.inodes_count,
            });
        }
        let ipg = u64::from(sb.inodes_per_group);
        let g = (ino - 1) / ipg;
        let idx = (ino - 1) % ipg;
        let gd = self.group(g).map_err(|e| match e {
            ExtError::BadSuperblock { .. } => ExtError::InodeOutOfRange {
                ino,
                count: sb.inodes_count,
            },
            e => e,
        })?;
        let uninit_hints =
            sb.has_ro_compat(RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM) && gd.csum_ok;
        if uninit_hints
            && (gd.flags & BG_INODE_UNINIT != 0
                || idx >= ipg.saturating_sub(u64::from(gd.itable_unused)))
        {
            return Err(ExtError::InodeNotAllocated { ino });
        }
        let isz = u64::from(sb.inode_size);
        let off = idx * isz;
        let blk = gd.inode_table.saturating_add(off / self.bs);
        if blk >= sb.blocks_count {
            return Err(ExtError::BlockOutOfRange {
                ino,
                block: blk,
                blocks_count: sb.blocks_count,
            });
        }
        let block = self.meta_block(blk)?;
        let within = (off % self.bs) as usize;
        let rec = block
            .get(within..within + isz as usize)
            .ok_or(ExtError::CorruptInode {
                ino,
                reason: "the inode record crosses its block",
            })?;
        let inode = Inode::parse(sb, ino, rec)?;
        if inode.mode == 0
            && inode.nlink == 0
            && (ino >= u64::from(sb.first_ino) || ino == ROOT_INO)
        {
            return Err(ExtError::InodeNotAllocated { ino });
        }
        Ok(inode)
    }

    /// Read file data at `offset` into `buf`; returns the number of bytes read (0 at or past
    /// the end). Holes and preallocated (unwritten) extents read as zeros.
    ///
    /// # Errors
    /// `IsADirectory`, `Encrypted`, a corrupt mapping, or an I/O error.
    pub fn read(&self, ino: u64, offset: u64, buf: &mut [u8]) -> Result<usize, ExtError> {
        let inode = self.inode(ino)?;
        if inode.file_type == FileType::Directory {
            return Err(ExtError::IsADirectory { ino });
        }
        self.read_inode_data(&inode, offset, buf)
    }

    /// The same as [`Filesystem::read`] for an inode already looked up.
    ///
    /// # Errors
    /// As [`Filesystem::read`].
    pub fn read_inode_data(
        &self,
        inode: &Inode,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, ExtError> {
        if inode.flags & FL_ENCRYPT != 0 {
            return Err(ExtError::Encrypted { ino: inode.ino });
        }
        match inode.file_type {
            FileType::Regular | FileType::Directory | FileType::Symlink => {}
            _ => return Ok(0),
        }
        if offset >= inode.size || buf.is_empty() {
            return Ok(0);
        }
        let n = (inode.size - offset).min(buf.len() as u64) as usize;
        let buf = &mut buf[..n];
        if inode.is_inline() {
            let data = self.inline_data(inode)?;
            let start = offset as usize;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = data.get(start + i).copied().unwrap_or(0);
            }
            return Ok(n);
        }
        self.read_mapped(inode, offset, buf)?;
        Ok(n)
    }

    /// The target of a symbolic link.
    ///
    /// # Errors
    /// `NotASymlink`, `TooLarge`, or a read error.
    pub fn read_link(&self, ino: u64) -> Result<Vec<u8>, ExtError> {
        let inode = self.inode(ino)?;
        if inode.file_type != FileType::Symlink {
            return Err(ExtError::NotASymlink { ino });
        }
        if inode.size > 65536 {
            return Err(ExtError::TooLarge {
                what: "the symlink target",
                ino,
                size: inode.size,
                limit: 65536,
            });
        }
        if inode.flags & FL_ENCRYPT != 0 {
            return Err(ExtError::Encrypted { ino });
        }
        // Inline first, then fast (target in i_block, size < 60, as e2fsprogs decides), then
        // slow (target in data block 0).
        if !inode.is_inline() && inode.size < 60 {
            return Ok(inode
                .i_block
                .get(..inode.size as usize)
                .unwrap_or(&[])
                .to_vec());
        }
        let mut buf = vec![0u8; inode.size as usize];
        let n = self.read_inode_data(&inode, 0, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    // ----- block access -----

    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> Result<(), ExtError> {
        read_exact(&self.src, self.image_len, buf, off)
    }

    /// Read one filesystem block, through the journal overlay, uncached.
    fn read_block(&self, b: u64) -> Result<Arc<[u8]>, ExtError> {
        let mut buf = vec![0u8; self.bs as usize];
        self.read_block_into(b, &mut buf)?;
        Ok(buf.into())
    }

    fn read_block_into(&self, b: u64, buf: &mut [u8]) -> Result<(), ExtError> {
        match self.overlay.get(&b) {
            Some(o) => {
                self.read_exact_at(buf, o.phys * self.bs)?;
                // jbd2 zeroes a logged block's leading magic and flags the tag ESCAPE.
                if o.escape
                    && let Some(head) = buf.get_mut(..4)
                {
                    head.copy_from_slice(&journal::JBD2_MAGIC.to_be_bytes());
                }
                Ok(())
            }
            None => self.read_exact_at(buf, b.saturating_mul(self.bs)),
        }
    }

    /// A metadata block through the overlay and the cache.
    pub(crate) fn meta_block(&self, b: u64) -> Result<Arc<[u8]>, ExtError> {
        if let Some(hit) = self.cache.get(b) {
            return Ok(hit);
        }
        let data = self.read_block(b)?;
        self.cache.insert(b, data.clone());
        Ok(data)
    }

    /// Read `dest.len()` bytes starting `within` bytes into physical block `pblk`, coalescing
    /// blocks that are not replaced by the journal into single reads.
    fn read_phys(&self, pblk: u64, within: usize, dest: &mut [u8]) -> Result<(), ExtError> {
        if self.overlay.is_empty() {
            return self.read_exact_at(dest, pblk * self.bs + within as u64);
        }
        let bs = self.bs as usize;
        let mut done = 0;
        let mut blk = pblk;
        let mut skip = within;
        while done < dest.len() {
            let chunk = (bs - skip).min(dest.len() - done);
            if self.overlay.contains_key(&blk) {
                let data = self.read_block(blk)?;
                dest[done..done + chunk]
                    .copy_from_slice(data.get(skip..skip + chunk).unwrap_or(&[]));
                done += chunk;
                blk += 1;
                skip = 0;
                continue;
            }
            // Extend over following blocks that are not in the overlay.
            let mut len = chunk;
            let mut next = blk + 1;
            while done + len < dest.len() && !self.overlay.contains_key(&next) {
                len += bs.min(dest.len() - done - len);
                next += 1;
            }
            self.read_exact_at(&mut dest[done..done + len], blk * self.bs + skip as u64)?;
            done += len;
            blk = next;
            skip = 0;
        }
        Ok(())
    }
}

fn read_exact<S: BlockSource>(
    src: &S,
    image_len: u64,
    buf: &mut [u8],
    off: u64,
) -> Result<(), ExtError> {
    let len = buf.len() as u64;
    if off.checked_add(len).is_none_or(|end| end > image_len) {
        return Err(ExtError::OutsideImage {
            offset: off,
            len,
            image_len,
        });
    }
    let mut done = 0;
    while done < buf.len() {
        match src.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => {
                return Err(ExtError::OutsideImage {
                    offset: off,
                    len,
                    image_len,
                });
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ExtError::Io {
                    offset: off,
                    len: buf.len(),
                    source,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn image(opts: &[&str]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("t.img");
        let st = Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4"])
            .args(opts)
            .arg(&img)
            .arg("64M")
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::read(&img).unwrap()
    }

    #[test]
    fn descriptor_checksums_of_fresh_images_verify() {
        // crc16 (uninit_bg) and crc32c (metadata_csum) descriptors, 32- and 64-byte.
        for opts in [
            &["-O", "^metadata_csum,^64bit,uninit_bg"][..],
            &["-O", "^metadata_csum,uninit_bg"][..],
            &[][..],
        ] {
            let fs = Filesystem::open(image(opts)).unwrap();
            let n = u64::from(fs.sb.group_count);
            assert!(n > 1);
            assert!((0..n).all(|g| fs.group(g).unwrap().csum_ok), "{opts:?}");
            // Never-used inodes of uninitialised tables are reported as unallocated.
            let last = u64::from(fs.sb.inodes_count);
            assert!(
                matches!(fs.inode(last), Err(ExtError::InodeNotAllocated { .. })),
                "{opts:?}"
            );
        }
    }
}
