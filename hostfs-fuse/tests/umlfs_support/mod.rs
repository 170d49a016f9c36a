//! Shared helpers of the umlfs mount tests: run the binary, and a guard that always unmounts
//! (lazily if it must) and waits for the daemon to go.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_umlfs");

/// Run `umlfs ARGS...` and return its output (it returns once the mount is ready).
pub fn umlfs(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run umlfs")
}

/// The /proc/self/mountinfo line of the mount at `dir`, if any.
pub fn mountinfo_line(dir: &Path) -> Option<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let d = dir.to_string_lossy().into_owned();
    text.lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some(d.as_str()))
        .map(str::to_owned)
}

/// Pids of umlfs processes serving `dir` (by their command line).
pub fn daemons_for(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    let want = dir.to_string_lossy().into_owned();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("umlfs")) && args.contains(&want) {
            let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // A zombie has exited; only its parent's reaping is missing.
            if !state.contains(") Z ") {
                out.push(pid);
            }
        }
    }
    out
}

/// Wait (bounded) until no umlfs process serves `dir`.
pub fn wait_no_daemon(dir: &Path, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if daemons_for(dir).is_empty() {
            return true;
        }
        sleep(Duration::from_millis(50));
    }
    false
}

/// A mount point in a fresh directory; dropping it unmounts whatever is mounted there
/// (`fusermount3 -u`, else lazily), kills a daemon that is left, and removes the directory.
pub struct MountPoint {
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl MountPoint {
    pub fn new() -> MountPoint {
        Self::new_in(Path::new("/tmp"))
    }

    pub fn new_in(base: &Path) -> MountPoint {
        let tmp = tempfile::Builder::new()
            .prefix("umlfs-t")
            .tempdir_in(base)
            .unwrap();
        let dir = tmp.path().join("mnt");
        fs::create_dir(&dir).unwrap();
        MountPoint { dir, _tmp: tmp }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn is_mounted(&self) -> bool {
        mountinfo_line(&self.dir).is_some()
    }

    /// Unmount with `fusermount3 -u`; returns whether it succeeded and the daemon is gone.
    pub fn unmount(&self) -> bool {
        // A umount racing the kernel's release of a just-closed file can see EBUSY: retry.
        for _ in 0..5 {
            let out = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.dir)
                .output()
                .unwrap();
            if out.status.success() {
                return wait_no_daemon(&self.dir, Duration::from_secs(10));
            }
            eprintln!(
                "fusermount3 -u {}: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            sleep(Duration::from_millis(200));
        }
        false
    }
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        for _ in 0..4 {
            if !self.is_mounted() {
                break;
            }
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.dir)
                .status();
            if self.is_mounted() {
                let _ = Command::new("fusermount3")
                    .args(["-u", "-z"])
                    .arg(&self.dir)
                    .status();
            }
        }
        if !wait_no_daemon(&self.dir, Duration::from_secs(5)) {
            for pid in daemons_for(&self.dir) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Run a shell command (bounded by `timeout` seconds), returning (status ok, stdout, stderr).
pub fn sh(cmd: &str) -> (bool, String, String) {
    let out = Command::new("timeout")
        .args(["60", "sh", "-c", cmd])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `stat -c FORMAT` of every path under `root` (relative names, sorted).
pub fn stat_tree(root: &Path, format: &str) -> Vec<String> {
    let (ok, out, err) = sh(&format!(
        "cd '{}' && find . -mindepth 1 | LC_ALL=C sort | while read -r p; do stat -c '%n {format}' \"$p\"; done",
        root.display()
    ));
    assert!(ok, "stat of {}: {err}", root.display());
    out.lines().map(str::to_owned).collect()
}
