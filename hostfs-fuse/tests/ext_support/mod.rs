//! Shared helpers of the ext reader tests: a source tree with every kind of file, image
//! building with mke2fs, a bounded walk of an image, and debugfs as the independent oracle.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

pub use testkit::stdout_of;
use umlfs::ext::{BlockSource, DirEntry, FileType, Filesystem, Inode};

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub const SPARSE_SIZE: u64 = 5 << 30;
pub const MANY: usize = 3000;
pub const DEPTH: usize = 24;
pub const LONG_NAMES: usize = 2000;

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and live across the call; value is a valid slice.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name} on {path:?}: {}",
        std::io::Error::last_os_error()
    );
}

/// All xattrs of a host path, sorted by name.
pub fn host_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 65536];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "listxattr {path:?}");
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let cn = CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        // SAFETY: as above.
        let len =
            unsafe { libc::lgetxattr(p.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(len >= 0);
        v.truncate(len as usize);
        out.push((name.to_vec(), v));
    }
    out.sort();
    out
}

/// Build the source tree: every kind of file the reader must handle.
pub fn build_tree(root: &Path) {
    let w = |p: &str, data: &[u8]| fs::write(root.join(p), data).unwrap();
    w("empty", b"");
    w("one", b"x");
    w("f4095", &pattern(4095, 1));
    w("f4096", &pattern(4096, 2));
    w("f4097", &pattern(4097, 3));
    w("big", &pattern(3 << 20, 4));
    w("small.txt", b"hello, inline world\n");
    w("hundred", &pattern(100, 5));
    {
        let mut f = fs::File::create(root.join("sparse5g")).unwrap();
        f.write_all(&pattern(5000, 6)).unwrap();
        f.set_len(SPARSE_SIZE).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&pattern(12288, 7), SPARSE_SIZE - 12288)
            .unwrap();
    }
    {
        let f = fs::File::create(root.join("holey")).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&pattern(4096, 8), 0).unwrap();
        f.write_all_at(&pattern(4096, 9), 10 << 20).unwrap();
    }
    fs::hard_link(root.join("f4096"), root.join("f4096.link")).unwrap();
    fs::create_dir(root.join("sub")).unwrap();
    fs::hard_link(root.join("f4096"), root.join("sub/f4096.link2")).unwrap();
    symlink("f4095", root.join("fastlink")).unwrap();
    let long: String = (0..12).map(|i| format!("dir{i:02}/")).collect::<String>() + "target-file";
    symlink(&long, root.join("slowlink")).unwrap();
    symlink("x".repeat(60), root.join("link60")).unwrap();
    symlink("y".repeat(59), root.join("link59")).unwrap();
    let mknod = |name: &str, kind: &str, major: u32, minor: u32| {
        stdout_of(
            Command::new("mknod")
                .arg(root.join(name))
                .arg(kind)
                .arg(major.to_string())
                .arg(minor.to_string()),
        );
    };
    mknod("cdev", "c", 4, 5);
    mknod("bdev", "b", 8, 1);
    mknod("bigdev", "c", 300, 70000);
    stdout_of(Command::new("mkfifo").arg(root.join("fifo")));
    fs::write(root.join("owned"), b"owned by someone else\n").unwrap();
    std::os::unix::fs::chown(root.join("owned"), Some(1234), Some(5678)).unwrap();
    fs::write(root.join("owned32"), b"32-bit ids\n").unwrap();
    std::os::unix::fs::chown(root.join("owned32"), Some(70000), Some(80000)).unwrap();
    fs::write(root.join("setuid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(root.join("sticky")).unwrap();
    fs::set_permissions(root.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(root.join("xattrs"), b"has attributes\n").unwrap();
    set_xattr(&root.join("xattrs"), "user.color", b"blue");
    set_xattr(&root.join("xattrs"), "user.empty", b"");
    set_xattr(&root.join("xattrs"), "trusted.note", b"root only");
    fs::write(root.join("bigxattr"), b"big attribute\n").unwrap();
    set_xattr(&root.join("bigxattr"), "user.big", &pattern(700, 10));
    set_xattr(&root.join("sub"), "user.dir", b"on a directory");
    // POSIX ACLs in the VFS form (version 2, 8-byte entries): user::rw- user:1000:r--
    // group::r-- mask::r-- other::r--; ext4 stores them in its compact form.
    let acl = |entries: &[(u16, u16, u32)]| {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    };
    let entries = [
        (1, 6, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ];
    fs::write(root.join("acl"), b"with an access ACL\n").unwrap();
    set_xattr(&root.join("acl"), "system.posix_acl_access", &acl(&entries));
    set_xattr(
        &root.join("sub"),
        "system.posix_acl_default",
        &acl(&entries),
    );
    fs::create_dir(root.join("many")).unwrap();
    for i in 0..MANY {
        fs::write(
            root.join(format!("many/entry-{i:05}")),
            if i % 500 == 0 { &b"data"[..] } else { &b""[..] },
        )
        .unwrap();
    }
    // Long names fill 1 KiB leaves fast: a two-level htree there.
    fs::create_dir(root.join("longnames")).unwrap();
    for i in 0..LONG_NAMES {
        fs::write(
            root.join(format!("longnames/{}-{i:05}", "n".repeat(190))),
            b"",
        )
        .unwrap();
    }
    let mut d = root.join("deep");
    for i in 0..DEPTH {
        d = d.join(format!("level{i}"));
    }
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("bottom"), b"the bottom\n").unwrap();
    fs::create_dir(root.join("emptydir")).unwrap();
    // A fixed mtime (mke2fs -d copies seconds only).
    stdout_of(
        Command::new("touch")
            .arg("-h")
            .arg("-d")
            .arg("2001-02-03 04:05:06")
            .arg(root.join("one")),
    );
    stdout_of(
        Command::new("touch")
            .arg("-h")
            .arg("-d")
            .arg("1965-06-07 08:09:10")
            .arg(root.join("hundred")),
    );
}

/// `mke2fs -q -F -t TYPE OPTS -d SRC IMG SIZE`.
pub fn mkfs(fstype: &str, opts: &[&str], src: &Path, img: &Path, size: &str) {
    let mut cmd = Command::new("mke2fs");
    cmd.args(["-q", "-F", "-t", fstype])
        .args(opts)
        .arg("-d")
        .arg(src)
        .arg(img)
        .arg(size);
    cmd.env("MKE2FS_CONFIG", "/etc/mke2fs.conf");
    stdout_of(&mut cmd);
}

/// Rebuild every directory with a hash index (`e2fsck -fyD`): mke2fs -d writes linear
/// directories only.
pub fn index_dirs(img: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fyD")
        .arg(img)
        .output()
        .unwrap();
    // 0: nothing changed, 1: errors corrected (here: directories optimised).
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "e2fsck -fyD failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// An image file opened read-only.
pub fn open(img: &Path) -> Filesystem<fs::File> {
    Filesystem::open(fs::File::open(img).unwrap()).unwrap_or_else(|e| panic!("open {img:?}: {e}"))
}

/// One object found by walking an image.
#[derive(Debug, Clone)]
pub struct Found {
    pub inode: Inode,
    pub dirent_type: FileType,
}

/// Walk the tree from the root: path (relative, "/"-joined) → object. Bounded: each directory
/// inode is listed once (no loops) and depth is limited.
pub fn walk<S: BlockSource>(fs: &Filesystem<S>) -> BTreeMap<String, Found> {
    let mut out = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(String::new(), fs.root(), 0usize)];
    while let Some((path, dir, depth)) = stack.pop() {
        assert!(depth < 64, "tree deeper than expected at {path}");
        if !seen.insert(dir) {
            panic!("directory inode {dir} reached twice (at {path})");
        }
        let mut entries: Vec<DirEntry> = Vec::new();
        fs.read_dir(dir, 0, |e| {
            entries.push(e);
            true
        })
        .unwrap_or_else(|e| panic!("read_dir {path}: {e}"));
        for e in entries {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let name = String::from_utf8(e.name.clone()).unwrap();
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            let inode = fs
                .inode(e.ino)
                .unwrap_or_else(|err| panic!("inode of {p}: {err}"));
            if inode.file_type == FileType::Directory {
                stack.push((p.clone(), e.ino, depth + 1));
            }
            out.insert(
                p,
                Found {
                    inode,
                    dirent_type: e.file_type,
                },
            );
        }
    }
    out
}

/// Read a whole file through the reader in uneven chunks.
pub fn read_all<S: BlockSource>(fs: &Filesystem<S>, ino: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_001];
    loop {
        let n = fs.read(ino, out.len() as u64, &mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// debugfs's view of one inode (`stat`).
#[derive(Debug, Default)]
pub struct DebugfsStat {
    pub links: u64,
    pub blockcount: u64,
    pub generation: u64,
    pub size: u64,
    pub user: u64,
    pub group: u64,
    pub mode: u32,
    pub flags: u32,
    /// (seconds, raw extra) for ctime, atime, mtime, crtime
    pub times: BTreeMap<String, (u32, Option<u32>)>,
    pub device: Option<(u32, u32)>,
}

fn field(text: &str, key: &str) -> Option<String> {
    let at = text.find(key)? + key.len();
    let rest = text[at..].trim_start();
    Some(rest.split_whitespace().next()?.to_string())
}

/// Parse `debugfs -R 'stat <ino>'` output.
pub fn parse_stat(text: &str) -> DebugfsStat {
    let num = |k: &str| {
        field(text, k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let hex = |k: &str| {
        field(text, k)
            .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0)
    };
    let mut st = DebugfsStat {
        links: num("Links:"),
        blockcount: num("Blockcount:"),
        generation: num("Generation:"),
        size: num("Size:"),
        user: num("User:"),
        group: num("Group:"),
        mode: field(text, "Mode:")
            .and_then(|v| u32::from_str_radix(&v, 8).ok())
            .unwrap_or(0),
        flags: hex("Flags:"),
        ..Default::default()
    };
    for line in text.lines() {
        let l = line.trim();
        for t in ["ctime", "atime", "mtime", "crtime"] {
            if let Some(rest) = l.strip_prefix(&format!("{t}: 0x")) {
                let v = rest.split_whitespace().next().unwrap_or("");
                let mut parts = v.split(':');
                let sec = u32::from_str_radix(parts.next().unwrap_or("0"), 16).unwrap_or(0);
                let extra = parts.next().and_then(|x| u32::from_str_radix(x, 16).ok());
                st.times.insert(t.to_string(), (sec, extra));
            }
        }
        let l = l.strip_prefix("(New-style) ").unwrap_or(l);
        if let Some(rest) = l.strip_prefix("Device major/minor number: ") {
            let v = rest.split_whitespace().next().unwrap_or("");
            let mut p = v.split(':');
            let ma = p.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            let mi = p.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            st.device = Some((ma, mi));
        }
    }
    st
}

/// Run many debugfs requests in one process; returns the output of each request.
pub fn debugfs_batch(img: &Path, requests: &[String]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cmds");
    let mut text = String::new();
    for r in requests {
        text.push_str(r);
        text.push('\n');
    }
    fs::write(&script, text).unwrap();
    let out = stdout_of(Command::new("debugfs").arg("-f").arg(&script).arg(img));
    // debugfs echoes each request as "debugfs: <request>" before its output.
    let mut results = Vec::new();
    let mut cur: Option<String> = None;
    for line in out.lines() {
        if line.starts_with("debugfs: ") {
            if let Some(c) = cur.take() {
                results.push(c);
            }
            cur = Some(String::new());
        } else if let Some(c) = cur.as_mut() {
            c.push_str(line);
            c.push('\n');
        }
    }
    if let Some(c) = cur {
        results.push(c);
    }
    assert_eq!(
        results.len(),
        requests.len(),
        "debugfs output did not split into requests:\n{out}"
    );
    results
}

/// `ls -l` of a directory by debugfs: name → (inode, mode, size).
pub fn debugfs_ls(text: &str) -> BTreeMap<String, (u64, u32, u64)> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        // inode mode (type) uid gid size date time name
        if parts.len() < 9 {
            continue;
        }
        let (Ok(ino), Ok(mode)) = (parts[0].parse::<u64>(), u32::from_str_radix(parts[1], 8))
        else {
            continue;
        };
        let size = parts[5].parse().unwrap_or(0);
        let name = parts[8..].join(" ");
        out.insert(name, (ino, mode, size));
    }
    out
}

/// SHA-like fingerprint of a file plus its mtime (for the never-written test).
pub fn fingerprint(path: &Path) -> (Vec<u8>, i64, i64) {
    let md = fs::metadata(path).unwrap();
    let out = stdout_of(Command::new("sha256sum").arg(path));
    (out.into_bytes(), md.mtime(), md.mtime_nsec())
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("umlfs-ext-")
        .tempdir()
        .unwrap()
}

pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Run `f` with debug logs of the reader captured; returns `f`'s result and the log text.
pub fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf(Arc::new(Mutex::new(Vec::new())));
    let w = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || w.clone())
        .finish();
    let out = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    (out, text)
}

/// Compare everything the reader shows of `fs` with debugfs's view of `truth` (an image with
/// the same contents, e.g. a copy that e2fsck recovered): names per directory, inode numbers,
/// modes, link counts, sizes, owners, mtime/ctime with nanoseconds, and file contents.
pub fn compare_with_debugfs<S: BlockSource>(
    fs: &Filesystem<S>,
    truth: &Path,
    what: &str,
) -> BTreeMap<String, Found> {
    let found = walk(fs);
    let mut dirs: Vec<String> = found
        .iter()
        .filter(|(_, f)| f.inode.file_type == FileType::Directory)
        .map(|(p, _)| p.clone())
        .collect();
    dirs.push(String::new());
    let files: Vec<&String> = found.keys().collect();
    let dump = tempdir();
    let mut reqs: Vec<String> = dirs.iter().map(|d| format!("ls -l /{d}")).collect();
    for (k, p) in files.iter().enumerate() {
        reqs.push(format!("stat /{p}"));
        if found[*p].inode.file_type == FileType::Regular {
            reqs.push(format!(
                "dump /{p} {}",
                dump.path().join(k.to_string()).display()
            ));
        }
    }
    let outs = debugfs_batch(truth, &reqs);
    for (k, d) in dirs.iter().enumerate() {
        let listing = debugfs_ls(&outs[k]);
        let theirs: Vec<&String> = listing.keys().filter(|n| *n != "." && *n != "..").collect();
        let ours: Vec<String> = found
            .keys()
            .filter(|p| match p.rsplit_once('/') {
                Some((parent, _)) => parent == d,
                None => d.is_empty(),
            })
            .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
            .collect();
        let theirs: Vec<String> = theirs.into_iter().cloned().collect();
        let mut ours_sorted = ours.clone();
        ours_sorted.sort();
        assert_eq!(ours_sorted, theirs, "{what}: names in /{d}");
        for (name, (ino, mode, _)) in &listing {
            if name == "." || name == ".." {
                continue;
            }
            let p = if d.is_empty() {
                name.clone()
            } else {
                format!("{d}/{name}")
            };
            assert_eq!(found[&p].inode.ino, *ino, "{what}: inode number of {p}");
            assert_eq!(
                u32::from(found[&p].inode.mode),
                *mode,
                "{what}: mode of {p}"
            );
        }
    }
    let mut at = dirs.len();
    for (k, p) in files.iter().enumerate() {
        let st = parse_stat(&outs[at]);
        at += 1;
        let i = &found[*p].inode;
        let w = format!("{what}: {p}");
        assert_eq!(u64::from(i.nlink), st.links, "{w}: links");
        assert_eq!(i.size, st.size, "{w}: size");
        assert_eq!(
            (u64::from(i.uid), u64::from(i.gid)),
            (st.user, st.group),
            "{w}: owner"
        );
        assert_eq!(i.blocks, st.blockcount, "{w}: blockcount");
        for (name, t) in [("mtime", i.mtime), ("ctime", i.ctime)] {
            let (sec, extra) = st.times[name];
            let extra = extra.unwrap_or(0);
            assert_eq!(
                t.sec,
                i64::from(sec as i32) + (i64::from(extra & 3) << 32),
                "{w}: {name}"
            );
            assert_eq!(t.nsec, extra >> 2, "{w}: {name} nanoseconds");
        }
        if i.file_type == FileType::Regular {
            at += 1;
            let theirs = fs::read(dump.path().join(k.to_string())).unwrap();
            assert!(
                read_all(fs, i.ino) == theirs,
                "{w}: content differs from debugfs dump"
            );
        }
    }
    found
}
