//! What a guest, a file in a uml_dir or another local user can do to the `uml` binary's
//! instance and mconsole commands: none of it may make them hang, crash, delete what is not
//! theirs, or act on a guest they were not pointed at. Real guests and the real binary; a fake
//! mconsole peer only where a real kernel cannot send the fault (numbers and text it never
//! produces).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use testkit::{GuestBuilder, UmlDir, output_within, short_tempdir, show_output};
use uml::mconsole::wire::{ReplyChunk, Request};

/// `uml --uml-dir DIR ARGS…`, which must finish within `limit`.
fn uml_within(dir: &Path, args: &[&str], limit: Duration) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_uml"))
        .arg("--uml-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the uml binary");
    output_within(child, limit, &format!("uml {args:?}"))
}

fn uml(dir: &Path, args: &[&str]) -> Output {
    uml_within(dir, args, Duration::from_secs(60))
}

fn list_json(dir: &Path) -> serde_json::Value {
    let out = uml(dir, &["list", "--json"]);
    assert!(out.status.success(), "{}", show_output("uml list", &out));
    serde_json::from_slice(&out.stdout).expect("uml list --json is not JSON")
}

fn row<'a>(rows: &'a serde_json::Value, umid: &str) -> Option<&'a serde_json::Value> {
    rows.as_array()?.iter().find(|r| r["umid"] == umid)
}

/// Alive and not a zombie.
fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

/// A child process killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A socket file that nothing is bound to any more (what a SIGKILLed kernel leaves).
fn dead_socket(path: &Path) {
    drop(UnixDatagram::bind(path).unwrap());
    assert!(path.exists());
}

/// A uml_dir in a fresh directory with an instance `ghost` whose pid file names `guest`'s
/// kernel: (the uml_dir, the instance's directory), its mconsole left to the test.
fn ghost_of(guest: &testkit::Guest, prefix: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let other = short_tempdir(prefix);
    let ghost = other.path().join("ghost");
    fs::create_dir(&ghost).unwrap();
    fs::write(ghost.join("pid"), format!("{}\n", guest.pid())).unwrap();
    (other, ghost)
}

#[test]
fn clean_removes_only_dead_instances_and_never_an_unknown_file() {
    let dir = UmlDir::new();
    let d = dir.path();
    // Not an instance: a directory of a person's files.
    fs::create_dir(d.join("docs")).unwrap();
    fs::write(d.join("docs/notes.txt"), "keep me").unwrap();
    // A dead instance with something else in it.
    fs::create_dir(d.join("odd")).unwrap();
    fs::write(d.join("odd/pid"), "999999999\n").unwrap();
    fs::write(d.join("odd/precious"), "keep me too").unwrap();
    // A dead instance as the kernel leaves it.
    fs::create_dir(d.join("dead")).unwrap();
    fs::write(d.join("dead/pid"), "999999999\n").unwrap();
    dead_socket(&d.join("dead/mconsole"));
    // A symlink to a directory of someone else's.
    let elsewhere = short_tempdir("umlkit-e");
    fs::write(elsewhere.path().join("pid"), "999999999\n").unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), d.join("link")).unwrap();

    let dry = uml(d, &["clean", "--dry-run"]);
    assert!(dry.status.success(), "{}", show_output("clean -n", &dry));
    assert!(d.join("dead/pid").exists(), "a dry run removed something");

    let out = uml(d, &["clean"]);
    assert!(out.status.success(), "{}", show_output("clean", &out));
    assert_eq!(
        fs::read_to_string(d.join("docs/notes.txt")).ok().as_deref(),
        Some("keep me"),
        "{}",
        show_output("clean", &out)
    );
    assert!(
        d.join("odd/precious").exists(),
        "{}",
        show_output("clean", &out)
    );
    assert!(!d.join("dead").exists(), "{}", show_output("clean", &out));
    assert!(elsewhere.path().join("pid").exists());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("kept") && said.contains("notes.txt"),
        "{said}"
    );
}

/// Root cleaning a uml_dir that another user can write, while that user swaps a dead
/// instance's directory for a symlink to a directory of root's with the same file names:
/// nothing of root's goes.
#[test]
fn clean_as_root_is_safe_against_a_symlink_swap_by_another_user() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test acts as a second local user and needs root"
    );
    let user = second_user();
    let d = short_tempdir("umlkit-s");
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o777)).unwrap();
    // Root's directory, with the names a dead instance has and many more.
    let victim = short_tempdir("umlkit-v");
    let names: Vec<String> = (0..400).map(|i| format!("f{i}")).collect();
    let fill = |dir: &Path| {
        fs::write(dir.join("pid"), "999999999\n").unwrap();
        for n in &names {
            fs::write(dir.join(n), "x").unwrap();
        }
    };
    fill(victim.path());
    // The other user's loop: a dead instance `g` (pid, many files); as soon as a clean has
    // started removing its files, `g` becomes a symlink to root's directory.
    let mut swapper = Reaped(
        testkit::as_user(user.0, user.1, "/usr/bin/python3")
            .args(["-c", SWAPPER])
            .arg(d.path())
            .arg(victim.path())
            .arg(names.len().to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("setpriv"),
    );
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < until {
        let _ = uml_within(d.path(), &["clean"], Duration::from_secs(30));
    }
    let mut said = String::new();
    std::io::Read::read_to_string(swapper.0.stdout.as_mut().unwrap(), &mut said).unwrap();
    let status = swapper.0.wait().unwrap();
    assert!(status.success(), "the second user's swapper failed: {said}");
    let swaps: u32 = said.trim().parse().unwrap_or(0);
    assert!(
        swaps > 0,
        "the second user never swapped a directory: {said:?}"
    );
    let left = names
        .iter()
        .filter(|n| victim.path().join(n).exists())
        .count();
    assert_eq!(
        left,
        names.len(),
        "clean deleted files of root's through a symlink"
    );
    assert!(victim.path().join("pid").exists());
}

/// Run by the second user: argv 1 the uml_dir, 2 root's directory, 3 how many files.
const SWAPPER: &str = r#"
import ctypes, os, shutil, sys, time
libc = ctypes.CDLL(None, use_errno=True)
d, victim, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.chdir(d)
end = time.time() + 12
swaps = 0
def sweep():
    for junk in ("g", ".g.new", ".g.link"):
        if os.path.islink(junk) or os.path.isfile(junk):
            os.unlink(junk)
        elif os.path.isdir(junk):
            shutil.rmtree(junk, ignore_errors=True)
while time.time() < end:
    try:
        sweep()
        # Made under a dot name, which discovery skips, then moved into place.
        os.mkdir(".g.new")
        with open(".g.new/pid", "w") as f:
            f.write("999999999\n")
        for i in range(n):
            open(".g.new/f%d" % i, "w").close()
        os.rename(".g.new", "g")
        started = time.time()
        while time.time() - started < 2:
            if len(os.listdir("g")) < n + 1:
                break
        # One atomic step: renameat2(RENAME_EXCHANGE) swaps the directory and a symlink.
        os.symlink(victim, ".g.link")
        if libc.renameat2(-100, b".g.link", -100, b"g", 2) == 0:
            swaps += 1
        time.sleep(0.05)
    except OSError:
        pass
sweep()
print(swaps)
"#;

/// The uid and gid of `umlkit-test2`, a local user made here if missing.
fn second_user() -> (u32, u32) {
    testkit::second_user("umlkit-test2")
}

#[test]
fn a_fifo_named_pid_hangs_neither_list_nor_clean_nor_the_watcher() {
    // Not a testkit::UmlDir: it reads the pid files itself when dropped.
    let dir = short_tempdir("umlkit-p");
    let d = dir.path();
    fs::create_dir(d.join("trap")).unwrap();
    nix::unistd::mkfifo(
        &d.join("trap/pid"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let limit = Duration::from_secs(30);
    let out = uml_within(d, &["list", "--json"], limit);
    assert!(out.status.success(), "{}", show_output("list", &out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row(&rows, "trap").unwrap()["state"], "stale");
    let out = uml_within(d, &["clean"], limit);
    assert!(out.status.success(), "{}", show_output("clean", &out));
    // A FIFO is no file the kernel makes: the directory stays.
    assert!(d.join("trap/pid").exists());
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept"));
    // The watcher (umld's discovery) reports it too, instead of blocking in open(2).
    let (_watcher, events) = uml::instance::Watcher::start(d, Duration::from_secs(30)).unwrap();
    match events.recv_timeout(limit) {
        Ok(uml::instance::InstanceEvent::Changed(i)) => assert_eq!(i.umid, "trap"),
        other => panic!("the watcher reported {other:?}"),
    }
}

#[test]
fn a_stopped_guest_with_a_full_queue_hangs_neither_list_nor_shutdown() {
    let guest = GuestBuilder::new("stop").boot().unwrap();
    let d = guest.uml_dir();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(guest.pid() as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    // Requests nobody reads, until the host refuses more.
    let filler = UnixDatagram::unbound().unwrap();
    filler.set_nonblocking(true).unwrap();
    let request = Request::new(b"version").unwrap().encode();
    let mut queued = 0;
    while filler.send_to(&request, guest.mconsole_path()).is_ok() && queued < 1000 {
        queued += 1;
    }
    assert!(queued < 1000, "the guest's socket queue never filled");

    let out = uml_within(d, &["list", "--json"], Duration::from_secs(60));
    assert!(out.status.success(), "{}", show_output("list", &out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let state = &row(&rows, guest.umid()).unwrap()["state"];
    assert!(state == "not-responding" || state == "paused", "{rows}");

    let out = uml_within(
        d,
        &["shutdown", guest.umid(), "--timeout", "2"],
        Duration::from_secs(90),
    );
    let what = show_output("shutdown", &out);
    // It ends, and the kernel is gone: powered off by SIGTERM (exit 0) or, when even that
    // takes longer than the timeout on a loaded host, killed, which it says (exit 1).
    let killed = String::from_utf8_lossy(&out.stderr).contains("had to be killed");
    assert!(
        out.status.success() || (out.status.code() == Some(1) && killed),
        "{what}"
    );
    assert!(!running(guest.pid()), "the kernel still runs: {what}");
}

#[test]
fn a_stale_directory_naming_a_live_guest_never_gets_it_signalled() {
    // Something on the host holds an abstract socket whose name is not UTF-8 (a running
    // `uml switch` does), so /proc/net/unix is not UTF-8 either.
    let _abstract = {
        use std::os::linux::net::SocketAddrExt;
        let addr = SocketAddr::from_abstract_name(b"umlkit-test-\xff\xfe").unwrap();
        UnixDatagram::bind_addr(&addr).unwrap()
    };
    let guest = GuestBuilder::new("victim").boot().unwrap();
    let (other, ghost) = ghost_of(&guest, "umlkit-o");
    dead_socket(&ghost.join("mconsole"));

    let rows = list_json(other.path());
    assert_eq!(row(&rows, "ghost").unwrap()["state"], "stale", "{rows}");
    let out = uml(other.path(), &["shutdown", "ghost", "--timeout", "2"]);
    assert!(!out.status.success(), "{}", show_output("shutdown", &out));
    thread::sleep(Duration::from_millis(500));
    assert!(running(guest.pid()), "{}", show_output("shutdown", &out));
    let out = uml(guest.uml_dir(), &["version", guest.umid()]);
    assert!(out.status.success(), "{}", show_output("version", &out));
}

#[test]
fn a_symlinked_mconsole_socket_reaches_no_other_guest() {
    let guest = GuestBuilder::new("target").boot().unwrap();
    let (other, ghost) = ghost_of(&guest, "umlkit-l");
    std::os::unix::fs::symlink(guest.mconsole_path(), ghost.join("mconsole")).unwrap();

    for args in [["halt", "ghost"], ["version", "ghost"]] {
        let out = uml(other.path(), &args);
        assert!(!out.status.success(), "{}", show_output("halt", &out));
    }
    let out = uml(other.path(), &["shutdown", "ghost", "--timeout", "2"]);
    assert!(!out.status.success(), "{}", show_output("shutdown", &out));
    thread::sleep(Duration::from_millis(500));
    assert!(running(guest.pid()), "another guest was reached");
}

#[test]
fn a_live_socket_of_another_process_is_not_taken_for_the_guest_it_names() {
    // The directory names a running guest's pid, and its mconsole is a socket that is bound
    // and served, but by this test, not by that kernel: nothing may be sent to it as if it
    // were the guest's, and the guest must not be signalled.
    let guest = GuestBuilder::new("named").boot().unwrap();
    let (other, ghost) = ghost_of(&guest, "umlkit-i");
    let impostor = UnixDatagram::bind(ghost.join("mconsole")).unwrap();
    impostor.set_nonblocking(true).unwrap();

    for args in [["version", "ghost"], ["halt", "ghost"]] {
        let out = uml(other.path(), &args);
        assert!(!out.status.success(), "{}", show_output("uml", &out));
    }
    let mut buf = [0u8; 1024];
    assert!(
        impostor.recv(&mut buf).is_err(),
        "a request was sent to a socket the guest does not hold"
    );
    let rows = list_json(other.path());
    assert_ne!(row(&rows, "ghost").unwrap()["state"], "running", "{rows}");
    assert!(running(guest.pid()));
    let out = uml(guest.uml_dir(), &["version", guest.umid()]);
    assert!(out.status.success(), "{}", show_output("version", &out));
}

#[test]
fn a_process_with_a_con_argument_is_no_guest() {
    let dir = short_tempdir("umlkit-c");
    let sleeper = Reaped(
        Command::new("sh")
            .args(["-c", "sleep 60", "con0=fd:0,fd:1"])
            .spawn()
            .unwrap(),
    );
    fs::create_dir(dir.path().join("fake")).unwrap();
    fs::write(dir.path().join("fake/pid"), format!("{}\n", sleeper.0.id())).unwrap();
    let rows = list_json(dir.path());
    assert_eq!(row(&rows, "fake").unwrap()["state"], "stale", "{rows}");
    let out = uml(dir.path(), &["shutdown", "fake", "--timeout", "2"]);
    assert!(!out.status.success(), "{}", show_output("shutdown", &out));
    assert!(running(sleeper.0.id()));
}

/// The kernel's default ctrl-alt-del (the test guest's shell init does not take it over)
/// restarts the kernel in the same process, as systemd's reboot does: shutdown tells so, and
/// stops it at the restart instead of halting it after the grace.
#[test]
fn shutdown_recognises_a_reboot_and_stops_the_kernel_at_the_restart() {
    let mut guest = GuestBuilder::new("reboot").boot().unwrap();
    guest
        .wait_for_log("READY", Duration::from_secs(30))
        .unwrap();
    let out = uml_within(
        guest.uml_dir(),
        &["shutdown", guest.umid(), "--timeout", "60"],
        Duration::from_secs(120),
    );
    let what = show_output("shutdown", &out);
    assert!(out.status.success(), "{what}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rebooted instead of powering off; stopped at the restart"),
        "{what}"
    );
    guest.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(!guest.instance_dir().exists(), "{what}");
}

// ---- a fake mconsole peer: numbers and text a real kernel does not send ----

/// Serves `version`, `proc meminfo`, `proc uptime` and anything else with hostile replies,
/// from this test process, which writes its own pid as the instance's: discovery proves it
/// holds the socket, as it does for a kernel.
struct FakeGuest {
    dir: tempfile::TempDir,
    _server: thread::JoinHandle<()>,
}

const ESCAPES: &str = "\x1b]0;owned\x07\x1b[2J\x1b[31m\r\x08\u{9b}";

impl FakeGuest {
    fn start() -> FakeGuest {
        let dir = short_tempdir("umlkit-f");
        let inst = dir.path().join("evil");
        fs::create_dir(&inst).unwrap();
        let socket = UnixDatagram::bind(inst.join("mconsole")).unwrap();
        fs::write(inst.join("pid"), format!("{}\n", std::process::id())).unwrap();
        let server = thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                let Ok(request) = Request::parse(&buf[..n]) else {
                    continue;
                };
                let text = match request.command() {
                    b"version" => format!("Linux evil 7.2{ESCAPES} #1 x86_64"),
                    b"proc meminfo" => "\nMemTotal: 18446744073709551615 kB\n".into(),
                    b"proc uptime" => "\n1.00 1.00\n".into(),
                    _ => format!("guest text{ESCAPES}\n"),
                };
                let chunk = ReplyChunk {
                    err: 0,
                    more: false,
                    data: text.into_bytes(),
                }
                .encode()
                .unwrap();
                // To wherever the request came from: a file or an abstract address.
                let _ = socket.send_to_addr(&chunk, &from);
            }
        });
        FakeGuest {
            dir,
            _server: server,
        }
    }
}

#[test]
fn guest_numbers_do_not_overflow_uml_list() {
    let fake = FakeGuest::start();
    let rows = list_json(fake.dir.path());
    let evil = row(&rows, "evil").unwrap_or_else(|| panic!("no row for the guest: {rows}"));
    assert_eq!(evil["memory_bytes"], u64::MAX, "{rows}");
}

#[test]
fn guest_text_reaches_the_terminal_without_control_characters() {
    let fake = FakeGuest::start();
    let d = fake.dir.path();
    for args in [
        &["version", "evil"][..],
        &["proc", "evil", "cpuinfo"],
        &["mconsole", "evil", "help"],
        &["list"],
    ] {
        let out = uml(d, args);
        assert!(out.status.success(), "{}", show_output("uml", &out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "uml {args:?} printed control characters: {text:?}"
        );
    }
    // The text is still there, made visible.
    let out = uml(d, &["version", "evil"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Linux evil 7.2") && text.contains("owned"),
        "{text:?}"
    );
}

/// The predictable runtime directory (`/tmp/umlkit-<uid>`, where a notify socket path under
/// the uml_dir would be too long) made first by another user, or planted as a symlink, is
/// refused with its name; files go in only new, through no symlink.
#[test]
fn a_runtime_directory_another_user_made_first_is_refused() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test acts as a second local user and needs root"
    );
    let user = second_user();
    let base = short_tempdir("umlkit-r");
    fs::set_permissions(base.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let as_user = |script: &str| {
        let status = testkit::as_user(user.0, user.1, "sh")
            .args(["-c", script])
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
    };
    let planted = base.path().join("umlkit-a");
    let link = base.path().join("umlkit-b");
    as_user(&format!(
        "mkdir -m 777 {} && ln -s /etc {}",
        planted.display(),
        link.display()
    ));
    for (dir, why) in [(&planted, "belongs to uid"), (&link, "not a directory")] {
        let err = uml::instance::private_dir(dir).unwrap_err().to_string();
        assert!(
            err.contains(&dir.display().to_string()) && err.contains(why),
            "{err}"
        );
        let err = uml::instance::create_file(dir, "g.init", b"x", 0o755).unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
    }
    assert!(fs::read_dir(&planted).unwrap().next().is_none());

    // Ours: made 0700; a file is written new, past a symlink left at its name.
    let ours = base.path().join("umlkit-c");
    uml::instance::private_dir(&ours).unwrap();
    let mode = fs::metadata(&ours).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    let victim = base.path().join("victim");
    fs::write(&victim, "root's").unwrap();
    std::os::unix::fs::symlink(&victim, ours.join("g.init")).unwrap();
    let path = uml::instance::create_file(&ours, "g.init", b"#!/bin/sh\n", 0o755).unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "root's");
    assert_eq!(fs::read_to_string(&path).unwrap(), "#!/bin/sh\n");
    let meta = fs::symlink_metadata(&path).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    // Others may read but not write: narrowed to 0700. Writable by others: refused.
    fs::set_permissions(&ours, fs::Permissions::from_mode(0o755)).unwrap();
    uml::instance::private_dir(&ours).unwrap();
    assert_eq!(
        fs::metadata(&ours).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    fs::set_permissions(&ours, fs::Permissions::from_mode(0o777)).unwrap();
    let err = uml::instance::private_dir(&ours).unwrap_err().to_string();
    assert!(err.contains("lets other users write"), "{err}");
}

#[test]
fn uml_run_writes_nothing_through_a_runtime_directory_another_user_planted() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test acts as a second local user and needs root"
    );
    let user = second_user();
    let dir = short_tempdir("umlkit-rt");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    // Another user made the runtime directory first, as a symlink to a directory of root's.
    let target = short_tempdir("umlkit-rt-target");
    let victim_dir = target.path().to_owned();
    let status = testkit::as_user(user.0, user.1, "ln")
        .arg("-s")
        .arg(&victim_dir)
        .arg(dir.path().join(".umlkit"))
        .status()
        .unwrap();
    assert!(status.success());
    let out = uml(dir.path(), &["run", "--umid", "rt1", "--", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", show_output("uml run", &out));
    assert!(
        err.contains(".umlkit") && err.contains("not a directory"),
        "{err}"
    );
    assert_eq!(
        fs::read_dir(&victim_dir).unwrap().count(),
        0,
        "nothing was written through the planted symlink"
    );
    assert!(!dir.path().join("rt1").exists(), "no instance was started");
}

/// Kills a process group when dropped, so that a failing test leaves no guest behind.
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        testkit::kill_group(self.0);
    }
}

#[test]
fn root_asks_a_guest_that_another_user_runs() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test acts as a second local user and needs root"
    );
    let (uid, gid) = second_user();
    let scratch = short_tempdir("umlkit-ou");
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let uml_dir = scratch.path().join("uml");
    fs::create_dir(&uml_dir).unwrap();
    nix::unistd::chown(&uml_dir, Some(uid.into()), Some(gid.into())).unwrap();
    let kernel = testkit::kernel_runnable_by(uid, gid, scratch.path());
    let init = scratch.path().join("init");
    fs::write(
        &init,
        "#!/bin/sh\nmount -t proc proc /proc\nwhile :; do sleep 1; done\n",
    )
    .unwrap();
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755)).unwrap();
    let mut argv = testkit::guest_argv("64M", &init);
    argv.push("umid=theirs".into());
    argv.push(format!("uml_dir={}", uml_dir.display()));
    let child = {
        use std::os::unix::process::CommandExt;
        testkit::as_user(uid, gid, &kernel)
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let _guard = GroupGuard(child.id());
    let socket = uml_dir.join("theirs/mconsole");
    for _ in 0..300 {
        if socket.exists() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(socket.exists(), "the user's guest never bound its socket");
    // The guest's kernel runs as the user and sends its replies as the user: root's client
    // socket must be one that user can send to.
    let dir = uml_dir.to_str().unwrap();
    let out = uml_within(&uml_dir, &["version", "theirs"], Duration::from_secs(20));
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains(testkit::kernel_release()),
        "{}",
        show_output(&format!("uml --uml-dir {dir} version theirs"), &out)
    );
    let rows = list_json(&uml_dir);
    let row = row(&rows, "theirs").expect("the user's guest is listed");
    assert_eq!(row["state"], "running", "{row}");
    assert_eq!(row["kernel"], testkit::kernel_release(), "answered: {row}");
}
