//! COW merge speed against `uml_moo`, `cp --sparse=always` and `dd`, measured in one run.
//!
//! `cargo bench -p uml --bench cow_merge`. Builds a 1 GiB sparse backing file with 256 MiB
//! of data and a COW file holding 100 MiB in page-aligned runs (bitmap and data laid out as
//! the kernel writes them), then times, over a few rounds:
//! - merge into a new image: ours vs `uml_moo COW OUT` vs `cp --sparse=always` of the disk;
//! - merge in place: ours vs `uml_moo -d` vs a `dd` of 100 MiB into a copy of the backing file.
//!
//! Our merges fsync their result (a merge into a new file renames it into place), so every
//! reference tool is timed with an fsync of its output too (`sync FILE`, `dd conv=fsync`).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const ROUNDS: usize = 5;
const COW_BYTES: u64 = 100 * MIB;
const RUN: u64 = 256 * 1024;

fn fill(buf: &mut [u8], seed: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let bytes = seed.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

fn sh(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn copy(from: &Path, to: &Path) {
    sh(Command::new("cp").args(["-p", "--sparse=always", s(from), s(to)]));
}

fn same(a: &Path, b: &Path) -> bool {
    Command::new("cmp")
        .args(["-s", s(a), s(b)])
        .status()
        .is_ok_and(|st| st.success())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::Builder::new()
        .prefix("umlkit-bench")
        .tempdir_in(std::env::var_os("TMPDIR").unwrap_or_else(|| "/tmp".into()))
        .unwrap();
    let d = dir.path();
    let backing = d.join("base.img");
    let cow_path = d.join("disk.cow");

    // Backing file: 1 MiB of data in every 4 MiB, holes elsewhere.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; MIB as usize];
    let f = File::create(&backing).unwrap();
    f.set_len(GIB).unwrap();
    for off in (0..GIB).step_by(4 * MIB as usize) {
        fill(&mut buf, &mut seed);
        f.write_all_at(&buf, off).unwrap();
    }
    drop(f);

    // COW file: 100 MiB in 256 KiB runs spread over the disk, as a guest's page writes leave
    // them (bits set, data at data_offset + offset); one page in each run is zeros.
    let info = uml::cow::create(&cow_path, &backing, false).unwrap();
    let f = OpenOptions::new().write(true).open(&cow_path).unwrap();
    let runs = COW_BYTES / RUN;
    let stride = GIB / runs / 4096 * 4096;
    let mut data = vec![0u8; RUN as usize];
    for i in 0..runs {
        let off = i * stride + 12288;
        fill(&mut data, &mut seed);
        data[4096..8192].fill(0);
        f.write_all_at(&data, info.data_offset() + off).unwrap();
        let first = off / 512;
        let bits = vec![0xFFu8; (RUN / 512 / 8) as usize];
        f.write_all_at(&bits, info.bitmap_offset() + first / 8)
            .unwrap();
    }
    drop(f);
    println!(
        "backing: 1 GiB (256 MiB data), COW: {} MiB in {runs} runs of {} KiB",
        COW_BYTES / MIB,
        RUN / 1024
    );

    let none = |_: u64, _: u64| {};
    let (mut ours, mut moo, mut cp) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ours_ip, mut moo_ip, mut dd) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (a, b, c) = (d.join("ours.img"), d.join("moo.img"), d.join("cp.img"));
        ours.push(time(|| {
            uml::cow::merge_to(&cow_path, None, &a, &none).unwrap();
        }));
        moo.push(time(|| {
            sh(Command::new("uml_moo").args([s(&cow_path), s(&b)]));
            sh(Command::new("sync").arg(s(&b)));
        }));
        cp.push(time(|| {
            sh(Command::new("cp").args(["--sparse=always", s(&backing), s(&c)]));
            sh(Command::new("sync").arg(s(&c)));
        }));
        if round == 0 {
            assert!(same(&a, &b), "our image differs from uml_moo's");
        }
        for p in [&a, &b, &c] {
            fs::remove_file(p).unwrap();
        }

        let (b1, b2, b3) = (d.join("ip1.img"), d.join("ip2.img"), d.join("ip3.img"));
        for p in [&b1, &b2, &b3] {
            copy(&backing, p);
        }
        sh(&mut Command::new("sync"));
        ours_ip.push(time(|| {
            uml::cow::merge_in_place(&cow_path, Some(&b1), &none).unwrap();
        }));
        moo_ip.push(time(|| {
            sh(Command::new("uml_moo").args(["-d", "-b", s(&b2), s(&cow_path)]));
            sh(Command::new("sync").arg(s(&b2)));
        }));
        dd.push(time(|| {
            sh(Command::new("dd").args([
                &format!("if={}", s(&cow_path)),
                &format!("of={}", s(&b3)),
                "bs=1M",
                "iflag=skip_bytes",
                "oflag=seek_bytes",
                &format!("skip={}", info.data_offset() + 12288),
                "seek=12288",
                &format!("count={}", COW_BYTES / MIB),
                "conv=notrunc,fsync",
                "status=none",
            ]));
        }));
        if round == 0 {
            assert!(
                same(&b1, &b2),
                "our in-place result differs from uml_moo -d's"
            );
        }
        for p in [&b1, &b2, &b3] {
            fs::remove_file(p).unwrap();
        }
        println!(
            "round {round}: new image: ours {:?}, uml_moo {:?}, cp {:?}; in place: ours {:?}, \
             uml_moo -d {:?}, dd {:?}",
            ours[round], moo[round], cp[round], ours_ip[round], moo_ip[round], dd[round]
        );
    }
    let (o, m, c) = (median(ours), median(moo), median(cp));
    let (oi, mi, di) = (median(ours_ip), median(moo_ip), median(dd));
    let r = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("medians of {ROUNDS} rounds:");
    println!(
        "merge to new image: ours {o:?}, uml_moo {m:?} ({:.1}x faster), cp --sparse=always {c:?} (ours {:.2}x cp's time; goal <= 1.5)",
        r(m, o),
        r(o, c)
    );
    println!(
        "merge in place:     ours {oi:?}, uml_moo -d {mi:?} ({:.1}x faster), dd {di:?} (ours {:.2}x dd's time; goal <= 2)",
        r(mi, oi),
        r(oi, di)
    );
}
