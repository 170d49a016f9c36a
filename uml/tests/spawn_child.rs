//! `Launch::spawn_child`, the launcher of a service that listens on its own notify socket:
//! what the started program gets (argv with the notify socket, the log as stdout, stderr and
//! descriptor 3, an empty stdin, the private working directory), with a script standing in
//! for the kernel so that it needs no kernel.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[test]
fn spawn_child_gives_the_program_the_log_on_1_2_and_3_no_stdin_and_the_notify_word() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("fake-linux");
    std::fs::write(
        &kernel,
        "#!/bin/sh\necho \"args: $*\" >&3\necho \"cwd: $(pwd)\"\necho to-stderr >&2\n\
         if read -r line; then echo \"stdin: $line\"; else echo stdin-empty; fi\nexit 7\n",
    )
    .unwrap();
    std::fs::set_permissions(&kernel, std::fs::Permissions::from_mode(0o755)).unwrap();
    let uml_dir = dir.path().join("uml");
    let cwd = dir.path().join("run");
    let log = dir.path().join("boot.log");
    let notify = dir.path().join("service.notify");
    let launch = uml::launch::Launch {
        kernel: kernel.clone(),
        args: vec!["mem=64M".into(), "umid=sc1".into()],
        umid: "sc1".into(),
        uml_dir: uml_dir.clone(),
        console: uml::launch::Console::Log { log: log.clone() },
        cwd: cwd.clone(),
        notify_socket: notify.clone(),
        cpu: None,
        aslr_off: false,
    };
    let mut child = launch.spawn_child().unwrap();
    let status = wait_within(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(7));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!(
            "args: mem=64M umid=sc1 mconsole=notify:{}",
            notify.display()
        )),
        "{text}"
    );
    assert!(text.contains(&format!("cwd: {}", cwd.display())), "{text}");
    assert!(text.contains("to-stderr"), "{text}");
    assert!(text.contains("stdin-empty"), "{text}");
    assert!(uml_dir.is_dir());
    assert!(
        !notify.exists(),
        "the caller binds the notify socket, not the launcher"
    );
}

/// With `aslr_off` the program starts with address space randomization off
/// (`personality(2)` ADDR_NO_RANDOMIZE, 0x0040000), as a 7.x kernel would otherwise arrange by
/// executing itself a second time; without it, as the launcher has it.
#[test]
fn spawn_child_can_start_the_program_with_randomization_off() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("fake-linux");
    std::fs::write(
        &kernel,
        "#!/bin/sh\necho \"personality: $(cat /proc/self/personality)\" >&3\n",
    )
    .unwrap();
    std::fs::set_permissions(&kernel, std::fs::Permissions::from_mode(0o755)).unwrap();
    let own = std::fs::read_to_string("/proc/self/personality").unwrap();
    for (aslr_off, want) in [(true, "00040000"), (false, own.trim())] {
        let log = dir.path().join(format!("boot-{aslr_off}.log"));
        let launch = uml::launch::Launch {
            kernel: kernel.clone(),
            args: vec!["mem=64M".into()],
            umid: format!("sc3{aslr_off}"),
            uml_dir: dir.path().join("uml"),
            console: uml::launch::Console::Log { log: log.clone() },
            cwd: dir.path().join("run"),
            notify_socket: dir.path().join("n"),
            cpu: None,
            aslr_off,
        };
        let mut child = launch.spawn_child().unwrap();
        assert!(wait_within(&mut child, Duration::from_secs(20)).success());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains(&format!("personality: {want}")), "{text}");
    }
}

#[test]
fn spawn_child_of_a_missing_kernel_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-linux");
    let launch = uml::launch::Launch {
        kernel: missing.clone(),
        args: Vec::new(),
        umid: "sc2".into(),
        uml_dir: dir.path().join("uml"),
        console: uml::launch::Console::Log {
            log: dir.path().join("boot.log"),
        },
        cwd: dir.path().join("run"),
        notify_socket: dir.path().join("n"),
        cpu: None,
        aslr_off: false,
    };
    let err = launch.spawn_child().unwrap_err();
    assert!(
        matches!(&err, uml::launch::LaunchError::Kernel { kernel, .. } if *kernel == missing),
        "{err}"
    );
    assert!(err.to_string().contains("no-such-linux"), "{err}");
}

/// Waits for `child` at most `timeout`; kills it and fails past that.
fn wait_within(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the program did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
