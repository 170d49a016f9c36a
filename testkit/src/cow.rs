//! COW files written byte by byte, as `arch/um/drivers/cow_user.c` lays them out: an oracle
//! independent of `uml::cow`, for the versions the kernel can still read but no longer writes.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// A COW header version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CowVersion {
    /// Version 1: host byte order, 256-byte backing name.
    V1,
    /// Version 2: big-endian, 4096-byte backing name.
    V2,
    /// Version 3 as the kernel writes it: its header struct is misaligned, so the bitmap
    /// starts at 8192 and the data at the next 4096 boundary after it.
    V3,
}

/// Writes a COW file of `version` at `path` over `backing` (its current size and mtime), with
/// each `(sector, 512 bytes)` of `sectors` present in the COW file.
///
/// # Panics
/// On any I/O error, or a backing path longer than the version's name field (it is a test).
pub fn write_cow(version: CowVersion, path: &Path, backing: &Path, sectors: &[(u64, Vec<u8>)]) {
    let meta = fs::metadata(backing).expect("the backing file");
    let (size, mtime) = (meta.len(), meta.mtime() as u32);
    let name = backing.to_str().expect("a UTF-8 backing path").as_bytes();
    let (mut head, bitmap_offset, data_offset) = match version {
        CowVersion::V1 => {
            let mut h = vec![0u8; 280];
            h[0..4].copy_from_slice(&0x4F4F_4F4Du32.to_ne_bytes());
            h[4..8].copy_from_slice(&1u32.to_ne_bytes());
            h[8..8 + name.len()].copy_from_slice(name);
            h[264..268].copy_from_slice(&mtime.to_ne_bytes());
            h[268..276].copy_from_slice(&size.to_ne_bytes());
            h[276..280].copy_from_slice(&512u32.to_ne_bytes());
            // The kernel's bitmap length for V1/V2, rounding bug included.
            let len = (size + 511) / 4096;
            (h, 280u64, (280 + len).div_ceil(512) * 512)
        }
        CowVersion::V2 => {
            let mut h = vec![0u8; 4120];
            h[0..4].copy_from_slice(&0x4F4F_4F4Du32.to_be_bytes());
            h[4..8].copy_from_slice(&2u32.to_be_bytes());
            h[8..8 + name.len()].copy_from_slice(name);
            h[4104..4108].copy_from_slice(&mtime.to_be_bytes());
            h[4108..4116].copy_from_slice(&size.to_be_bytes());
            h[4116..4120].copy_from_slice(&512u32.to_be_bytes());
            let len = (size + 511) / 4096;
            (h, 4120u64, (4120 + len).div_ceil(512) * 512)
        }
        CowVersion::V3 => {
            let mut h = vec![0u8; 4136];
            h[0..4].copy_from_slice(&0x4F4F_4F4Du32.to_be_bytes());
            h[4..8].copy_from_slice(&3u32.to_be_bytes());
            h[8..12].copy_from_slice(&mtime.to_be_bytes());
            h[16..24].copy_from_slice(&size.to_be_bytes());
            h[24..28].copy_from_slice(&512u32.to_be_bytes());
            h[28..32].copy_from_slice(&4096u32.to_be_bytes());
            h[36..36 + name.len()].copy_from_slice(name);
            let len = size.div_ceil(512).div_ceil(8);
            (h, 8192u64, (8192 + len).div_ceil(4096) * 4096)
        }
    };
    head.resize(bitmap_offset as usize, 0);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("create the COW file");
    f.write_all_at(&head, 0).expect("write the header");
    f.set_len(data_offset + size).expect("size the COW file");
    for (sector, data) in sectors {
        let mut byte = [0u8];
        f.read_exact_at(&mut byte, bitmap_offset + sector / 8)
            .expect("read a bitmap byte");
        byte[0] |= 1 << (sector % 8);
        f.write_all_at(&byte, bitmap_offset + sector / 8)
            .expect("write a bitmap byte");
        f.write_all_at(data, data_offset + sector * 512)
            .expect("write a sector");
    }
}
