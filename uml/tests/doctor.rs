//! `uml doctor` and the diagnosis of a failed boot, against real kernels on this host.
//!
//! Which kernels run here is a fact to discover: on a host with AMX (`amx_tile` in
//! /proc/cpuinfo) kernels before 7.0 boot but kill their first process, elsewhere they run. The
//! tests that need such a host or such a kernel say so and return when they are absent; the
//! diagnosis itself is checked against a recorded boot log everywhere (the unit tests of
//! `uml::kernel::diagnosis`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use uml::kernel::{Profile, Version};

/// Runs `uml ARGS…` with `envs` and returns its output and how long it took. Fails the test
/// if it runs longer than `bound`, and when it left a probe directory behind.
fn uml(args: &[&str], envs: &[(&str, Option<&str>)], bound: Duration) -> (Output, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uml"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in envs {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    let start = Instant::now();
    let child = cmd.spawn().expect("cannot run the uml binary");
    let pid = child.id();
    let out = testkit::output_within(child, bound, &format!("uml {args:?}"));
    let elapsed = start.elapsed();
    let prefix = format!("umlkit-doctor-{pid}-");
    for dir in [std::env::temp_dir(), PathBuf::from("/tmp")] {
        let left: Vec<_> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "uml {args:?} left {left:?} behind");
    }
    (out, elapsed)
}

fn show(args: &[&str], out: &Output) -> String {
    testkit::show_output(&format!("uml {args:?}"), out)
}

use testkit::host_has_amx;

/// A kernel of this host whose release is before 7.0 (Debian bookworm's 6.1), if any.
fn kernel_before_7() -> Option<PathBuf> {
    [uml::kernel::packaged(), uml::kernel::on_path("linux")]
        .into_iter()
        .flatten()
        .find(|k| Profile::read(k).is_ok_and(|p| p.version < Version::new(7, 0, 0)))
}

/// A 7.x kernel: $UML_KERNEL, else one built by `uml kernel build`.
/// What to do when a part of the test setup is missing.
const INSTALL_DEPS: &str = "run scripts/install-deps: it installs Debian's 6.1 kernel (linux.uml), builds a 7.x one, and installs D-Bus";

fn kernel_7() -> Option<PathBuf> {
    let from_env = std::env::var_os("UML_KERNEL").map(PathBuf::from);
    let built = uml::kernel::installed().into_iter().map(|k| k.path);
    from_env
        .into_iter()
        .chain(built)
        .find(|k| Profile::read(k).is_ok_and(|p| p.version >= Version::new(7, 0, 0)))
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn finding<'a>(report: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding in {report:#}"))
}

#[test]
fn doctor_names_the_xsave_problem_of_a_kernel_before_7_on_an_amx_host() {
    let kernel = kernel_before_7().expect(INSTALL_DEPS);
    let k = kernel.to_str().unwrap();
    let args = ["doctor", "--kernel", k, "--no-probe-others"];
    let (out, elapsed) = uml(&args, &[], Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    if !host_has_amx() {
        // Such a kernel runs on a host without AMX.
        assert!(text.contains("OK      probe:"), "{}", show(&args, &out));
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{}", show(&args, &out));
    assert!(text.contains("ERROR   probe:"), "{}", show(&args, &out));
    assert!(text.contains("XSAVE"), "{}", show(&args, &out));
    assert!(
        text.contains("the kernel said: userspace - ptrace set fp regs failed, errno = 14"),
        "{}",
        show(&args, &out)
    );
    assert!(text.contains("uml kernel build"), "{}", show(&args, &out));
    assert!(!text.contains("Call Trace"), "{}", show(&args, &out));
    eprintln!("doctor with {k}: {elapsed:?}");
}

#[test]
fn doctor_reports_a_running_probe_for_a_7x_kernel() {
    let kernel = kernel_7().expect(INSTALL_DEPS);
    let k = kernel.to_str().unwrap();
    let args = ["doctor", "--kernel", k, "--json", "--no-probe-others"];
    let (out, elapsed) = uml(&args, &[], Duration::from_secs(60));
    let report = json(&out);
    let probe = finding(&report, "probe");
    assert_eq!(probe["status"], "ok", "{}", show(&args, &out));
    assert_eq!(finding(&report, "kernel")["status"], "ok");
    assert!(
        report["kernel"]["release"]
            .as_str()
            .unwrap()
            .starts_with('7')
    );
    let errors: Vec<_> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "error")
        .collect();
    // Exit 0 exactly when nothing is an error (a host may lack ptrace or a memory directory).
    assert_eq!(report["ok"], errors.is_empty());
    assert_eq!(
        out.status.code(),
        Some(if errors.is_empty() { 0 } else { 1 }),
        "{}",
        show(&args, &out)
    );
    eprintln!("doctor with {k}: {elapsed:?}");
}

#[test]
fn doctor_lists_the_other_kernels_with_whether_they_run() {
    let (old, new) = (
        kernel_before_7().expect(INSTALL_DEPS),
        kernel_7().expect(INSTALL_DEPS),
    );
    let args = ["doctor", "--kernel", old.to_str().unwrap(), "--json"];
    let (out, _) = uml(&args, &[], Duration::from_secs(90));
    let report = json(&out);
    let others = finding(&report, "other-kernels");
    let details = others["details"].as_array().unwrap();
    let line = details
        .iter()
        .filter_map(|d| d.as_str())
        .find(|d| d.contains(new.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} not among {others:#}", new.display()));
    assert!(line.ends_with("runs a process"), "{line}");
    if host_has_amx() {
        assert!(
            others["fix"].as_str().unwrap().contains("--kernel"),
            "{others:#}"
        );
    }
}

#[test]
fn run_with_a_kernel_before_7_on_an_amx_host_shows_the_diagnosis_not_the_call_trace() {
    let Some(kernel) = kernel_before_7().filter(|_| host_has_amx()) else {
        eprintln!("skipped: needs a host with AMX and a kernel before 7.0");
        return;
    };
    let dir = testkit::UmlDir::new();
    let d = dir.path().to_str().unwrap();
    let args = [
        "--uml-dir",
        d,
        "run",
        "--kernel",
        kernel.to_str().unwrap(),
        "--",
        "true",
    ];
    let (out, _) = uml(&args, &[], Duration::from_secs(60));
    dir.remember();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", show(&args, &out));
    assert!(
        err.contains("the kernel said: userspace - ptrace set fp regs failed, errno = 14"),
        "{}",
        show(&args, &out)
    );
    assert!(err.contains("XSAVE"), "{}", show(&args, &out));
    assert!(
        err.contains("fix: use a 7.x UML kernel"),
        "{}",
        show(&args, &out)
    );
    assert!(!err.contains("Call Trace"), "{}", show(&args, &out));
}

#[test]
fn run_resolves_a_built_kernel_by_its_series() {
    // A kernel `uml kernel build` installed (scripts/install-deps builds one).
    let kernel = uml::kernel::installed()
        .into_iter()
        .find(|k| k.version.major >= 7)
        .map(|k| k.path)
        .expect(INSTALL_DEPS);
    let profile = Profile::read(&kernel).unwrap();
    let dir = testkit::UmlDir::new();
    let series = profile.series();
    let args = [
        "--uml-dir",
        dir.path().to_str().unwrap(),
        "run",
        "--kernel",
        &series,
        "--",
        "uname",
        "-r",
    ];
    let (out, _) = uml(&args, &[("UML_KERNEL", None)], Duration::from_secs(60));
    dir.remember();
    assert!(out.status.success(), "{}", show(&args, &out));
    // The newest built kernel of that series, which need not be the one found above.
    let expected = Profile::read(&uml::kernel::resolve(Some(&series)).unwrap()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expected.release,
        "{}",
        show(&args, &out)
    );
}

#[test]
fn bad_kernels_are_refused_within_a_second() {
    let scratch = testkit::short_tempdir("badk");
    let truncated = scratch.path().join("linux");
    // A truncated copy of a real kernel when there is one, else of some ELF binary.
    let source = kernel_7()
        .or_else(kernel_before_7)
        .unwrap_or_else(|| PathBuf::from("/bin/true"));
    let bytes = std::fs::read(&source).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&truncated, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let uml_dir = testkit::UmlDir::new();
    let cases: [(&Path, &str); 4] = [
        (Path::new("/bin/true"), "is not a UML kernel"),
        (scratch.path(), "it is a directory"),
        (&truncated, "is not a UML kernel"),
        (Path::new("/nonexistent/linux"), "No such file"),
    ];
    for (kernel, expected) in cases {
        let k = kernel.to_str().unwrap();
        let run = [
            "--uml-dir",
            uml_dir.path().to_str().unwrap(),
            "run",
            "--kernel",
            k,
            "--",
            "true",
        ];
        let (out, elapsed) = uml(&run, &[], Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}", show(&run, &out));
        assert!(
            err.contains(k) && err.contains(expected),
            "{}",
            show(&run, &out)
        );
        assert!(
            elapsed < Duration::from_secs(1),
            "{elapsed:?}: {}",
            show(&run, &out)
        );

        let doctor = ["doctor", "--kernel", k, "--no-probe-others"];
        let (out, elapsed) = uml(&doctor, &[], Duration::from_secs(10));
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{}", show(&doctor, &out));
        assert!(
            text.contains("ERROR   kernel:") && text.contains(expected),
            "{}",
            show(&doctor, &out)
        );
        assert!(!text.contains("probe:"), "{}", show(&doctor, &out));
        // No probe boots: what remains is the host checks (ptrace, memory, bus).
        assert!(
            elapsed < Duration::from_secs(5),
            "{elapsed:?}: {}",
            show(&doctor, &out)
        );
    }
    assert!(
        std::fs::read_dir(uml_dir.path()).unwrap().next().is_none(),
        "a refused kernel left something in the uml_dir"
    );
}

#[test]
fn without_a_session_bus_dbus_and_umld_are_warnings_not_errors() {
    let empty = testkit::short_tempdir("nobus");
    let args = [
        "doctor",
        "--kernel",
        "/bin/true",
        "--json",
        "--no-probe-others",
    ];
    let envs = [
        ("DBUS_SESSION_BUS_ADDRESS", None),
        ("XDG_RUNTIME_DIR", empty.path().to_str()),
    ];
    let (out, _) = uml(&args, &envs, Duration::from_secs(10));
    let report = json(&out);
    assert_eq!(finding(&report, "dbus")["status"], "warning", "{report:#}");
    assert_eq!(finding(&report, "umld")["status"], "warning", "{report:#}");
    // Where guests run: the CPUs this process may use, and, on a VM whose idle CPUs halt
    // without polling, what that costs; information either way, never a failure.
    let cpu = finding(&report, "cpu");
    let summary = cpu["summary"].as_str().unwrap();
    let ours = uml::launch::cpus_of(std::process::id()).unwrap();
    let list = ours
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    assert!(summary.contains(&format!("({list})")), "{report:#}");
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let halts = read("/sys/devices/system/cpu/cpuidle/current_driver").trim() == "haltpoll"
        && read("/sys/module/haltpoll/parameters/guest_halt_poll_ns").trim() == "0";
    assert_eq!(
        cpu["status"],
        if halts { "info" } else { "ok" },
        "{report:#}"
    );
    assert_eq!(summary.contains("halt at once"), halts, "{report:#}");
}

#[test]
fn with_a_session_bus_and_no_umld_the_bus_is_ok_and_umld_a_warning() {
    assert!(
        uml::kernel::on_path("dbus-daemon").is_some() && uml::kernel::on_path("busctl").is_some(),
        "{INSTALL_DEPS}"
    );
    let bus = testkit::SessionBus::start();
    let args = [
        "doctor",
        "--kernel",
        "/bin/true",
        "--json",
        "--no-probe-others",
    ];
    let envs = [("DBUS_SESSION_BUS_ADDRESS", Some(bus.address.as_str()))];
    let (out, _) = uml(&args, &envs, Duration::from_secs(20));
    let report = json(&out);
    assert_eq!(finding(&report, "dbus")["status"], "ok", "{report:#}");
    let umld = finding(&report, "umld");
    assert_eq!(umld["status"], "warning", "{report:#}");
    assert!(
        umld["summary"].as_str().unwrap().contains("not running"),
        "{report:#}"
    );
}

#[test]
fn a_memory_directory_that_does_not_exist_is_an_error_naming_it() {
    let scratch = testkit::short_tempdir("nomem");
    let gone = scratch.path().join("gone");
    let gone = gone.to_str().unwrap();
    let args = [
        "doctor",
        "--kernel",
        "/bin/true",
        "--json",
        "--no-probe-others",
    ];
    let (out, _) = uml(&args, &[("TMPDIR", Some(gone))], Duration::from_secs(10));
    let report = json(&out);
    let memory = finding(&report, "memory");
    assert_eq!(memory["status"], "error", "{report:#}");
    assert!(
        memory["summary"].as_str().unwrap().contains(gone),
        "{report:#}"
    );
    assert!(
        memory["fix"].as_str().unwrap().contains("TMPDIR"),
        "{report:#}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn the_memory_directory_of_this_host_is_checked_like_the_kernel_does() {
    let scratch = testkit::short_tempdir("mem");
    let dir = scratch.path().to_str().unwrap();
    let args = [
        "doctor",
        "--kernel",
        "/bin/true",
        "--json",
        "--no-probe-others",
    ];
    let (out, _) = uml(&args, &[("TMPDIR", Some(dir))], Duration::from_secs(10));
    let report = json(&out);
    let memory = finding(&report, "memory");
    assert_ne!(memory["status"], "error", "{report:#}");
    assert!(
        memory["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("{dir} ($TMPDIR)")),
        "{report:#}"
    );
    // The check's own file is gone again.
    assert!(std::fs::read_dir(dir).unwrap().next().is_none());
}
