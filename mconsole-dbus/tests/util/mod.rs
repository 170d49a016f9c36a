//! Test support: a private dbus-daemon, a umld on it, and the stock D-Bus command-line
//! clients (`busctl`, `gdbus`). Every guard kills what it started on drop, also when a test
//! fails.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use testkit::try_run;

pub const NAME: &str = "org.umlkit.uml1";
pub const MANAGER: &str = "/org/umlkit/uml1";
pub const MANAGER_IFACE: &str = "org.umlkit.uml1.Manager";
pub const MACHINE_IFACE: &str = "org.umlkit.uml1.Machine";
pub const WAIT: Duration = Duration::from_secs(30);

/// A private session bus (testkit's); the daemon is killed on drop.
pub use testkit::SessionBus as Bus;

/// A running umld on a private bus, watching `uml_dir`. Killed on drop.
#[derive(Debug)]
pub struct Umld {
    child: Option<Child>,
    pub notify: PathBuf,
    _dir: tempfile::TempDir,
}

impl Umld {
    pub fn start(bus: &Bus, uml_dir: &Path) -> Umld {
        Umld::start_with(bus, uml_dir, &[])
    }

    pub fn start_with(bus: &Bus, uml_dir: &Path, extra: &[&str]) -> Umld {
        Umld::spawn(bus, uml_dir, extra, false, None)
    }

    /// Like [`Umld::start`], with `dir` first on the service's PATH (where it finds `uml`).
    pub fn start_with_path(bus: &Bus, uml_dir: &Path, dir: &Path) -> Umld {
        Umld::spawn(bus, uml_dir, &[], false, Some(dir))
    }

    /// Like [`Umld::start`], with stderr to a file ([`Umld::log`]) instead of the test's.
    pub fn start_logged(bus: &Bus, uml_dir: &Path) -> Umld {
        Umld::spawn(bus, uml_dir, &[], true, None)
    }

    /// What a [`Umld::start_logged`] service wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("umld.log")).unwrap_or_default()
    }

    /// Waits up to `timeout` for the service to exit by itself; true when it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return true;
            }
            sleep(Duration::from_millis(20));
        }
        false
    }

    fn spawn(
        bus: &Bus,
        uml_dir: &Path,
        extra: &[&str],
        logged: bool,
        path_first: Option<&Path>,
    ) -> Umld {
        let dir = testkit::short_tempdir("umld-n");
        let notify = dir.path().join("umld.notify");
        let stderr = if logged {
            Stdio::from(std::fs::File::create(dir.path().join("umld.log")).unwrap())
        } else {
            Stdio::inherit()
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_umld"));
        if let Some(first) = path_first {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![first.to_owned()];
            dirs.extend(std::env::split_paths(&path));
            command.env("PATH", std::env::join_paths(dirs).unwrap());
        }
        let child = command
            .arg("--address")
            .arg(&bus.address)
            .arg("--uml-dir")
            .arg(uml_dir)
            .arg("--notify-socket")
            .arg(&notify)
            .args(extra)
            .env("UMLD_LOG", "umld=debug,zbus=warn")
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("cannot start umld");
        let umld = Umld {
            child: Some(child),
            notify,
            _dir: dir,
        };
        wait_until("umld owns its bus name", WAIT, || {
            busctl(bus, &["call", NAME, MANAGER, MANAGER_IFACE, "ListMachines"]).ok()
        });
        umld
    }

    /// SIGTERM, then wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) only sends a signal to the process this guard started.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }
}

impl Drop for Umld {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `busctl --address=… ARGS`: stdout, or the command line and stderr.
pub fn busctl(bus: &Bus, args: &[&str]) -> Result<String, String> {
    try_run(
        Command::new("busctl")
            .arg(format!("--address={}", bus.address))
            .args(args),
    )
}

/// `gdbus call` on the service: stdout, or stderr (which names the D-Bus error).
pub fn gdbus_call(bus: &Bus, path: &str, method: &str, args: &[&str]) -> Result<String, String> {
    try_run(
        Command::new("gdbus")
            .args(["call", "--address", &bus.address, "--dest", NAME])
            .args(["--object-path", path, "--method", method])
            .args(args),
    )
}

/// `busctl get-property` of a machine, its value text (`s "running"` → `"running"`).
pub fn machine_property(bus: &Bus, path: &str, prop: &str) -> Result<String, String> {
    busctl(bus, &["get-property", NAME, path, MACHINE_IFACE, prop]).map(|s| s.trim().to_owned())
}

/// A machine method through busctl.
pub fn machine_call(bus: &Bus, path: &str, method: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["call", NAME, path, MACHINE_IFACE, method];
    all.extend_from_slice(args);
    busctl(bus, &all)
}

pub fn list_machines(bus: &Bus) -> String {
    busctl(bus, &["call", NAME, MANAGER, MANAGER_IFACE, "ListMachines"]).unwrap()
}

/// Polls `f` until it returns Some, or panics naming `what` after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        sleep(Duration::from_millis(50));
    }
}

/// `gdbus monitor` on the service: every signal it sends, one line each.
#[derive(Debug)]
pub struct Monitor {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Monitor {
    pub fn start(bus: &Bus) -> Monitor {
        let mut child = Command::new("gdbus")
            .args(["monitor", "--address", &bus.address, "--dest", NAME])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run gdbus monitor");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        let monitor = Monitor { child, lines };
        // gdbus says who owns the name once it watches it.
        monitor.wait_for(&["is owned by"]);
        monitor
    }

    /// The first line holding every one of `needles`, waiting up to [`WAIT`].
    pub fn wait_for(&self, needles: &[&str]) -> String {
        wait_until(&format!("a signal with {needles:?}"), WAIT, || {
            self.find(needles)
        })
    }

    pub fn find(&self, needles: &[&str]) -> Option<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .cloned()
    }

    /// The index of the first line holding every one of `needles`.
    pub fn position(&self, needles: &[&str]) -> Option<usize> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .position(|l| needles.iter().all(|n| l.contains(n)))
    }

    pub fn count(&self, needles: &[&str]) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The object path of `umid`, as the service names it.
pub fn path_of(umid: &str) -> String {
    umld::machine_path(umid)
}

/// Writes an init script that mounts /proc, tells `message` through /proc/mconsole and
/// sleeps.
pub fn write_init(dir: &Path, message: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("init");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nmount -t proc proc /proc\nprintf '%s' '{message}' > /proc/mconsole\nwhile :; do sleep 1; done\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `Launch(a{sv})` through busctl with the whole command line (kernel_args) and a umid; the
/// object path.
pub fn launch(bus: &Bus, args: &[String], umid: &str) -> Result<String, String> {
    let n = args.len().to_string();
    let mut all: Vec<&str> = vec![
        "call",
        NAME,
        MANAGER,
        MANAGER_IFACE,
        "Launch",
        "a{sv}",
        "2",
        "umid",
        "s",
        umid,
        "kernel_args",
        "as",
        &n,
    ];
    all.extend(args.iter().map(String::as_str));
    busctl(bus, &all).map(|out| {
        out.trim()
            .trim_start_matches("o ")
            .trim_matches('"')
            .to_owned()
    })
}
