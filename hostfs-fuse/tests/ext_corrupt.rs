//! Untrusted images: truncated or bit-flipped images, directory loops, cyclic or too deep
//! extent trees, bad record lengths and absurd sizes give errors, never a panic or a hang.

mod ext_support;

use std::collections::{HashSet, VecDeque};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use ext_support::*;
use umlfs::ext::{BlockSource, ExtError, FileType, Filesystem};

/// Visit everything reachable, ignoring errors; bounded in entries and bytes.
fn explore<S: BlockSource>(fs: &Filesystem<S>) -> usize {
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([fs.root()]);
    let mut visited = 0;
    let mut buf = vec![0u8; 64 << 10];
    while let Some(dir) = queue.pop_front() {
        if !seen.insert(dir) || visited > 20_000 {
            continue;
        }
        let mut entries = Vec::new();
        let _ = fs.read_dir(dir, 0, |e| {
            entries.push(e);
            entries.len() < 20_000
        });
        for e in entries {
            visited += 1;
            let _ = fs.lookup(dir, &e.name);
            let _ = fs.xattrs(e.ino);
            let Ok(inode) = fs.inode(e.ino) else { continue };
            match inode.file_type {
                FileType::Directory => queue.push_back(e.ino),
                FileType::Symlink => {
                    let _ = fs.read_link(e.ino);
                }
                _ => {
                    for off in [0u64, 4096, 1 << 20, inode.size.saturating_sub(100)] {
                        let _ = fs.read(e.ino, off, &mut buf);
                    }
                }
            }
        }
    }
    let _ = fs.statfs();
    visited
}

/// Run `f` on another thread and fail if it does not finish in time (a hang).
fn within<T: Send + 'static>(what: String, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: did not finish within 120 s (a hang)")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

fn small_tree(root: &Path) {
    fs::create_dir_all(root.join("d/e/f")).unwrap();
    fs::write(root.join("d/e/f/deep"), b"deep file").unwrap();
    fs::write(root.join("big"), pattern(300_000, 1)).unwrap();
    fs::write(root.join("small"), b"small").unwrap();
    std::os::unix::fs::symlink("x".repeat(80), root.join("slow")).unwrap();
    std::os::unix::fs::symlink("small", root.join("fast")).unwrap();
    fs::create_dir(root.join("dir")).unwrap();
    for i in 0..300 {
        fs::write(root.join(format!("dir/name-{i:04}")), b"").unwrap();
    }
    // Fragmented file: a depth-1 extent tree (more than 4 extents).
    let f = fs::File::create(root.join("fragments")).unwrap();
    use std::os::unix::fs::FileExt;
    for k in 0..12u64 {
        f.write_all_at(&pattern(1024, k), k * 8192).unwrap();
    }
}

fn image(fstype: &str, opts: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    small_tree(&src);
    let img = tmp.path().join("fs.img");
    mkfs(fstype, opts, &src, &img, "4M");
    index_dirs(&img);
    (tmp, img)
}

/// debugfs `imap`: byte offset of an inode's record in the image.
fn inode_offset(img: &Path, path: &str) -> usize {
    let out = stdout_of(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("imap {path}"))
            .arg(img),
    );
    // "Inode 12 is part of block group 0\n\tlocated at block 35, offset 0x0b00"
    let blk: usize = out
        .split("located at block ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let off = usize::from_str_radix(out.split("offset 0x").nth(1).unwrap().trim(), 16).unwrap();
    let bs = block_size(img);
    blk * bs + off
}

fn block_size(img: &Path) -> usize {
    let out = stdout_of(Command::new("dumpe2fs").arg("-h").arg(img));
    out.lines()
        .find(|l| l.starts_with("Block size:"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .parse()
        .unwrap()
}

/// debugfs `bmap`: physical block of a file's logical block (None for inline data).
fn try_bmap(img: &Path, path: &str, lblk: u64) -> Option<usize> {
    let out = stdout_of(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("bmap {path} {lblk}"))
            .arg(img),
    );
    out.trim().parse().ok()
}

fn bmap(img: &Path, path: &str, lblk: u64) -> usize {
    try_bmap(img, path, lblk).unwrap_or_else(|| panic!("{path} has no block {lblk}"))
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn truncated_images_give_errors_not_panics() {
    for (fstype, opts) in [("ext4", &["-b", "1024"][..]), ("ext2", &["-I", "128"][..])] {
        let (_tmp, img) = image(fstype, opts);
        let bytes = fs::read(&img).unwrap();
        let mut cuts: Vec<usize> = vec![0, 1, 1023, 1024, 1500, 2047, 2048, 3000, 4096, 8192];
        cuts.extend((1..64).map(|k| bytes.len() * k / 64));
        for cut in cuts {
            let data = bytes[..cut].to_vec();
            let what = format!("{fstype} cut at {cut}");
            within(what.clone(), move || match Filesystem::open(data) {
                Ok(fs) => {
                    explore(&fs);
                }
                Err(e) => {
                    if cut < 2048 {
                        assert!(matches!(e, ExtError::OutsideImage { .. }), "{e}");
                    }
                }
            });
        }
    }
}

#[test]
fn flipped_metadata_bytes_never_panic_or_hang() {
    for (fstype, opts) in [
        ("ext4", &["-b", "1024"][..]),
        ("ext4", &["-O", "^metadata_csum,^64bit,inline_data"][..]),
        ("ext3", &[][..]),
    ] {
        let (_tmp, img) = image(fstype, opts);
        let bytes = fs::read(&img).unwrap();
        let bs = block_size(&img);
        // Regions: superblock + descriptors, the inode table area, directory and extent blocks.
        let mut regions = vec![(1024usize, 2 * bs.max(1024) + 1024)];
        regions.push((inode_offset(&img, "/small") & !(bs - 1), bs * 4));
        for p in ["/dir", "/", "/d/e/f"] {
            if let Some(b) = try_bmap(&img, p, 0) {
                regions.push((b * bs, bs));
            }
        }
        let mut rng = Rng(0x5EED_0000 ^ bytes.len() as u64);
        for round in 0..150 {
            let mut data = bytes.clone();
            let flips = 1 + rng.next() % 8;
            for _ in 0..flips {
                let (start, len) = regions[(rng.next() % regions.len() as u64) as usize];
                let at = start + (rng.next() as usize % len);
                if let Some(b) = data.get_mut(at) {
                    *b ^= 1 << (rng.next() % 8);
                }
            }
            within(format!("{fstype} {opts:?} round {round}"), move || {
                if let Ok(fs) = Filesystem::open(data) {
                    explore(&fs);
                }
            });
        }
    }
}

#[test]
fn directory_loop_is_listed_without_hanging() {
    let (_tmp, img) = image("ext4", &["-O", "^metadata_csum"]);
    // A second name for directory d inside its own grandchild: d/e/f/loop -> d.
    stdout_of(
        Command::new("debugfs")
            .arg("-w")
            .arg("-R")
            .arg("ln /d /d/e/f/loop")
            .arg(&img),
    );
    let fs = open(&img);
    let d = fs.lookup(fs.root(), b"d").unwrap().unwrap();
    let f = ["d", "e", "f"].iter().fold(fs.root(), |dir, n| {
        fs.lookup(dir, n.as_bytes()).unwrap().unwrap()
    });
    assert_eq!(
        fs.lookup(f, b"loop").unwrap(),
        Some(d),
        "the loop was not created"
    );
    let n = within("loop".into(), move || explore(&fs));
    assert!(n > 300);
}

#[test]
fn extent_trees_that_are_too_deep_or_cyclic_are_errors() {
    let (_tmp, img) = image("ext4", &["-O", "^metadata_csum"]);
    let bytes = fs::read(&img).unwrap();
    let rec = inode_offset(&img, "/fragments");
    let root = rec + 0x28;
    assert_eq!(&bytes[root..root + 2], &[0x0A, 0xF3], "no extent header");
    let depth = u16::from_le_bytes([bytes[root + 6], bytes[root + 7]]);
    assert_eq!(
        depth, 1,
        "the fragmented file should have a depth-1 extent tree"
    );
    let leaf = u32::from_le_bytes(bytes[root + 16..root + 20].try_into().unwrap()) as usize;
    let bs = block_size(&img);
    let open_bytes = |b: Vec<u8>| Filesystem::open(b).unwrap();
    let ino = open(&img).lookup(2, b"fragments").unwrap().unwrap();
    let mut buf = vec![0u8; 100_000];

    // Root claims depth 6.
    let mut deep = bytes.clone();
    deep[root + 6] = 6;
    let err = open_bytes(deep).read(ino, 0, &mut buf).unwrap_err();
    assert!(matches!(err, ExtError::CorruptMapping { .. }), "{err}");

    // The leaf becomes an index node pointing at itself: a cycle.
    let mut cyclic = bytes.clone();
    let node = leaf * bs;
    cyclic[node + 6] = 1;
    cyclic[node + 12..node + 16].copy_from_slice(&0u32.to_le_bytes());
    cyclic[node + 16..node + 20].copy_from_slice(&(leaf as u32).to_le_bytes());
    let err = open_bytes(cyclic).read(ino, 0, &mut buf).unwrap_err();
    assert!(matches!(err, ExtError::CorruptMapping { .. }), "{err}");

    // The index points outside the filesystem.
    let mut outside = bytes.clone();
    outside[root + 16..root + 20].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = open_bytes(outside).read(ino, 0, &mut buf).unwrap_err();
    assert!(matches!(err, ExtError::BlockOutOfRange { .. }), "{err}");
}

#[test]
fn bad_record_length_and_absurd_sizes_are_errors() {
    let (_tmp, img) = image("ext4", &["-O", "^metadata_csum"]);
    let bytes = fs::read(&img).unwrap();
    let bs = block_size(&img);
    let fs0 = open(&img);
    let d = fs0.lookup(2, b"d").unwrap().unwrap();
    let slow = fs0.lookup(2, b"slow").unwrap().unwrap();
    let big = fs0.lookup(2, b"big").unwrap().unwrap();

    let mut bad = bytes.clone();
    let blk = bmap(&img, "/d", 0) * bs;
    bad[blk + 4..blk + 6].copy_from_slice(&3u16.to_le_bytes());
    let fs = Filesystem::open(bad).unwrap();
    let err = fs.read_dir(d, 0, |_| true).unwrap_err();
    assert!(matches!(err, ExtError::CorruptDirectory { .. }), "{err}");

    // A symlink claiming a 4 GiB target and a file claiming 2^62 bytes.
    let mut absurd = bytes.clone();
    let s = inode_offset(&img, "/slow");
    absurd[s + 4..s + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    let b = inode_offset(&img, "/big");
    absurd[b + 0x6C..b + 0x70].copy_from_slice(&(1u32 << 30).to_le_bytes());
    let fs = Filesystem::open(absurd).unwrap();
    assert!(matches!(
        fs.read_link(slow).unwrap_err(),
        ExtError::TooLarge { .. }
    ));
    assert_eq!(fs.inode(big).unwrap().size, (1u64 << 62) | 300_000);
    // Far past the data: zeros, at once (no walk proportional to the offset).
    let mut buf = vec![1u8; 4096];
    assert_eq!(fs.read(big, 1 << 61, &mut buf).unwrap(), 4096);
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn corrupt_journal_blocks_are_errors_or_ignored_tails() {
    // A dirty journal from a real guest, then flipped bytes in the log and its superblock.
    let tmp = tempdir();
    let img = tmp.path().join("disk.img");
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    mkfs("ext4", &["-b", "1024"], &empty, &img, "16M");
    let body = "mknod /tmp/ubdb b 98 16\nmkdir /tmp/mnt\nmount -t ext4 -o commit=1 /tmp/ubdb /tmp/mnt\ncd /tmp/mnt\n\
        i=0; while [ $i -lt 30 ]; do mkdir d$i; echo $i > d$i/f; i=$((i+1)); done\nsync\nmkdir late; echo x > late/x\nsleep 3\necho SNAPSHOT-READY\nsleep 1000\n";
    let guest = testkit::GuestBuilder::new("extc")
        .arg(format!("ubd1={}", img.display()))
        .body(body)
        .boot()
        .unwrap();
    guest
        .wait_for_log("SNAPSHOT-READY", Duration::from_secs(120))
        .unwrap();
    let dirty = tmp.path().join("dirty.img");
    stdout_of(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&img)
            .arg(&dirty),
    );
    drop(guest);
    let bytes = fs::read(&dirty).unwrap();
    let good = Filesystem::open(bytes.clone()).unwrap();
    let info = good.journal_info().unwrap().clone();
    assert!(info.transactions > 0, "{info:?}");
    let bs = 1024;
    let jstart = bmap(&dirty, "<8>", 0) * bs;
    let mut rng = Rng(0xC0FF_EE00);
    for round in 0..200 {
        let mut data = bytes.clone();
        let span = if round % 4 == 0 { bs } else { 200 * bs };
        for _ in 0..1 + rng.next() % 4 {
            let at = jstart + (rng.next() as usize % span);
            data[at] ^= 1 << (rng.next() % 8);
        }
        within(
            format!("journal round {round}"),
            move || match Filesystem::open(data) {
                Ok(fs) => {
                    explore(&fs);
                }
                Err(e) => assert!(
                    matches!(
                        e,
                        ExtError::Journal(_)
                            | ExtError::SuperblockChecksum { .. }
                            | ExtError::BadSuperblock { .. }
                            | ExtError::BadMagic { .. }
                            | ExtError::UnsupportedFeature { .. }
                    ),
                    "{e}"
                ),
            },
        );
    }
}
