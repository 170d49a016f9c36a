//! Real mounts of ext images made by mke2fs -d: what `umlfs /path/disk.img DIR` shows equals
//! the source tree, and the mount is always read-only, nosuid and nodev.

mod umlfs_support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::run;
use umlfs_support::*;

/// A small tree with every kind of object, and its image.
fn tree_and_image(fstype: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("umlfs-img")
        .tempdir()
        .unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::write(src.join("hello.txt"), b"hello\n").unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(src.join("sub/big.bin"), &big).unwrap();
    fs::hard_link(src.join("hello.txt"), src.join("sub/deeper/hardlink")).unwrap();
    symlink("../hello.txt", src.join("sub/rel-link")).unwrap();
    symlink("/etc/passwd", src.join("abs-link")).unwrap();
    fs::write(src.join("setuid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(src.join("owned"), b"owned\n").unwrap();
    std::os::unix::fs::chown(src.join("owned"), Some(1234), Some(5678)).unwrap();
    run(Command::new("mknod")
        .arg(src.join("null"))
        .args(["c", "1", "3"]));
    run(Command::new("mkfifo").arg(src.join("fifo")));
    run(Command::new("setfattr")
        .args(["-n", "user.color", "-v", "blue"])
        .arg(src.join("hello.txt")));
    run(Command::new("setfattr")
        .args(["-n", "trusted.note", "-v", "root only"])
        .arg(src.join("sub")));
    for i in 0..300 {
        fs::write(src.join(format!("sub/f{i:04}")), format!("{i}\n")).unwrap();
    }
    run(Command::new("touch")
        .args(["-h", "-d", "2001-02-03 04:05:06"])
        .arg(src.join("owned")));
    let img = tmp.path().join("disk.img");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", fstype, "-d"])
        .arg(&src)
        .arg(&img)
        .arg("32M"));
    (tmp, src, img)
}

fn mount_image(img: &Path, mp: &MountPoint, opts: &str) -> std::process::Output {
    let mut args = vec![img.to_str().unwrap(), mp.path().to_str().unwrap()];
    if !opts.is_empty() {
        args.extend(["-o", opts]);
    }
    let out = umlfs(&args);
    assert!(
        out.status.success(),
        "umlfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Inode numbers of `path` entries as debugfs sees them: name → inode.
fn debugfs_inodes(img: &Path, dir: &str) -> std::collections::BTreeMap<String, u64> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("ls -l {dir}"))
        .arg(img)
        .output()
        .unwrap();
    let mut m = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let p: Vec<&str> = line.split_whitespace().collect();
        if p.len() >= 9
            && let Ok(ino) = p[0].parse()
        {
            m.insert(p[8..].join(" "), ino);
        }
    }
    m
}

#[test]
fn image_mount_shows_the_source_tree_with_contents_attributes_and_xattrs() {
    for fstype in ["ext2", "ext4"] {
        let (_tmp, src, img) = tree_and_image(fstype);
        let mp = MountPoint::new();
        mount_image(&img, &mp, "");
        let m = mp.path();
        // Names, types, modes, owners, sizes (regular files), mtimes, link counts.
        let fmt = "%F %a %u %g %Y %h";
        let ours = stat_tree(m, fmt);
        let theirs = stat_tree(&src, fmt);
        let ours: Vec<&String> = ours
            .iter()
            .filter(|l| !l.starts_with("./lost+found"))
            .collect();
        let theirs: Vec<&String> = theirs.iter().collect();
        // Directory link counts and sizes differ between filesystems; compare all else.
        let strip = |v: Vec<&String>| -> Vec<String> {
            v.into_iter()
                .map(|l| {
                    if l.contains(" directory ") {
                        let mut p: Vec<&str> = l.split(' ').collect();
                        p.pop();
                        p.join(" ")
                    } else {
                        l.clone()
                    }
                })
                .collect()
        };
        assert_eq!(strip(ours), strip(theirs), "{fstype}: stat of every entry");
        let sizes = |root: &Path| stat_tree(root, "%F %s");
        let regular = |v: Vec<String>| -> Vec<String> {
            v.into_iter().filter(|l| l.contains("regular")).collect()
        };
        assert_eq!(regular(sizes(m)), regular(sizes(&src)), "{fstype}: sizes");
        // Contents.
        let (ok, out, err) = sh(&format!(
            "diff -r --no-dereference -x lost+found -x fifo -x null '{}' '{}'",
            src.display(),
            m.display()
        ));
        assert!(ok, "{fstype}: contents differ: {out}{err}");
        // Symlinks are returned, never followed on the host.
        assert_eq!(
            fs::read_link(m.join("abs-link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(fs::read(m.join("sub/rel-link")).unwrap(), b"hello\n");
        // Inode numbers: the low 32 bits are the guest's, hard links share one.
        let (_, out, _) = sh(&format!(
            "stat -c '%n %i' '{0}/hello.txt' '{0}/sub/deeper/hardlink' '{0}/sub'",
            m.display()
        ));
        let inos: Vec<u64> = out
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        let truth = debugfs_inodes(&img, "/");
        assert_eq!(inos[0], inos[1], "{fstype}: hard links share st_ino");
        assert_eq!(
            inos[0] & 0xFFFF_FFFF,
            truth["hello.txt"],
            "{fstype}: guest inode"
        );
        assert_eq!(inos[2] & 0xFFFF_FFFF, truth["sub"], "{fstype}: guest inode");
        let (_, same, _) = sh(&format!(
            "cd '{}' && find . -samefile hello.txt | sort",
            m.display()
        ));
        assert_eq!(same, "./hello.txt\n./sub/deeper/hardlink\n", "{fstype}");
        let (_, du, _) = sh(&format!(
            "cd '{}' && du -ab hello.txt sub/deeper/hardlink",
            m.display()
        ));
        assert_eq!(
            du.lines().count(),
            1,
            "{fstype}: du counts a hard link once: {du}"
        );
        // Extended attributes.
        let xattrs = |root: &Path| {
            let (_, out, _) = sh(&format!(
                "cd '{}' && getfattr -h -d -m - hello.txt sub 2>/dev/null | grep -v '^system\\.'",
                root.display()
            ));
            out
        };
        let ours = xattrs(m);
        assert!(ours.contains("user.color=\"blue\""), "{ours}");
        assert!(ours.contains("trusted.note=\"root only\""), "{ours}");
        assert_eq!(ours, xattrs(&src), "{fstype}: xattrs");
        // Devices are shown with their numbers.
        let (_, dev, _) = sh(&format!("stat -c '%t:%T' '{}/null'", m.display()));
        assert_eq!(dev.trim(), "1:3");
        assert!(mp.unmount(), "{fstype}: unmount");
        assert!(!mp.is_mounted());
    }
}

#[test]
fn mount_is_read_only_nosuid_nodev_whatever_the_options_say() {
    let (_tmp, _src, img) = tree_and_image("ext4");
    let before = fs::read(&img).unwrap();
    let mp = MountPoint::new();
    let out = mount_image(&img, &mp, "rw,dev,suid");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("read-only").count(),
        1,
        "rw is reported once: {stderr}"
    );
    let line = mountinfo_line(mp.path()).expect("mounted");
    let fields: Vec<&str> = line.split(' ').collect();
    let opts: Vec<&str> = fields[5].split(',').collect();
    assert!(opts.contains(&"ro"), "{line}");
    assert!(opts.contains(&"nosuid"), "{line}");
    assert!(opts.contains(&"nodev"), "{line}");
    assert!(line.contains(" - fuse.umlfs "), "{line}");
    let err = fs::write(mp.path().join("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let err = fs::OpenOptions::new()
        .write(true)
        .open(mp.path().join("hello.txt"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert!(mp.unmount());
    assert!(fs::read(&img).unwrap() == before, "the image was modified");
}

#[test]
fn uid_gid_umask_present_files_under_another_owner() {
    let (_tmp, _src, img) = tree_and_image("ext4");
    let mp = MountPoint::new();
    mount_image(&img, &mp, "uid=4321,gid=8765,umask=027");
    let (_, out, _) = sh(&format!(
        "stat -c '%u %g %a' '{0}/owned' '{0}/sub'",
        mp.path().display()
    ));
    assert_eq!(out, "4321 8765 640\n4321 8765 750\n");
    assert!(mp.unmount());
}

#[test]
fn a_path_inside_the_image_is_mounted_as_the_root() {
    let (_tmp, _src, img) = tree_and_image("ext4");
    let mp = MountPoint::new();
    let source = format!("{}:/sub/deeper", img.display());
    let out = umlfs(&[&source, mp.path().to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::read(mp.path().join("hardlink")).unwrap(), b"hello\n");
    assert!(mp.unmount());
}

fn assert_refused(args: &[&str], mp: &MountPoint, code: i32, needle: &str) {
    let out = umlfs(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: message {err:?} lacks {needle:?}"
    );
    assert!(!mp.is_mounted(), "{args:?} left a mount");
    assert!(daemons_for(mp.path()).is_empty(), "{args:?} left a process");
}

#[test]
fn bad_sources_and_options_are_refused_with_a_message_and_leave_nothing() {
    let (tmp, _src, img) = tree_and_image("ext4");
    let mp = MountPoint::new();
    let m = mp.path().to_str().unwrap();
    let i = img.to_str().unwrap();
    assert_refused(
        &[i, m, "-o", "ro,writeback_cache"],
        &mp,
        2,
        "writeback_cache",
    );
    assert_refused(&[i, m, "-o", "uid=root"], &mp, 2, "uid");
    assert_refused(
        &["/nonexistent/disk.img", m],
        &mp,
        1,
        "/nonexistent/disk.img",
    );
    assert_refused(&["/etc/hostname", m], &mp, 1, "/etc/hostname");
    let other = tmp.path().join("other.img");
    fs::write(&other, vec![0u8; 1 << 20]).unwrap();
    assert_refused(&[other.to_str().unwrap(), m], &mp, 1, "no ext2/ext3/ext4");
    assert_refused(
        &[
            "no-such-guest:/",
            m,
            "-o",
            &format!("uml_dir={}", tmp.path().display()),
        ],
        &mp,
        1,
        "no-such-guest",
    );
    // A feature the reader cannot read is named at mount time.
    let comp = tmp.path().join("compression.img");
    run(Command::new("mke2fs")
        .args(["-q", "-F"])
        .arg(&comp)
        .arg("8M"));
    run(Command::new("debugfs")
        .args(["-w", "-R", "feature compression"])
        .arg(&comp));
    assert_refused(&[comp.to_str().unwrap(), m], &mp, 1, "compression");
    // Fine options of mount and fstab are accepted.
    let out = umlfs(&[
        i,
        m,
        "-o",
        "ro,noauto,nofail,_netdev,user,x-systemd.automount",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(mp.unmount());
}

#[test]
fn mount_helper_and_fstab_lines_mount_and_umount_ends_the_daemon() {
    let (tmp, _src, img) = tree_and_image("ext4");
    let mp = MountPoint::new();
    // mount(8) runs helpers without PATH; a type of fuse./abs/path names the binary.
    let ty = format!("fuse.{BIN}");
    let st = Command::new("mount")
        .args(["-t", &ty])
        .arg(&img)
        .arg(mp.path())
        .status()
        .unwrap();
    assert!(st.success());
    let line = mountinfo_line(mp.path()).expect("mounted by mount(8)");
    assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");
    assert_eq!(fs::read(mp.path().join("hello.txt")).unwrap(), b"hello\n");
    let st = Command::new("umount").arg(mp.path()).status().unwrap();
    assert!(st.success());
    assert!(wait_no_daemon(
        mp.path(),
        std::time::Duration::from_secs(10)
    ));
    assert!(!mp.is_mounted());
    // An fstab line, with the options a real one would carry.
    let fstab = tmp.path().join("fstab");
    fs::write(
        &fstab,
        format!(
            "{} {} {ty} ro,noauto,allow_other,nofail 0 0\n",
            img.display(),
            mp.path().display()
        ),
    )
    .unwrap();
    let st = Command::new("mount")
        .arg("-T")
        .arg(&fstab)
        .arg(mp.path())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(fs::read(mp.path().join("hello.txt")).unwrap(), b"hello\n");
    let line = mountinfo_line(mp.path()).unwrap();
    assert!(line.contains("allow_other"), "{line}");
    assert!(mp.unmount());
}

#[test]
fn other_users_see_nothing_unless_allow_other_and_then_the_guest_modes_apply() {
    let (_tmp, _src, img) = tree_and_image("ext4");
    let as_nobody = |cmd: &str| {
        sh(&format!(
            "setpriv --reuid=65534 --regid=65534 --clear-groups sh -c \"{cmd}\""
        ))
    };
    let mp = MountPoint::new();
    // Let nobody reach the mount point itself.
    fs::set_permissions(
        mp.path().parent().unwrap(),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    mount_image(&img, &mp, "");
    let m = mp.path().display().to_string();
    let (ok, _, err) = as_nobody(&format!("cat {m}/hello.txt"));
    assert!(!ok, "another user read the mount without allow_other");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(mp.unmount());
    mount_image(&img, &mp, "allow_other");
    let (ok, out, err) = as_nobody(&format!("cat {m}/hello.txt"));
    assert!(ok, "{err}");
    assert_eq!(out, "hello\n");
    // default_permissions comes with allow_other: the guest's 0700 lost+found stays closed.
    let (ok, _, _) = as_nobody(&format!("ls {m}/lost+found"));
    assert!(!ok, "the guest's permission bits were not enforced");
    assert!(mp.unmount());
}

#[test]
fn a_changed_image_starts_a_new_generation_and_a_broken_one_keeps_the_last() {
    let (tmp, _src, img) = tree_and_image("ext4");
    let mp = MountPoint::new();
    mount_image(&img, &mp, "");
    let m = mp.path();
    assert_eq!(fs::read(m.join("hello.txt")).unwrap(), b"hello\n");
    assert!(!m.join("later.txt").exists());
    // Written behind the mount's back (as a stopped guest's tool would).
    let payload = tmp.path().join("payload");
    fs::write(&payload, b"written later\n").unwrap();
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-R")
        .arg(format!("write {} later.txt", payload.display()))
        .arg(&img));
    let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while fs::read(m.join("later.txt")).ok().as_deref() != Some(&b"written later\n"[..]) {
        assert!(std::time::Instant::now() < end, "later.txt never appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A superblock wiped mid-mount cannot be re-opened: the last generation stays served
    // (or a read fails with EIO), and nothing crashes or hangs.
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0u8; 1024], 1024).unwrap();
    drop(f);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for _ in 0..3 {
        match fs::read(m.join("hello.txt")) {
            Ok(c) => assert_eq!(c, b"hello\n"),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
        }
        let (ok, _, err) = sh(&format!("timeout 20 ls -lR '{}' >/dev/null", m.display()));
        assert!(ok || err.contains("Input/output error"), "{err}");
    }
    assert!(mp.unmount());
}

/// Also with FUSE over io_uring, whose queue threads start during INIT: a thread that did not
/// block the signal died of it and took the process down without unmounting.
#[test]
fn sigterm_to_a_foreground_umlfs_unmounts_and_exits() {
    sigterm_unmounts(false);
    sigterm_unmounts(true);
}

fn sigterm_unmounts(uring: bool) {
    let (_tmp, _src, img) = tree_and_image("ext4");
    let mp = MountPoint::new();
    let on = uring.then(UringOn::new);
    let mut child = Command::new(BIN)
        .arg(&img)
        .arg(mp.path())
        .arg("-f")
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !mp.is_mounted() {
        assert!(std::time::Instant::now() < end, "never mounted");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(on);
    assert_eq!(fs::read(mp.path().join("hello.txt")).unwrap(), b"hello\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            panic!("umlfs did not exit on SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!mp.is_mounted());
}

/// A FIFO as the image hung umlfs in open(2) waiting for a writer. It is refused at once
/// (the run is bounded by timeout(1), so a hang fails the test and leaves nothing behind).
#[test]
fn a_fifo_or_directory_as_the_image_is_refused_without_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("disk.fifo");
    run(Command::new("mkfifo").arg(&fifo));
    let mp = MountPoint::new();
    for (src, needle) in [
        (fifo.to_str().unwrap(), "a FIFO"),
        (tmp.path().to_str().unwrap(), "a directory"),
    ] {
        let out = Command::new("timeout")
            .args(["-s", "KILL", "20", BIN, src, mp.path().to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{src}: {err}");
        assert!(err.contains(needle), "{src}: {err}");
        assert!(!mp.is_mounted());
        assert!(daemons_for(mp.path()).is_empty());
    }
}

/// `system.posix_acl_access` in the VFS form (version 2): owner rw-, user 65534 ---, group
/// r--, mask r--, other r--.
const ACL_DENY_NOBODY: &str = "0x02000000\
    01000600ffffffff\
    02000000feff0000\
    04000400ffffffff\
    10000400ffffffff\
    20000400ffffffff";

/// A source tree and its ext4 image: `denied` (mode 0644, an ACL denying user 65534), `open`
/// (0644, `user.color=blue`) and 50 small files under `many/`.
struct AclFixture {
    tmp: tempfile::TempDir,
}

impl AclFixture {
    fn new(prefix: &str) -> AclFixture {
        let tmp = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let fixture = AclFixture { tmp };
        let src = fixture.src();
        fs::create_dir_all(src.join("many")).unwrap();
        for i in 0..50 {
            fs::write(src.join(format!("many/f{i:02}")), b"x\n").unwrap();
        }
        fs::write(src.join("denied"), b"secret\n").unwrap();
        fs::write(src.join("open"), b"open\n").unwrap();
        for f in ["denied", "open"] {
            fs::set_permissions(src.join(f), fs::Permissions::from_mode(0o644)).unwrap();
        }
        run(Command::new("setfattr")
            .args(["-n", "system.posix_acl_access", "-v", ACL_DENY_NOBODY])
            .arg(src.join("denied")));
        run(Command::new("setfattr")
            .args(["-n", "user.color", "-v", "blue"])
            .arg(src.join("open")));
        fixture.make_image();
        fixture
    }

    fn src(&self) -> PathBuf {
        self.tmp.path().join("src")
    }

    fn img(&self) -> PathBuf {
        self.tmp.path().join("acl.img")
    }

    /// (Re)makes the image from the source tree.
    fn make_image(&self) {
        run(Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-d"])
            .arg(self.src())
            .arg(self.img())
            .arg("16M"));
    }
}

/// `img` mounted with `options` where every user can reach the mount point.
fn mount_for_everyone(img: &Path, options: &str) -> MountPoint {
    let mp = MountPoint::new();
    fs::set_permissions(
        mp.path().parent().unwrap(),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    mount_image(img, &mp, options);
    mp
}

/// A shell command run as user and group 65534: (success, stdout, stderr).
fn as_nobody(cmd: &str) -> (bool, String, String) {
    sh(&format!(
        "setpriv --reuid=65534 --regid=65534 --clear-groups sh -c \"{cmd}\""
    ))
}

/// `ls -lR` used to cost two FUSE round trips per file (an ACL and an SELinux label query,
/// neither cached). POSIX ACLs are now declared to the kernel, which caches them and enforces
/// them, and a disk without labels answers a missing `security.selinux` as a filesystem
/// without labels does (EOPNOTSUPP), so `ls` asks once per mount. What the guest has is still
/// shown: its ACLs, its labels, its other xattrs.
#[test]
fn guest_acls_are_enforced_and_shown_and_ls_asks_for_labels_once() {
    let fixture = AclFixture::new("umlfs-acl");
    let (src, img) = (fixture.src(), fixture.img());
    let mp = mount_for_everyone(&img, "allow_other");
    let m = mp.path().display().to_string();
    let (ok, out, err) = as_nobody(&format!("cat {m}/open"));
    assert!(ok && out == "open\n", "{err}");
    let (ok, _, err) = as_nobody(&format!("cat {m}/denied"));
    assert!(!ok, "the guest's ACL denying user 65534 was not enforced");
    assert!(err.contains("Permission denied"), "{err}");
    // Shown as the guest has them.
    let acl = |root: &str| {
        let (ok, out, err) = sh(&format!(
            "getfattr --absolute-names -e hex -n system.posix_acl_access {root}/denied"
        ));
        assert!(ok, "{err}");
        out.lines().nth(1).unwrap_or_default().to_owned()
    };
    assert_eq!(acl(&m), acl(&src.display().to_string()));
    let (_, ls, _) = sh(&format!("ls -l {m}/denied {m}/open"));
    assert!(
        ls.lines().next().unwrap().starts_with("-rw-r--r--+"),
        "{ls}"
    );
    assert!(
        ls.lines().nth(1).unwrap().starts_with("-rw-r--r-- "),
        "{ls}"
    );
    let (_, dump, _) = sh(&format!("getfattr -d {m}/open"));
    assert!(dump.contains("user.color=\"blue\""), "{dump}");
    // One label query for the whole listing, not one per file.
    let (ok, trace, err) = sh(&format!(
        "strace -f -e trace=lgetxattr,getxattr ls -l {m}/many 2>&1 >/dev/null"
    ));
    assert!(ok, "{err}");
    let labels = trace.matches("security.selinux").count();
    assert_eq!(labels, 1, "{trace}");
    assert!(mp.unmount());

    // A labelled disk (its root carries a label) shows every label, and a file without one
    // has no data for it, as on the guest.
    run(Command::new("setfattr")
        .args([
            "-n",
            "security.selinux",
            "-v",
            "system_u:object_r:root_t:s0",
        ])
        .arg(&src));
    run(Command::new("setfattr")
        .args(["-n", "security.selinux", "-v", "system_u:object_r:etc_t:s0"])
        .arg(src.join("open")));
    fixture.make_image();
    mount_image(&img, &mp, "");
    let (ok, out, err) = sh(&format!(
        "getfattr --only-values -n security.selinux {m}/open"
    ));
    assert!(ok, "{err}");
    assert_eq!(out.trim_end_matches('\0'), "system_u:object_r:etc_t:s0");
    let (ok, _, err) = sh(&format!("getfattr -n security.selinux {m}/denied"));
    assert!(!ok && err.contains("No such attribute"), "{err}");
    assert!(mp.unmount());
}

/// `-o noxattr`: no extended attributes and no ACLs reach the host, and a file with an ACL is
/// shown without group and other permission bits, so the mode bits the kernel then checks never
/// give anyone more than the guest's ACL does.
#[test]
fn noxattr_shows_no_attributes_and_narrows_files_with_an_acl_to_their_owner() {
    let fixture = AclFixture::new("umlfs-noxattr");
    let mp = mount_for_everyone(&fixture.img(), "allow_other,noxattr");
    let m = mp.path().display().to_string();
    let (_, dump, _) = sh(&format!("getfattr -d {m}/open 2>&1"));
    assert!(!dump.contains("user.color"), "{dump}");
    let (_, ls, _) = sh(&format!("ls -l {m}/denied {m}/open"));
    assert!(
        ls.lines().next().unwrap().starts_with("-rw------- "),
        "a file with an ACL keeps only its owner's bits: {ls}"
    );
    assert!(
        ls.lines().nth(1).unwrap().starts_with("-rw-r--r-- "),
        "{ls}"
    );
    let (ok, out, err) = as_nobody(&format!("cat {m}/open"));
    assert!(ok && out == "open\n", "{err}");
    let (ok, _, err) = as_nobody(&format!("cat {m}/denied"));
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, out, err) = sh(&format!("cat {m}/denied"));
    assert!(ok && out == "secret\n", "the owner still reads it: {err}");
    assert!(mp.unmount());
}

/// The fuse module's switch for FUSE over io_uring; absent when the kernel has none.
const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";

/// Turns FUSE over io_uring on while it lives (the kernel reads the switch at each mount's
/// INIT only) and puts the old value back, also when a test fails. `None` where the kernel
/// has no FUSE over io_uring.
struct UringOn(Option<String>);

impl UringOn {
    fn new() -> UringOn {
        let before = fs::read_to_string(ENABLE_URING).ok();
        if before.is_some() {
            fs::write(ENABLE_URING, "Y").unwrap();
        }
        UringOn(before)
    }
}

impl Drop for UringOn {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            let _ = fs::write(ENABLE_URING, b.trim());
        }
    }
}

/// The io_uring queue threads of umlfs process `pid`, with the times each went to sleep
/// (every request it answers wakes it once).
fn ring_threads(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for t in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("umlfs-ring-") {
            continue;
        }
        let status = fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let sleeps = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        out.push((comm.trim().to_owned(), sleeps));
    }
    out.sort();
    out
}

/// What a user sees of a mount, relative to its root: every attribute `stat` shows, the
/// listing, xattrs, link targets, contents, the filesystem's figures, and the errors of a
/// missing file, a missing xattr and a read of a directory.
fn everything_seen(root: &Path) -> Vec<String> {
    let r = root.display();
    let mut seen = stat_tree(
        root,
        "%A %a %h %u %g %s %b %B %i %W %X %Y %Z %x %y %z %F %t %T %N",
    );
    for cmd in [
        format!("cd {r} && ls -lRa --full-time ."),
        format!("cd {r} && getfattr -R -h -d -m - -e hex . 2>&1 | LC_ALL=C sort"),
        format!("cd {r} && find . -type l | LC_ALL=C sort | xargs readlink"),
        format!("cd {r} && find . -type f | LC_ALL=C sort | xargs md5sum"),
        format!("stat -f -c '%b %f %a %c %d %s %S %l' {r}"),
        format!(
            "cd {r} && stat nothing-here 2>&1; getfattr -n user.none hello.txt 2>&1; cat sub 2>&1"
        ),
    ] {
        let (_, out, err) = sh(&cmd);
        let shown = format!("{out}{err}").replace(&r.to_string(), "MOUNT");
        seen.extend(shown.lines().map(str::to_owned));
    }
    seen
}

/// With FUSE over io_uring on, umlfs serves each CPU's requests from its own thread, and
/// what a user sees is what `/dev/fuse` shows, byte for byte: attributes, listings
/// (READDIRPLUS), xattrs and their sizes, links, contents read in 1 MiB requests, statfs,
/// errors. Access is checked as on `/dev/fuse`. Unmounting ends the daemon. `-o nouring`
/// keeps a mount on /dev/fuse. Where the kernel has no FUSE over io_uring, both mounts are
/// /dev/fuse mounts and must still work.
#[test]
fn io_uring_queues_answer_every_request_as_dev_fuse_does() {
    let (_tmp, src, img) = tree_and_image("ext4");
    let ring = MountPoint::new();
    let dev = MountPoint::new();
    let uring = {
        let on = UringOn::new();
        mount_image(&img, &ring, "");
        mount_image(&img, &dev, "nouring");
        on.0.is_some()
    };
    let ring_pid = daemons_for(ring.path())[0];
    let dev_pid = daemons_for(dev.path())[0];
    let before = ring_threads(ring_pid);
    assert_eq!(!before.is_empty(), uring, "{before:?}");
    assert!(ring_threads(dev_pid).is_empty(), "-o nouring was not kept");

    let seen = everything_seen(ring.path());
    let want = everything_seen(dev.path());
    let differ: Vec<_> = seen
        .iter()
        .zip(&want)
        .filter(|(a, b)| a != b)
        .take(5)
        .collect();
    assert!(
        differ.is_empty() && seen.len() == want.len(),
        "io_uring vs /dev/fuse: {differ:#?}"
    );
    let (_, big, _) = sh(&format!("md5sum < {}/sub/big.bin", src.display()));
    let (_, shown, _) = sh(&format!("md5sum < {}/sub/big.bin", ring.path().display()));
    assert_eq!(big, shown);
    assert!(
        seen.iter().any(|l| l.contains("user.color=0x626c7565")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.contains("No such attribute")),
        "{seen:?}"
    );

    if uring {
        let asleep = |t: &[(String, u64)]| t.iter().map(|(_, n)| n).sum::<u64>();
        let after = ring_threads(ring_pid);
        // 300-odd files, each looked up, stat'ed, read and asked for xattrs.
        assert!(
            asleep(&after) >= asleep(&before) + 600,
            "the io_uring queues answered almost nothing: {before:?} → {after:?}"
        );
    }
    assert!(ring.unmount());
    assert!(dev.unmount());
    assert!(wait_no_daemon(ring.path(), Duration::from_secs(10)));

    // The owner's mount keeps others out; with allow_other the guest's ACL decides.
    let fixture = AclFixture::new("umlfs-uring-acl");
    let mp = {
        let _on = UringOn::new();
        mount_for_everyone(&fixture.img(), "allow_other")
    };
    assert_eq!(!ring_threads(daemons_for(mp.path())[0]).is_empty(), uring);
    let m = mp.path().display().to_string();
    let (ok, out, err) = as_nobody(&format!("cat {m}/open"));
    assert!(ok && out == "open\n", "{err}");
    let (ok, _, err) = as_nobody(&format!("cat {m}/denied"));
    assert!(!ok && err.contains("Permission denied"), "{err}");
    assert!(mp.unmount());
    let mp = {
        let _on = UringOn::new();
        mount_for_everyone(&fixture.img(), "")
    };
    let m = mp.path().display().to_string();
    let (ok, _, err) = as_nobody(&format!("ls {m}/"));
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, out, err) = sh(&format!("cat {m}/denied"));
    assert!(ok && out == "secret\n", "{err}");
    assert!(mp.unmount());
}

/// The CPUs each thread of process `pid` may run on and its scheduling policy (5 is
/// SCHED_IDLE), as the uml library reads them.
fn thread_placement(pid: u32) -> Vec<(Vec<usize>, u32)> {
    let mut out = Vec::new();
    for t in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let cpus = uml::launch::cpus_of(tid).unwrap_or_default();
        let policy = uml::procfs::Stat::read(tid)
            .and_then(|s| s.policy)
            .unwrap_or(u32::MAX);
        out.push((cpus, policy));
    }
    out
}

/// Over /dev/fuse, a thread that answers a walk moves to the CPU where the walker sleeps and
/// runs there as a SCHED_IDLE thread, so that neither the request nor the answer wakes
/// another CPU; for a bulk read it lets go of that CPU and, where it may, of SCHED_IDLE. A
/// process without CAP_SYS_NICE may not leave SCHED_IDLE: its threads still follow, and stay
/// SCHED_IDLE when they let go. With `-o anycpu` every thread stays where the process may
/// run, at normal priority. All mounts show the same.
#[test]
fn dev_fuse_answers_a_walk_from_the_walkers_cpu_unless_anycpu() {
    const SCHED_IDLE: u32 = 5;
    let (_tmp, _src, img) = tree_and_image("ext4");
    let near = MountPoint::new();
    let any = MountPoint::new();
    let nonice = MountPoint::new();
    mount_image(&img, &near, "nouring");
    mount_image(&img, &any, "nouring,anycpu");
    // As root, but without CAP_SYS_NICE: a user's mount.
    let out = Command::new("setpriv")
        .args(["--bounding-set", "-sys_nice", BIN, "-o", "nouring"])
        .arg(&img)
        .arg(nonice.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let all = uml::launch::allowed_cpus().unwrap();
    let cpu = *all.last().unwrap();
    let one = vec![cpu];
    let mut seen = Vec::new();
    for mp in [&near, &any, &nonice] {
        let m = mp.path().display();
        let (ok, out, err) = sh(&format!(
            "taskset -c {cpu} sh -c 'cd {m} && ls -lRA --full-time . && getfattr -R -d -m - .'"
        ));
        assert!(ok, "{err}");
        seen.push(out);
    }
    for other in &seen[1..] {
        let differ: Vec<_> = seen[0]
            .lines()
            .zip(other.lines())
            .filter(|(a, b)| a != b)
            .take(3)
            .collect();
        assert!(
            differ.is_empty() && seen[0].len() == other.len(),
            "{differ:#?}"
        );
    }
    assert!(seen[0].contains("user.color"), "{}", seen[0]);

    for mp in [&near, &nonice] {
        let placed = thread_placement(daemons_for(mp.path())[0]);
        assert!(
            placed.iter().any(|(c, p)| *c == one && *p == SCHED_IDLE),
            "no thread answered from CPU {cpu}: {placed:?}"
        );
    }
    let placed = thread_placement(daemons_for(any.path())[0]);
    assert!(
        placed.iter().all(|(c, p)| *c == all && *p != SCHED_IDLE),
        "-o anycpu moved a thread: {placed:?}"
    );

    // Reads of 1 MiB, a dozen, which both worker threads take turns to answer.
    let bulk = |mp: &MountPoint| {
        let m = mp.path().display();
        let (ok, _, err) = sh(&format!(
            "for i in 1 2 3 4; do taskset -c {cpu} dd if={m}/sub/big.bin of=/dev/null \
             iflag=direct bs=1M status=none || exit 1; done"
        ));
        assert!(ok, "{err}");
        thread_placement(daemons_for(mp.path())[0])
    };
    let placed = bulk(&near);
    assert!(
        placed.iter().all(|(c, p)| *p != SCHED_IDLE || *c == one),
        "a thread let go of its CPU but not of SCHED_IDLE: {placed:?}"
    );
    let placed = bulk(&nonice);
    assert!(
        placed.iter().any(|(c, p)| *p == SCHED_IDLE && *c == all),
        "without CAP_SYS_NICE a thread that let go of its CPU stays SCHED_IDLE: {placed:?}"
    );
    assert!(near.unmount());
    assert!(any.unmount());
    assert!(nonice.unmount());
}
