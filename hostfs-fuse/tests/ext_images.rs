//! Images made by mke2fs from a source tree are read back exactly: names, inode numbers,
//! link counts, modes, owners, sizes, times, device numbers, symlink targets, xattrs and
//! contents, checked against the source tree and against debugfs.

mod ext_support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use ext_support::*;
use umlfs::ext::{FileType, Filesystem};

fn host_type(ft: fs::FileType) -> FileType {
    if ft.is_dir() {
        FileType::Directory
    } else if ft.is_symlink() {
        FileType::Symlink
    } else if ft.is_file() {
        FileType::Regular
    } else if ft.is_char_device() {
        FileType::CharDevice
    } else if ft.is_block_device() {
        FileType::BlockDevice
    } else if ft.is_fifo() {
        FileType::Fifo
    } else {
        FileType::Socket
    }
}

fn host_walk(root: &Path, rel: &str, out: &mut BTreeMap<String, fs::Metadata>) {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let p = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let md = fs::symlink_metadata(root.join(&p)).unwrap();
        if md.is_dir() {
            host_walk(root, &p, out);
        }
        out.insert(p, md);
    }
}

/// Compare one image with its source tree and with debugfs.
fn check_image(fstype: &str, opts: &[&str], indexed: bool) {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let img = tmp.path().join("fs.img");
    mkfs(fstype, opts, &src, &img, "160M");
    if indexed {
        index_dirs(&img);
    }
    let before = fingerprint(&img);
    let fs = open(&img);
    let found = walk(&fs);

    let mut host = BTreeMap::new();
    host_walk(&src, "", &mut host);
    let image_names: Vec<&String> = found
        .keys()
        .filter(|k| !k.starts_with("lost+found"))
        .collect();
    let host_names: Vec<&String> = host.keys().collect();
    assert_eq!(
        image_names, host_names,
        "{fstype} {opts:?}: the image lists other names than the source"
    );

    // Hard links share the guest inode and its link count.
    assert_eq!(found["f4096"].inode.ino, found["f4096.link"].inode.ino);
    assert_eq!(found["f4096"].inode.ino, found["sub/f4096.link2"].inode.ino);
    assert_eq!(found["f4096"].inode.nlink, 3);

    let ((), logs) = with_logs(|| compare_with_host(&fs, &found, &host, &src, fstype, opts));
    assert!(
        !logs.contains("htree lookup failed"),
        "{fstype} {opts:?}: htree lookups fell back:\n{logs}"
    );
    assert_eq!(
        fs.lookup(found["many"].inode.ino, b"entry-99999").unwrap(),
        None
    );
    if opts.contains(&"inline_data") {
        for p in [
            "small.txt",
            "hundred",
            "emptydir",
            "sub",
            "slowlink",
            "link60",
        ] {
            assert_ne!(found[p].inode.flags & 0x1000_0000, 0, "{p} is not inline");
        }
    }
    if indexed {
        for d in ["many", "longnames"] {
            assert_ne!(
                found[d].inode.flags & 0x1000,
                0,
                "{fstype} {opts:?}: {d} has no hash index"
            );
        }
    }
    assert_eq!(fs.lookup(fs.root(), b"no-such-name").unwrap(), None);

    // debugfs: inode numbers of every directory listing, and full stat of special objects.
    let dirs: Vec<&String> = found
        .iter()
        .filter(|(_, f)| f.inode.file_type == FileType::Directory)
        .map(|(p, _)| p)
        .collect();
    let mut reqs: Vec<String> = dirs.iter().map(|d| format!("ls -l /{d}")).collect();
    reqs.push("ls -l /".into());
    let probe = [
        "f4096", "big", "sparse5g", "cdev", "bdev", "bigdev", "fifo", "owned32", "one", "hundred",
        "slowlink", "sub",
    ];
    reqs.extend(probe.iter().map(|p| format!("stat /{p}")));
    let outs = debugfs_batch(&img, &reqs);
    for (k, d) in dirs.iter().map(|d| d.as_str()).chain([""]).enumerate() {
        let listing = debugfs_ls(&outs[k]);
        assert!(
            listing.len() >= 2,
            "debugfs listed nothing for /{d}: {}",
            outs[k]
        );
        for (name, (ino, mode, _)) in listing {
            if name == "." || name == ".." {
                continue;
            }
            let p = if d.is_empty() {
                name.clone()
            } else {
                format!("{d}/{name}")
            };
            let f = &found[&p];
            assert_eq!(
                f.inode.ino, ino,
                "{fstype} {opts:?} {p}: inode number vs debugfs"
            );
            assert_eq!(
                u32::from(f.inode.mode),
                mode,
                "{fstype} {opts:?} {p}: mode vs debugfs"
            );
        }
    }
    for (k, p) in probe.iter().enumerate() {
        let st = parse_stat(&outs[dirs.len() + 1 + k]);
        let i = &found[*p].inode;
        let what = format!("{fstype} {opts:?} {p} vs debugfs stat");
        assert_eq!(u64::from(i.nlink), st.links, "{what}: links");
        assert_eq!(i.blocks, st.blockcount, "{what}: blockcount");
        assert_eq!(u64::from(i.generation), st.generation, "{what}: generation");
        assert_eq!(i.size, st.size, "{what}: size");
        assert_eq!(
            (u64::from(i.uid), u64::from(i.gid)),
            (st.user, st.group),
            "{what}: owner"
        );
        assert_eq!(i.flags, st.flags, "{what}: flags");
        let (sec, extra) = st.times["mtime"];
        assert_eq!(
            i.mtime.sec,
            i64::from(sec as i32) + i64::from(extra.unwrap_or(0) & 3) * (1 << 32),
            "{what}: mtime"
        );
        assert_eq!(i.mtime.nsec, extra.unwrap_or(0) >> 2, "{what}: mtime nsec");
        assert_eq!(
            i.crtime.is_some(),
            st.times.contains_key("crtime"),
            "{what}: crtime presence"
        );
        assert_eq!(i.rdev, st.device, "{what}: device");
    }
    let sf = fs.statfs();
    assert!(sf.blocks_free < sf.blocks && sf.files_free < sf.files);
    drop(fs);
    assert_eq!(fingerprint(&img), before, "reading changed the image");
}

#[test]
fn ext4_default_image_reads_like_its_source() {
    check_image("ext4", &["-b", "4096"], true);
}

#[test]
fn ext4_with_1k_blocks_reads_like_its_source() {
    check_image("ext4", &["-b", "1024"], true);
}

#[test]
fn ext4_without_metadata_csum_and_64bit_reads_like_its_source() {
    check_image("ext4", &["-O", "^metadata_csum,^64bit"], true);
}

#[test]
fn ext4_with_inline_data_reads_like_its_source() {
    check_image("ext4", &["-O", "inline_data", "-b", "4096"], false);
}

#[test]
fn ext3_image_reads_like_its_source() {
    check_image("ext3", &["-b", "1024"], true);
}

#[test]
fn ext2_with_128_byte_inodes_reads_like_its_source() {
    check_image("ext2", &["-I", "128", "-b", "1024"], false);
}

#[test]
fn ext2_with_4k_blocks_reads_like_its_source() {
    check_image("ext2", &["-b", "4096"], false);
}

#[test]
fn unsupported_incompat_feature_is_refused_by_name() {
    let tmp = tempdir();
    let img = tmp.path().join("fs.img");
    stdout_of(
        std::process::Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4"])
            .arg(&img)
            .arg("8M"),
    );
    // Set INCOMPAT_DIRDATA (0x1000) by hand: no tool creates it.
    let mut bytes = fs::read(&img).unwrap();
    let off = 1024 + 0x60;
    let v = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) | 0x1000;
    bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    // Keep the superblock checksum valid so the feature check is what refuses it.
    fix_sb_csum(&mut bytes);
    let err = Filesystem::open(bytes).unwrap_err();
    assert!(err.to_string().contains("dirdata"), "{err}");
}

fn fix_sb_csum(bytes: &mut [u8]) {
    let sb = &bytes[1024..2048];
    let ro = u32::from_le_bytes(sb[0x64..0x68].try_into().unwrap());
    if ro & 0x400 == 0 {
        return;
    }
    let mut crc = 0xFFFF_FFFFu32;
    for &b in &sb[..0x3FC] {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    bytes[1024 + 0x3FC..1024 + 0x400].copy_from_slice(&crc.to_le_bytes());
}

fn compare_with_host(
    fs: &Filesystem<fs::File>,
    found: &BTreeMap<String, Found>,
    host: &BTreeMap<String, fs::Metadata>,
    src: &Path,
    fstype: &str,
    opts: &[&str],
) {
    for (path, md) in host {
        let f = &found[path];
        let i = &f.inode;
        let what = format!("{fstype} {opts:?} {path}");
        assert_eq!(i.file_type, host_type(md.file_type()), "{what}: type");
        if f.dirent_type != FileType::Unknown {
            assert_eq!(f.dirent_type, i.file_type, "{what}: directory entry type");
        }
        assert_eq!(u32::from(i.mode), md.mode(), "{what}: mode");
        assert_eq!((i.uid, i.gid), (md.uid(), md.gid()), "{what}: owner");
        assert_eq!(i.mtime.sec, md.mtime(), "{what}: mtime");
        if !md.is_dir() {
            assert_eq!(u64::from(i.nlink), md.nlink(), "{what}: link count");
            assert_eq!(i.size, md.len(), "{what}: size");
        }
        let full = src.join(path);
        match i.file_type {
            FileType::Regular if md.len() > (64 << 20) => {
                // The 5 GiB sparse file: its head, a hole in the middle and its tail.
                let host_f = fs::File::open(&full).unwrap();
                for off in [0u64, 4096, 1 << 31, md.len() - 20000, md.len() - 12288] {
                    let mut a = vec![0u8; 20000];
                    let mut b = vec![0u8; 20000];
                    use std::os::unix::fs::FileExt;
                    let na = host_f.read_at(&mut a, off).unwrap();
                    let nb = fs.read(i.ino, off, &mut b).unwrap();
                    assert_eq!(na, nb, "{what}: length at {off}");
                    assert!(a[..na] == b[..nb], "{what}: content at {off}");
                }
            }
            FileType::Regular => {
                assert!(
                    read_all(fs, i.ino) == fs::read(&full).unwrap(),
                    "{what}: content"
                );
            }
            FileType::Symlink => {
                let t = fs::read_link(&full).unwrap();
                assert_eq!(
                    fs.read_link(i.ino).unwrap(),
                    t.as_os_str().as_encoded_bytes(),
                    "{what}: target"
                );
            }
            FileType::CharDevice | FileType::BlockDevice => {
                let r = md.rdev();
                assert_eq!(
                    i.rdev,
                    Some((libc::major(r), libc::minor(r))),
                    "{what}: device number"
                );
            }
            _ => {}
        }
        let mut xa = fs.xattrs(i.ino).unwrap();
        xa.sort();
        let mut hx = host_xattrs(&full);
        // mke2fs -d does not copy trusted.* of a non-root reader... it runs as root here, so all copy.
        hx.retain(|(n, _)| !n.starts_with(b"security.selinux"));
        assert_eq!(xa, hx, "{what}: xattrs");
        // lookup finds the same inode as the listing (htree for many/).
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => (found[p].inode.ino, n),
            None => (fs.root(), path.as_str()),
        };
        assert_eq!(
            fs.lookup(parent, name.as_bytes()).unwrap(),
            Some(i.ino),
            "{what}: lookup"
        );
    }
}

#[test]
fn ext4_with_meta_bg_reads_like_its_source() {
    // 1 KiB blocks and 64-byte descriptors: 16 per block, so the second descriptor block
    // lives in group 16 (meta_bg placement).
    check_image(
        "ext4",
        &["-O", "meta_bg,^resize_inode", "-b", "1024"],
        false,
    );
}

#[test]
fn ext4_with_bigalloc_reads_like_its_source() {
    check_image("ext4", &["-O", "bigalloc", "-C", "16384"], false);
}

#[test]
fn xattr_values_in_ea_inodes_are_read() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("file"), b"x").unwrap();
    let img = tmp.path().join("ea.img");
    mkfs("ext4", &["-O", "ea_inode", "-b", "1024"], &src, &img, "16M");
    // 1000 bytes fit neither in a 256-byte inode nor (with the 32-byte header and the entry)
    // in a 1 KiB xattr block, so ext4 puts the value in its own inode. (debugfs `ea_set -f`
    // reads at most 1024 bytes of the file.)
    let value = pattern(1000, 77);
    let vf = tmp.path().join("value");
    fs::write(&vf, &value).unwrap();
    stdout_of(
        std::process::Command::new("debugfs")
            .arg("-w")
            .arg("-R")
            .arg(format!("ea_set -f {} /file user.huge", vf.display()))
            .arg(&img),
    );
    let stat = stdout_of(
        std::process::Command::new("debugfs")
            .arg("-R")
            .arg("stat /file")
            .arg(&img),
    );
    assert!(
        stat.contains("File ACL: 0"),
        "the value went to an xattr block:\n{stat}"
    );
    let fs = open(&img);
    let ino = fs.lookup(fs.root(), b"file").unwrap().unwrap();
    let got = fs
        .xattr(ino, b"user.huge")
        .unwrap()
        .expect("user.huge missing");
    assert!(
        got == value,
        "EA-inode value differs ({} bytes read)",
        got.len()
    );
}
