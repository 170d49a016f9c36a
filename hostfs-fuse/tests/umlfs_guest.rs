//! Real mounts of running guests: `umlfs UMID:/ DIR` shows the guest's own tree (its disk at
//! its guest mount point, hostfs as the host directory, tmpfs/proc as empty directories),
//! follows what the guest writes, never writes or locks the image, and survives the guest.

mod umlfs_support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use testkit::{Guest, GuestBuilder};
use umlfs_support::*;

/// Where the guest can see host files: its /tmp is a tmpfs that hides the host's /tmp.
fn host_visible_dir() -> tempfile::TempDir {
    testkit::guest_visible_tempdir("umlfs-g")
}

struct Setup {
    guest: Guest,
    img: PathBuf,
    trigger: PathBuf,
    _dir: tempfile::TempDir,
}

/// Boot a guest that mounts `ubd1` at /tmp/d, writes new.txt, syncs, prints WROTE; when the
/// host creates the trigger file it rewrites new.txt (same length), adds second.txt, renames
/// old.txt to renamed.txt, syncs and prints WROTE2.
fn boot() -> Setup {
    let dir = host_visible_dir();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("old.txt"), b"from mke2fs\n").unwrap();
    let img = dir.path().join("disk.img");
    let st = Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
            "-d",
        ])
        .arg(&src)
        .arg(&img)
        .arg("64M")
        .status()
        .unwrap();
    assert!(st.success());
    // A second disk made from the same tree: its files have the same guest inode numbers.
    let img2 = dir.path().join("disk2.img");
    let st = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&src)
        .arg(&img2)
        .arg("16M")
        .status()
        .unwrap();
    assert!(st.success());
    let trigger = dir.path().join("go");
    let body = format!(
        "mkdir -p /tmp/d /tmp/e; mknod /tmp/ubdb b 98 16; mknod /tmp/ubdc b 98 32
mount -o commit=1 /tmp/ubdb /tmp/d || echo MOUNT-FAILED; mount -o ro /tmp/ubdc /tmp/e || echo MOUNT-FAILED
echo hello > /tmp/d/new.txt; sync; echo WROTE
while [ ! -e {t} ]; do sleep 0.1; done
echo HELLO > /tmp/d/new.txt; echo second > /tmp/d/second.txt; mv /tmp/d/old.txt /tmp/d/renamed.txt; sync; echo WROTE2
i=0; while :; do echo TICK$i; i=$((i+1)); sleep 0.2; done",
        t = trigger.display()
    );
    let guest = GuestBuilder::new("ufs")
        .arg(format!("ubd1={}", img.display()))
        .arg(format!("ubd2={}", img2.display()))
        .body(&body)
        .boot()
        .unwrap();
    guest
        .wait_for_log("WROTE", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", guest.log_tail(30)));
    assert!(!guest.log().contains("MOUNT-FAILED"), "{}", guest.log());
    Setup {
        guest,
        img,
        trigger,
        _dir: dir,
    }
}

fn mount_guest(source: &str, guest: &Guest, mp: &MountPoint, extra: &str) -> String {
    let opts = format!("uml_dir={}{extra}", guest.uml_dir().display());
    let out = umlfs(&[source, mp.path().to_str().unwrap(), "-o", &opts]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "umlfs {source}: {err}");
    err
}

/// Poll (bounded) until `f` holds.
fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {timeout:?}");
}

fn lock_holder(path: &Path) -> Option<i32> {
    uml::cow::holder(path).unwrap().map(|h| h.pid)
}

fn fingerprint(path: &Path) -> (String, i64, i64) {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    let md = fs::metadata(path).unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        md.mtime(),
        md.mtime_nsec(),
    )
}

#[test]
fn running_guest_tree_shows_its_disk_at_its_mount_point_and_follows_its_writes() {
    let s = boot();
    let base = host_visible_dir();
    // The mount point is visible to the guest through its hostfs root, so the view contains
    // the mount itself: it must show up empty instead of deadlocking.
    let mp = MountPoint::new_in(base.path());
    let source = format!("{}:/", s.guest.umid());
    mount_guest(&source, &s.guest, &mp, "");
    let m = mp.path();
    assert_eq!(fs::read(m.join("tmp/d/new.txt")).unwrap(), b"hello\n");
    assert_eq!(fs::read(m.join("tmp/d/old.txt")).unwrap(), b"from mke2fs\n");
    // tmpfs and proc are empty directories; the guest's /tmp shows the way to its mounts.
    assert!(m.join("proc").is_dir());
    assert_eq!(fs::read_dir(m.join("proc")).unwrap().count(), 0);
    let tmp: Vec<String> = fs::read_dir(m.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(tmp, vec!["d".to_owned(), "e".to_owned()]);
    // Two disks, same guest inode numbers: (st_dev, st_ino) still differ.
    let (a, b) = (
        fs::metadata(m.join("tmp/d/old.txt")).unwrap(),
        fs::metadata(m.join("tmp/e/old.txt")).unwrap(),
    );
    assert_eq!(a.ino() & 0xFFFF_FFFF, b.ino() & 0xFFFF_FFFF);
    assert_ne!((a.dev(), a.ino()), (b.dev(), b.ino()));
    let (_, same, _) = sh(&format!(
        "find '{}/tmp' -samefile '{}/tmp/d/old.txt'",
        m.display(),
        m.display()
    ));
    assert_eq!(same.lines().count(), 1, "{same}");
    // The hostfs root shows the host's files; symlinks are returned, not followed.
    assert_eq!(
        fs::read(m.join("etc/hostname")).unwrap(),
        fs::read("/etc/hostname").unwrap()
    );
    if let Ok(target) = fs::read_link("/bin") {
        assert_eq!(fs::read_link(m.join("bin")).unwrap(), target);
    }
    let inner = m.join(m.strip_prefix("/").unwrap());
    if m.starts_with("/tmp") {
        // The test guest has its own tmpfs on /tmp, which the view shows empty: the host's
        // mount point is not in the guest's tree at all (a checkout under /tmp). Walking
        // there must still answer at once.
        let (ok, out, err) = sh(&format!("timeout 20 ls -a '{}'", m.join("tmp").display()));
        assert!(ok, "listing the guest's tmpfs: {err}");
        assert!(
            !inner.exists(),
            "the host's mount point showed through the guest's tmpfs"
        );
        let _ = out;
    } else {
        // Through the hostfs root the view reaches its own mount point: it must be shown empty,
        // never entered (a FUSE server reading its own mount deadlocks).
        let (ok, out, err) = sh(&format!("timeout 20 ls -a '{}'", inner.display()));
        assert!(ok, "listing the mount inside itself: {err}");
        assert_eq!(out, ".\n..\n", "the mount point inside the view is empty");
    }
    // Identity: the disk's inodes keep the guest's numbers in their low 32 bits.
    let ino = fs::metadata(m.join("tmp/d/old.txt")).unwrap().ino();
    assert!(ino >> 32 != 0 && ino & 0xFFFF_FFFF > 10, "{ino:#x}");
    // Freshness: the guest rewrites new.txt (same length) and adds a file; both show up.
    fs::write(&s.trigger, b"").unwrap();
    s.guest
        .wait_for_log("WROTE2", Duration::from_secs(30))
        .unwrap();
    eventually("second.txt appears", Duration::from_secs(15), || {
        fs::read(m.join("tmp/d/second.txt")).is_ok_and(|c| c == b"second\n")
    });
    eventually(
        "new.txt shows its new content",
        Duration::from_secs(15),
        || fs::read(m.join("tmp/d/new.txt")).is_ok_and(|c| c == b"HELLO\n"),
    );
    // A name the host had looked up (entries live as long as a generation) goes with the
    // rename.
    eventually("old.txt is renamed", Duration::from_secs(15), || {
        !m.join("tmp/d/old.txt").exists()
            && fs::read(m.join("tmp/d/renamed.txt")).is_ok_and(|c| c == b"from mke2fs\n")
    });
    assert!(mp.unmount());

    // Never written, never locked: a full mount/read/unmount cycle against the running
    // guest leaves the image's bytes, mtime and lock exactly as they were.
    let holder = lock_holder(&s.img);
    assert_eq!(
        holder,
        Some(s.guest.pid() as i32),
        "the guest holds its lock"
    );
    let before = fingerprint(&s.img);
    let mp2 = MountPoint::new();
    let err = mount_guest(&format!("{}:ubd1:/", s.guest.umid()), &s.guest, &mp2, "");
    assert!(err.is_empty(), "{err}");
    let (ok, _, e) = sh(&format!(
        "find '{0}' -type f -exec cat {{}} + >/dev/null && ls -lR '{0}' >/dev/null",
        mp2.path().display()
    ));
    assert!(ok, "{e}");
    assert_eq!(
        fs::read(mp2.path().join("second.txt")).unwrap(),
        b"second\n"
    );
    assert!(mp2.unmount());
    assert_eq!(fingerprint(&s.img), before, "image bytes or mtime changed");
    assert_eq!(lock_holder(&s.img), holder, "lock changed");
}

#[test]
fn snapshot_pauses_the_guest_briefly_and_it_keeps_running() {
    let s = boot();
    let mp = MountPoint::new();
    let err = mount_guest(
        &format!("{}:/tmp/d", s.guest.umid()),
        &s.guest,
        &mp,
        ",snapshot",
    );
    assert!(err.contains("paused for"), "{err}");
    assert_eq!(fs::read(mp.path().join("new.txt")).unwrap(), b"hello\n");
    // The guest was resumed: it still makes progress after the snapshot.
    fs::write(&s.trigger, b"").unwrap();
    s.guest
        .wait_for_log("TICK3", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("guest did not resume: {e}"));
    assert!(mp.unmount());
}

#[test]
fn mount_helper_mounts_a_guest_and_guest_exit_leaves_a_mount_that_unmounts_cleanly() {
    let mut s = boot();
    let mp = MountPoint::new();
    let st = Command::new("mount")
        .args(["-t", &format!("fuse.{BIN}")])
        .arg(format!("{}:/", s.guest.umid()))
        .arg(mp.path())
        .args(["-o", &format!("uml_dir={}", s.guest.uml_dir().display())])
        .status()
        .unwrap();
    assert!(st.success());
    let line = mountinfo_line(mp.path()).unwrap();
    assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");
    let f = mp.path().join("tmp/d/new.txt");
    assert_eq!(fs::read(&f).unwrap(), b"hello\n");
    // The image of a running guest, mounted directly: the holder of its lock is named.
    let mp2 = MountPoint::new();
    let out = umlfs(&[
        s.img.to_str().unwrap(),
        mp2.path().to_str().unwrap(),
        "-o",
        &format!("uml_dir={}", s.guest.uml_dir().display()),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let want = format!("in use by pid {}, umid {}", s.guest.pid(), s.guest.umid());
    assert!(err.contains(&want), "{err}");
    assert_eq!(fs::read(mp2.path().join("new.txt")).unwrap(), b"hello\n");
    assert!(mp2.unmount());
    s.guest.kill();
    // The disk image still exists: the last generation keeps being served (or EIO).
    for _ in 0..5 {
        match fs::read(&f) {
            Ok(c) => assert_eq!(c, b"hello\n"),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
        }
        sleep(Duration::from_millis(300));
    }
    let st = Command::new("umount").arg(mp.path()).status().unwrap();
    assert!(st.success());
    assert!(wait_no_daemon(mp.path(), Duration::from_secs(10)));
    assert!(!mp.is_mounted());
}

/// With `allow_other,uid=N` on a guest whose root is the host's /, user N read the host's
/// /etc/shadow: uid= made it the owner of every hostfs file. uid=/gid= now apply to the
/// guest's disk files only.
#[test]
fn uid_option_does_not_hand_host_files_to_that_user() {
    let s = boot();
    let mp = MountPoint::new();
    let nobody = "65534";
    mount_guest(
        &format!("{}:/", s.guest.umid()),
        &s.guest,
        &mp,
        &format!(",allow_other,uid={nobody},gid={nobody}"),
    );
    let shadow = mp.path().join("etc/shadow");
    let md = fs::symlink_metadata(&shadow).unwrap();
    let host = fs::symlink_metadata("/etc/shadow").unwrap();
    assert_eq!((md.uid(), md.gid()), (host.uid(), host.gid()));
    let disk = fs::symlink_metadata(mp.path().join("tmp/d/new.txt")).unwrap();
    assert_eq!(disk.uid(), 65534, "uid= still applies to the guest's disk");
    let out = Command::new("timeout")
        .args([
            "20",
            "setpriv",
            "--reuid",
            nobody,
            "--regid",
            nobody,
            "--clear-groups",
        ])
        .arg("cat")
        .arg(&shadow)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "user {nobody} read the host's /etc/shadow: {out:?}"
    );
    assert!(mp.unmount());
}

/// A host tmpfs (new inode numbers for every file created) mounted under a guest-visible
/// directory; unmounted on drop.
struct HostTmpfs {
    point: PathBuf,
    /// Removed after the tmpfs is unmounted (fields drop after `drop`).
    _dir: tempfile::TempDir,
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.point).status();
    }
}

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Node tables grew with every host file ever looked up. With FORGET they hold what the
/// kernel holds: across `find` runs over a hostfs tree whose 20,000 files are recreated
/// (new inode numbers) each time, with the kernel's caches dropped in between, the daemon's
/// RSS stays flat.
#[test]
fn forget_keeps_memory_flat_across_find_runs_over_a_changing_host_tree() {
    let s = boot();
    let dir = host_visible_dir();
    let t = dir.path().join("t");
    fs::create_dir(&t).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "none"])
        .arg(&t)
        .status()
        .unwrap();
    assert!(st.success());
    let tree = HostTmpfs {
        point: t.clone(),
        _dir: dir,
    };
    let fill = |round: usize| {
        for d in 0..100 {
            let p = tree.point.join(format!("d{d:03}"));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir(&p).unwrap();
            for f in 0..200 {
                fs::write(p.join(format!("r{round}-file-{f:04}")), b"").unwrap();
            }
        }
    };
    fill(0);
    let mp = MountPoint::new();
    mount_guest(
        &format!("{}:{}", s.guest.umid(), t.display()),
        &s.guest,
        &mp,
        "",
    );
    let pid = daemons_for(mp.path())[0];
    let mut rss = Vec::new();
    for round in 0..6 {
        if round > 0 {
            fill(round);
        }
        let start = Instant::now();
        let out = Command::new("timeout")
            .args(["120", "find"])
            .arg(mp.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let n = out.stdout.iter().filter(|&&c| c == b'\n').count();
        assert_eq!(n, 1 + 100 + 100 * 200);
        let took = start.elapsed();
        let _ = fs::write("/proc/sys/vm/drop_caches", "2");
        sleep(Duration::from_secs(1));
        rss.push(rss_kib(pid));
        eprintln!(
            "find run {round}: {n} entries in {took:?}, daemon RSS {} KiB",
            rss[round]
        );
    }
    assert!(mp.unmount());
    let growth = rss[5].saturating_sub(rss[1]);
    assert!(
        growth < 2048,
        "RSS grew {growth} KiB over runs 1..5: {rss:?}"
    );
}

/// Names in directory `dir` (sorted), or None when it cannot be listed.
fn names_in(dir: &Path) -> Option<Vec<String>> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .ok()?
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Some(v)
}

/// umlfs follows the guest's mount table: a disk the guest mounts after `umlfs UMID:/`
/// appears within about a second, at a point inside a tmpfs (shown only as the way to its
/// mounts) and on a hostfs directory the host had already shown; when the guest unmounts it,
/// it disappears. A path on no disk at all is refused, saying what it is on.
#[test]
fn a_disk_the_guest_mounts_later_appears_and_one_it_unmounts_disappears() {
    let dir = host_visible_dir();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("late.txt"), b"late\n").unwrap();
    let img = dir.path().join("late.img");
    let st = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("16M")
        .status()
        .unwrap();
    assert!(st.success());
    let on_host = dir.path().join("in-guest");
    fs::create_dir(&on_host).unwrap();
    let (go_mount, go_umount) = (dir.path().join("go-mount"), dir.path().join("go-umount"));
    let body = format!(
        "mkdir -p /tmp/late; mknod /tmp/ubdb b 98 16; echo WAITING
while [ ! -e {m} ]; do sleep 0.1; done
mount -o ro /tmp/ubdb /tmp/late && mount -o ro /tmp/ubdb {h} && echo LATE-MOUNTED || echo MOUNT-FAILED
while [ ! -e {u} ]; do sleep 0.1; done
umount /tmp/late && umount {h} && echo LATE-UNMOUNTED || echo UMOUNT-FAILED
while :; do sleep 1; done",
        m = go_mount.display(),
        u = go_umount.display(),
        h = on_host.display(),
    );
    let guest = GuestBuilder::new("ufol")
        .arg(format!("ubd1r={}", img.display()))
        .body(&body)
        .boot()
        .unwrap();
    guest
        .wait_for_log("WAITING", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", guest.log_tail(30)));
    let mp = MountPoint::new();
    let err = mount_guest(&format!("{}:/", guest.umid()), &guest, &mp, "");
    // What is not on a disk is said: the hostfs root, the mounts shown empty.
    assert!(
        err.contains("\"/\" is on a hostfs mount of the host's /: its files are shown read-only"),
        "{err}"
    );
    assert!(err.contains("/proc (a proc mount)"), "{err}");
    let m = mp.path();
    let late = m.join("tmp/late");
    let hosted = m.join(on_host.strip_prefix("/").unwrap());
    // Before: no disk. The hostfs directory is looked at (the kernel caches it, empty).
    assert!(!late.exists());
    assert_eq!(names_in(&hosted), Some(vec![]));

    fs::write(&go_mount, b"").unwrap();
    guest
        .wait_for_log("LATE-MOUNTED", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", guest.log_tail(30)));
    let seen = Instant::now();
    eventually(
        "the disk mounted later appears",
        Duration::from_secs(3),
        || {
            fs::read(late.join("late.txt")).is_ok_and(|c| c == b"late\n")
                && fs::read(hosted.join("late.txt")).is_ok_and(|c| c == b"late\n")
        },
    );
    eprintln!("mount seen after {:?}", seen.elapsed());
    assert!(
        names_in(&m.join("tmp"))
            .unwrap()
            .contains(&"late".to_owned())
    );

    fs::write(&go_umount, b"").unwrap();
    guest
        .wait_for_log("LATE-UNMOUNTED", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", guest.log_tail(30)));
    let seen = Instant::now();
    eventually(
        "the unmounted disk disappears",
        Duration::from_secs(3),
        || !late.exists() && names_in(&hosted) == Some(vec![]),
    );
    eprintln!("unmount seen after {:?}", seen.elapsed());
    assert!(
        !names_in(&m.join("tmp"))
            .unwrap()
            .contains(&"late".to_owned())
    );
    assert!(mp.unmount());

    // A path on no disk: refused with what it is, nothing mounted.
    let mp2 = MountPoint::new();
    let out = umlfs(&[
        &format!("{}:/proc", guest.umid()),
        mp2.path().to_str().unwrap(),
        "-o",
        &format!("uml_dir={}", guest.uml_dir().display()),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("\"/proc\" is on a proc mount, not on a disk"),
        "{err}"
    );
    assert!(!mp2.is_mounted());
}
