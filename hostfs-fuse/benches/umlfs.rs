//! umlfs against fuse2fs and the kernel's ext4 (read-only loop mount), same image, one run:
//! sequential read of a 512 MiB file, `find` over 20,000 files, `ls -lR`, and reading every
//! small file. Each measurement runs on a fresh mount (cold FUSE/ext4 caches; the image
//! itself sits in the host's page cache for all three). Prints times and ratios.
//!
//! Run: `cargo bench -p umlfs --bench umlfs` (as root; needs fuse2fs).

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

fn build(root: &Path) -> PathBuf {
    let src = root.join("src");
    fs::create_dir_all(&src).unwrap();
    let mut big = fs::File::create(src.join("big")).unwrap();
    let mut block = vec![0u8; 1 << 20];
    for i in 0..BIG_MIB {
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
    Umlfs,
    Fuse2fs,
    Kernel,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Umlfs => "umlfs",
            Tool::Fuse2fs => "fuse2fs",
            Tool::Kernel => "kernel ext4",
        }
    }
}

fn mount(tool: Tool, img: &Path, mnt: &Path) {
    let (i, m) = (img.display(), mnt.display());
    match tool {
        Tool::Umlfs => sh(&format!("'{BIN}' '{i}' '{m}'")),
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
    let tmp = tempfile::Builder::new()
        .prefix("umlfs-bench")
        .tempdir()
        .unwrap();
    eprintln!(
        "building the image ({BIG_MIB} MiB file, {} small files)...",
        DIRS * PER_DIR
    );
    let img = build(tmp.path());
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
    let tools = [Tool::Umlfs, Tool::Fuse2fs, Tool::Kernel];
    println!(
        "{:<26} {:>10} {:>10} {:>12} {:>16} {:>16}",
        "workload", "umlfs", "fuse2fs", "kernel ext4", "umlfs/fuse2fs", "umlfs/kernel"
    );
    for (name, cmd) in work {
        let mut t = [Duration::ZERO; 3];
        for (k, tool) in tools.iter().enumerate() {
            t[k] = time(*tool, &img, &mnt, cmd);
            eprintln!("  {name}: {} {:?}", tool.name(), t[k]);
        }
        let secs = |d: Duration| d.as_secs_f64();
        println!(
            "{:<26} {:>9.3}s {:>9.3}s {:>11.3}s {:>15.2}x {:>15.2}x",
            name,
            secs(t[0]),
            secs(t[1]),
            secs(t[2]),
            secs(t[1]) / secs(t[0]),
            secs(t[2]) / secs(t[0]),
        );
    }
    println!("(ratios are speed relative to umlfs: >1 means umlfs is faster)");
}
