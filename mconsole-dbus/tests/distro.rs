//! umld's Launch with `root`: a Debian image made by `uml image create` (the same cached
//! image as the uml crate's distro test, under `~/.cache/umlkit/test-images`), booted through
//! D-Bus from a COW file over it with its own init, its console's getty seen from the host,
//! shut down with Machine.Shutdown, and clean by `e2fsck -fn` afterwards; the base untouched.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::UmlDir;
use util::*;

fn uml_bin() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_umld")).with_file_name("uml")
}

/// The cached test image of uml/tests/distro.rs (one build serves both).
fn image() -> PathBuf {
    testkit::test_image(&uml_bin())
}

#[test]
fn launch_with_root_boots_an_image_with_its_own_init_and_shuts_it_down_clean() {
    assert!(
        uml_bin().is_file(),
        "{} is missing: build it (cargo build -p uml)",
        uml_bin().display()
    );
    let base = image();
    let base_mtime = std::fs::metadata(&base).unwrap().modified().unwrap();
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start(&bus, dir.path());
    let monitor = Monitor::start(&bus);
    let work = testkit::short_tempdir("ud-distro");
    let cow = work.path().join("guest.cow");
    let umid = testkit::unique_umid("ud-deb");

    // root cannot be combined with what only the built-in guest has.
    let err = gdbus_call(
        &bus,
        MANAGER,
        "org.umlkit.uml1.Manager.Launch",
        &[&format!(
            "{{'root': <'{}'>, 'command': <['true']>}}",
            base.display()
        )],
    )
    .unwrap_err();
    assert!(
        err.contains("InvalidArgument") && err.contains("root"),
        "{err}"
    );

    gdbus_call(
        &bus,
        MANAGER,
        "org.umlkit.uml1.Manager.Launch",
        &[&format!(
            "{{'umid': <'{umid}'>, 'root': <'{}:{}'>}}",
            cow.display(),
            base.display()
        )],
    )
    .unwrap();
    dir.remember();
    let path = path_of(&umid);
    // systemd's getty opens con0 (a host pty): the image's userspace is up.
    wait_until(
        "the guest's getty to open con0",
        Duration::from_secs(120),
        || {
            let out = Command::new(uml_bin())
                .arg("--uml-dir")
                .arg(dir.path())
                .args(["config", &umid, "con0"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("pts:/dev/pts/")
                .then_some(())
        },
    );
    machine_call(&bus, &path, "Shutdown", &["u", "60"]).unwrap();
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Exited"]);

    let merged = work.path().join("merged.img");
    let out = Command::new(uml_bin())
        .args(["cow", "merge"])
        .arg(&cow)
        .arg(&merged)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(&merged)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "e2fsck -fn is not clean:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        std::fs::metadata(&base).unwrap().modified().unwrap(),
        base_mtime,
        "the base image was written"
    );
}
