//! A private D-Bus session bus for a test: its own dbus-daemon, killed on drop.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A dbus-daemon of type session, listening in a fresh temporary directory, with the permissive
/// policy of a session bus. The daemon is killed on drop, also when a test fails.
#[derive(Debug)]
pub struct SessionBus {
    /// The address clients connect to (`busctl --address=…`, `gdbus … --address …`).
    pub address: String,
    pid: i32,
    _dir: tempfile::TempDir,
}

/// How to start a [`SessionBus`].
#[derive(Debug, Default)]
pub struct SessionBusBuilder {
    servicedir: Option<PathBuf>,
    env: Option<Vec<(OsString, OsString)>>,
}

impl SessionBusBuilder {
    /// A `<servicedir>` whose `.service` files the bus activates on demand.
    pub fn servicedir(mut self, dir: &Path) -> Self {
        self.servicedir = Some(dir.to_owned());
        self
    }

    /// The daemon's whole environment, instead of the test's; the services it activates
    /// inherit it (HOME, XDG_RUNTIME_DIR, …).
    pub fn env(mut self, vars: &[(&str, &Path)]) -> Self {
        self.env = Some(
            vars.iter()
                .map(|(k, v)| (OsString::from(k), v.as_os_str().to_owned()))
                .collect(),
        );
        self
    }

    /// Starts the daemon; panics (it is a test) if it cannot.
    pub fn start(self) -> SessionBus {
        let dir = crate::short_tempdir("bus");
        let config = dir.path().join("session.conf");
        let services = self
            .servicedir
            .map(|d| format!("<servicedir>{}</servicedir>", d.display()))
            .unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={}</listen>
  {services}
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.path().display()
            ),
        )
        .expect("cannot write the bus configuration");
        let mut cmd = Command::new("dbus-daemon");
        cmd.arg(format!("--config-file={}", config.display()))
            .args([
                "--print-address=1",
                "--print-pid=1",
                "--fork",
                "--nopidfile",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(env) = self.env {
            cmd.env_clear().envs(env);
        }
        // --fork: the daemon is running once its parent exits, after printing address and pid.
        let out = cmd.output().expect("cannot run dbus-daemon");
        assert!(out.status.success(), "dbus-daemon failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let address = lines.next().expect("dbus-daemon printed no address");
        let pid = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("dbus-daemon printed no pid");
        SessionBus {
            address: address.trim().to_owned(),
            pid,
            _dir: dir,
        }
    }
}

impl SessionBus {
    /// A bus with no service directory: only what the test starts is on it.
    pub fn start() -> SessionBus {
        SessionBusBuilder::default().start()
    }

    /// A bus to configure: a service directory, the daemon's environment.
    pub fn builder() -> SessionBusBuilder {
        SessionBusBuilder::default()
    }

    /// The pid of the process that owns `name` on this bus (`GetConnectionUnixProcessID`).
    pub fn owner_pid(&self, name: &str) -> Result<i32, String> {
        let out = Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args([
                "call",
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "GetConnectionUnixProcessID",
                "s",
                name,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run busctl: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .strip_prefix("u ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| {
                format!(
                    "no owner of {name}: {}{}",
                    text,
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory effects; the pid is the daemon this guard started,
        // which stays alive (and so keeps its pid) until it is killed here.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
        }
    }
}
