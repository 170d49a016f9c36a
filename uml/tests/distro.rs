//! A real distribution guest, end to end: a Debian image made by `uml image create`, booted
//! from its own disk with systemd as pid 1 (`uml run --root`), logged into through
//! `uml console` on a pty this test drives, written to, shut down with `uml shutdown`, and
//! clean by `e2fsck -fn` afterwards; two such guests on a switch with host-given addresses.
//!
//! The image is built once per machine and recipe and kept under
//! `$XDG_CACHE_HOME/umlkit/test-images` (else `~/.cache/umlkit/test-images`); the guests boot
//! copies or COW files of it, never the cached file itself.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::UmlDir;

const PASSWORD: &str = testkit::TEST_IMAGE_PASSWORD;

fn uml_bin() -> &'static str {
    env!("CARGO_BIN_EXE_uml")
}

/// The cached test image (built once per machine by testkit with this crate's `uml`).
fn image() -> PathBuf {
    static IMAGE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| testkit::test_image(Path::new(uml_bin())))
        .clone()
}

/// A sparse copy of the cached image, for a guest to own.
fn copy_of_image(dir: &Path) -> PathBuf {
    let copy = dir.join("guest.img");
    let st = Command::new("cp")
        .args(["--sparse=always"])
        .arg(image())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    copy
}

fn uml(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(uml_bin())
        .arg("--uml-dir")
        .arg(dir)
        .args(args)
        .env("UML_KERNEL", testkit::kernel())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `uml console UMID [LINE]` on a pty that this test reads and types into.
struct Console {
    child: Child,
    master: std::fs::File,
    seen: Vec<u8>,
}

impl Console {
    fn attach(dir: &Path, umid: &str, line: Option<&str>) -> Console {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = std::fs::File::from(pty.slave);
        let mut cmd = Command::new(uml_bin());
        cmd.arg("--uml-dir")
            .arg(dir)
            .args(["console", umid])
            .args(line)
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        let child = cmd.spawn().unwrap();
        Console {
            child,
            master: std::fs::File::from(pty.master),
            seen: Vec::new(),
        }
    }

    /// Reads until `needle` shows (after what earlier calls consumed), at most `timeout`.
    fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&self.seen).into_owned();
            if let Some(at) = text.find(needle) {
                self.seen.drain(..at + needle.len());
                return text[..at + needle.len()].to_owned();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{needle:?} did not show within {timeout:?}; the console showed:\n{text}"
            );
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            let ms = u16::try_from(left.as_millis().min(1000)).unwrap_or(1000);
            if poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) > 0 {
                match self.master.read(&mut buf) {
                    Ok(n) if n > 0 => self.seen.extend_from_slice(&buf[..n]),
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }

    fn send(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// Logs in as root (pressing Enter first: the prompt shown before attaching was read by
    /// whoever watched the line then).
    fn login(&mut self, hostname: &str) {
        self.expect("press Ctrl-] to detach", Duration::from_secs(20));
        self.send("\r");
        self.expect(&format!("{hostname} login:"), Duration::from_secs(30));
        self.send("root\r");
        self.expect("Password:", Duration::from_secs(20));
        self.send(&format!("{PASSWORD}\r"));
        self.expect(&format!("root@{hostname}:~#"), Duration::from_secs(30));
    }

    /// Runs a shell command; returns its output up to a marker it prints last.
    fn run(&mut self, command: &str, timeout: Duration) -> String {
        self.send(&format!("{command}; echo END-$((40+2))\r"));
        self.expect("END-42", timeout)
    }

    /// Ctrl-]: `uml console` detaches and exits.
    fn detach(mut self) {
        self.send("\x1d");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("uml console did not exit on Ctrl-]");
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// umlfs (this workspace's, next to `uml`) mounted on `UMID:/`; unmounted when dropped.
struct Umlfs(PathBuf);

impl Drop for Umlfs {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

fn umlfs_mount(uml_dir: &Path, umid: &str, mnt: &Path) -> Umlfs {
    let umlfs = Path::new(uml_bin()).with_file_name("umlfs");
    assert!(
        umlfs.is_file(),
        "{} is missing: build it (cargo build -p umlfs)",
        umlfs.display()
    );
    let out = Command::new(&umlfs)
        .arg("-o")
        .arg(format!("uml_dir={}", uml_dir.display()))
        .arg(format!("{umid}:/"))
        .arg(mnt)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let guard = Umlfs(mnt.to_owned());
    assert!(
        out.status.success(),
        "umlfs {umid}:/ failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    guard
}

/// Stops the named switch of a test's uml_dir when dropped.
struct SwitchGuard(PathBuf);

impl Drop for SwitchGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0)
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// Boots `root` (FILE or COW:BASE) detached; returns the seconds until `uml run` returned,
/// which is when a login prompt showed.
fn boot(dir: &UmlDir, umid: &str, root: &str, nets: &[&str]) -> f64 {
    let mut args = vec!["run", "--detach", "--umid", umid, "--root", root];
    for n in nets {
        args.extend(["--net", n]);
    }
    args.extend(["--boot-timeout", "120"]);
    let start = Instant::now();
    let (ok, text) = uml(dir.path(), &args);
    let took = start.elapsed().as_secs_f64();
    dir.remember();
    assert!(ok, "uml run --root {root} failed:\n{text}");
    assert_eq!(text.trim(), umid);
    took
}

fn shutdown(dir: &UmlDir, umid: &str) -> f64 {
    let start = Instant::now();
    let (ok, text) = uml(dir.path(), &["shutdown", umid]);
    let took = start.elapsed().as_secs_f64();
    assert!(ok, "uml shutdown {umid}: {text}");
    let gone = Instant::now() + Duration::from_secs(10);
    while dir.path().join(umid).exists() && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !dir.path().join(umid).exists(),
        "the instance directory of {umid} is still there after shutdown"
    );
    took
}

fn e2fsck_clean(image: &Path) {
    let out = Command::new("e2fsck")
        .args(["-fn"])
        .arg(image)
        .output()
        .expect("e2fsck (e2fsprogs)");
    assert!(
        out.status.success(),
        "e2fsck -fn {} is not clean:\n{}{}",
        image.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_debian_image_boots_with_systemd_takes_a_console_login_and_shuts_down_clean() {
    let dir = UmlDir::new();
    let work = testkit::short_tempdir("umlkit-distro");
    let disk = copy_of_image(work.path());
    let umid = testkit::unique_umid("deb");
    let booted = boot(&dir, &umid, disk.to_str().unwrap(), &[]);

    // The guest is called by its umid (the login prompt and shell prompt show it).
    // A second guest cannot boot the same disk: refused before anything starts.
    let (ok, text) = uml(
        dir.path(),
        &["run", "--detach", "--root", disk.to_str().unwrap()],
    );
    assert!(!ok && text.contains("is in use by pid"), "{text}");

    let mut console = Console::attach(dir.path(), &umid, None);
    console.login(&umid);
    let out = console.run(
        "echo pid1=$(cat /proc/1/comm); echo written-by-the-test > /root/probe; sync; systemctl is-system-running",
        Duration::from_secs(30),
    );
    assert!(out.contains("pid1=systemd"), "{out}");
    // umlfs shows the guest's synced write on the host while the guest runs.
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _mounted = umlfs_mount(dir.path(), &umid, &mnt);
    let probe = mnt.join("root/probe");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::fs::read_to_string(&probe).ok().as_deref() != Some("written-by-the-test\n") {
        assert!(
            Instant::now() < deadline,
            "umlfs did not show /root/probe: {:?}",
            std::fs::read_to_string(&probe)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(_mounted);
    assert!(
        out.contains("\nrunning") || out.contains("\ndegraded"),
        "systemd: {out}"
    );
    console.detach();

    // A second login on con1, where systemd's own getty runs.
    let mut second = Console::attach(dir.path(), &umid, Some("con1"));
    second.login(&umid);
    let out = second.run("tty", Duration::from_secs(20));
    assert!(out.contains("/dev/tty1"), "{out}");
    second.detach();

    let down = shutdown(&dir, &umid);
    println!(
        "kernel {}: uml run --root to a login prompt {booted:.1} s, uml shutdown {down:.1} s",
        testkit::kernel_release()
    );
    e2fsck_clean(&disk);
    let out = Command::new("debugfs")
        .args(["-R", "cat /root/probe"])
        .arg(&disk)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "written-by-the-test"
    );
    // uml run left nothing of the guest behind but its boot log (for `uml console` to read
    // while it ran), which the next uml run sweeps.
    assert!(!dir.path().join(&umid).exists());
    assert!(
        !uml::launch::runtime_dir(dir.path(), &umid)
            .join(format!("{umid}.init"))
            .exists()
    );
}

#[test]
fn two_debian_guests_on_a_switch_ping_each_other_at_host_given_addresses() {
    let base = image();
    let base_mtime = std::fs::metadata(&base).unwrap().modified().unwrap();
    let dir = UmlDir::new();
    let work = testkit::short_tempdir("umlkit-distro");
    let _switch = SwitchGuard(dir.path().join(".umlkit/switch-lan.pid"));
    let a = testkit::unique_umid("deba");
    let b = testkit::unique_umid("debb");
    for (umid, ip) in [(&a, "10.0.0.1/24"), (&b, "10.0.0.2/24")] {
        let cow = work.path().join(format!("{umid}.cow"));
        let root = format!("{}:{}", cow.display(), base.display());
        let net = format!("switch:lan,ip={ip}");
        boot(&dir, umid, &root, &[&net]);
    }
    let mut console = Console::attach(dir.path(), &a, None);
    console.login(&a);
    let out = console.run("ping -c 2 -W 5 10.0.0.2", Duration::from_secs(30));
    assert!(out.contains(" 0% packet loss"), "{out}");
    console.detach();
    shutdown(&dir, &a);
    shutdown(&dir, &b);
    // The base image was only read.
    assert_eq!(
        std::fs::metadata(&base).unwrap().modified().unwrap(),
        base_mtime
    );
}

#[test]
fn a_root_image_that_cannot_boot_leaves_nothing_behind() {
    let dir = UmlDir::new();
    let work = testkit::short_tempdir("umlkit-distro");
    // An empty ext4 filesystem: no init to run.
    let empty = work.path().join("empty.img");
    let st = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4"])
        .arg(&empty)
        .arg("64M")
        .status()
        .unwrap();
    assert!(st.success());
    let umid = testkit::unique_umid("bad");
    let (ok, text) = uml(
        dir.path(),
        &[
            "run",
            "--detach",
            "--umid",
            &umid,
            "--root",
            empty.to_str().unwrap(),
            "--boot-timeout",
            "60",
        ],
    );
    dir.remember();
    assert!(!ok, "{text}");
    assert!(text.contains("panicked") || text.contains("init"), "{text}");
    let rt = uml::launch::runtime_dir(dir.path(), &umid);
    for left in [
        dir.path().join(&umid),
        rt.join(format!("{umid}.log")),
        rt.join(format!("{umid}.init")),
    ] {
        assert!(!left.exists(), "{} was left behind", left.display());
    }
}

#[test]
fn image_create_names_what_is_wrong_before_building() {
    let work = testkit::short_tempdir("umlkit-distro");
    let out = work.path().join("x.img");
    for (args, says) in [
        (vec!["--distro", "fedora"], "--distro fedora"),
        (vec!["--size", "100M"], "at least 512M"),
        (vec!["--mirror", "not-a-url"], "--mirror"),
    ] {
        let (ok, text) = {
            let mut a = vec!["image", "create"];
            a.extend(args.iter().copied());
            a.push(out.to_str().unwrap());
            uml(work.path(), &a)
        };
        assert!(!ok && text.contains(says), "{args:?}: {text}");
        assert!(!out.exists());
    }
    // A missing bootstrapper is named with the package that has it, before anything is made.
    let missing = Command::new(uml_bin())
        .args(["image", "create"])
        .arg(&out)
        .env("PATH", work.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success() && text.contains("install the Debian package mmdebstrap"),
        "{text}"
    );
    assert!(!out.exists());
    std::fs::write(&out, b"").unwrap();
    let (ok, text) = uml(work.path(), &["image", "create", out.to_str().unwrap()]);
    assert!(!ok && text.contains("exists"), "{text}");
}

#[test]
fn the_built_in_guest_takes_its_address_and_hostname_from_the_host() {
    let dir = UmlDir::new();
    let _switch = SwitchGuard(dir.path().join(".umlkit/switch-addr.pid"));
    let umid = testkit::unique_umid("addr");
    let (ok, text) = uml(
        dir.path(),
        &[
            "run",
            "-m",
            "64M",
            "--umid",
            &umid,
            "--net",
            "switch:addr,ip=10.9.0.1/24",
            "--",
            "sh",
            "-c",
            "echo host=$(hostname); ip -br addr show eth0",
        ],
    );
    assert!(ok, "{text}");
    assert!(text.contains(&format!("host={umid}")), "{text}");
    assert!(text.contains("10.9.0.1/24"), "{text}");
    let (ok, text) = uml(
        dir.path(),
        &["run", "-m", "64M", "--hostname", "web1", "--", "hostname"],
    );
    assert!(ok && text.trim() == "web1", "{text}");
    let (ok, text) = uml(
        dir.path(),
        &["run", "--net", "switch:addr,ip=10.9.0.1", "--", "true"],
    );
    assert!(!ok && text.contains("ip=10.9.0.1"), "{text}");
}
