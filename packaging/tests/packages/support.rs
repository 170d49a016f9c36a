//! Test support for the packages: the .deb built once per test binary with the README's
//! command, its file list, and guards that undo what a test did to the system, also when it
//! fails.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const PACKAGE: &str = "umlkit";

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the packaging crate sits in the workspace")
        .to_owned()
}

/// Runs `cmd` to completion within `limit`, killing it past that.
pub fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // Drain both pipes on threads, so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Runs `cmd` (60 s at most) and returns its stdout; panics with its output if it fails.
pub fn ok(cmd: &mut Command) -> String {
    let out = run_within(cmd.stdin(Stdio::null()), Duration::from_secs(60));
    assert!(out.status.success(), "{cmd:?} failed: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn show(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The target directory of the package build: its own, so that the release build neither
/// waits for nor invalidates the workspace's test build. `scripts/test` starts the same build
/// there early, at low priority; cargo's lock makes this one wait for it and find it done.
pub fn package_target_dir() -> PathBuf {
    repo().join("target/package")
}

/// The .deb, built by `scripts/build-deb` (a release build: minutes the first time) once for
/// all the tests of this binary. An error is kept and reported by each test that asks.
pub fn deb() -> &'static Path {
    static DEB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = DEB.get_or_init(|| {
        let out = run_within(
            Command::new(repo().join("scripts/build-deb"))
                .arg("--quiet")
                .env("CARGO_TARGET_DIR", package_target_dir())
                .stdin(Stdio::null()),
            Duration::from_secs(40 * 60),
        );
        if !out.status.success() {
            return Err(format!("scripts/build-deb failed: {}", show(&out)));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .map(str::trim)
            .find(|l| l.ends_with(".deb"))
            .map(PathBuf::from)
            .ok_or_else(|| format!("scripts/build-deb named no .deb: {}", show(&out)))
    });
    match built {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

/// One member of a package's data archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Absolute path once installed.
    pub path: String,
    /// `-` file, `d` directory, `l` symlink (the first letter of `tar -tv`).
    pub kind: char,
    /// Permission bits, e.g. 0o644.
    pub mode: u32,
}

/// The members of the .deb's data archive (`dpkg-deb -c`).
pub fn deb_members(deb: &Path) -> Vec<Member> {
    let listing = ok(Command::new("dpkg-deb").arg("-c").arg(deb));
    listing
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 6, "unexpected dpkg-deb -c line: {line}");
            let perms = fields[0];
            let mode = perms[1..]
                .chars()
                .enumerate()
                .filter(|(_, c)| *c != '-')
                .fold(0u32, |m, (i, _)| m | 1 << (8 - i));
            let path = fields[5].trim_start_matches('.');
            let path = if path.len() > 1 {
                path.trim_end_matches('/')
            } else {
                path
            };
            Member {
                path: path.to_owned(),
                kind: perms.chars().next().unwrap_or('?'),
                mode,
            }
        })
        .collect()
}

/// The regular files of the .deb, as absolute paths.
pub fn deb_files(deb: &Path) -> BTreeSet<String> {
    deb_members(deb)
        .into_iter()
        .filter(|m| m.kind == '-')
        .map(|m| m.path)
        .collect()
}

/// Every regular file under `root`, as absolute paths below it ("/usr/bin/uml").
pub fn files_under(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.expect("a directory entry");
            let path = entry.path();
            let kind = entry.file_type().expect("a file type");
            if kind.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("below the root");
                out.insert(format!("/{}", rel.display()));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// Polls `f` every 50 ms until it gives a value, for at most `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {limit:?}");
        }
        sleep(Duration::from_millis(50));
    }
}

/// Kills a process on drop (a daemon that a test caused to start).
#[derive(Debug)]
pub struct KillOnDrop(pub i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0 > 1 {
            // SAFETY: kill(2) has no memory effects; the pid is a process this test started
            // (directly or through the bus) and has not reaped.
            unsafe {
                libc::kill(self.0, libc::SIGKILL);
            }
        }
    }
}

/// Pids of the processes whose executable is `exe`.
pub fn pids_of_exe(exe: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("exe")).is_ok_and(|e| e == exe) {
            pids.push(pid);
        }
    }
    pids
}

/// The command line of `pid`, words joined by spaces.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
