//! Errors of the ext reader: one enum for opening and reading a filesystem, one for the journal.

use std::io;

/// Why a filesystem could not be opened or an object in it could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExtError {
    /// The block source failed.
    #[error("reading {len} bytes at byte {offset} of the image failed")]
    Io {
        offset: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
    /// A read reached past the end of the image (a truncated image or a corrupt pointer).
    #[error(
        "the image ends at byte {image_len}, but {len} bytes at byte {offset} are needed: the image is truncated or a block pointer is corrupt"
    )]
    OutsideImage {
        offset: u64,
        len: u64,
        image_len: u64,
    },
    /// No ext2/3/4 superblock at byte 1024.
    #[error("no ext2/ext3/ext4 filesystem: the superblock magic is {found:#06x}, expected 0xef53")]
    BadMagic { found: u16 },
    /// A superblock field is out of the range the reader accepts.
    #[error("the superblock is corrupt: {field} is {value}, accepted: {accepted}")]
    BadSuperblock {
        field: &'static str,
        value: u64,
        accepted: &'static str,
    },
    /// The superblock checksum does not match its contents.
    #[error("the superblock checksum is {stored:#010x} but its contents give {computed:#010x}")]
    SuperblockChecksum { stored: u32, computed: u32 },
    /// An incompatible feature this reader cannot handle.
    #[error(
        "the filesystem uses the incompatible feature \"{name}\", which this reader does not support"
    )]
    UnsupportedFeature { name: String },
    /// The journal must be replayed but cannot be.
    #[error("the filesystem needs journal recovery but its journal cannot be replayed")]
    Journal(#[from] JournalError),
    /// An inode number outside `1..=inodes_count`.
    #[error("inode {ino} does not exist: the filesystem has inodes 1 to {count}")]
    InodeOutOfRange { ino: u64, count: u32 },
    /// An inode that is not in use.
    #[error("inode {ino} is not allocated")]
    InodeNotAllocated { ino: u64 },
    /// An inode record is inconsistent.
    #[error("inode {ino} is corrupt: {reason}")]
    CorruptInode { ino: u64, reason: &'static str },
    /// The extent tree or block map of an inode is inconsistent.
    #[error("the block mapping of inode {ino} is corrupt: {reason}")]
    CorruptMapping { ino: u64, reason: &'static str },
    /// A block pointer points outside the filesystem.
    #[error("inode {ino} points at block {block}, but the filesystem has {blocks_count} blocks")]
    BlockOutOfRange {
        ino: u64,
        block: u64,
        blocks_count: u64,
    },
    /// A directory block is inconsistent.
    #[error("directory inode {ino} is corrupt: {reason}")]
    CorruptDirectory { ino: u64, reason: &'static str },
    /// Extended attributes are inconsistent.
    #[error("the extended attributes of inode {ino} are corrupt: {reason}")]
    CorruptXattr { ino: u64, reason: &'static str },
    /// A directory operation on something that is not a directory.
    #[error("inode {ino} is not a directory")]
    NotADirectory { ino: u64 },
    /// `read_link` on something that is not a symlink.
    #[error("inode {ino} is not a symbolic link")]
    NotASymlink { ino: u64 },
    /// `read` on a directory.
    #[error("inode {ino} is a directory; list it instead of reading it")]
    IsADirectory { ino: u64 },
    /// The inode's contents are encrypted (fscrypt).
    #[error("inode {ino} is encrypted, which this reader does not support")]
    Encrypted { ino: u64 },
    /// A size field larger than the reader accepts.
    #[error("{what} of inode {ino} is {size} bytes, more than the accepted {limit}")]
    TooLarge {
        what: &'static str,
        ino: u64,
        size: u64,
        limit: u64,
    },
}

/// Why the journal could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal lives on another device.
    #[error("the journal is external (on another device), and only the filesystem image was given")]
    External,
    /// The journal superblock or its layout is invalid.
    #[error("the journal is corrupt: {0}")]
    Corrupt(&'static str),
    /// The journal uses a feature this reader cannot replay.
    #[error("the journal uses an unsupported feature: {0}")]
    Unsupported(String),
}
