//! Inode records: attributes as a stat call would show them, decoded from the raw record.

use super::bytes::{le16, le32};
use super::error::ExtError;
use super::superblock::{INCOMPAT_64BIT, INCOMPAT_LARGEDIR, RO_COMPAT_HUGE_FILE, Superblock};

pub(crate) const FL_ENCRYPT: u32 = 0x800;
pub(crate) const FL_INDEX: u32 = 0x1000;
pub(crate) const FL_HUGE_FILE: u32 = 0x40000;
pub(crate) const FL_EXTENTS: u32 = 0x80000;
pub(crate) const FL_INLINE_DATA: u32 = 0x1000_0000;
pub(crate) const FL_CASEFOLD: u32 = 0x4000_0000;

/// The kind of file an inode or directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    /// A directory entry without a type (no `filetype` feature) or an invalid mode.
    Unknown,
}

impl FileType {
    pub(crate) fn from_mode(mode: u16) -> FileType {
        match mode & 0xF000 {
            0x1000 => FileType::Fifo,
            0x2000 => FileType::CharDevice,
            0x4000 => FileType::Directory,
            0x6000 => FileType::BlockDevice,
            0x8000 => FileType::Regular,
            0xA000 => FileType::Symlink,
            0xC000 => FileType::Socket,
            _ => FileType::Unknown,
        }
    }

    pub(crate) fn from_dirent(t: u8) -> FileType {
        match t {
            1 => FileType::Regular,
            2 => FileType::Directory,
            3 => FileType::CharDevice,
            4 => FileType::BlockDevice,
            5 => FileType::Fifo,
            6 => FileType::Socket,
            7 => FileType::Symlink,
            _ => FileType::Unknown,
        }
    }
}

/// A timestamp: seconds since the epoch (may be negative) and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    pub sec: i64,
    pub nsec: u32,
}

/// An inode's attributes.
#[derive(Debug, Clone)]
pub struct Inode {
    /// The guest's inode number.
    pub ino: u64,
    /// Full mode: type bits and permission bits.
    pub mode: u16,
    pub file_type: FileType,
    /// 32-bit uid (low and high halves combined).
    pub uid: u32,
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Hard-link count (1 for a directory with more than 64 998 subdirectories).
    pub nlink: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    /// Creation time, when the inode is large enough to hold it.
    pub crtime: Option<Timestamp>,
    /// Device number (major, minor) of a character or block device.
    pub rdev: Option<(u32, u32)>,
    /// Allocated space in 512-byte units.
    pub blocks: u64,
    /// `i_flags`.
    pub flags: u32,
    /// NFS generation number.
    pub generation: u32,
    pub(crate) i_block: [u8; 60],
    pub(crate) file_acl: u64,
    /// The in-inode extended attribute area (after `i_extra_isize`), possibly empty.
    pub(crate) xattr_area: Vec<u8>,
}

fn ts(sec: u32, extra: Option<u32>) -> Timestamp {
    let base = i64::from(sec as i32);
    match extra {
        Some(e) => Timestamp {
            sec: base + (i64::from(e & 3) << 32),
            nsec: (e >> 2).min(999_999_999),
        },
        None => Timestamp { sec: base, nsec: 0 },
    }
}

impl Inode {
    pub(crate) fn parse(sb: &Superblock, ino: u64, r: &[u8]) -> Result<Inode, ExtError> {
        let corrupt = |reason| ExtError::CorruptInode { ino, reason };
        let mode = le16(r, 0x00);
        let nlink = u32::from(le16(r, 0x1A));
        let file_type = FileType::from_mode(mode);
        let extra_isize = if r.len() > 128 {
            let e = usize::from(le16(r, 0x80));
            if e % 4 != 0 || 128 + e > r.len() {
                return Err(corrupt(
                    "i_extra_isize is not a multiple of 4 inside the inode record",
                ));
            }
            e
        } else {
            0
        };
        let has = |off: usize, len: usize| r.len() > 128 && 128 + extra_isize >= off + len;
        let extra = |off: usize| {
            if has(off, 4) {
                Some(le32(r, off))
            } else {
                None
            }
        };
        let flags = le32(r, 0x20);
        let size_lo = u64::from(le32(r, 0x04));
        let size_hi = u64::from(le32(r, 0x6C));
        let size =
            if file_type == FileType::Regular || sb.features.incompat & INCOMPAT_LARGEDIR != 0 {
                size_lo | (size_hi << 32)
            } else {
                size_lo
            };
        let linux = sb.creator_os != 1;
        let blocks = {
            let lo = u64::from(le32(r, 0x1C));
            if sb.features.ro_compat & RO_COMPAT_HUGE_FILE != 0 && linux {
                let n = lo | (u64::from(le16(r, 0x74)) << 32);
                if flags & FL_HUGE_FILE != 0 {
                    n.saturating_mul(u64::from(sb.block_size / 512))
                } else {
                    n
                }
            } else {
                lo
            }
        };
        let mut file_acl = u64::from(le32(r, 0x68));
        if sb.features.incompat & INCOMPAT_64BIT != 0 && linux {
            file_acl |= u64::from(le16(r, 0x76)) << 32;
        }
        let mut i_block = [0u8; 60];
        if let Some(s) = r.get(0x28..0x64) {
            i_block.copy_from_slice(s);
        }
        let rdev = match file_type {
            FileType::CharDevice | FileType::BlockDevice => {
                let old = le32(&i_block, 0);
                if old != 0 {
                    Some(((old >> 8) & 0xFF, old & 0xFF))
                } else {
                    let v = le32(&i_block, 4);
                    Some(((v >> 8) & 0xFFF, (v & 0xFF) | ((v >> 12) & 0xFFF00)))
                }
            }
            _ => None,
        };
        let xattr_area = if r.len() > 128 {
            r.get(128 + extra_isize..).unwrap_or(&[]).to_vec()
        } else {
            Vec::new()
        };
        Ok(Inode {
            ino,
            mode,
            file_type,
            uid: u32::from(le16(r, 0x02)) | (u32::from(le16(r, 0x78)) << 16),
            gid: u32::from(le16(r, 0x18)) | (u32::from(le16(r, 0x7A)) << 16),
            size,
            nlink,
            atime: ts(le32(r, 0x08), extra(0x8C)),
            mtime: ts(le32(r, 0x10), extra(0x88)),
            ctime: ts(le32(r, 0x0C), extra(0x84)),
            crtime: if has(0x90, 4) {
                Some(ts(le32(r, 0x90), extra(0x94)))
            } else {
                None
            },
            rdev,
            blocks,
            flags,
            generation: le32(r, 0x64),
            i_block,
            file_acl,
            xattr_area,
        })
    }

    /// Permission bits (including setuid, setgid, sticky).
    pub fn permissions(&self) -> u16 {
        self.mode & 0o7777
    }

    pub(crate) fn is_inline(&self) -> bool {
        self.flags & FL_INLINE_DATA != 0
    }
}
