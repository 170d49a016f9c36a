//! COW disks: a COW file (v1, v2, v3) is read through to its backing file, both as an image
//! source and as a running guest's `ubdN=cow,backing` disk.

mod umlfs_support;

use std::fs;
use std::process::Command;
use std::time::Duration;

use testkit::{CowVersion, GuestBuilder, run, write_cow};
use umlfs_support::*;

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
    for (version, layout) in [
        ("v1", CowVersion::V1),
        ("v2", CowVersion::V2),
        ("v3", CowVersion::V3),
    ] {
        let cow = dir.path().join(format!("{version}.cow"));
        write_cow(layout, &cow, &backing, &sectors);
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
