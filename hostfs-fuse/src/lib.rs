//! umlfs library: read-only access to the filesystems on a UML guest's disk images.
//!
//! [`ext`] is a read-only ext2/ext3/ext4 reader with in-memory journal replay; [`source`]
//! parses what to show (a running guest's tree, one disk, an image); [`view`] composes the
//! guest's mounts into one tree (node tables, hostfs passthrough, generations, mount
//! following), driven by unit tests without mounting; [`fuse`] is the thin fuser adapter over
//! it; [`mount`] prepares a view and keeps it fresh; [`options`] parses `-o` lists as mount(8)
//! and fstab pass them.

pub mod ext;
pub mod fuse;
pub mod mount;
pub mod near;
pub mod options;
pub mod ring;
pub mod source;
pub mod view;
