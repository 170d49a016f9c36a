//! The `uml` binary against real guests: `run`, `list`, `clean`, `wait`, `shutdown` and every
//! mconsole command, with replies compared to `uml_mconsole`'s.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::{GuestBuilder, UmlDir};

/// Runs `uml --uml-dir DIR ARGS…` and returns its output; on a failed expectation the caller
/// prints it through `show`.
fn uml(dir: &Path, args: &[&str]) -> Output {
    uml_with_stdin(dir, args, None)
}

fn uml_with_stdin(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    uml_within(dir, args, stdin, Duration::from_secs(120))
}

/// `uml ARGS` with `stdin` (else /dev/null), killed and failed after `limit`.
fn uml_within(dir: &Path, args: &[&str], stdin: Option<&[u8]>, limit: Duration) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uml"));
    cmd.arg("--uml-dir").arg(dir).args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("cannot run the uml binary");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(data).unwrap();
    }
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("uml {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn show(args: &[&str], out: &Output) -> String {
    format!(
        "uml {args:?} exited {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = uml(dir, args);
    assert!(out.status.success(), "{}", show(args, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = uml(dir, args);
    assert_eq!(out.status.code(), Some(1), "{}", show(args, &out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What `uml_mconsole SOCKET CMD` prints after `OK ` or `ERR `, and whether it was OK.
fn reference(socket: &Path, command: &[&str]) -> (bool, String) {
    let out = Command::new("uml_mconsole")
        .arg(socket)
        .args(command)
        .stderr(Stdio::null())
        .output()
        .expect("uml_mconsole is not installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if let Some(rest) = text.strip_prefix("OK ") {
        (true, rest.to_owned())
    } else {
        (false, text.strip_prefix("ERR ").unwrap_or(&text).to_owned())
    }
}

fn list_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(dir, &["list", "--json"])).expect("uml list --json is not JSON")
}

fn state_of(dir: &Path, umid: &str) -> Option<String> {
    list_json(dir)
        .as_array()?
        .iter()
        .find(|r| r["umid"] == umid)
        .map(|r| r["state"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn run_gives_the_commands_output_and_exit_status() {
    let dir = UmlDir::new();
    let args = ["run", "--", "sh", "-c", "echo out; echo err >&2; exit 7"];
    let out = uml(dir.path(), &args);
    assert_eq!(out.status.code(), Some(7), "{}", show(&args, &out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "out\n",
        "{}",
        show(&args, &out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("err"),
        "{}",
        show(&args, &out)
    );
    // Nothing is left behind: no instance directory, no runtime files of the guest.
    assert_eq!(list_json(dir.path()).as_array().unwrap().len(), 0);
}

#[test]
fn run_reports_a_missing_or_unrunnable_command_as_a_shell_does() {
    // A file of that name on the guest's PATH (the host's /usr/local/bin, seen through the
    // hostfs root) that cannot be run: 126 and "Permission denied", as bash says; no such
    // command at all: 127.
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let name = format!("umlkit-test-noexec-{}", std::process::id());
    let file = Remove(std::path::Path::new("/usr/local/bin").join(&name));
    std::fs::create_dir_all("/usr/local/bin").unwrap();
    std::fs::write(&file.0, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&file.0, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dir = UmlDir::new();
    let args = ["run", "--", name.as_str()];
    let out = uml(dir.path(), &args);
    assert_eq!(out.status.code(), Some(126), "{}", show(&args, &out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        show(&args, &out)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ran"));
    let missing = format!("{name}-missing");
    let args = ["run", "--", missing.as_str()];
    let out = uml(dir.path(), &args);
    assert_eq!(out.status.code(), Some(127), "{}", show(&args, &out));
    // An executable script without `#!`, which execve refuses (ENOEXEC): run by /bin/sh with
    // its arguments, as execvp and shells run it.
    std::fs::write(&file.0, "echo ran \"$@\"\nexit 3\n").unwrap();
    std::fs::set_permissions(&file.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let args = ["run", "--", name.as_str(), "a b", "c"];
    let out = uml(dir.path(), &args);
    assert_eq!(out.status.code(), Some(3), "{}", show(&args, &out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran a b c\n");
}

/// The guest's pid 1 is `uml-init`, the init's own small binary beside `uml`, not `uml`
/// itself; and an `uml-init` of another build hands the config to the `uml` that wrote it.
#[test]
fn the_guest_init_is_the_small_binary_of_the_same_build() {
    let dir = UmlDir::new();
    let args = [
        "run",
        "--",
        "sh",
        "-c",
        "readlink /proc/1/exe; tr '\\0' ' ' < /proc/1/cmdline",
    ];
    let out = uml(dir.path(), &args);
    assert!(out.status.success(), "{}", show(&args, &out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(env!("CARGO_BIN_EXE_uml-init")),
        "{}",
        show(&args, &out)
    );
    let word = format!(
        "__guest-init:{}:{}",
        uml::guest_init::BUILD,
        env!("CARGO_BIN_EXE_uml")
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.split(' ').nth(1) == Some(word.as_str())),
        "{}",
        show(&args, &out)
    );

    // Another build: the config goes to WRITER as `WRITER __guest-init CONFIG` (a stand-in
    // that records its arguments, on the host: the init proper must not run here).
    let tmp = tempfile::tempdir().unwrap();
    let writer = tmp.path().join("writer");
    let record = tmp.path().join("args");
    std::fs::write(
        &writer,
        format!("#!/bin/sh\necho \"$@\" > {}\n", record.display()),
    )
    .unwrap();
    std::fs::set_permissions(&writer, std::fs::Permissions::from_mode(0o755)).unwrap();
    let stale = format!("__guest-init:0.0.0-0000000000000000:{}", writer.display());
    let st = Command::new(env!("CARGO_BIN_EXE_uml-init"))
        .args([stale.as_str(), "/the/config"])
        .status()
        .unwrap();
    assert!(st.success(), "{st}");
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "__guest-init /the/config\n"
    );
    // Run by hand, it only says what it is; asked to serve a config anywhere but as a
    // guest's pid 1 (here, on the host, as root), it refuses, rather than mount over the host's
    // /proc and power the host off. So does `uml`.
    let out = Command::new(env!("CARGO_BIN_EXE_uml-init"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pid 1"));
    let config = tmp.path().join("config");
    std::fs::write(&config, "#!/bin/false\n# umlkit guest init 1\nrun true\n").unwrap();
    let current = format!(
        "__guest-init:{}:{}",
        uml::guest_init::BUILD,
        env!("CARGO_BIN_EXE_uml")
    );
    for (bin, word) in [
        (env!("CARGO_BIN_EXE_uml-init"), current.as_str()),
        (env!("CARGO_BIN_EXE_uml"), "__guest-init"),
    ] {
        let out = Command::new(bin).arg(word).arg(&config).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin} {word}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("only as a guest's pid 1"),
            "{bin}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn run_passes_piped_stdin_through_to_its_end() {
    let dir = UmlDir::new();
    let args = ["run", "--", "sh", "-c", "cat; echo done"];
    let out = uml_with_stdin(dir.path(), &args, Some(b"line one\nno newline at the end"));
    assert!(out.status.success(), "{}", show(&args, &out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        // cat copies the input as it is: no newline is added after its last line.
        "line one\nno newline at the enddone\n"
    );
}

#[test]
fn run_works_in_the_current_directory_and_writes_only_where_allowed() {
    let dir = UmlDir::new();
    let work = tempfile::tempdir().unwrap();
    let work_path = work.path().canonicalize().unwrap();
    let script =
        "pwd; echo made > made.txt; touch /etc/umlkit-must-not-exist 2>/dev/null || echo ro-root";
    let out = Command::new(env!("CARGO_BIN_EXE_uml"))
        .arg("--uml-dir")
        .arg(dir.path())
        .args(["run", "--rw"])
        .arg(&work_path)
        .args(["--", "sh", "-c", script])
        .current_dir(&work_path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, format!("{}\nro-root\n", work_path.display()));
    assert_eq!(
        std::fs::read_to_string(work_path.join("made.txt")).unwrap(),
        "made\n"
    );
    assert!(!Path::new("/etc/umlkit-must-not-exist").exists());
}

#[test]
fn run_with_a_missing_kernel_says_what_to_install() {
    let dir = UmlDir::new();
    let err = fails(
        dir.path(),
        &["run", "--kernel", "/nonexistent/linux", "--", "true"],
    );
    assert!(
        err.contains("cannot run the UML kernel /nonexistent/linux"),
        "{err}"
    );
    assert!(err.contains("user-mode-linux"), "{err}");
}

/// Every cause of an error is printed once: an error's own text does not repeat the cause
/// that `uml` prints after it.
#[test]
fn error_causes_are_printed_exactly_once() {
    let dir = UmlDir::new();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let cases: [(&Path, Vec<&str>, &str); 3] = [
        (
            dir.path(),
            vec!["run", "--kernel", "/nonexistent", "--", "true"],
            "No such file or directory",
        ),
        // A uml_dir that is a file.
        (&file, vec!["list"], "Not a directory"),
        // An mconsole "socket" nobody listens on.
        (
            dir.path(),
            vec!["mconsole", file.to_str().unwrap(), "version"],
            "Connection refused",
        ),
    ];
    for (uml_dir, args, cause) in cases {
        let err = fails(uml_dir, &args);
        assert_eq!(err.matches(cause).count(), 1, "{args:?}: {err}");
        assert_eq!(err.matches("(os error").count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn run_refuses_a_umid_that_a_live_guest_uses() {
    let guest = GuestBuilder::new("busy").boot().unwrap();
    let err = fails(
        guest.uml_dir(),
        &["run", "--umid", guest.umid(), "--", "true"],
    );
    assert!(
        err.contains(&format!("already in use by pid {}", guest.pid())),
        "{err}"
    );
}

#[test]
fn run_reports_a_panic_with_the_boot_log_and_leaves_nothing_running() {
    let dir = UmlDir::new();
    let out = uml(
        dir.path(),
        &["run", "--", "sh", "-c", "echo c > /proc/sysrq-trigger"],
    );
    dir.remember();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the guest panicked"), "{err}");
    assert!(err.contains("sysrq"), "{err}");
    for pid in dir.kernel_pids() {
        // Processes that got SIGKILL may still be tearing down their memory for a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while testkit::group_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !testkit::group_alive(pid),
            "a process of the panicked guest survived: {}",
            String::from_utf8_lossy(
                &Command::new("ps")
                    .args(["-o", "pid,pgid,stat,args", "-g", &pid.to_string()])
                    .output()
                    .unwrap()
                    .stdout
            )
        );
    }
}

#[test]
fn run_rejects_an_invalid_command_line_before_starting_anything() {
    let dir = UmlDir::new();
    let err = fails(
        dir.path(),
        &["run", "--arg", "ubd1x=/nonexistent", "--", "true"],
    );
    assert!(err.contains("ubd1x=/nonexistent"), "{err}");
    assert!(err.contains("nothing was started"), "{err}");
}

#[test]
fn a_guest_that_never_boots_is_killed_at_the_timeout() {
    let dir = UmlDir::new();
    let start = Instant::now();
    let err = fails(dir.path(), &["run", "--boot-timeout", "0", "--", "true"]);
    dir.remember();
    assert!(err.contains("did not boot within"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(30));
    for pid in dir.kernel_pids() {
        assert!(!testkit::group_alive(pid));
    }
}

/// One detached guest driven through every mconsole command.
#[test]
fn a_detached_guest_is_listed_controlled_and_shut_down() {
    let dir = UmlDir::new();
    let d = dir.path();
    let umid = "ctl-guest";
    let out = ok(d, &["run", "--detach", "--umid", umid, "--mem", "128M"]);
    dir.remember();
    assert_eq!(out.trim(), umid);
    let socket = d.join(umid).join("mconsole");

    let rows = list_json(d);
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["umid"] == umid)
        .unwrap()
        .clone();
    assert_eq!(row["state"], "running", "{row}");
    assert_eq!(row["kernel"], testkit::kernel_release(), "{row}");
    // MemTotal is mem= less what the kernel keeps for itself.
    assert!(row["memory_bytes"].as_u64().unwrap() > 80 << 20, "{row}");
    assert!(ok(d, &["list"]).contains(umid));

    // Replies equal uml_mconsole's, command by command.
    for (ours, theirs) in [
        (vec!["version", umid], vec!["version"]),
        (vec!["config", umid, "con0"], vec!["config", "con0"]),
        (vec!["config", umid, "ssl0"], vec!["config", "ssl0"]),
        (vec!["proc", umid, "meminfo"], vec!["proc", "meminfo"]),
    ] {
        let text = ok(d, &ours);
        let (good, expected) = reference(&socket, &theirs);
        assert!(good, "uml_mconsole {theirs:?} failed: {expected}");
        let expected = expected.trim_start_matches('\n');
        // /proc numbers move between two reads; the names and their order must not.
        let keys = |t: &str| {
            t.lines()
                .filter(|l| {
                    !l.trim_matches(|c: char| c.is_whitespace() || c == '\0')
                        .is_empty()
                })
                .map(|l| l.split(':').next().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
        };
        if theirs[0] == "proc" {
            assert_eq!(keys(&text), keys(expected), "uml {ours:?}");
        } else {
            assert_eq!(text.trim_end(), expected.trim_end(), "uml {ours:?}");
        }
    }
    let meminfo = ok(d, &["proc", umid, "meminfo"]);
    assert!(
        meminfo.len() > 511,
        "meminfo should need several reply chunks"
    );
    assert!(meminfo.contains("MemTotal:"));

    // An error reply is an error here, with the kernel's text; uml_mconsole agrees.
    let err = fails(d, &["proc", umid, "no-such-file"]);
    let (good, expected) = reference(&socket, &["proc", "no-such-file"]);
    assert!(!good);
    assert!(err.contains(expected.trim()), "{err} vs {expected}");
    let err = fails(d, &["resume", umid]);
    assert!(err.contains("Not stopped"), "{err}");

    // sysrq output comes back.
    let sysrq = ok(d, &["sysrq", umid, "m"]);
    assert!(sysrq.contains("Show Memory"), "{sysrq}");
    ok(d, &["log", umid, "hello", "from", "the", "host"]);
    let _ = ok(d, &["stack", umid, "1"]);

    // Pause and resume, seen by `uml list`.
    ok(d, &["pause", umid]);
    assert_eq!(state_of(d, umid).as_deref(), Some("paused"));
    assert!(
        ok(d, &["version", umid]).contains(testkit::kernel_release()),
        "a paused guest still answers"
    );
    ok(d, &["resume", umid]);
    assert_eq!(state_of(d, umid).as_deref(), Some("running"));

    // Hot-add a disk from a relative path, see it, remove it.
    let disks = tempfile::tempdir().unwrap();
    std::fs::File::create(disks.path().join("hot.img"))
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_uml"))
        .arg("--uml-dir")
        .arg(d)
        .args(["config", umid, "ubd3=hot.img"])
        .current_dir(disks.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conf = ok(d, &["config", umid, "ubd3"]);
    assert_eq!(
        conf.trim(),
        disks.path().join("hot.img").display().to_string()
    );
    ok(d, &["remove", umid, "ubd3"]);
    assert_eq!(ok(d, &["config", umid, "ubd3"]).trim(), "");
    let err = fails(d, &["remove", umid, "ubd9"]);
    assert!(
        err.contains("-19") || err.contains("ENODEV") || err.contains("doesn't exist"),
        "{err}"
    );

    // Raw commands, one-shot and at the prompt.
    assert!(ok(d, &["mconsole", umid, "version"]).contains(testkit::kernel_release()));
    let out = uml_with_stdin(d, &["mconsole", umid], Some(b"version\ngo\n"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("OK Linux"), "{text}");
    assert!(text.contains("ERR Not stopped"), "{text}");

    // Shutdown: the built-in guest powers off on ctrl-alt-del.
    let err = String::from_utf8_lossy(&uml(d, &["shutdown", umid, "--timeout", "20"]).stderr)
        .into_owned();
    assert!(err.contains("powered off"), "{err}");
    ok(d, &["wait", umid, "--exited", "--timeout", "10"]);
    assert!(
        state_of(d, umid).is_none(),
        "the instance directory should be gone"
    );
    let err = fails(d, &["version", umid]);
    assert!(err.contains("no UML instance \"ctl-guest\""), "{err}");
}

#[test]
fn shutdown_halts_a_guest_whose_init_ignores_ctrl_alt_del() {
    let mut guest = GuestBuilder::new("nocad")
        .body("echo 0 > /proc/sys/kernel/ctrl-alt-del; trap '' INT; echo IGNORING; while :; do sleep 1; done")
        .boot()
        .unwrap();
    guest
        .wait_for_log("IGNORING", Duration::from_secs(20))
        .unwrap();
    let out = uml(
        guest.uml_dir(),
        &["shutdown", guest.umid(), "--timeout", "2"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("halted"), "{err}");
    guest.wait_exit(Duration::from_secs(10)).unwrap();
}

#[test]
fn clean_removes_dead_instances_and_never_a_live_one() {
    let guest = GuestBuilder::new("live").boot().unwrap();
    let d = guest.uml_dir();
    // A directory left by a SIGKILLed kernel: its pid is dead.
    let dead = d.join("dead-one");
    std::fs::create_dir(&dead).unwrap();
    std::fs::write(dead.join("pid"), "999999999\n").unwrap();
    // A directory whose pid now belongs to some other program.
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let reused = d.join("reused");
    std::fs::create_dir(&reused).unwrap();
    std::fs::write(reused.join("pid"), format!("{}\n", sleeper.id())).unwrap();
    std::os::unix::net::UnixDatagram::bind(reused.join("mconsole")).unwrap();

    let rows = list_json(d);
    let states: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["umid"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&("dead-one".into(), "stale".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("reused".into(), "stale".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&(guest.umid().into(), "running".into())),
        "{states:?}"
    );

    let out = ok(d, &["clean"]);
    assert!(out.contains("dead-one") && out.contains("reused"), "{out}");
    assert!(!dead.exists() && !reused.exists());
    assert!(guest.instance_dir().exists(), "a live instance was removed");
    assert!(ok(d, &["version", guest.umid()]).contains(testkit::kernel_release()));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn wait_returns_once_a_guest_has_booted() {
    let dir = UmlDir::new();
    let d = dir.path().to_owned();
    let waiter = std::thread::spawn(move || uml(&d, &["wait", "late", "--timeout", "60"]));
    std::thread::sleep(Duration::from_millis(300));
    let guest = GuestBuilder::new("late")
        .umid("late")
        .uml_dir(dir.path())
        .boot()
        .unwrap();
    let out = waiter.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(guest);
    let err = fails(dir.path(), &["wait", "never", "--timeout", "1"]);
    assert!(err.contains("never"), "{err}");
}

#[test]
fn console_attaches_to_a_guest_line_on_a_host_pty() {
    let dir = UmlDir::new();
    let d = dir.path();
    let umid = "con-guest";
    // A plain sh: a login shell's profile can take seconds to answer.
    let out = Command::new(env!("CARGO_BIN_EXE_uml"))
        .arg("--uml-dir")
        .arg(d)
        .args(["run", "--detach", "--umid", umid])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    dir.remember();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The detached shell is on con0 = pts. Type a command, then Ctrl-] to detach.
    let out = uml_with_stdin(d, &["console", umid], Some(b"echo console-$((6*7))\n"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("console-42"), "{text}");
    let err = fails(d, &["console", umid, "con7"]);
    assert!(err.contains("not to a host pty"), "{err}");
    ok(d, &["halt", umid]);
}

/// Kills the named switch that `uml run --net switch:NAME` started (its pid file sits next to
/// its control socket), even when the test fails.
struct SwitchGuard(std::path::PathBuf);

impl Drop for SwitchGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0)
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// The profile of the kernel the tests run.
fn kernel_profile() -> uml::kernel::Profile {
    let kernel = uml::kernel::resolve(None).expect("a UML kernel to test with");
    uml::kernel::Profile::read(&kernel).expect("the kernel's profile")
}

#[test]
fn run_refuses_a_network_the_kernel_has_no_transport_for() {
    let profile = kernel_profile();
    let dir = UmlDir::new();
    let d = dir.path();
    // `switch:` and `tap:` work with either network driver (a bess port and a vector tap on a
    // vector-only kernel); `daemon` and `mcast` exist only in the legacy driver.
    for spec in ["switch:lab", "mcast", "daemon", "tuntap:tap0"] {
        if uml::net::Spec::parse(spec)
            .unwrap()
            .driver(&profile)
            .is_some()
        {
            continue;
        }
        let err = fails(d, &["run", "--net", spec, "--", "true"]);
        assert!(
            err.contains(&format!("--net {spec}: kernel {}", profile.release))
                && err.contains("network; it has")
                && err.contains("Nothing was started"),
            "{err}"
        );
        // Refused before anything ran: no guest, no switch.
        assert_eq!(list_json(d).as_array().unwrap().len(), 0);
        assert!(!d.join(".umlkit/switch-lab.ctl").exists());
    }
    if profile.has("UML_NET_DAEMON") && profile.has("UML_NET_MCAST") {
        println!(
            "kernel {} has every legacy transport: checked nothing about refusing them",
            profile.release
        );
    }
}

#[test]
fn guests_on_a_named_switch_reach_each_other_without_root_networking() {
    // A daemon port and eth0 where the kernel has the daemon transport (6.x), a bess port of
    // the vector driver and vec0 where it has only that (7.x).
    let profile = kernel_profile();
    let ifname = if profile.has("UML_NET_DAEMON") {
        "eth0"
    } else {
        "vec0"
    };
    println!(
        "kernel {}: the guests' interface is {ifname}",
        profile.release
    );
    let dir = UmlDir::new();
    let d = dir.path();
    let _switch = SwitchGuard(d.join(".umlkit/switch-lab.pid"));
    let out = Command::new(env!("CARGO_BIN_EXE_uml"))
        .arg("--uml-dir")
        .arg(d)
        .args(["run", "--detach", "--umid", "left", "--net", "switch:lab"])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    dir.remember();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.join(".umlkit/switch-lab.ctl").exists());
    let out = uml_with_stdin(
        d,
        &["console", "left"],
        Some(
            format!(
                "ip link set {ifname} up; ip addr add 192.0.2.1/24 dev {ifname}; echo configured\n"
            )
            .as_bytes(),
        ),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configured"));

    let script = format!(
        "ip link set {ifname} up; ip addr add 192.0.2.2/24 dev {ifname}; ping -c 2 -W 5 192.0.2.1"
    );
    let args = ["run", "--net", "switch:lab", "--", "sh", "-c", &script];
    let out = uml(d, &args);
    assert!(out.status.success(), "{}", show(&args, &out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 received"),
        "{}",
        show(&args, &out)
    );
    ok(d, &["halt", "left"]);
}

#[test]
fn a_guest_writes_through_a_cow_that_run_creates_and_cow_merge_sees_it() {
    let dir = UmlDir::new();
    let d = dir.path();
    let disks = tempfile::tempdir().unwrap();
    let base = disks.path().join("base.img");
    let cow = disks.path().join("disk.cow");
    std::fs::write(&base, vec![0x11u8; 1 << 20]).unwrap();
    let spec = format!("{}:{}", cow.display(), base.display());
    // The guest writes one 4 KiB block at offset 64 KiB of /dev/ubda.
    let args = [
        "run",
        "--disk",
        &spec,
        "--",
        "sh",
        "-c",
        "printf 'written-by-guest' | dd of=/dev/ubda bs=4096 seek=16 conv=notrunc,fsync 2>/dev/null",
    ];
    let out = uml(d, &args);
    assert!(out.status.success(), "{}", show(&args, &out));
    assert_eq!(
        std::fs::read(&base).unwrap(),
        vec![0x11u8; 1 << 20],
        "the base image was written"
    );

    let info: serde_json::Value =
        serde_json::from_str(&ok(d, &["cow", "info", "--json", cow.to_str().unwrap()])).unwrap();
    assert_eq!(info["version"], 3, "{info}");
    assert!(info.to_string().contains(base.to_str().unwrap()), "{info}");

    let merged = disks.path().join("merged.img");
    ok(
        d,
        &[
            "cow",
            "merge",
            cow.to_str().unwrap(),
            merged.to_str().unwrap(),
        ],
    );
    let data = std::fs::read(&merged).unwrap();
    assert_eq!(data.len(), 1 << 20);
    assert_eq!(&data[65536..65536 + 16], b"written-by-guest");
    assert!(
        data[..65536].iter().all(|&b| b == 0x11),
        "unwritten sectors come from the base"
    );
}

#[test]
fn run_forwards_the_guests_events_to_the_desktop_service_socket() {
    use uml::mconsole::{Notification, NotifyListener};
    let dir = UmlDir::new();
    // The desktop service's socket lives under $XDG_RUNTIME_DIR/umlkit; listen there as umld.
    let runtime = testkit::short_tempdir("umlkit-x");
    std::fs::create_dir(runtime.path().join("umlkit")).unwrap();
    let listener = NotifyListener::bind(&runtime.path().join("umlkit/umld.notify")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_uml"))
        .arg("--uml-dir")
        .arg(dir.path())
        .args([
            "run",
            "--umid",
            "fwd",
            "--",
            "sh",
            "-c",
            "echo hello-desktop > /proc/mconsole",
        ])
        .env("XDG_RUNTIME_DIR", runtime.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = Vec::new();
    while let Some(n) = listener.recv(Duration::from_secs(2)).unwrap() {
        got.push(n);
    }
    assert!(
        got.iter().any(
            |n| matches!(n, Notification::Socket { mconsole } if mconsole.ends_with("fwd/mconsole"))
        ),
        "{got:?}"
    );
    assert!(
        got.contains(&Notification::User {
            data: b"hello-desktop\n".to_vec()
        }),
        "{got:?}"
    );
    assert!(
        !got.iter()
            .any(|n| matches!(n, Notification::User { data } if data.starts_with(b"umlkit:"))),
        "the internal boot marker was forwarded: {got:?}"
    );
}

#[test]
fn the_guest_command_starts_with_default_sigint_so_ctrl_c_stops_it() {
    let dir = UmlDir::new();
    let args = ["run", "--", "grep", "SigIgn", "/proc/self/status"];
    let out = uml(dir.path(), &args);
    assert!(out.status.success(), "{}", show(&args, &out));
    let text = String::from_utf8_lossy(&out.stdout);
    let mask = u64::from_str_radix(text.trim().trim_start_matches("SigIgn:").trim(), 16).unwrap();
    // SIGINT is signal 2 (bit 1), SIGQUIT signal 3 (bit 2).
    assert_eq!(
        mask & 0b110,
        0,
        "SIGINT/SIGQUIT ignored in the guest command: {text}"
    );
}

#[test]
fn a_shell_given_commands_on_stdin_runs_them_without_prompts_and_ends_with_its_input() {
    let dir = testkit::UmlDir::new();
    // Nothing on stdin: the shell ends at once (it used to wait for ever).
    let args = ["run", "--mem", "64M"];
    let out = uml_within(dir.path(), &args, None, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", show(&args, &out));
    assert!(out.stdout.is_empty(), "{}", show(&args, &out));
    // A script: its output, no prompt or terminal escapes, and its exit status.
    let script = b"echo one\necho two >&2\nexit 3\n";
    let out = uml_within(dir.path(), &args, Some(script), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(3), "{}", show(&args, &out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "one",
        "{}",
        show(&args, &out)
    );
    assert!(
        !out.stdout.contains(&0x1b) && !out.stdout.contains(&b'#'),
        "a prompt or an escape reached stdout: {}",
        show(&args, &out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("two"),
        "{}",
        show(&args, &out)
    );
}

/// `uml run` on the user's terminal (a pty that is its controlling terminal): ^C typed there
/// reaches the guest command as SIGINT through the guest console's line discipline, which
/// needs the command to lead a session whose controlling terminal is that console; the
/// command's standard descriptors are the console lines.
#[test]
fn ctrl_c_on_the_users_terminal_stops_the_guest_command() {
    use std::io::Read;
    use std::os::unix::process::CommandExt;

    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    let dir = UmlDir::new();
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uml"));
    cmd.arg("--uml-dir")
        .arg(dir.path())
        .args(["run", "--", "sh", "-c"])
        .arg("echo fds $(readlink /proc/$$/fd/0 /proc/$$/fd/1); echo ready; exec sleep 60")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    // SAFETY: setsid and ioctl are async-signal-safe; they make the pty (descriptor 0, set up
    // before this runs) the controlling terminal of the child's new session.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = Killed(cmd.spawn().unwrap());
    drop(cmd);

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        assert!(
            Instant::now() < deadline,
            "no \"ready\" from the guest: {}",
            String::from_utf8_lossy(&seen)
        );
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&master),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16)).unwrap() > 0 {
            match master.read(&mut buf) {
                Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                other => panic!("the terminal closed early ({other:?}): {seen:?}"),
            }
        }
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        text.contains("fds /dev/tty0 /dev/tty0"),
        "the command's input and output are not the console: {text}"
    );
    let typed = Instant::now();
    master.write_all(b"\x03").unwrap();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            typed.elapsed() < Duration::from_secs(20),
            "^C did not stop the guest command: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // As a shell reports a command killed by SIGINT.
    assert_eq!(status.code(), Some(130), "{text}");
}

/// The processes of the process group `pgid` that still run (a UML kernel and every process
/// it started).
fn group_members(pgid: u32) -> Vec<u32> {
    uml::procfs::Stat::all()
        .filter(|(_, s)| s.pgrp == pgid && !s.is_dead())
        .map(|(pid, _)| pid)
        .collect()
}

/// `uml run` confines a one-CPU guest, the kernel and all its host processes, to one host CPU
/// (one that runs fewer of the uml_dir's guests, or the one `--cpu` names); `--cpu any` leaves
/// it where the launcher may run; a CPU the launcher may not use is refused before anything
/// starts.
#[test]
fn run_keeps_a_guest_on_one_host_cpu_unless_told_otherwise() {
    // What the kernel says of each process (sched_getaffinity), through the library's one
    // reader of it.
    let cpus = |pid: u32| uml::launch::cpus_of(pid).unwrap_or_default();
    let ours = cpus(std::process::id());
    let dir = UmlDir::new();
    let d = dir.path();
    let last = *ours.last().unwrap();
    let last_text = last.to_string();
    for (umid, cpu, expected) in [
        ("cpu-named", Some(last_text.as_str()), Some(vec![last])),
        ("cpu-any", Some("any"), Some(ours.clone())),
        ("cpu-default", None, None),
    ] {
        let mut args = vec!["run", "--detach", "--umid", umid, "--mem", "64M"];
        if let Some(cpu) = cpu {
            args.extend(["--cpu", cpu]);
        }
        args.extend(["--", "sleep", "60"]);
        let out = ok(d, &args);
        dir.remember();
        assert_eq!(out.trim(), umid);
        let pid = uml::instance::read_pid_file(&d.join(umid).join("pid")).unwrap();
        let members = group_members(pid);
        // The kernel and the host processes of the guest's processes (init, sleep).
        assert!(members.len() >= 2, "{umid}: {members:?}");
        let lists: Vec<Vec<usize>> = members.iter().map(|&p| cpus(p)).collect();
        match &expected {
            Some(list) => assert!(lists.iter().all(|l| l == list), "{umid}: {lists:?}"),
            // One CPU of ours (or, where we may use only one, that one), not the one of the
            // guest still running on `last` when there is another.
            None => assert!(
                lists.iter().all(|l| l == &lists[0])
                    && lists[0].len() == 1
                    && ours.contains(&lists[0][0])
                    && (ours.len() < 2 || lists[0] != [last]),
                "{umid}: {lists:?}, allowed {ours:?}, a guest on {last}"
            ),
        }
    }
    for umid in ["cpu-named", "cpu-any", "cpu-default"] {
        ok(d, &["shutdown", umid]);
    }
    let err = fails(d, &["run", "--cpu", "100000", "--", "true"]);
    assert!(
        err.contains("--cpu 100000") && err.contains(&format!("{last} or `any`")),
        "{err}"
    );
    assert!(dir.kernel_pids().is_empty(), "a guest started after all");
}
