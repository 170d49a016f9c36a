//! Resource bombs (issue 13): small images built to make the reader allocate or work without
//! bound. Each test measures the memory the reader allocates (a counting global allocator,
//! per thread) and the time it takes, and fails on the unbounded behaviour.

mod ext_support;
mod umlfs_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ext_support::*;
use umlfs::ext::Filesystem;
use umlfs_support::{BIN, MountPoint};

/// Counts the bytes live on the current thread and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(add: usize, sub: usize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get().saturating_add(add).saturating_sub(sub);
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping only
// touches const-initialised thread-locals (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 0);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 0);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(0, layout.size());
        // SAFETY: ptr was allocated by System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        note(new, layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Run `f` on a fresh thread; returns its result, the peak bytes it allocated and its time.
/// Fails when it does not finish within `limit` (a hang).
fn measured<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, usize, Duration) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        LIVE.with(|l| l.set(0));
        PEAK.with(|p| p.set(0));
        let v = f();
        let _ = tx.send((v, PEAK.with(Cell::get), start.elapsed()));
    });
    match rx.recv_timeout(limit) {
        Ok(r) => {
            eprintln!("{what}: peak {} KiB, {:?}", r.1 >> 10, r.2);
            r
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// debugfs `imap`: byte offset of an inode's record in the image.
fn inode_offset(img: &Path, path: &str) -> usize {
    let out = stdout_of(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("imap {path}"))
            .arg(img),
    );
    let blk: usize = out
        .split("located at block ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("imap {path}: {out}"));
    let off = usize::from_str_radix(out.split("offset 0x").nth(1).unwrap().trim(), 16).unwrap();
    blk * 4096 + off
}

/// A 64 MiB ext4 image with 4 KiB blocks and no metadata checksums (so patched metadata is
/// read as is), holding a 1 MiB file `big`, a file `f` and a directory `d`.
fn base_image() -> (tempfile::TempDir, std::path::PathBuf) {
    image_with("^metadata_csum,^dir_index")
}

fn image_with(features: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("big"), pattern(1 << 20, 7)).unwrap();
    fs::write(src.join("f"), b"f").unwrap();
    let img = tmp.path().join("fs.img");
    mkfs("ext4", &["-b", "4096", "-O", features], &src, &img, "64M");
    (tmp, img)
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

/// An xattr block whose 203 entries all name the 1 MiB inode of `big` as their EA inode, each
/// for 64 KiB: reading every value materialised 13 MiB per request (with 1 MiB values and
/// 64 KiB blocks, 4.2 GB). Now: listing reads no value, one getxattr reads one value, and all
/// values together are over the per-request budget.
#[test]
fn xattr_block_of_ea_inode_references_is_bounded() {
    let (_tmp, img) = base_image();
    let mut bytes = fs::read(&img).unwrap();
    let fs0 = Filesystem::open(bytes.clone()).unwrap();
    let big = fs0.lookup(2, b"big").unwrap().unwrap() as u32;
    let f = fs0.lookup(2, b"f").unwrap().unwrap();
    let xblk = 16383usize; // the last block: free in a fresh 64 MiB image
    let b = xblk * 4096;
    put32(&mut bytes, b, 0xEA02_0000);
    put32(&mut bytes, b + 4, 1); // refcount
    put32(&mut bytes, b + 8, 1); // h_blocks
    let mut off = b + 0x20;
    for i in 0..203u32 {
        bytes[off] = 4; // name_len
        bytes[off + 1] = 1; // user.
        put16(&mut bytes, off + 2, 0);
        put32(&mut bytes, off + 4, big);
        put32(&mut bytes, off + 8, 65536);
        bytes[off + 16..off + 20].copy_from_slice(format!("{i:04}").as_bytes());
        off += 20;
    }
    let io = inode_offset(&img, "/f");
    put32(&mut bytes, io + 0x68, xblk as u32); // i_file_acl
    let mut huge = bytes.clone();
    let (r, peak, _) = measured("xattrs() of the bomb", Duration::from_secs(60), move || {
        let fs = Filesystem::open(bytes).unwrap();
        let all = fs.xattrs(f).map(|v| v.len());
        let names = fs.xattr_names(f).map(|v| v.len());
        let one = fs.xattr(f, b"user.0007").map(|v| v.map(|v| v.len()));
        (all.is_err(), names.ok(), one.ok().flatten())
    });
    assert!(r.0, "13 MiB of values in one request must be refused");
    assert_eq!(
        r.1,
        Some(203),
        "the names are listed without reading values"
    );
    assert_eq!(r.2, Some(65536), "one value is read on its own");
    assert!(peak < 4 << 20, "peak {peak} bytes");

    // A value larger than XATTR_SIZE_MAX is an error, not a 1 MiB allocation.
    put32(&mut huge, b + 0x20 + 8, 1 << 20);
    let fs = Filesystem::open(huge).unwrap();
    assert!(matches!(
        fs.xattr(f, b"user.0000"),
        Err(umlfs::ext::ExtError::TooLarge { .. })
    ));
}

/// Directory `d` turned into a block-mapped directory of `size` bytes whose every block (via
/// triple-indirect blocks that all point at one indirect block per level) is one empty
/// directory block: 2^40 bytes are 2^28 blocks to walk onto 4 blocks of the image.
fn directory_bomb(size: u64) -> (tempfile::TempDir, Vec<u8>, u64) {
    // large_dir: directory sizes have 64 bits.
    let (tmp, img) = image_with("^metadata_csum,^dir_index,large_dir");
    let mut bytes = fs::read(&img).unwrap();
    let d = Filesystem::open(bytes.clone())
        .unwrap()
        .lookup(2, b"d")
        .unwrap()
        .unwrap();
    let (b, i1, i2, i3) = (16380u32, 16381u32, 16382u32, 16383u32);
    let at = |blk: u32| blk as usize * 4096;
    put32(&mut bytes, at(b), 0);
    put16(&mut bytes, at(b) + 4, 4096);
    for (blk, target) in [(i1, b), (i2, i1), (i3, i2)] {
        for k in 0..1024 {
            put32(&mut bytes, at(blk) + 4 * k, target);
        }
    }
    let io = inode_offset(&img, "/d");
    let flags = u32::from_le_bytes(bytes[io + 0x20..io + 0x24].try_into().unwrap());
    put32(&mut bytes, io + 0x20, flags & !0x80000); // no extents: a classic block map
    for k in 0..12 {
        put32(&mut bytes, io + 0x28 + 4 * k, b);
    }
    put32(&mut bytes, io + 0x28 + 48, i1);
    put32(&mut bytes, io + 0x28 + 52, i2);
    put32(&mut bytes, io + 0x28 + 56, i3);
    put32(&mut bytes, io + 0x04, size as u32);
    put32(&mut bytes, io + 0x6C, (size >> 32) as u32);
    (tmp, bytes, d)
}

/// A lookup or listing of a 2^40-byte directory never returned (and, over FUSE, left its
/// callers in D state). Now a directory over 4 GiB is refused at once, and a request walks at
/// most 64 MiB of any directory.
#[test]
fn directory_bomb_requests_end_quickly() {
    for size in [1u64 << 40, 1 << 32, (1 << 32) - 4096] {
        let (_tmp, bytes, d) = directory_bomb(size);
        let (r, peak, took) = measured(
            &format!("lookup and listing of a {size}-byte directory bomb"),
            Duration::from_secs(30),
            move || {
                let fs = Filesystem::open(bytes).unwrap();
                let lookup = fs.lookup(d, b"nothing-here").map_err(|e| e.to_string());
                let mut n = 0;
                let list = fs
                    .read_dir(d, 0, |_| {
                        n += 1;
                        true
                    })
                    .map_err(|e| e.to_string());
                (lookup, list, n)
            },
        );
        assert!(r.0.is_err(), "{size}: lookup must fail, got {:?}", r.0);
        assert!(r.1.is_err(), "{size}: listing must fail, got {:?}", r.1);
        assert_eq!(r.2, 0);
        assert!(took < Duration::from_secs(10), "{size}: took {took:?}");
        assert!(peak < 64 << 20, "{size}: peak {peak}");
    }
}

/// A sparse file of `apparent` bytes holding only a superblock that declares one block group
/// per block (1 KiB blocks, one inode per group): the descriptor table it implies is
/// `apparent / 32` bytes, and was read and allocated whole at open.
fn sparse_declaring(dir: &Path, apparent: u64) -> fs::File {
    let path = dir.join(format!("sparse-{apparent}.img"));
    let f = fs::File::create(&path).unwrap();
    f.set_len(apparent).unwrap();
    let mut sb = vec![0u8; 1024];
    let blocks = apparent / 1024;
    put32(&mut sb, 0x04, blocks as u32);
    put32(&mut sb, 0x14, 1); // first data block
    put32(&mut sb, 0x18, 0); // 1 KiB blocks
    put32(&mut sb, 0x1C, 0);
    put32(&mut sb, 0x20, 1); // blocks per group
    put32(&mut sb, 0x24, 1);
    put32(&mut sb, 0x28, 1); // inodes per group
    put32(&mut sb, 0x00, (blocks - 1) as u32); // inodes = groups × 1
    put16(&mut sb, 0x38, 0xEF53);
    put32(&mut sb, 0x4C, 1); // dynamic rev
    put32(&mut sb, 0x54, 11);
    put16(&mut sb, 0x58, 128);
    use std::os::unix::fs::FileExt;
    f.write_all_at(&sb, 1024).unwrap();
    fs::File::open(&path).unwrap()
}

/// A 4 KiB-on-disk file declaring 256 GiB aborted on a 96 GiB allocation; one declaring 2 GiB
/// took 1.6 GB. Descriptors are now read lazily, through the bounded block cache.
#[test]
fn sparse_image_declaring_a_huge_filesystem_opens_in_bounded_memory() {
    let tmp = tempdir();
    for apparent in [2u64 << 30, 256 << 30] {
        let f = sparse_declaring(tmp.path(), apparent);
        let (r, peak, took) = measured(
            &format!("open of a sparse file declaring {apparent} bytes"),
            Duration::from_secs(30),
            move || {
                let fs = Filesystem::open(f).map_err(|e| e.to_string())?;
                let _ = fs.inode(2);
                let _ = fs.lookup(2, b"x");
                let _ = fs.inode(u64::from(u32::MAX - 7));
                Ok::<_, String>(fs.statfs().blocks)
            },
        );
        eprintln!("{apparent}: {r:?}");
        assert!(peak < 32 << 20, "{apparent}: peak {peak}");
        assert!(took < Duration::from_secs(10), "{apparent}: took {took:?}");
    }
}

/// Over FUSE: two listings and a lookup of the bomb directory at once froze the mount (both
/// handler threads busy for good, callers in D state). Each request now ends, and the mount
/// keeps answering. Every command is bounded by timeout(1); the mount is dropped by
/// MountPoint.
#[test]
fn directory_bomb_over_fuse_leaves_the_mount_responsive() {
    let (tmp, bytes, _) = directory_bomb(1 << 32);
    let img = tmp.path().join("bomb.img");
    fs::write(&img, bytes).unwrap();
    let mp = MountPoint::new();
    let out = Command::new("timeout")
        .args(["-s", "KILL", "30", BIN])
        .arg(&img)
        .arg(mp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let d = mp.path().join("d");
    let start = Instant::now();
    let runs: Vec<_> = [vec!["ls", "-f"], vec!["ls", "-f"], vec!["stat", "-c", "%i"]]
        .into_iter()
        .map(|cmd| {
            let mut c = Command::new("timeout");
            c.args(["-s", "KILL", "30"]).args(&cmd);
            c.arg(if cmd[0] == "stat" {
                d.join("x")
            } else {
                d.clone()
            });
            c.spawn().unwrap()
        })
        .collect();
    for mut r in runs {
        let st = r.wait().unwrap();
        // An error (EIO, ENOENT) is fine; being killed by timeout(1) is the hang.
        assert!(
            !matches!(st.code(), Some(124 | 137) | None),
            "a request on the bomb did not end: {st:?}"
        );
    }
    let took = start.elapsed();
    eprintln!("three requests on the bomb: {took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    let st = Command::new("timeout")
        .args(["-s", "KILL", "10", "stat"])
        .arg(mp.path().join("f"))
        .output()
        .unwrap();
    assert!(st.status.success(), "the mount stopped answering: {st:?}");
    assert!(mp.unmount());
}

/// A dirty journal declaring about 2^32 log blocks, in a sparse 4 TiB file whose superblock
/// declares as many blocks (so the length passes the "fits in the filesystem, its inode and
/// the image" checks): replay allocated a block table of 32 GiB before reading a single log
/// block. Log positions are now mapped as they are read.
#[test]
fn journal_declaring_a_huge_log_is_replayed_in_bounded_memory() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"f").unwrap();
    let img = tmp.path().join("j.img");
    mkfs(
        "ext4",
        &["-b", "1024", "-O", "^metadata_csum"],
        &src,
        &img,
        "16M",
    );
    let out = stdout_of(Command::new("debugfs").args(["-R", "bmap <8> 0"]).arg(&img));
    let jsb: usize = out.trim().parse().unwrap();
    let out = stdout_of(Command::new("debugfs").args(["-R", "imap <8>"]).arg(&img));
    let blk: usize = out
        .split("located at block ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap();
    let off = usize::from_str_radix(out.split("offset 0x").nth(1).unwrap().trim(), 16).unwrap();
    let ino8 = blk * 1024 + off;
    let mut bytes = fs::read(&img).unwrap();
    let incompat = u32::from_le_bytes(bytes[1024 + 0x60..1024 + 0x64].try_into().unwrap());
    put32(&mut bytes, 1024 + 0x60, incompat | 0x4); // needs_recovery
    // 524,287 groups of 8192 blocks (one more than fits in 2^32 would overflow the count).
    let sbu = |o: usize| u32::from_le_bytes(bytes[1024 + o..1024 + o + 4].try_into().unwrap());
    assert_eq!(sbu(0x20), 8192);
    let groups = 524_287u32;
    let blocks = 1 + 8192 * groups;
    let ipg = sbu(0x28);
    put32(&mut bytes, 1024 + 0x04, blocks);
    put32(&mut bytes, 1024, groups * ipg);
    put32(&mut bytes, ino8 + 0x6C, 1024); // the journal file: 4 TiB
    let j = jsb * 1024;
    bytes[j + 0x10..j + 0x14].copy_from_slice(&(blocks - 100).to_be_bytes()); // s_maxlen
    bytes[j + 0x1C..j + 0x20].copy_from_slice(&1u32.to_be_bytes()); // s_start
    fs::write(&img, &bytes).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len(4 << 40).unwrap();
    drop(f);
    let file = fs::File::open(&img).unwrap();
    let (r, peak, took) = measured(
        "replay of a journal declaring 2^32 blocks",
        Duration::from_secs(60),
        move || {
            Filesystem::open(file)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
    eprintln!("open: {r:?}");
    assert!(peak < 64 << 20, "peak {peak}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}
