//! umlfs against fuse2fs and the kernel's ext4 (read-only loop mount), same image, one run:
//! sequential read of a 512 MiB file, `find` over 20,000 files, `ls -lR`, and reading every
//! small file. Each measurement runs on a fresh mount (cold FUSE/ext4 caches; the image
//! itself sits in the host's page cache for all), three rounds in rotating order. Prints
//! medians and ratios.
//!
//! Then the metadata walks the way a user repeats them: umlfs (over /dev/fuse, over the
//! kernel's per-CPU io_uring queues where it has them, and with `-o noxattr`) and the kernel's
//! ext4 mounted side by side, `ls -lR` and `find` each run cold (`drop_caches` before every run: dentries,
//! inodes and the image's page cache; then 0.3 s for the daemons to take the kernel's FORGETs)
//! and warm (right after), alternating which mount goes
//! first, medians printed with the umlfs/kernel time ratio; and umlfs's resident memory across
//! ten cold `find` runs.
//!
//! Run: `cargo bench -p umlfs --bench umlfs` (as root; needs fuse2fs);
//! `cargo bench -p umlfs --bench umlfs -- walks` runs only the walks (no fuse2fs needed).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_umlfs");
const BIG_MIB: usize = 512;
const DIRS: usize = 100;
const PER_DIR: usize = 200;

fn sh(cmd: &str) {
    let st = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(st.success(), "{cmd}");
}

fn build(root: &Path, big_mib: usize) -> PathBuf {
    let src = root.join("src");
    fs::create_dir_all(&src).unwrap();
    let mut big = fs::File::create(src.join("big")).unwrap();
    let mut block = vec![0u8; 1 << 20];
    for i in 0..big_mib {
        for (k, b) in block.iter_mut().enumerate() {
            *b = (k.wrapping_mul(31) ^ i) as u8;
        }
        big.write_all(&block).unwrap();
    }
    for d in 0..DIRS {
        let dir = src.join(format!("d{d:03}"));
        fs::create_dir(&dir).unwrap();
        for f in 0..PER_DIR {
            let len = 100 + (d * 7 + f * 13) % 3000;
            fs::write(dir.join(format!("small{f:04}")), vec![b'x'; len]).unwrap();
        }
    }
    let img = root.join("bench.img");
    sh(&format!(
        "mke2fs -q -F -t ext4 -d '{}' '{}' 1200M",
        src.display(),
        img.display()
    ));
    img
}

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    /// umlfs over /dev/fuse (`-o nouring`).
    Umlfs,
    /// umlfs over the kernel's per-CPU io_uring queues, where the kernel has them.
    UmlfsUring,
    Fuse2fs,
    Kernel,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Umlfs => "umlfs",
            Tool::UmlfsUring => "umlfs io_uring",
            Tool::Fuse2fs => "fuse2fs",
            Tool::Kernel => "kernel ext4",
        }
    }
}

fn mount(tool: Tool, img: &Path, mnt: &Path) {
    let (i, m) = (img.display(), mnt.display());
    match tool {
        Tool::Umlfs => sh(&format!("'{BIN}' -o nouring '{i}' '{m}'")),
        Tool::UmlfsUring => {
            mount_with_uring(img, mnt, "");
        }
        Tool::Fuse2fs => sh(&format!("fuse2fs -o ro,fakeroot '{i}' '{m}' >/dev/null")),
        Tool::Kernel => sh(&format!("mount -o ro,loop,noload '{i}' '{m}'")),
    }
}

fn unmount(tool: Tool, mnt: &Path) {
    let m = mnt.display();
    match tool {
        Tool::Kernel => sh(&format!("umount '{m}'")),
        _ => {
            sh(&format!("fusermount3 -u '{m}' || fusermount3 -u -z '{m}'"));
        }
    }
    // Let a FUSE daemon go away before the next mount.
    std::thread::sleep(Duration::from_millis(200));
}

struct Unmount<'a>(&'a Path);
impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.0)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn time(tool: Tool, img: &Path, mnt: &Path, cmd: &str) -> Duration {
    mount(tool, img, mnt);
    let cmd = cmd.replace("M", &mnt.display().to_string());
    let t = Instant::now();
    sh(&cmd);
    let d = t.elapsed();
    unmount(tool, mnt);
    d
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let only_walks = std::env::args().any(|a| a == "walks");
    let tmp = tempfile::Builder::new()
        .prefix("umlfs-bench")
        .tempdir()
        .unwrap();
    let big = if only_walks { 1 } else { BIG_MIB };
    eprintln!(
        "building the image ({big} MiB file, {} small files)...",
        DIRS * PER_DIR
    );
    let img = build(tmp.path(), big);
    if only_walks {
        let _ = fs::remove_dir_all(tmp.path().join("src"));
        walks(&img, tmp.path());
        return;
    }
    let _ = fs::remove_dir_all(tmp.path().join("src"));
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let _guard = Unmount(&mnt);
    sh(&format!("cat '{}' > /dev/null", img.display()));
    let work: [(&str, &str); 4] = [
        ("sequential read 512 MiB", "cat M/big > /dev/null"),
        ("find 20,000 files", "find M > /dev/null"),
        ("ls -lR", "ls -lR M > /dev/null"),
        (
            "read every small file",
            "find M -name 'small*' -exec cat {} + > /dev/null",
        ),
    ];
    let tools = [Tool::Umlfs, Tool::UmlfsUring, Tool::Fuse2fs, Tool::Kernel];
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>12} {:>16} {:>16} {:>16}",
        "workload",
        "umlfs",
        "io_uring",
        "fuse2fs",
        "kernel ext4",
        "umlfs/fuse2fs",
        "umlfs/kernel",
        "io_uring/kernel"
    );
    for (name, cmd) in work {
        // Three rounds, each tool once per round in a rotating order; medians.
        let mut runs: [Vec<Duration>; 4] = Default::default();
        for round in 0..3 {
            for i in 0..tools.len() {
                let k = (round + i) % tools.len();
                let d = time(tools[k], &img, &mnt, cmd);
                eprintln!("  {name}: {} {d:?}", tools[k].name());
                runs[k].push(d);
            }
        }
        let t: Vec<Duration> = runs.iter_mut().map(|r| median(r)).collect();
        let secs = |d: Duration| d.as_secs_f64();
        println!(
            "{:<26} {:>9.3}s {:>9.3}s {:>9.3}s {:>11.3}s {:>15.2}x {:>15.2}x {:>15.2}x",
            name,
            secs(t[0]),
            secs(t[1]),
            secs(t[2]),
            secs(t[3]),
            secs(t[2]) / secs(t[0]),
            secs(t[3]) / secs(t[0]),
            secs(t[3]) / secs(t[1]),
        );
    }
    println!("(ratios are speed relative to umlfs: >1 means umlfs is faster)");
    walks(&img, tmp.path());
}

const WALK_REPS: usize = 7;

/// Drop the host's caches, then let the FUSE daemons handle the FORGET of every node the kernel
/// just evicted (20,000 here, 40–55 ms of umlfs's time) before anything is timed: a walk that
/// starts at once competes with that, one that starts later does not (kernel ext4 waits as
/// long).
fn drop_caches() {
    sh("sync; echo 3 > /proc/sys/vm/drop_caches");
    std::thread::sleep(Duration::from_millis(300));
}

fn run_walk(cmd: &str, mnt: &Path) -> Duration {
    let cmd = cmd.replace("M", &mnt.display().to_string());
    let t = Instant::now();
    sh(&cmd);
    t.elapsed()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The pid of the umlfs daemon serving `mnt`.
fn daemon_of(mnt: &Path) -> Option<u32> {
    let want = mnt.display().to_string();
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        (args.first()?.ends_with(b"umlfs") && args.contains(&want.as_bytes())).then_some(pid)
    })
}

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The fuse module's switch for FUSE over io_uring (absent: the kernel has none).
const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";

/// Mount umlfs with `opts` while the kernel offers FUSE over io_uring (the switch is read at
/// INIT only, so it is put back at once). Whether the daemon serves from io_uring queues.
fn mount_with_uring(img: &Path, mnt: &Path, opts: &str) -> bool {
    let Ok(before) = fs::read_to_string(ENABLE_URING) else {
        sh(&format!(
            "'{BIN}' {opts} '{}' '{}'",
            img.display(),
            mnt.display()
        ));
        return false;
    };
    fs::write(ENABLE_URING, "Y").unwrap();
    let st = Command::new("sh")
        .args([
            "-c",
            &format!("'{BIN}' {opts} '{}' '{}'", img.display(), mnt.display()),
        ])
        .status();
    fs::write(ENABLE_URING, before.trim()).unwrap();
    assert!(st.unwrap().success(), "umlfs {opts} on {}", mnt.display());
    daemon_of(mnt).is_some_and(|pid| {
        fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|t| {
                fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("umlfs-ring"))
            })
    })
}

/// `ls -lR` and `find`, cold and warm: umlfs over `/dev/fuse` (`-o nouring`, all a kernel
/// without FUSE over io_uring offers) answering from the caller's CPU and, with `-o anycpu`,
/// from any; over the kernel's per-CPU io_uring queues; with `-o noxattr`; and kernel ext4,
/// all mounted side by side.
fn walks(img: &Path, tmp: &Path) {
    let names = ["/dev/fuse", "anycpu", "io_uring", "noxattr", "kernel"];
    let n = names.len();
    let dirs: Vec<PathBuf> = names
        .iter()
        .map(|n| tmp.join(format!("walk-{}", n.trim_start_matches("/dev/"))))
        .collect();
    for d in &dirs {
        fs::create_dir_all(d).unwrap();
    }
    let _guards: Vec<Unmount> = dirs.iter().map(|d| Unmount(d)).collect();
    for (opts, dir) in [("nouring", &dirs[0]), ("nouring,anycpu", &dirs[1])] {
        sh(&format!(
            "'{BIN}' -o {opts} '{}' '{}'",
            img.display(),
            dir.display()
        ));
    }
    let ring = mount_with_uring(img, &dirs[2], "");
    if !ring {
        println!(
            "\n(this kernel has no FUSE over io_uring: the io_uring column is /dev/fuse again)"
        );
    }
    sh(&format!(
        "'{BIN}' -o noxattr,nouring '{}' '{}'",
        img.display(),
        dirs[3].display()
    ));
    mount(Tool::Kernel, img, &dirs[n - 1]);
    let work: [(&str, &str); 2] = [
        ("ls -lR", "ls -lR M > /dev/null"),
        ("find", "find M > /dev/null"),
    ];
    let head: String = names.iter().map(|c| format!(" {c:>10}")).collect();
    let ratio_head: String = names[..n - 1].iter().map(|c| format!(" {c:>10}")).collect();
    println!(
        "\n{:<8} {:<5}{head} {ratio_head}   ({WALK_REPS} runs each, medians; ratios to kernel ext4)",
        "walk", "cache"
    );
    for (name, cmd) in work {
        // One untimed walk each, so "warm" means what a second walk sees.
        for m in &dirs {
            run_walk(cmd, m);
        }
        let mut t: Vec<[Vec<Duration>; 2]> = vec![Default::default(); n];
        for rep in 0..WALK_REPS {
            for k in 0..n {
                let tool = (rep + k) % n;
                drop_caches();
                t[tool][0].push(run_walk(cmd, &dirs[tool]));
                t[tool][1].push(run_walk(cmd, &dirs[tool]));
            }
        }
        for (c, cache) in ["cold", "warm"].iter().enumerate() {
            let m: Vec<f64> = (0..n).map(|k| median(&mut t[k][c]).as_secs_f64()).collect();
            let times: String = m.iter().map(|v| format!(" {v:>9.3}s")).collect();
            let ratios: String = m[..n - 1]
                .iter()
                .map(|v| format!(" {:>9.2}x", v / m[n - 1]))
                .collect();
            println!("{name:<8} {cache:<5}{times} {ratios}");
        }
    }
    let um = &dirs[0];
    println!("(time ratios: below 1 means umlfs is faster)");
    if let Some(pid) = daemon_of(um) {
        let mut rss = Vec::new();
        for _ in 0..10 {
            drop_caches();
            run_walk("find M > /dev/null", um);
            rss.push(rss_kib(pid));
        }
        println!("umlfs RSS after each of ten cold `find` runs (KiB): {rss:?}");
    }
    for d in &dirs[..n - 1] {
        unmount(Tool::Umlfs, d);
    }
    unmount(Tool::Kernel, &dirs[n - 1]);
}
