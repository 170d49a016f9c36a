//! The Debian package as a user gets it: built with the README's command (`scripts/build-deb`),
//! checked by lintian, installed with `dpkg -i`, used through the installed files only (D-Bus
//! activation of umld, `mount -t fuse.umlfs`, completion in an interactive bash, zsh and fish,
//! the man pages, the systemd user unit) and purged without a trace.
//!
//! The install test changes the system (root only, as CI runs it). It refuses to run where
//! umlkit is already installed rather than remove somebody's installation, and its guards purge
//! the package, unmount and kill what it started even when an assertion fails.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;
use testkit::{GuestBuilder, SessionBus};

/// Commands with a completion script: the three binaries and the names the UML kernel goes by.
const COMPLETED: [&str; 6] = ["uml", "umlfs", "umld", "linux", "linux.uml", "vmlinux"];

fn is_installed() -> bool {
    let out = run_within(
        Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", PACKAGE])
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok installed")
}

/// `dpkg --purge umlkit` on drop.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let out = run_within(
            Command::new("dpkg")
                .args(["--purge", PACKAGE])
                .stdin(Stdio::null()),
            Duration::from_secs(120),
        );
        if !out.status.success() {
            eprintln!("dpkg --purge {PACKAGE}: {}", show(&out));
        }
    }
}

#[test]
fn lintian_finds_no_error_and_no_unexplained_warning() {
    let deb = deb();
    // Tags that are expected carry a reason in packaging/debian/lintian-overrides, which the
    // package installs; lintian then reports them as overridden, not as warnings.
    let out = run_within(
        Command::new("lintian")
            .args(["--pedantic", "--display-info", "--fail-on", "error,warning"])
            .arg(deb)
            .stdin(Stdio::null()),
        Duration::from_secs(600),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(
        bad.is_empty() && out.status.success(),
        "lintian: {}",
        show(&out)
    );
    // Every override is still needed: a stale one would hide nothing and explain nothing.
    let out = run_within(
        Command::new("lintian")
            .args(["--pedantic", "--display-info", "--show-overrides"])
            .arg(deb)
            .stdin(Stdio::null()),
        Duration::from_secs(600),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("unused-override"),
        "an override in packaging/debian/lintian-overrides is no longer needed:\n{text}"
    );
}

#[test]
fn package_metadata_names_what_umlkit_needs() {
    let control = ok(Command::new("dpkg-deb").arg("-f").arg(deb()));
    let field = |name: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{control}"))
            .to_owned()
    };
    assert_eq!(field("Package"), PACKAGE);
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    let depends = field("Depends");
    assert!(depends.contains("fuse3"), "{depends}");
    assert!(depends.contains("libc6"), "{depends}");
    let recommends = field("Recommends");
    assert!(
        recommends.contains("user-mode-linux") && recommends.contains("uml-utilities"),
        "{recommends}"
    );
    // The binaries are stripped; their debug information is in the dbgsym package beside it.
    // The guest init is where `uml` and umld look for it from /usr/bin.
    for path in [
        "/usr/bin/uml",
        "/usr/bin/umlfs",
        "/usr/bin/umld",
        "/usr/libexec/umlkit/uml-init",
    ] {
        let member = deb_members(deb())
            .into_iter()
            .find(|m| m.path == path)
            .unwrap_or_else(|| panic!("no {path} in the package"));
        assert_eq!(member.mode, 0o755, "{member:?}");
    }
    let ddeb = deb().with_file_name(format!(
        "{PACKAGE}-dbgsym_{}-1_amd64.ddeb",
        env!("CARGO_PKG_VERSION")
    ));
    let debug = ok(Command::new("dpkg-deb").arg("-c").arg(&ddeb));
    assert_eq!(
        debug.lines().filter(|l| l.ends_with(".debug")).count(),
        4,
        "{debug}"
    );
}

#[test]
fn deb_installs_works_from_the_installed_files_and_purges_without_a_trace() {
    let deb = deb();
    assert!(
        !is_installed(),
        "{PACKAGE} is installed on this machine; this test installs and purges it. \
         Remove it first: dpkg --purge {PACKAGE}"
    );
    let members = deb_members(deb);
    let files = deb_files(deb);
    for f in &files {
        assert!(
            !Path::new(f).exists(),
            "{f} exists before the package is installed: the check that purging leaves \
             nothing behind would mean nothing"
        );
    }
    let dirs_before: BTreeSet<String> = members
        .iter()
        .filter(|m| m.kind == 'd' && Path::new(&m.path).exists())
        .map(|m| m.path.clone())
        .collect();

    let installed = Installed;
    ok(Command::new("dpkg").arg("-i").arg(deb));
    assert!(is_installed());

    every_file_is_where_it_belongs(&members);
    man_pages_are_found_by_man();
    systemd_accepts_the_user_unit();
    completion_is_picked_up_by_the_shells();
    umld_starts_by_dbus_activation_and_mount_works_with_installed_binaries();
    installed_uml_runs_its_guests_with_the_installed_init();

    drop(installed);
    assert!(!is_installed(), "{PACKAGE} is still installed after purge");
    let left: Vec<&String> = files.iter().filter(|f| Path::new(f).exists()).collect();
    assert!(left.is_empty(), "left behind after purge: {left:?}");
    let dirs_left: Vec<&String> = members
        .iter()
        .filter(|m| m.kind == 'd' && !dirs_before.contains(&m.path) && Path::new(&m.path).exists())
        .map(|m| &m.path)
        .collect();
    assert!(
        dirs_left.is_empty(),
        "directories the package created are left after purge: {dirs_left:?}"
    );
}

fn every_file_is_where_it_belongs(members: &[Member]) {
    // What the package holds is on disk, with its mode.
    let listed = ok(Command::new("dpkg").args(["-L", PACKAGE]));
    for m in members.iter().filter(|m| m.path != "/") {
        let meta = fs::symlink_metadata(&m.path)
            .unwrap_or_else(|e| panic!("{} is in the package but not installed: {e}", m.path));
        if m.kind == '-' {
            assert!(meta.is_file(), "{} is not a regular file", m.path);
            assert_eq!(meta.permissions().mode() & 0o7777, m.mode, "{}", m.path);
        }
        assert!(
            listed.lines().any(|l| l == m.path),
            "dpkg -L does not list {}",
            m.path
        );
    }

    // dpkg has every file's checksum (the md5sums that scripts/build-deb adds) and finds the
    // installation unchanged.
    let sums = fs::read_to_string(format!("/var/lib/dpkg/info/{PACKAGE}.md5sums"))
        .expect("dpkg keeps the package's md5sums");
    for m in members.iter().filter(|m| m.kind == '-') {
        assert!(
            sums.lines()
                .any(|l| l.ends_with(&format!("  {}", &m.path[1..]))),
            "no checksum for {} in the package's md5sums",
            m.path
        );
    }
    let verify = ok(Command::new("dpkg").args(["--verify", PACKAGE]));
    assert!(
        verify.trim().is_empty(),
        "dpkg --verify {PACKAGE}: {verify}"
    );

    // And it is the layout users and tools look for.
    let must = |path: &str| {
        assert!(Path::new(path).is_file(), "{path} is not installed");
    };
    for bin in ["uml", "umlfs", "umld"] {
        let path = format!("/usr/bin/{bin}");
        must(&path);
        let version = ok(Command::new(&path).arg("--version"));
        assert!(
            version.contains(env!("CARGO_PKG_VERSION")),
            "{path} --version: {version}"
        );
    }
    for page in fs::read_dir(repo().join("man")).expect("man/") {
        let name = page.expect("a man page").file_name();
        let name = name.to_string_lossy();
        let section = name.rsplit('.').next().expect("a section suffix");
        must(&format!("/usr/share/man/man{section}/{name}.gz"));
    }
    for cmd in COMPLETED {
        must(&format!("/usr/share/bash-completion/completions/{cmd}"));
        must(&format!("/usr/share/fish/vendor_completions.d/{cmd}.fish"));
    }
    // zsh: one file per function; its #compdef line names the commands it completes.
    let mut zsh_named = BTreeSet::new();
    for entry in fs::read_dir("/usr/share/zsh/vendor-completions").expect("zsh vendor dir") {
        let path = entry.expect("an entry").path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("_uml"))
            && path.file_name().is_none_or(|n| n != "_linux")
        {
            continue;
        }
        let text = fs::read_to_string(&path).expect("a zsh completion");
        let first = text.lines().next().unwrap_or_default();
        let names = first
            .strip_prefix("#compdef ")
            .unwrap_or_else(|| panic!("{} starts with {first:?}", path.display()));
        zsh_named.extend(names.split_whitespace().map(str::to_owned));
    }
    for cmd in COMPLETED {
        assert!(
            zsh_named.contains(cmd),
            "no zsh completion for {cmd}: {zsh_named:?}"
        );
    }
    must("/usr/lib/systemd/user/umld.service");
    must("/usr/share/dbus-1/services/org.umlkit.uml1.service");
    must("/usr/share/dbus-1/interfaces/org.umlkit.uml1.Manager.xml");
    must("/usr/share/dbus-1/interfaces/org.umlkit.uml1.Machine.xml");
    must("/usr/share/doc/umlkit/examples/umld-gjs.js");
    must("/usr/share/doc/umlkit/examples/umld-gio.py");
    must("/usr/share/dbus-1/system.d/org.umlkit.uml1.conf");
    must("/usr/share/polkit-1/actions/org.umlkit.uml1.policy");
    must("/usr/share/doc/umlkit/README.md");
    must("/usr/share/doc/umlkit/changelog.Debian.gz");
    assert_eq!(
        fs::read_to_string("/usr/share/doc/umlkit/copyright").expect("the copyright file"),
        fs::read_to_string(repo().join("packaging/debian/copyright")).expect("its source"),
    );
    let changelog = ok(Command::new("zcat").arg("/usr/share/doc/umlkit/changelog.Debian.gz"));
    assert!(
        changelog.starts_with(&format!("umlkit ({}-1) ", env!("CARGO_PKG_VERSION"))),
        "{changelog}"
    );
}

fn man_pages_are_found_by_man() {
    for (section, page) in [
        ("1", "uml"),
        ("1", "uml-run"),
        ("1", "umlfs"),
        ("5", "org.umlkit.uml1"),
        ("7", "uml-kernel-options"),
        ("8", "umld"),
    ] {
        let found = ok(Command::new("man").args(["-w", section, page]));
        assert_eq!(
            found.trim(),
            format!("/usr/share/man/man{section}/{page}.{section}.gz"),
            "man -w {section} {page}"
        );
    }
    let text = ok(Command::new("man")
        .args(["-P", "cat", "7", "uml-kernel-options"])
        .env("MANWIDTH", "80"));
    assert!(text.contains("ubd"), "{text}");
}

fn systemd_accepts_the_user_unit() {
    // verify checks the unit's syntax, that ExecStart is executable and that the man page of
    // Documentation= exists; it needs a runtime directory for the user manager it simulates.
    let runtime = testkit::short_tempdir("pkg-xdg");
    fs::set_permissions(runtime.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
    ok(Command::new("systemd-analyze")
        .args(["verify", "--user", "/usr/lib/systemd/user/umld.service"])
        .env("XDG_RUNTIME_DIR", runtime.path()));
}

fn completion_is_picked_up_by_the_shells() {
    let home = testkit::short_tempdir("pkg-home");
    let env = |cmd: &mut Command| {
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", home.path())
            .env("TERM", "dumb")
            .current_dir(home.path());
    };
    // bash: an interactive login shell on a terminal (script(1) gives it one) loads
    // bash-completion, which loads the installed `uml` script on the first TAB. "uml ver"
    // completes to the one subcommand it starts; Ctrl-A and `echo DONE:` then print the line
    // the completion left.
    let mut cmd = Command::new("script");
    cmd.args(["-qec", "bash -il", "/dev/null"]);
    env(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1)");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let typist = std::thread::spawn(move || {
        use std::io::Write;
        for keys in ["uml ver\t", "\x01echo DONE:\n", "exit\n"] {
            std::thread::sleep(Duration::from_millis(700));
            if stdin.write_all(keys.as_bytes()).is_err() {
                break;
            }
        }
    });
    let pid = child.id() as i32;
    let _kill = KillOnDrop(pid);
    wait_for(
        "the interactive bash exits",
        Duration::from_secs(30),
        || child.try_wait().expect("wait").map(|_| ()),
    );
    typist.join().expect("the typist thread");
    let mut text = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut text)
        .expect("read the terminal");
    assert!(
        text.lines().any(|l| l.trim_end() == "DONE:uml version"),
        "bash did not complete `uml ver` to `uml version`:\n{text}"
    );

    // zsh: compinit finds the installed functions on zsh's default fpath.
    let mut cmd = Command::new("zsh");
    cmd.args([
        "-fc",
        "autoload -U compinit && compinit -u && print -r -- $_comps[uml] $_comps[umlfs] $_comps[umld] $_comps[linux] $_comps[linux.uml] $_comps[vmlinux]",
    ]);
    env(&mut cmd);
    let zsh = ok(&mut cmd);
    assert_eq!(
        zsh.trim(),
        "_uml _umlfs _umld _linux _linux _linux",
        "{zsh}"
    );

    // fish: the vendor directory is on its default completion path.
    let mut cmd = Command::new("fish");
    cmd.args(["-c", "complete -C 'uml ver'"]);
    env(&mut cmd);
    let fish = ok(&mut cmd);
    assert!(
        fish.lines()
            .any(|l| l.split('\t').next() == Some("version")),
        "fish offers no `version`: {fish}"
    );
}

/// A mount point that is unmounted on drop (lazily, if a plain umount fails), unless
/// [`Mounted::unmount`] already did it.
struct Mounted(Option<PathBuf>);

impl Mounted {
    /// `umount DIR`, as a user would; panics if it fails.
    fn unmount(mut self) {
        if let Some(dir) = self.0.take() {
            ok(Command::new("umount").arg(&dir));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let st = Command::new("umount")
                .arg(&dir)
                .stderr(Stdio::null())
                .status();
            if !st.is_ok_and(|s| s.success()) {
                let _ = Command::new("umount").arg("-l").arg(&dir).status();
            }
        }
    }
}

fn mountinfo_line(dir: &Path) -> Option<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let d = dir.to_string_lossy().into_owned();
    text.lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some(d.as_str()))
        .map(str::to_owned)
}

/// `uml run` from /usr/bin starts its guests with the init the package puts in
/// /usr/libexec/umlkit, which it finds from its own directory.
fn installed_uml_runs_its_guests_with_the_installed_init() {
    let dir = testkit::short_tempdir("pkg-run");
    let out = ok(Command::new("/usr/bin/uml")
        .arg("--uml-dir")
        .arg(dir.path())
        .arg("run")
        .arg("--kernel")
        .arg(testkit::kernel())
        .args(["--", "readlink", "/proc/1/exe"]));
    assert_eq!(out.trim(), "/usr/libexec/umlkit/uml-init");
}

fn umld_starts_by_dbus_activation_and_mount_works_with_installed_binaries() {
    // A user's home with its ~/.uml, and a guest in it with an ext4 disk mounted inside.
    let home = testkit::short_tempdir("pkg-u");
    let uml_dir = home.path().join(".uml");
    fs::create_dir(&uml_dir).expect("mkdir ~/.uml");
    let runtime = home.path().join("run");
    fs::create_dir(&runtime).expect("mkdir runtime dir");
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).expect("chmod");
    let disk_dir = testkit::guest_visible_tempdir("pkg-disk");
    let src = disk_dir.path().join("src");
    fs::create_dir(&src).expect("mkdir src");
    fs::write(src.join("hello.txt"), b"from the package test\n").expect("write hello.txt");
    let img = disk_dir.path().join("disk.img");
    ok(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("16M"));
    let guest = GuestBuilder::new("pkg")
        .uml_dir(&uml_dir)
        .arg(format!("ubd1={}", img.display()))
        .body(
            "mkdir -p /tmp/d; mknod /tmp/ubdb b 98 16
mount /tmp/ubdb /tmp/d && echo MOUNTED || echo MOUNT-FAILED
while :; do sleep 1; done",
        )
        .boot()
        .expect("boot a guest");
    guest
        .wait_for_log("MOUNTED", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", guest.log_tail(30)));

    // D-Bus: a session bus whose only service directory is the system's, as on a desktop.
    // The first call to org.umlkit.uml1 starts /usr/bin/umld from the installed service file;
    // umld finds the guest in the user's ~/.uml.
    let bus = SessionBus::builder()
        .servicedir(Path::new("/usr/share/dbus-1/services"))
        .env(&[
            ("PATH", Path::new("/usr/sbin:/usr/bin:/sbin:/bin")),
            ("HOME", home.path()),
            ("XDG_RUNTIME_DIR", &runtime),
        ])
        .start();
    let address = &bus.address;
    let busctl = |args: &[&str]| {
        ok(Command::new("busctl")
            .arg(format!("--address={address}"))
            .args(args))
    };
    let list = busctl(&[
        "call",
        "org.umlkit.uml1",
        "/org/umlkit/uml1",
        "org.umlkit.uml1.Manager",
        "ListMachines",
    ]);
    let umld_pid = bus
        .owner_pid("org.umlkit.uml1")
        .expect("umld owns its name");
    let _umld = KillOnDrop(umld_pid);
    assert_eq!(
        fs::read_link(format!("/proc/{umld_pid}/exe")).expect("umld's executable"),
        Path::new("/usr/bin/umld")
    );
    assert!(list.contains(guest.umid()), "ListMachines: {list}");
    let uml_dir_prop = busctl(&[
        "get-property",
        "org.umlkit.uml1",
        "/org/umlkit/uml1",
        "org.umlkit.uml1.Manager",
        "UmlDir",
    ]);
    assert_eq!(uml_dir_prop.trim(), format!("s \"{}\"", uml_dir.display()));
    let path = busctl(&[
        "call",
        "org.umlkit.uml1",
        "/org/umlkit/uml1",
        "org.umlkit.uml1.Manager",
        "GetMachine",
        "s",
        guest.umid(),
    ]);
    let path = path
        .trim()
        .trim_start_matches("o ")
        .trim_matches('"')
        .to_owned();
    let version = wait_for("the guest's KernelVersion", Duration::from_secs(30), || {
        let v = busctl(&[
            "get-property",
            "org.umlkit.uml1",
            &path,
            "org.umlkit.uml1.Machine",
            "KernelVersion",
        ]);
        (v.trim() != "s \"\"").then_some(v)
    });
    assert_eq!(
        version.trim(),
        format!("s \"{}\"", testkit::kernel_release()),
        "KernelVersion is the release of the kernel the guest runs"
    );

    // umlfs: mount(8) runs mount.fuse3 (fuse3 is a dependency), which finds umlfs on its
    // default PATH; mount passes no environment, so the guest's uml_dir is an option.
    for dir in ["/usr/local/bin", "/usr/local/sbin"] {
        assert!(
            !Path::new(dir).join("umlfs").exists(),
            "{dir}/umlfs would be found before the installed /usr/bin/umlfs"
        );
    }
    let mnt_dir = testkit::short_tempdir("pkg-mnt");
    let mp = mnt_dir.path().join("guest");
    fs::create_dir(&mp).expect("mkdir the mount point");
    ok(Command::new("mount")
        .args(["-t", "fuse.umlfs"])
        .arg(format!("{}:/", guest.umid()))
        .arg(&mp)
        .args(["-o", &format!("uml_dir={}", uml_dir.display())]));
    let mounted = Mounted(Some(mp.clone()));
    let line = mountinfo_line(&mp).expect("the guest is mounted");
    assert!(line.contains(" - fuse.umlfs "), "{line}");
    let opts = line.split(' ').nth(5).unwrap_or_default();
    assert!(opts.split(',').any(|o| o == "ro"), "{line}");
    let daemons: Vec<i32> = pids_of_exe(Path::new("/usr/bin/umlfs"))
        .into_iter()
        .filter(|p| cmdline(*p).contains(&*mp.to_string_lossy()))
        .collect();
    assert_eq!(
        daemons.len(),
        1,
        "the installed /usr/bin/umlfs serves {}",
        mp.display()
    );
    assert_eq!(
        fs::read(mp.join("tmp/d/hello.txt")).expect("read the guest's file"),
        b"from the package test\n"
    );
    mounted.unmount();
    wait_for("umlfs exits after umount", Duration::from_secs(10), || {
        (!daemons
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists()))
        .then_some(())
    });
}
