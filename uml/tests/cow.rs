//! `uml cow` against the real kernel, `uml_mkcow` and `uml_moo`.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use testkit::{CowVersion, Guest, GuestBuilder, run, run_failing, write_cow};

const GUEST_TIMEOUT: Duration = Duration::from_secs(60);

fn uml() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_uml"));
    c.env_remove("UML_DIR");
    c
}

fn uml_ok(args: &[&str]) -> Output {
    run(uml().args(args))
}

fn uml_fails(args: &[&str]) -> String {
    String::from_utf8_lossy(&run_failing(uml().args(args)).stderr).into_owned()
}

fn tool_ok(tool: &str, args: &[&str]) -> Output {
    run(Command::new(tool).args(args))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("umlkit-cow")
        .tempdir_in("/tmp")
        .unwrap()
}

/// A sparse backing file of `size` bytes with distinct data in a few places.
fn make_backing(path: &Path, size: u64) {
    let f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut seed = 0x1234_5678u32;
    for region in [0, size / 3, size / 2 + 4096, size - 8192] {
        let mut block = vec![0u8; 8192];
        for b in &mut block {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (seed >> 16) as u8;
        }
        f.write_all_at(&block[..(size - region).min(8192) as usize], region)
            .unwrap();
    }
}

/// Whether two files have the same bytes (read in chunks; they may be large).
fn same_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

fn blocks(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks()
}

/// Set bits in a V3 COW file's bitmap counted independently of the library: bitmap at 8192
/// (4096 alignment), one LSB-first bit per 512-byte sector.
fn count_bits_v3(cow: &Path, size: u64) -> u64 {
    let sectors = size.div_ceil(512);
    let mut bitmap = vec![0u8; sectors.div_ceil(8) as usize];
    File::open(cow)
        .unwrap()
        .read_exact_at(&mut bitmap, 8192)
        .unwrap();
    (0..sectors)
        .filter(|i| bitmap[(i / 8) as usize] & (1 << (i % 8)) != 0)
        .count() as u64
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

fn mtime(p: &Path) -> i64 {
    fs::metadata(p).unwrap().mtime()
}

/// Copy files keeping their mtime and holes.
fn copy(from: &Path, to: &Path) {
    tool_ok("cp", &["-p", "--sparse=always", s(from), s(to)]);
}

fn wait_exit(guest: &mut Guest) {
    guest
        .wait_exit(GUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn create_writes_the_same_file_as_uml_mkcow() {
    let dir = tempdir();
    let backing = dir.path().join("base.img");
    make_backing(&backing, 3 << 20);
    let theirs = dir.path().join("mkcow.cow");
    let ours = dir.path().join("ours.cow");
    tool_ok("uml_mkcow", &[s(&theirs), s(&backing)]);
    uml_ok(&["cow", "create", s(&ours), s(&backing)]);
    assert!(same_content(&theirs, &ours), "headers or lengths differ");
    assert_eq!(fs::metadata(&ours).unwrap().len(), 3158016);
    assert!(blocks(&ours) < 64, "the COW file should be sparse");
    assert_eq!(fs::metadata(&ours).unwrap().mode() & 0o777, 0o644);
    // A relative backing path is made absolute as the kernel does.
    let rel = dir.path().join("rel.cow");
    run_failing(uml().current_dir(dir.path()).args([
        "cow",
        "create",
        "rel.cow",
        "./sub/../base.img",
    ]));
    run(uml()
        .current_dir(dir.path())
        .args(["cow", "create", "rel.cow", "base.img"]));
    assert!(same_content(&theirs, &rel));
}

#[test]
fn create_refuses_to_overwrite_and_force_truncates_the_old_bitmap() {
    let dir = tempdir();
    let backing = dir.path().join("base.img");
    make_backing(&backing, 1 << 20);
    let cow = dir.path().join("disk.cow");
    uml_ok(&["cow", "create", s(&cow), s(&backing)]);
    // A sector written in the old COW file.
    let f = OpenOptions::new().write(true).open(&cow).unwrap();
    f.write_all_at(&[0xFF], 8192).unwrap();
    drop(f);
    let err = uml_fails(&["cow", "create", s(&cow), s(&backing)]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        count_bits_v3(&cow, 1 << 20),
        8,
        "refused create must not touch the file"
    );
    uml_ok(&["cow", "create", "--force", s(&cow), s(&backing)]);
    assert_eq!(
        count_bits_v3(&cow, 1 << 20),
        0,
        "--force must not keep the old bitmap"
    );
    let fresh = dir.path().join("fresh.cow");
    tool_ok("uml_mkcow", &[s(&fresh), s(&backing)]);
    assert!(same_content(&cow, &fresh));
}

/// Shell commands for a guest that write to `dev` at several offsets, including zeros over
/// backing data and a partial sector, then sync.
fn guest_writes(dev: &str, size: u64) -> String {
    format!(
        "dd if=/dev/urandom of={dev} bs=4096 count=4 2>/dev/null\n\
         printf umlkit | dd of={dev} bs=512 seek=1001 conv=notrunc 2>/dev/null\n\
         dd if=/dev/zero of={dev} bs=4096 seek={z} count=2 2>/dev/null\n\
         dd if=/dev/urandom of={dev} bs=65536 seek=100 count=8 2>/dev/null\n\
         dd if=/dev/urandom of={dev} bs=4096 seek={end} count=1 2>/dev/null\n\
         sync\n",
        z = size / 3 / 4096,
        end = size / 4096 - 1,
    )
}

/// Merge `cow` with ours and with `uml_moo`, both ways, and check they agree.
fn merges_match_uml_moo(dir: &Path, cow: &Path, backing: &Path, name: &str) {
    let ours = dir.join(format!("{name}-ours.img"));
    let theirs = dir.join(format!("{name}-moo.img"));
    uml_ok(&["cow", "merge", s(cow), s(&ours)]);
    tool_ok("uml_moo", &[s(cow), s(&theirs)]);
    assert!(
        same_content(&ours, &theirs),
        "{name}: merged image differs from uml_moo's"
    );
    assert!(
        !same_content(&ours, backing),
        "{name}: the guest's writes are missing"
    );
    let (b_ours, b_moo) = (blocks(&ours), blocks(&theirs));
    assert!(
        b_ours <= b_moo + 8 && b_moo <= b_ours + 8,
        "{name}: sparseness differs: {b_ours} vs {b_moo} blocks"
    );
    assert!(
        b_ours * 512 < fs::metadata(&ours).unwrap().len() / 2,
        "{name}: not sparse"
    );

    // In place, on copies, with -b naming the copy of the backing file.
    let (d1, d2) = (
        dir.join(format!("{name}-ip1")),
        dir.join(format!("{name}-ip2")),
    );
    for d in [&d1, &d2] {
        fs::create_dir(d).unwrap();
        copy(cow, &d.join("disk.cow"));
        copy(backing, &d.join("base.img"));
    }
    uml_ok(&[
        "cow",
        "merge",
        "--in-place",
        "-b",
        s(&d1.join("base.img")),
        s(&d1.join("disk.cow")),
    ]);
    tool_ok(
        "uml_moo",
        &["-d", "-b", s(&d2.join("base.img")), s(&d2.join("disk.cow"))],
    );
    assert!(same_content(&d1.join("base.img"), &d2.join("base.img")));
    assert!(same_content(&d1.join("base.img"), &ours));
    assert!(
        same_content(&d1.join("disk.cow"), cow),
        "an in-place merge must not change the COW file"
    );
}

#[test]
fn merges_of_cow_files_a_guest_wrote_match_uml_moo() {
    let dir = tempdir();
    let size = 16u64 << 20;
    let backing = dir.path().join("base.img");
    make_backing(&backing, size);
    let kernel_cow = dir.path().join("kernel.cow");
    let our_cow = dir.path().join("ours.cow");
    uml_ok(&["cow", "create", s(&our_cow), s(&backing)]);
    let mut guest = GuestBuilder::new("cowmerge")
        .arg(format!("ubd1={},{}", s(&kernel_cow), s(&backing)))
        .arg(format!("ubd2={},{}", s(&our_cow), s(&backing)))
        .body(&format!(
            "{}{}",
            guest_writes("/dev/ubdb", size),
            guest_writes("/dev/ubdc", size)
        ))
        .boot()
        .unwrap();
    wait_exit(&mut guest);
    let log = guest.log();
    assert!(
        log.contains("Creating"),
        "the kernel did not create the COW file:\n{log}"
    );

    for (cow, name) in [(&kernel_cow, "kernel"), (&our_cow, "ours")] {
        let held = count_bits_v3(cow, size);
        assert!(
            held > 0,
            "{name}: the guest wrote nothing through the COW file"
        );
        let info = json(&uml_ok(&["cow", "info", "--json", s(cow)]));
        assert_eq!(info["version"], 3);
        assert_eq!(info["backing_ok"], true);
        assert_eq!(info["sectors_in_cow"], held);
        assert_eq!(info["sectors"], size / 512);
        let share = info["share_in_cow"].as_f64().unwrap();
        assert!((share - held as f64 / (size / 512) as f64).abs() < 1e-9);
        merges_match_uml_moo(dir.path(), cow, &backing, name);
        reader_matches_image(cow, &dir.path().join(format!("{name}-ours.img")));
    }
}

/// `CowReader::read_at` gives the merged image's bytes at odd offsets and lengths.
fn reader_matches_image(cow: &Path, image: &Path) {
    let reader = uml::cow::CowReader::open(cow, None).unwrap();
    let image = fs::read(image).unwrap();
    assert_eq!(reader.size(), image.len() as u64);
    let size = image.len() as u64;
    let mut at = 0u64;
    let mut len = 1usize;
    while at < size {
        let mut buf = vec![0xAAu8; len];
        let n = reader.read_at(&mut buf, at).unwrap();
        let want = (size - at).min(len as u64) as usize;
        assert_eq!(n, want, "read of {len} at {at}");
        assert!(
            buf[..n] == image[at as usize..at as usize + n],
            "bytes at {at}+{len}"
        );
        at += (len as u64) * 3 + 777;
        len = (len * 7 + 13) % 300_000 + 1;
    }
    let mut buf = [0u8; 16];
    assert_eq!(reader.read_at(&mut buf, size).unwrap(), 0);
    assert_eq!(reader.read_at(&mut buf, size - 3).unwrap(), 3);
}

#[test]
fn version_1_2_and_broken_3_files_are_read_and_merged() {
    let dir = tempdir();
    // Not a multiple of 4096, so the V1/V2 bitmap length keeps the kernel's rounding bug.
    let size = (3 << 20) + 9 * 512;
    let backing = dir.path().join("base.img");
    make_backing(&backing, size);
    let sectors: Vec<(u64, Vec<u8>)> = [0u64, 1, 7, 8, 100, 2047, 4000, 6150]
        .iter()
        .map(|&n| (n, vec![(n % 251) as u8 + 1; 512]))
        .chain([(3000, vec![0u8; 512])])
        .collect();
    let mut expected = fs::read(&backing).unwrap();
    for (n, data) in &sectors {
        expected[*n as usize * 512..(*n as usize + 1) * 512].copy_from_slice(data);
    }
    for (version, layout, number) in [
        ("v1", CowVersion::V1, 1),
        ("v2", CowVersion::V2, 2),
        ("v3broken", CowVersion::V3, 3),
    ] {
        let cow = dir.path().join(format!("{version}.cow"));
        write_cow(layout, &cow, &backing, &sectors);
        let info = json(&uml_ok(&["cow", "info", "--json", s(&cow)]));
        assert_eq!(info["version"], number, "{version}");
        assert_eq!(info["broken_v3_layout"], version == "v3broken");
        assert_eq!(info["backing_file"], s(&backing));
        assert_eq!(info["backing_ok"], true, "{version}: {info}");
        assert_eq!(info["sectors_in_cow"], sectors.len(), "{version}");
        let ours = dir.path().join(format!("{version}-ours.img"));
        uml_ok(&["cow", "merge", s(&cow), s(&ours)]);
        assert!(
            fs::read(&ours).unwrap() == expected,
            "{version}: wrong merge"
        );
        {
            // uml_moo reads these too; its image drops the trailing partial sector.
            let theirs = dir.path().join(format!("{version}-moo.img"));
            tool_ok("uml_moo", &[s(&cow), s(&theirs)]);
            let moo = fs::read(&theirs).unwrap();
            assert_eq!(moo.len() as u64, size / 512 * 512);
            assert!(
                moo[..] == expected[..moo.len()],
                "{version}: differs from uml_moo"
            );
        }
        // Rebase keeps the layout: the file still reads the same afterwards.
        let moved = dir.path().join(format!("{version}-moved.img"));
        copy(&backing, &moved);
        uml_ok(&["cow", "rebase", s(&cow), s(&moved)]);
        let info = json(&uml_ok(&["cow", "info", "--json", s(&cow)]));
        assert_eq!(info["version"], number);
        assert_eq!(info["backing_file"], s(&moved));
        assert_eq!(info["sectors_in_cow"], sectors.len());
        let again = dir.path().join(format!("{version}-again.img"));
        uml_ok(&["cow", "merge", s(&cow), s(&again)]);
        assert!(
            fs::read(&again).unwrap() == expected,
            "{version}: rebase broke it"
        );
    }
}

#[test]
fn mismatched_backing_files_are_refused_with_the_kernels_reason() {
    let dir = tempdir();
    let backing = dir.path().join("base.img");
    make_backing(&backing, 4 << 20);
    let cow = dir.path().join("disk.cow");
    uml_ok(&["cow", "create", s(&cow), s(&backing)]);
    let header_mtime = mtime(&backing);
    tool_ok("touch", &["-d", "2001-02-03 04:05:06", s(&backing)]);
    let err = uml_fails(&["cow", "merge", s(&cow), s(&dir.path().join("out.img"))]);
    let reason = format!(
        "mtime mismatch ({header_mtime} vs {}) of COW header vs backing file",
        mtime(&backing)
    );
    assert!(err.contains(&reason), "{err}");
    assert!(!dir.path().join("out.img").exists());
    let err = uml_fails(&["cow", "merge", "--in-place", s(&cow)]);
    assert!(err.contains(&reason), "{err}");
    let info = uml_ok(&["cow", "info", s(&cow)]);
    assert!(String::from_utf8_lossy(&info.stdout).contains(&reason));

    // The kernel refuses the same file for the same reason.
    let mut guest = GuestBuilder::new("cowmtime")
        .arg(format!("ubd1={},{}", s(&cow), s(&backing)))
        .body("dd if=/dev/ubdb of=/dev/null count=1 2>/dev/null; echo DONE")
        .boot()
        .unwrap();
    wait_exit(&mut guest);
    assert!(guest.log().contains(&reason), "{}", guest.log());

    // Size: the kernel's message again.
    let f = OpenOptions::new().write(true).open(&backing).unwrap();
    f.set_len(5 << 20).unwrap();
    drop(f);
    let err = uml_fails(&["cow", "merge", s(&cow), s(&dir.path().join("out.img"))]);
    assert!(
        err.contains(&format!(
            "Size mismatch ({} vs {}) of COW header vs backing file",
            4 << 20,
            5 << 20
        )),
        "{err}"
    );
}

#[test]
fn files_a_running_guest_holds_are_refused_naming_its_pid_and_umid() {
    let dir = tempdir();
    let backing = dir.path().join("base.img");
    make_backing(&backing, 4 << 20);
    let cow = dir.path().join("disk.cow");
    uml_ok(&["cow", "create", s(&cow), s(&backing)]);
    let guest = GuestBuilder::new("cowheld")
        .arg(format!("ubd1={},{}", s(&cow), s(&backing)))
        .body("exec 3<>/dev/ubdb; echo HELD; while :; do sleep 1; done")
        .boot()
        .unwrap();
    guest
        .wait_for_log("HELD", GUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let uml_dir = s(guest.uml_dir()).to_owned();
    let named = format!(
        "used by pid {} (uml instance \"{}\")",
        guest.pid(),
        guest.umid()
    );
    let out = dir.path().join("out.img");
    for args in [
        vec!["cow", "merge", s(&cow), s(&out)],
        vec!["cow", "merge", "--in-place", s(&cow)],
        vec!["cow", "rebase", s(&cow), s(&backing)],
        vec!["cow", "create", "--force", s(&cow), s(&backing)],
    ] {
        let mut full = vec!["--uml-dir", &uml_dir];
        full.extend(args.iter().copied());
        let err = uml_fails(&full);
        assert!(err.contains(&named), "{full:?}: {err}");
    }
    // The backing file is read-locked: an in-place merge of another COW file over it is
    // refused, a merge into a new file is not.
    let other = dir.path().join("other.cow");
    uml_ok(&["cow", "create", s(&other), s(&backing)]);
    let err = uml_fails(&[
        "--uml-dir",
        &uml_dir,
        "cow",
        "merge",
        "--in-place",
        s(&other),
    ]);
    assert!(err.contains(&named) && err.contains("base.img"), "{err}");
    uml_ok(&["--uml-dir", &uml_dir, "cow", "merge", s(&other), s(&out)]);
    // Reading never locks, so it works on a disk a guest is using.
    let reader = uml::cow::CowReader::open(&cow, None).unwrap();
    let mut buf = vec![0u8; 4096];
    assert_eq!(reader.read_at(&mut buf, 4096).unwrap(), 4096);
    // Looking is fine, and says who holds it.
    let info = json(&uml_ok(&[
        "--uml-dir",
        &uml_dir,
        "cow",
        "info",
        "--json",
        s(&cow),
    ]));
    assert_eq!(info["in_use_by"]["pid"], guest.pid());
    assert_eq!(info["in_use_by"]["umid"], guest.umid());
}

#[test]
fn a_killed_in_place_merge_is_completed_by_a_rerun() {
    let dir = tempdir();
    let size = 1u64 << 30;
    let held = 512u64 << 20;
    let backing = dir.path().join("base.img");
    make_backing(&backing, size);
    let cow = dir.path().join("disk.cow");
    uml_ok(&["cow", "create", s(&cow), s(&backing)]);
    {
        // The first `held` bytes of the disk are in the COW file, as a guest leaves them.
        let f = OpenOptions::new().write(true).open(&cow).unwrap();
        f.write_all_at(&vec![0xFF; (held / 512 / 8) as usize], 8192)
            .unwrap();
        let data_offset = 8192 + 4096 * 64;
        let mut chunk = vec![0u8; 1 << 20];
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = (i % 253) as u8 + 1;
        }
        for off in (0..held).step_by(1 << 20) {
            chunk[0] = (off >> 20) as u8;
            f.write_all_at(&chunk, data_offset + off).unwrap();
        }
    }
    let reference = dir.path().join("ref");
    fs::create_dir(&reference).unwrap();
    copy(&backing, &reference.join("base.img"));
    copy(&cow, &reference.join("disk.cow"));
    tool_ok(
        "uml_moo",
        &[
            "-d",
            "-b",
            s(&reference.join("base.img")),
            s(&reference.join("disk.cow")),
        ],
    );

    let marker = dir.path().join(".disk.cow.uml-merge-in-place");
    let mut child = uml()
        .args(["cow", "merge", "--in-place", s(&cow)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the merge never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the merge ended before writing"
        );
        sleep(Duration::from_millis(1));
    }
    sleep(Duration::from_millis(50));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        marker.exists(),
        "the merge was not interrupted (it finished too fast)"
    );
    assert!(
        !same_content(&backing, &reference.join("base.img")),
        "the interrupted merge already produced the whole result"
    );
    // The backing file's mtime has changed, yet the rerun may complete the merge.
    let info = uml_ok(&["cow", "info", s(&cow)]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("interrupted"));
    let rerun = uml_ok(&["cow", "merge", "--in-place", s(&cow)]);
    assert!(
        String::from_utf8_lossy(&rerun.stderr).contains("completing the interrupted"),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    assert!(!marker.exists());
    assert!(same_content(&backing, &reference.join("base.img")));
}

#[test]
fn rebase_points_a_cow_at_a_moved_backing_file_and_the_kernel_accepts_it() {
    let dir = tempdir();
    let old_dir = dir.path().join("old");
    let new_dir = dir.path().join("new");
    fs::create_dir(&old_dir).unwrap();
    fs::create_dir(&new_dir).unwrap();
    let backing = old_dir.join("base.img");
    make_backing(&backing, 4 << 20);
    let f = OpenOptions::new().write(true).open(&backing).unwrap();
    f.write_all_at(b"backing-says-hello\n\0", 512 * 50).unwrap();
    drop(f);
    let cow = dir.path().join("disk.cow");
    uml_ok(&["cow", "create", s(&cow), s(&backing)]);
    let mut writer = GuestBuilder::new("cowrebase")
        .arg(format!("ubd1={},{}", s(&cow), s(&backing)))
        .body(
            "printf 'cow-says-hello\\n' | dd of=/dev/ubdb bs=512 seek=100 conv=notrunc 2>/dev/null; sync",
        )
        .boot()
        .unwrap();
    wait_exit(&mut writer);
    drop(writer);

    let moved = new_dir.join("moved.img");
    fs::rename(&backing, &moved).unwrap();
    // A file that is not the same backing file is refused.
    let impostor = new_dir.join("impostor.img");
    make_backing(&impostor, 4 << 20);
    tool_ok("touch", &["-d", "2001-02-03 04:05:06", s(&impostor)]);
    let err = uml_fails(&["cow", "rebase", s(&cow), s(&impostor)]);
    assert!(err.contains("mtime mismatch"), "{err}");
    uml_ok(&["cow", "rebase", s(&cow), s(&moved)]);
    let info = json(&uml_ok(&["cow", "info", "--json", s(&cow)]));
    assert_eq!(info["backing_file"], s(&moved));
    assert_eq!(info["backing_ok"], true);

    // The kernel opens the COW file alone, finds the new backing file in its header, and the
    // guest reads both its own write and the backing file's data.
    let mut reader = GuestBuilder::new("cowrebase")
        .arg(format!("ubd1={}", s(&cow)))
        .body(
            "dd if=/dev/ubdb bs=512 skip=100 count=1 2>/dev/null | head -n 1\n\
             dd if=/dev/ubdb bs=512 skip=50 count=1 2>/dev/null | head -n 1",
        )
        .boot()
        .unwrap();
    wait_exit(&mut reader);
    let log = reader.log();
    assert!(log.contains("cow-says-hello"), "{log}");
    assert!(log.contains("backing-says-hello"), "{log}");
    assert!(!log.contains("mismatch"), "{log}");
}

#[test]
fn in_place_merge_warns_and_names_other_cow_files_on_the_same_backing_file() {
    let dir = tempdir();
    let backing = dir.path().join("base.img");
    make_backing(&backing, 1 << 20);
    let cow = dir.path().join("a.cow");
    let sibling = dir.path().join("b.cow");
    let unrelated = dir.path().join("c.cow");
    let other_backing = dir.path().join("other.img");
    make_backing(&other_backing, 1 << 20);
    uml_ok(&["cow", "create", s(&cow), s(&backing)]);
    uml_ok(&["cow", "create", s(&sibling), s(&backing)]);
    uml_ok(&["cow", "create", s(&unrelated), s(&other_backing)]);
    // One page held in a.cow (bitmap at 8192, data at 12288 for a 1 MiB disk); wait a second
    // so that writing it changes the backing file's mtime, which has whole seconds.
    let f = OpenOptions::new().write(true).open(&cow).unwrap();
    f.write_all_at(&[0xFF], 8192).unwrap();
    f.write_all_at(&[0x5A; 4096], 12288).unwrap();
    drop(f);
    sleep(Duration::from_millis(1100));
    let out = uml_ok(&["cow", "merge", "--in-place", s(&cow)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("changes the mtime"), "{err}");
    assert!(err.contains(s(&sibling)), "{err}");
    assert!(!err.contains(s(&unrelated)), "{err}");
    // The sibling is now refused, as the warning said.
    let err = uml_fails(&["cow", "merge", s(&sibling), s(&dir.path().join("x.img"))]);
    assert!(err.contains("mismatch"), "{err}");
}

#[test]
fn damaged_and_foreign_files_are_reported_not_used() {
    let dir = tempdir();
    let backing = dir.path().join("base.img");
    make_backing(&backing, 1 << 20);
    let err = uml_fails(&["cow", "info", s(&backing)]);
    assert!(err.contains("is not a COW file"), "{err}");
    let cow = dir.path().join("disk.cow");
    uml_ok(&["cow", "create", s(&cow), s(&backing)]);
    let f = OpenOptions::new().write(true).open(&cow).unwrap();
    f.set_len(8192 + 100).unwrap();
    drop(f);
    let err = uml_fails(&["cow", "info", s(&cow)]);
    assert!(err.contains("truncated"), "{err}");
    let f = OpenOptions::new().write(true).open(&cow).unwrap();
    f.set_len(0).unwrap();
    // Magic, version 3, then nothing: a header cut short.
    f.write_all_at(&[0x4F, 0x4F, 0x4F, 0x4D, 0, 0, 0, 3, 1], 0)
        .unwrap();
    drop(f);
    let err = uml_fails(&["cow", "merge", s(&cow), s(&dir.path().join("out.img"))]);
    assert!(err.contains("cut short"), "{err}");
    let f = OpenOptions::new().write(true).open(&cow).unwrap();
    let mut header = vec![0u8; 4200];
    header[..8].copy_from_slice(&[0x4F, 0x4F, 0x4F, 0x4D, 0, 0, 0, 3]);
    header[12..20].copy_from_slice(&(1u64 << 20).to_be_bytes());
    header[20..24].copy_from_slice(&512u32.to_be_bytes());
    header[32] = b'/';
    f.write_all_at(&header, 0).unwrap();
    drop(f);
    let err = uml_fails(&["cow", "info", s(&cow)]);
    assert!(err.contains("align == 0"), "{err}");
}

/// Run `uml ARGS`, which must fail within `deadline` (it is killed and the test fails if it
/// hangs); its stderr.
fn uml_fails_within(args: &[&str], deadline: Duration) -> String {
    let mut child = uml()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("uml {args:?} still ran after {deadline:?}: it hangs");
        }
        sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "uml {args:?} succeeded:\n{err}");
    err
}

#[test]
fn a_fifo_as_backing_or_cow_file_is_refused_at_once_naming_it() {
    let dir = tempdir();
    let backing = dir.path().join("base.img");
    make_backing(&backing, 1 << 20);
    let cow = dir.path().join("disk.cow");
    uml_ok(&["cow", "create", s(&cow), s(&backing)]);
    // The header now names a FIFO: opening it for reading would wait for a writer forever.
    fs::remove_file(&backing).unwrap();
    nix::unistd::mkfifo(&backing, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = dir.path().join("out.img");
    let deadline = Duration::from_secs(20);
    let says_fifo = |err: &str| {
        assert!(
            err.contains(&format!("{} is a FIFO", s(&backing)))
                && err.contains("must be a regular file or a block device"),
            "{err}"
        );
    };
    says_fifo(&uml_fails_within(
        &["cow", "merge", s(&cow), s(&out)],
        deadline,
    ));
    assert!(!out.exists());
    says_fifo(&uml_fails_within(
        &["cow", "merge", "--in-place", s(&cow)],
        deadline,
    ));
    says_fifo(&uml_fails_within(
        &["cow", "merge", "--backing", s(&backing), s(&cow), s(&out)],
        deadline,
    ));
    says_fifo(&uml_fails_within(
        &["cow", "rebase", s(&cow), s(&backing)],
        deadline,
    ));
    says_fifo(&uml_fails_within(
        &["cow", "create", s(&dir.path().join("new.cow")), s(&backing)],
        deadline,
    ));
    let info = uml_ok(&["cow", "info", s(&cow)]);
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("is a FIFO"),
        "{}",
        String::from_utf8_lossy(&info.stdout)
    );
    // A character device reads as no header at all, as the kernel sees it (a raw disk).
    let err = uml_fails_within(&["cow", "info", "/dev/null"], deadline);
    assert!(err.contains("/dev/null is not a COW file"), "{err}");
    // A FIFO given as the COW file itself.
    let fifo_cow = dir.path().join("fifo.cow");
    nix::unistd::mkfifo(&fifo_cow, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for args in [
        vec!["cow", "info", s(&fifo_cow)],
        vec!["cow", "merge", s(&fifo_cow), s(&out)],
        vec!["cow", "merge", "--in-place", s(&fifo_cow)],
    ] {
        let err = uml_fails_within(&args, deadline);
        assert!(
            err.contains(&format!("{} is a FIFO", s(&fifo_cow))),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_merged_image_is_no_more_readable_than_its_inputs_and_symlinks_are_replaced() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let dir = tempdir();
    let backing = dir.path().join("secret.img");
    make_backing(&backing, 1 << 20);
    let cow = dir.path().join("disk.cow");
    uml_ok(&["cow", "create", s(&cow), s(&backing)]);
    // As /etc/shadow would be: readable by its owner only. The COW file is 0644.
    fs::set_permissions(&backing, fs::Permissions::from_mode(0o600)).unwrap();
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(
        mode(&cow) & 0o044,
        0o044,
        "the COW file is readable by others"
    );
    let out = dir.path().join("out.img");
    uml_ok(&["cow", "merge", s(&cow), s(&out)]);
    assert_eq!(mode(&out), 0o600);
    assert!(same_content(&out, &backing));
    // --force replaces it, still 0600.
    uml_ok(&["cow", "merge", "--force", s(&cow), s(&out)]);
    assert_eq!(mode(&out), 0o600);

    // A symlink planted at the output path: refused without --force (even dangling), and
    // replaced, never written through, with it.
    let victim = dir.path().join("victim");
    fs::write(&victim, b"not yours").unwrap();
    let link = dir.path().join("link.img");
    symlink(&victim, &link).unwrap();
    let err = uml_fails(&["cow", "merge", s(&cow), s(&link)]);
    assert!(err.contains("already exists"), "{err}");
    let dangling = dir.path().join("dangling.img");
    symlink(dir.path().join("nowhere"), &dangling).unwrap();
    let err = uml_fails(&["cow", "merge", s(&cow), s(&dangling)]);
    assert!(err.contains("already exists"), "{err}");
    assert!(!dir.path().join("nowhere").exists());
    uml_ok(&["cow", "merge", "--force", s(&cow), s(&link)]);
    assert_eq!(fs::read(&victim).unwrap(), b"not yours");
    assert!(fs::symlink_metadata(&link).unwrap().is_file());
    assert_eq!(mode(&link), 0o600);
    assert!(same_content(&link, &backing));

    // The in-place merge's marker file: a symlink planted there is not written through.
    let marker = dir.path().join(".disk.cow.uml-merge-in-place");
    symlink(&victim, &marker).unwrap();
    let err = uml_fails(&["cow", "merge", "--in-place", s(&cow)]);
    assert!(err.contains(s(&marker)), "{err}");
    assert_eq!(fs::read(&victim).unwrap(), b"not yours");
    assert!(
        fs::symlink_metadata(&marker)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
