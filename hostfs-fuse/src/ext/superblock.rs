//! The ext superblock and group descriptors: parsing, validation and feature policy.
//!
//! Everything here reads raw little-endian bytes and checks every value the rest of the reader
//! relies on (block size, inode size, group geometry), so later code can compute offsets
//! without overflow.

use super::bytes::{le16, le32};
use super::checksum::{crc16, crc32c_raw};
use super::error::ExtError;

pub(crate) const COMPAT_HAS_JOURNAL: u32 = 0x4;
pub(crate) const COMPAT_DIR_INDEX: u32 = 0x20;
pub(crate) const COMPAT_SPARSE_SUPER2: u32 = 0x200;

pub(crate) const INCOMPAT_FILETYPE: u32 = 0x2;
pub(crate) const INCOMPAT_RECOVER: u32 = 0x4;
pub(crate) const INCOMPAT_META_BG: u32 = 0x10;
pub(crate) const INCOMPAT_64BIT: u32 = 0x80;
pub(crate) const INCOMPAT_CSUM_SEED: u32 = 0x2000;
pub(crate) const INCOMPAT_LARGEDIR: u32 = 0x4000;

pub(crate) const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
pub(crate) const RO_COMPAT_HUGE_FILE: u32 = 0x8;
pub(crate) const RO_COMPAT_GDT_CSUM: u32 = 0x10;
pub(crate) const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

const COMPAT_NAMES: &[(u32, &str)] = &[
    (0x1, "dir_prealloc"),
    (0x2, "imagic_inodes"),
    (0x4, "has_journal"),
    (0x8, "ext_attr"),
    (0x10, "resize_inode"),
    (0x20, "dir_index"),
    (0x40, "lazy_bg"),
    (0x80, "exclude_inode"),
    (0x100, "exclude_bitmap"),
    (0x200, "sparse_super2"),
    (0x400, "fast_commit"),
    (0x800, "stable_inodes"),
    (0x1000, "orphan_file"),
];

/// Incompatible features, with whether this reader handles them.
const INCOMPAT_NAMES: &[(u32, &str, bool)] = &[
    (0x1, "compression", false),
    (0x2, "filetype", true),
    (0x4, "needs_recovery", true),
    (0x8, "journal_dev", false),
    (0x10, "meta_bg", true),
    (0x40, "extent", true),
    (0x80, "64bit", true),
    (0x100, "mmp", true),
    (0x200, "flex_bg", true),
    (0x400, "ea_inode", true),
    (0x1000, "dirdata", false),
    (0x2000, "metadata_csum_seed", true),
    (0x4000, "large_dir", true),
    (0x8000, "inline_data", true),
    (0x10000, "encrypt", true),
    (0x20000, "casefold", true),
];

const RO_COMPAT_NAMES: &[(u32, &str)] = &[
    (0x1, "sparse_super"),
    (0x2, "large_file"),
    (0x4, "btree_dir"),
    (0x8, "huge_file"),
    (0x10, "uninit_bg"),
    (0x20, "dir_nlink"),
    (0x40, "extra_isize"),
    (0x80, "has_snapshot"),
    (0x100, "quota"),
    (0x200, "bigalloc"),
    (0x400, "metadata_csum"),
    (0x800, "replica"),
    (0x1000, "read-only"),
    (0x2000, "project"),
    (0x4000, "shared_blocks"),
    (0x8000, "verity"),
    (0x10000, "orphan_present"),
];

/// The three feature words of a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    pub compat: u32,
    pub incompat: u32,
    pub ro_compat: u32,
}

impl Features {
    /// Feature names as `dumpe2fs` prints them (unknown bits as `FEATURE_C12` style names).
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut push = |word: u32, table: &[(u32, &str)], prefix: char| {
            for bit in 0..32 {
                let m = 1u32 << bit;
                if word & m == 0 {
                    continue;
                }
                match table.iter().find(|(v, _)| *v == m) {
                    Some((_, n)) => out.push((*n).to_string()),
                    None => out.push(format!("FEATURE_{prefix}{bit}")),
                }
            }
        };
        push(self.compat, COMPAT_NAMES, 'C');
        let inc: Vec<(u32, &str)> = INCOMPAT_NAMES.iter().map(|(v, n, _)| (*v, *n)).collect();
        push(self.incompat, &inc, 'I');
        push(self.ro_compat, RO_COMPAT_NAMES, 'R');
        out
    }
}

/// The parts of the superblock the reader uses.
#[derive(Debug, Clone)]
pub(crate) struct Superblock {
    pub inodes_count: u32,
    pub blocks_count: u64,
    pub r_blocks_count: u64,
    pub free_blocks_count: u64,
    pub free_inodes_count: u32,
    pub first_data_block: u32,
    pub block_size: u32,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub creator_os: u32,
    pub first_ino: u32,
    pub inode_size: u32,
    pub features: Features,
    pub uuid: [u8; 16],
    pub volume_name: [u8; 16],
    pub journal_inum: u32,
    pub hash_seed: [u32; 4],
    pub desc_size: u32,
    pub first_meta_bg: u32,
    pub flags: u32,
    pub backup_bgs: [u32; 2],
    pub csum_seed: u32,
    pub group_count: u32,
}

impl Superblock {
    /// Parse and validate the 1024 superblock bytes.
    pub fn parse(sb: &[u8]) -> Result<Self, ExtError> {
        let magic = le16(sb, 0x38);
        if magic != 0xEF53 {
            return Err(ExtError::BadMagic { found: magic });
        }
        let bad = |field, value: u64, accepted| ExtError::BadSuperblock {
            field,
            value,
            accepted,
        };
        let incompat = le32(sb, 0x60);
        let features = Features {
            compat: le32(sb, 0x5C),
            incompat,
            ro_compat: le32(sb, 0x64),
        };
        let rev_level = le32(sb, 0x4C);
        if features.ro_compat & RO_COMPAT_METADATA_CSUM != 0 {
            let stored = le32(sb, 0x3FC);
            let computed = crc32c_raw(0xFFFF_FFFF, sb.get(..0x3FC).unwrap_or(&[]));
            if stored != computed {
                return Err(ExtError::SuperblockChecksum { stored, computed });
            }
        }
        let log_bs = le32(sb, 0x18);
        if log_bs > 6 {
            return Err(bad(
                "s_log_block_size",
                log_bs.into(),
                "0 to 6 (1 KiB to 64 KiB blocks)",
            ));
        }
        let block_size = 1024u32 << log_bs;
        let is64 = incompat & INCOMPAT_64BIT != 0;
        let mut blocks_count = u64::from(le32(sb, 0x04));
        let mut r_blocks_count = u64::from(le32(sb, 0x08));
        let mut free_blocks_count = u64::from(le32(sb, 0x0C));
        if is64 {
            blocks_count |= u64::from(le32(sb, 0x150)) << 32;
            r_blocks_count |= u64::from(le32(sb, 0x154)) << 32;
            free_blocks_count |= u64::from(le32(sb, 0x158)) << 32;
        }
        // Block numbers must stay addressable as byte offsets.
        if blocks_count == 0 || blocks_count > (u64::MAX >> 17) {
            return Err(bad("s_blocks_count", blocks_count, "1 to 2^47"));
        }
        let first_data_block = le32(sb, 0x14);
        if u64::from(first_data_block) >= blocks_count || first_data_block > 1 {
            return Err(bad(
                "s_first_data_block",
                first_data_block.into(),
                "0 or 1, below the block count",
            ));
        }
        let blocks_per_group = le32(sb, 0x20);
        if blocks_per_group == 0 {
            return Err(bad("s_blocks_per_group", 0, "more than 0"));
        }
        let inodes_per_group = le32(sb, 0x28);
        if inodes_per_group == 0 || u64::from(inodes_per_group) > u64::from(block_size) * 8 {
            return Err(bad(
                "s_inodes_per_group",
                inodes_per_group.into(),
                "1 to 8 × block size",
            ));
        }
        let (first_ino, inode_size) = if rev_level == 0 {
            (11, 128)
        } else {
            (le32(sb, 0x54), u32::from(le16(sb, 0x58)))
        };
        if inode_size < 128 || inode_size > block_size || !inode_size.is_power_of_two() {
            return Err(bad(
                "s_inode_size",
                inode_size.into(),
                "a power of two from 128 to the block size",
            ));
        }
        let desc_size = if is64 {
            let d = u32::from(le16(sb, 0xFE));
            if !(64..=1024).contains(&d) || !d.is_power_of_two() || d > block_size {
                return Err(bad(
                    "s_desc_size",
                    d.into(),
                    "a power of two from 64 to 1024",
                ));
            }
            d
        } else {
            32
        };
        let groups =
            (blocks_count - u64::from(first_data_block)).div_ceil(u64::from(blocks_per_group));
        let inodes_count = le32(sb, 0x00);
        if groups.checked_mul(u64::from(inodes_per_group)) != Some(u64::from(inodes_count)) {
            return Err(bad(
                "s_inodes_count",
                inodes_count.into(),
                "block groups × inodes per group",
            ));
        }
        let group_count =
            u32::try_from(groups).map_err(|_| bad("block group count", groups, "below 2^32"))?;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(sb.get(0x68..0x78).unwrap_or(&[0; 16]));
        let mut volume_name = [0u8; 16];
        volume_name.copy_from_slice(sb.get(0x78..0x88).unwrap_or(&[0; 16]));
        let hash_seed = [
            le32(sb, 0xEC),
            le32(sb, 0xF0),
            le32(sb, 0xF4),
            le32(sb, 0xF8),
        ];
        let csum_seed = if incompat & INCOMPAT_CSUM_SEED != 0 {
            le32(sb, 0x270)
        } else {
            crc32c_raw(0xFFFF_FFFF, &uuid)
        };
        Ok(Superblock {
            inodes_count,
            blocks_count,
            r_blocks_count,
            free_blocks_count,
            free_inodes_count: le32(sb, 0x10),
            first_data_block,
            block_size,
            blocks_per_group,
            inodes_per_group,
            creator_os: le32(sb, 0x48),
            first_ino,
            inode_size,
            features,
            uuid,
            volume_name,
            journal_inum: le32(sb, 0xE0),
            hash_seed,
            desc_size,
            first_meta_bg: le32(sb, 0x104),
            flags: le32(sb, 0x160),
            backup_bgs: [le32(sb, 0x24C), le32(sb, 0x250)],
            csum_seed,
            group_count,
        })
    }

    /// Refuse incompatible features this reader cannot handle, naming the first one.
    pub fn check_features(&self) -> Result<(), ExtError> {
        let inc = self.features.incompat;
        for bit in 0..32 {
            let m = 1u32 << bit;
            if inc & m == 0 {
                continue;
            }
            match INCOMPAT_NAMES.iter().find(|(v, _, _)| *v == m) {
                Some((_, _, true)) => {}
                Some((_, name, false)) => {
                    return Err(ExtError::UnsupportedFeature {
                        name: (*name).to_string(),
                    });
                }
                None => {
                    return Err(ExtError::UnsupportedFeature {
                        name: format!("FEATURE_I{bit} (unknown incompat bit {m:#x})"),
                    });
                }
            }
        }
        let unknown_ro =
            self.features.ro_compat & !RO_COMPAT_NAMES.iter().fold(0, |a, (v, _)| a | v);
        if unknown_ro != 0 {
            tracing::warn!(
                bits = unknown_ro,
                "unknown read-only-compatible features; reading anyway"
            );
        }
        Ok(())
    }

    pub fn has_incompat(&self, m: u32) -> bool {
        self.features.incompat & m != 0
    }

    pub fn has_compat(&self, m: u32) -> bool {
        self.features.compat & m != 0
    }

    pub fn has_ro_compat(&self, m: u32) -> bool {
        self.features.ro_compat & m != 0
    }

    /// Block holding byte 1024 (the primary superblock).
    pub fn sb_block(&self) -> u64 {
        if self.block_size == 1024 { 1 } else { 0 }
    }

    /// Whether group `g` carries a superblock backup (and so a descriptor copy).
    fn group_has_super(&self, g: u64) -> bool {
        if g == 0 {
            return true;
        }
        if self.has_compat(COMPAT_SPARSE_SUPER2) {
            return g == u64::from(self.backup_bgs[0]) || g == u64::from(self.backup_bgs[1]);
        }
        if g <= 1 || !self.has_ro_compat(RO_COMPAT_SPARSE_SUPER) {
            return true;
        }
        if g & 1 == 0 {
            return false;
        }
        [3u64, 5, 7].iter().any(|&p| {
            let mut x = p;
            while x < g {
                x = x.saturating_mul(p);
            }
            x == g
        })
    }

    /// Block number of descriptor-table block `i` (`i` = group / descriptors per block).
    pub fn desc_block(&self, i: u64) -> u64 {
        let per_block = u64::from(self.block_size / self.desc_size);
        if !self.has_incompat(INCOMPAT_META_BG) || i < u64::from(self.first_meta_bg) {
            return self.sb_block() + 1 + i;
        }
        let g = i * per_block;
        let mut b = u64::from(self.first_data_block) + g * u64::from(self.blocks_per_group);
        if self.group_has_super(g) {
            b += 1;
        }
        // bigalloc with 1 KiB blocks: first_data_block is 0 but group 0's superblock is block 1.
        if g == 0 && self.first_data_block == 0 && self.block_size == 1024 {
            b += 1;
        }
        b
    }
}

/// The parts of a group descriptor the reader uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupDesc {
    pub inode_table: u64,
    pub flags: u16,
    pub itable_unused: u32,
    pub free_blocks: u32,
    pub free_inodes: u32,
    /// Whether the descriptor's checksum matched (uninit hints are trusted only then).
    pub csum_ok: bool,
}

pub(crate) const BG_INODE_UNINIT: u16 = 0x1;

impl GroupDesc {
    pub fn parse(sb: &Superblock, g: u32, d: &[u8]) -> GroupDesc {
        let wide = sb.desc_size >= 64;
        let hi = |off: usize| if wide { le32(d, off) } else { 0 };
        let hi16 = |off: usize| if wide { u32::from(le16(d, off)) } else { 0 };
        let inode_table = u64::from(le32(d, 0x08)) | (u64::from(hi(0x28)) << 32);
        let stored = le16(d, 0x1E);
        let csum_ok = if sb.has_ro_compat(RO_COMPAT_METADATA_CSUM) {
            let mut c = crc32c_raw(sb.csum_seed, &g.to_le_bytes());
            c = crc32c_raw(c, d.get(..0x1E).unwrap_or(&[]));
            c = crc32c_raw(c, &[0, 0]);
            c = crc32c_raw(c, d.get(0x20..).unwrap_or(&[]));
            (c & 0xFFFF) as u16 == stored
        } else if sb.has_ro_compat(RO_COMPAT_GDT_CSUM) {
            let mut c = crc16(0xFFFF, &sb.uuid);
            c = crc16(c, &g.to_le_bytes());
            c = crc16(c, d.get(..0x1E).unwrap_or(&[]));
            c = crc16(c, d.get(0x20..).unwrap_or(&[]));
            c == stored
        } else {
            false
        };
        GroupDesc {
            inode_table,
            flags: le16(d, 0x12),
            itable_unused: u32::from(le16(d, 0x1C)) | (hi16(0x32) << 16),
            free_blocks: u32::from(le16(d, 0x0C)) | (hi16(0x2C) << 16),
            free_inodes: u32::from(le16(d, 0x0E)) | (hi16(0x2E) << 16),
            csum_ok,
        }
    }
}
