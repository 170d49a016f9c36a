//! The README's tour, run as written: every `$ ` line of the README's code blocks marked
//! ```` ```console tour ```` (and, on a private session bus that activates this checkout's umld,
//! ```` ```console tour-dbus ````), in order, in one shell, against the real kernel, FUSE and
//! D-Bus. The commands come from README.md itself, so the README and this test cannot drift.
//!
//! It lives with the `uml` crate because cargo gives its tests the `uml` binary; it builds
//! `umlfs` and `umld` with cargo into the same target directory, and puts the three on PATH,
//! as `scripts/quickstart` tells a user to. A command succeeds when it exits 0, or with the
//! status its comment names (`# exit status 1`). HOME is a fresh directory (so `~/.uml` is the
//! test's own); the kernels of `uml kernel build` are still found through XDG_DATA_HOME.

use std::path::{Path, PathBuf};
use std::process::Command;

const README: &str = include_str!("../../README.md");

/// One command of a tour block: its text (continuation lines joined) and the exit status it
/// must end with.
#[derive(Debug, PartialEq)]
struct Step {
    command: String,
    status: i32,
}

/// The commands of the README's code blocks whose info string is `console <marker>`.
fn steps(readme: &str, marker: &str) -> Vec<Step> {
    let fence = format!("```console {marker}");
    let mut steps = Vec::new();
    let mut in_block = false;
    let mut continued: Option<String> = None;
    for line in readme.lines() {
        if !in_block {
            in_block = line.trim_end() == fence;
            continue;
        }
        if line.starts_with("```") {
            in_block = false;
            continue;
        }
        let text = match (continued.take(), line.strip_prefix("$ ")) {
            (Some(mut before), _) => {
                before.push('\n');
                before.push_str(line);
                before
            }
            (None, Some(command)) => command.to_owned(),
            // Output shown in the README: not checked (pids, times and sizes vary).
            (None, None) => continue,
        };
        if text.ends_with('\\') {
            continued = Some(text);
            continue;
        }
        let status = expected_status(&text);
        steps.push(Step {
            command: text,
            status,
        });
    }
    steps
}

/// `# exit status N` in a command's comment, else 0.
fn expected_status(command: &str) -> i32 {
    command
        .split_once("# ")
        .and_then(|(_, comment)| comment.split_once("exit status "))
        .and_then(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// A bash script that runs `steps` and stops at the first that ends otherwise than it must.
fn script(steps: &[Step]) -> String {
    let mut s = String::from("set -o pipefail\n");
    for step in steps {
        let shown = step.command.replace('\'', "'\\''");
        // A command for a person at a terminal (`uml run`'s shell) gets the line a person
        // would type to end it; every other command reads what the script's stdin gives
        // (nothing).
        let input = if step.command.contains("interactive") {
            " <<'TOUR-INPUT'\nexit\nTOUR-INPUT"
        } else {
            ""
        };
        s.push_str(&format!(
            "printf '\\n$ %s\\n' '{shown}'\n{{\n{}\n}}{input}\nrc=$?\nif [ $rc -ne {} ]; then echo \"tour: exit status $rc, expected {}\" >&2; exit 1; fi\n",
            step.command, step.status, step.status
        ));
    }
    s
}

/// Unmounts what the tour mounted (in the scratch directories it made under `tmp`), even when
/// it failed halfway; its guests go with the [`testkit::UmlDir`].
struct Cleanup {
    tmp: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for dir in std::fs::read_dir(&self.tmp).into_iter().flatten().flatten() {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(dir.path().join("mnt"))
                .output();
        }
    }
}

fn build_other_binaries() -> PathBuf {
    let uml = PathBuf::from(env!("CARGO_BIN_EXE_uml"));
    let bin = uml.parent().unwrap().to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = if bin.ends_with("release") {
        vec!["--release"]
    } else {
        vec![]
    };
    let out = Command::new(cargo)
        .args(["build", "--locked", "-p", "umlfs", "-p", "umld"])
        .args(&profile)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cannot run cargo");
    assert!(
        out.status.success(),
        "cargo build -p umlfs -p umld failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["umlfs", "umld"] {
        assert!(
            bin.join(name).exists(),
            "{name} is not beside uml in {bin:?}"
        );
    }
    bin
}

/// The session bus configuration `scripts/quickstart` writes: activation of this build's umld.
fn bus_config(dir: &Path, bin: &Path) -> PathBuf {
    let services = dir.join("services");
    std::fs::create_dir_all(&services).unwrap();
    std::fs::write(
        services.join("org.umlkit.uml1.service"),
        format!(
            "[D-BUS Service]\nName=org.umlkit.uml1\nExec={}\n",
            bin.join("umld").display()
        ),
    )
    .unwrap();
    let conf = dir.join("session.conf");
    std::fs::write(
        &conf,
        format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig>\n  \
             <servicedir>{}</servicedir>\n  <include>/usr/share/dbus-1/session.conf</include>\n</busconfig>\n",
            services.display()
        ),
    )
    .unwrap();
    conf
}

#[test]
fn tour_blocks_are_found_with_their_expected_statuses() {
    let tour = steps(README, "tour");
    assert!(tour.len() > 15, "{tour:?}");
    assert!(tour.iter().any(|s| s.command.contains("umlfs web1:")));
    assert!(tour.iter().any(|s| s.status == 1));
    let dbus = steps(README, "tour-dbus");
    assert!(dbus.iter().any(|s| s.command.starts_with("busctl --user")));
    // A continuation line belongs to its command.
    assert!(dbus[0].command.contains("'disks'"), "{:?}", dbus[0].command);
}

#[test]
fn the_readme_tour_runs_as_written() {
    let bin = build_other_binaries();
    let home = testkit::short_tempdir("umlkit-tour");
    let uml_dir = testkit::UmlDir::new();
    std::os::unix::fs::symlink(uml_dir.path(), home.path().join(".uml")).unwrap();
    let real_home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    let runtime = home.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let tmp = home.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let conf = bus_config(&home.path().join("bus"), &bin);

    // The tour starts with `cd "$(mktemp -d)"`: TMPDIR puts that in the test's directory, and
    // the D-Bus block continues in the directory the tour ended in.
    let dbus_script = home.path().join("tour-dbus.sh");
    std::fs::write(&dbus_script, script(&steps(README, "tour-dbus"))).unwrap();
    let mut all = script(&steps(README, "tour"));
    all.push_str(&format!(
        "printf '\\n(on a private session bus)\\n'\ndbus-run-session --config-file '{}' -- bash '{}' || exit 1\n",
        conf.display(),
        dbus_script.display()
    ));
    let main_script = home.path().join("tour.sh");
    std::fs::write(&main_script, all).unwrap();
    let cleanup = Cleanup { tmp: tmp.clone() };

    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| real_home.join(".local/share"));
    let cache_home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| real_home.join(".cache"));
    let out = Command::new("bash")
        .arg(&main_script)
        .current_dir(home.path())
        .env("PATH", path)
        .env("HOME", home.path())
        .env("TMPDIR", &tmp)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("XDG_DATA_HOME", data_home)
        .env("XDG_CACHE_HOME", cache_home)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("UML_DIR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cannot run bash");
    // Whatever the tour left (a mount in a failed run) goes before the guests are killed.
    drop(cleanup);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the tour failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // What the tour promises to show.
    assert!(stdout.contains("<h1>hello</h1>"), "{stdout}");
    assert!(stdout.contains("web1"), "{stdout}");
    assert!(stdout.contains("\n5\n"), "{stdout}");
}

#[test]
fn a_command_with_an_unexpected_status_stops_the_tour() {
    let s = script(&[
        Step {
            command: "false   # exit status 1".into(),
            status: 1,
        },
        Step {
            command: "true; false".into(),
            status: 0,
        },
        Step {
            command: "echo never".into(),
            status: 0,
        },
    ]);
    let out = Command::new("bash").args(["-c", &s]).output().unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\nnever"));
    assert_eq!(expected_status("uml check x   # exit status 1: errors"), 1);
    assert_eq!(expected_status("uml run -- true"), 0);
}
