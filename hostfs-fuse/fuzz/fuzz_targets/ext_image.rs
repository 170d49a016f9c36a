//! Open arbitrary bytes as an ext2/3/4 image and walk everything reachable, with bounds:
//! the reader must return errors, never panic, hang or allocate without limit.
#![no_main]

use std::collections::{HashSet, VecDeque};

use libfuzzer_sys::fuzz_target;
use umlfs::ext::{FileType, Filesystem};

fuzz_target!(|data: &[u8]| {
    let Ok(fs) = Filesystem::open(data.to_vec()) else {
        return;
    };
    let _ = fs.statfs();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([fs.root()]);
    let mut budget = 2_000usize;
    let mut buf = vec![0u8; 16 << 10];
    while let Some(dir) = queue.pop_front() {
        if !seen.insert(dir) {
            continue;
        }
        let mut entries = Vec::new();
        let _ = fs.read_dir(dir, 0, |e| {
            entries.push(e);
            entries.len() < 512
        });
        for e in entries {
            if budget == 0 {
                return;
            }
            budget -= 1;
            let _ = fs.lookup(dir, &e.name);
            let _ = fs.xattrs(e.ino);
            let Ok(inode) = fs.inode(e.ino) else { continue };
            match inode.file_type {
                FileType::Directory => queue.push_back(e.ino),
                FileType::Symlink => {
                    let _ = fs.read_link(e.ino);
                }
                _ => {
                    let _ = fs.read(e.ino, 0, &mut buf);
                    let _ = fs.read(e.ino, inode.size.saturating_sub(100), &mut buf);
                }
            }
        }
    }
});
