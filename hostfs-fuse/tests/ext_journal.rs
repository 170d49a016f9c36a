//! Dirty journals written by a real running guest are replayed in memory: a copy of the disk
//! taken while the guest still has it mounted reads exactly like a second copy that e2fsck
//! recovered (debugfs is the oracle), and the image itself is never modified.

mod ext_support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ext_support::*;
use testkit::GuestBuilder;
use umlfs::ext::{Filesystem, OpenOptions};

/// What the guest does on its mounted disk before the snapshot. Transactions are separated
/// by `sync` so the log holds several commits, revokes (the removed directory) and, with
/// data=journal, escaped data blocks.
const WORKLOAD: &str = r#"
mkdir gone
i=0; while [ $i -lt 60 ]; do echo "file $i" > gone/f$i; i=$((i+1)); done
sync
rm -rf gone
sync
mkdir newdir
echo hello > newdir/hello.txt
seq 1 40000 > numbers
ln newdir/hello.txt hardlink
ln -s newdir/hello.txt shortlink
ln -s newdir/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/hello.txt longlink
mknod chardev c 4 5
mkfifo pipe
printf '\300\073\071\230 starts with the jbd2 magic' > escaped
mkdir many
i=0; while [ $i -lt 400 ]; do : > many/entry-$i; i=$((i+1)); done
chown 1234:5678 numbers
chmod 4751 numbers
sync
"#;

/// Changes after the last `sync`: committed by the journal thread (mounted with commit=1) but
/// not yet written back to their home blocks, so only the journal has them.
const LATE: &str = r#"
mkdir late
echo late > late/file
touch late/empty
rm newdir/hello.txt
sleep 4
"#;

struct Snapshot {
    _dir: tempfile::TempDir,
    dirty: std::path::PathBuf,
    recovered: std::path::PathBuf,
}

/// Boot a guest on a fresh image, run the workload, copy the image twice while the guest
/// still runs, and recover the second copy with e2fsck.
fn snapshot(
    mkfs_type: &str,
    mkfs_opts: &[&str],
    mount_type: &str,
    mount_opts: &str,
    extra: &str,
) -> Snapshot {
    let dir = tempdir();
    let img = dir.path().join("disk.img");
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    mkfs(mkfs_type, mkfs_opts, &empty, &img, "64M");
    let body = format!(
        "mknod /tmp/ubdb b 98 16\nmkdir /tmp/mnt\nmount -t {mount_type} -o {mount_opts} /tmp/ubdb /tmp/mnt || echo MOUNT-FAILED\ncd /tmp/mnt\n{WORKLOAD}\n{extra}\nsync\n{LATE}\necho SNAPSHOT-READY\nsleep 1000\n"
    );
    let guest = GuestBuilder::new("extj")
        .arg(format!("ubd1={}", img.display()))
        .body(&body)
        .boot()
        .unwrap();
    guest
        .wait_for_log("SNAPSHOT-READY", Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{e}\n{}", guest.log_tail(40)));
    assert!(
        !guest.log().contains("MOUNT-FAILED"),
        "{}",
        guest.log_tail(40)
    );
    let dirty = dir.path().join("dirty.img");
    let recovered = dir.path().join("recovered.img");
    stdout_of(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&img)
            .arg(&dirty),
    );
    drop(guest);
    // The second copy is made from the first, so both hold the very same moment.
    stdout_of(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&dirty)
            .arg(&recovered),
    );
    let out = Command::new("e2fsck")
        .arg("-fy")
        .arg(&recovered)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "e2fsck of the second copy failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Snapshot {
        _dir: dir,
        dirty,
        recovered,
    }
}

fn journal_features(img: &Path) -> String {
    stdout_of(Command::new("dumpe2fs").arg("-h").arg(img))
}

fn check_replay(
    snap: &Snapshot,
    what: &str,
    expect_journal_features: &str,
) -> umlfs::ext::JournalReplayInfo {
    let header = journal_features(&snap.dirty);
    assert!(
        header.contains("needs_recovery"),
        "{what}: the copy is not dirty:\n{header}"
    );
    let jf = header
        .lines()
        .find(|l| l.starts_with("Journal features:"))
        .unwrap_or("");
    assert!(
        jf.contains(expect_journal_features),
        "{what}: journal features {jf:?}"
    );
    let before = fingerprint(&snap.dirty);

    // Without replay the committed changes are invisible: the journal really matters.
    let stale = Filesystem::open_with(
        fs::File::open(&snap.dirty).unwrap(),
        OpenOptions {
            replay_journal: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        stale.lookup(stale.root(), b"late").unwrap(),
        None,
        "{what}: late visible without replay"
    );

    let fs = open(&snap.dirty);
    let info = fs.journal_info().unwrap().clone();
    assert!(
        info.needs_recovery && info.transactions > 0 && info.blocks > 0,
        "{what}: {info:?}"
    );
    assert_eq!(info.bad_blocks, 0, "{what}: {info:?}");
    let found = compare_with_debugfs(&fs, &snap.recovered, what);
    for p in [
        "late/file",
        "late/empty",
        "numbers",
        "hardlink",
        "longlink",
        "chardev",
        "pipe",
        "escaped",
        "many/entry-399",
    ] {
        assert!(found.contains_key(p), "{what}: {p} missing after replay");
    }
    assert!(
        !found.contains_key("gone"),
        "{what}: the removed directory came back"
    );
    // newdir/hello.txt was unlinked in the journal-only part; its other name stays.
    assert!(
        !found.contains_key("newdir/hello.txt"),
        "{what}: an unlinked name came back"
    );
    assert_eq!(found["hardlink"].inode.nlink, 1);
    assert_eq!(read_all(&fs, found["hardlink"].inode.ino), b"hello\n");
    let numbers: String = (1..=40000).map(|i| format!("{i}\n")).collect();
    assert!(
        read_all(&fs, found["numbers"].inode.ino) == numbers.as_bytes(),
        "{what}: numbers"
    );
    assert_eq!(found["numbers"].inode.mode & 0o7777, 0o4751);
    assert_eq!(
        (found["numbers"].inode.uid, found["numbers"].inode.gid),
        (1234, 5678)
    );
    assert_eq!(
        &read_all(&fs, found["escaped"].inode.ino)[..4],
        &[0xC0, 0x3B, 0x39, 0x98]
    );
    assert_eq!(
        fs.read_link(found["shortlink"].inode.ino).unwrap(),
        b"newdir/hello.txt"
    );
    assert_eq!(found["chardev"].inode.rdev, Some((4, 5)));
    // Files the kernel wrote carry nanosecond timestamps.
    assert!(
        found.values().any(|f| f.inode.mtime.nsec != 0),
        "{what}: no nanoseconds anywhere"
    );
    drop(fs);
    drop(stale);
    assert_eq!(
        fingerprint(&snap.dirty),
        before,
        "{what}: reading modified the image"
    );
    info
}

#[test]
fn ext4_metadata_csum_journal_v3_is_replayed_like_e2fsck() {
    let snap = snapshot("ext4", &["-b", "4096"], "ext4", "rw,commit=1", "");
    let info = check_replay(&snap, "ext4 csum v3", "journal_checksum_v3");
    assert!(info.revoked > 0, "no revoke record: {info:?}");
}

#[test]
fn ext4_without_checksums_journal_is_replayed_like_e2fsck() {
    let snap = snapshot(
        "ext4",
        &["-O", "^metadata_csum,^64bit"],
        "ext4",
        "rw,commit=1",
        "",
    );
    check_replay(&snap, "ext4 no csum", "");
}

#[test]
fn ext3_journal_with_8_byte_tags_is_replayed_like_e2fsck() {
    let snap = snapshot("ext3", &["-b", "1024"], "ext3", "rw,commit=1", "");
    check_replay(&snap, "ext3", "");
}

#[test]
fn data_journal_mode_with_escaped_blocks_is_replayed_like_e2fsck() {
    let snap = snapshot("ext4", &["-b", "1024"], "ext4", "data=journal,commit=1", "");
    let info = check_replay(&snap, "ext4 data=journal", "journal_checksum_v3");
    assert!(info.escaped > 0, "no escaped block was replayed: {info:?}");
}

#[test]
fn wrapped_journal_is_replayed_like_e2fsck() {
    // A 1 MiB journal (1024 blocks of 1 KiB) and a stream of transactions: snapshots are
    // taken between transactions until one holds a log that runs across the journal's end.
    let dir = tempdir();
    let img = dir.path().join("disk.img");
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    mkfs("ext4", &["-b", "1024", "-J", "size=1"], &empty, &img, "64M");
    let body = "mknod /tmp/ubdb b 98 16\nmkdir /tmp/mnt\nmount -t ext4 -o commit=1 /tmp/ubdb /tmp/mnt || echo MOUNT-FAILED\ncd /tmp/mnt\n\
        i=0; while [ $i -lt 400 ]; do mkdir w$i; j=0; while [ $j -lt 40 ]; do echo $i.$j > w$i/f$j; j=$((j+1)); done; sync; echo SNAP-$i.; sleep 1; i=$((i+1)); done\nsleep 1000\n";
    let guest = GuestBuilder::new("extw")
        .arg(format!("ubd1={}", img.display()))
        .body(body)
        .boot()
        .unwrap();
    let dirty = dir.path().join("dirty.img");
    let recovered = dir.path().join("recovered.img");
    let mut wrapped_at = None;
    for i in 0..400 {
        guest
            .wait_for_log(&format!("SNAP-{i}."), Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}\n{}", guest.log_tail(40)));
        stdout_of(
            Command::new("cp")
                .arg("--sparse=always")
                .arg(&img)
                .arg(&dirty),
        );
        let fs = open(&dirty);
        if fs.journal_info().is_some_and(|j| j.wrapped) {
            wrapped_at = Some(i);
            break;
        }
    }
    drop(guest);
    let i = wrapped_at.expect("no snapshot held a wrapped log");
    stdout_of(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&dirty)
            .arg(&recovered),
    );
    let out = Command::new("e2fsck")
        .arg("-fy")
        .arg(&recovered)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let fs = open(&dirty);
    let info = fs.journal_info().unwrap().clone();
    assert!(
        info.wrapped && info.transactions > 0 && info.bad_blocks == 0,
        "{info:?}"
    );
    let found = compare_with_debugfs(&fs, &recovered, "ext4 wrapped");
    assert!(
        found.contains_key(&format!("w{i}/f39")),
        "the last transaction before snapshot {i} is missing"
    );
}

#[test]
fn journal_with_v1_commit_checksums_is_replayed_like_e2fsck() {
    // Without metadata_csum, the journal_checksum mount option makes the kernel write jbd2
    // v1 checksums (COMPAT_CHECKSUM: a crc32 over each transaction in its commit block).
    let snap = snapshot(
        "ext4",
        &["-O", "^metadata_csum"],
        "ext4",
        "journal_checksum,commit=1",
        "",
    );
    check_replay(&snap, "ext4 journal_checksum v1", "journal_checksum");
    let header = journal_features(&snap.dirty);
    assert!(
        !header.contains("journal_checksum_v"),
        "not a v1 journal:\n{header}"
    );
}

#[test]
fn uncommitted_tail_is_ignored_like_e2fsck() {
    // Zero the last commit block of a dirty log: its transaction is incomplete, so both the
    // reader and e2fsck stop one transaction earlier.
    let snap = snapshot("ext4", &["-b", "4096"], "ext4", "rw,commit=1", "");
    let full = open(&snap.dirty).journal_info().unwrap().clone();
    let logdump = stdout_of(
        Command::new("debugfs")
            .arg("-R")
            .arg("logdump")
            .arg(&snap.dirty),
    );
    let last_commit: u64 = logdump
        .lines()
        .filter(|l| l.contains("(commit block)"))
        .filter_map(|l| l.rsplit("at block ").next()?.trim().parse().ok())
        .next_back()
        .expect("logdump shows no commit block");
    let phys: u64 = stdout_of(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("bmap <8> {last_commit}"))
            .arg(&snap.dirty),
    )
    .trim()
    .parse()
    .unwrap();
    let mut bytes = fs::read(&snap.dirty).unwrap();
    let at = (phys * 4096) as usize;
    bytes[at..at + 4096].fill(0);
    let torn = snap.dirty.with_file_name("torn.img");
    fs::write(&torn, &bytes).unwrap();
    let truth = snap.dirty.with_file_name("torn-recovered.img");
    fs::write(&truth, &bytes).unwrap();
    let out = Command::new("e2fsck")
        .arg("-fy")
        .arg(&truth)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let fs = open(&torn);
    let info = fs.journal_info().unwrap().clone();
    assert_eq!(
        info.transactions + 1,
        full.transactions,
        "{info:?} vs {full:?}"
    );
    compare_with_debugfs(&fs, &truth, "torn tail");
}

#[test]
fn journal_with_a_fast_commit_area_is_replayed_like_e2fsck() {
    // fast_commit shortens the log (the last blocks are the fast-commit area). Without fsync
    // the guest writes only full commits, so the replayed state equals e2fsck's.
    let snap = snapshot(
        "ext4",
        &["-O", "fast_commit", "-b", "1024"],
        "ext4",
        "rw,commit=1",
        "",
    );
    let info = check_replay(&snap, "ext4 fast_commit", "journal_checksum_v3");
    assert!(info.fast_commit_ignored, "{info:?}");
}
