//! COW disks: a COW file (v1, v2, v3) is read through to its backing file, both as an image
//! source and as a running guest's `ubdN=cow,backing` disk.

mod umlfs_support;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::GuestBuilder;
use umlfs_support::*;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A COW file of version 1, 2 or the kernel's (broken-aligned) 3 holding `sectors`, laid
/// out as arch/um/drivers/cow_user.c writes them.
fn craft(version: &str, path: &Path, backing: &Path, sectors: &[(u64, Vec<u8>)]) {
    let meta = fs::metadata(backing).unwrap();
    let (size, mtime) = (meta.len(), meta.mtime() as u32);
    let name = backing.to_str().unwrap().as_bytes();
    let (mut head, bitmap_offset, data_offset) = match version {
        "v1" => {
            let mut h = vec![0u8; 280];
            h[0..4].copy_from_slice(&0x4F4F_4F4Du32.to_ne_bytes());
            h[4..8].copy_from_slice(&1u32.to_ne_bytes());
            h[8..8 + name.len()].copy_from_slice(name);
            h[264..268].copy_from_slice(&mtime.to_ne_bytes());
            h[268..276].copy_from_slice(&size.to_ne_bytes());
            h[276..280].copy_from_slice(&512u32.to_ne_bytes());
            let len = (size + 511) / 4096;
            (h, 280u64, (280 + len).div_ceil(512) * 512)
        }
        "v2" => {
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
        "v3" => {
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
        _ => unreachable!(),
    };
    head.resize(bitmap_offset as usize, 0);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all_at(&head, 0).unwrap();
    f.set_len(data_offset + size).unwrap();
    for (sector, data) in sectors {
        let mut byte = [0u8];
        f.read_exact_at(&mut byte, bitmap_offset + sector / 8)
            .unwrap();
        byte[0] |= 1 << (sector % 8);
        f.write_all_at(&byte, bitmap_offset + sector / 8).unwrap();
        f.write_all_at(data, data_offset + sector * 512).unwrap();
    }
}

#[test]
fn cow_files_of_every_version_show_the_backing_file_with_their_changes() {
    let dir = tempfile::Builder::new()
        .prefix("umlfs-cow")
        .tempdir()
        .unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("old.txt"), b"in the backing file\n").unwrap();
    let backing = dir.path().join("base.img");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&src)
        .arg(&backing)
        .arg("16M"));
    // The changed disk: a copy with one more file, written by debugfs.
    let changed = dir.path().join("changed.img");
    fs::copy(&backing, &changed).unwrap();
    let payload = dir.path().join("payload");
    fs::write(&payload, b"only in the COW file\n").unwrap();
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-R")
        .arg(format!("write {} new.txt", payload.display()))
        .arg(&changed));
    let (a, b) = (fs::read(&backing).unwrap(), fs::read(&changed).unwrap());
    let sectors: Vec<(u64, Vec<u8>)> = a
        .chunks(512)
        .zip(b.chunks(512))
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(n, (_, y))| (n as u64, y.to_vec()))
        .collect();
    assert!(!sectors.is_empty());
    let before = fs::read(&backing).unwrap();
    for version in ["v1", "v2", "v3"] {
        let cow = dir.path().join(format!("{version}.cow"));
        craft(version, &cow, &backing, &sectors);
        let mp = MountPoint::new();
        let out = umlfs(&[cow.to_str().unwrap(), mp.path().to_str().unwrap()]);
        assert!(out.status.success(), "{version}: {out:?}");
        assert_eq!(
            fs::read(mp.path().join("new.txt")).unwrap(),
            b"only in the COW file\n",
            "{version}"
        );
        assert_eq!(
            fs::read(mp.path().join("old.txt")).unwrap(),
            b"in the backing file\n",
            "{version}"
        );
        assert!(mp.unmount(), "{version}");
    }
    assert!(
        fs::read(&backing).unwrap() == before,
        "the backing file changed"
    );
}

#[test]
fn running_guest_cow_disk_is_shown_through_its_cow_file() {
    let dir = testkit::guest_visible_tempdir("umlfs-cowg");
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("old.txt"), b"in the backing file\n").unwrap();
    let backing = dir.path().join("base.img");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&src)
        .arg(&backing)
        .arg("32M"));
    let cow = dir.path().join("disk.cow");
    let before = fs::read(&backing).unwrap();
    // The kernel creates the (v3) COW file itself.
    let guest = GuestBuilder::new("ufsc")
        .arg(format!("ubd1={},{}", cow.display(), backing.display()))
        .body(
            "mkdir -p /tmp/d; mknod /tmp/ubdb b 98 16; mount /tmp/ubdb /tmp/d || echo MOUNT-FAILED
echo in the cow > /tmp/d/new.txt; sync; echo WROTE; while :; do sleep 1; done",
        )
        .boot()
        .unwrap();
    guest
        .wait_for_log("WROTE", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", guest.log_tail(20)));
    let mp = MountPoint::new();
    let opts = format!("uml_dir={}", guest.uml_dir().display());
    let out = umlfs(&[
        &format!("{}:/tmp/d", guest.umid()),
        mp.path().to_str().unwrap(),
        "-o",
        &opts,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fs::read(mp.path().join("new.txt")).unwrap(),
        b"in the cow\n"
    );
    assert_eq!(
        fs::read(mp.path().join("old.txt")).unwrap(),
        b"in the backing file\n"
    );
    assert!(mp.unmount());
    assert!(
        fs::read(&backing).unwrap() == before,
        "the backing file changed"
    );
}
