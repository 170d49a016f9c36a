//! One open filesystem serves many threads at once: reads at random offsets from several
//! threads return exactly the source bytes, and random access does not depend on the offset.

mod ext_support;

use std::fs;
use std::sync::Arc;

use ext_support::*;
use umlfs::ext::Filesystem;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn filesystem_is_shared_by_threads_and_reads_match_the_source() {
    assert_send_sync::<Filesystem<fs::File>>();
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let data = pattern(6 << 20, 42);
    fs::write(src.join("big"), &data).unwrap();
    fs::create_dir(src.join("dir")).unwrap();
    for i in 0..500 {
        fs::write(src.join(format!("dir/f{i}")), format!("{i}")).unwrap();
    }
    for (fstype, opts) in [("ext4", &["-b", "4096"][..]), ("ext2", &["-b", "1024"][..])] {
        let img = tmp.path().join(format!("{fstype}.img"));
        mkfs(fstype, opts, &src, &img, "32M");
        let fs = Arc::new(open(&img));
        let big = fs.lookup(fs.root(), b"big").unwrap().unwrap();
        let dir = fs.lookup(fs.root(), b"dir").unwrap().unwrap();
        let data = Arc::new(data.clone());
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let fs = fs.clone();
                let data = data.clone();
                std::thread::spawn(move || {
                    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                    let mut buf = vec![0u8; 200_000];
                    for _ in 0..200 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let off = (x % data.len() as u64) as usize;
                        let len = ((x >> 32) % buf.len() as u64) as usize + 1;
                        let n = fs.read(big, off as u64, &mut buf[..len]).unwrap();
                        let want = &data[off..(off + len).min(data.len())];
                        assert_eq!(n, want.len());
                        assert!(&buf[..n] == want, "thread {t}: bytes at {off}+{len}");
                        let i = x % 500;
                        let ino = fs.lookup(dir, format!("f{i}").as_bytes()).unwrap().unwrap();
                        let mut small = [0u8; 8];
                        let n = fs.read(ino, 0, &mut small).unwrap();
                        assert_eq!(&small[..n], i.to_string().as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}

#[test]
fn read_dir_resumes_from_any_cookie() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    for i in 0..700 {
        fs::write(src.join(format!("dir/entry-{i}")), b"").unwrap();
    }
    fs::create_dir_all(src.join("tiny")).unwrap();
    for i in 0..4 {
        fs::write(src.join(format!("tiny/t{i}")), b"").unwrap();
    }
    for opts in [&["-b", "1024"][..], &["-O", "inline_data"][..]] {
        let img = tmp.path().join("r.img");
        mkfs("ext4", opts, &src, &img, "16M");
        let fs = open(&img);
        for (name, count) in [("dir", 702), ("tiny", 6)] {
            let dir = fs.lookup(fs.root(), name.as_bytes()).unwrap().unwrap();
            if opts.contains(&"inline_data") && name == "tiny" {
                assert_ne!(
                    fs.inode(dir).unwrap().flags & 0x1000_0000,
                    0,
                    "tiny is not inline"
                );
            }
            let mut all = Vec::new();
            fs.read_dir(dir, 0, |e| {
                all.push(e);
                true
            })
            .unwrap();
            assert_eq!(all.len(), count);
            // Read three entries at a time, resuming from the last cookie each time.
            let mut resumed = Vec::new();
            let mut cookie = 0;
            loop {
                let mut batch = Vec::new();
                fs.read_dir(dir, cookie, |e| {
                    batch.push(e);
                    batch.len() < 3
                })
                .unwrap();
                let Some(last) = batch.last() else { break };
                cookie = last.next_offset;
                resumed.extend(batch);
            }
            assert_eq!(resumed, all, "{opts:?}");
            assert_eq!(&all[0].name, b".");
            assert_eq!(&all[1].name, b"..");
            assert_eq!(all[1].ino, fs.root());
        }
        // Small inline directory: "." and ".." synthesised, then the entries.
        let root_names: Vec<Vec<u8>> = {
            let mut v = Vec::new();
            fs.read_dir(fs.root(), 0, |e| {
                v.push(e.name);
                true
            })
            .unwrap();
            v
        };
        assert_eq!(&root_names[..2], &[b".".to_vec(), b"..".to_vec()]);
    }
}
