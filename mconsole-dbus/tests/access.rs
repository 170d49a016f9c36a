//! Who may use umld: a caller must not be able to do through it anything it could not do
//! itself. Real parts throughout: a dbus-daemon that lets a second local user (created here,
//! removed by a guard) connect, the D-Bus policy file the packages ship, the real polkitd with
//! the shipped actions, and a real guest of root's.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use testkit::{GuestBuilder, UmlDir, try_run};

const NAME: &str = "org.umlkit.uml1";
const MANAGER: &str = "/org/umlkit/uml1";
const WAIT: Duration = Duration::from_secs(30);
const POLKITD: &str = "/usr/lib/polkit-1/polkitd";

/// The tests that put polkit's files in place take turns: each restores what it found.
static POLKIT_FILES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn polkit_turn() -> std::sync::MutexGuard<'static, ()> {
    POLKIT_FILES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A local user made for one test; removed (with every process it still runs) on drop.
struct User {
    name: String,
    uid: u32,
    gid: u32,
}

impl User {
    fn create(tag: &str) -> User {
        let name = format!("umldt{}{tag}", std::process::id());
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name)
            .output()
            .expect("cannot run useradd");
        assert!(out.status.success(), "useradd {name}: {out:?}");
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").arg(flag).arg(&name).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        User {
            uid: id("-u"),
            gid: id("-g"),
            name,
        }
    }

    /// `program args…` run as this user (its uid, gid and groups).
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg(program)
            .env("HOME", "/")
            .current_dir("/");
        c
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-U", &self.uid.to_string()])
            .status();
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// A process this test started, killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A file put in place for the test (a system directory that the real daemons read), the
/// previous content restored, or the file removed, on drop.
struct Placed {
    path: PathBuf,
    before: Option<Vec<u8>>,
}

impl Placed {
    fn new(path: &Path, content: &[u8]) -> Placed {
        // What was there is put back, unless it is this very file and no package owns it: the
        // leftover of a run that was killed before it could clean up, which must not outlive
        // this one.
        let before = std::fs::read(path).ok().filter(|b| {
            b.as_slice() != content
                || Command::new("dpkg-query")
                    .arg("-S")
                    .arg(path)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
        });
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Placed {
            path: path.to_owned(),
            before,
        }
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        match &self.before {
            Some(b) => {
                let _ = std::fs::write(&self.path, b);
            }
            None => {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A dbus-daemon every local user may connect to, killed on drop.
struct Bus {
    address: String,
    _daemon: Daemon,
    _dir: tempfile::TempDir,
}

impl Bus {
    /// A bus of type `kind` with `policy` (busconfig elements) in a directory anyone may enter.
    fn start(kind: &str, policy: &str) -> Bus {
        let dir = testkit::short_tempdir("ua-bus");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{kind}</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={}</listen>
  {policy}
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile"])
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot run dbus-daemon");
        let daemon = Daemon(child);
        let address = format!("unix:path={}", socket.display());
        let bus = Bus {
            address,
            _daemon: daemon,
            _dir: dir,
        };
        wait_until("the bus listens", || {
            bus.name_has_owner("org.freedesktop.DBus").then_some(())
        });
        bus
    }

    /// A session bus that, unlike a stock one, lets every local user connect and call.
    fn session_for_everyone() -> Bus {
        Bus::start(
            "session",
            r#"<policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>"#,
        )
    }

    /// A system bus as distributions configure it (the stock default policy), with the policy
    /// files of polkit and of umld (the one the packages ship) included.
    fn system() -> Bus {
        let ours =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/dbus/org.umlkit.uml1.conf");
        let polkit = "/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf";
        assert!(
            Path::new(polkit).exists(),
            "{polkit} is missing: install polkitd (scripts/install-deps)"
        );
        Bus::start(
            "system",
            &format!(
                r#"<policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>{polkit}</include>
  <include>{}</include>"#,
                ours.display()
            ),
        )
    }

    fn name_has_owner(&self, name: &str) -> bool {
        self.busctl(
            None,
            &[
                "call",
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "NameHasOwner",
                "s",
                name,
            ],
        )
        .is_ok_and(|o| o.trim() == "b true")
    }

    /// `busctl` as `user` (None: as the test, root).
    fn busctl(&self, user: Option<&User>, args: &[&str]) -> Result<String, String> {
        let mut c = match user {
            Some(u) => u.command("busctl"),
            None => Command::new("busctl"),
        };
        c.arg(format!("--address={}", self.address)).args(args);
        try_run(&mut c)
    }

    /// `gdbus call` on umld as `user`: stdout, or stderr (which names the D-Bus error).
    fn call(
        &self,
        user: Option<&User>,
        path: &str,
        method: &str,
        args: &[&str],
    ) -> Result<String, String> {
        let mut c = match user {
            Some(u) => u.command("gdbus"),
            None => Command::new("gdbus"),
        };
        c.args(["call", "--address", &self.address, "--dest", NAME])
            .args(["--object-path", path, "--method", method])
            .args(args);
        try_run(&mut c)
    }

    fn property(&self, path: &str, name: &str) -> String {
        self.busctl(
            None,
            &["get-property", NAME, path, "org.umlkit.uml1.Machine", name],
        )
        .unwrap()
        .trim()
        .to_owned()
    }

    /// The kernel under test, as a file every user may run: itself when it is (checked as
    /// `nobody`), else a copy in this bus's directory, which everyone may enter and which goes
    /// with the bus.
    fn kernel_for_everyone(&self) -> PathBuf {
        // nobody and nogroup.
        testkit::kernel_runnable_by(65534, 65534, self._dir.path())
    }

    /// umld serving `uml_dir` on this bus: as the system service (`--system`, the bus given as
    /// the system bus) or by address.
    fn umld(&self, uml_dir: &Path, system: bool, scratch: &Path) -> Daemon {
        let mut c = Command::new(env!("CARGO_BIN_EXE_umld"));
        if system {
            c.arg("--system")
                .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address);
        } else {
            c.arg("--address").arg(&self.address);
        }
        if system {
            // A caller's guest runs its kernel as the caller: the kernel must be one every
            // user may run (a kernel under root's home is not).
            c.env("UML_KERNEL", self.kernel_for_everyone());
        }
        let child = c
            .arg("--uml-dir")
            .arg(uml_dir)
            .arg("--notify-socket")
            .arg(scratch.join("umld.notify"))
            .env("UMLD_LOG", "umld=debug,zbus=warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start umld");
        let d = Daemon(child);
        wait_until("umld owns its name", || {
            self.name_has_owner(NAME).then_some(())
        });
        d
    }

    /// The real polkitd on this bus (it connects to the system bus, here this one).
    fn polkitd(&self) -> Daemon {
        assert!(
            Path::new(POLKITD).exists(),
            "{POLKITD} is missing: install polkitd (scripts/install-deps)"
        );
        let child = Command::new(POLKITD)
            .arg("--no-debug")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start polkitd");
        let d = Daemon(child);
        wait_until("polkitd owns its name", || {
            self.name_has_owner("org.freedesktop.PolicyKit1")
                .then_some(())
        });
        d
    }
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        sleep(Duration::from_millis(50));
    }
}

fn denied(result: Result<String, String>, naming: &str) {
    let err = result.expect_err("the call was allowed");
    assert!(
        err.contains("org.umlkit.uml1.Error.AccessDenied"),
        "not AccessDenied: {err}"
    );
    assert!(err.contains(naming), "does not name {naming}: {err}");
}

/// A root guest that `umld` (serving `bus`) adopted, and its object path.
fn adopted_guest(bus: &Bus, dir: &UmlDir) -> (testkit::Guest, String) {
    let guest = GuestBuilder::new("ua").uml_dir(dir.path()).boot().unwrap();
    let path = umld::machine_path(guest.umid());
    wait_until("umld adopted the guest", || {
        (bus.busctl(
            None,
            &[
                "get-property",
                NAME,
                &path,
                "org.umlkit.uml1.Machine",
                "State",
            ],
        )
        .ok()?
        .contains("running"))
        .then_some(())
    });
    (guest, path)
}

#[test]
fn session_umld_refuses_every_other_user_and_serves_its_own() {
    let other = User::create("s");
    let bus = Bus::session_for_everyone();
    let dir = UmlDir::new();
    let scratch = testkit::short_tempdir("ua-s");
    let _umld = bus.umld(dir.path(), false, scratch.path());
    let (mut guest, path) = adopted_guest(&bus, &dir);
    let uid = other.uid.to_string();

    denied(
        bus.call(
            Some(&other),
            &path,
            "org.umlkit.uml1.Machine.Shutdown",
            &["0"],
        ),
        &uid,
    );
    denied(
        bus.call(
            Some(&other),
            &path,
            "org.umlkit.uml1.Machine.Proc",
            &["uptime"],
        ),
        &uid,
    );
    denied(
        bus.call(
            Some(&other),
            &path,
            "org.umlkit.uml1.Machine.Config",
            &["ubd1", "/etc/shadow"],
        ),
        &uid,
    );
    denied(
        bus.call(
            Some(&other),
            MANAGER,
            "org.umlkit.uml1.Manager.Launch",
            &["{'kernel': <'/usr/bin/id'>}"],
        ),
        &uid,
    );
    assert_eq!(bus.property(&path, "State"), "s \"running\"");
    assert!(guest.is_running());
    assert!(!bus.property(&path, "Disks").contains("shadow"));

    // The service's own user is served.
    let uptime = bus
        .call(None, &path, "org.umlkit.uml1.Machine.Proc", &["uptime"])
        .unwrap();
    assert!(uptime.contains('.'), "{uptime}");
    bus.call(None, &path, "org.umlkit.uml1.Machine.Shutdown", &["1"])
        .unwrap();
    wait_until("the owner's Shutdown stopped the guest", || {
        (!guest.is_running()).then_some(())
    });
}

#[test]
fn system_umld_under_the_shipped_policy_and_real_polkit_lets_no_user_act_beyond_its_own_rights() {
    let _turn = polkit_turn();
    // `plain` has no polkit rule; `granted` is authorised for both actions by a local rule,
    // as an administrator could write.
    let plain = User::create("p");
    let granted = User::create("g");
    let _actions = Placed::new(
        Path::new("/usr/share/polkit-1/actions/org.umlkit.uml1.policy"),
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../packaging/polkit/org.umlkit.uml1.policy"),
        )
        .unwrap(),
    );
    let _rule = Placed::new(
        &PathBuf::from(format!(
            "/etc/polkit-1/rules.d/49-umld-test-{}.rules",
            std::process::id()
        )),
        format!(
            r#"polkit.addRule(function(action, subject) {{
    if (action.id.indexOf("org.umlkit.uml1.") == 0 && subject.user == "{}") {{
        return polkit.Result.YES;
    }}
}});
"#,
            granted.name
        )
        .as_bytes(),
    );
    let bus = Bus::system();

    // The shipped policy: only root may own the name.
    let err = bus
        .busctl(
            Some(&plain),
            &[
                "call",
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "RequestName",
                "su",
                NAME,
                "4",
            ],
        )
        .unwrap_err();
    assert!(err.contains("denied") || err.contains("Access"), "{err}");

    let _polkitd = bus.polkitd();
    let dir = UmlDir::new();
    let scratch = testkit::short_tempdir("ua-y");
    let _umld = bus.umld(dir.path(), true, scratch.path());
    let (mut guest, path) = adopted_guest(&bus, &dir);
    let machine = |m: &str| format!("org.umlkit.uml1.Machine.{m}");

    // Anyone may read; nobody without polkit's word may act, whatever it asks.
    let list = bus
        .call(
            Some(&plain),
            MANAGER,
            "org.umlkit.uml1.Manager.ListMachines",
            &[],
        )
        .unwrap();
    assert!(list.contains(guest.umid()), "{list}");
    // The shipped defaults: an administrator's authentication, which nobody gave here.
    denied(
        bus.call(Some(&plain), &path, &machine("Shutdown"), &["0"]),
        "org.umlkit.uml1.manage: polkit asks for authentication",
    );
    denied(
        bus.call(
            Some(&plain),
            &path,
            &machine("Config"),
            &["ubd1", "/etc/shadow"],
        ),
        "org.umlkit.uml1.manage",
    );
    denied(
        bus.call(
            Some(&plain),
            MANAGER,
            "org.umlkit.uml1.Manager.Launch",
            &["{'kernel': <'/usr/bin/id'>}"],
        ),
        "org.umlkit.uml1.launch",
    );

    // Authorised, a user still cannot have root run a program of its choice, or hand root's
    // guest a file it cannot open itself, directly or through a symlink of its own.
    denied(
        bus.call(
            Some(&granted),
            MANAGER,
            "org.umlkit.uml1.Manager.Launch",
            &["{'kernel': <'/usr/bin/id'>}"],
        ),
        "\"kernel\"",
    );
    denied(
        bus.call(
            Some(&granted),
            MANAGER,
            "org.umlkit.uml1.Manager.Launch",
            &["{'kernel_args': <['mem=64M', 'init=/bin/sh']>}"],
        ),
        "\"kernel_args\"",
    );
    denied(
        bus.call(
            Some(&granted),
            MANAGER,
            "org.umlkit.uml1.Manager.Launch",
            &["{'disks': <['/etc/shadow:ro']>}"],
        ),
        "/etc/shadow",
    );
    denied(
        bus.call(
            Some(&granted),
            MANAGER,
            "org.umlkit.uml1.Manager.Launch",
            &["{'net': <['tap:tap0']>}"],
        ),
        "\"net\"",
    );
    denied(
        bus.call(
            Some(&granted),
            MANAGER,
            "org.umlkit.uml1.Manager.Launch",
            &["{'rw': <['/root']>}"],
        ),
        "/root",
    );
    denied(
        bus.call(
            Some(&granted),
            &path,
            &machine("Config"),
            &["ubd1", "/etc/shadow"],
        ),
        "/etc/shadow",
    );
    let own = testkit::short_tempdir("ua-own");
    std::fs::set_permissions(own.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = own.path().join("disk.img");
    std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
    denied(
        bus.call(
            Some(&granted),
            &path,
            &machine("Config"),
            &["ubd1", &link.display().to_string()],
        ),
        "disk.img",
    );
    // Nor a disk of its own in a directory it can change: it could swap the file for a
    // symlink to /etc/shadow between umld's check and the kernel's open.
    let swappable = own.path().join("mine");
    std::fs::create_dir(&swappable).unwrap();
    std::os::unix::fs::chown(&swappable, Some(granted.uid), Some(granted.gid)).unwrap();
    let swappable_disk = swappable.join("disk.img");
    std::fs::File::create(&swappable_disk)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    std::os::unix::fs::chown(&swappable_disk, Some(granted.uid), Some(granted.gid)).unwrap();
    denied(
        bus.call(
            Some(&granted),
            &path,
            &machine("Config"),
            &["ubd1", &swappable_disk.display().to_string()],
        ),
        "may write in",
    );
    // Nor a console on an xterm (a program started on the host as root).
    denied(
        bus.call(
            Some(&granted),
            &path,
            &machine("Config"),
            &["con1", "xterm"],
        ),
        "xterm",
    );
    assert!(!bus.property(&path, "Disks").contains("shadow"));
    assert!(guest.is_running());

    // What it may do itself, it may do through umld: a disk of its own, and then stopping
    // the guest it was authorised to manage.
    std::fs::remove_file(&link).unwrap();
    let image = std::fs::File::create(&link).unwrap();
    image.set_len(4 << 20).unwrap();
    std::os::unix::fs::chown(&link, Some(granted.uid), Some(granted.gid)).unwrap();
    std::fs::set_permissions(&link, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Its own file does not carry in a second one, which the kernel would open as the
    // backing file.
    denied(
        bus.call(
            Some(&granted),
            &path,
            &machine("Config"),
            &["ubd1", &format!("{},/etc/shadow", link.display())],
        ),
        "/etc/shadow",
    );
    bus.call(
        Some(&granted),
        &path,
        &machine("Config"),
        &["ubd1", &link.display().to_string()],
    )
    .unwrap();
    wait_until("Disks shows the user's disk", || {
        bus.property(&path, "Disks")
            .contains("disk.img")
            .then_some(())
    });

    // Root, the service's own user, needs no authorisation.
    bus.call(None, &path, &machine("Proc"), &["uptime"])
        .unwrap();
    bus.call(Some(&granted), &path, &machine("Shutdown"), &["1"])
        .unwrap();
    wait_until("the authorised Shutdown stopped the guest", || {
        (!guest.is_running()).then_some(())
    });
}

/// The first line of /proc/PID/status that starts with `key` ("Uid:", "Gid:").
fn status_line(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ")
}

fn processes_of(uid: u32) -> String {
    Command::new("pgrep")
        .args(["-a", "-U", &uid.to_string()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[test]
fn system_umld_runs_a_users_guest_as_that_user_so_its_hostfs_view_of_the_host_has_that_users_rights_only()
 {
    let _turn = polkit_turn();
    // `launcher` may launch (a local rule, as an administrator could write), not manage.
    let launcher = User::create("l");
    let _actions = Placed::new(
        Path::new("/usr/share/polkit-1/actions/org.umlkit.uml1.policy"),
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../packaging/polkit/org.umlkit.uml1.policy"),
        )
        .unwrap(),
    );
    let _rule = Placed::new(
        &PathBuf::from(format!(
            "/etc/polkit-1/rules.d/49-umld-test-launch-{}.rules",
            std::process::id()
        )),
        format!(
            r#"polkit.addRule(function(action, subject) {{
    if (action.id == "org.umlkit.uml1.launch" && subject.user == "{}") {{
        return polkit.Result.YES;
    }}
}});
"#,
            launcher.name
        )
        .as_bytes(),
    );
    let bus = Bus::system();
    let _polkitd = bus.polkitd();
    let dir = UmlDir::new();
    // The callers' guests run as them: they must be able to reach the uml_dir.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let scratch = testkit::short_tempdir("ua-r");
    let mut umld = Some(bus.umld(dir.path(), true, scratch.path()));
    // A directory only root may write in, that everyone may enter (not under /tmp: the
    // built-in guest has its own /tmp).
    let locked = tempfile::Builder::new()
        .prefix("ua-locked")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    std::fs::set_permissions(locked.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    try_run(launcher.command("test").arg("-x").arg(locked.path()))
        .expect("the user can enter the directory");
    let (mut root_guest, root_path) = adopted_guest(&bus, &dir);

    // The same program, once launched by root and once by the user: it reads root's secret
    // and writes in root's directory, through the guest's view of the host's /.
    let launch = |user: Option<&User>, tag: &str| -> (String, String) {
        let umid = testkit::unique_umid(&format!("ua-{tag}"));
        let probe = locked.path().join(&umid);
        // The guest's root mounts the host's / read-only; the guest's root user can mount
        // any host directory read-write through hostfs.
        let script = format!(
            "cat /etc/shadow > /dev/null && echo shadow-was-read; mkdir /tmp/h; mount -t hostfs none /tmp/h -o {} && echo x > /tmp/h/{umid} && echo write-worked; echo probe-done; sleep 600",
            locked.path().display()
        );
        assert!(!probe.exists());
        let out = bus
            .call(
                user,
                MANAGER,
                "org.umlkit.uml1.Manager.Launch",
                &[&format!(
                    "{{'umid': <'{umid}'>, 'mem': <'64M'>, 'command': <['/bin/sh', '-c', '{script}']>}}"
                )],
            )
            .unwrap();
        let path = umld::machine_path(&umid);
        assert!(out.contains(&path), "{out}");
        let pid: u32 = bus
            .property(&path, "Pid")
            .trim_start_matches("u ")
            .parse()
            .unwrap();
        dir.adopt(pid);
        let log = bus.property(&path, "BootLog");
        let log = log.trim_start_matches("s ").trim_matches('"').to_owned();
        let text = wait_until("the guest's program ran", || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|t| t.contains("probe-done"))
        });
        (path, text)
    };

    let (mine, as_root) = launch(None, "root");
    assert!(as_root.contains("shadow-was-read"), "{as_root}");
    assert!(as_root.contains("write-worked"), "{as_root}");
    let root_probes = std::fs::read_dir(locked.path()).unwrap().count();
    assert_eq!(root_probes, 1);
    bus.call(None, &mine, "org.umlkit.uml1.Machine.Halt", &[])
        .unwrap();

    let (theirs, as_user) = launch(Some(&launcher), "user");
    assert!(!as_user.contains("shadow-was-read"), "{as_user}");
    assert!(!as_user.contains("write-worked"), "{as_user}");
    assert_eq!(
        as_user.matches("Permission denied").count(),
        2,
        "both the read and the write fail: {as_user}"
    );
    assert_eq!(
        std::fs::read_dir(locked.path()).unwrap().count(),
        root_probes
    );

    // Its kernel runs as the user, in the user's own uml_dir.
    let pid: u32 = bus
        .property(&theirs, "Pid")
        .trim_start_matches("u ")
        .parse()
        .unwrap();
    let uid = launcher.uid.to_string();
    assert_eq!(status_line(pid, "Uid:"), [&*uid; 4].join(" "));
    assert_eq!(
        status_line(pid, "Gid:"),
        [&*launcher.gid.to_string(); 4].join(" ")
    );
    let home = dir.path().join("users").join(&uid);
    let umid = bus.property(&theirs, "Umid");
    let umid = umid.trim_start_matches("s ").trim_matches('"').to_owned();
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&home).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (launcher.uid, 0o700));
        for f in ["init", "log"] {
            let file = home.join(".umlkit").join(format!("{umid}.{f}"));
            assert_eq!(std::fs::metadata(&file).unwrap().uid(), launcher.uid);
        }
    }
    let list = bus
        .call(
            Some(&launcher),
            MANAGER,
            "org.umlkit.uml1.Manager.ListMachines",
            &[],
        )
        .unwrap();
    assert!(list.contains(&umid), "{list}");

    // umld talks to its mconsole (the socket proven the user's, not followed through a
    // name): the kernel told its version.
    wait_until("umld read the user's guest's kernel version", || {
        (bus.property(&theirs, "KernelVersion").len() > "s \"\"".len()).then_some(())
    });
    // A restarted umld finds the user's guest in the user's uml_dir, and knows it is the
    // user's.
    drop(umld.take());
    let _umld = bus.umld(dir.path(), true, scratch.path());
    wait_until("the new umld adopted the user's guest", || {
        bus.busctl(
            None,
            &[
                "get-property",
                NAME,
                &theirs,
                "org.umlkit.uml1.Machine",
                "Pid",
            ],
        )
        .ok()
        .filter(|p| p.trim() == format!("u {pid}"))
    });

    // Without the manage grant it may stop its own guest (it could itself), not root's.
    denied(
        bus.call(
            Some(&launcher),
            &root_path,
            "org.umlkit.uml1.Machine.Shutdown",
            &["0"],
        ),
        "org.umlkit.uml1.manage",
    );
    assert!(root_guest.is_running());
    bus.call(
        Some(&launcher),
        &theirs,
        "org.umlkit.uml1.Machine.Shutdown",
        &["1"],
    )
    .unwrap();
    wait_until("the user's guest exited", || {
        bus.property(&theirs, "State")
            .contains("exited")
            .then_some(())
    });
    // Nothing of it is left: no process of the user, no instance directory.
    wait_until("the user's processes are gone", || {
        processes_of(launcher.uid).trim().is_empty().then_some(())
    });
    assert!(!home.join(&umid).exists());
    root_guest.kill();
}
