//! Extended attributes (in-inode area, xattr block, EA inodes) and inline data, which is
//! stored as the `system.data` attribute.

use std::sync::atomic::{AtomicU64, Ordering};

use super::bytes::{le16, le32};
use super::error::ExtError;
use super::inode::Inode;
use super::{BlockSource, Filesystem};

/// An extended attribute: full name (with its namespace prefix) and value.
pub type Xattr = (Vec<u8>, Vec<u8>);

const XATTR_MAGIC: u32 = 0xEA02_0000;
const INDEX_POSIX_ACL_ACCESS: u8 = 2;
const INDEX_POSIX_ACL_DEFAULT: u8 = 3;
const INDEX_SYSTEM: u8 = 7;

/// Largest value one attribute may have: the VFS's `XATTR_SIZE_MAX`, which no getxattr can
/// exceed anyway. Applies to values in EA inodes (in-block values are bounded by the block).
pub(crate) const MAX_XATTR_VALUE: u64 = 65536;
/// Most value bytes one request materialises from EA inodes (all attributes of an inode
/// together, as [`Filesystem::xattrs`] returns them).
pub(crate) const XATTR_REQUEST_BUDGET: u64 = 1 << 20;
/// Most EA-inode value bytes all requests on one filesystem hold at once.
pub(crate) const XATTR_MOUNT_BUDGET: u64 = 16 << 20;

/// Bytes of EA-inode values currently materialised, returned to the filesystem's budget on drop.
struct Reservation<'a> {
    pool: &'a AtomicU64,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.pool.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Where an attribute's value lives.
#[derive(Debug)]
enum RawValue {
    Bytes(Vec<u8>),
    /// In EA inode `inum`, `size` bytes (already checked against [`MAX_XATTR_VALUE`]).
    EaInode {
        inum: u32,
        size: u32,
    },
}

#[derive(Debug)]
struct RawXattr {
    index: u8,
    name: Vec<u8>,
    value: RawValue,
}

fn prefix(index: u8) -> Option<&'static [u8]> {
    Some(match index {
        0 => b"",
        1 => b"user.",
        2 => b"system.posix_acl_access",
        3 => b"system.posix_acl_default",
        4 => b"trusted.",
        5 => b"lustre.",
        6 => b"security.",
        7 => b"system.",
        8 => b"system.richacl",
        10 => b"gnu.",
        _ => return None,
    })
}

/// ext4 stores POSIX ACLs in a compact form (version 1, short entries for the owner/group/
/// mask/other tags); getxattr presents version 2 with 8-byte entries (fs/ext4/acl.c).
fn acl_to_vfs(v: &[u8]) -> Option<Vec<u8>> {
    if le32(v, 0) != 1 {
        return None;
    }
    let mut out = 2u32.to_le_bytes().to_vec();
    let mut off = 4;
    while off < v.len() {
        let tag = le16(v, off);
        let perm = le16(v, off + 2);
        let (id, step) = match tag {
            0x02 | 0x08 => {
                if off + 8 > v.len() {
                    return None;
                }
                (le32(v, off + 4), 8)
            }
            0x01 | 0x04 | 0x10 | 0x20 => (u32::MAX, 4),
            _ => return None,
        };
        if off + step > v.len() {
            return None;
        }
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
        off += step;
    }
    Some(out)
}

/// The name `listxattr` shows for `x`, or None for hidden and unknown namespaces.
fn full_name(x: &RawXattr) -> Option<Vec<u8>> {
    if x.index == INDEX_SYSTEM && x.name == b"data" {
        return None;
    }
    let mut name = prefix(x.index)?.to_vec();
    name.extend_from_slice(&x.name);
    Some(name)
}

impl<S: BlockSource> Filesystem<S> {
    /// All extended attributes of an inode as (full name, value), e.g. `user.color`.
    /// POSIX ACLs are converted to the form `getxattr` returns; inline data's internal
    /// `system.data` attribute is not listed (the kernel hides it too). Values held in EA
    /// inodes count against a per-request budget of 1 MiB (`XATTR_REQUEST_BUDGET`) and a
    /// per-filesystem one of 16 MiB (`XATTR_MOUNT_BUDGET`).
    ///
    /// # Errors
    /// A corrupt attribute area or block, a read error, or `TooLarge` when the values exceed a
    /// budget.
    pub fn xattrs(&self, ino: u64) -> Result<Vec<Xattr>, ExtError> {
        let inode = self.inode(ino)?;
        let raw = self.raw_xattrs(&inode)?;
        let ea_total: u64 = raw
            .iter()
            .map(|x| match x.value {
                RawValue::EaInode { size, .. } => u64::from(size),
                RawValue::Bytes(_) => 0,
            })
            .sum();
        if ea_total > XATTR_REQUEST_BUDGET {
            return Err(ExtError::TooLarge {
                what: "the extended attribute values in EA inodes",
                ino,
                size: ea_total,
                limit: XATTR_REQUEST_BUDGET,
            });
        }
        let _held = self.reserve_xattr_bytes(ino, ea_total)?;
        let mut out = Vec::new();
        for x in raw {
            let Some(name) = full_name(&x) else { continue };
            let value = self.materialise(&inode, x)?;
            out.push((name, value));
        }
        Ok(out)
    }

    /// The full names of an inode's extended attributes (what `listxattr` shows). No value is
    /// read.
    ///
    /// # Errors
    /// As [`Filesystem::xattrs`].
    pub fn xattr_names(&self, ino: u64) -> Result<Vec<Vec<u8>>, ExtError> {
        let inode = self.inode(ino)?;
        Ok(self
            .raw_xattrs(&inode)?
            .iter()
            .filter_map(full_name)
            .collect())
    }

    /// One extended attribute by full name; only its own value is read.
    ///
    /// # Errors
    /// As [`Filesystem::xattrs`].
    pub fn xattr(&self, ino: u64, name: &[u8]) -> Result<Option<Vec<u8>>, ExtError> {
        self.xattr_of(&self.inode(ino)?, name)
    }

    /// [`Filesystem::xattr`] of an inode already read.
    ///
    /// # Errors
    /// As [`Filesystem::xattrs`].
    pub fn xattr_of(&self, inode: &Inode, name: &[u8]) -> Result<Option<Vec<u8>>, ExtError> {
        let ino = inode.ino;
        let Some(x) = self
            .raw_xattrs(inode)?
            .into_iter()
            .find(|x| full_name(x).as_deref() == Some(name))
        else {
            return Ok(None);
        };
        let size = match x.value {
            RawValue::EaInode { size, .. } => u64::from(size),
            RawValue::Bytes(_) => 0,
        };
        let _held = self.reserve_xattr_bytes(ino, size)?;
        self.materialise(inode, x).map(Some)
    }

    /// Take `bytes` from the filesystem-wide budget of materialised EA-inode values.
    fn reserve_xattr_bytes(&self, ino: u64, bytes: u64) -> Result<Reservation<'_>, ExtError> {
        let pool = &self.xattr_inflight;
        let mut cur = pool.load(Ordering::Acquire);
        loop {
            let next = cur.saturating_add(bytes);
            if next > XATTR_MOUNT_BUDGET {
                return Err(ExtError::TooLarge {
                    what: "the extended attribute values being read at once",
                    ino,
                    size: next,
                    limit: XATTR_MOUNT_BUDGET,
                });
            }
            match pool.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(Reservation { pool, bytes }),
                Err(now) => cur = now,
            }
        }
    }

    /// The value of `x` as getxattr returns it (EA inodes read, ACLs converted).
    fn materialise(&self, inode: &Inode, x: RawXattr) -> Result<Vec<u8>, ExtError> {
        let ino = inode.ino;
        let corrupt = |reason| ExtError::CorruptXattr { ino, reason };
        let value = match x.value {
            RawValue::Bytes(v) => v,
            RawValue::EaInode { inum, size } => {
                let ea = self.inode(u64::from(inum))?;
                if ea.ino == ino {
                    return Err(corrupt("an xattr value points at its own inode"));
                }
                let mut v = vec![0u8; size as usize];
                let n = self.read_inode_data(&ea, 0, &mut v)?;
                if n != v.len() {
                    return Err(corrupt("an EA inode is shorter than its value"));
                }
                v
            }
        };
        if x.index == INDEX_POSIX_ACL_ACCESS || x.index == INDEX_POSIX_ACL_DEFAULT {
            return acl_to_vfs(&value).ok_or(corrupt("a POSIX ACL is not in the ext4 format"));
        }
        Ok(value)
    }

    fn raw_xattrs(&self, inode: &Inode) -> Result<Vec<RawXattr>, ExtError> {
        let mut out = Vec::new();
        let area = &inode.xattr_area;
        if le32(area, 0) == XATTR_MAGIC {
            let entries = area.get(4..).unwrap_or(&[]);
            self.parse_entries(inode.ino, entries, 0, 0, &mut out, true)?;
        }
        if inode.file_acl != 0 {
            let b = inode.file_acl;
            if b >= self.sb.blocks_count {
                return Err(ExtError::BlockOutOfRange {
                    ino: inode.ino,
                    block: b,
                    blocks_count: self.sb.blocks_count,
                });
            }
            let blk = self.meta_block(b)?;
            if le32(&blk, 0) != XATTR_MAGIC || le32(&blk, 8) != 1 {
                return Err(ExtError::CorruptXattr {
                    ino: inode.ino,
                    reason: "the xattr block has a bad magic number or block count",
                });
            }
            self.parse_entries(inode.ino, &blk, 0x20, 0, &mut out, true)?;
        }
        Ok(out)
    }

    /// Parse entries of `area` from `start`; value offsets are relative to `value_base`.
    fn parse_entries(
        &self,
        ino: u64,
        area: &[u8],
        start: usize,
        value_base: usize,
        out: &mut Vec<RawXattr>,
        follow_ea: bool,
    ) -> Result<(), ExtError> {
        let corrupt = |reason| ExtError::CorruptXattr { ino, reason };
        let mut off = start;
        while off + 4 <= area.len() && le32(area, off) != 0 {
            if off + 16 > area.len() {
                return Err(corrupt("an xattr entry crosses the end of its area"));
            }
            let name_len = usize::from(area[off]);
            let index = area[off + 1];
            let voffs = usize::from(le16(area, off + 2));
            let vinum = le32(area, off + 4);
            let vsize = le32(area, off + 8) as usize;
            let name = area
                .get(off + 16..off + 16 + name_len)
                .ok_or(corrupt("an xattr name crosses the end of its area"))?
                .to_vec();
            let value = if vinum != 0 && !follow_ea {
                // Inline data never lives in an EA inode; not following references while
                // reading it also rules out EA inodes that reference each other.
                RawValue::Bytes(Vec::new())
            } else if vinum != 0 {
                if vsize as u64 > MAX_XATTR_VALUE {
                    return Err(ExtError::TooLarge {
                        what: "an xattr value",
                        ino,
                        size: vsize as u64,
                        limit: MAX_XATTR_VALUE,
                    });
                }
                RawValue::EaInode {
                    inum: vinum,
                    size: vsize as u32,
                }
            } else {
                let s = value_base + voffs;
                RawValue::Bytes(
                    area.get(s..s.saturating_add(vsize))
                        .ok_or(corrupt("an xattr value lies outside its area"))?
                        .to_vec(),
                )
            };
            out.push(RawXattr { index, name, value });
            off += (16 + name_len + 3) & !3;
        }
        Ok(())
    }

    /// The whole contents of an inline-data inode: i_block, then the `system.data` value.
    pub(crate) fn inline_data(&self, inode: &Inode) -> Result<Vec<u8>, ExtError> {
        let head = (inode.size.min(60)) as usize;
        let mut data = inode.i_block.get(..head).unwrap_or(&[]).to_vec();
        if inode.size > 60 {
            let area = &inode.xattr_area;
            let mut xs = Vec::new();
            if le32(area, 0) == XATTR_MAGIC {
                self.parse_entries(
                    inode.ino,
                    area.get(4..).unwrap_or(&[]),
                    0,
                    0,
                    &mut xs,
                    false,
                )?;
            }
            if let Some(x) = xs
                .into_iter()
                .find(|x| x.index == INDEX_SYSTEM && x.name == b"data")
                && let RawValue::Bytes(v) = x.value
            {
                data.extend_from_slice(&v);
            }
        }
        Ok(data)
    }

    /// The `system.data` area of an inline directory (entries after the first 60 bytes).
    pub(crate) fn inline_extra(&self, inode: &Inode) -> Result<Vec<u8>, ExtError> {
        let area = &inode.xattr_area;
        let mut xs = Vec::new();
        if le32(area, 0) == XATTR_MAGIC {
            self.parse_entries(
                inode.ino,
                area.get(4..).unwrap_or(&[]),
                0,
                0,
                &mut xs,
                false,
            )?;
        }
        Ok(xs
            .into_iter()
            .find(|x| x.index == INDEX_SYSTEM && x.name == b"data")
            .and_then(|x| match x.value {
                RawValue::Bytes(v) => Some(v),
                RawValue::EaInode { .. } => None,
            })
            .unwrap_or_default())
    }
}
