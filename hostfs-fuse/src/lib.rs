//! umlfs library: read-only access to the filesystems on a UML guest's disk images.
//!
//! The FUSE layer (the `umlfs` binary) sits on top of [`ext`], a read-only ext2/ext3/ext4
//! reader with in-memory journal replay.

pub mod ext;
